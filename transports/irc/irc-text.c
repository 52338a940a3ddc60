/* IRC transport: text between XMPP and IRC (irc-text.h). Splitting XMPP
 * bodies into IRC lines (PROTOCOL-NOTES §5.4, §5.7), decoding IRC bytes to
 * UTF-8 with iconv (§5.6), IRC formatting codes to XEP-0393 styling
 * (§2.12) and CTCP framing (§5.5). */
#include "irc-text.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/error.h"
#include "irc-proto.h"

#define INVALID UINT32_MAX

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Decodes the character at s (avail > 0 bytes) into *cp; returns its
 * length. RFC 3629 §4: overlong forms, surrogates and code points past
 * U+10FFFF are invalid: *cp is then INVALID and the length is that of the
 * maximal invalid subpart (Unicode §3.9 "U+FFFD substitution of maximal
 * subparts"), at least 1. */
static size_t utf8_next(const unsigned char *s, size_t avail, uint32_t *cp) {
  unsigned char c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t need;
  uint32_t v;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    v = c & 0x0F;
    if (c == 0xE0)
      lo = 0xA0; /* overlong */
    else if (c == 0xED)
      hi = 0x9F; /* U+D800..U+DFFF */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    v = c & 0x07;
    if (c == 0xF0)
      lo = 0x90; /* overlong */
    else if (c == 0xF4)
      hi = 0x8F; /* > U+10FFFF */
  } else {
    *cp = INVALID;
    return 1;
  }
  size_t i = 1;
  for (; i <= need && i < avail; i++) {
    unsigned char b = s[i];
    if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80)
      break;
    v = (v << 6) | (b & 0x3F);
  }
  if (i <= need) {
    *cp = INVALID;
    return i;
  }
  *cp = v;
  return need + 1;
}

bool bf_irc_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    uint32_t cp;
    i += utf8_next(p + i, len - i, &cp);
    if (cp == INVALID)
      return false;
  }
  return true;
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The length of the formatting code at s (NUL-terminated), its arguments
 * included (modern.ircdocs formatting: "\x03" [fg [ "," bg ]] with one or
 * two digits each, "\x04" [RRGGBB [ "," RRGGBB ]]); a comma not followed
 * by a colour is text. */
static size_t code_len(const char *s) {
  size_t i = 1;
  if (s[0] == '\x03') {
    if (!is_digit(s[i]))
      return i;
    i += is_digit(s[i + 1]) ? 2 : 1;
    if (s[i] == ',' && is_digit(s[i + 1]))
      i += is_digit(s[i + 2]) ? 3 : 2;
    return i;
  }
  if (s[0] == '\x04') {
    for (size_t k = 1; k <= 6; k++)
      if (!is_hex(s[k]))
        return 1;
    i = 7;
    if (s[7] == ',') {
      for (size_t k = 8; k <= 13; k++)
        if (!is_hex(s[k]))
          return i;
      i = 14;
    }
    return i;
  }
  return i;
}

/* ---- splitting -------------------------------------------------------------- */

/* C0 controls kept in IRC text: CTCP, TAB and the formatting codes. */
static bool control_kept(uint32_t c) {
  switch (c) {
  case 0x01: case 0x02: case 0x03: case 0x09: case 0x0F:
  case 0x11: case 0x16: case 0x1D: case 0x1E: case 0x1F:
    return true;
  default:
    return false;
  }
}

/* DEL and the C1 controls: no terminal or client wants them. */
static bool is_c1_or_del(uint32_t c) {
  return c == 0x7F || (c >= 0x80 && c <= 0x9F);
}

/* Where to end the piece that starts at pos of line (n bytes,
 * NUL-terminated) and may take max bytes. */
static size_t cut_point(const char *line, size_t n, size_t pos, size_t max) {
  if (n - pos <= max)
    return n;
  size_t cut = pos + max;
  while (((unsigned char)line[cut] & 0xC0) == 0x80)
    cut--; /* never inside a UTF-8 sequence; max >= 16 keeps cut > pos */
  /* The last space in the second half of the piece; it stays at the end
   * of this piece, so the pieces put together give the line back. */
  for (size_t k = cut; k > pos + max / 2; k--)
    if (line[k - 1] == ' ')
      return k;
  /* Not inside a colour code either: "\x031" + "2…" would turn colour 12
   * into colour 1 and a stray digit. Codes are at most 14 bytes. */
  for (size_t k = cut; k > pos && cut - k < 14; k--) {
    char c = line[k - 1];
    if ((c == '\x03' || c == '\x04') && k - 1 + code_len(line + k - 1) > cut) {
      if (k - 1 > pos)
        cut = k - 1;
      break;
    }
  }
  return cut;
}

static int emit_line(char *line, size_t n, size_t max, bf_irc_piece_cb cb,
                     void *data) {
  size_t pos = 0;
  line[n] = '\0';
  while (pos < n) {
    size_t cut = cut_point(line, n, pos, max);
    char saved = line[cut];
    line[cut] = '\0';
    int rc = cb(data, line + pos, cut - pos);
    line[cut] = saved;
    if (rc)
      return rc;
    pos = cut;
  }
  return 0;
}

int bf_irc_split_text(const char *text, size_t max, bf_irc_piece_cb cb,
                      void *data) {
  if (!text || !cb || max < 16)
    return BF_EINVAL;
  size_t len = strlen(text);
  /* Each invalid byte may become a 3-byte U+FFFD. */
  char *line = malloc(3 * len + 1);
  if (!line)
    return BF_ENOMEM;
  const unsigned char *p = (const unsigned char *)text;
  size_t i = 0, n = 0;
  int rc = 0;
  while (i < len) {
    uint32_t cp;
    size_t k = utf8_next(p + i, len - i, &cp);
    if (cp == '\r' || cp == '\n') {
      /* CR LF, LF or CR: each line its own message (§5.7: a body must
       * never smuggle a second IRC command). */
      if (n && (rc = emit_line(line, n, max, cb, data)) != 0)
        goto out;
      n = 0;
    } else if (cp == INVALID) {
      memcpy(line + n, replacement, 3);
      n += 3;
    } else if ((cp < 0x20 && !control_kept(cp)) || is_c1_or_del(cp)) {
      /* dropped */
    } else {
      memcpy(line + n, p + i, k);
      n += k;
    }
    i += k;
  }
  if (n)
    rc = emit_line(line, n, max, cb, data);
out:
  free(line);
  return rc;
}

size_t bf_irc_text_room(const char *command, const char *target,
                        size_t prefix_len) {
  /* ":" prefix " " command " " target " :" text "\r\n" */
  size_t used = 1 + prefix_len + 1 + strlen(command) + 1 + strlen(target) +
                2 + 2;
  return used < BF_IRC_LINE_MAX ? BF_IRC_LINE_MAX - used : 0;
}

/* ---- decoding --------------------------------------------------------------- */

/* A copy of in without its NUL bytes, and any invalid UTF-8 replaced
 * with U+FFFD (iconv's output should not have any, but XMPP must never
 * get it: §5.6). */
static char *clean_copy(const char *in, size_t len) {
  char *out = malloc(3 * len + 1);
  if (!out)
    return NULL;
  const unsigned char *p = (const unsigned char *)in;
  size_t i = 0, n = 0;
  while (i < len) {
    uint32_t cp;
    size_t k = utf8_next(p + i, len - i, &cp);
    if (cp == INVALID) {
      memcpy(out + n, replacement, 3);
      n += 3;
    } else if (cp != 0) {
      memcpy(out + n, p + i, k);
      n += k;
    }
    i += k;
  }
  out[n] = '\0';
  return out;
}

/* "" would be the locale's charset to iconv: a configuration mistake
 * here, not a choice. */
static iconv_t open_decoder(const char *charset) {
  if (charset && !charset[0]) {
    errno = EINVAL;
    return (iconv_t)-1;
  }
  return iconv_open("UTF-8", charset ? charset : "ISO-8859-1");
}

bool bf_irc_charset_known(const char *charset) {
  if (!charset)
    return false;
  iconv_t cd = open_decoder(charset);
  if (cd == (iconv_t)-1)
    return false;
  iconv_close(cd);
  return true;
}

char *bf_irc_to_utf8(const char *in, size_t len, const char *fallback) {
  if (!in && len)
    return NULL;
  if (bf_irc_utf8_valid(in, len))
    return clean_copy(in, len);

  char *result = NULL, *buf = NULL;
  iconv_t cd = open_decoder(fallback);
  if (cd == (iconv_t)-1)
    return NULL;
  size_t cap = 4 * len + 16;
  buf = malloc(cap);
  if (!buf)
    goto out;
  char *src = (char *)in; /* iconv's prototype; it does not write */
  size_t src_left = len, used = 0;
  bool flushing = false;
  for (;;) {
    if (cap - used < 16) {
      char *bigger = realloc(buf, cap * 2);
      if (!bigger)
        goto out;
      buf = bigger;
      cap *= 2;
    }
    char *dst = buf + used;
    size_t dst_left = cap - used - 4; /* room for a U+FFFD */
    size_t r = flushing ? iconv(cd, NULL, NULL, &dst, &dst_left)
                        : iconv(cd, &src, &src_left, &dst, &dst_left);
    int err = errno;
    used = (size_t)(dst - buf);
    if (r != (size_t)-1) {
      if (flushing)
        break;
      flushing = true; /* all read: end a stateful charset's shift */
    } else if (err == E2BIG) {
      char *bigger = realloc(buf, cap * 2);
      if (!bigger)
        goto out;
      buf = bigger;
      cap *= 2;
    } else if (!flushing && (err == EILSEQ || err == EINVAL)) {
      /* A byte the charset does not define (CP1252's 0x81, …) or a
       * sequence cut short at the end: U+FFFD, and on. */
      memcpy(buf + used, replacement, 3);
      used += 3;
      src++;
      src_left--;
    } else {
      goto out;
    }
  }
  result = clean_copy(buf, used);
out:
  free(buf);
  iconv_close(cd);
  return result;
}

/* ---- formatting ------------------------------------------------------------- */

enum { BOLD = 1, ITALIC = 2, STRIKE = 4, MONO = 8 };

/* XEP-0393 §5.2 directives, in the order spans with the same extent are
 * nested, outermost first: a preformatted span has no children, so
 * monospace is always innermost. */
static const struct {
  unsigned style;
  char directive;
} styles[] = {{BOLD, '*'}, {ITALIC, '_'}, {STRIKE, '~'}, {MONO, '`'}};

static unsigned style_of_directive(uint32_t cp) {
  for (size_t i = 0; i < 4; i++)
    if ((uint32_t)styles[i].directive == cp)
      return styles[i].style;
  return 0;
}

static size_t style_rank(unsigned style) {
  size_t i = 0;
  while (styles[i].style != style)
    i++;
  return i;
}

/* Whitespace for the "a span does not start or end with whitespace" rule:
 * any a client may count as whitespace. */
static bool is_space_any(uint32_t c) {
  return c == ' ' || c == '\t' || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Whitespace for "an opening directive follows whitespace": only what
 * every client counts as such. */
static bool is_space_strict(uint32_t c) {
  return c == ' ' || c == '\t';
}

/* What may follow a closing directive. XEP-0393 sets no rule, but
 * receivers look for a word boundary there: whitespace or ASCII
 * punctuation that is not itself a directive. */
static bool ends_word(uint32_t c) {
  return is_space_strict(c) ||
         (c < 0x80 && c > 0x20 && c != 0x7F && !(c >= '0' && c <= '9') &&
          !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z') &&
          !style_of_directive(c));
}

/* One line of text with IRC formatting taken out: per character, its
 * bytes (at off[k], UTF-8), code point and IRC styles. */
typedef struct line_text {
  char *bytes;
  size_t n_bytes;
  size_t *off;     /* n_chars + 1 entries */
  uint32_t *cp;
  unsigned char *style;
  size_t n_chars;
} line_text;

typedef struct span {
  size_t start, end; /* characters [start, end) */
  unsigned style;
} span;

/* Reads one line of in (up to '\n' or the end) into t; returns the
 * number of bytes of in read, the '\n' not included. Formatting codes
 * set the styles of the characters after them; other C0 controls but TAB,
 * DEL, C1 controls and the non-characters U+FFFE and U+FFFF (XML 1.0 §2.2)
 * are dropped, invalid UTF-8 becomes U+FFFD. */
static size_t read_line(const char *in, size_t avail, line_text *t) {
  const unsigned char *p = (const unsigned char *)in;
  size_t i = 0;
  unsigned state = 0;
  t->n_bytes = t->n_chars = 0;
  while (i < avail && p[i] != '\n') {
    uint32_t c;
    size_t k = utf8_next(p + i, avail - i, &c);
    switch (c) {
    case 0x02: state ^= BOLD; break;
    case 0x1D: state ^= ITALIC; break;
    case 0x1E: state ^= STRIKE; break;
    case 0x11: state ^= MONO; break;
    case 0x0F: state = 0; break;
    case 0x03:
    case 0x04: k = code_len(in + i); break;
    default:
      if ((c < 0x20 && c != '\t') || is_c1_or_del(c) || c == 0xFFFE ||
          c == 0xFFFF)
        break; /* underline (0x1F), reverse (0x16), other controls */
      const char *bytes = c == INVALID ? replacement : in + i;
      size_t b = c == INVALID ? 3 : k;
      t->off[t->n_chars] = t->n_bytes;
      t->cp[t->n_chars] = c == INVALID ? 0xFFFD : c;
      t->style[t->n_chars] = (unsigned char)state;
      t->n_chars++;
      memcpy(t->bytes + t->n_bytes, bytes, b);
      t->n_bytes += b;
      break;
    }
    i += k;
  }
  t->off[t->n_chars] = t->n_bytes;
  return i;
}

static int span_order(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->start != y->start)
    return x->start < y->start ? -1 : 1;
  if (x->end != y->end)
    return x->end > y->end ? -1 : 1; /* the outer one first */
  size_t rx = style_rank(x->style), ry = style_rank(y->style);
  return rx < ry ? -1 : rx > ry;
}

/* The spans of t that can be written as XEP-0393 styling so that a
 * receiver reads exactly them (XEP-0393 §5.2, §6):
 * - an opening directive follows the start of the line or whitespace (or
 *   another opening directive), is not followed by whitespace, and a
 *   closing one does not follow whitespace: runs are trimmed of
 *   whitespace, and dropped if they begin or end inside a word;
 * - characters of the text that a receiver could take for directives
 *   would pair with ours: no span of a style whose directive is already
 *   in the line, none starting on or followed by a directive character,
 *   and none at all when the text itself could open a span;
 * - spans nest (the first one opened is matched first) and a preformatted
 *   span has no children.
 * Returns the number of spans, sorted outermost first. */
static size_t find_spans(const line_text *t, span *spans, size_t *stack) {
  unsigned literal = 0;
  for (size_t k = 0; k < t->n_chars; k++) {
    unsigned d = style_of_directive(t->cp[k]);
    literal |= d;
    if (d && (k == 0 || is_space_strict(t->cp[k - 1])) &&
        k + 1 < t->n_chars && !is_space_any(t->cp[k + 1]))
      return 0; /* the text styles itself; leave it alone */
  }
  size_t n = 0;
  for (size_t s = 0; s < 4; s++) {
    unsigned style = styles[s].style;
    if (literal & style)
      continue;
    size_t k = 0;
    while (k < t->n_chars) {
      if (!(t->style[k] & style)) {
        k++;
        continue;
      }
      size_t start = k;
      while (k < t->n_chars && (t->style[k] & style))
        k++;
      size_t end = k;
      while (start < end && is_space_any(t->cp[start]))
        start++;
      while (end > start && is_space_any(t->cp[end - 1]))
        end--;
      if (start == end || style_of_directive(t->cp[start]) ||
          (end < t->n_chars && !ends_word(t->cp[end])))
        continue;
      if (start > 0 && !is_space_strict(t->cp[start - 1]))
        continue;
      spans[n++] = (span){start, end, style};
    }
  }
  qsort(spans, n, sizeof *spans, span_order);
  /* Keep the spans that nest in the ones kept before them. stack holds
   * the kept spans still open at the current start, innermost on top. */
  size_t kept = 0, depth = 0;
  for (size_t i = 0; i < n; i++) {
    span s = spans[i];
    while (depth && spans[stack[depth - 1]].end <= s.start)
      depth--;
    if (depth) {
      const span *top = &spans[stack[depth - 1]];
      if (s.end > top->end || top->style == MONO)
        continue;
    }
    spans[kept] = s;
    stack[depth++] = kept++;
  }
  return kept;
}

static char *convert(const char *in, bool styling) {
  size_t len = strlen(in);
  /* A run of a style starts at a code that turns it on (styles end with
   * their line), so there are at most as many spans as such codes. */
  size_t toggles = 0;
  for (size_t i = 0; i < len; i++)
    toggles += in[i] == '\x02' || in[i] == '\x1d' || in[i] == '\x1e' ||
               in[i] == '\x11';
  line_text t = {0};
  span *spans = NULL;
  size_t *stack = NULL;
  char *out = NULL, *result = NULL;
  t.bytes = malloc(3 * len + 1);
  t.off = malloc((len + 1) * sizeof *t.off);
  t.cp = malloc((len + 1) * sizeof *t.cp);
  t.style = malloc(len + 1);
  spans = malloc((toggles + 1) * sizeof *spans);
  stack = malloc((toggles + 1) * sizeof *stack);
  /* Text (each byte at most a U+FFFD), two directives per span. */
  out = malloc(3 * len + 2 * toggles + 1);
  if (!t.bytes || !t.off || !t.cp || !t.style || !spans || !stack || !out)
    goto out;

  char *o = out;
  size_t i = 0;
  for (;;) {
    i += read_line(in + i, len - i, &t);
    size_t n = styling ? find_spans(&t, spans, stack) : 0;
    /* Openers in sorted order (outermost first); closers innermost first,
     * which the nesting makes a stack. */
    size_t next = 0, depth = 0;
    for (size_t k = 0; k <= t.n_chars; k++) {
      while (depth && spans[stack[depth - 1]].end == k)
        *o++ = styles[style_rank(spans[stack[--depth]].style)].directive;
      if (k == t.n_chars)
        break;
      while (next < n && spans[next].start == k) {
        *o++ = styles[style_rank(spans[next].style)].directive;
        stack[depth++] = next++;
      }
      size_t b = t.off[k + 1] - t.off[k];
      memcpy(o, t.bytes + t.off[k], b);
      o += b;
    }
    if (!in[i])
      break;
    *o++ = '\n'; /* spans never cross lines */
    i++;
  }
  *o = '\0';
  result = out;
  out = NULL;
out:
  free(t.bytes);
  free(t.off);
  free(t.cp);
  free(t.style);
  free(spans);
  free(stack);
  free(out);
  return result;
}

char *bf_irc_format_to_styling(const char *in) {
  return in ? convert(in, true) : NULL;
}

char *bf_irc_strip_format(const char *in) {
  return in ? convert(in, false) : NULL;
}

/* ---- CTCP ------------------------------------------------------------------- */

bool bf_irc_ctcp_parse(const char *text, char *buf, size_t size,
                       const char **command, const char **args) {
  if (!text || text[0] != '\x01' || !buf || size == 0)
    return false;
  const char *body = text + 1;
  const char *end = strchr(body, '\x01');
  size_t n = end ? (size_t)(end - body) : strlen(body);
  size_t cmd_len = strcspn(body, " \x01");
  if (cmd_len == 0 || cmd_len >= size)
    return false;
  for (size_t i = 0; i < cmd_len; i++)
    if ((unsigned char)body[i] <= 0x20 || (unsigned char)body[i] >= 0x7F)
      return false;
  if (n >= size) {
    /* Too long for buf: the arguments are cut, at a character boundary
     * so that the cut text stays valid UTF-8 if it was. */
    n = size - 1;
    while (n > cmd_len && ((unsigned char)body[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(buf, body, n);
  buf[n] = '\0';
  buf[cmd_len] = '\0';
  *command = buf;
  *args = cmd_len < n ? buf + cmd_len + 1 : buf + cmd_len;
  return true;
}
