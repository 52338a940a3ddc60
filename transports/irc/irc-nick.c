/* IRC users as channel occupants, interned: one record per (server, nick)
 * for the whole module, reference-counted, shared by every user's
 * connection and every channel that lists the nick. 200 users in the same
 * five 200-member channels hold 200,000 occupants and only 1,000 strings;
 * an occupant is a pointer and its channel modes (bf_irc_occupant). What
 * IRC says about the user itself (IRCv3 account, away message) lives here
 * too, so every connection that sees the nick agrees on it. */
#include "irc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The low-level SHA-256 functions, as the core's handshake uses SHA-1
 * (src/component.c): EVP_Digest would link OpenSSL 3's provider machinery
 * into the executable (3.4 MB, +1.2 MiB idle RSS). Deprecated in 3.0, but
 * present and maintained. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/sha.h>

/* The first table size; it doubles whenever it holds more records than
 * buckets. */
#define NICKS_BUCKETS_MIN 64u

/* FNV-1a over the nick and the server, ASCII case folded: nicks and host
 * names are case-insensitive (the rfc1459 casemapping's {}|^ vs []\~ is
 * left alone, as everywhere else in the transport). */
static unsigned hash_of(const char *server, const char *nick) {
  unsigned h = 2166136261u;
  for (const char *p = nick; *p; p++)
    h = (h ^ (unsigned char)tolower((unsigned char)*p)) * 16777619u;
  h = (h ^ 0xffu) * 16777619u;
  for (const char *p = server; *p; p++)
    h = (h ^ (unsigned char)tolower((unsigned char)*p)) * 16777619u;
  return h;
}

bf_irc_nick *bf_irc_nick_find(bf_irc_nicks *t, const char *server,
                              const char *nick) {
  if (!t->n_buckets)
    return NULL;
  unsigned h = hash_of(server, nick);
  for (bf_irc_nick *n = t->buckets[h & (t->n_buckets - 1)]; n; n = n->next) {
    if (n->hash == h && !strcasecmp(n->name, nick) &&
        !strcasecmp(n->server, server))
      return n;
  }
  return NULL;
}

static int grow(bf_irc_nicks *t) {
  size_t size = t->n_buckets ? t->n_buckets * 2 : NICKS_BUCKETS_MIN;
  bf_irc_nick **buckets = calloc(size, sizeof *buckets);
  if (!buckets)
    return BF_ENOMEM;
  for (size_t i = 0; i < t->n_buckets; i++) {
    for (bf_irc_nick *n = t->buckets[i], *next; n; n = next) {
      next = n->next;
      n->next = buckets[n->hash & (size - 1)];
      buckets[n->hash & (size - 1)] = n;
    }
  }
  free(t->buckets);
  t->buckets = buckets;
  t->n_buckets = size;
  return 0;
}

bf_irc_nick *bf_irc_nick_get(bf_irc_nicks *t, const char *server,
                             const char *nick) {
  bf_irc_nick *n = bf_irc_nick_find(t, server, nick);
  if (n) {
    n->refs++;
    return n;
  }
  if (t->count >= t->n_buckets && grow(t) != 0)
    return NULL;
  size_t nick_len = strlen(nick), server_len = strlen(server);
  n = calloc(1, sizeof *n + nick_len + server_len + 2);
  if (!n)
    return NULL;
  memcpy(n->name, nick, nick_len + 1);
  n->server = n->name + nick_len + 1;
  memcpy(n->server, server, server_len + 1);
  n->table = t;
  n->refs = 1;
  n->hash = hash_of(server, nick);
  n->next = t->buckets[n->hash & (t->n_buckets - 1)];
  t->buckets[n->hash & (t->n_buckets - 1)] = n;
  t->count++;
  return n;
}

void bf_irc_nick_unref(bf_irc_nick *n) {
  if (!n || --n->refs)
    return;
  bf_irc_nicks *t = n->table;
  for (bf_irc_nick **p = &t->buckets[n->hash & (t->n_buckets - 1)]; *p;
       p = &(*p)->next) {
    if (*p == n) {
      *p = n->next;
      break;
    }
  }
  t->count--;
  free(n->account);
  free(n->away);
  free(n->first_nick);
  free(n);
}

int bf_irc_nick_set(char **field, const char *value) {
  if (value && *field && !strcmp(*field, value))
    return 0;
  char *copy = value ? strdup(value) : NULL;
  if (value && !copy)
    return BF_ENOMEM;
  free(*field);
  *field = copy;
  return 0;
}

void bf_irc_nicks_close(bf_irc_nicks *t) {
  /* Every channel is gone by now, and with them every reference. */
  free(t->buckets);
  t->buckets = NULL;
  t->n_buckets = t->count = 0;
}

/* XEP-0421 §4: stable across nick changes and rejoins, and the same in
 * every room for the same IRC user (IRC shows who they are anyway). With
 * an account, the first 16 bytes of SHA-256("a" server NUL account), in
 * hex (never the account in clear): the same after a restart. Without,
 * SHA-256("n" salt server NUL first nick, case folded): a nick change
 * keeps it, and it lasts as long as babelfish runs. */
void bf_irc_nick_occupant_id(bf_irc_nick *n, char out[BF_IRC_OCCUPANT_ID_SIZE]) {
  bf_irc_nicks *t = n->table;
  out[0] = '\0';
  if (!n->account && !t->salted) {
    if (uv_random(NULL, NULL, t->salt, sizeof t->salt, 0, NULL) != 0)
      return;
    t->salted = true;
  }
  const char *who = n->account ? n->account
                    : n->first_nick ? n->first_nick : n->name;
  size_t salt = n->account ? 0 : sizeof t->salt;
  unsigned char kind = n->account ? 'a' : 'n';
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256_CTX ctx;
  int ok = SHA256_Init(&ctx) == 1 && SHA256_Update(&ctx, &kind, 1) == 1 &&
           SHA256_Update(&ctx, t->salt, salt) == 1 &&
           SHA256_Update(&ctx, n->server, strlen(n->server) + 1) == 1;
  unsigned char chunk[64]; /* the nick case-folded, a chunk at a time */
  for (const char *p = who; ok && *p;) {
    size_t k = 0;
    for (; *p && k < sizeof chunk; p++, k++)
      chunk[k] = n->account ? (unsigned char)*p
                            : (unsigned char)tolower((unsigned char)*p);
    ok = SHA256_Update(&ctx, chunk, k) == 1;
  }
  if (ok && SHA256_Final(md, &ctx) == 1) {
    for (size_t i = 0; i < 16; i++)
      snprintf(out + 2 * i, 3, "%02x", md[i]);
  }
}
