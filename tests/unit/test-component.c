/* The component connection and the gateway around it, against a fake XMPP
 * server on the same loop: handshake digest, routing defaults, the durable
 * outbox (confirmed by ping, re-sent after a reconnect and a restart),
 * back-pressure limits and a clean stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <sqlite3.h>

#include "babelfish/babelfish.h"
#include "component.h"
#include "fake-server.h"
#include "gateway.h"
#include "log.h"
#include "store.h"
#include "support.h"

/* ---- handshake digest (XEP-0114 §3; vectors from the protocol notes) ---- */

static void test_digest_vectors(void **state) {
  (void)state;
  static const struct {
    const char *id, *secret, *hex;
  } v[] = {
      {"3BF96D32", "s3cret", "a984b871214a298f0f743fcd25f99b10838ba12b"},
      {"11914710463591289128", "s3cret", "6f6165327956a530fbdddd67973e480fb21e6a6c"},
      {"964fc729-329e-44c6-9d42-7c0cb49dc11d", "s3cret",
       "8e0f2d9ebb7333dc3eea9d4da7a9fb5a8ca9dd65"},
      {"3BF96D32", "p\xc3\xa4ssw\xc3\xb6rd", "b98b55b8861572aa263491b569489156853cc6fa"},
  };
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
    char out[41];
    assert_int_equal(bf__component_handshake_digest(v[i].id, v[i].secret, out), 0);
    assert_string_equal(out, v[i].hex);
  }
}

/* ---- a daemon with one echo gateway -------------------------------------- */

typedef struct fixture {
  uv_loop_t loop;
  bf_test_server server;
  bf_conf conf;
  bf_conf_gateway gwconf;
  bf_conf_entry entries[4];
  bf_daemon daemon;
  bf_gateway *gw;
  char *dir;
  char *db;
  bool stopped;
} fixture;

static void fixture_conf(fixture *f, unsigned port, const char *secret) {
  bf_test_gateway_conf(&f->conf, &f->gwconf, port, secret);
  f->entries[0] = (bf_conf_entry){"transport", "echo", 2};
  f->entries[1] = (bf_conf_entry){"domain", "echo.localhost", 3};
  f->entries[2] = (bf_conf_entry){"durable", "yes", 4};
  f->gwconf.entries = f->entries;
  f->gwconf.n_entries = 3;
}

static void fixture_start(fixture *f, const char *secret) {
  char err[512];
  assert_int_equal(uv_loop_init(&f->loop), 0);
  unsigned port = bf_test_server_start(&f->server, &f->loop);
  fixture_conf(f, port, secret);
  f->daemon.loop = &f->loop;
  f->daemon.conf = &f->conf;
  assert_int_equal(bf__store_open(&f->daemon.store, f->db, err, sizeof err), 0);
  assert_int_equal(bf__gateway_new(&f->gw, &f->daemon, &f->gwconf, err, sizeof err), 0);
  assert_int_equal(bf__gateway_check(f->gw, err, sizeof err), 0);
  assert_int_equal(bf__gateway_start(f->gw), 0);
  f->stopped = false;
}

static fixture *current;

static void on_stopped(bf_gateway *gw) {
  (void)gw;
  current->stopped = true;
}

static bool is_stopped(void *data) { return ((fixture *)data)->stopped; }

static void fixture_stop(fixture *f) {
  bf__gateway_stop(f->gw, on_stopped);
  assert_true(bf_test_run_until(&f->loop, is_stopped, f, 5000));
  bf__gateway_free(f->gw);
  bf_test_server_close(&f->server);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  bf__store_close(f->daemon.store);
  /* MAKE_VALGRIND_HAPPY: every handle is closed. */
  assert_int_equal(uv_loop_close(&f->loop), 0);
}

static bool is_online(void *data) {
  fixture *f = data;
  return f->server.handshaken && bf__component_online(&f->gw->component);
}

static unsigned count(const char *haystack, const char *needle) {
  unsigned n = 0;
  for (const char *p = haystack; (p = strstr(p, needle)); p++)
    n++;
  return n;
}

static bf_xml *message(const char *body) {
  bf_xml *m = bf_xml_new("message", NULL);
  bf_xml_set_attr(m, "from", "bob@echo.localhost");
  bf_xml_set_attr(m, "to", "alice@localhost/pc");
  bf_xml_add_text_child(m, "body", NULL, body);
  return m;
}

static int64_t outbox_rows(fixture *f) {
  return bf__store_outbox_count(f->daemon.store, "echo.localhost");
}

struct wait_text {
  fixture *f;
  const char *text;
  unsigned times;
};

static bool seen(void *data) {
  struct wait_text *w = data;
  return w->f->server.client_open && count(w->f->server.in, w->text) >= w->times;
}

static bool outbox_empty(void *data) { return outbox_rows(data) == 0; }

struct wait_rows {
  fixture *f;
  int64_t rows;
};

static bool rows_are(void *data) {
  struct wait_rows *w = data;
  return outbox_rows(w->f) == w->rows;
}

/* sqlite3_commit_hook: counts the transactions committed. */
static int count_commit(void *data) {
  (*(unsigned *)data)++;
  return 0;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->dir = bf_test_tmpdir("component");
  f->db = malloc(strlen(f->dir) + 16);
  sprintf(f->db, "%s/bf.db", f->dir);
  bf__log_init(BF_LOG_WARN, NULL);
  current = f;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  free(f->db);
  free(f->dir);
  free(f);
  return 0;
}

static void test_outbox_confirmed_by_ping(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));

  /* Sent while the server does not answer pings: stored, written, kept. */
  for (int i = 0; i < 3; i++) {
    char body[32];
    snprintf(body, sizeof body, "durable %d", i);
    bf_xml *m = message(body);
    assert_int_equal(f->gw->host.send_durable(&f->gw->host, m), 0);
    bf_xml_free(m);
  }
  struct wait_text w = {f, "durable 2", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  assert_int_equal(outbox_rows(f), 3);
  assert_true(count(f->server.in, "<ping xmlns='urn:xmpp:ping'/>") >= 1);

  /* The connection drops: rows survive and are sent again, in order, on the
   * next stream; once a ping is answered they are deleted. */
  f->server.answer_pings = true;
  bf_test_server_drop(&f->server);
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  assert_int_equal(f->server.connections, 2);
  w = (struct wait_text){f, "durable 2", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  const char *first = strstr(f->server.in, "durable 0");
  const char *second = strstr(f->server.in, "durable 1");
  assert_non_null(first);
  assert_non_null(second);
  assert_true(first < second);
  assert_true(bf_test_run_until(&f->loop, outbox_empty, f, 3000));
  fixture_stop(f);
}

static void test_outbox_survives_restart(void **state) {
  fixture *f = *state;
  /* Stored while offline (wrong port: nothing listens): nothing is lost. */
  fixture_start(f, "s3cret");
  bf_xml *m = message("written while offline");
  uv_close((uv_handle_t *)&f->server.listener, NULL); /* server gone */
  assert_int_equal(f->gw->host.send_durable(&f->gw->host, m), 0);
  bf_xml_free(m);
  /* Staged until the next loop iteration; the stop commits it. */
  assert_int_equal(outbox_rows(f), 0);
  bf__gateway_stop(f->gw, on_stopped);
  assert_int_equal(outbox_rows(f), 1);
  assert_true(bf_test_run_until(&f->loop, is_stopped, f, 5000));
  bf__gateway_free(f->gw);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  bf__store_close(f->daemon.store);
  assert_int_equal(uv_loop_close(&f->loop), 0);

  /* "Restart": a new daemon on the same database re-sends it. */
  memset(&f->loop, 0, sizeof f->loop);
  fixture_start(f, "s3cret");
  f->server.answer_pings = true;
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  struct wait_text w = {f, "written while offline", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  assert_true(bf_test_run_until(&f->loop, outbox_empty, f, 3000));
  fixture_stop(f);
}

/* `allowed`: outsiders get forbidden (presence: unsubscribed) and nothing
 * is stored; discovery still answers them. */
static void test_access_control(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  bf_test_server_send(&f->server,
      "<iq type='set' id='r1' from='eve@evil.example/x' to='echo.localhost'>"
      "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' "
      "type='submit'><field var='nick'><value>eve</value></field></x>"
      "</query></iq>"
      "<message id='m1' from='eve@evil.example/x' to='bob@echo.localhost'>"
      "<body>hi</body></message>"
      "<presence type='subscribe' from='eve@evil.example' "
      "to='bob@echo.localhost'/>"
      "<iq type='get' id='d1' from='eve@evil.example/x' to='echo.localhost'>"
      "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
      "<iq type='get' id='r2' from='alice@localhost/pc' to='echo.localhost'>"
      "<query xmlns='jabber:iq:register'/></iq>");
  struct wait_text w = {f, "id='r2'", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  const char *r1 = strstr(f->server.in, "id='r1'");
  assert_non_null(r1);
  assert_non_null(strstr(r1, "<forbidden"));
  const char *m1 = strstr(f->server.in, "id='m1'");
  assert_non_null(m1);
  assert_non_null(strstr(m1, "<forbidden"));
  assert_non_null(strstr(f->server.in, "from='bob@echo.localhost' "
                                       "to='eve@evil.example' type='unsubscribed'"));
  assert_non_null(strstr(f->server.in, "id='d1' type='result'"));
  /* the allowed user gets the form */
  const char *r2 = strstr(f->server.in, "id='r2'");
  assert_non_null(strstr(r2, "type='result'"));
  assert_non_null(strstr(r2, "jabber:x:data"));
  sqlite3 *db = bf__store_db(f->daemon.store);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM users) + "
                                          "(SELECT count(*) FROM contacts)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 0);
  sqlite3_finalize(st);
  fixture_stop(f);
}

static bool session_on(void *data) {
  return ((fixture *)data)->gw->users.online == 1;
}

static bool session_off(void *data) {
  return ((fixture *)data)->gw->users.online == 0;
}

/* After a reconnect the gateway probes its registered users; a resource
 * the server does not confirm within probe_timeout is dropped (the user
 * went offline while the stream was down), one it confirms stays. */
static void test_probes_after_reconnect(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  f->conf.probe_timeout_s = 1;
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  bf_test_server_send(&f->server,
      "<iq type='set' id='r1' from='alice@localhost/pc' to='echo.localhost'>"
      "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' "
      "type='submit'><field var='nick'><value>al</value></field></x>"
      "</query></iq>"
      "<presence from='alice@localhost/pc' to='echo.localhost'/>");
  assert_true(bf_test_run_until(&f->loop, session_on, f, 3000));
  struct wait_text subscribe = {
      f, "to='alice@localhost' type='subscribe'", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &subscribe, 3000));

  /* 1: the server confirms the resource: the session survives. */
  bf_test_server_drop(&f->server);
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  struct wait_text probe = {f, "to='alice@localhost' type='probe'", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &probe, 3000));
  bf_test_server_send(&f->server,
      "<presence from='alice@localhost/pc' to='echo.localhost'/>");
  assert_false(bf_test_run_until(&f->loop, session_off, f, 1500));

  /* 2: nobody answers: the resource is dropped after probe_timeout. */
  bf_test_server_drop(&f->server);
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  assert_true(bf_test_run_until(&f->loop, seen, &probe, 3000));
  uint64_t t0 = uv_now(&f->loop);
  assert_true(bf_test_run_until(&f->loop, session_off, f, 3000));
  assert_true(uv_now(&f->loop) - t0 >= 900);
  assert_int_equal(f->gw->users.registered, 1);

  /* 3: an unavailable answer from the bare JID ends it at once. */
  bf_test_server_send(&f->server,
      "<presence from='alice@localhost/phone' to='echo.localhost'/>");
  assert_true(bf_test_run_until(&f->loop, session_on, f, 3000));
  bf_test_server_send(&f->server,
      "<presence type='unavailable' from='alice@localhost' "
      "to='echo.localhost'/>");
  assert_true(bf_test_run_until(&f->loop, session_off, f, 500));
  fixture_stop(f);
}

static bool resources_at_cap(void *data) {
  bf_user *u = bf__users_find(((fixture *)data)->gw, "alice@localhost");
  return u && u->n_resources == BF_RESOURCES_PER_USER_MAX;
}

/* The per-user limits: contacts stored, resources tracked. */
static void test_user_limits(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  bf_test_server_send(&f->server,
      "<iq type='set' id='r1' from='alice@localhost/pc' to='echo.localhost'>"
      "<query xmlns='jabber:iq:register'/></iq>");
  struct wait_text w = {f, "id='r1' type='result'", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  for (int i = 0; i <= BF_RESOURCES_PER_USER_MAX; i++) {
    char presence[128];
    snprintf(presence, sizeof presence,
             "<presence from='alice@localhost/r%d' to='echo.localhost'/>", i);
    bf_test_server_send(&f->server, presence);
  }
  assert_true(bf_test_run_until(&f->loop, resources_at_cap, f, 3000));
  /* A full roster of contacts, written directly. */
  sqlite3 *db = bf__store_db(f->daemon.store);
  assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "INSERT INTO contacts VALUES ('echo.localhost', "
                                      "'alice@localhost', ?1, 1)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  for (int i = 0; i < BF_CONTACTS_PER_USER_MAX; i++) {
    char contact[64];
    snprintf(contact, sizeof contact, "c%d@echo.localhost", i);
    sqlite3_bind_text(st, 1, contact, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  bf_test_server_send(&f->server,
      "<presence type='subscribe' from='alice@localhost' "
      "to='one-more@echo.localhost'/>"
      "<presence type='subscribe' from='alice@localhost' "
      "to='c7@echo.localhost'/>");
  w = (struct wait_text){f, "from='one-more@echo.localhost' "
                            "to='alice@localhost' type='unsubscribed'", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  /* a contact already stored is still answered */
  w = (struct wait_text){f, "from='c7@echo.localhost' "
                            "to='alice@localhost' type='subscribed'", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));

  fixture_stop(f);
}

static void test_routing_defaults(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  bf_test_server_send(&f->server,
      "<iq type='get' id='u1' from='alice@localhost/pc' to='echo.localhost'>"
      "<query xmlns='urn:example:unknown'/></iq>"
      "<iq type='get' id='u2' from='alice@localhost/pc' to='echo.localhost'>"
      "<query xmlns='jabber:iq:version'/><extra/></iq>"
      "<iq type='error' id='u3' from='alice@localhost/pc' to='echo.localhost'>"
      "<error type='cancel'><item-not-found "
      "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
      "<message type='error' from='alice@localhost/pc' to='bob@echo.localhost'>"
      "<body>x</body></message>"
      "<iq type='get' id='u4' from='alice@localhost/pc' to='echo.localhost'>"
      "<ping xmlns='urn:xmpp:ping'/></iq>");
  struct wait_text w = {f, "id='u4'", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  /* unknown namespace: service-unavailable, swapped addresses */
  assert_non_null(strstr(f->server.in, "<iq from='echo.localhost' "
                                       "to='alice@localhost/pc' id='u1' type='error'>"));
  const char *u1 = strstr(f->server.in, "id='u1'");
  assert_non_null(strstr(u1, "<service-unavailable"));
  /* two payloads: bad-request */
  const char *u2 = strstr(f->server.in, "id='u2'");
  assert_non_null(u2);
  assert_non_null(strstr(u2, "<bad-request"));
  /* errors are never answered */
  assert_null(strstr(f->server.in, "id='u3'"));
  assert_int_equal(count(f->server.in, "type='error'"), 2);
  /* ping answered */
  assert_non_null(strstr(f->server.in, "id='u4' type='result'"));
  fixture_stop(f);
}

static void test_wrong_secret_retries(void **state) {
  fixture *f = *state;
  fixture_start(f, "not-the-secret");
  /* two refused attempts within the 1-2 s backoff */
  uint64_t deadline = uv_now(&f->loop) + 6000;
  while (f->server.connections < 2 && uv_now(&f->loop) < deadline) {
    uv_run(&f->loop, UV_RUN_ONCE);
    uv_update_time(&f->loop);
  }
  assert_true(f->server.connections >= 2);
  assert_true(f->server.bad_handshake_seen);
  assert_false(bf__component_online(&f->gw->component));
  fixture_stop(f);
}

static void check_parsed(const bf_jid *j, const char *local, const char *domain,
                         const char *resource) {
  if (local)
    assert_string_equal(j->local, local);
  else
    assert_null(j->local);
  assert_string_equal(j->domain, domain);
  if (resource)
    assert_string_equal(j->resource, resource);
  else
    assert_null(j->resource);
}

/* The gateway's JID cache gives what bf_jid_parse gives, hit or miss, and
 * keeps refusing what must not be sent. */
static void test_jid_cache(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  bf_gateway *gw = f->gw;
  char buf[BF_JID_STACK_BUFFER];
  bf_jid j;
  for (int round = 0; round < 2; round++) { /* miss, then hit */
    assert_int_equal(bf__gateway_jid_parse(gw, "Alice@LocalHost/Pc", &j, buf, sizeof buf), 0);
    check_parsed(&j, "alice", "localhost", "Pc");
    bf_jid_close(&j);
    assert_int_equal(bf__gateway_jid_parse(gw, "echo.localhost", &j, buf, sizeof buf), 0);
    check_parsed(&j, NULL, "echo.localhost", NULL);
    bf_jid_close(&j);
    assert_int_equal(bf__gateway_jid_parse(gw, "x@echo.localhost/a/b@c", &j, buf, sizeof buf), 0);
    check_parsed(&j, "x", "echo.localhost", "a/b@c");
    bf_jid_close(&j);
    assert_int_equal(bf__gateway_jid_parse(gw, "bad jid@x", &j, buf, sizeof buf), BF_EINVAL);
  }
  /* a buffer too small for the cached form falls back to an allocation */
  char tiny[4];
  assert_int_equal(bf__gateway_jid_parse(gw, "Alice@LocalHost/Pc", &j, tiny, sizeof tiny), 0);
  check_parsed(&j, "alice", "localhost", "Pc");
  bf_jid_close(&j);
  /* more JIDs than entries: evicted ones are parsed again, correctly */
  for (int i = 0; i < 3 * BF_JID_CACHE_SIZE; i++) {
    char raw[64], local[64], resource[16];
    snprintf(raw, sizeof raw, "User%d@Echo.LocalHost/r%d", i % 11, i % 5);
    snprintf(local, sizeof local, "user%d", i % 11);
    snprintf(resource, sizeof resource, "r%d", i % 5);
    assert_int_equal(bf__gateway_jid_parse(gw, raw, &j, buf, sizeof buf), 0);
    check_parsed(&j, local, "echo.localhost", resource);
    bf_jid_close(&j);
  }
  /* the outbound check uses the cached 'ours': a cached JID of another
   * domain is still refused as 'from' */
  bf_xml *m = bf_xml_new("message", NULL);
  bf_xml_set_attr(m, "from", "Alice@LocalHost/Pc");
  bf_xml_set_attr(m, "to", "alice@localhost");
  assert_int_equal(bf__gateway_send(gw, m), BF_EINVAL);
  bf_xml_set_attr(m, "from", "x@echo.localhost/a/b@c");
  bf_xml_set_attr(m, "to", "bad jid@x");
  assert_int_equal(bf__gateway_send(gw, m), BF_EINVAL);
  bf_xml_free(m);
  fixture_stop(f);
}

/* A backlog much larger than the write queue: the replay goes out in
 * order, in batches, resuming each time the queue drains. */
static void test_outbox_replay_backpressure(void **state) {
  fixture *f = *state;
  enum { ROWS = 3000 };
  fixture_start(f, "s3cret");
  f->conf.write_queue_max = 16 * 1024; /* before the stream is up */
  f->gw->component.opt.write_queue_max = 16 * 1024;
  f->server.answer_pings = true;
  for (int i = 0; i < ROWS; i++) {
    char body[32];
    snprintf(body, sizeof body, "row-%04d.", i);
    bf_xml *m = message(body);
    assert_int_equal(f->gw->host.send_durable(&f->gw->host, m), 0);
    bf_xml_free(m);
  }
  struct wait_rows r = {f, ROWS};
  assert_true(bf_test_run_until(&f->loop, rows_are, &r, 3000));
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  struct wait_text w = {f, "row-2999.", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 10000));
  /* every row once, in order */
  const char *p = f->server.in;
  for (int i = 0; i < ROWS; i++) {
    char body[32];
    snprintf(body, sizeof body, "row-%04d.", i);
    const char *q = strstr(p, body);
    if (!q)
      fail_msg("row %d missing or out of order", i);
    p = q + 1;
  }
  assert_int_equal(count(f->server.in, "row-"), ROWS);
  assert_true(bf_test_run_until(&f->loop, outbox_empty, f, 5000));
  fixture_stop(f);
}

/* The durable sends of one loop iteration share one commit, and none of
 * them is queued for the socket before it. */
static void test_outbox_one_commit_per_iteration(void **state) {
  fixture *f = *state;
  enum { SENDS = 200 };
  fixture_start(f, "s3cret");
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  unsigned commits = 0;
  sqlite3_commit_hook(bf__store_db(f->daemon.store), count_commit, &commits);
  size_t queued = bf__component_queued(&f->gw->component);
  for (int i = 0; i < SENDS; i++) {
    char body[32];
    snprintf(body, sizeof body, "batch-%03d.", i);
    bf_xml *m = message(body);
    assert_int_equal(f->gw->host.send_durable(&f->gw->host, m), 0);
    bf_xml_free(m);
  }
  assert_int_equal(commits, 0);
  assert_int_equal(outbox_rows(f), 0);
  assert_int_equal(bf__component_queued(&f->gw->component), queued);
  struct wait_text w = {f, "batch-199.", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  assert_int_equal(commits, 1);
  assert_int_equal(outbox_rows(f), SENDS); /* kept until a ping confirms */
  const char *p = f->server.in;
  for (int i = 0; i < SENDS; i++) {
    char body[32];
    snprintf(body, sizeof body, "batch-%03d.", i);
    const char *q = strstr(p, body);
    if (!q)
      fail_msg("stanza %d missing or out of order", i);
    p = q + 1;
  }
  sqlite3_commit_hook(bf__store_db(f->daemon.store), NULL, NULL);
  fixture_stop(f);
}

/* A plain send after durable ones commits them first: the stream carries
 * the stanzas in the order they were sent. */
static void test_outbox_order_with_plain_send(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  unsigned commits = 0;
  sqlite3_commit_hook(bf__store_db(f->daemon.store), count_commit, &commits);
  const bf_host *h = &f->gw->host;
  bf_xml *a = message("first-durable."), *b = message("second-plain."),
         *c = message("third-durable.");
  assert_int_equal(h->send_durable(h, a), 0);
  assert_int_equal(h->send(h, b), 0);
  assert_int_equal(commits, 1); /* the first was committed before b */
  assert_int_equal(h->send_durable(h, c), 0);
  bf_xml_free(a);
  bf_xml_free(b);
  bf_xml_free(c);
  struct wait_text w = {f, "third-durable.", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  assert_int_equal(commits, 2);
  const char *p1 = strstr(f->server.in, "first-durable.");
  const char *p2 = strstr(f->server.in, "second-plain.");
  const char *p3 = strstr(f->server.in, "third-durable.");
  assert_non_null(p1);
  assert_non_null(p2);
  assert_true(p1 < p2 && p2 < p3);
  sqlite3_commit_hook(bf__store_db(f->daemon.store), NULL, NULL);
  fixture_stop(f);
}

/* A commit that fails (another connection holds the write lock) loses
 * nothing: the stanzas wait in memory, unwritten, and go out once a
 * retry commits them. */
static void test_outbox_commit_failure_retried(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  sqlite3_busy_timeout(bf__store_db(f->daemon.store), 0);
  sqlite3 *other = NULL;
  assert_int_equal(sqlite3_open(f->db, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  bf_xml *m = message("kept-while-locked.");
  assert_int_equal(f->gw->host.send_durable(&f->gw->host, m), 0);
  bf_xml_free(m);
  struct wait_text w = {f, "kept-while-locked.", 1};
  assert_false(bf_test_run_until(&f->loop, seen, &w, 300));
  assert_true(f->gw->outbox_failing);
  assert_int_equal(f->gw->n_staged, 1);
  /* A plain send does not wait for the database. */
  bf_xml *plain = message("plain-meanwhile.");
  assert_int_equal(f->gw->host.send(&f->gw->host, plain), 0);
  bf_xml_free(plain);
  struct wait_text wp = {f, "plain-meanwhile.", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &wp, 3000));
  assert_int_equal(count(f->server.in, "kept-while-locked."), 0);

  assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_close(other), SQLITE_OK);
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  assert_false(f->gw->outbox_failing);
  assert_int_equal(f->gw->n_staged, 0);
  assert_int_equal(outbox_rows(f), 1);
  fixture_stop(f);
}

static unsigned drained_calls;

static bool drained_once(void *data) { return *(unsigned *)data >= 1; }

static void on_drained_probe(void *state) {
  (void)state;
  drained_calls++;
}

/* host->writable goes false past half the write queue's cap and the
 * module's on_drained follows once the queue has drained. */
static void test_writable_and_drained(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  /* The echo module with an on_drained probe. */
  static bf_module probe;
  probe = *f->gw->module.module;
  probe.on_drained = on_drained_probe;
  f->gw->module.module = &probe;
  drained_calls = 0;
  const bf_host *h = &f->gw->host;
  assert_true(h->writable(h)); /* offline: nothing to wait for */
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  f->gw->component.opt.write_queue_max = 16 * 1024;
  char body[1024];
  memset(body, 'x', sizeof body - 1);
  body[sizeof body - 1] = '\0';
  bf_xml *m = message(body);
  int sent = 0;
  while (h->writable(h)) {
    assert_int_equal(h->send(h, m), 0);
    sent++;
  }
  bf_xml_free(m);
  assert_true(sent >= 7 && sent <= 9);
  assert_int_equal(drained_calls, 0);
  assert_true(bf_test_run_until(&f->loop, drained_once, &drained_calls, 3000));
  assert_true(h->writable(h));
  fixture_stop(f);
}

/* Whitespace keepalive (RFC 6120 §4.6.1) after keepalive_interval of
 * write silence. */
static void test_whitespace_keepalive(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  f->gw->component.opt.keepalive_s = 1;
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  size_t before = f->server.in_len;
  uint64_t t0 = uv_now(&f->loop);
  struct wait_text w = {f, "</handshake> ", 1};
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  uint64_t waited = uv_now(&f->loop) - t0;
  assert_true(waited >= 900);
  assert_int_equal(f->server.in_len, before + 1); /* one space, nothing else */
  fixture_stop(f);
}

static void on_module_timer(void *data) { (*(int *)data)++; }

/* What a module gets through its host table: versioned tables of its own,
 * a private key-value store, timers. */
static void test_host_storage_and_timers(void **state) {
  fixture *f = *state;
  fixture_start(f, "s3cret");
  const bf_host *h = &f->gw->host;
  static const char *const migrations[] = {
      "CREATE TABLE echo_seen(jid TEXT PRIMARY KEY)",
      "ALTER TABLE echo_seen ADD COLUMN count INTEGER DEFAULT 0",
  };
  assert_int_equal(h->schema(h, migrations, 2), 0);
  assert_int_equal(h->schema(h, migrations, 2), 0); /* idempotent */
  assert_int_equal(bf__store_schema_version(f->daemon.store, "mod:echo"), 2);
  assert_int_equal(sqlite3_exec(h->db(h), "INSERT INTO echo_seen(jid) VALUES ('a')",
                                NULL, NULL, NULL), 0);

  char *value = NULL;
  size_t len = 0;
  assert_int_equal(h->kv_get(h, "missing", &value, &len), BF_ENOENT);
  assert_int_equal(h->kv_set(h, "k", "v\0w", 3), 0);
  assert_int_equal(h->kv_get(h, "k", &value, &len), 0);
  assert_int_equal(len, 3);
  assert_memory_equal(value, "v\0w", 3);
  free(value);
  /* private to this gateway: another namespace doesn't see it */
  assert_int_equal(bf__store_kv_get(f->daemon.store, "gw:other.localhost", "k",
                                    &value, &len), BF_ENOENT);
  assert_int_equal(h->kv_delete(h, "k"), 0);
  assert_int_equal(h->kv_get(h, "k", &value, &len), BF_ENOENT);

  int fired_once = 0, fired_repeat = 0, never = 0;
  uint64_t once_id, repeat_id, cancelled_id;
  assert_int_equal(h->timer_start(h, 10, 0, on_module_timer, &fired_once, &once_id), 0);
  assert_int_equal(h->timer_start(h, 10, 10, on_module_timer, &fired_repeat, &repeat_id), 0);
  assert_int_equal(h->timer_start(h, 50, 0, on_module_timer, &never, &cancelled_id), 0);
  h->timer_stop(h, cancelled_id);
  uint64_t end = uv_now(&f->loop) + 200;
  while (uv_now(&f->loop) < end) {
    uv_run(&f->loop, UV_RUN_ONCE);
    uv_update_time(&f->loop);
  }
  assert_int_equal(fired_once, 1);
  assert_true(fired_repeat >= 5);
  assert_int_equal(never, 0);
  /* the repeating one is still running: stopping the gateway releases it
   * (fixture_stop checks that no handle is left) */
  fixture_stop(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_digest_vectors),
      cmocka_unit_test_setup_teardown(test_outbox_confirmed_by_ping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outbox_survives_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_access_control, setup, teardown),
      cmocka_unit_test_setup_teardown(test_probes_after_reconnect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_user_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_routing_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_jid_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_whitespace_keepalive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_host_storage_and_timers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outbox_replay_backpressure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_secret_retries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outbox_one_commit_per_iteration, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outbox_order_with_plain_send, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outbox_commit_failure_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writable_and_drained, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
