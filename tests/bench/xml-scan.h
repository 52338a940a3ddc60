/* The few bytes of XML the benchmark drivers look at, scanned by hand
 * (the point is to measure the daemon's parser, not to run another one):
 * tags, attributes and element names in a receive buffer. Shared by
 * bench-component.c and bench-irc.c. */
#ifndef BF_BENCH_XML_SCAN_H
#define BF_BENCH_XML_SCAN_H

#include <stdbool.h>
#include <stddef.h>
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

#endif
