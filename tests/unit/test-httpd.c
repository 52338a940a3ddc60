/* The HTTP listener (/health, /metrics) on a loop with a hand-made daemon
 * of two gateways, fetched by a plain TCP client on the same loop: status
 * codes, content types, JSON fields, metric lines, refusals, keep-alive,
 * IPv6, a bind conflict, and a stop that leaves no handle behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <uv.h>

#include "babelfish/error.h"
#include "gateway.h"
#include "httpd.h"
#include "store.h"
#include "support.h"

/* ---- a plain HTTP client on the loop ------------------------------------- */

#define REPLY_MAX (1 << 20)

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  char *request;
  bool closed; /* the handle is closed (after EOF or an error) */
  int error;   /* a read/connect error other than EOF */
  char reply[REPLY_MAX];
  size_t len;
} client;

static void client_closed(uv_handle_t *h) {
  client *c = h->data;
  c->closed = true;
}

static void client_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)size;
  client *c = h->data;
  buf->base = c->reply + c->len;
  buf->len = REPLY_MAX - 1 - c->len;
}

static void client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  client *c = s->data;
  if (nread > 0) {
    c->len += (size_t)nread;
    c->reply[c->len] = '\0';
    assert_true(c->len < REPLY_MAX - 1);
  } else if (nread < 0) {
    if (nread != UV_EOF)
      c->error = (int)nread;
    uv_close((uv_handle_t *)s, client_closed);
  }
}

static void client_written(uv_write_t *req, int status) {
  client *c = req->handle->data;
  if (status < 0)
    c->error = status;
}

static void client_connected(uv_connect_t *req, int status) {
  client *c = req->handle->data;
  if (status < 0) {
    c->error = status;
    uv_close((uv_handle_t *)&c->tcp, client_closed);
    return;
  }
  uv_buf_t buf = uv_buf_init(c->request, (unsigned)strlen(c->request));
  assert_int_equal(
      uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, client_written), 0);
  assert_int_equal(
      uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read), 0);
}

/* Connects to addr:port and sends request; the reply accumulates until
 * the server closes. */
static client *client_start(uv_loop_t *loop, const char *addr, unsigned port,
                            const char *request) {
  client *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->request = strdup(request);
  struct sockaddr_storage sa;
  if (strchr(addr, ':'))
    assert_int_equal(uv_ip6_addr(addr, (int)port, (struct sockaddr_in6 *)&sa),
                     0);
  else
    assert_int_equal(uv_ip4_addr(addr, (int)port, (struct sockaddr_in *)&sa),
                     0);
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  assert_int_equal(uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&sa,
                                  client_connected),
                   0);
  return c;
}

static void client_free(client *c) {
  free(c->request);
  free(c);
}

static void on_tick(uv_timer_t *timer) { (void)timer; }

/* Runs the loop until the client is closed (5 s at most). */
static void client_wait(uv_loop_t *loop, client *c) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 10, 10);
  uint64_t deadline = uv_now(loop) + 5000;
  while (!c->closed && uv_now(loop) < deadline)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  assert_true(c->closed);
  assert_int_equal(c->error, 0);
}

typedef struct reply {
  int status;
  char headers[4096]; /* "Name: value\r\n"… */
  const char *body;   /* into the client's buffer */
  size_t body_len;
} reply;

/* Parses the response at text; returns where the next one starts. */
static const char *parse_reply(const char *text, reply *r) {
  memset(r, 0, sizeof *r);
  if (strncmp(text, "HTTP/1.1 ", 9) != 0)
    fail_msg("not an HTTP/1.1 response: \"%.200s\"", text);
  r->status = atoi(text + 9);
  const char *end = strstr(text, "\r\n\r\n");
  assert_non_null(end);
  const char *first = strstr(text, "\r\n") + 2;
  assert_true((size_t)(end + 2 - first) < sizeof r->headers);
  memcpy(r->headers, first, (size_t)(end + 2 - first));
  r->body = end + 4;
  const char *cl = strcasestr(r->headers, "Content-Length: ");
  assert_non_null(cl);
  r->body_len = strtoul(cl + 16, NULL, 10);
  return r->body + r->body_len;
}

/* The value of a header (static buffer), or NULL. */
static const char *header(const reply *r, const char *name) {
  static char value[512];
  char want[128];
  snprintf(want, sizeof want, "%s: ", name);
  const char *p = strcasestr(r->headers, want);
  if (!p)
    return NULL;
  p += strlen(want);
  size_t n = strcspn(p, "\r");
  assert_true(n < sizeof value);
  memcpy(value, p, n);
  value[n] = '\0';
  return value;
}

/* ---- the fixture: a daemon of two gateways, an open store ---------------- */

typedef struct fixture {
  uv_loop_t loop;
  bf_conf conf;
  bf_conf_gateway gwconf[2];
  bf_gateway *gws[2];
  bf_daemon daemon;
  char *dir;
  char *db;
  bf_httpd *httpd;
  unsigned port;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->dir = bf_test_tmpdir("httpd");
  f->db = malloc(strlen(f->dir) + 8);
  sprintf(f->db, "%s/bf.db", f->dir);
  char err[512];
  assert_int_equal(bf__store_open(&f->daemon.store, f->db, err, sizeof err), 0);

  f->gwconf[0] = (bf_conf_gateway){
      .section = "echo", .transport = "echo", .domain = "echo.localhost"};
  /* A transport name no real module has, to check label escaping. */
  f->gwconf[1] = (bf_conf_gateway){
      .section = "irc", .transport = "ir\"c\\x\ny", .domain = "irc.localhost"};
  f->conf.gateways = f->gwconf;
  f->conf.n_gateways = 2;
  for (int i = 0; i < 2; i++) {
    f->gws[i] = calloc(1, sizeof *f->gws[i]);
    assert_non_null(f->gws[i]);
    f->gws[i]->conf = &f->gwconf[i];
    f->gws[i]->daemon = &f->daemon;
  }
  bf_component *echo = &f->gws[0]->component;
  echo->state = BF_COMPONENT_ONLINE;
  echo->stanzas_in = 5;
  echo->stanzas_out = 7;
  echo->bytes_in = 1234;
  echo->bytes_out = 5678;
  echo->connects = 1;
  f->gws[0]->errors_sent = 2;
  f->gws[0]->oversize = 1;
  f->gws[1]->component.state = BF_COMPONENT_CONNECTING;
  f->gws[1]->component.connects = 3;
  int64_t id;
  assert_int_equal(bf__store_outbox_add(f->daemon.store, "irc.localhost",
                                        "<message/>", 10, &id),
                   0);
  assert_int_equal(bf__store_outbox_add(f->daemon.store, "irc.localhost",
                                        "<message/>", 10, &id),
                   0);

  f->daemon.loop = &f->loop;
  f->daemon.conf = &f->conf;
  f->daemon.gateways = f->gws;
  f->daemon.n_gateways = 2;
  f->daemon.started_ms = uv_now(&f->loop);
  assert_int_equal(
      bf__httpd_start(&f->httpd, &f->daemon, "127.0.0.1:0", err, sizeof err),
      0);
  f->port = bf__httpd_port(f->httpd);
  assert_true(f->port > 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  bf__httpd_stop(f->httpd);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  /* Every handle closed, none left behind (libuv's MAKE_VALGRIND_HAPPY). */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  bf__store_close(f->daemon.store);
  for (int i = 0; i < 2; i++)
    free(f->gws[i]);
  free(f->db);
  free(f->dir);
  free(f);
  return 0;
}

/* One request on its own connection; the reply is parsed into r and the
 * client (which holds the body) returned. */
static client *fetch(fixture *f, const char *method, const char *path,
                     const char *extra, reply *r) {
  char request[1024];
  snprintf(request, sizeof request,
           "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
           method, path, extra ? extra : "");
  client *c = client_start(&f->loop, "127.0.0.1", f->port, request);
  client_wait(&f->loop, c);
  const char *next = parse_reply(c->reply, r);
  /* Nothing else came (after a HEAD, not even the body). */
  if (!strcmp(method, "HEAD"))
    next = r->body;
  assert_int_equal(next - c->reply, (long)c->len);
  return c;
}

/* The body as JSON, checked to be an object. */
static json_t *json_body(const reply *r) {
  json_error_t error;
  json_t *j = json_loadb(r->body, r->body_len, 0, &error);
  if (!j)
    fail_msg("not JSON (%s): %.*s", error.text, (int)r->body_len, r->body);
  assert_true(json_is_object(j));
  return j;
}

static void assert_json_error(const reply *r, int status, const char *message) {
  assert_int_equal(r->status, status);
  assert_string_equal(header(r, "Content-Type"), "application/json");
  json_t *j = json_body(r);
  assert_string_equal(json_string_value(json_object_get(j, "error")), message);
  json_decref(j);
}

/* ---- /health ------------------------------------------------------------- */

static void test_health(void **state) {
  fixture *f = *state;
  reply r;
  /* One gateway is still connecting: degraded, 503. */
  client *c = fetch(f, "GET", "/health", NULL, &r);
  assert_int_equal(r.status, 503);
  assert_string_equal(header(&r, "Content-Type"), "application/json");
  assert_string_equal(header(&r, "Cache-Control"), "no-store");
  json_t *j = json_body(&r);
  assert_string_equal(json_string_value(json_object_get(j, "status")),
                      "degraded");
  json_t *gws = json_object_get(j, "gateways");
  assert_int_equal(json_object_size(gws), 2);
  json_t *echo = json_object_get(gws, "echo");
  assert_string_equal(json_string_value(json_object_get(echo, "domain")),
                      "echo.localhost");
  assert_true(json_is_true(json_object_get(echo, "connected")));
  assert_int_equal(json_integer_value(json_object_get(echo, "outbox")), 0);
  json_t *irc = json_object_get(gws, "irc");
  assert_string_equal(json_string_value(json_object_get(irc, "domain")),
                      "irc.localhost");
  assert_true(json_is_false(json_object_get(irc, "connected")));
  assert_int_equal(json_integer_value(json_object_get(irc, "outbox")), 2);
  json_decref(j);
  client_free(c);

  /* Both online: ok, 200; the exact document. */
  f->gws[1]->component.state = BF_COMPONENT_ONLINE;
  c = fetch(f, "GET", "/health", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, strlen("{\"status\":\"ok\",\"gateways\":{"
                                      "\"echo\":{\"domain\":\"echo.localhost\","
                                      "\"connected\":true,\"outbox\":0},"
                                      "\"irc\":{\"domain\":\"irc.localhost\","
                                      "\"connected\":true,\"outbox\":2}}}"));
  assert_memory_equal(
      r.body,
      "{\"status\":\"ok\",\"gateways\":{\"echo\":{\"domain\":\"echo."
      "localhost\","
      "\"connected\":true,\"outbox\":0},\"irc\":{\"domain\":\"irc.localhost\","
      "\"connected\":true,\"outbox\":2}}}",
      r.body_len);
  client_free(c);

  /* HEAD: the same status and headers, no body. */
  c = fetch(f, "HEAD", "/health", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(header(&r, "Content-Type"), "application/json");
  assert_true(r.body_len > 0); /* Content-Length of the GET, no body */
  client_free(c);
}

/* ---- /metrics ------------------------------------------------------------ */

static void assert_line(const char *text, const char *line) {
  char want[512];
  snprintf(want, sizeof want, "\n%s\n", line);
  if (!strstr(text, want))
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void test_metrics(void **state) {
  fixture *f = *state;
  reply r;
  client *c = fetch(f, "GET", "/metrics", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(header(&r, "Content-Type"),
                      "text/plain; version=0.0.4; charset=utf-8");
  char *text = malloc(r.body_len + 2);
  text[0] = '\n'; /* so the first line matches "\n…\n" too */
  memcpy(text + 1, r.body, r.body_len);
  text[r.body_len + 1] = '\0';
  assert_true(r.body_len > 0 && r.body[r.body_len - 1] == '\n');

  assert_line(text, "# TYPE babelfish_build_info gauge");
  assert_line(text, "babelfish_build_info{version=\"" BF_VERSION "\"} 1");
  assert_line(text, "# TYPE babelfish_uptime_seconds gauge");
  assert_non_null(strstr(text, "\nbabelfish_uptime_seconds "));
  assert_line(text, "# HELP babelfish_gateway_connected 1 if the gateway's "
                    "component session is online.");
  assert_line(text, "babelfish_gateway_connected{gateway=\"echo\","
                    "domain=\"echo.localhost\",transport=\"echo\"} 1");
  /* \ " and line feed escaped in label values. */
  assert_line(text,
              "babelfish_gateway_connected{gateway=\"irc\","
              "domain=\"irc.localhost\",transport=\"ir\\\"c\\\\x\\ny\"} 0");
  assert_line(text, "# TYPE babelfish_stanzas_received_total counter");
  assert_line(text, "babelfish_stanzas_received_total{gateway=\"echo\"} 5");
  assert_line(text, "babelfish_stanzas_received_total{gateway=\"irc\"} 0");
  assert_line(text, "# TYPE babelfish_stanzas_sent_total counter");
  assert_line(text, "babelfish_stanzas_sent_total{gateway=\"echo\"} 7");
  assert_line(text, "babelfish_bytes_received_total{gateway=\"echo\"} 1234");
  assert_line(text, "babelfish_bytes_sent_total{gateway=\"echo\"} 5678");
  assert_line(text, "babelfish_connects_total{gateway=\"echo\"} 1");
  assert_line(text, "babelfish_connects_total{gateway=\"irc\"} 3");
  assert_line(text, "babelfish_stanza_errors_sent_total{gateway=\"echo\"} 2");
  assert_line(text, "babelfish_oversize_stanzas_total{gateway=\"echo\"} 1");
  assert_line(text, "# TYPE babelfish_outbox_stanzas gauge");
  assert_line(text, "babelfish_outbox_stanzas{gateway=\"echo\"} 0");
  assert_line(text, "babelfish_outbox_stanzas{gateway=\"irc\"} 2");
  assert_line(text, "# TYPE babelfish_write_queue_bytes gauge");
  assert_line(text, "babelfish_write_queue_bytes{gateway=\"irc\"} 0");
  /* Every line is a comment or "name{labels} value", and HELP/TYPE come
   * before the family's samples. */
  unsigned samples = 0;
  for (char *line = text + 1; *line;) {
    char *eol = strchr(line, '\n');
    assert_non_null(eol);
    *eol = '\0';
    if (line[0] != '#') {
      assert_int_equal(strncmp(line, "babelfish_", 10), 0);
      assert_non_null(strrchr(line, ' '));
      samples++;
    }
    line = eol + 1;
  }
  assert_int_equal(samples, 1 + 1 + 2 + 9 * 2);
  free(text);
  client_free(c);

  /* Counters move between scrapes. */
  f->gws[0]->component.stanzas_in = 6;
  c = fetch(f, "GET", "/metrics", NULL, &r);
  assert_non_null(
      memmem(r.body, r.body_len,
             "\nbabelfish_stanzas_received_total{gateway=\"echo\"} 6\n", 51));
  client_free(c);
}

/* ---- refusals ------------------------------------------------------------ */

static void test_refusals(void **state) {
  fixture *f = *state;
  reply r;
  client *c = fetch(f, "GET", "/nope", NULL, &r);
  assert_json_error(
      &r, 404, "not found; this server answers GET /health and GET /metrics");
  client_free(c);

  c = fetch(f, "POST", "/metrics", "Content-Length: 0\r\n", &r);
  assert_json_error(&r, 405, "method not allowed; use GET or HEAD");
  assert_string_equal(header(&r, "Allow"), "GET, HEAD");
  client_free(c);

  c = fetch(f, "DELETE", "/health", NULL, &r);
  assert_json_error(&r, 405, "method not allowed; use GET or HEAD");
  client_free(c);

  c = fetch(f, "GET", "/hooks/x", NULL, &r);
  assert_json_error(&r, 404, "no webhook gateway is configured");
  client_free(c);

  c = fetch(f, "POST", "/hooks/deploy?token=t",
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            &r);
  assert_json_error(&r, 404, "no webhook gateway is configured");
  client_free(c);

  /* A body on GET is refused before it is read. */
  c = fetch(f, "GET", "/health", "Content-Length: 5\r\n\r\nhello", &r);
  assert_json_error(&r, 413, "request bodies are not accepted here");
  client_free(c);

  c = fetch(f, "GET", "/metrics",
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", &r);
  assert_json_error(&r, 413, "request bodies are not accepted here");
  client_free(c);
}

/* ---- keep-alive: two pipelined requests in one write --------------------- */

static void test_keep_alive(void **state) {
  fixture *f = *state;
  client *c = client_start(&f->loop, "127.0.0.1", f->port,
                           "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                           "Connection: close\r\n\r\n");
  client_wait(&f->loop, c);
  reply r;
  const char *next = parse_reply(c->reply, &r);
  assert_int_equal(r.status, 503);
  assert_null(header(&r, "Connection")); /* kept alive */
  next = parse_reply(next, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(header(&r, "Content-Type"),
                      "text/plain; version=0.0.4; charset=utf-8");
  assert_int_equal(next - c->reply, (long)c->len);
  client_free(c);
}

/* ---- stop with a connection open: it is closed, no handle is left -------- */

static void test_stop_with_open_connection(void **state) {
  fixture *f = *state;
  /* Half a request: the server waits for the rest. */
  client *c = client_start(&f->loop, "127.0.0.1", f->port, "GET /health HTT");
  for (int i = 0; i < 20; i++)
    uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_false(c->closed);
  bf__httpd_stop(f->httpd);
  f->httpd = NULL;
  client_wait(&f->loop, c); /* EOF: the server closed it */
  assert_int_equal(c->len, 0);
  client_free(c);
}

/* ---- IPv6 and start-up errors -------------------------------------------- */

static void test_ipv6(void **state) {
  fixture *f = *state;
  char err[512];
  bf_httpd *h6;
  assert_int_equal(bf__httpd_start(&h6, &f->daemon, "[::1]:0", err, sizeof err),
                   0);
  char request[] =
      "GET /metrics HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n";
  client *c = client_start(&f->loop, "::1", bf__httpd_port(h6), request);
  client_wait(&f->loop, c);
  reply r;
  parse_reply(c->reply, &r);
  assert_int_equal(r.status, 200);
  client_free(c);
  bf__httpd_stop(h6);
}

static void test_start_errors(void **state) {
  fixture *f = *state;
  char err[512];
  char addr[64];
  bf_httpd *h = (bf_httpd *)1;
  /* The port the fixture listens on is taken. */
  snprintf(addr, sizeof addr, "127.0.0.1:%u", f->port);
  assert_int_equal(bf__httpd_start(&h, &f->daemon, addr, err, sizeof err),
                   BF_EIO);
  assert_null(h);
  char want[128];
  snprintf(want, sizeof want, "http: cannot listen on %s: ", addr);
  if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, "in use"))
    fail_msg("unexpected error: %s", err);

  assert_int_equal(
      bf__httpd_start(&h, &f->daemon, "127.0.0.1", err, sizeof err), BF_EINVAL);
  assert_non_null(strstr(err, "is not a listening address"));
  assert_int_equal(bf__httpd_start(&h, &f->daemon, "[::1:80", err, sizeof err),
                   BF_EINVAL);
  assert_int_equal(
      bf__httpd_start(&h, &f->daemon, "127.0.0.1:70000", err, sizeof err),
      BF_EINVAL);
  assert_null(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_health, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stop_with_open_connection, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
      cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
