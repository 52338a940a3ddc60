/* XML element trees, the wire serializer and the XMPP stream parser.
 *
 * Every tree lives in one arena (a bump allocator in growing blocks): a
 * parsed stanza costs one malloc and one free however many nodes it has,
 * which is most of what makes the parser fast. Nodes are never freed one
 * by one; bf_xml_remove only unlinks.
 *
 * The stream parser keeps one expat parser per stream (created once, reset
 * for a new stream) in namespace mode with triplets: element and attribute
 * names arrive as "uri\1local\1prefix", from which the trees keep the URI
 * and the local name (xmlns is per element, the serializer redeclares it
 * where it changes).
 */
#include "xml.h"

#include <limits.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <expat.h>

#include "babelfish/error.h"

#define NS_SEP '\x01'
#define NS_XML "http://www.w3.org/XML/1998/namespace"
#define NS_XMLNS "http://www.w3.org/2000/xmlns/"

/* The first block holds a typical stanza (message + body + a few
 * attributes is ~700 bytes) and stays in glibc's tcache size range. */
#define ARENA_FIRST_BLOCK 1024
#define ARENA_MAX_BLOCK (64 * 1024)
/* No single request is ever this big; it keeps size arithmetic from
 * overflowing whatever length a caller passes. */
#define ARENA_MAX_REQUEST (SIZE_MAX / 4)

#define DEFAULT_MAX_STANZA_SIZE (512 * 1024)
#define DEFAULT_MAX_DEPTH 64
/* The stream header is no stanza; it gets at least this much room. */
#define MIN_HEADER_SIZE (64 * 1024)

/* The namespace of roots created with xmlns NULL and of stanzas. Nodes in
 * it point at this very string, so comparisons mostly end at the pointer. */
static const char ns_component[] = BF_NS_COMPONENT;
static const char ns_none[] = "";

/* ---- arena ------------------------------------------------------------------ */

typedef struct arena_block {
  struct arena_block *next;
  alignas(max_align_t) char data[];
} arena_block;

typedef struct arena {
  char *ptr;             /* next free byte of the current block */
  char *end;             /* end of the current block */
  arena_block *blocks;   /* blocks after the first (which is this struct's) */
  bf_xml *root;          /* the one node bf_xml_free accepts */
  size_t next_size;      /* size of the next block */
} arena;

typedef struct attr {
  const char *name;   /* "local", "xml:lang" or "prefix:local" */
  const char *value;
  const char *xmlns;  /* NULL, or the URI the prefix of name stands for */
} attr;

struct bf_xml {
  bf_xml *parent;
  bf_xml *next;       /* next sibling, element or text */
  arena *arena;
  const char *name;   /* NULL for a text node */
  union {
    struct {
      const char *xmlns;
      bf_xml *first, *last;   /* children, elements and text */
      attr *attrs;
      uint32_t nattrs, attrs_cap;
      const char *text;       /* bf_xml_text cache; NULL = not computed */
    } el;
    struct {
      char *data;             /* NUL-terminated */
      size_t len;
    } text;
  } u;
};

#define TEXT_NODE_SIZE (offsetof(bf_xml, u) + sizeof(((bf_xml *)0)->u.text))

static arena *arena_new(void) {
  arena *a = malloc(ARENA_FIRST_BLOCK);
  if (!a)
    return NULL;
  a->ptr = (char *)(a + 1);
  a->end = (char *)a + ARENA_FIRST_BLOCK;
  a->blocks = NULL;
  a->root = NULL;
  a->next_size = 4096;
  return a;
}

static void arena_free(arena *a) {
  if (!a)
    return;
  arena_block *b = a->blocks;
  while (b) {
    arena_block *next = b->next;
    free(b);
    b = next;
  }
  free(a);
}

/* A new current block with at least min free bytes. */
static int arena_grow(arena *a, size_t min) {
  if (min > ARENA_MAX_REQUEST)
    return BF_ENOMEM;
  size_t size = a->next_size;
  if (size < min + sizeof(arena_block))
    size = min + sizeof(arena_block);
  arena_block *b = malloc(size);
  if (!b)
    return BF_ENOMEM;
  b->next = a->blocks;
  a->blocks = b;
  a->ptr = b->data;
  a->end = (char *)b + size;
  if (a->next_size < ARENA_MAX_BLOCK)
    a->next_size *= 2;
  return 0;
}

static void *arena_alloc_slow(arena *a, size_t size, size_t align) {
  if (size > ARENA_MAX_REQUEST)
    return NULL;
  if (size + align > a->next_size / 2) {
    /* A big piece gets a block of its own; the current block keeps
     * serving small ones. */
    arena_block *b = malloc(sizeof(arena_block) + size);
    if (!b)
      return NULL;
    b->next = a->blocks;
    a->blocks = b;
    return b->data;
  }
  if (arena_grow(a, size + align))
    return NULL;
  uintptr_t p = ((uintptr_t)a->ptr + align - 1) & ~(uintptr_t)(align - 1);
  a->ptr = (char *)p + size;
  return (void *)p;
}

static inline void *arena_alloc(arena *a, size_t size, size_t align) {
  size_t pad = (size_t)(-(uintptr_t)a->ptr & (align - 1));
  if (size <= ARENA_MAX_REQUEST && (size_t)(a->end - a->ptr) >= pad + size) {
    void *p = a->ptr + pad;
    a->ptr += pad + size;
    return p;
  }
  return arena_alloc_slow(a, size, align);
}

static char *arena_strndup(arena *a, const char *s, size_t len) {
  if (len >= ARENA_MAX_REQUEST)
    return NULL;
  char *d = arena_alloc(a, len + 1, 1);
  if (d) {
    memcpy(d, s, len);
    d[len] = '\0';
  }
  return d;
}

/* ---- nodes ------------------------------------------------------------------ */

static bool is_name_start(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(unsigned char c) {
  return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* Attribute names are short and differ in their first two bytes (from,
 * to, type, id, xml:lang): compare them inline. */
static inline bool same_name(const char *a, const char *b) {
  if (a[0] != b[0])
    return false;
  /* A short inline loop beats a call to strcmp for names this short. */
  while (*a && *a == *b) {
    a++;
    b++;
  }
  return *a == *b;
}

/* Names given through the API: ASCII NCNames, which is every name XMPP
 * uses; anything else could make the serializer write bad XML. */
static bool valid_ncname(const char *name) {
  if (!name || !is_name_start((unsigned char)*name))
    return false;
  for (const char *p = name + 1; *p; p++)
    if (!is_name_char((unsigned char)*p))
      return false;
  return true;
}

/* A new element in a, linked under parent if not NULL. name is copied
 * (namelen bytes); xmlns is stored as is (must live in a or be static). */
static bf_xml *element_new(arena *a, bf_xml *parent, const char *name,
                           size_t namelen, const char *xmlns) {
  if (namelen >= ARENA_MAX_REQUEST)
    return NULL;
  bf_xml *el = arena_alloc(a, sizeof *el + namelen + 1, alignof(bf_xml));
  if (!el)
    return NULL;
  char *n = (char *)(el + 1);
  memcpy(n, name, namelen);
  n[namelen] = '\0';
  el->parent = parent;
  el->next = NULL;
  el->arena = a;
  el->name = n;
  el->u.el.xmlns = xmlns;
  el->u.el.first = el->u.el.last = NULL;
  el->u.el.attrs = NULL;
  el->u.el.nattrs = el->u.el.attrs_cap = 0;
  el->u.el.text = NULL;
  if (parent) {
    if (parent->u.el.last)
      parent->u.el.last->next = el;
    else
      parent->u.el.first = el;
    parent->u.el.last = el;
  }
  return el;
}

/* Appends len bytes of text to el: to its last child if that is text
 * (in place when it sits at the top of the arena), else as a new node. */
static int text_append(bf_xml *el, const char *text, size_t len) {
  arena *a = el->arena;
  bf_xml *last = el->u.el.last;
  el->u.el.text = NULL;
  if (len >= ARENA_MAX_REQUEST)
    return BF_ENOMEM;
  if (last && !last->name) {
    char *data = last->u.text.data;
    size_t old = last->u.text.len;
    if (data + old + 1 == a->ptr && (size_t)(a->end - a->ptr) >= len) {
      memcpy(data + old, text, len);
      last->u.text.len = old + len;
      data[old + len] = '\0';
      a->ptr += len;
      return 0;
    }
    size_t total = old + len;
    if (total >= ARENA_MAX_REQUEST)
      return BF_ENOMEM;
    /* Move to a block with room to grow: a long text arriving in many
     * pieces is copied O(log n) times, not once per piece. */
    if ((size_t)(a->end - a->ptr) < total + 1 && arena_grow(a, 2 * (total + 1)))
      return BF_ENOMEM;
    char *d = a->ptr;
    memcpy(d, data, old);
    memcpy(d + old, text, len);
    d[total] = '\0';
    a->ptr = d + total + 1;
    last->u.text.data = d;
    last->u.text.len = total;
    return 0;
  }
  bf_xml *t = arena_alloc(a, TEXT_NODE_SIZE, alignof(bf_xml));
  if (!t)
    return BF_ENOMEM;
  char *d = arena_alloc(a, len + 1, 1);
  if (!d)
    return BF_ENOMEM;
  memcpy(d, text, len);
  d[len] = '\0';
  t->parent = el;
  t->next = NULL;
  t->arena = a;
  t->name = NULL;
  t->u.text.data = d;
  t->u.text.len = len;
  if (last)
    last->next = t;
  else
    el->u.el.first = t;
  el->u.el.last = t;
  return 0;
}

/* xmlns for a new element under parent (NULL = a root): the parent's or
 * the static string when equal, else a copy in a. */
static const char *xmlns_for(arena *a, const bf_xml *parent, const char *xmlns) {
  const char *scope = parent ? parent->u.el.xmlns : ns_component;
  if (!xmlns || xmlns == scope || strcmp(xmlns, scope) == 0)
    return scope;
  if (strcmp(xmlns, NS_XMLNS) == 0)
    return NULL; /* reserved for declarations (Namespaces in XML §3) */
  if (strcmp(xmlns, ns_component) == 0)
    return ns_component;
  if (!*xmlns)
    return ns_none;
  return arena_strndup(a, xmlns, strlen(xmlns));
}

static bf_xml *root_new(const char *name, size_t namelen, const char *xmlns) {
  arena *a = arena_new();
  if (!a)
    return NULL;
  const char *ns = xmlns_for(a, NULL, xmlns);
  bf_xml *el = ns ? element_new(a, NULL, name, namelen, ns) : NULL;
  if (!el) {
    arena_free(a);
    return NULL;
  }
  a->root = el;
  return el;
}

bf_xml *bf_xml_new(const char *name, const char *xmlns) {
  if (!valid_ncname(name))
    return NULL;
  return root_new(name, strlen(name), xmlns);
}

void bf_xml_free(bf_xml *root) {
  /* Anything but the root of its arena (a child, an unlinked node) would
   * free memory the tree still uses: ignore it. */
  if (root && root->arena->root == root)
    arena_free(root->arena);
}

bf_xml *bf_xml_add_child(bf_xml *parent, const char *name, const char *xmlns) {
  if (!parent || !parent->name || !valid_ncname(name))
    return NULL;
  const char *ns = xmlns_for(parent->arena, parent, xmlns);
  if (!ns)
    return NULL;
  parent->u.el.text = NULL;
  return element_new(parent->arena, parent, name, strlen(name), ns);
}

/* String s from another tree's node, for arena a: shared if s is already
 * in a (strings are never changed in place), else copied. */
static const char *adopt(arena *a, const arena *from, const char *s) {
  if (!s || a == from)
    return s;
  return arena_strndup(a, s, strlen(s));
}

/* One node like src (no children), appended under parent (NULL = root). */
static bf_xml *clone_node(arena *a, bf_xml *parent, const bf_xml *src) {
  if (!src->name) {
    if (!parent)
      return NULL;
    return text_append(parent, src->u.text.data, src->u.text.len) ? NULL
                                                                  : parent->u.el.last;
  }
  const char *ns = src->u.el.xmlns;
  const char *scope = parent ? parent->u.el.xmlns : ns_component;
  if (ns == scope || strcmp(ns, scope) == 0)
    ns = scope;
  else if (ns != ns_component && ns != ns_none)
    ns = adopt(a, src->arena, ns);
  if (!ns)
    return NULL;
  bf_xml *el = element_new(a, parent, src->name, strlen(src->name), ns);
  if (!el)
    return NULL;
  uint32_t n = src->u.el.nattrs;
  if (n) {
    attr *at = arena_alloc(a, n * sizeof *at, alignof(attr));
    if (!at)
      return NULL;
    for (uint32_t i = 0; i < n; i++) {
      const attr *s = &src->u.el.attrs[i];
      at[i].name = adopt(a, src->arena, s->name);
      at[i].value = adopt(a, src->arena, s->value);
      at[i].xmlns = adopt(a, src->arena, s->xmlns);
      if (!at[i].name || !at[i].value || (s->xmlns && !at[i].xmlns))
        return NULL;
    }
    el->u.el.attrs = at;
    el->u.el.nattrs = el->u.el.attrs_cap = n;
  }
  return el;
}

/* Deep copy of src under parent (in a), walking the tree without
 * recursion. Returns the copy of src or NULL on ENOMEM. */
static bf_xml *copy_tree(arena *a, bf_xml *parent, const bf_xml *src) {
  const bf_xml *s = src;
  bf_xml *dst_parent = parent;
  bf_xml *top = NULL;
  for (;;) {
    bf_xml *d = clone_node(a, dst_parent, s);
    if (!d)
      return NULL;
    if (!top)
      top = d;
    if (s->name && s->u.el.first) {
      dst_parent = d;
      s = s->u.el.first;
      continue;
    }
    for (;;) {
      if (s == src)
        return top;
      if (s->next) {
        s = s->next;
        break;
      }
      s = s->parent;
      dst_parent = dst_parent->parent;
    }
  }
}

bf_xml *bf_xml_copy(const bf_xml *src) {
  if (!src || !src->name)
    return NULL;
  arena *a = arena_new();
  if (!a)
    return NULL;
  bf_xml *root = copy_tree(a, NULL, src);
  if (!root) {
    arena_free(a);
    return NULL;
  }
  a->root = root;
  return root;
}

bf_xml *bf_xml_add_copy(bf_xml *parent, const bf_xml *src) {
  if (!parent || !parent->name || !src || !src->name)
    return NULL;
  /* Copying a tree into itself would walk into the copy being made. */
  for (const bf_xml *p = parent; p; p = p->parent) {
    if (p == src) {
      bf_xml *tmp = bf_xml_copy(src);
      bf_xml *copy = tmp ? bf_xml_add_copy(parent, tmp) : NULL;
      bf_xml_free(tmp);
      return copy;
    }
  }
  parent->u.el.text = NULL;
  return copy_tree(parent->arena, parent, src);
}

/* "xml:" followed by an NCName, or an NCName. */
static bool valid_attr_name(const char *name) {
  if (!name)
    return false;
  if (name[0] == 'x' && strncmp(name, "xml:", 4) == 0)
    return valid_ncname(name + 4);
  return valid_ncname(name) && !(name[0] == 'x' && strcmp(name, "xmlns") == 0);
}

int bf_xml_set_attr(bf_xml *el, const char *name, const char *value) {
  if (!el || !el->name || !valid_attr_name(name))
    return BF_EINVAL;
  arena *a = el->arena;
  attr *at = el->u.el.attrs;
  uint32_t n = el->u.el.nattrs;
  for (uint32_t i = 0; i < n; i++) {
    if (!same_name(at[i].name, name))
      continue;
    if (!value) {
      memmove(&at[i], &at[i + 1], (n - i - 1) * sizeof *at);
      el->u.el.nattrs--;
      return 0;
    }
    const char *v = arena_strndup(a, value, strlen(value));
    if (!v)
      return BF_ENOMEM;
    at[i].value = v;
    return 0;
  }
  if (!value)
    return 0;
  if (n == el->u.el.attrs_cap) {
    uint32_t cap = n ? n * 2 : 4;
    attr *grown = arena_alloc(a, cap * sizeof *grown, alignof(attr));
    if (!grown)
      return BF_ENOMEM;
    if (n)
      memcpy(grown, at, n * sizeof *at);
    el->u.el.attrs = at = grown;
    el->u.el.attrs_cap = cap;
  }
  const char *nm = arena_strndup(a, name, strlen(name));
  const char *v = nm ? arena_strndup(a, value, strlen(value)) : NULL;
  if (!v)
    return BF_ENOMEM;
  at[n].name = nm;
  at[n].value = v;
  at[n].xmlns = NULL;
  el->u.el.nattrs = n + 1;
  return 0;
}

int bf_xml_add_text(bf_xml *el, const char *text, size_t len) {
  if (!el || !el->name || (!text && len))
    return BF_EINVAL;
  if (!len)
    return 0;
  return text_append(el, text, len);
}

bf_xml *bf_xml_add_text_child(bf_xml *parent, const char *name,
                              const char *xmlns, const char *text) {
  bf_xml *child = bf_xml_add_child(parent, name, xmlns);
  if (child && text && *text && text_append(child, text, strlen(text)))
    return NULL;
  return child;
}

bool bf_xml_remove(bf_xml *parent, bf_xml *child) {
  if (!parent || !child || !parent->name || child->parent != parent)
    return false;
  bf_xml *prev = NULL;
  for (bf_xml *c = parent->u.el.first; c; prev = c, c = c->next) {
    if (c != child)
      continue;
    if (prev)
      prev->next = c->next;
    else
      parent->u.el.first = c->next;
    if (parent->u.el.last == c)
      parent->u.el.last = prev;
    c->next = NULL;
    c->parent = NULL;
    parent->u.el.text = NULL;
    return true;
  }
  return false;
}

const char *bf_xml_name(const bf_xml *el) { return el->name; }

const char *bf_xml_xmlns(const bf_xml *el) { return el->u.el.xmlns; }

const char *bf_xml_attr(const bf_xml *el, const char *name) {
  const attr *at = el->u.el.attrs;
  for (uint32_t i = 0, n = el->u.el.nattrs; i < n; i++)
    if (same_name(at[i].name, name))
      return at[i].value;
  return NULL;
}

bool bf_xml_attr_at(const bf_xml *el, size_t index, const char **name,
                    const char **value) {
  if (index >= el->u.el.nattrs)
    return false;
  if (name)
    *name = el->u.el.attrs[index].name;
  if (value)
    *value = el->u.el.attrs[index].value;
  return true;
}

static bf_xml *next_element(bf_xml *node) {
  while (node && !node->name)
    node = node->next;
  return node;
}

bf_xml *bf_xml_first_child(const bf_xml *el) {
  return el->name ? next_element(el->u.el.first) : NULL;
}

bf_xml *bf_xml_next(const bf_xml *el) { return next_element(el->next); }

bf_xml *bf_xml_parent(const bf_xml *el) { return el->parent; }

bf_xml *bf_xml_child(const bf_xml *el, const char *name, const char *xmlns) {
  for (bf_xml *c = bf_xml_first_child(el); c; c = bf_xml_next(c)) {
    if (name && !same_name(c->name, name))
      continue;
    if (xmlns && c->u.el.xmlns != xmlns && strcmp(c->u.el.xmlns, xmlns) != 0)
      continue;
    return c;
  }
  return NULL;
}

const char *bf_xml_text(const bf_xml *el) {
  if (!el->name)
    return el->u.text.data;
  if (el->u.el.text)
    return el->u.el.text;
  const bf_xml *only = NULL;
  size_t total = 0, count = 0;
  for (const bf_xml *c = el->u.el.first; c; c = c->next) {
    if (c->name)
      continue;
    only = c;
    total += c->u.text.len;
    count++;
  }
  if (count == 0)
    return ns_none;
  if (count == 1)
    return only->u.text.data;
  char *s = arena_alloc(el->arena, total + 1, 1);
  if (!s)
    return NULL;
  char *p = s;
  for (const bf_xml *c = el->u.el.first; c; c = c->next) {
    if (!c->name) {
      memcpy(p, c->u.text.data, c->u.text.len);
      p += c->u.text.len;
    }
  }
  *p = '\0';
  /* The cache is invalidated by every change to el's children. */
  ((bf_xml *)el)->u.el.text = s;
  return s;
}

const char *bf_xml_child_text(const bf_xml *el, const char *name,
                              const char *xmlns) {
  const bf_xml *c = bf_xml_child(el, name, xmlns);
  return c ? bf_xml_text(c) : NULL;
}

/* ---- serializer -------------------------------------------------------------- */

/* Bytes that cannot be copied as they are: 1 in text, 2 in attribute
 * values, 3 in both. Everything >= 0x80 goes through UTF-8 validation. */
#define X16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const unsigned char special[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 3, 3, 3, 3, 3, /* TAB LF CR */
    X16(3),
    0, 0, 2, 0, 0, 0, 3, 2, 0, 0, 0, 0, 0, 0, 0, 0, /* " & ' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0, /* < > */
    X16(0), X16(0), X16(0), X16(0),
    X16(3), X16(3), X16(3), X16(3), X16(3), X16(3), X16(3), X16(3),
};
#undef X16

static inline int put(bf_buf *out, const char *s, size_t n) {
  int rc = bf__buf_reserve(out, n);
  if (rc)
    return rc;
  memcpy(out->data + out->len, s, n);
  out->len += n;
  return 0;
}

#define PUT_LIT(out, lit) put(out, lit, sizeof(lit) - 1)

/* The length of the UTF-8 sequence at p if it is a character XML allows;
 * 0 if the bytes are not valid UTF-8 (overlong, truncated, > U+10FFFF, a
 * stray continuation byte); -n for a valid-looking sequence of n bytes
 * that XML 1.0 §2.2 forbids (an encoded surrogate, U+FFFE, U+FFFF). */
static int utf8_char(const unsigned char *p, size_t avail) {
  unsigned char c = p[0];
  if (c >= 0xC2 && c <= 0xDF)
    return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
      return 0;
    if (c == 0xE0 && p[1] < 0xA0)
      return 0; /* overlong */
    if (c == 0xED && p[1] >= 0xA0)
      return -3; /* U+D800..U+DFFF */
    if (c == 0xEF && p[1] == 0xBF && p[2] >= 0xBE)
      return -3; /* U+FFFE, U+FFFF */
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
        (p[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && p[1] < 0x90)
      return 0; /* overlong */
    if (c == 0xF4 && p[1] >= 0x90)
      return 0; /* > U+10FFFF */
    return 4;
  }
  return 0;
}

static int escape(bf_buf *out, const char *text, size_t len, bool attribute) {
  const unsigned char *p = (const unsigned char *)text;
  const unsigned char mask = attribute ? 2 : 1;
  size_t i = 0, run = 0;
  int rc;
  while (i < len) {
    unsigned char c = p[i];
    if (!(special[c] & mask)) {
      i++;
      continue;
    }
    size_t skip = 1;
    const char *rep = NULL;
    size_t replen = 0;
    if (c >= 0x80) {
      int n = utf8_char(p + i, len - i);
      if (n > 0) {
        i += (size_t)n;
        continue;
      }
      if (n < 0) {
        skip = (size_t)-n;
      } else {
        rep = "\xEF\xBF\xBD";
        replen = 3;
      }
    } else {
      switch (c) {
      case '&': rep = "&amp;"; replen = 5; break;
      case '<': rep = "&lt;"; replen = 4; break;
      case '>': rep = "&gt;"; replen = 4; break;
      case '\'': rep = "&apos;"; replen = 6; break;
      case '"': rep = "&quot;"; replen = 6; break;
      /* Character references keep these through the receiver's
       * end-of-line handling and attribute value normalisation (XML 1.0
       * §2.11, §3.3.3). */
      case '\r': rep = "&#13;"; replen = 5; break;
      case '\n': rep = "&#10;"; replen = 5; break;
      case '\t': rep = "&#9;"; replen = 4; break;
      default: break; /* a C0 control XML 1.0 §2.2 forbids: dropped */
      }
    }
    if (i > run && (rc = put(out, text + run, i - run)))
      return rc;
    if (rep && (rc = put(out, rep, replen)))
      return rc;
    i += skip;
    run = i;
  }
  if (i > run)
    return put(out, text + run, i - run);
  return 0;
}

static void rollback(bf_buf *out, size_t len) {
  out->len = len;
  if (out->data)
    out->data[len] = '\0';
}

int bf__xml_escape(bf_buf *out, const char *text, size_t len, bool attribute) {
  size_t start = out->len;
  int rc = bf__buf_reserve(out, 0);
  if (!rc)
    rc = escape(out, text, len, attribute);
  if (rc)
    rollback(out, start);
  else
    out->data[out->len] = '\0';
  return rc;
}

/* An element in the XML namespace (<xml:foo/> is legal) must keep the
 * xml prefix: that namespace cannot be declared as a default (Namespaces
 * in XML §3). */
static bool in_xml_ns(const char *ns) {
  return ns[0] == 'h' && strcmp(ns, NS_XML) == 0;
}

static int put_name(bf_buf *out, const bf_xml *el) {
  int rc = in_xml_ns(el->u.el.xmlns) ? PUT_LIT(out, "xml:") : 0;
  return rc ? rc : put(out, el->name, strlen(el->name));
}

static int open_tag(bf_buf *out, const bf_xml *el, const char *scope) {
  int rc;
  if ((rc = PUT_LIT(out, "<")) || (rc = put_name(out, el)))
    return rc;
  const char *ns = el->u.el.xmlns;
  if (ns != scope && strcmp(ns, scope) != 0 && !in_xml_ns(ns)) {
    if ((rc = PUT_LIT(out, " xmlns='")) || (rc = escape(out, ns, strlen(ns), true)) ||
        (rc = PUT_LIT(out, "'")))
      return rc;
  }
  const attr *at = el->u.el.attrs;
  for (uint32_t i = 0, n = el->u.el.nattrs; i < n; i++) {
    if (at[i].xmlns) {
      /* Prefixes are not kept on elements, only on attributes that need
       * one: declare it here, once per element. */
      const char *colon = strchr(at[i].name, ':');
      size_t plen = colon ? (size_t)(colon - at[i].name) : 0;
      bool declared = false;
      for (uint32_t j = 0; j < i && !declared; j++)
        declared = at[j].xmlns && strncmp(at[j].name, at[i].name, plen + 1) == 0;
      if (plen && !declared &&
          ((rc = PUT_LIT(out, " xmlns:")) || (rc = put(out, at[i].name, plen)) ||
           (rc = PUT_LIT(out, "='")) ||
           (rc = escape(out, at[i].xmlns, strlen(at[i].xmlns), true)) ||
           (rc = PUT_LIT(out, "'"))))
        return rc;
    }
    if ((rc = PUT_LIT(out, " ")) || (rc = put(out, at[i].name, strlen(at[i].name))) ||
        (rc = PUT_LIT(out, "='")) ||
        (rc = escape(out, at[i].value, strlen(at[i].value), true)) ||
        (rc = PUT_LIT(out, "'")))
      return rc;
  }
  return 0;
}

static int serialize(const bf_xml *top, const char *parent_xmlns, bf_buf *out) {
  const bf_xml *el = top;
  int rc;
  for (;;) {
    if (!el->name) {
      if ((rc = escape(out, el->u.text.data, el->u.text.len, false)))
        return rc;
    } else {
      const char *scope = el == top ? parent_xmlns : el->parent->u.el.xmlns;
      if ((rc = open_tag(out, el, scope)))
        return rc;
      if (el->u.el.first) {
        if ((rc = PUT_LIT(out, ">")))
          return rc;
        el = el->u.el.first;
        continue;
      }
      if ((rc = PUT_LIT(out, "/>")))
        return rc;
    }
    for (;;) {
      if (el == top)
        return 0;
      if (el->next) {
        el = el->next;
        break;
      }
      el = el->parent;
      if ((rc = PUT_LIT(out, "</")) || (rc = put_name(out, el)) ||
          (rc = PUT_LIT(out, ">")))
        return rc;
    }
  }
}

int bf__xml_serialize(const bf_xml *el, const char *parent_xmlns, bf_buf *out) {
  size_t start = out->len;
  int rc = bf__buf_reserve(out, 0);
  if (!rc)
    rc = serialize(el, parent_xmlns ? parent_xmlns : ns_none, out);
  if (rc)
    rollback(out, start);
  else
    out->data[out->len] = '\0';
  return rc;
}

char *bf_xml_to_string(const bf_xml *el, size_t *len) {
  bf_buf out;
  bf__buf_init(&out, 0);
  if (bf__xml_serialize(el, ns_component, &out)) {
    bf__buf_close(&out);
    return NULL;
  }
  if (len)
    *len = out.len;
  return out.data;
}

/* ---- stream parser ------------------------------------------------------------ */

enum { DEFAULT_NS_NONE, DEFAULT_NS_OK, DEFAULT_NS_BAD };

struct bf_xml_stream {
  XML_Parser parser;
  const bf_xml_stream_callbacks *cb;
  void *data;
  uint64_t max_size;
  unsigned max_depth;

  unsigned depth;        /* open elements, the stream header included */
  int default_ns;        /* what the header declared as default namespace */
  bool stopped;          /* failed or ended: input is ignored */
  bool failed;
  bool skipping;         /* inside an oversized stanza */
  bf_xml *header;
  bf_xml *stanza;        /* the depth-1 element being built */
  bf_xml *current;       /* its innermost open element */
  bf_xml *skip_top;      /* the oversized stanza's top element */
  uint64_t fed;          /* bytes given to expat since the stream began */
  uint64_t stanza_start; /* byte index where stanza / skip_top began */
  uint64_t mark;         /* end of the last event expat reported */
  char reason[160];
};

static void fail(bf_xml_stream *s, const char *condition, const char *text) {
  if (s->stopped)
    return;
  s->stopped = true;
  s->failed = true;
  /* Outside a handler this is a harmless no-op error. */
  (void)XML_StopParser(s->parser, XML_FALSE);
  if (s->cb->error)
    s->cb->error(s->data, condition, text);
}

/* The longest single token (start tag, …) accepted. */
static uint64_t token_limit(const bf_xml_stream *s) {
  if (s->depth == 0 && s->max_size < MIN_HEADER_SIZE)
    return MIN_HEADER_SIZE;
  return s->max_size;
}

static uint64_t event_end(bf_xml_stream *s) {
  return (uint64_t)XML_GetCurrentByteIndex(s->parser) +
         (uint64_t)XML_GetCurrentByteCount(s->parser);
}

/* Splits an expat name "uri\1local[\1prefix]" (or "local"). */
typedef struct qname {
  const char *ns;
  size_t nslen;
  const char *local;
  size_t locallen;
  const char *prefix; /* NULL if none */
} qname;

static void split_name(const char *name, qname *q) {
  const char *sep = strchrnul(name, NS_SEP);
  if (!*sep) {
    q->ns = ns_none;
    q->nslen = 0;
    q->local = name;
    q->locallen = (size_t)(sep - name);
    q->prefix = NULL;
    return;
  }
  q->ns = name;
  q->nslen = (size_t)(sep - name);
  q->local = sep + 1;
  const char *end = strchrnul(q->local, NS_SEP);
  q->locallen = (size_t)(end - q->local);
  q->prefix = *end ? end + 1 : NULL;
}

static bool ns_equal(const char *ns, const qname *q) {
  return strncmp(ns, q->ns, q->nslen) == 0 && ns[q->nslen] == '\0';
}

/* Attributes from expat's name/value array into el. */
static int set_parsed_attrs(arena *a, bf_xml *el, const char **atts) {
  uint32_t n = 0;
  while (atts[2 * n])
    n++;
  if (!n)
    return 0;
  attr *at = arena_alloc(a, n * sizeof *at, alignof(attr));
  if (!at)
    return BF_ENOMEM;
  for (uint32_t i = 0; i < n; i++) {
    const char *name = atts[2 * i];
    const char *value = atts[2 * i + 1];
    const char *sep = strchrnul(name, NS_SEP);
    at[i].xmlns = NULL;
    if (!*sep) {
      at[i].name = arena_strndup(a, name, (size_t)(sep - name));
    } else {
      qname q;
      split_name(name, &q);
      const char *prefix = q.prefix;
      if (ns_equal(NS_XML, &q)) {
        prefix = "xml";
      } else {
        at[i].xmlns = arena_strndup(a, q.ns, q.nslen);
        if (!at[i].xmlns)
          return BF_ENOMEM;
        if (!prefix)
          prefix = "ns"; /* expat always reports one; just in case */
      }
      size_t plen = strlen(prefix);
      char *nm = arena_alloc(a, plen + 1 + q.locallen + 1, 1);
      if (nm) {
        memcpy(nm, prefix, plen);
        nm[plen] = ':';
        memcpy(nm + plen + 1, q.local, q.locallen);
        nm[plen + 1 + q.locallen] = '\0';
      }
      at[i].name = nm;
    }
    at[i].value = at[i].name ? arena_strndup(a, value, strlen(value)) : NULL;
    if (!at[i].value)
      return BF_ENOMEM;
  }
  el->u.el.attrs = at;
  el->u.el.nattrs = el->u.el.attrs_cap = n;
  return 0;
}

/* An element from expat's name and attributes: a new root when parent is
 * NULL, else a child of parent. */
static bf_xml *parsed_element(bf_xml *parent, const char *name, const char **atts) {
  qname q;
  split_name(name, &q);
  bf_xml *el = NULL;
  arena *a = parent ? parent->arena : arena_new();
  if (!a)
    return NULL;
  const char *scope = parent ? parent->u.el.xmlns : ns_component;
  const char *ns;
  if (ns_equal(scope, &q))
    ns = scope;
  else if (!q.nslen)
    ns = ns_none;
  else
    ns = arena_strndup(a, q.ns, q.nslen);
  if (ns)
    el = element_new(a, parent, q.local, q.locallen, ns);
  if (el && set_parsed_attrs(a, el, atts))
    el = NULL;
  if (!parent) {
    if (el)
      a->root = el;
    else
      arena_free(a);
  }
  return el;
}

static void enter_skip(bf_xml_stream *s) {
  arena *a = arena_new();
  bf_xml *copy = a ? clone_node(a, NULL, s->stanza) : NULL;
  bf_xml_free(s->stanza);
  s->stanza = s->current = NULL;
  if (!copy) {
    arena_free(a);
    fail(s, "internal-server-error", "out of memory");
    return;
  }
  a->root = copy;
  s->skip_top = copy;
  s->skipping = true;
}

/* RFC 6120 §4.8.1, §4.9.3.10: the stream element itself, and
 * jabber:component:accept as content namespace (XEP-0114 §3). */
static void start_stream(bf_xml_stream *s, const char *name, const char **atts) {
  qname q;
  split_name(name, &q);
  if (!ns_equal(BF_NS_STREAM, &q)) {
    fail(s, "invalid-namespace",
         "the stream element is not in http://etherx.jabber.org/streams");
    return;
  }
  if (q.locallen != 6 || memcmp(q.local, "stream", 6) != 0) {
    fail(s, "bad-format", "the root element is not <stream:stream>");
    return;
  }
  if (s->default_ns != DEFAULT_NS_OK) {
    fail(s, "invalid-namespace",
         "the stream's default namespace is not jabber:component:accept");
    return;
  }
  XML_SetStartNamespaceDeclHandler(s->parser, NULL);
  s->header = parsed_element(NULL, name, atts);
  if (!s->header) {
    fail(s, "internal-server-error", "out of memory");
    return;
  }
  s->depth = 1;
  if (s->cb->stream_start)
    s->cb->stream_start(s->data, s->header);
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts) {
  bf_xml_stream *s = ud;
  if (s->stopped)
    return;
  uint64_t start = (uint64_t)XML_GetCurrentByteIndex(s->parser);
  uint64_t end = event_end(s);
  s->mark = end;
  /* Consistent with check_limits, whatever the chunking: a start tag
   * that alone is over the limit cannot be skipped with bounded memory. */
  if (end - start > token_limit(s)) {
    snprintf(s->reason, sizeof s->reason,
             "a start tag longer than max_stanza_size (%llu bytes)",
             (unsigned long long)s->max_size);
    fail(s, "policy-violation", s->reason);
    return;
  }
  if (s->depth == 0) {
    start_stream(s, name, atts);
    return;
  }
  unsigned depth = ++s->depth;
  if (depth - 1 > s->max_depth) {
    fail(s, "policy-violation", "elements nested deeper than max_depth");
    return;
  }
  if (s->skipping)
    return;
  if (depth == 2) {
    s->stanza_start = start;
    s->stanza = s->current = parsed_element(NULL, name, atts);
    if (!s->stanza)
      fail(s, "internal-server-error", "out of memory");
    return;
  }
  if (end - s->stanza_start > s->max_size) {
    enter_skip(s);
    return;
  }
  bf_xml *el = parsed_element(s->current, name, atts);
  if (!el) {
    fail(s, "internal-server-error", "out of memory");
    return;
  }
  s->current->u.el.text = NULL;
  s->current = el;
}

static void XMLCALL on_end(void *ud, const XML_Char *name) {
  bf_xml_stream *s = ud;
  (void)name;
  if (s->stopped)
    return;
  uint64_t end = event_end(s);
  s->mark = end;
  unsigned depth = s->depth--;
  if (depth == 1) {
    s->stopped = true;
    (void)XML_StopParser(s->parser, XML_FALSE);
    if (s->cb->stream_end)
      s->cb->stream_end(s->data);
    return;
  }
  if (depth > 2) {
    if (!s->skipping)
      s->current = s->current->parent;
    return;
  }
  uint64_t size = end - s->stanza_start;
  if (!s->skipping && size > s->max_size) {
    enter_skip(s);
    if (s->stopped)
      return;
  }
  if (s->skipping) {
    bf_xml *top = s->skip_top;
    s->skip_top = NULL;
    s->skipping = false;
    if (s->cb->oversize)
      s->cb->oversize(s->data, top, (size_t)size);
    bf_xml_free(top);
    return;
  }
  bf_xml *stanza = s->stanza;
  s->stanza = s->current = NULL;
  if (s->cb->stanza)
    s->cb->stanza(s->data, stanza);
  else
    bf_xml_free(stanza);
}

static void XMLCALL on_text(void *ud, const XML_Char *text, int len) {
  bf_xml_stream *s = ud;
  if (s->stopped)
    return;
  uint64_t end = event_end(s);
  s->mark = end;
  /* Whitespace between stanzas (RFC 6120 §11.7) and the text of a skipped
   * stanza are not kept. */
  if (s->depth < 2 || s->skipping)
    return;
  if (end - s->stanza_start > s->max_size) {
    enter_skip(s);
    return;
  }
  if (text_append(s->current, text, (size_t)len))
    fail(s, "internal-server-error", "out of memory");
}

static void XMLCALL on_xml_decl(void *ud, const XML_Char *version,
                                const XML_Char *encoding, int standalone) {
  bf_xml_stream *s = ud;
  (void)version;
  (void)standalone;
  /* RFC 6120 §11.6: UTF-8 only. The parser was created for UTF-8, which
   * overrides the declaration, so refuse any other declared encoding. */
  if (encoding && strcasecmp(encoding, "UTF-8") != 0) {
    snprintf(s->reason, sizeof s->reason,
             "the stream declares encoding '%.64s'; only UTF-8 is allowed", encoding);
    fail(s, "unsupported-encoding", s->reason);
  }
}

/* RFC 6120 §11.1: no comments, processing instructions, DTDs or entity
 * declarations in an XMPP stream. */
static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset) {
  (void)name;
  (void)sysid;
  (void)pubid;
  (void)has_internal_subset;
  fail(ud, "restricted-xml", "a DOCTYPE declaration in the stream");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len,
                                   const XML_Char *base, const XML_Char *sysid,
                                   const XML_Char *pubid, const XML_Char *notation) {
  (void)name;
  (void)is_param;
  (void)value;
  (void)value_len;
  (void)base;
  (void)sysid;
  (void)pubid;
  (void)notation;
  fail(ud, "restricted-xml", "an entity declaration in the stream");
}

static void XMLCALL on_pi(void *ud, const XML_Char *target, const XML_Char *data) {
  (void)target;
  (void)data;
  fail(ud, "restricted-xml", "a processing instruction in the stream");
}

static void XMLCALL on_comment(void *ud, const XML_Char *data) {
  (void)data;
  fail(ud, "restricted-xml", "a comment in the stream");
}

static void XMLCALL on_ns_decl(void *ud, const XML_Char *prefix, const XML_Char *uri) {
  bf_xml_stream *s = ud;
  if (s->depth == 0 && !prefix)
    s->default_ns = uri && strcmp(uri, BF_NS_COMPONENT) == 0 ? DEFAULT_NS_OK
                                                              : DEFAULT_NS_BAD;
}

static void setup_parser(bf_xml_stream *s) {
  XML_Parser p = s->parser;
  XML_SetUserData(p, s);
  XML_SetReturnNSTriplet(p, XML_TRUE);
  XML_SetElementHandler(p, on_start, on_end);
  XML_SetCharacterDataHandler(p, on_text);
  XML_SetXmlDeclHandler(p, on_xml_decl);
  XML_SetStartDoctypeDeclHandler(p, on_doctype);
  XML_SetEntityDeclHandler(p, on_entity_decl);
  XML_SetProcessingInstructionHandler(p, on_pi);
  XML_SetCommentHandler(p, on_comment);
  XML_SetStartNamespaceDeclHandler(p, on_ns_decl);
#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 6)
  /* Hand every stanza over as soon as its end tag arrived. */
  XML_SetReparseDeferralEnabled(p, XML_FALSE);
#endif
}

static void drop_state(bf_xml_stream *s) {
  bf_xml_free(s->header);
  bf_xml_free(s->stanza);
  bf_xml_free(s->skip_top);
  s->header = s->stanza = s->current = s->skip_top = NULL;
  s->depth = 0;
  s->default_ns = DEFAULT_NS_NONE;
  s->stopped = s->failed = s->skipping = false;
  s->fed = s->stanza_start = s->mark = 0;
  s->reason[0] = '\0';
}

bf_xml_stream *bf__xml_stream_new(const bf_xml_stream_callbacks *cb, void *data,
                                  size_t max_stanza_size, unsigned max_depth) {
  bf_xml_stream *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->parser = XML_ParserCreateNS("UTF-8", NS_SEP);
  if (!s->parser) {
    free(s);
    return NULL;
  }
  s->cb = cb;
  s->data = data;
  s->max_size = max_stanza_size ? max_stanza_size : DEFAULT_MAX_STANZA_SIZE;
  s->max_depth = max_depth ? max_depth : DEFAULT_MAX_DEPTH;
  drop_state(s);
  setup_parser(s);
  return s;
}

int bf__xml_stream_reset(bf_xml_stream *stream) {
  drop_state(stream);
  if (!XML_ParserReset(stream->parser, "UTF-8"))
    return BF_ENOMEM;
  setup_parser(stream);
  return 0;
}

void bf__xml_stream_free(bf_xml_stream *stream) {
  if (!stream)
    return;
  drop_state(stream);
  XML_ParserFree(stream->parser);
  free(stream);
}

static const char *error_condition(enum XML_Error code) {
  switch (code) {
  case XML_ERROR_NO_MEMORY: return "internal-server-error";
  case XML_ERROR_UNBOUND_PREFIX: return "bad-namespace-prefix";
  case XML_ERROR_UNKNOWN_ENCODING:
  case XML_ERROR_INCORRECT_ENCODING: return "unsupported-encoding";
  default: return "not-well-formed";
  }
}

/* Limits checked at the end of each chunk, for what arrived without an
 * event: a stanza grown past max_size while expat holds the rest, and
 * bytes expat holds back (an unfinished start tag, attribute value,
 * comment…) beyond max_size, which cannot be skipped with bounded memory
 * and so end the stream. */
static void check_limits(bf_xml_stream *s) {
  if (s->stanza && s->fed - s->stanza_start > s->max_size)
    enter_skip(s);
  if (!s->stopped && s->fed - s->mark > token_limit(s)) {
    snprintf(s->reason, sizeof s->reason,
             "a single XML token longer than max_stanza_size (%llu bytes)",
             (unsigned long long)s->max_size);
    fail(s, "policy-violation", s->reason);
  }
}

int bf__xml_stream_feed(bf_xml_stream *s, const char *bytes, size_t len) {
  while (len && !s->stopped) {
    int n = len > INT_MAX / 2 ? INT_MAX / 2 : (int)len;
    enum XML_Status status = XML_Parse(s->parser, bytes, n, XML_FALSE);
    s->fed += (uint64_t)n;
    bytes += n;
    len -= (size_t)n;
    if (status != XML_STATUS_OK) {
      if (s->stopped)
        break;
      enum XML_Error code = XML_GetErrorCode(s->parser);
      snprintf(s->reason, sizeof s->reason, "line %lu column %lu: %s",
               (unsigned long)XML_GetCurrentLineNumber(s->parser),
               (unsigned long)XML_GetCurrentColumnNumber(s->parser),
               XML_ErrorString(code));
      fail(s, error_condition(code), s->reason);
      break;
    }
    check_limits(s);
  }
  return s->failed ? BF_EPROTO : 0;
}
