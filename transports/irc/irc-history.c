/* Channel history: messages stored once per channel (not once per user:
 * the same line arriving on several users' connections is kept once),
 * written in batches at the module's tick so a busy channel costs one
 * transaction a second, bounded per channel, and replayed as MUC history
 * (XEP-0045 §7.2.14) with delayed-delivery stamps (XEP-0203) and stable
 * ids (XEP-0359) when someone joins. The same ids are the stanza-ids of
 * the live messages and the MAM ids (irc-mam.c).
 *
 * What the IRC server remembers comes in too: IRCv3 batches are tracked
 * per connection, and the lines of a "chathistory" batch (InspIRCd's
 * replay on join, or the answer to CHATHISTORY LATEST) are stored, not
 * shown live; the room is shown once they are in. */
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
/* A line replayed by the server is one already stored when nick and text
 * match and the stamps are this close: InspIRCd 3 keeps whole seconds,
 * and a line stored without server-time has the gateway's clock. */
#define SAME_STAMP_MS 2000u
/* Row ids are reserved from the table's AUTOINCREMENT sequence this many
 * at a time, so an id is known (and sent as the stanza-id) before the
 * row is written, and gateways sharing the database never collide. */
#define ID_BLOCK 1024u

#define HISTORY_SLOTS (2 * BF_IRC_HISTORY_PENDING_MAX)

static void entry_free(struct bf_irc_history_entry *e) {
  free(e->server);
  free(e->channel);
  free(e->nick);
  free(e->body);
}

/* IRC channel names are case-insensitive: stored lowercased (ASCII; the
 * rfc1459 casemapping's {}|^ vs []\~ is left alone). */
void bf_irc_channel_key(char *out, size_t size, const char *in) {
  size_t i = 0;
  for (; in[i] && i + 1 < size; i++)
    out[i] = (char)tolower((unsigned char)in[i]);
  out[i] = '\0';
}

void bf_irc_history_id_text(char *out, size_t size, uint64_t id) {
  snprintf(out, size, "h%llu", (unsigned long long)id);
}

uint64_t bf_irc_history_id_parse(const char *text) {
  if (!text || text[0] != 'h' || !isdigit((unsigned char)text[1]))
    return 0;
  char *end;
  unsigned long long id = strtoull(text + 1, &end, 10);
  return *end ? 0 : (uint64_t)id;
}

/* Reads n digits at *p into *out. */
static bool digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*p)[i]))
      return false;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return true;
}

/* XEP-0082 §3.3 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD. */
uint64_t bf_irc_history_time_parse(const char *text) {
  const char *p = text;
  int year, mon, day, hour, min, sec, ms = 0;
  if (!p || !digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) ||
      *p++ != '-' || !digits(&p, 2, &day) || *p++ != 'T' ||
      !digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min) ||
      *p++ != ':' || !digits(&p, 2, &sec))
    return 0;
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p))
      return 0;
    for (int scale = 100; isdigit((unsigned char)*p); p++, scale /= 10)
      ms += (*p - '0') * scale;
  }
  long offset = 0;
  if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1, oh, om;
    if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om))
      return 0;
    offset = sign * (oh * 3600L + om * 60L);
  } else if (*p++ != 'Z') {
    return 0;
  }
  if (*p || year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 ||
      hour > 23 || min > 59 || sec > 60)
    return 0;
  struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                  .tm_hour = hour, .tm_min = min, .tm_sec = sec};
  time_t t = timegm(&tm);
  if (t == (time_t)-1 || t - offset < 0)
    return 0;
  return (uint64_t)(t - offset) * 1000u + (uint64_t)ms;
}

void bf_irc_history_time_text(char *out, size_t size, uint64_t ms) {
  time_t secs = (time_t)(ms / 1000u);
  struct tm tm;
  char base[32];
  gmtime_r(&secs, &tm);
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, size, "%s.%03uZ", base, (unsigned)(ms % 1000u));
}

void bf_irc_history_mark(bf_xml *message, const char *room, uint64_t id) {
  char text[32];
  if (!id)
    return;
  bf_irc_history_id_text(text, sizeof text, id);
  bf_xml *sid = bf_xml_add_child(message, "stanza-id", "urn:xmpp:sid:0");
  if (sid) {
    bf_xml_set_attr(sid, "id", text);
    bf_xml_set_attr(sid, "by", room);
  }
}

/* ---- the pending lines ------------------------------------------------ */

/* FNV-1a over the line's key; the server name is case-insensitive. */
static uint32_t line_hash(const char *server, const char *channel,
                          const char *nick, const char *body) {
  uint32_t h = 2166136261u;
  for (const char *p = server; *p; p++)
    h = (h ^ (uint8_t)tolower((unsigned char)*p)) * 16777619u;
  const char *const parts[] = {channel, nick, body};
  for (size_t i = 0; i < 3; i++) {
    h = (h ^ 0xffu) * 16777619u; /* a separator no UTF-8 text has */
    for (const char *p = parts[i]; *p; p++)
      h = (h ^ (uint8_t)*p) * 16777619u;
  }
  return h;
}

/* The pending line with that key: seen within SAME_LINE_MS (a live line),
 * or stamped within SAME_STAMP_MS of stamp_ms (replayed). */
static const struct bf_irc_history_entry *
pending_find(const bf_irc *irc, uint32_t hash, const char *server,
             const char *channel, const char *nick, const char *body,
             uint64_t stamp_ms, bool replayed, uint64_t now) {
  for (size_t i = hash % HISTORY_SLOTS; irc->history_slots[i];
       i = (i + 1) % HISTORY_SLOTS) {
    const struct bf_irc_history_entry *e =
        &irc->history[irc->history_slots[i] - 1];
    if (e->hash != hash || strcmp(e->channel, channel) != 0 ||
        strcasecmp(e->server, server) != 0 || strcmp(e->nick, nick) != 0 ||
        strcmp(e->body, body) != 0)
      continue;
    uint64_t apart = e->stamp_ms > stamp_ms ? e->stamp_ms - stamp_ms
                                            : stamp_ms - e->stamp_ms;
    if (replayed ? apart <= SAME_STAMP_MS : now - e->seen_ms <= SAME_LINE_MS)
      return e;
  }
  return NULL;
}

/* The id of a stored line with that nick and text stamped within
 * SAME_STAMP_MS of stamp_ms, or 0. */
static uint64_t stored_find(bf_irc *irc, const char *server,
                            const char *channel, const char *nick,
                            const char *body, uint64_t stamp_ms) {
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *st = NULL;
  uint64_t id = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT id FROM irc_history WHERE gateway = ?1 AND "
                         "server = ?2 AND channel = ?3 AND nick = ?4 AND "
                         "body = ?5 AND stamp BETWEEN ?6 AND ?7 LIMIT 1",
                         -1, &st, NULL) != SQLITE_OK)
    return 0;
  sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, server, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, channel, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, nick, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, body, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, (sqlite3_int64)(stamp_ms - SAME_STAMP_MS));
  sqlite3_bind_int64(st, 7, (sqlite3_int64)(stamp_ms + SAME_STAMP_MS));
  if (sqlite3_step(st) == SQLITE_ROW)
    id = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return id;
}

/* Reserves the next ID_BLOCK row ids (in a savepoint: inside the flush's
 * transaction or on its own). The sequence row exists once a row was
 * ever inserted; before that it is created from the table. */
static int reserve_ids(bf_irc *irc) {
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *st = NULL;
  int rc = BF_EIO;
  char sql[512];
  snprintf(sql, sizeof sql,
           "SAVEPOINT irc_ids;"
           "INSERT INTO sqlite_sequence(name, seq) SELECT 'irc_history', "
           "(SELECT COALESCE(MAX(id), 0) FROM irc_history) WHERE NOT EXISTS "
           "(SELECT 1 FROM sqlite_sequence WHERE name = 'irc_history');"
           "UPDATE sqlite_sequence SET seq = seq + %u WHERE name = "
           "'irc_history';",
           ID_BLOCK);
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "SELECT seq FROM sqlite_sequence WHERE name = "
                             "'irc_history'", -1, &st, NULL) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW)
    goto out;
  irc->end_id = (uint64_t)sqlite3_column_int64(st, 0) + 1;
  irc->next_id = irc->end_id - ID_BLOCK;
  rc = 0;
out:
  sqlite3_finalize(st);
  if (rc) {
    irc->host->log(irc->host, BF_LOG_WARN, "could not reserve channel "
                   "history ids: %s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK TO irc_ids", NULL, NULL, NULL);
  }
  sqlite3_exec(db, "RELEASE irc_ids", NULL, NULL, NULL);
  return rc;
}

uint64_t bf_irc_history_add(bf_irc *irc, const char *server, const char *name,
                            const char *nick, const char *body,
                            uint64_t stamp_ms, bool replayed) {
  char channel[256];
  bf_irc_channel_key(channel, sizeof channel, name);
  uint64_t now = uv_now(irc->host->loop);
  if (!stamp_ms)
    stamp_ms = bf_irc_wall_ms();
  uint32_t hash = line_hash(server, channel, nick, body);
  const struct bf_irc_history_entry *same = pending_find(
      irc, hash, server, channel, nick, body, stamp_ms, replayed, now);
  if (same)
    return same->id;
  if (replayed) {
    uint64_t id = stored_find(irc, server, channel, nick, body, stamp_ms);
    if (id)
      return id;
  }
  if (irc->n_history >= BF_IRC_HISTORY_PENDING_MAX)
    bf_irc_history_flush(irc);
  if (irc->next_id >= irc->end_id && reserve_ids(irc) != 0)
    return 0;
  struct bf_irc_history_entry *e = &irc->history[irc->n_history];
  memset(e, 0, sizeof *e);
  e->server = strdup(server);
  e->channel = strdup(channel);
  e->nick = strdup(nick);
  e->body = strdup(body);
  e->stamp_ms = stamp_ms;
  e->seen_ms = now;
  e->hash = hash;
  if (!e->server || !e->channel || !e->nick || !e->body) {
    entry_free(e);
    return 0;
  }
  e->id = irc->next_id++;
  size_t i = hash % HISTORY_SLOTS;
  while (irc->history_slots[i])
    i = (i + 1) % HISTORY_SLOTS;
  irc->history_slots[i] = (uint16_t)(++irc->n_history);
  return e->id;
}

/* Keeps the newest BF_IRC_HISTORY_MAX rows of a channel. */
static void prune(sqlite3 *db, const char *gateway, const char *server,
                  const char *channel) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "DELETE FROM irc_history WHERE id IN (SELECT id "
                         "FROM irc_history WHERE gateway = ?1 AND server = ?2 "
                         "AND channel = ?3 ORDER BY stamp DESC, id DESC "
                         "LIMIT -1 OFFSET ?4)",
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
                               "INSERT INTO irc_history(id, gateway, server, "
                               "channel, stamp, nick, body) VALUES (?1, ?2, "
                               "?3, ?4, ?5, ?6, ?7)",
                               -1, &ins, NULL) == SQLITE_OK;
  for (size_t i = 0; ok && i < irc->n_history; i++) {
    const struct bf_irc_history_entry *e = &irc->history[i];
    sqlite3_reset(ins);
    sqlite3_bind_int64(ins, 1, (sqlite3_int64)e->id);
    sqlite3_bind_text(ins, 2, gateway, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, e->server, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 4, e->channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 5, (sqlite3_int64)e->stamp_ms);
    sqlite3_bind_text(ins, 6, e->nick, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 7, e->body, -1, SQLITE_STATIC);
    ok = sqlite3_step(ins) == SQLITE_DONE;
  }
  sqlite3_finalize(ins);
  /* Each channel written to is pruned once. */
  for (size_t i = 0; ok && i < irc->n_history; i++) {
    bool first = true;
    for (size_t k = 0; k < i && first; k++)
      first = strcmp(irc->history[k].channel, irc->history[i].channel) ||
              strcasecmp(irc->history[k].server, irc->history[i].server);
    if (first)
      prune(db, gateway, irc->history[i].server, irc->history[i].channel);
  }
  /* Ids for the next batch of lines, in the same transaction. */
  if (ok && irc->end_id - irc->next_id < BF_IRC_HISTORY_PENDING_MAX)
    (void)reserve_ids(irc);
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
  memset(irc->history_slots, 0, sizeof irc->history_slots);
}

void bf_irc_history_close(bf_irc *irc) { bf_irc_history_flush(irc); }

int bf_irc_history_send(bf_irc *irc, const char *server, const char *name,
                        const char *room, const char *to, int max,
                        uint64_t since_ms) {
  char channel[256];
  bf_irc_channel_key(channel, sizeof channel, name);
  if (max <= 0)
    return 0;
  bf_irc_history_flush(irc); /* what just arrived is part of it */
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT id, stamp, nick, body FROM (SELECT * FROM "
                         "irc_history WHERE gateway = ?1 AND server = ?2 AND "
                         "channel = ?3 AND stamp > ?5 ORDER BY stamp DESC, id "
                         "DESC LIMIT ?4) ORDER BY stamp, id",
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
    uint64_t row = (uint64_t)sqlite3_column_int64(st, 0);
    const char *nick = (const char *)sqlite3_column_text(st, 2);
    snprintf(from, sizeof from, "%s/%s", room, nick);
    bf_irc_history_id_text(id, sizeof id, row);
    bf_irc_history_time_text(stamp, sizeof stamp,
                             (uint64_t)sqlite3_column_int64(st, 1));
    bf_xml *m = bf_xml_new("message", NULL);
    bf_xml *delay = m ? bf_xml_add_child(m, "delay", "urn:xmpp:delay") : NULL;
    if (delay && !bf_xml_set_attr(m, "from", from) &&
        !bf_xml_set_attr(m, "to", to) && !bf_xml_set_attr(m, "type", "groupchat") &&
        !bf_xml_set_attr(m, "id", id) &&
        bf_xml_add_text_child(m, "body", NULL,
                              (const char *)sqlite3_column_text(st, 3)) &&
        !bf_xml_set_attr(delay, "stamp", stamp) &&
        !bf_xml_set_attr(delay, "from", room)) {
      bf_irc_history_mark(m, room, row);
      if (irc->host->send(irc->host, m) == 0)
        sent++;
    }
    bf_xml_free(m);
  }
  sqlite3_finalize(st);
  return sent;
}

/* ---- IRCv3 batches and chathistory ----------------------------------- */

static bf_irc_channel *channel_of(bf_irc_conn *c, const char *name) {
  for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
    if (!strcasecmp(ch->name, name))
      return ch;
  }
  return NULL;
}

static void batch_free(struct bf_irc_batch *b) {
  free(b->ref);
  free(b->channel);
}

void bf_irc_history_conn_reset(bf_irc_conn *c) {
  for (size_t i = 0; i < c->n_batches; i++)
    batch_free(&c->batches[i]);
  free(c->batches);
  c->batches = NULL;
  c->n_batches = 0;
}

static struct bf_irc_batch *batch_find(bf_irc_conn *c, const char *ref) {
  for (size_t i = 0; i < c->n_batches; i++) {
    if (!strcmp(c->batches[i].ref, ref))
      return &c->batches[i];
  }
  return NULL;
}

/* ch's history is in: the room is shown. */
static void wait_over(bf_irc_conn *c, bf_irc_channel *ch) {
  if (!ch->history_wait_until)
    return;
  ch->history_wait_until = 0;
  if (ch->names_done)
    bf_irc_room_entered(c, ch);
}

/* BATCH +ref type [params] / BATCH -ref (IRCv3 batch). */
static void on_batch(bf_irc_conn *c, const bf_irc_msg *m) {
  const char *ref = m->params[0];
  if (ref[0] == '+' && ref[1]) {
    if (c->n_batches >= BF_IRC_BATCHES_MAX || batch_find(c, ref + 1))
      return;
    struct bf_irc_batch *grown =
        realloc(c->batches, (c->n_batches + 1) * sizeof *grown);
    if (!grown)
      return;
    c->batches = grown;
    struct bf_irc_batch *b = &c->batches[c->n_batches];
    bool history = m->n_params >= 3 && !strcasecmp(m->params[1], "chathistory");
    b->ref = strdup(ref + 1);
    b->channel = history ? strdup(m->params[2]) : NULL;
    if (!b->ref || (history && !b->channel)) {
      batch_free(b);
      return;
    }
    c->n_batches++;
    bf_irc_channel *ch = history ? channel_of(c, b->channel) : NULL;
    /* The replay has begun: the room waits for its end (a bounded time). */
    if (ch && ch->history_wait_until)
      ch->history_wait_until = uv_now(c->irc->host->loop) + BF_IRC_HISTORY_WAIT_MS;
  } else if (ref[0] == '-') {
    struct bf_irc_batch *b = batch_find(c, ref + 1);
    if (!b)
      return;
    bf_irc_channel *ch = b->channel ? channel_of(c, b->channel) : NULL;
    batch_free(b);
    *b = c->batches[--c->n_batches];
    if (ch)
      wait_over(c, ch);
  }
}

bool bf_irc_history_on_line(bf_irc_conn *c, const bf_irc_msg *m) {
  if (!strcasecmp(m->command, "BATCH") && m->n_params >= 1) {
    on_batch(c, m);
    return true;
  }
  const char *ref = bf_irc_tag_value(m, "batch");
  struct bf_irc_batch *b = ref ? batch_find(c, ref) : NULL;
  if (!b || !b->channel)
    return false; /* not in a history batch: a live line */
  bf_irc_channel *ch;
  if ((!strcasecmp(m->command, "PRIVMSG") || !strcasecmp(m->command, "NOTICE")) &&
      m->n_params >= 2 && m->nick && (ch = channel_of(c, m->params[0]))) {
    char *body = bf_irc_channel_body(c, ch, m->params[1]);
    if (body)
      (void)bf_irc_history_add(c->irc, c->server, m->params[0], m->nick, body,
                               bf_irc_history_time_parse(
                                   bf_irc_tag_value(m, "time")),
                               true);
    free(body);
  }
  return true; /* the rest of a history batch (events) is not shown live */
}

static void on_sweep(void *data);

/* The sweep timer fires at the first room's deadline (at): started, or
 * moved earlier. Without a timer the module tick (1 s) does it. */
static void sweep_at(bf_irc *irc, uint64_t at) {
  if (irc->history_sweep && irc->history_sweep_at <= at)
    return;
  if (irc->history_sweep)
    irc->host->timer_stop(irc->host, irc->history_sweep);
  uint64_t now = uv_now(irc->host->loop);
  irc->history_sweep = 0;
  if (irc->host->timer_start(irc->host, at > now ? at - now : 0, 0, on_sweep,
                             irc, &irc->history_sweep) != 0)
    irc->history_sweep = 0;
  irc->history_sweep_at = at;
}

static void on_sweep(void *data) {
  bf_irc *irc = data;
  irc->history_sweep = 0;
  bf_irc_history_tick(irc);
}

bool bf_irc_history_wait(bf_irc_conn *c, bf_irc_channel *ch) {
  bf_irc *irc = c->irc;
  if (!(c->caps & BF_IRC_CAP_BATCH))
    return false;
  uint64_t now = uv_now(irc->host->loop);
  if (c->caps & BF_IRC_CAP_CHATHISTORY) {
    /* IRCv3 chathistory: the server answers with a batch, even empty. */
    char lines[16];
    snprintf(lines, sizeof lines, "%d", BF_IRC_CHATHISTORY_LINES);
    const char *params[] = {"LATEST", ch->name, "*", lines};
    if (bf_irc_send(c, "CHATHISTORY", params, 4, false) != 0)
      return false;
    ch->history_wait_until = now + BF_IRC_HISTORY_WAIT_MS;
  } else {
    /* InspIRCd's m_chanhistory writes its batch right behind NAMES (in
     * the same read unless NAMES was long): the room is shown after
     * BF_IRC_HISTORY_REPLAY_MS unless a batch has begun by then. */
    ch->history_wait_until = now + BF_IRC_HISTORY_REPLAY_MS;
  }
  irc->history_waits++;
  sweep_at(irc, ch->history_wait_until);
  return true;
}

void bf_irc_history_tick(bf_irc *irc) {
  if (!irc->history_waits)
    return;
  uint64_t now = uv_now(irc->host->loop), next = UINT64_MAX;
  size_t waiting = 0;
  for (bf_irc_conn *c = irc->conns; c; c = c->next) {
    for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
      if (!ch->history_wait_until)
        continue;
      if (now >= ch->history_wait_until) {
        wait_over(c, ch);
      } else {
        waiting++;
        if (ch->history_wait_until < next)
          next = ch->history_wait_until;
      }
    }
  }
  irc->history_waits = waiting;
  if (waiting)
    sweep_at(irc, next);
}
