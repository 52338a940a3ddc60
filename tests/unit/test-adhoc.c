/* Ad-hoc commands (XEP-0050) and chat commands, end to end through a real
 * gateway: a fake XMPP server on the loop sends the requests over the
 * component stream and reads the answers back, which are parsed and
 * checked as XML. The gateway runs a test module with commands of its own
 * (one step, two steps with a validated form, a failing one, one on
 * contacts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "babelfish/babelfish.h"
#include "component.h"
#include "fake-server.h"
#include "gateway.h"
#include "log.h"
#include "store.h"
#include "support.h"
#include "xml.h"

#define NS_COMMANDS "http://jabber.org/protocol/commands"
#define ALICE "alice@localhost/pc"
#define ADMIN "admin@localhost/desk"
#define BOB "bob@localhost/phone" /* not registered */

/* ---- the test module ------------------------------------------------------ */

static int module_state = 42;

static int no_digits(const char *value, char *err, size_t err_size) {
  if (strpbrk(value, "0123456789")) {
    snprintf(err, err_size, "Names have no digits");
    return BF_EINVAL;
  }
  return 0;
}

static const bf_field greet_fields[] = {
    {.var = "name", .type = BF_FIELD_TEXT_SINGLE, .label = "Name",
     .required = true, .validate = no_digits},
    {.var = "secret", .type = BF_FIELD_TEXT_PRIVATE, .label = "Secret"},
};
static const bf_field greet_result[] = {
    {.var = "greeting", .type = BF_FIELD_TEXT_SINGLE, .label = "Greeting"},
    {.var = "secret", .type = BF_FIELD_TEXT_PRIVATE, .label = "Secret"},
};

static int run_hello(void *state, const bf_command_call *call,
                     bf_command_reply *reply) {
  assert_ptr_equal(state, &module_state);
  snprintf(reply->note, sizeof reply->note, "Hello%s%s", call->chat ? " " : "",
           call->chat ? call->args : " from the module");
  return 0;
}

static int run_greet(void *state, const bf_command_call *call,
                     bf_command_reply *reply) {
  assert_ptr_equal(state, &module_state);
  if (call->step == 0) {
    assert_null(call->form);
    assert_int_equal(bf_form_set(call->data, "started", "yes"), 0);
    reply->fields = greet_fields;
    reply->n_fields = 2;
    reply->title = "Greeting";
    reply->instructions = "Who is it for?";
    reply->next_step = 7;
    return 0;
  }
  assert_int_equal(call->step, 7);
  assert_string_equal(bf_form_value(call->data, "started"), "yes");
  char text[128];
  snprintf(text, sizeof text, "Hello, %s", bf_form_value(call->form, "name"));
  reply->result = bf_form_new("result");
  assert_int_equal(bf_form_set(reply->result, "greeting", text), 0);
  assert_int_equal(bf_form_set(reply->result, "secret", "hunter2"), 0);
  reply->result_fields = greet_result;
  reply->n_result_fields = 2;
  snprintf(reply->note, sizeof reply->note, "Greeted.");
  return 0;
}

static int run_broken(void *state, const bf_command_call *call,
                      bf_command_reply *reply) {
  (void)state, (void)call, (void)reply;
  return BF_ENOENT;
}

static bool whois_applies(void *state, const bf_jid *user, const bf_jid *to) {
  (void)state, (void)user;
  return to->local && !strncmp(to->local, "bot", 3);
}

static int run_whois(void *state, const bf_command_call *call,
                     bf_command_reply *reply) {
  (void)state;
  snprintf(reply->note, sizeof reply->note, "%s is a bot", call->to->local);
  return 0;
}

static const bf_command test_commands[] = {
    {"hello", "Say hello", BF_COMMAND_ON_GATEWAY, NULL, run_hello},
    {"greet", "Greet someone", 0, NULL, run_greet},
    {"broken", "Always fails", BF_COMMAND_ON_GATEWAY, NULL, run_broken},
    {"whois", "About this bot", BF_COMMAND_ON_CONTACT, whois_applies, run_whois},
};

static const bf_field test_register_fields[] = {
    {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nickname",
     .required = true},
    {.var = "password", .type = BF_FIELD_TEXT_PRIVATE, .label = "Password",
     .required = true},
};

static int test_init(const bf_host *host, void **state) {
  (void)host;
  *state = &module_state;
  return 0;
}

static const bf_module test_module = {
    .abi_version = BF_MODULE_ABI_VERSION,
    .name = "test",
    .description = "Test gateway",
    .init = test_init,
    .register_fields = test_register_fields,
    .n_register_fields = 2,
    .register_instructions = "Choose a nickname and a password.",
    .commands = test_commands,
    .n_commands = 4,
};

/* ---- the fixture: a daemon with one gateway running the test module ------ */

#define MAX_STANZAS 64

typedef struct fixture {
  uv_loop_t loop;
  bf_test_server server;
  bf_conf conf;
  bf_conf_gateway gwconf;
  bf_conf_entry entries[2];
  char *admins[2];
  bf_daemon daemon;
  bf_gateway *gw;
  char *dir, *db;
  bool stopped;
  unsigned syncs;
  int reloads;
  /* the answers of the last exchange, parsed */
  bf_xml *got[MAX_STANZAS];
  size_t n_got;
} fixture;

static fixture *current;

static void exchange(fixture *f, const char *xml);

static int fake_reload(bf_daemon *d, char *msg, size_t size) {
  (void)d;
  current->reloads++;
  snprintf(msg, size, "Reloaded: nothing changed.");
  return 0;
}

static bool is_online(void *data) {
  fixture *f = data;
  return f->server.handshaken && bf__component_online(&f->gw->component);
}

static void on_stopped(bf_gateway *gw) {
  (void)gw;
  current->stopped = true;
}

static bool is_stopped(void *data) { return ((fixture *)data)->stopped; }

static void clear_got(fixture *f) {
  for (size_t i = 0; i < f->n_got; i++)
    bf_xml_free(f->got[i]);
  f->n_got = 0;
}

static void register_user(fixture *f, const char *jid_text, const char *nick) {
  bf_jid jid;
  bool is_new;
  char err[256];
  bf_form *form = bf_form_new("submit");
  assert_int_equal(bf_jid_parse(&jid, jid_text), 0);
  assert_int_equal(bf_form_set(form, "nick", nick), 0);
  assert_int_equal(bf_form_set(form, "password", "pw-of-user"), 0);
  assert_int_equal(bf__users_register(f->gw, &jid, form, &is_new, err, sizeof err), 0);
  assert_true(is_new);
  bf_form_free(form);
  bf_jid_close(&jid);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  char err[512];
  current = f;
  f->dir = bf_test_tmpdir("adhoc");
  f->db = malloc(strlen(f->dir) + 16);
  sprintf(f->db, "%s/bf.db", f->dir);
  bf__log_init(BF_LOG_WARN, NULL);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  unsigned port = bf_test_server_start(&f->server, &f->loop);
  bf_test_gateway_conf(&f->conf, &f->gwconf, port, "s3cret");
  f->admins[0] = "admin@localhost";
  f->conf.admins = f->admins;
  f->conf.n_admins = 1;
  f->gwconf.section = "test";
  f->gwconf.transport = "echo"; /* loaded, then replaced by test_module */
  f->entries[0] = (bf_conf_entry){"transport", "echo", 2};
  f->entries[1] = (bf_conf_entry){"domain", "echo.localhost", 3};
  f->gwconf.entries = f->entries;
  f->gwconf.n_entries = 2;
  f->daemon.loop = &f->loop;
  f->daemon.conf = &f->conf;
  f->daemon.reload = fake_reload;
  assert_int_equal(bf__store_open(&f->daemon.store, f->db, err, sizeof err), 0);
  assert_int_equal(bf__gateway_new(&f->gw, &f->daemon, &f->gwconf, err, sizeof err), 0);
  f->gw->module.module = &test_module;
  f->daemon.gateways = &f->gw;
  f->daemon.n_gateways = 1;
  assert_int_equal(bf__gateway_start(f->gw), 0);
  assert_true(bf_test_run_until(&f->loop, is_online, f, 5000));
  register_user(f, "alice@localhost", "Al");
  exchange(f, ""); /* the presences registering sends */
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  clear_got(f);
  bf__gateway_stop(f->gw, on_stopped);
  assert_true(bf_test_run_until(&f->loop, is_stopped, f, 5000));
  bf__gateway_free(f->gw);
  bf_test_server_close(&f->server);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  bf__store_close(f->daemon.store);
  /* every handle is closed */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  char path[600];
  static const char *const suffixes[] = {"", "-wal", "-shm", ".lock"};
  for (size_t i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s%s", f->db, suffixes[i]);
    unlink(path);
  }
  rmdir(f->dir);
  free(f->db);
  free(f->dir);
  free(f);
  return 0;
}

/* ---- exchanges -------------------------------------------------------------- */

struct wait_text {
  fixture *f;
  char text[64];
};

static bool seen(void *data) {
  struct wait_text *w = data;
  return strstr(w->f->server.in, w->text) != NULL;
}

static void on_stanza(void *data, bf_xml *stanza) {
  fixture *f = data;
  assert_true(f->n_got < MAX_STANZAS);
  f->got[f->n_got++] = stanza;
}

static void on_parse_error(void *data, const char *condition, const char *text) {
  (void)data;
  fail_msg("the gateway wrote bad XML: %s (%s)", condition, text);
}

/* Sends stanzas (XML text) as the server, then a ping: the gateway answers
 * in order, so once the ping's result is in every answer to the stanzas
 * is. The answers (the ping's left out) are parsed into f->got. */
static void exchange(fixture *f, const char *xml) {
  struct wait_text w = {f, ""};
  char ping[256];
  clear_got(f);
  bf_test_server_clear(&f->server);
  f->syncs++;
  snprintf(w.text, sizeof w.text, "id='sync-%u'", f->syncs);
  snprintf(ping, sizeof ping,
           "<iq type='get' id='sync-%u' from='" ALICE "' to='echo.localhost'>"
           "<ping xmlns='urn:xmpp:ping'/></iq>", f->syncs);
  if (*xml)
    bf_test_server_send(&f->server, xml);
  bf_test_server_send(&f->server, ping);
  assert_true(bf_test_run_until(&f->loop, seen, &w, 3000));
  static const bf_xml_stream_callbacks cb = {.stanza = on_stanza,
                                             .error = on_parse_error};
  bf_xml_stream *p = bf__xml_stream_new(&cb, f, 0, 0);
  static const char header[] =
      "<stream:stream xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams'>";
  assert_int_equal(bf__xml_stream_feed(p, header, strlen(header)), 0);
  assert_int_equal(bf__xml_stream_feed(p, f->server.in, f->server.in_len), 0);
  bf__xml_stream_free(p);
  assert_true(f->n_got >= 1);
  bf_xml_free(f->got[--f->n_got]); /* the ping's result */
}

/* The one answer with this id. */
static const bf_xml *answer(fixture *f, const char *id) {
  const bf_xml *found = NULL;
  for (size_t i = 0; i < f->n_got; i++) {
    const char *got = bf_xml_attr(f->got[i], "id");
    if (got && !strcmp(got, id)) {
      assert_null(found);
      found = f->got[i];
    }
  }
  if (!found)
    fail_msg("no answer with id %s in: %s", id, f->server.in);
  return found;
}

static void command_iq(char *buf, size_t size, const char *id, const char *from,
                       const char *to, const char *node, const char *extra_attrs,
                       const char *payload) {
  snprintf(buf, size,
           "<iq type='set' id='%s' from='%s' to='%s'><command xmlns='" NS_COMMANDS
           "' node='%s'%s>%s</command></iq>",
           id, from, to, node, extra_attrs ? extra_attrs : "",
           payload ? payload : "");
}

/* Runs a command and returns its <command/> answer (asserting a result). */
static const bf_xml *run_command(fixture *f, const char *from, const char *node,
                                 const char *extra_attrs, const char *payload) {
  char xml[2048];
  command_iq(xml, sizeof xml, "c", from, "echo.localhost", node, extra_attrs,
             payload);
  exchange(f, xml);
  const bf_xml *iq = answer(f, "c");
  assert_string_equal(bf_xml_attr(iq, "type"), "result");
  assert_string_equal(bf_xml_attr(iq, "from"), "echo.localhost");
  assert_string_equal(bf_xml_attr(iq, "to"), from);
  const bf_xml *command = bf_xml_child(iq, "command", NS_COMMANDS);
  assert_non_null(command);
  assert_string_equal(bf_xml_attr(command, "node"), node);
  assert_non_null(bf_xml_attr(command, "sessionid"));
  return command;
}

/* The stanza error condition and the XEP-0050 one (NULL = none). */
static void assert_error(const bf_xml *iq, const char *condition,
                         const char *type, const char *app) {
  assert_string_equal(bf_xml_attr(iq, "type"), "error");
  const bf_xml *error = bf_xml_child(iq, "error", NULL);
  assert_non_null(error);
  assert_string_equal(bf_xml_attr(error, "type"), type);
  assert_non_null(bf_xml_child(error, condition, BF_NS_STANZAS));
  if (app)
    assert_non_null(bf_xml_child(error, app, NS_COMMANDS));
  else
    assert_null(bf_xml_child(error, NULL, NS_COMMANDS));
}

static void command_error(fixture *f, const char *from, const char *node,
                          const char *extra_attrs, const char *payload,
                          const char *condition, const char *type,
                          const char *app) {
  char xml[2048];
  command_iq(xml, sizeof xml, "e", from, "echo.localhost", node, extra_attrs,
             payload);
  exchange(f, xml);
  assert_error(answer(f, "e"), condition, type, app);
}

static const char *note_of(const bf_xml *command, const char *type) {
  const bf_xml *note = bf_xml_child(command, "note", NS_COMMANDS);
  assert_non_null(note);
  assert_string_equal(bf_xml_attr(note, "type"), type);
  return bf_xml_text(note);
}

/* The <field var=VAR/> of the data form in command. */
static const bf_xml *field_of(const bf_xml *command, const char *var) {
  const bf_xml *x = bf_xml_child(command, "x", BF_NS_DATA);
  assert_non_null(x);
  for (const bf_xml *c = bf_xml_first_child(x); c; c = bf_xml_next(c))
    if (bf_xml_attr(c, "var") && !strcmp(bf_xml_attr(c, "var"), var))
      return c;
  return NULL;
}

static const char *value_of(const bf_xml *command, const char *var) {
  const bf_xml *field = field_of(command, var);
  assert_non_null(field);
  return bf_xml_child_text(field, "value", NULL);
}

/* The node attributes of the items of a disco#items answer, "a b c". */
static void items_of(const bf_xml *iq, const char *jid, char *out, size_t size) {
  const bf_xml *query = bf_xml_child(iq, "query", BF_NS_DISCO_ITEMS);
  assert_non_null(query);
  assert_string_equal(bf_xml_attr(query, "node"), NS_COMMANDS);
  out[0] = '\0';
  for (const bf_xml *item = bf_xml_first_child(query); item; item = bf_xml_next(item)) {
    assert_string_equal(bf_xml_attr(item, "jid"), jid);
    assert_non_null(bf_xml_attr(item, "name"));
    size_t len = strlen(out);
    snprintf(out + len, size - len, "%s%s", len ? " " : "", bf_xml_attr(item, "node"));
  }
}

static void list(fixture *f, const char *from, const char *to, char *out,
                 size_t size) {
  char xml[512];
  snprintf(xml, sizeof xml,
           "<iq type='get' id='l' from='%s' to='%s'><query xmlns='"
           BF_NS_DISCO_ITEMS "' node='" NS_COMMANDS "'/></iq>", from, to);
  exchange(f, xml);
  const bf_xml *iq = answer(f, "l");
  assert_string_equal(bf_xml_attr(iq, "type"), "result");
  items_of(iq, to, out, size);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_list(void **state) {
  fixture *f = *state;
  char nodes[512];
  list(f, ALICE, "echo.localhost", nodes, sizeof nodes);
  assert_string_equal(nodes, "configure unregister hello greet broken");
  list(f, BOB, "echo.localhost", nodes, sizeof nodes);
  assert_string_equal(nodes, "hello greet broken");
  list(f, ADMIN, "echo.localhost", nodes, sizeof nodes);
  assert_string_equal(nodes, "users sessions stats announce reload hello greet broken");
  list(f, ALICE, "bot1@echo.localhost", nodes, sizeof nodes);
  assert_string_equal(nodes, "whois");
  list(f, ALICE, "carol@echo.localhost", nodes, sizeof nodes);
  assert_string_equal(nodes, "");

  /* The item's name, exactly. */
  list(f, ALICE, "echo.localhost", nodes, sizeof nodes);
  const bf_xml *query = bf_xml_child(answer(f, "l"), "query", BF_NS_DISCO_ITEMS);
  bf_test_assert_xml(bf_xml_first_child(query),
                     "<item xmlns='" BF_NS_DISCO_ITEMS "' jid='echo.localhost' node='configure' "
                     "name='Configure'/>");

  /* disco#info on a command node (§2.3), on the list node, unknown nodes */
  exchange(f,
           "<iq type='get' id='i1' from='" ALICE "' to='echo.localhost'><query xmlns='"
           BF_NS_DISCO_INFO "' node='greet'/></iq>"
           "<iq type='get' id='i2' from='" ALICE "' to='echo.localhost'><query xmlns='"
           BF_NS_DISCO_INFO "' node='" NS_COMMANDS "'/></iq>"
           "<iq type='get' id='i3' from='" ALICE "' to='echo.localhost'><query xmlns='"
           BF_NS_DISCO_INFO "' node='nope'/></iq>"
           "<iq type='get' id='i4' from='" BOB "' to='echo.localhost'><query xmlns='"
           BF_NS_DISCO_INFO "' node='users'/></iq>");
  bf_test_assert_xml(answer(f, "i1"),
                     "<iq from='echo.localhost' to='" ALICE "' id='i1' type='result'>"
                     "<query xmlns='" BF_NS_DISCO_INFO "' node='greet'>"
                     "<identity category='automation' type='command-node' "
                     "name='Greet someone'/>"
                     "<feature var='" NS_COMMANDS "'/>"
                     "<feature var='jabber:x:data'/></query></iq>");
  const bf_xml *identity =
      bf_xml_child(bf_xml_child(answer(f, "i2"), "query", NULL), "identity", NULL);
  assert_string_equal(bf_xml_attr(identity, "type"), "command-list");
  assert_error(answer(f, "i3"), "item-not-found", "cancel", NULL);
  assert_error(answer(f, "i4"), "item-not-found", "cancel", NULL);
}

static void test_execute_single_step(void **state) {
  fixture *f = *state;
  const bf_xml *command = run_command(f, ALICE, "hello", NULL, NULL);
  assert_string_equal(bf_xml_attr(command, "status"), "completed");
  assert_string_equal(note_of(command, "info"), "Hello from the module");
  assert_null(bf_xml_child(command, "x", BF_NS_DATA));
  assert_null(bf_xml_child(command, "actions", NULL));
  /* action='execute' spelled out is the same */
  command = run_command(f, BOB, "hello", " action='execute'", NULL);
  assert_string_equal(bf_xml_attr(command, "status"), "completed");

  /* on a contact */
  exchange(f, "<iq type='set' id='w' from='" ALICE "' to='bot7@echo.localhost'>"
              "<command xmlns='" NS_COMMANDS "' node='whois'/></iq>");
  command = bf_xml_child(answer(f, "w"), "command", NS_COMMANDS);
  assert_string_equal(note_of(command, "info"), "bot7 is a bot");
  assert_string_equal(bf_xml_attr(answer(f, "w"), "from"), "bot7@echo.localhost");

  /* errors: run() failing, unknown node, not offered there, a get */
  command_error(f, ALICE, "broken", NULL, NULL, "item-not-found", "cancel", NULL);
  command_error(f, ALICE, "nope", NULL, NULL, "item-not-found", "cancel", NULL);
  command_error(f, ALICE, "whois", NULL, NULL, "item-not-found", "cancel", NULL);
  command_error(f, ALICE, "hello", " action='prev'", NULL, "bad-request", "modify",
                "bad-action");
  command_error(f, ALICE, "hello", " action='jump'", NULL, "bad-request", "modify",
                "malformed-action");
  exchange(f, "<iq type='get' id='g' from='" ALICE "' to='echo.localhost'>"
              "<command xmlns='" NS_COMMANDS "' node='hello'/></iq>");
  assert_error(answer(f, "g"), "bad-request", "modify", NULL);
  /* results and errors are not ours: nothing is answered */
  exchange(f, "<iq type='result' id='r' from='" ALICE "' to='echo.localhost'>"
              "<command xmlns='" NS_COMMANDS "' node='hello'/></iq>");
  assert_int_equal(f->n_got, 0);
}

static char *sessionid_of(const bf_xml *command) {
  char *id = strdup(bf_xml_attr(command, "sessionid"));
  assert_non_null(id);
  return id;
}

static void test_two_steps(void **state) {
  fixture *f = *state;
  const bf_xml *command = run_command(f, ALICE, "greet", NULL, NULL);
  assert_string_equal(bf_xml_attr(command, "status"), "executing");
  char *sid = sessionid_of(command);
  bf_test_assert_xml(bf_xml_child(command, "actions", NULL),
                     "<actions xmlns='" NS_COMMANDS "' execute='next'><next/></actions>");
  const bf_xml *x = bf_xml_child(command, "x", BF_NS_DATA);
  assert_string_equal(bf_xml_attr(x, "type"), "form");
  assert_string_equal(bf_xml_child_text(x, "title", NULL), "Greeting");
  assert_string_equal(bf_xml_child_text(x, "instructions", NULL), "Who is it for?");
  assert_non_null(bf_xml_child(field_of(command, "name"), "required", NULL));
  assert_string_equal(bf_xml_attr(field_of(command, "secret"), "type"), "text-private");

  char attrs[128], form[512];
  snprintf(attrs, sizeof attrs, " sessionid='%s' action='next'", sid);
  /* the required name missing: the form again, with the reason */
  snprintf(form, sizeof form,
           "<x xmlns='jabber:x:data' type='submit'>"
           "<field var='secret'><value>s3</value></field></x>");
  command = run_command(f, ALICE, "greet", attrs, form);
  assert_string_equal(bf_xml_attr(command, "status"), "executing");
  assert_string_equal(bf_xml_attr(command, "sessionid"), sid);
  assert_string_equal(note_of(command, "error"), "Name is required");
  assert_non_null(field_of(command, "name"));
  assert_null(bf_xml_child(field_of(command, "secret"), "value", NULL));
  assert_non_null(bf_xml_child(command, "actions", NULL));
  /* the field's own check */
  snprintf(form, sizeof form,
           "<x xmlns='jabber:x:data' type='submit'>"
           "<field var='name'><value>R2D2</value></field></x>");
  command = run_command(f, ALICE, "greet", attrs, form);
  assert_string_equal(bf_xml_attr(command, "status"), "executing");
  assert_string_equal(note_of(command, "error"), "Names have no digits");
  assert_string_equal(value_of(command, "name"), "R2D2"); /* kept for fixing */
  /* no form at all: bad-payload, and the session survives */
  snprintf(attrs, sizeof attrs, " sessionid='%s'", sid); /* action: execute */
  command_error(f, ALICE, "greet", attrs, NULL, "bad-request", "modify",
                "bad-payload");
  /* right: completed, with the result form (the private value left out) */
  snprintf(form, sizeof form,
           "<x xmlns='jabber:x:data' type='submit'>"
           "<field var='name'><value>Bob</value></field>"
           "<field var='secret'><value>s3</value></field></x>");
  command = run_command(f, ALICE, "greet", attrs, form);
  assert_string_equal(bf_xml_attr(command, "status"), "completed");
  assert_string_equal(bf_xml_attr(command, "sessionid"), sid);
  assert_string_equal(note_of(command, "info"), "Greeted.");
  x = bf_xml_child(command, "x", BF_NS_DATA);
  assert_string_equal(bf_xml_attr(x, "type"), "result");
  assert_string_equal(value_of(command, "greeting"), "Hello, Bob");
  assert_string_equal(bf_xml_attr(field_of(command, "greeting"), "label"), "Greeting");
  assert_null(field_of(command, "secret"));
  assert_null(strstr(f->server.in, "hunter2"));
  /* the session is over */
  command_error(f, ALICE, "greet", attrs, form, "bad-request", "modify",
                "bad-sessionid");
  free(sid);
}

static void test_cancel_and_bad_sessionid(void **state) {
  fixture *f = *state;
  char *sid = sessionid_of(run_command(f, ALICE, "greet", NULL, NULL));
  char attrs[128];
  static const char form[] = "<x xmlns='jabber:x:data' type='submit'>"
                             "<field var='name'><value>Bob</value></field></x>";
  /* another resource, another node, an unknown id */
  snprintf(attrs, sizeof attrs, " sessionid='%s' action='next'", sid);
  command_error(f, "alice@localhost/phone", "greet", attrs, form, "bad-request",
                "modify", "bad-sessionid");
  command_error(f, ALICE, "hello", attrs, form, "bad-request", "modify",
                "bad-sessionid");
  command_error(f, ALICE, "greet", " sessionid='0-0' action='next'", form,
                "bad-request", "modify", "bad-sessionid");
  /* cancel (§3.4.6) */
  snprintf(attrs, sizeof attrs, " sessionid='%s' action='cancel'", sid);
  const bf_xml *command = run_command(f, ALICE, "greet", attrs, NULL);
  assert_string_equal(bf_xml_attr(command, "status"), "canceled");
  assert_string_equal(bf_xml_attr(command, "sessionid"), sid);
  snprintf(attrs, sizeof attrs, " sessionid='%s' action='next'", sid);
  command_error(f, ALICE, "greet", attrs, form, "bad-request", "modify",
                "bad-sessionid");
  free(sid);
  /* a cancel form (XEP-0004 §3.1) ends it too */
  sid = sessionid_of(run_command(f, ALICE, "greet", NULL, NULL));
  snprintf(attrs, sizeof attrs, " sessionid='%s' action='complete'", sid);
  command = run_command(f, ALICE, "greet", attrs,
                        "<x xmlns='jabber:x:data' type='cancel'/>");
  assert_string_equal(bf_xml_attr(command, "status"), "canceled");
  assert_int_equal(f->gw->users.n_sessions, 0);
  free(sid);
}

/* Past SESSIONS_PER_JID (8), a JID's oldest session goes. */
static void test_session_limit(void **state) {
  fixture *f = *state;
  char *first = sessionid_of(run_command(f, ALICE, "greet", NULL, NULL));
  char *second = sessionid_of(run_command(f, ALICE, "greet", NULL, NULL));
  for (int i = 0; i < 7; i++)
    run_command(f, ALICE, "greet", NULL, NULL);
  run_command(f, BOB, "greet", NULL, NULL);
  assert_int_equal(f->gw->users.n_sessions, 9);
  char attrs[128];
  static const char form[] = "<x xmlns='jabber:x:data' type='submit'>"
                             "<field var='name'><value>Bob</value></field></x>";
  snprintf(attrs, sizeof attrs, " sessionid='%s'", first);
  command_error(f, ALICE, "greet", attrs, form, "bad-request", "modify",
                "bad-sessionid");
  snprintf(attrs, sizeof attrs, " sessionid='%s'", second);
  assert_string_equal(
      bf_xml_attr(run_command(f, ALICE, "greet", attrs, form), "status"),
      "completed");
  free(first);
  free(second);
}

/* Past SESSIONS_MAX (512) per gateway: resource-constraint, and nobody
 * else's session is dropped. */
static void test_gateway_limit(void **state) {
  fixture *f = *state;
  static char batch[64 * 256];
  for (int user = 0; user < 64; user++) {
    size_t len = 0;
    for (int i = 0; i < 8; i++)
      len += (size_t)snprintf(batch + len, sizeof batch - len,
                              "<iq type='set' id='b%d' from='u%d@localhost/r' "
                              "to='echo.localhost'><command xmlns='" NS_COMMANDS
                              "' node='greet'/></iq>", i, user);
    exchange(f, batch);
    assert_int_equal(f->n_got, 8);
  }
  assert_int_equal(f->gw->users.n_sessions, 512);
  command_error(f, ALICE, "greet", NULL, NULL, "resource-constraint", "wait", NULL);
  assert_int_equal(f->gw->users.n_sessions, 512);
  /* a one-step command needs no session, but the check comes first */
  command_error(f, ALICE, "hello", NULL, NULL, "resource-constraint", "wait", NULL);
  /* a JID at its own limit makes room by dropping its oldest */
  assert_string_equal(bf_xml_attr(run_command(f, "u0@localhost/r", "greet", NULL, NULL),
                                  "status"), "executing");
  assert_int_equal(f->gw->users.n_sessions, 512);
}

static void test_permissions(void **state) {
  fixture *f = *state;
  command_error(f, ALICE, "users", NULL, NULL, "forbidden", "auth", NULL);
  command_error(f, BOB, "reload", NULL, NULL, "forbidden", "auth", NULL);
  command_error(f, BOB, "unregister", NULL, NULL, "registration-required",
                "auth", NULL);
  command_error(f, BOB, "configure", NULL, NULL, "registration-required",
                "auth", NULL);
}

static void test_configure(void **state) {
  fixture *f = *state;
  const bf_xml *command = run_command(f, ALICE, "configure", NULL, NULL);
  assert_string_equal(bf_xml_attr(command, "status"), "executing");
  assert_string_equal(value_of(command, "nick"), "Al");
  /* the stored password is never sent back */
  assert_null(bf_xml_child(field_of(command, "password"), "value", NULL));
  assert_null(strstr(f->server.in, "pw-of-user"));
  char *sid = sessionid_of(command);
  char attrs[128];
  snprintf(attrs, sizeof attrs, " sessionid='%s' action='complete'", sid);
  /* the password left empty keeps the stored one */
  command = run_command(f, ALICE, "configure", attrs,
                        "<x xmlns='jabber:x:data' type='submit'>"
                        "<field var='nick'><value>Alice</value></field>"
                        "<field var='password'><value/></field></x>");
  assert_string_equal(bf_xml_attr(command, "status"), "completed");
  assert_string_equal(note_of(command, "info"), "Settings saved.");
  bf_form *values = NULL;
  assert_int_equal(bf__users_values(f->gw, "alice@localhost", &values), 0);
  assert_string_equal(bf_form_value(values, "nick"), "Alice");
  assert_string_equal(bf_form_value(values, "password"), "pw-of-user");
  bf_form_free(values);
  free(sid);
}

static void test_unregister(void **state) {
  fixture *f = *state;
  static const char no[] = "<x xmlns='jabber:x:data' type='submit'>"
                           "<field var='confirm'><value>false</value></field></x>";
  static const char yes[] = "<x xmlns='jabber:x:data' type='submit'>"
                            "<field var='confirm'><value>true</value></field></x>";
  char attrs[128];
  for (int round = 0; round < 2; round++) {
    const bf_xml *command = run_command(f, ALICE, "unregister", NULL, NULL);
    assert_string_equal(bf_xml_attr(command, "status"), "executing");
    const bf_xml *confirm = field_of(command, "confirm");
    assert_string_equal(bf_xml_attr(confirm, "type"), "boolean");
    assert_non_null(bf_xml_child(confirm, "required", NULL));
    assert_string_equal(bf_xml_attr(confirm, "label"),
                        "Really delete your registration and everything "
                        "stored for you?");
    char *sid = sessionid_of(command);
    snprintf(attrs, sizeof attrs, " sessionid='%s'", sid);
    command = run_command(f, ALICE, "unregister", attrs, round ? yes : no);
    assert_string_equal(note_of(command, "info"),
                        round ? "You are unregistered." : "Nothing was changed.");
    assert_int_equal(bf__users_registered(f->gw, "alice@localhost"), round == 0);
    free(sid);
  }
}

static void test_admin_commands(void **state) {
  fixture *f = *state;
  register_user(f, "carol@localhost", "C");
  exchange(f, "<presence from='" ALICE "' to='echo.localhost'/>"
              "<presence from='alice@localhost/phone' to='echo.localhost'/>");

  const bf_xml *command = run_command(f, ADMIN, "users", NULL, NULL);
  assert_string_equal(bf_xml_attr(command, "status"), "completed");
  const bf_xml *users = field_of(command, "users");
  assert_string_equal(bf_xml_attr(users, "type"), "jid-multi");
  bf_test_assert_xml(users, "<field xmlns='jabber:x:data' type='jid-multi' var='users' label='Registered users'>"
                            "<value>alice@localhost</value>"
                            "<value>carol@localhost</value></field>");
  assert_string_equal(value_of(command, "count"), "2");

  command = run_command(f, ADMIN, "sessions", NULL, NULL);
  const bf_xml *sessions = field_of(command, "sessions");
  const bf_xml *line = bf_xml_child(sessions, "value", NULL);
  assert_non_null(line);
  const char *text = bf_xml_text(line);
  assert_true(!strcmp(text, "alice@localhost: pc, phone") ||
              !strcmp(text, "alice@localhost: phone, pc"));
  assert_null(bf_xml_next(line));
  assert_string_equal(value_of(command, "count"), "1");

  command = run_command(f, ADMIN, "stats", NULL, NULL);
  assert_string_equal(bf_xml_attr(field_of(command, "stats"), "type"), "text-multi");
  assert_non_null(strstr(f->server.in, "<value>echo.localhost (transport echo)</value>"));
  assert_non_null(strstr(f->server.in, "<value>  connected: yes, for "));
  assert_non_null(strstr(f->server.in, "<value>  users: 2 registered, 1 online</value>"));
  assert_non_null(strstr(f->server.in, "<value>  commands run: 3 (0 by chat)</value>"));

  command = run_command(f, ADMIN, "reload", NULL, NULL);
  assert_string_equal(note_of(command, "info"), "Reloaded: nothing changed.");
  assert_int_equal(f->reloads, 1);

  /* announce: a form, then a message to every registered user */
  command = run_command(f, ADMIN, "announce", NULL, NULL);
  assert_string_equal(bf_xml_attr(command, "status"), "executing");
  assert_string_equal(value_of(command, "online_only"), "0");
  char *sid = sessionid_of(command);
  char attrs[128];
  snprintf(attrs, sizeof attrs, " sessionid='%s'", sid);
  command = run_command(f, ADMIN, "announce", attrs,
                        "<x xmlns='jabber:x:data' type='submit'>"
                        "<field var='subject'><value>Maintenance</value></field>"
                        "<field var='body'><value>Down at 5.</value>"
                        "<value>Back at 6.</value></field></x>");
  assert_string_equal(note_of(command, "info"), "Sent to 2 users.");
  size_t messages = 0;
  for (size_t i = 0; i < f->n_got; i++) {
    if (strcmp(bf_xml_name(f->got[i]), "message") != 0)
      continue;
    const char *to = bf_xml_attr(f->got[i], "to");
    assert_true(!strcmp(to, "alice@localhost") || !strcmp(to, "carol@localhost"));
    char expected[512];
    snprintf(expected, sizeof expected,
             "<message from='echo.localhost' type='normal' to='%s'>"
             "<subject>Maintenance</subject>"
             "<body>Down at 5.\nBack at 6.</body></message>", to);
    bf_test_assert_xml(f->got[i], expected);
    messages++;
  }
  assert_int_equal(messages, 2);
  /* online only: alice has a session, carol has none */
  command = run_command(f, ADMIN, "announce", NULL, NULL);
  free(sid);
  sid = sessionid_of(command);
  snprintf(attrs, sizeof attrs, " sessionid='%s'", sid);
  command = run_command(f, ADMIN, "announce", attrs,
                        "<x xmlns='jabber:x:data' type='submit'>"
                        "<field var='body'><value>Hi</value></field>"
                        "<field var='online_only'><value>1</value></field></x>");
  assert_string_equal(note_of(command, "info"), "Sent to 1 user.");
  assert_non_null(strstr(f->server.in, "<message from='echo.localhost' "
                                       "type='normal' to='alice@localhost'>"
                                       "<body>Hi</body></message>"));
  free(sid);
}

/* ---- chat --------------------------------------------------------------------- */

/* Sends body from `from` to the gateway and returns the reply's body
 * (NULL if none). */
static const char *chat(fixture *f, const char *from, const char *type,
                        const char *body) {
  char xml[1024];
  snprintf(xml, sizeof xml,
           "<message id='m' from='%s' to='echo.localhost'%s%s%s>%s%s%s</message>",
           from, type ? " type='" : "", type ? type : "", type ? "'" : "",
           body ? "<body>" : "<active xmlns='http://jabber.org/protocol/chatstates'/>",
           body ? body : "", body ? "</body>" : "");
  exchange(f, xml);
  /* one message (unregistering also sends presences) */
  const bf_xml *reply = NULL;
  for (size_t i = 0; i < f->n_got; i++) {
    if (strcmp(bf_xml_name(f->got[i]), "message") != 0)
      continue;
    if (reply)
      fail_msg("more than one reply: %s", f->server.in);
    reply = f->got[i];
  }
  if (!reply)
    return NULL;
  assert_string_equal(bf_xml_attr(reply, "from"), "echo.localhost");
  assert_string_equal(bf_xml_attr(reply, "to"), from);
  return bf_xml_child_text(reply, "body", NULL);
}

static void test_chat(void **state) {
  fixture *f = *state;
  const char *text = chat(f, ALICE, "chat", "help");
  assert_int_equal(f->n_got, 1);
  assert_string_equal(bf_xml_attr(f->got[0], "type"), "chat");
  assert_non_null(text);
  assert_non_null(strstr(text, "\nconfigure \xe2\x80\x94 Configure\n"));
  assert_non_null(strstr(text, "\nhello \xe2\x80\x94 Say hello\n"));
  assert_non_null(strstr(text, "Execute command"));
  assert_null(strstr(text, "users"));
  assert_null(strstr(text, "whois"));
  text = chat(f, ADMIN, NULL, "  ?  ");
  assert_null(bf_xml_attr(f->got[0], "type")); /* normal, like the request */
  assert_non_null(strstr(text, "\nusers \xe2\x80\x94 List registered users\n"));

  assert_string_equal(chat(f, ALICE, "chat", "frobnicate now"),
                      "Unknown command 'frobnicate'. Send 'help' for the list.");
  assert_string_equal(chat(f, ALICE, "chat", "  HELLO big  world "),
                      "Hello big  world ");
  assert_string_equal(chat(f, ALICE, "normal", "greet"),
                      "'greet' needs a form: run it from your client's ad-hoc "
                      "commands menu.");
  assert_string_equal(bf_xml_attr(f->got[0], "type"), "normal");
  assert_int_equal(f->gw->users.n_sessions, 0);
  assert_string_equal(chat(f, ALICE, "chat", "users"),
                      "This command is for administrators.");
  assert_non_null(strstr(chat(f, BOB, "chat", "configure"), "Register first"));
  assert_string_equal(chat(f, ALICE, "chat", "broken"),
                      "'broken' failed: not found");
  assert_string_equal(chat(f, ADMIN, "chat", "users"),
                      "Registered users: alice@localhost\nCount: 1");
  /* headline and other types are answered as chat */
  chat(f, ALICE, "headline", "hello");
  assert_string_equal(bf_xml_attr(f->got[0], "type"), "chat");
  /* nothing to answer: chat states, errors, messages to contacts */
  assert_null(chat(f, ALICE, "chat", NULL));
  assert_null(chat(f, ALICE, "chat", "   "));
  exchange(f, "<message type='error' from='" ALICE "' to='echo.localhost'>"
              "<body>help</body></message>"
              "<message from='localhost' to='echo.localhost'>"
              "<body>Server going down</body></message>");
  assert_int_equal(f->n_got, 0);
  /* to a contact: the module's (here: nobody's, so service-unavailable) */
  exchange(f, "<message id='c' from='" ALICE "' to='bob@echo.localhost'>"
              "<body>help</body></message>");
  assert_error(answer(f, "c"), "service-unavailable", "cancel", NULL);

  text = chat(f, ALICE, "chat", "unregister");
  assert_non_null(strstr(text, "Send 'unregister yes' to confirm"));
  assert_true(bf__users_registered(f->gw, "alice@localhost"));
  assert_string_equal(chat(f, ALICE, "chat", "Unregister yes"),
                      "You are unregistered.");
  assert_false(bf__users_registered(f->gw, "alice@localhost"));
  assert_int_equal(f->gw->users.chat_commands, 7);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_execute_single_step, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_steps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_and_bad_sessionid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_session_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gateway_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_configure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unregister, setup, teardown),
      cmocka_unit_test_setup_teardown(test_admin_commands, setup, teardown),
      cmocka_unit_test_setup_teardown(test_chat, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
