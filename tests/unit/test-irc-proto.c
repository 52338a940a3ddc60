/* Unit tests for transports/irc/irc-proto.c: parsing IRC lines (tags with
 * every escape, sources of all shapes, 15+ parameters, malformed lines),
 * the reader at every split point of a sample stream and byte by byte,
 * long lines, and the line builder's refusals (PROTOCOL-NOTES §5.1, §5.7). */
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

/* What a line should parse into. NULL = absent; tags as "key=value"
 * strings in order (a tag without value as "key="). */
typedef struct expected {
  const char *line;
  const char *tags[6];
  const char *source, *nick, *user, *host;
  const char *command;
  const char *params[BF_IRC_PARAMS_MAX];
  size_t n_params;
} expected;

static const expected samples[] = {
    {"PING :irc.example.org", {0}, NULL, NULL, NULL, NULL, "PING",
     {"irc.example.org"}, 1},
    {"foo bar baz asdf", {0}, NULL, NULL, NULL, NULL, "foo",
     {"bar", "baz", "asdf"}, 3},
    {":coolguy foo bar baz asdf", {0}, "coolguy", "coolguy", NULL, NULL, "foo",
     {"bar", "baz", "asdf"}, 3},
    {"foo bar baz :asdf quux", {0}, NULL, NULL, NULL, NULL, "foo",
     {"bar", "baz", "asdf quux"}, 3},
    {"foo bar baz :", {0}, NULL, NULL, NULL, NULL, "foo", {"bar", "baz", ""}, 3},
    {"foo bar baz ::asdf", {0}, NULL, NULL, NULL, NULL, "foo",
     {"bar", "baz", ":asdf"}, 3},
    {":coolguy foo bar baz :  asdf quux ", {0}, "coolguy", "coolguy", NULL,
     NULL, "foo", {"bar", "baz", "  asdf quux "}, 3},
    {":coolguy PRIVMSG bar :lol :) ", {0}, "coolguy", "coolguy", NULL, NULL,
     "PRIVMSG", {"bar", "lol :) "}, 2},
    {"@a=b;c=32;k;rt=ql7 foo", {"a=b", "c=32", "k=", "rt=ql7"}, NULL, NULL,
     NULL, NULL, "foo", {0}, 0},
    {"@c;h=;a=b :quux ab cd", {"c=", "h=", "a=b"}, "quux", "quux", NULL, NULL,
     "ab", {"cd"}, 1},
    {":src JOIN #chan", {0}, "src", "src", NULL, NULL, "JOIN", {"#chan"}, 1},
    {":src JOIN :#chan", {0}, "src", "src", NULL, NULL, "JOIN", {"#chan"}, 1},
    {":src AWAY", {0}, "src", "src", NULL, NULL, "AWAY", {0}, 0},
    {":src AWAY ", {0}, "src", "src", NULL, NULL, "AWAY", {0}, 0},
    {":cool\tguy foo bar", {0}, "cool\tguy", "cool\tguy", NULL, NULL, "foo",
     {"bar"}, 1},
    {":n!~u@h\x02o\x03" "05st PRIVMSG #c :x", {0}, "n!~u@h\x02o\x03" "05st", "n",
     "~u", "h\x02o\x03" "05st", "PRIVMSG", {"#c", "x"}, 2},
    {":irc.example.com 432  #momo :Erroneous Nickname: x", {0},
     "irc.example.com", "irc.example.com", NULL, NULL, "432",
     {"#momo", "Erroneous Nickname: x"}, 2},
    {":services.esper.net MODE #foo-bar +o foobar  ", {0},
     "services.esper.net", "services.esper.net", NULL, NULL, "MODE",
     {"#foo-bar", "+o", "foobar"}, 3},
    {"@time=2023-01-01T00:00:00.000Z;msgid=abc :alice!al@example.org "
     "PRIVMSG #chan :hello world",
     {"time=2023-01-01T00:00:00.000Z", "msgid=abc"}, "alice!al@example.org",
     "alice", "al", "example.org", "PRIVMSG", {"#chan", "hello world"}, 2},
    {"@+draft/reply=x\\sy;example.com/foo=a\\:b :a TAGMSG #c",
     {"+draft/reply=x y", "example.com/foo=a;b"}, "a", "a", NULL, NULL,
     "TAGMSG", {"#c"}, 1},
    {"COMMAND", {0}, NULL, NULL, NULL, NULL, "COMMAND", {0}, 0},
    {":srv 001 me :Welcome", {0}, "srv", "srv", NULL, NULL, "001",
     {"me", "Welcome"}, 2},
};

static void check_msg(const bf_irc_msg *m, const expected *e) {
  size_t n_tags = 0;
  while (n_tags < 6 && e->tags[n_tags])
    n_tags++;
  assert_int_equal(m->n_tags, n_tags);
  for (size_t i = 0; i < n_tags; i++) {
    char kv[256];
    snprintf(kv, sizeof kv, "%s=%s", m->tags[i].key, m->tags[i].value);
    assert_string_equal(kv, e->tags[i]);
  }
#define STR_OR_NULL(got, want)                                                \
  do {                                                                        \
    if (want)                                                                 \
      assert_string_equal(got, want);                                         \
    else                                                                      \
      assert_null(got);                                                       \
  } while (0)
  STR_OR_NULL(m->source, e->source);
  STR_OR_NULL(m->nick, e->nick);
  STR_OR_NULL(m->user, e->user);
  STR_OR_NULL(m->host, e->host);
  assert_string_equal(m->command, e->command);
  assert_int_equal(m->n_params, e->n_params);
  for (size_t i = 0; i < e->n_params; i++)
    assert_string_equal(m->params[i], e->params[i]);
}

/* Parses from an exact-size heap copy (no NUL after it), so reading past
 * len is caught by ASan. */
static int parse_exact(bf_irc_msg *m, const char *line, size_t len) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, line, len);
  int rc = bf_irc_parse(m, copy, len);
  free(copy);
  return rc;
}

static bf_irc_msg *new_msg(void) {
  bf_irc_msg *m = malloc(sizeof *m);
  assert_non_null(m);
  memset(m, 0x5a, sizeof *m);
  return m;
}

static void test_parse_samples(void **state) {
  (void)state;
  bf_irc_msg *m = new_msg();
  for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
    const expected *e = &samples[i];
    int rc = parse_exact(m, e->line, strlen(e->line));
    if (rc != 0)
      fail_msg("parse(\"%s\") = %d", e->line, rc);
    check_msg(m, e);
  }
  free(m);
}

static void test_tag_escapes(void **state) {
  (void)state;
  bf_irc_msg *m = new_msg();
  const struct {
    const char *line, *value;
  } cases[] = {
      {"@k=a\\:b X", "a;b"},
      {"@k=a\\sb X", "a b"},
      {"@k=a\\\\b X", "a\\b"},
      {"@k=a\\rb X", "a\rb"},
      {"@k=a\\nb X", "a\nb"},
      {"@k=\\:\\s\\\\\\r\\n X", "; \\\r\n"},
      {"@k=\\\\\\\\\\:\\\\s\\s\\r\\n X", "\\\\;\\s \r\n"},
      {"@k=value\\\\ntest X", "value\\ntest"}, /* one character at a time */
      {"@k=value\\1 X", "value1"},             /* unknown escape */
      {"@k=value\\b\\t X", "valuebt"},
      {"@k=value1\\ X", "value1"},             /* lone trailing backslash */
      {"@k=\\ X", ""},
      {"@k=a=b X", "a=b"},                     /* '=' in a value */
      {"@k= X", ""},
      {"@k X", ""},
      {"@k=\xc3\xa9\xe6\x97\xa5 X", "\xc3\xa9\xe6\x97\xa5"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc = parse_exact(m, cases[i].line, strlen(cases[i].line));
    if (rc != 0)
      fail_msg("parse(\"%s\") = %d", cases[i].line, rc);
    assert_int_equal(m->n_tags, 1);
    assert_string_equal(m->tags[0].key, "k");
    assert_string_equal(bf_irc_tag_value(m, "k"), cases[i].value);
    assert_string_equal(m->command, "X");
  }
  /* Duplicates: the last one counts; vendor tags are other keys. */
  const char *dup = "@t1=1;t2=3;t3=4;t1=5;vendor/t2=8 COMMAND";
  assert_int_equal(parse_exact(m, dup, strlen(dup)), 0);
  assert_string_equal(bf_irc_tag_value(m, "t1"), "5");
  assert_string_equal(bf_irc_tag_value(m, "t2"), "3");
  assert_string_equal(bf_irc_tag_value(m, "vendor/t2"), "8");
  assert_null(bf_irc_tag_value(m, "t4"));
  assert_null(bf_irc_tag_value(m, "t"));
  /* As many tags as allowed. */
  char line[BF_IRC_TAGS_COUNT_MAX * 8 + 16] = "@";
  for (int i = 0; i < BF_IRC_TAGS_COUNT_MAX; i++)
    snprintf(line + strlen(line), sizeof line - strlen(line), "%st%d=%d",
             i ? ";" : "", i, i);
  strcat(line, " X");
  assert_int_equal(parse_exact(m, line, strlen(line)), 0);
  assert_int_equal(m->n_tags, BF_IRC_TAGS_COUNT_MAX);
  assert_string_equal(bf_irc_tag_value(m, "t63"), "63");
  free(m);
}

static void test_sources(void **state) {
  (void)state;
  bf_irc_msg *m = new_msg();
  const struct {
    const char *source, *nick, *user, *host;
  } cases[] = {
      {"coolguy!ag@127.0.0.1", "coolguy", "ag", "127.0.0.1"},
      {"coolguy!~ag@localhost", "coolguy", "~ag", "localhost"},
      {"coolguy@127.0.0.1", "coolguy", NULL, "127.0.0.1"},
      {"coolguy!ag", "coolguy", "ag", NULL},
      {"irc.example.org", "irc.example.org", NULL, NULL},
      {"n!u@2001:db8::1", "n", "u", "2001:db8::1"},
      {"a@b!c", "a", NULL, "b!c"}, /* a '!' after the '@' is the host's */
      {"n!@h", "n", "", "h"},
      {"n!u@", "n", "u", ""},
      {"!u@h", "", "u", "h"},
      {"n!u!v@h@i", "n", "u!v", "h@i"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char line[256];
    snprintf(line, sizeof line, ":%s PRIVMSG #c :hi", cases[i].source);
    int rc = parse_exact(m, line, strlen(line));
    if (rc != 0)
      fail_msg("parse(\"%s\") = %d", line, rc);
    assert_string_equal(m->source, cases[i].source);
    STR_OR_NULL(m->nick, cases[i].nick);
    STR_OR_NULL(m->user, cases[i].user);
    STR_OR_NULL(m->host, cases[i].host);
    assert_string_equal(m->command, "PRIVMSG");
  }
  const char *none = "PRIVMSG #c :hi";
  assert_int_equal(parse_exact(m, none, strlen(none)), 0);
  assert_null(m->source);
  assert_null(m->nick);
  assert_null(m->user);
  assert_null(m->host);
  /* A long source is stored twice; one as long as the RFC line fits. */
  char line[BF_IRC_READ_MAX + 1];
  size_t n = BF_IRC_LINE_MAX - 20;
  line[0] = ':';
  memset(line + 1, 'h', n);
  memcpy(line + 1 + n, " PING :x", 9);
  assert_int_equal(parse_exact(m, line, strlen(line)), 0);
  assert_int_equal(strlen(m->nick), n);
  assert_string_equal(m->params[0], "x");
  free(m);
}

static void test_many_params(void **state) {
  (void)state;
  bf_irc_msg *m = new_msg();
  /* Exactly 15: the last one a middle. */
  const char *l15 = "CMD a b c d e f g h i j k l m n o";
  assert_int_equal(parse_exact(m, l15, strlen(l15)), 0);
  assert_int_equal(m->n_params, 15);
  assert_string_equal(m->params[14], "o");
  /* More: the 15th takes the rest of the line, spaces and all. */
  const char *l20 = ":s CMD a b c d e f g h i j k l m n o p  q r :s t";
  assert_int_equal(parse_exact(m, l20, strlen(l20)), 0);
  assert_int_equal(m->n_params, 15);
  assert_string_equal(m->params[13], "n");
  assert_string_equal(m->params[14], "o p  q r :s t");
  /* A trailing 15th loses its ':' (RFC 2812: [ SPACE [ ":" ] trailing ]). */
  const char *lt = "CMD a b c d e f g h i j k l m n :o p";
  assert_int_equal(parse_exact(m, lt, strlen(lt)), 0);
  assert_int_equal(m->n_params, 15);
  assert_string_equal(m->params[14], "o p");
  /* The 15th after several spaces. */
  const char *ls = "CMD a b c d e f g h i j k l m n    o p ";
  assert_int_equal(parse_exact(m, ls, strlen(ls)), 0);
  assert_string_equal(m->params[14], "o p ");
  /* 14 and a trailing. */
  const char *l14 = "CMD a b c d e f g h i j k l m :n o";
  assert_int_equal(parse_exact(m, l14, strlen(l14)), 0);
  assert_int_equal(m->n_params, 14);
  assert_string_equal(m->params[13], "n o");
  free(m);
}

static void expect_invalid(const char *line, size_t len) {
  bf_irc_msg *m = new_msg();
  int rc = parse_exact(m, line, len);
  if (rc != BF_EINVAL)
    fail_msg("parse(\"%.*s\") = %d, expected BF_EINVAL", (int)len, line, rc);
  /* Nothing half-parsed is left to use. */
  assert_null(m->command);
  assert_null(m->source);
  assert_int_equal(m->n_params, 0);
  assert_int_equal(m->n_tags, 0);
  free(m);
}

#define INVALID(lit) expect_invalid(lit, sizeof(lit) - 1)

static void test_malformed(void **state) {
  (void)state;
  INVALID("");
  INVALID(" ");
  INVALID("   ");
  INVALID("@a=b");          /* only tags */
  INVALID("@a=b ");
  INVALID("@a=b   ");
  INVALID(":src");          /* only a source */
  INVALID(":src ");
  INVALID("@a=b :src");
  INVALID("@a=b :src  ");
  INVALID(": CMD");         /* empty source */
  INVALID(":");
  INVALID("@ CMD");         /* empty tag section */
  INVALID("@=v CMD");       /* empty key */
  INVALID("@a;;b CMD");
  INVALID("@a; CMD");
  INVALID("@;a CMD");
  INVALID("@+ CMD");
  INVALID("@+=x CMD");
  INVALID("@a/ CMD");
  INVALID("@/a CMD");
  INVALID("@a b=c d CMD");  /* "b=c" becomes the command: not a token */
  INVALID("@k\x01=v CMD");
  INVALID("@k;k=\\ :s");
  INVALID("PRIV-MSG #c :x"); /* the command is letters and digits */
  INVALID(":s PRIV\x01MSG");
  INVALID("PRIVMSG #c :a\0b");
  INVALID("\0PING");
  INVALID("PING\0");
  INVALID("@a=\0 PING");
  INVALID(":s\0 PING");
  INVALID("PING :a\rb");
  INVALID("PING :a\nb");
  INVALID("PING\r");
  /* Too many tags. */
  char line[BF_IRC_TAGS_COUNT_MAX * 8 + 16] = "@";
  for (int i = 0; i <= BF_IRC_TAGS_COUNT_MAX; i++)
    snprintf(line + strlen(line), sizeof line - strlen(line), "%st%d",
             i ? ";" : "", i);
  strcat(line, " X");
  expect_invalid(line, strlen(line));
  /* Longer than the reader accepts; exactly that long is fine. */
  size_t n = BF_IRC_READ_MAX + 1;
  char *big = malloc(n);
  assert_non_null(big);
  memcpy(big, "PRIVMSG #c :", 12);
  memset(big + 12, 'x', n - 12);
  expect_invalid(big, n);
  bf_irc_msg *m = new_msg();
  assert_int_equal(parse_exact(m, big, n - 1), 0);
  assert_int_equal(strlen(m->params[1]), n - 1 - 12);
  /* A tag section at its limit and a full line behind it, source too. */
  size_t tags = BF_IRC_TAGS_MAX - 1;
  big[0] = '@';
  memcpy(big + 1, "k=", 2);
  memset(big + 3, 'v', tags - 3);
  char nick[101];
  memset(nick, 'n', 100);
  nick[100] = '\0';
  snprintf(big + tags, n - tags, " :%s!u@h PRIVMSG #c :", nick);
  size_t used = strlen(big);
  memset(big + used, 't', n - 1 - used);
  assert_int_equal(parse_exact(m, big, n - 1), 0);
  assert_int_equal(strlen(m->tags[0].value), tags - 3);
  assert_int_equal(strlen(m->nick), 100);
  assert_string_equal(m->host, "h");
  assert_int_equal(strlen(m->params[1]), n - 1 - used);
  free(m);
  free(big);
  /* NULL arguments. */
  assert_int_equal(bf_irc_parse(NULL, "PING", 4), BF_EINVAL);
  m = new_msg();
  assert_int_equal(bf_irc_parse(m, NULL, 4), BF_EINVAL);
  free(m);
}

static void test_is_numeric(void **state) {
  (void)state;
  bf_irc_msg *m = new_msg();
  const char *l = ":s 001 me :hi";
  assert_int_equal(parse_exact(m, l, strlen(l)), 0);
  assert_true(bf_irc_is_numeric(m, 1));
  assert_false(bf_irc_is_numeric(m, 2));
  l = ":s 433 * me :in use";
  assert_int_equal(parse_exact(m, l, strlen(l)), 0);
  assert_true(bf_irc_is_numeric(m, 433));
  l = ":s 4330 x";
  assert_int_equal(parse_exact(m, l, strlen(l)), 0);
  assert_false(bf_irc_is_numeric(m, 433));
  assert_false(bf_irc_is_numeric(m, 4330));
  l = ":s 43 x";
  assert_int_equal(parse_exact(m, l, strlen(l)), 0);
  assert_false(bf_irc_is_numeric(m, 43));
  l = "PRIVMSG x";
  assert_int_equal(parse_exact(m, l, strlen(l)), 0);
  assert_false(bf_irc_is_numeric(m, 0));
  free(m);
}

/* ---- reader ----------------------------------------------------------------- */

#define MAX_LINES 32

typedef struct collected {
  char *lines[MAX_LINES];
  size_t lens[MAX_LINES];
  size_t n;
  size_t stop_at; /* return non-zero on this line (1-based); 0 = never */
} collected;

static int collect(void *data, const char *line, size_t len) {
  collected *c = data;
  assert_true(c->n < MAX_LINES);
  c->lines[c->n] = malloc(len + 1);
  assert_non_null(c->lines[c->n]);
  memcpy(c->lines[c->n], line, len);
  c->lines[c->n][len] = '\0';
  c->lens[c->n] = len;
  c->n++;
  return c->n == c->stop_at ? 42 : 0;
}

static void collected_free(collected *c) {
  for (size_t i = 0; i < c->n; i++)
    free(c->lines[i]);
  c->n = 0;
}

/* A stream mixing CR LF and LF, empty lines, tags and escapes; the lines
 * it holds, in order. */
static const char stream[] =
    "@time=2023-01-01T00:00:00.000Z;msgid=a\\sb :nick!user@host PRIVMSG "
    "#chan :hello world\r\n"
    "PING :server\n"
    "\r\n"
    "\n"
    ":srv 001 me :Welcome to IRC \xc3\xa9\xe6\x97\xa5\r\n"
    "@k=\\:\\s\\\\\\r\\n :a TAGMSG #c\r\n"
    ":s CMD a b c d e f g h i j k l m n o p q\n"
    ":x!y@z NOTICE me :\x01VERSION\x01\r\n";

static const expected stream_lines[] = {
    {"@time=2023-01-01T00:00:00.000Z;msgid=a\\sb :nick!user@host PRIVMSG "
     "#chan :hello world",
     {"time=2023-01-01T00:00:00.000Z", "msgid=a b"}, "nick!user@host", "nick",
     "user", "host", "PRIVMSG", {"#chan", "hello world"}, 2},
    {"PING :server", {0}, NULL, NULL, NULL, NULL, "PING", {"server"}, 1},
    {":srv 001 me :Welcome to IRC \xc3\xa9\xe6\x97\xa5", {0}, "srv", "srv",
     NULL, NULL, "001", {"me", "Welcome to IRC \xc3\xa9\xe6\x97\xa5"}, 2},
    {"@k=\\:\\s\\\\\\r\\n :a TAGMSG #c", {"k=; \\\r\n"}, "a", "a", NULL, NULL,
     "TAGMSG", {"#c"}, 1},
    {":s CMD a b c d e f g h i j k l m n o p q", {0}, "s", "s", NULL, NULL,
     "CMD", {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
             "n", "o p q"}, 15},
    {":x!y@z NOTICE me :\x01VERSION\x01", {0}, "x!y@z", "x", "y", "z",
     "NOTICE", {"me", "\x01VERSION\x01"}, 2},
};

static void check_stream(collected *c) {
  size_t n = sizeof stream_lines / sizeof *stream_lines;
  assert_int_equal(c->n, n);
  bf_irc_msg *m = new_msg();
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(c->lens[i], strlen(stream_lines[i].line));
    assert_memory_equal(c->lines[i], stream_lines[i].line, c->lens[i]);
    assert_int_equal(parse_exact(m, c->lines[i], c->lens[i]), 0);
    check_msg(m, &stream_lines[i]);
  }
  free(m);
  collected_free(c);
}

/* Feeds from exact-size heap copies, so reading past a chunk is caught. */
static int feed_exact(bf_irc_reader *r, const char *data, size_t len,
                      collected *c) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, data, len);
  int rc = bf_irc_reader_feed(r, copy, len, collect, c);
  free(copy);
  return rc;
}

static void test_reader_every_split(void **state) {
  (void)state;
  size_t n = sizeof stream - 1;
  bf_irc_reader *r = malloc(sizeof *r);
  assert_non_null(r);
  collected c = {0};
  for (size_t i = 0; i <= n; i++) {
    bf_irc_reader_init(r);
    assert_int_equal(feed_exact(r, stream, i, &c), 0);
    assert_int_equal(feed_exact(r, stream + i, n - i, &c), 0);
    assert_int_equal(r->len, 0);
    assert_int_equal(r->dropped, 0);
    check_stream(&c);
  }
  /* Three pieces, at every pair of split points. */
  for (size_t i = 0; i <= n; i += 3)
    for (size_t j = i; j <= n; j += 5) {
      bf_irc_reader_init(r);
      assert_int_equal(feed_exact(r, stream, i, &c), 0);
      assert_int_equal(feed_exact(r, stream + i, j - i, &c), 0);
      assert_int_equal(feed_exact(r, stream + j, n - j, &c), 0);
      check_stream(&c);
    }
  /* Byte by byte. */
  bf_irc_reader_init(r);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(feed_exact(r, stream + i, 1, &c), 0);
  check_stream(&c);
  bf_irc_reader_close(r);
  free(r);
}

static void test_reader_partial_and_empty(void **state) {
  (void)state;
  bf_irc_reader *r = malloc(sizeof *r);
  assert_non_null(r);
  collected c = {0};
  bf_irc_reader_init(r);
  /* An unterminated line waits for its end. */
  assert_int_equal(bf_irc_reader_feed(r, "PING :a", 7, collect, &c), 0);
  assert_int_equal(c.n, 0);
  assert_int_equal(bf_irc_reader_feed(r, "", 0, collect, &c), 0);
  assert_int_equal(c.n, 0);
  /* A CR alone is not an end; CR at the end of the buffer waits for LF. */
  assert_int_equal(bf_irc_reader_feed(r, "b\r", 2, collect, &c), 0);
  assert_int_equal(c.n, 0);
  assert_int_equal(bf_irc_reader_feed(r, "\n\r\n\n\r\n", 6, collect, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.lines[0], "PING :ab");
  collected_free(&c);
  /* A lone CR inside a line stays in it (the parser refuses it). */
  assert_int_equal(bf_irc_reader_feed(r, "A\rB\r\n", 5, collect, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.lines[0], "A\rB");
  bf_irc_msg *m = new_msg();
  assert_int_equal(bf_irc_parse(m, c.lines[0], c.lens[0]), BF_EINVAL);
  free(m);
  collected_free(&c);
  /* Only one CR is taken off. */
  assert_int_equal(bf_irc_reader_feed(r, "A\r\r\n", 4, collect, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.lines[0], "A\r");
  collected_free(&c);
  /* A NUL is passed on (with len), for the parser to refuse. */
  assert_int_equal(bf_irc_reader_feed(r, "A\0B\n", 4, collect, &c), 0);
  assert_int_equal(c.n, 1);
  assert_int_equal(c.lens[0], 3);
  collected_free(&c);
  assert_int_equal(r->dropped, 0);
  bf_irc_reader_close(r);
  free(r);
}

static void test_reader_stop(void **state) {
  (void)state;
  bf_irc_reader *r = malloc(sizeof *r);
  assert_non_null(r);
  const char *data = "A\r\nB\r\nC\r\nD";
  collected c = {.stop_at = 2};
  bf_irc_reader_init(r);
  assert_int_equal(bf_irc_reader_feed(r, data, strlen(data), collect, &c), 42);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.lines[1], "B");
  collected_free(&c);
  /* The rest was discarded: a later feed starts afresh. */
  c.stop_at = 0;
  assert_int_equal(bf_irc_reader_feed(r, "E\n", 2, collect, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.lines[0], "E");
  collected_free(&c);
  bf_irc_reader_close(r);
  free(r);
}

/* A line of len bytes (no line ending) starting "PRIVMSG #c :". */
static char *long_line(size_t len) {
  char *s = malloc(len + 1);
  assert_non_null(s);
  memcpy(s, "PRIVMSG #c :", 12);
  for (size_t i = 12; i < len; i++)
    s[i] = (char)('a' + i % 26);
  s[len] = '\0';
  return s;
}

/* Feeds prefix, then the text in pieces of step bytes, then suffix. */
static void feed_stepped(bf_irc_reader *r, const char *text, size_t len,
                         size_t step, collected *c) {
  for (size_t i = 0; i < len; i += step) {
    size_t k = len - i < step ? len - i : step;
    assert_int_equal(feed_exact(r, text + i, k, c), 0);
  }
}

static void test_reader_long_lines(void **state) {
  (void)state;
  bf_irc_reader *r = malloc(sizeof *r);
  assert_non_null(r);
  collected c = {0};
  const size_t steps[] = {1, 7, 100, 511, 512, 4096, BF_IRC_READ_MAX,
                          BF_IRC_READ_MAX + 1, BF_IRC_READ_MAX + 2,
                          3 * BF_IRC_READ_MAX};
  const size_t lens[] = {BF_IRC_READ_MAX - 1, BF_IRC_READ_MAX,
                         BF_IRC_READ_MAX + 1, BF_IRC_READ_MAX + 2,
                         2 * BF_IRC_READ_MAX + 5};
  const char *endings[] = {"\r\n", "\n"};
  for (size_t e = 0; e < 2; e++)
    for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
      for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        size_t len = lens[l];
        char *line = long_line(len);
        size_t el = strlen(endings[e]);
        /* short line, long line, short line: in one buffer. */
        size_t total = 6 + len + el + 6;
        char *all = malloc(total + 1);
        assert_non_null(all);
        memcpy(all, "PING\r\n", 6);
        memcpy(all + 6, line, len);
        memcpy(all + 6 + len, endings[e], el);
        memcpy(all + 6 + len + el, "PONG\r\n", 6);
        bf_irc_reader_init(r);
        feed_stepped(r, all, total, steps[s], &c);
        bool fits = len <= BF_IRC_READ_MAX;
        assert_int_equal(c.n, fits ? 3 : 2);
        assert_string_equal(c.lines[0], "PING");
        assert_string_equal(c.lines[c.n - 1], "PONG");
        if (fits) {
          assert_int_equal(c.lens[1], len);
          assert_memory_equal(c.lines[1], line, len);
        }
        assert_int_equal(r->dropped, fits ? 0 : 1);
        collected_free(&c);
        free(all);
        free(line);
      }
  /* Several long lines in a row are each counted once. */
  bf_irc_reader_init(r);
  char *line = long_line(BF_IRC_READ_MAX + 10);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(feed_exact(r, line, BF_IRC_READ_MAX + 10, &c), 0);
    assert_int_equal(feed_exact(r, "\n", 1, &c), 0);
  }
  assert_int_equal(r->dropped, 3);
  assert_int_equal(c.n, 0);
  free(line);
  bf_irc_reader_close(r);
  free(r);
}

/* Memory: no buffer while no partial line is held; a small one for a
 * short partial line, grown for a long one, given back when it ends. */
static void test_reader_holds_only_partial_lines(void **state) {
  (void)state;
  bf_irc_reader r;
  collected c = {0};
  bf_irc_reader_init(&r);
  assert_int_equal(feed_exact(&r, "PING :a\r\nPING :b\r\n", 18, &c), 0);
  assert_null(r.buf);
  assert_int_equal(c.n, 2);
  collected_free(&c);
  assert_int_equal(feed_exact(&r, "PING :c\r\nPRIV", 13, &c), 0);
  assert_non_null(r.buf);
  assert_int_equal(r.len, 4);
  assert_true(r.cap <= 512);
  char *line = long_line(BF_IRC_READ_MAX - 4);
  assert_int_equal(feed_exact(&r, line + 4, BF_IRC_READ_MAX - 8, &c), 0);
  assert_int_equal(r.cap, BF_IRC_READ_MAX + 2);
  assert_int_equal(feed_exact(&r, "\r\n", 2, &c), 0);
  assert_null(r.buf);
  assert_int_equal(r.cap, 0);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.lens[1], BF_IRC_READ_MAX - 4);
  assert_memory_equal(c.lines[1], "PRIV", 4);
  assert_memory_equal(c.lines[1] + 4, line + 4, BF_IRC_READ_MAX - 8);
  collected_free(&c);
  free(line);
  /* Closing with a partial line held frees it. */
  assert_int_equal(feed_exact(&r, "PART", 4, &c), 0);
  assert_non_null(r.buf);
  bf_irc_reader_close(&r);
  assert_null(r.buf);
}

/* Pauses at line pause_at (1-based) and on every line after it until
 * resumed, as the IRC module does while the XMPP stream is congested. */
typedef struct pausing {
  collected c;
  size_t pause_at;
  bool paused, resumed;
} pausing;

static int collect_or_pause(void *data, const char *line, size_t len) {
  pausing *p = data;
  if (!p->resumed && (p->paused || p->c.n + 1 == p->pause_at)) {
    p->paused = true;
    return BF_IRC_READER_PAUSE;
  }
  return collect(&p->c, line, len);
}

/* Back-pressure: a callback pausing at any line of the sample, at any
 * split point, then more data arriving while paused, then a resume: every
 * line comes out once, in order. */
static void test_reader_pause(void **state) {
  (void)state;
  size_t n = sizeof stream - 1;
  size_t lines = sizeof stream_lines / sizeof *stream_lines;
  bf_irc_reader r;
  for (size_t at = 1; at <= lines; at++)
    for (size_t i = 0; i <= n; i += 7) {
      pausing p = {.pause_at = at};
      bf_irc_reader_init(&r);
      char *copy = malloc(n);
      assert_non_null(copy);
      memcpy(copy, stream, n);
      int rc1 = bf_irc_reader_feed(&r, copy, i, collect_or_pause, &p);
      int rc2 = bf_irc_reader_feed(&r, copy + i, n - i, collect_or_pause, &p);
      free(copy);
      assert_true(p.paused);
      assert_true(rc1 == BF_IRC_READER_PAUSE || rc2 == BF_IRC_READER_PAUSE);
      assert_true(r.holding);
      assert_int_equal(p.c.n, at - 1);
      p.resumed = true;
      assert_int_equal(bf_irc_reader_feed(&r, NULL, 0, collect_or_pause, &p),
                       0);
      assert_false(r.holding);
      assert_null(r.buf);
      check_stream(&p.c);
    }
}

/* ---- building --------------------------------------------------------------- */

static void expect_build(const char *command, const char *const *params,
                         size_t n, bool trailing, const char *line) {
  char out[BF_IRC_LINE_MAX + 1];
  int rc = bf_irc_build(out, sizeof out, command, params, n, trailing);
  if (rc < 0)
    fail_msg("build %s = %d", command ? command : "(no command)", rc);
  assert_int_equal(rc, strlen(line));
  assert_string_equal(out, line);
}

static void expect_refused(const char *command, const char *const *params,
                           size_t n, bool trailing, int want) {
  char out[BF_IRC_LINE_MAX + 1];
  int rc = bf_irc_build(out, sizeof out, command, params, n, trailing);
  if (rc != want)
    fail_msg("build %s (%zu params) = %d, expected %d",
             command ? command : "(no command)", n, rc, want);
}

static void test_build(void **state) {
  (void)state;
  const char *p1[] = {"#chan", "hello world"};
  expect_build("PRIVMSG", p1, 2, true, "PRIVMSG #chan :hello world\r\n");
  const char *p2[] = {"nick"};
  expect_build("NICK", p2, 1, false, "NICK nick\r\n");
  expect_build("NICK", p2, 1, true, "NICK :nick\r\n");
  expect_build("QUIT", NULL, 0, false, "QUIT\r\n");
  expect_build("QUIT", NULL, 0, true, "QUIT\r\n");
  const char *p3[] = {"#c", ""};
  expect_build("TOPIC", p3, 2, true, "TOPIC #c :\r\n");
  const char *p4[] = {"#c", ":) :x"};
  expect_build("PRIVMSG", p4, 2, true, "PRIVMSG #c ::) :x\r\n");
  const char *p5[] = {"u", "0", "*", "Real Name"};
  expect_build("USER", p5, 4, true, "USER u 0 * :Real Name\r\n");
  const char *p6[] = {"#c", "\x01" "ACTION waves\x01"};
  expect_build("PRIVMSG", p6, 2, true, "PRIVMSG #c :\x01" "ACTION waves\x01\r\n");
  /* Round trip through the parser. */
  char out[BF_IRC_LINE_MAX + 1];
  bf_irc_msg *m = new_msg();
  int len = bf_irc_build(out, sizeof out, "USER", p5, 4, true);
  assert_true(len > 2);
  assert_int_equal(bf_irc_parse(m, out, (size_t)len - 2), 0);
  assert_string_equal(m->command, "USER");
  assert_int_equal(m->n_params, 4);
  assert_string_equal(m->params[3], "Real Name");
  free(m);
}

static void test_build_refusals(void **state) {
  (void)state;
  /* CR, LF and CR LF in every position. */
  const char *bad[] = {"a\rb", "a\nb", "a\r\nQUIT", "\r", "\n", "x\r", "\nx"};
  for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
    expect_refused(bad[b], NULL, 0, false, BF_EINVAL);
    for (size_t pos = 0; pos < 4; pos++)
      for (int trailing = 0; trailing < 2; trailing++) {
        const char *params[4] = {"a", "b", "c", "d"};
        params[pos] = bad[b];
        expect_refused("PRIVMSG", params, 4, trailing, BF_EINVAL);
        expect_refused("PRIVMSG", params, pos + 1, trailing, BF_EINVAL);
      }
  }
  /* NUL: a C string ends there, so nothing after it reaches the line. */
  char out[BF_IRC_LINE_MAX + 1];
  const char *nul[] = {"#c", "hi\0QUIT :x"};
  int len = bf_irc_build(out, sizeof out, "PRIVMSG", nul, 2, true);
  assert_int_equal(len, strlen("PRIVMSG #c :hi\r\n"));
  assert_string_equal(out, "PRIVMSG #c :hi\r\n");
  assert_null(memchr(out, '\0', (size_t)len));
  /* Bad middle parameters: empty, a leading ':', a space; also as the
   * last parameter when it is not sent as trailing. */
  const char *middles[] = {"", ":x", ":", "a b", " ", "a ", " a"};
  for (size_t b = 0; b < sizeof middles / sizeof *middles; b++) {
    const char *params[3] = {"a", "b", "c"};
    for (size_t pos = 0; pos < 3; pos++) {
      params[pos] = middles[b];
      if (pos < 2)
        expect_refused("MODE", params, 3, true, BF_EINVAL);
      expect_refused("MODE", params, 3, false, BF_EINVAL);
      params[pos] = pos == 0 ? "a" : pos == 1 ? "b" : "c";
    }
  }
  /* A trailing parameter may hold all of those. */
  for (size_t b = 0; b < sizeof middles / sizeof *middles; b++) {
    const char *params[2] = {"#c", middles[b]};
    assert_true(bf_irc_build(out, sizeof out, "PRIVMSG", params, 2, true) > 0);
  }
  /* Bad commands. */
  const char *ok[] = {"x"};
  expect_refused("", ok, 1, false, BF_EINVAL);
  expect_refused("PRIV MSG", ok, 1, false, BF_EINVAL);
  expect_refused(":PRIVMSG", ok, 1, false, BF_EINVAL);
  expect_refused("PRIV-MSG", ok, 1, false, BF_EINVAL);
  expect_refused(NULL, ok, 1, false, BF_EINVAL);
  expect_refused("PRIVMSG", NULL, 1, false, BF_EINVAL);
  const char *null_param[] = {"#c", NULL};
  expect_refused("PRIVMSG", null_param, 2, true, BF_EINVAL);
  const char *sixteen[16] = {"a", "b", "c", "d", "e", "f", "g", "h",
                             "i", "j", "k", "l", "m", "n", "o", "p"};
  expect_refused("CMD", sixteen, 16, true, BF_EINVAL);
  assert_true(bf_irc_build(out, sizeof out, "CMD", sixteen, 15, true) > 0);
  assert_int_equal(bf_irc_build(NULL, 10, "CMD", NULL, 0, false), BF_EINVAL);
}

static void test_build_limits(void **state) {
  (void)state;
  /* "PRIVMSG #c :" is 12 bytes, CR LF 2: 498 bytes of text make 512. */
  char text[600];
  memset(text, 'x', sizeof text);
  text[498] = '\0';
  const char *params[] = {"#c", text};
  char out[1024];
  assert_int_equal(bf_irc_build(out, sizeof out, "PRIVMSG", params, 2, true),
                   BF_IRC_LINE_MAX);
  assert_int_equal(strlen(out), BF_IRC_LINE_MAX);
  assert_memory_equal(out + BF_IRC_LINE_MAX - 2, "\r\n", 2);
  text[498] = 'x';
  text[499] = '\0';
  assert_int_equal(bf_irc_build(out, sizeof out, "PRIVMSG", params, 2, true),
                   BF_E2BIG);
  /* The output buffer: the line and a NUL must fit. */
  text[10] = '\0';
  size_t need = strlen("PRIVMSG #c :xxxxxxxxxx\r\n");
  assert_int_equal(bf_irc_build(out, need, "PRIVMSG", params, 2, true),
                   BF_E2BIG);
  assert_int_equal(bf_irc_build(out, need + 1, "PRIVMSG", params, 2, true),
                   (int)need);
  assert_int_equal(bf_irc_build(out, 0, "PRIVMSG", params, 2, true), BF_E2BIG);
  /* A refusal wins over a size problem: the caller learns the cause. */
  const char *crlf[] = {"#c", "a\r\n"};
  assert_int_equal(bf_irc_build(out, 4, "PRIVMSG", crlf, 2, true), BF_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_samples),
      cmocka_unit_test(test_tag_escapes),
      cmocka_unit_test(test_sources),
      cmocka_unit_test(test_many_params),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_is_numeric),
      cmocka_unit_test(test_reader_every_split),
      cmocka_unit_test(test_reader_partial_and_empty),
      cmocka_unit_test(test_reader_stop),
      cmocka_unit_test(test_reader_long_lines),
      cmocka_unit_test(test_reader_holds_only_partial_lines),
      cmocka_unit_test(test_reader_pause),
      cmocka_unit_test(test_build),
      cmocka_unit_test(test_build_refusals),
      cmocka_unit_test(test_build_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
