/* Private: a gateway is one config section: a component connection, the
 * transport module serving it, and the host table the module uses. The
 * daemon is the set of gateways sharing one loop, store and HTTP client. */
#ifndef BF_GATEWAY_H
#define BF_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "babelfish/module.h"
#include "component.h"
#include "conf.h"
#include "http.h"
#include "module.h"
#include "store.h"
#include "users.h"

/* Room for a typical JID on the stack (bf_jid_parse_buf): the hot path
 * parses two per stanza each way. */
#define BF_JID_STACK_BUFFER 512
#define BF_JID_CACHE_SIZE 8

typedef struct bf_gateway bf_gateway;
typedef struct bf_gateway_timer bf_gateway_timer;

typedef struct bf_daemon {
  uv_loop_t *loop;
  const bf_conf *conf;
  bf_store *store;             /* NULL in --check-config */
  bf_http *http;               /* NULL in --check-config */
  bf_gateway **gateways;
  size_t n_gateways;
  uint64_t started_ms;
  /* What SIGHUP does (the admins' "reload" command runs it too): reopen
   * the log, apply what can change without reconnecting. Writes a summary
   * for the user to msg. 0 or an error. NULL in tests. */
  int (*reload)(struct bf_daemon *daemon, char *msg, size_t msg_size);
} bf_daemon;

struct bf_gateway {
  bf_host host;                /* handed to the module; container_of */
  bf_daemon *daemon;
  const bf_conf_gateway *conf;
  bf_module_ref module;
  void *state;                 /* the module instance */
  bool module_started;
  bool component_started;
  bool stopping;
  void (*on_stopped)(bf_gateway *gw);
  bf_component component;
  char *kv_namespace;          /* "gw:" domain */
  char *schema_owner;          /* "mod:" transport */

  bf_gateway_timer *timers;
  uint64_t next_timer_id;

  /* XEP-0199 pings to the server: liveness, and confirmation of the
   * durable outbox (a reply proves every stanza before the ping on this
   * stream was processed). */
  uv_timer_t ping_timer;
  bool ping_timer_open;
  bool ping_outstanding;
  char ping_id[64];
  int64_t ping_covers;         /* outbox id the outstanding ping confirms */
  uint64_t ping_count;
  int64_t outbox_written;      /* highest outbox id written on this stream */
  bool outbox_replaying;       /* rows remain that are not written yet */

  /* Durable stanzas accepted and not yet committed: serialized one after
   * the other in outbox_staged, their lengths in staged_len. outbox_timer
   * (timeout 0: the next loop iteration, or a retry delay after a failed
   * commit) stores them in one transaction, then writes them: one commit
   * per loop iteration instead of one per stanza. */
  bf_buf outbox_staged;
  size_t *staged_len;
  size_t n_staged, staged_cap;
  uv_timer_t outbox_timer;
  bool outbox_timer_open;
  bool outbox_failing;         /* the last commit failed (logged once) */
  int64_t outbox_ack_upto;     /* confirmed by a ping: deleted by the next
                                  commit (0: nothing to delete) */

  /* JIDs recently prepared, raw form -> prepared parts, so the same
   * addresses are not prepared again and again: replies go to the JID a
   * stanza came from, and a transport talks to the same few users. */
  struct bf_jid_cache_entry {
    char *mem;                 /* raw\0 local\0 domain\0 resource\0 */
    size_t raw_len;
    size_t prepared_len;       /* bytes after raw\0 */
    int domain_at;             /* offsets in the prepared part */
    int resource_at;           /* -1: none */
    bool has_local;
    bool ours;                 /* its domain is the gateway's */
  } jid_cache[BF_JID_CACHE_SIZE];
  unsigned jid_cache_next;

  bf_users users;              /* users.h */

  /* statistics */
  uint64_t errors_sent;
  uint64_t oversize;
};

/* The module's version-2 fields (gateway users), or NULL for a module
 * built against ABI version 1, which does not have them. */
static inline const bf_module *bf__gateway_module_v2(const bf_gateway *gw) {
  const bf_module *m = gw->module.module;
  return m->abi_version >= 2 ? m : NULL;
}

/* The module's version-3 fields (on_drained), or NULL. */
static inline const bf_module *bf__gateway_module_v3(const bf_gateway *gw) {
  const bf_module *m = gw->module.module;
  return m->abi_version >= 3 ? m : NULL;
}

/* Creates a gateway for a config section and loads its module; does not
 * connect. err: "FILE:LINE: message" on failure. */
int bf__gateway_new(bf_gateway **gw, bf_daemon *daemon,
                    const bf_conf_gateway *conf, char *err, size_t err_size);
/* Checks the section's keys against the module (see module.h). */
int bf__gateway_check(bf_gateway *gw, char *err, size_t err_size);
/* Starts the module and connects. 0 or an error (logged). */
int bf__gateway_start(bf_gateway *gw);
/* Stops the module, closes the stream gracefully; on_stopped runs when all
 * its handles are closed. */
void bf__gateway_stop(bf_gateway *gw, void (*on_stopped)(bf_gateway *gw));
/* Frees; after on_stopped (or if never started). */
void bf__gateway_free(bf_gateway *gw);

/* Sends to the server through the single outbound check: 'from' must be
 * the gateway's domain or a JID at it, 'to' a valid JID (protocol notes
 * §1.4: anything else is a stream error that drops every user). */
int bf__gateway_send(bf_gateway *gw, const bf_xml *stanza);

/* Commits the staged durable stanzas now and writes them (see
 * outbox_staged). 0, or the store's error (they stay staged and are
 * retried). */
int bf__gateway_outbox_commit(bf_gateway *gw);

/* bf__gateway_send, then frees stanza (NULL allowed: nothing sent). */
void bf__gateway_send_free(bf_gateway *gw, bf_xml *stanza);
/* Answers stanza with an error (RFC 6120 §8.3), never an error or a result
 * (§8.3.1): condition, optional text, and an optional application-specific
 * condition <app xmlns='app_ns'/>. From the address stanza was sent to, or
 * the gateway domain if that was not a JID at it. Counted in errors_sent. */
void bf__gateway_reply_error(bf_gateway *gw, const bf_xml *stanza,
                             const char *condition, const char *text,
                             const char *app, const char *app_ns);

/* bf_jid_parse_buf through the gateway's cache of recent JIDs. */
int bf__gateway_jid_parse(bf_gateway *gw, const char *str, bf_jid *jid,
                          char *buf, size_t size);

/* router.c: what happens to a stanza from the server. stanza: taken. */
void bf__router_dispatch(bf_gateway *gw, bf_xml *stanza);
/* router.c: the answer to an oversized request. top: borrowed. */
void bf__router_oversize(bf_gateway *gw, const bf_xml *top, size_t size);
/* gateway.c: true if stanza was the answer to one of our pings (consumed). */
bool bf__gateway_ping_reply(bf_gateway *gw, const bf_xml *stanza);

#endif
