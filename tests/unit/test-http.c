/* Unit tests for src/http.c against a tiny HTTP/1.1 server running on the
 * same libuv loop (127.0.0.1, ephemeral port). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "babelfish/error.h"
#include "buf.h"
#include "http.h"
#include "util.h"

#define BIG_SIZE (2 * 1024 * 1024)
#define GUARD_MS 10000

/* ---- the test server ----------------------------------------------------- */

typedef struct server server;

typedef struct conn {
  uv_tcp_t tcp;
  server *srv;
  bf_buf in;
  bool closing;
  struct conn *prev, *next;
} conn;

struct server {
  uv_tcp_t tcp;
  int port;
  unsigned accepted;
  unsigned slow;                /* /slow requests received, never answered */
  conn *conns;
};

typedef struct write_req {
  uv_write_t req;
  char *data;
  bool close_after;
} write_req;

static void on_conn_close(uv_handle_t *handle) {
  conn *c = bf_container_of((uv_tcp_t *)handle, conn, tcp);
  bf__buf_close(&c->in);
  free(c);
}

static void conn_close(conn *c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->prev)
    c->prev->next = c->next;
  else
    c->srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void on_write(uv_write_t *req, int status) {
  write_req *w = bf_container_of(req, write_req, req);
  conn *c = bf_container_of((uv_tcp_t *)req->handle, conn, tcp);
  /* Errors are expected: the client aborts big responses. */
  if (status < 0 || w->close_after)
    conn_close(c);
  free(w->data);
  free(w);
}

/* data: taken. */
static void conn_send(conn *c, char *data, size_t len, bool close_after) {
  write_req *w = calloc(1, sizeof *w);
  assert_non_null(w);
  w->data = data;
  w->close_after = close_after;
  uv_buf_t buf = uv_buf_init(data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
    free(data);
    free(w);
    conn_close(c);
  }
}

static void respond(conn *c, int status, const char *body, size_t len,
                    bool head_only) {
  char *out = malloc(len + 256);
  assert_non_null(out);
  int n = snprintf(out, 256, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\n\r\n",
                   status, status == 200 ? "OK" : "Not Found", len);
  if (!head_only)
    memcpy(out + n, body, len);
  conn_send(c, out, (size_t)n + (head_only ? 0 : len), false);
}

/* Copies the value of header name from the request head into out ("" if
 * absent). */
static void header_value(const char *head, size_t head_len, const char *name,
                         char *out, size_t out_size) {
  size_t name_len = strlen(name);
  const char *end = head + head_len;
  const char *line = memchr(head, '\n', head_len);
  out[0] = '\0';
  while (line && ++line < end) {
    const char *eol = memchr(line, '\r', (size_t)(end - line));
    if (!eol)
      break;
    if ((size_t)(eol - line) > name_len && line[name_len] == ':' &&
        !strncasecmp(line, name, name_len)) {
      const char *v = line + name_len + 1;
      while (v < eol && *v == ' ')
        v++;
      snprintf(out, out_size, "%.*s", (int)(eol - v), v);
      return;
    }
    line = memchr(eol, '\n', (size_t)(end - eol));
  }
}

static void route(conn *c, const char *method, const char *path,
                  const char *head, size_t head_len, const char *body,
                  size_t body_len) {
  bool head_only = !strcmp(method, "HEAD");
  if (!strcmp(path, "/hello")) {
    respond(c, 200, "hello world", 11, head_only);
  } else if (!strcmp(path, "/echo")) {
    char test[128], agent[128], expect[128];
    header_value(head, head_len, "X-Test", test, sizeof test);
    header_value(head, head_len, "User-Agent", agent, sizeof agent);
    header_value(head, head_len, "Expect", expect, sizeof expect);
    bf_buf out;
    bf__buf_init(&out, 0);
    char line[512];
    snprintf(line, sizeof line, "%s\n%s\n%s\n%s\n", method, test, agent,
             expect);
    assert_int_equal(bf__buf_append_str(&out, line), 0);
    assert_int_equal(bf__buf_append(&out, body, body_len), 0);
    respond(c, 200, out.data, out.len, head_only);
    bf__buf_close(&out);
  } else if (!strcmp(path, "/slow")) {
    c->srv->slow++;
  } else if (!strcmp(path, "/big") || !strcmp(path, "/stream")) {
    /* /big announces its size; /stream does not, so only the write
     * callback's cap can stop it. */
    bool announce = !strcmp(path, "/big");
    char *out = malloc(BIG_SIZE + 256);
    assert_non_null(out);
    int n = announce
                ? snprintf(out, 256, "HTTP/1.1 200 OK\r\nContent-Length: %d"
                                     "\r\n\r\n", BIG_SIZE)
                : snprintf(out, 256, "HTTP/1.1 200 OK\r\nConnection: close"
                                     "\r\n\r\n");
    memset(out + n, 'x', BIG_SIZE);
    conn_send(c, out, (size_t)n + BIG_SIZE, !announce);
  } else {
    respond(c, 404, "not found", 9, head_only);
  }
}

/* Serves every complete request in c->in (HTTP/1.1 keep-alive). */
static void conn_process(conn *c) {
  while (!c->closing && c->in.len) {
    char *data = c->in.data;
    char *end = memmem(data, c->in.len, "\r\n\r\n", 4);
    if (!end)
      return;
    size_t head_len = (size_t)(end - data) + 4;
    char length[32];
    header_value(data, head_len, "Content-Length", length, sizeof length);
    size_t body_len = (size_t)strtoul(length, NULL, 10);
    if (c->in.len < head_len + body_len)
      return;
    char method[16], path[256];
    assert_int_equal(sscanf(data, "%15s %255s", method, path), 2);
    route(c, method, path, data, head_len, data + head_len, body_len);
    bf__buf_consume(&c->in, head_len + body_len);
  }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  buf->base = malloc(65536);
  buf->len = buf->base ? 65536 : 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn *c = bf_container_of((uv_tcp_t *)stream, conn, tcp);
  if (nread < 0) {
    conn_close(c);
  } else if (nread > 0) {
    assert_int_equal(bf__buf_append(&c->in, buf->base, (size_t)nread), 0);
    conn_process(c);
  }
  free(buf->base);
}

static void on_connection(uv_stream_t *listener, int status) {
  assert_int_equal(status, 0);
  server *srv = bf_container_of((uv_tcp_t *)listener, server, tcp);
  conn *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->srv = srv;
  bf__buf_init(&c->in, 8 * 1024 * 1024);
  assert_int_equal(uv_tcp_init(listener->loop, &c->tcp), 0);
  c->next = srv->conns;
  if (c->next)
    c->next->prev = c;
  srv->conns = c;
  assert_int_equal(uv_accept(listener, (uv_stream_t *)&c->tcp), 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read), 0);
  srv->accepted++;
}

static void server_start(uv_loop_t *loop, server *srv) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  assert_int_equal(uv_tcp_init(loop, &srv->tcp), 0);
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
  assert_int_equal(
      uv_tcp_bind(&srv->tcp, (const struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&srv->tcp, 128, on_connection), 0);
  assert_int_equal(
      uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&bound, &len), 0);
  srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void server_close(server *srv) {
  uv_close((uv_handle_t *)&srv->tcp, NULL);
  while (srv->conns)
    conn_close(srv->conns);
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
  uv_loop_t loop;
  server srv;
  bf_http *http;
  uv_timer_t guard;
  bool guard_fired;
  unsigned done;                /* callbacks run, all requests together */
} fx;

typedef struct result result;
struct result {
  fx *f;
  unsigned calls;
  int rc;
  long status;
  bf_buf body;
  char error[256];
  bool has_error;
  uint64_t id;
  void (*then)(result *r);      /* runs inside the done callback */
  result *other;
  int then_rc;
};

static void on_guard(uv_timer_t *timer) {
  fx *f = bf_container_of(timer, fx, guard);
  f->guard_fired = true;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  server_start(&f->loop, &f->srv);
  assert_int_equal(bf__http_new(&f->http, &f->loop), 0);
  assert_non_null(f->http);
  assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
  assert_int_equal(uv_timer_start(&f->guard, on_guard, GUARD_MS, 0), 0);
  *state = f;
  return 0;
}

static void count_handle(uv_handle_t *handle, void *arg) {
  fprintf(stderr, "handle left open: %s\n", uv_handle_type_name(handle->type));
  ++*(unsigned *)arg;
}

/* libuv's MAKE_VALGRIND_HAPPY: close everything, run the loop dry, check
 * that no handle is left and the loop closes. */
static int teardown(void **state) {
  fx *f = *state;
  bf__http_free(f->http);
  server_close(&f->srv);
  uv_close((uv_handle_t *)&f->guard, NULL);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  unsigned left = 0;
  uv_walk(&f->loop, count_handle, &left);
  assert_int_equal(left, 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static void run_until(fx *f, const unsigned *counter, unsigned target) {
  while (*counter < target) {
    if (f->guard_fired)
      fail_msg("timed out waiting for %u events (got %u)", target, *counter);
    uv_run(&f->loop, UV_RUN_ONCE);
  }
}

static void on_done(void *data, const bf_http_response *res) {
  result *r = data;
  r->calls++;
  r->f->done++;
  r->rc = res->rc;
  r->status = res->status;
  assert_non_null(res->body);
  assert_int_equal(res->body[res->body_len], '\0');
  bf__buf_reset(&r->body);
  assert_int_equal(bf__buf_append(&r->body, res->body, res->body_len), 0);
  r->has_error = res->error != NULL;
  if (res->error)
    snprintf(r->error, sizeof r->error, "%s", res->error);
  if (res->rc)
    assert_true(r->has_error && r->error[0]);
  else
    assert_false(r->has_error);
  if (r->then)
    r->then(r);
}

static void result_init(result *r, fx *f) {
  memset(r, 0, sizeof *r);
  r->f = f;
  bf__buf_init(&r->body, 0);
}

static void result_close(result *r) {
  bf__buf_close(&r->body);
}

static void make_url(fx *f, char *url, size_t size, const char *path) {
  snprintf(url, size, "http://127.0.0.1:%d%s", f->srv.port, path);
}

/* Starts method path with body; fails the test if it is refused. */
static void start(fx *f, result *r, const char *method, const char *path,
                  const char *body, size_t body_len, uint64_t timeout_ms,
                  size_t max_response) {
  char url[128];
  make_url(f, url, sizeof url, path);
  bf_http_request req = {
      .method = method,
      .url = url,
      .body = body,
      .body_len = body_len,
      .timeout_ms = timeout_ms,
      .max_response = max_response,
  };
  int rc = bf__http_request(f->http, &req, on_done, r, &r->id);
  if (rc)
    fail_msg("request %s refused: %s", path, bf_strerror(rc));
  assert_true(r->id != 0);
}

static void assert_body(const result *r, const char *expected) {
  assert_int_equal(r->body.len, strlen(expected));
  assert_memory_equal(r->body.data, expected, r->body.len);
}

/* ---- tests --------------------------------------------------------------- */

static void test_idle(void **state) {
  fx *f = *state;
  /* Nothing started: teardown checks the timer closes with no curl state. */
  assert_int_equal(bf__http_active(f->http), 0);
  bf__http_cancel(f->http, 1);
  bf__http_free(NULL);
}

static void test_get(void **state) {
  fx *f = *state;
  result a, b, h;
  result_init(&a, f);
  result_init(&b, f);
  result_init(&h, f);
  start(f, &a, NULL, "/hello", NULL, 0, 0, 0);
  assert_int_equal(bf__http_active(f->http), 1);
  run_until(f, &f->done, 1);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, 0);
  assert_int_equal(a.status, 200);
  assert_body(&a, "hello world");
  assert_int_equal(bf__http_active(f->http), 0);

  /* Sequential requests reuse the kept-alive connection (and its poll). */
  start(f, &b, "GET", "/hello", NULL, 0, 0, 0);
  run_until(f, &f->done, 2);
  assert_int_equal(b.rc, 0);
  assert_body(&b, "hello world");
  assert_true(b.id != a.id);

  start(f, &h, "HEAD", "/hello", NULL, 0, 0, 0);
  run_until(f, &f->done, 3);
  assert_int_equal(h.rc, 0);
  assert_int_equal(h.status, 200);
  assert_int_equal(h.body.len, 0);
  assert_int_equal(f->srv.accepted, 1);
  result_close(&a);
  result_close(&b);
  result_close(&h);
}

static void test_echo(void **state) {
  fx *f = *state;
  char url[128];
  make_url(f, url, sizeof url, "/echo");
  const char *const headers[] = {"X-Test: abc", NULL};
  bf_http_request req = {
      .method = "PUT", .url = url, .headers = headers,
      .body = "payload", .body_len = 7,
  };
  result put, post, get;
  result_init(&put, f);
  result_init(&post, f);
  result_init(&get, f);
  assert_int_equal(bf__http_request(f->http, &req, on_done, &put, &put.id), 0);
  /* The request and its strings are copied. */
  memset(url, 0, sizeof url);
  run_until(f, &f->done, 1);
  assert_int_equal(put.rc, 0);
  assert_int_equal(put.status, 200);
  /* method, X-Test, User-Agent, Expect (suppressed), body */
  assert_body(&put, "PUT\nabc\nbabelfish/" BF_VERSION "\n\npayload");

  start(f, &post, NULL, "/echo", "x=1", 3, 0, 0);
  start(f, &get, NULL, "/echo", NULL, 0, 0, 0);
  run_until(f, &f->done, 3);
  assert_body(&post, "POST\n\nbabelfish/" BF_VERSION "\n\nx=1");
  assert_body(&get, "GET\n\nbabelfish/" BF_VERSION "\n\n");
  result_close(&put);
  result_close(&post);
  result_close(&get);
}

static void test_not_found(void **state) {
  fx *f = *state;
  result r;
  result_init(&r, f);
  start(f, &r, NULL, "/nothing-here", NULL, 0, 0, 0);
  run_until(f, &f->done, 1);
  /* An HTTP error status is the peer's answer, not a failure. */
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 404);
  assert_body(&r, "not found");
  result_close(&r);
}

static void test_timeout(void **state) {
  fx *f = *state;
  result r;
  result_init(&r, f);
  uint64_t t0 = uv_hrtime();
  start(f, &r, NULL, "/slow", NULL, 0, 300, 0);
  run_until(f, &f->done, 1);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, BF_ETIMEDOUT);
  assert_int_equal(r.status, 0);
  assert_true(ms >= 250);
  assert_true(ms < 1000);
  assert_int_equal(f->srv.slow, 1);
  result_close(&r);
}

static void test_too_big(void **state) {
  fx *f = *state;
  result big, stream, deflt;
  result_init(&big, f);
  result_init(&stream, f);
  result_init(&deflt, f);
  start(f, &big, NULL, "/big", NULL, 0, 0, 64 * 1024);
  start(f, &stream, NULL, "/stream", NULL, 0, 0, 64 * 1024);
  start(f, &deflt, NULL, "/stream", NULL, 0, 0, 0);
  run_until(f, &f->done, 3);
  assert_int_equal(big.rc, BF_E2BIG);
  assert_string_equal(big.error, "response larger than 65536 bytes");
  assert_int_equal(stream.rc, BF_E2BIG);
  assert_string_equal(stream.error, "response larger than 65536 bytes");
  assert_true(stream.body.len <= 64 * 1024);
  assert_int_equal(deflt.rc, BF_E2BIG);
  assert_string_equal(deflt.error, "response larger than 1048576 bytes");
  result_close(&big);
  result_close(&stream);
  result_close(&deflt);
}

static void test_refused(void **state) {
  fx *f = *state;
  /* A port nobody listens on: bind one, note it, close it. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in addr = {.sin_family = AF_INET};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  assert_int_equal(bind(fd, (struct sockaddr *)&addr, len), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
  close(fd);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/hook?token=s3cr3t",
           ntohs(addr.sin_port));
  bf_http_request req = {.url = url};
  result r;
  result_init(&r, f);
  assert_int_equal(bf__http_request(f->http, &req, on_done, &r, &r.id), 0);
  run_until(f, &f->done, 1);
  assert_int_equal(r.rc, BF_EIO);
  assert_int_equal(r.status, 0);
  assert_true(strlen(r.error) > 0);
  /* URLs may carry tokens: the error must not repeat them. */
  assert_null(strstr(r.error, "s3cr3t"));
  assert_null(strstr(r.error, "/hook"));
  result_close(&r);
}

static void test_nul_body(void **state) {
  fx *f = *state;
  static const char body[] = {'a', '\0', 'b', '\0', '\0', 'c', '\xff', '\0'};
  result r;
  result_init(&r, f);
  start(f, &r, "POST", "/echo", body, sizeof body, 0, 0);
  run_until(f, &f->done, 1);
  assert_int_equal(r.rc, 0);
  const char prefix[] = "POST\n\nbabelfish/" BF_VERSION "\n\n";
  size_t plen = sizeof prefix - 1;
  assert_int_equal(r.body.len, plen + sizeof body);
  assert_memory_equal(r.body.data, prefix, plen);
  assert_memory_equal(r.body.data + plen, body, sizeof body);
  result_close(&r);
}

static void test_concurrent(void **state) {
  fx *f = *state;
  enum { N = 50 };
  result r[N];
  char bodies[N][32];
  for (int i = 0; i < N; i++) {
    result_init(&r[i], f);
    int n = snprintf(bodies[i], sizeof bodies[i], "request %d", i);
    start(f, &r[i], NULL, "/echo", bodies[i], (size_t)n, 0, 0);
  }
  assert_int_equal(bf__http_active(f->http), N);
  run_until(f, &f->done, N);
  assert_int_equal(bf__http_active(f->http), 0);
  for (int i = 0; i < N; i++) {
    char expected[128];
    snprintf(expected, sizeof expected, "POST\n\nbabelfish/%s\n\n%.31s",
             BF_VERSION, bodies[i]);
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].rc, 0);
    assert_body(&r[i], expected);
    result_close(&r[i]);
  }
}

static void test_cancel(void **state) {
  fx *f = *state;
  result slow, early, after;
  result_init(&slow, f);
  result_init(&early, f);
  result_init(&after, f);

  /* Cancelled before the loop ever ran it. */
  start(f, &early, NULL, "/hello", NULL, 0, 0, 0);
  bf__http_cancel(f->http, early.id);
  assert_int_equal(early.calls, 1);
  assert_int_equal(early.rc, BF_ECANCELED);

  /* Cancelled mid-flight, with its connection open. */
  start(f, &slow, NULL, "/slow", NULL, 0, 0, 0);
  run_until(f, &f->srv.slow, 1);
  assert_int_equal(bf__http_active(f->http), 1);
  bf__http_cancel(f->http, slow.id);
  assert_int_equal(slow.calls, 1);
  assert_int_equal(slow.rc, BF_ECANCELED);
  assert_int_equal(slow.status, 0);
  assert_int_equal(bf__http_active(f->http), 0);
  bf__http_cancel(f->http, slow.id); /* already gone: ignored */
  bf__http_cancel(f->http, 12345);

  /* The loop keeps working, and no late callback comes. */
  start(f, &after, NULL, "/hello", NULL, 0, 0, 0);
  run_until(f, &after.calls, 1);
  assert_int_equal(after.rc, 0);
  assert_int_equal(early.calls, 1);
  assert_int_equal(slow.calls, 1);
  result_close(&slow);
  result_close(&early);
  result_close(&after);
}

static void test_refused_schemes(void **state) {
  fx *f = *state;
  char url[128];
  snprintf(url, sizeof url, "localhost:%d/hello", f->srv.port);
  const char *const bad_urls[] = {
      "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/",
      "dict://127.0.0.1/", url, "", "http://exa mple/",
  };
  result r;
  result_init(&r, f);
  for (size_t i = 0; i < BF_ARRAY_SIZE(bad_urls); i++) {
    bf_http_request req = {.url = bad_urls[i]};
    uint64_t id = 0;
    assert_int_equal(bf__http_request(f->http, &req, on_done, &r, &id),
                     BF_EINVAL);
  }

  /* Malformed requests are refused the same way. */
  char ok_url[128];
  make_url(f, ok_url, sizeof ok_url, "/echo");
  const char *const smuggle[] = {"X-Test: a\r\nX-Admin: yes", NULL};
  const char *const no_colon[] = {"X-Test", NULL};
  const bf_http_request bad[] = {
      {.url = ok_url, .headers = smuggle},
      {.url = ok_url, .headers = no_colon},
      {.url = ok_url, .method = "GET /x HTTP/1.1\r\n"},
      {.url = ok_url, .method = ""},
      {.url = ok_url, .body = NULL, .body_len = 3},
      {.url = ok_url, .method = "HEAD", .body = "x", .body_len = 1},
      {.url = "smtp://127.0.0.1/", .body = "mail", .body_len = 4},
      {.url = NULL},
  };
  for (size_t i = 0; i < BF_ARRAY_SIZE(bad); i++) {
    uint64_t id = 0;
    assert_int_equal(bf__http_request(f->http, &bad[i], on_done, &r, &id),
                     BF_EINVAL);
  }
  bf_http_request good = {.url = ok_url};
  assert_int_equal(bf__http_request(f->http, &good, NULL, &r, NULL),
                   BF_EINVAL);
  assert_int_equal(bf__http_request(f->http, NULL, on_done, &r, NULL),
                   BF_EINVAL);

  /* Upper-case schemes are still http. */
  snprintf(url, sizeof url, "HTTP://127.0.0.1:%d/hello", f->srv.port);
  bf_http_request upper = {.url = url};
  assert_int_equal(bf__http_request(f->http, &upper, on_done, &r, &r.id), 0);
  run_until(f, &f->done, 1);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, 0);
  result_close(&r);
}

static void start_other(result *r) {
  start(r->f, r->other, "POST", "/echo", "second", 6, 0, 0);
}

static void test_request_from_callback(void **state) {
  fx *f = *state;
  result first, second, third;
  result_init(&first, f);
  result_init(&second, f);
  result_init(&third, f);
  first.then = start_other;
  first.other = &second;
  second.then = start_other;
  second.other = &third;
  start(f, &first, NULL, "/hello", NULL, 0, 0, 0);
  run_until(f, &f->done, 3);
  assert_int_equal(first.rc, 0);
  assert_int_equal(second.rc, 0);
  assert_int_equal(third.rc, 0);
  assert_body(&third, "POST\n\nbabelfish/" BF_VERSION "\n\nsecond");
  assert_int_equal(bf__http_active(f->http), 0);
  result_close(&first);
  result_close(&second);
  result_close(&third);
}

static void cancel_other(result *r) {
  bf__http_cancel(r->f->http, r->other->id);
}

static void test_cancel_from_callback(void **state) {
  fx *f = *state;
  /* Two transfers time out on the same timer tick, so the second one's
   * completion is already queued in libcurl when the first callback
   * cancels it: it must be reported once, as cancelled. */
  result a, b;
  result_init(&a, f);
  result_init(&b, f);
  a.then = b.then = cancel_other;
  a.other = &b;
  b.other = &a;
  start(f, &a, NULL, "/slow", NULL, 0, 300, 0);
  start(f, &b, NULL, "/slow", NULL, 0, 300, 0);
  run_until(f, &f->done, 2);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  assert_true((a.rc == BF_ETIMEDOUT && b.rc == BF_ECANCELED) ||
              (a.rc == BF_ECANCELED && b.rc == BF_ETIMEDOUT));

  /* A finished transfer cancels one in flight. */
  result hello, slow;
  result_init(&hello, f);
  result_init(&slow, f);
  start(f, &slow, NULL, "/slow", NULL, 0, 0, 0);
  run_until(f, &f->srv.slow, 3);
  hello.then = cancel_other;
  hello.other = &slow;
  start(f, &hello, NULL, "/hello", NULL, 0, 0, 0);
  run_until(f, &f->done, 4);
  assert_int_equal(hello.rc, 0);
  assert_int_equal(slow.calls, 1);
  assert_int_equal(slow.rc, BF_ECANCELED);
  assert_int_equal(bf__http_active(f->http), 0);
  result_close(&a);
  result_close(&b);
  result_close(&hello);
  result_close(&slow);
}

static void try_request(result *r) {
  char url[128];
  make_url(r->f, url, sizeof url, "/hello");
  bf_http_request req = {.url = url};
  uint64_t id = 0;
  r->then_rc = bf__http_request(r->f->http, &req, on_done, r, &id);
}

static void test_free_in_flight(void **state) {
  fx *f = *state;
  enum { N = 3 };
  result r[N];
  for (int i = 0; i < N; i++) {
    result_init(&r[i], f);
    r[i].then = try_request;
    start(f, &r[i], NULL, "/slow", NULL, 0, 0, 0);
  }
  run_until(f, &f->srv.slow, N);
  bf__http_free(f->http);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].rc, BF_ECANCELED);
    /* A callback cannot start a transfer while the facility closes. */
    assert_int_equal(r[i].then_rc, BF_ECANCELED);
    result_close(&r[i]);
  }
  /* The memory goes once teardown runs the loop; it checks no handle is
   * left. */
  f->http = NULL;
}

static void free_http(result *r) {
  bf__http_free(r->f->http);
  r->f->http = NULL;
}

static void test_free_from_callback(void **state) {
  fx *f = *state;
  result hello, slow;
  result_init(&hello, f);
  result_init(&slow, f);
  start(f, &slow, NULL, "/slow", NULL, 0, 0, 0);
  run_until(f, &f->srv.slow, 1);
  hello.then = free_http;
  start(f, &hello, NULL, "/hello", NULL, 0, 0, 0);
  run_until(f, &hello.calls, 1);
  assert_int_equal(hello.rc, 0);
  assert_int_equal(slow.calls, 1);
  assert_int_equal(slow.rc, BF_ECANCELED);
  assert_null(f->http);
  result_close(&hello);
  result_close(&slow);
}

int main(void) {
  /* The server writes to clients that hang up on purpose. */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_idle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nul_body, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_schemes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_from_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_cancel_from_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_from_callback, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
