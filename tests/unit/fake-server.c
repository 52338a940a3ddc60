#include "fake-server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "component.h"
#include "util.h"

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req->data);
  free(req);
}

void bf_test_server_send(bf_test_server *s, const char *text) {
  if (!s->client_open)
    return;
  char *copy = strdup(text);
  uv_write_t *req = malloc(sizeof *req);
  assert_non_null(copy);
  assert_non_null(req);
  uv_buf_t buf = uv_buf_init(copy, (unsigned)strlen(text));
  req->data = copy;
  assert_int_equal(uv_write(req, (uv_stream_t *)&s->client, &buf, 1, on_written), 0);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(size);
  buf->len = buf->base ? size : 0;
}

static void on_client_closed(uv_handle_t *h) {
  bf_test_server *s = bf_container_of((uv_tcp_t *)h, bf_test_server, client);
  s->client_open = false;
}

void bf_test_server_drop(bf_test_server *s) {
  s->handshaken = false;
  if (s->client_open && !uv_is_closing((uv_handle_t *)&s->client))
    uv_close((uv_handle_t *)&s->client, on_client_closed);
}

void bf_test_server_close(bf_test_server *s) {
  bf_test_server_drop(s);
  if (!uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, NULL);
}

void bf_test_server_clear(bf_test_server *s) {
  s->in_len = 0;
  s->in[0] = '\0';
  s->scanned = 0;
}

/* Answers every complete ping after the scan position (XEP-0199 §4.1: a
 * result iq with the ping's id). Pings are still scanned past when they
 * are not answered, so turning answer_pings on answers only later ones. */
static void answer_pings(bf_test_server *s) {
  for (;;) {
    char *p = strstr(s->in + s->scanned, "<ping xmlns='urn:xmpp:ping'/>");
    if (!p)
      return;
    /* the id of the enclosing iq, searching backwards */
    char *iq = p;
    while (iq > s->in && strncmp(iq, "<iq ", 4) != 0)
      iq--;
    char *id = strstr(iq, "id='");
    assert_non_null(id);
    id += 4;
    char idbuf[64];
    size_t n = strcspn(id, "'");
    assert_true(n < sizeof idbuf);
    memcpy(idbuf, id, n);
    idbuf[n] = '\0';
    s->scanned = (size_t)(p - s->in) + 1;
    if (!s->answer_pings)
      continue;
    char reply[256];
    snprintf(reply, sizeof reply,
             "<iq type='result' from='localhost' to='echo.localhost' id='%s'/>", idbuf);
    bf_test_server_send(s, reply);
    s->pings_answered++;
  }
}

/* Before the handshake: the stream header answered with id 'fake', then
 * the digest of 'fake' + secret checked (XEP-0114 §3). */
static void handshake(bf_test_server *s) {
  if (strstr(s->in, "to='echo.localhost'>") && !strstr(s->in, "<handshake>") &&
      !strstr(s->in, "id='fake'")) {
    bf_test_server_send(s, "<?xml version='1.0'?><stream:stream "
                           "xmlns:stream='http://etherx.jabber.org/streams' "
                           "xmlns='jabber:component:accept' from='echo.localhost' "
                           "id='fake'>");
  }
  char *h = strstr(s->in, "<handshake>");
  if (!h || !strstr(h, "</handshake>"))
    return;
  char want[41];
  assert_int_equal(bf__component_handshake_digest("fake", s->secret, want), 0);
  if (strncmp(h + strlen("<handshake>"), want, 40) == 0) {
    s->handshaken = true;
    bf_test_server_send(s, "<handshake/>");
  } else {
    s->bad_handshake_seen = true;
    bf_test_server_send(s, "<stream:error><not-authorized "
                           "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
                           "</stream:stream>");
    bf_test_server_drop(s);
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  bf_test_server *s = bf_container_of((uv_tcp_t *)stream, bf_test_server, client);
  if (nread < 0) {
    free(buf->base);
    bf_test_server_drop(s);
    return;
  }
  /* the cap: a test that needs more than 1 MiB should clear in between */
  assert_true(s->in_len + (size_t)nread < sizeof s->in);
  memcpy(s->in + s->in_len, buf->base, (size_t)nread);
  s->in_len += (size_t)nread;
  s->in[s->in_len] = '\0';
  free(buf->base);
  if (!s->handshaken)
    handshake(s);
  else
    answer_pings(s);
}

static void on_connection(uv_stream_t *listener, int status) {
  bf_test_server *s = bf_container_of((uv_tcp_t *)listener, bf_test_server, listener);
  assert_int_equal(status, 0);
  /* one connection at a time: the gateway reconnects only after a drop */
  assert_false(s->client_open);
  assert_int_equal(uv_tcp_init(s->loop, &s->client), 0);
  assert_int_equal(uv_accept(listener, (uv_stream_t *)&s->client), 0);
  s->client_open = true;
  s->handshaken = false;
  bf_test_server_clear(s);
  s->connections++;
  assert_int_equal(uv_read_start((uv_stream_t *)&s->client, on_alloc, on_read), 0);
}

unsigned bf_test_server_start(bf_test_server *s, uv_loop_t *loop) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->secret = "s3cret";
  assert_int_equal(uv_tcp_init(loop, &s->listener), 0);
  struct sockaddr_in addr;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
  assert_int_equal(uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 8, on_connection), 0);
  struct sockaddr_storage name;
  int len = sizeof name;
  assert_int_equal(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&name, &len), 0);
  return ntohs(((struct sockaddr_in *)&name)->sin_port);
}

static void on_tick(uv_timer_t *timer) { (void)timer; }

bool bf_test_run_until(uv_loop_t *loop, bool (*cond)(void *data), void *data,
                       uint64_t timeout_ms) {
  uint64_t deadline = uv_now(loop) + timeout_ms;
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  /* Wakes the loop up regularly so the condition is re-checked. */
  uv_timer_start(&tick, on_tick, 10, 10);
  bool ok = false;
  while (uv_now(loop) < deadline) {
    if ((ok = cond(data)))
      break;
    uv_run(loop, UV_RUN_ONCE);
    uv_update_time(loop);
  }
  /* tick lives on this stack: one more pass finishes its close */
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

void bf_test_gateway_conf(bf_conf *conf, bf_conf_gateway *gw, unsigned port,
                          const char *secret) {
  static char *allowed[] = {"localhost", NULL};
  memset(conf, 0, sizeof *conf);
  conf->path = "test.conf";
  conf->max_stanza_size = 64 * 1024;
  conf->max_depth = 64;
  conf->write_queue_max = 1024 * 1024;
  conf->keepalive_s = 60;
  conf->ping_interval_s = 120;
  conf->ping_timeout_s = 60;
  conf->reconnect_min_s = 1;
  conf->reconnect_max_s = 2;
  conf->probe_timeout_s = 30;
  conf->modules_dir = "/nonexistent";
  memset(gw, 0, sizeof *gw);
  gw->section = "echo";
  gw->line = 1;
  gw->transport = "echo";
  gw->domain = "echo.localhost";
  gw->secret = (char *)secret;
  gw->server = "127.0.0.1";
  gw->port = port;
  gw->xmpp_domain = "localhost";
  gw->allowed = allowed;
  gw->n_allowed = 1;
  gw->message_ids = 10000;
  conf->gateways = gw;
  conf->n_gateways = 1;
}
