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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "error.h"
#include "form.h"
#include "jid.h"
#include "xml.h"

#define BF_MODULE_ABI_VERSION 3u
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
   * reconnect or restart otherwise. stanza: borrowed (serialized before
   * return). Returns 0 once it is accepted: the durable stanzas of one
   * loop iteration are committed together, in one transaction, at the
   * start of the next iteration (or before a later send, which keeps the
   * order in which they were sent), and none is written before its
   * commit; a failing commit keeps them in memory and is retried.
   * BF_EINVAL as for send, BF_E2BIG over max_stanza_size, BF_EIO without
   * a database or while it fails and 1 MiB is already waiting. */
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

  /* ---- version 2: gateway users -------------------------------------- */

  /* Registered users (XEP-0077). user: a bare JID string (borrowed).
   * user_get: the user's stored registration values, private fields
   * included (*values taken; free with bf_form_free); BF_ENOENT if the
   * user is not registered. user_set: changes one stored value (value
   * NULL removes it), e.g. after a nick change on the foreign side; copied.
   * BF_ENOENT if not registered. users_each: calls cb for every registered
   * user in JID order; cb returns non-zero to stop (that value is
   * returned). */
  int (*user_get)(const bf_host *host, const char *user, bf_form **values);
  int (*user_set)(const bf_host *host, const char *user, const char *var,
                  const char *value);
  int (*users_each)(const bf_host *host,
                    int (*cb)(void *data, const char *user), void *data);

  /* The user's available resources (full JIDs, borrowed, valid until the
   * next presence is processed) as tracked by the core: *resources gets
   * the array; returns how many (0 = offline). */
  size_t (*user_resources)(const bf_host *host, const char *user,
                           const char *const **resources);

  /* Publishes the presence of a contact (a JID at the gateway, e.g.
   * "bob%irc.net@GW", or just its localpart) to the user (bare JID): show
   * NULL = available, or "away", "chat", "dnd", "xa", or "unavailable";
   * status: text or NULL. The core sends it, remembers it and answers the
   * user's probes with it. Strings copied. */
  int (*contact_presence)(const bf_host *host, const char *user,
                          const char *contact, const char *show,
                          const char *status);
  /* Calls cb for each contact the user subscribed to (sees the presence
   * of), in JID order, e.g. to publish their presence when the user's
   * session starts. contact: borrowed for the call. cb returns non-zero
   * to stop (that value is returned). */
  int (*contacts_each)(const bf_host *host, const char *user,
                       int (*cb)(void *data, const char *contact), void *data);
  /* The contact asks to be in the user's roster (XEP-0100 §5.3): sends
   * <presence type='subscribe'/> from the contact, once per contact.
   * BF_E2BIG when the user has the most contacts a gateway stores
   * (10,000). */
  int (*contact_subscribe)(const bf_host *host, const char *user,
                           const char *contact);

  /* Message ids (XEP-0359/0184/0308): a bounded, persistent map per user
   * between XMPP ids (an origin-id, else the id attribute: see
   * bf_stanza_message_id) and foreign ids. Strings copied; the getters'
   * result is malloc'd (taken); BF_ENOENT if unknown. The oldest entries
   * are dropped past the gateway's message_ids limit. */
  int (*msgid_put)(const bf_host *host, const char *user, const char *xmpp_id,
                   const char *foreign_id);
  int (*msgid_foreign)(const bf_host *host, const char *user,
                       const char *xmpp_id, char **foreign_id);
  int (*msgid_xmpp)(const bf_host *host, const char *user,
                    const char *foreign_id, char **xmpp_id);

  /* True if jid (any JID; its bare part counts) is one of [babelfish]
   * admins. */
  bool (*is_admin)(const bf_host *host, const bf_jid *jid);

  /* ---- version 3: back-pressure -------------------------------------- */

  /* False while the stream is up and its write queue is past half its
   * cap (where send is close to BF_ENOBUFS): a module that turns foreign
   * input into stanzas should stop reading that input until the module's
   * on_drained is called. True when the stream is down (send fails with
   * BF_ENOTCONN then; send_durable stores; on_offline ends a wait). */
  bool (*writable)(const bf_host *host);
};

/* ---- ad-hoc commands (XEP-0050) -------------------------------------- */

/* Where a command is offered, and to whom. */
enum bf_command_flags {
  BF_COMMAND_ON_GATEWAY = 1u << 0,  /* on the bare gateway domain */
  BF_COMMAND_ON_CONTACT = 1u << 1,  /* on JIDs at the gateway (filtered by
                                       the command's 'applies') */
  BF_COMMAND_ADMIN = 1u << 2,       /* [babelfish] admins only; others get
                                       forbidden */
  BF_COMMAND_REGISTERED = 1u << 3,  /* registered users only */
};

enum bf_note_type { BF_NOTE_INFO = 0, BF_NOTE_WARN, BF_NOTE_ERROR };

/* One run of one step of a command. Everything borrowed for the call. */
typedef struct bf_command_call {
  const bf_jid *from;          /* the user's full JID */
  const bf_jid *to;            /* the JID the command was run on */
  unsigned step;               /* 0 when started, then the next_step the
                                  previous reply set */
  const bf_form *form;         /* step > 0: the form the user submitted,
                                  already checked against the fields the
                                  previous step asked for; NULL at step 0 */
  bf_form *data;               /* kept across the steps of one session
                                  (store values with bf_form_set); owned by
                                  the core */
  bool chat;                   /* run from a chat message: no form can be
                                  shown, the reply's text is sent back */
  const char *args;            /* chat: the words after the command's name
                                  ("" if none); NULL otherwise */
} bf_command_call;

/* What a step answers. The core fills it with zeros before the call. */
typedef struct bf_command_reply {
  /* Ask for a form (the session goes on): fields non-NULL. fields,
   * their options, title, instructions: copied when run returns (so
   * fields may be built per call in the module's state, e.g. a list of
   * the user's connections);
   * values: current values to show; read after run returns, so keep them
   * in call->data (the core owns it) or in static storage. */
  const bf_field *fields;
  size_t n_fields;
  const char *title;
  const char *instructions;
  const bf_form *values;
  unsigned next_step;
  /* Finish (fields NULL): a note and/or a result form. result: taken;
   * result_fields (may be NULL) give its fields' types and labels. */
  enum bf_note_type note_type;
  char note[1024];
  bf_form *result;
  const bf_field *result_fields;
  size_t n_result_fields;
} bf_command_reply;

typedef struct bf_command {
  const char *node;            /* XEP-0050 node, [a-z0-9-]; also the chat
                                  command's name */
  const char *name;            /* shown in clients' command lists */
  unsigned flags;              /* bf_command_flags; 0 = on the gateway */
  /* Only for BF_COMMAND_ON_CONTACT: is it offered on this JID? NULL = on
   * every JID at the gateway. */
  bool (*applies)(void *state, const bf_jid *user, const bf_jid *to);
  /* Runs one step. Returns 0 (the reply says what to show), or BF_EPERM
   * (forbidden), BF_ENOENT (item-not-found), BF_EINVAL (bad-request), or
   * another error (internal-server-error). A refusal the user should read
   * is better a BF_NOTE_ERROR note and 0. */
  int (*run)(void *state, const bf_command_call *call,
             bf_command_reply *reply);
} bf_command;

/* Flags of a module (bf_module.flags). */
enum bf_module_flags {
  /* Only registered users may use contacts at the gateway; others get
   * registration-required. */
  BF_MODULE_REGISTRATION_REQUIRED = 1u << 0,
};

/* ---- the module descriptor --------------------------------------------- */

typedef struct bf_module {
  uint32_t abi_version;        /* BF_MODULE_ABI_VERSION; always first.
                                  Version 1 ends with on_offline, version 2
                                  with n_commands, version 3 with
                                  on_drained. */
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

  /* ---- version 2: gateway users -------------------------------------- */
  unsigned flags;              /* bf_module_flags */

  /* Registration (XEP-0077): the fields of the form and the instructions
   * above it. With no fields, registering just makes one a user. */
  const bf_field *register_fields;
  size_t n_register_fields;
  const char *register_instructions;
  /* A registration or a change of it, before it is stored. values: checked
   * against register_fields; a private field submitted empty keeps its
   * stored value (XEP-0077 §3.3: an empty password changes nothing).
   * is_new: a first registration. Return 0 to store it, or BF_EINVAL
   * (not-acceptable) / BF_EEXIST (conflict) with a message for the user in
   * err. NULL = accept everything the form allows. */
  int (*on_register)(void *state, const bf_jid *user, const bf_form *values,
                     bool is_new, char *err, size_t err_size);
  /* The user unregistered (after on_session_stop if they were online):
   * delete what the module keeps for them. The core deletes its own rows
   * (registration, contacts, message ids). */
  void (*on_unregister)(void *state, const bf_jid *user);

  /* XEP-0100 jabber:iq:gateway: the prompt shown to the user and a
   * description, and the localpart for a foreign address the user typed
   * (written to local, NUL-terminated; XEP-0106 escaping is the module's
   * job). Returns 0, or BF_EINVAL with a message in local. NULL: the
   * address, XEP-0106-escaped. */
  const char *gateway_prompt;
  const char *gateway_desc;
  int (*gateway_address)(void *state, const char *address, char *local,
                         size_t size);

  /* Sessions: a registered user's first resource came online (start), and
   * the last one went offline, they unregistered or babelfish stops
   * (stop). user: bare JID. A module in bouncer mode may keep its foreign
   * connection after stop. on_resource: every resource that comes or goes
   * (full JID), after start and before stop. */
  void (*on_session_start)(void *state, const bf_jid *user);
  void (*on_session_stop)(void *state, const bf_jid *user);
  void (*on_resource)(void *state, const bf_jid *resource, bool available);

  /* The user asks to see a contact's presence (subscribe to a JID at the
   * gateway). Return 0 to accept (the core answers subscribed, stores it
   * and sends the contact's presence), BF_EPERM to refuse (unsubscribed).
   * NULL = accept for registered users. */
  int (*on_subscribe)(void *state, const bf_jid *user, const bf_jid *contact);

  /* Ad-hoc commands (also chat commands to the gateway when they need no
   * form at step 0). */
  const bf_command *commands;
  size_t n_commands;

  /* ---- version 3: back-pressure -------------------------------------- */

  /* The write queue has drained (to a quarter of its cap) after
   * host->writable returned false or a send failed with BF_ENOBUFS:
   * input paused for it may be read again. */
  void (*on_drained)(void *state);
} bf_module;

/* A yes/no value of a config key, the same for every transport: yes,
 * true, on, 1 / no, false, off, 0 (any case). 0 with *out set; BF_ENOENT
 * for NULL (the key is not set: *out keeps its default); BF_EINVAL for
 * anything else (*out unchanged). */
int bf_config_bool(const char *value, bool *out);

#endif
