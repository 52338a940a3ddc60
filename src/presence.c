/* Presence: the users' online resources and their sessions, probes at
 * start-up and after every reconnect, subscriptions to the gateway and to
 * contacts (RFC 6121 §3, XEP-0100 §4–5), and the contact presence modules
 * publish. */
#include <stdlib.h>
#include <string.h>

#include "babelfish/stanza.h"
#include "gateway.h"
#include "log.h"
#include "util.h"

/* Module events only while the module runs. */
static const bf_module *module_v2(const bf_gateway *gw) {
  return gw->module_started ? bf__gateway_module_v2(gw) : NULL;
}

static inline bf_gateway *gw_of(const bf_host *host) {
  return bf_container_of(host, bf_gateway, host);
}

int bf__presence_send(bf_gateway *gw, const char *from, const char *to,
                      const char *type, const char *show, const char *status) {
  bf_xml *p = bf_xml_new("presence", NULL);
  int rc = BF_ENOMEM;
  if (!p || bf_xml_set_attr(p, "from", from ? from : gw->conf->domain) ||
      bf_xml_set_attr(p, "to", to) || (type && bf_xml_set_attr(p, "type", type)) ||
      (show && !bf_xml_add_text_child(p, "show", NULL, show)) ||
      (status && !bf_xml_add_text_child(p, "status", NULL, status)))
    goto out;
  rc = bf__gateway_send(gw, p);
out:
  bf_xml_free(p);
  return rc;
}

/* Calls a module callback that takes a JID given as a string. */
static void notify(bf_gateway *gw, void (*cb)(void *, const bf_jid *),
                   const char *jid_text) {
  bf_jid jid;
  if (cb && bf_jid_parse(&jid, jid_text) == 0) {
    cb(gw->state, &jid);
    bf_jid_close(&jid);
  }
}

static void notify_resource(bf_gateway *gw, const char *full, bool available) {
  const bf_module *m = module_v2(gw);
  bf_jid jid;
  if (m && m->on_resource && bf_jid_parse(&jid, full) == 0) {
    m->on_resource(gw->state, &jid, available);
    bf_jid_close(&jid);
  }
}

/* ---- sessions -------------------------------------------------------------- */

static void session_start(bf_gateway *gw, bf_user *user) {
  const bf_module *m = module_v2(gw);
  user->session = true;
  gw->users.online++;
  bf__debug(gw->conf->section, "session of %s starts", user->jid);
  if (m)
    notify(gw, m->on_session_start, user->jid);
}

static void session_stop(bf_gateway *gw, bf_user *user) {
  const bf_module *m = module_v2(gw);
  if (!user->session)
    return;
  user->session = false;
  gw->users.online--;
  bf__debug(gw->conf->section, "session of %s ends", user->jid);
  if (m)
    notify(gw, m->on_session_stop, user->jid);
}

static void resource_remove(bf_gateway *gw, bf_user *user, size_t i) {
  char *full = user->resources[i];
  user->n_resources--;
  user->resources[i] = user->resources[user->n_resources];
  user->resource_seen[i] = user->resource_seen[user->n_resources];
  if (user->session)
    notify_resource(gw, full, false);
  free(full);
}

static void resource_available(bf_gateway *gw, bf_user *user, const char *full) {
  for (size_t i = 0; i < user->n_resources; i++) {
    if (!strcmp(user->resources[i], full)) {
      user->resource_seen[i] = gw->users.generation;
      return;
    }
  }
  if (user->n_resources >= BF_RESOURCES_PER_USER_MAX) {
    bf__warn(gw->conf->section, "%s has %d resources online, the most tracked; "
             "ignoring %s", user->jid, BF_RESOURCES_PER_USER_MAX, full);
    return;
  }
  char **resources = realloc(user->resources,
                             (user->n_resources + 1) * sizeof *resources);
  if (resources)
    user->resources = resources;
  uint32_t *seen = realloc(user->resource_seen,
                           (user->n_resources + 1) * sizeof *seen);
  if (seen)
    user->resource_seen = seen;
  char *copy = strdup(full);
  if (!resources || !seen || !copy) {
    free(copy);
    bf__error(gw->conf->section, "out of memory tracking %s", full);
    return;
  }
  user->resources[user->n_resources] = copy;
  user->resource_seen[user->n_resources] = gw->users.generation;
  user->n_resources++;
  if (!user->session)
    session_start(gw, user);
  notify_resource(gw, full, true);
}

/* full NULL: every resource (unavailable from the bare JID, e.g. the
 * server's answer to a probe for a user who is offline). */
static void resource_unavailable(bf_gateway *gw, bf_user *user, const char *full) {
  for (size_t i = user->n_resources; i-- > 0;) {
    if (!full || !strcmp(user->resources[i], full))
      resource_remove(gw, user, i);
  }
  if (!user->n_resources)
    session_stop(gw, user);
}

void bf__presence_end_session(bf_gateway *gw, bf_user *user) {
  while (user->n_resources)
    resource_remove(gw, user, user->n_resources - 1);
  session_stop(gw, user);
  for (size_t i = 0; i < user->n_contacts; i++) {
    free(user->contacts[i].contact);
    free(user->contacts[i].show);
    free(user->contacts[i].status);
  }
  free(user->contacts);
  user->contacts = NULL;
  user->n_contacts = 0;
}

/* ---- after (re)connecting ---------------------------------------------------- */

static void sweep_user(void *data, bf_user *user) {
  bf_gateway *gw = data;
  bool dropped = false;
  for (size_t i = user->n_resources; i-- > 0;) {
    if (user->resource_seen[i] != gw->users.generation) {
      bf__info(gw->conf->section, "%s did not answer the probe; offline",
               user->resources[i]);
      resource_remove(gw, user, i);
      dropped = true;
    }
  }
  if (dropped && !user->n_resources)
    session_stop(gw, user);
}

/* probe_timeout after the probes: resources the server no longer reports
 * went away while the stream was down. */
static void on_sweep(void *data) {
  bf_gateway *gw = data;
  gw->users.sweep_timer = 0;
  bf__users_walk(gw, sweep_user, gw);
}

static void announce_user(void *data, bf_user *user) {
  bf_gateway *gw = data;
  /* XEP-0100 §4.1.4 business rules / RFC 6121 §4.3: show the gateway and
   * ask the server who of the user is online. */
  if (user->registered) {
    (void)bf__presence_send(gw, NULL, user->jid, NULL, NULL, NULL);
    (void)bf__presence_send(gw, NULL, user->jid, "probe", NULL, NULL);
  }
  /* A restarted server forgot the directed presence of contacts. */
  for (size_t i = 0; i < user->n_contacts; i++) {
    const bf_contact_presence *c = &user->contacts[i];
    (void)bf__presence_send(gw, c->contact, user->jid, NULL, c->show, c->status);
  }
}

void bf__presence_online(bf_gateway *gw) {
  bf_users *u = &gw->users;
  if (!u->open)
    return;
  u->generation++;
  bf__users_walk(gw, announce_user, gw);
  if (u->sweep_timer)
    gw->host.timer_stop(&gw->host, u->sweep_timer);
  u->sweep_timer = 0;
  if (u->online &&
      gw->host.timer_start(&gw->host,
                           (uint64_t)gw->daemon->conf->probe_timeout_s * 1000, 0,
                           on_sweep, gw, &u->sweep_timer) != 0)
    u->sweep_timer = 0;
}

static void goodbye_user(void *data, bf_user *user) {
  bf_gateway *gw = data;
  for (size_t i = 0; i < user->n_contacts; i++)
    (void)bf__presence_send(gw, user->contacts[i].contact, user->jid,
                            "unavailable", NULL, NULL);
  if (user->registered)
    (void)bf__presence_send(gw, NULL, user->jid, "unavailable", NULL, NULL);
  session_stop(gw, user);
}

void bf__presence_stop(bf_gateway *gw) {
  if (gw->users.open)
    bf__users_walk(gw, goodbye_user, gw);
}

/* ---- presence from users ------------------------------------------------------- */

/* The presence a module published for contact, or NULL. */
static bf_contact_presence *published(bf_user *user, const char *contact) {
  for (size_t i = 0; user && i < user->n_contacts; i++) {
    if (!strcmp(user->contacts[i].contact, contact))
      return &user->contacts[i];
  }
  return NULL;
}

/* The contact's current presence to `to` (a probe's sender or the user). */
static void send_contact_presence(bf_gateway *gw, bf_user *user,
                                  const char *contact, const char *to) {
  const bf_contact_presence *c = published(user, contact);
  if (c)
    (void)bf__presence_send(gw, contact, to, NULL, c->show, c->status);
  else
    (void)bf__presence_send(gw, contact, to, "unavailable", NULL, NULL);
}

/* RFC 6121 §3.1.3: the user asks to see the gateway's or a contact's
 * presence. */
static void subscribe(bf_gateway *gw, const char *bare, const bf_jid *from,
                      const char *contact, const bf_jid *to) {
  const bf_module *m = module_v2(gw);
  bool registered = bf__users_registered(gw, bare);
  bool accept;
  if (!*contact) {
    accept = registered; /* the gateway is in the roster of its users */
  } else if (m && m->on_subscribe) {
    accept = (!(m->flags & BF_MODULE_REGISTRATION_REQUIRED) || registered) &&
             m->on_subscribe(gw->state, from, to) == 0;
  } else {
    accept = registered;
  }
  const char *sender = *contact ? contact : NULL;
  unsigned bits = bf__users_subscription(gw, bare, contact);
  if (accept && *contact && !bits &&
      bf__users_contacts_count(gw, bare) >= BF_CONTACTS_PER_USER_MAX) {
    bf__warn(gw->conf->section,
             "%s has %d contacts at this gateway, the most allowed; refused "
             "%s",
             bare, BF_CONTACTS_PER_USER_MAX, contact);
    accept = false;
  }
  if (!accept) {
    (void)bf__presence_send(gw, sender, bare, "unsubscribed", NULL, NULL);
    return;
  }
  (void)bf__users_set_subscription(gw, bare, contact, bits | BF_SUB_TO);
  (void)bf__presence_send(gw, sender, bare, "subscribed", NULL, NULL);
  if (*contact)
    send_contact_presence(gw, bf__users_find(gw, bare), contact, bare);
  else
    (void)bf__presence_send(gw, NULL, bare, NULL, NULL, NULL);
}

static void subscription_change(bf_gateway *gw, const char *bare,
                                const char *contact, const char *type) {
  unsigned bits = bf__users_subscription(gw, bare, contact);
  unsigned was = bits;
  if (!strcmp(type, "subscribed")) {
    bits = (bits | BF_SUB_FROM) & ~(unsigned)BF_SUB_ASKED;
  } else if (!strcmp(type, "unsubscribed")) {
    bits &= ~(unsigned)(BF_SUB_FROM | BF_SUB_ASKED);
  } else { /* unsubscribe: RFC 6121 §3.3.3, the contact goes offline for them */
    bits &= ~(unsigned)BF_SUB_TO;
    (void)bf__presence_send(gw, *contact ? contact : NULL, bare, "unavailable",
                            NULL, NULL);
  }
  if (bits != was)
    (void)bf__users_set_subscription(gw, bare, contact, bits);
  /* Now that the gateway may see the user, learn who is online. */
  if (!*contact && !strcmp(type, "subscribed") && bf__users_registered(gw, bare))
    (void)bf__presence_send(gw, NULL, bare, "probe", NULL, NULL);
}

static void probe(bf_gateway *gw, const char *bare, const char *from_text,
                  const char *contact) {
  bf_user *user = bf__users_find(gw, bare);
  if (*contact) {
    send_contact_presence(gw, user, contact, from_text);
  } else if (user && user->registered) {
    (void)bf__presence_send(gw, NULL, from_text, NULL, NULL, NULL);
  } else {
    /* RFC 6121 §4.3.2: no subscription, nothing to reveal. */
    (void)bf__presence_send(gw, NULL, from_text, "unsubscribed", NULL, NULL);
  }
}

bool bf__presence_dispatch(bf_gateway *gw, const bf_xml *presence,
                           const bf_jid *from, const bf_jid *to) {
  if (!gw->users.open)
    return false;
  const char *type = bf_xml_attr(presence, "type");
  char bare[BF_JID_STACK_BUFFER], contact[BF_JID_STACK_BUFFER];
  if (!from->local || bf__bare(from, bare, sizeof bare) < 0)
    return true; /* servers have no presence for us */
  contact[0] = '\0';
  if (to->local && bf__bare(to, contact, sizeof contact) < 0)
    return true;
  bool available = !type;
  if (type && !strcmp(type, "subscribe")) {
    subscribe(gw, bare, from, contact, to);
    return true;
  }
  if (type && (!strcmp(type, "subscribed") || !strcmp(type, "unsubscribed") ||
               !strcmp(type, "unsubscribe"))) {
    subscription_change(gw, bare, contact, type);
    return true;
  }
  if (type && !strcmp(type, "probe")) {
    probe(gw, bare, bf_xml_attr(presence, "from"), contact);
    return true;
  }
  if (!available && strcmp(type, "unavailable") != 0)
    return true; /* error presence: nothing to do */
  if (*contact)
    return false; /* directed presence to a contact or room: the module's */
  bf_user *user = bf__users_find(gw, bare);
  if (!user || !user->registered)
    return true; /* sessions are for registered users */
  const char *full = bf_xml_attr(presence, "from");
  if (available) {
    if (from->resource)
      resource_available(gw, user, full);
  } else {
    resource_unavailable(gw, user, from->resource ? full : NULL);
  }
  return true;
}

/* ---- host table ---------------------------------------------------------------- */

size_t bf__presence_resources(const bf_host *host, const char *user,
                              const char *const **resources) {
  bf_user *entry = user ? bf__users_find(gw_of(host), user) : NULL;
  *resources = entry ? (const char *const *)entry->resources : NULL;
  return entry ? entry->n_resources : 0;
}

/* A contact given as a JID at the gateway or a localpart: its normalised
 * bare JID in out. */
static int contact_jid(bf_gateway *gw, const char *contact, char *out,
                       size_t size) {
  char text[BF_JID_STACK_BUFFER * 2];
  if (!contact || !*contact)
    return BF_EINVAL;
  int n = strchr(contact, '@')
              ? snprintf(text, sizeof text, "%s", contact)
              : snprintf(text, sizeof text, "%s@%s", contact, gw->conf->domain);
  if (n < 0 || (size_t)n >= sizeof text)
    return BF_EINVAL;
  bf_jid jid;
  int rc = bf_jid_parse(&jid, text);
  if (rc)
    return rc;
  if (!jid.local || strcmp(jid.domain, gw->conf->domain) != 0 ||
      bf__bare(&jid, out, size) < 0)
    rc = BF_EINVAL;
  bf_jid_close(&jid);
  return rc;
}

static int user_jid(const char *user, char *out, size_t size) {
  bf_jid jid;
  if (!user || bf_jid_parse(&jid, user) != 0)
    return BF_EINVAL;
  int rc = !jid.local || bf__bare(&jid, out, size) < 0 ? BF_EINVAL : 0;
  bf_jid_close(&jid);
  return rc;
}

static bool valid_show(const char *show) {
  static const char *const shows[] = {"away", "chat", "dnd", "xa", "unavailable"};
  for (size_t i = 0; i < BF_ARRAY_SIZE(shows); i++) {
    if (!strcmp(show, shows[i]))
      return true;
  }
  return false;
}

static int remember(bf_user *user, const char *contact, const char *show,
                    const char *status) {
  bf_contact_presence *c = published(user, contact);
  if (!c) {
    bf_contact_presence *grown =
        realloc(user->contacts, (user->n_contacts + 1) * sizeof *grown);
    if (!grown)
      return BF_ENOMEM;
    user->contacts = grown;
    c = &user->contacts[user->n_contacts];
    memset(c, 0, sizeof *c);
    if (!(c->contact = strdup(contact)))
      return BF_ENOMEM;
    user->n_contacts++;
  }
  char *s = show ? strdup(show) : NULL, *t = status ? strdup(status) : NULL;
  if ((show && !s) || (status && !t)) {
    free(s);
    free(t);
    return BF_ENOMEM;
  }
  free(c->show);
  free(c->status);
  c->show = s;
  c->status = t;
  return 0;
}

static void forget(bf_user *user, const char *contact) {
  bf_contact_presence *c = published(user, contact);
  if (!c)
    return;
  free(c->contact);
  free(c->show);
  free(c->status);
  *c = user->contacts[--user->n_contacts];
}

int bf__presence_contact(const bf_host *host, const char *user,
                         const char *contact, const char *show,
                         const char *status) {
  bf_gateway *gw = gw_of(host);
  char bare[BF_JID_STACK_BUFFER], cjid[BF_JID_STACK_BUFFER];
  if (user_jid(user, bare, sizeof bare) ||
      contact_jid(gw, contact, cjid, sizeof cjid) || (show && !valid_show(show)))
    return BF_EINVAL;
  bool unavailable = show && !strcmp(show, "unavailable");
  bf_user *entry = bf__users_get(gw, bare);
  if (!entry)
    return BF_ENOMEM;
  int rc = 0;
  if (unavailable) {
    forget(entry, cjid);
    bf__users_release(gw, entry);
  } else if ((rc = remember(entry, cjid, show, status)) != 0) {
    return rc;
  }
  return bf__presence_send(gw, cjid, bare, unavailable ? "unavailable" : NULL,
                           unavailable ? NULL : show, status);
}

int bf__presence_contact_subscribe(const bf_host *host, const char *user,
                                   const char *contact) {
  bf_gateway *gw = gw_of(host);
  char bare[BF_JID_STACK_BUFFER], cjid[BF_JID_STACK_BUFFER];
  if (user_jid(user, bare, sizeof bare) ||
      contact_jid(gw, contact, cjid, sizeof cjid))
    return BF_EINVAL;
  unsigned bits = bf__users_subscription(gw, bare, cjid);
  if (bits & (BF_SUB_FROM | BF_SUB_ASKED))
    return 0; /* asked once; XEP-0100 §5.3: never an unprompted subscribed */
  if (!bits && bf__users_contacts_count(gw, bare) >= BF_CONTACTS_PER_USER_MAX)
    return BF_E2BIG;
  int rc = bf__users_set_subscription(gw, bare, cjid, bits | BF_SUB_ASKED);
  return rc ? rc : bf__presence_send(gw, cjid, bare, "subscribe", NULL, NULL);
}
