/* Micro-benchmark of the XML layer: expat alone (namespace parser, empty
 * handlers) against the stream parser building trees, plus serializing
 * every stanza, over the same bytes.
 *
 *   bench-xml [-n STANZAS] [-c CHUNK_BYTES]
 *
 * The target (see tests/bench/README.md) is the stream parser + serializer
 * at >= 50 % of expat's parse-only rate.
 */
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "babelfish/xml.h"
#include "buf.h"
#include "xml.h"

static const char header[] =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' id='bench' "
    "from='echo.localhost'>";
static const char stanza[] =
    "<message from='alice@localhost/res' to='bob@echo.localhost' type='chat' "
    "id='m123' xml:lang='en'><body>Hello, world! &lt;3 caf\xc3\xa9</body>"
    "<thread>t1</thread></message>";

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void XMLCALL empty_start(void *d, const XML_Char *n, const XML_Char **a) {
  (void)d, (void)n, (void)a;
}
static void XMLCALL empty_end(void *d, const XML_Char *n) { (void)d, (void)n; }
static void XMLCALL empty_text(void *d, const XML_Char *t, int l) {
  (void)d, (void)t, (void)l;
}

typedef struct counts {
  size_t stanzas, bytes_out, errors;
  bf_buf out;
  bool serialize;
} counts;

static void on_stanza(void *data, bf_xml *st) {
  counts *c = data;
  c->stanzas++;
  if (c->serialize) {
    bf__buf_reset(&c->out);
    if (bf__xml_serialize(st, BF_NS_COMPONENT, &c->out))
      c->errors++;
    c->bytes_out += c->out.len;
  }
  bf_xml_free(st);
}

static void on_error(void *data, const char *cond, const char *text) {
  counts *c = data;
  c->errors++;
  fprintf(stderr, "stream error %s: %s\n", cond, text);
}

static const bf_xml_stream_callbacks callbacks = {
    .stanza = on_stanza,
    .error = on_error,
};

int main(int argc, char **argv) {
  size_t n = 100000, chunk = 64 * 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-n"))
      n = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-c"))
      chunk = strtoul(argv[i + 1], NULL, 10);
  }
  size_t slen = sizeof stanza - 1, hlen = sizeof header - 1;
  size_t total = hlen + n * slen;
  char *doc = malloc(total);
  if (!doc || !chunk)
    return 1;
  memcpy(doc, header, hlen);
  for (size_t i = 0; i < n; i++)
    memcpy(doc + hlen + i * slen, stanza, slen);

  int rounds = 5;
  double best_expat = 1e9, best_tree = 1e9, best_ser = 1e9;
  for (int r = 0; r < rounds; r++) {
    XML_Parser p = XML_ParserCreateNS("UTF-8", '\x01');
    XML_SetReturnNSTriplet(p, XML_TRUE);
    XML_SetElementHandler(p, empty_start, empty_end);
    XML_SetCharacterDataHandler(p, empty_text);
    double t0 = now();
    for (size_t off = 0; off < total; off += chunk) {
      size_t len = total - off < chunk ? total - off : chunk;
      if (XML_Parse(p, doc + off, (int)len, XML_FALSE) != XML_STATUS_OK) {
        fprintf(stderr, "expat: %s\n", XML_ErrorString(XML_GetErrorCode(p)));
        return 1;
      }
    }
    double t = now() - t0;
    XML_ParserFree(p);
    if (t < best_expat)
      best_expat = t;

    for (int ser = 0; ser < 2; ser++) {
      counts c = {.serialize = ser};
      bf__buf_init(&c.out, 0);
      bf_xml_stream *s = bf__xml_stream_new(&callbacks, &c, 0, 0);
      t0 = now();
      for (size_t off = 0; off < total; off += chunk) {
        size_t len = total - off < chunk ? total - off : chunk;
        if (bf__xml_stream_feed(s, doc + off, len))
          return 1;
      }
      t = now() - t0;
      bf__xml_stream_free(s);
      bf__buf_close(&c.out);
      if (c.stanzas != n || c.errors) {
        fprintf(stderr, "got %zu stanzas, %zu errors\n", c.stanzas, c.errors);
        return 1;
      }
      if (ser && c.bytes_out != n * slen) {
        fprintf(stderr, "serialized %zu bytes, expected %zu\n", c.bytes_out, n * slen);
        return 1;
      }
      double *best = ser ? &best_ser : &best_tree;
      if (t < *best)
        *best = t;
    }
  }
  printf("%zu stanzas of %zu bytes, %zu-byte chunks, best of %d\n", n, slen, chunk,
         rounds);
  printf("expat parse only        : %10.0f stanzas/s  %7.1f MB/s\n", n / best_expat,
         total / best_expat / 1e6);
  printf("stream parser, trees    : %10.0f stanzas/s  %7.1f MB/s  (%.0f %% of expat)\n",
         n / best_tree, total / best_tree / 1e6, 100 * best_expat / best_tree);
  printf("trees + serialize       : %10.0f stanzas/s  %7.1f MB/s  (%.0f %% of expat)\n",
         n / best_ser, total / best_ser / 1e6, 100 * best_expat / best_ser);
  free(doc);
  return 0;
}
