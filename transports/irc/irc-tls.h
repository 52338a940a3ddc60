/* IRC transport: TLS for a connection to an IRC server (the '+' ports of
 * irc_ports), client side only.
 *
 * No socket here: the connection keeps doing its I/O with libuv and
 * passes bytes through. Ciphertext read from the socket goes in with
 * bf_irc_tls_read and comes out as plaintext through on_plain; plaintext
 * to send goes in with bf_irc_tls_write and comes out as ciphertext
 * through on_cipher, as do the handshake's records and alerts.
 *
 *   tcp read  -> bf_irc_tls_read  -> on_plain  -> bf_irc_reader_feed
 *   write_line -> bf_irc_tls_write -> on_cipher -> uv_write
 *
 * OpenSSL's libssl is loaded (dlopen) when the first TLS connection is
 * made, not at start-up: loaded, it and its libcrypto.so cost ~1.7 MiB of
 * resident memory, which an idle daemon (budget 4 MiB) that may never
 * use TLS can't carry. One SSL_CTX is shared by every connection; it is
 * made on first use too, and freed by bf_irc_tls_shutdown.
 *
 * TLS 1.2 is the minimum (RFC 8996 deprecates 1.0 and 1.1; RFC 7194
 * §2 for IRC over TLS). Everything runs on the loop's thread. */
#ifndef BF_IRC_TLS_H
#define BF_IRC_TLS_H

#include <stdbool.h>
#include <stddef.h>

/* The SONAME loaded: Debian's libssl3, the one pkg-config's libssl names
 * at build time. */
#define BF_IRC_TLS_LIBSSL "libssl.so.3"
/* "AB:CD:…": 32 bytes as hex pairs with colons, and the NUL. */
#define BF_IRC_TLS_FINGERPRINT_SIZE 96
/* Plaintext written before the handshake is done is held until it is
 * (IRC registration is sent at once on connect); more is refused. */
#define BF_IRC_TLS_PENDING_MAX (64u * 1024u)

typedef struct bf_irc_tls bf_irc_tls;

/* The callbacks of one TLS connection, copied by bf_irc_tls_new. Each
 * gets data, and buf borrowed for the call (copy what must outlive it).
 * A callback returns 0, or a non-zero code (a negative BF_E… code, say)
 * that stops the call in progress (read, write, start, close_notify) at
 * once: that call returns the code; the rest of what was received stays
 * unread (the caller is closing the connection). on_plain may call
 * bf_irc_tls_write (a PONG); neither callback may call bf_irc_tls_read
 * or bf_irc_tls_free, and on_cipher may call nothing of this file (it
 * runs while ciphertext is being drained). */
typedef struct bf_irc_tls_callbacks {
  /* Decrypted bytes from the server, in order. */
  int (*on_plain)(void *data, const char *buf, size_t len);
  /* Encrypted bytes to send to the server, in order, as they are. */
  int (*on_cipher)(void *data, const char *buf, size_t len);
  void *data;                  /* borrowed: passed to the callbacks */
} bf_irc_tls_callbacks;

/* A new client connection in *tls (freed with bf_irc_tls_free).
 * host (borrowed, copied): the server's name, sent as SNI (RFC 6066 §3,
 * not for an IP address) and, with verify, the name its certificate must
 * carry (RFC 6125).
 * verify: check the certificate chain against the system's CA store
 * (OpenSSL's default paths; SSL_CERT_FILE / SSL_CERT_DIR override them)
 * and the host name. When false and no pin, any certificate is taken.
 * pin (borrowed; NULL or "" = none): the SHA-256 fingerprint of the
 * server's certificate, as 64 hex digits, colons between the pairs
 * allowed, any case. When set it is checked instead of the CA chain and
 * the host name (verify is ignored): the certificate is that one exactly.
 * cb (borrowed, copied): on_plain and on_cipher must be set.
 * Loads libssl and makes the shared SSL_CTX on the first call. Returns
 * 0, or BF_EINVAL (bad pin, host or cb), BF_EIO (libssl can't be loaded:
 * err says why), BF_ENOMEM; err (size err_size, may be NULL) gets a
 * message for a person on failure. */
int bf_irc_tls_new(bf_irc_tls **tls, const char *host, bool verify,
                   const char *pin, const bf_irc_tls_callbacks *cb,
                   char *err, size_t err_size);

/* Frees tls (NULL is fine). Nothing is sent: see bf_irc_tls_close_notify. */
void bf_irc_tls_free(bf_irc_tls *tls);

/* Starts the handshake: the ClientHello goes to on_cipher. Call it once,
 * when the TCP connection is up. Returns 0, a callback's code, or
 * BF_EPROTO / BF_ENOMEM (err says why). */
int bf_irc_tls_start(bf_irc_tls *tls, char *err, size_t err_size);

/* Ciphertext from the socket (cipher, len bytes; borrowed). Whatever it
 * completes comes out: the handshake's next records (on_cipher), then
 * plaintext (on_plain); when it completes the handshake, the plaintext
 * held by bf_irc_tls_write is encrypted and sent first. Returns 0 (more
 * may be needed: not an error), a callback's code, or:
 *   BF_EPERM     the server's certificate was refused: expired,
 *                self-signed, for another host, pin mismatch, … (err
 *                names the cause and the fix). The alert telling the
 *                server why has gone to on_cipher.
 *   BF_EPROTO    not TLS (a plain-text port?), a TLS error, or an alert
 *                from the server (e.g. no TLS 1.2 or later).
 *   BF_ENOTCONN  the server closed TLS (close_notify, RFC 8446 §6.1);
 *                what it sent before has been delivered.
 *   BF_ENOMEM
 * After any of these the connection is dead: every later read, write or
 * start returns the same code (and message); close the socket. */
int bf_irc_tls_read(bf_irc_tls *tls, const char *cipher, size_t len,
                    char *err, size_t err_size);

/* Plaintext to send (plain, len bytes; borrowed, copied or encrypted
 * before returning). Before the handshake is done it is held (at most
 * BF_IRC_TLS_PENDING_MAX bytes, else BF_ENOBUFS) and sent once the
 * server's certificate has been accepted, never before: a refused server
 * gets none of it. After: encrypted to on_cipher at once. Returns 0, a
 * callback's code, BF_ENOBUFS, BF_ENOMEM, or the code that killed the
 * connection (see bf_irc_tls_read). */
int bf_irc_tls_write(bf_irc_tls *tls, const char *plain, size_t len,
                     char *err, size_t err_size);

/* Sends close_notify (RFC 8446 §6.1) to on_cipher before the caller
 * shuts the socket down: the server then knows nothing was cut off.
 * Later writes fail (BF_ENOTCONN). 0, a callback's code, or BF_ENOTCONN
 * (the handshake was not done, or the connection is dead: nothing to
 * send). */
int bf_irc_tls_close_notify(bf_irc_tls *tls);

/* The handshake is done and the server's certificate accepted. */
bool bf_irc_tls_ready(const bf_irc_tls *tls);

/* The server certificate's SHA-256 fingerprint as "AB:CD:…" (for the log,
 * and for a pin) into out (size bytes, at least
 * BF_IRC_TLS_FINGERPRINT_SIZE). Known once the server's certificate has
 * arrived, so after a BF_EPERM too. 0, BF_ENOENT (no certificate yet) or
 * BF_E2BIG (out too small). */
int bf_irc_tls_fingerprint(const bf_irc_tls *tls, char *out, size_t size);

/* The protocol and cipher agreed, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384",
 * for the log: written to out (size bytes, truncated to fit), which is
 * returned; "" before the handshake. */
const char *bf_irc_tls_describe(const bf_irc_tls *tls, char *out,
                                size_t size);

/* ---- the client's own certificate (SASL EXTERNAL, RFC 4422 App. A) ----
 * A user's identity on one IRC server: an EC P-256 key and a self-signed
 * certificate for it, made once and stored by the caller as PEM text.
 * Services recognise it by its fingerprint (Atheme: NickServ CERT ADD),
 * not by its issuer or dates. */

/* The certificate's life: services only look at the fingerprint, and a
 * new certificate would have to be registered again. */
#define BF_IRC_TLS_IDENTITY_DAYS 3650
/* A fingerprint as IRC servers and services write it (InspIRCd's
 * sslinfo, Atheme's CERT ADD): 64 lowercase hex digits, and the NUL. */
#define BF_IRC_TLS_CERTFP_SIZE 65

/* Makes a key pair and a self-signed certificate: *cert_pem and *key_pem
 * (malloc'd, taken; wipe the key before freeing it) get them as PEM.
 * Loads libssl. 0, BF_EIO (libssl missing, or OpenSSL failed: err says
 * why). */
int bf_irc_tls_identity_new(char **cert_pem, char **key_pem, char *err,
                            size_t err_size);

/* The SHA-256 fingerprint of cert_pem (borrowed) as 64 lowercase hex
 * digits into out (size: at least BF_IRC_TLS_CERTFP_SIZE). 0, BF_E2BIG,
 * BF_EINVAL (not a PEM certificate), BF_EIO (no libssl; err says why). */
int bf_irc_tls_identity_certfp(const char *cert_pem, char *out, size_t size,
                               char *err, size_t err_size);

/* Presents cert_pem with its key key_pem (both borrowed: parsed here) to
 * the server when it asks for a client certificate. Call it after
 * bf_irc_tls_new, before bf_irc_tls_start. 0, or BF_EINVAL (damaged PEM,
 * a key that is not the certificate's, or the handshake started). */
int bf_irc_tls_set_identity(bf_irc_tls *tls, const char *cert_pem,
                            const char *key_pem, char *err, size_t err_size);

/* Frees the shared SSL_CTX (the module's close calls it). Connections
 * still open keep working (each holds a reference); the next
 * bf_irc_tls_new makes a new one, reading the CA store again. libssl
 * stays loaded: OpenSSL can't be unloaded safely. */
void bf_irc_tls_shutdown(void);

#endif
