/* A fake XMPP server for the unit tests: the server side of one XEP-0114
 * component stream (jabber:component:accept) on the test's own libuv loop,
 * so a real gateway can be driven through its real socket.
 *
 * It listens on 127.0.0.1 (a free port), takes one connection at a time,
 * answers the stream header, checks the handshake digest against secret
 * (XEP-0114 §3) and from then on only collects what it reads in `in`, for
 * the test to search; with answer_pings it also answers the gateway's
 * XEP-0199 pings. Failures are cmocka assertions, so it is for tests only. */
#ifndef BF_TEST_FAKE_SERVER_H
#define BF_TEST_FAKE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"

typedef struct bf_test_server {
  uv_loop_t *loop;     /* borrowed */
  uv_tcp_t listener;
  uv_tcp_t client;     /* the current connection, while client_open */
  bool client_open;
  bool handshaken;     /* the current connection passed the handshake */
  bool answer_pings;   /* set by the test: answer XEP-0199 pings */
  bool bad_handshake_seen; /* a digest did not match; that stream was refused */
  unsigned connections;    /* connections accepted so far */
  unsigned pings_answered;
  const char *secret;  /* borrowed; "s3cret" unless the test sets another */
  /* What was received on the current connection (NUL-terminated): reset
   * on each new connection and by bf_test_server_clear. */
  char in[1 << 20];
  size_t in_len;
  size_t scanned;      /* where the ping scan goes on from */
} bf_test_server;

/* Starts listening on a free port of 127.0.0.1 and returns it. s: borrowed,
 * zeroed here, and must stay where it is until the loop has closed its
 * handles (it embeds them; the listener is closed by bf_test_server_close
 * or by the test with uv_close). loop: borrowed. */
unsigned bf_test_server_start(bf_test_server *s, uv_loop_t *loop);

/* Writes text to the current connection (nothing if there is none).
 * s: borrowed; text: copied. */
void bf_test_server_send(bf_test_server *s, const char *text);

/* Closes the current connection, as a server going away would; the
 * listener stays, so the gateway may reconnect. s: borrowed. */
void bf_test_server_drop(bf_test_server *s);

/* Closes the connection and the listener; run the loop afterwards so the
 * handles finish closing. s: borrowed. */
void bf_test_server_close(bf_test_server *s);

/* Forgets what was received so far (in, in_len and the ping scan), so the
 * test's next searches see only what comes after. s: borrowed. */
void bf_test_server_clear(bf_test_server *s);

/* Runs loop until cond(data) holds (true) or timeout_ms pass (false).
 * loop, data: borrowed. Leaves no handle of its own behind. */
bool bf_test_run_until(uv_loop_t *loop, bool (*cond)(void *data), void *data,
                       uint64_t timeout_ms);

/* Fills conf and gw (zeroed first) with the settings of a daemon whose one
 * gateway, echo.localhost on the XMPP server "localhost" (users there are
 * allowed), connects to the fake server on port with secret (borrowed; it
 * must outlive conf). Tests then change what they need (section,
 * entries, admins). conf->gateways points at gw. */
void bf_test_gateway_conf(bf_conf *conf, bf_conf_gateway *gw, unsigned port,
                          const char *secret);

#endif
