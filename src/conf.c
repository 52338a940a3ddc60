/* The configuration file.
 *
 * inih does the INI syntax; it reads through reader(), which hands it one
 * physical line per call. That is how every key knows its line (inih counts
 * calls the same way) and how sections are seen even when they hold no key.
 * The reader also evens out how inih was built: Debian's libinih has
 * multi-line values on (an indented line continues the previous value) and
 * a 200-byte line buffer that silently splits longer lines, and it accepts
 * "key: value". Here leading blanks are stripped (no continuation lines),
 * inline " ;" comments are cut whatever INI_ALLOW_INLINE_COMMENTS says,
 * ':' before '=' and overlong lines are errors, and once an error is
 * recorded the reader reports end of file so parsing stops there (inih
 * goes on after a failed handler unless built with INI_STOP_ON_FIRST_ERROR).
 */
#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "babelfish/error.h"
#include "babelfish/jid.h"
#include "log.h"

#ifndef BF_MODULES_DIR
#define BF_MODULES_DIR "/usr/lib/babelfish"
#endif

/* Bytes of one physical line kept for inspection. Only comments may be
 * longer (their tail is dropped); a key line must fit inih's buffer, which
 * is far smaller. */
#define PHYSICAL_LINE_MAX 4096
/* inih copies the section name into a 50-byte buffer and cuts it there
 * without a word (ini.c MAX_SECTION). */
#define SECTION_NAME_MAX 48
/* The smallest max_stanza_size: RFC 6120 §13.12 has servers accept stanzas
 * of at least 10,000 bytes; below 4 KiB even a disco#info reply may not
 * fit. */
#define STANZA_SIZE_MIN 4096
#define DEPTH_MIN 4
#define DEPTH_MAX 1024
/* Room for a value quoted in an error message (48 bytes shown, each byte
 * at most 4 characters once escaped). */
#define SHOWN_SIZE 208

enum core_key {
  K_SERVER,
  K_PORT,
  K_DATABASE,
  K_HTTP,
  K_ADMINS,
  K_LOG_LEVEL,
  K_LOG_FILE,
  K_MODULES_DIR,
  K_XMPP_DOMAIN,
  K_MAX_STANZA_SIZE,
  K_MAX_DEPTH,
  K_WRITE_QUEUE_MAX,
  K_KEEPALIVE_INTERVAL,
  K_PING_INTERVAL,
  K_PING_TIMEOUT,
  K_RECONNECT_MIN,
  K_RECONNECT_MAX,
  K_PROBE_TIMEOUT,
  CORE_KEY_COUNT,
};

static const char *const core_key_names[CORE_KEY_COUNT] = {
    "server",          "port",          "database",
    "http",            "admins",        "log_level",
    "log_file",        "modules_dir",   "xmpp_domain",
    "max_stanza_size", "max_depth",     "write_queue_max",
    "keepalive_interval", "ping_interval", "ping_timeout",
    "reconnect_min",   "reconnect_max", "probe_timeout",
};

typedef struct parser {
  bf_conf *conf;
  FILE *file;
  char *err;
  size_t err_size;
  int rc;            /* the first error, or 0 */
  unsigned err_line; /* its line (0: the file as a whole) */
  unsigned lineno;   /* the physical line last handed to inih */
  bool eof;
  bool in_core;      /* the current section is [babelfish] */
  bool in_gateway;   /* … is conf->gateways[n_gateways - 1] */
  unsigned core_line;
  unsigned core_key_line[CORE_KEY_COUNT]; /* 0 = not set in the file */
  char line[PHYSICAL_LINE_MAX];
} parser;

/* ---- errors -------------------------------------------------------------- */

/* Records the first error as "FILE:LINE: message" (line 0: "FILE: …").
 * Later errors are dropped: the first one is what the user fixes first. */
static int fail_rc(parser *p, int rc, unsigned line, const char *fmt, ...)
    BF_PRINTF(4, 5);
static int fail_rc(parser *p, int rc, unsigned line, const char *fmt, ...) {
  if (p->rc)
    return p->rc;
  p->rc = rc;
  p->err_line = line;
  if (p->err && p->err_size) {
    int n = line ? snprintf(p->err, p->err_size, "%s:%u: ", p->conf->path, line)
                 : snprintf(p->err, p->err_size, "%s: ", p->conf->path);
    if (n >= 0 && (size_t)n < p->err_size) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return rc;
}

#define fail(p, line, ...) fail_rc(p, BF_EINVAL, line, __VA_ARGS__)

static int fail_nomem(parser *p) {
  return fail_rc(p, BF_ENOMEM, p->lineno, "out of memory");
}

/* A value as it may appear in an error message: control bytes as \xNN and
 * cut after 48 bytes. Never used for a secret. */
static const char *shown(char *buf, const char *value) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  size_t i;
  for (i = 0; value[i] && i < 48; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c < 0x20 || c == 0x7f) {
      buf[o++] = '\\';
      buf[o++] = 'x';
      buf[o++] = hex[c >> 4];
      buf[o++] = hex[c & 0xf];
    } else {
      buf[o++] = (char)c;
    }
  }
  if (value[i]) {
    memcpy(buf + o, "\xe2\x80\xa6", 3);
    o += 3;
  }
  buf[o] = '\0';
  return buf;
}

/* ---- value parsers -------------------------------------------------------- */

/* Digits only (no sign, no blanks: strtoul would take both). Stops at the
 * first non-digit; *end points there. 0 or BF_EINVAL (no digit, overflow). */
static int parse_digits(const char *s, unsigned long long max,
                        unsigned long long *out, const char **end) {
  unsigned long long v = 0;
  const char *c = s;
  if (*c < '0' || *c > '9')
    return BF_EINVAL;
  for (; *c >= '0' && *c <= '9'; c++) {
    unsigned d = (unsigned)(*c - '0');
    if (v > (max - d) / 10)
      return BF_EINVAL;
    v = v * 10 + d;
  }
  *out = v;
  *end = c;
  return 0;
}

int bf__conf_parse_size(const char *value, size_t *out) {
  unsigned long long v;
  const char *end;
  if (!value || parse_digits(value, SIZE_MAX, &v, &end) < 0)
    return BF_EINVAL;
  unsigned shift = 0;
  switch (*end) {
  case '\0': break;
  case 'K': case 'k': shift = 10; end++; break;
  case 'M': case 'm': shift = 20; end++; break;
  case 'G': case 'g': shift = 30; end++; break;
  default: return BF_EINVAL;
  }
  if (*end || v == 0 || v > (unsigned long long)SIZE_MAX >> shift)
    return BF_EINVAL;
  *out = (size_t)(v << shift);
  return 0;
}

int bf__conf_parse_seconds(const char *value, unsigned *out) {
  unsigned long long v;
  const char *end;
  if (!value || parse_digits(value, UINT_MAX, &v, &end) < 0)
    return BF_EINVAL;
  unsigned long long unit = 1;
  switch (*end) {
  case '\0': break;
  case 's': end++; break;
  case 'm': unit = 60; end++; break;
  case 'h': unit = 3600; end++; break;
  case 'd': unit = 86400; end++; break;
  default: return BF_EINVAL;
  }
  if (*end || v > UINT_MAX / unit)
    return BF_EINVAL;
  *out = (unsigned)(v * unit);
  return 0;
}

static int parse_port(const char *value, unsigned *out) {
  unsigned long long v;
  const char *end;
  if (parse_digits(value, 65535, &v, &end) < 0 || *end || v == 0)
    return BF_EINVAL;
  *out = (unsigned)v;
  return 0;
}

/* A host name ([A-Za-z0-9_-] labels) or an IPv4/IPv6 address: what
 * getaddrinfo will be asked to resolve. */
static bool valid_host(const char *host) {
  unsigned char addr[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
    return true;
  size_t len = strlen(host);
  if (len == 0 || len > 253)
    return false;
  size_t label = 0;
  for (size_t i = 0; i <= len; i++) {
    char c = host[i];
    if (c == '.' || c == '\0') {
      if (label == 0 || label > 63)
        return false;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '-' || c == '_') {
      label++;
    } else {
      return false;
    }
  }
  return true;
}

/* host:port or [v6]:port — the listening address for http. */
static bool valid_listen(const char *value) {
  char host[256];
  const char *colon;
  if (value[0] == '[') {
    const char *close = strchr(value, ']');
    unsigned char addr[sizeof(struct in6_addr)];
    if (!close || close[1] != ':' || (size_t)(close - value - 1) >= sizeof host)
      return false;
    memcpy(host, value + 1, (size_t)(close - value - 1));
    host[close - value - 1] = '\0';
    if (inet_pton(AF_INET6, host, addr) != 1)
      return false;
    colon = close + 1;
  } else {
    colon = strchr(value, ':');
    /* A second ':' is a bare IPv6 address: it needs brackets. */
    if (!colon || strchr(colon + 1, ':') || (size_t)(colon - value) >= sizeof host)
      return false;
    memcpy(host, value, (size_t)(colon - value));
    host[colon - value] = '\0';
    if (!valid_host(host))
      return false;
  }
  unsigned port;
  return parse_port(colon + 1, &port) == 0;
}

static int set_string(parser *p, char **slot, const char *value) {
  char *copy = strdup(value);
  if (!copy)
    return fail_nomem(p);
  free(*slot);
  *slot = copy;
  return 0;
}

/* A JID domainpart (RFC 7622 §3.2), stored normalised in *slot. */
static int set_domain(parser *p, char **slot, const char *key, const char *value) {
  char q[SHOWN_SIZE];
  char *domain = NULL;
  if (strchr(value, '@') || strchr(value, '/'))
    return fail(p, p->lineno,
                "%s '%s' is a JID, not a domain; write only the domain, e.g. "
                "irc.example.org",
                key, shown(q, value));
  int rc = bf_jid_nameprep(value, &domain);
  if (rc == BF_ENOMEM)
    return fail_nomem(p);
  if (rc < 0)
    return fail(p, p->lineno,
                "%s '%s' is not a valid domain; use a DNS name such as "
                "irc.example.org (letters, digits, '-', '_', dots)",
                key, shown(q, value));
  free(*slot);
  *slot = domain;
  return 0;
}

static int set_server(parser *p, char **slot, const char *value) {
  char q[SHOWN_SIZE];
  if (!valid_host(value))
    return fail(p, p->lineno,
                "server '%s' is not a host name or IP address; use e.g. "
                "127.0.0.1 or xmpp.example.org (the port goes in 'port')",
                shown(q, value));
  return set_string(p, slot, value);
}

static int set_port(parser *p, unsigned *slot, const char *value) {
  char q[SHOWN_SIZE];
  if (parse_port(value, slot) < 0)
    return fail(p, p->lineno,
                "port '%s' is not a port number; use 1 to 65535 (the XMPP "
                "server's component port, usually 5347)",
                shown(q, value));
  return 0;
}

/* A list of bare JIDs (admins) or of bare JIDs and domains (allowed),
 * separated by blanks and/or commas; "*" (allowed only) sets *all. */
static int set_jid_list(parser *p, const char *key, const char *value,
                        bool domains, char ***list, size_t *n, bool *all) {
  char q[SHOWN_SIZE];
  int rc = 0;
  bf_jid jid = {0};
  char *copy = strdup(value);
  if (!copy)
    return fail_nomem(p);
  char *save = NULL;
  for (char *tok = strtok_r(copy, " \t,", &save); tok;
       tok = strtok_r(NULL, " \t,", &save)) {
    if (all && !strcmp(tok, "*")) {
      *all = true;
      continue;
    }
    int prc = bf_jid_parse(&jid, tok);
    if (prc == BF_ENOMEM) {
      rc = fail_nomem(p);
      goto out;
    }
    if (prc < 0 || jid.resource || (!domains && !jid.local)) {
      rc = domains
               ? fail(p, p->lineno,
                      "%s '%s' is neither a domain nor a bare JID; write "
                      "domains (example.org), bare JIDs (alice@example.org) "
                      "or *, separated by spaces or commas",
                      key, shown(q, tok))
               : fail(p, p->lineno,
                      "admin '%s' is not a bare JID; write bare JIDs such as "
                      "admin@example.org (no /resource), separated by spaces "
                      "or commas",
                      shown(q, tok));
      goto out;
    }
    char *bare = bf_jid_bare(&jid);
    bf_jid_close(&jid);
    char **grown = bare ? realloc(*list, (*n + 2) * sizeof *grown) : NULL;
    if (!grown) {
      free(bare);
      rc = fail_nomem(p);
      goto out;
    }
    *list = grown;
    (*list)[(*n)++] = bare;
    (*list)[*n] = NULL;
  }
out:
  bf_jid_close(&jid);
  free(copy);
  return rc;
}

static int set_size(parser *p, size_t *slot, const char *key, const char *value) {
  char q[SHOWN_SIZE];
  if (bf__conf_parse_size(value, slot) < 0)
    return fail(p, p->lineno,
                "%s '%s' is not a size; use a number of bytes, optionally with "
                "K or M (binary units), e.g. 512K",
                key, shown(q, value));
  return 0;
}

static int set_seconds(parser *p, unsigned *slot, const char *key,
                       const char *value) {
  char q[SHOWN_SIZE];
  /* 0 would make a timer fire on every loop turn: at least one second. */
  if (bf__conf_parse_seconds(value, slot) < 0 || *slot == 0)
    return fail(p, p->lineno,
                "%s '%s' is not a duration; use seconds or a number with s, m "
                "or h, at least 1s, e.g. 30 or 2m",
                key, shown(q, value));
  return 0;
}

/* ---- [babelfish] ---------------------------------------------------------- */

static int core_key(parser *p, const char *name, const char *value) {
  bf_conf *conf = p->conf;
  char q[SHOWN_SIZE];
  int k;
  for (k = 0; k < CORE_KEY_COUNT; k++) {
    if (!strcmp(name, core_key_names[k]))
      break;
  }
  if (k == CORE_KEY_COUNT) {
    if (!strcmp(name, "transport") || !strcmp(name, "domain") ||
        !strcmp(name, "secret"))
      return fail(p, p->lineno,
                  "unknown key '%s' in [babelfish]; it belongs in a gateway "
                  "section such as [echo]",
                  name);
    return fail(p, p->lineno,
                "unknown key '%s' in [babelfish]; the keys there are server, "
                "port, database, http, admins, log_level, log_file, "
                "modules_dir, xmpp_domain, max_stanza_size, max_depth, "
                "write_queue_max, keepalive_interval, ping_interval, "
                "ping_timeout, reconnect_min, reconnect_max and probe_timeout",
                shown(q, name));
  }
  if (p->core_key_line[k])
    return fail(p, p->lineno,
                "duplicate key '%s' in [babelfish] (first set on line %u); "
                "keep only one",
                name, p->core_key_line[k]);
  p->core_key_line[k] = p->lineno;
  if (!*value && k != K_ADMINS)
    return fail(p, p->lineno,
                "'%s' has no value; give one, or remove the line to use the "
                "default",
                name);

  switch ((enum core_key)k) {
  case K_SERVER:
    return set_server(p, &conf->server, value);
  case K_PORT:
    return set_port(p, &conf->port, value);
  case K_DATABASE:
    return set_string(p, &conf->database, value);
  case K_HTTP:
    if (!valid_listen(value))
      return fail(p, p->lineno,
                  "http '%s' is not a listening address; use HOST:PORT or "
                  "[IPv6]:PORT, e.g. 127.0.0.1:8080",
                  shown(q, value));
    return set_string(p, &conf->http, value);
  case K_ADMINS:
    return set_jid_list(p, name, value, false, &conf->admins, &conf->n_admins,
                        NULL);
  case K_LOG_LEVEL: {
    int level = bf__log_level_parse(value);
    if (level < 0)
      return fail(p, p->lineno,
                  "log_level '%s' is not a level; use error, warn, info or "
                  "debug",
                  shown(q, value));
    conf->log_level = level;
    return 0;
  }
  case K_LOG_FILE:
    return set_string(p, &conf->log_file, value);
  case K_MODULES_DIR:
    return set_string(p, &conf->modules_dir, value);
  case K_XMPP_DOMAIN:
    return set_domain(p, &conf->xmpp_domain, name, value);
  case K_MAX_STANZA_SIZE:
    if (set_size(p, &conf->max_stanza_size, name, value) < 0)
      return p->rc;
    if (conf->max_stanza_size < STANZA_SIZE_MIN)
      return fail(p, p->lineno,
                  "max_stanza_size %zu is too small; use at least %d "
                  "(4K); servers accept stanzas of 10,000 bytes and more",
                  conf->max_stanza_size, STANZA_SIZE_MIN);
    return 0;
  case K_MAX_DEPTH: {
    unsigned long long v;
    const char *end;
    if (parse_digits(value, UINT_MAX, &v, &end) < 0 || *end || v < DEPTH_MIN ||
        v > DEPTH_MAX)
      return fail(p, p->lineno,
                  "max_depth '%s' is out of range; use a number from %d to %d",
                  shown(q, value), DEPTH_MIN, DEPTH_MAX);
    conf->max_depth = (unsigned)v;
    return 0;
  }
  case K_WRITE_QUEUE_MAX:
    return set_size(p, &conf->write_queue_max, name, value);
  case K_KEEPALIVE_INTERVAL:
    return set_seconds(p, &conf->keepalive_s, name, value);
  case K_PING_INTERVAL:
    return set_seconds(p, &conf->ping_interval_s, name, value);
  case K_PING_TIMEOUT:
    return set_seconds(p, &conf->ping_timeout_s, name, value);
  case K_RECONNECT_MIN:
    return set_seconds(p, &conf->reconnect_min_s, name, value);
  case K_RECONNECT_MAX:
    return set_seconds(p, &conf->reconnect_max_s, name, value);
  case K_PROBE_TIMEOUT:
    return set_seconds(p, &conf->probe_timeout_s, name, value);
  case CORE_KEY_COUNT:
    break;
  }
  return 0;
}

/* ---- gateway sections ----------------------------------------------------- */

static bf_conf_gateway *current_gateway(parser *p) {
  return &p->conf->gateways[p->conf->n_gateways - 1];
}

static int gateway_key(parser *p, const char *name, const char *value) {
  bf_conf *conf = p->conf;
  bf_conf_gateway *gw = current_gateway(p);
  for (size_t i = 0; i < gw->n_entries; i++) {
    if (!strcmp(gw->entries[i].key, name))
      return fail(p, p->lineno,
                  "duplicate key '%s' in [%s] (first set on line %u); keep "
                  "only one",
                  name, gw->section, gw->entries[i].line);
  }
  bf_conf_entry *grown = realloc(gw->entries, (gw->n_entries + 1) * sizeof *grown);
  if (!grown)
    return fail_nomem(p);
  gw->entries = grown;
  bf_conf_entry *e = &gw->entries[gw->n_entries];
  e->key = strdup(name);
  e->value = strdup(value);
  e->line = p->lineno;
  if (!e->key || !e->value) {
    free(e->key);
    free(e->value);
    return fail_nomem(p);
  }
  gw->n_entries++;

  bool required = !strcmp(name, "transport") || !strcmp(name, "domain") ||
                  !strcmp(name, "secret");
  /* The secret is never echoed, not even its emptiness spelled out with
   * the value: only the key is named. */
  if (required && !*value)
    return fail(p, p->lineno, "'%s' in [%s] is empty; give it a value", name,
                gw->section);
  if (!strcmp(name, "transport"))
    return set_string(p, &gw->transport, value);
  if (!strcmp(name, "secret"))
    return set_string(p, &gw->secret, value);
  if (!strcmp(name, "domain")) {
    if (set_domain(p, &gw->domain, name, value) < 0)
      return p->rc;
    for (size_t i = 0; i + 1 < conf->n_gateways; i++) {
      const bf_conf_gateway *other = &conf->gateways[i];
      if (other->domain && !strcmp(other->domain, gw->domain))
        return fail(p, p->lineno,
                    "domain '%s' is already used by [%s] on line %u; each "
                    "gateway needs its own domain",
                    gw->domain, other->section, bf__conf_line(other, "domain"));
    }
    return 0;
  }
  if (!*value && (!strcmp(name, "server") || !strcmp(name, "port") ||
                  !strcmp(name, "xmpp_domain")))
    return fail(p, p->lineno,
                "'%s' in [%s] has no value; give one, or remove the line to "
                "use the default",
                name, gw->section);
  if (!strcmp(name, "server"))
    return set_server(p, &gw->server, value);
  if (!strcmp(name, "port"))
    return set_port(p, &gw->port, value);
  if (!strcmp(name, "xmpp_domain"))
    return set_domain(p, &gw->xmpp_domain, name, value);
  if (!strcmp(name, "allowed")) {
    if (!*value)
      return fail(p, p->lineno,
                  "'allowed' in [%s] is empty; list domains or bare JIDs, or "
                  "* for everyone, or remove the line to allow the XMPP "
                  "server's domain",
                  gw->section);
    return set_jid_list(p, name, value, true, &gw->allowed, &gw->n_allowed,
                        &gw->allow_all);
  }
  if (!strcmp(name, "message_ids")) {
    char q[SHOWN_SIZE];
    size_t count;
    if (bf__conf_parse_size(value, &count) < 0 || count < 16 ||
        count > 100000000)
      return fail(p, p->lineno,
                  "message_ids '%s' is not a count between 16 and 100M; it is "
                  "how many message ids the gateway remembers, e.g. 10000",
                  shown(q, value));
    gw->message_ids = (unsigned)count;
    return 0;
  }
  /* Any other key is the transport's: module.c checks it. */
  return 0;
}

/* Called when a section ends (a new header, or the end of the file):
 * required keys are checked here so errors come out in file order. */
static int end_section(parser *p) {
  if (p->in_gateway) {
    bf_conf_gateway *gw = current_gateway(p);
    static const struct {
      const char *key;
      const char *hint;
    } required[] = {
        {"transport", "transport = NAME (the module that serves it, e.g. echo)"},
        {"domain", "domain = NAME (the component's domain, e.g. irc.example.org)"},
        {"secret", "secret = … (the component secret set on the XMPP server)"},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
      if (!bf__conf_get(gw, required[i].key))
        return fail(p, gw->line, "[%s] is missing required key '%s'; add %s",
                    gw->section, required[i].key, required[i].hint);
    }
  }
  p->in_gateway = false;
  p->in_core = false;
  return 0;
}

static bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static int syntax_error(parser *p, unsigned line) {
  return fail(p, line, "syntax error (expected key = value or [section])");
}

/* s: a "[name]" line, comments and outer blanks removed. */
static int section_line(parser *p, char *s) {
  bf_conf *conf = p->conf;
  char q[SHOWN_SIZE];
  char *close = strchr(s, ']');
  if (!close || close[1])
    return syntax_error(p, p->lineno);
  *close = '\0';
  const char *name = s + 1;
  size_t len = strlen(name);
  bool ok = len > 0 && len <= SECTION_NAME_MAX;
  for (size_t i = 0; ok && i < len; i++)
    ok = name_char(name[i]);
  if (!ok)
    return fail(p, p->lineno,
                "section name [%s] is not valid; use 1 to %d letters, digits, "
                "'_', '-' or '.'",
                shown(q, name), SECTION_NAME_MAX);
  if (end_section(p) < 0)
    return p->rc;
  if (!strcmp(name, "babelfish")) {
    if (p->core_line)
      return fail(p, p->lineno,
                  "duplicate section [babelfish] (first on line %u); merge "
                  "the two",
                  p->core_line);
    p->core_line = p->lineno;
    p->in_core = true;
  } else {
    for (size_t i = 0; i < conf->n_gateways; i++) {
      if (!strcmp(conf->gateways[i].section, name))
        return fail(p, p->lineno,
                    "duplicate section [%s] (first on line %u); merge them or "
                    "rename one",
                    name, conf->gateways[i].line);
    }
    bf_conf_gateway *grown =
        realloc(conf->gateways, (conf->n_gateways + 1) * sizeof *grown);
    if (!grown)
      return fail_nomem(p);
    conf->gateways = grown;
    bf_conf_gateway *gw = &conf->gateways[conf->n_gateways];
    memset(gw, 0, sizeof *gw);
    gw->section = strdup(name);
    if (!gw->section)
      return fail_nomem(p);
    gw->line = p->lineno;
    conf->n_gateways++;
    p->in_gateway = true;
  }
  *close = ']';
  return 0;
}

/* s: a key line, comments and outer blanks removed. */
static int key_line(parser *p, const char *s) {
  char q[SHOWN_SIZE];
  const char *eq = strchr(s, '=');
  const char *colon = strchr(s, ':');
  /* inih also takes "key: value"; only '=' is documented, and a ':' first
   * would otherwise split "http: 127.0.0.1:8080" in a surprising place. */
  if (!eq || (colon && colon < eq))
    return syntax_error(p, p->lineno);
  size_t len = (size_t)(eq - s);
  while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
    len--;
  if (len == 0)
    return fail(p, p->lineno, "a key is missing before '='; write key = value");
  for (size_t i = 0; i < len; i++) {
    if (!name_char(s[i])) {
      char key[SHOWN_SIZE];
      size_t n = len < 48 ? len : 48;
      memcpy(key, s, n);
      key[n] = '\0';
      return fail(p, p->lineno,
                  "key '%s' is not valid; use letters, digits, '_', '-' or "
                  "'.'",
                  shown(q, key));
    }
  }
  if (!p->in_core && !p->in_gateway)
    return fail(p, p->lineno,
                "a key before any section; put it under [babelfish] or a "
                "gateway section such as [echo]");
  return 0;
}

/* Reads one physical line into p->line (at most PHYSICAL_LINE_MAX - 1
 * bytes kept, *overlong set if more were dropped). Returns 1, 0 at end of
 * file, or a negated errno. */
static int read_physical_line(parser *p, size_t *len, bool *overlong) {
  size_t n = 0;
  int c = EOF;
  bool any = false;
  *overlong = false;
  errno = 0;
  while ((c = getc(p->file)) != EOF) {
    any = true;
    if (n < sizeof p->line - 1)
      p->line[n++] = (char)c;
    else
      *overlong = true;
    if (c == '\n')
      break;
  }
  if (c == EOF && ferror(p->file))
    return errno ? -errno : BF_EIO;
  p->line[n] = '\0';
  *len = n;
  return any;
}

static bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
         c == '\f';
}

/* The ini_reader: see the top of the file. */
static char *reader(char *str, int num, void *stream) {
  parser *p = stream;
  size_t len = 0;
  bool overlong = false;
  if (p->rc || p->eof)
    return NULL;
  int rc = read_physical_line(p, &len, &overlong);
  if (rc < 0) {
    fail_rc(p, rc, 0, "cannot read: %s", strerror(-rc));
    return NULL;
  }
  if (rc == 0) {
    p->eof = true;
    end_section(p);
    return NULL;
  }
  p->lineno++;
  char *s = p->line;
  if (p->lineno == 1 && len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) {
    s += 3; /* a UTF-8 byte order mark */
    len -= 3;
  }
  if (memchr(s, '\0', len)) {
    fail(p, p->lineno, "the line holds a NUL byte; save the file as plain text");
    return NULL;
  }
  while (blank(*s))
    s++;
  if (*s == '\0' || *s == ';' || *s == '#') {
    str[0] = '\0';
    return str;
  }
  /* An inline comment starts at a ';' that follows a blank (inih's rule). */
  for (char *c = s + 1; *c; c++) {
    if (*c == ';' && blank(c[-1])) {
      *c = '\0';
      break;
    }
  }
  size_t n = strlen(s);
  while (n > 0 && blank(s[n - 1]))
    s[--n] = '\0';
  /* inih's buffer holds num bytes, and its docs keep three of them for
   * "\r\n\0". */
  size_t limit = num > 3 ? (size_t)num - 3 : 0;
  if (overlong || n > limit) {
    fail(p, p->lineno,
         "the line is too long (the limit is %zu characters, comments "
         "aside); shorten the value",
         limit);
    return NULL;
  }
  if (s[0] == '[' ? section_line(p, s) < 0 : key_line(p, s) < 0)
    return NULL;
  memcpy(str, s, n + 1);
  return str;
}

static int handler(void *user, const char *section, const char *name,
                   const char *value) {
  parser *p = user;
  (void)section; /* the reader tracks sections itself, with their lines */
  if (p->rc)
    return 0;
  int rc = p->in_core ? core_key(p, name, value) : gateway_key(p, name, value);
  return rc == 0;
}

/* ---- after the last line -------------------------------------------------- */

/* A relative path is taken relative to the config file's folder, made
 * absolute so that it does not depend on the working directory. */
static int resolve_path(parser *p, char **path) {
  int rc = 0;
  char *dir = NULL;
  char *real = NULL;
  if (!*path || (*path)[0] == '/' || !strcmp(*path, ":memory:"))
    return 0;
  dir = strdup(p->conf->path);
  if (!dir) {
    rc = fail_nomem(p);
    goto out;
  }
  char *slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  real = realpath(dir, NULL);
  if (!real) {
    rc = fail_rc(p, -errno, 0, "cannot find the folder of the file: %s",
                 strerror(errno));
    goto out;
  }
  size_t n = strlen(real) + strlen(*path) + 2;
  char *joined = malloc(n);
  if (!joined) {
    rc = fail_nomem(p);
    goto out;
  }
  snprintf(joined, n, "%s%s%s", real, strcmp(real, "/") ? "/" : "", *path);
  free(*path);
  *path = joined;
out:
  free(real);
  free(dir);
  return rc;
}

/* The XMPP server's domain for a gateway without xmpp_domain: its own
 * domain minus the first label (irc.example.org -> example.org). */
static char *parent_domain(const char *domain) {
  const char *dot = strchr(domain, '.');
  return strdup(dot && dot[1] ? dot + 1 : domain);
}

static int finish(parser *p) {
  bf_conf *conf = p->conf;
  if (end_section(p) < 0)
    return p->rc;
  if (conf->n_gateways == 0)
    return fail(p, 0,
                "no gateway section; add one, e.g. [echo] with transport = "
                "echo, domain = echo.example.org and secret = …");
  if (conf->reconnect_min_s > conf->reconnect_max_s) {
    unsigned line = p->core_key_line[K_RECONNECT_MAX]
                        ? p->core_key_line[K_RECONNECT_MAX]
                        : p->core_key_line[K_RECONNECT_MIN];
    return fail(p, line,
                "reconnect_min (%us) is above reconnect_max (%us); lower "
                "reconnect_min or raise reconnect_max",
                conf->reconnect_min_s, conf->reconnect_max_s);
  }
  if (conf->write_queue_max < conf->max_stanza_size) {
    unsigned line = p->core_key_line[K_WRITE_QUEUE_MAX]
                        ? p->core_key_line[K_WRITE_QUEUE_MAX]
                        : p->core_key_line[K_MAX_STANZA_SIZE];
    return fail(p, line,
                "write_queue_max (%zu) is below max_stanza_size (%zu): one "
                "stanza would not fit; raise write_queue_max",
                conf->write_queue_max, conf->max_stanza_size);
  }
  if (resolve_path(p, &conf->database) < 0 ||
      resolve_path(p, &conf->log_file) < 0 ||
      resolve_path(p, &conf->modules_dir) < 0)
    return p->rc;
  for (size_t i = 0; i < conf->n_gateways; i++) {
    bf_conf_gateway *gw = &conf->gateways[i];
    if (!gw->server && set_string(p, &gw->server, conf->server) < 0)
      return p->rc;
    if (!gw->port)
      gw->port = conf->port;
    if (!gw->message_ids)
      gw->message_ids = 10000;
    if (!gw->xmpp_domain) {
      gw->xmpp_domain = conf->xmpp_domain ? strdup(conf->xmpp_domain)
                                          : parent_domain(gw->domain);
      if (!gw->xmpp_domain)
        return fail_nomem(p);
    }
    /* By default the gateway serves the users of its XMPP server. */
    if (!gw->n_allowed && !gw->allow_all) {
      gw->allowed = calloc(2, sizeof *gw->allowed);
      if (!gw->allowed || !(gw->allowed[0] = strdup(gw->xmpp_domain)))
        return fail_nomem(p);
      gw->n_allowed = 1;
    }
  }
  return 0;
}

static int set_defaults(bf_conf *conf, const char *path) {
  conf->path = strdup(path);
  conf->server = strdup("127.0.0.1");
  conf->port = 5347;
  conf->database = strdup("babelfish.db");
  conf->admins = calloc(1, sizeof *conf->admins);
  conf->log_level = BF_LOG_INFO;
  conf->modules_dir = strdup(BF_MODULES_DIR);
  conf->max_stanza_size = 512 * 1024;
  conf->max_depth = 64;
  conf->write_queue_max = 8 * 1024 * 1024;
  conf->keepalive_s = 60;
  conf->ping_interval_s = 120;
  conf->ping_timeout_s = 60;
  conf->reconnect_min_s = 1;
  conf->reconnect_max_s = 60;
  conf->probe_timeout_s = 30;
  if (!conf->path || !conf->server || !conf->database || !conf->admins ||
      !conf->modules_dir)
    return BF_ENOMEM;
  return 0;
}

int bf__conf_load(bf_conf *conf, const char *path, char *err, size_t err_size) {
  int rc = 0;
  parser *p = NULL;
  memset(conf, 0, sizeof *conf);
  if (err && err_size)
    err[0] = '\0';
  if ((rc = set_defaults(conf, path)) < 0) {
    if (err && err_size)
      snprintf(err, err_size, "%s: out of memory", path);
    goto out;
  }
  /* The parser holds a line buffer: on the heap, not the stack. */
  p = calloc(1, sizeof *p);
  if (!p) {
    rc = BF_ENOMEM;
    if (err && err_size)
      snprintf(err, err_size, "%s: out of memory", path);
    goto out;
  }
  p->conf = conf;
  p->err = err;
  p->err_size = err_size;
  p->file = fopen(path, "r");
  if (!p->file) {
    rc = fail_rc(p, -errno, 0,
                 "cannot open the configuration file: %s; check the path",
                 strerror(errno));
    goto out;
  }
  int line = ini_parse_stream(reader, p, handler, p);
  /* inih's own verdict counts if it found a line it could not parse
   * before the error the reader or the handler recorded, if any. */
  if (line > 0 && (!p->rc || (unsigned)line < p->err_line)) {
    p->rc = 0;
    syntax_error(p, (unsigned)line);
  } else if (line == -2) {
    fail_nomem(p);
  }
  if (!p->rc)
    finish(p);
  rc = p->rc;
out:
  if (p && p->file)
    fclose(p->file);
  free(p);
  if (rc < 0)
    bf__conf_free(conf);
  return rc;
}

void bf__conf_free(bf_conf *conf) {
  if (!conf)
    return;
  for (size_t i = 0; i < conf->n_gateways; i++) {
    bf_conf_gateway *gw = &conf->gateways[i];
    for (size_t j = 0; j < gw->n_entries; j++) {
      free(gw->entries[j].key);
      free(gw->entries[j].value);
    }
    free(gw->entries);
    free(gw->section);
    free(gw->transport);
    free(gw->domain);
    free(gw->secret);
    free(gw->server);
    free(gw->xmpp_domain);
    for (size_t j = 0; j < gw->n_allowed; j++)
      free(gw->allowed[j]);
    free(gw->allowed);
  }
  free(conf->gateways);
  for (size_t i = 0; i < conf->n_admins; i++)
    free(conf->admins[i]);
  free(conf->admins);
  free(conf->path);
  free(conf->server);
  free(conf->database);
  free(conf->http);
  free(conf->log_file);
  free(conf->modules_dir);
  free(conf->xmpp_domain);
  memset(conf, 0, sizeof *conf);
}

const char *bf__conf_get(const bf_conf_gateway *gw, const char *key) {
  for (size_t i = 0; i < gw->n_entries; i++) {
    if (!strcmp(gw->entries[i].key, key))
      return gw->entries[i].value;
  }
  return NULL;
}

unsigned bf__conf_line(const bf_conf_gateway *gw, const char *key) {
  for (size_t i = 0; i < gw->n_entries; i++) {
    if (!strcmp(gw->entries[i].key, key))
      return gw->entries[i].line;
  }
  return gw->line;
}
