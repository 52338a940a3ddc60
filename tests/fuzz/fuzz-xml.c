/* libFuzzer target for the stream parser and the serializer.
 *
 * The input follows a stream header (unless the first byte's top bit is
 * set, which fuzzes the header too) and is fed in two pieces split at a
 * point taken from the first byte; the second byte picks max_stanza_size.
 * Every stanza must serialize, its serialization must parse back without
 * error into a tree that serializes the same, and copies and error
 * replies must serialize too. Oversized stanzas' top elements must
 * serialize. Everything is freed (LeakSanitizer checks).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/stanza.h"
#include "babelfish/xml.h"
#include "buf.h"
#include "xml.h"

static const char header[] =
    "<stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' id='fuzz'>";

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                \
    }                                                                         \
  } while (0)

typedef struct reparse {
  size_t stanzas;
  int errors;
  bf_buf out;
} reparse;

static void re_stanza(void *data, bf_xml *stanza) {
  reparse *r = data;
  r->stanzas++;
  bf__buf_reset(&r->out);
  CHECK(bf__xml_serialize(stanza, BF_NS_COMPONENT, &r->out) == 0);
  bf_xml_free(stanza);
}

static void re_oversize(void *data, const bf_xml *top, size_t size) {
  (void)top;
  (void)size;
  ((reparse *)data)->errors++;
}

static void re_error(void *data, const char *condition, const char *text) {
  fprintf(stderr, "re-parse failed: %s: %s\n", condition, text);
  ((reparse *)data)->errors++;
}

static const bf_xml_stream_callbacks re_callbacks = {
    .stanza = re_stanza,
    .oversize = re_oversize,
    .error = re_error,
};

static void check_serialization(const bf_xml *stanza) {
  bf_buf out;
  bf__buf_init(&out, 0);
  CHECK(bf__xml_serialize(stanza, BF_NS_COMPONENT, &out) == 0);
  CHECK(out.len > 0);

  reparse r = {0};
  bf__buf_init(&r.out, 0);
  bf_xml_stream *s = bf__xml_stream_new(&re_callbacks, &r, 64u << 20, 0);
  CHECK(s);
  CHECK(bf__xml_stream_feed(s, header, sizeof header - 1) == 0);
  if (bf__xml_stream_feed(s, out.data, out.len) != 0 || r.errors || r.stanzas != 1) {
    fprintf(stderr, "serialization does not parse back:\n%s\n", out.data);
    abort();
  }
  if (strcmp(r.out.data, out.data) != 0) {
    fprintf(stderr, "not stable:\n%s\n%s\n", out.data, r.out.data);
    abort();
  }
  bf__xml_stream_free(s);
  bf__buf_close(&r.out);

  bf_xml *copy = bf_xml_copy(stanza);
  CHECK(copy);
  char *again = bf_xml_to_string(copy, NULL);
  CHECK(again && strcmp(again, out.data) == 0);
  free(again);
  bf_xml_free(copy);
  bf__buf_close(&out);

  /* Error replies are made for stanzas; other names that XML allows but
   * the tree API does not create (non-ASCII) get none. */
  const char *name = bf_xml_name(stanza);
  bool is_stanza = !strcmp(name, "message") || !strcmp(name, "iq") ||
                   !strcmp(name, "presence");
  bf_xml *error = bf_stanza_error(stanza, NULL, "service-unavailable", "fuzz");
  CHECK(error || bf_stanza_is_reply(stanza) || !is_stanza);
  if (error) {
    char *e = bf_xml_to_string(error, NULL);
    CHECK(e);
    free(e);
    bf_xml_free(error);
  }
  (void)bf_xml_text(stanza);
}

static void on_stanza(void *data, bf_xml *stanza) {
  (void)data;
  check_serialization(stanza);
  bf_xml_free(stanza);
}

static void on_oversize(void *data, const bf_xml *top, size_t size) {
  (void)data;
  (void)size;
  CHECK(bf_xml_first_child(top) == NULL);
  check_serialization(top);
}

static const bf_xml_stream_callbacks callbacks = {
    .stanza = on_stanza,
    .oversize = on_oversize,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t split = (size_t)(data[0] & 0x7f) * (size - 2) / 127;
  size_t max = 64 + (size_t)data[1] * 32;
  bool with_header = !(data[0] & 0x80);
  const char *in = (const char *)data + 2;
  size -= 2;
  bf_xml_stream *s = bf__xml_stream_new(&callbacks, NULL, max, 16);
  CHECK(s);
  if (with_header)
    CHECK(bf__xml_stream_feed(s, header, sizeof header - 1) == 0);
  int rc = bf__xml_stream_feed(s, in, split);
  int rc2 = bf__xml_stream_feed(s, in + split, size - split);
  CHECK(rc == 0 || rc2 != 0); /* an error is final */
  bf__xml_stream_free(s);
  return 0;
}
