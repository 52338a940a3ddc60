/* Unit tests for src/msgid.c: the message-id map on a real store in a
 * scratch folder, reached through a bf_gateway filled by hand (only the
 * fields msgid.c reads: daemon->store, conf->section/domain/message_ids). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "babelfish/error.h"
#include "gateway.h"
#include "log.h"
#include "store.h"
#include "support.h"
#include "users.h"

struct fixture {
  char *dir;
  char path[512];
  char err[512];
  bf_store *store;
  bf_daemon daemon;
  bf_conf_gateway conf;
  bf_gateway gw;
  /* a second gateway on the same store */
  bf_conf_gateway conf2;
  bf_gateway gw2;
};

static void open_store(struct fixture *f) {
  int rc = bf__store_open(&f->store, f->path, f->err, sizeof f->err);
  if (rc)
    fail_msg("open: %s (%s)", f->err, bf_strerror(rc));
  f->daemon.store = f->store;
}

static void close_store(struct fixture *f) {
  bf__msgid_close(&f->gw);
  bf__msgid_close(&f->gw2);
  bf__store_close(f->store);
  f->store = NULL;
  f->daemon.store = NULL;
}

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = bf_test_tmpdir("test-msgid");
  snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
  open_store(f);
  f->conf.section = "echo";
  f->conf.domain = "echo.localhost";
  f->conf.message_ids = 0; /* the default, 10000 */
  f->gw.daemon = &f->daemon;
  f->gw.conf = &f->conf;
  f->conf2.section = "other";
  f->conf2.domain = "other.localhost";
  f->gw2.daemon = &f->daemon;
  f->gw2.conf = &f->conf2;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  close_store(f);
  bf_test_unlink_db(f->path);
  rmdir(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static void init_ok(bf_gateway *gw) {
  assert_int_equal(bf__msgid_init(gw), 0);
}

static void put_ok(bf_gateway *gw, const char *user, const char *xmpp_id,
                   const char *foreign_id) {
  int rc = bf__msgid_put(&gw->host, user, xmpp_id, foreign_id);
  if (rc)
    fail_msg("put %s %s: %s", xmpp_id, foreign_id, bf_strerror(rc));
}

/* Both directions resolve to the expected pair. */
static void assert_pair(bf_gateway *gw, const char *user, const char *xmpp_id,
                        const char *foreign_id) {
  char *out = NULL;
  int rc = bf__msgid_foreign(&gw->host, user, xmpp_id, &out);
  if (rc)
    fail_msg("foreign of %s: %s", xmpp_id, bf_strerror(rc));
  assert_string_equal(out, foreign_id);
  free(out);
  out = NULL;
  rc = bf__msgid_xmpp(&gw->host, user, foreign_id, &out);
  if (rc)
    fail_msg("xmpp of %s: %s", foreign_id, bf_strerror(rc));
  assert_string_equal(out, xmpp_id);
  free(out);
}

static void assert_unknown(bf_gateway *gw, const char *user,
                           const char *xmpp_id, const char *foreign_id) {
  char *out = (char *)"garbage";
  assert_int_equal(bf__msgid_foreign(&gw->host, user, xmpp_id, &out),
                   BF_ENOENT);
  assert_null(out);
  out = (char *)"garbage";
  assert_int_equal(bf__msgid_xmpp(&gw->host, user, foreign_id, &out),
                   BF_ENOENT);
  assert_null(out);
}

static int64_t rows(struct fixture *f, const char *gateway) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(bf__store_db(f->store),
                                      "SELECT count(*) FROM msgids "
                                      "WHERE gateway = ?1",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(st, 1, gateway, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

static void test_put_get(void **state) {
  struct fixture *f = *state;
  init_ok(&f->gw);
  assert_int_equal(f->gw.users.msgids.max, 10000);
  assert_unknown(&f->gw, "alice@localhost", "x1", "f1");
  put_ok(&f->gw, "alice@localhost", "x1", "f1");
  put_ok(&f->gw, "alice@localhost", "x2", "f2");
  assert_pair(&f->gw, "alice@localhost", "x1", "f1");
  assert_pair(&f->gw, "alice@localhost", "x2", "f2");
  /* Per user: bob has none of alice's ids. */
  assert_unknown(&f->gw, "bob@localhost", "x1", "f1");
  /* Per gateway: the other gateway neither. */
  init_ok(&f->gw2);
  assert_unknown(&f->gw2, "alice@localhost", "x1", "f1");
  /* Ids are opaque: any bytes, compared exactly. */
  put_ok(&f->gw, "alice@localhost", "id with 'quotes' & <xml>", "\xc3\xa9t\xc3\xa9");
  assert_pair(&f->gw, "alice@localhost", "id with 'quotes' & <xml>",
              "\xc3\xa9t\xc3\xa9");
  assert_unknown(&f->gw, "alice@localhost", "X1", "F1");
}

/* An id put again (a reused client id, a re-sent foreign message): the
 * newest entry wins in both directions. */
static void test_newest_wins(void **state) {
  struct fixture *f = *state;
  init_ok(&f->gw);
  put_ok(&f->gw, "alice@localhost", "x1", "f1");
  put_ok(&f->gw, "alice@localhost", "x1", "f2");
  put_ok(&f->gw, "alice@localhost", "x0", "f2");
  char *out = NULL;
  assert_int_equal(bf__msgid_foreign(&f->gw.host, "alice@localhost", "x1", &out), 0);
  assert_string_equal(out, "f2");
  free(out);
  assert_int_equal(bf__msgid_xmpp(&f->gw.host, "alice@localhost", "f2", &out), 0);
  assert_string_equal(out, "x0");
  free(out);
  assert_int_equal(bf__msgid_xmpp(&f->gw.host, "alice@localhost", "f1", &out), 0);
  assert_string_equal(out, "x1");
  free(out);
}

static void test_bound_small(void **state) {
  struct fixture *f = *state;
  f->conf.message_ids = 10;
  init_ok(&f->gw);
  init_ok(&f->gw2);
  put_ok(&f->gw2, "alice@localhost", "keep", "me");
  char x[32], fid[32];
  for (int i = 0; i < 100; i++) {
    snprintf(x, sizeof x, "x%d", i);
    snprintf(fid, sizeof fid, "f%d", i);
    /* Two users share the gateway's bound. */
    put_ok(&f->gw, i % 2 ? "bob@localhost" : "alice@localhost", x, fid);
    assert_true(rows(f, "echo.localhost") <= 10);
  }
  for (int i = 0; i < 100; i++) {
    snprintf(x, sizeof x, "x%d", i);
    snprintf(fid, sizeof fid, "f%d", i);
    const char *user = i % 2 ? "bob@localhost" : "alice@localhost";
    if (i >= 90)
      assert_pair(&f->gw, user, x, fid);
    else
      assert_unknown(&f->gw, user, x, fid);
  }
  assert_int_equal(rows(f, "echo.localhost"), 10);
  /* The other gateway's entries are not the first gateway's to prune. */
  assert_pair(&f->gw2, "alice@localhost", "keep", "me");
}

/* Larger maps count only every max/16 puts: the table may pass max by
 * less than max/16 between two counts, and is back to max at each. */
static void test_bound_amortised(void **state) {
  struct fixture *f = *state;
  f->conf.message_ids = 160; /* counted every 10 puts */
  init_ok(&f->gw);
  char x[32], fid[32];
  int64_t most = 0;
  for (int i = 0; i < 1000; i++) {
    snprintf(x, sizeof x, "x%d", i);
    snprintf(fid, sizeof fid, "f%d", i);
    put_ok(&f->gw, "alice@localhost", x, fid);
    int64_t n = rows(f, "echo.localhost");
    if (n > most)
      most = n;
    if ((i + 1) % 10 == 0 && i >= 160)
      assert_int_equal(n, 160);
  }
  assert_true(most > 160);
  assert_true(most < 160 + 10);
  assert_pair(&f->gw, "alice@localhost", "x999", "f999");
  assert_pair(&f->gw, "alice@localhost", "x840", "f840");
  assert_unknown(&f->gw, "alice@localhost", "x839", "f839");
}

static void test_delete_user(void **state) {
  struct fixture *f = *state;
  init_ok(&f->gw);
  init_ok(&f->gw2);
  put_ok(&f->gw, "alice@localhost", "x1", "f1");
  put_ok(&f->gw, "alice@localhost", "x2", "f2");
  put_ok(&f->gw, "bob@localhost", "x1", "f1");
  put_ok(&f->gw2, "alice@localhost", "x1", "f1");
  assert_int_equal(bf__msgid_delete_user(&f->gw, "alice@localhost"), 0);
  assert_unknown(&f->gw, "alice@localhost", "x1", "f1");
  assert_unknown(&f->gw, "alice@localhost", "x2", "f2");
  assert_pair(&f->gw, "bob@localhost", "x1", "f1");
  assert_pair(&f->gw2, "alice@localhost", "x1", "f1");
  /* Nothing to delete is not an error. */
  assert_int_equal(bf__msgid_delete_user(&f->gw, "alice@localhost"), 0);
  assert_int_equal(bf__msgid_delete_user(&f->gw, NULL), BF_EINVAL);
  assert_int_equal(bf__msgid_delete_user(&f->gw, ""), BF_EINVAL);
}

static void test_persistence(void **state) {
  struct fixture *f = *state;
  init_ok(&f->gw);
  put_ok(&f->gw, "alice@localhost", "x1", "f1");
  put_ok(&f->gw, "alice@localhost", "x1", "f2");
  close_store(f);
  open_store(f);
  init_ok(&f->gw);
  assert_pair(&f->gw, "alice@localhost", "x1", "f2");
  char *out = NULL;
  assert_int_equal(bf__msgid_xmpp(&f->gw.host, "alice@localhost", "f1", &out), 0);
  assert_string_equal(out, "x1");
  free(out);
  /* A lower message_ids applies at the next start. */
  for (int i = 0; i < 20; i++) {
    char x[32];
    snprintf(x, sizeof x, "y%d", i);
    put_ok(&f->gw, "alice@localhost", x, x);
  }
  close_store(f);
  open_store(f);
  f->conf.message_ids = 5;
  init_ok(&f->gw);
  assert_int_equal(rows(f, "echo.localhost"), 5);
  assert_pair(&f->gw, "alice@localhost", "y19", "y19");
  assert_unknown(&f->gw, "alice@localhost", "y14", "y14");
}

static void test_bad_input(void **state) {
  struct fixture *f = *state;
  init_ok(&f->gw);
  const bf_host *h = &f->gw.host;
  char *out = (char *)"garbage";
  char big[1026];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0'; /* 1025 bytes */
  assert_int_equal(bf__msgid_put(h, NULL, "x", "f"), BF_EINVAL);
  assert_int_equal(bf__msgid_put(h, "", "x", "f"), BF_EINVAL);
  assert_int_equal(bf__msgid_put(h, "alice@localhost", NULL, "f"), BF_EINVAL);
  assert_int_equal(bf__msgid_put(h, "alice@localhost", "x", NULL), BF_EINVAL);
  assert_int_equal(bf__msgid_put(h, "alice@localhost", "", "f"), BF_EINVAL);
  assert_int_equal(bf__msgid_put(h, "alice@localhost", "x", ""), BF_EINVAL);
  assert_int_equal(bf__msgid_put(h, "alice@localhost", big, "f"), BF_EINVAL);
  assert_int_equal(bf__msgid_put(h, "alice@localhost", "x", big), BF_EINVAL);
  assert_int_equal(bf__msgid_foreign(h, NULL, "x", &out), BF_EINVAL);
  assert_null(out);
  out = (char *)"garbage";
  assert_int_equal(bf__msgid_foreign(h, "alice@localhost", "", &out), BF_EINVAL);
  assert_null(out);
  assert_int_equal(bf__msgid_foreign(h, "alice@localhost", big, &out), BF_EINVAL);
  assert_int_equal(bf__msgid_xmpp(h, "alice@localhost", NULL, &out), BF_EINVAL);
  assert_int_equal(bf__msgid_xmpp(h, "alice@localhost", big, &out), BF_EINVAL);
  assert_int_equal(bf__msgid_xmpp(h, "alice@localhost", "f", NULL), BF_EINVAL);
  assert_int_equal(rows(f, "echo.localhost"), 0);
  /* 1024 bytes is the longest accepted. */
  big[1024] = '\0';
  put_ok(&f->gw, "alice@localhost", big, "f");
  put_ok(&f->gw, "alice@localhost", "x", big);
  assert_pair(&f->gw, "alice@localhost", big, "f");
  assert_pair(&f->gw, "alice@localhost", "x", big);
}

/* A SQLite failure is BF_EIO and a warning that says what failed, without
 * the ids. */
static void test_storage_error(void **state) {
  struct fixture *f = *state;
  const bf_host *h = &f->gw.host;
  /* Not open yet (a failed init): BF_EIO, not a crash. */
  assert_int_equal(bf__msgid_put(h, "alice@localhost", "x", "f"), BF_EIO);
  init_ok(&f->gw);
  put_ok(&f->gw, "alice@localhost", "secret-x", "secret-f");

  char log_path[600];
  snprintf(log_path, sizeof log_path, "%s/log", f->dir);
  int saved_stderr = dup(STDERR_FILENO);
  assert_true(saved_stderr >= 0);
  assert_int_equal(bf__log_init(BF_LOG_INFO, log_path), 0);

  assert_int_equal(sqlite3_exec(bf__store_db(f->store), "DROP TABLE msgids",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  char *out = NULL;
  assert_int_equal(bf__msgid_put(h, "alice@localhost", "secret-y", "secret-g"),
                   BF_EIO);
  assert_int_equal(bf__msgid_foreign(h, "alice@localhost", "secret-x", &out),
                   BF_EIO);
  assert_null(out);
  assert_int_equal(bf__msgid_xmpp(h, "alice@localhost", "secret-f", &out),
                   BF_EIO);
  assert_int_equal(bf__msgid_delete_user(&f->gw, "alice@localhost"), BF_EIO);

  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  bf__log_init(BF_LOG_INFO, NULL);

  FILE *fp = fopen(log_path, "r");
  assert_non_null(fp);
  char text[4096];
  size_t n = fread(text, 1, sizeof text - 1, fp);
  text[n] = '\0';
  fclose(fp);
  unlink(log_path);
  assert_non_null(strstr(text, "warn  [echo] message ids: storing an entry failed"));
  assert_non_null(strstr(text, "looking up a foreign id failed"));
  assert_non_null(strstr(text, "looking up an XMPP id failed"));
  assert_non_null(strstr(text, "deleting a user's entries failed"));
  assert_null(strstr(text, "secret"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_newest_wins, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bound_small, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bound_amortised, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_user, setup, teardown),
      cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
      cmocka_unit_test_setup_teardown(test_storage_error, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
