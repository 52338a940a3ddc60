/* babelfish — JIDs (RFC 7622 syntax, RFC 6122 stringprep profiles as the
 * deployed servers use them) and XEP-0106 JID escaping.
 */
#ifndef BABELFISH_JID_H
#define BABELFISH_JID_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 7622 §3.1: each part is 1..1023 octets after preparation. */
#define BF_JID_PART_MAX 1023

/* A parsed, normalised JID. local and resource are NULL when absent;
 * domain is never NULL once parsed. All three point into storage, which
 * the JID owns. */
typedef struct bf_jid {
  const char *local;
  const char *domain;
  const char *resource;
  char *storage;
} bf_jid;

/* Parses and normalises str (localpart: nodeprep, domainpart: nameprep with
 * lowercase and trailing dot removed, resourcepart: resourceprep). str:
 * borrowed. On success jid is filled and must be released with
 * bf_jid_close. On failure jid is left zeroed and nothing is to be freed.
 * Returns 0, BF_EINVAL (malformed, prohibited characters or a part over
 * BF_JID_PART_MAX) or BF_ENOMEM. */
int bf_jid_parse(bf_jid *jid, const char *str);

/* bf_jid_parse without an allocation when the prepared JID fits in buf
 * (size bytes, e.g. a stack array; strlen(str) + 3 is always enough for
 * ASCII): the parts then point into buf, which must outlive jid. Otherwise
 * it allocates like bf_jid_parse. Either way bf_jid_close releases it. For
 * the hot path: a stanza's from and to. */
int bf_jid_parse_buf(bf_jid *jid, const char *str, char *buf, size_t size);

/* Releases what bf_jid_parse allocated and zeroes jid (NULL is allowed). */
void bf_jid_close(bf_jid *jid);

/* local@domain (or domain) in a malloc'd string (taken by the caller), or
 * NULL on ENOMEM. */
char *bf_jid_bare(const bf_jid *jid);

/* local@domain/resource with whatever parts are present, malloc'd (taken),
 * or NULL on ENOMEM. */
char *bf_jid_full(const bf_jid *jid);

/* Equality of two parsed JIDs, part by part (both already normalised). */
bool bf_jid_equal(const bf_jid *a, const bf_jid *b);
bool bf_jid_bare_equal(const bf_jid *a, const bf_jid *b);

/* Normalises one part on its own. in: borrowed. *out: malloc'd, taken by
 * the caller. Returns 0, BF_EINVAL or BF_ENOMEM. */
int bf_jid_nodeprep(const char *in, char **out);
int bf_jid_nameprep(const char *in, char **out);
int bf_jid_resourceprep(const char *in, char **out);

/* XEP-0106 escaping of a localpart: the ten characters of its table become
 * \XX (lowercase hex), and a backslash is escaped only where it would start
 * one of the ten sequences. Returns a malloc'd string (taken) or NULL on
 * ENOMEM. Leading or trailing spaces are escaped too (§4.3 forbids them
 * raw at either end). */
char *bf_jid_escape(const char *raw);

/* XEP-0106 unescaping: only the ten known sequences are decoded; anything
 * else is left as it is. Returns a malloc'd string (taken) or NULL. */
char *bf_jid_unescape(const char *escaped);

#endif
