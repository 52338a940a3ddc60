/* SQLite storage: one connection in WAL mode, its statements prepared once
 * at open, a lock file so one database has one daemon. */
#include "store.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "babelfish/error.h"
#include "util.h"

/* Kept small: the whole daemon must idle under 4 MiB RSS, and the working
 * set (kv rows, an outbox that is normally near empty) is tiny. */
#define STORE_CACHE_KIB 512
/* Bounds the -wal file left after a checkpoint; the outbox churns. */
#define STORE_WAL_LIMIT_BYTES (4 * 1024 * 1024)
#define STORE_BUSY_TIMEOUT_MS 5000
/* With bf__store_checkpoint_in_background: the WAL is checkpointed on a
 * worker thread once it holds this many pages (SQLite's own automatic
 * threshold), so its fdatasync never stalls the loop (measured: 4-6 ms
 * per checkpoint on the loop thread, every ~10 s of a 500 stanzas/s
 * fan-out). */
#define STORE_CHECKPOINT_PAGES 1000

/* outbox_each copies rows in batches of at most this many rows / bytes
 * (a row always fits, however large), so that no statement is open while
 * the callback runs. */
#define OUTBOX_BATCH_ROWS 32
#define OUTBOX_BATCH_BYTES (256 * 1024)

enum {
  ST_SCHEMA_GET,
  ST_SCHEMA_SET,
  ST_KV_GET,
  ST_KV_SET,
  ST_KV_DELETE,
  ST_OUTBOX_ADD,
  ST_OUTBOX_ACK,
  ST_OUTBOX_EACH,
  ST_OUTBOX_COUNT,
  ST_COUNT
};

static const char *const statement_sql[ST_COUNT] = {
  [ST_SCHEMA_GET] = "SELECT version FROM schema_version WHERE owner = ?1",
  [ST_SCHEMA_SET] = "INSERT OR REPLACE INTO schema_version(owner, version) "
                    "VALUES (?1, ?2)",
  [ST_KV_GET] = "SELECT value FROM kv WHERE ns = ?1 AND key = ?2",
  [ST_KV_SET] = "INSERT OR REPLACE INTO kv(ns, key, value) VALUES (?1, ?2, ?3)",
  [ST_KV_DELETE] = "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
  [ST_OUTBOX_ADD] = "INSERT INTO outbox(gateway, xml, created) "
                    "VALUES (?1, ?2, ?3)",
  [ST_OUTBOX_ACK] = "DELETE FROM outbox WHERE gateway = ?1 AND id <= ?2",
  [ST_OUTBOX_EACH] = "SELECT id, xml FROM outbox WHERE gateway = ?1 "
                     "AND id > ?2 ORDER BY id LIMIT ?3",
  [ST_OUTBOX_COUNT] = "SELECT count(*) FROM outbox WHERE gateway = ?1",
};

/* The schema statements are needed to migrate, the others only exist once
 * the core's tables do. */
#define ST_FIRST_DATA ST_KV_GET

/* Core schema, owner "core". Append only: a released migration never
 * changes. AUTOINCREMENT so that an outbox id is never reused, even after
 * every row was acked and deleted: the component acks "everything up to
 * id N", which must not cover a newer row. */
static const char *const core_migrations[] = {
  "CREATE TABLE kv(ns TEXT, key TEXT, value BLOB, PRIMARY KEY (ns, key))"
  " WITHOUT ROWID;"
  "CREATE TABLE outbox(id INTEGER PRIMARY KEY AUTOINCREMENT,"
  " gateway TEXT NOT NULL, xml BLOB NOT NULL, created INTEGER NOT NULL);"
  "CREATE INDEX outbox_gateway_id ON outbox(gateway, id);",
  /* 2: gateway users (users.c, presence.c, msgid.c). A registration's
   * values go with it (ON DELETE CASCADE); contacts and message ids are
   * deleted explicitly on unregistration. */
  "CREATE TABLE users(gateway TEXT NOT NULL, jid TEXT NOT NULL,"
  " created INTEGER NOT NULL, PRIMARY KEY (gateway, jid)) WITHOUT ROWID;"
  "CREATE TABLE user_values(gateway TEXT NOT NULL, jid TEXT NOT NULL,"
  " var TEXT NOT NULL, idx INTEGER NOT NULL, value TEXT NOT NULL,"
  " PRIMARY KEY (gateway, jid, var, idx),"
  " FOREIGN KEY (gateway, jid) REFERENCES users(gateway, jid)"
  " ON DELETE CASCADE) WITHOUT ROWID;"
  "CREATE TABLE contacts(gateway TEXT NOT NULL, jid TEXT NOT NULL,"
  " contact TEXT NOT NULL, subscription INTEGER NOT NULL,"
  " PRIMARY KEY (gateway, jid, contact)) WITHOUT ROWID;"
  "CREATE TABLE msgids(id INTEGER PRIMARY KEY AUTOINCREMENT,"
  " gateway TEXT NOT NULL, jid TEXT NOT NULL, xmpp_id TEXT NOT NULL,"
  " foreign_id TEXT NOT NULL);"
  "CREATE INDEX msgids_xmpp ON msgids(gateway, jid, xmpp_id);"
  "CREATE INDEX msgids_foreign ON msgids(gateway, jid, foreign_id);"
  "CREATE INDEX msgids_gateway_id ON msgids(gateway, id);",
};

typedef struct checkpoint_job checkpoint_job;

struct bf_store {
  sqlite3 *db;
  sqlite3_stmt *st[ST_COUNT];
  int lock_fd;
  char errmsg[512];
  uv_loop_t *loop;             /* background checkpoints: the loop */
  char *path;                  /* for the checkpoint's own connection */
  checkpoint_job *job;         /* the checkpoint in flight, or NULL */
  unsigned long checkpoints;   /* background checkpoints completed */
};

/* One background checkpoint. The worker uses only the job (its own
 * connection, opened and closed there), never the store, so a store
 * closed meanwhile just leaves job->store NULL. */
struct checkpoint_job {
  uv_work_t req;
  bf_store *store;             /* NULL once the store is closed */
  char *path;                  /* copied */
  int rc;                      /* SQLite's result */
};

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_size, const char *fmt, ...) {
  if (!err || !err_size)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_size, fmt, ap);
  va_end(ap);
}

/* Records what failed and SQLite's reason; returns the BF_E… code. */
static int store_fail(bf_store *store, int sqlite_rc, const char *what) {
  snprintf(store->errmsg, sizeof store->errmsg, "%s: %s", what,
           sqlite3_errmsg(store->db));
  return (sqlite_rc & 0xff) == SQLITE_NOMEM ? BF_ENOMEM : BF_EIO;
}

/* Makes a cached statement reusable and drops its borrowed bindings. */
static void statement_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Binds a blob, never as SQL NULL: SQLite binds a NULL pointer as NULL, so
 * an empty value gets a non-NULL pointer. Bound SQLITE_STATIC: the caller's
 * buffer outlives the step, and statement_done drops it. */
static int bind_blob(sqlite3_stmt *st, int index, const void *data, size_t len) {
  return sqlite3_bind_blob(st, index, len ? data : "", (int)len, SQLITE_STATIC);
}

static int bind_text(sqlite3_stmt *st, int index, const char *text) {
  return sqlite3_bind_text(st, index, text, -1, SQLITE_STATIC);
}

/* Runs a statement that returns no row. */
static int step_done(bf_store *store, sqlite3_stmt *st, const char *what) {
  int rc = 0;
  int src = sqlite3_step(st);
  if (src != SQLITE_DONE)
    rc = store_fail(store, src, what);
  statement_done(st);
  return rc;
}

/* ---- files and the lock ------------------------------------------------ */

/* Takes the "<db>.lock" lock (held until close) and writes our pid into it.
 * Two daemons on one database would both attach to the server, and
 * ejabberd splits a component domain's traffic at random between them
 * (PROTOCOL-NOTES §1.7), so the second one must refuse to start. */
static int lock_take(bf_store *store, const char *path, char *err,
                     size_t err_size) {
  int rc = 0;
  size_t n = strlen(path) + sizeof ".lock";
  char *lock_path = malloc(n);
  if (!lock_path) {
    rc = BF_ENOMEM;
    set_err(err, err_size, "%s: out of memory", path);
    goto out;
  }
  snprintf(lock_path, n, "%s.lock", path);
  int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = BF_EIO;
    set_err(err, err_size, "%s: cannot open lock file: %s", lock_path,
            strerror(errno));
    goto out;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;
    if (e == EWOULDBLOCK) {
      char pid[32] = "";
      ssize_t got = pread(fd, pid, sizeof pid - 1, 0);
      long other = got > 0 ? strtol(pid, NULL, 10) : 0;
      if (other > 0)
        set_err(err, err_size,
                "%s: database is in use by another babelfish (pid %ld)? Only "
                "one instance may use a database: stop the other one or "
                "configure another database path", path, other);
      else
        set_err(err, err_size,
                "%s: database is in use by another babelfish? Only one "
                "instance may use a database: stop the other one or "
                "configure another database path", path);
    } else {
      set_err(err, err_size, "%s: cannot lock: %s", lock_path, strerror(e));
    }
    rc = BF_EIO;
    close(fd);
    goto out;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
    /* Ignored: the pid only makes the error above friendlier, it is no
     * reason to refuse to start. */
  }
  store->lock_fd = fd;
out:
  free(lock_path);
  return rc;
}

/* Makes path a 0600 regular file: the database holds secrets
 * (registrations) and SQLite gives its -wal and -shm files the database
 * file's mode. create: create it if missing; else a missing file is fine. */
static int file_tighten(const char *path, bool create, char *err,
                        size_t err_size) {
  int rc = 0;
  int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (fd < 0) {
    if (!create && errno == ENOENT)
      goto out;
    rc = BF_EIO;
    set_err(err, err_size, "%s: cannot open database: %s", path,
            strerror(errno));
    goto out;
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    rc = BF_EIO;
    set_err(err, err_size, "%s: cannot open database: %s", path,
            strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = BF_EIO;
    set_err(err, err_size, "%s: cannot open database: not a regular file",
            path);
    goto out;
  }
  if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0) {
    rc = BF_EIO;
    set_err(err, err_size, "%s: cannot make the database private (mode "
            "0600): %s", path, strerror(errno));
    goto out;
  }
out:
  if (fd >= 0)
    close(fd);
  return rc;
}

/* The database and the -wal and -shm files SQLite may have left. */
static int files_prepare(const char *path, char *err, size_t err_size) {
  int rc = file_tighten(path, true, err, err_size);
  if (rc)
    return rc;
  static const char *const suffixes[] = {"-wal", "-shm"};
  size_t n = strlen(path) + 8;
  char *side = malloc(n);
  if (!side) {
    set_err(err, err_size, "%s: out of memory", path);
    return BF_ENOMEM;
  }
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes && !rc; i++) {
    snprintf(side, n, "%s%s", path, suffixes[i]);
    rc = file_tighten(side, false, err, err_size);
  }
  free(side);
  return rc;
}

/* ---- open / close ------------------------------------------------------ */

static int configure(bf_store *store) {
  int rc = 0;
  sqlite3_stmt *st = NULL;
  int src = sqlite3_prepare_v2(store->db, "PRAGMA journal_mode=WAL", -1, &st,
                               NULL);
  if (src != SQLITE_OK) {
    rc = store_fail(store, src, "setting WAL mode");
    goto out;
  }
  src = sqlite3_step(st);
  if (src != SQLITE_ROW) {
    rc = store_fail(store, src, "setting WAL mode");
    goto out;
  }
  /* The pragma answers with the mode in force: on a filesystem without
   * shared memory support it stays "delete" instead of failing. */
  const char *mode = (const char *)sqlite3_column_text(st, 0);
  if (!mode || strcmp(mode, "wal") != 0) {
    snprintf(store->errmsg, sizeof store->errmsg,
             "setting WAL mode: the journal mode stayed \"%s\" (is the "
             "database on a network filesystem?)", mode ? mode : "");
    rc = BF_EIO;
    goto out;
  }
  sqlite3_finalize(st);
  st = NULL;

  char sql[256];
  snprintf(sql, sizeof sql,
           "PRAGMA synchronous=NORMAL;"
           "PRAGMA foreign_keys=ON;"
           "PRAGMA cache_size=-%d;"
           "PRAGMA journal_size_limit=%d;"
           "CREATE TABLE IF NOT EXISTS schema_version(owner TEXT PRIMARY KEY,"
           " version INTEGER);",
           STORE_CACHE_KIB, STORE_WAL_LIMIT_BYTES);
  src = sqlite3_exec(store->db, sql, NULL, NULL, NULL);
  if (src != SQLITE_OK) {
    rc = store_fail(store, src, "configuring");
    goto out;
  }
  src = sqlite3_busy_timeout(store->db, STORE_BUSY_TIMEOUT_MS);
  if (src != SQLITE_OK)
    rc = store_fail(store, src, "configuring");
out:
  sqlite3_finalize(st);
  return rc;
}

static int prepare_range(bf_store *store, int first, int end) {
  for (int i = first; i < end; i++) {
    int src = sqlite3_prepare_v3(store->db, statement_sql[i], -1,
                                 SQLITE_PREPARE_PERSISTENT, &store->st[i],
                                 NULL);
    if (src != SQLITE_OK)
      return store_fail(store, src, "preparing statements");
  }
  return 0;
}

int bf__store_open(bf_store **out_store, const char *path, char *err,
                   size_t err_size) {
  int rc = 0;
  bool umask_set = false;
  mode_t old_umask = 0;
  *out_store = NULL;
  set_err(err, err_size, "%s", "");
  if (!path || !*path) {
    set_err(err, err_size, "no database path given");
    return BF_EINVAL;
  }
  bf_store *store = calloc(1, sizeof *store);
  if (!store) {
    set_err(err, err_size, "%s: out of memory", path);
    return BF_ENOMEM;
  }
  store->lock_fd = -1;

  rc = lock_take(store, path, err, err_size);
  if (rc)
    goto out;
  rc = files_prepare(path, err, err_size);
  if (rc)
    goto out;
  /* SQLite creates -wal and -shm with the database's mode, but any file it
   * creates must never be readable by others, whatever our umask. Open
   * runs at startup, before any thread could create files of its own. */
  /* No bulk page-cache preallocation (SQLite's default sets up 20 pages
   * at once on first use): pages come one by one, as the small working set
   * needs them. Only possible before SQLite initialises; a second open in
   * the same process (tests) gets SQLITE_MISUSE, harmlessly. */
  (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
  old_umask = umask(077);
  umask_set = true;
  int src = sqlite3_open_v2(path, &store->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                SQLITE_OPEN_NOMUTEX,
                            NULL);
  if (src != SQLITE_OK) {
    /* The handle is allocated even on failure, for its message. */
    if (store->db)
      store_fail(store, src, "open");
    else
      snprintf(store->errmsg, sizeof store->errmsg, "open: out of memory");
    rc = (src & 0xff) == SQLITE_NOMEM ? BF_ENOMEM : BF_EIO;
    goto out;
  }
  sqlite3_extended_result_codes(store->db, 1);
  rc = configure(store);
  if (!rc)
    rc = prepare_range(store, 0, ST_FIRST_DATA);
  if (!rc)
    rc = bf__store_schema(store, "core", core_migrations,
                          sizeof core_migrations / sizeof *core_migrations);
  if (!rc)
    rc = prepare_range(store, ST_FIRST_DATA, ST_COUNT);
out:
  if (umask_set)
    umask(old_umask);
  if (rc) {
    /* err holds the lock/file message already; SQLite's is in errmsg. */
    if (store->errmsg[0])
      set_err(err, err_size, "%s: cannot open database: %s", path,
              store->errmsg);
    bf__store_close(store);
    return rc;
  }
  *out_store = store;
  return 0;
}

/* ---- background checkpoints -------------------------------------------- */

static void checkpoint_work(uv_work_t *req) {
  checkpoint_job *job = bf_container_of(req, checkpoint_job, req);
  sqlite3 *db = NULL;
  job->rc = sqlite3_open_v2(job->path, &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (job->rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    /* PASSIVE: copies what it can without waiting for the loop's
     * connection, which goes on writing to the WAL meanwhile. */
    job->rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                        NULL, NULL);
  }
  sqlite3_close(db);
}

static void checkpoint_done(uv_work_t *req, int status) {
  checkpoint_job *job = bf_container_of(req, checkpoint_job, req);
  bf_store *store = job->store;
  if (store) {
    store->job = NULL;
    if (status == 0 && job->rc == SQLITE_OK)
      store->checkpoints++;
  }
  free(job->path);
  free(job);
}

/* sqlite3_wal_hook: after each commit on the loop's connection, with the
 * WAL's size in pages. */
static int on_wal_commit(void *data, sqlite3 *db, const char *name,
                         int pages) {
  bf_store *store = data;
  (void)db;
  (void)name;
  if (pages < STORE_CHECKPOINT_PAGES || store->job)
    return SQLITE_OK;
  checkpoint_job *job = calloc(1, sizeof *job);
  char *path = store->path ? strdup(store->path) : NULL;
  if (!job || !path) {
    free(job);
    free(path);
    return SQLITE_OK; /* tried again at the next commit */
  }
  job->store = store;
  job->path = path;
  if (uv_queue_work(store->loop, &job->req, checkpoint_work,
                    checkpoint_done) != 0) {
    free(job->path);
    free(job);
    return SQLITE_OK;
  }
  store->job = job;
  return SQLITE_OK;
}

int bf__store_checkpoint_in_background(bf_store *store, uv_loop_t *loop) {
  /* Two connections in two threads need a thread-safe SQLite. */
  if (!sqlite3_threadsafe())
    return BF_ENOTSUP;
  const char *path = sqlite3_db_filename(store->db, "main");
  if (!path || !*path)
    return BF_EINVAL;
  free(store->path);
  store->path = strdup(path);
  if (!store->path)
    return BF_ENOMEM;
  store->loop = loop;
  /* Replaces SQLite's automatic checkpoint, which ran in the commit. */
  sqlite3_wal_hook(store->db, on_wal_commit, store);
  return 0;
}

unsigned long bf__store_checkpoints(const bf_store *store) {
  return store->checkpoints;
}

bool bf__store_checkpointing(const bf_store *store) {
  return store->job != NULL;
}

void bf__store_close(bf_store *store) {
  if (!store)
    return;
  if (store->job)
    store->job->store = NULL; /* it finishes on its own connection */
  free(store->path);
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(store->st[i]);
  /* _v2: a module that leaked a statement must not keep the close from
   * happening; the last connection checkpoints and removes the -wal. */
  sqlite3_close_v2(store->db);
  if (store->lock_fd >= 0)
    close(store->lock_fd);
  free(store);
}

struct sqlite3 *bf__store_db(bf_store *store) {
  return store->db;
}

const char *bf__store_errmsg(bf_store *store) {
  return store->errmsg;
}

/* ---- schema versions ---------------------------------------------------- */

/* 0 with *version set (0 when the owner has no row), or BF_EIO. */
static int schema_read(bf_store *store, const char *owner, int64_t *version) {
  int rc = 0;
  sqlite3_stmt *st = store->st[ST_SCHEMA_GET];
  *version = 0;
  bind_text(st, 1, owner);
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    *version = sqlite3_column_int64(st, 0);
  else if (src != SQLITE_DONE)
    rc = store_fail(store, src, "reading the schema version");
  statement_done(st);
  return rc;
}

/* One migration and its version bump, all or nothing (SQLite's DDL is
 * transactional, so a failure leaves no partial table behind). */
static int schema_step(bf_store *store, const char *owner, const char *sql,
                       unsigned to) {
  int rc = 0;
  char what[160];
  snprintf(what, sizeof what, "schema \"%s\" migration to version %u", owner,
           to);
  /* IMMEDIATE: take the write lock up front, not halfway through. */
  int src = sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    return store_fail(store, src, what);
  src = sqlite3_exec(store->db, sql, NULL, NULL, NULL);
  if (src != SQLITE_OK) {
    rc = store_fail(store, src, what);
    goto out;
  }
  sqlite3_stmt *st = store->st[ST_SCHEMA_SET];
  bind_text(st, 1, owner);
  sqlite3_bind_int64(st, 2, to);
  rc = step_done(store, st, what);
  if (rc)
    goto out;
  src = sqlite3_exec(store->db, "COMMIT", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    rc = store_fail(store, src, what);
out:
  /* A failed COMMIT may leave the transaction open; a failed statement
   * may already have rolled it back (then ROLLBACK is a harmless error). */
  if (rc && !sqlite3_get_autocommit(store->db))
    sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int bf__store_schema(bf_store *store, const char *owner,
                     const char *const *migrations, unsigned count) {
  int rc = 0;
  store->errmsg[0] = '\0';
  if (!owner || !*owner || (count && !migrations)) {
    snprintf(store->errmsg, sizeof store->errmsg, "schema: bad arguments");
    return BF_EINVAL;
  }
  int64_t version;
  rc = schema_read(store, owner, &version);
  if (rc)
    return rc;
  if (version < 0 || version > (int64_t)count) {
    snprintf(store->errmsg, sizeof store->errmsg,
             "schema \"%s\" is at version %" PRId64 " but this babelfish only "
             "knows versions up to %u: the database was used by a newer "
             "babelfish; run that one or restore a backup", owner, version,
             count);
    return BF_EINVAL;
  }
  for (unsigned i = (unsigned)version; i < count && !rc; i++) {
    if (!migrations[i]) {
      snprintf(store->errmsg, sizeof store->errmsg,
               "schema \"%s\": migration %u is NULL", owner, i);
      return BF_EINVAL;
    }
    rc = schema_step(store, owner, migrations[i], i + 1);
  }
  return rc;
}

unsigned bf__store_schema_version(bf_store *store, const char *owner) {
  int64_t version = 0;
  if (!owner || schema_read(store, owner, &version) || version < 0 ||
      version > UINT_MAX)
    return 0;
  return (unsigned)version;
}

/* ---- key-value ---------------------------------------------------------- */

int bf__store_kv_get(bf_store *store, const char *ns, const char *key,
                     char **value, size_t *len) {
  int rc = 0;
  *value = NULL;
  *len = 0;
  if (!ns || !key)
    return BF_EINVAL;
  sqlite3_stmt *st = store->st[ST_KV_GET];
  bind_text(st, 1, ns);
  bind_text(st, 2, key);
  int src = sqlite3_step(st);
  if (src == SQLITE_DONE) {
    rc = BF_ENOENT;
    goto out;
  }
  if (src != SQLITE_ROW) {
    rc = store_fail(store, src, "kv get");
    goto out;
  }
  /* blob before bytes (SQLite's rule); a zero-length blob is NULL. */
  const void *data = sqlite3_column_blob(st, 0);
  size_t n = (size_t)sqlite3_column_bytes(st, 0);
  char *copy = malloc(n + 1);
  if (!copy) {
    rc = BF_ENOMEM;
    goto out;
  }
  if (n)
    memcpy(copy, data, n);
  copy[n] = '\0';
  *value = copy;
  *len = n;
out:
  statement_done(st);
  return rc;
}

int bf__store_kv_set(bf_store *store, const char *ns, const char *key,
                     const void *value, size_t len) {
  if (!ns || !key || (len && !value))
    return BF_EINVAL;
  if (len > INT_MAX)
    return BF_E2BIG;
  sqlite3_stmt *st = store->st[ST_KV_SET];
  bind_text(st, 1, ns);
  bind_text(st, 2, key);
  bind_blob(st, 3, value, len);
  return step_done(store, st, "kv set");
}

int bf__store_kv_delete(bf_store *store, const char *ns, const char *key) {
  if (!ns || !key)
    return BF_EINVAL;
  sqlite3_stmt *st = store->st[ST_KV_DELETE];
  bind_text(st, 1, ns);
  bind_text(st, 2, key);
  return step_done(store, st, "kv delete");
}

/* ---- outbox ------------------------------------------------------------- */

int bf__store_outbox_add(bf_store *store, const char *gateway,
                         const char *xml, size_t len, int64_t *id) {
  if (!gateway || (len && !xml))
    return BF_EINVAL;
  if (len > INT_MAX)
    return BF_E2BIG;
  sqlite3_stmt *st = store->st[ST_OUTBOX_ADD];
  bind_text(st, 1, gateway);
  bind_blob(st, 2, xml, len);
  sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
  /* Autocommit, unless add_many opened a transaction: the row is
   * committed when the step returns. */
  int rc = step_done(store, st, "outbox add");
  if (!rc && id)
    *id = sqlite3_last_insert_rowid(store->db);
  return rc;
}

int bf__store_outbox_add_many(bf_store *store, const char *gateway,
                              const bf_outbox_row *rows, size_t n,
                              int64_t *ids, int64_t ack_upto) {
  int rc = 0;
  if (!gateway || (n && (!rows || !ids)))
    return BF_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (rows[i].len && !rows[i].xml)
      return BF_EINVAL;
  if (n == 0 && ack_upto <= 0)
    return 0;
  /* IMMEDIATE: take the write lock up front, not halfway through. */
  int src = sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    return store_fail(store, src, "outbox add (begin)");
  if (ack_upto > 0)
    rc = bf__store_outbox_ack(store, gateway, ack_upto);
  for (size_t i = 0; i < n && !rc; i++) {
    rc = bf__store_outbox_add(store, gateway, rows[i].xml, rows[i].len,
                              &ids[i]);
  }
  if (rc)
    goto out;
  src = sqlite3_exec(store->db, "COMMIT", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    rc = store_fail(store, src, "outbox add (commit)");
out:
  /* As in schema_step: a failed COMMIT may leave the transaction open. */
  if (rc && !sqlite3_get_autocommit(store->db))
    sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int bf__store_outbox_ack(bf_store *store, const char *gateway, int64_t upto) {
  if (!gateway)
    return BF_EINVAL;
  sqlite3_stmt *st = store->st[ST_OUTBOX_ACK];
  bind_text(st, 1, gateway);
  sqlite3_bind_int64(st, 2, upto);
  return step_done(store, st, "outbox ack");
}

struct outbox_row {
  int64_t id;
  char *xml;
  size_t len;
};

/* Copies up to want rows with id > after into rows[]; *got their number.
 * The statement is reset before return, so nothing is open afterwards. */
static int outbox_batch(bf_store *store, const char *gateway, int64_t after,
                        unsigned want, struct outbox_row *rows,
                        unsigned *got) {
  int rc = 0;
  size_t bytes = 0;
  sqlite3_stmt *st = store->st[ST_OUTBOX_EACH];
  *got = 0;
  bind_text(st, 1, gateway);
  sqlite3_bind_int64(st, 2, after);
  sqlite3_bind_int64(st, 3, want);
  while (*got < want && bytes < OUTBOX_BATCH_BYTES) {
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE)
      break;
    if (src != SQLITE_ROW) {
      rc = store_fail(store, src, "outbox read");
      goto out;
    }
    const void *data = sqlite3_column_blob(st, 1);
    size_t n = (size_t)sqlite3_column_bytes(st, 1);
    char *copy = malloc(n + 1);
    if (!copy) {
      rc = BF_ENOMEM;
      goto out;
    }
    if (n)
      memcpy(copy, data, n);
    copy[n] = '\0';
    rows[*got] = (struct outbox_row){sqlite3_column_int64(st, 0), copy, n};
    (*got)++;
    bytes += n;
  }
out:
  statement_done(st);
  return rc;
}

/* The callback runs with no statement open: it may call any store function
 * (add, ack, even each), and an add it makes is committed at once instead
 * of waiting for our read transaction to end. */
int bf__store_outbox_each(bf_store *store, const char *gateway, int64_t after,
                          unsigned limit, bf_outbox_cb cb, void *data) {
  int rc = 0;
  struct outbox_row rows[OUTBOX_BATCH_ROWS];
  unsigned got = 0, used = 0, done = 0;
  if (!gateway || !cb)
    return BF_EINVAL;
  for (;;) {
    got = used = 0;
    unsigned want = OUTBOX_BATCH_ROWS;
    if (limit && limit - done < want)
      want = limit - done;
    if (!want)
      break;
    rc = outbox_batch(store, gateway, after, want, rows, &got);
    if (rc || !got)
      break;
    for (used = 0; used < got && !rc; used++) {
      after = rows[used].id;
      rc = cb(data, rows[used].id, rows[used].xml, rows[used].len);
      free(rows[used].xml);
    }
    done += used;
    if (rc)
      break;
  }
  /* Rows copied but not handed out (the callback stopped, or a copy
   * failed part-way) are freed here. */
  for (; used < got; used++)
    free(rows[used].xml);
  return rc;
}

int64_t bf__store_outbox_count(bf_store *store, const char *gateway) {
  int64_t count = 0;
  if (!gateway)
    return BF_EINVAL;
  sqlite3_stmt *st = store->st[ST_OUTBOX_COUNT];
  bind_text(st, 1, gateway);
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    count = sqlite3_column_int64(st, 0);
  else
    count = store_fail(store, src, "outbox count");
  statement_done(st);
  return count;
}
