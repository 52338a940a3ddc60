/* Unit tests for transports/irc/irc-nick.c (interned occupant nicks: one
 * record per server and nick, case-insensitive, counted, the table
 * growing past its first size) and the ISUPPORT PREFIX / CHANMODES parse
 * of irc-muc-admin.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "irc/irc.h"

static void test_intern_shared_and_counted(void **state) {
  (void)state;
  bf_irc_nicks t = {0};
  bf_irc_nick *a = bf_irc_nick_get(&t, "irc.example.org", "Alice");
  bf_irc_nick *b = bf_irc_nick_get(&t, "IRC.example.org", "alice");
  bf_irc_nick *other = bf_irc_nick_get(&t, "irc.other.net", "alice");
  assert_non_null(a);
  assert_ptr_equal(a, b); /* nicks and servers are case-insensitive */
  assert_ptr_not_equal(a, other);
  assert_int_equal(a->refs, 2);
  assert_string_equal(a->name, "Alice");
  assert_string_equal(a->server, "irc.example.org");
  assert_int_equal(t.count, 2);
  assert_ptr_equal(bf_irc_nick_find(&t, "irc.example.org", "ALICE"), a);
  assert_null(bf_irc_nick_find(&t, "irc.example.org", "bob"));

  assert_int_equal(bf_irc_nick_set(&a->account, "alice_acct"), 0);
  assert_int_equal(bf_irc_nick_set(&a->away, "lunch"), 0);
  assert_int_equal(bf_irc_nick_set(&a->away, NULL), 0);
  assert_null(a->away);
  bf_irc_nick_unref(b);
  assert_int_equal(a->refs, 1);
  bf_irc_nick_unref(a); /* the last reference: gone, account freed */
  assert_null(bf_irc_nick_find(&t, "irc.example.org", "alice"));
  bf_irc_nick_unref(other);
  bf_irc_nick_unref(NULL);
  assert_int_equal(t.count, 0);
  bf_irc_nicks_close(&t);
}

static void test_intern_grows(void **state) {
  (void)state;
  enum { N = 5000 };
  bf_irc_nicks t = {0};
  static bf_irc_nick *held[N];
  char nick[32];
  for (int i = 0; i < N; i++) {
    snprintf(nick, sizeof nick, "member_%d", i);
    assert_non_null(held[i] = bf_irc_nick_get(&t, "s", nick));
  }
  assert_int_equal(t.count, N);
  assert_true(t.n_buckets >= N);
  for (int i = 0; i < N; i++) {
    snprintf(nick, sizeof nick, "MEMBER_%d", i);
    assert_ptr_equal(bf_irc_nick_find(&t, "s", nick), held[i]);
  }
  for (int i = 0; i < N; i += 2)
    bf_irc_nick_unref(held[i]);
  for (int i = 1; i < N; i += 2) {
    snprintf(nick, sizeof nick, "member_%d", i);
    assert_ptr_equal(bf_irc_nick_find(&t, "s", nick), held[i]);
    bf_irc_nick_unref(held[i]);
  }
  assert_int_equal(t.count, 0);
  bf_irc_nicks_close(&t);
}

static void isupport(bf_irc_conn *c, const char *line) {
  bf_irc_msg *m = malloc(sizeof *m);
  assert_non_null(m);
  assert_int_equal(bf_irc_parse(m, line, strlen(line)), 0);
  bf_irc_on_isupport(c, m);
  free(m);
}

static void test_isupport_prefix(void **state) {
  (void)state;
  bf_irc_conn c = {0};
  /* Before any 005: (ov)@+ */
  assert_string_equal(bf_irc_prefix_chars(&c), "@+");
  const char *entry = "@+bob";
  assert_int_equal(bf_irc_prefix_modes(&c, &entry), 3);
  assert_string_equal(entry, "bob");
  isupport(&c, ":irc.localhost 005 me CHANTYPES=# PREFIX=(qaohv)~&@%+ "
               "CHANMODES=beI,k,l,imnpst :are supported by this server");
  assert_string_equal(c.prefix_modes, "qaohv");
  assert_string_equal(c.prefix_chars, "~&@%+");
  assert_string_equal(c.chanmodes, "beI,k,l,imnpst");
  entry = "%+carol";
  assert_int_equal(bf_irc_prefix_modes(&c, &entry), (1 << 3) | (1 << 4));
  assert_string_equal(entry, "carol");
  bf_irc_occupant o = {NULL, 1 << 2}; /* @ */
  assert_true(bf_irc_is_operator(&c, &o));
  o.modes = 1 << 0; /* ~ is higher */
  assert_true(bf_irc_is_operator(&c, &o));
  o.modes = (1 << 3) | (1 << 4); /* % and + */
  assert_false(bf_irc_is_operator(&c, &o));
  /* Malformed or too long: the last good value stays. */
  isupport(&c, ":s 005 me PREFIX=(ov)@ :x");
  isupport(&c, ":s 005 me PREFIX=(abcdefghi)123456789 :x");
  isupport(&c, ":s 005 me PREFIX=ov@+ :x");
  assert_string_equal(c.prefix_chars, "~&@%+");
  /* The trailing text is not a token. */
  isupport(&c, ":s 005 me :PREFIX=(o)@");
  assert_string_equal(c.prefix_chars, "~&@%+");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_intern_shared_and_counted),
      cmocka_unit_test(test_intern_grows),
      cmocka_unit_test(test_isupport_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
