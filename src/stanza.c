/* Stanza helpers: results and errors (RFC 6120 §8). */
#include "babelfish/stanza.h"

#include <stddef.h>
#include <string.h>


static bool attr_is(const bf_xml *stanza, const char *name, const char *value) {
  const char *v = bf_xml_attr(stanza, name);
  return v && strcmp(v, value) == 0;
}

static bool is_iq(const bf_xml *stanza) {
  return strcmp(bf_xml_name(stanza), "iq") == 0;
}

bool bf_stanza_is_request(const bf_xml *stanza) {
  return is_iq(stanza) &&
         (attr_is(stanza, "type", "get") || attr_is(stanza, "type", "set"));
}

bool bf_stanza_is_reply(const bf_xml *stanza) {
  return attr_is(stanza, "type", "error") ||
         (is_iq(stanza) && attr_is(stanza, "type", "result"));
}

/* A new root named like stanza with from/to swapped, its id, and type. */
static bf_xml *reply_to(const bf_xml *stanza, const char *name, const char *type) {
  bf_xml *reply = bf_xml_new(name, NULL);
  if (!reply)
    return NULL;
  const char *from = bf_xml_attr(stanza, "to");
  const char *to = bf_xml_attr(stanza, "from");
  const char *id = bf_xml_attr(stanza, "id");
  if ((from && bf_xml_set_attr(reply, "from", from)) ||
      (to && bf_xml_set_attr(reply, "to", to)) ||
      (id && bf_xml_set_attr(reply, "id", id)) ||
      bf_xml_set_attr(reply, "type", type)) {
    bf_xml_free(reply);
    return NULL;
  }
  return reply;
}

bf_xml *bf_stanza_result(const bf_xml *iq) {
  return reply_to(iq, "iq", "result");
}

bf_xml *bf_stanza_error(const bf_xml *stanza, const char *type,
                        const char *condition, const char *text) {
  /* RFC 6120 §8.3.1: an error or result is never answered with an error,
   * or two entities could bounce errors at each other forever. */
  if (bf_stanza_is_reply(stanza))
    return NULL;
  if (!condition)
    condition = "undefined-condition";
  if (!type)
    type = bf_stanza_error_type(condition);
  bf_xml *reply = reply_to(stanza, bf_xml_name(stanza), "error");
  if (!reply)
    return NULL;
  bf_xml *error = bf_xml_add_child(reply, "error", NULL);
  if (!error || bf_xml_set_attr(error, "type", type) ||
      !bf_xml_add_child(error, condition, BF_NS_STANZAS))
    goto fail;
  if (text) {
    bf_xml *t = bf_xml_add_text_child(error, "text", BF_NS_STANZAS, text);
    if (!t || bf_xml_set_attr(t, "xml:lang", "en"))
      goto fail;
  }
  return reply;
fail:
  bf_xml_free(reply);
  return NULL;
}

/* XEP-0359 §3.1: a client that sets <origin-id/> promises it is unique
 * and kept as the message travels, whereas the id attribute may be
 * rewritten by servers (MUCs, carbons) and is not required to be unique.
 * An empty id identifies nothing and is skipped. */
#define NS_SID "urn:xmpp:sid:0"

const char *bf_stanza_message_id(const bf_xml *message) {
  if (!message)
    return NULL;
  const bf_xml *origin = bf_xml_child(message, "origin-id", NS_SID);
  const char *id = origin ? bf_xml_attr(origin, "id") : NULL;
  if (id && *id)
    return id;
  id = bf_xml_attr(message, "id");
  return id && *id ? id : NULL;
}

/* RFC 6120 §8.3.3: the type each defined condition usually comes with. */
static const struct {
  const char *condition;
  const char *type;
} error_types[] = {
    {"bad-request", "modify"},
    {"conflict", "cancel"},
    {"feature-not-implemented", "cancel"},
    {"forbidden", "auth"},
    {"gone", "cancel"},
    {"internal-server-error", "cancel"},
    {"item-not-found", "cancel"},
    {"jid-malformed", "modify"},
    {"not-acceptable", "modify"},
    {"not-allowed", "cancel"},
    {"not-authorized", "auth"},
    {"policy-violation", "modify"},
    {"recipient-unavailable", "wait"},
    {"redirect", "modify"},
    {"registration-required", "auth"},
    {"remote-server-not-found", "cancel"},
    {"remote-server-timeout", "wait"},
    {"resource-constraint", "wait"},
    {"service-unavailable", "cancel"},
    {"subscription-required", "auth"},
    {"undefined-condition", "cancel"},
    {"unexpected-request", "wait"},
};

const char *bf_stanza_error_type(const char *condition) {
  if (condition)
    for (size_t i = 0; i < sizeof error_types / sizeof error_types[0]; i++)
      if (strcmp(error_types[i].condition, condition) == 0)
        return error_types[i].type;
  return "cancel";
}
