/* Unit tests for src/stanza.c: requests and replies, iq results, error
 * replies (RFC 6120 §8.3) and the condition → type table (§8.3.3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "babelfish/stanza.h"
#include "babelfish/xml.h"
#include "support.h"

static bf_xml *stanza(const char *name, const char *type, const char *id) {
  bf_xml *st = bf_xml_new(name, NULL);
  assert_non_null(st);
  assert_int_equal(bf_xml_set_attr(st, "from", "alice@localhost/res"), 0);
  assert_int_equal(bf_xml_set_attr(st, "to", "bot@echo.localhost"), 0);
  if (type)
    assert_int_equal(bf_xml_set_attr(st, "type", type), 0);
  if (id)
    assert_int_equal(bf_xml_set_attr(st, "id", id), 0);
  return st;
}


static void test_request_and_reply(void **state) {
  (void)state;
  static const struct {
    const char *name, *type;
    bool request, reply;
  } cases[] = {
      {"iq", "get", true, false},        {"iq", "set", true, false},
      {"iq", "result", false, true},     {"iq", "error", false, true},
      {"iq", NULL, false, false},        {"iq", "bogus", false, false},
      {"message", "chat", false, false}, {"message", "error", false, true},
      {"message", NULL, false, false},   {"message", "get", false, false},
      {"presence", NULL, false, false},  {"presence", "error", false, true},
      {"presence", "result", false, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bf_xml *st = stanza(cases[i].name, cases[i].type, "x1");
    if (bf_stanza_is_request(st) != cases[i].request ||
        bf_stanza_is_reply(st) != cases[i].reply)
      fail_msg("<%s type='%s'>: request %d reply %d", cases[i].name,
               cases[i].type ? cases[i].type : "(none)", bf_stanza_is_request(st),
               bf_stanza_is_reply(st));
    bf_xml_free(st);
  }
}

static void test_result(void **state) {
  (void)state;
  bf_xml *iq = stanza("iq", "get", "v1");
  bf_xml_add_child(iq, "query", BF_NS_VERSION);
  bf_xml *res = bf_stanza_result(iq);
  assert_non_null(res);
  bf_test_assert_xml(res, "<iq from='bot@echo.localhost' to='alice@localhost/res' id='v1' "
                  "type='result'/>");
  assert_true(bf_stanza_is_reply(res));
  bf_xml_free(res);
  bf_xml_free(iq);
  /* Missing addresses are left out, not invented. */
  iq = bf_xml_new("iq", NULL);
  bf_xml_set_attr(iq, "type", "get");
  bf_xml_set_attr(iq, "id", "p1");
  res = bf_stanza_result(iq);
  bf_test_assert_xml(res, "<iq id='p1' type='result'/>");
  bf_xml_free(res);
  bf_xml_free(iq);
}

static void test_error_shape(void **state) {
  (void)state;
  bf_xml *iq = stanza("iq", "get", "q1");
  bf_xml_add_child(iq, "query", BF_NS_DISCO_INFO);
  bf_xml *err = bf_stanza_error(iq, NULL, "service-unavailable", "nope <here>");
  assert_non_null(err);
  bf_test_assert_xml(err, "<iq from='bot@echo.localhost' to='alice@localhost/res' id='q1' "
                  "type='error'><error type='cancel'>"
                  "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                  "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>"
                  "nope &lt;here&gt;</text></error></iq>");
  /* The tree is navigable the way a caller would check it. */
  bf_xml *e = bf_xml_child(err, "error", BF_NS_COMPONENT);
  assert_non_null(e);
  assert_string_equal(bf_xml_attr(e, "type"), "cancel");
  assert_non_null(bf_xml_child(e, "service-unavailable", BF_NS_STANZAS));
  assert_string_equal(bf_xml_child_text(e, "text", BF_NS_STANZAS), "nope <here>");
  /* Never answer an error with an error (RFC 6120 §8.3.1). */
  assert_true(bf_stanza_is_reply(err));
  assert_null(bf_stanza_error(err, NULL, "bad-request", NULL));
  bf_xml_free(err);
  bf_xml_free(iq);

  /* A message keeps its element name; explicit type, no text. */
  bf_xml *msg = stanza("message", "chat", "m7");
  bf_xml_add_text_child(msg, "body", NULL, "hi");
  err = bf_stanza_error(msg, "wait", "recipient-unavailable", NULL);
  bf_test_assert_xml(err, "<message from='bot@echo.localhost' to='alice@localhost/res' "
                  "id='m7' type='error'><error type='wait'>"
                  "<recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                  "</error></message>");
  bf_xml_free(err);
  bf_xml_free(msg);

  /* No id on the original: none on the error. */
  bf_xml *pres = stanza("presence", NULL, NULL);
  err = bf_stanza_error(pres, NULL, "not-authorized", NULL);
  bf_test_assert_xml(err, "<presence from='bot@echo.localhost' to='alice@localhost/res' "
                  "type='error'><error type='auth'>"
                  "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                  "</error></presence>");
  bf_xml_free(err);
  bf_xml_free(pres);
}

static void test_no_error_for_replies(void **state) {
  (void)state;
  static const char *const kinds[][2] = {
      {"iq", "result"}, {"iq", "error"}, {"message", "error"}, {"presence", "error"}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    bf_xml *st = stanza(kinds[i][0], kinds[i][1], "r1");
    assert_null(bf_stanza_error(st, NULL, "service-unavailable", "x"));
    bf_xml_free(st);
  }
}

static void test_error_types(void **state) {
  (void)state;
  static const char *const table[][2] = {
      {"bad-request", "modify"},
      {"conflict", "cancel"},
      {"feature-not-implemented", "cancel"},
      {"forbidden", "auth"},
      {"gone", "cancel"},
      {"internal-server-error", "cancel"},
      {"item-not-found", "cancel"},
      {"jid-malformed", "modify"},
      {"not-acceptable", "modify"},
      {"not-allowed", "cancel"},
      {"not-authorized", "auth"},
      {"policy-violation", "modify"},
      {"recipient-unavailable", "wait"},
      {"redirect", "modify"},
      {"registration-required", "auth"},
      {"remote-server-not-found", "cancel"},
      {"remote-server-timeout", "wait"},
      {"resource-constraint", "wait"},
      {"service-unavailable", "cancel"},
      {"subscription-required", "auth"},
      {"undefined-condition", "cancel"},
      {"unexpected-request", "wait"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    assert_string_equal(bf_stanza_error_type(table[i][0]), table[i][1]);
  assert_string_equal(bf_stanza_error_type("no-such-condition"), "cancel");
  assert_string_equal(bf_stanza_error_type(NULL), "cancel");
  /* The default type is the one used in the reply. */
  bf_xml *iq = stanza("iq", "set", "s1");
  bf_xml *err = bf_stanza_error(iq, NULL, "jid-malformed", NULL);
  assert_string_equal(bf_xml_attr(bf_xml_child(err, "error", NULL), "type"), "modify");
  bf_xml_free(err);
  bf_xml_free(iq);
}

/* XEP-0359 §3.1: origin-id first, the id attribute otherwise. */
static void test_message_id(void **state) {
  (void)state;
  assert_null(bf_stanza_message_id(NULL));
  bf_xml *msg = stanza("message", "chat", NULL);
  assert_null(bf_stanza_message_id(msg));
  /* An empty id identifies nothing. */
  bf_xml_set_attr(msg, "id", "");
  assert_null(bf_stanza_message_id(msg));
  bf_xml_set_attr(msg, "id", "attr-1");
  assert_string_equal(bf_stanza_message_id(msg), "attr-1");
  /* origin-id in another namespace, or nested (here in a forwarded
   * message, XEP-0297) is not this message's. */
  bf_xml *other = bf_xml_add_child(msg, "origin-id", "urn:example:other");
  bf_xml_set_attr(other, "id", "wrong-ns");
  bf_xml *fwd = bf_xml_add_child(msg, "forwarded", "urn:xmpp:forward:0");
  bf_xml *inner = bf_xml_add_child(fwd, "message", BF_NS_COMPONENT);
  bf_xml_set_attr(bf_xml_add_child(inner, "origin-id", "urn:xmpp:sid:0"),
                  "id", "nested");
  assert_string_equal(bf_stanza_message_id(msg), "attr-1");
  /* An origin-id without an id (or an empty one) falls back. */
  bf_xml *origin = bf_xml_add_child(msg, "origin-id", "urn:xmpp:sid:0");
  assert_non_null(origin);
  assert_string_equal(bf_stanza_message_id(msg), "attr-1");
  bf_xml_set_attr(origin, "id", "");
  assert_string_equal(bf_stanza_message_id(msg), "attr-1");
  bf_xml_set_attr(origin, "id", "origin-1");
  assert_string_equal(bf_stanza_message_id(msg), "origin-1");
  /* The origin-id counts without any id attribute too. */
  bf_xml_set_attr(msg, "id", NULL);
  assert_string_equal(bf_stanza_message_id(msg), "origin-1");
  bf_xml_free(msg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_and_reply),
      cmocka_unit_test(test_result),
      cmocka_unit_test(test_error_shape),
      cmocka_unit_test(test_no_error_for_replies),
      cmocka_unit_test(test_error_types),
      cmocka_unit_test(test_message_id),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
