/* Per user and IRC server settings (address, nick, server password,
 * SASL, client certificate, NickServ password, after-connection
 * commands, ports, encoding, throttle, realname),
 * kept in the module's own table and edited with the "configure" ad-hoc
 * command on the server's JID (irc.net@GW), as in Biboumi. Passwords are
 * private form fields: stored, never shown back, never logged. The client
 * certificate's private key is stored in the same table and never leaves
 * it but for the TLS layer. */
#include "irc.h"
#include "irc-text.h"
#include "irc-tls.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>

/* Migration 1 of the module's schema (irc.c lists them). */
const char bf_irc_settings_schema[] =
    "CREATE TABLE irc_settings(gateway TEXT NOT NULL, user TEXT NOT NULL,"
    " server TEXT NOT NULL, var TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (gateway, user, server, var)) WITHOUT ROWID;";

static int valid_ports(const char *value, char *err, size_t err_size) {
  unsigned ports[BF_IRC_PORTS_MAX];
  bool tls[BF_IRC_PORTS_MAX];
  if (bf_irc_ports_parse(value, ports, tls, BF_IRC_PORTS_MAX) > 0)
    return 0;
  snprintf(err, err_size, "write ports such as +6697 6667 ('+' = TLS)");
  return BF_EINVAL;
}

static int valid_word(const char *value, char *err, size_t err_size) {
  if (!strpbrk(value, " \t\r\n:!@,"))
    return 0;
  snprintf(err, err_size, "no spaces or :!@, here");
  return BF_EINVAL;
}

static int valid_pin(const char *value, char *err, size_t err_size) {
  size_t hex = 0;
  for (const char *p = value; *p; p++) {
    if (isxdigit((unsigned char)*p))
      hex++;
    else if (*p != ':') {
      hex = 0;
      break;
    }
  }
  if (hex == 64)
    return 0;
  snprintf(err, err_size, "a SHA-256 fingerprint is 64 hex digits, e.g. "
                          "AB:CD:… as openssl x509 -fingerprint -sha256 "
                          "prints it");
  return BF_EINVAL;
}

static int valid_charset(const char *value, char *err, size_t err_size) {
  if (bf_irc_charset_known(value))
    return 0;
  snprintf(err, err_size, "'%.40s' is not a charset this system can convert "
           "(iconv): write e.g. ISO-8859-1, CP1252, KOI8-R, ISO-2022-JP",
           value);
  return BF_EINVAL;
}

static int valid_throttle(const char *value, char *err, size_t err_size) {
  char *end;
  unsigned long rate = strtoul(value, &end, 10);
  if (end != value && !*end && isdigit((unsigned char)value[0]) &&
      rate <= BF_IRC_THROTTLE_MAX)
    return 0;
  snprintf(err, err_size, "lines per second: a number from 0 (no limit) to "
           "%d", BF_IRC_THROTTLE_MAX);
  return BF_EINVAL;
}

static int valid_host(const char *value, char *err, size_t err_size) {
  if (bf_irc_valid_host(value))
    return 0;
  snprintf(err, err_size, "a host name or IP address, e.g. irc.libera.chat");
  return BF_EINVAL;
}

/* One line of the after-connection commands. */
static int valid_raw_line(const char *value, char *err, size_t err_size) {
  if (bf_irc_raw_line_valid(value))
    return 0;
  snprintf(err, err_size, "'%.60s' is not an IRC command: write one per "
           "line as sent to the server, e.g. MODE mynick +R", value);
  return BF_EINVAL;
}

/* The client certificate, its key and its SHA-256 fingerprint (so the
 * configure form shows it without loading libssl): rows of irc_settings
 * that are not form fields (configure never shows or overwrites them). */
#define IDENTITY_CERT "identity_cert"
#define IDENTITY_KEY "identity_key"
#define IDENTITY_FP "identity_fp"
/* The after-connection commands: a text-multi field, stored as one row
 * (its lines joined by '\n'). */
#define AFTER_CONNECT "after_connect"
#define TEXT_OF(x) #x
#define NUMBER_TEXT(x) TEXT_OF(x)

const bf_field bf_irc_settings_fields[] = {
    {.var = "address", .type = BF_FIELD_TEXT_SINGLE, .label = "Address",
     .desc = "Host name or IP to connect to instead of this JID's server "
     "part, e.g. irc.libera.chat for libera@… (also checked against the "
     "TLS certificate)", .max_length = 253, .validate = valid_host},
    {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nickname",
     .desc = "Used when you connect; empty: your nick in the room you join",
     .max_length = 30, .validate = valid_word},
    {.var = "password", .type = BF_FIELD_TEXT_PRIVATE,
     .label = "Server password (PASS)", .max_length = 256},
    {.var = "sasl_user", .type = BF_FIELD_TEXT_SINGLE,
     .label = "SASL account", .desc = "Log in to your services account "
     "(SASL PLAIN) before joining", .max_length = 64,
     .validate = valid_word},
    {.var = "sasl_password", .type = BF_FIELD_TEXT_PRIVATE,
     .label = "SASL password", .max_length = 256},
    {.var = "sasl_external", .type = BF_FIELD_BOOLEAN,
     .label = "Log in with a client certificate (SASL EXTERNAL)",
     .desc = "On TLS ports. babelfish makes the certificate; register its "
     "fingerprint (shown here once made) with the server's services, e.g. "
     "/msg NickServ CERT ADD <fingerprint>",
     .default_value = "0"},
    {.var = "nickserv_password", .type = BF_FIELD_TEXT_PRIVATE,
     .label = "NickServ password",
     .desc = "Sent as IDENTIFY to NickServ once connected, unless SASL "
     "logged you in", .max_length = 256},
    {.var = AFTER_CONNECT, .type = BF_FIELD_TEXT_MULTI,
     .label = "After-connection IRC commands",
     .desc = "Raw IRC commands, one per line, sent once connected (after "
     "NickServ IDENTIFY), before the channels are joined; at most "
     NUMBER_TEXT(BF_IRC_AFTER_CONNECT_MAX) " lines",
     .max_length = BF_IRC_LINE_MAX - 2, .validate = valid_raw_line},
    {.var = "ports", .type = BF_FIELD_TEXT_SINGLE, .label = "Ports",
     .desc = "e.g. +6697 6667 ('+' = TLS); empty: the gateway's",
     .max_length = 64, .validate = valid_ports},
    {.var = "tls_verify", .type = BF_FIELD_BOOLEAN,
     .label = "Verify the TLS certificate",
     .desc = "Against the system's CAs and the server's name",
     .default_value = "1"},
    {.var = "tls_pin", .type = BF_FIELD_TEXT_SINGLE,
     .label = "Trusted certificate (SHA-256 fingerprint)",
     .desc = "For a self-signed server: AB:CD:…; checked instead of the CAs",
     .max_length = 95, .validate = valid_pin},
    {.var = "realname", .type = BF_FIELD_TEXT_SINGLE, .label = "Real name",
     .max_length = 64},
    {.var = "username", .type = BF_FIELD_TEXT_SINGLE, .label = "User name",
     .max_length = 16, .validate = valid_word},
    {.var = "encoding", .type = BF_FIELD_TEXT_SINGLE,
     .label = "Encoding of text that is not UTF-8",
     .desc = "An iconv charset name, e.g. CP1252, KOI8-R",
     .default_value = BF_IRC_ENCODING_DEFAULT, .max_length = 32,
     .validate = valid_charset},
    {.var = "throttle", .type = BF_FIELD_TEXT_SINGLE,
     .label = "Flood control (lines per second)",
     .desc = "0 = no limit; empty: the gateway's", .max_length = 4,
     .validate = valid_throttle},
};
const size_t bf_irc_n_settings_fields =
    sizeof bf_irc_settings_fields / sizeof bf_irc_settings_fields[0];


int bf_irc_settings_load(bf_irc *irc, const char *user, const char *server,
                         bf_form **out) {
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *st = NULL;
  *out = bf_form_new("submit");
  if (!*out)
    return BF_ENOMEM;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT var, value FROM irc_settings WHERE "
                              "gateway = ?1 AND user = ?2 AND server = ?3",
                              -1, &st, NULL) == SQLITE_OK
               ? 0
               : BF_EIO;
  if (!rc) {
    sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, server, -1, SQLITE_STATIC);
    int step;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW)
      rc = bf_form_set(*out, (const char *)sqlite3_column_text(st, 0),
                       (const char *)sqlite3_column_text(st, 1));
    if (!rc && step != SQLITE_DONE)
      rc = BF_EIO;
  }
  sqlite3_finalize(st);
  if (rc) {
    irc->host->log(irc->host, BF_LOG_WARN, "cannot read IRC settings: %s",
                   sqlite3_errmsg(db));
    bf_form_free(*out);
    *out = NULL;
  }
  return rc;
}

int bf_irc_settings_save(bf_irc *irc, const char *user, const char *server,
                         const bf_form *values) {
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *del = NULL, *ins = NULL;
  int rc = 0;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return BF_EIO;
  /* The client certificate is kept: it is registered with services. */
  if (sqlite3_prepare_v2(db, "DELETE FROM irc_settings WHERE gateway = ?1 AND "
                             "user = ?2 AND server = ?3 AND var NOT IN ('"
                             IDENTITY_CERT "', '" IDENTITY_KEY "', '"
                             IDENTITY_FP "')",
                         -1, &del, NULL) ||
      sqlite3_prepare_v2(db, "INSERT INTO irc_settings VALUES (?1, ?2, ?3, ?4, "
                             "?5)", -1, &ins, NULL)) {
    rc = BF_EIO;
    goto out;
  }
  sqlite3_bind_text(del, 1, irc->host->domain, -1, SQLITE_STATIC);
  sqlite3_bind_text(del, 2, user, -1, SQLITE_STATIC);
  sqlite3_bind_text(del, 3, server, -1, SQLITE_STATIC);
  if (sqlite3_step(del) != SQLITE_DONE) {
    rc = BF_EIO;
    goto out;
  }
  for (size_t i = 0; i < bf_irc_n_settings_fields; i++) {
    const char *var = bf_irc_settings_fields[i].var;
    const char *value = bf_form_value(values, var);
    if (!value || !*value)
      continue;
    sqlite3_reset(ins);
    sqlite3_bind_text(ins, 1, irc->host->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, server, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 4, var, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 5, value, -1, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE) {
      rc = BF_EIO;
      goto out;
    }
  }
out:
  sqlite3_finalize(del);
  sqlite3_finalize(ins);
  if (rc) {
    irc->host->log(irc->host, BF_LOG_WARN, "cannot store IRC settings: %s",
                   sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : BF_EIO;
}

int bf_irc_settings_delete_user(bf_irc *irc, const char *user) {
  sqlite3 *db = irc->host->db(irc->host);
  static const char *const sql[] = {
      "DELETE FROM irc_settings WHERE gateway = ?1 AND user = ?2",
      "DELETE FROM irc_channel_settings WHERE gateway = ?1 AND user = ?2",
  };
  int rc = 0;
  for (size_t i = 0; i < sizeof sql / sizeof *sql && !rc; i++) {
    sqlite3_stmt *st = NULL;
    rc = BF_EIO;
    if (sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
      rc = sqlite3_step(st) == SQLITE_DONE ? 0 : BF_EIO;
    }
    sqlite3_finalize(st);
  }
  if (rc)
    irc->host->log(irc->host, BF_LOG_WARN, "cannot delete IRC settings: %s",
                   sqlite3_errmsg(db));
  return rc;
}

/* Wipes and frees a private key's PEM text. */
static void forget_key(char *key) {
  if (key)
    explicit_bzero(key, strlen(key));
  free(key);
}

int bf_irc_settings_identity(bf_irc *irc, const char *user, const char *server,
                             bool create, char **cert, char **key, char *err,
                             size_t err_size) {
  bf_form *f = NULL;
  sqlite3_stmt *ins = NULL;
  sqlite3 *db = irc->host->db(irc->host);
  *cert = *key = NULL;
  int rc = bf_irc_settings_load(irc, user, server, &f);
  if (rc) {
    snprintf(err, err_size, "cannot read the IRC settings");
    return rc;
  }
  const char *stored_cert = bf_form_value(f, IDENTITY_CERT);
  const char *stored_key = bf_form_value(f, IDENTITY_KEY);
  if (stored_cert && stored_key) {
    *cert = strdup(stored_cert);
    *key = strdup(stored_key);
    rc = *cert && *key ? 0 : BF_ENOMEM;
    goto out;
  }
  if (!create) {
    rc = BF_ENOENT;
    goto out;
  }
  char fp[BF_IRC_TLS_CERTFP_SIZE];
  if ((rc = bf_irc_tls_identity_new(cert, key, err, err_size)) ||
      (rc = bf_irc_tls_identity_certfp(*cert, fp, sizeof fp, err, err_size)))
    goto out;
  /* All three rows or none. */
  rc = BF_EIO;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    goto out;
  if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO irc_settings VALUES "
                             "(?1, ?2, ?3, ?4, ?5)", -1, &ins, NULL) == SQLITE_OK) {
    const char *vars[] = {IDENTITY_CERT, IDENTITY_KEY, IDENTITY_FP};
    const char *values[] = {*cert, *key, fp};
    rc = 0;
    for (size_t i = 0; i < 3 && !rc; i++) {
      sqlite3_reset(ins);
      sqlite3_bind_text(ins, 1, irc->host->domain, -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 2, user, -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 3, server, -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 4, vars[i], -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 5, values[i], -1, SQLITE_STATIC);
      if (sqlite3_step(ins) != SQLITE_DONE)
        rc = BF_EIO;
    }
  }
  if (rc || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    rc = BF_EIO;
    snprintf(err, err_size, "cannot store the client certificate: %s",
             sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  }
  if (!rc)
    irc->host->log(irc->host, BF_LOG_INFO, "%s on %s: client certificate "
                   "made", user, server);
out:
  sqlite3_finalize(ins);
  bf_form_free(f);
  if (rc) {
    free(*cert);
    forget_key(*key);
    *cert = *key = NULL;
  }
  return rc;
}

/* ---- the "configure" command on irc.net@GW --------------------------------- */

bool bf_irc_on_server_jid(void *state, const bf_jid *user, const bf_jid *to) {
  bf_irc_address a;
  (void)user;
  return bf_irc_address_parse(state, to->local, &a) == 0 && !a.name[0] &&
         !to->resource;
}

/* Stores one row (INSERT OR REPLACE). 0 or BF_EIO. */
static int setting_put(bf_irc *irc, const char *user, const char *server,
                       const char *var, const char *value) {
  sqlite3_stmt *st = NULL;
  int rc = BF_EIO;
  if (sqlite3_prepare_v2(irc->host->db(irc->host),
                         "INSERT OR REPLACE INTO irc_settings VALUES (?1, ?2, "
                         "?3, ?4, ?5)", -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, server, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, var, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, value, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : BF_EIO;
  }
  sqlite3_finalize(st);
  return rc;
}

int bf_irc_settings_identity_fp(bf_irc *irc, const char *user,
                                const char *server, bool create, char *fp,
                                size_t fp_size, char *err, size_t err_size) {
  bf_form *f = NULL;
  char *cert = NULL, *key = NULL;
  int rc = bf_irc_settings_load(irc, user, server, &f);
  if (rc) {
    snprintf(err, err_size, "cannot read the IRC settings");
    return rc;
  }
  const char *stored = bf_form_value(f, IDENTITY_FP);
  if (stored && strlen(stored) < fp_size) {
    snprintf(fp, fp_size, "%s", stored);
    goto out;
  }
  /* None yet (made now when create), or made by a babelfish that did not
   * store it: computed once (libssl) and stored. */
  if ((rc = bf_irc_settings_identity(irc, user, server, create, &cert, &key,
                                     err, err_size)))
    goto out;
  rc = bf_irc_tls_identity_certfp(cert, fp, fp_size, err, err_size);
  if (!rc && !stored && setting_put(irc, user, server, IDENTITY_FP, fp))
    irc->host->log(irc->host, BF_LOG_WARN, "cannot store a certificate "
                   "fingerprint: %s", sqlite3_errmsg(irc->host->db(irc->host)));
out:
  forget_key(key);
  free(cert);
  bf_form_free(f);
  return rc;
}

/* A stored text-multi value ("a\nb") as the field's values in form. */
static int lines_to_values(bf_form *form, const char *var, const char *text) {
  int rc = 0;
  for (const char *p = text; *p && !rc;) {
    size_t n = strcspn(p, "\n");
    char *line = strndup(p, n);
    rc = line ? bf_form_add_value(form, var, line) : BF_ENOMEM;
    free(line);
    p += n + (p[n] == '\n');
  }
  return rc;
}

/* The non-empty values of var in form joined by '\n' into *text
 * (malloc'd, NULL when none), and how many. 0 or BF_ENOMEM. */
static int values_to_lines(const bf_form *form, const char *var, char **text,
                           size_t *n_lines) {
  const char *const *values;
  size_t n = bf_form_values(form, var, &values), size = 1;
  *text = NULL;
  *n_lines = 0;
  for (size_t i = 0; i < n; i++)
    size += strlen(values[i]) + 1;
  char *out = malloc(size);
  if (!out)
    return BF_ENOMEM;
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (!values[i][0])
      continue;
    if (*n_lines)
      strcat(out, "\n");
    strcat(out, values[i]);
    ++*n_lines;
  }
  *text = out;
  return 0;
}

int bf_irc_configure_run(void *state, const bf_command_call *call,
                         bf_command_reply *reply) {
  bf_irc *irc = state;
  bf_irc_address a;
  char *user = bf_jid_bare(call->from);
  bf_form *current = NULL;
  int rc = user ? bf_irc_address_parse(irc, call->to->local, &a) : BF_ENOMEM;
  if (rc)
    goto out;
  if (call->step == 0) {
    if ((rc = bf_irc_settings_load(irc, user, a.server, &current)))
      goto out;
    /* Shown after run returns: a copy in the session's data, private
     * values left out (they are never shown anyway). */
    for (size_t i = 0; i < bf_irc_n_settings_fields && !rc; i++) {
      const bf_field *f = &bf_irc_settings_fields[i];
      const char *value = bf_form_value(current, f->var);
      if (value && f->type == BF_FIELD_TEXT_MULTI)
        rc = lines_to_values(call->data, f->var, value);
      else if (value && f->type != BF_FIELD_TEXT_PRIVATE)
        rc = bf_form_set(call->data, f->var, value);
    }
    reply->fields = bf_irc_settings_fields;
    reply->n_fields = bf_irc_n_settings_fields;
    reply->title = "IRC server settings";
    reply->instructions = "Used the next time you connect to this server.";
    /* With a client certificate, its fingerprint (kept in the session's
     * data: the core reads the instructions after run returns). */
    char fp[BF_IRC_TLS_CERTFP_SIZE], text[400];
    if (!rc && !bf_irc_settings_identity_fp(irc, user, a.server, false, fp,
                                            sizeof fp, text, sizeof text)) {
      snprintf(text, sizeof text, "Used the next time you connect to this "
               "server. Your client certificate's SHA-256 fingerprint: %s "
               "(register it with the services, e.g. /msg NickServ CERT ADD "
               "%s).", fp, fp);
      if (!(rc = bf_form_set(call->data, "instructions", text)))
        reply->instructions = bf_form_value(call->data, "instructions");
    }
    reply->values = call->data;
    reply->next_step = 1;
    goto out;
  }
  /* A private field left empty keeps its stored value (the form never
   * shows it). */
  if ((rc = bf_irc_settings_load(irc, user, a.server, &current)))
    goto out;
  bf_form *merged = bf_form_new("submit");
  char *lines = NULL;
  size_t n_lines = 0;
  for (size_t i = 0; merged && !rc && i < bf_irc_n_settings_fields; i++) {
    const bf_field *f = &bf_irc_settings_fields[i];
    const char *value = bf_form_value(call->form, f->var);
    if (f->type == BF_FIELD_TEXT_PRIVATE && (!value || !*value))
      value = bf_form_value(current, f->var);
    if (f->type == BF_FIELD_TEXT_MULTI) {
      rc = values_to_lines(call->form, f->var, &lines, &n_lines);
      value = lines;
    }
    if (!rc && value && *value && bf_form_set(merged, f->var, value))
      rc = BF_ENOMEM;
  }
  free(lines);
  if (!merged)
    rc = BF_ENOMEM;
  if (!rc && n_lines > BF_IRC_AFTER_CONNECT_MAX) {
    bf_form_free(merged);
    reply->note_type = BF_NOTE_ERROR;
    snprintf(reply->note, sizeof reply->note, "Not saved: %zu after-"
             "connection commands, at most %d.", n_lines,
             BF_IRC_AFTER_CONNECT_MAX);
    goto out;
  }
  if (!rc)
    rc = bf_irc_settings_save(irc, user, a.server, merged);
  bf_form_free(merged);
  if (rc)
    goto out;
  const char *external = bf_form_value(call->form, "sasl_external");
  char fp[BF_IRC_TLS_CERTFP_SIZE], err[400];
  if (external && !strcmp(external, "1")) {
    if (bf_irc_settings_identity_fp(irc, user, a.server, true, fp, sizeof fp,
                                    err, sizeof err)) {
      reply->note_type = BF_NOTE_ERROR;
      snprintf(reply->note, sizeof reply->note, "Saved, but %s.", err);
    } else {
      snprintf(reply->note, sizeof reply->note,
               "Saved. They apply the next time you connect to %s. Your "
               "client certificate's SHA-256 fingerprint is %s: register it "
               "with the services (e.g. /msg NickServ CERT ADD %s) while "
               "logged in to your account.", a.server, fp, fp);
    }
  } else {
    snprintf(reply->note, sizeof reply->note,
             "Saved. They apply the next time you connect to %s.", a.server);
  }
out:
  bf_form_free(current);
  free(user);
  return rc;
}

/* ---- per channel: the "configure" command on #chan%irc.net@GW ------------- */

/* Migration 3 of the module's schema (irc.c lists them). Besides the
 * fields, a kept channel's bouncer state: "nick" and "left_at". */
const char bf_irc_channel_settings_schema[] =
    "CREATE TABLE irc_channel_settings(gateway TEXT NOT NULL,"
    " user TEXT NOT NULL, server TEXT NOT NULL, channel TEXT NOT NULL,"
    " var TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (gateway, user, server, channel, var)) WITHOUT ROWID;";

const bf_field bf_irc_channel_fields[] = {
    {.var = "persistent", .type = BF_FIELD_BOOLEAN,
     .label = "Persistent",
     .desc = "Stay in the channel while you are offline or out of the room; "
             "what you missed is replayed when you join again",
     .default_value = "0"},
    {.var = "encoding", .type = BF_FIELD_TEXT_SINGLE, .label = "Encoding",
     .desc = "Charset of this channel's text that is not UTF-8, e.g. "
             "ISO-8859-15 or CP1252; empty: the server's",
     .max_length = 32, .validate = valid_charset},
};
const size_t bf_irc_n_channel_fields =
    sizeof bf_irc_channel_fields / sizeof bf_irc_channel_fields[0];

static void bind4(sqlite3_stmt *st, const char *gateway, const char *user,
                  const char *server, const char *channel) {
  sqlite3_bind_text(st, 1, gateway, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, server, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, channel, -1, SQLITE_STATIC);
}

int bf_irc_channel_settings_load(bf_irc *irc, const char *user,
                                 const char *server, const char *name,
                                 bf_form **out) {
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *st = NULL;
  char channel[256];
  bf_irc_channel_key(channel, sizeof channel, name);
  *out = bf_form_new("submit");
  if (!*out)
    return BF_ENOMEM;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT var, value FROM irc_channel_settings "
                              "WHERE gateway = ?1 AND user = ?2 AND server = "
                              "?3 AND channel = ?4",
                              -1, &st, NULL) == SQLITE_OK
               ? 0
               : BF_EIO;
  if (!rc) {
    bind4(st, irc->host->domain, user, server, channel);
    int step;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW)
      rc = bf_form_set(*out, (const char *)sqlite3_column_text(st, 0),
                       (const char *)sqlite3_column_text(st, 1));
    if (!rc && step != SQLITE_DONE)
      rc = BF_EIO;
  }
  sqlite3_finalize(st);
  if (rc) {
    irc->host->log(irc->host, BF_LOG_WARN, "cannot read IRC channel "
                   "settings: %s", sqlite3_errmsg(db));
    bf_form_free(*out);
    *out = NULL;
  }
  return rc;
}

/* Writes the given vars of the channel in one transaction: a NULL or
 * empty value deletes the row. */
static int channel_vars_save(bf_irc *irc, const char *user, const char *server,
                             const char *name, const char *const *vars,
                             const char *const *values, size_t n) {
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *del = NULL, *ins = NULL;
  char channel[256];
  bf_irc_channel_key(channel, sizeof channel, name);
  int rc = 0;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return BF_EIO;
  if (sqlite3_prepare_v2(db, "DELETE FROM irc_channel_settings WHERE gateway "
                             "= ?1 AND user = ?2 AND server = ?3 AND channel "
                             "= ?4 AND var = ?5", -1, &del, NULL) ||
      sqlite3_prepare_v2(db, "INSERT INTO irc_channel_settings VALUES (?1, "
                             "?2, ?3, ?4, ?5, ?6)", -1, &ins, NULL)) {
    rc = BF_EIO;
    goto out;
  }
  for (size_t i = 0; i < n && !rc; i++) {
    sqlite3_reset(del);
    bind4(del, irc->host->domain, user, server, channel);
    sqlite3_bind_text(del, 5, vars[i], -1, SQLITE_STATIC);
    if (sqlite3_step(del) != SQLITE_DONE)
      rc = BF_EIO;
    if (rc || !values[i] || !*values[i])
      continue;
    sqlite3_reset(ins);
    bind4(ins, irc->host->domain, user, server, channel);
    sqlite3_bind_text(ins, 5, vars[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 6, values[i], -1, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE)
      rc = BF_EIO;
  }
out:
  sqlite3_finalize(del);
  sqlite3_finalize(ins);
  if (rc) {
    irc->host->log(irc->host, BF_LOG_WARN, "cannot store IRC channel "
                   "settings: %s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : BF_EIO;
}

int bf_irc_channel_state_save(bf_irc *irc, const char *user,
                              const char *server, const char *channel,
                              const char *nick, uint64_t left_ms) {
  char left[32];
  snprintf(left, sizeof left, "%llu", (unsigned long long)left_ms);
  const char *vars[] = {"nick", "left_at"};
  const char *values[] = {nick, left};
  return channel_vars_save(irc, user, server, channel, vars, values, 2);
}

void bf_irc_channel_settings_apply(bf_irc_conn *c, bf_irc_channel *ch) {
  bf_form *f = NULL;
  if (bf_irc_channel_settings_load(c->irc, c->user, c->server, ch->name, &f))
    return;
  const char *persistent = bf_form_value(f, "persistent");
  const char *encoding = bf_form_value(f, "encoding");
  ch->persistent = persistent && !strcmp(persistent, "1");
  free(ch->encoding);
  ch->encoding = encoding && *encoding ? strdup(encoding) : NULL;
  bf_form_free(f);
}

int bf_irc_persistent_each(bf_irc *irc, const char *user, const char *server,
                           void (*cb)(void *data, const char *user,
                                      const char *server,
                                      const char *channel),
                           void *data) {
  sqlite3 *db = irc->host->db(irc->host);
  sqlite3_stmt *st = NULL;
  const char *sql =
      user ? "SELECT user, server, channel FROM irc_channel_settings WHERE "
             "gateway = ?1 AND user = ?2 AND server = ?3 AND var = "
             "'persistent' AND value = '1'"
           : "SELECT DISTINCT user, server, NULL FROM irc_channel_settings "
             "WHERE gateway = ?1 AND var = 'persistent' AND value = '1'";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    irc->host->log(irc->host, BF_LOG_WARN, "cannot read persistent IRC "
                   "channels: %s", sqlite3_errmsg(db));
    return BF_EIO;
  }
  sqlite3_bind_text(st, 1, irc->host->domain, -1, SQLITE_STATIC);
  if (user) {
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, server, -1, SQLITE_STATIC);
  }
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW)
    cb(data, (const char *)sqlite3_column_text(st, 0),
       (const char *)sqlite3_column_text(st, 1),
       (const char *)sqlite3_column_text(st, 2));
  sqlite3_finalize(st);
  return step == SQLITE_DONE ? 0 : BF_EIO;
}

bool bf_irc_on_room_jid(void *state, const bf_jid *user, const bf_jid *to) {
  bf_irc_address a;
  (void)user;
  return bf_irc_address_parse(state, to->local, &a) == 0 && a.channel &&
         !to->resource;
}

/* The new settings on the user's live channel (if any): a channel no
 * longer persistent that nobody is in is left now. */
static void channel_settings_changed(bf_irc *irc, const char *user,
                                     const bf_irc_address *a) {
  bf_irc_conn *c = bf_irc_conn_find(irc, user, a->server);
  bf_irc_channel *ch = NULL;
  for (bf_irc_channel *k = c ? c->channels : NULL; k && !ch; k = k->next) {
    if (!strcasecmp(k->name, a->name))
      ch = k;
  }
  if (!ch)
    return;
  bf_irc_channel_settings_apply(c, ch);
  if (ch->persistent || ch->n_members)
    return;
  bf_irc_channel_released(c, ch, NULL);
  if (!c->channels)
    bf_irc_conn_quit(c, NULL);
}

int bf_irc_channel_configure_run(void *state, const bf_command_call *call,
                                 bf_command_reply *reply) {
  bf_irc *irc = state;
  bf_irc_address a;
  char *user = bf_jid_bare(call->from);
  bf_form *current = NULL;
  int rc = user ? bf_irc_address_parse(irc, call->to->local, &a) : BF_ENOMEM;
  if (rc)
    goto out;
  if (call->step == 0) {
    if ((rc = bf_irc_channel_settings_load(irc, user, a.server, a.name,
                                           &current)))
      goto out;
    for (size_t i = 0; i < bf_irc_n_channel_fields && !rc; i++) {
      const char *value = bf_form_value(current, bf_irc_channel_fields[i].var);
      if (value)
        rc = bf_form_set(call->data, bf_irc_channel_fields[i].var, value);
    }
    reply->fields = bf_irc_channel_fields;
    reply->n_fields = bf_irc_n_channel_fields;
    reply->title = "IRC channel settings";
    reply->instructions = "Your settings for this channel.";
    reply->values = call->data;
    reply->next_step = 1;
    goto out;
  }
  const char *persistent = bf_form_value(call->form, "persistent");
  const char *vars[] = {"persistent", "encoding", "nick"};
  const char *values[] = {persistent && !strcmp(persistent, "1") ? "1" : NULL,
                          bf_form_value(call->form, "encoding"), NULL};
  size_t n = 2;
  /* The nick to reconnect with at start-up: the one in use now. */
  bf_irc_conn *c = bf_irc_conn_find(irc, user, a.server);
  if (c && values[0]) {
    values[2] = c->wanted_nick;
    n = 3;
  }
  if ((rc = channel_vars_save(irc, user, a.server, a.name, vars, values, n)))
    goto out;
  channel_settings_changed(irc, user, &a);
  snprintf(reply->note, sizeof reply->note, "Saved. %s %s.", a.name,
           values[0] ? "stays joined while you are away"
                     : "is left when you leave the room");
out:
  bf_form_free(current);
  free(user);
  return rc;
}
