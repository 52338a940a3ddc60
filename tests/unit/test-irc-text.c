/* Unit tests for transports/irc/irc-text.c: UTF-8 validation, splitting
 * XMPP bodies into IRC lines (sizes, character boundaries, CR/LF/NUL
 * injection), decoding Latin-1 and CP1252, IRC formatting to XEP-0393
 * styling, and CTCP framing (PROTOCOL-NOTES §2.12, §5.4–5.7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "babelfish/error.h"
#include "irc/irc-proto.h"
#include "irc/irc-text.h"

/* ---- UTF-8 ------------------------------------------------------------------ */

static void test_utf8_valid(void **state) {
  (void)state;
  const char *valid[] = {
      "", "ascii", "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80",
      "\xc2\x80",         /* U+0080 */
      "\xdf\xbf",         /* U+07FF */
      "\xe0\xa0\x80",     /* U+0800 */
      "\xed\x9f\xbf",     /* U+D7FF */
      "\xee\x80\x80",     /* U+E000 */
      "\xef\xbf\xbf",     /* U+FFFF */
      "\xf0\x90\x80\x80", /* U+10000 */
      "\xf4\x8f\xbf\xbf", /* U+10FFFF */
  };
  for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
    if (!bf_irc_utf8_valid(valid[i], strlen(valid[i])))
      fail_msg("valid[%zu] refused", i);
  const char *invalid[] = {
      "\x80",             /* stray continuation */
      "a\xbf",
      "\xc0\x80",         /* overlong NUL */
      "\xc1\xbf",         /* overlong */
      "\xe0\x80\x80",     /* overlong */
      "\xe0\x9f\xbf",     /* overlong */
      "\xf0\x80\x80\x80", /* overlong */
      "\xf0\x8f\xbf\xbf", /* overlong */
      "\xed\xa0\x80",     /* U+D800 */
      "\xed\xbf\xbf",     /* U+DFFF */
      "\xf4\x90\x80\x80", /* U+110000 */
      "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff",
      "\xc3",             /* truncated */
      "\xe6\x97",
      "\xf0\x9f\x98",
      "\xc3\x28",         /* bad continuation */
      "\xe6\x28\xa5",
  };
  for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
    if (bf_irc_utf8_valid(invalid[i], strlen(invalid[i])))
      fail_msg("invalid[%zu] accepted", i);
  /* len is honoured: a sequence cut by len is invalid. */
  assert_false(bf_irc_utf8_valid("\xc3\xa9", 1));
  assert_true(bf_irc_utf8_valid("ab\xc3", 2));
}

/* ---- splitting -------------------------------------------------------------- */

#define MAX_PIECES 4096

typedef struct pieces {
  char *text[MAX_PIECES];
  size_t len[MAX_PIECES];
  size_t n;
  size_t stop_at;
} pieces;

static int collect(void *data, const char *piece, size_t len) {
  pieces *p = data;
  assert_true(p->n < MAX_PIECES);
  assert_true(len > 0);
  assert_int_equal(strlen(piece), len);
  p->text[p->n] = strdup(piece);
  assert_non_null(p->text[p->n]);
  p->len[p->n] = len;
  p->n++;
  return p->n == p->stop_at ? 9 : 0;
}

static void pieces_free(pieces *p) {
  for (size_t i = 0; i < p->n; i++)
    free(p->text[i]);
  p->n = 0;
}

/* Every piece: within max, valid UTF-8, no control characters but the
 * kept ones, never CR, LF or NUL. */
static void check_pieces(const pieces *p, size_t max) {
  for (size_t i = 0; i < p->n; i++) {
    const char *s = p->text[i];
    if (p->len[i] > max)
      fail_msg("piece %zu: %zu bytes > %zu", i, p->len[i], max);
    assert_true(bf_irc_utf8_valid(s, p->len[i]));
    assert_null(strpbrk(s, "\r\n"));
    for (size_t k = 0; k < p->len[i]; k++) {
      unsigned char c = (unsigned char)s[k];
      if (c < 0x20 && !strchr("\x01\x02\x03\x0f\x11\x16\x1d\x1e\x1f\t", c))
        fail_msg("piece %zu has control 0x%02x", i, c);
      assert_true(c != 0x7f);
    }
  }
}

static char *joined(const pieces *p) {
  size_t total = 0;
  for (size_t i = 0; i < p->n; i++)
    total += p->len[i];
  char *s = malloc(total + 1);
  assert_non_null(s);
  size_t at = 0;
  for (size_t i = 0; i < p->n; i++) {
    memcpy(s + at, p->text[i], p->len[i]);
    at += p->len[i];
  }
  s[at] = '\0';
  return s;
}

/* A body of n characters mixing ASCII words, é, 日本語 and emoji; with
 * spaces or without. */
static char *mixed_body(size_t n, bool spaces) {
  static const char *units[] = {"a", "b", "\xc3\xa9", "\xe6\x97\xa5",
                                "\xe6\x9c\xac", "\xe8\xaa\x9e",
                                "\xf0\x9f\x98\x80", "\xf0\x9f\x91\x8d", "z",
                                " "};
  char *s = malloc(4 * n + 1);
  assert_non_null(s);
  size_t at = 0;
  uint32_t seed = 12345;
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    size_t u = (seed >> 16) % (spaces ? 10 : 9);
    if (i == 0 && u == 9)
      u = 0;
    size_t k = strlen(units[u]);
    memcpy(s + at, units[u], k);
    at += k;
  }
  s[at] = '\0';
  return s;
}

static void test_split_mixed_body(void **state) {
  (void)state;
  const size_t maxes[] = {16, 17, 18, 19, 20, 23, 31, 64, 100, 255, 400, 510};
  pieces p = {0};
  for (int spaces = 0; spaces < 2; spaces++) {
    char *body = mixed_body(2000, spaces);
    assert_true(bf_irc_utf8_valid(body, strlen(body)));
    for (size_t m = 0; m < sizeof maxes / sizeof *maxes; m++) {
      size_t max = maxes[m];
      assert_int_equal(bf_irc_split_text(body, max, collect, &p), 0);
      check_pieces(&p, max);
      char *back = joined(&p);
      assert_string_equal(back, body);
      free(back);
      /* Pieces are as full as the rules allow: a piece ends at a space in
       * its second half, or is within 3 bytes of max. */
      for (size_t i = 0; i + 1 < p.n; i++) {
        bool at_space = p.text[i][p.len[i] - 1] == ' ' && p.len[i] > max / 2;
        if (!at_space && p.len[i] + 3 < max)
          fail_msg("max %zu: piece %zu of %zu bytes", max, i, p.len[i]);
      }
      pieces_free(&p);
    }
    free(body);
  }
}

static void test_split_prefers_space(void **state) {
  (void)state;
  pieces p = {0};
  /* 40 bytes; max 20: the space at 14 (second half) is the cut. */
  const char *text = "aaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbb";
  assert_int_equal(bf_irc_split_text(text, 20, collect, &p), 0);
  assert_int_equal(p.n, 3);
  assert_string_equal(p.text[0], "aaaaaaaaaaaaaa ");
  assert_string_equal(p.text[1], "bbbbbbbbbbbbbbbbbbbb");
  assert_string_equal(p.text[2], "bbbbb");
  pieces_free(&p);
  /* A space in the first half is not used. */
  text = "aaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
  assert_int_equal(bf_irc_split_text(text, 20, collect, &p), 0);
  assert_string_equal(p.text[0], "aaa bbbbbbbbbbbbbbbb");
  pieces_free(&p);
  /* A space just past max is not in the piece. */
  text = "aaaaaaaaaaaaaaaaaaaa bbbb";
  assert_int_equal(bf_irc_split_text(text, 20, collect, &p), 0);
  assert_string_equal(p.text[0], "aaaaaaaaaaaaaaaaaaaa");
  assert_string_equal(p.text[1], " bbbb");
  pieces_free(&p);
  /* Exactly max: one piece. */
  text = "aaaaaaaaaa bbbbbbbbb";
  assert_int_equal(bf_irc_split_text(text, 20, collect, &p), 0);
  assert_int_equal(p.n, 1);
  pieces_free(&p);
  /* Multi-byte characters are never cut: 7 × 3 bytes, max 16. */
  text = "\xe6\x97\xa5\xe6\x97\xa5\xe6\x97\xa5\xe6\x97\xa5\xe6\x97\xa5"
         "\xe6\x97\xa5\xe6\x97\xa5";
  assert_int_equal(bf_irc_split_text(text, 16, collect, &p), 0);
  assert_int_equal(p.n, 2);
  assert_int_equal(p.len[0], 15);
  assert_int_equal(p.len[1], 6);
  pieces_free(&p);
  /* Nor is a colour code. */
  text = "aaaaaaaaaaaaaa\x03" "12,04colour";
  assert_int_equal(bf_irc_split_text(text, 16, collect, &p), 0);
  assert_string_equal(p.text[0], "aaaaaaaaaaaaaa");
  assert_string_equal(p.text[1], "\x03" "12,04colour");
  pieces_free(&p);
}

static void test_split_injection(void **state) {
  (void)state;
  pieces p = {0};
  const struct {
    const char *body;
    const char *want[4];
  } cases[] = {
      {"hi\r\nPRIVMSG NickServ :DROP", {"hi", "PRIVMSG NickServ :DROP"}},
      {"hi\nQUIT :bye", {"hi", "QUIT :bye"}},
      {"hi\rQUIT :bye", {"hi", "QUIT :bye"}},
      {"a\r\r\n\n\rb", {"a", "b"}},
      {"\r\n\r\nx\r\n\r\n", {"x"}},
      {"\r\n\n\r", {NULL}},
      {"", {NULL}},
      {"hi\0QUIT", {"hi"}}, /* a C string ends at its NUL */
      {"a\x07" "b\x1b[31mc\x7f" "d\xc2\x85" "e", {"ab[31mcde"}},
      {"\x02" "bold\x02 \x03" "4red \x1d" "it\x1d \x01" "ACTION x\x01 tab\t",
       {"\x02" "bold\x02 \x03" "4red \x1d" "it\x1d \x01" "ACTION x\x01 tab\t"}},
      {"\x04\x05\x06\x08\x0b\x0c\x0e\x10\x12\x13\x14\x15\x17\x18\x19\x1a\x1c",
       {NULL}},
      {"a\xff" "b\xc0\x80" "c", {"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c"}},
      {"\xed\xa0\x80", {"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}},
      {"\xe6\x97", {"\xef\xbf\xbd"}}, /* a truncated sequence: one U+FFFD */
      {"\xf4\x90\x80\x80", {"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    assert_int_equal(bf_irc_split_text(cases[i].body, 510, collect, &p), 0);
    check_pieces(&p, 510);
    size_t n = 0;
    while (n < 4 && cases[i].want[n])
      n++;
    if (p.n != n)
      fail_msg("case %zu: %zu pieces, expected %zu", i, p.n, n);
    for (size_t k = 0; k < n; k++)
      assert_string_equal(p.text[k], cases[i].want[k]);
    pieces_free(&p);
  }
  /* Line breaks everywhere in a long body, small max: no piece ever
   * holds one, and every line's pieces give the line back. */
  char body[3000];
  size_t at = 0;
  for (int i = 0; at < sizeof body - 40; i++) {
    const char *breaks[] = {"\r\n", "\n", "\r", "\r\n\r\n"};
    at += (size_t)snprintf(body + at, sizeof body - at,
                           "line %d PRIVMSG #x :evil \xc3\xa9%s", i,
                           breaks[i % 4]);
  }
  assert_int_equal(bf_irc_split_text(body, 16, collect, &p), 0);
  check_pieces(&p, 16);
  for (size_t i = 0; i < p.n; i++)
    assert_null(strstr(p.text[i], "\r"));
  pieces_free(&p);
}

static void test_split_errors(void **state) {
  (void)state;
  pieces p = {0};
  assert_int_equal(bf_irc_split_text("hello", 15, collect, &p), BF_EINVAL);
  assert_int_equal(bf_irc_split_text("hello", 0, collect, &p), BF_EINVAL);
  assert_int_equal(bf_irc_split_text(NULL, 100, collect, &p), BF_EINVAL);
  assert_int_equal(bf_irc_split_text("hello", 100, NULL, &p), BF_EINVAL);
  assert_int_equal(p.n, 0);
  /* The callback stops the split; its value comes back. */
  p.stop_at = 2;
  assert_int_equal(bf_irc_split_text("a\nb\nc\nd", 100, collect, &p), 9);
  assert_int_equal(p.n, 2);
  pieces_free(&p);
  p.stop_at = 1;
  assert_int_equal(
      bf_irc_split_text("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 16, collect, &p),
      9);
  assert_int_equal(p.n, 1);
  pieces_free(&p);
}

static void test_text_room(void **state) {
  (void)state;
  /* ":" nick!user@host " PRIVMSG " #chan " :" text "\r\n" */
  assert_int_equal(bf_irc_text_room("PRIVMSG", "#chan", strlen("n!u@h")),
                   512 - strlen(":n!u@h PRIVMSG #chan :\r\n"));
  assert_int_equal(bf_irc_text_room("NOTICE", "nick", 0),
                   512 - strlen(": NOTICE nick :\r\n"));
  assert_int_equal(bf_irc_text_room("PRIVMSG", "#c", 600), 0);
  assert_int_equal(bf_irc_text_room("PRIVMSG", "#c", 512 - 16), 0);
  assert_int_equal(bf_irc_text_room("PRIVMSG", "#c", 512 - 17), 1);
  /* What the room allows fits the builder with the prefix added. */
  size_t room = bf_irc_text_room("PRIVMSG", "#chan", 75);
  char text[512];
  memset(text, 'x', room);
  text[room] = '\0';
  const char *params[] = {"#chan", text};
  char out[BF_IRC_LINE_MAX + 1];
  int len = bf_irc_build(out, sizeof out, "PRIVMSG", params, 2, true);
  assert_int_equal((size_t)len + 1 + 75 + 1, BF_IRC_LINE_MAX);
}

/* ---- decoding --------------------------------------------------------------- */

static void expect_utf8(const char *in, size_t len, const char *fallback,
                        const char *want) {
  char *got = bf_irc_to_utf8(in, len, fallback);
  assert_non_null(got);
  assert_string_equal(got, want);
  assert_true(bf_irc_utf8_valid(got, strlen(got)));
  free(got);
}

#define UTF8(lit, fallback, want) expect_utf8(lit, sizeof(lit) - 1, fallback, want)

static void test_to_utf8(void **state) {
  (void)state;
  UTF8("plain", NULL, "plain");
  UTF8("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", NULL,
       "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80");
  UTF8("", NULL, "");
  /* Latin-1 (the default fallback). */
  UTF8("caf\xe9", NULL, "caf\xc3\xa9");
  UTF8("caf\xe9", "ISO-8859-1", "caf\xc3\xa9");
  UTF8("\xe0\xe7\xf1\xfc\xdf\xff", "ISO-8859-1",
       "\xc3\xa0\xc3\xa7\xc3\xb1\xc3\xbc\xc3\x9f\xc3\xbf");
  UTF8("\x80", "ISO-8859-1", "\xc2\x80"); /* a C1 control, valid UTF-8 */
  /* One invalid byte makes the whole text Latin-1, valid parts too. */
  UTF8("\xc3\xa9 \xe9", NULL, "\xc3\x83\xc2\xa9 \xc3\xa9");
  /* CP1252: the 0x80..0x9F printables. */
  UTF8("\x80 \x93quoted\x94 \x85 \x99", "CP1252",
       "\xe2\x82\xac \xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x80\xa6 \xe2\x84\xa2");
  UTF8("caf\xe9", "CP1252", "caf\xc3\xa9");
  UTF8("WINDOWS-1252 \x80", "WINDOWS-1252", "WINDOWS-1252 \xe2\x82\xac");
  /* Bytes CP1252 leaves undefined become U+FFFD, the rest goes on. */
  UTF8("a\x81" "b\x8d" "c\x8f" "d\x90" "e\x9d" "f", "CP1252",
       "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd" "d\xef\xbf\xbd"
       "e\xef\xbf\xbd" "f");
  /* A multi-byte fallback: a sequence cut short at the end. */
  UTF8("\x93\xfa\x96\x7b\x8c\xea\x93", "SHIFT_JIS",
       "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xef\xbf\xbd");
  /* NUL bytes are dropped, on both paths. */
  UTF8("a\0b", NULL, "ab");
  UTF8("\0caf\xe9\0", NULL, "caf\xc3\xa9");
  /* Long input (the output buffer grows). */
  char big[3000];
  memset(big, '\xe9', sizeof big);
  char *got = bf_irc_to_utf8(big, sizeof big, "CP1252");
  assert_non_null(got);
  assert_int_equal(strlen(got), 2 * sizeof big);
  free(got);
}

static void test_charsets(void **state) {
  (void)state;
  assert_true(bf_irc_charset_known("ISO-8859-1"));
  assert_true(bf_irc_charset_known("CP1252"));
  assert_true(bf_irc_charset_known("latin1"));
  assert_true(bf_irc_charset_known("UTF-8"));
  assert_false(bf_irc_charset_known("NO-SUCH-CHARSET"));
  assert_false(bf_irc_charset_known(""));
  assert_false(bf_irc_charset_known(NULL));
  /* An unknown charset fails when it is needed, and only then. */
  assert_null(bf_irc_to_utf8("caf\xe9", 4, "NO-SUCH-CHARSET"));
  assert_null(bf_irc_to_utf8("caf\xe9", 4, ""));
  char *ok = bf_irc_to_utf8("caf\xc3\xa9", 5, "NO-SUCH-CHARSET");
  assert_non_null(ok);
  assert_string_equal(ok, "caf\xc3\xa9");
  free(ok);
  /* A UTF-8 "fallback" for invalid text: each bad byte becomes U+FFFD. */
  char *r = bf_irc_to_utf8("a\xff" "b", 3, "UTF-8");
  assert_non_null(r);
  assert_string_equal(r, "a\xef\xbf\xbd" "b");
  free(r);
  assert_null(bf_irc_to_utf8(NULL, 3, NULL));
}

/* ---- formatting ------------------------------------------------------------- */

static void test_styling(void **state) {
  (void)state;
  const struct {
    const char *in, *want;
  } cases[] = {
      /* the four styles */
      {"\x02" "bold\x02 text", "*bold* text"},
      {"x \x1d" "italic\x1d y", "x _italic_ y"},
      {"\x1e" "strike\x1e", "~strike~"},
      {"\x11" "mono\x11", "`mono`"},
      /* removed */
      {"\x1f" "under\x1f", "under"},
      {"\x16" "rev\x16", "rev"},
      /* colours, with and without numbers */
      {"\x03" "04red\x03 plain", "red plain"},
      {"\x03" "4red", "red"},
      {"\x03" "04,08x", "x"},
      {"\x03" "12,4x", "x"},
      {"\x03" "123", "3"},
      {"\x03" "1,234", "4"},
      {"\x03" ",04x", ",04x"},
      {"\x03" "4,x", ",x"},
      {"\x03" "x", "x"},
      {"\x03", ""},
      {"a\x03", "a"},
      {"\x04" "FF0000red\x04", "red"},
      {"\x04" "ff0000,00FF00x", "x"},
      {"\x04" "FF0000,00FFx", ",00FFx"},
      {"\x04" "FFx", "FFx"},
      {"\x02\x03" "04bold red\x03\x02", "*bold red*"},
      /* unbalanced: to the end of the line */
      {"\x02" "bold", "*bold*"},
      {"a \x1d" "open", "a _open_"},
      {"\x02\x1d" "x", "*_x_*"},
      /* codes at line ends, empty spans */
      {"text\x02", "text"},
      {"\x02\x02text", "text"},
      {"\x02\x02", ""},
      {"\x02   \x02", "   "},
      {"text \x1d", "text "},
      {"", ""},
      /* reset */
      {"\x02\x1d" "ab\x0f c", "*_ab_* c"},
      {"\x02" "b\x0f" "plain", "bplain"}, /* would end inside a word */
      /* whitespace at the edges moves out of the span */
      {"\x02 bold \x02x", " *bold* x"},
      {"a\x02 b \x02" "c", "a *b* c"},
      /* inside a word: plain */
      {"foo\x02" "bar\x02", "foobar"},
      {"foo\x02" "bar\x02 baz", "foobar baz"},
      {"\x02" "foo\x02" "bar", "foobar"},
      {"\x02" "hi\x02, there", "*hi*, there"},
      {"(\x02" "hi\x02)", "(hi)"},
      /* nesting */
      {"\x02" "bold \x1d" "both\x1d\x02", "*bold _both_*"},
      {"\x02\x1d" "both\x1d\x02", "*_both_*"},
      {"\x02\x1d" "both\x02 italic\x1d", "_*both* italic_"},
      {"\x02\x1d\x1e\x11" "all\x0f", "*_~`all`~_*"},
      {"\x02" "bold \x11" "code\x11\x02", "*bold `code`*"},
      {"\x11" "mono \x02" "bold\x02\x11", "`mono bold`"},
      {"\x02" "a \x1d" "b\x02 c\x1d", "*a b* c"}, /* overlapping */
      /* the text's own directives */
      {"a*b \x02" "c\x02", "a*b c"},
      {"a*b \x1d" "c\x1d", "a*b _c_"},
      {"*hi* \x02" "x\x02", "*hi* x"},
      {"see some_file \x02" "now\x02", "see some_file *now*"},
      {"\x02*x\x02", "*x"},
      {"\x1d" "x\x1d*", "x*"},
      {"`code` \x1d" "it\x1d", "`code` it"},
      /* lines */
      {"\x02" "a\nb\x02", "*a*\nb"},
      {"a\n\x02" "b", "a\n*b*"},
      {"\x02" "a\r\nb", "*a*\nb"},
      /* controls and bad bytes */
      {"a\x07" "b\x01" "c\x1b" "d\x7f" "e\xc2\x85" "f\tg", "abcdef\tg"},
      {"\x01" "ACTION waves\x01", "ACTION waves"},
      {"a\xff" "b", "a\xef\xbf\xbd" "b"},
      {"a\xef\xbf\xbe" "b\xef\xbf\xbf" "c", "abc"},
      {"\xc3\xa9 \x02\xe6\x97\xa5\x02 \xf0\x9f\x98\x80",
       "\xc3\xa9 *\xe6\x97\xa5* \xf0\x9f\x98\x80"},
      {"\x02\xc2\xa0x\xc2\xa0\x02 y", "\xc2\xa0x\xc2\xa0 y"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *got = bf_irc_format_to_styling(cases[i].in);
    assert_non_null(got);
    if (strcmp(got, cases[i].want) != 0)
      fail_msg("case %zu: \"%s\", expected \"%s\"", i, got, cases[i].want);
    free(got);
  }
  assert_null(bf_irc_format_to_styling(NULL));
}

static void test_strip_format(void **state) {
  (void)state;
  const struct {
    const char *in, *want;
  } cases[] = {
      {"\x02" "bold\x02 \x1d" "it\x1d \x1e" "s\x1e \x11" "m\x11 \x1f" "u\x1f",
       "bold it s m u"},
      {"\x03" "04,12nick\x03", "nick"},
      {"\x04" "FF00FFx\x16" "y\x0f" "z", "xyz"},
      {"*literal* _kept_", "*literal* _kept_"},
      {"a\x07" "b\x01", "ab"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *got = bf_irc_strip_format(cases[i].in);
    assert_non_null(got);
    assert_string_equal(got, cases[i].want);
    free(got);
  }
  assert_null(bf_irc_strip_format(NULL));
}

/* ---- CTCP ------------------------------------------------------------------- */

static void expect_ctcp(const char *text, const char *command,
                        const char *args) {
  char buf[64];
  const char *c = NULL, *a = NULL;
  if (!bf_irc_ctcp_parse(text, buf, sizeof buf, &c, &a))
    fail_msg("not a CTCP: %s", text + 1);
  assert_string_equal(c, command);
  assert_string_equal(a, args);
}

static void test_ctcp(void **state) {
  (void)state;
  expect_ctcp("\x01" "ACTION waves\x01", "ACTION", "waves");
  expect_ctcp("\x01" "ACTION waves", "ACTION", "waves");
  expect_ctcp("\x01" "ACTION waves at  you \x01", "ACTION", "waves at  you ");
  expect_ctcp("\x01" "ACTION\x01", "ACTION", "");
  expect_ctcp("\x01" "ACTION", "ACTION", "");
  expect_ctcp("\x01" "ACTION \x01", "ACTION", "");
  expect_ctcp("\x01" "VERSION\x01", "VERSION", "");
  expect_ctcp("\x01" "VERSION", "VERSION", "");
  expect_ctcp("\x01" "PING 1590092030 937335\x01", "PING", "1590092030 937335");
  expect_ctcp("\x01" "PING 123", "PING", "123");
  expect_ctcp("\x01" "version\x01", "version", "");
  expect_ctcp("\x01" "ACTION a\x01 trailing", "ACTION", "a");
  expect_ctcp("\x01" "ACTION caf\xc3\xa9\x01", "ACTION", "caf\xc3\xa9");

  char buf[64];
  const char *c = NULL, *a = NULL;
  const char *no[] = {"ACTION waves", "", " \x01" "ACTION x\x01", "\x01",
                      "\x01\x01", "\x01 waves\x01", "\x01\x02" "X\x01",
                      "\x01\xc3\xa9\x01"};
  for (size_t i = 0; i < sizeof no / sizeof *no; i++)
    if (bf_irc_ctcp_parse(no[i], buf, sizeof buf, &c, &a))
      fail_msg("no[%zu] taken for a CTCP", i);
  assert_false(bf_irc_ctcp_parse(NULL, buf, sizeof buf, &c, &a));
  assert_false(bf_irc_ctcp_parse("\x01" "PING", buf, 0, &c, &a));
  /* A small buffer: the command must fit, the arguments are cut at a
   * character boundary. */
  assert_false(bf_irc_ctcp_parse("\x01" "ACTION x", buf, 6, &c, &a));
  assert_true(bf_irc_ctcp_parse("\x01" "ACTION x", buf, 7, &c, &a));
  assert_string_equal(c, "ACTION");
  assert_string_equal(a, "");
  const char *ee = "\x01" "ACTION \xc3\xa9\xc3\xa9\x01"; /* 11 bytes inside */
  const struct {
    size_t size;
    const char *args;
  } cuts[] = {{9, ""}, {10, "\xc3\xa9"}, {11, "\xc3\xa9"},
              {12, "\xc3\xa9\xc3\xa9"}, {13, "\xc3\xa9\xc3\xa9"}};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    assert_true(bf_irc_ctcp_parse(ee, buf, cuts[i].size, &c, &a));
    assert_string_equal(c, "ACTION");
    assert_string_equal(a, cuts[i].args);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_valid),
      cmocka_unit_test(test_split_mixed_body),
      cmocka_unit_test(test_split_prefers_space),
      cmocka_unit_test(test_split_injection),
      cmocka_unit_test(test_split_errors),
      cmocka_unit_test(test_text_room),
      cmocka_unit_test(test_to_utf8),
      cmocka_unit_test(test_charsets),
      cmocka_unit_test(test_styling),
      cmocka_unit_test(test_strip_format),
      cmocka_unit_test(test_ctcp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
