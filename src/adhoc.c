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
  /* The form the last step showed (a copy: a module may build its fields
   * per call, e.g. a list of the user's connections): the submission is
   * checked against it, and it is shown again with an error note when
   * that fails. */
  bf_field *fields;
  size_t n_fields;
  char *title, *instructions;
  bf_form *data;               /* bf_command_call.data */
  /* Private values the step had (never sent to the client): a private
   * field submitted empty keeps them, as XEP-0077 §3.3 does. */
  bf_form *secrets;
  uint64_t used_ms;
};

/* ---- the list of commands ----------------------------------------------- */

/* The core's own commands (adhoc-commands.c) come first. */
#define core_commands bf__adhoc_core_commands
#define CONFIGURE (&core_commands[0])

/* The module's commands only while it runs (its state exists). */
static size_t n_commands(const bf_gateway *gw) {
  const bf_module *m = bf__gateway_module_v2(gw);
  size_t n = bf__adhoc_n_core_commands;
  return m && m->commands && gw->module_started ? n + m->n_commands : n;
}

/* The i-th command and the state its run() gets. */
static const bf_command *command_at(bf_gateway *gw, size_t i, void **state) {
  size_t n = bf__adhoc_n_core_commands;
  *state = i < n ? (void *)gw : gw->state;
  return i < n ? &core_commands[i] : &bf__gateway_module_v2(gw)->commands[i - n];
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
  const bf_module *m = bf__gateway_module_v2(gw);
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

static void fields_free(bf_field *fields, size_t n) {
  for (size_t i = 0; fields && i < n; i++) {
    bf_field *f = &fields[i];
    free((char *)f->var);
    free((char *)f->label);
    free((char *)f->desc);
    free((char *)f->default_value);
    for (bf_field_option *o = (bf_field_option *)f->options; o && o->value;
         o++) {
      free((char *)o->value);
      free((char *)o->label);
    }
    free((bf_field_option *)f->options);
  }
  free(fields);
}

static char *dup_or_null(const char *s, bool *failed) {
  char *copy = s ? strdup(s) : NULL;
  *failed |= s && !copy;
  return copy;
}

/* A deep copy of fields[0..n) into *out (NULL when n is 0). 0 or
 * BF_ENOMEM. */
static int fields_copy(const bf_field *fields, size_t n, bf_field **out) {
  bool failed = false;
  *out = n ? calloc(n, sizeof **out) : NULL;
  if (n && !*out)
    return BF_ENOMEM;
  for (size_t i = 0; i < n && !failed; i++) {
    const bf_field *f = &fields[i];
    bf_field *c = &(*out)[i];
    *c = *f;
    c->var = dup_or_null(f->var, &failed);
    c->label = dup_or_null(f->label, &failed);
    c->desc = dup_or_null(f->desc, &failed);
    c->default_value = dup_or_null(f->default_value, &failed);
    c->options = NULL;
    size_t k = 0;
    while (f->options && f->options[k].value)
      k++;
    bf_field_option *o = f->options ? calloc(k + 1, sizeof *o) : NULL;
    failed |= f->options && !o;
    for (size_t j = 0; o && j < k; j++) {
      o[j].value = dup_or_null(f->options[j].value, &failed);
      o[j].label = dup_or_null(f->options[j].label, &failed);
    }
    c->options = o;
  }
  if (failed) {
    fields_free(*out, n);
    *out = NULL;
    return BF_ENOMEM;
  }
  return 0;
}

static void session_free(bf_adhoc_session *s) {
  if (!s)
    return;
  fields_free(s->fields, s->n_fields);
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

/* Keeps the step's form in the session (fields and strings copied,
 * private values kept aside). 0 or BF_ENOMEM. */
static int session_keep_form(bf_adhoc_session *s, const bf_command_reply *r) {
  free(s->title);
  free(s->instructions);
  bf_form_free(s->secrets);
  fields_free(s->fields, s->n_fields);
  s->n_fields = 0;
  s->title = r->title ? strdup(r->title) : NULL;
  s->instructions = r->instructions ? strdup(r->instructions) : NULL;
  s->secrets = bf_form_new("submit");
  s->next_step = r->next_step;
  if (fields_copy(r->fields, r->n_fields, &s->fields))
    return BF_ENOMEM;
  s->n_fields = r->n_fields;
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
    bf__gateway_reply_error(gw, iq, "internal-server-error", NULL, NULL, NULL);
    return;
  }
  bf__gateway_send_free(gw, reply);
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
    bf__gateway_reply_error(gw, iq, rc == BF_EPERM    ? "forbidden"
                : rc == BF_ENOENT ? "item-not-found"
                : rc == BF_EINVAL ? "bad-request"
                                  : "internal-server-error", NULL, NULL, NULL);
  } else if (!r.fields) {
    reply_status(gw, iq, s, "completed", &r);
  } else if (session_keep_form(s, &r)) {
    bf__gateway_reply_error(gw, iq, "internal-server-error", NULL, NULL, NULL);
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
    bf__gateway_reply_error(gw, iq, refusals[access].condition,
                            refusals[access].text, NULL, NULL);
    return;
  }
  if (!session_room(gw, from_text)) {
    bf__gateway_reply_error(
        gw, iq, "resource-constraint",
        "too many commands in progress; try again in a few minutes", NULL,
        NULL);
    return;
  }
  if (!(s = session_new(gw, cmd, state, from_text, to_text))) {
    bf__gateway_reply_error(gw, iq, "internal-server-error", NULL, NULL, NULL);
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
      bf__gateway_reply_error(gw, iq, "internal-server-error", NULL, NULL,
                              NULL);
      goto out;
    }
  }
  int rc =
      bf_form_validate(form, s->fields, s->n_fields, NULL, err, sizeof err);
  if (rc == BF_EINVAL) {
    /* Shown again with what is wrong, in a note clients display; the
     * session stays. */
    reply_form(gw, iq, s, BF_NOTE_ERROR, err, form);
    goto out;
  }
  if (rc) {
    bf__gateway_reply_error(gw, iq, "internal-server-error", NULL, NULL, NULL);
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
    bf__gateway_reply_error(gw, iq, "bad-request",
                            "run a command with an iq of type set and a node",
                            NULL, NULL);
    return;
  }
  if (!action)
    action = "execute"; /* §3.4: the default */
  if (strcmp(action, "execute") && strcmp(action, "next") &&
      strcmp(action, "complete") && strcmp(action, "cancel")) {
    /* §4.6: prev is never offered; anything else is not an action. */
    bf__gateway_reply_error(gw, iq, "bad-request", NULL,
                            strcmp(action, "prev") ? "malformed-action"
                                                   : "bad-action",
                            NS_COMMANDS);
    return;
  }
  if (!jid_text(from, from_text, sizeof from_text) ||
      !jid_text(to, to_text, sizeof to_text)) {
    bf__gateway_reply_error(gw, iq, "jid-malformed", "address too long", NULL,
                            NULL);
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
    bf__gateway_reply_error(gw, iq, "bad-request",
                            "no such session (it may have expired)",
                            "bad-sessionid", NS_COMMANDS);
    return;
  }
  if (strcmp(action, "cancel") != 0 && (!x || bf_form_parse(x, &form) != 0)) {
    bf__gateway_reply_error(gw, iq, "bad-request",
                            "send the form (jabber:x:data) this command showed",
                            "bad-payload", NS_COMMANDS);
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
  bf__gateway_send_free(gw, reply);
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
  bf__gateway_reply_error(gw, stanza, "item-not-found", NULL, NULL, NULL);
  return true;
}
