/* Unit tests for src/jid.c: RFC 7622 parsing, stringprep normalisation,
 * part limits and XEP-0106 escaping (every example of the XEP). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stringprep.h>

#include "babelfish/error.h"
#include "babelfish/jid.h"

/* Parses str, expects success and the three parts (NULL = absent). */
static void expect_jid(const char *str, const char *local, const char *domain,
                       const char *resource)
{
  bf_jid jid;
  int rc = bf_jid_parse(&jid, str);
  if (rc != 0)
    fail_msg("bf_jid_parse(\"%s\") = %d", str, rc);
  if (local)
    assert_string_equal(jid.local, local);
  else
    assert_null(jid.local);
  assert_string_equal(jid.domain, domain);
  if (resource)
    assert_string_equal(jid.resource, resource);
  else
    assert_null(jid.resource);
  bf_jid_close(&jid);
  assert_null(jid.storage);
  assert_null(jid.domain);
}

static void expect_invalid(const char *str)
{
  bf_jid jid;
  memset(&jid, 0xa5, sizeof jid);
  int rc = bf_jid_parse(&jid, str);
  if (rc != BF_EINVAL)
    fail_msg("bf_jid_parse(\"%s\") = %d, expected BF_EINVAL", str, rc);
  /* The contract: left zeroed, nothing to free. */
  assert_null(jid.local);
  assert_null(jid.domain);
  assert_null(jid.resource);
  assert_null(jid.storage);
}

static char *repeat(const char *unit, size_t times, const char *tail)
{
  size_t n = strlen(unit), t = strlen(tail);
  char *s = malloc(n * times + t + 1);
  assert_non_null(s);
  for (size_t i = 0; i < times; i++)
    memcpy(s + i * n, unit, n);
  memcpy(s + n * times, tail, t + 1);
  return s;
}

static void test_parts(void **state)
{
  (void)state;
  expect_jid("example.com", NULL, "example.com", NULL);
  expect_jid("alice@example.com", "alice", "example.com", NULL);
  expect_jid("example.com/desk", NULL, "example.com", "desk");
  expect_jid("alice@example.com/desk", "alice", "example.com", "desk");
  /* RFC 7622 §3.1: split at the first '/', then the first '@' before it;
   * the resource keeps every later '@' and '/'. */
  expect_jid("a@b.c/r@s/t", "a", "b.c", "r@s/t");
  expect_jid("b.c/r@s", NULL, "b.c", "r@s");
  expect_jid("a@b/c/", "a", "b", "c/");
  expect_jid("a@b//", "a", "b", "/");
  expect_jid("localhost", NULL, "localhost", NULL);
  expect_jid("a@127.0.0.1/r", "a", "127.0.0.1", "r");
  expect_jid("a@[::1]/r", "a", "[::1]", "r");
  expect_jid("[2001:db8::7]", NULL, "[2001:db8::7]", NULL);
  expect_jid("irc_gw.example-1.org", NULL, "irc_gw.example-1.org", NULL);
  expect_jid("x/Nick Name", NULL, "x", "Nick Name");
  expect_jid("x/[away]|nick^", NULL, "x", "[away]|nick^");
  expect_jid("d\\27artagnan@musketeers.lit", "d\\27artagnan",
             "musketeers.lit", NULL);
}

static void test_normalisation(void **state)
{
  (void)state;
  expect_jid("Alice@LocalHost/Res", "alice", "localhost", "Res");
  expect_jid("Stra\xc3\x9f" "e@x", "strasse", "x", NULL);
  expect_jid("#Chan%irc.net@gw", "#chan%irc.net", "gw", NULL);
  expect_jid("a@Example.COM.", "a", "example.com", NULL);
  expect_jid("example.com./r", NULL, "example.com", "r");
  /* Non-ASCII domain: nameprep case-folds it (Ä → ä). */
  expect_jid("u@\xc3\x84pfel.example", "u", "\xc3\xa4pfel.example", NULL);
  /* U+00AD SOFT HYPHEN is mapped to nothing by all three profiles. */
  expect_jid("a\xc2\xad" "b@x/c\xc2\xad" "d", "ab", "x", "cd");
  /* resourceprep keeps case and spaces; NFKC still applies (ﬁ → fi). */
  expect_jid("x/Big \xef\xac\x81sh", NULL, "x", "Big fish");

  bf_jid jid;
  assert_int_equal(bf_jid_parse(&jid, "Alice@LocalHost/Res"), 0);
  char *full = bf_jid_full(&jid);
  char *bare = bf_jid_bare(&jid);
  assert_string_equal(full, "alice@localhost/Res");
  assert_string_equal(bare, "alice@localhost");
  free(full);
  free(bare);
  bf_jid_close(&jid);

  assert_int_equal(bf_jid_parse(&jid, "Example.org/r"), 0);
  full = bf_jid_full(&jid);
  bare = bf_jid_bare(&jid);
  assert_string_equal(full, "example.org/r");
  assert_string_equal(bare, "example.org");
  free(full);
  free(bare);
  bf_jid_close(&jid);
  bf_jid_close(NULL);
}

static void test_invalid(void **state)
{
  (void)state;
  expect_invalid("");
  expect_invalid("@x");
  expect_invalid("a@");
  expect_invalid("x/");
  expect_invalid("/r");
  expect_invalid("a@/r");
  expect_invalid("@");
  expect_invalid("/");
  expect_invalid("a b@x");
  expect_invalid("d'artagnan@x");
  expect_invalid("a:b@x");
  expect_invalid("a<b>@x");
  /* Local "a", domain "b@c": '@' is not a domain character. */
  expect_invalid("a@b@c");
  expect_invalid("a@b c");
  expect_invalid("a@b\tc");
  expect_invalid("a@.x");
  expect_invalid("a@x..y");
  expect_invalid("a@.");
  expect_invalid("a@x..");
  expect_invalid("a@x:5222");
  expect_invalid("a@[::1");
  expect_invalid("a@[zz]");
  expect_invalid("a@[]");
  expect_invalid("a@[127.0.0.1]");
  /* An ASCII label of 64 octets (RFC 1035 §2.3.4). */
  char *label = repeat("a", 64, ".example");
  expect_invalid(label);
  free(label);
  label = repeat("a", 63, ".example");
  expect_jid(label, NULL, label, NULL);
  free(label);
  /* Invalid UTF-8: stray byte, overlong '/', surrogate, cut sequence,
   * past U+10FFFF. */
  expect_invalid("a\xff" "b@x");
  expect_invalid("\xc0\xaf@x");
  expect_invalid("\xed\xa0\x80@x");
  expect_invalid("x/\xc3");
  expect_invalid("\xf4\x90\x80\x80@x");
  /* ASCII controls in each part. */
  expect_invalid("x/a\x01" "b");
  expect_invalid("x/a\x7f" "b");
  expect_invalid("a\x01" "b@x");
  expect_invalid("a\x01" "b");

  bf_jid jid;
  assert_int_equal(bf_jid_parse(&jid, NULL), BF_EINVAL);
  assert_null(jid.storage);
  assert_int_equal(bf_jid_parse(NULL, "a@b"), BF_EINVAL);
}

static void test_lengths(void **state)
{
  (void)state;
  char *s = repeat("a", BF_JID_PART_MAX, "@x");
  bf_jid jid;
  assert_int_equal(bf_jid_parse(&jid, s), 0);
  assert_int_equal(strlen(jid.local), BF_JID_PART_MAX);
  bf_jid_close(&jid);
  free(s);
  s = repeat("a", BF_JID_PART_MAX + 1, "@x");
  expect_invalid(s);
  free(s);

  s = repeat("r", BF_JID_PART_MAX, "");
  char *str = malloc(strlen(s) + 3);
  assert_non_null(str);
  sprintf(str, "x/%s", s);
  expect_jid(str, NULL, "x", s);
  free(str);
  free(s);
  s = repeat("r", BF_JID_PART_MAX + 1, "");
  str = malloc(strlen(s) + 3);
  assert_non_null(str);
  sprintf(str, "x/%s", s);
  expect_invalid(str);
  free(str);
  free(s);

  /* Domain: 16 labels of 63 octets and 15 dots = 1023 octets. */
  char *label63 = repeat("d", 63, "");
  str = malloc(16 * 64 + 2);
  assert_non_null(str);
  str[0] = '\0';
  for (int i = 0; i < 16; i++) {
    if (i)
      strcat(str, ".");
    strcat(str, label63);
  }
  assert_int_equal(strlen(str), BF_JID_PART_MAX);
  expect_jid(str, NULL, str, NULL);
  char *copy = strdup(str);
  assert_non_null(copy);
  /* A trailing dot makes 1024 octets before, 1023 after preparation. */
  strcat(str, ".");
  expect_jid(str, NULL, copy, NULL);
  str[BF_JID_PART_MAX] = 'd';
  expect_invalid(str);
  free(copy);
  free(str);
  free(label63);

  /* ß → ss keeps the byte count: 511 × ß (1022 octets) is accepted. */
  s = repeat("\xc3\x9f", 511, "@x");
  assert_int_equal(bf_jid_parse(&jid, s), 0);
  assert_int_equal(strlen(jid.local), 1022);
  assert_int_equal(strncmp(jid.local, "ssss", 4), 0);
  bf_jid_close(&jid);
  free(s);
  /* Preparation can grow a part past the limit: İ (U+0130, 2 octets)
   * folds to i + U+0307 (3 octets). 341 of them give 1023 octets, 342
   * give 1026 (libidn reports a too small buffer). */
  s = repeat("\xc4\xb0", 341, "@x");
  assert_int_equal(bf_jid_parse(&jid, s), 0);
  assert_int_equal(strlen(jid.local), BF_JID_PART_MAX);
  bf_jid_close(&jid);
  free(s);
  s = repeat("\xc4\xb0", 342, "@x");
  expect_invalid(s);
  free(s);
  s = repeat("\xc4\xb0", 500, "@x");
  expect_invalid(s);
  free(s);
  /* U+FDFA (3 octets) becomes 33 octets under NFKC: 31 fit, 32 do not. */
  s = repeat("\xef\xb7\xba", 31, "");
  str = malloc(strlen(s) + 3);
  assert_non_null(str);
  sprintf(str, "x/%s", s);
  assert_int_equal(bf_jid_parse(&jid, str), 0);
  assert_int_equal(strlen(jid.resource), 31 * 33);
  bf_jid_close(&jid);
  free(str);
  free(s);
  s = repeat("\xef\xb7\xba", 32, "");
  str = malloc(strlen(s) + 3);
  assert_non_null(str);
  sprintf(str, "x/%s", s);
  expect_invalid(str);
  free(str);
  free(s);
  /* Soft hyphens vanish: 1100 octets in, 2 out, accepted. */
  s = repeat("\xc2\xad", 550, "ab@x");
  expect_jid(s, "ab", "x", NULL);
  free(s);
  /* A huge part is refused without preparing it. */
  s = repeat("a", 100000, "@x");
  expect_invalid(s);
  free(s);
}

/* Every prefix of a JID either parses to something that survives a round
 * trip through bf_jid_full, or fails cleanly (split points, ASan). */
static void test_prefixes(void **state)
{
  (void)state;
  const char *inputs[] = {"Alice@Example.com./Res/x@y",
                          "#c%irc@gw.example/Nick Name",
                          "Stra\303\237e@\303\204pfel.example/\303\251t\303\251"};
  for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
    size_t len = strlen(inputs[k]);
    size_t ok = 0;
    for (size_t cut = 0; cut <= len; cut++) {
      char *prefix = strndup(inputs[k], cut);
      assert_non_null(prefix);
      bf_jid jid;
      int rc = bf_jid_parse(&jid, prefix);
      if (rc == 0) {
        ok++;
        char *full = bf_jid_full(&jid);
        assert_non_null(full);
        bf_jid again;
        assert_int_equal(bf_jid_parse(&again, full), 0);
        assert_true(bf_jid_equal(&jid, &again));
        char *full2 = bf_jid_full(&again);
        assert_string_equal(full, full2);
        free(full2);
        free(full);
        bf_jid_close(&again);
        bf_jid_close(&jid);
      } else {
        assert_int_equal(rc, BF_EINVAL);
        assert_null(jid.storage);
      }
      free(prefix);
    }
    assert_true(ok > len / 2);
  }
}

static void test_equal(void **state)
{
  (void)state;
  bf_jid a, b, c, d, e;
  assert_int_equal(bf_jid_parse(&a, "Alice@Example.com/r"), 0);
  assert_int_equal(bf_jid_parse(&b, "alice@example.com./r"), 0);
  assert_int_equal(bf_jid_parse(&c, "alice@example.com/R"), 0);
  assert_int_equal(bf_jid_parse(&d, "example.com/r"), 0);
  assert_int_equal(bf_jid_parse(&e, "alice@example.com"), 0);
  assert_true(bf_jid_equal(&a, &b));
  assert_true(bf_jid_bare_equal(&a, &b));
  assert_false(bf_jid_equal(&a, &c));
  assert_true(bf_jid_bare_equal(&a, &c));
  assert_false(bf_jid_equal(&a, &d));
  assert_false(bf_jid_bare_equal(&a, &d));
  assert_false(bf_jid_equal(&a, &e));
  assert_true(bf_jid_bare_equal(&a, &e));
  assert_true(bf_jid_equal(&e, &e));
  bf_jid_close(&a);
  bf_jid_close(&b);
  bf_jid_close(&c);
  bf_jid_close(&d);
  bf_jid_close(&e);
}

static void expect_prep(int (*prep)(const char *, char **), const char *in,
                        int want_rc, const char *want)
{
  char *out = (char *)"untouched";
  int rc = prep(in, &out);
  if (rc != want_rc)
    fail_msg("prep(\"%s\") = %d, expected %d", in ? in : "(null)", rc,
             want_rc);
  if (want) {
    assert_string_equal(out, want);
    free(out);
  } else {
    assert_null(out);
  }
}

static void test_prep(void **state)
{
  (void)state;
  expect_prep(bf_jid_nodeprep, "Alice", 0, "alice");
  expect_prep(bf_jid_nodeprep, "#Chan%irc.net", 0, "#chan%irc.net");
  expect_prep(bf_jid_nodeprep, "Stra\xc3\x9f" "e", 0, "strasse");
  expect_prep(bf_jid_nodeprep, "a b", BF_EINVAL, NULL);
  expect_prep(bf_jid_nodeprep, "a@b", BF_EINVAL, NULL);
  expect_prep(bf_jid_nodeprep, "d'artagnan", BF_EINVAL, NULL);
  expect_prep(bf_jid_nodeprep, "d\\27artagnan", 0, "d\\27artagnan");
  expect_prep(bf_jid_nodeprep, "", BF_EINVAL, NULL);
  expect_prep(bf_jid_nodeprep, "\xc2\xad", BF_EINVAL, NULL);
  expect_prep(bf_jid_nodeprep, "\xff", BF_EINVAL, NULL);
  expect_prep(bf_jid_nodeprep, NULL, BF_EINVAL, NULL);
  expect_prep(bf_jid_nameprep, "Example.COM.", 0, "example.com");
  expect_prep(bf_jid_nameprep, "[::1]", 0, "[::1]");
  expect_prep(bf_jid_nameprep, "a b", BF_EINVAL, NULL);
  expect_prep(bf_jid_nameprep, ".", BF_EINVAL, NULL);
  expect_prep(bf_jid_resourceprep, "Nick Name", 0, "Nick Name");
  expect_prep(bf_jid_resourceprep, "[away]|nick^", 0, "[away]|nick^");
  expect_prep(bf_jid_resourceprep, "a\x01" "b", BF_EINVAL, NULL);
  char *big = repeat("r", BF_JID_PART_MAX + 1, "");
  expect_prep(bf_jid_resourceprep, big, BF_EINVAL, NULL);
  big[BF_JID_PART_MAX] = '\0';
  expect_prep(bf_jid_resourceprep, big, 0, big);
  free(big);
  assert_int_equal(bf_jid_nodeprep("a", NULL), BF_EINVAL);
}

/* XEP-0106 examples: raw (user input / foreign address) and escaped. */
static const struct {
  const char *raw;
  const char *escaped;
} xep0106[] = {
    /* §5.1 JID examples 1–12. 9–11 follow the rules of §4.1 rule 7 and
     * §4.2 (a backslash that starts no sequence stays); the table of
     * XEP-0106 1.1 prints \5c there, which contradicts its own rules
     * and its IMPS example (\2is stays). */
    {"space cadet", "space\\20cadet"},
    {"call me \"ishmael\"", "call\\20me\\20\\22ishmael\\22"},
    {"at&t guy", "at\\26t\\20guy"},
    {"d'artagnan", "d\\27artagnan"},
    {"/.fanboy", "\\2f.fanboy"},
    {"::foo::", "\\3a\\3afoo\\3a\\3a"},
    {"<foo>", "\\3cfoo\\3e"},
    {"user@host", "user\\40host"},
    {"c:\\net", "c\\3a\\net"},
    {"c:\\\\net", "c\\3a\\\\net"},
    {"c:\\cool stuff", "c\\3a\\cool\\20stuff"},
    {"c:\\5commas", "c\\3a\\5c5commas"},
    /* §5.2 email. */
    {"here's_a_wild_&_/cr%zy/_address",
     "here\\27s_a_wild_\\26_\\2fcr%zy\\2f_address"},
    /* §5.5 IMPS. */
    {"here's_a_wild_&_/cr%zy/_address_for:<wv>(\"IMPS\")",
     "here\\27s_a_wild_\\26_\\2fcr%zy\\2f_address_for\\3a\\3cwv\\3e("
     "\\22IMPS\\22)"},
    {"\\3and\\2is\\5cool", "\\5c3and\\2is\\5c5cool"},
    /* §5.7 IRC. */
    {"somenick!user\"&'/:<>\\3address",
     "somenick!user\\22\\26\\27\\2f\\3a\\3c\\3e\\5c3address"},
    /* §4.3 exceptions: unchanged both ways. */
    {"\\2plus\\2is\\4", "\\2plus\\2is\\4"},
    {"foo\\bar", "foo\\bar"},
    {"foob\\41r", "foob\\41r"},
    /* Each of the ten, and a literal sequence of each. */
    {" \"&'/:<>@", "\\20\\22\\26\\27\\2f\\3a\\3c\\3e\\40"},
    {"\\20\\22\\26\\27\\2f\\3a\\3c\\3e\\40\\5c",
     "\\5c20\\5c22\\5c26\\5c27\\5c2f\\5c3a\\5c3c\\5c3e\\5c40\\5c5c"},
    /* Uppercase hex is no sequence (§3.1 "CASE IS SIGNIFICANT"). */
    {"\\3A\\5C", "\\3A\\5C"},
    {"trailing\\", "trailing\\"},
    {"x\\4", "x\\4"},
    {"\\\\5c", "\\\\5c5c"},
    {" lead and trail ", "\\20lead\\20and\\20trail\\20"},
    {"", ""},
};

static void test_escape_table(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof xep0106 / sizeof xep0106[0]; i++) {
    char *esc = bf_jid_escape(xep0106[i].raw);
    assert_non_null(esc);
    if (strcmp(esc, xep0106[i].escaped) != 0)
      fail_msg("escape(\"%s\") = \"%s\", expected \"%s\"", xep0106[i].raw,
               esc, xep0106[i].escaped);
    char *unesc = bf_jid_unescape(xep0106[i].escaped);
    assert_non_null(unesc);
    if (strcmp(unesc, xep0106[i].raw) != 0)
      fail_msg("unescape(\"%s\") = \"%s\", expected \"%s\"",
               xep0106[i].escaped, unesc, xep0106[i].raw);
    /* §2 req. 2: an escaped localpart survives nodeprep (the ones that
     * are all lowercase come out unchanged). */
    if (xep0106[i].escaped[0]) {
      char *prepped = NULL;
      assert_int_equal(bf_jid_nodeprep(esc, &prepped), 0);
      free(prepped);
    }
    free(unesc);
    free(esc);
  }
  /* The form printed in XEP-0106 1.1's table still decodes as meant. */
  char *unesc = bf_jid_unescape("c\\3a\\5cnet");
  assert_string_equal(unesc, "c:\\net");
  free(unesc);
  unesc = bf_jid_unescape("c\\3a\\5ccool\\20stuff");
  assert_string_equal(unesc, "c:\\cool stuff");
  free(unesc);
  assert_null(bf_jid_escape(NULL));
  assert_null(bf_jid_unescape(NULL));
}

static void test_escape_email(void **state)
{
  (void)state;
  char *esc = bf_jid_escape("juliet@capulet.lit");
  assert_string_equal(esc, "juliet\\40capulet.lit");
  char *local = NULL;
  assert_int_equal(bf_jid_nodeprep(esc, &local), 0);
  assert_string_equal(local, "juliet\\40capulet.lit");
  free(local);
  free(esc);

  esc = bf_jid_escape("Juliet O'Hara@Capulet.lit");
  assert_int_equal(bf_jid_nodeprep(esc, &local), 0);
  assert_string_equal(local, "juliet\\20o\\27hara\\40capulet.lit");
  char *jidstr = malloc(strlen(local) + sizeof "@mail.example.org");
  assert_non_null(jidstr);
  sprintf(jidstr, "%s@mail.example.org", local);
  expect_jid(jidstr, local, "mail.example.org", NULL);
  char *back = bf_jid_unescape(local);
  assert_string_equal(back, "juliet o'hara@capulet.lit");
  free(back);
  free(jidstr);
  free(local);
  free(esc);
}

/* unescape(escape(x)) == x for strings dense in backslashes, hex digits
 * and the ten characters, where sequences overlap in every way. */
static void test_escape_round_trip(void **state)
{
  (void)state;
  static const char alphabet[] = "\\\\\\ \"&'/:<>@2025cfaeA4x";
  uint32_t seed = 12345;
  char raw[24];
  for (int n = 0; n < 20000; n++) {
    seed = seed * 1103515245u + 12345u;
    size_t len = (seed >> 16) % (sizeof raw);
    for (size_t i = 0; i < len; i++) {
      seed = seed * 1103515245u + 12345u;
      raw[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
    }
    raw[len] = '\0';
    char *esc = bf_jid_escape(raw);
    assert_non_null(esc);
    /* No raw forbidden character is left. */
    assert_null(strpbrk(esc, " \"&'/:<>@"));
    char *back = bf_jid_unescape(esc);
    assert_non_null(back);
    if (strcmp(back, raw) != 0)
      fail_msg("round trip of \"%s\": \"%s\" -> \"%s\"", raw, esc, back);
    free(back);
    free(esc);
  }
}

/* ASCII parts are prepared without libidn (bf_jid_parse and the
 * standalone prep functions); libidn itself is the reference here. Both
 * must agree on every ASCII character in every part, in every position. */
static int libidn_prep(const char *raw, int part, char **out)
{
  char buf[64];
  snprintf(buf, sizeof buf, "%s", raw);
  int prc = part == 0   ? stringprep_xmpp_nodeprep(buf, sizeof buf)
            : part == 1 ? stringprep_nameprep(buf, sizeof buf)
                        : stringprep_xmpp_resourceprep(buf, sizeof buf);
  if (prc != STRINGPREP_OK)
    return BF_EINVAL;
  size_t n = strlen(buf);
  if (part == 1 && n && buf[n - 1] == '.')
    buf[--n] = '\0'; /* RFC 7622 §3.2, as bf_jid applies it */
  /* what libidn accepts must also be a plausible domain to count */
  char *checked = NULL;
  if (part == 1 && bf_jid_nameprep(buf, &checked) != 0)
    return BF_EINVAL;
  free(checked);
  *out = strdup(buf);
  return 0;
}

static void check_ascii_part(const char *jid_str, int part, const char *raw)
{
  bf_jid jid;
  char *ref = NULL;
  int ref_rc = libidn_prep(raw, part, &ref);
  char *alone = NULL;
  int alone_rc = part == 0   ? bf_jid_nodeprep(raw, &alone)
                 : part == 1 ? bf_jid_nameprep(raw, &alone)
                             : bf_jid_resourceprep(raw, &alone);
  assert_int_equal(alone_rc == 0, ref_rc == 0);
  if (alone)
    assert_string_equal(alone, ref);
  free(alone);
  int rc = bf_jid_parse(&jid, jid_str);
  if (ref_rc != 0) {
    if (rc == 0)
      fail_msg("'%s': libidn refuses part '%s', the fast path accepts it",
               jid_str, raw);
  } else {
    if (rc != 0)
      fail_msg("'%s': libidn accepts part '%s', the fast path refuses it",
               jid_str, raw);
    const char *got = part == 0 ? jid.local : part == 1 ? jid.domain : jid.resource;
    assert_string_equal(got, ref);
    bf_jid_close(&jid);
  }
  free(ref);
}

static void test_ascii_fast_path_matches_libidn(void **state)
{
  (void)state;
  char raw[16], full[64];
  for (int c = 1; c < 128; c++) {
    if (c == '@' || c == '/')
      continue; /* separators, not part content */
    for (size_t k = 0; k < 3; k++) {
      /* the character first, last, and between capitals */
      if (k == 0)
        snprintf(raw, sizeof raw, "%cx", c);
      else if (k == 1)
        snprintf(raw, sizeof raw, "x%c", c);
      else
        snprintf(raw, sizeof raw, "X%cY", c);
      snprintf(full, sizeof full, "%s@example.org/r", raw);
      check_ascii_part(full, 0, raw);
      snprintf(full, sizeof full, "a@%s.example.org", raw);
      char domain[32];
      snprintf(domain, sizeof domain, "%s.example.org", raw);
      check_ascii_part(full, 1, domain);
      snprintf(full, sizeof full, "a@example.org/%s", raw);
      check_ascii_part(full, 2, raw);
    }
  }
  /* trailing dot and case in a pure-ASCII domain */
  check_ascii_part("a@Example.ORG.", 1, "Example.ORG.");
}

static void test_parse_buf(void **state)
{
  (void)state;
  char buf[64];
  bf_jid jid;
  /* fits: nothing allocated, parts inside buf */
  assert_int_equal(bf_jid_parse_buf(&jid, "Alice@Example.org/Pc", buf, sizeof buf), 0);
  assert_null(jid.storage);
  assert_true(jid.local >= buf && jid.local < buf + sizeof buf);
  assert_string_equal(jid.local, "alice");
  assert_string_equal(jid.domain, "example.org");
  assert_string_equal(jid.resource, "Pc");
  bf_jid_close(&jid);
  /* too small: falls back to an allocation, same result */
  assert_int_equal(bf_jid_parse_buf(&jid, "Alice@Example.org/Pc", buf, 8), 0);
  assert_non_null(jid.storage);
  assert_string_equal(jid.local, "alice");
  bf_jid_close(&jid);
  /* non-ASCII goes through libidn */
  assert_int_equal(bf_jid_parse_buf(&jid, "Stra\xc3\x9f" "e@x.org", buf, sizeof buf), 0);
  assert_string_equal(jid.local, "strasse");
  bf_jid_close(&jid);
  /* errors leave nothing to free */
  assert_int_equal(bf_jid_parse_buf(&jid, "a b@x.org", buf, sizeof buf), BF_EINVAL);
  assert_null(jid.domain);
  assert_null(jid.storage);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parts),
      cmocka_unit_test(test_parse_buf),
      cmocka_unit_test(test_ascii_fast_path_matches_libidn),
      cmocka_unit_test(test_normalisation),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_lengths),
      cmocka_unit_test(test_prefixes),
      cmocka_unit_test(test_equal),
      cmocka_unit_test(test_prep),
      cmocka_unit_test(test_escape_table),
      cmocka_unit_test(test_escape_email),
      cmocka_unit_test(test_escape_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
