/* babelfish — XML element trees (stanzas).
 *
 * A tree is owned by its root: every node and string of one tree lives in
 * one arena that bf_xml_free(root) releases at once, which is what makes a
 * stanza cheap to build and to drop. Nodes are never freed one by one.
 *
 * Namespaces: every element has an effective namespace URI (bf_xml_xmlns).
 * Passing xmlns NULL when creating a child means "same as the parent"; for a
 * root it means jabber:component:accept, the default namespace of a
 * component stream (XEP-0114). Prefixes are not kept: the serializer writes
 * an xmlns='…' declaration wherever an element's namespace differs from its
 * parent's, which is equivalent XML. The attribute xml:lang is stored under
 * the name "xml:lang".
 *
 * Strings given to these functions are copied into the tree; strings
 * returned are borrowed from the tree and live as long as it does.
 */
#ifndef BABELFISH_XML_H
#define BABELFISH_XML_H

#include <stdbool.h>
#include <stddef.h>

#define BF_NS_COMPONENT "jabber:component:accept"
#define BF_NS_STREAM "http://etherx.jabber.org/streams"
#define BF_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define BF_NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"
#define BF_NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define BF_NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define BF_NS_VERSION "jabber:iq:version"
#define BF_NS_PING "urn:xmpp:ping"

typedef struct bf_xml bf_xml;

/* A new root element. name: borrowed, copied. xmlns: borrowed, copied; NULL
 * = jabber:component:accept. Returns NULL on ENOMEM. Free with bf_xml_free. */
bf_xml *bf_xml_new(const char *name, const char *xmlns);

/* Frees a whole tree. root: taken; must be a root (NULL is allowed). */
void bf_xml_free(bf_xml *root);

/* Appends a new child element. parent: borrowed. name, xmlns: copied; xmlns
 * NULL = the parent's namespace. Returns the child (owned by the tree) or
 * NULL on ENOMEM. */
bf_xml *bf_xml_add_child(bf_xml *parent, const char *name, const char *xmlns);

/* Appends a deep copy of src (from any tree) as the last child of parent.
 * src: borrowed. Returns the copy or NULL on ENOMEM. */
bf_xml *bf_xml_add_copy(bf_xml *parent, const bf_xml *src);

/* A deep copy of src as a new root. Returns NULL on ENOMEM. */
bf_xml *bf_xml_copy(const bf_xml *src);

/* Sets (or replaces) an attribute; value NULL removes it. name, value:
 * copied. Returns 0, BF_EINVAL (bad name) or BF_ENOMEM. */
int bf_xml_set_attr(bf_xml *el, const char *name, const char *value);

/* Appends character data. text: copied, len bytes (need not be
 * NUL-terminated, may be any bytes: the serializer repairs them).
 * Returns 0 or BF_ENOMEM. */
int bf_xml_add_text(bf_xml *el, const char *text, size_t len);

/* Appends a child element holding text: <name>text</name>. Returns the
 * child or NULL on ENOMEM. text NULL = empty element. */
bf_xml *bf_xml_add_text_child(bf_xml *parent, const char *name,
                              const char *xmlns, const char *text);

/* Unlinks child from parent (its memory stays in the arena until the root
 * is freed). Returns false if child is not a child of parent. */
bool bf_xml_remove(bf_xml *parent, bf_xml *child);

const char *bf_xml_name(const bf_xml *el);
const char *bf_xml_xmlns(const bf_xml *el);

/* The attribute's value, or NULL if absent. */
const char *bf_xml_attr(const bf_xml *el, const char *name);

/* Attributes by index, in document order: returns false past the end. */
bool bf_xml_attr_at(const bf_xml *el, size_t index, const char **name,
                    const char **value);

/* Child elements (text nodes are skipped). NULL when there are none. */
bf_xml *bf_xml_first_child(const bf_xml *el);
bf_xml *bf_xml_next(const bf_xml *el);
bf_xml *bf_xml_parent(const bf_xml *el);

/* The first child element matching name and xmlns; either may be NULL to
 * match any. */
bf_xml *bf_xml_child(const bf_xml *el, const char *name, const char *xmlns);

/* The concatenated character data directly inside el ("" if none). The
 * pointer is valid until the tree is changed or freed. Returns NULL only
 * on ENOMEM. */
const char *bf_xml_text(const bf_xml *el);

/* bf_xml_text of the first matching child, or NULL if there is no such
 * child. */
const char *bf_xml_child_text(const bf_xml *el, const char *name,
                              const char *xmlns);

/* Serializes the tree as it would go on the wire, into a malloc'd,
 * NUL-terminated string (taken by the caller; *len set if len != NULL).
 * Characters XML 1.0 forbids are dropped and invalid UTF-8 becomes U+FFFD.
 * Returns NULL on ENOMEM. */
char *bf_xml_to_string(const bf_xml *el, size_t *len);

#endif
