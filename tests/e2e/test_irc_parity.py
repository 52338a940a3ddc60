"""End-to-end tests of what users moving from Biboumi expect, against
ngIRCd: the "Address" and after-connection commands settings of a server,
the get-irc-connection-info command on irc.net@GW, and the gateway's
disconnect-user (admins) and disconnect-from-irc-servers commands."""
import os
import sqlite3
import time
import xml.etree.ElementTree as ET

from harness import child_text, irc_nick, main, q
from irc_common import GW, room
from test_irc_server import SettingsTestCase
from test_users import command, form_fields, form_xml, note_text

# A name no resolver knows: reached only through the Address setting.
RENAMED = "renamed.invalid"


class IrcParityTest(SettingsTestCase):
    """ngIRCd; bob on IRC in #p; carol@localhost is the gateway's admin."""

    def setUp(self):
        self.make_lab("irc-parity")
        self.ircd = self.lab.ngircd()
        self.start_gateway({"irc_ports": self.ircd.port},
                           admins="carol@localhost")
        self.bob = self.lab.irc_client(self.ircd, "bob")
        self.bob.join("#p")

    def run_command(self, client, node, to, steps):
        """Runs node on to, submitting each form of steps in turn; returns
        the forms' fields as shown and the last command element."""
        _, cmd = command(client, node, to=to)
        shown = []
        for values in steps:
            self.assertEqual(cmd.get("status"), "executing",
                             ET.tostring(cmd, "unicode"))
            shown.append(form_fields(cmd))
            _, cmd = command(client, node, to=to, action="next",
                             sessionid=cmd.get("sessionid"),
                             form=form_xml(values))
        return shown, cmd

    def info(self, server):
        _, cmd = command(self.alice, "get-irc-connection-info",
                         to="%s@%s" % (server, GW))
        self.assertEqual(cmd.get("status"), "completed")
        return note_text(cmd)[1]

    def test_address_and_after_connect_commands(self):
        # Bad values are refused with the reason, nothing saved.
        _, _, cmd = self.configure({"address": "not a host!"},
                                   server=RENAMED, ok=False)
        self.assertEqual(note_text(cmd)[0], "error")
        self.assertIn("host name", note_text(cmd)[1])
        _, _, cmd = self.configure(
            {"after_connect": ["PRIVMSG bob :hi", ":evil PRIVMSG bob :x"]},
            server=RENAMED, ok=False)
        self.assertEqual(note_text(cmd)[0], "error")
        self.assertIn("not an IRC command", note_text(cmd)[1])
        _, _, cmd = self.configure(
            {"after_connect": ["PRIVMSG bob :%d" % i for i in range(17)]},
            server=RENAMED)
        self.assertEqual(note_text(cmd)[0], "error")
        self.assertIn("at most 16", note_text(cmd)[1])

        lines = ["PRIVMSG bob :after-connect one",
                 "NOTICE bob :after-connect two"]
        self.configure({"address": "127.0.0.1", "after_connect": lines},
                       server=RENAMED)
        fields, _, _ = self.configure({"address": "127.0.0.1",
                                       "after_connect": lines},
                                      server=RENAMED)
        self.assertEqual(fields["address"], ("text-single", ["127.0.0.1"]))
        self.assertEqual(fields["after_connect"], ("text-multi", lines))

        mark = self.bob.mark()
        self.join("#p", "alice", server=RENAMED)  # resolved as 127.0.0.1
        got = []
        while len(got) < 3:
            line = self.bob.wait_line(
                lambda l: " PRIVMSG bob " in l or " NOTICE bob " in l
                or " JOIN " in l, since=mark)
            mark = self.bob.cursor
            got.append(line)
        # In order, and before the channel is joined.
        self.assertIn("after-connect one", got[0])
        self.assertIn("after-connect two", got[1])
        self.assertIn("JOIN", got[2])
        # The room keeps the JID's name.
        self.bob.privmsg("#p", "still here")
        msg = self.alice.wait_message(
            predicate=lambda el: el.get("type") == "groupchat"
            and child_text(el, "body") == "still here")
        self.assertEqual(msg.get("from"), room("#p", RENAMED) + "/bob")

    def test_connection_info(self):
        self.assertIn("not connected", self.info("localhost"))
        self.join("#p", "alice")
        text = self.info("localhost")
        self.assertIn("localhost: connected to localhost (127.0.0.1) port %d, "
                      "no TLS, as alice." % self.ircd.port, text)
        self.assertIn("Logged in with SASL: no.", text)
        self.assertIn("IRCv3 capabilities: multi-prefix", text)
        resource = self.alice.jid.split("/")[1]
        self.assertIn("#p: %s" % resource, text)

    def test_disconnect_user_by_an_admin(self):
        self.join("#p", "alice")
        admin = self.lab.client(self.prosody, "carol")
        # Only admins: alice is refused.
        reply, _ = command(self.alice, "disconnect-user", to=GW)
        self.assertEqual(reply.get("type"), "error")
        self.assertIsNotNone(reply.find(".//" + q(
            "forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas")),
            ET.tostring(reply, "unicode"))
        mark = self.bob.mark()
        shown, cmd = self.run_command(
            admin, "disconnect-user", GW,
            [{"jids": ["alice@localhost"], "quit-message": "maintenance"}])
        self.assertEqual(shown[0]["jids"][0], "jid-multi")
        self.assertEqual(note_text(cmd)[1],
                         "1 IRC connection of 1 user ended.")
        quit_ = self.bob.wait_command(
            "QUIT", lambda p: irc_nick(p[1]) == "alice", since=mark)
        self.assertIn("maintenance", quit_[3][0])
        told = self.alice.wait_message(
            predicate=lambda el: el.get("from") == "localhost@" + GW
            and "maintenance" in (child_text(el, "body") or ""))
        self.assertIn("administrator", child_text(told, "body"))
        self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#p") + "/alice"
            and el.get("type") == "unavailable", what="left #p")
        self.assertIn("not connected", self.info("localhost"))

    def test_disconnect_from_irc_servers(self):
        self.join("#p", "alice")
        self.join("#p", "alice2", server="127.0.0.1")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice2")
        mark = self.bob.mark()
        shown, cmd = self.run_command(
            self.alice, "disconnect-from-irc-servers", GW,
            [{"servers": ["127.0.0.1"]}])
        type_, _ = shown[0]["servers"]
        self.assertEqual(type_, "list-multi")
        x = ET.tostring(cmd, "unicode")
        self.assertEqual(note_text(cmd)[1], "Disconnected from 1 IRC server.",
                         x)
        self.bob.wait_command("QUIT", lambda p: irc_nick(p[1]) == "alice2",
                              since=mark)
        self.assertIn("not connected", self.info("127.0.0.1"))
        self.assertIn("connected to localhost", self.info("localhost"))
        # A server not among the user's connections is refused by the
        # form; an admin picks whose connections first.
        admin = self.lab.client(self.prosody, "carol")
        shown, cmd = self.run_command(
            admin, "disconnect-from-irc-servers", GW,
            [{"jid": "alice@localhost"}, {"servers": ["elsewhere"]}])
        self.assertEqual(cmd.get("status"), "executing")
        self.assertEqual(note_text(cmd)[0], "error")
        self.assertIn("jid", shown[0])
        options = [o.get("var") or o.find(q("value", "jabber:x:data")).text
                   for o in cmd.iter(q("option", "jabber:x:data"))]
        self.assertEqual(options, ["localhost"])
        mark = self.bob.mark()
        _, cmd = command(admin, "disconnect-from-irc-servers", to=GW,
                         action="complete", sessionid=cmd.get("sessionid"),
                         form=form_xml({"servers": ["localhost"],
                                        "quit-message": "bye now"}))
        self.assertEqual(cmd.get("status"), "completed")
        quit_ = self.bob.wait_command(
            "QUIT", lambda p: irc_nick(p[1]) == "alice", since=mark)
        self.assertIn("bye now", quit_[3][0])


class IrcCertificateFingerprintRowTest(SettingsTestCase):
    """The client certificate's fingerprint is a row of its own: the
    configure form shows it without loading libssl."""

    def setUp(self):
        self.make_lab("irc-fp")
        self.ircd = self.lab.ngircd()
        self.start_gateway({"irc_ports": self.ircd.port})

    def test_fingerprint_row(self):
        _, _, done = self.configure({"sasl_external": "1"})
        db = sqlite3.connect(os.path.join(self.lab.root, "bf.db"))
        rows = dict(db.execute(
            "SELECT var, value FROM irc_settings WHERE var LIKE "
            "'identity_%'").fetchall())
        db.close()
        self.assertEqual(sorted(rows), ["identity_cert", "identity_fp",
                                        "identity_key"])
        self.assertIn(rows["identity_fp"], note_text(done)[1])
        # A restarted babelfish shows the form without loading libssl.
        rc, _ = self.bf.stop()
        self.assertEqual(rc, 0)
        self.bf.start()
        self.prosody.wait_auth(GW, count=2, daemon=self.bf)
        _, instructions, _ = self.configure({"sasl_external": "1"})
        self.assertIn(rows["identity_fp"], instructions)
        with open("/proc/%d/maps" % self.bf.proc.pid) as maps:
            self.assertNotIn("libssl", maps.read())
        # On a plain port, the certificate is not used: told once.
        self.join("#fp", "alice")
        time.sleep(1)
        told = [m for m in self.alice.inbox if m.tag == q("message")
                and "not a TLS port" in (child_text(m, "body") or "")]
        self.assertEqual(len(told), 1)


class IrcSaslMechanismsTest(SettingsTestCase):
    """InspIRCd on TLS with Atheme offering SASL PLAIN only: CAP LS says
    sasl=PLAIN."""

    def setUp(self):
        self.make_lab("irc-mechs")
        self.ircd = self.lab.inspircd(tls=True, sasl_external=False)
        self.start_gateway({"irc_ports": "+%d" % self.ircd.tls_port,
                    "irc_tls_verify": "no"})

    def test_external_not_offered(self):
        self.ircd.register_account("alice_acct", "pw-sasl-123")
        self.configure({"sasl_external": "1", "sasl_user": "alice_acct",
                        "sasl_password": "pw-sasl-123"})
        self.join("#mech", "alice")
        told = self.alice.wait_message(
            predicate=lambda el: "does not offer" in (child_text(el, "body")
                                                      or ""))
        self.assertEqual(child_text(told, "body"),
                         "localhost does not offer SASL EXTERNAL: logging in "
                         "with the mechanism it offers.")
        log = self.bf.log_text()
        self.assertIn("SASL login as alice_acct", log)
        self.assertNotIn("SASL EXTERNAL login failed", log)
        self.assertIn("Logged in with SASL: yes (PLAIN)",
                      note_text(command(self.alice, "get-irc-connection-info",
                                        to="localhost@" + GW)[1])[1])


if __name__ == "__main__":
    main()
