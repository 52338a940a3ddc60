/* Private: a gateway's users — what turns a component into a transport.
 *
 *   users.c     who may use the gateway (`allowed`, admins), registration
 *               (XEP-0077) and its storage, jabber:iq:gateway (XEP-0100),
 *               unregistration; the in-memory table of users.
 *   presence.c  online resources and sessions from presence, probes at
 *               start-up and after reconnects, subscriptions to the gateway
 *               and to contacts, contact presence published by modules.
 *   adhoc.c     ad-hoc commands (XEP-0050): the multi-step framework, the
 *               core's user and admin commands, the module's commands, and
 *               the same commands as chat messages to the gateway.
 *   msgid.c     the bounded, persistent message-id map.
 *
 * All of it runs on the loop thread, keyed by bare JIDs (normalised
 * strings, as bf_jid_bare writes them). */
#ifndef BF_USERS_H
#define BF_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "babelfish/form.h"
#include "babelfish/jid.h"
#include "babelfish/module.h"
#include "babelfish/xml.h"

struct sqlite3_stmt;
typedef struct bf_gateway bf_gateway;

/* Presence a module published for one contact to one user. */
typedef struct bf_contact_presence {
  char *contact;               /* full JID string at the gateway */
  char *show;                  /* NULL = available; "away", "chat", "dnd",
                                  "xa" */
  char *status;                /* NULL = none */
} bf_contact_presence;

typedef struct bf_user {
  char *jid;                   /* bare JID, normalised */
  bool registered;
  bool session;                /* on_session_start was called, no stop yet */
  char **resources;            /* available full JIDs */
  uint32_t *resource_seen;     /* presence generation each was last seen in */
  size_t n_resources;
  bf_contact_presence *contacts; /* published, available ones only */
  size_t n_contacts;
  struct bf_user *next;        /* hash chain */
} bf_user;

/* An ad-hoc command session in progress (adhoc.c). */
typedef struct bf_adhoc_session bf_adhoc_session;

typedef struct bf_msgid_map {
  struct sqlite3_stmt *put, *by_xmpp, *by_foreign, *count, *prune,
      *delete_user;
  unsigned max;                /* entries per gateway (message_ids) */
  unsigned since_prune;        /* puts since the last count */
} bf_msgid_map;

typedef struct bf_users {
  bool open;
  bf_user **buckets;
  size_t n_buckets;            /* a power of two */
  size_t count;                /* users in the table */
  size_t registered;           /* of which registered */
  size_t online;               /* of which with a session */
  /* Probes after (re)connecting: resources not seen again within
   * probe_timeout are dropped. */
  uint32_t generation;
  uint64_t sweep_timer;
  /* prepared statements (users.c) */
  struct sqlite3_stmt *st_load, *st_values, *st_insert, *st_delete,
      *st_delete_values, *st_insert_value, *st_delete_value,
      *st_delete_contacts, *st_contact_get, *st_contact_set,
      *st_contact_delete, *st_contacts_of, *st_contacts_count;
  bf_msgid_map msgids;
  bf_adhoc_session *sessions;  /* adhoc.c */
  size_t n_sessions;
  uint64_t next_session;
  /* statistics */
  uint64_t registrations, unregistrations, commands_run, chat_commands;
} bf_users;

/* Writes jid's bare form (local@domain, or domain) to buf: its length, or
 * -1 if it does not fit. The hot path's bf_jid_bare, without malloc. */
static inline int bf__bare(const bf_jid *jid, char *buf, size_t size) {
  int n = jid->local ? snprintf(buf, size, "%s@%s", jid->local, jid->domain)
                     : snprintf(buf, size, "%s", jid->domain);
  return n < 0 || (size_t)n >= size ? -1 : n;
}

/* ---- users.c ---------------------------------------------------------- */

/* Prepares statements and loads the registered users. After the store is
 * open; 0, BF_EIO, BF_ENOMEM (logged). */
int bf__users_init(bf_gateway *gw);
/* Frees the table, the statements and any command sessions. */
void bf__users_close(bf_gateway *gw);

/* The user's entry, or NULL. bare: borrowed. */
bf_user *bf__users_find(bf_gateway *gw, const char *bare);
/* The user's entry, created (not registered, offline) if absent; NULL on
 * ENOMEM. */
bf_user *bf__users_get(bf_gateway *gw, const char *bare);
/* Frees the entry if nothing is left in it (not registered, no resource,
 * no contact presence). */
void bf__users_release(bf_gateway *gw, bf_user *user);
/* Calls cb for every entry, in no particular order; cb must not add or
 * remove entries. */
void bf__users_walk(bf_gateway *gw, void (*cb)(void *data, bf_user *user),
                    void *data);

/* `allowed` of the section (default: the XMPP server's domain), or an
 * admin. */
bool bf__users_allowed(const bf_gateway *gw, const bf_jid *jid);
bool bf__users_is_admin(const bf_gateway *gw, const bf_jid *jid);
bool bf__users_registered(bf_gateway *gw, const char *bare);

/* The stored values of a registered user (*values taken), BF_ENOENT. */
int bf__users_values(bf_gateway *gw, const char *bare, bf_form **values);
/* Registered users in JID order; cb returns non-zero to stop. */
int bf__users_each(bf_gateway *gw, int (*cb)(void *data, const char *bare),
                   void *data);

/* Changes one stored value of a registered user (value NULL removes it).
 * Strings copied. 0, BF_ENOENT, BF_EIO. */
int bf__users_set_value(bf_gateway *gw, const char *bare, const char *var,
                        const char *value);
/* Registers or updates user (bare JID) with a submitted form: checks it
 * against the module's fields (a private field submitted empty keeps the
 * stored value), asks the module, stores it, and after a first
 * registration asks to be in the user's roster. form: borrowed (changed
 * by the check). On refusal returns BF_EINVAL / BF_EEXIST / BF_EPERM with
 * a message for the user in err. *is_new: set when it was a first
 * registration. */
int bf__users_register(bf_gateway *gw, const bf_jid *user, bf_form *form,
                       bool *is_new, char *err, size_t err_size);
/* Ends the user's session, tells the module, deletes every row the user
 * had and removes the gateway and contacts from their roster. BF_ENOENT if
 * not registered. */
int bf__users_unregister(bf_gateway *gw, const char *bare);

/* jabber:iq:register and jabber:iq:gateway on the bare domain. True if
 * the stanza was one of these (and was answered). */
bool bf__users_iq(bf_gateway *gw, const bf_xml *iq, const bf_jid *from,
                  const bf_jid *to);

/* Subscription states stored per (user, contact): bits. */
enum {
  BF_SUB_TO = 1,               /* the user sees the contact's presence */
  BF_SUB_FROM = 2,             /* the contact (or gateway) sees the user's */
  BF_SUB_ASKED = 4,            /* we sent a subscribe, no answer yet */
};
/* Limits per user: contacts stored (subscriptions) and resources
 * tracked. Past them a subscription is refused (unsubscribed) and a
 * further resource is ignored, with a log line. */
#define BF_CONTACTS_PER_USER_MAX 10000
#define BF_RESOURCES_PER_USER_MAX 64

/* contact: "" for the gateway itself. */
unsigned bf__users_subscription(bf_gateway *gw, const char *bare,
                                const char *contact);
int bf__users_set_subscription(bf_gateway *gw, const char *bare,
                               const char *contact, unsigned bits);
/* How many contacts are stored for the user (the gateway excluded). */
size_t bf__users_contacts_count(bf_gateway *gw, const char *bare);
/* Calls cb for each stored contact of the user (the gateway itself
 * excluded). */
int bf__users_contacts_each(bf_gateway *gw, const char *bare,
                            int (*cb)(void *data, const char *contact,
                                      unsigned bits),
                            void *data);

/* ---- presence.c ------------------------------------------------------- */

/* Presence for the gateway or a JID at it. True if consumed; false for
 * available/unavailable presence to a contact that the module should see
 * too (MUC joins, directed presence). */
bool bf__presence_dispatch(bf_gateway *gw, const bf_xml *presence,
                           const bf_jid *from, const bf_jid *to);
/* The stream is up: presence from the gateway to every registered user,
 * and probes; resources not confirmed within probe_timeout are dropped. */
void bf__presence_online(bf_gateway *gw);
/* babelfish stops: sessions end, unavailable presence from the gateway and
 * every published contact. Before the module's close. */
void bf__presence_stop(bf_gateway *gw);
/* Ends the user's session now (unregistration): resources forgotten,
 * on_session_stop, contact presences dropped. */
void bf__presence_end_session(bf_gateway *gw, bf_user *user);
/* Sends <presence/> of the given type (NULL = available) from `from` (the
 * gateway domain if NULL) to `to`. show/status may be NULL. */
int bf__presence_send(bf_gateway *gw, const char *from, const char *to,
                      const char *type, const char *show, const char *status);

/* host table, version 2 */
size_t bf__presence_resources(const bf_host *host, const char *user,
                              const char *const **resources);
int bf__presence_contact(const bf_host *host, const char *user,
                         const char *contact, const char *show,
                         const char *status);
int bf__presence_contact_subscribe(const bf_host *host, const char *user,
                                   const char *contact);

/* ---- adhoc.c ---------------------------------------------------------- */

/* XEP-0050 iq on the gateway or a JID at it, disco#items for the commands
 * node, disco#info on a command node, and chat messages to the bare
 * gateway domain. True if handled (and answered). */
bool bf__adhoc_dispatch(bf_gateway *gw, const bf_xml *stanza,
                        const bf_jid *from, const bf_jid *to);
/* Frees the command sessions. */
void bf__adhoc_close(bf_gateway *gw);

/* adhoc-commands.c: the core's commands, listed before the module's. */
extern const bf_command bf__adhoc_core_commands[];
extern const size_t bf__adhoc_n_core_commands;

/* ---- msgid.c ---------------------------------------------------------- */

int bf__msgid_init(bf_gateway *gw);
void bf__msgid_close(bf_gateway *gw);
/* Deletes the user's entries. */
int bf__msgid_delete_user(bf_gateway *gw, const char *bare);
/* host table, version 2 */
int bf__msgid_put(const bf_host *host, const char *user, const char *xmpp_id,
                  const char *foreign_id);
int bf__msgid_foreign(const bf_host *host, const char *user,
                      const char *xmpp_id, char **foreign_id);
int bf__msgid_xmpp(const bf_host *host, const char *user,
                   const char *foreign_id, char **xmpp_id);

#endif
