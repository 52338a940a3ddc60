/* Ad-hoc commands (XEP-0050): the multi-step framework, the core's user
 * and admin commands, the module's commands, and the same commands sent as
 * chat messages to the bare gateway domain.
 *
 * A command is a bf_command (module.h): the core's are listed first, then
 * the module's. Each step is one call to run(); a step that shows a form
 * keeps a session, so that the submission is checked against exactly the
 * fields that step showed before the next step sees it. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/stanza.h"
#include "buf.h"
#include "gateway.h"
#include "log.h"
#include "util.h"

#define NS_COMMANDS "http://jabber.org/protocol/commands"

/* XEP-0050 leaves a session's lifetime to the responder (§4.6,
 * session-expired): one abandoned in a client's window is dropped after
 * this much idleness, checked lazily whenever a command arrives. */
#define SESSION_IDLE_MS (10u * 60u * 1000u)
/* Sessions one full JID may hold; starting one more drops that JID's
 * oldest (an abandoned window), so a client never locks itself out. */
#define SESSIONS_PER_JID 8
/* Sessions per gateway; past it a new one gets resource-constraint (wait)
 * rather than evicting other users' sessions in progress. */
#define SESSIONS_MAX 512
/* A chat reply's text; longer results are cut. */
#define CHAT_REPLY_MAX (64u * 1024u)
/* Longest chat command word kept (and echoed in "Unknown command"). */
#define CHAT_WORD_MAX 64

struct bf_adhoc_session {
  bf_adhoc_session *next;
  char id[48];
  const bf_command *command;
  void *state;                 /* what run() gets: gw or the module's */
  char *from;                  /* full JID that started it, normalised */
  char *to;                    /* JID it runs on, normalised */
  unsigned next_step;
  /* The form the last step showed: the submission is checked against it,
   * and it is shown again with an error note when that fails. */
  const bf_field *fields;
  size_t n_fields;
  char *title, *instructions;
  bf_form *data;               /* bf_command_call.data */
  /* Private values the step had (never sent to the client): a private
   * field submitted empty keeps them, as XEP-0077 §3.3 does. */
  bf_form *secrets;
  uint64_t used_ms;
};

/* ---- the list of commands ----------------------------------------------- */

static int run_configure(void *, const bf_command_call *, bf_command_reply *);
static int run_unregister(void *, const bf_command_call *, bf_command_reply *);
static int run_users(void *, const bf_command_call *, bf_command_reply *);
static int run_sessions(void *, const bf_command_call *, bf_command_reply *);
static int run_stats(void *, const bf_command_call *, bf_command_reply *);
static int run_announce(void *, const bf_command_call *, bf_command_reply *);
static int run_reload(void *, const bf_command_call *, bf_command_reply *);

#define USER (BF_COMMAND_ON_GATEWAY | BF_COMMAND_REGISTERED)
#define ADMIN (BF_COMMAND_ON_GATEWAY | BF_COMMAND_ADMIN)
static const bf_command core_commands[] = {
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
#define CONFIGURE (&core_commands[0])

/* The module's v2 fields exist only from abi_version 2. */
static const bf_module *module_v2(const bf_gateway *gw) {
  const bf_module *m = gw->module.module;
  return m->abi_version >= 2 ? m : NULL;
}

/* The module's commands only while it runs (its state exists). */
static size_t n_commands(const bf_gateway *gw) {
  const bf_module *m = module_v2(gw);
  size_t n = BF_ARRAY_SIZE(core_commands);
  return m && m->commands && gw->module_started ? n + m->n_commands : n;
}

/* The i-th command and the state its run() gets. */
static const bf_command *command_at(bf_gateway *gw, size_t i, void **state) {
  size_t n = BF_ARRAY_SIZE(core_commands);
  *state = i < n ? (void *)gw : gw->state;
  return i < n ? &core_commands[i] : &module_v2(gw)->commands[i - n];
}

enum access { ACCESS_OK, ACCESS_NONE, ACCESS_ADMIN, ACCESS_REGISTER };

/* How a refusal reads, as a stanza error and as a chat reply. */
static const struct {
  const char *condition, *text, *chat;
} refusals[] = {
    [ACCESS_NONE] = {"item-not-found", "no such command here", NULL},
    [ACCESS_ADMIN] = {"forbidden", "this command is for the gateway's "
                      "administrators", "This command is for administrators."},
    [ACCESS_REGISTER] = {"registration-required",
                         "register with this gateway first",
                         "Register first: this command is for registered "
                         "users (Register, in your client's service "
                         "discovery of the gateway)."},
};

/* May from run cmd on to? NONE: it is not offered there at all. */
static enum access access_of(bf_gateway *gw, const bf_command *cmd,
                             void *state, const bf_jid *from,
                             const bf_jid *to) {
  unsigned places = cmd->flags & (BF_COMMAND_ON_GATEWAY | BF_COMMAND_ON_CONTACT);
  const bf_module *m = module_v2(gw);
  char bare[BF_JID_STACK_BUFFER];
  if (to->local ? !(places & BF_COMMAND_ON_CONTACT) ||
                      (cmd->applies && !cmd->applies(state, from, to))
                : places && !(places & BF_COMMAND_ON_GATEWAY))
    return ACCESS_NONE;
  if (cmd == CONFIGURE && (!m || !m->register_fields || !m->n_register_fields))
    return ACCESS_NONE;
  if ((cmd->flags & BF_COMMAND_ADMIN) && !bf__users_is_admin(gw, from))
    return ACCESS_ADMIN;
  if ((cmd->flags & BF_COMMAND_REGISTERED) &&
      (bf__bare(from, bare, sizeof bare) < 0 || !bf__users_registered(gw, bare)))
    return ACCESS_REGISTER;
  return ACCESS_OK;
}

/* The command called node offered on to (the first: the core's win over a
 * module's of the same name), or NULL with *access NONE. */
static const bf_command *find_command(bf_gateway *gw, const char *node,
                                      const bf_jid *from, const bf_jid *to,
                                      void **state, enum access *access) {
  *access = ACCESS_NONE;
  for (size_t i = 0, n = n_commands(gw); i < n; i++) {
    const bf_command *cmd = command_at(gw, i, state);
    if (cmd->node && !strcmp(cmd->node, node) &&
        (*access = access_of(gw, cmd, *state, from, to)) != ACCESS_NONE)
      return cmd;
  }
  return NULL;
}

/* ---- sessions ------------------------------------------------------------- */

static uint64_t now_ms(const bf_gateway *gw) { return uv_now(gw->daemon->loop); }

static void session_free(bf_adhoc_session *s) {
  if (!s)
    return;
  free(s->from);
  free(s->to);
  free(s->title);
  free(s->instructions);
  bf_form_free(s->data);
  bf_form_free(s->secrets);
  free(s);
}

static void session_unlink(bf_gateway *gw, bf_adhoc_session *s) {
  for (bf_adhoc_session **p = &gw->users.sessions; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      gw->users.n_sessions--;
      break;
    }
  }
  session_free(s);
}

static void expire_sessions(bf_gateway *gw) {
  uint64_t now = now_ms(gw);
  for (bf_adhoc_session *s = gw->users.sessions, *next; s; s = next) {
    next = s->next;
    if (now - s->used_ms >= SESSION_IDLE_MS)
      session_unlink(gw, s);
  }
}

void bf__adhoc_close(bf_gateway *gw) {
  while (gw->users.sessions)
    session_unlink(gw, gw->users.sessions);
}

/* Room for one more session of from: drops from's oldest past the per-JID
 * limit. False if the gateway is full. */
static bool session_room(bf_gateway *gw, const char *from) {
  bf_adhoc_session *oldest = NULL;
  unsigned mine = 0;
  for (bf_adhoc_session *s = gw->users.sessions; s; s = s->next) {
    if (strcmp(s->from, from) != 0)
      continue;
    mine++;
    if (!oldest || s->used_ms <= oldest->used_ms)
      oldest = s;
  }
  if (mine >= SESSIONS_PER_JID)
    session_unlink(gw, oldest);
  return gw->users.n_sessions < SESSIONS_MAX;
}

/* The JID with every part it has; false if it does not fit. */
static bool jid_text(const bf_jid *jid, char *buf, size_t size) {
  int n = snprintf(buf, size, "%s%s%s%s%s", jid->local ? jid->local : "",
                   jid->local ? "@" : "", jid->domain,
                   jid->resource ? "/" : "", jid->resource ? jid->resource : "");
  return n >= 0 && (size_t)n < size;
}

static bf_adhoc_session *session_new(bf_gateway *gw, const bf_command *cmd,
                                     void *state, const char *from,
                                     const char *to) {
  bf_adhoc_session *s = calloc(1, sizeof *s);
  uint32_t r = 0;
  if (!s || !(s->from = strdup(from)) || !(s->to = strdup(to)) ||
      !(s->data = bf_form_new("submit"))) {
    session_free(s);
    return NULL;
  }
  s->command = cmd;
  s->state = state;
  s->used_ms = now_ms(gw);
  /* The counter keeps ids unique, the random part unguessable (a session
   * is bound to its full JID anyway). */
  (void)uv_random(NULL, NULL, &r, sizeof r, 0, NULL);
  snprintf(s->id, sizeof s->id, "%llx-%08x",
           (unsigned long long)++gw->users.next_session, (unsigned)r);
  return s;
}

/* Keeps the step's form in the session (fields are static, strings are
 * copied, private values kept aside). 0 or BF_ENOMEM. */
static int session_keep_form(bf_adhoc_session *s, const bf_command_reply *r) {
  free(s->title);
  free(s->instructions);
  bf_form_free(s->secrets);
  s->title = r->title ? strdup(r->title) : NULL;
  s->instructions = r->instructions ? strdup(r->instructions) : NULL;
  s->secrets = bf_form_new("submit");
  s->fields = r->fields;
  s->n_fields = r->n_fields;
  s->next_step = r->next_step;
  if ((r->title && !s->title) || (r->instructions && !s->instructions) ||
      !s->secrets)
    return BF_ENOMEM;
  for (size_t i = 0; r->values && i < r->n_fields; i++) {
    const bf_field *f = &r->fields[i];
    const char *value = f->var ? bf_form_value(r->values, f->var) : NULL;
    if (f->type == BF_FIELD_TEXT_PRIVATE && value &&
        bf_form_set(s->secrets, f->var, value))
      return BF_ENOMEM;
  }
  return 0;
}

/* ---- replies -------------------------------------------------------------- */

static void send_free(bf_gateway *gw, bf_xml *stanza) {
  if (stanza)
    (void)bf__gateway_send(gw, stanza);
  bf_xml_free(stanza);
}

/* An error reply, with XEP-0050 §4.6's specific condition when app is
 * not NULL. */
static void reply_error(bf_gateway *gw, const bf_xml *iq, const char *condition,
                        const char *app, const char *text) {
  bf_xml *err = bf_stanza_error(iq, NULL, condition, text);
  bf_xml *error = err ? bf_xml_child(err, "error", NULL) : NULL;
  if (app && error)
    bf_xml_add_child(error, app, NS_COMMANDS);
  if (err && bf__gateway_send(gw, err) == 0)
    gw->errors_sent++;
  bf_xml_free(err);
}

/* <iq type='result'><command node sessionid status/></iq>: §3 copies node
 * and sessionid into every response. *command: the <command/>. */
static bf_xml *command_result(const bf_xml *iq, const bf_adhoc_session *s,
                              const char *status, bf_xml **command) {
  bf_xml *reply = bf_stanza_result(iq);
  *command = reply ? bf_xml_add_child(reply, "command", NS_COMMANDS) : NULL;
  if (!*command || bf_xml_set_attr(*command, "node", s->command->node) ||
      bf_xml_set_attr(*command, "sessionid", s->id) ||
      bf_xml_set_attr(*command, "status", status)) {
    bf_xml_free(reply);
    return NULL;
  }
  return reply;
}

static int add_note(bf_xml *command, enum bf_note_type type, const char *text) {
  static const char *const types[] = {"info", "warn", "error"};
  if (!text || !*text)
    return 0;
  bf_xml *note = bf_xml_add_text_child(command, "note", NULL, text);
  return note && !bf_xml_set_attr(note, "type", types[type <= BF_NOTE_ERROR ? type : 0])
             ? 0 : BF_ENOMEM;
}

/* Sends reply, or internal-server-error when it could not be built. */
static void send_or_fail(bf_gateway *gw, const bf_xml *iq, bf_xml *reply,
                         bool built) {
  if (!built) {
    bf_xml_free(reply);
    reply_error(gw, iq, "internal-server-error", NULL, NULL);
    return;
  }
  send_free(gw, reply);
}

/* status='executing' with the session's form (§3.4): next is the only
 * action offered. */
static void reply_form(bf_gateway *gw, const bf_xml *iq,
                       const bf_adhoc_session *s, enum bf_note_type type,
                       const char *note, const bf_form *values) {
  bf_xml *command;
  bf_xml *reply = command_result(iq, s, "executing", &command);
  bf_xml *actions = reply ? bf_xml_add_child(command, "actions", NULL) : NULL;
  send_or_fail(gw, iq, reply,
               actions && !bf_xml_set_attr(actions, "execute", "next") &&
                   bf_xml_add_child(actions, "next", NULL) &&
                   !add_note(command, type, note) &&
                   bf_form_add(command, "form", NULL, s->title, s->instructions,
                               s->fields, s->n_fields, values));
}

static void reply_status(bf_gateway *gw, const bf_xml *iq,
                         const bf_adhoc_session *s, const char *status,
                         const bf_command_reply *r) {
  bf_xml *command;
  bf_xml *reply = command_result(iq, s, status, &command);
  send_or_fail(gw, iq, reply,
               reply && (!r || (!add_note(command, r->note_type, r->note) &&
                                (!r->result ||
                                 bf_form_add_result(command, s->command->name,
                                                    r->result, r->result_fields,
                                                    r->n_result_fields)))));
}

/* ---- XEP-0050 execution --------------------------------------------------- */

/* Runs the next step of s with the submitted form (NULL at step 0) and
 * answers iq. True if the session goes on (a form was shown). */
static bool run_step(bf_gateway *gw, const bf_xml *iq, bf_adhoc_session *s,
                     const bf_jid *from, const bf_jid *to, const bf_form *form) {
  bf_command_call call = {.from = from, .to = to, .step = form ? s->next_step : 0,
                          .form = form, .data = s->data};
  bf_command_reply r;
  bool goes_on = false;
  memset(&r, 0, sizeof r);
  int rc = s->command->run(s->state, &call, &r);
  r.note[sizeof r.note - 1] = '\0';
  if (rc) {
    reply_error(gw, iq,
                rc == BF_EPERM    ? "forbidden"
                : rc == BF_ENOENT ? "item-not-found"
                : rc == BF_EINVAL ? "bad-request"
                                  : "internal-server-error",
                NULL, NULL);
  } else if (!r.fields) {
    reply_status(gw, iq, s, "completed", &r);
  } else if (session_keep_form(s, &r)) {
    reply_error(gw, iq, "internal-server-error", NULL, NULL);
  } else {
    reply_form(gw, iq, s, r.note_type, r.note, r.values);
    goes_on = true;
  }
  bf_form_free(r.result);
  return goes_on;
}

/* action execute without a sessionid: step 0 (§3.4). */
static void command_start(bf_gateway *gw, const bf_xml *iq, const char *node,
                          const bf_jid *from, const bf_jid *to,
                          const char *from_text, const char *to_text) {
  void *state;
  enum access access;
  const bf_command *cmd = find_command(gw, node, from, to, &state, &access);
  bf_adhoc_session *s;
  if (access != ACCESS_OK) {
    reply_error(gw, iq, refusals[access].condition, NULL, refusals[access].text);
    return;
  }
  if (!session_room(gw, from_text)) {
    reply_error(gw, iq, "resource-constraint", NULL,
                "too many commands in progress; try again in a few minutes");
    return;
  }
  if (!(s = session_new(gw, cmd, state, from_text, to_text))) {
    reply_error(gw, iq, "internal-server-error", NULL, NULL);
    return;
  }
  gw->users.commands_run++;
  if (!run_step(gw, iq, s, from, to, NULL)) {
    session_free(s);
    return;
  }
  s->next = gw->users.sessions;
  gw->users.sessions = s;
  gw->users.n_sessions++;
}

/* next / complete / execute with a sessionid: the submitted form goes to
 * the step the previous one named. form: taken. */
static void command_continue(bf_gateway *gw, const bf_xml *iq,
                             bf_adhoc_session *s, bf_form *form,
                             const bf_jid *from, const bf_jid *to) {
  char err[512];
  s->used_ms = now_ms(gw);
  for (size_t i = 0; i < s->n_fields; i++) {
    const bf_field *f = &s->fields[i];
    const char *now = f->var ? bf_form_value(form, f->var) : NULL;
    const char *kept = f->var ? bf_form_value(s->secrets, f->var) : NULL;
    if (f->type == BF_FIELD_TEXT_PRIVATE && kept && (!now || !*now) &&
        bf_form_set(form, f->var, kept)) {
      reply_error(gw, iq, "internal-server-error", NULL, NULL);
      goto out;
    }
  }
  int rc = bf_form_validate(form, s->fields, s->n_fields, NULL, err, sizeof err);
  if (rc == BF_EINVAL) {
    /* Shown again with what is wrong, in a note clients display; the
     * session stays. */
    reply_form(gw, iq, s, BF_NOTE_ERROR, err, form);
    goto out;
  }
  if (rc) {
    reply_error(gw, iq, "internal-server-error", NULL, NULL);
    session_unlink(gw, s);
  } else if (!run_step(gw, iq, s, from, to, form)) {
    session_unlink(gw, s);
  }
out:
  bf_form_free(form);
}

static void command_iq(bf_gateway *gw, const bf_xml *iq, const bf_xml *command,
                       const bf_jid *from, const bf_jid *to) {
  const char *node = bf_xml_attr(command, "node");
  const char *sessionid = bf_xml_attr(command, "sessionid");
  const char *action = bf_xml_attr(command, "action");
  const bf_xml *x = bf_xml_child(command, "x", BF_NS_DATA);
  char from_text[BF_JID_STACK_BUFFER], to_text[BF_JID_STACK_BUFFER];
  bf_form *form = NULL;
  if (!strcmp(bf_xml_attr(iq, "type"), "get") || !node || !*node) {
    reply_error(gw, iq, "bad-request", NULL,
                "run a command with an iq of type set and a node");
    return;
  }
  if (!action)
    action = "execute"; /* §3.4: the default */
  if (strcmp(action, "execute") && strcmp(action, "next") &&
      strcmp(action, "complete") && strcmp(action, "cancel")) {
    /* §4.6: prev is never offered; anything else is not an action. */
    reply_error(gw, iq, "bad-request",
                strcmp(action, "prev") ? "malformed-action" : "bad-action", NULL);
    return;
  }
  if (!jid_text(from, from_text, sizeof from_text) ||
      !jid_text(to, to_text, sizeof to_text)) {
    reply_error(gw, iq, "jid-malformed", NULL, "address too long");
    return;
  }
  expire_sessions(gw);
  if (!sessionid && !strcmp(action, "execute")) {
    command_start(gw, iq, node, from, to, from_text, to_text);
    return;
  }
  bf_adhoc_session *s = gw->users.sessions;
  while (s && (!sessionid || strcmp(s->id, sessionid)))
    s = s->next;
  /* A session is only ever its starter's, on the same node and JID. */
  if (!s || strcmp(s->from, from_text) || strcmp(s->to, to_text) ||
      strcmp(s->command->node, node)) {
    reply_error(gw, iq, "bad-request", "bad-sessionid",
                "no such session (it may have expired)");
    return;
  }
  if (strcmp(action, "cancel") != 0 && (!x || bf_form_parse(x, &form) != 0)) {
    reply_error(gw, iq, "bad-request", "bad-payload",
                "send the form (jabber:x:data) this command showed");
    return;
  }
  /* §3.4.6, or a cancel form (XEP-0004 §3.1). */
  if (!form || !strcmp(bf_form_type(form), "cancel")) {
    reply_status(gw, iq, s, "canceled", NULL);
    session_unlink(gw, s);
    bf_form_free(form);
    return;
  }
  command_continue(gw, iq, s, form, from, to);
}

/* ---- service discovery (§2) ----------------------------------------------- */

static void disco_items(bf_gateway *gw, const bf_xml *iq, const bf_jid *from,
                        const bf_jid *to) {
  char to_text[BF_JID_STACK_BUFFER];
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *query = reply ? bf_xml_add_child(reply, "query", BF_NS_DISCO_ITEMS) : NULL;
  bool built = query && jid_text(to, to_text, sizeof to_text) &&
               !bf_xml_set_attr(query, "node", NS_COMMANDS);
  for (size_t i = 0, n = n_commands(gw); built && i < n; i++) {
    void *state;
    const bf_command *cmd = command_at(gw, i, &state);
    if (!cmd->node || access_of(gw, cmd, state, from, to) != ACCESS_OK)
      continue;
    bf_xml *item = bf_xml_add_child(query, "item", NULL);
    built = item && !bf_xml_set_attr(item, "jid", to_text) &&
            !bf_xml_set_attr(item, "node", cmd->node) &&
            !bf_xml_set_attr(item, "name", cmd->name ? cmd->name : cmd->node);
  }
  send_or_fail(gw, iq, reply, built);
}

static void disco_info(bf_gateway *gw, const bf_xml *iq, const char *node,
                       const char *type, const char *name) {
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *query = reply ? bf_xml_add_child(reply, "query", BF_NS_DISCO_INFO) : NULL;
  bf_xml *identity = query ? bf_xml_add_child(query, "identity", NULL) : NULL;
  send_or_fail(gw, iq, reply,
               identity && !bf_xml_set_attr(query, "node", node) &&
                   !bf_xml_set_attr(identity, "category", "automation") &&
                   !bf_xml_set_attr(identity, "type", type) &&
                   !bf_xml_set_attr(identity, "name", name) &&
                   !bf_xml_set_attr(bf_xml_add_child(query, "feature", NULL),
                                    "var", NS_COMMANDS) &&
                   !bf_xml_set_attr(bf_xml_add_child(query, "feature", NULL),
                                    "var", BF_NS_DATA));
}

/* ---- chat commands ---------------------------------------------------------- */

/* The result as "Label: value" lines (multi-valued: one value a line),
 * built through bf_form_add_result so private fields stay out here too. */
static void chat_result(bf_buf *out, const bf_command_reply *r) {
  bf_xml *tmp = bf_xml_new("tmp", NULL);
  bf_xml *x = tmp ? bf_form_add_result(tmp, NULL, r->result, r->result_fields,
                                       r->n_result_fields)
                  : NULL;
  for (bf_xml *f = x ? bf_xml_first_child(x) : NULL; f; f = bf_xml_next(f)) {
    const char *type = bf_xml_attr(f, "type");
    const char *label = bf_xml_attr(f, "label");
    bf_xml *v = bf_xml_child(f, "value", NULL);
    bool several = v && bf_xml_next(v);
    if (type && !strcmp(type, "hidden"))
      continue;
    if (out->len)
      bf__buf_append_str(out, "\n");
    bf__buf_append_str(out, label ? label : bf_xml_attr(f, "var"));
    bf__buf_append_str(out, several || !v ? ":" : ": ");
    for (; v; v = bf_xml_next(v)) {
      const char *text = bf_xml_text(v);
      if (several)
        bf__buf_append_str(out, "\n");
      bf__buf_append_str(out, text ? text : "");
    }
  }
  bf_xml_free(tmp);
}

static void chat_help(bf_gateway *gw, bf_buf *out, const bf_jid *from,
                      const bf_jid *to) {
  bf__buf_append_str(out, "Commands:");
  for (size_t i = 0, n = n_commands(gw); i < n; i++) {
    void *state;
    const bf_command *cmd = command_at(gw, i, &state);
    if (!cmd->node || access_of(gw, cmd, state, from, to) != ACCESS_OK)
      continue;
    bf__buf_append_str(out, "\n");
    bf__buf_append_str(out, cmd->node);
    bf__buf_append_str(out, " \xe2\x80\x94 "); /* em dash */
    bf__buf_append_str(out, cmd->name ? cmd->name : cmd->node);
  }
  bf__buf_append_str(out, "\nhelp \xe2\x80\x94 This list\n"
                          "Commands that need a form are run from your "
                          "client's ad-hoc commands (Execute command).");
}

/* Runs word's step 0 with chat set; no session is kept. */
static void chat_run(bf_gateway *gw, bf_buf *out, const char *word,
                     const char *args, const bf_jid *from, const bf_jid *to) {
  void *state;
  enum access access;
  const bf_command *cmd = find_command(gw, word, from, to, &state, &access);
  bf_form *data = bf_form_new("submit");
  bf_command_reply r;
  char line[CHAT_WORD_MAX + 128];
  memset(&r, 0, sizeof r);
  bf_command_call call = {.from = from, .to = to, .data = data, .chat = true,
                          .args = args};
  int rc = BF_ENOMEM;
  if (access != ACCESS_OK) {
    snprintf(line, sizeof line, "Unknown command '%s'. Send 'help' for the list.",
             word);
    bf__buf_append_str(out, refusals[access].chat ? refusals[access].chat : line);
    goto out;
  }
  gw->users.commands_run++;
  gw->users.chat_commands++;
  if (data)
    rc = cmd->run(state, &call, &r);
  r.note[sizeof r.note - 1] = '\0';
  if (rc)
    snprintf(line, sizeof line, "'%s' failed: %s", word, bf_strerror(rc));
  else if (r.fields)
    snprintf(line, sizeof line, "'%s' needs a form: run it from your client's "
                                "ad-hoc commands menu.", word);
  bf__buf_append_str(out, rc || r.fields ? line : r.note);
  if (!rc && !r.fields && r.result)
    chat_result(out, &r);
  if (!out->len)
    bf__buf_append_str(out, "Done.");
out:
  bf_form_free(r.result);
  bf_form_free(data);
}

/* A message to the bare domain: "WORD ARGS". The reply has the same type
 * (chat or normal; chat for any other). */
static bool chat(bf_gateway *gw, const bf_xml *message, const bf_jid *from,
                 const bf_jid *to) {
  const char *type = bf_xml_attr(message, "type");
  const char *body = bf_xml_child_text(message, "body", NULL);
  char word[CHAT_WORD_MAX + 1], from_text[BF_JID_STACK_BUFFER];
  size_t n = 0;
  bf_buf text;
  if (to->local || to->resource ||
      (type && (!strcmp(type, "error") || !strcmp(type, "groupchat"))))
    return false;
  while (body && isspace((unsigned char)*body))
    body++;
  /* Chat states, receipts…: nothing to answer; nor to servers (another
   * gateway answering back would make a loop). */
  if (!body || !*body || !from->local ||
      !jid_text(from, from_text, sizeof from_text))
    return true;
  for (; *body && !isspace((unsigned char)*body); body++)
    if (n < CHAT_WORD_MAX)
      word[n++] = (char)tolower((unsigned char)*body);
  word[n] = '\0';
  while (isspace((unsigned char)*body))
    body++;
  bf__buf_init(&text, CHAT_REPLY_MAX);
  if (!strcmp(word, "help") || !strcmp(word, "?"))
    chat_help(gw, &text, from, to);
  else
    chat_run(gw, &text, word, body, from, to);
  bf_xml *reply = bf_xml_new("message", NULL);
  if (!reply || bf_xml_set_attr(reply, "from", gw->conf->domain) ||
      bf_xml_set_attr(reply, "to", from_text) ||
      bf_xml_set_attr(reply, "type",
                      !type || !strcmp(type, "normal") ? type : "chat") ||
      !bf_xml_add_text_child(reply, "body", NULL, text.data ? text.data : "")) {
    bf_xml_free(reply);
    reply = NULL;
  }
  send_free(gw, reply);
  bf__buf_close(&text);
  return true;
}

/* ---- dispatch ------------------------------------------------------------------ */

bool bf__adhoc_dispatch(bf_gateway *gw, const bf_xml *stanza,
                        const bf_jid *from, const bf_jid *to) {
  if (!strcmp(bf_xml_name(stanza), "message"))
    return chat(gw, stanza, from, to);
  if (strcmp(bf_xml_name(stanza), "iq") != 0 || !bf_stanza_is_request(stanza))
    return false;
  const bf_xml *payload = bf_xml_first_child(stanza);
  const char *ns = bf_xml_xmlns(payload);
  const char *node = bf_xml_attr(payload, "node");
  if (!strcmp(ns, NS_COMMANDS) && !strcmp(bf_xml_name(payload), "command")) {
    command_iq(gw, stanza, payload, from, to);
    return true;
  }
  if (strcmp(bf_xml_attr(stanza, "type"), "get") != 0 || !node ||
      strcmp(bf_xml_name(payload), "query") != 0)
    return false;
  if (!strcmp(ns, BF_NS_DISCO_ITEMS) && !strcmp(node, NS_COMMANDS)) {
    disco_items(gw, stanza, from, to); /* §2.2 */
    return true;
  }
  if (strcmp(ns, BF_NS_DISCO_INFO) != 0)
    return false;
  if (!strcmp(node, NS_COMMANDS)) {
    disco_info(gw, stanza, node, "command-list", "Commands");
    return true;
  }
  void *state;
  enum access access;
  const bf_command *cmd = find_command(gw, node, from, to, &state, &access);
  if (cmd && access == ACCESS_OK) { /* §2.3 */
    disco_info(gw, stanza, node, "command-node", cmd->name ? cmd->name : node);
    return true;
  }
  /* On a contact the module may have nodes of its own (XEP-0045's
   * x-roomuser-item); on the domain every node is ours. */
  if (to->local)
    return false;
  reply_error(gw, stanza, "item-not-found", NULL, NULL);
  return true;
}

/* ---- the core's commands: state is the gateway ------------------------------------ */

static int run_configure(void *state, const bf_command_call *call,
                         bf_command_reply *reply) {
  bf_gateway *gw = state;
  const bf_module *m = module_v2(gw); /* non-NULL: offered only then */
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
  uint64_t now = now_ms(gw), up = (now - d->started_ms) / 1000;
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
