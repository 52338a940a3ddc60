/* The echo transport — and the template to copy when starting a new one.
 *
 * What it does: a <message/> sent to any JID at the gateway's domain
 * (bob@echo.example.org, or bob@echo.example.org/res) comes back from that
 * JID to the sender, with the same type, body, subject and thread. With
 * `durable = yes` in its section the answer goes through the durable
 * outbox (stored in SQLite until the server confirms it), the path every
 * real transport uses for what it accepted from its foreign network.
 *
 * Users who register (XEP-0077) get what a real transport gives its users:
 * their nickname before the echo, capitals if they asked, a fresh id on
 * each echo recorded in the message-id map so that delivery receipts
 * (XEP-0184) and corrections (XEP-0308) work, a message counter kept in
 * storage, and echo contacts in their roster that show as available.
 * Unregistered senders get the plain echo (same id as their message).
 *
 * How a transport is put together:
 *   1. One `const bf_module` descriptor (at the bottom): ABI version first,
 *      then names, disco type, config keys and callbacks. NULL callbacks
 *      mean "not supported". Fill every field of the ABI version you
 *      declare, NULL where unused, so a reader sees what you left out.
 *   2. `init` gets a bf_host: the core's services (send stanzas, loop,
 *      timers, storage, HTTP, log, config; from version 2 users, presence
 *      and message ids). Keep the pointer; it is valid until `close`
 *      returns. Allocate your per-gateway state there, and check that the
 *      core offers the host fields you use (host->abi_version).
 *   3. `on_stanza` gets every stanza for your domain that the core did not
 *      answer itself. Return 0 when you handled it (and sent any reply),
 *      BF_ENOTSUP to let the core apply the RFC 6120 defaults.
 *   4. Build stanzas with bf_xml_…; the core checks 'from' (must be at your
 *      domain) and 'to' before anything is written, and the serializer
 *      makes any text safe for XML.
 *   5. Users (ABI version 2): declare registration fields and the core runs
 *      XEP-0077 and stores the values (host->user_get reads them back);
 *      the core tracks presence and tells you when a user's session starts
 *      and stops (where a real transport logs in to its foreign network);
 *      commands are declared as data and the core runs XEP-0050 for them.
 *
 * Built in: listed in src/module.c. As an external module (this same file
 * compiled with -DBF_MODULE_EXTERNAL into NAME.so, see CMakeLists.txt) it
 * exports BF_MODULE_SYMBOL and is found in modules_dir by `transport = NAME`.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include <babelfish/babelfish.h>

#ifndef BF_ECHO_NAME
#define BF_ECHO_NAME "echo"
#endif

/* XEP-0184 §3 and XEP-0308 §3. */
#define NS_RECEIPTS "urn:xmpp:receipts"
#define NS_CORRECT "urn:xmpp:message-correct:0"

/* Per-gateway state: one per config section using this transport. */
typedef struct echo {
  const bf_host *host;  /* borrowed; valid until echo_close */
  const char *prefix;   /* borrowed from the config: prepended to bodies,
                           followed by a space */
  bool durable;
  unsigned long echoed;
  uint64_t ids;         /* message ids made so far (make_id) */
} echo;

/* The section keys this transport accepts besides the core's (transport,
 * domain, secret, server, port, xmpp_domain, allowed, message_ids).
 * Anything else is a config error that names its line. */
static const char *const echo_config_keys[] = {"prefix", "durable", NULL};

/* Extra disco#info features of the gateway (XEP-0030): what clients may
 * use with it. The core adds the ones it implements itself (register,
 * commands, gateway). */
static const char *const echo_features[] = {NS_RECEIPTS, NS_CORRECT, NULL};

/* The registration form (XEP-0077 with a XEP-0004 form). The core shows
 * it, checks what comes back against it (types, lengths, required) and
 * stores the values; on_register below adds the module's own rules. A
 * text-private field is never sent back to the user, not even to the user
 * who set it: an empty submission keeps the stored value. */
static const bf_field echo_register_fields[] = {
    {.var = "nick",
     .type = BF_FIELD_TEXT_SINGLE,
     .label = "Nickname",
     .desc = "Shown before your echoed messages",
     .max_length = 64},
    {.var = "password",
     .type = BF_FIELD_TEXT_PRIVATE,
     .label = "Password (only to show private fields are never sent back)"},
    {.var = "shout",
     .type = BF_FIELD_BOOLEAN,
     .label = "Echo in capitals",
     .default_value = "0"},
};

/* True if needle (ASCII) occurs in haystack, ignoring ASCII case. Written
 * out because strcasestr is a GNU extension. */
static bool contains_nocase(const char *haystack, const char *needle) {
  size_t n = strlen(needle);
  for (; *haystack; haystack++)
    if (strncasecmp(haystack, needle, n) == 0)
      return true;
  return false;
}

/* Validation at start-up and by --check-config: say what is wrong and how
 * to fix it; name the key so the error cites its line. */
static int echo_check_config(const bf_host *host, char *err, size_t err_size,
                             const char **bad_key) {
  bool durable;
  const char *value = host->config(host, "durable");
  if (value && bf_config_bool(value, &durable) != 0) {
    snprintf(err, err_size, "durable must be yes or no, not '%s'", value);
    *bad_key = "durable";
    return BF_EINVAL;
  }
  const char *prefix = host->config(host, "prefix");
  if (prefix && strlen(prefix) > 256) {
    snprintf(err, err_size, "prefix is longer than 256 bytes");
    *bad_key = "prefix";
    return BF_EINVAL;
  }
  return 0;
}

static int echo_init(const bf_host *host, void **state) {
  /* A module may use only the host fields of host->abi_version (module.h).
   * This one needs version 2 (users, presence, message ids); it could
   * instead leave those features out on an older core. */
  if (host->abi_version < 2) {
    host->log(host, BF_LOG_ERROR,
              "this transport needs babelfish module ABI 2 or later, the "
              "daemon offers %" PRIu32 ": upgrade babelfish",
              host->abi_version);
    return BF_ENOTSUP;
  }
  echo *e = calloc(1, sizeof *e);
  if (!e)
    return BF_ENOMEM;
  e->host = host;
  e->prefix = host->config(host, "prefix");
  (void)bf_config_bool(host->config(host, "durable"), &e->durable);
  *state = e;
  return 0;
}

static void echo_close(void *state) {
  echo *e = state;
  e->host->log(e->host, BF_LOG_INFO, "echoed %lu messages", e->echoed);
  free(e);
}

/* ---- users ---------------------------------------------------------------
 * The core keeps the registrations; the module only says what the form is
 * and what it accepts, and is told about sessions. */

/* Module-specific rules on top of the form's (XEP-0077 §3.2: refused with
 * not-acceptable and our message). A real transport would check the
 * credentials against its network here. values: already checked against
 * echo_register_fields. */
static int echo_on_register(void *state, const bf_jid *user,
                            const bf_form *values, bool is_new, char *err,
                            size_t err_size) {
  (void)state;
  (void)user;
  (void)is_new;
  const char *nick = bf_form_value(values, "nick");
  if (nick && contains_nocase(nick, "admin")) {
    snprintf(err, err_size, "That nickname is reserved");
    return BF_EINVAL;
  }
  return 0;
}

/* The kv key of a user's message counter: "count:" + bare JID. malloc'd,
 * NULL on ENOMEM. */
static char *count_key(const char *bare) {
  size_t len = strlen(bare);
  char *key = malloc(sizeof "count:" + len);
  if (key) {
    memcpy(key, "count:", sizeof "count:" - 1);
    memcpy(key + sizeof "count:" - 1, bare, len + 1);
  }
  return key;
}

/* The user's stored counter (0 if none). */
static unsigned long count_get(echo *e, const char *bare) {
  unsigned long n = 0;
  char *key = count_key(bare), *value = NULL;
  size_t len;
  if (key && e->host->kv_get(e->host, key, &value, &len) == 0)
    n = strtoul(value, NULL, 10);
  free(value);
  free(key);
  return n;
}

/* One more echo for the user, in storage so it survives restarts. */
static void count_add(echo *e, const char *bare) {
  char *key = count_key(bare);
  char value[32];
  int len = snprintf(value, sizeof value, "%lu", count_get(e, bare) + 1);
  int rc = key ? e->host->kv_set(e->host, key, value, (size_t)len)
               : BF_ENOMEM;
  if (rc)
    e->host->log(e->host, BF_LOG_WARN, "could not store a message count: %s",
                 bf_strerror(rc));
  free(key);
}

/* What the module keeps for a user goes with the registration; the core
 * deletes its own rows (registration, contacts, message ids). */
static void echo_on_unregister(void *state, const bf_jid *user) {
  echo *e = state;
  char *bare = bf_jid_bare(user);
  char *key = bare ? count_key(bare) : NULL;
  int rc = key ? e->host->kv_delete(e->host, key) : BF_ENOMEM;
  if (rc)
    e->host->log(e->host, BF_LOG_WARN,
                 "could not delete a message count: %s", bf_strerror(rc));
  free(key);
  free(bare);
}

/* Sessions: where a real transport logs in to its foreign network (start)
 * and out (stop). The echo has no network, so it only logs; the e2e tests
 * read these lines. JIDs are fine in a log, registration values (the
 * password above all) never are. */
static void log_jid(echo *e, const char *what, const bf_jid *jid, bool full) {
  char *s = full ? bf_jid_full(jid) : bf_jid_bare(jid);
  if (s)
    e->host->log(e->host, BF_LOG_INFO, "%s %s", what, s);
  free(s);
}

typedef struct {
  echo *e;
  const char *user;
} publish_walk;

static int publish_contact(void *data, const char *contact) {
  publish_walk *w = data;
  int rc = w->e->host->contact_presence(w->e->host, w->user, contact, NULL,
                                        "echoing");
  if (rc)
    w->e->host->log(w->e->host, BF_LOG_WARN,
                    "could not publish an echo contact's presence: %s",
                    bf_strerror(rc));
  return 0;
}

/* A session starts (also after babelfish restarted): the user's contacts
 * come online, as a real transport's would once it is logged in. */
static void echo_on_session_start(void *state, const bf_jid *user) {
  echo *e = state;
  log_jid(e, "session started for", user, false);
  char *bare = bf_jid_bare(user);
  publish_walk w = {e, bare};
  if (bare)
    (void)e->host->contacts_each(e->host, bare, publish_contact, &w);
  free(bare);
}

static void echo_on_session_stop(void *state, const bf_jid *user) {
  log_jid(state, "session stopped for", user, false);
}

static void echo_on_resource(void *state, const bf_jid *resource,
                             bool available) {
  log_jid(state, available ? "resource available" : "resource unavailable",
          resource, true);
}

/* The user adds an echo contact to their roster. A real transport would
 * check that the contact exists on its network; the echo refuses one name
 * to show how, and publishes every other contact as available: the core
 * sends that presence now, remembers it, and answers the user's probes
 * with it. Like a foreign contact that adds you back, it then asks to see
 * the user's presence (XEP-0100 §5.3; the core asks only once). */
static int echo_on_subscribe(void *state, const bf_jid *user,
                             const bf_jid *contact) {
  echo *e = state;
  if (contact->local && strcmp(contact->local, "nobody") == 0)
    return BF_EPERM;
  int rc = BF_ENOMEM;
  char *bare = bf_jid_bare(user);
  char *who = bf_jid_full(contact);
  if (bare && who)
    rc = e->host->contact_presence(e->host, bare, who, NULL, "echoing");
  if (!rc)
    rc = e->host->contact_subscribe(e->host, bare, who);
  if (rc)
    e->host->log(e->host, BF_LOG_WARN,
                 "could not publish an echo contact's presence: %s",
                 bf_strerror(rc));
  free(who);
  free(bare);
  return 0; /* the subscription stands even if the presence failed */
}

/* ---- commands (XEP-0050) -------------------------------------------------
 * Each is one bf_command; `run` is called once per step. These finish at
 * step 0 with a note, so they also work as chat commands ("count" sent to
 * the gateway). A command that asks for input returns fields and a
 * next_step, and gets the submitted form in call->form at that step. */

static int command_count(void *state, const bf_command_call *call,
                         bf_command_reply *reply) {
  echo *e = state;
  char *bare = bf_jid_bare(call->from);
  if (!bare)
    return BF_ENOMEM;
  snprintf(reply->note, sizeof reply->note,
           "Echoed %lu messages for you (%lu in all) since start.",
           count_get(e, bare), e->echoed);
  reply->note_type = BF_NOTE_INFO;
  free(bare);
  return 0;
}

static int command_whois(void *state, const bf_command_call *call,
                         bf_command_reply *reply) {
  (void)state;
  char *contact = bf_jid_bare(call->to);
  if (!contact)
    return BF_ENOMEM;
  snprintf(reply->note, sizeof reply->note,
           "%s is an echo contact: it repeats what you send.", contact);
  reply->note_type = BF_NOTE_INFO;
  free(contact);
  return 0;
}

static const bf_command echo_commands[] = {
    {.node = "count",
     .name = "How many messages were echoed",
     .flags = BF_COMMAND_ON_GATEWAY,
     .applies = NULL,
     .run = command_count},
    /* applies NULL: offered on every JID at the gateway, since every
     * localpart is an echo contact. */
    {.node = "whois",
     .name = "About this contact",
     .flags = BF_COMMAND_ON_CONTACT,
     .applies = NULL,
     .run = command_whois},
};

/* ---- messages ------------------------------------------------------------ */

/* The registered sender's settings, from their stored registration. */
typedef struct echo_sender {
  char *bare;                  /* bare JID, malloc'd */
  bf_form *values;             /* NULL: not registered */
  const char *nick;            /* borrowed from values; NULL = none */
  bool shout;
} echo_sender;

static int sender_load(echo *e, const bf_jid *from, echo_sender *sender) {
  memset(sender, 0, sizeof *sender);
  sender->bare = bf_jid_bare(from);
  if (!sender->bare)
    return BF_ENOMEM;
  int rc = e->host->user_get(e->host, sender->bare, &sender->values);
  if (rc == BF_ENOENT)
    return 0; /* not registered: the plain echo */
  if (rc) {
    /* Echo anyway, as for an unregistered sender. */
    e->host->log(e->host, BF_LOG_WARN, "could not read a registration: %s",
                 bf_strerror(rc));
    sender->values = NULL;
    return 0;
  }
  sender->nick = bf_form_value(sender->values, "nick");
  if (sender->nick && !*sender->nick)
    sender->nick = NULL;
  (void)bf_config_bool(bf_form_value(sender->values, "shout"), &sender->shout);
  return 0;
}

static void sender_free(echo_sender *sender) {
  bf_form_free(sender->values);
  free(sender->bare);
}

/* A new message id: "echo-<ms since the epoch>-<counter>", unique for
 * this gateway even across restarts (the clock moves on). */
static void make_id(echo *e, char *buf, size_t size) {
  uv_timeval64_t now = {0};
  (void)uv_gettimeofday(&now);
  snprintf(buf, size, "echo-%" PRId64 "-%" PRIu64,
           now.tv_sec * 1000 + now.tv_usec / 1000, ++e->ids);
}

/* The same path for everything the echo sends, so that a receipt and its
 * echo keep their order. stanza: borrowed. */
static int echo_send(echo *e, const bf_xml *stanza) {
  return e->durable ? e->host->send_durable(e->host, stanza)
                    : e->host->send(e->host, stanza);
}

/* XEP-0184 §5.1: the message was "delivered" to the echo contact, so the
 * contact acknowledges it: <received id='…'/> naming the message's id
 * attribute, in a message of its own. */
static void send_receipt(echo *e, const bf_xml *stanza, const char *id) {
  char receipt_id[64];
  make_id(e, receipt_id, sizeof receipt_id);
  bf_xml *receipt = bf_xml_new("message", NULL);
  bf_xml *received = receipt ? bf_xml_add_child(receipt, "received",
                                                NS_RECEIPTS)
                             : NULL;
  int rc = BF_ENOMEM;
  if (received &&
      !bf_xml_set_attr(receipt, "from", bf_xml_attr(stanza, "to")) &&
      !bf_xml_set_attr(receipt, "to", bf_xml_attr(stanza, "from")) &&
      !bf_xml_set_attr(receipt, "id", receipt_id) &&
      !bf_xml_set_attr(received, "id", id))
    rc = echo_send(e, receipt);
  if (rc)
    e->host->log(e->host, BF_LOG_WARN, "could not send a receipt: %s",
                 bf_strerror(rc));
  bf_xml_free(receipt);
}

/* The echoed text: "[NICK: ][PREFIX ]TEXT" (the nick goes before what
 * the unregistered echo would be), in capitals if asked.
 * malloc'd, NULL on ENOMEM. */
static char *echo_text(const char *prefix, const echo_sender *sender,
                       const char *text) {
  size_t plen = prefix ? strlen(prefix) + 1 : 0;
  size_t nlen = sender->nick ? strlen(sender->nick) + 2 : 0;
  size_t tlen = strlen(text);
  char *out = malloc(plen + nlen + tlen + 1), *p = out;
  if (!out)
    return NULL;
  if (sender->nick) {
    memcpy(p, sender->nick, nlen - 2);
    memcpy(p + nlen - 2, ": ", 2);
    p += nlen;
  }
  if (prefix) {
    memcpy(p, prefix, plen - 1);
    p[plen - 1] = ' ';
    p += plen;
  }
  memcpy(p, text, tlen + 1);
  /* ASCII only: changing the case of other scripts needs a Unicode
   * library, and the lengths could change. */
  if (sender->shout)
    for (p = out; *p; p++)
      if (*p >= 'a' && *p <= 'z')
        *p = (char)(*p - 'a' + 'A');
  return out;
}

/* Copies <name/> from src to dst if present. */
static int copy_text_child(bf_xml *dst, const bf_xml *src, const char *name) {
  const char *text = bf_xml_child_text(src, name, BF_NS_COMPONENT);
  if (!text)
    return 0;
  return bf_xml_add_text_child(dst, name, NULL, text) ? 0 : BF_ENOMEM;
}

/* The echoed <body/>, if the message has one. */
static int add_body(echo *e, bf_xml *reply, const bf_xml *stanza,
                    const echo_sender *sender) {
  const char *text = bf_xml_child_text(stanza, "body", BF_NS_COMPONENT);
  if (!text)
    return 0;
  char *body = echo_text(e->prefix, sender, text);
  int rc = body && bf_xml_add_text_child(reply, "body", NULL, body)
               ? 0
               : BF_ENOMEM;
  free(body);
  return rc;
}

/* XEP-0308: a correction names the message it replaces by the id the
 * sender gave it; the echo of that message had another id, found in the
 * message-id map, and the echoed correction replaces that one. Unknown
 * (too old, or not echoed for a registered user): a plain echo. */
static int add_replace(echo *e, bf_xml *reply, const bf_xml *stanza,
                       const char *bare) {
  const bf_xml *replace = bf_xml_child(stanza, "replace", NS_CORRECT);
  const char *replaced = replace ? bf_xml_attr(replace, "id") : NULL;
  if (!replaced || !*replaced)
    return 0;
  char *echo_id = NULL;
  int rc = e->host->msgid_foreign(e->host, bare, replaced, &echo_id);
  if (rc == 0) {
    bf_xml *el = bf_xml_add_child(reply, "replace", NS_CORRECT);
    rc = el ? bf_xml_set_attr(el, "id", echo_id) : BF_ENOMEM;
  } else if (rc == BF_ENOENT) {
    rc = 0;
  } else {
    e->host->log(e->host, BF_LOG_WARN, "could not look up a message id: %s",
                 bf_strerror(rc));
    rc = 0;
  }
  free(echo_id);
  return rc;
}

static int echo_on_stanza(void *state, const bf_xml *stanza,
                          const bf_jid *from, const bf_jid *to) {
  echo *e = state;
  /* Only messages to a contact JID (with a localpart) are echoed; the
   * gateway's own domain and presence/iq go to the core's defaults. */
  if (strcmp(bf_xml_name(stanza), "message") != 0 || !to->local)
    return BF_ENOTSUP;
  const char *type = bf_xml_attr(stanza, "type");
  if (type && !strcmp(type, "error"))
    return 0; /* never answer an error (RFC 6120 §8.3.1) */

  echo_sender sender;
  int rc = sender_load(e, from, &sender);
  bf_xml *reply = NULL;
  if (rc)
    goto out;
  bool registered = sender.values != NULL;
  const char *id = bf_xml_attr(stanza, "id");
  /* XEP-0359: the id to map, origin-id first. Ids are mapped for
   * registered users only, as a real transport maps them for the users who
   * have an account on its network: it costs a database write per
   * message, and an unregistered sender keeps the plain echo, which
   * carries their own id back. */
  const char *message_id = registered ? bf_stanza_message_id(stanza) : NULL;
  char echo_id[64] = "";

  /* XEP-0184 §5.1, §5.3: a receipt only when asked for, only for a
   * message with an id, never in a groupchat; before the echo, as a
   * client would acknowledge before answering. */
  if (id && *id && bf_xml_child(stanza, "request", NS_RECEIPTS) &&
      !(type && !strcmp(type, "groupchat")))
    send_receipt(e, stanza, id);

  rc = BF_ENOMEM;
  reply = bf_xml_new("message", NULL);
  if (!reply)
    goto out;
  /* Reply from exactly the address the sender wrote to. */
  if (bf_xml_set_attr(reply, "from", bf_xml_attr(stanza, "to")) ||
      bf_xml_set_attr(reply, "to", bf_xml_attr(stanza, "from")) ||
      (type && bf_xml_set_attr(reply, "type", type)))
    goto out;
  if (message_id) {
    /* The echo is a new message: a new id, remembered against the
     * sender's, the way a transport maps XMPP ids to foreign ones. */
    make_id(e, echo_id, sizeof echo_id);
    if (bf_xml_set_attr(reply, "id", echo_id))
      goto out;
  } else if (id && bf_xml_set_attr(reply, "id", id)) {
    goto out;
  }
  if (copy_text_child(reply, stanza, "subject") ||
      add_body(e, reply, stanza, &sender) ||
      copy_text_child(reply, stanza, "thread") ||
      (registered && add_replace(e, reply, stanza, sender.bare)))
    goto out;
  rc = echo_send(e, reply);
  if (rc == 0) {
    e->echoed++;
    if (registered) {
      count_add(e, sender.bare);
      if (message_id) {
        int put = e->host->msgid_put(e->host, sender.bare, message_id,
                                     echo_id);
        if (put)
          e->host->log(e->host, BF_LOG_WARN,
                       "could not record a message id: %s",
                       bf_strerror(put));
      }
    }
  } else {
    e->host->log(e->host, BF_LOG_WARN, "could not echo a message: %s",
                 bf_strerror(rc));
  }
  rc = 0; /* handled, even if the echo could not be sent */
out:
  bf_xml_free(reply);
  sender_free(&sender);
  return rc;
}

#ifdef BF_MODULE_EXTERNAL
BF_EXPORT
#endif
const bf_module
#ifdef BF_MODULE_EXTERNAL
    bf_module_entry
#else
    bf_echo_module
#endif
    = {
        .abi_version = BF_MODULE_ABI_VERSION,
        .name = BF_ECHO_NAME,
        .description = "Echo gateway (babelfish)",
        .disco_type = "xmpp", /* XEP-0030 registry: gateway/xmpp */
        .features = echo_features,
        .config_keys = echo_config_keys,
        .check_config = echo_check_config,
        .init = echo_init,
        .close = echo_close,
        .on_stanza = echo_on_stanza,
        .on_online = NULL,
        .on_offline = NULL,

        /* ---- version 2 ---- */
        /* Unregistered users may echo too; a transport that needs an
         * account on its network sets BF_MODULE_REGISTRATION_REQUIRED. */
        .flags = 0,
        .register_fields = echo_register_fields,
        .n_register_fields =
            sizeof echo_register_fields / sizeof echo_register_fields[0],
        .register_instructions =
            "Choose a nickname to show before your echoed messages, or "
            "leave it empty.",
        .on_register = echo_on_register,
        .on_unregister = echo_on_unregister,
        /* XEP-0100 §6.3: any name is a valid echo contact, and the core's
         * default (XEP-0106 escaping) makes a localpart of it. */
        .gateway_prompt = "Any name",
        .gateway_desc = "Enter any name to get an echo contact for it",
        .gateway_address = NULL,
        .on_session_start = echo_on_session_start,
        .on_session_stop = echo_on_session_stop,
        .on_resource = echo_on_resource,
        .on_subscribe = echo_on_subscribe,
        .commands = echo_commands,
        .n_commands = sizeof echo_commands / sizeof echo_commands[0],
};
