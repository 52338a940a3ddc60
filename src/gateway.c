/* A gateway: component connection + transport module + the host table. */
#include "gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/jid.h"
#include "babelfish/stanza.h"
#include "log.h"
#include "util.h"

/* How many outbox rows are read per batch while replaying. */
#define OUTBOX_BATCH 256
/* Durable stanzas staged in one loop iteration past this many bytes are
 * committed at once (bounds the memory a burst holds before its commit;
 * ~2,500 groupchat stanzas still share one transaction). */
#define OUTBOX_STAGED_MAX (1024 * 1024)
/* After a failed commit the staged stanzas are kept and the commit is
 * retried this often (a full disk, a locked database). */
#define OUTBOX_RETRY_MS 1000
/* Rows a ping confirmed are deleted in the next commit's transaction
 * (one commit instead of two), or after this long without one. */
#define OUTBOX_ACK_DELAY_MS 500

struct bf_gateway_timer {
  uv_timer_t handle;
  bf_gateway *gw;
  uint64_t id;
  bf_timer_cb cb;
  void *data;
  bool repeat;
  bf_gateway_timer *next;
};

static void on_outbox_timer(uv_timer_t *timer);

static inline bf_gateway *gw_of(const bf_host *host) {
  return bf_container_of(host, bf_gateway, host);
}

/* ---- outbound check ------------------------------------------------------ */

static int jid_cache_find(const bf_gateway *gw, const char *str, size_t len) {
  for (int i = 0; i < BF_JID_CACHE_SIZE; i++) {
    const struct bf_jid_cache_entry *e = &gw->jid_cache[i];
    if (e->mem && e->raw_len == len && memcmp(e->mem, str, len) == 0)
      return i;
  }
  return -1;
}

static void jid_cache_add(bf_gateway *gw, const char *str, size_t len,
                          const bf_jid *jid) {
  size_t local_len = jid->local ? strlen(jid->local) + 1 : 0;
  size_t domain_len = strlen(jid->domain) + 1;
  size_t resource_len = jid->resource ? strlen(jid->resource) + 1 : 0;
  size_t prepared_len = local_len + domain_len + resource_len;
  char *mem = malloc(len + 1 + prepared_len);
  if (!mem)
    return; /* only a cache */
  memcpy(mem, str, len + 1);
  char *p = mem + len + 1;
  if (jid->local)
    memcpy(p, jid->local, local_len);
  memcpy(p + local_len, jid->domain, domain_len);
  if (jid->resource)
    memcpy(p + local_len + domain_len, jid->resource, resource_len);
  struct bf_jid_cache_entry *e =
      &gw->jid_cache[gw->jid_cache_next++ % BF_JID_CACHE_SIZE];
  free(e->mem);
  e->mem = mem;
  e->raw_len = len;
  e->prepared_len = prepared_len;
  e->has_local = jid->local != NULL;
  e->domain_at = (int)local_len;
  e->resource_at = jid->resource ? (int)(local_len + domain_len) : -1;
  e->ours = !strcmp(jid->domain, gw->conf->domain);
}

int bf__gateway_jid_parse(bf_gateway *gw, const char *str, bf_jid *jid,
                          char *buf, size_t size) {
  size_t len = strlen(str);
  int i = jid_cache_find(gw, str, len);
  if (i >= 0 && gw->jid_cache[i].prepared_len <= size) {
    const struct bf_jid_cache_entry *e = &gw->jid_cache[i];
    memcpy(buf, e->mem + len + 1, e->prepared_len);
    jid->storage = NULL;
    jid->local = e->has_local ? buf : NULL;
    jid->domain = buf + e->domain_at;
    jid->resource = e->resource_at >= 0 ? buf + e->resource_at : NULL;
    return 0;
  }
  int rc = bf_jid_parse_buf(jid, str, buf, size);
  if (rc == 0 && i < 0)
    jid_cache_add(gw, str, len, jid);
  return rc;
}

/* Is str a valid JID, and is it at our domain? */
static bool jid_valid(bf_gateway *gw, const char *str, bool *ours) {
  int i = jid_cache_find(gw, str, strlen(str));
  if (i >= 0) {
    *ours = gw->jid_cache[i].ours;
    return true;
  }
  bf_jid jid;
  char buf[BF_JID_STACK_BUFFER];
  if (bf__gateway_jid_parse(gw, str, &jid, buf, sizeof buf) != 0)
    return false;
  *ours = !strcmp(jid.domain, gw->conf->domain);
  bf_jid_close(&jid);
  return true;
}

/* XEP-0114 §3 and protocol notes §1.4: every stanza needs 'from' at our
 * domain and a valid 'to', or the server drops the whole stream. */
static int check_addresses(bf_gateway *gw, const bf_xml *stanza) {
  const char *from = bf_xml_attr(stanza, "from");
  const char *to = bf_xml_attr(stanza, "to");
  const char *why = NULL;
  bool ours = false;
  if (!from)
    why = "no 'from'";
  else if (!jid_valid(gw, from, &ours))
    why = "an invalid 'from'";
  else if (!ours)
    why = "a 'from' outside the gateway's domain";
  else if (!to)
    why = "no 'to'";
  else if (!jid_valid(gw, to, &ours))
    why = "an invalid 'to'";
  if (!why)
    return 0;
  bf__error(gw->conf->section,
            "refusing to send a <%s/> with %s (it would make the server drop "
            "the whole connection)",
            bf_xml_name(stanza), why);
  return BF_EINVAL;
}

int bf__gateway_send(bf_gateway *gw, const bf_xml *stanza) {
  int rc = check_addresses(gw, stanza);
  if (rc)
    return rc;
  /* Durable stanzas sent before this one go first, as they always did:
   * commit them now. While the database fails they wait for the retry
   * timer and this one does not wait for them. */
  if (gw->n_staged && !gw->outbox_failing)
    (void)bf__gateway_outbox_commit(gw);
  return bf__component_send(&gw->component, stanza);
}

/* ---- pings and the durable outbox ---------------------------------------- */

void bf__gateway_send_free(bf_gateway *gw, bf_xml *stanza) {
  if (stanza)
    (void)bf__gateway_send(gw, stanza);
  bf_xml_free(stanza);
}

void bf__gateway_reply_error(bf_gateway *gw, const bf_xml *stanza,
                             const char *condition, const char *text,
                             const char *app, const char *app_ns) {
  bf_xml *err = bf_stanza_error(stanza, NULL, condition, text && *text ? text : NULL);
  if (!err)
    return;
  if (app)
    (void)bf_xml_add_child(bf_xml_child(err, "error", NULL), app, app_ns);
  /* Answer from the address the stanza was sent to, unless it was not a
   * valid JID at this gateway: then from the gateway itself. */
  const char *to = bf_xml_attr(stanza, "to");
  char buf[BF_JID_STACK_BUFFER];
  bf_jid jid = {0};
  bool ours = to && bf__gateway_jid_parse(gw, to, &jid, buf, sizeof buf) == 0 &&
              !strcmp(jid.domain, gw->conf->domain);
  bf_jid_close(&jid);
  if (!ours)
    bf_xml_set_attr(err, "from", gw->conf->domain);
  if (bf__gateway_send(gw, err) == 0)
    gw->errors_sent++;
  bf_xml_free(err);
}

static void on_ping_timer(uv_timer_t *timer);

static void send_ping(bf_gateway *gw) {
  if (gw->ping_outstanding || !bf__component_online(&gw->component))
    return;
  const bf_conf *conf = gw->daemon->conf;
  gw->ping_count++;
  snprintf(gw->ping_id, sizeof gw->ping_id, "bf-ping-%llu",
           (unsigned long long)gw->ping_count);
  bf_xml *iq = bf_xml_new("iq", NULL);
  if (!iq)
    return;
  bf_xml_set_attr(iq, "type", "get");
  bf_xml_set_attr(iq, "id", gw->ping_id);
  bf_xml_set_attr(iq, "from", gw->conf->domain);
  bf_xml_set_attr(iq, "to", gw->conf->xmpp_domain);
  bf_xml_add_child(iq, "ping", BF_NS_PING);
  /* The raw component send: the queue cap must not make us skip a ping. */
  int rc = bf__component_send(&gw->component, iq);
  bf_xml_free(iq);
  if (rc)
    return;
  gw->ping_outstanding = true;
  gw->ping_covers = gw->outbox_written;
  uv_timer_start(&gw->ping_timer, on_ping_timer,
                 (uint64_t)conf->ping_timeout_s * 1000, 0);
}

static void on_ping_timer(uv_timer_t *timer) {
  bf_gateway *gw = bf_container_of(timer, bf_gateway, ping_timer);
  if (!bf__component_online(&gw->component))
    return;
  if (gw->ping_outstanding) {
    char why[128];
    snprintf(why, sizeof why, "no answer from %s to a ping within %u s",
             gw->conf->xmpp_domain, gw->daemon->conf->ping_timeout_s);
    gw->ping_outstanding = false;
    bf__component_reconnect(&gw->component, why);
    return;
  }
  send_ping(gw);
}

static void outbox_replay(bf_gateway *gw);

bool bf__gateway_ping_reply(bf_gateway *gw, const bf_xml *stanza) {
  if (!gw->ping_outstanding || strcmp(bf_xml_name(stanza), "iq") != 0)
    return false;
  const char *type = bf_xml_attr(stanza, "type");
  const char *id = bf_xml_attr(stanza, "id");
  if (!type || !id || strcmp(id, gw->ping_id) != 0 ||
      (strcmp(type, "result") != 0 && strcmp(type, "error") != 0))
    return false;
  /* Even an error reply proves the server read everything before it. */
  gw->ping_outstanding = false;
  if (gw->ping_covers > gw->outbox_ack_upto && gw->outbox_timer_open) {
    bf__debug(gw->conf->section, "server confirmed outbox up to %lld",
              (long long)gw->ping_covers);
    gw->outbox_ack_upto = gw->ping_covers;
    if (!uv_is_active((uv_handle_t *)&gw->outbox_timer))
      uv_timer_start(&gw->outbox_timer, on_outbox_timer, OUTBOX_ACK_DELAY_MS,
                     0);
  }
  if (gw->outbox_written > gw->ping_covers && !gw->outbox_replaying)
    send_ping(gw);
  else
    uv_timer_start(&gw->ping_timer, on_ping_timer,
                   (uint64_t)gw->daemon->conf->ping_interval_s * 1000, 0);
  return true;
}

struct replay_ctx {
  bf_gateway *gw;
  unsigned rows;
};

static int replay_row(void *data, int64_t id, const char *xml, size_t len) {
  struct replay_ctx *ctx = data;
  bf_gateway *gw = ctx->gw;
  bf_component *c = &gw->component;
  if (bf__component_queued(c) > gw->daemon->conf->write_queue_max / 2) {
    c->need_drain = true;
    return 1;
  }
  int rc = bf__component_send_raw(c, xml, len);
  if (rc == BF_ENOBUFS || rc == BF_ENOTCONN)
    return 1;
  if (rc)
    /* Cannot happen for rows we serialized ourselves; don't block the
     * queue behind it. */
    bf__error(gw->conf->section, "skipping outbox row %lld: %s",
              (long long)id, bf_strerror(rc));
  gw->outbox_written = id;
  ctx->rows++;
  return 0;
}

/* Writes outbox rows not yet written on this stream, in id order, as long
 * as the write queue has room; resumes from the drained callback. */
static void outbox_replay(bf_gateway *gw) {
  bf_store *store = gw->daemon->store;
  if (!store)
    return;
  gw->outbox_replaying = true;
  for (;;) {
    if (!bf__component_online(&gw->component))
      return;
    struct replay_ctx ctx = {gw, 0};
    int rc = bf__store_outbox_each(store, gw->conf->domain, gw->outbox_written,
                                   OUTBOX_BATCH, replay_row, &ctx);
    if (rc < 0) {
      bf__error(gw->conf->section, "cannot read the outbox: %s",
                bf__store_errmsg(store));
      return;
    }
    if (rc > 0)
      return; /* queue full: on_drained resumes */
    if (ctx.rows < OUTBOX_BATCH)
      break;
  }
  gw->outbox_replaying = false;
  if (gw->outbox_written > gw->ping_covers)
    send_ping(gw);
}

/* ---- host table ------------------------------------------------------------ */

static int host_send(const bf_host *host, const bf_xml *stanza) {
  return bf__gateway_send(gw_of(host), stanza);
}

/* The staged stanzas are committed (or the commit failed): forget them. */
static void outbox_unstage(bf_gateway *gw) {
  gw->n_staged = 0;
  bf__buf_reset(&gw->outbox_staged);
  /* Don't keep a burst's worth of memory around while idle. */
  if (gw->outbox_staged.cap > 64 * 1024)
    bf__buf_close(&gw->outbox_staged);
}

/* Writes committed rows now only if everything before them already was,
 * so the stream carries the outbox in id order; otherwise the replay
 * picks them up. */
static void outbox_write(bf_gateway *gw, const bf_outbox_row *rows,
                         const int64_t *ids, size_t n) {
  bf_component *c = &gw->component;
  if (!bf__component_online(c))
    return; /* on_online replays them */
  for (size_t i = 0; i < n; i++) {
    if (gw->outbox_replaying ||
        bf__component_send_raw(c, rows[i].xml, rows[i].len) != 0) {
      gw->outbox_replaying = true;
      c->need_drain = true;
      break;
    }
    gw->outbox_written = ids[i];
  }
  send_ping(gw);
}

int bf__gateway_outbox_commit(bf_gateway *gw) {
  bf_store *store = gw->daemon->store;
  size_t n = gw->n_staged;
  if (!n && !gw->outbox_ack_upto)
    return 0;
  if (gw->outbox_timer_open)
    uv_timer_stop(&gw->outbox_timer);
  /* n is 0 when only confirmed rows are deleted. */
  bf_outbox_row *rows = n ? malloc(n * sizeof *rows) : NULL;
  int64_t *ids = n ? malloc(n * sizeof *ids) : NULL;
  int rc = !n || (rows && ids) ? 0 : BF_ENOMEM;
  if (!rc) {
    const char *at = gw->outbox_staged.data;
    for (size_t i = 0; i < n; i++) {
      rows[i] = (bf_outbox_row){at, gw->staged_len[i]};
      at += gw->staged_len[i];
    }
    rc = bf__store_outbox_add_many(store, gw->conf->domain, rows, n, ids,
                                   gw->outbox_ack_upto);
  }
  if (rc) {
    /* Kept staged, so nothing accepted is lost; plain sends go on. */
    if (!gw->outbox_failing)
      bf__error(gw->conf->section,
                "cannot write the outbox (%zu new stanza(s)): %s; they are "
                "kept in memory and retried every %u ms",
                n, rc == BF_ENOMEM ? "out of memory" : bf__store_errmsg(store),
                OUTBOX_RETRY_MS);
    gw->outbox_failing = true;
    if (gw->outbox_timer_open)
      uv_timer_start(&gw->outbox_timer, on_outbox_timer, OUTBOX_RETRY_MS, 0);
    goto out;
  }
  if (gw->outbox_failing)
    bf__info(gw->conf->section, "the outbox is writable again");
  gw->outbox_failing = false;
  gw->outbox_ack_upto = 0;
  if (n)
    outbox_write(gw, rows, ids, n);
  outbox_unstage(gw);
out:
  free(rows);
  free(ids);
  return rc;
}

/* At stop, with a failing database: the staged stanzas go to the stream
 * without a row, as many as it takes; the rest is lost, and logged. */
static void outbox_write_unstored(bf_gateway *gw) {
  const char *at = gw->outbox_staged.data;
  size_t written = 0;
  while (written < gw->n_staged &&
         bf__component_send_raw(&gw->component, at,
                                gw->staged_len[written]) == 0)
    at += gw->staged_len[written++];
  bf__error(gw->conf->section,
            "stopping with %zu durable stanza(s) not stored: %zu written to "
            "the server unconfirmed, %zu lost",
            gw->n_staged, written, gw->n_staged - written);
  outbox_unstage(gw);
}

static void on_outbox_timer(uv_timer_t *timer) {
  bf_gateway *gw = bf_container_of(timer, bf_gateway, outbox_timer);
  (void)bf__gateway_outbox_commit(gw);
}

/* Serializes the stanza into the staged rows; the outbox timer commits
 * them all at the next loop iteration, and only then are they written. */
static int host_send_durable(const bf_host *host, const bf_xml *stanza) {
  bf_gateway *gw = gw_of(host);
  bf_buf *staged = &gw->outbox_staged;
  int rc = check_addresses(gw, stanza);
  if (rc)
    return rc;
  if (!gw->daemon->store || !gw->outbox_timer_open)
    return BF_EIO;
  if (staged->len >= OUTBOX_STAGED_MAX &&
      (gw->outbox_failing || bf__gateway_outbox_commit(gw) != 0))
    return BF_EIO; /* the database is failing and memory holds enough */
  if (gw->n_staged == gw->staged_cap) {
    size_t cap = gw->staged_cap ? gw->staged_cap * 2 : 64;
    size_t *grown = realloc(gw->staged_len, cap * sizeof *grown);
    if (!grown)
      return BF_ENOMEM;
    gw->staged_len = grown;
    gw->staged_cap = cap;
  }
  size_t before = staged->len;
  rc = bf__xml_serialize(stanza, BF_NS_COMPONENT, staged);
  if (rc)
    return rc;
  size_t len = staged->len - before;
  if (len > gw->daemon->conf->max_stanza_size) {
    staged->len = before;
    staged->data[before] = '\0';
    return BF_E2BIG;
  }
  /* The first one staged brings the commit forward to the next loop
   * iteration (the timer may be waiting to delete confirmed rows). */
  if (gw->n_staged++ == 0 && !gw->outbox_failing)
    uv_timer_start(&gw->outbox_timer, on_outbox_timer, 0, 0);
  gw->staged_len[gw->n_staged - 1] = len;
  return 0;
}

/* Version 3: is the stream ready for more? Past half the write queue's cap
 * (where the component stops reading from the server) it is not, and
 * on_drained tells the module when it is again. */
static bool host_writable(const bf_host *host) {
  bf_component *c = &gw_of(host)->component;
  if (!bf__component_online(c) ||
      bf__component_queued(c) <= c->opt.write_queue_max / 2)
    return true;
  c->need_drain = true;
  return false;
}

static const char *host_config(const bf_host *host, const char *key) {
  return bf__conf_get(gw_of(host)->conf, key);
}

static void host_log(const bf_host *host, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bf__vlog(level, gw_of(host)->conf->section, fmt, ap);
  va_end(ap);
}

static void on_timer_closed(uv_handle_t *handle) {
  free(bf_container_of((uv_timer_t *)handle, bf_gateway_timer, handle));
}

static void timer_release(bf_gateway *gw, bf_gateway_timer *t) {
  for (bf_gateway_timer **p = &gw->timers; *p; p = &(*p)->next) {
    if (*p == t) {
      *p = t->next;
      break;
    }
  }
  uv_close((uv_handle_t *)&t->handle, on_timer_closed);
}

static void on_module_timer(uv_timer_t *handle) {
  bf_gateway_timer *t = bf_container_of(handle, bf_gateway_timer, handle);
  bf_gateway *gw = t->gw;
  bf_timer_cb cb = t->cb;
  void *data = t->data;
  if (!t->repeat)
    timer_release(gw, t);
  cb(data);
}

static int host_timer_start(const bf_host *host, uint64_t timeout_ms,
                            uint64_t repeat_ms, bf_timer_cb cb, void *data,
                            uint64_t *id) {
  bf_gateway *gw = gw_of(host);
  if (!cb || gw->stopping)
    return BF_EINVAL;
  bf_gateway_timer *t = calloc(1, sizeof *t);
  if (!t)
    return BF_ENOMEM;
  uv_timer_init(gw->daemon->loop, &t->handle);
  t->gw = gw;
  t->id = ++gw->next_timer_id;
  t->cb = cb;
  t->data = data;
  t->repeat = repeat_ms != 0;
  uv_timer_start(&t->handle, on_module_timer, timeout_ms, repeat_ms);
  t->next = gw->timers;
  gw->timers = t;
  if (id)
    *id = t->id;
  return 0;
}

static void host_timer_stop(const bf_host *host, uint64_t id) {
  bf_gateway *gw = gw_of(host);
  for (bf_gateway_timer *t = gw->timers; t; t = t->next) {
    if (t->id == id) {
      timer_release(gw, t);
      return;
    }
  }
}

static struct sqlite3 *host_db(const bf_host *host) {
  bf_store *store = gw_of(host)->daemon->store;
  return store ? bf__store_db(store) : NULL;
}

static int host_schema(const bf_host *host, const char *const *migrations,
                       unsigned count) {
  bf_gateway *gw = gw_of(host);
  if (!gw->daemon->store)
    return BF_EIO;
  int rc = bf__store_schema(gw->daemon->store, gw->schema_owner, migrations,
                            count);
  if (rc)
    bf__error(gw->conf->section, "module schema migration failed: %s",
              bf__store_errmsg(gw->daemon->store));
  return rc;
}

static int host_kv_get(const bf_host *host, const char *key, char **value,
                       size_t *len) {
  bf_gateway *gw = gw_of(host);
  if (!gw->daemon->store)
    return BF_EIO;
  return bf__store_kv_get(gw->daemon->store, gw->kv_namespace, key, value, len);
}

static int host_kv_set(const bf_host *host, const char *key, const void *value,
                       size_t len) {
  bf_gateway *gw = gw_of(host);
  if (!gw->daemon->store)
    return BF_EIO;
  return bf__store_kv_set(gw->daemon->store, gw->kv_namespace, key, value, len);
}

static int host_kv_delete(const bf_host *host, const char *key) {
  bf_gateway *gw = gw_of(host);
  if (!gw->daemon->store)
    return BF_EIO;
  return bf__store_kv_delete(gw->daemon->store, gw->kv_namespace, key);
}

static int host_http_request(const bf_host *host, const bf_http_request *req,
                             bf_http_done_cb cb, void *data, uint64_t *id) {
  bf_gateway *gw = gw_of(host);
  if (!gw->daemon->http || gw->stopping)
    return BF_ECANCELED;
  return bf__http_request(gw->daemon->http, req, cb, data, id);
}

static void host_http_cancel(const bf_host *host, uint64_t id) {
  bf_gateway *gw = gw_of(host);
  if (gw->daemon->http)
    bf__http_cancel(gw->daemon->http, id);
}

/* ---- version 2: gateway users (users.c, presence.c, msgid.c) --------------- */

static int host_user_get(const bf_host *host, const char *user, bf_form **values) {
  *values = NULL;
  return user ? bf__users_values(gw_of(host), user, values) : BF_EINVAL;
}

static int host_user_set(const bf_host *host, const char *user, const char *var,
                         const char *value) {
  if (!user || !var)
    return BF_EINVAL;
  return bf__users_set_value(gw_of(host), user, var, value);
}

static int host_users_each(const bf_host *host,
                           int (*cb)(void *data, const char *user), void *data) {
  return bf__users_each(gw_of(host), cb, data);
}

typedef struct {
  int (*cb)(void *data, const char *contact);
  void *data;
} contacts_walk;

static int subscribed_contact(void *data, const char *contact, unsigned bits) {
  contacts_walk *w = data;
  return bits & BF_SUB_TO ? w->cb(w->data, contact) : 0;
}

static int host_contacts_each(const bf_host *host, const char *user,
                              int (*cb)(void *data, const char *contact),
                              void *data) {
  if (!user || !cb)
    return BF_EINVAL;
  contacts_walk w = {cb, data};
  return bf__users_contacts_each(gw_of(host), user, subscribed_contact, &w);
}

static bool host_is_admin(const bf_host *host, const bf_jid *jid) {
  return jid && bf__users_is_admin(gw_of(host), jid);
}

/* ---- component callbacks ---------------------------------------------------- */

static void on_online(bf_component *c) {
  bf_gateway *gw = c->data;
  gw->ping_outstanding = false;
  gw->outbox_written = 0;
  gw->ping_covers = 0;
  uv_timer_start(&gw->ping_timer, on_ping_timer,
                 (uint64_t)gw->daemon->conf->ping_interval_s * 1000, 0);
  bf__presence_online(gw);
  if (gw->module_started && gw->module.module->on_online)
    gw->module.module->on_online(gw->state);
  outbox_replay(gw);
}

static void on_offline(bf_component *c) {
  bf_gateway *gw = c->data;
  gw->ping_outstanding = false;
  gw->outbox_replaying = false;
  uv_timer_stop(&gw->ping_timer);
  if (gw->module_started && gw->module.module->on_offline)
    gw->module.module->on_offline(gw->state);
}

static void on_stanza(bf_component *c, bf_xml *stanza) {
  bf__router_dispatch(c->data, stanza);
}

static void on_oversize(bf_component *c, const bf_xml *top, size_t size) {
  bf__router_oversize(c->data, top, size);
}

static void on_drained(bf_component *c) {
  bf_gateway *gw = c->data;
  if (gw->outbox_replaying)
    outbox_replay(gw);
  const bf_module *m3 = bf__gateway_module_v3(gw);
  if (gw->module_started && m3 && m3->on_drained &&
      bf__component_queued(c) <= c->opt.write_queue_max / 2)
    m3->on_drained(gw->state);
}

/* on_stopped runs once the component and both timers are closed. */
static void maybe_stopped(bf_gateway *gw) {
  if (gw->ping_timer_open || gw->outbox_timer_open)
    return;
  if (gw->component_started && gw->component.state != BF_COMPONENT_STOPPED)
    return;
  if (gw->on_stopped)
    gw->on_stopped(gw);
}

static void on_ping_timer_closed(uv_handle_t *handle) {
  bf_gateway *gw = bf_container_of((uv_timer_t *)handle, bf_gateway, ping_timer);
  gw->ping_timer_open = false;
  maybe_stopped(gw);
}

static void on_outbox_timer_closed(uv_handle_t *handle) {
  bf_gateway *gw =
      bf_container_of((uv_timer_t *)handle, bf_gateway, outbox_timer);
  gw->outbox_timer_open = false;
  maybe_stopped(gw);
}

static void on_component_stopped(bf_component *c) {
  maybe_stopped(c->data);
}

static const bf_component_callbacks component_callbacks = {
    .online = on_online,
    .offline = on_offline,
    .stanza = on_stanza,
    .oversize = on_oversize,
    .drained = on_drained,
    .stopped = on_component_stopped,
};

/* ---- life cycle -------------------------------------------------------------- */

static char *concat(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 1);
  if (s) {
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
  }
  return s;
}

int bf__gateway_new(bf_gateway **out, bf_daemon *daemon,
                    const bf_conf_gateway *conf, char *err, size_t err_size) {
  *out = NULL;
  bf_gateway *gw = calloc(1, sizeof *gw);
  if (!gw)
    return BF_ENOMEM;
  char why[1024];
  int rc = bf__module_load(conf->transport, daemon->conf->modules_dir,
                           &gw->module, why, sizeof why);
  if (rc) {
    snprintf(err, err_size, "%s:%u: %s", daemon->conf->path,
             bf__conf_line(conf, "transport"), why);
    free(gw);
    return rc;
  }
  gw->daemon = daemon;
  gw->conf = conf;
  gw->kv_namespace = concat("gw:", conf->domain);
  gw->schema_owner = concat("mod:", conf->transport);
  if (!gw->kv_namespace || !gw->schema_owner) {
    bf__gateway_free(gw);
    return BF_ENOMEM;
  }
  bf_host *h = &gw->host;
  h->abi_version = BF_MODULE_ABI_VERSION;
  h->loop = daemon->loop;
  h->section = conf->section;
  h->domain = conf->domain;
  h->send = host_send;
  h->send_durable = host_send_durable;
  h->config = host_config;
  h->log = host_log;
  h->timer_start = host_timer_start;
  h->timer_stop = host_timer_stop;
  h->db = host_db;
  h->schema = host_schema;
  h->kv_get = host_kv_get;
  h->kv_set = host_kv_set;
  h->kv_delete = host_kv_delete;
  h->http_request = host_http_request;
  h->http_cancel = host_http_cancel;
  h->user_get = host_user_get;
  h->user_set = host_user_set;
  h->users_each = host_users_each;
  h->user_resources = bf__presence_resources;
  h->contact_presence = bf__presence_contact;
  h->contacts_each = host_contacts_each;
  h->contact_subscribe = bf__presence_contact_subscribe;
  h->msgid_put = bf__msgid_put;
  h->msgid_foreign = bf__msgid_foreign;
  h->msgid_xmpp = bf__msgid_xmpp;
  h->is_admin = host_is_admin;
  h->writable = host_writable;
  bf__buf_init(&gw->outbox_staged, 0);
  *out = gw;
  return 0;
}

int bf__gateway_check(bf_gateway *gw, char *err, size_t err_size) {
  return bf__module_check_section(gw->module.module, gw->daemon->conf, gw->conf,
                                  &gw->host, err, err_size);
}

int bf__gateway_start(bf_gateway *gw) {
  const bf_conf *conf = gw->daemon->conf;
  const bf_module *m = gw->module.module;
  int rc = bf__users_init(gw);
  if (rc) {
    bf__error(gw->conf->section, "cannot load the gateway's users: %s",
              bf_strerror(rc));
    return rc;
  }
  /* Before init: the module may send durable stanzas from there on. */
  uv_timer_init(gw->daemon->loop, &gw->outbox_timer);
  gw->outbox_timer_open = true;
  if (m->init) {
    rc = m->init(&gw->host, &gw->state);
    if (rc) {
      bf__error(gw->conf->section, "transport %s failed to start: %s", m->name,
                bf_strerror(rc));
      return rc;
    }
  }
  gw->module_started = true;
  uv_timer_init(gw->daemon->loop, &gw->ping_timer);
  gw->ping_timer_open = true;
  bf_component_options opt = {
      .tag = gw->conf->section,
      .server = gw->conf->server,
      .port = gw->conf->port,
      .domain = gw->conf->domain,
      .secret = gw->conf->secret,
      .max_stanza_size = conf->max_stanza_size,
      .max_depth = conf->max_depth,
      .write_queue_max = conf->write_queue_max,
      .keepalive_s = conf->keepalive_s,
      .reconnect_min_s = conf->reconnect_min_s,
      .reconnect_max_s = conf->reconnect_max_s,
  };
  rc = bf__component_start(&gw->component, gw->daemon->loop, &opt,
                           &component_callbacks, gw);
  if (rc)
    return rc;
  gw->component_started = true;
  return 0;
}

void bf__gateway_stop(bf_gateway *gw, void (*on_stopped)(bf_gateway *gw)) {
  gw->stopping = true;
  gw->on_stopped = on_stopped;
  while (gw->timers)
    timer_release(gw, gw->timers);
  /* Users are told first (XEP-0100 §4.1.4: unavailable from the gateway
   * and its contacts), and sessions end, while the module still runs. */
  bf__presence_stop(gw);
  if (gw->module_started && gw->module.module->close) {
    /* The module says goodbye (IRC QUIT, presences) while the stream is
     * still up; the component then flushes before closing. */
    gw->module.module->close(gw->state);
  }
  gw->module_started = false;
  while (gw->timers)
    timer_release(gw, gw->timers);
  /* The module's last durable stanzas are stored (and confirmed rows
   * deleted) before the stream is closed; if the database fails now, they
   * are at least written. */
  if (bf__gateway_outbox_commit(gw) != 0 && gw->n_staged)
    outbox_write_unstored(gw);
  if (gw->component_started)
    bf__component_stop(&gw->component);
  bool closing = gw->ping_timer_open || gw->outbox_timer_open;
  if (gw->ping_timer_open)
    uv_close((uv_handle_t *)&gw->ping_timer, on_ping_timer_closed);
  if (gw->outbox_timer_open)
    uv_close((uv_handle_t *)&gw->outbox_timer, on_outbox_timer_closed);
  if (!closing)
    maybe_stopped(gw);
}

void bf__gateway_free(bf_gateway *gw) {
  if (!gw)
    return;
  if (gw->component_started)
    bf__component_close(&gw->component);
  bf__users_close(gw);
  bf__module_unload(&gw->module);
  bf__buf_close(&gw->outbox_staged);
  free(gw->staged_len);
  for (int i = 0; i < BF_JID_CACHE_SIZE; i++)
    free(gw->jid_cache[i].mem);
  free(gw->kv_namespace);
  free(gw->schema_owner);
  free(gw);
}
