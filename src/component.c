/* One XEP-0114 component connection on the libuv loop. */
#include "component.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The handshake needs one SHA-1 per connection. OpenSSL 3's EVP interface
 * loads its provider machinery for that, which was measured at 2 MiB of
 * resident memory (libcrypto's pages went from 1.4 to 3.5 MiB); the
 * low-level SHA1 functions compute the same digest without it. They are
 * deprecated in 3.0, but present and maintained. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "babelfish/error.h"
#include "log.h"
#include "util.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define HANDSHAKE_TIMEOUT_MS 30000
#define CLOSE_TIMEOUT_MS 2000
/* A connection that lasted this long resets the backoff: a server that
 * accepts the handshake and then kicks us (Prosody's kick_old, §1.7 of
 * the protocol notes) must not make us reconnect in a tight loop. */
#define STABLE_MS 60000
#define CONFLICT_MIN_DELAY_S 5
#define CONFLICT_MAX_DELAY_S 300

static const char stream_header_fmt[] =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='";
static const char stream_close[] = "</stream:stream>";

static void connect_now(bf_component *c);
static void close_handles(bf_component *c);
static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_keepalive(uv_timer_t *timer);
static void drop_connection(bf_component *c, bool reconnect);
static void schedule_flush(bf_component *c);
static void maybe_stopped(bf_component *c);

/* ---- parser callbacks ---------------------------------------------------- */

static void on_stream_start(void *data, const bf_xml *header) {
  bf_component *c = data;
  if (c->state != BF_COMPONENT_OPENING)
    return;
  const char *id = bf_xml_attr(header, "id");
  if (!id || !*id) {
    bf__error(c->opt.tag, "server sent a stream header without an id; "
                          "is %s:%u an XEP-0114 component port?",
              c->opt.server, c->opt.port);
    drop_connection(c, true);
    return;
  }
  free(c->stream_id);
  c->stream_id = strdup(id);
  char digest[41];
  if (!c->stream_id || bf__component_handshake_digest(id, c->opt.secret, digest)) {
    drop_connection(c, true);
    return;
  }
  char msg[64];
  int n = snprintf(msg, sizeof msg, "<handshake>%s</handshake>", digest);
  if (bf__buf_append(&c->pending, msg, (size_t)n)) {
    drop_connection(c, true);
    return;
  }
  schedule_flush(c);
  c->state = BF_COMPONENT_HANDSHAKE;
  bf__debug(c->opt.tag, "stream %s opened, handshake sent", id);
}

/* RFC 6120 §4.9: <stream:error><condition xmlns='…streams'/><text>…</text>.
 * The log line says what the admin should change, since most of these are
 * configuration mistakes (protocol notes §1.3, §1.5). */
static void on_stream_error(bf_component *c, const bf_xml *error) {
  const char *condition = "undefined-condition";
  for (bf_xml *child = bf_xml_first_child(error); child;
       child = bf_xml_next(child)) {
    if (strcmp(bf_xml_name(child), "text") != 0) {
      condition = bf_xml_name(child);
      break;
    }
  }
  const char *text = bf_xml_child_text(error, "text", NULL);
  char said[512] = "";
  if (text && *text)
    snprintf(said, sizeof said, " (server said: %s)", text);
  const char *domain = c->opt.domain;
  if (!strcmp(condition, "host-unknown")) {
    bf__error(c->opt.tag,
              "the server does not serve component %s (host-unknown)%s: add "
              "Component \"%s\" with component_secret to Prosody's config, or "
              "list it under hosts: of an ejabberd_service listener",
              domain, said, domain);
  } else if (!strcmp(condition, "not-authorized")) {
    bf__error(c->opt.tag,
              "the server refused the handshake for %s (not-authorized)%s: "
              "check the secret in [%s] against component_secret (Prosody) or "
              "the ejabberd_service password; ejabberd also says this when %s "
              "is not in the listener's hosts",
              domain, said, c->opt.tag, domain);
    if (c->min_delay_s < c->opt.reconnect_min_s * 2)
      c->min_delay_s = c->opt.reconnect_min_s * 2;
  } else if (!strcmp(condition, "conflict")) {
    bf__error(c->opt.tag,
              "another connection already serves %s (conflict)%s: is a second "
              "babelfish running for this domain? Backing off instead of "
              "fighting over it",
              domain, said);
    c->min_delay_s = CONFLICT_MIN_DELAY_S;
  } else if (!strcmp(condition, "invalid-from") ||
             !strcmp(condition, "improper-addressing") ||
             !strcmp(condition, "not-well-formed") ||
             !strcmp(condition, "invalid-xml") ||
             !strcmp(condition, "restricted-xml")) {
    bf__error(c->opt.tag,
              "the server closed the stream because it received bad data "
              "(%s)%s: this is a babelfish bug; please report it with a "
              "log_level = debug log",
              condition, said);
  } else if (!strcmp(condition, "system-shutdown")) {
    bf__warn(c->opt.tag, "the XMPP server is shutting down%s", said);
  } else {
    bf__error(c->opt.tag, "stream error from the server: %s%s", condition,
              said);
  }
  free(c->last_error);
  c->last_error = strdup(condition);
  drop_connection(c, true);
}

static void on_stanza(void *data, bf_xml *stanza) {
  bf_component *c = data;
  const char *name = bf_xml_name(stanza);
  const char *ns = bf_xml_xmlns(stanza);
  if (!strcmp(name, "error") && !strcmp(ns, BF_NS_STREAM)) {
    on_stream_error(c, stanza);
    bf_xml_free(stanza);
    return;
  }
  if (c->state == BF_COMPONENT_HANDSHAKE) {
    if (strcmp(name, "handshake") != 0) {
      bf__error(c->opt.tag, "expected <handshake/> from the server, got <%s/>",
                name);
      bf_xml_free(stanza);
      drop_connection(c, true);
      return;
    }
    bf_xml_free(stanza);
    uv_timer_stop(&c->timer);
    c->state = BF_COMPONENT_ONLINE;
    c->connects++;
    c->online_since_ms = uv_now(c->loop);
    free(c->last_error);
    c->last_error = NULL;
    bf__info(c->opt.tag, "connected to %s:%u as %s", c->opt.server,
             c->opt.port, c->opt.domain);
    if (c->opt.keepalive_s)
      uv_timer_start(&c->keepalive, on_keepalive,
                     (uint64_t)c->opt.keepalive_s * 1000, 0);
    if (c->cb->online)
      c->cb->online(c);
    return;
  }
  if (c->state != BF_COMPONENT_ONLINE) {
    bf_xml_free(stanza);
    return;
  }
  c->stanzas_in++;
  c->cb->stanza(c, stanza);
}

static void on_oversize(void *data, const bf_xml *top, size_t size) {
  bf_component *c = data;
  bf__warn(c->opt.tag,
           "skipped a <%s/> of %zu bytes from %s: over max_stanza_size (%zu)",
           bf_xml_name(top), size,
           bf_xml_attr(top, "from") ? bf_xml_attr(top, "from") : "?",
           c->opt.max_stanza_size);
  if (c->state == BF_COMPONENT_ONLINE && c->cb->oversize)
    c->cb->oversize(c, top, size);
}

static void on_stream_end(void *data) {
  bf_component *c = data;
  bf__warn(c->opt.tag, "the server closed the stream");
  if (c->state == BF_COMPONENT_ONLINE || c->state == BF_COMPONENT_HANDSHAKE ||
      c->state == BF_COMPONENT_OPENING) {
    if (!c->writing)
      (void)bf__buf_append(&c->pending, stream_close, sizeof stream_close - 1);
    drop_connection(c, true);
  }
}

static void on_parse_error(void *data, const char *condition, const char *text) {
  bf_component *c = data;
  bf__error(c->opt.tag, "bad XML from the server (%s): %s", condition, text);
  if (!c->writing) {
    char msg[256];
    int n = snprintf(msg, sizeof msg,
                     "<stream:error><%s xmlns='" BF_NS_STREAMS
                     "'/></stream:error></stream:stream>",
                     condition);
    if (n > 0 && (size_t)n < sizeof msg)
      (void)bf__buf_append(&c->pending, msg, (size_t)n);
  }
  drop_connection(c, true);
}

static const bf_xml_stream_callbacks parser_callbacks = {
    .stream_start = on_stream_start,
    .stanza = on_stanza,
    .oversize = on_oversize,
    .stream_end = on_stream_end,
    .error = on_parse_error,
};

/* ---- writing ------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status);

static void flush(bf_component *c) {
  if (c->writing || c->pending.len == 0 || !c->tcp_open)
    return;
  if (c->state != BF_COMPONENT_OPENING && c->state != BF_COMPONENT_HANDSHAKE &&
      c->state != BF_COMPONENT_ONLINE && c->state != BF_COMPONENT_CLOSING)
    return;
  bf_buf tmp = c->inflight;
  c->inflight = c->pending;
  c->pending = tmp;
  bf__buf_reset(&c->pending);
  uv_buf_t buf = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
  int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (rc) {
    bf__error(c->opt.tag, "write failed: %s", uv_strerror(rc));
    bf__buf_reset(&c->inflight);
    drop_connection(c, true);
    return;
  }
  c->writing = true;
  c->bytes_out += c->inflight.len;
  c->last_write_ms = uv_now(c->loop);
}

static void on_flush(uv_idle_t *idle) {
  bf_component *c = bf_container_of(idle, bf_component, flusher);
  uv_idle_stop(idle);
  flush(c);
}

/* Writes are batched: everything queued during one loop iteration goes out
 * in one write (the idle handle also keeps the loop from blocking in poll
 * while something is queued). */
static void schedule_flush(bf_component *c) {
  if (!c->writing && !uv_is_active((uv_handle_t *)&c->flusher))
    uv_idle_start(&c->flusher, on_flush);
}

static void close_tcp(bf_component *c);

static void on_write(uv_write_t *req, int status) {
  bf_component *c = bf_container_of(req, bf_component, write_req);
  c->writing = false;
  bf__buf_reset(&c->inflight);
  /* Don't keep a burst's worth of memory around while idle. */
  if (c->inflight.cap > 256 * 1024)
    bf__buf_close(&c->inflight);
  if (status < 0) {
    if (status != UV_ECANCELED) {
      bf__error(c->opt.tag, "write to the server failed: %s",
                uv_strerror(status));
      drop_connection(c, true);
    }
    return;
  }
  if (c->state == BF_COMPONENT_CLOSING) {
    if (c->pending.len)
      flush(c);
    else
      close_tcp(c);
    return;
  }
  if (c->pending.len)
    flush(c);
  size_t queued = bf__component_queued(c);
  if (c->throttled && queued <= c->opt.write_queue_max / 4) {
    c->throttled = false;
    if (c->state == BF_COMPONENT_ONLINE && !c->reading) {
      if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    }
  }
  if (c->need_drain && queued <= c->opt.write_queue_max / 4) {
    c->need_drain = false;
    if (c->state == BF_COMPONENT_ONLINE && c->cb->drained)
      c->cb->drained(c);
  }
}

size_t bf__component_queued(const bf_component *c) {
  return c->pending.len + c->inflight.len;
}

bool bf__component_online(const bf_component *c) {
  return c->state == BF_COMPONENT_ONLINE;
}

/* Back-pressure: past half the cap we stop reading from the server, so
 * the stanzas that produce replies stop arriving until the socket drains. */
static void after_queue(bf_component *c) {
  schedule_flush(c);
  if (!c->throttled && bf__component_queued(c) > c->opt.write_queue_max / 2) {
    c->throttled = true;
    if (c->reading) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = false;
    }
  }
}

int bf__component_send(bf_component *c, const bf_xml *stanza) {
  if (c->state != BF_COMPONENT_ONLINE)
    return BF_ENOTCONN;
  if (bf__component_queued(c) >= c->opt.write_queue_max) {
    c->need_drain = true;
    return BF_ENOBUFS;
  }
  size_t before = c->pending.len;
  int rc = bf__xml_serialize(stanza, BF_NS_COMPONENT, &c->pending);
  if (rc)
    return rc;
  if (c->pending.len - before > c->opt.max_stanza_size) {
    c->pending.len = before;
    c->pending.data[before] = '\0';
    return BF_E2BIG;
  }
  c->stanzas_out++;
  after_queue(c);
  return 0;
}

int bf__component_send_raw(bf_component *c, const char *xml, size_t len) {
  if (c->state != BF_COMPONENT_ONLINE)
    return BF_ENOTCONN;
  if (bf__component_queued(c) >= c->opt.write_queue_max) {
    c->need_drain = true;
    return BF_ENOBUFS;
  }
  if (len > c->opt.max_stanza_size)
    return BF_E2BIG;
  int rc = bf__buf_append(&c->pending, xml, len);
  if (rc)
    return rc;
  c->stanzas_out++;
  after_queue(c);
  return 0;
}

static void on_keepalive(uv_timer_t *timer) {
  bf_component *c = bf_container_of(timer, bf_component, keepalive);
  if (c->state != BF_COMPONENT_ONLINE)
    return;
  uint64_t period = (uint64_t)c->opt.keepalive_s * 1000;
  uint64_t idle = uv_now(c->loop) - c->last_write_ms;
  if (idle + 50 >= period && !c->writing && c->pending.len == 0) {
    /* RFC 6120 §4.6.1: whitespace keepalive between stanzas. */
    (void)bf__buf_append(&c->pending, " ", 1);
    flush(c);
    idle = 0;
  }
  uv_timer_start(&c->keepalive, on_keepalive, idle < period ? period - idle : period, 0);
}

/* ---- reading ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  bf_component *c = bf_container_of((uv_tcp_t *)handle, bf_component, tcp);
  (void)suggested;
  *buf = uv_buf_init(c->read_buffer, READ_BUFFER_SIZE);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  bf_component *c = bf_container_of((uv_tcp_t *)stream, bf_component, tcp);
  (void)buf;
  if (nread == 0)
    return;
  if (nread < 0) {
    if (nread == UV_EOF)
      bf__warn(c->opt.tag, "the server closed the connection");
    else
      bf__error(c->opt.tag, "read from the server failed: %s",
                uv_strerror((int)nread));
    drop_connection(c, true);
    return;
  }
  c->bytes_in += (uint64_t)nread;
  /* Errors are reported through on_parse_error. */
  (void)bf__xml_stream_feed(c->parser, c->read_buffer, (size_t)nread);
}

/* ---- connection life cycle ------------------------------------------------ */

static void on_timer_closed(uv_handle_t *handle) {
  bf_component *c = handle->data;
  c->open_handles--;
  maybe_stopped(c);
}

/* The last step of a stop: once no request or socket is pending, the
 * timers and the flusher are closed; stopped runs from the last close
 * callback. Safe to call more than once. */
static void close_handles(bf_component *c) {
  if (!c->stopping || c->resolving || c->tcp_open || c->handles_closing)
    return;
  c->handles_closing = true;
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  uv_close((uv_handle_t *)&c->keepalive, on_timer_closed);
  uv_close((uv_handle_t *)&c->flusher, on_timer_closed);
}

static void maybe_stopped(bf_component *c) {
  if (c->open_handles == 0 && !c->resolving && c->state != BF_COMPONENT_STOPPED) {
    c->state = BF_COMPONENT_STOPPED;
    if (c->cb->stopped)
      c->cb->stopped(c);
  }
}

static unsigned backoff_ms(bf_component *c) {
  unsigned min_s = c->opt.reconnect_min_s ? c->opt.reconnect_min_s : 1;
  unsigned max_s = c->opt.reconnect_max_s ? c->opt.reconnect_max_s : 60;
  if (c->min_delay_s > min_s)
    min_s = c->min_delay_s;
  if (c->last_error && !strcmp(c->last_error, "conflict") &&
      max_s < CONFLICT_MAX_DELAY_S)
    max_s = CONFLICT_MAX_DELAY_S;
  if (min_s > max_s)
    min_s = max_s;
  uint64_t delay = (uint64_t)min_s * 1000;
  for (unsigned i = 0; i < c->attempts && delay < (uint64_t)max_s * 1000; i++)
    delay *= 2;
  if (delay > (uint64_t)max_s * 1000)
    delay = (uint64_t)max_s * 1000;
  /* Jitter: 50–100 % of the delay, so gateways restarted together don't
   * reconnect in lockstep. */
  uint64_t jitter = (uint64_t)rand_r(&c->seed) % (delay / 2 + 1);
  return (unsigned)(delay / 2 + jitter);
}

static void on_backoff(uv_timer_t *timer) {
  bf_component *c = bf_container_of(timer, bf_component, timer);
  if (c->stopping)
    return;
  connect_now(c);
}

static void schedule_reconnect(bf_component *c) {
  if (c->stopping) {
    close_handles(c);
    return;
  }
  unsigned delay = backoff_ms(c);
  c->attempts++;
  c->state = BF_COMPONENT_IDLE;
  bf__info(c->opt.tag, "reconnecting to %s:%u in %.1f s", c->opt.server,
           c->opt.port, delay / 1000.0);
  uv_timer_start(&c->timer, on_backoff, delay, 0);
}

static void on_tcp_closed(uv_handle_t *handle) {
  bf_component *c = bf_container_of((uv_tcp_t *)handle, bf_component, tcp);
  c->tcp_open = false;
  c->writing = false;
  c->reading = false;
  c->throttled = false;
  c->need_drain = false;
  /* What was queued and not written is lost with the connection; what must
   * not be lost went through the durable outbox and is re-sent. */
  bf__buf_close(&c->pending);
  bf__buf_close(&c->inflight);
  c->open_handles--;
  if (c->stopping) {
    c->state = BF_COMPONENT_CLOSING;
    close_handles(c);
    return;
  }
  if (c->reconnect_after_close)
    schedule_reconnect(c);
  else
    c->state = BF_COMPONENT_IDLE;
}

static void close_tcp(bf_component *c) {
  uv_timer_stop(&c->timer);
  if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

/* Ends the connection. What is already queued (a stream error, the stream
 * close) is attempted once with a non-blocking write: the peer is going
 * away, so waiting for it is pointless. */
static void drop_connection(bf_component *c, bool reconnect) {
  bool was_online = c->state == BF_COMPONENT_ONLINE;
  if (c->state == BF_COMPONENT_CLOSING || c->state == BF_COMPONENT_STOPPED ||
      c->state == BF_COMPONENT_IDLE)
    return;
  if (was_online) {
    uint64_t lasted = uv_now(c->loop) - c->online_since_ms;
    if (lasted >= STABLE_MS) {
      c->attempts = 0;
      c->min_delay_s = 0;
    }
  }
  c->state = BF_COMPONENT_CLOSING;
  c->reconnect_after_close = reconnect;
  uv_timer_stop(&c->keepalive);
  uv_idle_stop(&c->flusher);
  if (c->tcp_open && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
  if (c->tcp_open && !c->writing && c->pending.len) {
    uv_buf_t buf = uv_buf_init(c->pending.data, (unsigned)c->pending.len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
  }
  if (c->tcp_open)
    close_tcp(c);
  else if (reconnect)
    schedule_reconnect(c);
  if (was_online && c->cb->offline)
    c->cb->offline(c);
}

static void on_handshake_timeout(uv_timer_t *timer) {
  bf_component *c = bf_container_of(timer, bf_component, timer);
  bf__error(c->opt.tag,
            "no answer to the stream header and handshake within %d s from "
            "%s:%u: is it a component port (Prosody component_ports, ejabberd "
            "ejabberd_service)?",
            HANDSHAKE_TIMEOUT_MS / 1000, c->opt.server, c->opt.port);
  drop_connection(c, true);
}

static void on_connect(uv_connect_t *req, int status) {
  bf_component *c = bf_container_of(req, bf_component, connect_req);
  if (status == UV_ECANCELED || c->stopping)
    return;
  if (status < 0) {
    bf__error(c->opt.tag,
              "cannot connect to the XMPP server at %s:%u: %s (is it running, "
              "with a component listener on that port?)",
              c->opt.server, c->opt.port, uv_strerror(status));
    c->state = BF_COMPONENT_CLOSING;
    c->reconnect_after_close = true;
    close_tcp(c);
    return;
  }
  int rc = bf__xml_stream_reset(c->parser);
  if (!rc)
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc) {
    bf__error(c->opt.tag, "cannot start the stream: %s", bf_strerror(rc));
    c->state = BF_COMPONENT_CLOSING;
    c->reconnect_after_close = true;
    close_tcp(c);
    return;
  }
  c->reading = true;
  c->state = BF_COMPONENT_OPENING;
  bf__buf_reset(&c->pending);
  bf__buf_reset(&c->inflight);
  /* XEP-0114 §3: 'to' is the component's name; no version attribute. */
  rc = bf__buf_append(&c->pending, stream_header_fmt, sizeof stream_header_fmt - 1);
  if (!rc)
    rc = bf__xml_escape(&c->pending, c->opt.domain, strlen(c->opt.domain), true);
  if (!rc)
    rc = bf__buf_append(&c->pending, "'>", 2);
  if (rc) {
    drop_connection(c, true);
    return;
  }
  flush(c);
  uv_timer_start(&c->timer, on_handshake_timeout, HANDSHAKE_TIMEOUT_MS, 0);
}

/* Opens the TCP connection to a resolved address. */
static void connect_to(bf_component *c, const struct sockaddr *addr) {
  int rc = uv_tcp_init(c->loop, &c->tcp);
  if (rc) {
    schedule_reconnect(c);
    return;
  }
  c->tcp_open = true;
  c->open_handles++;
  (void)uv_tcp_nodelay(&c->tcp, 1);
  rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connect);
  if (rc) {
    bf__error(c->opt.tag, "cannot connect to %s:%u: %s", c->opt.server,
              c->opt.port, uv_strerror(rc));
    c->state = BF_COMPONENT_CLOSING;
    c->reconnect_after_close = true;
    close_tcp(c);
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  bf_component *c = bf_container_of(req, bf_component, resolver);
  c->resolving = false;
  if (c->stopping) {
    if (res)
      uv_freeaddrinfo(res);
    close_handles(c);
    return;
  }
  if (status < 0 || !res) {
    bf__error(c->opt.tag, "cannot resolve the XMPP server name '%s': %s",
              c->opt.server, uv_strerror(status));
    if (res)
      uv_freeaddrinfo(res);
    schedule_reconnect(c);
    return;
  }
  connect_to(c, res->ai_addr);
  uv_freeaddrinfo(res);
}

static void connect_now(bf_component *c) {
  c->state = BF_COMPONENT_CONNECTING;
  /* A numeric address (the usual 127.0.0.1) needs no resolver: skipping
   * getaddrinfo keeps libuv's thread pool, and its memory, unstarted. */
  struct sockaddr_storage addr;
  if (uv_ip4_addr(c->opt.server, (int)c->opt.port, (struct sockaddr_in *)&addr) == 0 ||
      uv_ip6_addr(c->opt.server, (int)c->opt.port, (struct sockaddr_in6 *)&addr) == 0) {
    bf__debug(c->opt.tag, "connecting to %s:%u", c->opt.server, c->opt.port);
    connect_to(c, (const struct sockaddr *)&addr);
    return;
  }
  char port[16];
  snprintf(port, sizeof port, "%u", c->opt.port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(c->loop, &c->resolver, on_resolved, c->opt.server,
                          port, &hints);
  if (rc) {
    bf__error(c->opt.tag, "cannot resolve '%s': %s", c->opt.server,
              uv_strerror(rc));
    schedule_reconnect(c);
    return;
  }
  c->resolving = true;
  bf__debug(c->opt.tag, "resolving %s", c->opt.server);
}

int bf__component_start(bf_component *c, uv_loop_t *loop,
                        const bf_component_options *opt,
                        const bf_component_callbacks *cb, void *data) {
  memset(c, 0, sizeof *c);
  c->loop = loop;
  c->opt = *opt;
  c->cb = cb;
  c->data = data;
  c->seed = (unsigned)uv_hrtime();
  bf__buf_init(&c->pending, 0);
  bf__buf_init(&c->inflight, 0);
  c->read_buffer = malloc(READ_BUFFER_SIZE);
  c->parser = bf__xml_stream_new(&parser_callbacks, c, opt->max_stanza_size,
                                 opt->max_depth);
  if (!c->read_buffer || !c->parser) {
    free(c->read_buffer);
    bf__xml_stream_free(c->parser);
    return BF_ENOMEM;
  }
  uv_timer_init(loop, &c->timer);
  uv_timer_init(loop, &c->keepalive);
  uv_idle_init(loop, &c->flusher);
  c->timer.data = c->keepalive.data = c->flusher.data = c;
  c->open_handles = 3;
  connect_now(c);
  return 0;
}

void bf__component_reconnect(bf_component *c, const char *reason) {
  if (c->state == BF_COMPONENT_IDLE || c->state == BF_COMPONENT_CLOSING ||
      c->state == BF_COMPONENT_STOPPED || c->stopping)
    return;
  bf__warn(c->opt.tag, "dropping the connection: %s", reason);
  drop_connection(c, true);
}

static void on_close_timeout(uv_timer_t *timer) {
  bf_component *c = bf_container_of(timer, bf_component, timer);
  close_tcp(c);
}

void bf__component_stop(bf_component *c) {
  if (c->stopping)
    return;
  c->stopping = true;
  uv_timer_stop(&c->timer);
  uv_timer_stop(&c->keepalive);
  switch (c->state) {
  case BF_COMPONENT_ONLINE:
    /* Flush what is queued, then close the stream (RFC 6120 §4.4). */
    c->state = BF_COMPONENT_CLOSING;
    (void)bf__buf_append(&c->pending, stream_close, sizeof stream_close - 1);
    if (c->reading) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = false;
    }
    uv_idle_stop(&c->flusher);
    flush(c);
    uv_timer_start(&c->timer, on_close_timeout, CLOSE_TIMEOUT_MS, 0);
    if (c->cb->offline)
      c->cb->offline(c);
    break;
  case BF_COMPONENT_CONNECTING:
    /* A resolution already running in the thread pool can't be cancelled
     * (UV_EBUSY): on_resolved then sees stopping. */
    if (c->resolving)
      (void)uv_cancel((uv_req_t *)&c->resolver);
    /* fall through */
  case BF_COMPONENT_OPENING:
  case BF_COMPONENT_HANDSHAKE:
  case BF_COMPONENT_IDLE:
  case BF_COMPONENT_CLOSING:
    c->state = BF_COMPONENT_CLOSING;
    if (c->tcp_open)
      close_tcp(c); /* on_tcp_closed goes on with close_handles */
    close_handles(c);
    break;
  case BF_COMPONENT_STOPPED:
    break;
  }
}

void bf__component_close(bf_component *c) {
  bf__xml_stream_free(c->parser);
  c->parser = NULL;
  free(c->read_buffer);
  c->read_buffer = NULL;
  free(c->stream_id);
  c->stream_id = NULL;
  free(c->last_error);
  c->last_error = NULL;
  bf__buf_close(&c->pending);
  bf__buf_close(&c->inflight);
}

int bf__component_handshake_digest(const char *stream_id, const char *secret,
                                   char out[41]) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA_CTX ctx;
  if (SHA1_Init(&ctx) != 1 ||
      SHA1_Update(&ctx, stream_id, strlen(stream_id)) != 1 ||
      SHA1_Update(&ctx, secret, strlen(secret)) != 1 ||
      SHA1_Final(md, &ctx) != 1)
    return BF_EIO;
  OPENSSL_cleanse(&ctx, sizeof ctx); /* it held the secret */
  /* XEP-0114 §3: lowercase hex; ejabberd compares exactly. */
  static const char hex[] = "0123456789abcdef";
  for (unsigned i = 0; i < SHA_DIGEST_LENGTH; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[40] = '\0';
  return 0;
}
