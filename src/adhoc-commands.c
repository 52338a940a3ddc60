/* The core's ad-hoc commands (XEP-0050), for every gateway: the user
 * commands configure and unregister, and the admin commands users,
 * sessions, stats, announce and reload. adhoc.c runs them like any
 * module's command; their state is the gateway. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/stanza.h"
#include "gateway.h"
#include "log.h"
#include "util.h"


static int run_configure(void *, const bf_command_call *, bf_command_reply *);
static int run_unregister(void *, const bf_command_call *, bf_command_reply *);
static int run_users(void *, const bf_command_call *, bf_command_reply *);
static int run_sessions(void *, const bf_command_call *, bf_command_reply *);
static int run_stats(void *, const bf_command_call *, bf_command_reply *);
static int run_announce(void *, const bf_command_call *, bf_command_reply *);
static int run_reload(void *, const bf_command_call *, bf_command_reply *);

#define USER (BF_COMMAND_ON_GATEWAY | BF_COMMAND_REGISTERED)
#define ADMIN (BF_COMMAND_ON_GATEWAY | BF_COMMAND_ADMIN)
const bf_command bf__adhoc_core_commands[] = {
    {"configure", "Configure", USER, NULL, run_configure},
    {"unregister", "Unregister", USER, NULL, run_unregister},
    {"users", "List registered users", ADMIN, NULL, run_users},
    {"sessions", "Online sessions", ADMIN, NULL, run_sessions},
    {"stats", "Gateway statistics", ADMIN, NULL, run_stats},
    {"announce", "Send an announcement", ADMIN, NULL, run_announce},
    {"reload", "Reload configuration", ADMIN, NULL, run_reload},
};
#undef USER
#undef ADMIN
const size_t bf__adhoc_n_core_commands = BF_ARRAY_SIZE(bf__adhoc_core_commands);

/* ---- the core's commands: state is the gateway ------------------------------------ */

static int run_configure(void *state, const bf_command_call *call,
                         bf_command_reply *reply) {
  bf_gateway *gw = state;
  const bf_module *m = bf__gateway_module_v2(gw); /* non-NULL: offered only then */
  char bare[BF_JID_STACK_BUFFER], err[sizeof reply->note] = "";
  bf_form *values = NULL;
  bool is_new;
  int rc = bf__bare(call->from, bare, sizeof bare) < 0 ? BF_EINVAL : 0;
  if (rc || call->step > 0)
    goto submit;
  if ((rc = bf__users_values(gw, bare, &values)))
    return rc;
  /* Copied into the session's data: reply->values must outlive the call. */
  for (size_t i = 0; i < m->n_register_fields && !rc; i++) {
    const char *const *v;
    const char *var = m->register_fields[i].var;
    size_t n = var ? bf_form_values(values, var, &v) : 0;
    for (size_t k = 0; k < n && !rc; k++)
      rc = bf_form_add_value(call->data, var, v[k]);
  }
  bf_form_free(values);
  reply->fields = m->register_fields;
  reply->n_fields = m->n_register_fields;
  reply->title = "Settings";
  reply->instructions = m->register_instructions;
  reply->values = call->data;
  reply->next_step = 1;
  return rc;
submit:
  /* The core's own copy of the submission, checked already: the const is
   * the module-facing contract; registering only normalises it again. */
  if (!rc)
    rc = bf__users_register(gw, call->from, (bf_form *)call->form, &is_new, err,
                            sizeof err);
  if (rc && !err[0])
    return rc;
  reply->note_type = rc ? BF_NOTE_ERROR : BF_NOTE_INFO;
  snprintf(reply->note, sizeof reply->note, "%s", rc ? err : "Settings saved.");
  return 0;
}

static const bf_field unregister_fields[] = {
    {.var = "confirm", .type = BF_FIELD_BOOLEAN,
     .label = "Really delete your registration and everything stored for you?",
     .required = true, .default_value = "0"},
};

static int run_unregister(void *state, const bf_command_call *call,
                          bf_command_reply *reply) {
  char bare[BF_JID_STACK_BUFFER];
  if (!call->chat && call->step == 0) {
    reply->fields = unregister_fields;
    reply->n_fields = BF_ARRAY_SIZE(unregister_fields);
    reply->title = "Unregister";
    reply->next_step = 1;
    return 0;
  }
  const char *confirm = call->chat ? call->args : bf_form_value(call->form, "confirm");
  /* A chat cannot show the form: "unregister yes" confirms. */
  if (!confirm || strcmp(confirm, call->chat ? "yes" : "1") != 0) {
    snprintf(reply->note, sizeof reply->note, "%s",
             call->chat ? "Send 'unregister yes' to confirm: it deletes your "
                          "registration and everything stored for you."
                        : "Nothing was changed.");
    return 0;
  }
  int rc = bf__bare(call->from, bare, sizeof bare) < 0
               ? BF_ENOENT
               : bf__users_unregister(state, bare);
  reply->note_type = rc ? BF_NOTE_ERROR : BF_NOTE_INFO;
  snprintf(reply->note, sizeof reply->note, "%s",
           rc == 0           ? "You are unregistered."
           : rc == BF_ENOENT ? "You are not registered."
                             : "Your registration could not be deleted; "
                               "try again later.");
  return 0;
}

static const bf_field users_result[] = {
    {.var = "users", .type = BF_FIELD_JID_MULTI, .label = "Registered users"},
    {.var = "count", .type = BF_FIELD_TEXT_SINGLE, .label = "Count"},
};

static const bf_field sessions_result[] = {
    {.var = "sessions", .type = BF_FIELD_TEXT_MULTI, .label = "Online"},
    {.var = "count", .type = BF_FIELD_TEXT_SINGLE, .label = "Count"},
};

/* A result to fill: *result_fields. 0 or BF_ENOMEM. */
static int new_result(bf_command_reply *reply, const bf_field *fields, size_t n) {
  reply->result_fields = fields;
  reply->n_result_fields = n;
  return (reply->result = bf_form_new("result")) ? 0 : BF_ENOMEM;
}

/* The list's values are in; then count, and a note when the list was cut
 * at BF_FORM_VALUES_MAX (rc BF_E2BIG). */
static int finish_list(bf_command_reply *reply, int rc, size_t count) {
  char n[32];
  if (rc == BF_E2BIG)
    snprintf(reply->note, sizeof reply->note, "Showing the first %d of %zu.",
             BF_FORM_VALUES_MAX, count);
  else if (rc)
    return rc;
  snprintf(n, sizeof n, "%zu", count);
  return bf_form_set(reply->result, "count", n);
}

static int add_user(void *data, const char *bare) {
  return bf_form_add_value(data, "users", bare);
}

static int run_users(void *state, const bf_command_call *call,
                     bf_command_reply *reply) {
  bf_gateway *gw = state;
  int rc = new_result(reply, users_result, BF_ARRAY_SIZE(users_result));
  (void)call;
  return rc ? rc
            : finish_list(reply, bf__users_each(gw, add_user, reply->result),
                          gw->users.registered);
}

typedef struct session_walk {
  bf_form *result;
  size_t count;
  int rc;
} session_walk;

/* "alice@localhost: pc, phone" */
static void add_session_line(void *data, bf_user *user) {
  session_walk *w = data;
  char line[BF_FORM_VALUE_MAX];
  size_t len;
  if (!user->session && !user->n_resources)
    return;
  w->count++;
  len = (size_t)snprintf(line, sizeof line, "%s", user->jid);
  for (size_t i = 0; i < user->n_resources && len < sizeof line; i++) {
    const char *slash = strchr(user->resources[i], '/');
    len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", i ? ", " : ": ",
                            slash ? slash + 1 : user->resources[i]);
  }
  if (!w->rc)
    w->rc = bf_form_add_value(w->result, "sessions", line);
}

static int run_sessions(void *state, const bf_command_call *call,
                        bf_command_reply *reply) {
  session_walk w = {NULL, 0, 0};
  int rc = new_result(reply, sessions_result, BF_ARRAY_SIZE(sessions_result));
  (void)call;
  if (rc)
    return rc;
  w.result = reply->result;
  bf__users_walk(state, add_session_line, &w);
  return finish_list(reply, w.rc, w.count);
}

static const bf_field stats_result[] = {
    {.var = "stats", .type = BF_FIELD_TEXT_MULTI, .label = "Statistics"},
};

/* Appends one line to the "stats" field unless *rc is already set. */
BF_PRINTF(3, 4)
static void add_line(bf_form *form, int *rc, const char *fmt, ...) {
  char line[BF_JID_STACK_BUFFER + 128];
  va_list ap;
  if (*rc)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  *rc = bf_form_add_value(form, "stats", line);
}

static void add_stats(bf_form *r, int *rc, bf_gateway *g, uint64_t now) {
  typedef unsigned long long ull;
  const bf_component *c = &g->component;
  uint64_t up = (now - c->online_since_ms) / 1000;
  int64_t backlog = g->daemon->store
                        ? bf__store_outbox_count(g->daemon->store, g->conf->domain)
                        : 0;
  add_line(r, rc, "%s (transport %s)", g->conf->domain, g->conf->transport);
  if (g->component_started && c->state == BF_COMPONENT_ONLINE)
    add_line(r, rc, "  connected: yes, for %lluh %02llum %02llus", (ull)(up / 3600),
             (ull)(up / 60 % 60), (ull)(up % 60));
  else
    add_line(r, rc, "  connected: no");
  add_line(r, rc, "  stanzas in/out: %llu / %llu", (ull)c->stanzas_in,
           (ull)c->stanzas_out);
  add_line(r, rc, "  bytes in/out: %llu / %llu", (ull)c->bytes_in,
           (ull)c->bytes_out);
  add_line(r, rc, "  reconnects: %llu", (ull)(c->connects ? c->connects - 1 : 0));
  add_line(r, rc, "  errors sent: %llu", (ull)g->errors_sent);
  add_line(r, rc, "  users: %zu registered, %zu online", g->users.registered,
           g->users.online);
  add_line(r, rc, "  outbox backlog: %lld", (long long)(backlog > 0 ? backlog : 0));
  add_line(r, rc, "  commands run: %llu (%llu by chat)",
           (ull)g->users.commands_run, (ull)g->users.chat_commands);
}

static int run_stats(void *state, const bf_command_call *call,
                     bf_command_reply *reply) {
  bf_gateway *gw = state;
  const bf_daemon *d = gw->daemon;
  uint64_t now = uv_now(d->loop), up = (now - d->started_ms) / 1000;
  int rc = new_result(reply, stats_result, BF_ARRAY_SIZE(stats_result));
  (void)call;
  if (d->started_ms)
    add_line(reply->result, &rc, "babelfish %s, up %lluh %02llum", BF_VERSION,
             (unsigned long long)(up / 3600), (unsigned long long)(up / 60 % 60));
  /* Every gateway of the daemon (a test may build one without the list). */
  for (size_t i = 0; i < d->n_gateways; i++)
    add_stats(reply->result, &rc, d->gateways[i], now);
  if (!d->n_gateways)
    add_stats(reply->result, &rc, gw, now);
  return rc == BF_E2BIG ? 0 : rc;
}

static const bf_field announce_fields[] = {
    {.var = "subject", .type = BF_FIELD_TEXT_SINGLE, .label = "Subject"},
    {.var = "body", .type = BF_FIELD_TEXT_MULTI, .label = "Message",
     .required = true},
    {.var = "online_only", .type = BF_FIELD_BOOLEAN,
     .label = "Only to users who are online now", .default_value = "0"},
};

typedef struct announcement {
  bf_gateway *gw;
  bf_xml *message;
  bool online_only;
  size_t sent, failed;
} announcement;

static int announce_to(void *data, const char *bare) {
  announcement *a = data;
  bf_user *user = bf__users_find(a->gw, bare);
  if (a->online_only && !(user && user->session))
    return 0;
  if (bf_xml_set_attr(a->message, "to", bare) ||
      bf__gateway_send(a->gw, a->message) != 0)
    a->failed++;
  else
    a->sent++;
  return 0;
}

static int run_announce(void *state, const bf_command_call *call,
                        bf_command_reply *reply) {
  bf_gateway *gw = state;
  if (call->step == 0) {
    reply->fields = announce_fields;
    reply->n_fields = BF_ARRAY_SIZE(announce_fields);
    reply->title = "Announcement";
    reply->instructions = "A message from the gateway to its registered users.";
    reply->next_step = 1;
    return 0;
  }
  const char *subject = bf_form_value(call->form, "subject");
  const char *online_only = bf_form_value(call->form, "online_only");
  const char *const *lines;
  size_t n = bf_form_values(call->form, "body", &lines);
  announcement a = {gw, bf_xml_new("message", NULL),
                    online_only && !strcmp(online_only, "1"), 0, 0};
  bf_buf body;
  int rc = 0;
  bf__buf_init(&body, 0);
  /* text-multi: one value per line (XEP-0004 §3.3). */
  for (size_t i = 0; i < n && !rc; i++)
    if (!(rc = bf__buf_append_str(&body, i ? "\n" : "")))
      rc = bf__buf_append_str(&body, lines[i]);
  if (rc || !a.message || !body.data ||
      bf_xml_set_attr(a.message, "from", gw->conf->domain) ||
      bf_xml_set_attr(a.message, "type", "normal") ||
      (subject && *subject &&
       !bf_xml_add_text_child(a.message, "subject", NULL, subject)) ||
      !bf_xml_add_text_child(a.message, "body", NULL, body.data)) {
    rc = BF_ENOMEM;
    goto out;
  }
  if ((rc = bf__users_each(gw, announce_to, &a)))
    goto out;
  int len = snprintf(reply->note, sizeof reply->note, "Sent to %zu user%s.",
                     a.sent, a.sent == 1 ? "" : "s");
  if (a.failed) {
    reply->note_type = BF_NOTE_WARN;
    snprintf(reply->note + len, sizeof reply->note - (size_t)len,
             " %zu could not be sent (the connection is down or its queue "
             "is full).", a.failed);
  }
  bf__info(gw->conf->section, "announcement sent to %zu users", a.sent);
out:
  bf__buf_close(&body);
  bf_xml_free(a.message);
  return rc;
}

static int run_reload(void *state, const bf_command_call *call,
                      bf_command_reply *reply) {
  bf_daemon *d = ((bf_gateway *)state)->daemon;
  int rc = d->reload ? d->reload(d, reply->note, sizeof reply->note) : BF_ENOTSUP;
  (void)call;
  reply->note_type = rc ? BF_NOTE_ERROR : BF_NOTE_INFO;
  if (!reply->note[0])
    snprintf(reply->note, sizeof reply->note, "%s",
             rc == BF_ENOTSUP ? "This babelfish cannot reload its configuration."
             : rc             ? bf_strerror(rc)
                              : "Configuration reloaded.");
  return 0;
}
