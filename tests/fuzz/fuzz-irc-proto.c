/* libFuzzer target for the IRC transport's line format and text code
 * (transports/irc/irc-proto.c, irc-text.c).
 *
 * The input goes to the line reader in two pieces split at the first
 * byte's value, and must give the same lines (and drop count) as in one
 * piece. Every line is parsed; a parsed message must rebuild with
 * bf_irc_build (or be too long for 512 bytes) and parse back into the
 * same command and parameters. The input as a C string goes through
 * bf_irc_split_text (max from the first byte): every piece within max,
 * valid UTF-8, no CR/LF, and the pieces give back each line as split with
 * an unlimited max; through bf_irc_format_to_styling and
 * bf_irc_strip_format: valid UTF-8, no controls but TAB and LF, and the
 * same text once directives are taken out; through bf_irc_to_utf8 and
 * bf_irc_ctcp_parse. Everything is freed (LeakSanitizer checks).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/error.h"
#include "irc/irc-proto.h"
#include "irc/irc-text.h"

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                \
    }                                                                         \
  } while (0)

/* The lines a reader gave, each as its length and bytes. */
typedef struct record {
  char *data;
  size_t len, cap;
} record;

static void record_add(record *r, const void *bytes, size_t n) {
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : 256;
    while (cap < r->len + n)
      cap *= 2;
    r->data = realloc(r->data, cap);
    CHECK(r->data);
    r->cap = cap;
  }
  memcpy(r->data + r->len, bytes, n);
  r->len += n;
}

static bf_irc_msg msg, again;

static void check_message(const bf_irc_msg *m) {
  CHECK(m->command && m->command[0]);
  CHECK(m->n_params <= BF_IRC_PARAMS_MAX);
  CHECK(m->n_tags <= BF_IRC_TAGS_COUNT_MAX);
  CHECK(!m->source == !m->nick);
  CHECK(!m->user || m->source);
  CHECK(!m->host || m->source);
  for (size_t i = 0; i < m->n_tags; i++)
    CHECK(bf_irc_tag_value(m, m->tags[i].key) != NULL);
  for (size_t i = 0; i < m->n_params; i++)
    CHECK(!strpbrk(m->params[i], "\r\n"));

  /* Middle parameters as parsed are valid middles; the last one goes as
   * a trailing one, so only the 512-byte limit can refuse the line. */
  char line[BF_IRC_LINE_MAX + 1];
  int len = bf_irc_build(line, sizeof line, m->command, m->params,
                         m->n_params, m->n_params > 0);
  CHECK(len > 0 || len == BF_E2BIG);
  if (len <= 0)
    return;
  CHECK((size_t)len <= BF_IRC_LINE_MAX && line[len - 2] == '\r' &&
        line[len - 1] == '\n' && strlen(line) == (size_t)len);
  CHECK(bf_irc_parse(&again, line, (size_t)len - 2) == 0);
  CHECK(strcmp(again.command, m->command) == 0);
  CHECK(again.n_params == m->n_params);
  for (size_t i = 0; i < m->n_params; i++)
    CHECK(strcmp(again.params[i], m->params[i]) == 0);
  CHECK(again.source == NULL && again.n_tags == 0);
}

static int on_line(void *data, const char *line, size_t len) {
  record *r = data;
  CHECK(len > 0 && len <= BF_IRC_READ_MAX);
  CHECK(!memchr(line, '\n', len));
  record_add(r, &len, sizeof len);
  record_add(r, line, len);
  if (bf_irc_parse(&msg, line, len) == 0)
    check_message(&msg);
  else
    CHECK(msg.command == NULL && msg.n_params == 0);
  return 0;
}

/* A reader whose callback pauses at line pause_at and on every line
 * after it until resumed (back-pressure), then hands out the rest. */
typedef struct pausing {
  record rec;
  size_t lines, pause_at;
  bool paused, resumed;
} pausing;

static int on_line_pausing(void *data, const char *line, size_t len) {
  pausing *p = data;
  if (!p->resumed && (p->paused || p->lines + 1 == p->pause_at)) {
    p->paused = true;
    return BF_IRC_READER_PAUSE;
  }
  p->lines++;
  return on_line(&p->rec, line, len);
}

/* Pieces of bf_irc_split_text: bytes and the end offset of each. */
typedef struct split {
  size_t max;
  record text;
  size_t *ends;
  size_t n, cap;
} split;

static int on_piece(void *data, const char *piece, size_t len) {
  split *s = data;
  CHECK(len > 0 && len <= s->max && strlen(piece) == len);
  CHECK(bf_irc_utf8_valid(piece, len));
  CHECK(!strpbrk(piece, "\r\n\x7f"));
  record_add(&s->text, piece, len);
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 16;
    s->ends = realloc(s->ends, s->cap * sizeof *s->ends);
    CHECK(s->ends);
  }
  s->ends[s->n++] = s->text.len;
  return 0;
}

static void check_split(const char *text, size_t max) {
  split cut = {.max = max}, whole = {.max = SIZE_MAX};
  int rc = bf_irc_split_text(text, max, on_piece, &cut);
  CHECK(rc == 0);
  CHECK(bf_irc_split_text(text, SIZE_MAX, on_piece, &whole) == 0);
  /* The same bytes, and every line's end is a piece's end. */
  CHECK(cut.text.len == whole.text.len);
  CHECK(cut.text.len == 0 || memcmp(cut.text.data, whole.text.data,
                                    cut.text.len) == 0);
  size_t k = 0;
  for (size_t i = 0; i < whole.n; i++) {
    while (k < cut.n && cut.ends[k] < whole.ends[i])
      k++;
    CHECK(k < cut.n && cut.ends[k] == whole.ends[i]);
  }
  free(cut.text.data);
  free(cut.ends);
  free(whole.text.data);
  free(whole.ends);
}

static bool is_directive(char c) {
  return c == '*' || c == '_' || c == '~' || c == '`';
}

/* s without its styling directives (malloc'd). */
static char *undirected(const char *s) {
  char *out = malloc(strlen(s) + 1);
  CHECK(out);
  char *o = out;
  for (; *s; s++)
    if (!is_directive(*s))
      *o++ = *s;
  *o = '\0';
  return out;
}

static void check_clean(const char *s) {
  CHECK(s);
  CHECK(bf_irc_utf8_valid(s, strlen(s)));
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    CHECK((*p >= 0x20 && *p != 0x7f) || *p == '\t' || *p == '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bf_irc_reader two, one;
  if (size < 1)
    return 0;
  const char *in = (const char *)data;

  /* Framing: two pieces or one, the same lines. */
  size_t split_at = data[0] < size ? data[0] : size;
  record a = {0}, b = {0};
  bf_irc_reader_init(&two);
  CHECK(bf_irc_reader_feed(&two, in, split_at, on_line, &a) == 0);
  CHECK(bf_irc_reader_feed(&two, in + split_at, size - split_at, on_line,
                           &a) == 0);
  bf_irc_reader_init(&one);
  CHECK(bf_irc_reader_feed(&one, in, size, on_line, &b) == 0);
  CHECK(a.len == b.len && (a.len == 0 || !memcmp(a.data, b.data, a.len)));
  /* Paused at some line while the data comes in two pieces, then
   * resumed: the same lines again. */
  static bf_irc_reader paused;
  pausing p = {.pause_at = 1 + data[0] % 8};
  bf_irc_reader_init(&paused);
  int rc = bf_irc_reader_feed(&paused, in, split_at, on_line_pausing, &p);
  CHECK(rc == 0 || rc == BF_IRC_READER_PAUSE);
  rc = bf_irc_reader_feed(&paused, in + split_at, size - split_at,
                          on_line_pausing, &p);
  CHECK(rc == 0 || rc == BF_IRC_READER_PAUSE);
  p.resumed = true;
  CHECK(bf_irc_reader_feed(&paused, NULL, 0, on_line_pausing, &p) == 0);
  CHECK(!paused.holding && paused.len == one.len);
  CHECK(p.rec.len == b.len && (b.len == 0 || !memcmp(p.rec.data, b.data, b.len)));
  bf_irc_reader_close(&paused);
  free(p.rec.data);
  CHECK(two.dropped == one.dropped && two.len == one.len);
  /* A buffer is held only for a partial line. */
  CHECK(!two.buf == !two.len && !one.buf == !one.len);
  bf_irc_reader_close(&two);
  bf_irc_reader_close(&one);
  free(a.data);
  free(b.data);

  /* Parsing the whole input as one line, NULs and all. */
  if (bf_irc_parse(&msg, in, size) == 0)
    check_message(&msg);

  /* Text: the input as a C string (up to its first NUL). */
  char *text = malloc(size + 1);
  CHECK(text);
  memcpy(text, in, size);
  text[size] = '\0';
  check_split(text, 16 + (size_t)data[0] * 2);

  char *styled = bf_irc_format_to_styling(text);
  char *plain = bf_irc_strip_format(text);
  check_clean(styled);
  check_clean(plain);
  char *u1 = undirected(styled), *u2 = undirected(plain);
  CHECK(strcmp(u1, u2) == 0);
  free(u1);
  free(u2);
  free(styled);
  free(plain);

  char *utf8 = bf_irc_to_utf8(in, size, data[0] & 1 ? "CP1252" : NULL);
  CHECK(utf8 && bf_irc_utf8_valid(utf8, strlen(utf8)));
  free(utf8);

  char buf[BF_IRC_LINE_MAX];
  const char *command, *args;
  size_t buf_size = 1 + data[0] % sizeof buf;
  if (bf_irc_ctcp_parse(text, buf, buf_size, &command, &args)) {
    CHECK(command[0] && strlen(command) < buf_size);
    CHECK(args >= buf && args + strlen(args) < buf + buf_size);
  }
  free(text);
  return 0;
}
