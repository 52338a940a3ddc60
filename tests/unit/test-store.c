/* Unit tests for src/store.c on real database files in a scratch folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <uv.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "babelfish/error.h"
#include "store.h"
#include "support.h"

struct fixture {
  char *dir;
  char path[512];
  char err[512];
};

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = bf_test_tmpdir("test-store");
  snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  bf_test_unlink_db(f->path);
  rmdir(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static bf_store *open_ok(struct fixture *f) {
  bf_store *store = NULL;
  int rc = bf__store_open(&store, f->path, f->err, sizeof f->err);
  if (rc)
    fail_msg("open: %s (%s)", f->err, bf_strerror(rc));
  assert_non_null(store);
  return store;
}

static mode_t file_mode(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return st.st_mode & 07777;
}

static mode_t side_mode(struct fixture *f, const char *suffix) {
  char p[600];
  snprintf(p, sizeof p, "%s%s", f->path, suffix);
  return file_mode(p);
}

/* One integer from a query run on the store's connection. */
static int64_t query_int(bf_store *store, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(bf__store_db(store), sql, -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void exec_ok(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
    fail_msg("%s: %s", sql, msg);
}

/* ---- open ---------------------------------------------------------------- */

static void test_open_creates_private_wal_db(void **state) {
  struct fixture *f = *state;
  mode_t old = umask(022); /* a typical umask must not leak the files */
  bf_store *store = open_ok(f);
  umask(old);
  assert_int_equal(file_mode(f->path), 0600);
  assert_int_equal(side_mode(f, ".lock"), 0600);

  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(bf__store_db(store),
                                      "PRAGMA journal_mode", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  assert_int_equal(query_int(store, "PRAGMA foreign_keys"), 1);
  assert_int_equal(query_int(store, "PRAGMA synchronous"), 1); /* NORMAL */
  assert_int_equal(query_int(store, "PRAGMA busy_timeout"), 5000);
  assert_int_equal(query_int(store, "PRAGMA cache_size"), -512);
  assert_int_equal(bf__store_schema_version(store, "core"), 2);

  assert_int_equal(bf__store_kv_set(store, "ns", "k", "v", 1), 0);
  assert_int_equal(side_mode(f, "-wal"), 0600);
  assert_int_equal(side_mode(f, "-shm"), 0600);

  /* The lock file names its holder for the "in use" message. */
  char p[600], text[32] = "";
  snprintf(p, sizeof p, "%s.lock", f->path);
  FILE *lock = fopen(p, "r");
  assert_non_null(lock);
  assert_non_null(fgets(text, sizeof text, lock));
  fclose(lock);
  assert_int_equal(atol(text), (long)getpid());
  bf__store_close(store);
}

static void test_open_tightens_loose_files(void **state) {
  struct fixture *f = *state;
  char wal[600];
  snprintf(wal, sizeof wal, "%s-wal", f->path);
  const char *files[] = {f->path, wal};
  for (size_t i = 0; i < 2; i++) {
    FILE *file = fopen(files[i], "w");
    assert_non_null(file);
    fclose(file);
    assert_int_equal(chmod(files[i], 0644), 0);
  }
  bf_store *store = open_ok(f);
  assert_int_equal(file_mode(f->path), 0600);
  assert_int_equal(file_mode(wal), 0600);
  bf__store_close(store);
}

static void test_reopen_keeps_data(void **state) {
  struct fixture *f = *state;
  bf_store *store = open_ok(f);
  assert_int_equal(bf__store_kv_set(store, "gw", "roster", "alice", 5), 0);
  bf__store_close(store);

  store = open_ok(f);
  char *value = NULL;
  size_t len = 0;
  assert_int_equal(bf__store_kv_get(store, "gw", "roster", &value, &len), 0);
  assert_int_equal(len, 5);
  assert_string_equal(value, "alice");
  free(value);
  assert_int_equal(bf__store_schema_version(store, "core"), 2);
  bf__store_close(store);
}

static void test_second_open_is_refused(void **state) {
  struct fixture *f = *state;
  bf_store *first = open_ok(f);
  bf_store *second = (bf_store *)&second; /* must be reset to NULL */
  assert_int_equal(bf__store_open(&second, f->path, f->err, sizeof f->err),
                   BF_EIO);
  assert_null(second);
  char expect[64];
  snprintf(expect, sizeof expect, "in use by another babelfish (pid %ld)?",
           (long)getpid());
  assert_non_null(strstr(f->err, f->path));
  assert_non_null(strstr(f->err, expect));
  /* The refused open did not disturb the first one. */
  assert_int_equal(bf__store_kv_set(first, "ns", "k", "v", 1), 0);
  bf__store_close(first);

  /* Released on close. */
  second = open_ok(f);
  bf__store_close(second);
}

static void test_open_errors_name_the_file(void **state) {
  struct fixture *f = *state;
  bf_store *store = NULL;
  /* Not a database: SQLite's reason reaches the message. */
  FILE *file = fopen(f->path, "w");
  assert_non_null(file);
  for (int i = 0; i < 200; i++)
    fputs("this is not an SQLite database, just text. ", file);
  fclose(file);
  assert_int_equal(bf__store_open(&store, f->path, f->err, sizeof f->err),
                   BF_EIO);
  assert_null(store);
  assert_non_null(strstr(f->err, f->path));
  assert_non_null(strstr(f->err, "cannot open database"));
  assert_non_null(strstr(f->err, "not a database"));
  /* The failed open released its lock. */
  unlink(f->path);
  store = open_ok(f);
  bf__store_close(store);

  /* A folder that does not exist. */
  char missing[600];
  snprintf(missing, sizeof missing, "%s/no/such/dir/state.db", f->dir);
  assert_int_equal(bf__store_open(&store, missing, f->err, sizeof f->err),
                   BF_EIO);
  assert_null(store);
  assert_non_null(strstr(f->err, missing));
  assert_non_null(strstr(f->err, "No such file or directory"));
}

/* ---- schema ---------------------------------------------------------------- */

static void test_migrations_apply_in_order_once(void **state) {
  struct fixture *f = *state;
  /* Each step depends on the one before. */
  const char *const steps[] = {
    "CREATE TABLE t(x INTEGER)",
    "ALTER TABLE t ADD COLUMN y TEXT; INSERT INTO t VALUES (1, 'one')",
    "INSERT INTO t VALUES (2, 'two')",
  };
  bf_store *store = open_ok(f);
  assert_int_equal(bf__store_schema_version(store, "mod:t"), 0);
  assert_int_equal(bf__store_schema(store, "mod:t", steps, 2), 0);
  assert_int_equal(bf__store_schema_version(store, "mod:t"), 2);
  assert_int_equal(query_int(store, "SELECT count(*) FROM t"), 1);
  /* Again: nothing pending, nothing runs. */
  assert_int_equal(bf__store_schema(store, "mod:t", steps, 2), 0);
  assert_int_equal(query_int(store, "SELECT count(*) FROM t"), 1);
  /* Owners are independent; "core" is untouched. */
  assert_int_equal(bf__store_schema_version(store, "mod:other"), 0);
  assert_int_equal(bf__store_schema_version(store, "core"), 2);
  bf__store_close(store);

  /* After a restart, only the new migration runs. */
  store = open_ok(f);
  assert_int_equal(bf__store_schema(store, "mod:t", steps, 3), 0);
  assert_int_equal(bf__store_schema_version(store, "mod:t"), 3);
  assert_int_equal(query_int(store, "SELECT count(*) FROM t"), 2);
  assert_int_equal(query_int(store, "SELECT sum(x) FROM t"), 3);
  assert_int_equal(bf__store_schema(store, "mod:t", steps, 3), 0);
  assert_int_equal(query_int(store, "SELECT count(*) FROM t"), 2);
  bf__store_close(store);
}

static void test_failing_migration_rolls_back(void **state) {
  struct fixture *f = *state;
  const char *const bad[] = {
    "CREATE TABLE a(x)",
    "CREATE TABLE b(y); INSERT INTO a VALUES (1); INSERT INTO missing VALUES (1)",
  };
  const char *const good[] = {
    "CREATE TABLE a(x)",
    "CREATE TABLE b(y); INSERT INTO a VALUES (1)",
  };
  bf_store *store = open_ok(f);
  assert_int_equal(bf__store_schema(store, "mod:m", bad, 2), BF_EIO);
  assert_non_null(strstr(bf__store_errmsg(store), "no such table: missing"));
  assert_non_null(strstr(bf__store_errmsg(store), "mod:m"));
  assert_int_equal(bf__store_schema_version(store, "mod:m"), 1);
  assert_int_equal(query_int(store, "SELECT count(*) FROM sqlite_schema "
                                    "WHERE name = 'b'"), 0);
  assert_int_equal(query_int(store, "SELECT count(*) FROM a"), 0);
  assert_int_equal(sqlite3_get_autocommit(bf__store_db(store)), 1);
  /* The store goes on working, and the fixed migration applies. */
  assert_int_equal(bf__store_kv_set(store, "ns", "k", "v", 1), 0);
  assert_int_equal(bf__store_schema(store, "mod:m", good, 2), 0);
  assert_int_equal(bf__store_schema_version(store, "mod:m"), 2);
  assert_int_equal(query_int(store, "SELECT count(*) FROM a"), 1);

  const char *const null_step[] = {"CREATE TABLE a(x)", "CREATE TABLE c(x)",
                                   NULL};
  assert_int_equal(bf__store_schema(store, "mod:m", null_step, 3), BF_EINVAL);
  assert_int_equal(bf__store_schema(store, NULL, good, 2), BF_EINVAL);
  assert_int_equal(bf__store_schema(store, "mod:m", NULL, 2), BF_EINVAL);
  bf__store_close(store);
}

static void test_newer_database_is_refused(void **state) {
  struct fixture *f = *state;
  const char *const steps[] = {"CREATE TABLE a(x)", "CREATE TABLE b(x)"};
  bf_store *store = open_ok(f);
  assert_int_equal(bf__store_schema(store, "mod:n", steps, 2), 0);
  assert_int_equal(bf__store_schema(store, "mod:n", steps, 1), BF_EINVAL);
  assert_non_null(strstr(bf__store_errmsg(store), "newer"));
  assert_int_equal(bf__store_schema_version(store, "mod:n"), 2);
  assert_int_equal(bf__store_schema(store, "mod:n", NULL, 0), BF_EINVAL);

  /* The same for the core's own schema, at open. */
  exec_ok(bf__store_db(store),
          "UPDATE schema_version SET version = 7 WHERE owner = 'core'");
  bf__store_close(store);
  store = NULL;
  assert_int_equal(bf__store_open(&store, f->path, f->err, sizeof f->err),
                   BF_EINVAL);
  assert_null(store);
  assert_non_null(strstr(f->err, f->path));
  assert_non_null(strstr(f->err, "version 7"));
}

/* ---- key-value ------------------------------------------------------------ */

static void expect_kv(bf_store *store, const char *ns, const char *key,
                      const void *want, size_t want_len) {
  char *value = NULL;
  size_t len = 99;
  assert_int_equal(bf__store_kv_get(store, ns, key, &value, &len), 0);
  assert_int_equal(len, want_len);
  assert_memory_equal(value, want, want_len ? want_len : 1);
  assert_int_equal(value[len], '\0');
  free(value);
}

static void expect_kv_absent(bf_store *store, const char *ns, const char *key) {
  char *value = (char *)&value;
  size_t len = 99;
  assert_int_equal(bf__store_kv_get(store, ns, key, &value, &len), BF_ENOENT);
  assert_null(value);
  assert_int_equal(len, 0);
}

static void test_kv(void **state) {
  struct fixture *f = *state;
  bf_store *store = open_ok(f);
  static const char binary[] = {'a', '\0', 'b', '\0', '\xff', '\n'};

  expect_kv_absent(store, "irc.example", "token");
  assert_int_equal(bf__store_kv_set(store, "irc.example", "token", binary,
                                    sizeof binary), 0);
  expect_kv(store, "irc.example", "token", binary, sizeof binary);

  /* Namespaces are separate. */
  expect_kv_absent(store, "mail.example", "token");
  assert_int_equal(bf__store_kv_set(store, "mail.example", "token", "m", 1), 0);
  expect_kv(store, "mail.example", "token", "m", 1);
  expect_kv(store, "irc.example", "token", binary, sizeof binary);

  /* Overwrite, shorter. */
  assert_int_equal(bf__store_kv_set(store, "irc.example", "token", "xy", 2), 0);
  expect_kv(store, "irc.example", "token", "xy", 2);

  /* An empty value is a value, not an absence. */
  assert_int_equal(bf__store_kv_set(store, "irc.example", "empty", NULL, 0), 0);
  expect_kv(store, "irc.example", "empty", "", 0);

  /* Delete; deleting again is fine. */
  assert_int_equal(bf__store_kv_delete(store, "irc.example", "token"), 0);
  expect_kv_absent(store, "irc.example", "token");
  assert_int_equal(bf__store_kv_delete(store, "irc.example", "token"), 0);
  expect_kv(store, "mail.example", "token", "m", 1);

  char *value = NULL;
  size_t len = 0;
  assert_int_equal(bf__store_kv_get(store, NULL, "k", &value, &len), BF_EINVAL);
  assert_int_equal(bf__store_kv_set(store, "ns", NULL, "v", 1), BF_EINVAL);
  assert_int_equal(bf__store_kv_set(store, "ns", "k", NULL, 1), BF_EINVAL);
  assert_int_equal(bf__store_kv_delete(store, "ns", NULL), BF_EINVAL);
  bf__store_close(store);
}

/* ---- outbox ---------------------------------------------------------------- */

struct seen {
  int64_t ids[256];
  char xml[256][32];
  size_t lens[256];
  unsigned n;
  unsigned stop_at; /* return 42 on this row (1-based); 0 = never */
};

static int collect(void *data, int64_t id, const char *xml, size_t len) {
  struct seen *seen = data;
  assert_true(seen->n < 256);
  assert_true(len < sizeof seen->xml[0]);
  assert_int_equal(xml[len], '\0');
  seen->ids[seen->n] = id;
  memcpy(seen->xml[seen->n], xml, len);
  seen->lens[seen->n] = len;
  seen->n++;
  return seen->n == seen->stop_at ? 42 : 0;
}

static int64_t add(bf_store *store, const char *gateway, const char *xml) {
  int64_t id = -1;
  assert_int_equal(bf__store_outbox_add(store, gateway, xml, strlen(xml), &id),
                   0);
  assert_true(id > 0);
  return id;
}

static void test_outbox(void **state) {
  struct fixture *f = *state;
  bf_store *store = open_ok(f);
  int64_t a[4], b[2];
  a[0] = add(store, "a.example", "<message id='a0'/>");
  b[0] = add(store, "b.example", "<message id='b0'/>");
  a[1] = add(store, "a.example", "<message id='a1'/>");
  a[2] = add(store, "a.example", "<message id='a2'/>");
  b[1] = add(store, "b.example", "<message id='b1'/>");
  a[3] = add(store, "a.example", "<message id='a3'/>");
  assert_true(a[0] < b[0] && b[0] < a[1] && a[1] < a[2] && a[3] > b[1]);
  assert_int_equal(bf__store_outbox_count(store, "a.example"), 4);
  assert_int_equal(bf__store_outbox_count(store, "b.example"), 2);
  assert_int_equal(bf__store_outbox_count(store, "c.example"), 0);

  /* All, in order, only this gateway's. */
  struct seen seen = {0};
  assert_int_equal(bf__store_outbox_each(store, "a.example", 0, 0, collect,
                                         &seen), 0);
  assert_int_equal(seen.n, 4);
  for (unsigned i = 0; i < 4; i++) {
    char want[32];
    snprintf(want, sizeof want, "<message id='a%u'/>", i);
    assert_int_equal(seen.ids[i], a[i]);
    assert_int_equal(seen.lens[i], strlen(want));
    assert_memory_equal(seen.xml[i], want, strlen(want));
  }

  /* after and limit. */
  seen = (struct seen){0};
  assert_int_equal(bf__store_outbox_each(store, "a.example", a[1], 0, collect,
                                         &seen), 0);
  assert_int_equal(seen.n, 2);
  assert_int_equal(seen.ids[0], a[2]);
  assert_int_equal(seen.ids[1], a[3]);
  seen = (struct seen){0};
  assert_int_equal(bf__store_outbox_each(store, "a.example", 0, 3, collect,
                                         &seen), 0);
  assert_int_equal(seen.n, 3);
  assert_int_equal(seen.ids[2], a[2]);

  /* The callback stops the walk; its value comes back. */
  seen = (struct seen){.stop_at = 2};
  assert_int_equal(bf__store_outbox_each(store, "a.example", 0, 0, collect,
                                         &seen), 42);
  assert_int_equal(seen.n, 2);

  /* ack deletes up to and including the id, for that gateway only. */
  assert_int_equal(bf__store_outbox_ack(store, "a.example", a[1]), 0);
  assert_int_equal(bf__store_outbox_count(store, "a.example"), 2);
  assert_int_equal(bf__store_outbox_count(store, "b.example"), 2);
  seen = (struct seen){0};
  assert_int_equal(bf__store_outbox_each(store, "a.example", 0, 0, collect,
                                         &seen), 0);
  assert_int_equal(seen.n, 2);
  assert_int_equal(seen.ids[0], a[2]);

  /* Ack everything: a later id is still larger than any before. */
  assert_int_equal(bf__store_outbox_ack(store, "a.example", a[3]), 0);
  assert_int_equal(bf__store_outbox_ack(store, "b.example", b[1]), 0);
  assert_int_equal(query_int(store, "SELECT count(*) FROM outbox"), 0);
  int64_t next = add(store, "a.example", "<presence/>");
  assert_true(next > a[3]);

  /* Restart: unacked rows survive, ids keep growing. */
  bf__store_close(store);
  store = open_ok(f);
  assert_int_equal(bf__store_outbox_count(store, "a.example"), 1);
  seen = (struct seen){0};
  assert_int_equal(bf__store_outbox_each(store, "a.example", 0, 0, collect,
                                         &seen), 0);
  assert_int_equal(seen.n, 1);
  assert_int_equal(seen.ids[0], next);
  assert_string_equal(seen.xml[0], "<presence/>");
  assert_int_equal(bf__store_outbox_ack(store, "a.example", next), 0);
  bf__store_close(store);
  store = open_ok(f);
  assert_true(add(store, "b.example", "<iq/>") > next);

  /* Binary-safe: the length is kept, NULs included. */
  int64_t id = 0;
  assert_int_equal(bf__store_outbox_add(store, "z", "a\0b", 3, &id), 0);
  seen = (struct seen){0};
  assert_int_equal(bf__store_outbox_each(store, "z", 0, 0, collect, &seen), 0);
  assert_int_equal(seen.n, 1);
  assert_int_equal(seen.lens[0], 3);
  assert_memory_equal(seen.xml[0], "a\0b", 3);

  /* Many rows in one transaction: ids in order; a transaction already
   * open (here a module's own) makes it fail whole, adding nothing. */
  const bf_outbox_row rows[] = {{"<a/>", 4}, {"<b/>", 4}, {"<c/>", 4}};
  int64_t ids[3] = {0};
  assert_int_equal(bf__store_outbox_add_many(store, "m", rows, 3, ids, 0), 0);
  assert_true(ids[0] < ids[1] && ids[1] < ids[2]);
  assert_int_equal(bf__store_outbox_count(store, "m"), 3);
  assert_int_equal(sqlite3_exec(bf__store_db(store), "BEGIN", NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(bf__store_outbox_add_many(store, "m", rows, 3, ids,
                                             ids[2]), BF_EIO);
  assert_int_equal(sqlite3_exec(bf__store_db(store), "ROLLBACK", NULL, NULL,
                                NULL), SQLITE_OK);
  assert_int_equal(bf__store_outbox_count(store, "m"), 3);
  /* The rows a ping confirmed go in the same transaction as new ones. */
  int64_t confirmed = ids[1];
  assert_int_equal(bf__store_outbox_add_many(store, "m", rows, 1, ids,
                                             confirmed), 0);
  assert_int_equal(bf__store_outbox_count(store, "m"), 2);
  assert_int_equal(bf__store_outbox_add_many(store, "m", NULL, 0, NULL,
                                             ids[0]), 0);
  assert_int_equal(bf__store_outbox_count(store, "m"), 0);
  assert_int_equal(bf__store_outbox_add_many(store, "m", NULL, 0, NULL, 0), 0);
  assert_int_equal(bf__store_outbox_add_many(store, NULL, rows, 3, ids, 0),
                   BF_EINVAL);

  assert_int_equal(bf__store_outbox_add(store, NULL, "x", 1, &id), BF_EINVAL);
  assert_int_equal(bf__store_outbox_each(store, "z", 0, 0, NULL, NULL),
                   BF_EINVAL);
  assert_int_equal(bf__store_outbox_count(store, NULL), BF_EINVAL);
  bf__store_close(store);
}

/* Writes commits until a background checkpoint has started. */
static void write_until_checkpoint(bf_store *store) {
  static char blob[4096];
  memset(blob, 'x', sizeof blob);
  for (int i = 0; i < 5000 && !bf__store_checkpointing(store); i++) {
    int64_t id = 0;
    assert_int_equal(bf__store_outbox_add(store, "c", blob, sizeof blob, &id),
                     0);
    assert_int_equal(bf__store_outbox_ack(store, "c", id), 0);
  }
  assert_true(bf__store_checkpointing(store));
}

/* WAL checkpoints on the thread pool, off the loop: one starts past the
 * threshold, completes, and writes go on; a store closed while one runs
 * lets it finish on its own connection. */
static void test_checkpoint_in_background(void **state) {
  struct fixture *f = *state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  bf_store *store = open_ok(f);
  assert_int_equal(bf__store_checkpoint_in_background(store, &loop), 0);
  write_until_checkpoint(store);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_false(bf__store_checkpointing(store));
  assert_int_equal(bf__store_checkpoints(store), 1);
  int64_t id = 0;
  assert_int_equal(bf__store_outbox_add(store, "c", "<x/>", 4, &id), 0);
  write_until_checkpoint(store);
  bf__store_close(store);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  store = open_ok(f);
  assert_int_equal(bf__store_outbox_count(store, "c"), 1);
  bf__store_close(store);
}

/* A callback that uses the store: acks each row it is given, adds a
 * follow-up for the first rows, and walks the outbox again inside. */
struct reentrant {
  bf_store *store;
  sqlite3 *other; /* a second connection: sees only committed rows */
  unsigned calls;
  int64_t last;
};

static int count_rows(void *data, int64_t id, const char *xml, size_t len) {
  (*(unsigned *)data)++;
  return 0;
}

static int reenter(void *data, int64_t id, const char *xml, size_t len) {
  struct reentrant *r = data;
  assert_true(id > r->last);
  r->last = id;
  r->calls++;
  assert_int_equal(bf__store_outbox_ack(r->store, "gw", id), 0);
  if (r->calls <= 3) {
    int64_t added = 0;
    assert_int_equal(bf__store_outbox_add(r->store, "gw", "<late/>", 7, &added),
                     0);
    /* Committed before add returned, even in the middle of a walk. */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(r->other,
                                        "SELECT count(*) FROM outbox "
                                        "WHERE id = ?1", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, added);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
  }
  if (r->calls == 1) {
    unsigned inner = 0;
    assert_int_equal(bf__store_outbox_each(r->store, "gw", 0, 0, count_rows,
                                           &inner), 0);
    assert_int_equal(inner, 100); /* 100 initial + 1 added - 1 acked */
  }
  return 0;
}

static void test_outbox_callback_may_use_store(void **state) {
  struct fixture *f = *state;
  bf_store *store = open_ok(f);
  char xml[32];
  for (int i = 0; i < 100; i++) {
    snprintf(xml, sizeof xml, "<message id='%d'/>", i);
    add(store, "gw", xml);
  }
  /* limit across batch boundaries */
  unsigned n = 0;
  assert_int_equal(bf__store_outbox_each(store, "gw", 0, 70, count_rows, &n), 0);
  assert_int_equal(n, 70);

  struct reentrant r = {.store = store};
  assert_int_equal(sqlite3_open_v2(f->path, &r.other, SQLITE_OPEN_READONLY,
                                   NULL), SQLITE_OK);
  assert_int_equal(bf__store_outbox_each(store, "gw", 0, 0, reenter, &r), 0);
  /* The rows added during the walk were walked too, and all acked. */
  assert_int_equal(r.calls, 103);
  assert_int_equal(bf__store_outbox_count(store, "gw"), 0);
  sqlite3_close(r.other);
  bf__store_close(store);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_open_creates_private_wal_db, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_open_tightens_loose_files, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
    cmocka_unit_test_setup_teardown(test_second_open_is_refused, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_open_errors_name_the_file, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_migrations_apply_in_order_once, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_failing_migration_rolls_back, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_newer_database_is_refused, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
    cmocka_unit_test_setup_teardown(test_outbox, setup, teardown),
    cmocka_unit_test_setup_teardown(test_checkpoint_in_background, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_outbox_callback_may_use_store, setup,
                                    teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
