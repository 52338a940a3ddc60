/* Unit tests for src/form.c: XEP-0004 data forms — the XEP's own bot
 * configuration form and submission (§5.1) as test vectors, build ↔ parse
 * round trips over every field type, validation (required, booleans,
 * lists, single vs multi, JIDs, lengths, custom checks, unknown fields,
 * FORM_TYPE), text-private values never sent, and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "babelfish/error.h"
#include "babelfish/form.h"
#include "babelfish/xml.h"
#include "buf.h"
#include "support.h"
#include "xml.h"

#define NS_COMMANDS "http://jabber.org/protocol/commands"

/* ---- helpers --------------------------------------------------------------- */

typedef struct catcher {
  bf_xml *stanza;
  int errors;
} catcher;

static void on_stanza(void *data, bf_xml *stanza) {
  catcher *c = data;
  if (c->stanza)
    bf_xml_free(stanza);
  else
    c->stanza = stanza;
}

static void on_error(void *data, const char *condition, const char *text) {
  (void)condition;
  (void)text;
  ((catcher *)data)->errors++;
}

static const bf_xml_stream_callbacks catch_callbacks = {
    .stanza = on_stanza,
    .error = on_error,
};

/* The tree of one stanza, parsed by the daemon's own stream parser. */
static bf_xml *parse_stanza(const char *xml) {
  static const char header[] =
      "<stream:stream xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams' id='s1'>";
  catcher c = {0};
  bf_xml_stream *s = bf__xml_stream_new(&catch_callbacks, &c, 0, 0);
  assert_non_null(s);
  assert_int_equal(bf__xml_stream_feed(s, header, strlen(header)), 0);
  assert_int_equal(bf__xml_stream_feed(s, xml, strlen(xml)), 0);
  bf__xml_stream_free(s);
  assert_int_equal(c.errors, 0);
  assert_non_null(c.stanza);
  return c.stanza;
}

/* The first <x xmlns='jabber:x:data'/> at or under el (depth ≤ 2). */
static bf_xml *find_x(bf_xml *el) {
  bf_xml *x = bf_xml_child(el, "x", BF_NS_DATA);
  for (bf_xml *c = bf_xml_first_child(el); !x && c; c = bf_xml_next(c))
    x = bf_xml_child(c, "x", BF_NS_DATA);
  assert_non_null(x);
  return x;
}

/* Parses a stanza holding a data form; returns bf_form_parse's code. */
static int parse_form_text(const char *xml, bf_form **form) {
  bf_xml *st = parse_stanza(xml);
  int rc = bf_form_parse(find_x(st), form);
  bf_xml_free(st);
  return rc;
}


static void assert_values(const bf_form *form, const char *var, size_t n,
                          const char *const *expected) {
  const char *const *values;
  assert_int_equal(bf_form_values(form, var, &values), n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(values[i], expected[i]);
}

/* A submit form with var = the given values (NULL-terminated). */
static bf_form *submit_with(const char *var, ...) {
  bf_form *form = bf_form_new("submit");
  assert_non_null(form);
  va_list ap;
  va_start(ap, var);
  for (const char *v; (v = va_arg(ap, const char *));)
    assert_int_equal(bf_form_add_value(form, var, v), 0);
  va_end(ap);
  return form;
}

/* Validates and expects failure on bad_var with exactly message. */
static void assert_invalid(bf_form *form, const bf_field *fields, size_t n,
                           const char *bad, const char *message) {
  const char *bad_var = NULL;
  char err[256] = "x";
  assert_int_equal(bf_form_validate(form, fields, n, &bad_var, err, sizeof err),
                   BF_EINVAL);
  assert_non_null(bad_var);
  assert_string_equal(bad_var, bad);
  assert_string_equal(err, message);
}

static void assert_valid(bf_form *form, const bf_field *fields, size_t n) {
  const char *bad_var = "unset";
  char err[256] = "x";
  int rc = bf_form_validate(form, fields, n, &bad_var, err, sizeof err);
  if (rc)
    fail_msg("validate: %d %s: %s", rc, bad_var, err);
  assert_null(bad_var);
  assert_string_equal(err, "");
}

/* ---- XEP-0004 §5.1: the bot configuration example ------------------------- */

static const bf_field_option feature_options[] = {
    {"contests", "Contests"}, {"news", "News"},     {"polls", "Polls"},
    {"reminders", "Reminders"}, {"search", "Search"}, {NULL, NULL},
};
static const bf_field_option maxsubs_options[] = {
    {"10", "10"}, {"20", "20"},  {"30", "30"},     {"50", "50"},
    {"100", "100"}, {"none", "None"}, {NULL, NULL},
};

static const bf_field bot_fields[] = {
    {.type = BF_FIELD_FIXED, .label = "Section 1: Bot Info"},
    {.var = "botname", .type = BF_FIELD_TEXT_SINGLE,
     .label = "The name of your bot"},
    {.var = "description", .type = BF_FIELD_TEXT_MULTI,
     .label = "Helpful description of your bot"},
    {.var = "public", .type = BF_FIELD_BOOLEAN, .label = "Public bot?",
     .required = true},
    {.var = "password", .type = BF_FIELD_TEXT_PRIVATE,
     .label = "Password for special access"},
    {.type = BF_FIELD_FIXED, .label = "Section 2: Features"},
    {.var = "features", .type = BF_FIELD_LIST_MULTI,
     .label = "What features will the bot support?",
     .options = feature_options},
    {.type = BF_FIELD_FIXED, .label = "Section 3: Subscriber List"},
    {.var = "maxsubs", .type = BF_FIELD_LIST_SINGLE,
     .label = "Maximum number of subscribers", .default_value = "20",
     .options = maxsubs_options},
    {.type = BF_FIELD_FIXED, .label = "Section 4: Invitations"},
    {.var = "invitelist", .type = BF_FIELD_JID_MULTI,
     .label = "People to invite",
     .desc = "Tell all your friends about your new bot!"},
};
#define N_BOT_FIELDS (sizeof bot_fields / sizeof bot_fields[0])

/* Example 2, "Service Returns Bot Creation Form", as the XEP prints it. */
static const char xep_form_iq[] =
    "<iq from='joogle@botster.shakespeare.lit'\n"
    "    to='romeo@montague.net/home'\n"
    "    type='result'\n"
    "    xml:lang='en'\n"
    "    id='create1'>\n"
    "  <command xmlns='http://jabber.org/protocol/commands'\n"
    "           node='create'\n"
    "           sessionid='create:20040408T0128Z'\n"
    "           status='executing'>\n"
    "    <x xmlns='jabber:x:data' type='form'>\n"
    "      <title>Bot Configuration</title>\n"
    "      <instructions>Fill out this form to configure your new bot!</instructions>\n"
    "      <field type='hidden'\n"
    "             var='FORM_TYPE'>\n"
    "        <value>jabber:bot</value>\n"
    "      </field>\n"
    "      <field type='fixed'><value>Section 1: Bot Info</value></field>\n"
    "      <field type='text-single'\n"
    "             label='The name of your bot'\n"
    "             var='botname'/>\n"
    "      <field type='text-multi'\n"
    "             label='Helpful description of your bot'\n"
    "             var='description'/>\n"
    "      <field type='boolean'\n"
    "             label='Public bot?'\n"
    "             var='public'>\n"
    "        <required/>\n"
    "      </field>\n"
    "      <field type='text-private'\n"
    "             label='Password for special access'\n"
    "             var='password'/>\n"
    "      <field type='fixed'><value>Section 2: Features</value></field>\n"
    "      <field type='list-multi'\n"
    "             label='What features will the bot support?'\n"
    "             var='features'>\n"
    "        <option label='Contests'><value>contests</value></option>\n"
    "        <option label='News'><value>news</value></option>\n"
    "        <option label='Polls'><value>polls</value></option>\n"
    "        <option label='Reminders'><value>reminders</value></option>\n"
    "        <option label='Search'><value>search</value></option>\n"
    "        <value>news</value>\n"
    "        <value>search</value>\n"
    "      </field>\n"
    "      <field type='fixed'><value>Section 3: Subscriber List</value></field>\n"
    "      <field type='list-single'\n"
    "             label='Maximum number of subscribers'\n"
    "             var='maxsubs'>\n"
    "        <value>20</value>\n"
    "        <option label='10'><value>10</value></option>\n"
    "        <option label='20'><value>20</value></option>\n"
    "        <option label='30'><value>30</value></option>\n"
    "        <option label='50'><value>50</value></option>\n"
    "        <option label='100'><value>100</value></option>\n"
    "        <option label='None'><value>none</value></option>\n"
    "      </field>\n"
    "      <field type='fixed'><value>Section 4: Invitations</value></field>\n"
    "      <field type='jid-multi'\n"
    "             label='People to invite'\n"
    "             var='invitelist'>\n"
    "        <desc>Tell all your friends about your new bot!</desc>\n"
    "      </field>\n"
    "    </x>\n"
    "  </command>\n"
    "</iq>";

/* Example 3, "User Submits Bot Creation Form", as the XEP prints it. */
static const char xep_submit_iq[] =
    "<iq from='romeo@montague.net/home'\n"
    "    to='joogle@botster.shakespeare.lit'\n"
    "    type='set'\n"
    "    xml:lang='en'\n"
    "    id='create2'>\n"
    "  <command xmlns='http://jabber.org/protocol/commands'\n"
    "           node='create'\n"
    "           sessionid='create:20040408T0128Z'>\n"
    "    <x xmlns='jabber:x:data' type='submit'>\n"
    "      <field type='hidden' var='FORM_TYPE'>\n"
    "        <value>jabber:bot</value>\n"
    "      </field>\n"
    "      <field type='text-single' var='botname'>\n"
    "        <value>The Jabber Google Bot</value>\n"
    "      </field>\n"
    "      <field type='text-multi' var='description'>\n"
    "        <value>This bot enables you to send requests to</value>\n"
    "        <value>Google and receive the search results right</value>\n"
    "        <value>in your Jabber client. It&apos; really cool!</value>\n"
    "        <value>It even supports Google News!</value>\n"
    "      </field>\n"
    "      <field type='boolean' var='public'>\n"
    "        <value>0</value>\n"
    "      </field>\n"
    "      <field type='text-private' var='password'>\n"
    "        <value>v3r0na</value>\n"
    "      </field>\n"
    "      <field type='list-multi' var='features'>\n"
    "        <value>news</value>\n"
    "        <value>search</value>\n"
    "      </field>\n"
    "      <field type='list-single' var='maxsubs'>\n"
    "        <value>50</value>\n"
    "      </field>\n"
    "      <field type='jid-multi' var='invitelist'>\n"
    "        <value>juliet@capulet.com</value>\n"
    "        <value>benvolio@montague.net</value>\n"
    "      </field>\n"
    "    </x>\n"
    "  </command>\n"
    "</iq>";

static const char *const xep_description[] = {
    "This bot enables you to send requests to",
    "Google and receive the search results right",
    "in your Jabber client. It' really cool!",
    "It even supports Google News!",
};
static const char *const xep_features[] = {"news", "search"};
static const char *const xep_invites[] = {"juliet@capulet.com",
                                          "benvolio@montague.net"};

/* Our rendering of example 2: same fields, attributes and values; children
 * in the schema's order (§9: desc, required, value, option). */
static const char xep_form_built[] =
    "<x xmlns='jabber:x:data' type='form'>"
    "<title>Bot Configuration</title>"
    "<instructions>Fill out this form to configure your new bot!</instructions>"
    "<field type='hidden' var='FORM_TYPE'><value>jabber:bot</value></field>"
    "<field type='fixed'><value>Section 1: Bot Info</value></field>"
    "<field type='text-single' label='The name of your bot' var='botname'/>"
    "<field type='text-multi' label='Helpful description of your bot' "
    "var='description'/>"
    "<field type='boolean' label='Public bot?' var='public'><required/></field>"
    "<field type='text-private' label='Password for special access' "
    "var='password'/>"
    "<field type='fixed'><value>Section 2: Features</value></field>"
    "<field type='list-multi' label='What features will the bot support?' "
    "var='features'><value>news</value><value>search</value>"
    "<option label='Contests'><value>contests</value></option>"
    "<option label='News'><value>news</value></option>"
    "<option label='Polls'><value>polls</value></option>"
    "<option label='Reminders'><value>reminders</value></option>"
    "<option label='Search'><value>search</value></option></field>"
    "<field type='fixed'><value>Section 3: Subscriber List</value></field>"
    "<field type='list-single' label='Maximum number of subscribers' "
    "var='maxsubs'><value>20</value>"
    "<option label='10'><value>10</value></option>"
    "<option label='20'><value>20</value></option>"
    "<option label='30'><value>30</value></option>"
    "<option label='50'><value>50</value></option>"
    "<option label='100'><value>100</value></option>"
    "<option label='None'><value>none</value></option></field>"
    "<field type='fixed'><value>Section 4: Invitations</value></field>"
    "<field type='jid-multi' label='People to invite' var='invitelist'>"
    "<desc>Tell all your friends about your new bot!</desc></field>"
    "</x>";

static void test_xep_form_built(void **state) {
  (void)state;
  /* The features the XEP preselects come from current values; maxsubs'
   * 20 from the field's default. */
  bf_form *current = submit_with("features", "news", "search", NULL);
  bf_xml *command = bf_xml_new("command", NS_COMMANDS);
  assert_non_null(command);
  bf_xml *x = bf_form_add(command, "form", "jabber:bot", "Bot Configuration",
                          "Fill out this form to configure your new bot!",
                          bot_fields, N_BOT_FIELDS, current);
  assert_non_null(x);
  assert_ptr_equal(bf_xml_parent(x), command);
  bf_test_assert_xml(x, xep_form_built);
  bf_xml_free(command);
  bf_form_free(current);
}

static void test_xep_form_parsed(void **state) {
  (void)state;
  /* The form as the XEP prints it, whitespace and all, parses to its
   * defaults; fixed fields carry no data. */
  bf_form *form = NULL;
  assert_int_equal(parse_form_text(xep_form_iq, &form), 0);
  assert_string_equal(bf_form_type(form), "form");
  assert_string_equal(bf_form_value(form, "FORM_TYPE"), "jabber:bot");
  assert_values(form, "features", 2, xep_features);
  assert_string_equal(bf_form_value(form, "maxsubs"), "20");
  assert_null(bf_form_value(form, "botname"));
  assert_null(bf_form_value(form, "invitelist"));
  const char *const *values;
  assert_int_equal(bf_form_values(form, "botname", &values), 0);
  assert_null(values);
  assert_null(bf_form_value(form, "Section 1: Bot Info"));
  bf_form_free(form);
}

static void test_xep_submission(void **state) {
  (void)state;
  bf_form *form = NULL;
  assert_int_equal(parse_form_text(xep_submit_iq, &form), 0);
  assert_string_equal(bf_form_type(form), "submit");
  assert_string_equal(bf_form_value(form, "botname"), "The Jabber Google Bot");
  assert_values(form, "description", 4, xep_description);
  assert_string_equal(bf_form_value(form, "public"), "0");
  assert_string_equal(bf_form_value(form, "password"), "v3r0na");
  assert_values(form, "features", 2, xep_features);
  assert_string_equal(bf_form_value(form, "maxsubs"), "50");
  assert_values(form, "invitelist", 2, xep_invites);

  assert_valid(form, bot_fields, N_BOT_FIELDS);
  assert_string_equal(bf_form_value(form, "FORM_TYPE"), "jabber:bot");
  assert_values(form, "description", 4, xep_description);
  assert_values(form, "invitelist", 2, xep_invites);
  assert_string_equal(bf_form_value(form, "public"), "0");

  /* Example 4's result, minus the password: a result shows what the form
   * holds, so the caller drops secrets first. */
  assert_int_equal(bf_form_set(form, "password", NULL), 0);
  assert_int_equal(bf_form_set(form, "description", NULL), 0);
  bf_xml *command = bf_xml_new("command", NS_COMMANDS);
  assert_non_null(bf_form_add_result(command, NULL, form, NULL, 0));
  bf_test_assert_xml(bf_xml_first_child(command),
             "<x xmlns='jabber:x:data' type='result'>"
             "<field type='hidden' var='FORM_TYPE'><value>jabber:bot</value></field>"
             "<field var='botname'><value>The Jabber Google Bot</value></field>"
             "<field var='public'><value>0</value></field>"
             "<field var='features'><value>news</value><value>search</value></field>"
             "<field var='maxsubs'><value>50</value></field>"
             "<field var='invitelist'><value>juliet@capulet.com</value>"
             "<value>benvolio@montague.net</value></field></x>");
  bf_xml_free(command);
  bf_form_free(form);
}

/* ---- the form object ------------------------------------------------------ */

static void test_set_and_values(void **state) {
  (void)state;
  bf_form *form = bf_form_new("result");
  assert_non_null(form);
  assert_string_equal(bf_form_type(form), "result");
  assert_null(bf_form_value(form, "a"));
  assert_int_equal(bf_form_set(form, "a", "1"), 0);
  assert_int_equal(bf_form_set(form, "a", "2"), 0);
  assert_string_equal(bf_form_value(form, "a"), "2");
  assert_int_equal(bf_form_add_value(form, "a", "3"), 0);
  static const char *const two[] = {"2", "3"};
  assert_values(form, "a", 2, two);
  assert_int_equal(bf_form_set(form, "a", "4"), 0);
  static const char *const one[] = {"4"};
  assert_values(form, "a", 1, one);
  assert_int_equal(bf_form_set(form, "b", ""), 0);
  assert_string_equal(bf_form_value(form, "b"), "");
  assert_int_equal(bf_form_set(form, "a", NULL), 0);
  assert_null(bf_form_value(form, "a"));
  assert_string_equal(bf_form_value(form, "b"), "");
  assert_int_equal(bf_form_set(form, "missing", NULL), 0);
  for (int i = 0; i < BF_FORM_VALUES_MAX; i++)
    assert_int_equal(bf_form_add_value(form, "m", "v"), 0);
  assert_int_equal(bf_form_add_value(form, "m", "v"), BF_E2BIG);
  const char *const *values;
  assert_int_equal(bf_form_values(form, "m", &values), BF_FORM_VALUES_MAX);
  /* Many fields: the entry array grows and lookups still find each. */
  char var[16];
  for (int i = 0; i < 100; i++) {
    snprintf(var, sizeof var, "f%d", i);
    assert_int_equal(bf_form_set(form, var, var), 0);
  }
  for (int i = 0; i < 100; i++) {
    snprintf(var, sizeof var, "f%d", i);
    assert_string_equal(bf_form_value(form, var), var);
  }
  assert_int_equal(bf_form_set(form, NULL, "x"), BF_EINVAL);
  bf_form_free(form);
  bf_form_free(NULL);
  assert_null(bf_form_new(NULL));
}

/* ---- round trip over every field type ------------------------------------- */

static const bf_field_option color_options[] = {
    {"red", "Red"}, {"green", NULL}, {"blue", "Blue"}, {NULL, NULL}};

static const bf_field all_fields[] = {
    {.type = BF_FIELD_FIXED, .label = "All types"},
    {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nick",
     .desc = "Your nickname on the network", .required = true},
    {.var = "pass", .type = BF_FIELD_TEXT_PRIVATE, .label = "Password",
     .default_value = "hunter2"},
    {.var = "motd", .type = BF_FIELD_TEXT_MULTI, .label = "Message"},
    {.var = "tls", .type = BF_FIELD_BOOLEAN, .label = "Use TLS",
     .default_value = "1"},
    {.var = "color", .type = BF_FIELD_LIST_SINGLE, .label = "Color",
     .options = color_options},
    {.var = "colors", .type = BF_FIELD_LIST_MULTI, .label = "Colors",
     .options = color_options},
    {.var = "owner", .type = BF_FIELD_JID_SINGLE, .label = "Owner"},
    {.var = "friends", .type = BF_FIELD_JID_MULTI, .label = "Friends"},
    {.var = "session", .type = BF_FIELD_HIDDEN, .default_value = "s-42"},
};
#define N_ALL_FIELDS (sizeof all_fields / sizeof all_fields[0])

static void test_round_trip(void **state) {
  (void)state;
  bf_form *current = bf_form_new("submit");
  assert_int_equal(bf_form_set(current, "nick", "Nick <&> 'quoted' \"x\""), 0);
  assert_int_equal(bf_form_set(current, "pass", "s3cret"), 0);
  assert_int_equal(bf_form_add_value(current, "motd", "line one"), 0);
  assert_int_equal(bf_form_add_value(current, "motd", ""), 0);
  assert_int_equal(bf_form_add_value(current, "motd", "line três"), 0);
  assert_int_equal(bf_form_set(current, "tls", "0"), 0);
  assert_int_equal(bf_form_set(current, "color", "green"), 0);
  assert_int_equal(bf_form_add_value(current, "colors", "red"), 0);
  assert_int_equal(bf_form_add_value(current, "colors", "blue"), 0);
  assert_int_equal(bf_form_set(current, "owner", "alice@localhost/res"), 0);
  assert_int_equal(bf_form_add_value(current, "friends", "bob@localhost"), 0);
  assert_int_equal(bf_form_add_value(current, "friends", "localhost"), 0);

  bf_xml *message = bf_xml_new("message", NULL);
  assert_non_null(bf_form_add(message, "submit", "urn:example:all", NULL,
                              NULL, all_fields, N_ALL_FIELDS, current));
  char *text = bf_test_xml_string(message);
  assert_null(strstr(text, "s3cret"));
  assert_null(strstr(text, "hunter2"));
  assert_non_null(strstr(text, "<option label='green'><value>green</value>"));
  assert_non_null(strstr(text, "<desc>Your nickname on the network</desc>"));
  assert_non_null(strstr(text, "<field type='fixed'><value>All types</value>"));

  bf_form *back = NULL;
  assert_int_equal(parse_form_text(text, &back), 0);
  free(text);
  assert_string_equal(bf_form_type(back), "submit");
  assert_string_equal(bf_form_value(back, "FORM_TYPE"), "urn:example:all");
  for (size_t i = 0; i < N_ALL_FIELDS; i++) {
    const bf_field *f = &all_fields[i];
    if (!f->var)
      continue;
    const char *const *want, *const *got;
    size_t n_want = bf_form_values(current, f->var, &want);
    size_t n_got = bf_form_values(back, f->var, &got);
    if (f->type == BF_FIELD_TEXT_PRIVATE) {
      assert_int_equal(n_got, 0);
      continue;
    }
    if (f->type == BF_FIELD_HIDDEN) {
      assert_int_equal(n_got, 1);
      assert_string_equal(got[0], "s-42");
      continue;
    }
    assert_int_equal(n_got, n_want);
    for (size_t k = 0; k < n_got; k++)
      assert_string_equal(got[k], want[k]);
  }
  assert_valid(back, all_fields, N_ALL_FIELDS);
  assert_string_equal(bf_form_value(back, "owner"), "alice@localhost/res");
  bf_form_free(back);
  bf_xml_free(message);

  /* Without current values: the defaults, but never the private one. */
  message = bf_xml_new("message", NULL);
  bf_xml *x = bf_form_add(message, "form", NULL, "T", "I", all_fields,
                          N_ALL_FIELDS, NULL);
  assert_non_null(x);
  text = bf_test_xml_string(x);
  assert_null(strstr(text, "hunter2"));
  assert_null(strstr(text, "FORM_TYPE"));
  assert_non_null(strstr(text, "<field type='text-private' label='Password' "
                               "var='pass'/>"));
  assert_non_null(strstr(text, "<field type='boolean' label='Use TLS' "
                               "var='tls'><value>1</value></field>"));
  assert_non_null(strstr(text, "<field type='hidden' var='session'>"
                               "<value>s-42</value></field>"));
  /* Options only in list fields. */
  assert_non_null(strstr(text, "<field type='jid-multi' label='Friends' "
                               "var='friends'/>"));
  free(text);
  bf_xml_free(message);

  /* §3.2: a single-valued field carries one <value/> even when the current
   * form (not validated) holds more; multi-valued ones carry them all. */
  assert_int_equal(bf_form_add_value(current, "nick", "second"), 0);
  assert_int_equal(bf_form_add_value(current, "friends", "carol@localhost"), 0);
  message = bf_xml_new("message", NULL);
  assert_non_null(bf_form_add(message, "form", NULL, NULL, NULL, all_fields,
                              N_ALL_FIELDS, current));
  text = bf_test_xml_string(message);
  assert_null(strstr(text, "second"));
  assert_non_null(strstr(text, "<value>bob@localhost</value><value>localhost"
                               "</value><value>carol@localhost</value>"));
  free(text);
  bf_xml_free(message);
  bf_form_free(current);
}

static void test_private_never_sent(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "password", .type = BF_FIELD_TEXT_PRIVATE, .label = "Password",
       .required = true, .default_value = "default-secret"},
  };
  bf_form *current = bf_form_new("submit");
  assert_int_equal(bf_form_add_value(current, "password", "stored-secret"), 0);
  assert_int_equal(bf_form_add_value(current, "password", "second-secret"), 0);
  for (int with_current = 0; with_current < 2; with_current++) {
    bf_xml *iq = bf_xml_new("iq", NULL);
    bf_xml *query = bf_xml_add_child(iq, "query", "jabber:iq:register");
    assert_non_null(bf_form_add(query, "form", "jabber:iq:register", NULL,
                                NULL, fields, 1,
                                with_current ? current : NULL));
    char *text = bf_test_xml_string(iq);
    assert_null(strstr(text, "secret"));
    assert_non_null(strstr(text, "<field type='text-private' label='Password' "
                                 "var='password'><required/></field>"));
    free(text);
    bf_xml_free(iq);
  }
  bf_form_free(current);
}

/* ---- validation ------------------------------------------------------------ */

static void test_required(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nick",
       .required = true},
      {.var = "notify", .type = BF_FIELD_BOOLEAN, .required = true},
      {.var = "friends", .type = BF_FIELD_JID_MULTI, .label = "Friends",
       .required = true},
  };
  /* Absent, no value, an empty value: all "required". */
  bf_form *form = bf_form_new("submit");
  assert_invalid(form, fields, 3, "nick", "Nick is required");
  bf_form_free(form);
  form = bf_form_new("submit");
  assert_int_equal(bf_form_set(form, "nick", ""), 0);
  assert_invalid(form, fields, 3, "nick", "Nick is required");
  bf_form_free(form);
  /* No label: the var names the field. A boolean's "" is no answer. */
  form = bf_form_new("submit");
  assert_int_equal(bf_form_set(form, "nick", "n"), 0);
  assert_int_equal(bf_form_set(form, "notify", ""), 0);
  assert_invalid(form, fields, 3, "notify", "notify is required");
  /* "0" is an answer. */
  assert_int_equal(bf_form_set(form, "notify", "false"), 0);
  assert_int_equal(bf_form_add_value(form, "friends", ""), 0);
  assert_invalid(form, fields, 3, "friends", "Friends is required");
  assert_int_equal(bf_form_add_value(form, "friends", "a@b"), 0);
  assert_valid(form, fields, 3);
  assert_string_equal(bf_form_value(form, "notify"), "0");
  static const char *const one[] = {"a@b"};
  assert_values(form, "friends", 1, one);
  bf_form_free(form);
  /* Optional fields may be absent or empty. */
  static const bf_field optional[] = {
      {.var = "nick", .type = BF_FIELD_TEXT_SINGLE},
      {.var = "owner", .type = BF_FIELD_JID_SINGLE},
      {.var = "color", .type = BF_FIELD_LIST_SINGLE, .options = color_options},
  };
  form = bf_form_new("submit");
  assert_int_equal(bf_form_set(form, "nick", ""), 0);
  assert_int_equal(bf_form_set(form, "owner", ""), 0);
  assert_valid(form, optional, 3);
  assert_string_equal(bf_form_value(form, "nick"), "");
  assert_null(bf_form_value(form, "owner"));
  assert_null(bf_form_value(form, "color"));
  bf_form_free(form);
  /* err and bad_var may be omitted. */
  form = bf_form_new("submit");
  assert_int_equal(bf_form_validate(form, fields, 3, NULL, NULL, 0), BF_EINVAL);
  bf_form_free(form);
}

static void test_boolean(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "tls", .type = BF_FIELD_BOOLEAN, .label = "Use TLS"}};
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"1", "1"},     {"true", "1"},   {"0", "0"},     {"false", "0"},
      {"TRUE", NULL}, {"yes", NULL},   {"on", NULL},   {" 1", NULL},
      {"10", NULL},   {"False", NULL}, {"1\n", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bf_form *form = submit_with("tls", cases[i].in, NULL);
    if (cases[i].out) {
      assert_valid(form, fields, 1);
      assert_string_equal(bf_form_value(form, "tls"), cases[i].out);
    } else if (strchr(cases[i].in, '\n')) {
      assert_invalid(form, fields, 1, "tls",
                     "Use TLS must not contain control characters");
    } else {
      assert_invalid(form, fields, 1, "tls", "Use TLS must be true or false");
    }
    bf_form_free(form);
  }
}

static void test_lists(void **state) {
  (void)state;
  static const bf_field_option ports[] = {
      {"6667", "6667 (plain)"}, {"6697", "6697 (TLS)"}, {NULL, NULL}};
  static const bf_field fields[] = {
      {.var = "port", .type = BF_FIELD_LIST_SINGLE, .label = "Port",
       .options = ports},
      {.var = "colors", .type = BF_FIELD_LIST_MULTI, .label = "Colors",
       .options = color_options},
  };
  bf_form *form = submit_with("port", "6668", NULL);
  assert_invalid(form, fields, 2, "port",
                 "Port must be one of: 6667 (plain), 6697 (TLS)");
  /* Labels are what the user saw; values are what is checked. */
  assert_int_equal(bf_form_set(form, "port", "6697 (TLS)"), 0);
  assert_invalid(form, fields, 2, "port",
                 "Port must be one of: 6667 (plain), 6697 (TLS)");
  assert_int_equal(bf_form_set(form, "port", "6697"), 0);
  assert_int_equal(bf_form_add_value(form, "colors", "red"), 0);
  assert_int_equal(bf_form_add_value(form, "colors", "purple"), 0);
  assert_invalid(form, fields, 2, "colors",
                 "Colors must be one of: Red, green, Blue");
  bf_form_free(form);
  /* A choice made twice counts once; order is kept (§3.3). */
  form = submit_with("colors", "blue", "red", "blue", "", NULL);
  assert_valid(form, fields, 2);
  static const char *const chosen[] = {"blue", "red"};
  assert_values(form, "colors", 2, chosen);
  bf_form_free(form);
  /* A long option list is cut at the message buffer, not past it. */
  char err[24];
  const char *bad = NULL;
  form = submit_with("colors", "x", NULL);
  assert_int_equal(bf_form_validate(form, fields, 2, &bad, err, sizeof err),
                   BF_EINVAL);
  assert_string_equal(err, "Colors must be one of: ");
  bf_form_free(form);
}

static void test_single_and_multi(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nick"},
      {.var = "motd", .type = BF_FIELD_TEXT_MULTI, .label = "Message"},
      {.var = "h", .type = BF_FIELD_HIDDEN},
  };
  static const enum bf_field_type singles[] = {
      BF_FIELD_TEXT_SINGLE, BF_FIELD_TEXT_PRIVATE, BF_FIELD_BOOLEAN,
      BF_FIELD_LIST_SINGLE, BF_FIELD_JID_SINGLE};
  for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) {
    bf_field one = {.var = "v", .type = singles[i], .label = "V",
                    .options = color_options};
    bf_form *form = submit_with("v", "red", "red", NULL);
    assert_invalid(form, &one, 1, "v", "V takes only one value");
    bf_form_free(form);
  }
  /* Hidden fields may carry several values (§3.2). */
  bf_form *form = submit_with("h", "a", "b", NULL);
  assert_valid(form, fields, 3);
  bf_form_free(form);
  /* text-multi: one value per line, whichever way the client sent them. */
  form = submit_with("motd", "one\r\ntwo\nthree\rfour\n", "", "five", NULL);
  assert_valid(form, fields, 3);
  static const char *const lines[] = {"one", "two", "three", "four", "",
                                      "five"};
  assert_values(form, "motd", 6, lines);
  bf_form_free(form);
  form = submit_with("motd", "a\n\nb", NULL);
  assert_valid(form, fields, 3);
  static const char *const blank[] = {"a", "", "b"};
  assert_values(form, "motd", 3, blank);
  bf_form_free(form);
  /* Splitting cannot blow the value cap. */
  char *many = malloc(2 * (BF_FORM_VALUES_MAX + 1) + 1);
  for (int i = 0; i <= BF_FORM_VALUES_MAX; i++)
    memcpy(many + 2 * i, "x\n", 2);
  many[2 * (BF_FORM_VALUES_MAX + 1)] = '\0';
  form = submit_with("motd", many, NULL);
  assert_invalid(form, fields, 3, "motd",
                 "Message has too many lines (at most 256)");
  bf_form_free(form);
  many[2 * BF_FORM_VALUES_MAX] = '\0';
  form = submit_with("motd", many, NULL);
  assert_valid(form, fields, 3);
  const char *const *values;
  assert_int_equal(bf_form_values(form, "motd", &values), BF_FORM_VALUES_MAX);
  bf_form_free(form);
  free(many);
}

static void test_jids(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "server", .type = BF_FIELD_JID_SINGLE, .label = "Server JID"},
      {.var = "friends", .type = BF_FIELD_JID_MULTI, .label = "Friends"},
  };
  bf_form *form = submit_with("server", "Juliet@Capulet.COM./Balcony", NULL);
  assert_int_equal(bf_form_add_value(form, "friends", "ROMEO@montague.net"), 0);
  assert_int_equal(bf_form_add_value(form, "friends", "benvolio@montague.net"), 0);
  assert_int_equal(bf_form_add_value(form, "friends", "romeo@MONTAGUE.net"), 0);
  assert_int_equal(bf_form_add_value(form, "friends", "Élise@example.org"), 0);
  assert_valid(form, fields, 2);
  assert_string_equal(bf_form_value(form, "server"),
                      "juliet@capulet.com/Balcony");
  /* §3.3: duplicate JIDs MUST be ignored (compared once prepared). */
  static const char *const friends[] = {"romeo@montague.net",
                                        "benvolio@montague.net",
                                        "élise@example.org"};
  assert_values(form, "friends", 3, friends);
  bf_form_free(form);

  static const char *const bad[] = {"@example.org", "a@", "a@b/", "a b@c",
                                    "a@b@c", "example.org/", "a@[::1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    form = submit_with("server", bad[i], NULL);
    assert_invalid(form, fields, 2, "server", "Server JID is not a valid JID");
    bf_form_free(form);
  }
  form = submit_with("friends", "ok@example.org", "not a jid@x", NULL);
  assert_invalid(form, fields, 2, "friends", "Friends is not a valid JID");
  bf_form_free(form);
}

static void test_max_length(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nick",
       .max_length = 8},
      {.var = "bio", .type = BF_FIELD_TEXT_SINGLE, .label = "Bio"},
      {.var = "lines", .type = BF_FIELD_TEXT_MULTI, .label = "Lines",
       .max_length = 3},
  };
  bf_form *form = submit_with("nick", "12345678", NULL);
  assert_valid(form, fields, 3);
  assert_int_equal(bf_form_set(form, "nick", "123456789"), 0);
  assert_invalid(form, fields, 3, "nick", "Nick is too long (at most 8 bytes)");
  /* Bytes, not characters: "é" is two. */
  assert_int_equal(bf_form_set(form, "nick", "ééééé"), 0);
  assert_invalid(form, fields, 3, "nick", "Nick is too long (at most 8 bytes)");
  assert_int_equal(bf_form_set(form, "nick", "nick"), 0);
  char *big = malloc(BF_FORM_VALUE_MAX + 2);
  memset(big, 'a', BF_FORM_VALUE_MAX + 1);
  big[BF_FORM_VALUE_MAX + 1] = '\0';
  assert_int_equal(bf_form_set(form, "bio", big), 0);
  assert_invalid(form, fields, 3, "bio", "Bio is too long (at most 4096 bytes)");
  big[BF_FORM_VALUE_MAX] = '\0';
  assert_int_equal(bf_form_set(form, "bio", big), 0);
  assert_valid(form, fields, 3);
  free(big);
  /* text-multi: per line. */
  assert_int_equal(bf_form_set(form, "lines", "abc\ndef"), 0);
  assert_valid(form, fields, 3);
  assert_int_equal(bf_form_set(form, "lines", "abc\ndefg"), 0);
  assert_invalid(form, fields, 3, "lines",
                 "Lines is too long (at most 3 bytes)");
  bf_form_free(form);
}

static int port_calls;
static char port_seen[32];

static int check_port(const char *value, char *err, size_t err_size) {
  port_calls++;
  snprintf(port_seen, sizeof port_seen, "%s", value);
  char *end;
  long port = strtol(value, &end, 10);
  if (*end || port < 1 || port > 65535) {
    snprintf(err, err_size, "Port must be between 1 and 65535");
    return BF_EINVAL;
  }
  return 0;
}

static int refuse_silently(const char *value, char *err, size_t err_size) {
  (void)value;
  (void)err;
  (void)err_size;
  return BF_EINVAL;
}

static int expect_normalised(const char *value, char *err, size_t err_size) {
  (void)err;
  (void)err_size;
  return strcmp(value, "1") == 0 || strcmp(value, "a@b.c/R") == 0 ? 0
                                                                 : BF_EINVAL;
}

static void test_validate_callback(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "port", .type = BF_FIELD_TEXT_SINGLE, .label = "Port",
       .validate = check_port},
      {.var = "x", .type = BF_FIELD_TEXT_SINGLE, .label = "Thing",
       .validate = refuse_silently},
  };
  port_calls = 0;
  bf_form *form = submit_with("port", "70000", NULL);
  assert_invalid(form, fields, 2, "port", "Port must be between 1 and 65535");
  assert_string_equal(port_seen, "70000");
  assert_int_equal(bf_form_set(form, "port", "6697"), 0);
  assert_valid(form, fields, 2);
  /* Not called for an empty optional value. */
  int calls = port_calls;
  assert_int_equal(bf_form_set(form, "port", ""), 0);
  assert_valid(form, fields, 2);
  assert_int_equal(port_calls, calls);
  /* A callback that gives no message: the field is named anyway. */
  assert_int_equal(bf_form_set(form, "x", "anything"), 0);
  assert_invalid(form, fields, 2, "x", "Thing is not valid");
  bf_form_free(form);
  /* The callback sees the normalised value; type checks come first. */
  static const bf_field typed[] = {
      {.var = "b", .type = BF_FIELD_BOOLEAN, .validate = expect_normalised},
      {.var = "j", .type = BF_FIELD_JID_SINGLE, .validate = expect_normalised},
  };
  form = submit_with("b", "true", NULL);
  assert_int_equal(bf_form_set(form, "j", "A@B.C/R"), 0);
  assert_valid(form, typed, 2);
  assert_int_equal(bf_form_set(form, "b", "maybe"), 0);
  assert_invalid(form, typed, 2, "b", "b must be true or false");
  bf_form_free(form);
}

static void test_unknown_dropped(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.type = BF_FIELD_FIXED, .label = "Header"},
      {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nick"},
  };
  bf_form *form = submit_with("nick", "n", NULL);
  assert_int_equal(bf_form_set(form, "FORM_TYPE", "jabber:iq:register"), 0);
  assert_int_equal(bf_form_set(form, "admin", "1"), 0);
  assert_int_equal(bf_form_set(form, "Header", "x"), 0);
  assert_int_equal(bf_form_set(form, "zzz", "1"), 0);
  assert_valid(form, fields, 2);
  assert_string_equal(bf_form_value(form, "nick"), "n");
  assert_string_equal(bf_form_value(form, "FORM_TYPE"), "jabber:iq:register");
  assert_null(bf_form_value(form, "admin"));
  assert_null(bf_form_value(form, "Header"));
  assert_null(bf_form_value(form, "zzz"));
  /* FORM_TYPE is not checked against anything (XEP-0068). */
  assert_int_equal(bf_form_set(form, "FORM_TYPE", "something:else"), 0);
  assert_valid(form, fields, 2);
  bf_xml *msg = bf_xml_new("message", NULL);
  assert_non_null(bf_form_add_result(msg, "Saved", form, NULL, 0));
  bf_test_assert_xml(bf_xml_first_child(msg),
             "<x xmlns='jabber:x:data' type='result'><title>Saved</title>"
             "<field var='nick'><value>n</value></field>"
             "<field type='hidden' var='FORM_TYPE'><value>something:else</value>"
             "</field></x>");
  bf_xml_free(msg);
  bf_form_free(form);
}

/* ---- hostile input ------------------------------------------------------------ */

static int parse_x(const char *x_xml, bf_form **form) {
  size_t len = strlen(x_xml) + 32;
  char *st = malloc(len);
  snprintf(st, len, "<message>%s</message>", x_xml);
  int rc = parse_form_text(st, form);
  free(st);
  return rc;
}

static void assert_parse_fails(const char *x_xml) {
  bf_form *form = (bf_form *)1;
  if (parse_x(x_xml, &form) != BF_EINVAL)
    fail_msg("parsed: %s", x_xml);
  assert_null(form);
}

static void test_hostile_shape(void **state) {
  (void)state;
  assert_parse_fails("<x xmlns='jabber:x:data'/>");
  assert_parse_fails("<x xmlns='jabber:x:data' type=''/>");
  assert_parse_fails("<x xmlns='jabber:x:data' type='bogus'/>");
  assert_parse_fails("<x xmlns='jabber:x:data' type='SUBMIT'/>");
  assert_parse_fails("<x xmlns='jabber:x:data' type='submit'>"
                     "<field><value>no var</value></field></x>");
  assert_parse_fails("<x xmlns='jabber:x:data' type='submit'>"
                     "<field type='text-single'/></x>");
  assert_parse_fails("<x xmlns='jabber:x:data' type='submit'>"
                     "<field var=''/></x>");
  assert_parse_fails("<x xmlns='jabber:x:data' type='submit'>"
                     "<field var='a'><value>1</value></field>"
                     "<field var='a'><value>2</value></field></x>");
  /* Not a data form at all. */
  bf_form *form = (bf_form *)1;
  bf_xml *x = bf_xml_new("x", "jabber:x:oob");
  bf_xml_set_attr(x, "type", "submit");
  assert_int_equal(bf_form_parse(x, &form), BF_EINVAL);
  assert_null(form);
  bf_xml_free(x);
  x = bf_xml_new("form", BF_NS_DATA);
  bf_xml_set_attr(x, "type", "submit");
  assert_int_equal(bf_form_parse(x, &form), BF_EINVAL);
  bf_xml_free(x);
  assert_int_equal(bf_form_parse(NULL, &form), BF_EINVAL);

  /* Accepted: a fixed field without var, an unknown field type (§3.3:
   * text-single), a cancel (its fields ignored), a result with a table. */
  assert_int_equal(parse_x("<x xmlns='jabber:x:data' type='submit'>"
                           "<field type='fixed'><value>hi</value></field>"
                           "<field type='fixed' var='f'><value>v</value></field>"
                           "<field type='colour' var='c'><value>red</value>"
                           "</field></x>", &form), 0);
  assert_null(bf_form_value(form, "f"));
  assert_string_equal(bf_form_value(form, "c"), "red");
  bf_form_free(form);
  assert_int_equal(parse_x("<x xmlns='jabber:x:data' type='cancel'>"
                           "<field var='a'><value>1</value></field>"
                           "<field><value>no var</value></field></x>", &form), 0);
  assert_string_equal(bf_form_type(form), "cancel");
  assert_null(bf_form_value(form, "a"));
  bf_form_free(form);
  assert_int_equal(parse_x("<x xmlns='jabber:x:data' type='result'>"
                           "<reported><field var='name'/></reported>"
                           "<item><field var='name'><value>n</value></field></item>"
                           "</x>", &form), 0);
  assert_null(bf_form_value(form, "name"));
  bf_form_free(form);
}

static void test_hostile_junk(void **state) {
  (void)state;
  /* Elements where text belongs, fields inside fields, options and
   * foreign namespaces in a submission: only the direct data counts. */
  bf_form *form = NULL;
  assert_int_equal(
      parse_x("<x xmlns='jabber:x:data' type='submit'>"
              "<junk><field var='deep'><value>d</value></field></junk>"
              "<field var='a'><value>x<b><value>y</value></b>z</value>"
              "<field var='inner'><value>q</value></field>"
              "<option label='o'><value>o</value></option>"
              "<value xmlns='urn:other'>other</value>"
              "<desc>d</desc><required/></field>"
              "<field xmlns='urn:other' var='o'><value>1</value></field>"
              "<title>t</title><instructions>i</instructions>"
              "</x>",
              &form),
      0);
  static const char *const a[] = {"xz"};
  assert_values(form, "a", 1, a);
  assert_null(bf_form_value(form, "deep"));
  assert_null(bf_form_value(form, "inner"));
  assert_null(bf_form_value(form, "o"));
  bf_form_free(form);
}

static void test_hostile_sizes(void **state) {
  (void)state;
  bf_buf b;
  bf_form *form = NULL;
  /* 10,000 fields or 257: refused. 256: fine. */
  static const int counts[] = {10000, 257, 256};
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    int n = counts[c];
    bf__buf_init(&b, 0);
    assert_int_equal(bf__buf_append_str(&b, "<x xmlns='jabber:x:data' type='submit'>"), 0);
    char field[64];
    for (int i = 0; i < n; i++) {
      snprintf(field, sizeof field, "<field var='f%d'><value>%d</value></field>",
               i, i);
      assert_int_equal(bf__buf_append_str(&b, field), 0);
    }
    assert_int_equal(bf__buf_append_str(&b, "</x>"), 0);
    int rc = parse_x(b.data, &form);
    bf__buf_close(&b);
    if (n > 256) {
      assert_int_equal(rc, BF_EINVAL);
      assert_null(form);
      continue;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(bf_form_value(form, "f255"), "255");
    bf_form_free(form);
  }
  /* 257 values in one field: refused; 256 fine. */
  for (int n = 257; n >= 256; n--) {
    bf__buf_init(&b, 0);
    assert_int_equal(bf__buf_append_str(&b, "<x xmlns='jabber:x:data' "
                                            "type='submit'><field var='m'>"), 0);
    for (int i = 0; i < n; i++)
      assert_int_equal(bf__buf_append_str(&b, "<value>v</value>"), 0);
    assert_int_equal(bf__buf_append_str(&b, "</field></x>"), 0);
    int rc = parse_x(b.data, &form);
    bf__buf_close(&b);
    if (n == 257) {
      assert_int_equal(rc, BF_EINVAL);
    } else {
      assert_int_equal(rc, 0);
      const char *const *values;
      assert_int_equal(bf_form_values(form, "m", &values), 256);
      bf_form_free(form);
    }
  }
  /* A value over 4 × BF_FORM_VALUE_MAX: refused; at it: parsed, then
   * refused by validation with the field's name. */
  for (size_t size = BF_FORM_VALUE_MAX * 4 + 1; size >= BF_FORM_VALUE_MAX * 4;
       size--) {
    bf__buf_init(&b, 0);
    assert_int_equal(bf__buf_append_str(&b, "<x xmlns='jabber:x:data' "
                                            "type='submit'><field var='big'>"
                                            "<value>"), 0);
    for (size_t i = 0; i < size; i++)
      assert_int_equal(bf__buf_append(&b, "a", 1), 0);
    assert_int_equal(bf__buf_append_str(&b, "</value></field></x>"), 0);
    int rc = parse_x(b.data, &form);
    bf__buf_close(&b);
    if (size > BF_FORM_VALUE_MAX * 4) {
      assert_int_equal(rc, BF_EINVAL);
      continue;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(bf_form_value(form, "big")), size);
    static const bf_field fields[] = {
        {.var = "big", .type = BF_FIELD_TEXT_SINGLE, .label = "Big"}};
    assert_invalid(form, fields, 1, "big",
                   "Big is too long (at most 4096 bytes)");
    bf_form_free(form);
  }
}

static void test_hostile_control_characters(void **state) {
  (void)state;
  /* The wire parser refuses them (XML 1.0), but a tree built in memory can
   * hold any bytes: parse copies them, validation refuses them, and the
   * serializer drops them on output. */
  static const char bytes[] = "a\x01" "b\x1b[31mc\x7f\td\0hidden";
  bf_xml *x = bf_xml_new("x", BF_NS_DATA);
  assert_int_equal(bf_xml_set_attr(x, "type", "submit"), 0);
  bf_xml *field = bf_xml_add_child(x, "field", NULL);
  assert_int_equal(bf_xml_set_attr(field, "var", "nick"), 0);
  bf_xml *value = bf_xml_add_child(field, "value", NULL);
  assert_int_equal(bf_xml_add_text(value, bytes, sizeof bytes - 1), 0);
  bf_form *form = NULL;
  assert_int_equal(bf_form_parse(x, &form), 0);
  assert_string_equal(bf_form_value(form, "nick"), "a\x01" "b\x1b[31mc\x7f\td");
  bf_xml_free(x);

  bf_xml *msg = bf_xml_new("message", NULL);
  assert_non_null(bf_form_add_result(msg, NULL, form, NULL, 0));
  char *text = bf_test_xml_string(msg);
  assert_null(strchr(text, '\x01'));
  assert_null(strchr(text, '\x1b'));
  assert_non_null(strstr(text, "<value>ab[31mc"));
  free(text);
  bf_xml_free(msg);

  static const bf_field fields[] = {
      {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nick"}};
  assert_invalid(form, fields, 1, "nick",
                 "Nick must not contain control characters");
  /* A line break in a single-line value would start a second IRC command. */
  assert_int_equal(bf_form_set(form, "nick", "me\r\nQUIT :bye"), 0);
  assert_invalid(form, fields, 1, "nick",
                 "Nick must not contain control characters");
  /* TAB is text. */
  assert_int_equal(bf_form_set(form, "nick", "a\tb"), 0);
  assert_valid(form, fields, 1);
  bf_form_free(form);
}

/* A result built with the declarations leaves secrets out and carries
 * types and labels. */
static void test_result_hides_private_fields(void **state) {
  (void)state;
  static const bf_field fields[] = {
      {.var = "nick", .type = BF_FIELD_TEXT_SINGLE, .label = "Nick"},
      {.var = "password", .type = BF_FIELD_TEXT_PRIVATE, .label = "Password"},
      {.var = "tls", .type = BF_FIELD_BOOLEAN, .label = "Use TLS"},
  };
  bf_form *form = bf_form_new("submit");
  assert_non_null(form);
  assert_int_equal(bf_form_set(form, "nick", "bob"), 0);
  assert_int_equal(bf_form_set(form, "password", "hunter2"), 0);
  assert_int_equal(bf_form_set(form, "tls", "1"), 0);
  assert_int_equal(bf_form_set(form, "extra", "shown as is"), 0);
  bf_xml *msg = bf_xml_new("message", NULL);
  assert_non_null(bf_form_add_result(msg, NULL, form, fields, 3));
  char *text = bf_test_xml_string(bf_xml_first_child(msg));
  assert_null(strstr(text, "hunter2"));
  assert_null(strstr(text, "password"));
  assert_string_equal(text,
      "<x xmlns='jabber:x:data' type='result'>"
      "<field type='text-single' var='nick' label='Nick'><value>bob</value></field>"
      "<field type='boolean' var='tls' label='Use TLS'><value>1</value></field>"
      "<field var='extra'><value>shown as is</value></field></x>");
  free(text);
  bf_xml_free(msg);
  bf_form_free(form);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_xep_form_built),
      cmocka_unit_test(test_result_hides_private_fields),
      cmocka_unit_test(test_xep_form_parsed),
      cmocka_unit_test(test_xep_submission),
      cmocka_unit_test(test_set_and_values),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_private_never_sent),
      cmocka_unit_test(test_required),
      cmocka_unit_test(test_boolean),
      cmocka_unit_test(test_lists),
      cmocka_unit_test(test_single_and_multi),
      cmocka_unit_test(test_jids),
      cmocka_unit_test(test_max_length),
      cmocka_unit_test(test_validate_callback),
      cmocka_unit_test(test_unknown_dropped),
      cmocka_unit_test(test_hostile_shape),
      cmocka_unit_test(test_hostile_junk),
      cmocka_unit_test(test_hostile_sizes),
      cmocka_unit_test(test_hostile_control_characters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
