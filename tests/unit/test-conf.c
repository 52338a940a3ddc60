/* Unit tests: the configuration file (src/conf.c). */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "module.h"
#include "log.h"
#include "support.h"

#ifndef BF_MODULES_DIR
#define BF_MODULES_DIR "/usr/lib/babelfish"
#endif

#define MINIMAL "[echo]\ntransport = echo\ndomain = echo.example.org\nsecret = s\n"

typedef struct fixture {
  char *dir;
  char *path;
  bf_conf conf;
  char err[512];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = bf_test_tmpdir("test-conf");
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  bf__conf_free(&f->conf);
  if (f->path)
    unlink(f->path);
  free(f->path);
  rmdir(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

/* Writes text (len bytes, which may include NULs) as the config file and
 * loads it. */
static int load_bytes(fixture *f, const char *text, size_t len) {
  bf__conf_free(&f->conf);
  if (!f->path) {
    size_t n = strlen(f->dir) + 32;
    f->path = malloc(n);
    assert_non_null(f->path);
    snprintf(f->path, n, "%s/babelfish.conf", f->dir);
  }
  FILE *file = fopen(f->path, "w");
  assert_non_null(file);
  assert_int_equal(fwrite(text, 1, len, file), len);
  assert_int_equal(fclose(file), 0);
  f->err[0] = '\0';
  return bf__conf_load(&f->conf, f->path, f->err, sizeof f->err);
}

static int load(fixture *f, const char *text) {
  return load_bytes(f, text, strlen(text));
}

static char *in_dir(const fixture *f, const char *name) {
  char *real = realpath(f->dir, NULL);
  assert_non_null(real);
  size_t n = strlen(real) + strlen(name) + 2;
  char *p = malloc(n);
  assert_non_null(p);
  snprintf(p, n, "%s/%s", real, name);
  free(real);
  return p;
}

/* ---- valid files ---------------------------------------------------------- */

static void test_all_keys(void **state) {
  fixture *f = *state;
  int rc = load(f,
                "# every key\n"
                "[babelfish]\n"
                "server = xmpp.example.org\n"
                "port = 5348\n"
                "database = /var/lib/babelfish/bf.db\n"
                "http = [::1]:8080\n"
                "admins = Alice@Example.org, bob@example.org  carol@example.net\n"
                "log_level = debug\n"
                "log_file = /var/log/babelfish.log\n"
                "modules_dir = /opt/bf/modules\n"
                "xmpp_domain = Example.ORG\n"
                "max_stanza_size = 256K\n"
                "max_depth = 32\n"
                "write_queue_max = 2M\n"
                "keepalive_interval = 30s\n"
                "ping_interval = 2m\n"
                "ping_timeout = 45\n"
                "reconnect_min = 2\n"
                "reconnect_max = 1h\n"
                "\n"
                "[irc]\n"
                "transport = irc\n"
                "domain = IRC.Example.org.\n"
                "secret = s3cret\n"
                "irc_server = irc.libera.chat\n"
                "server = 10.0.0.5\n"
                "port = 5349\n"
                "xmpp_domain = other.example\n"
                "\n"
                "[hooks]\n"
                "domain = hooks.example.org\n"
                "transport = webhook\n"
                "secret = x\n"
                "token = abc\n");
  assert_int_equal(rc, 0);
  bf_conf *c = &f->conf;
  assert_string_equal(c->path, f->path);
  assert_string_equal(c->server, "xmpp.example.org");
  assert_int_equal(c->port, 5348);
  assert_string_equal(c->database, "/var/lib/babelfish/bf.db");
  assert_string_equal(c->http, "[::1]:8080");
  assert_int_equal(c->n_admins, 3);
  assert_string_equal(c->admins[0], "alice@example.org");
  assert_string_equal(c->admins[1], "bob@example.org");
  assert_string_equal(c->admins[2], "carol@example.net");
  assert_null(c->admins[3]);
  assert_int_equal(c->log_level, BF_LOG_DEBUG);
  assert_string_equal(c->log_file, "/var/log/babelfish.log");
  assert_string_equal(c->modules_dir, "/opt/bf/modules");
  assert_string_equal(c->xmpp_domain, "example.org");
  assert_int_equal(c->max_stanza_size, 256 * 1024);
  assert_int_equal(c->max_depth, 32);
  assert_int_equal(c->write_queue_max, 2 * 1024 * 1024);
  assert_int_equal(c->keepalive_s, 30);
  assert_int_equal(c->ping_interval_s, 120);
  assert_int_equal(c->ping_timeout_s, 45);
  assert_int_equal(c->reconnect_min_s, 2);
  assert_int_equal(c->reconnect_max_s, 3600);

  assert_int_equal(c->n_gateways, 2);
  bf_conf_gateway *irc = &c->gateways[0];
  assert_string_equal(irc->section, "irc");
  assert_int_equal(irc->line, 21);
  assert_string_equal(irc->transport, "irc");
  assert_string_equal(irc->domain, "irc.example.org");
  assert_string_equal(irc->secret, "s3cret");
  assert_string_equal(irc->server, "10.0.0.5");
  assert_int_equal(irc->port, 5349);
  assert_string_equal(irc->xmpp_domain, "other.example");
  /* every key, core ones included, in file order with its line */
  static const char *const keys[] = {"transport", "domain", "secret",
                                     "irc_server", "server", "port",
                                     "xmpp_domain"};
  assert_int_equal(irc->n_entries, 7);
  for (size_t i = 0; i < 7; i++) {
    assert_string_equal(irc->entries[i].key, keys[i]);
    assert_int_equal(irc->entries[i].line, 22 + i);
  }
  assert_string_equal(bf__conf_get(irc, "irc_server"), "irc.libera.chat");
  assert_int_equal(bf__conf_line(irc, "irc_server"), 25);
  assert_null(bf__conf_get(irc, "token"));
  assert_int_equal(bf__conf_line(irc, "token"), 21);

  bf_conf_gateway *hooks = &c->gateways[1];
  assert_string_equal(hooks->section, "hooks");
  assert_int_equal(hooks->line, 30);
  assert_string_equal(hooks->transport, "webhook");
  /* defaults from [babelfish] */
  assert_string_equal(hooks->server, "xmpp.example.org");
  assert_int_equal(hooks->port, 5348);
  assert_string_equal(hooks->xmpp_domain, "example.org");
  assert_string_equal(bf__conf_get(hooks, "token"), "abc");
  assert_int_equal(bf__conf_line(hooks, "token"), 34);
  assert_int_equal(bf__conf_line(hooks, "domain"), 31);
}

static void test_defaults(void **state) {
  fixture *f = *state;
  assert_int_equal(load(f, MINIMAL
                        "[gw2]\ntransport = echo\ndomain = localhost\nsecret = t\n"
                        "[gw3]\ntransport = echo\ndomain = a.b.c.example\nsecret = u\n"),
                   0);
  bf_conf *c = &f->conf;
  char *db = in_dir(f, "babelfish.db");
  assert_string_equal(c->server, "127.0.0.1");
  assert_int_equal(c->port, 5347);
  assert_string_equal(c->database, db);
  assert_null(c->http);
  assert_non_null(c->admins);
  assert_null(c->admins[0]);
  assert_int_equal(c->n_admins, 0);
  assert_int_equal(c->log_level, BF_LOG_INFO);
  assert_null(c->log_file);
  assert_string_equal(c->modules_dir, BF_MODULES_DIR);
  assert_null(c->xmpp_domain);
  assert_int_equal(c->max_stanza_size, 524288);
  assert_int_equal(c->max_depth, 64);
  assert_int_equal(c->write_queue_max, 8 * 1024 * 1024);
  assert_int_equal(c->keepalive_s, 60);
  assert_int_equal(c->ping_interval_s, 120);
  assert_int_equal(c->ping_timeout_s, 60);
  assert_int_equal(c->reconnect_min_s, 1);
  assert_int_equal(c->reconnect_max_s, 60);
  assert_int_equal(c->probe_timeout_s, 30);
  assert_int_equal(c->n_gateways, 3);
  /* a gateway serves its XMPP server's users; 10000 message ids */
  assert_int_equal(c->gateways[0].n_allowed, 1);
  assert_string_equal(c->gateways[0].allowed[0], "example.org");
  assert_null(c->gateways[0].allowed[1]);
  assert_false(c->gateways[0].allow_all);
  assert_int_equal(c->gateways[0].message_ids, 10000);
  assert_string_equal(c->gateways[0].server, "127.0.0.1");
  assert_int_equal(c->gateways[0].port, 5347);
  /* the gateway's domain minus its first label; one label stays as is */
  assert_string_equal(c->gateways[0].xmpp_domain, "example.org");
  assert_string_equal(c->gateways[1].xmpp_domain, "localhost");
  assert_string_equal(c->gateways[2].xmpp_domain, "b.c.example");
  free(db);

  /* allowed: domains, bare JIDs (normalised), "*" */
  assert_int_equal(load(f, MINIMAL "allowed = Example.NET, bob@Other.org *\n"
                                   "message_ids = 64K\n"
                                   "[babelfish]\nprobe_timeout = 2m\n"),
                   0);
  assert_int_equal(f->conf.gateways[0].n_allowed, 2);
  assert_string_equal(f->conf.gateways[0].allowed[0], "example.net");
  assert_string_equal(f->conf.gateways[0].allowed[1], "bob@other.org");
  assert_true(f->conf.gateways[0].allow_all);
  assert_int_equal(f->conf.gateways[0].message_ids, 65536);
  assert_int_equal(f->conf.probe_timeout_s, 120);

  /* [babelfish] xmpp_domain wins over the derived one, even when the
   * section comes after the gateways */
  assert_int_equal(load(f, MINIMAL "[babelfish]\nxmpp_domain = xmpp.test\n"), 0);
  assert_string_equal(f->conf.gateways[0].xmpp_domain, "xmpp.test");
}

static void test_comments_and_layout(void **state) {
  fixture *f = *state;
  int rc = load(f,
                "\xef\xbb\xbf; a comment\n"
                "# another\n"
                "   ; indented comment\n"
                "[babelfish]   ; the core\n"
                "server = 127.0.0.1          ; XMPP server's component listener\n"
                "port = 5347\t; tab before the comment\n"
                "\n"
                "[echo]\n"
                "transport = echo\n"
                "domain = echo.localhost\n"
                "secret = a;b\n"
                "note = x # not a comment\n"
                "   indented = key, not a continuation\n"
                "url = http://h/p?a=1;b=2 ; the ';' inside stays\n"
                "empty =\n"
                "crlf = yes\r\n");
  assert_int_equal(rc, 0);
  bf_conf_gateway *gw = &f->conf.gateways[0];
  assert_string_equal(f->conf.server, "127.0.0.1");
  assert_int_equal(f->conf.port, 5347);
  assert_string_equal(gw->secret, "a;b");
  assert_string_equal(bf__conf_get(gw, "note"), "x # not a comment");
  assert_string_equal(bf__conf_get(gw, "indented"), "key, not a continuation");
  assert_int_equal(bf__conf_line(gw, "indented"), 13);
  assert_string_equal(bf__conf_get(gw, "url"), "http://h/p?a=1;b=2");
  assert_string_equal(bf__conf_get(gw, "empty"), "");
  assert_string_equal(bf__conf_get(gw, "crlf"), "yes");
  assert_int_equal(bf__conf_line(gw, "crlf"), 16);
}

static void test_paths(void **state) {
  fixture *f = *state;
  assert_int_equal(load(f, "[babelfish]\ndatabase = data/bf.db\n"
                           "log_file = bf.log\nmodules_dir = mods\n" MINIMAL),
                   0);
  char *db = in_dir(f, "data/bf.db");
  char *log = in_dir(f, "bf.log");
  char *mods = in_dir(f, "mods");
  assert_string_equal(f->conf.database, db);
  assert_string_equal(f->conf.log_file, log);
  assert_string_equal(f->conf.modules_dir, mods);

  /* absolute paths and SQLite's :memory: are kept as they are */
  assert_int_equal(load(f, "[babelfish]\ndatabase = /srv/x.db\n" MINIMAL), 0);
  assert_string_equal(f->conf.database, "/srv/x.db");
  assert_int_equal(load(f, "[babelfish]\ndatabase = :memory:\n" MINIMAL), 0);
  assert_string_equal(f->conf.database, ":memory:");

  /* a config named relative to the working directory still gives an
   * absolute database path */
  assert_int_equal(load(f, "[babelfish]\ndatabase = data/bf.db\n" MINIMAL), 0);
  bf__conf_free(&f->conf);
  char *cwd = getcwd(NULL, 0);
  assert_non_null(cwd);
  assert_int_equal(chdir(f->dir), 0);
  int rc = bf__conf_load(&f->conf, "babelfish.conf", f->err, sizeof f->err);
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(rc, 0);
  assert_string_equal(f->conf.database, db);
  assert_string_equal(f->conf.path, "babelfish.conf");
  free(cwd);
  free(db);
  free(log);
  free(mods);
}

/* ---- errors --------------------------------------------------------------- */

typedef struct error_case {
  const char *text;
  unsigned line;    /* 0: "FILE: message" */
  const char *says; /* a part of the message */
} error_case;

#define GW "[echo]\ntransport = echo\ndomain = echo.example.org\nsecret = s\n"

static const error_case error_cases[] = {
    /* missing required keys cite the section header */
    {"[babelfish]\n\n[irc]\ntransport = irc\ndomain = irc.example.org\n", 3,
     "[irc] is missing required key 'secret'; add secret ="},
    {GW "[irc]\ndomain = irc.example.org\nsecret = s\n", 5,
     "[irc] is missing required key 'transport'"},
    {"[irc]\ntransport = irc\nsecret = s\n" GW, 1,
     "[irc] is missing required key 'domain'"},
    {GW "[empty]\n", 5, "[empty] is missing required key 'transport'"},
    {"", 0, "no gateway section; add one, e.g. [echo]"},
    {"[babelfish]\nport = 5347\n", 0, "no gateway section"},
    /* unknown core keys */
    {"[babelfish]\nserver = h\nlevel = debug\n" GW, 3,
     "unknown key 'level' in [babelfish]; the keys there are server"},
    {"[babelfish]\nsecret = x\n" GW, 2,
     "unknown key 'secret' in [babelfish]; it belongs in a gateway section"},
    /* duplicates name the second line */
    {"[babelfish]\nport = 1\nport = 2\n" GW, 3,
     "duplicate key 'port' in [babelfish] (first set on line 2)"},
    {GW "token = a\n\ntoken = b\n", 7,
     "duplicate key 'token' in [echo] (first set on line 5)"},
    {GW "\n[echo]\n", 6, "duplicate section [echo] (first on line 1)"},
    {"[babelfish]\n" GW "[babelfish]\n", 6,
     "duplicate section [babelfish] (first on line 1)"},
    {GW "[b]\ntransport = echo\ndomain = ECHO.example.org.\nsecret = t\n", 7,
     "domain 'echo.example.org' is already used by [echo] on line 3"},
    /* values */
    {"[babelfish]\nport = 0\n" GW, 2, "port '0' is not a port number; use 1 to 65535"},
    {"[babelfish]\nport = 65536\n" GW, 2, "port '65536' is not a port number"},
    {"[babelfish]\nport = +80\n" GW, 2, "port '+80' is not a port number"},
    {GW "port = 80x\n", 5, "port '80x' is not a port number"},
    {"[babelfish]\nmax_stanza_size = 0\n" GW, 2,
     "max_stanza_size '0' is not a size"},
    {"[babelfish]\nmax_stanza_size = 12X\n" GW, 2,
     "max_stanza_size '12X' is not a size"},
    {"[babelfish]\nwrite_queue_max = 99999999999999999999\n" GW, 2,
     "write_queue_max '99999999999999999999' is not a size"},
    {"[babelfish]\nmax_stanza_size = 4095\n" GW, 2,
     "max_stanza_size 4095 is too small; use at least 4096"},
    {"[babelfish]\nmax_stanza_size = 1M\nwrite_queue_max = 512K\n" GW, 3,
     "write_queue_max (524288) is below max_stanza_size (1048576)"},
    {"[babelfish]\nmax_stanza_size = 16M\n" GW, 2,
     "write_queue_max (8388608) is below max_stanza_size (16777216)"},
    {"[babelfish]\nmax_depth = 2\n" GW, 2, "max_depth '2' is out of range"},
    {"[babelfish]\nping_interval = 5x\n" GW, 2,
     "ping_interval '5x' is not a duration"},
    {"[babelfish]\nkeepalive_interval = 0\n" GW, 2,
     "keepalive_interval '0' is not a duration"},
    {"[babelfish]\nreconnect_min = 2m\n\nreconnect_max = 30s\n" GW, 4,
     "reconnect_min (120s) is above reconnect_max (30s)"},
    {"[babelfish]\nreconnect_min = 2m\n" GW, 2,
     "reconnect_min (120s) is above reconnect_max (60s)"},
    {"[babelfish]\nlog_level = verbose\n" GW, 2,
     "log_level 'verbose' is not a level; use error, warn, info or debug"},
    {"[babelfish]\nadmins = ok@example.org example.org\n" GW, 2,
     "admin 'example.org' is not a bare JID"},
    {"[babelfish]\nadmins = a@example.org/phone\n" GW, 2,
     "admin 'a@example.org/phone' is not a bare JID"},
    {"[babelfish]\nadmins = a@@example.org\n" GW, 2, "admin 'a@@example.org'"},
    {GW "allowed = example.org/res\n", 5,
     "allowed 'example.org/res' is neither a domain nor a bare JID"},
    {GW "allowed = a@@b\n", 5, "allowed 'a@@b'"},
    {GW "allowed =\n", 5, "'allowed' in [echo] is empty"},
    {GW "message_ids = 3\n", 5, "message_ids '3' is not a count"},
    {GW "message_ids = lots\n", 5, "message_ids 'lots' is not a count"},
    {"[babelfish]\nprobe_timeout = 0\n" GW, 2,
     "probe_timeout '0' is not a duration"},
    {"[babelfish]\nhttp = 8080\n" GW, 2, "http '8080' is not a listening address"},
    {"[babelfish]\nhttp = ::1:8080\n" GW, 2, "use HOST:PORT or [IPv6]:PORT"},
    {"[babelfish]\nhttp = [::1]:0\n" GW, 2, "http '[::1]:0'"},
    {"[babelfish]\nserver = bad host\n" GW, 2,
     "server 'bad host' is not a host name or IP address"},
    {"[babelfish]\nxmpp_domain = a..b\n" GW, 2,
     "xmpp_domain 'a..b' is not a valid domain"},
    {"[babelfish]\nserver =\n" GW, 2, "'server' has no value"},
    {"[x]\ntransport = echo\ndomain = bad domain\nsecret = s\n", 3,
     "domain 'bad domain' is not a valid domain"},
    {"[x]\ntransport = echo\ndomain = me@x.org\nsecret = s\n", 3,
     "domain 'me@x.org' is a JID, not a domain"},
    {"[x]\ntransport = echo\ndomain = x.org\nsecret =\n", 4,
     "'secret' in [x] is empty"},
    {"[x]\ntransport = echo\ndomain = x.org\nsecret = s\nport =\n", 5,
     "'port' in [x] has no value"},
    /* syntax */
    {GW "just words\n", 5, "syntax error (expected key = value or [section])"},
    {GW "[unclosed\n", 5, "syntax error"},
    {GW "[x] trailing\n", 5, "syntax error"},
    {"[babelfish]\nserver: 127.0.0.1\n" GW, 2, "syntax error"},
    {GW "  continued\n", 5, "syntax error"},
    {GW "= value\n", 5, "a key is missing before '='"},
    {GW "bad key = 1\n", 5, "key 'bad key' is not valid"},
    {"server = 127.0.0.1\n" GW, 1, "a key before any section"},
    {GW "[a b]\n", 5, "section name [a b] is not valid"},
    {GW "[]\n", 5, "section name [] is not valid"},
    {GW "[babelfish]\nbogus = 1\n", 6, "unknown key 'bogus'"},
};

static void check_error(fixture *f, size_t i, int rc, unsigned line,
                        const char *says) {
  char prefix[600];
  if (line)
    snprintf(prefix, sizeof prefix, "%s:%u: ", f->path, line);
  else
    snprintf(prefix, sizeof prefix, "%s: ", f->path);
  if (rc != BF_EINVAL)
    fail_msg("case %zu: rc %d, expected BF_EINVAL (%s)", i, rc, f->err);
  if (strncmp(f->err, prefix, strlen(prefix)))
    fail_msg("case %zu: '%s' does not start with '%s'", i, f->err, prefix);
  if (!strstr(f->err, says))
    fail_msg("case %zu: '%s' does not say '%s'", i, f->err, says);
  /* a failed load leaves nothing behind */
  assert_null(f->conf.gateways);
  assert_null(f->conf.path);
}

static void test_errors(void **state) {
  fixture *f = *state;
  for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
    int rc = load(f, error_cases[i].text);
    check_error(f, i, rc, error_cases[i].line, error_cases[i].says);
  }
}

static void test_long_and_binary_lines(void **state) {
  fixture *f = *state;
  char text[1200];
  char value[1000];

  /* a long comment is fine; a long value is an error, not cut short */
  memset(value, 'c', sizeof value - 1);
  value[sizeof value - 1] = '\0';
  snprintf(text, sizeof text, GW "; %s\nok = 1\n", value);
  assert_int_equal(load(f, text), 0);
  assert_string_equal(bf__conf_get(&f->conf.gateways[0], "ok"), "1");

  snprintf(text, sizeof text, GW "long = %.*s\n", 300, value);
  check_error(f, 0, load(f, text), 5, "the line is too long");
  /* …but a long inline comment after a short value is not */
  snprintf(text, sizeof text, GW "short = v ; %.*s\n", 300, value);
  assert_int_equal(load(f, text), 0);
  assert_string_equal(bf__conf_get(&f->conf.gateways[0], "short"), "v");
  /* the longest key line inih can hold (197 characters) */
  snprintf(text, sizeof text, GW "k = %.*s\n", 193, value);
  assert_int_equal(load(f, text), 0);
  assert_int_equal(strlen(bf__conf_get(&f->conf.gateways[0], "k")), 193);
  snprintf(text, sizeof text, GW "k = %.*s\n", 194, value);
  check_error(f, 0, load(f, text), 5, "too long");

  static const char nul[] = GW "a = x\0y\n";
  check_error(f, 0, load_bytes(f, nul, sizeof nul - 1), 5, "NUL byte");
}

static void test_secret_never_shown(void **state) {
  fixture *f = *state;
  static const char *const texts[] = {
      "[x]\ntransport = echo\ndomain = x.org\nsecret = Sup3rS3cret\n"
      "secret = Sup3rS3cret\n",
      "[x]\ntransport = echo\ndomain = x.org\nsecret Sup3rS3cret\n",
      "[x]\ntransport = echo\ndomain = x.org\nsecret: Sup3rS3cret\n",
      "[x]\ntransport = echo\ndomain = x.org\n  secret=Sup3rS3cret\nport = x\n",
      "[babelfish]\nsecret = Sup3rS3cret\n",
      "[x]\ntransport = echo\ndomain = x.org\nsecret = Sup3rS3cret"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
      "Sup3rS3cret\n",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    int rc = load(f, texts[i]);
    assert_int_equal(rc, BF_EINVAL);
    if (strstr(f->err, "Sup3rS3cret"))
      fail_msg("case %zu shows the secret: %s", i, f->err);
  }
}

static void test_missing_file(void **state) {
  fixture *f = *state;
  char path[600];
  snprintf(path, sizeof path, "%s/nope.conf", f->dir);
  int rc = bf__conf_load(&f->conf, path, f->err, sizeof f->err);
  assert_int_equal(rc, -ENOENT);
  assert_non_null(strstr(f->err, path));
  assert_non_null(strstr(f->err, strerror(ENOENT)));
  assert_null(f->conf.path);

  /* a folder opens but cannot be read */
  rc = bf__conf_load(&f->conf, f->dir, f->err, sizeof f->err);
  assert_int_equal(rc, -EISDIR);
  assert_non_null(strstr(f->err, strerror(EISDIR)));
}

/* The shipped example lists every key with its default value. */
static void test_example_file(void **state) {
  fixture *f = *state;
  char path[PATH_MAX];
  const char *src = getenv("BF_SOURCE_DIR");
  if (src && *src) {
    snprintf(path, sizeof path, "%s/conf/babelfish.conf.example", src);
  } else {
    /* tests/unit/test-conf.c -> the source tree */
    snprintf(path, sizeof path, "%s", __FILE__);
    char *cut = strstr(path, "tests/unit/test-conf.c");
    assert_non_null(cut);
    snprintf(cut, sizeof path - (size_t)(cut - path), "conf/babelfish.conf.example");
  }
  bf_conf example;
  int rc = bf__conf_load(&example, path, f->err, sizeof f->err);
  if (rc)
    fail_msg("%s", f->err);
  assert_int_equal(load(f, MINIMAL), 0);
  bf_conf *d = &f->conf;
  assert_string_equal(example.server, d->server);
  assert_int_equal(example.port, d->port);
  assert_null(example.http);
  assert_int_equal(example.n_admins, 0);
  assert_int_equal(example.log_level, d->log_level);
  assert_null(example.log_file);
  assert_null(example.xmpp_domain);
  assert_int_equal(example.max_stanza_size, d->max_stanza_size);
  assert_int_equal(example.max_depth, d->max_depth);
  assert_int_equal(example.write_queue_max, d->write_queue_max);
  assert_int_equal(example.keepalive_s, d->keepalive_s);
  assert_int_equal(example.ping_interval_s, d->ping_interval_s);
  assert_int_equal(example.ping_timeout_s, d->ping_timeout_s);
  assert_int_equal(example.reconnect_min_s, d->reconnect_min_s);
  assert_int_equal(example.reconnect_max_s, d->reconnect_max_s);
  assert_int_equal(example.probe_timeout_s, d->probe_timeout_s);
  const char *base = strrchr(example.database, '/');
  assert_non_null(base);
  assert_string_equal(base, "/babelfish.db");
  assert_true(example.n_gateways >= 1);
  assert_string_equal(example.gateways[0].transport, "echo");
  bf__conf_free(&example);
}

/* ---- value parsers -------------------------------------------------------- */

static void test_parse_size(void **state) {
  (void)state;
  static const struct {
    const char *in;
    size_t out;
  } good[] = {
      {"1", 1},           {"4096", 4096},           {"512K", 524288},
      {"512k", 524288},   {"8M", 8388608},          {"1G", 1073741824},
      {"007", 7},
  };
  static const char *const bad[] = {
      "", "0", "0K", "-1", "+1", " 1", "1 ", "1KB", "K", "1.5M", "12X",
      "99999999999999999999", "18446744073709551615K", "17179869184G",
  };
  size_t v;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    v = 0;
    assert_int_equal(bf__conf_parse_size(good[i].in, &v), 0);
    assert_int_equal(v, good[i].out);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (bf__conf_parse_size(bad[i], &v) != BF_EINVAL)
      fail_msg("'%s' was accepted as a size", bad[i]);
  }
  assert_int_equal(bf__conf_parse_size("18446744073709551615", &v), 0);
  assert_true(v == SIZE_MAX);
}

static void test_parse_seconds(void **state) {
  (void)state;
  static const struct {
    const char *in;
    unsigned out;
  } good[] = {
      {"0", 0}, {"30", 30}, {"5s", 5}, {"2m", 120}, {"1h", 3600},
      {"1d", 86400}, {"4294967295", 4294967295u},
  };
  static const char *const bad[] = {
      "", "s", "-5", "5 s", "5S", "5x", "1.5m", "4294967296", "71582789m",
      "5ss",
  };
  unsigned v;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    v = 99;
    assert_int_equal(bf__conf_parse_seconds(good[i].in, &v), 0);
    assert_int_equal(v, good[i].out);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (bf__conf_parse_seconds(bad[i], &v) != BF_EINVAL)
      fail_msg("'%s' was accepted as a duration", bad[i]);
  }
}

/* Transports' yes/no keys (irc_tls_verify, echo's durable) all read
 * through bf_config_bool. */
static void test_config_bool(void **state) {
  (void)state;
  static const char *const yes[] = {"yes", "YES", "true", "On", "1"};
  static const char *const no[] = {"no", "False", "off", "OFF", "0"};
  for (size_t i = 0; i < 5; i++) {
    bool v = false;
    assert_int_equal(bf_config_bool(yes[i], &v), 0);
    assert_true(v);
    assert_int_equal(bf_config_bool(no[i], &v), 0);
    assert_false(v);
  }
  bool v = true;
  assert_int_equal(bf_config_bool(NULL, &v), BF_ENOENT);
  assert_true(v); /* the default is kept */
  assert_int_equal(bf_config_bool("maybe", &v), BF_EINVAL);
  assert_int_equal(bf_config_bool("", &v), BF_EINVAL);
  assert_int_equal(bf_config_bool("yes ", &v), BF_EINVAL);
  assert_true(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_bool),
      cmocka_unit_test_setup_teardown(test_all_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_comments_and_layout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_long_and_binary_lines, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secret_never_shown, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_example_file, setup, teardown),
      cmocka_unit_test(test_parse_size),
      cmocka_unit_test(test_parse_seconds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
