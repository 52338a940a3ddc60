/* Private: one XEP-0114 component connection (jabber:component:accept) on
 * the libuv loop: resolve, connect, stream header, handshake, stanzas both
 * ways, stream errors, reconnect with exponential backoff and jitter,
 * whitespace keepalive and a capped write queue with back-pressure.
 *
 * What the connection does not know: what stanzas mean. It hands them to
 * its owner (the gateway) through the callbacks. */
#ifndef BF_COMPONENT_H
#define BF_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "babelfish/xml.h"
#include "buf.h"
#include "xml.h"

typedef struct bf_component bf_component;

typedef struct bf_component_callbacks {
  /* The handshake succeeded; stanzas may be sent. */
  void (*online)(bf_component *c);
  /* The stream was lost or closed (called only after online). */
  void (*offline)(bf_component *c);
  /* A stanza from the server. stanza: taken. */
  void (*stanza)(bf_component *c, bf_xml *stanza);
  /* A stanza over max_stanza_size was skipped; top: borrowed, without
   * children. */
  void (*oversize)(bf_component *c, const bf_xml *top, size_t size);
  /* The write queue fell below a quarter of its cap after having been
   * over half of it. */
  void (*drained)(bf_component *c);
  /* Stopped for good after bf__component_stop: handles are closed. */
  void (*stopped)(bf_component *c);
} bf_component_callbacks;

typedef struct bf_component_options {
  const char *tag;           /* log tag (section name); borrowed, kept */
  const char *server;        /* host or address; borrowed, kept */
  unsigned port;
  const char *domain;        /* component domain; borrowed, kept */
  const char *secret;        /* shared secret; borrowed, kept, never logged */
  size_t max_stanza_size;
  unsigned max_depth;
  size_t write_queue_max;
  unsigned keepalive_s;      /* whitespace after this much write silence */
  unsigned reconnect_min_s;
  unsigned reconnect_max_s;
} bf_component_options;

enum bf_component_state {
  BF_COMPONENT_IDLE,         /* not started, or waiting to reconnect */
  BF_COMPONENT_CONNECTING,   /* resolving or TCP connecting */
  BF_COMPONENT_OPENING,      /* header sent, waiting for the server's */
  BF_COMPONENT_HANDSHAKE,    /* handshake sent, waiting for <handshake/> */
  BF_COMPONENT_ONLINE,
  BF_COMPONENT_CLOSING,      /* closing the socket */
  BF_COMPONENT_STOPPED,
};

struct bf_component {
  uv_loop_t *loop;
  bf_component_options opt;
  const bf_component_callbacks *cb;
  void *data;                /* the owner's */

  enum bf_component_state state;
  bool stopping;             /* bf__component_stop was called */
  bool handles_closing;      /* timers and flusher are being closed */
  uv_tcp_t tcp;
  bool tcp_open;             /* tcp is initialised and not yet closed */
  uv_getaddrinfo_t resolver;
  bool resolving;
  uv_connect_t connect_req;
  uv_timer_t timer;          /* backoff, handshake timeout, close timeout */
  uv_timer_t keepalive;
  uv_idle_t flusher;         /* one write per loop iteration */
  unsigned open_handles;     /* handles not yet closed, for stopped */

  bf_xml_stream *parser;
  bf_buf pending;            /* serialized, not yet handed to uv_write */
  bf_buf inflight;           /* being written */
  uv_write_t write_req;
  bool writing;
  bool reading;
  bool throttled;            /* reads stopped for back-pressure */
  bool need_drain;           /* call cb->drained when the queue empties */
  bool reconnect_after_close;
  uint64_t last_write_ms;
  uint64_t online_since_ms;
  char *stream_id;
  char *read_buffer;         /* READ_BUFFER_SIZE bytes */
  unsigned seed;             /* for backoff jitter */

  unsigned attempts;         /* failed attempts since the last success */
  unsigned min_delay_s;      /* raised after conflict / auth failures */
  char *last_error;          /* last stream error condition, for hints */

  /* counters for stats */
  uint64_t stanzas_in, stanzas_out, bytes_in, bytes_out, connects;
};

/* Initialises c and starts connecting. opt strings: borrowed, kept (they
 * must outlive c). cb, data: kept. 0 or BF_ENOMEM. */
int bf__component_start(bf_component *c, uv_loop_t *loop,
                        const bf_component_options *opt,
                        const bf_component_callbacks *cb, void *data);

/* Queues a stanza for the server. stanza: borrowed (serialized now).
 * BF_ENOTCONN unless online, BF_ENOBUFS when the queue is over its cap,
 * BF_E2BIG when the stanza alone exceeds max_stanza_size. */
int bf__component_send(bf_component *c, const bf_xml *stanza);
/* Queues bytes that are already well-formed, serialized XML (outbox
 * rows). Same errors. */
int bf__component_send_raw(bf_component *c, const char *xml, size_t len);

/* Bytes queued and not yet written. */
size_t bf__component_queued(const bf_component *c);
bool bf__component_online(const bf_component *c);

/* Drops the connection (e.g. a ping timed out) and reconnects after the
 * backoff delay. reason: for the log. */
void bf__component_reconnect(bf_component *c, const char *reason);

/* Closes the stream gracefully (</stream:stream>, then the socket, within
 * a bounded time) and all handles; cb->stopped runs when done. */
void bf__component_stop(bf_component *c);

/* Frees what start allocated; only after cb->stopped. */
void bf__component_close(bf_component *c);

/* The handshake value (XEP-0114 §3): lowercase hex SHA-1 of stream id +
 * secret. out: 41 bytes. 0 or BF_EIO. */
int bf__component_handshake_digest(const char *stream_id, const char *secret,
                                   char out[41]);

#endif
