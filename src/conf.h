/* Private: the configuration file (INI, read with inih).
 *
 * [babelfish] holds the core keys; every other section is one gateway.
 * Errors are reported as "FILE:LINE: message" (the line of the offending
 * key, or of the section header for a missing key). This file checks the
 * core keys only; module.c checks each gateway's transport keys against
 * its module, using bf__conf_line to cite lines. */
#ifndef BF_CONF_H
#define BF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bf_conf_entry {
  char *key;
  char *value;
  unsigned line;
} bf_conf_entry;

typedef struct bf_conf_gateway {
  char *section;
  unsigned line;            /* line of the [section] header */
  /* core keys */
  char *transport;          /* required */
  char *domain;             /* required; a valid domain (nameprep), unique */
  char *secret;             /* required; never logged */
  char *server;             /* default: [babelfish] server */
  unsigned port;            /* default: [babelfish] port */
  char *xmpp_domain;        /* default: [babelfish] xmpp_domain, else domain
                               minus its first label */
  /* `allowed`: who may use the gateway: bare JIDs and domains
   * (normalised), NULL-terminated; allow_all for "*". Default: just
   * xmpp_domain. Admins are always allowed. */
  char **allowed;
  size_t n_allowed;
  bool allow_all;
  unsigned message_ids;     /* message-id map entries kept; default 10000 */
  /* every key of the section, in file order, core keys included */
  bf_conf_entry *entries;
  size_t n_entries;
} bf_conf_gateway;

typedef struct bf_conf {
  char *path;               /* as given */
  char *server;             /* default 127.0.0.1 */
  unsigned port;            /* default 5347 */
  char *database;           /* default babelfish.db; relative paths are
                               resolved against the config file's folder */
  char *http;               /* NULL or host:port (validated) */
  char **admins;            /* bare JIDs (normalised), NULL-terminated */
  size_t n_admins;
  int log_level;            /* default BF_LOG_INFO */
  char *log_file;           /* NULL = stderr */
  char *modules_dir;        /* default BF_MODULES_DIR */
  char *xmpp_domain;        /* NULL = per gateway default */
  size_t max_stanza_size;   /* default 524288 (512 KiB); accepts K/M suffix */
  unsigned max_depth;       /* default 64 */
  size_t write_queue_max;   /* default 8 MiB; per connection */
  unsigned keepalive_s;     /* whitespace after this much outbound silence; default 60 */
  unsigned ping_interval_s; /* XEP-0199 ping to the server; default 120 */
  unsigned ping_timeout_s;  /* no answer -> reconnect; default 60 */
  unsigned reconnect_min_s; /* backoff start; default 1 */
  unsigned reconnect_max_s; /* backoff cap; default 60 */
  unsigned probe_timeout_s; /* resources that do not answer the probes
                               after a reconnect are dropped; default 30 */
  bf_conf_gateway *gateways;
  size_t n_gateways;
} bf_conf;

/* Reads and checks path. On error returns BF_EINVAL (or BF_ENOMEM / a
 * negated errno when the file cannot be read) and writes
 * "FILE:LINE: message" (or "FILE: message") to err. conf is always left
 * safe to pass to bf__conf_free. */
int bf__conf_load(bf_conf *conf, const char *path, char *err, size_t err_size);
void bf__conf_free(bf_conf *conf);

/* The value of key in the gateway section, or NULL. Borrowed. */
const char *bf__conf_get(const bf_conf_gateway *gw, const char *key);
/* The line of key in the section, or the section header's line if absent. */
unsigned bf__conf_line(const bf_conf_gateway *gw, const char *key);

/* Helpers shared with modules' checks: parse "123", "512K", "8M" (binary
 * units); a duration in seconds "30", "5s", "2m", "1h". 0 or BF_EINVAL. */
int bf__conf_parse_size(const char *value, size_t *out);
int bf__conf_parse_seconds(const char *value, unsigned *out);

#endif
