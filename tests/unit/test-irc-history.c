/* The IRC transport's IRCv3 chathistory path (transports/irc/irc-history.c)
 * against a fake IRC server on the test's loop (no Debian IRC server
 * offers draft/chathistory): the gateway asks CHATHISTORY LATEST when it
 * joins, shows the room only once the answer's batch is in, with those
 * lines as the MUC history (their server-time as the delay), never live;
 * a server that does not answer delays the room by a bounded time only.
 * The XMPP side is the fake component server, which knows one gateway
 * domain: echo.localhost (here an IRC gateway). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "babelfish/babelfish.h"
#include "component.h"
#include "fake-server.h"
#include "gateway.h"
#include "irc/irc.h"
#include "log.h"
#include "store.h"
#include "support.h"

/* ---- a fake IRC server: one client, lines in, text out ---------------- */

typedef struct irc_server {
  uv_tcp_t listener, client;
  bool client_open;
  char in[64 * 1024];          /* what the gateway wrote, NUL-terminated */
  size_t in_len;
} irc_server;

static void on_irc_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  irc_server *s = h->data;
  (void)size;
  *buf = uv_buf_init(s->in + s->in_len, (unsigned)(sizeof s->in - 1 - s->in_len));
}

static void on_irc_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  irc_server *s = stream->data;
  (void)buf;
  if (n > 0) {
    s->in_len += (size_t)n;
    s->in[s->in_len] = '\0';
  }
}

static void on_irc_connection(uv_stream_t *listener, int status) {
  irc_server *s = listener->data;
  assert_int_equal(status, 0);
  assert_false(s->client_open); /* one connection only */
  uv_tcp_init(listener->loop, &s->client);
  s->client.data = s;
  assert_int_equal(uv_accept(listener, (uv_stream_t *)&s->client), 0);
  s->client_open = true;
  uv_read_start((uv_stream_t *)&s->client, on_irc_alloc, on_irc_read);
}

static unsigned irc_server_start(irc_server *s, uv_loop_t *loop) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  memset(s, 0, sizeof *s);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_init(loop, &s->listener), 0);
  s->listener.data = s;
  assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 4, on_irc_connection), 0);
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void irc_send(irc_server *s, const char *text) {
  assert_true(s->client_open);
  uv_buf_t buf = uv_buf_init((char *)text, (unsigned)strlen(text));
  assert_int_equal(uv_try_write((uv_stream_t *)&s->client, &buf, 1),
                   (int)strlen(text));
}

static void irc_server_close(irc_server *s) {
  uv_close((uv_handle_t *)&s->listener, NULL);
  if (s->client_open)
    uv_close((uv_handle_t *)&s->client, NULL);
  s->client_open = false;
}

/* ---- the daemon with one IRC gateway ---------------------------------- */

typedef struct fixture {
  uv_loop_t loop;
  bf_test_server xmpp;
  irc_server irc;
  bf_conf conf;
  bf_conf_gateway gwconf;
  bf_conf_entry entries[4];
  char ports[16];
  bf_daemon daemon;
  bf_gateway *gw;
  char *dir, *db;
  bool stopped;
} fixture;

static fixture *current;

static void on_stopped(bf_gateway *gw) {
  (void)gw;
  current->stopped = true;
}

static bool is_stopped(void *data) { return ((fixture *)data)->stopped; }

static bool is_online(void *data) {
  fixture *f = data;
  return f->xmpp.handshaken && bf__component_online(&f->gw->component);
}

struct wait_text {
  const char *haystack;
  const char *text;
};

static bool seen(void *data) {
  struct wait_text *w = data;
  return strstr(w->haystack, w->text) != NULL;
}

static void wait_xmpp(fixture *f, const char *text, uint64_t ms) {
  struct wait_text w = {f->xmpp.in, text};
  if (!bf_test_run_until(&f->loop, seen, &w, ms))
    fail_msg("no %s from the gateway; got: %s", text, f->xmpp.in);
}

static void wait_irc(fixture *f, const char *text) {
  struct wait_text w = {f->irc.in, text};
  if (!bf_test_run_until(&f->loop, seen, &w, 3000))
    fail_msg("no %s to IRC; got: %s", text, f->irc.in);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  char err[512];
  f->dir = bf_test_tmpdir("irc-history");
  f->db = malloc(strlen(f->dir) + 16);
  sprintf(f->db, "%s/bf.db", f->dir);
  bf__log_init(BF_LOG_WARN, NULL);
  current = f;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  unsigned xmpp_port = bf_test_server_start(&f->xmpp, &f->loop);
  snprintf(f->ports, sizeof f->ports, "%u", irc_server_start(&f->irc, &f->loop));
  bf_test_gateway_conf(&f->conf, &f->gwconf, xmpp_port, "s3cret");
  f->gwconf.section = "irc";
  f->gwconf.transport = "irc";
  f->gwconf.domain = "echo.localhost";
  f->entries[0] = (bf_conf_entry){"transport", "irc", 2};
  f->entries[1] = (bf_conf_entry){"domain", "echo.localhost", 3};
  f->entries[2] = (bf_conf_entry){"irc_ports", f->ports, 4};
  f->gwconf.entries = f->entries;
  f->gwconf.n_entries = 3;
  f->daemon.loop = &f->loop;
  f->daemon.conf = &f->conf;
  assert_int_equal(bf__store_open(&f->daemon.store, f->db, err, sizeof err), 0);
  assert_int_equal(bf__gateway_new(&f->gw, &f->daemon, &f->gwconf, err, sizeof err), 0);
  assert_int_equal(bf__gateway_check(f->gw, err, sizeof err), 0);
  assert_int_equal(bf__gateway_start(f->gw), 0);
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  bf__gateway_stop(f->gw, on_stopped);
  assert_true(bf_test_run_until(&f->loop, is_stopped, f, 5000));
  bf__gateway_free(f->gw);
  bf_test_server_close(&f->xmpp);
  irc_server_close(&f->irc);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  bf__store_close(f->daemon.store);
  /* MAKE_VALGRIND_HAPPY: every handle is closed. */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  bf_test_unlink_db(f->db);
  free(f->db);
  free(f->dir);
  free(f);
  return 0;
}

#define ROOM "#chan%127.0.0.1@echo.localhost"
#define QUIET "#quiet%127.0.0.1@echo.localhost"

/* alice joins ROOM; the fake server offers the capabilities ls and
 * acknowledges what babelfish asks (req, in its order). */
static void join_with_caps(fixture *f, const char *ls, const char *req) {
  char line[256];
  bf_test_server_send(&f->xmpp,
                      "<presence from='alice@localhost/pc' to='" ROOM "/alice'>"
                      "<x xmlns='http://jabber.org/protocol/muc'/></presence>");
  wait_irc(f, "USER ");
  snprintf(line, sizeof line, ":irc.test CAP * LS :%s\r\n", ls);
  irc_send(&f->irc, line);
  snprintf(line, sizeof line, "CAP REQ :%s\r\n", req);
  wait_irc(f, line);
  snprintf(line, sizeof line, ":irc.test CAP alice ACK :%s\r\n", req);
  irc_send(&f->irc, line);
  wait_irc(f, "CAP END\r\n");
  irc_send(&f->irc, ":irc.test 001 alice :Welcome\r\n");
  wait_irc(f, "JOIN #chan\r\n");
  irc_send(&f->irc, ":alice!a@h JOIN #chan\r\n"
                    ":irc.test 353 alice = #chan :alice @zoe\r\n"
                    ":irc.test 366 alice #chan :End of /NAMES list.\r\n");
}

/* With batch and draft/chathistory acknowledged. */
static void join_and_register(fixture *f) {
  join_with_caps(f, "batch draft/chathistory server-time message-tags",
                 "server-time message-tags batch draft/chathistory");
}

static bool never(void *data) {
  (void)data;
  return false;
}

/* InspIRCd 3: batch without chathistory, the replay right behind NAMES,
 * here in a later read (a long NAMES): still the join's history. */
static void test_replay_in_a_later_read_is_the_join_history(void **state) {
  fixture *f = *state;
  join_with_caps(f, "batch server-time message-tags",
                 "server-time message-tags batch");
  (void)bf_test_run_until(&f->loop, never, NULL, 30);
  assert_null(strstr(f->xmpp.in, "code='110'")); /* waiting for it */
  irc_send(&f->irc,
           ":irc.test BATCH +r1 chathistory #chan\r\n"
           "@batch=r1;time=2024-05-01T12:00:00.000Z :zoe!z@h PRIVMSG #chan "
           ":replayed\r\n"
           ":irc.test BATCH -r1\r\n");
  wait_xmpp(f, "<subject", 3000);
  const char *self = strstr(f->xmpp.in, "code='110'");
  const char *replayed = strstr(f->xmpp.in, ">replayed<");
  assert_non_null(self);
  assert_non_null(replayed);
  assert_true(self < replayed && replayed < strstr(f->xmpp.in, "<subject"));
  assert_non_null(strstr(f->xmpp.in, "stamp='2024-05-01T12:00:00.000Z'"));
}

/* No replay at all (a channel without history): the room is shown after
 * BF_IRC_HISTORY_REPLAY_MS, not after the long wait. */
static void test_no_replay_shows_the_room_soon(void **state) {
  fixture *f = *state;
  uint64_t t0 = uv_now(&f->loop);
  join_with_caps(f, "batch", "batch");
  wait_xmpp(f, "<subject", 2000);
  assert_true(uv_now(&f->loop) - t0 < 1000);
}

static void test_chathistory_latest_is_the_join_history(void **state) {
  fixture *f = *state;
  join_and_register(f);
  wait_irc(f, "CHATHISTORY LATEST #chan * 50\r\n");
  /* The room waits for the answer: no self-presence yet. */
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_null(strstr(f->xmpp.in, "code='110'"));
  /* A second resource joining meanwhile waits too, and enters once. */
  bf_test_server_send(&f->xmpp,
                      "<presence from='alice@localhost/tab' to='" ROOM "/alice'>"
                      "<x xmlns='http://jabber.org/protocol/muc'/></presence>");
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_null(strstr(f->xmpp.in, "code='110'"));
  irc_send(&f->irc,
           "@time=2024-05-01T12:00:00.250Z :irc.test BATCH +h1 chathistory #chan\r\n"
           "@batch=h1;time=2024-05-01T12:00:00.000Z;msgid=x1 :zoe!z@h PRIVMSG "
           "#chan :from the past\r\n"
           "@batch=h1;time=2024-05-01T12:00:01.500Z :zoe!z@h PRIVMSG #chan "
           ":\001ACTION waves\001\r\n"
           "@batch=h1 :irc.test BATCH -h1\r\n");
  wait_xmpp(f, "<subject", 3000);
  const char *self = strstr(f->xmpp.in, "code='110'");
  const char *past = strstr(f->xmpp.in, ">from the past<");
  const char *waves = strstr(f->xmpp.in, ">/me waves<");
  const char *subject = strstr(f->xmpp.in, "<subject");
  assert_non_null(self);
  assert_non_null(past);
  assert_non_null(waves);
  /* XEP-0045 §7.2.14: presences, history, subject. */
  assert_true(self < past && past < waves && waves < subject);
  assert_non_null(strstr(f->xmpp.in, "stamp='2024-05-01T12:00:00.000Z'"));
  assert_non_null(strstr(f->xmpp.in, "stamp='2024-05-01T12:00:01.500Z'"));
  assert_non_null(strstr(f->xmpp.in, "from='" ROOM "/zoe'"));
  struct wait_text tab = {f->xmpp.in, "to='alice@localhost/tab'><subject"};
  assert_true(bf_test_run_until(&f->loop, seen, &tab, 3000));
  /* Each resource: one self-presence, each line once, one subject. */
  static const char *const once_each[] = {"code='110'", ">from the past<",
                                          ">/me waves<", "<subject"};
  for (size_t i = 0; i < 4; i++) {
    unsigned n = 0;
    for (const char *p = f->xmpp.in; (p = strstr(p, once_each[i])); p++)
      n++;
    assert_int_equal(n, 2);
  }

  /* A live line after the batch is live (no delay), with its stanza-id. */
  bf_test_server_clear(&f->xmpp);
  irc_send(&f->irc, "@time=2024-05-01T12:05:00.000Z :zoe!z@h PRIVMSG #chan :now\r\n");
  wait_xmpp(f, ">now<", 3000);
  assert_null(strstr(f->xmpp.in, "urn:xmpp:delay"));
  assert_non_null(strstr(f->xmpp.in, "<stanza-id xmlns='urn:xmpp:sid:0'"));

  /* The same history replayed again (a second answer) is not stored
   * twice: a new resource's history has each line once. */
  irc_send(&f->irc,
           ":irc.test BATCH +h2 chathistory #chan\r\n"
           "@batch=h2;time=2024-05-01T12:00:00.000Z :zoe!z@h PRIVMSG "
           "#chan :from the past\r\n"
           ":irc.test BATCH -h2\r\n");
  bf_test_server_clear(&f->xmpp);
  bf_test_server_send(&f->xmpp,
                      "<presence from='alice@localhost/phone' to='" ROOM "/alice'>"
                      "<x xmlns='http://jabber.org/protocol/muc'/></presence>");
  wait_xmpp(f, "<subject", 3000);
  past = strstr(f->xmpp.in, ">from the past<");
  assert_non_null(past);
  assert_null(strstr(past + 1, ">from the past<"));
  assert_non_null(strstr(f->xmpp.in, ">now<"));
}

static void test_unanswered_chathistory_delays_the_room_bounded(void **state) {
  fixture *f = *state;
  join_and_register(f);
  wait_irc(f, "CHATHISTORY LATEST #chan * 50\r\n");
  irc_send(&f->irc, "@batch=zz :zoe!z@h PRIVMSG #chan :a batch never opened\r\n");
  uint64_t t0 = uv_now(&f->loop);
  /* The server never answers: the room is shown after the wait. */
  wait_xmpp(f, "<subject", BF_IRC_HISTORY_WAIT_MS + 3000);
  uint64_t took = uv_now(&f->loop) - t0;
  assert_true(took >= BF_IRC_HISTORY_WAIT_MS - 1000);
  assert_true(took <= BF_IRC_HISTORY_WAIT_MS + 2000);
  /* A line tagged with a batch that is not open is a live line. */
  assert_non_null(strstr(f->xmpp.in, ">a batch never opened<"));
}

/* Stamps (IRCv3 server-time, XEP-0082 in MAM forms) and ids, including
 * what must be refused. */
static void test_time_and_id_text(void **state) {
  (void)state;
  assert_int_equal(bf_irc_history_time_parse("1970-01-01T00:00:00Z"), 0);
  assert_int_equal(bf_irc_history_time_parse("2024-05-01T12:00:00.250Z"),
                   1714564800250ull);
  assert_int_equal(bf_irc_history_time_parse("2024-05-01T12:00:00Z"),
                   1714564800000ull);
  assert_int_equal(bf_irc_history_time_parse("2024-05-01T14:00:00.5+02:00"),
                   1714564800500ull);
  assert_int_equal(bf_irc_history_time_parse("2024-05-01T11:30:00-00:30"),
                   1714564800000ull);
  static const char *const bad[] = {
      NULL, "", "yesterday", "2024-05-01", "2024-05-01T12:00:00",
      "2024-13-01T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T12:00:00.Z",
      "2024-05-01T12:00:00Zjunk", "2024-05-01T12:00:00+0200", "1969-12-31T23:59:59Z",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_equal(bf_irc_history_time_parse(bad[i]), 0);
  char text[32];
  bf_irc_history_time_text(text, sizeof text, 1714564800250ull);
  assert_string_equal(text, "2024-05-01T12:00:00.250Z");
  bf_irc_history_id_text(text, sizeof text, 42);
  assert_string_equal(text, "h42");
  assert_int_equal(bf_irc_history_id_parse("h42"), 42);
  assert_int_equal(bf_irc_history_id_parse("h"), 0);
  assert_int_equal(bf_irc_history_id_parse("42"), 0);
  assert_int_equal(bf_irc_history_id_parse("h42x"), 0);
  assert_int_equal(bf_irc_history_id_parse(NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_time_and_id_text),
      cmocka_unit_test_setup_teardown(
          test_replay_in_a_later_read_is_the_join_history, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_replay_shows_the_room_soon,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_chathistory_latest_is_the_join_history,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_unanswered_chathistory_delays_the_room_bounded, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
