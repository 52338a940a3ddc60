/* Unit tests for src/xml.c: trees, the serializer (escaping, repair of
 * bad characters, namespaces, size cap) and the stream parser (every split
 * point of real server streams, namespaces, limits, restricted XML, bad
 * input, stream end and reset). */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "babelfish/error.h"
#include "babelfish/xml.h"
#include "buf.h"
#include "support.h"
#include "xml.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BF_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define BF_TEST_ASAN 1
#endif
#ifdef BF_TEST_ASAN
/* From <sanitizer/allocator_interface.h>, which gcc does not install. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Bytes currently allocated on the heap (ASan replaces malloc). */
static size_t heap_in_use(void) {
#ifdef BF_TEST_ASAN
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#endif
}

/* What Prosody 0.12 and ejabberd 23.01 send (PROTOCOL-NOTES §1.1). */
#define PROSODY_HEADER                                                       \
  "<?xml version='1.0'?><stream:stream "                                     \
  "id='964fc729-329e-44c6-9d42-7c0cb49dc11d' xmlns='jabber:component:accept' " \
  "from='irc.localhost' xmlns:stream='http://etherx.jabber.org/streams' "    \
  "xml:lang='en'>"
#define EJABBERD_HEADER                                                      \
  "<?xml version='1.0'?><stream:stream id='11914710463591289128' "           \
  "xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' "           \
  "from='irc.localhost' xmlns='jabber:component:accept'>"
#define SHORT_HEADER                                                         \
  "<stream:stream xmlns='jabber:component:accept' "                          \
  "xmlns:stream='http://etherx.jabber.org/streams' id='s1'>"

/* A string literal and its length (it may hold NUL bytes). */
#define LIT(s) s, sizeof(s) - 1

/* ---- helpers --------------------------------------------------------------- */


static char *escaped(const char *text, size_t len, bool attribute) {
  bf_buf b;
  bf__buf_init(&b, 0);
  assert_int_equal(bf__xml_escape(&b, text, len, attribute), 0);
  if (!b.data)
    return strdup("");
  return b.data;
}

static void assert_escape(const char *text, size_t len, bool attribute,
                          const char *expected) {
  char *s = escaped(text, len, attribute);
  assert_string_equal(s, expected);
  free(s);
}

/* Records every parser callback as one line of text, so that runs with
 * different chunkings can be compared. */
typedef struct recorder {
  bf_buf log;
  int errors;
  int ends;
  size_t stanzas;
  bf_xml *keep[8]; /* the first stanzas, kept for inspection */
} recorder;

static void record(recorder *r, const char *what, const bf_xml *el,
                   const char *scope) {
  assert_int_equal(bf__buf_append_str(&r->log, what), 0);
  if (el)
    assert_int_equal(bf__xml_serialize(el, scope, &r->log), 0);
  assert_int_equal(bf__buf_append_str(&r->log, "\n"), 0);
}

static void rec_start(void *data, const bf_xml *header) {
  assert_string_equal(bf_xml_name(header), "stream");
  assert_string_equal(bf_xml_xmlns(header), BF_NS_STREAM);
  record(data, "start ", header, BF_NS_STREAM);
}

static void rec_stanza(void *data, bf_xml *stanza) {
  recorder *r = data;
  assert_null(bf_xml_parent(stanza));
  record(r, "stanza ", stanza, BF_NS_COMPONENT);
  if (r->stanzas < 8)
    r->keep[r->stanzas] = stanza;
  else
    bf_xml_free(stanza);
  r->stanzas++;
}

static void rec_oversize(void *data, const bf_xml *top, size_t size) {
  char what[64];
  assert_null(bf_xml_first_child(top));
  snprintf(what, sizeof what, "oversize %zu ", size);
  record(data, what, top, BF_NS_COMPONENT);
}

static void rec_end(void *data) {
  recorder *r = data;
  r->ends++;
  record(r, "end", NULL, NULL);
}

static void rec_error(void *data, const char *condition, const char *text) {
  recorder *r = data;
  assert_non_null(text);
  assert_true(*text);
  r->errors++;
  record(r, "error ", NULL, NULL);
  /* overwrite the newline record() added: "error <condition>\n" */
  r->log.len--;
  assert_int_equal(bf__buf_append_str(&r->log, condition), 0);
  assert_int_equal(bf__buf_append_str(&r->log, "\n"), 0);
}

static const bf_xml_stream_callbacks rec_callbacks = {
    .stream_start = rec_start,
    .stanza = rec_stanza,
    .oversize = rec_oversize,
    .stream_end = rec_end,
    .error = rec_error,
};

static void recorder_init(recorder *r) {
  memset(r, 0, sizeof *r);
  bf__buf_init(&r->log, 0);
}

static void recorder_close(recorder *r) {
  for (size_t i = 0; i < r->stanzas && i < 8; i++)
    bf_xml_free(r->keep[i]);
  bf__buf_close(&r->log);
}

/* Feeds doc in pieces: at the given split points (sorted, may be empty).
 * Returns the log (malloc'd) ending in "rc=<last feed's return>". */
static char *run_splits(const char *doc, size_t len, size_t max, unsigned depth,
                        const size_t *splits, size_t nsplits) {
  recorder r;
  recorder_init(&r);
  bf_xml_stream *s = bf__xml_stream_new(&rec_callbacks, &r, max, depth);
  assert_non_null(s);
  size_t at = 0;
  int rc = 0;
  for (size_t i = 0; i <= nsplits; i++) {
    size_t to = i < nsplits ? splits[i] : len;
    rc = bf__xml_stream_feed(s, doc + at, to - at);
    at = to;
  }
  bf__xml_stream_free(s);
  assert_true(r.errors <= 1);
  char tail[32];
  snprintf(tail, sizeof tail, "rc=%d", rc);
  assert_int_equal(bf__buf_append_str(&r.log, tail), 0);
  char *log = strdup(r.log.data);
  recorder_close(&r);
  return log;
}

static char *run_whole(const char *doc, size_t max, unsigned depth) {
  return run_splits(doc, strlen(doc), max, depth, NULL, 0);
}

static char *run_chunked(const char *doc, size_t len, size_t max, unsigned depth,
                         size_t chunk) {
  size_t n = len / chunk;
  size_t *splits = malloc((n + 1) * sizeof *splits);
  assert_non_null(splits);
  size_t k = 0;
  for (size_t at = chunk; at < len; at += chunk)
    splits[k++] = at;
  char *log = run_splits(doc, len, max, depth, splits, k);
  free(splits);
  return log;
}

/* The log of doc fed at once must equal expected, and so must the log
 * with doc cut at every point and fed byte by byte. */
static void assert_every_split(const char *doc, size_t max, unsigned depth,
                               const char *expected) {
  size_t len = strlen(doc);
  char *log = run_whole(doc, max, depth);
  assert_string_equal(log, expected);
  free(log);
  for (size_t at = 1; at < len; at++) {
    log = run_splits(doc, len, max, depth, &at, 1);
    if (strcmp(log, expected) != 0)
      fail_msg("split at %zu of %zu:\n%s\n--- expected ---\n%s", at, len, log,
               expected);
    free(log);
  }
  log = run_chunked(doc, len, max, depth, 1);
  assert_string_equal(log, expected);
  free(log);
}

/* Expects the stream to end in a stream error with this condition. */
static void assert_stream_error(const char *doc, const char *condition) {
  char *log = run_whole(doc, 0, 0);
  char want[128];
  snprintf(want, sizeof want, "error %s\nrc=%d", condition, BF_EPROTO);
  size_t n = strlen(log), w = strlen(want);
  if (n < w || strcmp(log + n - w, want) != 0)
    fail_msg("expected a stream error %s for:\n%s\ngot:\n%s", condition, doc, log);
  free(log);
}

/* ---- trees ----------------------------------------------------------------- */

static void test_tree_build(void **state) {
  (void)state;
  bf_xml *msg = bf_xml_new("message", NULL);
  assert_non_null(msg);
  assert_string_equal(bf_xml_name(msg), "message");
  assert_string_equal(bf_xml_xmlns(msg), BF_NS_COMPONENT);
  assert_int_equal(bf_xml_set_attr(msg, "to", "alice@localhost"), 0);
  assert_int_equal(bf_xml_set_attr(msg, "from", "bob@echo.localhost"), 0);
  assert_int_equal(bf_xml_set_attr(msg, "type", "chat"), 0);
  assert_int_equal(bf_xml_set_attr(msg, "xml:lang", "en"), 0);
  bf_xml *body = bf_xml_add_text_child(msg, "body", NULL, "Hello");
  assert_non_null(body);
  assert_string_equal(bf_xml_xmlns(body), BF_NS_COMPONENT);
  bf_xml *x = bf_xml_add_child(msg, "x", "http://jabber.org/protocol/muc#user");
  bf_xml *item = bf_xml_add_child(x, "item", NULL);
  assert_string_equal(bf_xml_xmlns(item), "http://jabber.org/protocol/muc#user");
  assert_int_equal(bf_xml_set_attr(item, "role", "participant"), 0);
  bf_xml *empty = bf_xml_add_text_child(msg, "subject", NULL, NULL);
  assert_non_null(empty);

  assert_string_equal(bf_xml_attr(msg, "to"), "alice@localhost");
  assert_string_equal(bf_xml_attr(msg, "xml:lang"), "en");
  assert_null(bf_xml_attr(msg, "id"));
  const char *name, *value;
  assert_true(bf_xml_attr_at(msg, 2, &name, &value));
  assert_string_equal(name, "type");
  assert_string_equal(value, "chat");
  assert_false(bf_xml_attr_at(msg, 4, &name, &value));

  assert_ptr_equal(bf_xml_first_child(msg), body);
  assert_ptr_equal(bf_xml_next(body), x);
  assert_ptr_equal(bf_xml_next(x), empty);
  assert_null(bf_xml_next(empty));
  assert_ptr_equal(bf_xml_parent(item), x);
  assert_ptr_equal(bf_xml_child(msg, "x", NULL), x);
  assert_ptr_equal(bf_xml_child(msg, NULL, "http://jabber.org/protocol/muc#user"), x);
  assert_null(bf_xml_child(msg, "x", "urn:other"));
  assert_null(bf_xml_child(msg, "body", "urn:other"));
  assert_string_equal(bf_xml_child_text(msg, "body", NULL), "Hello");
  assert_string_equal(bf_xml_child_text(msg, "subject", NULL), "");
  assert_null(bf_xml_child_text(msg, "thread", NULL));

  bf_test_assert_xml(msg, "<message to='alice@localhost' from='bob@echo.localhost' "
                  "type='chat' xml:lang='en'><body>Hello</body>"
                  "<x xmlns='http://jabber.org/protocol/muc#user'>"
                  "<item role='participant'/></x><subject/></message>");

  /* Replace and remove attributes, remove a child. */
  assert_int_equal(bf_xml_set_attr(msg, "type", "groupchat"), 0);
  assert_int_equal(bf_xml_set_attr(msg, "from", NULL), 0);
  assert_int_equal(bf_xml_set_attr(msg, "nothere", NULL), 0);
  assert_true(bf_xml_remove(msg, x));
  assert_false(bf_xml_remove(msg, x));
  assert_null(bf_xml_parent(x));
  /* An unlinked node is not a root: freeing it is refused. */
  bf_xml_free(x);
  bf_xml_free(item);
  bf_test_assert_xml(msg, "<message to='alice@localhost' type='groupchat' xml:lang='en'>"
                  "<body>Hello</body><subject/></message>");
  size_t len = 0;
  char *s = bf_xml_to_string(body, &len);
  assert_string_equal(s, "<body>Hello</body>");
  assert_int_equal(len, strlen(s));
  free(s);
  bf_xml_free(msg);
  bf_xml_free(NULL);
}

static void test_tree_invalid_names(void **state) {
  (void)state;
  assert_null(bf_xml_new("", NULL));
  assert_null(bf_xml_new("a b", NULL));
  assert_null(bf_xml_new("1abc", NULL));
  assert_null(bf_xml_new("stream:stream", NULL));
  assert_null(bf_xml_new(NULL, NULL));
  bf_xml *el = bf_xml_new("iq", NULL);
  assert_null(bf_xml_add_child(el, "x<y", NULL));
  assert_int_equal(bf_xml_set_attr(el, "a b", "v"), BF_EINVAL);
  assert_int_equal(bf_xml_set_attr(el, "", "v"), BF_EINVAL);
  assert_int_equal(bf_xml_set_attr(el, "xmlns", "urn:x"), BF_EINVAL);
  assert_int_equal(bf_xml_set_attr(el, "foo:bar", "v"), BF_EINVAL);
  assert_int_equal(bf_xml_set_attr(el, "a'b", "v"), BF_EINVAL);
  assert_int_equal(bf_xml_set_attr(el, "xml:space", "preserve"), 0);
  assert_int_equal(bf_xml_set_attr(el, "data-x_1.2", "v"), 0);
  bf_test_assert_xml(el, "<iq xml:space='preserve' data-x_1.2='v'/>");
  bf_xml_free(el);
}

static void test_tree_many_attrs_and_nodes(void **state) {
  (void)state;
  /* Past the first arena block and the initial attribute array. */
  bf_xml *root = bf_xml_new("query", "urn:test");
  char name[32], value[32];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "a%d", i);
    snprintf(value, sizeof value, "v%d", i);
    assert_int_equal(bf_xml_set_attr(root, name, value), 0);
  }
  for (int i = 0; i < 1000; i++) {
    bf_xml *item = bf_xml_add_child(root, "item", NULL);
    assert_non_null(item);
    snprintf(value, sizeof value, "%d", i);
    assert_int_equal(bf_xml_set_attr(item, "n", value), 0);
  }
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "a%d", i);
    snprintf(value, sizeof value, "v%d", i);
    assert_string_equal(bf_xml_attr(root, name), value);
  }
  int count = 0;
  for (bf_xml *c = bf_xml_first_child(root); c; c = bf_xml_next(c)) {
    snprintf(value, sizeof value, "%d", count++);
    assert_string_equal(bf_xml_attr(c, "n"), value);
  }
  assert_int_equal(count, 1000);
  bf_xml_free(root);
}

static void test_tree_text(void **state) {
  (void)state;
  bf_xml *body = bf_xml_new("body", NULL);
  assert_string_equal(bf_xml_text(body), "");
  assert_int_equal(bf_xml_add_text(body, "Hello", 5), 0);
  assert_int_equal(bf_xml_add_text(body, ", ", 2), 0);
  assert_int_equal(bf_xml_add_text(body, "world!", 3), 0);
  assert_string_equal(bf_xml_text(body), "Hello, wor");
  /* Mixed content: text, element, text. */
  bf_xml *b = bf_xml_add_text_child(body, "b", NULL, "bold");
  assert_non_null(b);
  assert_int_equal(bf_xml_add_text(body, " tail", 5), 0);
  assert_string_equal(bf_xml_text(body), "Hello, wor tail");
  const char *cached = bf_xml_text(body);
  assert_ptr_equal(bf_xml_text(body), cached);
  /* A change invalidates the cache. */
  assert_int_equal(bf_xml_add_text(body, "!", 1), 0);
  assert_string_equal(bf_xml_text(body), "Hello, wor tail!");
  bf_test_assert_xml(body, "<body>Hello, wor<b>bold</b> tail!</body>");
  assert_true(bf_xml_remove(body, b));
  assert_string_equal(bf_xml_text(body), "Hello, wor tail!");
  assert_int_equal(bf_xml_add_text(body, NULL, 0), 0);
  assert_int_equal(bf_xml_add_text(body, NULL, 1), BF_EINVAL);

  /* A long text appended in many pieces, interleaved with other
   * allocations in the same tree. */
  bf_xml *big = bf_xml_new("big", NULL);
  char piece[101];
  memset(piece, 'x', 100);
  piece[100] = '\0';
  for (int i = 0; i < 2000; i++) {
    piece[0] = (char)('a' + i % 26);
    assert_int_equal(bf_xml_add_text(big, piece, 100), 0);
    if (i % 100 == 0)
      assert_int_equal(bf_xml_set_attr(big, "n", piece + 90), 0);
  }
  const char *t = bf_xml_text(big);
  assert_int_equal(strlen(t), 2000 * 100);
  for (int i = 0; i < 2000; i++)
    assert_int_equal(t[i * 100], 'a' + i % 26);
  bf_xml_free(big);
  bf_xml_free(body);
}

static void test_tree_copy(void **state) {
  (void)state;
  bf_xml *src = bf_xml_new("iq", NULL);
  bf_xml_set_attr(src, "type", "result");
  bf_xml_set_attr(src, "id", "q1");
  bf_xml *q = bf_xml_add_child(src, "query", BF_NS_DISCO_INFO);
  bf_xml *id = bf_xml_add_child(q, "identity", NULL);
  bf_xml_set_attr(id, "category", "gateway");
  bf_xml_add_text_child(q, "note", BF_NS_COMPONENT, "a & b");
  bf_xml_add_text(q, "text", 4);

  bf_xml *dst = bf_xml_new("message", NULL);
  bf_xml *copy = bf_xml_add_copy(dst, q);
  assert_non_null(copy);
  assert_ptr_equal(bf_xml_parent(copy), dst);
  bf_xml *whole = bf_xml_copy(src);
  assert_non_null(whole);
  char *expected = bf_test_xml_string(src);
  bf_xml_free(src); /* the copies must not point into it */
  bf_test_assert_xml(whole, expected);
  free(expected);
  bf_test_assert_xml(dst, "<message><query xmlns='http://jabber.org/protocol/disco#info'>"
                  "<identity category='gateway'/>"
                  "<note xmlns='jabber:component:accept'>a &amp; b</note>text"
                  "</query></message>");
  assert_string_equal(bf_xml_xmlns(bf_xml_child(copy, "note", NULL)), BF_NS_COMPONENT);

  /* Into its own tree, and into its own subtree. */
  bf_xml *again = bf_xml_add_copy(whole, bf_xml_first_child(whole));
  assert_non_null(again);
  bf_xml *self = bf_xml_add_copy(bf_xml_first_child(whole), whole);
  assert_non_null(self);
  bf_test_assert_xml(self, "<iq type='result' id='q1'>"
                   "<query xmlns='http://jabber.org/protocol/disco#info'>"
                   "<identity category='gateway'/>"
                   "<note xmlns='jabber:component:accept'>a &amp; b</note>text"
                   "</query>"
                   "<query xmlns='http://jabber.org/protocol/disco#info'>"
                   "<identity category='gateway'/>"
                   "<note xmlns='jabber:component:accept'>a &amp; b</note>text"
                   "</query></iq>");
  bf_xml_free(whole);
  bf_xml_free(dst);
}

/* ---- serializer -------------------------------------------------------------- */

static void test_escape(void **state) {
  (void)state;
  assert_escape(LIT("a<b>c&d'e\"f"), false, "a&lt;b&gt;c&amp;d'e\"f");
  assert_escape(LIT("a<b>c&d'e\"f"), true, "a&lt;b>c&amp;d&apos;e&quot;f");
  /* Line ends and tabs survive the receiver's normalisation. */
  assert_escape(LIT("a\tb\nc\rd"), false, "a\tb\nc&#13;d");
  assert_escape(LIT("a\tb\nc\rd"), true, "a&#9;b&#10;c&#13;d");
  /* C0 controls XML forbids are dropped: CTCP 0x01, IRC colour 0x03, NUL. */
  assert_escape(LIT("\x01" "ACTION waves\x01"), false, "ACTION waves");
  assert_escape(LIT("\x03" "4red\x03 \x02" "bold\x0f"), false, "4red bold");
  assert_escape(LIT("a\0b\x1f" "c\x7f"), true, "abc\x7f");
  /* Valid UTF-8 is kept, 2, 3 and 4 bytes, U+FFFD itself, U+10FFFF. */
#define VALID "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd \xf4\x8f\xbf\xbf"
  assert_escape(LIT(VALID), false, VALID);
  assert_escape(LIT(VALID), true, VALID);
#undef VALID
  /* Invalid UTF-8 becomes U+FFFD, one per bad byte. */
  assert_escape(LIT("caf\xe9!"), false, "caf\xef\xbf\xbd!");
  assert_escape(LIT("\xc0\xaf"), false, "\xef\xbf\xbd\xef\xbf\xbd");       /* overlong '/' */
  assert_escape(LIT("\xe0\x80\xaf"), false,
                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");               /* overlong */
  assert_escape(LIT("\xf0\x80\x80\xaf"), true,
                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");   /* overlong */
  assert_escape(LIT("\xf4\x90\x80\x80"), false,
                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");   /* > U+10FFFF */
  assert_escape(LIT("\xf8\x88\x80\x80\x80"), false,
                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  assert_escape(LIT("a\xe2\x82"), false, "a\xef\xbf\xbd\xef\xbf\xbd");      /* truncated */
  assert_escape(LIT("\x80z"), false, "\xef\xbf\xbdz");                     /* stray */
  /* Encoded surrogates and U+FFFE/U+FFFF are not XML characters: dropped. */
  assert_escape(LIT("a\xed\xa0\x80" "b\xed\xbf\xbf" "c"), false, "abc");
  assert_escape(LIT("a\xef\xbf\xbe" "b\xef\xbf\xbf" "c"), true, "abc");
  assert_escape(LIT("\xed\x9f\xbf"), false, "\xed\x9f\xbf"); /* U+D7FF is fine */
  assert_escape(LIT(""), false, "");
}

static void test_serialize_strips_controls(void **state) {
  (void)state;
  bf_xml *msg = bf_xml_new("message", NULL);
  bf_xml_set_attr(msg, "id", "a\x01" "b\x03" "c");
  bf_xml *body = bf_xml_add_child(msg, "body", NULL);
  assert_int_equal(bf_xml_add_text(body, LIT("\x01" "ACTION x\x01 \x03" "4red\0!")), 0);
  bf_xml_add_text_child(msg, "subject", NULL, "caf\xe9");
  bf_test_assert_xml(msg, "<message id='abc'><body>ACTION x 4red!</body>"
                  "<subject>caf\xef\xbf\xbd</subject></message>");
  bf_xml_free(msg);
}

static void test_serialize_namespaces(void **state) {
  (void)state;
  bf_xml *iq = bf_xml_new("iq", NULL);
  bf_xml *q = bf_xml_add_child(iq, "query", BF_NS_DISCO_ITEMS);
  bf_xml_add_child(q, "item", NULL);
  bf_xml_add_child(q, "item", BF_NS_DISCO_ITEMS);
  bf_xml_add_child(q, "other", "urn:x");
  bf_xml_add_child(q, "bare", "");
  bf_xml_add_child(iq, "back", BF_NS_COMPONENT);
  const char *inner = "<query xmlns='http://jabber.org/protocol/disco#items'>"
                      "<item/><item/><other xmlns='urn:x'/><bare xmlns=''/></query>";
  char want[512];
  snprintf(want, sizeof want, "<iq>%s<back/></iq>", inner);
  bf_test_assert_xml(iq, want);
  /* The namespace in scope decides where xmlns is written. */
  bf_buf b;
  bf__buf_init(&b, 0);
  assert_int_equal(bf__xml_serialize(iq, "jabber:client", &b), 0);
  snprintf(want, sizeof want, "<iq xmlns='jabber:component:accept'>%s<back/></iq>",
           inner);
  assert_string_equal(b.data, want);
  bf__buf_reset(&b);
  assert_int_equal(bf__xml_serialize(q, BF_NS_DISCO_ITEMS, &b), 0);
  assert_string_equal(b.data, "<query><item/><item/><other xmlns='urn:x'/>"
                              "<bare xmlns=''/></query>");
  bf__buf_close(&b);
  bf_xml *stream_error = bf_xml_new("error", BF_NS_STREAM);
  bf_xml_add_child(stream_error, "conflict", BF_NS_STREAMS);
  bf_test_assert_xml(stream_error, "<error xmlns='http://etherx.jabber.org/streams'>"
                           "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                           "</error>");
  bf_xml_free(stream_error);
  bf_xml_free(iq);
}

static void test_serialize_cap_rolls_back(void **state) {
  (void)state;
  bf_xml *msg = bf_xml_new("message", NULL);
  bf_xml_set_attr(msg, "to", "alice@localhost");
  char text[200];
  memset(text, 'a', sizeof text);
  bf_xml_add_text(bf_xml_add_child(msg, "body", NULL), text, sizeof text);
  char *whole = bf_test_xml_string(msg);
  size_t full = strlen(whole);
  for (size_t max = 4; max < full + 20; max++) {
    bf_buf b;
    bf__buf_init(&b, max);
    assert_int_equal(bf__buf_append_str(&b, "<x/>"), 0);
    int rc = bf__xml_serialize(msg, BF_NS_COMPONENT, &b);
    if (4 + full > max) {
      assert_int_equal(rc, BF_E2BIG);
      assert_int_equal(b.len, 4);
      assert_string_equal(b.data, "<x/>");
    } else {
      assert_int_equal(rc, 0);
      assert_int_equal(b.len, 4 + full);
      assert_string_equal(b.data + 4, whole);
      bf__buf_reset(&b);
    }
    size_t before = b.len;
    rc = bf__xml_escape(&b, "a&b", 3, false);
    if (before + 7 > max) {
      assert_int_equal(rc, BF_E2BIG);
      assert_int_equal(b.len, before);
    } else {
      assert_int_equal(rc, 0);
      assert_string_equal(b.data + before, "a&amp;b");
    }
    bf__buf_close(&b);
  }
  bf_buf b;
  bf__buf_init(&b, 8);
  assert_int_equal(bf__buf_append_str(&b, "<x/>"), 0);
  assert_int_equal(bf__xml_escape(&b, "a&b", 3, false), BF_E2BIG);
  assert_int_equal(b.len, 4);
  assert_string_equal(b.data, "<x/>");
  bf__buf_close(&b);
  free(whole);
  bf_xml_free(msg);
}

/* ---- stream parser -------------------------------------------------------------- */

#define STANZAS                                                                \
  "\n<handshake/>\n "                                                          \
  "<message type='groupchat' id='m1' xml:lang='en' from='alice@localhost/test' " \
  "to='%23chan%irc.example.net@irc.localhost'><body>hi &amp; caf\xc3\xa9 "     \
  "&lt;3 &#x1F600; <![CDATA[<raw>]]></body></message>\n"                       \
  "<iq type='get' id='p1' from='localhost' to='irc.localhost'>"                \
  "<ping xmlns='urn:xmpp:ping'/></iq>\t"                                       \
  "<presence from='a@localhost/r' to='b@irc.localhost'>"                       \
  "<x xmlns=\"http://jabber.org/protocol/muc\"><history maxstanzas=\"0\"/></x>" \
  "<status>away\r\n now</status></presence>  "                                 \
  "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"      \
  "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced by a new "       \
  "connection</text></stream:error>\n</stream:stream>"

#define STANZAS_LOG                                                            \
  "stanza <handshake/>\n"                                                      \
  "stanza <message type='groupchat' id='m1' xml:lang='en' "                    \
  "from='alice@localhost/test' to='%23chan%irc.example.net@irc.localhost'>"    \
  "<body>hi &amp; caf\xc3\xa9 &lt;3 \xf0\x9f\x98\x80 &lt;raw&gt;</body></message>\n" \
  "stanza <iq type='get' id='p1' from='localhost' to='irc.localhost'>"         \
  "<ping xmlns='urn:xmpp:ping'/></iq>\n"                                       \
  "stanza <presence from='a@localhost/r' to='b@irc.localhost'>"                \
  "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x>"    \
  "<status>away\n now</status></presence>\n"                                   \
  "stanza <error xmlns='http://etherx.jabber.org/streams'>"                    \
  "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"                    \
  "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced by a new "       \
  "connection</text></error>\n"                                                \
  "end\nrc=0"

static void test_stream_prosody_every_split(void **state) {
  (void)state;
  assert_every_split(PROSODY_HEADER STANZAS, 0, 0,
                     "start <stream id='964fc729-329e-44c6-9d42-7c0cb49dc11d' "
                     "from='irc.localhost' xml:lang='en'/>\n" STANZAS_LOG);
}

static void test_stream_ejabberd_every_split(void **state) {
  (void)state;
  assert_every_split(EJABBERD_HEADER STANZAS, 0, 0,
                     "start <stream id='11914710463591289128' xml:lang='en' "
                     "from='irc.localhost'/>\n" STANZAS_LOG);
}

static void test_stream_trees(void **state) {
  (void)state;
  recorder r;
  recorder_init(&r);
  bf_xml_stream *s = bf__xml_stream_new(&rec_callbacks, &r, 0, 0);
  const char *doc = PROSODY_HEADER STANZAS;
  assert_int_equal(bf__xml_stream_feed(s, doc, strlen(doc)), 0);
  /* Input after the end of the stream is ignored. */
  assert_int_equal(bf__xml_stream_feed(s, "<junk", 5), 0);
  assert_int_equal(r.stanzas, 5);
  assert_int_equal(r.ends, 1);
  assert_int_equal(r.errors, 0);
  bf_xml *hs = r.keep[0], *msg = r.keep[1], *iq = r.keep[2], *err = r.keep[4];
  assert_string_equal(bf_xml_name(hs), "handshake");
  assert_string_equal(bf_xml_xmlns(hs), BF_NS_COMPONENT);
  assert_string_equal(bf_xml_text(hs), "");
  assert_string_equal(bf_xml_xmlns(msg), BF_NS_COMPONENT);
  assert_string_equal(bf_xml_attr(msg, "xml:lang"), "en");
  assert_string_equal(bf_xml_attr(msg, "to"), "%23chan%irc.example.net@irc.localhost");
  assert_string_equal(bf_xml_child_text(msg, "body", BF_NS_COMPONENT),
                      "hi & caf\xc3\xa9 <3 \xf0\x9f\x98\x80 <raw>");
  bf_xml *ping = bf_xml_child(iq, "ping", BF_NS_PING);
  assert_non_null(ping);
  assert_ptr_equal(bf_xml_parent(ping), iq);
  assert_string_equal(bf_xml_name(err), "error");
  assert_string_equal(bf_xml_xmlns(err), BF_NS_STREAM);
  assert_non_null(bf_xml_child(err, "conflict", BF_NS_STREAMS));
  assert_string_equal(bf_xml_child_text(err, "text", BF_NS_STREAMS),
                      "Replaced by a new connection");
  bf__xml_stream_free(s);
  recorder_close(&r);
}

static void test_stream_namespaces(void **state) {
  (void)state;
  const char *stanza =
      "<message to='x@echo.localhost' from='y@localhost'>"
      "<foo:x xmlns:foo='urn:foo' foo:attr='v&apos;1' plain='p'><foo:y/><z/></foo:x>"
      "<body xml:lang='de'>Hallo</body>"
      "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
      "<body xmlns='http://www.w3.org/1999/xhtml'><p>hi</p></body></html>"
      "<e xmlns=''/><b:q xmlns:b='urn:b' xmlns:c='urn:c' c:k='1' b:k='2'/>"
      "</message>";
  const char *serialized =
      "<message to='x@echo.localhost' from='y@localhost'>"
      "<x xmlns='urn:foo' xmlns:foo='urn:foo' foo:attr='v&apos;1' plain='p'><y/>"
      "<z xmlns='jabber:component:accept'/></x>"
      "<body xml:lang='de'>Hallo</body>"
      "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
      "<body xmlns='http://www.w3.org/1999/xhtml'><p>hi</p></body></html>"
      "<e xmlns=''/><q xmlns='urn:b' xmlns:c='urn:c' c:k='1' xmlns:b='urn:b' b:k='2'/>"
      "</message>";
  char doc[2048];
  snprintf(doc, sizeof doc, SHORT_HEADER "%s", stanza);
  recorder r;
  recorder_init(&r);
  bf_xml_stream *s = bf__xml_stream_new(&rec_callbacks, &r, 0, 0);
  assert_int_equal(bf__xml_stream_feed(s, doc, strlen(doc)), 0);
  assert_int_equal(r.stanzas, 1);
  bf_xml *msg = r.keep[0];
  bf_xml *x = bf_xml_child(msg, "x", "urn:foo");
  assert_non_null(x);
  assert_string_equal(bf_xml_attr(x, "foo:attr"), "v'1");
  assert_string_equal(bf_xml_attr(x, "plain"), "p");
  assert_string_equal(bf_xml_xmlns(bf_xml_child(x, "y", NULL)), "urn:foo");
  assert_string_equal(bf_xml_xmlns(bf_xml_child(x, "z", NULL)), BF_NS_COMPONENT);
  bf_xml *body = bf_xml_child(msg, "body", NULL);
  assert_string_equal(bf_xml_xmlns(body), BF_NS_COMPONENT);
  assert_string_equal(bf_xml_attr(body, "xml:lang"), "de");
  bf_xml *html = bf_xml_child(msg, "html", NULL);
  bf_xml *xbody = bf_xml_child(html, "body", NULL);
  assert_string_equal(bf_xml_xmlns(xbody), "http://www.w3.org/1999/xhtml");
  assert_string_equal(bf_xml_xmlns(bf_xml_child(xbody, "p", NULL)),
                      "http://www.w3.org/1999/xhtml");
  assert_string_equal(bf_xml_xmlns(bf_xml_child(msg, "e", NULL)), "");
  bf_test_assert_xml(msg, serialized);

  /* The serialization parses back to the same tree. */
  snprintf(doc, sizeof doc, SHORT_HEADER "%s", serialized);
  bf__xml_stream_free(s);
  recorder_close(&r);
  recorder_init(&r);
  s = bf__xml_stream_new(&rec_callbacks, &r, 0, 0);
  assert_int_equal(bf__xml_stream_feed(s, doc, strlen(doc)), 0);
  assert_int_equal(r.stanzas, 1);
  bf_test_assert_xml(r.keep[0], serialized);
  assert_string_equal(bf_xml_attr(bf_xml_child(r.keep[0], "q", "urn:b"), "c:k"), "1");
  bf__xml_stream_free(s);
  recorder_close(&r);
}

/* Elements in the XML namespace keep their prefix: it cannot be the
 * default namespace (Namespaces in XML §3). */
static void test_xml_namespace_elements(void **state) {
  (void)state;
  const char *doc = SHORT_HEADER "<message><xml:note><b/><xml:c/></xml:note></message>";
  char *log = run_whole(doc, 0, 0);
  assert_string_equal(log, "start <stream id='s1'/>\n"
                           "stanza <message><xml:note><b xmlns='jabber:component:accept'/>"
                           "<xml:c/></xml:note></message>\nrc=0");
  free(log);
  assert_null(bf_xml_new("x", "http://www.w3.org/2000/xmlns/"));
  bf_xml *el = bf_xml_new("lang", "http://www.w3.org/XML/1998/namespace");
  bf_test_assert_xml(el, "<xml:lang/>");
  bf_xml_add_child(el, "inner", NULL);
  bf_test_assert_xml(el, "<xml:lang><xml:inner/></xml:lang>");
  bf_xml_free(el);
}

static void test_round_trip(void **state) {
  (void)state;
  static const char *const texts[] = {
      "plain",
      "a < b && c > d",
      "quotes ' and \" and ]]> and ]]",
      "line\nbreak\r\nand\rcr\ttab",
      "  leading and trailing spaces  ",
      "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x90\x9f \xe2\x80\xa8 \xc2\x85",
      "&amp; is not an entity here; &#38; neither",
      "<message to='evil'>injection</message>",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    bf_xml *msg = bf_xml_new("message", NULL);
    bf_xml_set_attr(msg, "to", texts[i]);
    bf_xml_set_attr(msg, "xml:lang", "en");
    bf_xml_add_text_child(msg, "body", NULL, texts[i]);
    bf_xml *x = bf_xml_add_child(msg, "x", "urn:x:'\"<&>");
    bf_xml_set_attr(x, "v", texts[i]);
    bf_xml_add_text(x, texts[i], strlen(texts[i]));

    char *xml = bf_test_xml_string(msg);
    char *doc = malloc(strlen(xml) + 256);
    sprintf(doc, SHORT_HEADER "%s", xml);
    recorder r;
    recorder_init(&r);
    bf_xml_stream *s = bf__xml_stream_new(&rec_callbacks, &r, 0, 0);
    assert_int_equal(bf__xml_stream_feed(s, doc, strlen(doc)), 0);
    assert_int_equal(r.stanzas, 1);
    bf_xml *back = r.keep[0];
    assert_string_equal(bf_xml_attr(back, "to"), texts[i]);
    assert_string_equal(bf_xml_attr(back, "xml:lang"), "en");
    assert_string_equal(bf_xml_child_text(back, "body", BF_NS_COMPONENT), texts[i]);
    bf_xml *bx = bf_xml_child(back, "x", "urn:x:'\"<&>");
    assert_non_null(bx);
    assert_string_equal(bf_xml_attr(bx, "v"), texts[i]);
    assert_string_equal(bf_xml_text(bx), texts[i]);
    bf_test_assert_xml(back, xml);
    bf__xml_stream_free(s);
    recorder_close(&r);
    free(doc);
    free(xml);
    bf_xml_free(msg);
  }
}

static void test_stream_oversize(void **state) {
  (void)state;
  char big[2048];
  char filler[1001];
  memset(filler, 'x', 1000);
  filler[1000] = '\0';
  snprintf(big, sizeof big,
           "<iq type='set' id='big1' to='x@echo.localhost' from='y@localhost'>"
           "<query xmlns='urn:q'><item>%s</item><item a='1'/></query></iq>",
           filler);
  char doc[4096];
  snprintf(doc, sizeof doc,
           SHORT_HEADER "<message id='a'><body>one</body></message> %s\n"
                        "<message id='b'><body>two</body></message></stream:stream>",
           big);
  char want[1024];
  snprintf(want, sizeof want,
           "start <stream id='s1'/>\n"
           "stanza <message id='a'><body>one</body></message>\n"
           "oversize %zu <iq type='set' id='big1' to='x@echo.localhost' "
           "from='y@localhost'/>\n"
           "stanza <message id='b'><body>two</body></message>\n"
           "end\nrc=0",
           strlen(big));
  assert_every_split(doc, 300, 0, want);
  size_t len = strlen(doc);
  static const size_t chunks[] = {2, 3, 7, 64, 100, 299, 301, 1000};
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    char *log = run_chunked(doc, len, 300, 0, chunks[i]);
    assert_string_equal(log, want);
    free(log);
  }
  /* Exactly at the limit is fine; one byte over is not. */
  const char *exact = "<message id='exact'><body>0123456789</body></message>";
  snprintf(doc, sizeof doc, SHORT_HEADER "%s%s", exact, exact);
  char *log = run_whole(doc, strlen(exact), 0);
  assert_string_equal(log, "start <stream id='s1'/>\n"
                           "stanza <message id='exact'><body>0123456789</body></message>\n"
                           "stanza <message id='exact'><body>0123456789</body></message>\n"
                           "rc=0");
  free(log);
  log = run_whole(doc, strlen(exact) - 1, 0);
  snprintf(want, sizeof want,
           "start <stream id='s1'/>\noversize %zu <message id='exact'/>\n"
           "oversize %zu <message id='exact'/>\nrc=0",
           strlen(exact), strlen(exact));
  assert_string_equal(log, want);
  free(log);
  /* Many children rather than text. */
  char many[1024] = "<iq id='kids'>";
  for (int i = 0; i < 100; i++)
    strcat(many, "<a/>");
  strcat(many, "</iq>");
  snprintf(doc, sizeof doc, SHORT_HEADER "%s<iq id='after'/>", many);
  snprintf(want, sizeof want,
           "start <stream id='s1'/>\noversize %zu <iq id='kids'/>\n"
           "stanza <iq id='after'/>\nrc=0",
           strlen(many));
  assert_every_split(doc, 100, 0, want);
}

/* One huge text node arriving in chunks: skipped with bounded memory. */
static void test_stream_oversize_memory(void **state) {
  (void)state;
  recorder r;
  recorder_init(&r);
  bf_xml_stream *s = bf__xml_stream_new(&rec_callbacks, &r, 4096, 0);
  const char *start = SHORT_HEADER "<message id='huge' to='x'><body>";
  assert_int_equal(bf__xml_stream_feed(s, start, strlen(start)), 0);
  char chunk[4096];
  memset(chunk, 'a', sizeof chunk);
  size_t base = heap_in_use(), peak = base;
  size_t total = 0;
  for (int i = 0; i < 4096; i++) { /* 16 MiB */
    assert_int_equal(bf__xml_stream_feed(s, chunk, sizeof chunk), 0);
    total += sizeof chunk;
    size_t now = heap_in_use();
    if (now > peak)
      peak = now;
  }
  const char *end = "</body></message><message id='next'/>";
  assert_int_equal(bf__xml_stream_feed(s, end, strlen(end)), 0);
  if (peak - base > 256 * 1024)
    fail_msg("heap grew by %zu bytes while skipping", peak - base);
  char want[256];
  snprintf(want, sizeof want,
           "start <stream id='s1'/>\noversize %zu <message id='huge' to='x'/>\n"
           "stanza <message id='next'/>\n",
           strlen("<message id='huge' to='x'><body></body></message>") + total);
  assert_string_equal(r.log.data, want);
  assert_int_equal(r.errors, 0);
  bf__xml_stream_free(s);
  recorder_close(&r);
}

static void test_stream_token_too_long(void **state) {
  (void)state;
  /* A start tag longer than the limit cannot be skipped: stream error,
   * whether it arrives at once or in pieces. */
  char doc[4096];
  char value[1001];
  memset(value, 'v', 1000);
  value[1000] = '\0';
  snprintf(doc, sizeof doc, SHORT_HEADER "<message id='a' v='%s'/><message/>", value);
  const char *want = "start <stream id='s1'/>\nerror policy-violation\nrc=-71";
  char *log = run_whole(doc, 500, 0);
  assert_string_equal(log, want);
  free(log);
  log = run_chunked(doc, strlen(doc), 500, 0, 100);
  assert_string_equal(log, want);
  free(log);
  /* The same inside a stanza being skipped. */
  snprintf(doc, sizeof doc, SHORT_HEADER "<message id='a'><x v='%s'/></message>", value);
  log = run_chunked(doc, strlen(doc), 500, 0, 100);
  assert_string_equal(log, want);
  free(log);
}

static void test_stream_depth(void **state) {
  (void)state;
  const char *ok = SHORT_HEADER "<a><b><c><d/></c></b></a>";
  char *log = run_whole(ok, 0, 4);
  assert_string_equal(log, "start <stream id='s1'/>\nstanza <a><b><c><d/></c></b></a>\nrc=0");
  free(log);
  const char *deep = SHORT_HEADER "<a><b><c><d><e/></d></c></b></a><after/>";
  assert_every_split(deep, 0, 4,
                     "start <stream id='s1'/>\nerror policy-violation\nrc=-71");
  /* Also while skipping an oversized stanza. */
  log = run_whole(SHORT_HEADER "<a>xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx<b><c><d><e/>"
                               "</d></c></b></a>",
                  30, 4);
  assert_string_equal(log, "start <stream id='s1'/>\nerror policy-violation\nrc=-71");
  free(log);
  /* The default cap is 64 levels. */
  char doc[2048] = SHORT_HEADER;
  for (int i = 0; i < 65; i++)
    strcat(doc, "<a>");
  assert_stream_error(doc, "policy-violation");
}

static void test_stream_restricted_xml(void **state) {
  (void)state;
  assert_stream_error("<!DOCTYPE stream>" SHORT_HEADER, "restricted-xml");
  assert_stream_error("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                      "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
                      "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
                      "]>" SHORT_HEADER "<message><body>&lol3;</body></message>",
                      "restricted-xml");
  assert_stream_error("<!DOCTYPE x SYSTEM 'http://127.0.0.1/x.dtd'>" SHORT_HEADER,
                      "restricted-xml");
  assert_stream_error("<!ENTITY x 'y'>" SHORT_HEADER, "not-well-formed");
  assert_stream_error("<?pi data?>" SHORT_HEADER, "restricted-xml");
  assert_stream_error(SHORT_HEADER "<message><?php evil() ?></message>", "restricted-xml");
  assert_stream_error("<!-- hello -->" SHORT_HEADER, "restricted-xml");
  assert_stream_error(SHORT_HEADER "<message><!-- c --><body/></message>",
                      "restricted-xml");
  assert_stream_error(SHORT_HEADER "<!-- between stanzas -->", "restricted-xml");
  /* No stanza before the error gets out. */
  char *log = run_whole(SHORT_HEADER "<message><body>x</body><!-- c --></message>", 0, 0);
  assert_string_equal(log, "start <stream id='s1'/>\nerror restricted-xml\nrc=-71");
  free(log);
  /* Undefined entities are simply malformed. */
  assert_stream_error(SHORT_HEADER "<message><body>&nbsp;</body></message>",
                      "not-well-formed");
}

static void test_stream_bad_input(void **state) {
  (void)state;
  assert_stream_error(SHORT_HEADER "<message><body>caf\xe9</body></message>",
                      "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message><body>\xc0\xaf</body></message>",
                      "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message><body>\xed\xa0\x80</body></message>",
                      "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message><body>\xef\xbf\xbe</body></message>",
                      "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message id='\xff'/>", "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message><body>&#3;</body></message>",
                      "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message><body>\x01</body></message>",
                      "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message></presence>", "not-well-formed");
  assert_stream_error(SHORT_HEADER "<message a='1' a='2'/>", "not-well-formed");
  assert_stream_error(SHORT_HEADER "<foo:message/>", "bad-namespace-prefix");
  assert_stream_error("<<garbage", "not-well-formed");
  /* Only UTF-8 (RFC 6120 §11.6). */
  assert_stream_error("<?xml version='1.0' encoding='ISO-8859-1'?>" SHORT_HEADER,
                      "unsupported-encoding");
  assert_stream_error("<?xml version='1.0' encoding='UTF-16'?>" SHORT_HEADER,
                      "unsupported-encoding");
  char *log = run_whole("<?xml version='1.0' encoding='utf-8'?>" SHORT_HEADER, 0, 0);
  assert_string_equal(log, "start <stream id='s1'/>\nrc=0");
  free(log);
  /* The header: stream namespace, element name, content namespace. */
  assert_stream_error("<stream:stream xmlns='jabber:component:accept' "
                      "xmlns:stream='urn:wrong'>",
                      "invalid-namespace");
  assert_stream_error("<stream xmlns='jabber:component:accept'>", "invalid-namespace");
  assert_stream_error("<stream:features xmlns='jabber:component:accept' "
                      "xmlns:stream='http://etherx.jabber.org/streams'>",
                      "bad-format");
  assert_stream_error("<stream:stream xmlns='jabber:client' "
                      "xmlns:stream='http://etherx.jabber.org/streams'>",
                      "invalid-namespace");
  assert_stream_error("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
                      "invalid-namespace");
}

static void test_stream_error_is_final_and_reset(void **state) {
  (void)state;
  recorder r;
  recorder_init(&r);
  bf_xml_stream *s = bf__xml_stream_new(&rec_callbacks, &r, 0, 0);
  const char *bad = SHORT_HEADER "<message><body>\xe9</body></message>";
  assert_int_equal(bf__xml_stream_feed(s, bad, strlen(bad)), BF_EPROTO);
  assert_int_equal(bf__xml_stream_feed(s, "<iq/>", 5), BF_EPROTO);
  assert_int_equal(r.errors, 1);
  assert_int_equal(r.stanzas, 0);

  /* A reconnect: the same parser reads a new stream. */
  assert_int_equal(bf__xml_stream_reset(s), 0);
  const char *good = EJABBERD_HEADER "<handshake/><iq id='1'/>";
  assert_int_equal(bf__xml_stream_feed(s, good, strlen(good)), 0);
  assert_int_equal(r.stanzas, 2);
  assert_int_equal(r.errors, 1);
  /* Reset in the middle of a stanza and after the end. */
  assert_int_equal(bf__xml_stream_feed(s, "<message><body>half", 19), 0);
  assert_int_equal(bf__xml_stream_reset(s), 0);
  const char *again = PROSODY_HEADER "<handshake/></stream:stream>";
  assert_int_equal(bf__xml_stream_feed(s, again, strlen(again)), 0);
  assert_int_equal(r.ends, 1);
  assert_int_equal(bf__xml_stream_reset(s), 0);
  assert_int_equal(bf__xml_stream_feed(s, again, strlen(again)), 0);
  assert_int_equal(r.ends, 2);
  assert_int_equal(r.stanzas, 4);
  assert_string_equal(r.log.data,
                      "start <stream id='s1'/>\nerror not-well-formed\n"
                      "start <stream id='11914710463591289128' xml:lang='en' "
                      "from='irc.localhost'/>\n"
                      "stanza <handshake/>\nstanza <iq id='1'/>\n"
                      "start <stream id='964fc729-329e-44c6-9d42-7c0cb49dc11d' "
                      "from='irc.localhost' xml:lang='en'/>\n"
                      "stanza <handshake/>\nend\n"
                      "start <stream id='964fc729-329e-44c6-9d42-7c0cb49dc11d' "
                      "from='irc.localhost' xml:lang='en'/>\n"
                      "stanza <handshake/>\nend\n");
  bf__xml_stream_free(s);
  recorder_close(&r);
  /* Freeing a stream in the middle of everything leaks nothing. */
  s = bf__xml_stream_new(&rec_callbacks, &r, 100, 0);
  recorder_init(&r);
  const char *mid = SHORT_HEADER "<message id='x'><body>" "0123456789012345678901234567890123456789"
                    "0123456789012345678901234567890123456789012345678901234567890123";
  assert_int_equal(bf__xml_stream_feed(s, mid, strlen(mid)), 0);
  bf__xml_stream_free(s);
  recorder_close(&r);
  bf__xml_stream_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tree_build),
      cmocka_unit_test(test_tree_invalid_names),
      cmocka_unit_test(test_tree_many_attrs_and_nodes),
      cmocka_unit_test(test_tree_text),
      cmocka_unit_test(test_tree_copy),
      cmocka_unit_test(test_escape),
      cmocka_unit_test(test_serialize_strips_controls),
      cmocka_unit_test(test_serialize_namespaces),
      cmocka_unit_test(test_serialize_cap_rolls_back),
      cmocka_unit_test(test_stream_prosody_every_split),
      cmocka_unit_test(test_stream_ejabberd_every_split),
      cmocka_unit_test(test_stream_trees),
      cmocka_unit_test(test_stream_namespaces),
      cmocka_unit_test(test_xml_namespace_elements),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_stream_oversize),
      cmocka_unit_test(test_stream_oversize_memory),
      cmocka_unit_test(test_stream_token_too_long),
      cmocka_unit_test(test_stream_depth),
      cmocka_unit_test(test_stream_restricted_xml),
      cmocka_unit_test(test_stream_bad_input),
      cmocka_unit_test(test_stream_error_is_final_and_reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
