/* Unit tests for transports/irc/irc-tls.c: a TLS server runs in this
 * process on OpenSSL memory BIOs, with certificates made here (a CA, a
 * leaf it signed, an expired one, a self-signed one), and the bytes are
 * pumped between it and the client layer in memory: handshake (at once
 * and byte by byte), lines both ways and 100 KB each way, pins that match
 * and don't, CA verification (self-signed, wrong host, expired, good),
 * TLS 1.2 as the minimum, close_notify both ways, garbage instead of TLS.
 *
 * The test reaches OpenSSL the way the layer does: through libssl.so.3
 * opened with dlopen (the copy already loaded, so objects are shared),
 * never through the static libcrypto the core links. SSL_CERT_FILE and
 * SSL_CERT_DIR point the "system" CA store at the test's own CA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <dlfcn.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "babelfish/error.h"
#include "irc/irc-tls.h"
#include "support.h"

/* ---- OpenSSL through dlopen ---------------------------------------------- */

static void *ossl_symbol(const char *name) {
  static void *dl;
  if (!dl)
    dl = dlopen(BF_IRC_TLS_LIBSSL, RTLD_NOW | RTLD_LOCAL);
  if (!dl)
    fail_msg("dlopen %s: %s", BF_IRC_TLS_LIBSSL, dlerror());
  void *fn = dlsym(dl, name);
  if (!fn)
    fail_msg("no %s in %s", name, BF_IRC_TLS_LIBSSL);
  return fn;
}
/* O(X509_new)() calls the shared library's X509_new, typed from its
 * prototype. */
#define O(name) ((__typeof__(name) *)ossl_symbol(#name))

/* ---- certificates ------------------------------------------------------- */

static void add_extension(X509 *x, int nid, const char *value) {
  X509_EXTENSION *ext = O(X509V3_EXT_conf_nid)(NULL, NULL, nid, value);
  assert_non_null(ext);
  assert_int_equal(O(X509_add_ext)(x, ext, -1), 1);
  O(X509_EXTENSION_free)(ext);
}

/* A certificate for key, valid from now + from_s to now + to_s seconds,
 * signed by issuer (with issuer_key), or self-signed when issuer is
 * NULL. san: a subjectAltName value or NULL. */
static X509 *make_certificate(EVP_PKEY *key, const char *cn, const char *san,
                              bool ca, long from_s, long to_s, X509 *issuer,
                              EVP_PKEY *issuer_key) {
  static long serial = 1;
  X509 *x = O(X509_new)();
  assert_non_null(x);
  assert_int_equal(O(X509_set_version)(x, X509_VERSION_3), 1);
  O(ASN1_INTEGER_set)(O(X509_get_serialNumber)(x), serial++);
  assert_non_null(O(X509_gmtime_adj)(O(X509_getm_notBefore)(x), from_s));
  assert_non_null(O(X509_gmtime_adj)(O(X509_getm_notAfter)(x), to_s));
  assert_int_equal(O(X509_set_pubkey)(x, key), 1);
  X509_NAME *name = O(X509_get_subject_name)(x);
  assert_int_equal(O(X509_NAME_add_entry_by_txt)(name, "CN", MBSTRING_ASC,
                                                 (const unsigned char *)cn, -1,
                                                 -1, 0),
                   1);
  assert_int_equal(O(X509_set_issuer_name)(
                       x, issuer ? O(X509_get_subject_name)(issuer) : name),
                   1);
  add_extension(x, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (ca)
    add_extension(x, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (san)
    add_extension(x, NID_subject_alt_name, san);
  assert_true(O(X509_sign)(x, issuer_key ? issuer_key : key, O(EVP_sha256)()) >
              0);
  return x;
}

static EVP_PKEY *make_key(void) {
  EVP_PKEY *key = O(EVP_PKEY_Q_keygen)(NULL, NULL, "EC", "P-256");
  assert_non_null(key);
  return key;
}

static char *tmpdir, *ca_path;
static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca_cert, *good_cert, *expired_cert, *self_signed_cert;

static void fingerprint_of(X509 *cert, char out[BF_IRC_TLS_FINGERPRINT_SIZE]) {
  unsigned char md[32];
  unsigned int n = 0;
  assert_int_equal(O(X509_digest)(cert, O(EVP_sha256)(), md, &n), 1);
  assert_int_equal(n, 32);
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 3 * i, 4, i == 31 ? "%02X" : "%02X:", md[i]);
}

static int group_setup(void **state) {
  tmpdir = bf_test_tmpdir("irc-tls");
  ca_key = make_key();
  leaf_key = make_key();
  ca_cert = make_certificate(ca_key, "Test CA", NULL, true, -3600,
                             86400L * 30, NULL, NULL);
  good_cert = make_certificate(leaf_key, "irc.test",
                               "DNS:irc.test,DNS:*.irc.test,IP:127.0.0.1",
                               false, -3600, 86400L * 30, ca_cert, ca_key);
  expired_cert = make_certificate(leaf_key, "irc.test", "DNS:irc.test", false,
                                  -86400L * 60, -86400L * 30, ca_cert, ca_key);
  self_signed_cert = make_certificate(leaf_key, "irc.test", "DNS:irc.test",
                                      false, -3600, 86400L * 30, NULL, NULL);
  /* The "system" CA store: this CA only. */
  size_t n = strlen(tmpdir) + 16;
  ca_path = malloc(n);
  assert_non_null(ca_path);
  snprintf(ca_path, n, "%s/ca.pem", tmpdir);
  FILE *f = fopen(ca_path, "w");
  assert_non_null(f);
  assert_int_equal(O(PEM_write_X509)(f, ca_cert), 1);
  fclose(f);
  setenv("SSL_CERT_FILE", ca_path, 1);
  setenv("SSL_CERT_DIR", tmpdir, 1);
  return 0;
}

static int group_teardown(void **state) {
  X509 *certs[] = {ca_cert, good_cert, expired_cert, self_signed_cert};
  for (size_t i = 0; i < sizeof certs / sizeof *certs; i++)
    O(X509_free)(certs[i]);
  O(EVP_PKEY_free)(ca_key);
  O(EVP_PKEY_free)(leaf_key);
  unlink(ca_path);
  rmdir(tmpdir);
  free(ca_path);
  free(tmpdir);
  return 0;
}

/* Each test starts from no shared context: the CA store is read again. */
static int teardown(void **state) {
  bf_irc_tls_shutdown();
  return 0;
}

/* ---- the two ends ------------------------------------------------------- */

typedef struct buffer {
  char *data;
  size_t len, cap;
} buffer;

static void buffer_add(buffer *b, const char *data, size_t len) {
  if (b->len + len > b->cap) {
    b->cap = (b->len + len) * 2;
    b->data = realloc(b->data, b->cap);
    assert_non_null(b->data);
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

static bool buffer_equals(const buffer *b, const char *text) {
  return b->len == strlen(text) && !memcmp(b->data, text, b->len);
}

typedef struct client {
  bf_irc_tls *tls;
  buffer to_server;            /* ciphertext not yet given to the server */
  buffer plain;                /* plaintext received */
  int plain_rc;                /* what on_plain returns */
  bool pong;                   /* answer "PING x" with "PONG x" */
  char err[512];
} client;

typedef struct server {
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *in, *out;
  bool done, failed, closed;
  buffer plain;
} server;

static int on_cipher(void *data, const char *buf, size_t len) {
  client *c = data;
  buffer_add(&c->to_server, buf, len);
  return 0;
}

static int on_plain(void *data, const char *buf, size_t len) {
  client *c = data;
  buffer_add(&c->plain, buf, len);
  if (c->pong && len >= 5 && !memcmp(buf, "PING ", 5)) {
    char reply[64];
    int n = snprintf(reply, sizeof reply, "PONG %.*s", (int)len - 5, buf + 5);
    int rc = bf_irc_tls_write(c->tls, reply, (size_t)n, NULL, 0);
    if (rc)
      return rc;
  }
  return c->plain_rc;
}

static int client_new(client *c, const char *host, bool verify,
                      const char *pin) {
  memset(c, 0, sizeof *c);
  bf_irc_tls_callbacks cb = {on_plain, on_cipher, c};
  return bf_irc_tls_new(&c->tls, host, verify, pin, &cb, c->err,
                        sizeof c->err);
}

static void client_free(client *c) {
  bf_irc_tls_free(c->tls);
  free(c->to_server.data);
  free(c->plain.data);
}

/* max_version: 0, or the highest TLS version the server speaks. */
static void server_new(server *s, X509 *cert, int max_version) {
  memset(s, 0, sizeof *s);
  s->ctx = O(SSL_CTX_new)(O(TLS_server_method)());
  assert_non_null(s->ctx);
  assert_int_equal(O(SSL_CTX_use_certificate)(s->ctx, cert), 1);
  EVP_PKEY *key = cert == ca_cert ? ca_key : leaf_key;
  assert_int_equal(O(SSL_CTX_use_PrivateKey)(s->ctx, key), 1);
  if (max_version) {
    /* TLS 1.0 and 1.1 need security level 0 in OpenSSL 3. */
    O(SSL_CTX_set_security_level)(s->ctx, 0);
    O(SSL_CTX_ctrl)(s->ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_VERSION, NULL);
    O(SSL_CTX_ctrl)(s->ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, max_version, NULL);
  }
  s->ssl = O(SSL_new)(s->ctx);
  s->in = O(BIO_new)(O(BIO_s_mem)());
  s->out = O(BIO_new)(O(BIO_s_mem)());
  assert_true(s->ssl && s->in && s->out);
  O(SSL_set_bio)(s->ssl, s->in, s->out);
  O(SSL_set_accept_state)(s->ssl);
}

static void server_free(server *s) {
  O(SSL_free)(s->ssl);
  O(SSL_CTX_free)(s->ctx);
  free(s->plain.data);
}

/* The server handles what it has received. */
static void server_run(server *s) {
  if (s->failed || s->closed)
    return;
  if (!s->done) {
    int r = O(SSL_do_handshake)(s->ssl);
    if (r == 1) {
      s->done = true;
    } else {
      if (O(SSL_get_error)(s->ssl, r) != SSL_ERROR_WANT_READ)
        s->failed = true;
      O(ERR_clear_error)();
      return;
    }
  }
  char buf[16384];
  for (;;) {
    int n = O(SSL_read)(s->ssl, buf, sizeof buf);
    if (n > 0) {
      buffer_add(&s->plain, buf, (size_t)n);
      continue;
    }
    int e = O(SSL_get_error)(s->ssl, n);
    if (e == SSL_ERROR_ZERO_RETURN)
      s->closed = true;
    else if (e != SSL_ERROR_WANT_READ)
      s->failed = true;
    O(ERR_clear_error)();
    return;
  }
}

static void server_write(server *s, const char *text, size_t len) {
  assert_int_equal(O(SSL_write)(s->ssl, text, (int)len), (int)len);
}

/* Moves bytes both ways until neither end has anything more to say,
 * handing the server's bytes to the client step bytes at a time (0: all
 * at once). Returns the first non-zero bf_irc_tls_read code, or 0. */
static int pump(client *c, server *s, size_t step) {
  for (int round = 0; round < 1000; round++) {
    bool moved = false;
    if (c->to_server.len) {
      assert_int_equal(O(BIO_write)(s->in, c->to_server.data,
                                    (int)c->to_server.len),
                       (int)c->to_server.len);
      c->to_server.len = 0;
      moved = true;
    }
    server_run(s);
    while (O(BIO_ctrl_pending)(s->out) > 0) {
      char buf[32768];
      int n = O(BIO_read)(s->out, buf, sizeof buf);
      assert_true(n > 0);
      moved = true;
      size_t piece = step ? step : (size_t)n;
      for (size_t at = 0; at < (size_t)n; at += piece) {
        size_t len = (size_t)n - at < piece ? (size_t)n - at : piece;
        int rc = bf_irc_tls_read(c->tls, buf + at, len, c->err, sizeof c->err);
        if (rc) {
          /* Let the server see the alert, if one was sent. */
          if (c->to_server.len) {
            O(BIO_write)(s->in, c->to_server.data, (int)c->to_server.len);
            c->to_server.len = 0;
            server_run(s);
          }
          return rc;
        }
      }
    }
    if (!moved)
      return 0;
  }
  fail_msg("pump: no end to the exchange");
  return 0;
}

/* A client and server through the handshake; fails the test if not. */
static void connect_pair(client *c, server *s, X509 *cert, const char *host,
                         bool verify, const char *pin) {
  assert_int_equal(client_new(c, host, verify, pin), 0);
  server_new(s, cert, 0);
  assert_int_equal(bf_irc_tls_start(c->tls, c->err, sizeof c->err), 0);
  int rc = pump(c, s, 0);
  if (rc)
    fail_msg("handshake: %d %s", rc, c->err);
  assert_true(bf_irc_tls_ready(c->tls));
  assert_true(s->done);
}

/* ---- tests --------------------------------------------------------------- */

static void test_handshake_and_lines(void **state) {
  client c;
  server s;
  assert_int_equal(client_new(&c, "irc.test", false, NULL), 0);
  server_new(&s, self_signed_cert, 0);
  char fp[BF_IRC_TLS_FINGERPRINT_SIZE], want[BF_IRC_TLS_FINGERPRINT_SIZE];
  assert_int_equal(bf_irc_tls_fingerprint(c.tls, fp, sizeof fp), BF_ENOENT);
  assert_false(bf_irc_tls_ready(c.tls));
  /* Registration is written at once on connect: held for the handshake. */
  const char *hello = "NICK tls\r\nUSER tls 0 * :TLS test\r\n";
  assert_int_equal(bf_irc_tls_write(c.tls, hello, strlen(hello), NULL, 0), 0);
  assert_int_equal(bf_irc_tls_start(c.tls, c.err, sizeof c.err), 0);
  assert_true(c.to_server.len > 0); /* the ClientHello */
  assert_int_equal(c.to_server.data[0], 22); /* a handshake record */
  assert_int_equal(pump(&c, &s, 0), 0);
  assert_true(bf_irc_tls_ready(c.tls));
  assert_true(buffer_equals(&s.plain, hello));
  /* RFC 6066 §3: the server got the host name. */
  assert_string_equal(O(SSL_get_servername)(s.ssl, TLSEXT_NAMETYPE_host_name),
                      "irc.test");

  assert_int_equal(bf_irc_tls_fingerprint(c.tls, fp, sizeof fp), 0);
  fingerprint_of(self_signed_cert, want);
  assert_string_equal(fp, want);
  assert_int_equal(strlen(fp), 95);
  assert_int_equal(bf_irc_tls_fingerprint(c.tls, fp, 95), BF_E2BIG);
  char desc[128];
  bf_irc_tls_describe(c.tls, desc, sizeof desc);
  assert_non_null(strstr(desc, "TLSv1.3 "));

  /* Server to client; a PING answered from inside on_plain. */
  c.pong = true;
  const char *welcome = ":irc.test 001 tls :Welcome\r\n";
  server_write(&s, welcome, strlen(welcome));
  server_write(&s, "PING x1\r\n", 9);
  s.plain.len = 0;
  assert_int_equal(pump(&c, &s, 0), 0);
  assert_int_equal(c.plain.len, strlen(welcome) + 9);
  assert_memory_equal(c.plain.data, welcome, strlen(welcome));
  assert_true(buffer_equals(&s.plain, "PONG x1\r\n"));

  /* RFC 8446 §6.1: close_notify reaches the server; no writes after. */
  assert_int_equal(bf_irc_tls_close_notify(c.tls), 0);
  assert_int_equal(pump(&c, &s, 0), 0);
  assert_true(s.closed);
  assert_int_equal(bf_irc_tls_write(c.tls, "x", 1, c.err, sizeof c.err),
                   BF_ENOTCONN);
  assert_int_equal(bf_irc_tls_close_notify(c.tls), BF_ENOTCONN);
  client_free(&c);
  server_free(&s);
}

/* The handshake and a line with the server's bytes arriving one at a
 * time: the layer must wait for whole records at every split point. */
static void test_byte_by_byte(void **state) {
  client c;
  server s;
  assert_int_equal(client_new(&c, "irc.test", false, NULL), 0);
  server_new(&s, good_cert, 0);
  assert_int_equal(bf_irc_tls_write(c.tls, "NICK a\r\n", 8, NULL, 0), 0);
  assert_int_equal(bf_irc_tls_start(c.tls, NULL, 0), 0);
  assert_int_equal(pump(&c, &s, 1), 0);
  assert_true(bf_irc_tls_ready(c.tls));
  server_write(&s, "PING :a\r\n", 9);
  assert_int_equal(pump(&c, &s, 1), 0);
  assert_true(buffer_equals(&c.plain, "PING :a\r\n"));
  assert_true(buffer_equals(&s.plain, "NICK a\r\n"));
  client_free(&c);
  server_free(&s);
}

static void test_large_both_ways(void **state) {
  client c;
  server s;
  connect_pair(&c, &s, good_cert, "irc.test", true, NULL);
  size_t size = 100 * 1024;
  char *data = malloc(size);
  assert_non_null(data);
  for (size_t i = 0; i < size; i++)
    data[i] = (char)('a' + (i * 7 + i / 251) % 26);
  assert_int_equal(bf_irc_tls_write(c.tls, data, size, NULL, 0), 0);
  server_write(&s, data, size);
  assert_int_equal(pump(&c, &s, 1000), 0);
  assert_int_equal(s.plain.len, size);
  assert_memory_equal(s.plain.data, data, size);
  assert_int_equal(c.plain.len, size);
  assert_memory_equal(c.plain.data, data, size);
  free(data);
  client_free(&c);
  server_free(&s);
}

static void test_pin_match(void **state) {
  char fp[BF_IRC_TLS_FINGERPRINT_SIZE];
  fingerprint_of(self_signed_cert, fp);
  /* "AB:CD:…" as given, lower case, and bare hex. */
  char lower[sizeof fp], bare[65];
  size_t n = 0;
  for (size_t i = 0; fp[i]; i++) {
    lower[i] = (char)(fp[i] >= 'A' && fp[i] <= 'F' ? fp[i] - 'A' + 'a' : fp[i]);
    lower[i + 1] = '\0';
    if (fp[i] != ':')
      bare[n++] = fp[i];
  }
  bare[n] = '\0';
  const char *pins[] = {fp, lower, bare};
  for (size_t i = 0; i < 3; i++) {
    client c;
    server s;
    /* verify is ignored with a pin: the self-signed certificate passes. */
    connect_pair(&c, &s, self_signed_cert, "irc.test", true, pins[i]);
    client_free(&c);
    server_free(&s);
    bf_irc_tls_shutdown();
  }
}

static void test_pin_mismatch(void **state) {
  char want[BF_IRC_TLS_FINGERPRINT_SIZE], got[BF_IRC_TLS_FINGERPRINT_SIZE];
  fingerprint_of(good_cert, want);
  fingerprint_of(self_signed_cert, got);
  client c;
  server s;
  assert_int_equal(client_new(&c, "irc.test", false, want), 0);
  server_new(&s, self_signed_cert, 0);
  const char *secret = "PASS hunter2\r\n";
  assert_int_equal(bf_irc_tls_write(c.tls, secret, strlen(secret), NULL, 0), 0);
  assert_int_equal(bf_irc_tls_start(c.tls, NULL, 0), 0);
  assert_int_equal(pump(&c, &s, 0), BF_EPERM);
  assert_non_null(strstr(c.err, "does not match the pinned fingerprint"));
  assert_non_null(strstr(c.err, got));
  assert_non_null(strstr(c.err, want));
  assert_false(bf_irc_tls_ready(c.tls));
  /* The server got an alert and none of the held plaintext. */
  assert_true(s.failed);
  assert_int_equal(s.plain.len, 0);
  /* The certificate's fingerprint is known, for the admin to pin it. */
  char fp[BF_IRC_TLS_FINGERPRINT_SIZE];
  assert_int_equal(bf_irc_tls_fingerprint(c.tls, fp, sizeof fp), 0);
  assert_string_equal(fp, got);
  /* Dead: everything after fails the same way. */
  char err[512] = "";
  assert_int_equal(bf_irc_tls_write(c.tls, "x", 1, err, sizeof err), BF_EPERM);
  assert_string_equal(err, c.err);
  assert_int_equal(bf_irc_tls_read(c.tls, "x", 1, NULL, 0), BF_EPERM);
  client_free(&c);
  server_free(&s);
}

static void test_bad_pins(void **state) {
  const char *bad[] = {
      "zz",
      "AB:CD",
      /* 31 bytes, 33 bytes */
      "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E",
      "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20",
      "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1G",
      ":000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
      "00:0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F:",
      "0:00102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
      "sha256/AAAA",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    client c;
    assert_int_equal(client_new(&c, "irc.test", true, bad[i]), BF_EINVAL);
    assert_null(c.tls);
    assert_non_null(strstr(c.err, "64 hex digits"));
  }
  client c;
  assert_int_equal(client_new(&c, "", true, NULL), BF_EINVAL);
  /* Colons between some pairs only, and none: both fine. */
  assert_int_equal(
      client_new(&c, "irc.test", true,
                 "00:0102030405060708090A0B0C0D0E0F101112131415161718191A1B1"
                 "C1D1E1F"),
      0);
  client_free(&c);
}

static void test_verify_good(void **state) {
  client c;
  server s;
  connect_pair(&c, &s, good_cert, "irc.test", true, NULL);
  client_free(&c);
  server_free(&s);
  /* The wildcard name, and the IP address (no SNI for it, RFC 6066 §3). */
  connect_pair(&c, &s, good_cert, "a.irc.test", true, NULL);
  client_free(&c);
  server_free(&s);
  connect_pair(&c, &s, good_cert, "127.0.0.1", true, NULL);
  assert_null(O(SSL_get_servername)(s.ssl, TLSEXT_NAMETYPE_host_name));
  client_free(&c);
  server_free(&s);
}

/* Verification on, and the handshake refused with rc and a message
 * holding each of expect. */
static void refused(X509 *cert, const char *host, const char *const *expect,
                    size_t n) {
  client c;
  server s;
  assert_int_equal(client_new(&c, host, true, NULL), 0);
  server_new(&s, cert, 0);
  assert_int_equal(bf_irc_tls_write(c.tls, "NICK a\r\n", 8, NULL, 0), 0);
  assert_int_equal(bf_irc_tls_start(c.tls, NULL, 0), 0);
  int rc = pump(&c, &s, 0);
  if (rc != BF_EPERM)
    fail_msg("%s: %d %s", host, rc, c.err);
  for (size_t i = 0; i < n; i++) {
    if (!strstr(c.err, expect[i]))
      fail_msg("\"%s\" not in \"%s\"", expect[i], c.err);
  }
  assert_true(s.failed); /* told by an alert */
  assert_int_equal(s.plain.len, 0);
  client_free(&c);
  server_free(&s);
}

static void test_verify_self_signed(void **state) {
  char fp[BF_IRC_TLS_FINGERPRINT_SIZE];
  fingerprint_of(self_signed_cert, fp);
  const char *expect[] = {"irc.test's certificate is self-signed", "pin", fp};
  refused(self_signed_cert, "irc.test", expect, 3);
}

static void test_verify_wrong_host(void **state) {
  const char *expect[] = {"is for irc.test, *.irc.test, 127.0.0.1",
                          "not other.test", "wrong host name"};
  refused(good_cert, "other.test", expect, 3);
  /* No partial wildcards, and one label only (RFC 6125 §6.4.3). */
  const char *deeper[] = {"not a.b.irc.test"};
  refused(good_cert, "a.b.irc.test", deeper, 1);
  const char *ip[] = {"not 127.0.0.2"};
  refused(good_cert, "127.0.0.2", ip, 1);
}

static void test_verify_expired(void **state) {
  const char *expect[] = {"irc.test's certificate expired on ", "renew"};
  refused(expired_cert, "irc.test", expect, 2);
}

static void test_verify_unknown_ca(void **state) {
  /* A store without the test CA: the good certificate's issuer is then
   * unknown. */
  setenv("SSL_CERT_FILE", "/nonexistent", 1);
  const char *expect[] = {"signed by /CN=Test CA", "does not trust"};
  refused(good_cert, "irc.test", expect, 2);
  setenv("SSL_CERT_FILE", ca_path, 1);
}

/* RFC 8996: nothing below TLS 1.2. */
static void test_tls12_minimum(void **state) {
  client c;
  server s;
  assert_int_equal(client_new(&c, "irc.test", false, NULL), 0);
  server_new(&s, good_cert, TLS1_1_VERSION);
  assert_int_equal(bf_irc_tls_start(c.tls, NULL, 0), 0);
  assert_int_equal(pump(&c, &s, 0), BF_EPROTO);
  assert_non_null(strstr(c.err, "offers no TLS 1.2 or later"));
  client_free(&c);
  server_free(&s);

  assert_int_equal(client_new(&c, "irc.test", true, NULL), 0);
  server_new(&s, good_cert, TLS1_2_VERSION);
  assert_int_equal(bf_irc_tls_start(c.tls, NULL, 0), 0);
  assert_int_equal(pump(&c, &s, 0), 0);
  assert_true(bf_irc_tls_ready(c.tls));
  char desc[128];
  bf_irc_tls_describe(c.tls, desc, sizeof desc);
  assert_non_null(strstr(desc, "TLSv1.2 "));
  server_write(&s, "PING :b\r\n", 9);
  assert_int_equal(pump(&c, &s, 0), 0);
  assert_true(buffer_equals(&c.plain, "PING :b\r\n"));
  client_free(&c);
  server_free(&s);
}

/* A plain-text IRC server on the port, and random bytes: an error that
 * says so, never a crash. */
static void test_garbage(void **state) {
  client c;
  assert_int_equal(client_new(&c, "irc.test", true, NULL), 0);
  assert_int_equal(bf_irc_tls_start(c.tls, NULL, 0), 0);
  const char *notice =
      ":irc.test NOTICE * :*** Looking up your hostname...\r\n";
  assert_int_equal(bf_irc_tls_read(c.tls, notice, strlen(notice), c.err,
                                   sizeof c.err),
                   BF_EPROTO);
  assert_non_null(strstr(c.err, "did not answer in TLS"));
  assert_non_null(strstr(c.err, "plain-text port"));
  client_free(&c);

  srand(4);
  for (int round = 0; round < 300; round++) {
    assert_int_equal(client_new(&c, "irc.test", round % 2, NULL), 0);
    assert_int_equal(bf_irc_tls_start(c.tls, NULL, 0), 0);
    char junk[600];
    size_t len = 1 + (size_t)rand() % sizeof junk;
    for (size_t i = 0; i < len; i++)
      junk[i] = (char)rand();
    /* Some rounds look like a TLS record header, to get past it. */
    if (round % 3 == 0 && len > 5) {
      junk[0] = (char)(20 + rand() % 5);
      junk[1] = 3;
      junk[2] = (char)(rand() % 5);
      junk[3] = (char)((len - 5) >> 8);
      junk[4] = (char)(len - 5);
    }
    int rc = bf_irc_tls_read(c.tls, junk, len, c.err, sizeof c.err);
    assert_true(rc == 0 || rc == BF_EPROTO);
    if (rc)
      assert_true(c.err[0] != '\0');
    client_free(&c);
  }

  /* A record changed in flight after the handshake (RFC 8446 §5.2: the
   * AEAD check fails). */
  server s;
  connect_pair(&c, &s, good_cert, "irc.test", true, NULL);
  server_write(&s, "PING :c\r\n", 9);
  char buf[256];
  int n = O(BIO_read)(s.out, buf, sizeof buf);
  assert_true(n > 10);
  buf[n - 3] ^= 0x40;
  assert_int_equal(bf_irc_tls_read(c.tls, buf, (size_t)n, c.err, sizeof c.err),
                   BF_EPROTO);
  assert_int_equal(c.plain.len, 0);
  assert_non_null(strstr(c.err, "TLS read with irc.test failed"));
  client_free(&c);
  server_free(&s);
}

static void test_server_closes(void **state) {
  client c;
  server s;
  connect_pair(&c, &s, good_cert, "irc.test", true, NULL);
  server_write(&s, "ERROR :bye\r\n", 12);
  O(SSL_shutdown)(s.ssl);
  assert_int_equal(pump(&c, &s, 0), BF_ENOTCONN);
  assert_true(buffer_equals(&c.plain, "ERROR :bye\r\n"));
  assert_non_null(strstr(c.err, "irc.test closed the TLS connection"));
  client_free(&c);
  server_free(&s);
}

/* A callback's code stops the call and is returned. */
static void test_callback_stops(void **state) {
  client c;
  server s;
  connect_pair(&c, &s, good_cert, "irc.test", true, NULL);
  c.plain_rc = BF_ECANCELED;
  server_write(&s, "PING :d\r\n", 9);
  server_write(&s, "PING :e\r\n", 9);
  assert_int_equal(pump(&c, &s, 0), BF_ECANCELED);
  assert_true(buffer_equals(&c.plain, "PING :d\r\n"));
  client_free(&c);
  server_free(&s);
}

static void test_pending_cap(void **state) {
  client c;
  assert_int_equal(client_new(&c, "irc.test", false, NULL), 0);
  char *big = calloc(1, BF_IRC_TLS_PENDING_MAX);
  assert_non_null(big);
  assert_int_equal(bf_irc_tls_write(c.tls, big, BF_IRC_TLS_PENDING_MAX, NULL,
                                    0),
                   0);
  assert_int_equal(bf_irc_tls_write(c.tls, "x", 1, c.err, sizeof c.err),
                   BF_ENOBUFS);
  assert_non_null(strstr(c.err, "waiting for the handshake"));
  free(big);
  client_free(&c);
}

/* Accepts any client certificate (the server only wants its
 * fingerprint, as IRC servers do for CertFP). */
static int accept_any(int ok, X509_STORE_CTX *store) {
  (void)ok, (void)store;
  return 1;
}

/* SASL EXTERNAL's certificate: made once, its fingerprint as services
 * write it, presented when the server asks for one; a damaged one or a
 * key of another certificate refused. */
static void test_client_identity(void **state) {
  char *cert = NULL, *key = NULL, *cert2 = NULL, *key2 = NULL;
  char err[512] = "";
  assert_int_equal(bf_irc_tls_identity_new(&cert, &key, err, sizeof err), 0);
  assert_int_equal(bf_irc_tls_identity_new(&cert2, &key2, err, sizeof err), 0);
  assert_non_null(strstr(cert, "-----BEGIN CERTIFICATE-----"));
  assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
  assert_string_not_equal(cert, cert2);
  char fp[BF_IRC_TLS_CERTFP_SIZE], fp2[BF_IRC_TLS_CERTFP_SIZE];
  assert_int_equal(bf_irc_tls_identity_certfp(cert, fp, sizeof fp, NULL, 0), 0);
  assert_int_equal(bf_irc_tls_identity_certfp(cert2, fp2, sizeof fp2, NULL, 0),
                   0);
  assert_int_equal(strlen(fp), 64);
  assert_int_equal(strspn(fp, "0123456789abcdef"), 64);
  assert_string_not_equal(fp, fp2);
  assert_int_equal(bf_irc_tls_identity_certfp(cert, fp2, 64, NULL, 0),
                   BF_E2BIG);
  assert_int_equal(bf_irc_tls_identity_certfp("not PEM", fp2, sizeof fp2, err,
                                              sizeof err),
                   BF_EINVAL);
  assert_non_null(strstr(err, "damaged"));

  /* The server asks for a certificate and gets this one. */
  client c;
  server s;
  assert_int_equal(client_new(&c, "irc.test", true, NULL), 0);
  server_new(&s, good_cert, 0);
  O(SSL_set_verify)(s.ssl, SSL_VERIFY_PEER, accept_any);
  assert_int_equal(bf_irc_tls_set_identity(c.tls, cert2, key, err, sizeof err),
                   BF_EINVAL); /* another certificate's key */
  assert_int_equal(bf_irc_tls_set_identity(c.tls, cert, key, err, sizeof err),
                   0);
  assert_int_equal(bf_irc_tls_start(c.tls, c.err, sizeof c.err), 0);
  assert_int_equal(pump(&c, &s, 0), 0);
  assert_true(bf_irc_tls_ready(c.tls));
  assert_int_equal(bf_irc_tls_write(c.tls, "CAP LS\r\n", 8, NULL, 0), 0);
  assert_int_equal(pump(&c, &s, 0), 0); /* TLS 1.3 sends it after Finished */
  X509 *peer = O(SSL_get0_peer_certificate)(s.ssl);
  assert_non_null(peer);
  unsigned char md[32];
  unsigned int n = 0;
  assert_int_equal(O(X509_digest)(peer, O(EVP_sha256)(), md, &n), 1);
  char hex[BF_IRC_TLS_CERTFP_SIZE];
  for (unsigned i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  assert_string_equal(hex, fp);
  assert_int_equal(bf_irc_tls_set_identity(c.tls, cert, key, err, sizeof err),
                   BF_EINVAL); /* too late */
  client_free(&c);
  server_free(&s);
  free(cert);
  free(key);
  free(cert2);
  free(key2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_handshake_and_lines, teardown),
      cmocka_unit_test_teardown(test_byte_by_byte, teardown),
      cmocka_unit_test_teardown(test_large_both_ways, teardown),
      cmocka_unit_test_teardown(test_pin_match, teardown),
      cmocka_unit_test_teardown(test_pin_mismatch, teardown),
      cmocka_unit_test_teardown(test_bad_pins, teardown),
      cmocka_unit_test_teardown(test_verify_good, teardown),
      cmocka_unit_test_teardown(test_verify_self_signed, teardown),
      cmocka_unit_test_teardown(test_verify_wrong_host, teardown),
      cmocka_unit_test_teardown(test_verify_expired, teardown),
      cmocka_unit_test_teardown(test_verify_unknown_ca, teardown),
      cmocka_unit_test_teardown(test_tls12_minimum, teardown),
      cmocka_unit_test_teardown(test_garbage, teardown),
      cmocka_unit_test_teardown(test_server_closes, teardown),
      cmocka_unit_test_teardown(test_callback_stops, teardown),
      cmocka_unit_test_teardown(test_pending_cap, teardown),
      cmocka_unit_test_teardown(test_client_identity, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
