/* What happens to a stanza from the server: the core's own services on the
 * gateway domain, then the transport module, then RFC 6120 defaults. */
#include <stdio.h>
#include <string.h>

#include "babelfish/form.h"
#include "babelfish/jid.h"
#include "babelfish/stanza.h"
#include "gateway.h"
#include "log.h"

/* XEP-0030 §3.1: identity and features of the gateway domain. */
static void disco_info(bf_gateway *gw, const bf_xml *iq) {
  static const char *const core_features[] = {
      BF_NS_DISCO_INFO, BF_NS_DISCO_ITEMS, BF_NS_VERSION, BF_NS_PING,
      "jid\\20escaping", /* XEP-0106 §6 (sic) */
      "jabber:iq:register", "jabber:iq:gateway",
      "http://jabber.org/protocol/commands", BF_NS_DATA,
  };
  const bf_module *m = gw->module.module;
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *query = reply ? bf_xml_add_child(reply, "query", BF_NS_DISCO_INFO) : NULL;
  bf_xml *identity = query ? bf_xml_add_child(query, "identity", NULL) : NULL;
  if (!identity) {
    bf_xml_free(reply);
    return;
  }
  bf_xml_set_attr(identity, "category", "gateway");
  bf_xml_set_attr(identity, "type", m->disco_type ? m->disco_type : "xmpp");
  bf_xml_set_attr(identity, "name", m->description ? m->description : m->name);
  for (size_t i = 0; i < sizeof core_features / sizeof *core_features; i++)
    bf_xml_set_attr(bf_xml_add_child(query, "feature", NULL), "var",
                    core_features[i]);
  for (size_t i = 0; m->features && m->features[i]; i++)
    bf_xml_set_attr(bf_xml_add_child(query, "feature", NULL), "var",
                    m->features[i]);
  bf__gateway_send_free(gw, reply);
}

/* XEP-0092: software version. The OS is left out on purpose (§5 of the
 * XEP: it helps attackers more than users). */
static void version(bf_gateway *gw, const bf_xml *iq) {
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *query = reply ? bf_xml_add_child(reply, "query", BF_NS_VERSION) : NULL;
  if (query) {
    bf_xml_add_text_child(query, "name", NULL, "babelfish");
    bf_xml_add_text_child(query, "version", NULL, BF_VERSION);
  }
  bf__gateway_send_free(gw, reply);
}

/* The core's services on the bare gateway domain. Returns true if it
 * answered. */
static bool builtin(bf_gateway *gw, const bf_xml *iq, const bf_xml *payload) {
  const char *type = bf_xml_attr(iq, "type");
  const char *ns = bf_xml_xmlns(payload);
  const char *name = bf_xml_name(payload);
  if (strcmp(type, "get") != 0)
    return false;
  if (!strcmp(ns, BF_NS_DISCO_INFO) && !strcmp(name, "query") &&
      !bf_xml_attr(payload, "node")) {
    disco_info(gw, iq);
    return true;
  }
  if (!strcmp(ns, BF_NS_DISCO_ITEMS) && !strcmp(name, "query") &&
      !bf_xml_attr(payload, "node")) {
    /* XEP-0030 §4.1: nothing to list is an empty result, not an error. */
    bf_xml *reply = bf_stanza_result(iq);
    if (reply)
      bf_xml_add_child(reply, "query", BF_NS_DISCO_ITEMS);
    bf__gateway_send_free(gw, reply);
    return true;
  }
  if (!strcmp(ns, BF_NS_VERSION) && !strcmp(name, "query")) {
    version(gw, iq);
    return true;
  }
  if (!strcmp(ns, BF_NS_PING) && !strcmp(name, "ping")) {
    bf__gateway_send_free(gw, bf_stanza_result(iq)); /* XEP-0199 §4 */
    return true;
  }
  return false;
}

/* Someone `allowed` does not cover: disco, version and ping (answered
 * before) but nothing else, and nothing is stored for them. */
static void deny(bf_gateway *gw, const bf_xml *stanza) {
  const char *name = bf_xml_name(stanza);
  if (!strcmp(name, "presence")) {
    const char *type = bf_xml_attr(stanza, "type");
    /* RFC 6121 §3.1.3/§4.3.2: a refused subscription or probe. */
    if (type && (!strcmp(type, "subscribe") || !strcmp(type, "probe"))) {
      bf_xml *p = bf_xml_new("presence", NULL);
      if (p && !bf_xml_set_attr(p, "from", bf_xml_attr(stanza, "to")) &&
          !bf_xml_set_attr(p, "to", bf_xml_attr(stanza, "from")) &&
          !bf_xml_set_attr(p, "type", "unsubscribed"))
        (void)bf__gateway_send(gw, p);
      bf_xml_free(p);
    }
    return;
  }
  if (bf_stanza_is_request(stanza) || !bf_stanza_is_reply(stanza)) {
    bf__gateway_reply_error(gw, stanza, "forbidden",
                            "this gateway is not open to your account; its "
                            "administrator can add your domain or address to "
                            "'allowed'",
                            NULL, NULL);
  }
}

/* The core's user machinery: registration, the gateway prompt, ad-hoc and
 * chat commands, presence and subscriptions, and registration-required
 * for transports that need it. True if the stanza was handled. */
static bool users(bf_gateway *gw, const bf_xml *stanza, const bf_jid *from,
                  const bf_jid *to) {
  if (!gw->users.open)
    return false;
  const char *name = bf_xml_name(stanza);
  if (!strcmp(name, "iq") &&
      (bf__users_iq(gw, stanza, from, to) || bf__adhoc_dispatch(gw, stanza, from, to)))
    return true;
  if (!strcmp(name, "message") && bf__adhoc_dispatch(gw, stanza, from, to))
    return true;
  if (!strcmp(name, "presence") && bf__presence_dispatch(gw, stanza, from, to))
    return true;
  const bf_module *m = gw->module.module;
  if (m->abi_version >= 2 && (m->flags & BF_MODULE_REGISTRATION_REQUIRED) &&
      to->local) {
    char bare[BF_JID_STACK_BUFFER];
    if (bf__bare(from, bare, sizeof bare) < 0 || !bf__users_registered(gw, bare)) {
      if (strcmp(name, "presence") != 0 &&
          (bf_stanza_is_request(stanza) || !bf_stanza_is_reply(stanza)))
        bf__gateway_reply_error(gw, stanza, "registration-required",
                    "register with this gateway first (XEP-0077, or the "
                    "gateway's commands)", NULL, NULL);
      return true;
    }
  }
  return false;
}

void bf__router_dispatch(bf_gateway *gw, bf_xml *stanza) {
  const char *tag = gw->conf->section;
  const char *name = bf_xml_name(stanza);
  bf_jid from = {0}, to = {0};
  char from_buf[BF_JID_STACK_BUFFER], to_buf[BF_JID_STACK_BUFFER];
  bool have_to = false;
  bool is_iq = !strcmp(name, "iq");
  if (strcmp(bf_xml_xmlns(stanza), BF_NS_COMPONENT) != 0 ||
      (!is_iq && strcmp(name, "message") != 0 && strcmp(name, "presence") != 0)) {
    bf__debug(tag, "ignoring a <%s/> in %s from the server", name,
              bf_xml_xmlns(stanza));
    goto out;
  }
  if (is_iq && bf__gateway_ping_reply(gw, stanza))
    goto out;
  const char *from_attr = bf_xml_attr(stanza, "from");
  if (!from_attr ||
      bf__gateway_jid_parse(gw, from_attr, &from, from_buf, sizeof from_buf) != 0) {
    /* Without a valid sender there is nobody to answer. */
    bf__warn(tag, "dropping a <%s/> with a missing or invalid 'from'", name);
    goto out;
  }
  const char *to_attr = bf_xml_attr(stanza, "to");
  have_to = to_attr &&
            bf__gateway_jid_parse(gw, to_attr, &to, to_buf, sizeof to_buf) == 0;
  if (!have_to || strcmp(to.domain, gw->conf->domain) != 0) {
    bf__gateway_reply_error(gw, stanza, have_to ? "item-not-found" : "jid-malformed",
                NULL, NULL, NULL);
    goto out;
  }

  const char *type = bf_xml_attr(stanza, "type");
  bool request = bf_stanza_is_request(stanza);
  if (is_iq && !request &&
      (!type || (strcmp(type, "result") != 0 && strcmp(type, "error") != 0))) {
    /* RFC 6120 §8.2.3: type is required and one of four values. */
    bf__gateway_reply_error(gw, stanza, "bad-request",
                            "iq type missing or unknown", NULL, NULL);
    goto out;
  }
  if (request) {
    /* RFC 6120 §8.2.3: a get or set has exactly one payload child. */
    bf_xml *payload = bf_xml_first_child(stanza);
    if (!payload || bf_xml_next(payload)) {
      bf__gateway_reply_error(
          gw, stanza, "bad-request",
          "an iq get or set must have exactly one child element", NULL, NULL);
      goto out;
    }
    if (!to.local && !to.resource && builtin(gw, stanza, payload))
      goto out;
  }
  if (!bf__users_allowed(gw, &from)) {
    deny(gw, stanza);
    goto out;
  }
  if (users(gw, stanza, &from, &to))
    goto out;

  const bf_module *m = gw->module.module;
  int rc = BF_ENOTSUP;
  if (m->on_stanza && gw->module_started)
    rc = m->on_stanza(gw->state, stanza, &from, &to);
  if (rc != BF_ENOTSUP)
    goto out;

  /* RFC 6120 §8.4 / RFC 6121 §8.5: nobody handled it. */
  if (request) {
    bf__gateway_reply_error(gw, stanza, "service-unavailable", NULL, NULL, NULL);
  } else if (!strcmp(name, "message") && !bf_stanza_is_reply(stanza)) {
    bf__gateway_reply_error(gw, stanza, "service-unavailable", NULL, NULL, NULL);
  }
  /* Presence, results and errors nobody wants are dropped silently. */
out:
  bf_jid_close(&from);
  bf_jid_close(&to);
  bf_xml_free(stanza);
}

void bf__router_oversize(bf_gateway *gw, const bf_xml *top, size_t size) {
  gw->oversize++;
  const char *name = bf_xml_name(top);
  const char *from_attr = bf_xml_attr(top, "from");
  bf_jid from;
  if (!from_attr || bf_jid_parse(&from, from_attr) != 0)
    return;
  bf_jid_close(&from);
  /* A request must get an answer (RFC 6120 §8.2.3); a message gets one so
   * its sender learns it was not delivered. */
  if (bf_stanza_is_request(top) ||
      (!strcmp(name, "message") && !bf_stanza_is_reply(top))) {
    char text[160];
    snprintf(text, sizeof text,
             "stanza of %zu bytes is larger than this gateway accepts (%zu)",
             size, gw->daemon->conf->max_stanza_size);
    bf__gateway_reply_error(gw, top, "policy-violation", text, NULL, NULL);
  }
}
