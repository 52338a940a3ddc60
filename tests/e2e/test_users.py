"""End-to-end tests of the gateway-users machinery against a real Prosody,
through the echo transport (which declares registration fields, two
commands and logs its session events): registration (XEP-0077) and
unregistration, `allowed`, the gateway's roster subscription (XEP-0100),
ad-hoc commands (XEP-0050) for users and admins, chat commands, sessions
from presence, probes after a restart, contact subscriptions and presence,
jabber:iq:gateway, and the message-id map (receipts, corrections)."""
import asyncio
import os
import sqlite3
import stat
import time
import xml.etree.ElementTree as ET

from harness import (NS_DISCO_INFO, NS_DISCO_ITEMS, E2ETestCase, Lab,
                     babelfish_config, child_text, main, q, report,
                     stanza_error, stanza_error_text, wait_for)

GW = "echo.localhost"
CLOSED = "closed.localhost"
NS_REGISTER = "jabber:iq:register"
NS_GATEWAY = "jabber:iq:gateway"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_ROSTER = "jabber:iq:roster"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_CORRECT = "urn:xmpp:message-correct:0"

GATEWAYS = {
    "echo": {"transport": "echo", "domain": GW, "secret": "s3cret"},
    # Open only to another domain: the users of localhost are outsiders.
    "closed": {"transport": "echo", "domain": CLOSED, "secret": "s3cret2",
               "allowed": "example.net"},
}


def form_xml(values, type_="submit", form_type=None):
    """<x xmlns='jabber:x:data'> with {var: value or [values]}."""
    fields = []
    if form_type:
        fields.append("<field var='FORM_TYPE' type='hidden'><value>%s</value>"
                      "</field>" % form_type)
    for var, value in values.items():
        vals = value if isinstance(value, list) else [value]
        fields.append("<field var='%s'>%s</field>" % (
            var, "".join("<value>%s</value>" % v for v in vals)))
    return "<x xmlns='%s' type='%s'>%s</x>" % (NS_DATA, type_, "".join(fields))


def form_fields(el):
    """{var: (type, [values])} of the first data form under el."""
    x = el.find(".//" + q("x", NS_DATA))
    assert x is not None, ET.tostring(el, "unicode")
    out = {}
    for f in x.findall(q("field", NS_DATA)):
        out[f.get("var")] = (f.get("type"),
                             [v.text or "" for v in f.findall(q("value", NS_DATA))])
    return out


def command(client, node, to=GW, action=None, sessionid=None, form=None):
    attrs = "node='%s'" % node
    if action:
        attrs += " action='%s'" % action
    if sessionid:
        attrs += " sessionid='%s'" % sessionid
    reply = client.iq(to, "<command xmlns='%s' %s>%s</command>"
                      % (NS_COMMANDS, attrs, form or ""), type_="set")
    return reply, reply.find(q("command", NS_COMMANDS))


def note_text(cmd):
    note = cmd.find(q("note", NS_COMMANDS))
    return None if note is None else (note.get("type"), note.text or "")


def roster_client(lab, prosody, user, resource=None):
    """A connected client that fetched its roster: Prosody sends roster
    pushes and inbound subscription answers only to such "interested"
    resources (RFC 6121 §2.1.6)."""
    c = lab.client(prosody, user, resource)
    c.iq(c.jid.split("/")[0], "<query xmlns='%s'/>" % NS_ROSTER)
    return c


class UsersTest(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab("users")
        try:
            cls.prosody = cls.lab.prosody({GW: "s3cret", CLOSED: "s3cret2"})
            cls.db = os.path.join(cls.lab.root, "bf.db")
            cls.config = babelfish_config(cls.lab, cls.prosody, GATEWAYS,
                                          admins="bob@localhost",
                                          probe_timeout=3)
            cls.bf = cls.lab.babelfish(cls.config)
            cls.prosody.wait_auth(GW, daemon=cls.bf)
            cls.prosody.wait_auth(CLOSED, daemon=cls.bf)
        except BaseException:
            cls.lab.dump_logs()
            cls.lab.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()

    # -- helpers --

    def rows(self, sql, *args):
        con = sqlite3.connect(self.db, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def register(self, client, values):
        reply = client.iq(GW, "<query xmlns='%s'>%s</query>" % (
            NS_REGISTER, form_xml(values, form_type=NS_REGISTER)), type_="set")
        return reply

    def registered(self, user):
        bare = "%s@localhost" % user
        return self.rows("SELECT count(*) FROM users WHERE gateway=? AND jid=?",
                         GW, bare)[0][0] == 1

    def client(self, user, resource=None):
        return roster_client(self.lab, self.prosody, user, resource)

    def subscription(self, client, jid):
        """jid's subscription in client's roster, or None."""
        reply = client.iq(client.jid.split("/")[0],
                          "<query xmlns='%s'/>" % NS_ROSTER)
        for item in reply.iter(q("item", NS_ROSTER)):
            if item.get("jid") == jid:
                return item.get("subscription")
        return None

    # -- registration --

    def test_register_read_back_private_hidden(self):
        erin = self.client("erin")
        reply = erin.iq(GW, "<query xmlns='%s'/>" % NS_REGISTER)
        self.assertEqual(reply.get("type"), "result")
        query = reply.find(q("query", NS_REGISTER))
        self.assertIsNone(query.find(q("registered", NS_REGISTER)))
        fields = form_fields(query)
        self.assertEqual(fields["FORM_TYPE"], ("hidden", [NS_REGISTER]))
        self.assertEqual(fields["password"][0], "text-private")
        self.assertEqual(fields["nick"][0], "text-single")
        self.assertEqual(fields["shout"][0], "boolean")

        t0 = time.monotonic()
        reply = self.register(erin, {"nick": "Eri", "password": "pw-Zq81x",
                                      "shout": "0"})
        self.assertEqual(reply.get("type"), "result", ET.tostring(reply, "unicode"))
        report("registration round trip: %.1f ms", (time.monotonic() - t0) * 1000)

        reply = erin.iq(GW, "<query xmlns='%s'/>" % NS_REGISTER)
        query = reply.find(q("query", NS_REGISTER))
        self.assertIsNotNone(query.find(q("registered", NS_REGISTER)))
        fields = form_fields(query)
        self.assertEqual(fields["nick"][1], ["Eri"])
        self.assertEqual(fields["password"], ("text-private", []))
        self.assertNotIn("pw-Zq81x", ET.tostring(reply, "unicode"))

        # Stored: the private value too (the transport needs it), in a
        # database only its owner can read, and never logged.
        self.assertEqual(
            self.rows("SELECT value FROM user_values WHERE gateway=? AND jid=? "
                      "AND var='password'", GW, "erin@localhost"),
            [("pw-Zq81x",)])
        self.assertEqual(stat.S_IMODE(os.stat(self.db).st_mode), 0o600)
        self.assertNotIn("pw-Zq81x", self.bf.log_text())

        # Re-submitting the shown form (password empty) keeps the password.
        reply = self.register(erin, {"nick": "Erin", "password": "",
                                      "shout": "1"})
        self.assertEqual(reply.get("type"), "result")
        self.assertEqual(
            self.rows("SELECT var, value FROM user_values WHERE gateway=? AND "
                      "jid=? ORDER BY var", GW, "erin@localhost"),
            [("nick", "Erin"), ("password", "pw-Zq81x"), ("shout", "1")])

        # The echo now uses the registration.
        erin.message("friend@" + GW, body="hi there", type_="chat")
        reply = erin.wait_message(from_="friend@" + GW)
        self.assertEqual(child_text(reply, "body"), "ERIN: HI THERE")
        self.register(erin, {"nick": "Erin", "shout": "0"})

    def test_register_refusals(self):
        dave = self.client("dave")
        # The module refuses a value: not-acceptable with its reason.
        reply = self.register(dave, {"nick": "TheAdmin"})
        self.assertEqual(stanza_error(reply), ("modify", "not-acceptable"))
        self.assertIn("reserved", stanza_error_text(reply) or "")
        # A bad boolean: named by its label.
        reply = self.register(dave, {"shout": "perhaps"})
        self.assertEqual(stanza_error(reply)[1], "not-acceptable")
        self.assertIn("Echo in capitals", stanza_error_text(reply) or "")
        # Removing a registration that does not exist.
        reply = dave.iq(GW, "<query xmlns='%s'><remove/></query>" % NS_REGISTER,
                        type_="set")
        self.assertEqual(stanza_error(reply)[1], "item-not-found")
        self.assertFalse(self.registered("dave"))

    def test_gateway_subscribes_after_registration(self):
        bob = self.client("bob")
        reply = self.register(bob, {"nick": "bobby"})
        self.assertEqual(reply.get("type"), "result")
        # slixmpp approves the gateway's subscribe and subscribes back.
        sub = bob.wait_stanza(lambda el: el.tag == q("presence")
                              and el.get("from") == GW
                              and el.get("type") == "subscribe",
                              what="subscribe from the gateway")
        self.assertEqual(sub.get("to"), "bob@localhost")
        wait_for(lambda: self.subscription(bob, GW) == "both",
                 10, what="the gateway in bob's roster with subscription both")
        # The gateway shows itself online.
        bob.wait_stanza(lambda el: el.tag == q("presence")
                        and el.get("from") == GW and el.get("type") is None,
                        what="the gateway's presence")
        self.bf.wait_log(r"session started for bob@localhost", timeout=10)

    def test_unregister_removes_everything(self):
        carol = self.client("carol")
        self.assertEqual(self.register(carol, {"nick": "caz",
                                               "password": "c-pw"}).get("type"),
                         "result")
        # Some state of hers: a contact subscription and a message id.
        carol.send_raw("<presence type='subscribe' to='pal@%s'/>" % GW)
        carol.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "pal@" + GW
                          and el.get("type") == "subscribed",
                          what="subscribed from pal")
        carol.message("pal@" + GW, body="remember me", type_="chat")
        carol.wait_message(from_="pal@" + GW)
        bare = "carol@localhost"
        for table in ("users", "user_values", "contacts", "msgids"):
            self.assertGreater(self.rows("SELECT count(*) FROM %s WHERE "
                                         "gateway=? AND jid=?" % table, GW,
                                         bare)[0][0], 0, table)
        reply = carol.iq(GW, "<query xmlns='%s'><remove/></query>" % NS_REGISTER,
                         type_="set")
        self.assertEqual(reply.get("type"), "result")
        for table in ("users", "user_values", "contacts", "msgids"):
            self.assertEqual(self.rows("SELECT count(*) FROM %s WHERE "
                                       "gateway=? AND jid=?" % table, GW,
                                       bare)[0][0], 0, table)
        # XEP-0100 §4.3: the gateway leaves her roster.
        carol.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == GW
                          and el.get("type") == "unsubscribed",
                          what="unsubscribed from the gateway")
        carol.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "pal@" + GW
                          and el.get("type") == "unsubscribed",
                          what="unsubscribed from the contact")

    def test_not_allowed_domain_is_refused_and_nothing_stored(self):
        alice = self.client("alice")
        reply = alice.iq(CLOSED, "<query xmlns='%s'/>" % NS_REGISTER)
        self.assertEqual(stanza_error(reply)[1], "forbidden")
        reply = alice.iq(CLOSED, "<query xmlns='%s'>%s</query>" % (
            NS_REGISTER, form_xml({"nick": "x"})), type_="set")
        self.assertEqual(stanza_error(reply)[1], "forbidden")
        alice.message("someone@" + CLOSED, body="let me in", type_="chat")
        err = alice.wait_message(from_="someone@" + CLOSED)
        self.assertEqual(err.get("type"), "error")
        self.assertEqual(stanza_error(err)[1], "forbidden")
        alice.send_raw("<presence type='subscribe' to='someone@%s'/>" % CLOSED)
        alice.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "someone@" + CLOSED
                          and el.get("type") == "unsubscribed",
                          what="unsubscribed from the closed gateway")
        # Discovery still works for everyone.
        reply = alice.iq(CLOSED, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        self.assertEqual(reply.get("type"), "result")
        for table in ("users", "user_values", "contacts", "msgids"):
            self.assertEqual(self.rows("SELECT count(*) FROM %s WHERE "
                                       "gateway=?" % table, CLOSED)[0][0], 0)

    # -- ad-hoc and chat commands --

    def command_nodes(self, client, to=GW):
        reply = client.iq(to, "<query xmlns='%s' node='%s'/>"
                          % (NS_DISCO_ITEMS, NS_COMMANDS))
        self.assertEqual(reply.get("type"), "result")
        return {i.get("node"): i.get("name")
                for i in reply.iter(q("item", NS_DISCO_ITEMS))}

    def test_disco_advertises_the_features(self):
        alice = self.client("alice")
        reply = alice.iq(GW, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        features = {f.get("var") for f in reply.iter(q("feature", NS_DISCO_INFO))}
        for var in (NS_REGISTER, NS_GATEWAY, NS_COMMANDS, NS_RECEIPTS,
                    NS_CORRECT):
            self.assertIn(var, features)

    def test_two_step_command_configure(self):
        dave = self.client("dave")
        self.assertEqual(self.register(dave, {"nick": "dd"}).get("type"), "result")
        nodes = self.command_nodes(dave)
        for node in ("configure", "unregister", "count"):
            self.assertIn(node, nodes)
        for node in ("users", "sessions", "stats", "announce", "reload"):
            self.assertNotIn(node, nodes)  # admin commands are hidden

        reply, cmd = command(dave, "configure")
        self.assertEqual(cmd.get("status"), "executing")
        sid = cmd.get("sessionid")
        self.assertTrue(sid)
        self.assertEqual(form_fields(cmd)["nick"][1], ["dd"])
        # A bad submission shows the form again with the reason.
        reply, cmd = command(dave, "configure", action="next", sessionid=sid,
                             form=form_xml({"nick": "dd", "shout": "maybe"}))
        self.assertEqual(cmd.get("status"), "executing")
        self.assertEqual(note_text(cmd)[0], "error")
        reply, cmd = command(dave, "configure", action="complete",
                             sessionid=sid,
                             form=form_xml({"nick": "dave2", "shout": "0"}))
        self.assertEqual(cmd.get("status"), "completed")
        self.assertEqual(note_text(cmd)[0], "info")
        self.assertEqual(self.rows("SELECT value FROM user_values WHERE "
                                   "gateway=? AND jid=? AND var='nick'", GW,
                                   "dave@localhost"), [("dave2",)])
        # The session is gone: its id is refused now.
        reply, _ = command(dave, "configure", action="next", sessionid=sid,
                           form=form_xml({"nick": "x"}))
        self.assertEqual(stanza_error(reply)[1], "bad-request")
        # Cancel.
        reply, cmd = command(dave, "configure")
        reply, cmd = command(dave, "configure", action="cancel",
                             sessionid=cmd.get("sessionid"))
        self.assertEqual(cmd.get("status"), "canceled")
        # A contact command on a JID at the gateway.
        self.assertIn("whois", self.command_nodes(dave, "pal@" + GW))
        reply, cmd = command(dave, "whois", to="pal@" + GW)
        self.assertEqual(cmd.get("status"), "completed")
        self.assertIn("pal@" + GW, note_text(cmd)[1])

    def test_admin_commands(self):
        alice = self.client("alice")
        reply, _ = command(alice, "users")
        self.assertEqual(stanza_error(reply)[1], "forbidden")
        reply, _ = command(alice, "stats")
        self.assertEqual(stanza_error(reply)[1], "forbidden")

        bob = self.client("bob", resource="admin")
        nodes = self.command_nodes(bob)
        for node in ("users", "sessions", "stats", "announce", "reload"):
            self.assertIn(node, nodes)
        self.register(alice, {"nick": "Alice"})
        reply, cmd = command(bob, "users")
        self.assertEqual(cmd.get("status"), "completed")
        self.assertIn("alice@localhost", form_fields(cmd)["users"][1])
        reply, cmd = command(bob, "stats")
        self.assertEqual(cmd.get("status"), "completed")
        text = ET.tostring(cmd, "unicode")
        self.assertIn(GW, text)
        self.assertIn(CLOSED, text)
        reply, cmd = command(bob, "sessions")
        self.assertEqual(cmd.get("status"), "completed")
        # Announce: two steps, to every registered user.
        reply, cmd = command(bob, "announce")
        self.assertEqual(cmd.get("status"), "executing")
        reply, cmd = command(bob, "announce", action="complete",
                             sessionid=cmd.get("sessionid"),
                             form=form_xml({"subject": "Maintenance",
                                            "body": "Back at 10:00",
                                            "online_only": "0"}))
        self.assertEqual(cmd.get("status"), "completed")
        msg = alice.wait_message(from_=GW, predicate=lambda el:
                                 child_text(el, "body") == "Back at 10:00")
        self.assertEqual(child_text(msg, "subject"), "Maintenance")
        reply, cmd = command(bob, "reload")
        self.assertEqual(cmd.get("status"), "completed")
        self.assertIn("eload", note_text(cmd)[1])

    def test_chat_commands(self):
        alice = self.client("alice")
        self.register(alice, {"nick": "Alice"})
        alice.message(GW, body="help", type_="chat")
        reply = alice.wait_message(from_=GW, predicate=lambda el:
                                   child_text(el, "body") is not None)
        body = child_text(reply, "body")
        for node in ("configure", "count", "unregister"):
            self.assertIn(node, body)
        self.assertNotIn("announce", body)
        alice.message(GW, body="count", type_="chat")
        reply = alice.wait_message(from_=GW, predicate=lambda el:
                                   "Echoed" in (child_text(el, "body") or ""))
        self.assertEqual(reply.get("type"), "chat")
        alice.message(GW, body="frobnicate", type_="chat")
        reply = alice.wait_message(from_=GW, predicate=lambda el:
                                   "Unknown command" in (child_text(el, "body") or ""))
        self.assertIn("help", child_text(reply, "body"))

    # -- XEP-0100 prompt, contacts, ids --

    def test_gateway_prompt(self):
        alice = self.client("alice")
        reply = alice.iq(GW, "<query xmlns='%s'/>" % NS_GATEWAY)
        query = reply.find(q("query", NS_GATEWAY))
        self.assertTrue(child_text(query, "prompt", NS_GATEWAY))
        self.assertTrue(child_text(query, "desc", NS_GATEWAY))
        reply = alice.iq(GW, "<query xmlns='%s'><prompt>bob@example.com</prompt>"
                         "</query>" % NS_GATEWAY, type_="set")
        self.assertEqual(child_text(reply.find(q("query", NS_GATEWAY)), "jid",
                                    NS_GATEWAY),
                         "bob\\40example.com@" + GW)

    def test_contact_subscription_and_presence(self):
        alice = self.client("alice")
        self.register(alice, {"nick": "Alice"})
        alice.send_raw("<presence type='subscribe' to='buddy@%s'/>" % GW)
        alice.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "buddy@" + GW
                          and el.get("type") == "subscribed",
                          what="subscribed from buddy")
        pres = alice.wait_stanza(lambda el: el.tag == q("presence")
                                 and el.get("from") == "buddy@" + GW
                                 and el.get("type") is None,
                                 what="buddy's presence")
        self.assertEqual(child_text(pres, "status"), "echoing")
        # The contact asks back (XEP-0100 §5.3); slixmpp approves, so the
        # subscription is both ways: to (1) and from (2).
        alice.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "buddy@" + GW
                          and el.get("type") == "subscribe",
                          what="subscribe from buddy")
        wait_for(lambda: self.rows(
            "SELECT subscription FROM contacts WHERE gateway=? AND jid=? AND "
            "contact=?", GW, "alice@localhost", "buddy@" + GW) == [(3,)], 10,
            what="subscription both ways stored")
        wait_for(lambda: self.subscription(alice, "buddy@" + GW) == "both", 10,
                 what="buddy in alice's roster with subscription both")
        # A probe is answered with the published presence.
        alice.send_raw("<presence type='probe' to='buddy@%s'/>" % GW)
        pres = alice.wait_stanza(lambda el: el.tag == q("presence")
                                 and el.get("from") == "buddy@" + GW
                                 and el.get("type") is None, what="probe answer")
        # The module refuses some contacts.
        alice.send_raw("<presence type='subscribe' to='nobody@%s'/>" % GW)
        alice.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "nobody@" + GW
                          and el.get("type") == "unsubscribed",
                          what="unsubscribed from nobody")

    def test_receipts_and_corrections_use_the_id_map(self):
        alice = self.client("alice")
        # The echo keeps ids for its registered users.
        self.register(alice, {"nick": "Alice"})
        to = "ids@" + GW
        alice.send_raw("<message to='%s' id='m1' type='chat'><body>first</body>"
                       "<request xmlns='%s'/><origin-id xmlns='urn:xmpp:sid:0' "
                       "id='o1'/></message>" % (to, NS_RECEIPTS))
        receipt = alice.wait_message(from_=to, predicate=lambda el:
                                     el.find(q("received", NS_RECEIPTS)) is not None)
        self.assertEqual(receipt.find(q("received", NS_RECEIPTS)).get("id"), "m1")
        echo = alice.wait_message(from_=to, predicate=lambda el:
                                  child_text(el, "body") is not None)
        echo_id = echo.get("id")
        self.assertTrue(echo_id)
        self.assertEqual(self.rows("SELECT foreign_id FROM msgids WHERE "
                                   "gateway=? AND jid=? AND xmpp_id='o1'", GW,
                                   "alice@localhost"), [(echo_id,)])
        alice.send_raw("<message to='%s' id='m2' type='chat'><body>first!</body>"
                       "<replace xmlns='%s' id='o1'/></message>" % (to, NS_CORRECT))
        fixed = alice.wait_message(from_=to, predicate=lambda el:
                                   child_text(el, "body") is not None)
        self.assertEqual(fixed.find(q("replace", NS_CORRECT)).get("id"), echo_id)


class StockClientTest(E2ETestCase):
    """The same flows through slixmpp's own XEP-0077/0050/0004 plugins, the
    code a stock client (poezio) runs: what it makes of our forms, notes
    and sessions is what its users see."""

    def setUp(self):
        self.lab = Lab("stock")
        self.prosody = self.lab.prosody({GW: "s3cret"})
        bf = self.lab.babelfish(babelfish_config(
            self.lab, self.prosody, {"echo": GATEWAYS["echo"]}))
        self.prosody.wait_auth(GW, daemon=bf)

    def tearDown(self):
        self.lab.close()

    def test_register_and_configure_with_slixmpp_plugins(self):
        client = roster_client(self.lab, self.prosody, "frank")
        xmpp = client.xmpp
        for plugin in ("xep_0004", "xep_0030", "xep_0050", "xep_0077"):
            xmpp.register_plugin(plugin)

        async def flow():
            # XEP-0077 with the data form the plugin parses.
            iq = await xmpp["xep_0077"].get_registration(jid=GW, timeout=10)
            form = iq["register"]["form"]
            self.assertIn("nick", form.get_fields())
            self.assertEqual(form.get_fields()["password"]["type"],
                             "text-private")
            submit = xmpp["xep_0004"].make_form(ftype="submit")
            submit.add_field(var="FORM_TYPE", ftype="hidden",
                             value=NS_REGISTER)
            submit.add_field(var="nick", value="frankie")
            submit.add_field(var="password", value="fr-secret")
            req = xmpp.Iq()
            req["type"] = "set"
            req["to"] = GW
            req["register"].append(submit)
            await req.send(timeout=10)
            iq = await xmpp["xep_0077"].get_registration(jid=GW, timeout=10)
            self.assertTrue(iq["register"]["registered"])
            self.assertEqual(iq["register"]["form"].get_fields()["nick"]
                             .get_value(), "frankie")

            # XEP-0050: list, then run the two-step configure command
            # through the plugin's session workflow.
            items = await xmpp["xep_0050"].get_commands(GW, timeout=10)
            nodes = {i[1] for i in items["disco_items"]["items"]}
            self.assertIn("configure", nodes)
            done = asyncio.get_running_loop().create_future()

            def on_next(iq, session):
                cmd = iq["command"]
                if cmd["status"] == "completed":
                    done.set_result([n for n in cmd["notes"]])
                    return
                shown = cmd["form"]
                self.assertEqual(shown.get_fields()["nick"].get_value(),
                                 "frankie")
                answer = xmpp["xep_0004"].make_form(ftype="submit")
                answer.add_field(var="nick", value="franky")
                answer.add_field(var="shout", value=True)
                session["payload"] = answer
                session["next"] = on_next
                xmpp["xep_0050"].complete_command(session)

            def on_error(iq, session):
                done.set_exception(AssertionError(str(iq)))

            xmpp["xep_0050"].start_command(GW, "configure",
                                           {"next": on_next,
                                            "error": on_error})
            return await asyncio.wait_for(done, 10)

        notes = client.run(flow())
        self.assertEqual(notes[0][0], "info")
        # The password typed at registration survived the configure step.
        con = sqlite3.connect(os.path.join(self.lab.root, "bf.db"))
        try:
            rows = con.execute("SELECT var, value FROM user_values WHERE "
                               "jid='frank@localhost' ORDER BY var").fetchall()
        finally:
            con.close()
        self.assertEqual(rows, [("nick", "franky"), ("password", "fr-secret"),
                                ("shout", "1")])


class SessionsTest(E2ETestCase):
    """Sessions follow the user's resources, and come back from probes
    after babelfish restarts."""

    def setUp(self):
        self.lab = Lab("sessions")
        self.prosody = self.lab.prosody({GW: "s3cret"})
        self.config = babelfish_config(self.lab, self.prosody,
                                       {"echo": GATEWAYS["echo"]},
                                       probe_timeout=3)

    def tearDown(self):
        self.lab.close()

    def client(self, user, resource=None):
        return roster_client(self.lab, self.prosody, user, resource)

    def start(self):
        since = self.prosody.debug_mark()
        bf = self.lab.babelfish(self.config)
        self.prosody.wait_auth(GW, since=since, daemon=bf)
        return bf

    def test_first_and_last_resource_and_restart(self):
        bf = self.start()
        phone = self.client("alice", resource="phone")
        reply = phone.iq(GW, "<query xmlns='%s'>%s</query>" % (
            NS_REGISTER, form_xml({"nick": "Al"})), type_="set")
        self.assertEqual(reply.get("type"), "result")
        bf.wait_log(r"session started for alice@localhost", timeout=10)
        bf.wait_log(r"resource available alice@localhost/phone", timeout=10)

        mark = bf.mark()
        pc = self.client("alice", resource="pc")
        bf.wait_log(r"resource available alice@localhost/pc", since=mark)
        self.assertEqual(bf.count_log(r"session started for alice@localhost",
                                      since=mark), 0)
        phone.disconnect()
        bf.wait_log(r"resource unavailable alice@localhost/phone", since=mark)
        self.assertEqual(bf.count_log(r"session stopped for alice@localhost",
                                      since=mark), 0)

        # babelfish restarts while alice stays online: the probes bring
        # her session back.
        rc, _ = bf.stop()
        self.assertEqual(rc, 0)
        t0 = time.monotonic()
        bf = self.start()
        bf.wait_log(r"session started for alice@localhost", timeout=10)
        bf.wait_log(r"resource available alice@localhost/pc", timeout=10)
        report("session back %.2f s after the restart", time.monotonic() - t0)

        mark = bf.mark()
        pc.disconnect()
        bf.wait_log(r"session stopped for alice@localhost", since=mark)

    def test_server_restart_ends_sessions_and_probes_bring_them_back(self):
        bf = self.start()
        pc = self.client("alice", resource="pc")
        pc.iq(GW, "<query xmlns='%s'>%s</query>" % (
            NS_REGISTER, form_xml({"nick": "Al"})), type_="set")
        bf.wait_log(r"session started for alice@localhost", timeout=10)
        mark = bf.mark()
        since = self.prosody.debug_mark()
        t0 = time.monotonic()
        self.prosody.restart()
        self.prosody.wait_auth(GW, since=since, daemon=bf, timeout=20)
        # Alice's client died with the server: after reconnecting, the
        # probe's answer (or its absence) ends her session.
        bf.wait_log(r"session stopped for alice@localhost", since=mark,
                    timeout=10)
        report("session ended %.2f s after the server restart",
               time.monotonic() - t0)
        self.client("alice", resource="pc2")
        bf.wait_log(r"session started for alice@localhost", since=mark,
                    timeout=10)

    def test_contacts_come_back_after_restart(self):
        bf = self.start()
        alice = self.client("alice")
        alice.iq(GW, "<query xmlns='%s'>%s</query>" % (
            NS_REGISTER, form_xml({"nick": "Al"})), type_="set")
        alice.send_raw("<presence type='subscribe' to='buddy@%s'/>" % GW)
        alice.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "buddy@" + GW
                          and el.get("type") == "subscribed",
                          what="subscribed from buddy")
        bf.wait_log(r"session started for alice@localhost", timeout=10)
        rc, _ = bf.stop()
        self.assertEqual(rc, 0)
        # Stopping said goodbye for the gateway and the contact.
        alice.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == "buddy@" + GW
                          and el.get("type") == "unavailable",
                          what="buddy unavailable at shutdown")
        alice.wait_stanza(lambda el: el.tag == q("presence")
                          and el.get("from") == GW
                          and el.get("type") == "unavailable",
                          what="the gateway unavailable at shutdown")
        alice.inbox.clear()
        self.start()
        pres = alice.wait_stanza(lambda el: el.tag == q("presence")
                                 and el.get("from") == "buddy@" + GW
                                 and el.get("type") is None,
                                 what="buddy back online after the restart")
        self.assertEqual(child_text(pres, "status"), "echoing")


if __name__ == "__main__":
    main()
