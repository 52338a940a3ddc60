/* babelfish — stanza helpers (RFC 6120 §8): replies and errors.
 */
#ifndef BABELFISH_STANZA_H
#define BABELFISH_STANZA_H

#include <stdbool.h>

#include "xml.h"

/* True for <iq type='get'|'set'>: a request that must get exactly one
 * result or error (RFC 6120 §8.2.3). */
bool bf_stanza_is_request(const bf_xml *stanza);

/* True for type='error', and for <iq type='result'>: stanzas that must
 * never be answered with an error (RFC 6120 §8.3.1). */
bool bf_stanza_is_reply(const bf_xml *stanza);

/* An <iq type='result'> answering the request iq: same id, from and to
 * swapped. iq: borrowed. Returns a new root or NULL on ENOMEM. */
bf_xml *bf_stanza_result(const bf_xml *iq);

/* An error reply to stanza (RFC 6120 §8.3): same element name and id, from
 * and to swapped, type='error', and
 * <error type='TYPE'><CONDITION xmlns='…stanzas'/><text>TEXT</text></error>.
 * type: cancel|continue|modify|auth|wait, or NULL for the usual type of
 * condition. text: NULL for none. Returns NULL when stanza must not be
 * answered with an error (bf_stanza_is_reply) or on ENOMEM. */
bf_xml *bf_stanza_error(const bf_xml *stanza, const char *type,
                        const char *condition, const char *text);

/* The id that identifies a message across the XMPP network for the
 * message-id map (XEP-0359 §3.1): the <origin-id xmlns='urn:xmpp:sid:0'/>
 * id when there is one, else the id attribute, else NULL. Borrowed from
 * message. */
const char *bf_stanza_message_id(const bf_xml *message);

/* The usual error type of a stanza error condition (RFC 6120 §8.3.3), e.g.
 * "cancel" for service-unavailable; "cancel" for unknown conditions. */
const char *bf_stanza_error_type(const char *condition);

#endif
