/* The few bytes of XML the benchmark drivers look at, scanned by hand
 * (the point is to measure the daemon's parser, not to run another one):
 * tags, attributes and element names in a receive buffer. Shared by
 * bench-component.c and bench-irc.c, with the stanza framer. */
#ifndef BF_BENCH_XML_SCAN_H
#define BF_BENCH_XML_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static inline bool is_space(char ch)
{
  return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Index of the '>' closing the tag that starts at b[p] ('<'), skipping
 * quoted attribute values (XML allows a raw '>' in them), or 0 when the
 * tag is not complete yet. */
static inline size_t tag_end(const char *b, size_t p, size_t len)
{
  char quote = 0;
  for (size_t i = p + 1; i < len; i++) {
    char ch = b[i];
    if (quote) {
      if (ch == quote)
        quote = 0;
    } else if (ch == '\'' || ch == '"') {
      quote = ch;
    } else if (ch == '>') {
      return i;
    }
  }
  return 0;
}

/* The raw (still escaped) value of attribute name in the start tag
 * tag[0..len), and its quote character. */
static inline bool tag_attr(const char *tag, size_t len, const char *name,
                     const char **val, size_t *val_len, char *quote)
{
  size_t i = 1, name_len = strlen(name);
  while (i < len && !is_space(tag[i]) && tag[i] != '>' && tag[i] != '/')
    i++;
  for (;;) {
    while (i < len && is_space(tag[i]))
      i++;
    if (i >= len || tag[i] == '>' || tag[i] == '/')
      return false;
    size_t start = i;
    while (i < len && tag[i] != '=' && !is_space(tag[i]))
      i++;
    size_t this_len = i - start;
    while (i < len && is_space(tag[i]))
      i++;
    if (i >= len || tag[i] != '=')
      return false;
    i++;
    while (i < len && is_space(tag[i]))
      i++;
    if (i >= len || (tag[i] != '\'' && tag[i] != '"'))
      return false;
    char q = tag[i++];
    size_t v = i;
    while (i < len && tag[i] != q)
      i++;
    if (i >= len)
      return false;
    if (this_len == name_len && memcmp(tag + start, name, name_len) == 0) {
      *val = tag + v;
      *val_len = i - v;
      *quote = q;
      return true;
    }
    i++;
  }
}

static inline bool attr_equals(const char *tag, size_t len, const char *name,
                        const char *want)
{
  const char *v;
  size_t vlen;
  char q;
  return tag_attr(tag, len, name, &v, &vlen, &q) && vlen == strlen(want) &&
         memcmp(v, want, vlen) == 0;
}

/* Whether the element starting at s ('<') is named name. */
static inline bool element_is(const char *s, size_t n, const char *name)
{
  size_t len = strlen(name);
  return n > len + 1 && memcmp(s + 1, name, len) == 0 &&
         (is_space(s[1 + len]) || s[1 + len] == '>' || s[1 + len] == '/');
}

/* Bytes from the daemon's component stream, split into top-level
 * elements (stanzas) as they complete. */
typedef struct bench_rx {
  char *rx;                 /* incoming bytes not yet consumed */
  size_t rx_len, rx_cap;
  size_t rx_pos;            /* where scanning resumes */
  size_t stanza_start;      /* of the stanza being received */
  unsigned depth;           /* element depth; 1 = between stanzas */
  bool stream_closed;       /* the daemon sent </stream:stream> */
} bench_rx;

/* Splits c->rx into top-level elements from rx_pos on, calling
 * on_stanza(data, s, n, now) for each stanza; an incomplete element stays
 * for the next read. Returns on_stanza's negative code, or -1 (with a
 * message starting with who) for a DTD, an unbalanced end tag or an
 * element over max bytes; else 0. */
static inline int bench_rx_scan(bench_rx *c, size_t max, const char *who,
                                int (*on_stanza)(void *data, const char *s,
                                                 size_t n, uint64_t now),
                                void *data, uint64_t now)
{
  char *b = c->rx;
  size_t len = c->rx_len, p = c->rx_pos;
  int rc = 0;

  while (p < len && rc == 0) {
    char *lt = memchr(b + p, '<', len - p);
    if (!lt) {
      p = len;
      break;
    }
    p = (size_t)(lt - b);
    if (len - p < 2)
      break;
    size_t end;
    if (b[p + 1] == '?' || b[p + 1] == '!') {
      const char *close = "?>";
      if (b[p + 1] == '!') {
        if (len - p < 9)
          break;
        if (memcmp(b + p, "<!--", 4) == 0) {
          close = "-->";
        } else if (memcmp(b + p, "<![CDATA[", 9) == 0) {
          close = "]]>";
        } else {
          /* RFC 6120 §11.1: no DTDs in XMPP */
          fprintf(stderr, "%s: the daemon sent a DTD: %.40s\n", who, b + p);
          return -1;
        }
      }
      const char *q = memmem(b + p + 2, len - p - 2, close, strlen(close));
      if (!q)
        break;
      end = (size_t)(q - b) + strlen(close);
    } else if (b[p + 1] == '/') {
      const char *gt = memchr(b + p + 2, '>', len - p - 2);
      if (!gt)
        break;
      end = (size_t)(gt - b) + 1;
      if (c->depth == 0) {
        fprintf(stderr, "%s: unbalanced end tag from the daemon\n", who);
        return -1;
      }
      c->depth--;
      if (c->depth == 1)
        rc = on_stanza(data, b + c->stanza_start, end - c->stanza_start, now);
      else if (c->depth == 0)
        c->stream_closed = true;
    } else {
      size_t gt = tag_end(b, p, len);
      if (!gt)
        break;
      end = gt + 1;
      if (c->depth == 1)
        c->stanza_start = p;
      if (b[gt - 1] != '/')
        c->depth++;
      else if (c->depth == 1)
        rc = on_stanza(data, b + p, end - p, now);
    }
    p = end;
  }
  if (rc < 0)
    return rc;

  /* Drop what is consumed; an open stanza stays from its start tag. */
  size_t keep = c->depth >= 2 ? c->stanza_start : p;
  if (keep > 0) {
    memmove(b, b + keep, len - keep);
    c->rx_len = len - keep;
    p -= keep;
    if (c->depth >= 2)
      c->stanza_start -= keep;
  }
  c->rx_pos = p;
  if (c->rx_len > max) {
    fprintf(stderr, "%s: one element from the daemon is over %zu bytes\n",
            who, max);
    return -1;
  }
  return 0;
}

#endif
