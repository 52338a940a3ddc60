/* IRC transport: TLS over memory BIOs, libssl loaded on first use. See
 * irc-tls.h for the shape and for why libssl is loaded late. */
#include "irc-tls.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "babelfish/error.h"

/* ---- libssl, loaded on first use ---------------------------------------
 * Every OpenSSL function this file calls, libcrypto's included, goes
 * through this table, filled by dlsym from libssl.so.3 (which finds
 * libcrypto.so.3's symbols through its dependency). The daemon also links
 * a static subset of libcrypto (SHA-1 for XEP-0114): objects of the
 * shared copy must never reach the static one's functions, so no OpenSSL
 * symbol may be called directly here (`nm` on this object shows none).
 * __typeof__ takes each pointer's type from OpenSSL's own prototype. */
#define BF_TLS_FUNCTIONS(X)                                                    \
  X(TLS_client_method) X(SSL_CTX_new) X(SSL_CTX_free) X(SSL_CTX_ctrl)          \
  X(SSL_CTX_set_options) X(SSL_CTX_set_default_verify_paths)                   \
  X(SSL_CTX_set_cert_verify_callback) X(SSL_new) X(SSL_free) X(SSL_set_bio)    \
  X(SSL_set_connect_state) X(SSL_do_handshake) X(SSL_read) X(SSL_write)        \
  X(SSL_shutdown) X(SSL_get_error) X(SSL_ctrl) X(SSL_set1_host)                \
  X(SSL_set_hostflags) X(SSL_set_verify) X(SSL_set_ex_data) X(SSL_get_ex_data) \
  X(SSL_get_ex_data_X509_STORE_CTX_idx) X(SSL_get0_peer_certificate)           \
  X(SSL_get_verify_result) X(SSL_get_version) X(SSL_get_current_cipher)        \
  X(SSL_CIPHER_get_name) X(BIO_new) X(BIO_s_mem) X(BIO_free) X(BIO_read)       \
  X(BIO_write) X(BIO_ctrl_pending) X(ERR_get_error) X(ERR_clear_error)         \
  X(ERR_reason_error_string) X(X509_STORE_CTX_get_ex_data)                     \
  X(X509_STORE_CTX_get0_cert) X(X509_STORE_CTX_set_error)                      \
  X(X509_STORE_CTX_get_error) X(X509_verify_cert)                              \
  X(X509_verify_cert_error_string) X(X509_digest) X(EVP_sha256)                \
  X(X509_get0_notBefore) X(X509_get0_notAfter) X(ASN1_TIME_to_tm)              \
  X(X509_get_ext_d2i) X(GENERAL_NAMES_free) X(OPENSSL_sk_num)                  \
  X(OPENSSL_sk_value) X(ASN1_STRING_get0_data) X(ASN1_STRING_length)           \
  X(X509_get_subject_name) X(X509_get_issuer_name) X(X509_NAME_oneline)      \
  X(EVP_PKEY_Q_keygen) X(EVP_PKEY_free) X(X509_new) X(X509_free)              \
  X(X509_set_version) X(X509_get_serialNumber) X(ASN1_INTEGER_set)             \
  X(X509_gmtime_adj) X(X509_getm_notBefore) X(X509_getm_notAfter)              \
  X(X509_set_pubkey) X(X509_NAME_add_entry_by_txt) X(X509_set_issuer_name)     \
  X(X509_sign) X(RAND_bytes) X(BIO_ctrl) X(BIO_new_mem_buf)                    \
  X(PEM_write_bio_X509) X(PEM_write_bio_PrivateKey) X(PEM_read_bio_X509)       \
  X(PEM_read_bio_PrivateKey) X(SSL_use_certificate) X(SSL_use_PrivateKey)      \
  X(SSL_check_private_key)

#define BF_TLS_MEMBER(name) __typeof__(name) *name;
typedef struct openssl_api {
  BF_TLS_FUNCTIONS(BF_TLS_MEMBER)
} openssl_api;
#undef BF_TLS_MEMBER
/* malloc'd when loaded: the daemon's writable data grows by a pointer,
 * not by a table, until TLS is used. */
static openssl_api *ossl;

/* The names, NUL-separated, in the table's order: one string rather than
 * an array of pointers, which the loader would have to relocate (a dirty
 * page in every daemon, TLS or not). */
#define BF_TLS_NAME(name) #name "\0"
static const char symbol_names[] = BF_TLS_FUNCTIONS(BF_TLS_NAME);
#undef BF_TLS_NAME
#define BF_TLS_COUNT(name) +1
_Static_assert(sizeof(openssl_api) ==
                   (0 BF_TLS_FUNCTIONS(BF_TLS_COUNT)) * sizeof(void (*)(void)),
               "the table is one function pointer per name, in order");
#undef BF_TLS_COUNT

/* From here on the plain names (and OpenSSL's macros built on them, e.g.
 * SSL_CTX_set_min_proto_version on SSL_CTX_ctrl) call through the table. */
#define TLS_client_method ossl->TLS_client_method
#define SSL_CTX_new ossl->SSL_CTX_new
#define SSL_CTX_free ossl->SSL_CTX_free
#define SSL_CTX_ctrl ossl->SSL_CTX_ctrl
#define SSL_CTX_set_options ossl->SSL_CTX_set_options
#define SSL_CTX_set_default_verify_paths ossl->SSL_CTX_set_default_verify_paths
#define SSL_CTX_set_cert_verify_callback ossl->SSL_CTX_set_cert_verify_callback
#define SSL_new ossl->SSL_new
#define SSL_free ossl->SSL_free
#define SSL_set_bio ossl->SSL_set_bio
#define SSL_set_connect_state ossl->SSL_set_connect_state
#define SSL_do_handshake ossl->SSL_do_handshake
#define SSL_read ossl->SSL_read
#define SSL_write ossl->SSL_write
#define SSL_shutdown ossl->SSL_shutdown
#define SSL_get_error ossl->SSL_get_error
#define SSL_ctrl ossl->SSL_ctrl
#define SSL_set1_host ossl->SSL_set1_host
#define SSL_set_hostflags ossl->SSL_set_hostflags
#define SSL_set_verify ossl->SSL_set_verify
#define SSL_set_ex_data ossl->SSL_set_ex_data
#define SSL_get_ex_data ossl->SSL_get_ex_data
#define SSL_get_ex_data_X509_STORE_CTX_idx \
  ossl->SSL_get_ex_data_X509_STORE_CTX_idx
#define SSL_get0_peer_certificate ossl->SSL_get0_peer_certificate
#define SSL_get_verify_result ossl->SSL_get_verify_result
#define SSL_get_version ossl->SSL_get_version
#define SSL_get_current_cipher ossl->SSL_get_current_cipher
#define SSL_CIPHER_get_name ossl->SSL_CIPHER_get_name
#define BIO_new ossl->BIO_new
#define BIO_s_mem ossl->BIO_s_mem
#define BIO_free ossl->BIO_free
#define BIO_read ossl->BIO_read
#define BIO_write ossl->BIO_write
#define BIO_ctrl_pending ossl->BIO_ctrl_pending
#define ERR_get_error ossl->ERR_get_error
#define ERR_clear_error ossl->ERR_clear_error
#define ERR_reason_error_string ossl->ERR_reason_error_string
#define X509_STORE_CTX_get_ex_data ossl->X509_STORE_CTX_get_ex_data
#define X509_STORE_CTX_get0_cert ossl->X509_STORE_CTX_get0_cert
#define X509_STORE_CTX_set_error ossl->X509_STORE_CTX_set_error
#define X509_STORE_CTX_get_error ossl->X509_STORE_CTX_get_error
#define X509_verify_cert ossl->X509_verify_cert
#define X509_verify_cert_error_string ossl->X509_verify_cert_error_string
#define X509_digest ossl->X509_digest
#define EVP_sha256 ossl->EVP_sha256
#define X509_get0_notBefore ossl->X509_get0_notBefore
#define X509_get0_notAfter ossl->X509_get0_notAfter
#define ASN1_TIME_to_tm ossl->ASN1_TIME_to_tm
#define X509_get_ext_d2i ossl->X509_get_ext_d2i
#define GENERAL_NAMES_free ossl->GENERAL_NAMES_free
#define OPENSSL_sk_num ossl->OPENSSL_sk_num
#define OPENSSL_sk_value ossl->OPENSSL_sk_value
#define ASN1_STRING_get0_data ossl->ASN1_STRING_get0_data
#define ASN1_STRING_length ossl->ASN1_STRING_length
#define X509_get_subject_name ossl->X509_get_subject_name
#define X509_get_issuer_name ossl->X509_get_issuer_name
#define X509_NAME_oneline ossl->X509_NAME_oneline
#define EVP_PKEY_Q_keygen ossl->EVP_PKEY_Q_keygen
#define EVP_PKEY_free ossl->EVP_PKEY_free
#define X509_new ossl->X509_new
#define X509_free ossl->X509_free
#define X509_set_version ossl->X509_set_version
#define X509_get_serialNumber ossl->X509_get_serialNumber
#define ASN1_INTEGER_set ossl->ASN1_INTEGER_set
#define X509_gmtime_adj ossl->X509_gmtime_adj
#define X509_getm_notBefore ossl->X509_getm_notBefore
#define X509_getm_notAfter ossl->X509_getm_notAfter
#define X509_set_pubkey ossl->X509_set_pubkey
#define X509_NAME_add_entry_by_txt ossl->X509_NAME_add_entry_by_txt
#define X509_set_issuer_name ossl->X509_set_issuer_name
#define X509_sign ossl->X509_sign
#define RAND_bytes ossl->RAND_bytes
#define BIO_ctrl ossl->BIO_ctrl
#define BIO_new_mem_buf ossl->BIO_new_mem_buf
#define PEM_write_bio_X509 ossl->PEM_write_bio_X509
#define PEM_write_bio_PrivateKey ossl->PEM_write_bio_PrivateKey
#define PEM_read_bio_X509 ossl->PEM_read_bio_X509
#define PEM_read_bio_PrivateKey ossl->PEM_read_bio_PrivateKey
#define SSL_use_certificate ossl->SSL_use_certificate
#define SSL_use_PrivateKey ossl->SSL_use_PrivateKey
#define SSL_check_private_key ossl->SSL_check_private_key

static int load_rc;        /* 0, or BF_EIO once loading failed */
static char *load_error;   /* malloc'd: why it failed */

/* Loads libssl and fills ossl (once; later calls return the first
 * outcome). BF_EIO with the cause in err on failure. */
static int load(char *err, size_t err_size) {
  char why[256];
  void *dl = NULL;
  openssl_api *api = NULL;
  if (ossl || load_rc)
    goto out;
  load_rc = BF_EIO;
  dl = dlopen(BF_IRC_TLS_LIBSSL, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *cause = dlerror();
    snprintf(why, sizeof why, "cannot load %s (Debian package libssl3): %s",
             BF_IRC_TLS_LIBSSL, cause ? cause : "unknown error");
    goto fail;
  }
  api = malloc(sizeof *api);
  if (!api) {
    snprintf(why, sizeof why, "TLS: out of memory");
    goto fail;
  }
  size_t i = 0;
  for (const char *name = symbol_names; *name;
       name += strlen(name) + 1, i++) {
    void *fn = dlsym(dl, name);
    if (!fn) {
      snprintf(why, sizeof why, "%s lacks %s: too old?", BF_IRC_TLS_LIBSSL,
               name);
      goto fail;
    }
    /* POSIX guarantees a function pointer round-trips through void *. */
    memcpy((char *)api + i * sizeof fn, &fn, sizeof fn);
  }
  ossl = api; /* libssl stays loaded for the life of the process */
  load_rc = 0;
  goto out;
fail:
  free(api);
  if (dl)
    dlclose(dl);
  load_error = strdup(why);
out:
  if (load_rc && err && err_size)
    snprintf(err, err_size, "%s",
             load_error ? load_error : "TLS: out of memory");
  return load_rc;
}

/* ---- the shared context ------------------------------------------------- */

static SSL_CTX *context;
static bool context_has_cas; /* the CA store is loaded into context */

static int verify_certificate(X509_STORE_CTX *store, void *arg);

/* The shared SSL_CTX, made on first use. NULL on ENOMEM. */
static SSL_CTX *shared_context(void) {
  if (context)
    return context;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx)
    return NULL;
  /* RFC 8996: TLS 1.0 and 1.1 are deprecated. No renegotiation (IRC
   * servers have no use for it, and so SSL_write never waits for a read).
   * RELEASE_BUFFERS: an idle connection gives back its 16 KiB record
   * buffers. ACCEPT_MOVING_WRITE_BUFFER: a write retried after
   * WANT_READ comes from the held copy, not the caller's buffer. */
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* Pins and CA checks both happen in verify_certificate, per
   * connection. */
  SSL_CTX_set_cert_verify_callback(ctx, verify_certificate, NULL);
  context = ctx;
  context_has_cas = false;
  return context;
}

void bf_irc_tls_shutdown(void) {
  if (context)
    SSL_CTX_free(context); /* open connections hold their own reference */
  context = NULL;
  context_has_cas = false;
}

/* ---- one connection ------------------------------------------------------ */

struct bf_irc_tls {
  SSL *ssl;
  BIO *in;                     /* ciphertext from the server (ssl owns it) */
  BIO *out;                    /* ciphertext to the server (ssl owns it) */
  bf_irc_tls_callbacks cb;
  char *host;
  bool verify, has_pin;
  bool started, ready, closed;
  bool has_fingerprint;
  unsigned char pin[32], fingerprint[32];
  char *pending;               /* plaintext held until ready */
  size_t pending_len;
  int failed;                  /* 0, or the code that killed the connection */
  char error[512];             /* why, for a person */
};

/* RFC 6066 §3: SNI carries no IP literal; RFC 6125 checks an IP against
 * the certificate's iPAddress names instead. */
static bool is_ip(const char *host) {
  unsigned char addr[16];
  return inet_pton(AF_INET, host, addr) == 1 ||
         inet_pton(AF_INET6, host, addr) == 1;
}

static int hex_value(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* "AB:CD:…" or "abcd…" into out[32]; BF_EINVAL if it is not 32 bytes. */
static int parse_pin(const char *text, unsigned char out[32]) {
  size_t n = 0;
  for (const char *p = text; *p;) {
    if (n && *p == ':')
      p++;
    int high = hex_value((unsigned char)p[0]);
    int low = high < 0 ? -1 : hex_value((unsigned char)p[1]);
    if (low < 0 || n == 32)
      return BF_EINVAL;
    out[n++] = (unsigned char)(high << 4 | low);
    p += 2;
  }
  return n == 32 ? 0 : BF_EINVAL;
}

static void format_fingerprint(const unsigned char digest[32], char *out) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < 32; i++) {
    out[3 * i] = hex[digest[i] >> 4];
    out[3 * i + 1] = hex[digest[i] & 15];
    out[3 * i + 2] = i == 31 ? '\0' : ':';
  }
}

/* Marks the connection dead with rc and a message (the first failure
 * wins: later ones are consequences). Returns t->failed. */
static int fail(bf_irc_tls *t, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(bf_irc_tls *t, int rc, const char *fmt, ...) {
  if (!t->failed) {
    t->failed = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, ap);
    va_end(ap);
  }
  return t->failed;
}

/* Copies the message to err when rc is the connection's failure. */
static int report(const bf_irc_tls *t, int rc, char *err, size_t err_size) {
  if (rc && rc == t->failed && err && err_size)
    snprintf(err, err_size, "%s", t->error);
  return rc;
}

/* ---- certificates -------------------------------------------------------- */

/* A certificate date as "2024-01-31 12:00 UTC". */
static void format_time(const ASN1_TIME *time, char *out, size_t size) {
  struct tm tm;
  if (!time || ASN1_TIME_to_tm(time, &tm) != 1 ||
      !strftime(out, size, "%Y-%m-%d %H:%M UTC", &tm))
    snprintf(out, size, "?");
}

/* Appends len bytes of a name from the certificate, which the server
 * wrote: anything but printable ASCII becomes '?'. */
static void append_name(char *out, size_t size, const unsigned char *name,
                        size_t len) {
  size_t at = strlen(out);
  if (at && at + 2 < size) {
    memcpy(out + at, ", ", 3);
    at += 2;
  }
  for (size_t i = 0; i < len && at + 1 < size; i++)
    out[at++] = name[i] >= 0x20 && name[i] < 0x7f ? (char)name[i] : '?';
  out[at] = '\0';
}

/* The names a certificate is for (subjectAltName DNS and IP entries, at
 * most four; else its subject), for "the certificate is for …". */
static void certificate_names(X509 *cert, char *out, size_t size) {
  out[0] = '\0';
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL,
                                          NULL);
  /* sk_GENERAL_NAME_* are inline functions that would call the static
   * libcrypto: the generic stack functions from the table instead. */
  int n = names ? OPENSSL_sk_num((const OPENSSL_STACK *)names) : 0;
  int shown = 0;
  for (int i = 0; i < n && shown < 4; i++) {
    const GENERAL_NAME *name =
        OPENSSL_sk_value((const OPENSSL_STACK *)names, i);
    if (name->type == GEN_DNS) {
      append_name(out, size, ASN1_STRING_get0_data(name->d.dNSName),
                  (size_t)ASN1_STRING_length(name->d.dNSName));
      shown++;
    } else if (name->type == GEN_IPADD) {
      int len = ASN1_STRING_length(name->d.iPAddress);
      char ip[INET6_ADDRSTRLEN];
      if ((len == 4 || len == 16) &&
          inet_ntop(len == 4 ? AF_INET : AF_INET6,
                    ASN1_STRING_get0_data(name->d.iPAddress), ip, sizeof ip)) {
        append_name(out, size, (const unsigned char *)ip, strlen(ip));
        shown++;
      }
    }
  }
  if (n > shown && strlen(out) + 6 < size)
    strcat(out, ", …");
  if (names)
    GENERAL_NAMES_free(names);
  if (!out[0]) {
    char subject[256];
    if (X509_NAME_oneline(X509_get_subject_name(cert), subject,
                          sizeof subject))
      append_name(out, size, (const unsigned char *)subject, strlen(subject));
  }
}

/* Why the chain check refused the server's certificate, for the admin:
 * the cause and what to do. */
static void describe_refusal(bf_irc_tls *t, X509 *leaf, int error) {
  char fingerprint[BF_IRC_TLS_FINGERPRINT_SIZE] = "?";
  if (t->has_fingerprint)
    format_fingerprint(t->fingerprint, fingerprint);
  char when[64], names[256];
  switch (error) {
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    fail(t, BF_EPERM,
         "%s's certificate is self-signed (no trusted authority vouches for "
         "it): to trust this one, pin its SHA-256 fingerprint %s",
         t->host, fingerprint);
    break;
  case X509_V_ERR_CERT_HAS_EXPIRED:
    format_time(X509_get0_notAfter(leaf), when, sizeof when);
    fail(t, BF_EPERM,
         "%s's certificate expired on %s: the server's admin must renew it "
         "(or check this machine's clock)", t->host, when);
    break;
  case X509_V_ERR_CERT_NOT_YET_VALID:
    format_time(X509_get0_notBefore(leaf), when, sizeof when);
    fail(t, BF_EPERM,
         "%s's certificate is not valid before %s: check this machine's "
         "clock", t->host, when);
    break;
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    certificate_names(leaf, names, sizeof names);
    fail(t, BF_EPERM,
         "the certificate %s sent is for %s, not %s (wrong host name): "
         "connect to the server by one of its names", t->host, names,
         t->host);
    break;
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: {
    char issuer[256] = "?";
    X509_NAME_oneline(X509_get_issuer_name(leaf), issuer, sizeof issuer);
    names[0] = '\0';
    append_name(names, sizeof names, (const unsigned char *)issuer,
                strlen(issuer));
    fail(t, BF_EPERM,
         "%s's certificate is signed by %s, an authority this system does "
         "not trust (or the server does not send its intermediate "
         "certificate): add the authority to the CA store, or pin the "
         "SHA-256 fingerprint %s", t->host, names, fingerprint);
    break;
  }
  default:
    fail(t, BF_EPERM, "%s's certificate was refused: %s (SHA-256 %s)",
         t->host, X509_verify_cert_error_string(error), fingerprint);
  }
}

/* The certificate check of every connection (SSL_CTX_set_cert_verify_
 * callback: it replaces OpenSSL's, which it calls when verifying). Records
 * the server certificate's fingerprint, then checks the pin, or the chain
 * and host name, or nothing, as the connection was asked to. Returns 1
 * to accept; 0 (with the reason in the connection) to refuse: OpenSSL
 * then sends the server an alert and fails the handshake, before any
 * plaintext could be sent. */
static int verify_certificate(X509_STORE_CTX *store, void *arg) {
  SSL *ssl = X509_STORE_CTX_get_ex_data(store,
                                        SSL_get_ex_data_X509_STORE_CTX_idx());
  bf_irc_tls *t = ssl ? SSL_get_ex_data(ssl, 0) : NULL;
  X509 *leaf = X509_STORE_CTX_get0_cert(store);
  if (!t || !leaf) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  unsigned int len = 0;
  t->has_fingerprint = X509_digest(leaf, EVP_sha256(), t->fingerprint, &len) &&
                       len == sizeof t->fingerprint;
  if (t->has_pin) {
    if (t->has_fingerprint && !memcmp(t->pin, t->fingerprint, 32))
      return 1;
    char got[BF_IRC_TLS_FINGERPRINT_SIZE] = "?", want[sizeof got];
    if (t->has_fingerprint)
      format_fingerprint(t->fingerprint, got);
    format_fingerprint(t->pin, want);
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    fail(t, BF_EPERM,
         "%s's certificate does not match the pinned fingerprint: it is "
         "SHA-256 %s, the pin is %s. If the server changed its certificate, "
         "pin the new one", t->host, got, want);
    return 0;
  }
  if (!t->verify)
    return 1;
  if (X509_verify_cert(store) == 1)
    return 1;
  int error = X509_STORE_CTX_get_error(store);
  describe_refusal(t, leaf, error == X509_V_OK ? X509_V_ERR_UNSPECIFIED
                                               : error);
  return 0;
}

/* ---- moving bytes -------------------------------------------------------- */

/* Hands every ciphertext byte OpenSSL produced to on_cipher. 0 or the
 * callback's code. */
static int flush(bf_irc_tls *t) {
  char buf[16 * 1024];
  while (BIO_ctrl_pending(t->out) > 0) {
    int n = BIO_read(t->out, buf, (int)sizeof buf);
    if (n <= 0)
      break;
    int rc = t->cb.on_cipher(t->cb.data, buf, (size_t)n);
    if (rc)
      return rc;
  }
  return 0;
}

/* The reason of the first OpenSSL error queued, and the queue cleared;
 * reason is 0 when there is none. */
static const char *openssl_error(int *reason) {
  unsigned long e = ERR_get_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  *reason = e && ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
  ERR_clear_error();
  return why ? why : "unknown error";
}

/* A failed handshake or record: why, in words an admin can act on. The
 * certificate check has already said why when it refused. */
static int fail_protocol(bf_irc_tls *t, const char *doing) {
  int reason;
  const char *why = openssl_error(&reason);
  if (t->failed)
    return t->failed;
  switch (reason) {
  case SSL_R_WRONG_VERSION_NUMBER:
  case SSL_R_HTTP_REQUEST:
  case SSL_R_HTTPS_PROXY_REQUEST:
  case SSL_R_PACKET_LENGTH_TOO_LONG:
  case SSL_R_UNEXPECTED_RECORD:
    if (!t->ready)
      return fail(t, BF_EPROTO,
                  "%s did not answer in TLS (%s): is this a plain-text "
                  "port? (no '+' before it in irc_ports)", t->host, why);
    break;
  case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
  case SSL_R_UNSUPPORTED_PROTOCOL:
    return fail(t, BF_EPROTO,
                "%s offers no TLS 1.2 or later (%s): its TLS must be "
                "upgraded, or use a plain-text port", t->host, why);
  }
  return fail(t, BF_EPROTO, "TLS %s with %s failed: %s", doing, t->host,
              why);
}

/* Frees held plaintext: it may carry a password (PASS, SASL), which is
 * not left in freed memory. */
static void forget(char *plain, size_t len) {
  if (plain)
    explicit_bzero(plain, len);
  free(plain);
}

/* Encrypts len bytes to on_cipher. What OpenSSL can't take now (a
 * WANT_READ) is held with the rest of the pending plaintext. */
static int send_plain(bf_irc_tls *t, const char *plain, size_t len);

/* Sends the plaintext held while the handshake ran. */
static int send_pending(bf_irc_tls *t) {
  char *pending = t->pending;
  size_t len = t->pending_len;
  t->pending = NULL;
  t->pending_len = 0;
  int rc = send_plain(t, pending, len);
  forget(pending, len);
  return rc;
}

static int hold(bf_irc_tls *t, const char *plain, size_t len) {
  if (len > BF_IRC_TLS_PENDING_MAX - t->pending_len)
    return BF_ENOBUFS;
  char *grown = malloc(t->pending_len + len);
  if (!grown)
    return BF_ENOMEM;
  if (t->pending_len)
    memcpy(grown, t->pending, t->pending_len);
  memcpy(grown + t->pending_len, plain, len);
  forget(t->pending, t->pending_len);
  t->pending = grown;
  t->pending_len += len;
  return 0;
}

static int send_plain(bf_irc_tls *t, const char *plain, size_t len) {
  size_t done = 0;
  while (done < len) {
    size_t chunk = len - done < INT_MAX ? len - done : INT_MAX;
    ERR_clear_error();
    int n = SSL_write(t->ssl, plain + done, (int)chunk);
    if (n <= 0) {
      int e = SSL_get_error(t->ssl, n);
      if (e == SSL_ERROR_WANT_READ) {
        int rc = hold(t, plain + done, len - done);
        if (rc)
          return fail(t, rc, "TLS: over %u bytes waiting to be sent to %s",
                      BF_IRC_TLS_PENDING_MAX, t->host);
        return flush(t);
      }
      fail_protocol(t, "write");
      int rc = flush(t);
      return rc ? rc : t->failed;
    }
    done += (size_t)n;
  }
  return flush(t);
}

/* The handshake has just completed. */
static int handshake_done(bf_irc_tls *t) {
  /* verify_certificate has checked the certificate; this makes sure it
   * ran (a resumed session or a cipher without certificate skip it)
   * before any plaintext goes out. */
  if (t->has_pin || t->verify) {
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    unsigned char digest[32];
    unsigned int len = 0;
    if (!peer || !X509_digest(peer, EVP_sha256(), digest, &len) ||
        len != sizeof digest ||
        (t->has_pin && memcmp(digest, t->pin, sizeof digest)) ||
        (!t->has_pin && SSL_get_verify_result(t->ssl) != X509_V_OK))
      return fail(t, BF_EPERM, "%s's certificate could not be checked",
                  t->host);
  }
  t->ready = true;
  return t->pending_len ? send_pending(t) : 0;
}

/* Runs the handshake as far as the bytes received allow. 0 (done or
 * waiting), a callback's code, or the failure. */
static int handshake(bf_irc_tls *t) {
  t->started = true;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r != 1 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ)
    fail_protocol(t, "handshake");
  /* The next flight, or the alert telling the server why not. */
  int rc = flush(t);
  if (rc)
    return rc;
  if (t->failed)
    return t->failed;
  return r == 1 ? handshake_done(t) : 0;
}

/* ---- the API ------------------------------------------------------------- */

int bf_irc_tls_new(bf_irc_tls **tls, const char *host, bool verify,
                   const char *pin, const bf_irc_tls_callbacks *cb,
                   char *err, size_t err_size) {
  int rc = 0;
  bf_irc_tls *t = NULL;
  unsigned char pin_bytes[32];
  bool has_pin = pin && *pin;
  if (!tls || !host || !*host || !cb || !cb->on_plain || !cb->on_cipher) {
    rc = BF_EINVAL;
    if (err && err_size)
      snprintf(err, err_size, "TLS: no host or callbacks");
    goto out;
  }
  if (has_pin && parse_pin(pin, pin_bytes)) {
    rc = BF_EINVAL;
    if (err && err_size)
      snprintf(err, err_size,
               "the pin for %s is not a SHA-256 fingerprint: it must be 64 "
               "hex digits, colons allowed (\"AB:CD:…\")", host);
    goto out;
  }
  rc = load(err, err_size);
  if (rc)
    goto out;
  rc = BF_ENOMEM;
  SSL_CTX *ctx = shared_context();
  if (!ctx)
    goto out;
  /* The system's CA store (a few hundred certificates, ~1 MiB) only once
   * a connection needs it. */
  if (verify && !has_pin && !context_has_cas) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      ERR_clear_error();
      rc = BF_EIO;
      if (err && err_size)
        snprintf(err, err_size, "cannot load the system's CA certificates "
                 "(Debian package ca-certificates)");
      goto out;
    }
    context_has_cas = true;
  }
  t = calloc(1, sizeof *t);
  if (!t || !(t->host = strdup(host)))
    goto out;
  t->cb = *cb;
  t->verify = verify;
  t->has_pin = has_pin;
  if (has_pin)
    memcpy(t->pin, pin_bytes, sizeof t->pin);
  t->ssl = SSL_new(ctx);
  if (!t->ssl)
    goto out;
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (!t->in || !t->out) {
    if (t->in)
      BIO_free(t->in);
    if (t->out)
      BIO_free(t->out);
    goto out;
  }
  SSL_set_bio(t->ssl, t->in, t->out); /* takes both */
  SSL_set_connect_state(t->ssl);
  if (!SSL_set_ex_data(t->ssl, 0, t))
    goto out;
  if (!is_ip(host) && !SSL_set_tlsext_host_name(t->ssl, host))
    goto out;
  if (verify && !has_pin) {
    /* RFC 6125 §6.4.3: a wildcard is the whole left-most label only. */
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (!SSL_set1_host(t->ssl, host))
      goto out;
  }
  /* With a pin or verify, a refused certificate fails the handshake;
   * without, verify_certificate still runs (for the fingerprint) and
   * accepts. */
  SSL_set_verify(t->ssl, verify || has_pin ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                 NULL);
  *tls = t;
  t = NULL;
  rc = 0;
out:
  if (rc == BF_ENOMEM) {
    if (ossl)
      ERR_clear_error();
    if (err && err_size)
      snprintf(err, err_size, "TLS: out of memory");
  }
  bf_irc_tls_free(t);
  return rc;
}

void bf_irc_tls_free(bf_irc_tls *t) {
  if (!t)
    return;
  if (t->ssl)
    SSL_free(t->ssl); /* and the BIOs */
  forget(t->pending, t->pending_len);
  free(t->host);
  free(t);
}

int bf_irc_tls_start(bf_irc_tls *t, char *err, size_t err_size) {
  int rc = t->failed;
  if (!rc && !t->started)
    rc = handshake(t);
  return report(t, rc, err, err_size);
}

int bf_irc_tls_read(bf_irc_tls *t, const char *cipher, size_t len, char *err,
                    size_t err_size) {
  int rc = t->failed;
  if (rc)
    goto out;
  /* A memory BIO takes everything (it grows); the loop below drains it,
   * so it holds at most one partial record between calls. */
  for (size_t done = 0; done < len;) {
    size_t chunk = len - done < INT_MAX ? len - done : INT_MAX;
    int n = BIO_write(t->in, cipher + done, (int)chunk);
    if (n <= 0) {
      rc = fail(t, BF_ENOMEM, "TLS: out of memory");
      goto out;
    }
    done += (size_t)n;
  }
  if (!t->ready) {
    rc = handshake(t);
    if (rc || !t->ready)
      goto out;
  }
  for (;;) {
    char plain[16 * 1024]; /* one record's worth (RFC 8446 §5.1) */
    ERR_clear_error();
    int n = SSL_read(t->ssl, plain, (int)sizeof plain);
    if (n > 0) {
      rc = t->cb.on_plain(t->cb.data, plain, (size_t)n);
      if (!rc)
        rc = t->failed; /* a write from on_plain failed */
      if (rc)
        goto out;
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
      break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      ERR_clear_error();
      rc = fail(t, BF_ENOTCONN, "%s closed the TLS connection", t->host);
    } else {
      rc = fail_protocol(t, "read");
    }
    int flushed = flush(t); /* an alert, if OpenSSL sent one */
    if (flushed)
      rc = flushed;
    goto out;
  }
  /* Whatever reading produced (a KeyUpdate answer, RFC 8446 §4.6.3), and
   * a write that had to wait for it. */
  rc = flush(t);
  if (!rc && t->pending_len)
    rc = send_pending(t);
out:
  return report(t, rc, err, err_size);
}

int bf_irc_tls_write(bf_irc_tls *t, const char *plain, size_t len, char *err,
                     size_t err_size) {
  int rc = t->failed;
  if (rc)
    goto out;
  if (t->closed) {
    rc = BF_ENOTCONN;
    if (err && err_size)
      snprintf(err, err_size, "TLS: the connection is closing");
    goto out;
  }
  if (!len)
    goto out;
  if (!t->ready || t->pending_len) {
    rc = hold(t, plain, len);
    if (rc == BF_ENOBUFS && err && err_size)
      snprintf(err, err_size,
               "TLS: over %u bytes waiting for the handshake with %s",
               BF_IRC_TLS_PENDING_MAX, t->host);
    goto out;
  }
  rc = send_plain(t, plain, len);
out:
  return report(t, rc, err, err_size);
}

int bf_irc_tls_close_notify(bf_irc_tls *t) {
  if (t->failed || !t->ready || t->closed)
    return BF_ENOTCONN;
  t->closed = true;
  ERR_clear_error();
  (void)SSL_shutdown(t->ssl); /* 0: sent, the server's not received yet */
  ERR_clear_error();
  return flush(t);
}

bool bf_irc_tls_ready(const bf_irc_tls *t) {
  return t && t->ready && !t->failed;
}

int bf_irc_tls_fingerprint(const bf_irc_tls *t, char *out, size_t size) {
  if (!t->has_fingerprint)
    return BF_ENOENT;
  if (size < BF_IRC_TLS_FINGERPRINT_SIZE)
    return BF_E2BIG;
  format_fingerprint(t->fingerprint, out);
  return 0;
}

const char *bf_irc_tls_describe(const bf_irc_tls *t, char *out, size_t size) {
  if (!size)
    return out;
  out[0] = '\0';
  if (t->ready) {
    const SSL_CIPHER *cipher = SSL_get_current_cipher(t->ssl);
    snprintf(out, size, "%s %s", SSL_get_version(t->ssl),
             cipher ? SSL_CIPHER_get_name(cipher) : "?");
  }
  return out;
}

/* ---- the client's own certificate ---------------------------------------- */

/* A PEM private key is never encrypted here: a callback that refuses a
 * passphrase keeps OpenSSL from prompting on the terminal for one. */
static int no_passphrase(char *buf, int size, int rwflag, void *data) {
  (void)buf, (void)size, (void)rwflag, (void)data;
  return -1;
}

/* What a memory BIO holds, as a malloc'd C string (taken), or NULL. */
static char *bio_text(BIO *bio) {
  char *data = NULL;
  long len = BIO_get_mem_data(bio, &data);
  char *text = len > 0 ? malloc((size_t)len + 1) : NULL;
  if (text) {
    memcpy(text, data, (size_t)len);
    text[len] = '\0';
  }
  return text;
}

int bf_irc_tls_identity_new(char **cert_pem, char **key_pem, char *err,
                            size_t err_size) {
  EVP_PKEY *key = NULL;
  X509 *x = NULL;
  BIO *cert_bio = NULL, *key_bio = NULL;
  unsigned char serial[8];
  *cert_pem = *key_pem = NULL;
  int rc = load(err, err_size);
  if (rc)
    return rc;
  rc = BF_EIO;
  key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  x = X509_new();
  cert_bio = BIO_new(BIO_s_mem());
  key_bio = BIO_new(BIO_s_mem());
  if (!key || !x || !cert_bio || !key_bio ||
      RAND_bytes(serial, sizeof serial) != 1)
    goto out;
  /* A positive random serial (RFC 5280 §4.1.2.2), as long as a long. */
  uint64_t bits = 0;
  for (size_t i = 0; i < sizeof serial; i++)
    bits = bits << 8 | serial[i];
  long number = (long)(bits & (uint64_t)LONG_MAX >> 1);
  X509_NAME *name = X509_get_subject_name(x);
  if (!X509_set_version(x, X509_VERSION_3) ||
      !ASN1_INTEGER_set(X509_get_serialNumber(x), number ? number : 1) ||
      !X509_gmtime_adj(X509_getm_notBefore(x), -86400L) ||
      !X509_gmtime_adj(X509_getm_notAfter(x),
                       86400L * BF_IRC_TLS_IDENTITY_DAYS) ||
      !X509_set_pubkey(x, key) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  (const unsigned char *)"babelfish IRC client",
                                  -1, -1, 0) ||
      !X509_set_issuer_name(x, name) || !X509_sign(x, key, EVP_sha256()) ||
      !PEM_write_bio_X509(cert_bio, x) ||
      !PEM_write_bio_PrivateKey(key_bio, key, NULL, NULL, 0, NULL, NULL) ||
      !(*cert_pem = bio_text(cert_bio)) || !(*key_pem = bio_text(key_bio)))
    goto out;
  rc = 0;
out:
  if (rc) {
    int reason;
    const char *why = openssl_error(&reason);
    if (err && err_size)
      snprintf(err, err_size, "cannot make a client certificate: %s", why);
    free(*cert_pem);
    if (*key_pem)
      forget(*key_pem, strlen(*key_pem));
    *cert_pem = *key_pem = NULL;
  }
  if (key_bio)
    BIO_free(key_bio); /* OpenSSL wipes a memory BIO's buffer when freed */
  if (cert_bio)
    BIO_free(cert_bio);
  if (x)
    X509_free(x);
  if (key)
    EVP_PKEY_free(key);
  return rc;
}

/* The certificate in cert_pem (borrowed), or NULL. */
static X509 *read_certificate(const char *cert_pem) {
  BIO *bio = BIO_new_mem_buf(cert_pem, -1);
  X509 *x = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
  if (bio)
    BIO_free(bio);
  ERR_clear_error();
  return x;
}

int bf_irc_tls_identity_certfp(const char *cert_pem, char *out, size_t size,
                               char *err, size_t err_size) {
  static const char hex[] = "0123456789abcdef";
  unsigned char digest[32];
  unsigned int len = 0;
  if (size < BF_IRC_TLS_CERTFP_SIZE)
    return BF_E2BIG;
  int rc = load(err, err_size);
  if (rc)
    return rc;
  X509 *x = read_certificate(cert_pem);
  if (!x || !X509_digest(x, EVP_sha256(), digest, &len) ||
      len != sizeof digest) {
    if (err && err_size)
      snprintf(err, err_size, "the stored client certificate is damaged");
    rc = BF_EINVAL;
  } else {
    for (size_t i = 0; i < sizeof digest; i++) {
      out[2 * i] = hex[digest[i] >> 4];
      out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[2 * sizeof digest] = '\0';
  }
  if (x)
    X509_free(x);
  ERR_clear_error();
  return rc;
}

int bf_irc_tls_set_identity(bf_irc_tls *t, const char *cert_pem,
                            const char *key_pem, char *err, size_t err_size) {
  int rc = 0;
  X509 *x = NULL;
  EVP_PKEY *key = NULL;
  BIO *bio = NULL;
  if (t->started) {
    rc = BF_EINVAL;
    if (err && err_size)
      snprintf(err, err_size, "TLS: the handshake has started");
    goto out;
  }
  x = read_certificate(cert_pem);
  bio = BIO_new_mem_buf(key_pem, -1);
  key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
  /* SSL_use_* take references of their own. */
  if (!x || !key || SSL_use_certificate(t->ssl, x) != 1 ||
      SSL_use_PrivateKey(t->ssl, key) != 1 ||
      SSL_check_private_key(t->ssl) != 1) {
    rc = BF_EINVAL;
    if (err && err_size)
      snprintf(err, err_size, "the stored client certificate or its key is "
               "damaged");
  }
out:
  ERR_clear_error();
  if (bio)
    BIO_free(bio);
  if (key)
    EVP_PKEY_free(key);
  if (x)
    X509_free(x);
  return rc;
}
