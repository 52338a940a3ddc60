/* babelfish — JIDs: RFC 7622 §3 syntax with the RFC 6122 stringprep
 * profiles (nodeprep, nameprep, resourceprep) that Prosody and ejabberd
 * still apply (PROTOCOL-NOTES §3.4), and XEP-0106 JID escaping.
 */
#include "babelfish/jid.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dlfcn.h>
#include <stringprep.h>

#include "babelfish/error.h"
#include "log.h"

enum part_kind { PART_LOCAL, PART_DOMAIN, PART_RESOURCE };

/* A part longer than this before preparation is refused outright. Only
 * characters that the profiles map to nothing (soft hyphen, zero-width
 * joiners, …) can shrink a part, so no genuine JID comes near this; the cap
 * keeps a hostile attribute from costing libidn a large UCS-4 copy. */
#define RAW_PART_MAX (4 * BF_JID_PART_MAX)

/* RFC 3629 §4: rejects overlong forms, surrogates and code points past
 * U+10FFFF. libidn does not check all of these itself. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t follow;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      follow = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      follow = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      follow = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (len - i - 1 < follow)
      return false;
    for (size_t k = 1; k <= follow; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((follow == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (follow == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return false;
    i += follow + 1;
  }
  return true;
}

static bool ascii_label_char(unsigned char c)
{
  /* Letters, digits and '-' (RFC 1123 §2.1), plus '_', which deployed
   * component domains use and both servers accept. */
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* RFC 7622 §3.2: a domainpart is an IP literal, an IPv4 address or a
 * domain name. Nameprep lets ASCII space, ASCII controls and punctuation
 * such as '@' through, so the shape is checked here. Labels that hold
 * non-ASCII characters are IDN U-labels; only ASCII labels are held to the
 * 63-octet DNS limit (RFC 1035 §2.3.4) since a U-label's limit applies to
 * its A-label form. */
static bool domain_plausible(const char *d, size_t len)
{
  if (d[0] == '[') {
    char addr[INET6_ADDRSTRLEN];
    struct in6_addr in6;
    if (len < 3 || d[len - 1] != ']' || len - 2 >= sizeof addr)
      return false;
    memcpy(addr, d + 1, len - 2);
    addr[len - 2] = '\0';
    return inet_pton(AF_INET6, addr, &in6) == 1;
  }
  size_t label_len = 0;
  bool ascii = true;
  for (size_t i = 0; i <= len; i++) {
    unsigned char c = i < len ? (unsigned char)d[i] : '.';
    if (c == '.') {
      if (label_len == 0 || (ascii && label_len > 63))
        return false;
      label_len = 0;
      ascii = true;
      continue;
    }
    if (c >= 0x80)
      ascii = false;
    else if (!ascii_label_char(c))
      return false;
    label_len++;
  }
  return true;
}

/* The buffer a part is prepared in: the profiles work in place and may
 * grow the text (ß → ss), but anything past BF_JID_PART_MAX is refused
 * anyway, so the buffer only needs to hold the larger of the two. */
static size_t part_buffer_size(size_t raw_len)
{
  return (raw_len > BF_JID_PART_MAX ? raw_len : BF_JID_PART_MAX) + 1;
}

/* libidn, loaded on first use. ASCII JIDs, nearly all of them, never
 * reach it (prep_ascii below), and linked normally it is ~200 KiB of an
 * idle daemon's resident memory, whose budget is 4 MiB. */
static struct {
  int state; /* 0: not tried yet, 1: loaded, -1: failed */
  int (*prep)(char *in, size_t maxlen, Stringprep_profile_flags flags,
              const Stringprep_profile *profile);
  const Stringprep_profile *nodeprep, *nameprep, *resourceprep;
} idn;

#define LIBIDN_SONAME "libidn.so.12"

static bool idn_load(void)
{
  if (idn.state != 0)
    return idn.state > 0;
  idn.state = -1;
  void *dl = dlopen(LIBIDN_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *why = dlerror();
    bf__error(NULL, "cannot load %s (%s): JIDs with non-ASCII characters "
                    "will be refused; install Debian's libidn12",
              LIBIDN_SONAME, why ? why : "unknown error");
    return false;
  }
  void *prep = dlsym(dl, "stringprep");
  idn.nodeprep = dlsym(dl, "stringprep_xmpp_nodeprep");
  idn.nameprep = dlsym(dl, "stringprep_nameprep");
  idn.resourceprep = dlsym(dl, "stringprep_xmpp_resourceprep");
  if (!prep || !idn.nodeprep || !idn.nameprep || !idn.resourceprep) {
    bf__error(NULL, "%s lacks the XMPP stringprep profiles", LIBIDN_SONAME);
    dlclose(dl);
    return false;
  }
  /* POSIX: a function pointer round-trips through void *. */
  memcpy(&idn.prep, &prep, sizeof prep);
  idn.state = 1; /* stays loaded for the life of the process */
  return true;
}

/* Copies src[0..len) (valid UTF-8, len <= RAW_PART_MAX) into buf (of
 * part_buffer_size(len) bytes) and prepares it there. Returns 0 or
 * BF_EINVAL; *out_len gets the prepared length. */
static int prep_part(char *buf, size_t cap, const char *src, size_t len,
                     enum part_kind kind, size_t *out_len)
{
  if (!idn_load())
    return BF_EINVAL;
  memcpy(buf, src, len);
  buf[len] = '\0';
  const Stringprep_profile *profile = kind == PART_LOCAL    ? idn.nodeprep
                                      : kind == PART_DOMAIN ? idn.nameprep
                                                            : idn.resourceprep;
  int prc = idn.prep(buf, cap, 0, profile);
  /* STRINGPREP_TOO_SMALL_BUFFER here means the part grew past
   * BF_JID_PART_MAX: too long, like any other failure a bad part. */
  if (prc != STRINGPREP_OK)
    return BF_EINVAL;
  size_t n = strlen(buf);
  /* RFC 7622 §3.2: a final label separator is stripped. */
  if (kind == PART_DOMAIN && n > 0 && buf[n - 1] == '.')
    buf[--n] = '\0';
  if (n == 0 || n > BF_JID_PART_MAX)
    return BF_EINVAL;
  if (kind == PART_DOMAIN && !domain_plausible(buf, n))
    return BF_EINVAL;
  *out_len = n;
  return 0;
}

/* The stringprep profiles on pure ASCII, without libidn: JIDs on the wire
 * are nearly always ASCII, and libidn converts every string to UCS-4 and
 * back, which made it two thirds of the daemon's CPU time per stanza.
 * For ASCII input the profiles reduce to (RFC 3491, RFC 6122 App. A/B):
 *   nodeprep:     B.2 folds A-Z; C.1.1 space, C.2.1 controls and the
 *                 eight characters " & ' / : < > @ are prohibited;
 *   nameprep:     B.2 folds A-Z; no ASCII character is prohibited (the
 *                 label check after it refuses what a domain can't hold);
 *   resourceprep: no mapping; C.2.1 controls are prohibited.
 * NFKC leaves ASCII unchanged and no ASCII character is bidirectional
 * RandAL, so the results equal libidn's (test-jid compares them). */
static int prep_ascii(char *dst, const char *src, size_t len,
                      enum part_kind kind, size_t *out_len)
{
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)src[i];
    if (c < 0x20 || c == 0x7f) {
      if (kind != PART_DOMAIN)
        return BF_EINVAL;
    } else if (kind == PART_LOCAL &&
               (c == ' ' || strchr("\"&'/:<>@", c))) {
      return BF_EINVAL;
    }
    if (kind != PART_RESOURCE && c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    dst[i] = (char)c;
  }
  size_t n = len;
  if (kind == PART_DOMAIN && n > 0 && dst[n - 1] == '.')
    n--;
  dst[n] = '\0';
  if (n == 0 || n > BF_JID_PART_MAX)
    return BF_EINVAL;
  if (kind == PART_DOMAIN && !domain_plausible(dst, n))
    return BF_EINVAL;
  *out_len = n;
  return 0;
}

static bool all_ascii(const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++) {
    if ((unsigned char)s[i] >= 0x80)
      return false;
  }
  return true;
}

static int parse(bf_jid *jid, const char *str, char *buf, size_t size)
{
  int rc = 0;
  char *storage = NULL;
  if (!jid)
    return BF_EINVAL;
  memset(jid, 0, sizeof *jid);
  if (!str) {
    rc = BF_EINVAL;
    goto out;
  }
  size_t total = strlen(str);
  bool ascii = all_ascii(str, total);
  if (!ascii && !utf8_valid((const unsigned char *)str, total)) {
    rc = BF_EINVAL;
    goto out;
  }

  /* RFC 7622 §3.1: the resourcepart starts after the first '/' and may
   * itself hold '@' and '/'; the localpart ends at the first '@' before
   * that '/'. */
  const char *slash = memchr(str, '/', total);
  size_t bare_len = slash ? (size_t)(slash - str) : total;
  const char *at = memchr(str, '@', bare_len);
  const char *local = at ? str : NULL;
  size_t local_len = at ? (size_t)(at - str) : 0;
  const char *domain = at ? at + 1 : str;
  size_t domain_len = bare_len - (size_t)(domain - str);
  const char *resource = slash ? slash + 1 : NULL;
  size_t resource_len = slash ? total - bare_len - 1 : 0;

  /* RFC 7622 §3.3 / §3.4: a separator present means its part must be
   * there too (no zero-octet parts). */
  if ((local && local_len == 0) || domain_len == 0 ||
      (resource && resource_len == 0) || local_len > RAW_PART_MAX ||
      domain_len > RAW_PART_MAX || resource_len > RAW_PART_MAX) {
    rc = BF_EINVAL;
    goto out;
  }

  if (ascii) {
    /* Preparation never grows ASCII: one exact allocation, parts prepared
     * in place where they end up. */
    char *mem = buf && size >= total + 3 ? buf : malloc(total + 3);
    if (!mem) {
      rc = BF_ENOMEM;
      goto out;
    }
    if (mem != buf)
      storage = mem;
    size_t local_n = 0, domain_n = 0, resource_n = 0;
    size_t domain_at = 0;
    if (local) {
      if ((rc = prep_ascii(mem, local, local_len, PART_LOCAL, &local_n)))
        goto out;
      domain_at = local_n + 1;
    }
    if ((rc = prep_ascii(mem + domain_at, domain, domain_len, PART_DOMAIN,
                         &domain_n)))
      goto out;
    size_t resource_at = domain_at + domain_n + 1;
    if (resource && (rc = prep_ascii(mem + resource_at, resource,
                                     resource_len, PART_RESOURCE, &resource_n)))
      goto out;
    jid->storage = storage;
    jid->local = local ? mem : NULL;
    jid->domain = mem + domain_at;
    jid->resource = resource ? mem + resource_at : NULL;
    storage = NULL;
    goto out;
  }

  /* One allocation: each part is prepared in its own region, then the
   * three are packed together and the block is shrunk. */
  size_t local_cap = local ? part_buffer_size(local_len) : 0;
  size_t domain_cap = part_buffer_size(domain_len);
  size_t resource_cap = resource ? part_buffer_size(resource_len) : 0;
  storage = malloc(local_cap + domain_cap + resource_cap);
  if (!storage) {
    rc = BF_ENOMEM;
    goto out;
  }
  size_t local_n = 0, domain_n = 0, resource_n = 0;
  if (local && (rc = prep_part(storage, local_cap, local, local_len,
                               PART_LOCAL, &local_n)) != 0)
    goto out;
  if ((rc = prep_part(storage + local_cap, domain_cap, domain, domain_len,
                      PART_DOMAIN, &domain_n)) != 0)
    goto out;
  if (resource &&
      (rc = prep_part(storage + local_cap + domain_cap, resource_cap,
                      resource, resource_len, PART_RESOURCE, &resource_n)) != 0)
    goto out;

  size_t domain_at = local ? local_n + 1 : 0;
  size_t resource_at = domain_at + domain_n + 1;
  memmove(storage + domain_at, storage + local_cap, domain_n + 1);
  if (resource)
    memmove(storage + resource_at, storage + local_cap + domain_cap,
            resource_n + 1);
  size_t used = resource ? resource_at + resource_n + 1 : resource_at;
  char *shrunk = realloc(storage, used);
  if (shrunk)
    storage = shrunk;

  jid->storage = storage;
  jid->local = local ? storage : NULL;
  jid->domain = storage + domain_at;
  jid->resource = resource ? storage + resource_at : NULL;
  storage = NULL;

out:
  free(storage);
  return rc;
}

int bf_jid_parse(bf_jid *jid, const char *str)
{
  return parse(jid, str, NULL, 0);
}

int bf_jid_parse_buf(bf_jid *jid, const char *str, char *buf, size_t size)
{
  return parse(jid, str, buf, size);
}

void bf_jid_close(bf_jid *jid)
{
  if (!jid)
    return;
  free(jid->storage);
  memset(jid, 0, sizeof *jid);
}

static char *jid_format(const bf_jid *jid, bool with_resource)
{
  size_t local_n = jid->local ? strlen(jid->local) + 1 : 0;
  size_t domain_n = strlen(jid->domain);
  size_t resource_n =
      with_resource && jid->resource ? strlen(jid->resource) + 1 : 0;
  char *s = malloc(local_n + domain_n + resource_n + 1);
  if (!s)
    return NULL;
  char *p = s;
  if (local_n) {
    memcpy(p, jid->local, local_n - 1);
    p[local_n - 1] = '@';
    p += local_n;
  }
  memcpy(p, jid->domain, domain_n);
  p += domain_n;
  if (resource_n) {
    *p++ = '/';
    memcpy(p, jid->resource, resource_n - 1);
    p += resource_n - 1;
  }
  *p = '\0';
  return s;
}

char *bf_jid_bare(const bf_jid *jid)
{
  return jid_format(jid, false);
}

char *bf_jid_full(const bf_jid *jid)
{
  return jid_format(jid, true);
}

static bool part_equal(const char *a, const char *b)
{
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

bool bf_jid_bare_equal(const bf_jid *a, const bf_jid *b)
{
  return part_equal(a->local, b->local) && part_equal(a->domain, b->domain);
}

bool bf_jid_equal(const bf_jid *a, const bf_jid *b)
{
  return bf_jid_bare_equal(a, b) && part_equal(a->resource, b->resource);
}

static int prep_alone(const char *in, char **out, enum part_kind kind)
{
  int rc = 0;
  char *buf = NULL;
  if (!out)
    return BF_EINVAL;
  *out = NULL;
  if (!in) {
    rc = BF_EINVAL;
    goto out;
  }
  size_t len = strlen(in);
  if (len == 0 || len > RAW_PART_MAX ||
      !utf8_valid((const unsigned char *)in, len)) {
    rc = BF_EINVAL;
    goto out;
  }
  size_t cap = part_buffer_size(len);
  buf = malloc(cap);
  if (!buf) {
    rc = BF_ENOMEM;
    goto out;
  }
  size_t n;
  rc = all_ascii(in, len) ? prep_ascii(buf, in, len, kind, &n)
                          : prep_part(buf, cap, in, len, kind, &n);
  if (rc)
    goto out;
  char *shrunk = realloc(buf, n + 1);
  *out = shrunk ? shrunk : buf;
  buf = NULL;

out:
  free(buf);
  return rc;
}

int bf_jid_nodeprep(const char *in, char **out)
{
  return prep_alone(in, out, PART_LOCAL);
}

int bf_jid_nameprep(const char *in, char **out)
{
  return prep_alone(in, out, PART_DOMAIN);
}

int bf_jid_resourceprep(const char *in, char **out)
{
  return prep_alone(in, out, PART_RESOURCE);
}

/* XEP-0106 §3.2: the nine characters nodeprep forbids, in the order of the
 * table. The tenth escape, \5c, is the backslash itself. */
static const char escaped_chars[] = " \"&'/:<>@";

/* s points at a backslash: does it start one of the ten sequences?
 * Lowercase hex only (§3.1: "CASE IS SIGNIFICANT"). Returns the decoded
 * character or 0. */
static char escape_sequence_at(const char *s)
{
  static const struct {
    char hex[3];
    char c;
  } seqs[] = {{"20", ' '}, {"22", '"'}, {"26", '&'}, {"27", '\''},
              {"2f", '/'}, {"3a", ':'}, {"3c", '<'}, {"3e", '>'},
              {"40", '@'}, {"5c", '\\'}};
  if (s[1] == '\0' || s[2] == '\0')
    return 0;
  for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
    if (s[1] == seqs[i].hex[0] && s[2] == seqs[i].hex[1])
      return seqs[i].c;
  return 0;
}

char *bf_jid_escape(const char *raw)
{
  if (!raw)
    return NULL;
  size_t len = strlen(raw);
  if (len > (SIZE_MAX - 1) / 3)
    return NULL;
  char *out = malloc(3 * len + 1);
  if (!out)
    return NULL;
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  for (const char *s = raw; *s; s++) {
    unsigned char c = (unsigned char)*s;
    /* §4.1 rule 7: a backslash is escaped only where the source holds
     * something that would read as an escape; elsewhere it stays (§4.3). */
    if (strchr(escaped_chars, c) ||
        (c == '\\' && escape_sequence_at(s))) {
      *p++ = '\\';
      *p++ = hex[c >> 4];
      *p++ = hex[c & 0x0f];
    } else {
      *p++ = (char)c;
    }
  }
  *p = '\0';
  char *shrunk = realloc(out, (size_t)(p - out) + 1);
  return shrunk ? shrunk : out;
}

char *bf_jid_unescape(const char *escaped)
{
  if (!escaped)
    return NULL;
  char *out = malloc(strlen(escaped) + 1);
  if (!out)
    return NULL;
  char *p = out;
  for (const char *s = escaped; *s;) {
    char c = *s == '\\' ? escape_sequence_at(s) : 0;
    if (c) {
      /* §4.1 rule 3: only the ten sequences; §4.3: partial or unknown
       * ones are left as they are. */
      *p++ = c;
      s += 3;
    } else {
      *p++ = *s++;
    }
  }
  *p = '\0';
  return out;
}
