/* The message-id map: per user, pairs of an XMPP message id and the id the
 * foreign network gave the same message, so that a receipt (XEP-0184), a
 * correction (XEP-0308) or a reply on either side can name the message the
 * other side knows. Rows live in the store (core migration 2, table
 * msgids), so the map survives restarts; it is bounded per gateway by
 * `message_ids`, oldest rows dropped first: a correction of a message
 * that old is rare, and a transport without the map just sends it as a new
 * message.
 *
 * An id may be put twice (a client reusing ids, a foreign network
 * re-sending): lookups return the newest row, which is what a correction
 * of "the last message with this id" means (XEP-0308 §5). */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/error.h"
#include "gateway.h"
#include "log.h"
#include "users.h"
#include "util.h"

/* `message_ids` when the configuration leaves it 0. */
#define MSGID_DEFAULT_MAX 10000u
/* Longest id stored, in bytes: ids are opaque strings, and servers' and
 * clients' ids are far shorter (UUIDs, 36 bytes); anything longer is a
 * peer trying to fill the database. */
#define MSGID_ID_MAX 1024

static inline bf_gateway *gw_of(const bf_host *host) {
  return bf_container_of(host, bf_gateway, host);
}

/* The gateway is the component domain, as for the outbox: a section may be
 * renamed, its domain is what users' rosters and ids belong to. */
static const char *const sql_put =
    "INSERT INTO msgids(gateway, jid, xmpp_id, foreign_id) "
    "VALUES (?1, ?2, ?3, ?4)";
/* ORDER BY id DESC: the newest match; the (gateway, jid, xmpp_id) index
 * holds the rowid, so this is one index seek. */
static const char *const sql_by_xmpp =
    "SELECT foreign_id FROM msgids WHERE gateway = ?1 AND jid = ?2 "
    "AND xmpp_id = ?3 ORDER BY id DESC LIMIT 1";
static const char *const sql_by_foreign =
    "SELECT xmpp_id FROM msgids WHERE gateway = ?1 AND jid = ?2 "
    "AND foreign_id = ?3 ORDER BY id DESC LIMIT 1";
static const char *const sql_count =
    "SELECT count(*) FROM msgids WHERE gateway = ?1";
/* Keeps the newest ?2 rows of the gateway: deletes from the (?2+1)-th
 * newest down. With fewer rows the subquery is NULL and nothing goes. */
static const char *const sql_prune =
    "DELETE FROM msgids WHERE gateway = ?1 AND id <= "
    "(SELECT id FROM msgids WHERE gateway = ?1 ORDER BY id DESC "
    "LIMIT 1 OFFSET ?2)";
static const char *const sql_delete_user =
    "DELETE FROM msgids WHERE gateway = ?1 AND jid = ?2";

static sqlite3 *db_of(bf_gateway *gw) {
  return bf__store_db(gw->daemon->store);
}

/* Logs what failed with SQLite's reason (never the ids: they are users'
 * data) and returns BF_EIO. */
static int fail(bf_gateway *gw, const char *what) {
  bf__warn(gw->conf->section, "message ids: %s failed: %s", what,
           sqlite3_errmsg(db_of(gw)));
  return BF_EIO;
}

/* Makes a cached statement reusable and drops its borrowed bindings. */
static void statement_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static bool id_valid(const char *id) {
  return id && *id && strnlen(id, MSGID_ID_MAX + 1) <= MSGID_ID_MAX;
}

static bool user_valid(const char *user) {
  return user && *user;
}

/* Bound SQLITE_STATIC: the strings are the caller's and outlive the step;
 * statement_done drops them. */
static int bind_text(sqlite3_stmt *st, int index, const char *text) {
  return sqlite3_bind_text(st, index, text, -1, SQLITE_STATIC);
}

/* The map must be open (bf__msgid_init) before the host functions are
 * used; a module calling them in --check-config, or after a failed init,
 * gets BF_EIO like any other storage failure. */
static bool map_open(bf_gateway *gw) {
  if (gw->users.msgids.put)
    return true;
  bf__warn(gw->conf->section, "message ids: the map is not open");
  return false;
}

/* Puts between two counts of the gateway's rows: counting walks the
 * (gateway, id) index, so it is done once every max/16 puts, which costs
 * about 16 index entries per put and lets the table overshoot max by at
 * most 1/16 between two prunes. */
static unsigned prune_interval(const bf_msgid_map *map) {
  unsigned n = map->max / 16;
  return n ? n : 1;
}

/* Deletes the gateway's oldest rows beyond max, if it has more. */
static int prune(bf_gateway *gw) {
  bf_msgid_map *map = &gw->users.msgids;
  int rc = 0;
  sqlite3_int64 rows = 0;
  bind_text(map->count, 1, gw->conf->domain);
  int src = sqlite3_step(map->count);
  if (src == SQLITE_ROW)
    rows = sqlite3_column_int64(map->count, 0);
  statement_done(map->count);
  if (src != SQLITE_ROW)
    return fail(gw, "counting entries");
  if (rows <= (sqlite3_int64)map->max)
    return 0;
  bind_text(map->prune, 1, gw->conf->domain);
  sqlite3_bind_int64(map->prune, 2, map->max);
  if (sqlite3_step(map->prune) != SQLITE_DONE)
    rc = fail(gw, "dropping the oldest entries");
  else
    bf__debug(gw->conf->section, "message ids: dropped %d oldest entries",
              sqlite3_changes(db_of(gw)));
  statement_done(map->prune);
  return rc;
}

int bf__msgid_init(bf_gateway *gw) {
  bf_msgid_map *map = &gw->users.msgids;
  int rc = 0;
  struct {
    sqlite3_stmt **st;
    const char *sql;
  } const statements[] = {
      {&map->put, sql_put},       {&map->by_xmpp, sql_by_xmpp},
      {&map->by_foreign, sql_by_foreign}, {&map->count, sql_count},
      {&map->prune, sql_prune},   {&map->delete_user, sql_delete_user},
  };
  memset(map, 0, sizeof *map);
  map->max = gw->conf->message_ids ? gw->conf->message_ids : MSGID_DEFAULT_MAX;
  for (size_t i = 0; i < BF_ARRAY_SIZE(statements); i++) {
    if (sqlite3_prepare_v3(db_of(gw), statements[i].sql, -1,
                           SQLITE_PREPARE_PERSISTENT, statements[i].st,
                           NULL) != SQLITE_OK) {
      rc = fail(gw, "preparing statements");
      goto out;
    }
  }
  /* message_ids may have been lowered since the last run. */
  rc = prune(gw);
out:
  if (rc)
    bf__msgid_close(gw);
  return rc;
}

void bf__msgid_close(bf_gateway *gw) {
  bf_msgid_map *map = &gw->users.msgids;
  sqlite3_finalize(map->put);
  sqlite3_finalize(map->by_xmpp);
  sqlite3_finalize(map->by_foreign);
  sqlite3_finalize(map->count);
  sqlite3_finalize(map->prune);
  sqlite3_finalize(map->delete_user);
  memset(map, 0, sizeof *map);
}

int bf__msgid_delete_user(bf_gateway *gw, const char *bare) {
  bf_msgid_map *map = &gw->users.msgids;
  int rc = 0;
  if (!user_valid(bare))
    return BF_EINVAL;
  if (!map_open(gw))
    return BF_EIO;
  bind_text(map->delete_user, 1, gw->conf->domain);
  bind_text(map->delete_user, 2, bare);
  if (sqlite3_step(map->delete_user) != SQLITE_DONE)
    rc = fail(gw, "deleting a user's entries");
  statement_done(map->delete_user);
  return rc;
}

int bf__msgid_put(const bf_host *host, const char *user, const char *xmpp_id,
                  const char *foreign_id) {
  bf_gateway *gw = gw_of(host);
  bf_msgid_map *map = &gw->users.msgids;
  if (!user_valid(user) || !id_valid(xmpp_id) || !id_valid(foreign_id))
    return BF_EINVAL;
  if (!map_open(gw))
    return BF_EIO;
  bind_text(map->put, 1, gw->conf->domain);
  bind_text(map->put, 2, user);
  bind_text(map->put, 3, xmpp_id);
  bind_text(map->put, 4, foreign_id);
  int src = sqlite3_step(map->put);
  statement_done(map->put);
  if (src != SQLITE_DONE)
    return fail(gw, "storing an entry");
  /* The entry is stored: a failed prune is logged and retried at the next
   * put (the count is not reset), it does not fail this one. */
  if (++map->since_prune >= prune_interval(map) && prune(gw) == 0)
    map->since_prune = 0;
  return 0;
}

/* One lookup: the newest row's other id for key, malloc'd in *out. */
static int lookup(bf_gateway *gw, sqlite3_stmt *st, const char *user,
                  const char *key, char **out, const char *what) {
  int rc = 0;
  if (out)
    *out = NULL;
  if (!out || !user_valid(user) || !id_valid(key))
    return BF_EINVAL;
  if (!map_open(gw))
    return BF_EIO;
  bind_text(st, 1, gw->conf->domain);
  bind_text(st, 2, user);
  bind_text(st, 3, key);
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    const unsigned char *text = sqlite3_column_text(st, 0);
    /* NULL for a NOT NULL column means SQLite ran out of memory. */
    *out = text ? strdup((const char *)text) : NULL;
    if (!*out)
      rc = BF_ENOMEM;
  } else if (src == SQLITE_DONE) {
    rc = BF_ENOENT;
  } else {
    rc = fail(gw, what);
  }
  statement_done(st);
  return rc;
}

int bf__msgid_foreign(const bf_host *host, const char *user,
                      const char *xmpp_id, char **foreign_id) {
  bf_gateway *gw = gw_of(host);
  return lookup(gw, gw->users.msgids.by_xmpp, user, xmpp_id, foreign_id,
                "looking up a foreign id");
}

int bf__msgid_xmpp(const bf_host *host, const char *user,
                   const char *foreign_id, char **xmpp_id) {
  bf_gateway *gw = gw_of(host);
  return lookup(gw, gw->users.msgids.by_foreign, user, foreign_id, xmpp_id,
                "looking up an XMPP id");
}
