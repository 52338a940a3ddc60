/* MAM (XEP-0313, urn:xmpp:mam:2) on a room's bare JID: the channel's
 * stored history (irc-history.c) as an archive. Ids are the stanza-ids
 * of the live and join-history messages (XEP-0359); results are in
 * chronological order (stamp, then id: lines a server replayed may be
 * older than lines stored before them), paged with RSM (XEP-0059).
 * Only a user whose connection is in the channel may read it. */
#include "irc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>

#define NS_MAM "urn:xmpp:mam:2"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_FORWARD "urn:xmpp:forward:0"

/* The query form's fields (XEP-0313 §4.1.1; before-id, after-id and ids
 * are the #extended ones). */
static const bf_field mam_fields[] = {
    {"with", BF_FIELD_JID_SINGLE, "Occupant (room/nick)", NULL, false, NULL,
     NULL, 0, NULL},
    {"start", BF_FIELD_TEXT_SINGLE, "From (XEP-0082 date-time)", NULL, false,
     NULL, NULL, 0, NULL},
    {"end", BF_FIELD_TEXT_SINGLE, "Until (XEP-0082 date-time)", NULL, false,
     NULL, NULL, 0, NULL},
    {"before-id", BF_FIELD_TEXT_SINGLE, "Before the message", NULL, false,
     NULL, NULL, 0, NULL},
    {"after-id", BF_FIELD_TEXT_SINGLE, "After the message", NULL, false, NULL,
     NULL, 0, NULL},
    {"ids", BF_FIELD_LIST_MULTI, "These messages", NULL, false, NULL, NULL, 0,
     NULL},
};
#define N_MAM_FIELDS (sizeof mam_fields / sizeof *mam_fields)

/* The filters of one query. A bound is a row's (stamp, id); id 0 = none. */
typedef struct {
  char channel[256];
  uint64_t start, end;         /* 0 = none */
  const char *nick;            /* with, or NULL */
  uint64_t after_stamp, after_id, before_stamp, before_id;     /* the form */
  uint64_t rsm_after_stamp, rsm_after_id, rsm_before_stamp, rsm_before_id;
  char *ids_json;              /* "[1,2]" (ids), or NULL */
} mam_query;

/* The filters in SQL; ?1..?3 the channel, then one parameter each. */
#define MAM_WHERE                                                              \
  " FROM irc_history WHERE gateway = ?1 AND server = ?2 AND channel = ?3"     \
  " AND (?4 IS NULL OR stamp >= ?4) AND (?5 IS NULL OR stamp <= ?5)"          \
  " AND (?6 IS NULL OR nick = ?6 COLLATE NOCASE)"                             \
  " AND (?7 IS NULL OR (stamp, id) > (?7, ?8))"                               \
  " AND (?9 IS NULL OR (stamp, id) < (?9, ?10))"                              \
  " AND (?11 IS NULL OR (stamp, id) > (?11, ?12))"                            \
  " AND (?13 IS NULL OR (stamp, id) < (?13, ?14))"                            \
  " AND (?15 IS NULL OR id IN (SELECT value FROM json_each(?15)))"

static void reply_error(bf_irc *irc, const bf_xml *iq, const char *condition,
                        const char *text) {
  bf_xml *err = bf_stanza_error(iq, NULL, condition, text);
  if (err)
    (void)irc->host->send(irc->host, err);
  bf_xml_free(err);
}

static void bind_bound(sqlite3_stmt *st, int at, uint64_t stamp, uint64_t id) {
  if (!id)
    return; /* left NULL */
  sqlite3_bind_int64(st, at, (sqlite3_int64)stamp);
  sqlite3_bind_int64(st, at + 1, (sqlite3_int64)id);
}

static void bind_query(sqlite3_stmt *st, bf_irc *irc, const char *server,
                       const mam_query *q, bool with_rsm) {
  sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, server, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, q->channel, -1, SQLITE_STATIC);
  if (q->start)
    sqlite3_bind_int64(st, 4, (sqlite3_int64)q->start);
  if (q->end)
    sqlite3_bind_int64(st, 5, (sqlite3_int64)q->end);
  if (q->nick)
    sqlite3_bind_text(st, 6, q->nick, -1, SQLITE_STATIC);
  bind_bound(st, 7, q->after_stamp, q->after_id);
  bind_bound(st, 9, q->before_stamp, q->before_id);
  if (with_rsm) {
    bind_bound(st, 11, q->rsm_after_stamp, q->rsm_after_id);
    bind_bound(st, 13, q->rsm_before_stamp, q->rsm_before_id);
  }
  if (q->ids_json)
    sqlite3_bind_text(st, 15, q->ids_json, -1, SQLITE_STATIC);
}

/* The stamp of the archive's message `text` ("h42") into *stamp, its id
 * returned; 0 when the channel's archive has no such message. */
static uint64_t lookup(bf_irc *irc, const char *server, const char *channel,
                       const char *text, uint64_t *stamp) {
  uint64_t id = bf_irc_history_id_parse(text), found = 0;
  sqlite3_stmt *st = NULL;
  if (!id || sqlite3_prepare_v2(irc->host->db(irc->host),
                                "SELECT stamp FROM irc_history WHERE id = ?1 "
                                "AND gateway = ?2 AND server = ?3 AND "
                                "channel = ?4",
                                -1, &st, NULL) != SQLITE_OK)
    return 0;
  sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
  sqlite3_bind_text(st, 2, irc->host->domain, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, server, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, channel, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW) {
    *stamp = (uint64_t)sqlite3_column_int64(st, 0);
    found = id;
  }
  sqlite3_finalize(st);
  return found;
}

/* The user's connection to the server is in the channel (XEP-0313 §5.1.2:
 * a room's archive is for its occupants). */
static bool may_read(bf_irc *irc, const bf_jid *from, const bf_irc_address *a) {
  char *bare = bf_jid_bare(from);
  bf_irc_conn *c = bare ? bf_irc_conn_find(irc, bare, a->server) : NULL;
  free(bare);
  for (bf_irc_channel *ch = c ? c->channels : NULL; ch; ch = ch->next) {
    if (!strcasecmp(ch->name, a->name))
      return ch->joined;
  }
  return false;
}

/* <iq type='get'><query/></iq>: the fields a query may use (§4.1.1). */
static void send_form(bf_irc *irc, const bf_xml *iq) {
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *query = reply ? bf_xml_add_child(reply, "query", NS_MAM) : NULL;
  bf_xml *x = query ? bf_form_add(query, "form", NS_MAM, NULL, NULL,
                                  mam_fields, N_MAM_FIELDS, NULL)
                    : NULL;
  /* XEP-0313: the ids list is open (XEP-0122), its options not listed. */
  for (bf_xml *f = x ? bf_xml_first_child(x) : NULL; f; f = bf_xml_next(f)) {
    const char *var = bf_xml_attr(f, "var");
    if (!var || strcmp(var, "ids") != 0)
      continue;
    bf_xml *v = bf_xml_add_child(f, "validate",
                                 "http://jabber.org/protocol/xdata-validate");
    if (v && !bf_xml_set_attr(v, "datatype", "xs:string"))
      bf_xml_add_child(v, "open", NULL);
  }
  if (x)
    (void)irc->host->send(irc->host, reply);
  bf_xml_free(reply);
}

/* <metadata/> (XEP-0313 §6): the first and last messages. */
static void send_metadata(bf_irc *irc, const bf_xml *iq, const char *server,
                          const char *channel) {
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *meta = reply ? bf_xml_add_child(reply, "metadata", NS_MAM) : NULL;
  sqlite3 *db = irc->host->db(irc->host);
  static const char *const ends[] = {"start", "end"};
  static const char *const sql[] = {
      "SELECT id, stamp FROM irc_history WHERE gateway = ?1 AND server = ?2 "
      "AND channel = ?3 ORDER BY stamp, id LIMIT 1",
      "SELECT id, stamp FROM irc_history WHERE gateway = ?1 AND server = ?2 "
      "AND channel = ?3 ORDER BY stamp DESC, id DESC LIMIT 1"};
  for (size_t i = 0; meta && i < 2; i++) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) != SQLITE_OK)
      break;
    sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, server, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, channel, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
      char id[32], stamp[32];
      bf_irc_history_id_text(id, sizeof id,
                             (uint64_t)sqlite3_column_int64(st, 0));
      bf_irc_history_time_text(stamp, sizeof stamp,
                               (uint64_t)sqlite3_column_int64(st, 1));
      bf_xml *e = bf_xml_add_child(meta, ends[i], NULL);
      if (e && !bf_xml_set_attr(e, "id", id))
        bf_xml_set_attr(e, "timestamp", stamp);
    }
    sqlite3_finalize(st);
  }
  if (meta)
    (void)irc->host->send(irc->host, reply);
  bf_xml_free(reply);
}

/* Reads the query's data form into q. NULL, or the error condition with a
 * message for the user in err. */
static const char *parse_form(bf_irc *irc, const char *server,
                              const bf_xml *x, mam_query *q, char *err,
                              size_t err_size) {
  bf_form *form = NULL;
  const char *cond = NULL;
  if (bf_form_parse(x, &form) != 0) {
    snprintf(err, err_size, "the query's data form is malformed");
    return "bad-request";
  }
  /* §4.1.1: a field the server does not know is refused. */
  for (const bf_xml *f = bf_xml_first_child(x); f; f = bf_xml_next(f)) {
    const char *var = strcmp(bf_xml_name(f), "field") ? NULL
                                                      : bf_xml_attr(f, "var");
    bool known = !var || !strcmp(var, "FORM_TYPE");
    for (size_t i = 0; var && i < N_MAM_FIELDS && !known; i++)
      known = !strcmp(var, mam_fields[i].var);
    if (!known) {
      snprintf(err, err_size, "unknown query field '%s'; this archive knows "
               "with, start, end, before-id, after-id and ids", var);
      cond = "feature-not-implemented";
      goto out;
    }
  }
  const char *type = bf_form_value(form, "FORM_TYPE");
  if (type && strcmp(type, NS_MAM) != 0) {
    snprintf(err, err_size, "FORM_TYPE must be %s", NS_MAM);
    cond = "bad-request";
    goto out;
  }
  static const char *const times[] = {"start", "end"};
  for (size_t i = 0; i < 2; i++) {
    const char *v = bf_form_value(form, times[i]);
    uint64_t t = v ? bf_irc_history_time_parse(v) : 0;
    if (v && !t) {
      snprintf(err, err_size, "%s is not a XEP-0082 date-time such as "
               "2024-05-01T12:00:00Z", times[i]);
      cond = "bad-request";
      goto out;
    }
    *(i ? &q->end : &q->start) = t;
  }
  const char *with = bf_form_value(form, "with");
  if (with) {
    /* An occupant: room/nick (the JID a client knows), or a bare nick. */
    const char *slash = strchr(with, '/');
    if ((!slash && strchr(with, '@')) || (slash && !slash[1]) || !*with) {
      snprintf(err, err_size, "with must be an occupant's JID (room/nick)");
      cond = "bad-request";
      goto out;
    }
    q->nick = strdup(slash ? slash + 1 : with);
    if (!q->nick) {
      cond = "internal-server-error";
      goto out;
    }
  }
  const char *after = bf_form_value(form, "after-id");
  const char *before = bf_form_value(form, "before-id");
  if ((after && !(q->after_id = lookup(irc, server, q->channel, after,
                                       &q->after_stamp))) ||
      (before && !(q->before_id = lookup(irc, server, q->channel, before,
                                         &q->before_stamp)))) {
    snprintf(err, err_size, "no message %s in this room's archive",
             after && !q->after_id ? after : before);
    cond = "item-not-found";
    goto out;
  }
  const char *const *ids;
  size_t n_ids = bf_form_values(form, "ids", &ids);
  if (n_ids) {
    /* "[id,id,…]" for json_each: at most 21 bytes an id. */
    q->ids_json = malloc(n_ids * 22 + 3);
    if (!q->ids_json) {
      cond = "internal-server-error";
      goto out;
    }
    size_t len = 0;
    q->ids_json[len++] = '[';
    for (size_t i = 0; i < n_ids; i++) {
      uint64_t stamp, id = lookup(irc, server, q->channel, ids[i], &stamp);
      if (!id) {
        snprintf(err, err_size, "no message %s in this room's archive",
                 ids[i]);
        cond = "item-not-found";
        goto out;
      }
      len += (size_t)sprintf(q->ids_json + len, "%s%llu", i ? "," : "",
                             (unsigned long long)id);
    }
    strcpy(q->ids_json + len, "]");
  }
out:
  bf_form_free(form);
  return cond;
}

typedef struct {
  uint64_t id, stamp;
  char *nick, *body;
} mam_row;

/* One <message><result><forwarded>… to the querying resource. */
static int send_result(bf_irc *irc, const bf_xml *iq, const char *room,
                       const char *queryid, const mam_row *r) {
  char id[32], stamp[32], from[1200];
  bf_irc_history_id_text(id, sizeof id, r->id);
  bf_irc_history_time_text(stamp, sizeof stamp, r->stamp);
  snprintf(from, sizeof from, "%s/%s", room, r->nick);
  bf_xml *m = bf_xml_new("message", NULL);
  bf_xml *result = m ? bf_xml_add_child(m, "result", NS_MAM) : NULL;
  bf_xml *fwd = result ? bf_xml_add_child(result, "forwarded", NS_FORWARD) : NULL;
  bf_xml *delay = fwd ? bf_xml_add_child(fwd, "delay", "urn:xmpp:delay") : NULL;
  bf_xml *inner = delay ? bf_xml_add_child(fwd, "message", "jabber:client") : NULL;
  int rc = BF_ENOMEM;
  if (inner && !bf_xml_set_attr(m, "from", room) &&
      !bf_xml_set_attr(m, "to", bf_xml_attr(iq, "from")) &&
      (!queryid || !bf_xml_set_attr(result, "queryid", queryid)) &&
      !bf_xml_set_attr(result, "id", id) &&
      !bf_xml_set_attr(delay, "stamp", stamp) &&
      !bf_xml_set_attr(inner, "from", from) &&
      !bf_xml_set_attr(inner, "type", "groupchat") &&
      !bf_xml_set_attr(inner, "id", id) &&
      bf_xml_add_text_child(inner, "body", NULL, r->body))
    rc = irc->host->send(irc->host, m);
  bf_xml_free(m);
  return rc;
}

/* Reads RSM <set/> into q and *max, *backward. NULL or an error. */
static const char *parse_rsm(bf_irc *irc, const char *server, const bf_xml *set,
                             mam_query *q, int *max, bool *backward,
                             char *err, size_t err_size) {
  const bf_xml *max_el = bf_xml_child(set, "max", NS_RSM);
  if (max_el) {
    const char *text = bf_xml_text(max_el);
    char *end;
    long n = text ? strtol(text, &end, 10) : -1;
    if (!text || !*text || *end || n < 0) {
      snprintf(err, err_size, "RSM max must be a number of messages");
      return "bad-request";
    }
    *max = n < BF_IRC_MAM_PAGE_MAX ? (int)n : BF_IRC_MAM_PAGE_MAX;
  }
  const bf_xml *after = bf_xml_child(set, "after", NS_RSM);
  const bf_xml *before = bf_xml_child(set, "before", NS_RSM);
  const char *after_text = after ? bf_xml_text(after) : NULL;
  const char *before_text = before ? bf_xml_text(before) : NULL;
  if (after && !(q->rsm_after_id = lookup(irc, server, q->channel, after_text,
                                          &q->rsm_after_stamp))) {
    snprintf(err, err_size, "no message %s in this room's archive",
             after_text ? after_text : "(empty)");
    return "item-not-found";
  }
  /* An empty <before/> asks for the last page. */
  *backward = before != NULL;
  if (before_text && *before_text &&
      !(q->rsm_before_id = lookup(irc, server, q->channel, before_text,
                                  &q->rsm_before_stamp))) {
    snprintf(err, err_size, "no message %s in this room's archive",
             before_text);
    return "item-not-found";
  }
  return NULL;
}

/* <iq type='set'><query/></iq>: the results, then <fin/> (§4.3). */
static void run_query(bf_irc *irc, const bf_xml *iq, const bf_xml *query,
                      const bf_irc_address *a, const char *room) {
  mam_query q = {0};
  char err[300] = "";
  const char *cond = NULL;
  int max = BF_IRC_MAM_PAGE_MAX, n = 0;
  bool backward = false, more = false;
  long long count = 0;
  mam_row rows[BF_IRC_MAM_PAGE_MAX + 1];
  sqlite3_stmt *st = NULL;
  sqlite3 *db = irc->host->db(irc->host);
  bf_irc_channel_key(q.channel, sizeof q.channel, a->name);
  bf_irc_history_flush(irc); /* the newest lines are part of it */
  const bf_xml *x = bf_xml_child(query, "x", BF_NS_DATA);
  const bf_xml *set = bf_xml_child(query, "set", NS_RSM);
  if (x)
    cond = parse_form(irc, a->server, x, &q, err, sizeof err);
  if (!cond && set)
    cond = parse_rsm(irc, a->server, set, &q, &max, &backward, err, sizeof err);
  if (cond)
    goto out;
  char sql[1024];
  snprintf(sql, sizeof sql, "SELECT id, stamp, nick, body" MAM_WHERE
           " ORDER BY stamp %s, id %s LIMIT ?16",
           backward ? "DESC" : "ASC", backward ? "DESC" : "ASC");
  cond = "internal-server-error";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    goto out;
  bind_query(st, irc, a->server, &q, true);
  sqlite3_bind_int(st, 16, max + 1); /* one more: is there more? */
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == max) {
      more = true;
      break;
    }
    mam_row *r = &rows[n];
    r->id = (uint64_t)sqlite3_column_int64(st, 0);
    r->stamp = (uint64_t)sqlite3_column_int64(st, 1);
    r->nick = strdup((const char *)sqlite3_column_text(st, 2));
    r->body = strdup((const char *)sqlite3_column_text(st, 3));
    n++;
    if (!r->nick || !r->body)
      goto out;
  }
  if (step != SQLITE_ROW && step != SQLITE_DONE)
    goto out;
  sqlite3_finalize(st);
  st = NULL;
  /* The count of the whole result set, pages aside (XEP-0059 §2.6). */
  snprintf(sql, sizeof sql, "SELECT COUNT(*)" MAM_WHERE);
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    goto out;
  bind_query(st, irc, a->server, &q, false);
  if (sqlite3_step(st) != SQLITE_ROW)
    goto out;
  count = sqlite3_column_int64(st, 0);
  /* A page is always chronological (§4.3.3); backward pages were read
   * newest first. */
  for (int i = 0; backward && i < n / 2; i++) {
    mam_row t = rows[i];
    rows[i] = rows[n - 1 - i];
    rows[n - 1 - i] = t;
  }
  /* <flip-page/> (§4.3.5) only changes the order they are sent in. */
  bool flip = bf_xml_child(query, "flip-page", NS_MAM) != NULL;
  const char *queryid = bf_xml_attr(query, "queryid");
  for (int i = 0; i < n; i++) {
    int rc = send_result(irc, iq, room, queryid, &rows[flip ? n - 1 - i : i]);
    if (rc) {
      snprintf(err, sizeof err, "could not send the results: %s",
               bf_strerror(rc));
      cond = "resource-constraint";
      goto out;
    }
  }
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *fin = reply ? bf_xml_add_child(reply, "fin", NS_MAM) : NULL;
  bf_xml *rset = fin ? bf_xml_add_child(fin, "set", NS_RSM) : NULL;
  char text[32];
  bool ok = rset && (more || !bf_xml_set_attr(fin, "complete", "true"));
  if (ok && n) {
    bf_irc_history_id_text(text, sizeof text, rows[0].id);
    ok = bf_xml_add_text_child(rset, "first", NULL, text) != NULL;
    bf_irc_history_id_text(text, sizeof text, rows[n - 1].id);
    ok = ok && bf_xml_add_text_child(rset, "last", NULL, text) != NULL;
  }
  snprintf(text, sizeof text, "%lld", count);
  if (ok && bf_xml_add_text_child(rset, "count", NULL, text)) {
    (void)irc->host->send(irc->host, reply);
    cond = NULL;
  }
  bf_xml_free(reply);
out:
  if (cond)
    reply_error(irc, iq, cond, err[0] ? err : NULL);
  sqlite3_finalize(st);
  for (int i = 0; i < n; i++) {
    free(rows[i].nick);
    free(rows[i].body);
  }
  free((char *)q.nick);
  free(q.ids_json);
}

int bf_irc_mam_iq(bf_irc *irc, const bf_xml *iq, const bf_jid *from,
                  const bf_irc_address *a) {
  const bf_xml *payload = bf_xml_first_child(iq);
  const char *type = bf_xml_attr(iq, "type");
  const char *name = bf_xml_name(payload);
  bool get = type && !strcmp(type, "get"), set = type && !strcmp(type, "set");
  if (get && !strcmp(name, "query")) {
    send_form(irc, iq);
    return 0;
  }
  if (!(get && !strcmp(name, "metadata")) && !(set && !strcmp(name, "query")))
    return BF_ENOTSUP;
  if (!may_read(irc, from, a)) {
    reply_error(irc, iq, "forbidden",
                "join the room to read its archive");
    return 0;
  }
  char channel[256];
  bf_irc_channel_key(channel, sizeof channel, a->name);
  char *room = bf_irc_jid(irc, a->server, a->name);
  if (!room) {
    reply_error(irc, iq, "internal-server-error", NULL);
    return 0;
  }
  if (get) {
    bf_irc_history_flush(irc);
    send_metadata(irc, iq, a->server, channel);
  } else {
    run_query(irc, iq, payload, a, room);
  }
  free(room);
  return 0;
}
