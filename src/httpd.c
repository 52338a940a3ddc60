/* The daemon's HTTP listener: /health and /metrics (see httpd.h).
 *
 * libmicrohttpd runs in "external select" mode with MHD_USE_EPOLL: it
 * keeps its sockets in an epoll set of its own, whose descriptor we watch
 * for readability with one uv_poll_t; one uv_timer_t calls it back when
 * MHD_get_timeout says so (connection timeouts, and 0 when it has work
 * buffered, as its docs require). Requests with a body are refused before
 * the body is read.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h> /* types and constants only: the library is dlopened */

#include "babelfish/error.h"
#include "buf.h"
#include "log.h"
#include "util.h"

#ifndef BF_VERSION
#define BF_VERSION "0"
#endif

/* The SONAME of Debian's libmicrohttpd12 (0.9.75), whose headers we build
 * against. */
#define LIBMHD_SONAME "libmicrohttpd.so.12"

/* Monitors make short requests; anything idle this long is dropped. */
#define CONNECTION_TIMEOUT_S 10
#define CONNECTION_LIMIT 64
/* Per connection: request line and headers plus MHD's I/O buffers. Our
 * requests have no body and small headers; 16 KiB leaves room for a
 * browser's cookies and answers 431 beyond. */
#define CONNECTION_MEMORY 16384
/* /metrics grows with the number of gateways: ~1.5 KiB each. */
#define MAX_BODY (4 * 1024 * 1024)

#define JSON_TYPE "application/json"
#define PROMETHEUS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- libmicrohttpd, loaded on first use ---------------------------------- */

typedef struct mhd_api {
  struct MHD_Daemon *(*start_daemon)(unsigned int flags, uint16_t port,
                                     MHD_AcceptPolicyCallback apc,
                                     void *apc_cls,
                                     MHD_AccessHandlerCallback dh, void *dh_cls,
                                     ...);
  void (*stop_daemon)(struct MHD_Daemon *daemon);
  enum MHD_Result (*run)(struct MHD_Daemon *daemon);
  enum MHD_Result (*get_timeout)(struct MHD_Daemon *daemon,
                                 MHD_UNSIGNED_LONG_LONG *timeout);
  const union MHD_DaemonInfo *(*get_daemon_info)(
      struct MHD_Daemon *daemon, enum MHD_DaemonInfoType info_type, ...);
  struct MHD_Response *(*create_response_from_buffer)(
      size_t size, void *buffer, enum MHD_ResponseMemoryMode mode);
  enum MHD_Result (*add_response_header)(struct MHD_Response *response,
                                         const char *header,
                                         const char *content);
  enum MHD_Result (*queue_response)(struct MHD_Connection *connection,
                                    unsigned int status_code,
                                    struct MHD_Response *response);
  void (*destroy_response)(struct MHD_Response *response);
  const char *(*lookup_connection_value)(struct MHD_Connection *connection,
                                         enum MHD_ValueKind kind,
                                         const char *key);
} mhd_api;

static mhd_api mhd;
static int mhd_load_rc = 1; /* 1 = not tried yet */
static char mhd_load_error[256];

/* Fills mhd (once; later calls return the first outcome). The library
 * stays loaded for the life of the process. */
static int mhd_load(void) {
  if (mhd_load_rc != 1)
    return mhd_load_rc;
  mhd_load_rc = BF_EIO;
  void *dl = dlopen(LIBMHD_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *why = dlerror();
    snprintf(mhd_load_error, sizeof mhd_load_error,
             "cannot load %s (%s); install Debian's libmicrohttpd12 or "
             "remove 'http' from [babelfish]",
             LIBMHD_SONAME, why ? why : "unknown error");
    return mhd_load_rc;
  }
  static const struct {
    const char *name;
    size_t offset;
  } symbols[] = {
#define SYM(field, name) {name, offsetof(mhd_api, field)}
      SYM(start_daemon, "MHD_start_daemon"),
      SYM(stop_daemon, "MHD_stop_daemon"),
      SYM(run, "MHD_run"),
      SYM(get_timeout, "MHD_get_timeout"),
      SYM(get_daemon_info, "MHD_get_daemon_info"),
      SYM(create_response_from_buffer, "MHD_create_response_from_buffer"),
      SYM(add_response_header, "MHD_add_response_header"),
      SYM(queue_response, "MHD_queue_response"),
      SYM(destroy_response, "MHD_destroy_response"),
      SYM(lookup_connection_value, "MHD_lookup_connection_value"),
#undef SYM
  };
  mhd_api api;
  for (size_t i = 0; i < BF_ARRAY_SIZE(symbols); i++) {
    void *fn = dlsym(dl, symbols[i].name);
    if (!fn) {
      snprintf(mhd_load_error, sizeof mhd_load_error, "%s lacks %s: too old?",
               LIBMHD_SONAME, symbols[i].name);
      dlclose(dl);
      return mhd_load_rc;
    }
    /* POSIX guarantees a function pointer round-trips through void *. */
    memcpy((char *)&api + symbols[i].offset, &fn, sizeof fn);
  }
  mhd = api;
  mhd_load_rc = 0;
  return 0;
}

/* ---- the listener -------------------------------------------------------- */

struct bf_httpd {
  bf_daemon *daemon;
  struct MHD_Daemon *mhd;
  uv_poll_t poll;   /* MHD's epoll descriptor */
  uv_timer_t timer; /* MHD_get_timeout */
  unsigned open_handles;
  unsigned port;
  bool starting; /* MHD's messages go to last_error only */
  char last_error[256];
};

static void on_handle_closed(uv_handle_t *handle) {
  bf_httpd *h = handle->data;
  if (--h->open_handles == 0)
    free(h);
}

/* MHD_OPTION_EXTERNAL_LOGGER. */
__attribute__((format(printf, 2, 0))) static void
on_mhd_log(void *cls, const char *fmt, va_list ap) {
  bf_httpd *h = cls;
  vsnprintf(h->last_error, sizeof h->last_error, fmt, ap);
  size_t len = strlen(h->last_error);
  while (len &&
         (h->last_error[len - 1] == '\n' || h->last_error[len - 1] == '\r'))
    h->last_error[--len] = '\0';
  if (!h->starting)
    bf__warn(NULL, "http: %s", h->last_error);
}

static void on_timer(uv_timer_t *timer);

/* Lets MHD do its work, then arms the timer for its next deadline. */
static void run_mhd(bf_httpd *h) {
  (void)mhd.run(h->mhd);
  MHD_UNSIGNED_LONG_LONG timeout;
  if (mhd.get_timeout(h->mhd, &timeout) == MHD_YES)
    uv_timer_start(&h->timer, on_timer, (uint64_t)timeout, 0);
  else
    uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *timer) {
  run_mhd(bf_container_of(timer, bf_httpd, timer));
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  (void)events;
  if (status < 0)
    bf__warn(NULL, "http: watching the listener failed: %s",
             uv_strerror(status));
  run_mhd(bf_container_of(poll, bf_httpd, poll));
}

/* ---- responses ----------------------------------------------------------- */

/* Queues status with body (taken, malloc'd; NULL = empty). allow: the
 * Allow header for a 405, or NULL. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status,
                               const char *type, char *body,
                               const char *allow) {
  struct MHD_Response *res = mhd.create_response_from_buffer(
      body ? strlen(body) : 0, body, MHD_RESPMEM_MUST_FREE);
  if (!res) {
    free(body);
    return MHD_NO; /* MHD closes the connection */
  }
  enum MHD_Result rc = MHD_YES;
  if (type && mhd.add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE,
                                      type) != MHD_YES)
    rc = MHD_NO;
  /* Monitors want the state now, not a cached one. */
  if (mhd.add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") !=
      MHD_YES)
    rc = MHD_NO;
  if (allow &&
      mhd.add_response_header(res, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
    rc = MHD_NO;
  if (rc == MHD_YES)
    rc = mhd.queue_response(conn, status, res);
  mhd.destroy_response(res);
  return rc;
}

/* {"error": message}. message: borrowed. */
static enum MHD_Result respond_error(struct MHD_Connection *conn,
                                     unsigned status, const char *message,
                                     const char *allow) {
  json_t *obj = json_pack("{s:s}", "error", message);
  char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  if (!body)
    return MHD_NO;
  return respond(conn, status, JSON_TYPE, body, allow);
}

/* ---- GET /health --------------------------------------------------------- */

/* json_object_set_new, as a success flag. value: taken (NULL fails). */
static bool set(json_t *object, const char *key, json_t *value) {
  return json_object_set_new(object, key, value) == 0;
}

/* {"status":"ok"|"degraded","gateways":{SECTION:{"domain":…,
 * "connected":…,"outbox":N}}}. *healthy: every gateway is online. NULL
 * when out of memory. */
static char *health_json(const bf_daemon *d, bool *healthy) {
  char *out = NULL;
  bool ok = true;
  *healthy = true;
  json_t *root = json_object();
  json_t *gateways = json_object();
  if (!root || !gateways)
    goto out;
  for (size_t i = 0; ok && i < d->n_gateways; i++) {
    const bf_gateway *gw = d->gateways[i];
    bool connected = bf__component_online(&gw->component);
    int64_t outbox = BF_EINVAL;
    if (d->store)
      outbox = bf__store_outbox_count(d->store, gw->conf->domain);
    if (!connected)
      *healthy = false;
    json_t *entry = json_object();
    ok = entry && set(entry, "domain", json_string(gw->conf->domain)) &&
         set(entry, "connected", json_boolean(connected)) &&
         /* null: the count could not be read (store.c logged why) */
         set(entry, "outbox", outbox >= 0 ? json_integer(outbox) : json_null());
    ok = set(gateways, gw->conf->section, entry) && ok;
  }
  ok = ok && set(root, "status", json_string(*healthy ? "ok" : "degraded"));
  ok = set(root, "gateways", gateways) && ok;
  gateways = NULL; /* taken by root, even on failure */
  if (ok)
    out = json_dumps(root, JSON_COMPACT);
out:
  json_decref(gateways);
  json_decref(root);
  return out;
}

/* ---- GET /metrics (Prometheus text format 0.0.4) ------------------------- */

__attribute__((format(printf, 2, 3))) static int
buf_printf(bf_buf *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return BF_EINVAL;
  int rc = bf__buf_reserve(buf, (size_t)n);
  if (rc)
    return rc;
  va_start(ap, fmt);
  vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  buf->len += (size_t)n;
  return 0;
}

/* A label value between double quotes: backslash, double quote and line
 * feed escaped, as the text format requires. value: borrowed. */
static int append_label(bf_buf *buf, const char *name, const char *value) {
  int rc = buf_printf(buf, "%s=\"", name);
  for (const char *p = value; !rc && *p; p++) {
    if (*p == '\\')
      rc = bf__buf_append(buf, "\\\\", 2);
    else if (*p == '"')
      rc = bf__buf_append(buf, "\\\"", 2);
    else if (*p == '\n')
      rc = bf__buf_append(buf, "\\n", 2);
    else
      rc = bf__buf_append(buf, p, 1);
  }
  return rc ? rc : bf__buf_append(buf, "\"", 1);
}

static int family(bf_buf *buf, const char *name, const char *type,
                  const char *help) {
  return buf_printf(buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                    type);
}

/* One value per gateway, labelled {gateway="SECTION"}. */
enum gateway_value {
  V_STANZAS_IN,
  V_STANZAS_OUT,
  V_BYTES_IN,
  V_BYTES_OUT,
  V_CONNECTS,
  V_ERRORS_SENT,
  V_OVERSIZE,
  V_OUTBOX,
  V_QUEUED,
};

static const struct {
  enum gateway_value value;
  const char *name, *type, *help;
} per_gateway[] = {
    {V_STANZAS_IN, "babelfish_stanzas_received_total", "counter",
     "Stanzas received from the XMPP server."},
    {V_STANZAS_OUT, "babelfish_stanzas_sent_total", "counter",
     "Stanzas sent to the XMPP server."},
    {V_BYTES_IN, "babelfish_bytes_received_total", "counter",
     "Bytes received from the XMPP server."},
    {V_BYTES_OUT, "babelfish_bytes_sent_total", "counter",
     "Bytes sent to the XMPP server."},
    {V_CONNECTS, "babelfish_connects_total", "counter",
     "Component sessions established (handshake accepted)."},
    {V_ERRORS_SENT, "babelfish_stanza_errors_sent_total", "counter",
     "Error stanzas sent in answer to stanzas that could not be handled."},
    {V_OVERSIZE, "babelfish_oversize_stanzas_total", "counter",
     "Stanzas skipped for exceeding max_stanza_size."},
    {V_OUTBOX, "babelfish_outbox_stanzas", "gauge",
     "Stanzas in the durable outbox, not yet confirmed by the server."},
    {V_QUEUED, "babelfish_write_queue_bytes", "gauge",
     "Bytes queued for the XMPP server and not yet written."},
};

/* false: no value (the outbox count could not be read). */
static bool gateway_value(const bf_daemon *d, const bf_gateway *gw,
                          enum gateway_value v, uint64_t *out) {
  const bf_component *c = &gw->component;
  switch (v) {
  case V_STANZAS_IN: *out = c->stanzas_in; return true;
  case V_STANZAS_OUT: *out = c->stanzas_out; return true;
  case V_BYTES_IN: *out = c->bytes_in; return true;
  case V_BYTES_OUT: *out = c->bytes_out; return true;
  case V_CONNECTS: *out = c->connects; return true;
  case V_ERRORS_SENT: *out = gw->errors_sent; return true;
  case V_OVERSIZE: *out = gw->oversize; return true;
  case V_QUEUED: *out = bf__component_queued(c); return true;
  case V_OUTBOX: {
    int64_t n = d->store ? bf__store_outbox_count(d->store, gw->conf->domain)
                         : BF_EINVAL;
    *out = n >= 0 ? (uint64_t)n : 0;
    return n >= 0;
  }
  }
  return false;
}

/* The text, or NULL when out of memory. */
static char *metrics_text(const bf_daemon *d) {
  bf_buf buf;
  bf__buf_init(&buf, MAX_BODY);
  uint64_t now = uv_now(d->loop);
  uint64_t up_ms = now > d->started_ms ? now - d->started_ms : 0;
  int rc = family(&buf, "babelfish_build_info", "gauge",
                  "Always 1; the version is in the label.");
  rc = rc ? rc : buf_printf(&buf, "babelfish_build_info{");
  rc = rc ? rc : append_label(&buf, "version", BF_VERSION);
  rc = rc ? rc : buf_printf(&buf, "} 1\n");
  rc = rc ? rc
          : family(&buf, "babelfish_uptime_seconds", "gauge",
                   "Seconds since the daemon started.");
  rc = rc ? rc
          : buf_printf(&buf, "babelfish_uptime_seconds %llu.%03llu\n",
                       (unsigned long long)(up_ms / 1000),
                       (unsigned long long)(up_ms % 1000));
  rc = rc ? rc
          : family(&buf, "babelfish_gateway_connected", "gauge",
                   "1 if the gateway's component session is online.");
  for (size_t i = 0; !rc && i < d->n_gateways; i++) {
    const bf_gateway *gw = d->gateways[i];
    rc = buf_printf(&buf, "babelfish_gateway_connected{");
    rc = rc ? rc : append_label(&buf, "gateway", gw->conf->section);
    rc = rc ? rc : bf__buf_append(&buf, ",", 1);
    rc = rc ? rc : append_label(&buf, "domain", gw->conf->domain);
    rc = rc ? rc : bf__buf_append(&buf, ",", 1);
    rc = rc ? rc : append_label(&buf, "transport", gw->conf->transport);
    rc = rc ? rc
            : buf_printf(&buf, "} %d\n",
                         bf__component_online(&gw->component) ? 1 : 0);
  }
  for (size_t m = 0; !rc && m < BF_ARRAY_SIZE(per_gateway); m++) {
    rc = family(&buf, per_gateway[m].name, per_gateway[m].type,
                per_gateway[m].help);
    for (size_t i = 0; !rc && i < d->n_gateways; i++) {
      uint64_t value;
      if (!gateway_value(d, d->gateways[i], per_gateway[m].value, &value))
        continue;
      rc = buf_printf(&buf, "%s{", per_gateway[m].name);
      rc = rc ? rc
              : append_label(&buf, "gateway", d->gateways[i]->conf->section);
      rc = rc ? rc : buf_printf(&buf, "} %llu\n", (unsigned long long)value);
    }
  }
  if (rc) {
    bf__buf_close(&buf);
    return NULL;
  }
  return buf.data; /* taken from buf */
}

/* ---- routing ------------------------------------------------------------- */

static bool is_get(const char *method) {
  return !strcmp(method, MHD_HTTP_METHOD_GET) ||
         !strcmp(method, MHD_HTTP_METHOD_HEAD);
}

/* A request that announces a body: Content-Length other than 0, or any
 * Transfer-Encoding (chunked). */
static bool has_body(struct MHD_Connection *conn) {
  const char *length = mhd.lookup_connection_value(
      conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  const char *encoding = mhd.lookup_connection_value(
      conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  return encoding || (length && strspn(length, "0") != strlen(length));
}

static enum MHD_Result route(bf_httpd *h, struct MHD_Connection *conn,
                             const char *url, const char *method,
                             unsigned *status) {
  const bf_daemon *d = h->daemon;
  bool health = !strcmp(url, "/health");
  bool metrics = !strcmp(url, "/metrics");
  if (!strcmp(url, "/hooks") || !strncmp(url, "/hooks/", 7)) {
    *status = MHD_HTTP_NOT_FOUND;
    return respond_error(conn, *status, "no webhook gateway is configured",
                         NULL);
  }
  if (!health && !metrics) {
    *status = MHD_HTTP_NOT_FOUND;
    return respond_error(conn, *status,
                         "not found; this server answers GET /health and "
                         "GET /metrics",
                         NULL);
  }
  if (!is_get(method)) {
    *status = MHD_HTTP_METHOD_NOT_ALLOWED;
    return respond_error(conn, *status, "method not allowed; use GET or HEAD",
                         "GET, HEAD");
  }
  /* Answered before the body is read: MHD then discards it and closes
   * the connection after the response. */
  if (has_body(conn)) {
    *status = MHD_HTTP_CONTENT_TOO_LARGE;
    return respond_error(conn, *status, "request bodies are not accepted here",
                         NULL);
  }
  if (health) {
    bool healthy;
    char *body = health_json(d, &healthy);
    if (!body) {
      *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
      return MHD_NO;
    }
    /* 503 lets load balancers and monitors act on the status alone. */
    *status = healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
    return respond(conn, *status, JSON_TYPE, body, NULL);
  }
  char *body = metrics_text(d);
  if (!body) {
    *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    return MHD_NO;
  }
  *status = MHD_HTTP_OK;
  return respond(conn, *status, PROMETHEUS_TYPE, body, NULL);
}

/* MHD_AccessHandlerCallback: called once the request line and headers are
 * in, then once more when the request is complete. A request announcing
 * a body is answered at once (MHD then discards the body and closes the
 * connection); any other on the second call, so that the connection can
 * be kept alive for the next one. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  static int headers_seen; /* its address marks the first call as done */
  (void)version;
  (void)upload_data;
  (void)upload_data_size;
  bf_httpd *h = cls;
  if (!*con_cls && !has_body(conn)) {
    *con_cls = &headers_seen;
    return MHD_YES;
  }
  unsigned status = 0;
  enum MHD_Result rc = route(h, conn, url, method, &status);
  bf__debug(NULL, "http: %s %s -> %u%s", method, url, status,
            rc == MHD_YES ? "" : " (connection dropped)");
  return rc;
}

/* ---- start and stop ------------------------------------------------------ */

/* "HOST:PORT" or "[IPv6]:PORT" -> address. Port 0 is allowed. */
static int resolve(const char *listen, struct sockaddr_storage *addr,
                   socklen_t *addr_len, char *err, size_t err_size) {
  char host[256];
  const char *port;
  bool literal6 = listen[0] == '[';
  if (literal6) {
    const char *close = strchr(listen, ']');
    if (!close || close[1] != ':' ||
        (size_t)(close - listen - 1) >= sizeof host)
      goto bad;
    memcpy(host, listen + 1, (size_t)(close - listen - 1));
    host[close - listen - 1] = '\0';
    port = close + 2;
  } else {
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host)
      goto bad;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    port = colon + 1;
  }
  if (!*host || !*port || strspn(port, "0123456789") != strlen(port) ||
      strlen(port) > 5 || atoi(port) > 65535)
    goto bad;
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV |
                                       (literal6 ? AI_NUMERICHOST : 0)};
  struct addrinfo *found = NULL;
  int gai = getaddrinfo(host, port, &hints, &found);
  if (gai != 0) {
    snprintf(err, err_size, "http: cannot resolve '%s': %s", host,
             gai_strerror(gai));
    return BF_EINVAL;
  }
  /* The first address only: bind exactly what was configured. */
  memcpy(addr, found->ai_addr, found->ai_addrlen);
  *addr_len = found->ai_addrlen;
  freeaddrinfo(found);
  return 0;
bad:
  snprintf(err, err_size,
           "http '%s' is not a listening address; use HOST:PORT or "
           "[IPv6]:PORT, e.g. 127.0.0.1:8080",
           listen);
  return BF_EINVAL;
}

int bf__httpd_start(bf_httpd **httpd, bf_daemon *daemon, const char *listen,
                    char *err, size_t err_size) {
  *httpd = NULL;
  struct sockaddr_storage addr;
  socklen_t addr_len = 0;
  int rc = resolve(listen, &addr, &addr_len, err, err_size);
  if (rc)
    return rc;
  rc = mhd_load();
  if (rc) {
    snprintf(err, err_size, "http: %s", mhd_load_error);
    return rc;
  }
  bf_httpd *h = calloc(1, sizeof *h);
  if (!h)
    return BF_ENOMEM;
  h->daemon = daemon;
  h->starting = true;
  unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
  /* Without MHD_USE_DUAL_STACK an IPv6 socket is v6-only: exactly the
   * configured address. */
  if (addr.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  /* No internal thread: MHD_run is called from the loop. Port 0 here:
   * MHD_OPTION_SOCK_ADDR decides. */
  h->mhd = mhd.start_daemon(
      flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)CONNECTION_MEMORY, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
      MHD_OPTION_END);
  if (!h->mhd) {
    snprintf(err, err_size, "http: cannot listen on %s: %s", listen,
             h->last_error[0] ? h->last_error
                              : "libmicrohttpd refused to start");
    rc = BF_EIO;
    goto out;
  }
  h->starting = false;
  const union MHD_DaemonInfo *info =
      mhd.get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  const union MHD_DaemonInfo *port =
      mhd.get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  if (!info || !port) {
    snprintf(err, err_size, "http: libmicrohttpd gave no epoll descriptor");
    rc = BF_EIO;
    goto out;
  }
  h->port = port->port;
  int uv_rc = uv_poll_init(daemon->loop, &h->poll, info->epoll_fd);
  if (uv_rc) {
    snprintf(err, err_size, "http: cannot watch the listener: %s",
             uv_strerror(uv_rc));
    rc = BF_EIO;
    goto out;
  }
  uv_timer_init(daemon->loop, &h->timer);
  h->poll.data = h->timer.data = h;
  h->open_handles = 2;
  uv_poll_start(&h->poll, UV_READABLE, on_poll);
  run_mhd(h);
  char host[INET6_ADDRSTRLEN] = "?";
  (void)getnameinfo((struct sockaddr *)&addr, addr_len, host, sizeof host, NULL,
                    0, NI_NUMERICHOST);
  bool v6 = addr.ss_family == AF_INET6;
  bf__info(NULL, "http: listening on %s%s%s:%u (GET /health, GET /metrics)",
           v6 ? "[" : "", host, v6 ? "]" : "", h->port);
  *httpd = h;
out:
  if (rc) {
    if (h->mhd)
      mhd.stop_daemon(h->mhd);
    free(h);
  }
  return rc;
}

unsigned bf__httpd_port(const bf_httpd *httpd) { return httpd->port; }

void bf__httpd_stop(bf_httpd *httpd) {
  if (!httpd)
    return;
  /* The poll handle leaves libuv's epoll set now, before MHD closes the
   * descriptor it watches. */
  uv_close((uv_handle_t *)&httpd->poll, on_handle_closed);
  uv_close((uv_handle_t *)&httpd->timer, on_handle_closed);
  mhd.stop_daemon(httpd->mhd);
  httpd->mhd = NULL;
}
