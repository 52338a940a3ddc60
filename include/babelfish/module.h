/* babelfish — the transport-module ABI.
 *
 * A transport is one const bf_module descriptor. Its first field is the ABI
 * version; fields are only ever appended, and BF_MODULE_ABI_VERSION grows
 * by one with each append (the sqlite3_vfs iVersion model): the core reads
 * only the fields that exist at the module's version, so a module built
 * against an older header keeps working, and a module newer than the core
 * is refused. The same holds for bf_host: a module must not use host
 * fields beyond host->abi_version. A NULL function pointer means "not
 * supported".
 *
 * The core gives each gateway instance of a module a bf_host: everything a
 * transport may use (send a stanza, the loop, timers, storage, HTTP, log,
 * its configuration section). A unit test can hand a module a fake host.
 *
 * Built-in modules are listed in src/module.c. An external module is a
 * shared object NAME.so in modules_dir that exports the data symbol
 * BF_MODULE_SYMBOL (a const bf_module); the loader reads abi_version before
 * anything else. It calls the bf_xml_…, bf_jid_… and bf_stanza_… functions,
 * which the babelfish executable exports.
 *
 * Ownership: "borrowed" pointers stay the caller's and are valid only for
 * the call; "copied" means the callee keeps its own copy; "taken" means
 * ownership moves to the callee.
 */
#ifndef BABELFISH_MODULE_H
#define BABELFISH_MODULE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "error.h"
#include "jid.h"
#include "xml.h"

#define BF_MODULE_ABI_VERSION 1u
#define BF_MODULE_SYMBOL "bf_module_entry"

#if defined(__GNUC__)
#define BF_EXPORT __attribute__((visibility("default")))
#define BF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BF_EXPORT
#define BF_PRINTF(f, a)
#endif

struct sqlite3;

enum bf_log_level {
  BF_LOG_ERROR = 0,
  BF_LOG_WARN = 1,
  BF_LOG_INFO = 2,
  BF_LOG_DEBUG = 3,
};

/* ---- HTTP client (libcurl multi on the libuv loop) ---------------------- */

typedef struct bf_http_request {
  const char *method;          /* "GET", "POST", …; NULL = GET (POST if body) */
  const char *url;             /* http:// or https:// (also smtp(s)://, imap(s)://) */
  const char *const *headers;  /* "Name: value", NULL-terminated; may be NULL */
  const char *body;            /* request body or NULL */
  size_t body_len;
  uint64_t timeout_ms;         /* whole transfer; 0 = 30 s */
  size_t max_response;         /* response body cap; 0 = 1 MiB */
} bf_http_request;

typedef struct bf_http_response {
  int rc;                      /* 0, BF_ETIMEDOUT, BF_E2BIG, BF_EIO, BF_ECANCELED… */
  long status;                 /* HTTP status, 0 if none was received */
  const char *body;            /* response body (NUL-terminated), borrowed */
  size_t body_len;
  const char *error;           /* human-readable cause when rc != 0, borrowed */
} bf_http_response;

/* Called once per transfer, on the loop. res: borrowed, valid during the
 * call only. */
typedef void (*bf_http_done_cb)(void *data, const bf_http_response *res);

typedef void (*bf_timer_cb)(void *data);

/* ---- host table: what the core offers a module ------------------------- */

typedef struct bf_host bf_host;

struct bf_host {
  uint32_t abi_version;        /* BF_MODULE_ABI_VERSION of the core */
  uv_loop_t *loop;             /* the one loop; borrowed */
  const char *section;         /* config section name, e.g. "irc" */
  const char *domain;          /* the gateway's component domain */

  /* Sends a stanza to the XMPP server now. stanza: borrowed (serialized
   * before return). 'from' must be the gateway domain or a JID at it and
   * 'to' must be a valid JID, else BF_EINVAL and nothing is written.
   * BF_ENOTCONN while the stream is down (nothing queued), BF_ENOBUFS when
   * the write queue is full. Use send_durable for anything that must not
   * be lost. */
  int (*send)(const bf_host *host, const bf_xml *stanza);

  /* Stores the stanza durably, then sends it when the stream is up. It is
   * deleted only once the server has confirmed it and re-sent after a
   * reconnect or restart otherwise. stanza: borrowed. Returns 0 once it is
   * committed to the database, BF_EINVAL as for send, BF_EIO. */
  int (*send_durable)(const bf_host *host, const bf_xml *stanza);

  /* The value of key in the gateway's config section, or NULL. Borrowed;
   * valid until the module is closed. */
  const char *(*config)(const bf_host *host, const char *key);

  /* Logs one line tagged with the section name. Never pass secrets. */
  void (*log)(const bf_host *host, int level, const char *fmt, ...)
      BF_PRINTF(3, 4);

  /* Timers on the loop. A one-shot timer (repeat_ms 0) is released after
   * its callback; a repeating one by timer_stop. *id: set to a non-zero
   * handle. All of a module's timers are stopped before its close. */
  int (*timer_start)(const bf_host *host, uint64_t timeout_ms,
                     uint64_t repeat_ms, bf_timer_cb cb, void *data,
                     uint64_t *id);
  void (*timer_stop)(const bf_host *host, uint64_t id);

  /* Storage: the shared SQLite handle (borrowed; use it on the loop thread
   * only), module-owned schema migrations and a key-value store private to
   * this gateway. schema: migrations[i] is the SQL that takes the module's
   * schema from version i to i+1; those not applied yet run in order, each
   * in a transaction. kv_get: *value malloc'd (taken), NUL-terminated,
   * *len its size; BF_ENOENT if absent. */
  struct sqlite3 *(*db)(const bf_host *host);
  int (*schema)(const bf_host *host, const char *const *migrations,
                unsigned count);
  int (*kv_get)(const bf_host *host, const char *key, char **value,
                size_t *len);
  int (*kv_set)(const bf_host *host, const char *key, const void *value,
                size_t len);
  int (*kv_delete)(const bf_host *host, const char *key);

  /* Starts an HTTP (or SMTP/IMAP) transfer; cb runs exactly once unless
   * this returns an error. req and its strings: copied. *id: non-zero
   * handle for http_cancel (cb then gets BF_ECANCELED). */
  int (*http_request)(const bf_host *host, const bf_http_request *req,
                      bf_http_done_cb cb, void *data, uint64_t *id);
  void (*http_cancel)(const bf_host *host, uint64_t id);
};

/* ---- the module descriptor --------------------------------------------- */

typedef struct bf_module {
  uint32_t abi_version;        /* BF_MODULE_ABI_VERSION; always first.
                                  Version 1 ends with on_offline. */
  const char *name;            /* "transport = NAME" */
  const char *description;     /* one line, shown in disco and --version */
  const char *disco_type;      /* XEP-0030 gateway identity type, e.g. "irc" */
  const char *const *features; /* extra disco#info features; NULL-terminated */
  const char *const *config_keys; /* section keys it accepts; NULL-terminated */

  /* Validates the section (host->config) before start-up. On error writes
   * a message to err and returns BF_EINVAL; *bad_key (borrowed) names the
   * offending key so the error can cite its line, or NULL. */
  int (*check_config)(const bf_host *host, char *err, size_t err_size,
                      const char **bad_key);

  /* Starts one gateway instance. host: borrowed, valid until close
   * returns. *state: the instance, passed to every other callback. */
  int (*init)(const bf_host *host, void **state);

  /* Ends the instance; the loop still runs, timers are already stopped. */
  void (*close)(void *state);

  /* A stanza from the server addressed to the gateway domain or a JID at
   * it, except those the core answers itself (disco, version and ping on
   * the bare domain). stanza, from, to: borrowed (from and to are parsed
   * and normalised). Return 0 if handled (the module sent any reply), or
   * BF_ENOTSUP to let the core apply RFC 6120 defaults (an iq get/set gets
   * service-unavailable). */
  int (*on_stanza)(void *state, const bf_xml *stanza, const bf_jid *from,
                   const bf_jid *to);

  /* The component stream is authenticated / was lost. */
  void (*on_online)(void *state);
  void (*on_offline)(void *state);
} bf_module;

#endif
