/* Private: SQLite storage (WAL mode): schema versions per owner, a
 * key-value store per namespace, and the durable outbox. Single-threaded:
 * used on the loop thread only. */
#ifndef BF_STORE_H
#define BF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include <uv.h>

struct sqlite3;
typedef struct bf_store bf_store;

/* Opens (creating with mode 0600) the database at path, sets WAL mode,
 * synchronous=NORMAL, a busy timeout, foreign keys on, and applies the
 * core's own migrations (owner "core"). It first takes an exclusive flock
 * on "<path>.lock" (holding our pid) until close: a second daemon on the
 * same database fails here. On error returns BF_EIO / BF_ENOMEM (BF_EINVAL
 * if the core schema is newer than this code) and writes a message naming
 * the file and the cause to err. Open after any fork (daemonizing). */
int bf__store_open(bf_store **store, const char *path, char *err, size_t err_size);
void bf__store_close(bf_store *store);   /* NULL allowed */
/* From now on the WAL is checkpointed on loop's thread pool, with a
 * connection of its own, instead of inside a commit on the loop thread
 * (SQLite's automatic checkpoint, which fdatasyncs). loop: borrowed,
 * kept; run it to the end before closing it (a checkpoint in flight is a
 * request on it; the store itself may be closed first). BF_ENOTSUP when
 * SQLite was built without thread safety (the automatic checkpoint
 * stays). */
int bf__store_checkpoint_in_background(bf_store *store, uv_loop_t *loop);
/* Background checkpoints completed; whether one is running. */
unsigned long bf__store_checkpoints(const bf_store *store);
bool bf__store_checkpointing(const bf_store *store);
struct sqlite3 *bf__store_db(bf_store *store);
/* The message of the store's last failure ("" if none): what was being
 * done and SQLite's reason. Borrowed; valid until the next store call. */
const char *bf__store_errmsg(bf_store *store);

/* Brings owner's schema to version count: migrations[i] takes it from i to
 * i+1; each pending one runs in its own transaction together with the
 * version bump (so it must not contain BEGIN/COMMIT), and a failing one
 * leaves the version and the tables as they were. A database newer than
 * count (downgrade) is BF_EINVAL. owner: e.g. "core", "mod:irc".
 * 0, BF_EINVAL, BF_EIO. */
int bf__store_schema(bf_store *store, const char *owner,
                     const char *const *migrations, unsigned count);
/* The owner's current schema version (0 if none, or on error). */
unsigned bf__store_schema_version(bf_store *store, const char *owner);

/* Key-value store; ns separates owners (e.g. the gateway domain). value:
 * copied. get: *value malloc'd + NUL-terminated (taken), *len its size;
 * BF_ENOENT if absent. */
int bf__store_kv_get(bf_store *store, const char *ns, const char *key,
                     char **value, size_t *len);
int bf__store_kv_set(bf_store *store, const char *ns, const char *key,
                     const void *value, size_t len);
/* Deleting an absent key is not an error (0). */
int bf__store_kv_delete(bf_store *store, const char *ns, const char *key);

/* ---- durable outbox ------------------------------------------------------
 * Serialized stanzas for the server, per gateway (its domain), in order.
 * A row is committed before add returns; it is deleted by ack once the
 * server confirmed everything up to it. */
int bf__store_outbox_add(bf_store *store, const char *gateway,
                         const char *xml, size_t len, int64_t *id);
/* Adds n rows in one transaction, all or none (one commit instead of n:
 * the durable sends of one loop iteration), and in the same transaction
 * deletes the gateway's rows with id <= ack_upto when it is > 0 (what
 * the server confirmed since). rows and their xml: copied. ids[i]: the id
 * of rows[i], in increasing order. On error nothing changes (rolled
 * back). */
typedef struct bf_outbox_row {
  const char *xml;
  size_t len;
} bf_outbox_row;
int bf__store_outbox_add_many(bf_store *store, const char *gateway,
                              const bf_outbox_row *rows, size_t n,
                              int64_t *ids, int64_t ack_upto);
/* Deletes the gateway's rows with id <= upto. */
int bf__store_outbox_ack(bf_store *store, const char *gateway, int64_t upto);
/* Calls cb for the gateway's rows with id > after, in id order, at most
 * limit rows (0 = all). cb returns 0 to go on, non-zero to stop (that
 * value is returned). xml: borrowed for the call, NUL-terminated. Rows are
 * read in small batches and no statement is open while cb runs, so cb may
 * call any store function (add, ack, each); rows it adds are seen. */
typedef int (*bf_outbox_cb)(void *data, int64_t id, const char *xml, size_t len);
int bf__store_outbox_each(bf_store *store, const char *gateway, int64_t after,
                          unsigned limit, bf_outbox_cb cb, void *data);
/* The number of the gateway's rows, or a negative BF_E… code. */
int64_t bf__store_outbox_count(bf_store *store, const char *gateway);

#endif
