/* Channel history: messages stored once per channel (not once per user:
 * the same line arriving on several users' connections is kept once),
 * written in batches at the module's tick so a busy channel costs one
 * transaction a second, bounded per channel, and replayed as MUC history
 * (XEP-0045 §7.2.14) with delayed-delivery stamps (XEP-0203) and stable
 * ids (XEP-0359) when someone joins. */
#include "irc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

/* Migration 2 of the module's schema (irc.c lists them). */
const char bf_irc_history_schema[] =
    "CREATE TABLE irc_history(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " gateway TEXT NOT NULL, server TEXT NOT NULL, channel TEXT NOT NULL,"
    " stamp INTEGER NOT NULL, nick TEXT NOT NULL, body TEXT NOT NULL);"
    "CREATE INDEX irc_history_channel ON irc_history(gateway, server,"
    " channel, id);";

/* A line seen on one connection is the same line seen on another when
 * server, channel, nick and text match within this time. */
#define SAME_LINE_MS 3000u



static void entry_free(struct bf_irc_history_entry *e) {
  free(e->server);
  free(e->channel);
  free(e->nick);
  free(e->body);
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* IRC channel names are case-insensitive: stored lowercased (ASCII; the
 * rfc1459 casemapping's {}|^ vs []\~ is left alone). */
static void lower(char *out, size_t size, const char *in) {
  size_t i = 0;
  for (; in[i] && i + 1 < size; i++)
    out[i] = (char)tolower((unsigned char)in[i]);
  out[i] = '\0';
}

void bf_irc_history_add(bf_irc *irc, const char *server, const char *name,
                        const char *nick, const char *body) {
  char channel[256];
  lower(channel, sizeof channel, name);
  uint64_t now = uv_now(irc->host->loop);
  /* Seen recently on another connection? Pending entries are the recent
   * ones (flushed every tick). */
  for (size_t i = 0; i < irc->n_history; i++) {
    const struct bf_irc_history_entry *e = &irc->history[i];
    if (now - e->seen_ms <= SAME_LINE_MS && !strcasecmp(e->channel, channel) &&
        !strcasecmp(e->server, server) && !strcmp(e->nick, nick) &&
        !strcmp(e->body, body))
      return;
  }
  if (irc->n_history >= BF_IRC_HISTORY_PENDING_MAX)
    bf_irc_history_flush(irc);
  struct bf_irc_history_entry *e = &irc->history[irc->n_history];
  memset(e, 0, sizeof *e);
  e->server = strdup(server);
  e->channel = strdup(channel);
  e->nick = strdup(nick);
  e->body = strdup(body);
  e->stamp_ms = wall_ms();
  e->seen_ms = now;
  if (!e->server || !e->channel || !e->nick || !e->body) {
    entry_free(e);
    return;
  }
  irc->n_history++;
}

/* Keeps the newest BF_IRC_HISTORY_MAX rows of a channel. */
static void prune(sqlite3 *db, const char *gateway, const char *server,
                  const char *channel) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "DELETE FROM irc_history WHERE gateway = ?1 AND "
                         "server = ?2 AND channel = ?3 AND id <= (SELECT id "
                         "FROM irc_history WHERE gateway = ?1 AND server = ?2 "
                         "AND channel = ?3 ORDER BY id DESC LIMIT 1 OFFSET ?4)",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_text(st, 1, gateway, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, server, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, channel, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 4, BF_IRC_HISTORY_MAX);
  (void)sqlite3_step(st);
  sqlite3_finalize(st);
}

void bf_irc_history_flush(bf_irc *irc) {
  if (!irc->n_history)
    return;
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *ins = NULL;
  const char *gateway = irc->host->domain;
  bool ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db,
                               "INSERT INTO irc_history(gateway, server, "
                               "channel, stamp, nick, body) VALUES (?1, ?2, "
                               "?3, ?4, ?5, ?6)",
                               -1, &ins, NULL) == SQLITE_OK;
  for (size_t i = 0; ok && i < irc->n_history; i++) {
    const struct bf_irc_history_entry *e = &irc->history[i];
    sqlite3_reset(ins);
    sqlite3_bind_text(ins, 1, gateway, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, e->server, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, e->channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 4, (sqlite3_int64)e->stamp_ms);
    sqlite3_bind_text(ins, 5, e->nick, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 6, e->body, -1, SQLITE_STATIC);
    ok = sqlite3_step(ins) == SQLITE_DONE;
  }
  sqlite3_finalize(ins);
  /* Each channel written to is pruned once. */
  for (size_t i = 0; ok && i < irc->n_history; i++) {
    bool first = true;
    for (size_t k = 0; k < i && first; k++)
      first = strcasecmp(irc->history[k].channel, irc->history[i].channel) ||
              strcasecmp(irc->history[k].server, irc->history[i].server);
    if (first)
      prune(db, gateway, irc->history[i].server, irc->history[i].channel);
  }
  if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
    irc->history_written += irc->n_history;
  } else {
    irc->host->log(irc->host, BF_LOG_WARN,
                   "could not store %zu channel messages: %s", irc->n_history,
                   sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  }
  for (size_t i = 0; i < irc->n_history; i++)
    entry_free(&irc->history[i]);
  irc->n_history = 0;
}

void bf_irc_history_close(bf_irc *irc) { bf_irc_history_flush(irc); }

int bf_irc_history_send(bf_irc *irc, const char *server, const char *name,
                        const char *room, const char *to, int max,
                        uint64_t since_ms) {
  char channel[256];
  lower(channel, sizeof channel, name);
  if (max <= 0)
    return 0;
  bf_irc_history_flush(irc); /* what just arrived is part of it */
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT id, stamp, nick, body FROM (SELECT * FROM "
                         "irc_history WHERE gateway = ?1 AND server = ?2 AND "
                         "channel = ?3 AND stamp > ?5 ORDER BY id DESC LIMIT "
                         "?4) ORDER BY id",
                         -1, &st, NULL) != SQLITE_OK)
    return BF_EIO;
  sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, server, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, channel, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 4, max);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)since_ms);
  int sent = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    char from[1200], id[32], stamp[32];
    const char *nick = (const char *)sqlite3_column_text(st, 2);
    snprintf(from, sizeof from, "%s/%s", room, nick);
    snprintf(id, sizeof id, "h%lld", (long long)sqlite3_column_int64(st, 0));
    time_t secs = (time_t)(sqlite3_column_int64(st, 1) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bf_xml *m = bf_xml_new("message", NULL);
    bf_xml *delay = m ? bf_xml_add_child(m, "delay", "urn:xmpp:delay") : NULL;
    bf_xml *sid = m ? bf_xml_add_child(m, "stanza-id", "urn:xmpp:sid:0") : NULL;
    if (delay && sid && !bf_xml_set_attr(m, "from", from) &&
        !bf_xml_set_attr(m, "to", to) && !bf_xml_set_attr(m, "type", "groupchat") &&
        !bf_xml_set_attr(m, "id", id) &&
        bf_xml_add_text_child(m, "body", NULL,
                              (const char *)sqlite3_column_text(st, 3)) &&
        !bf_xml_set_attr(delay, "stamp", stamp) &&
        !bf_xml_set_attr(delay, "from", room) && !bf_xml_set_attr(sid, "id", id) &&
        !bf_xml_set_attr(sid, "by", room) && irc->host->send(irc->host, m) == 0)
      sent++;
    bf_xml_free(m);
  }
  sqlite3_finalize(st);
  return sent;
}
