/* Private: the streaming XMPP parser (expat) and the wire serializer. */
#ifndef BF_XML_PRIVATE_H
#define BF_XML_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>

#include "babelfish/xml.h"
#include "buf.h"

/* Serializes el (and its subtree) onto out, the single choke point for
 * every byte babelfish writes as XML: text and attribute values are
 * escaped (& < > in text; & < ' " in attributes, which are quoted with
 * '), characters XML 1.0 forbids (C0 controls other than TAB/LF/CR,
 * U+FFFE/U+FFFF, lone surrogates) are dropped and invalid UTF-8 sequences
 * become U+FFFD. parent_xmlns: the namespace in scope, borrowed (for a
 * stanza: BF_NS_COMPONENT): an xmlns declaration is written only where the
 * element's namespace differs. Returns 0, BF_E2BIG (out->max reached;
 * out is rolled back to its previous length) or BF_ENOMEM. */
int bf__xml_serialize(const bf_xml *el, const char *parent_xmlns, bf_buf *out);

/* Appends text escaped and repaired as above. attribute: true to escape for
 * a '-quoted attribute value. */
int bf__xml_escape(bf_buf *out, const char *text, size_t len, bool attribute);

/* ---- stream parser ------------------------------------------------------ */

typedef struct bf_xml_stream bf_xml_stream;

typedef struct bf_xml_stream_callbacks {
  /* The stream header <stream:stream …> was read. header: borrowed, its
   * attributes available through bf_xml_attr (e.g. "id", "from"). */
  void (*stream_start)(void *data, const bf_xml *header);
  /* A complete depth-1 element. stanza: taken (free with bf_xml_free). */
  void (*stanza)(void *data, bf_xml *stanza);
  /* A depth-1 element larger than max_stanza_size was skipped. top:
   * borrowed — the top element with its attributes but no children, so
   * the caller can answer an iq request with an error. */
  void (*oversize)(void *data, const bf_xml *top, size_t size);
  /* </stream:stream> was read. */
  void (*stream_end)(void *data);
  /* A fatal stream error: condition is an RFC 6120 §4.9.3 stream error
   * condition to send back (not-well-formed, restricted-xml,
   * policy-violation, invalid-namespace, bad-format, …), text a reason for
   * the log. Called at most once; feed returns an error afterwards. */
  void (*error)(void *data, const char *condition, const char *text);
} bf_xml_stream_callbacks;

/* max_stanza_size: bytes of one depth-1 element (0 = 512 KiB).
 * max_depth: element nesting inside a stanza (0 = 64); deeper is a
 * policy-violation stream error. cb, data: borrowed, kept. */
bf_xml_stream *bf__xml_stream_new(const bf_xml_stream_callbacks *cb,
                                  void *data, size_t max_stanza_size,
                                  unsigned max_depth);

/* Feeds bytes as they arrive, split anywhere. Callbacks run from inside.
 * A callback must not free or reset the stream. Returns 0, or BF_EPROTO
 * once a stream error was reported (further input is ignored). */
int bf__xml_stream_feed(bf_xml_stream *stream, const char *bytes, size_t len);

/* Starts over for a new stream (after a reconnect). 0 or BF_ENOMEM. */
int bf__xml_stream_reset(bf_xml_stream *stream);

void bf__xml_stream_free(bf_xml_stream *stream);

#endif
