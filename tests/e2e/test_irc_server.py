"""End-to-end tests of the IRC transport's per-server settings and
logins (the configure command on irc.net@GW): SASL EXTERNAL with a client
certificate babelfish makes, against InspIRCd's TLS port and Atheme
(NickServ CERT ADD); EXTERNAL refused falling back to SASL PLAIN or to
NickServ IDENTIFY; the encoding of text that is not UTF-8 and the flood
control, each per server, against ngIRCd."""
import os
import re
import sqlite3
import time
import xml.etree.ElementTree as ET

from harness import child_text, irc_nick, irc_parse, main, q, report
from irc_common import GW, IrcTestCase, room, send_join
from test_users import NS_DATA, command, form_fields, form_xml, note_text


class SettingsTestCase(IrcTestCase):
    """Prosody, babelfish with one irc gateway, and alice (setUp makes
    them with make_lab and start_gateway)."""

    def configure(self, values, server="localhost", ok=True):
        """Runs configure on server's JID with values; returns (the form's
        fields as first shown, its instructions, the final command
        element)."""
        to = "%s@%s" % (server, GW)
        _, cmd = command(self.alice, "configure", to=to)
        self.assertEqual(cmd.get("status"), "executing")
        fields = form_fields(cmd)
        instructions = cmd.find(".//" + q("instructions", NS_DATA))
        _, done = command(self.alice, "configure", to=to, action="complete",
                          sessionid=cmd.get("sessionid"),
                          form=form_xml(values))
        if ok:
            self.assertEqual(done.get("status"), "completed",
                             ET.tostring(done, "unicode"))
        return fields, instructions.text or "", done

    def join(self, channel, nick, server="localhost"):
        send_join(self.alice, channel, nick, server=server)
        return self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from", "").startswith(room(channel, server) + "/")
            and el.get("type") is None
            and any(s.get("code") == "110" for s in el.iter()),
            timeout=15, what="joined %s" % room(channel, server))

    def leave(self, channel, nick, server="localhost"):
        self.alice.send_raw("<presence to='%s/%s' type='unavailable'/>"
                            % (room(channel, server), nick))
        self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == "%s/%s" % (room(channel, server), nick)
            and el.get("type") == "unavailable", what="left")

    def groupchat(self, channel, body, server="localhost"):
        self.alice.send_raw("<message to='%s' type='groupchat'><body>%s"
                            "</body></message>" % (room(channel, server), body))


class IrcClientCertificateTest(SettingsTestCase):
    """InspIRCd with a TLS port that asks for client certificates, and
    Atheme with NickServ CERT and SaslServ EXTERNAL."""

    def setUp(self):
        self.make_lab("irc-cert")
        self.ircd = self.lab.inspircd(tls=True)
        # The server's certificate is self-signed: not what is tested here.
        self.start_gateway({"irc_ports": "+%d" % self.ircd.tls_port,
                            "irc_tls_verify": "no"})
        self.server_jid = "localhost@" + GW

    def whois_account(self, nick):
        dave = self.lab.irc_client(self.ircd, "dave%d"
                                   % (time.monotonic_ns() % 10000))
        mark = dave.mark()
        dave.send("WHOIS %s" % nick)
        line = dave.wait_line(lambda l: irc_parse(l)[2] in ("330", "318"),
                              since=mark)
        _, _, command_, params = irc_parse(line)
        dave.close()
        return params[2] if command_ == "330" else None

    def test_sasl_external_with_client_certificate(self):
        """The user's path: turn the certificate on (babelfish makes it and
        shows its fingerprint), log in with the password once (EXTERNAL is
        refused: not registered yet, PLAIN follows), register the
        fingerprint with NickServ from XMPP, then log in with EXTERNAL
        alone."""
        self.ircd.register_account("alice_acct", "pw-sasl-123")
        _, _, done = self.configure({"sasl_external": "1",
                                     "sasl_user": "alice_acct",
                                     "sasl_password": "pw-sasl-123"})
        fp = re.search(r"fingerprint is ([0-9a-f]{64})",
                       note_text(done)[1]).group(1)
        # The form shows it from now on, the same one (made once).
        fields, instructions, _ = self.configure(
            {"sasl_external": "1", "sasl_user": "alice_acct"})
        self.assertIn(fp, instructions)
        self.assertEqual(fields["sasl_external"][1], ["1"])
        self.assertEqual(fields["sasl_password"][1], [])
        # The key is in the module's database, never in the form.
        self.assertFalse([v for _, values in fields.values() for v in values
                          if "PRIVATE KEY" in v])
        db = sqlite3.connect(os.path.join(self.lab.root, "bf.db"))
        rows = db.execute("SELECT var, value FROM irc_settings WHERE user = "
                          "'alice@localhost' AND server = 'localhost' AND "
                          "var LIKE 'identity_%' ORDER BY var").fetchall()
        db.close()
        self.assertEqual([r[0] for r in rows], ["identity_cert", "identity_fp",
                                                "identity_key"])
        self.assertEqual(rows[1][1], fp)
        self.assertIn("BEGIN PRIVATE KEY", rows[2][1])

        t0 = time.monotonic()
        self.join("#ext", "alice")
        told = self.alice.wait_message(from_=self.server_jid, timeout=15)
        text = child_text(told, "body")
        self.assertIn("client certificate (SASL EXTERNAL) failed", text)
        self.assertIn("CERT ADD %s" % fp, text)
        self.assertIn("Trying the SASL password instead", text)
        self.assertEqual(self.whois_account("alice"), "alice_acct")
        report("join, EXTERNAL refused then PLAIN: %.2f s",
               time.monotonic() - t0)

        # Logged in: register the certificate, as a user would, in a chat
        # with NickServ.
        self.alice.send_raw("<message to='NickServ%%localhost@%s' type='chat'>"
                            "<body>CERT ADD %s</body></message>" % (GW, fp))
        reply = self.alice.wait_message(
            predicate=lambda el: el.get("from", "").lower().startswith(
                "nickserv%localhost@")
            and "fingerprint" in (child_text(el, "body") or ""))
        self.assertIn(fp, child_text(reply, "body"))
        self.leave("#ext", "alice")

        # EXTERNAL alone now: no account or password to fall back on.
        self.configure({"sasl_external": "1"})
        since = self.bf.mark()
        t0 = time.monotonic()
        self.join("#ext", "alice")
        self.bf.wait_log(r"SASL login with the client certificate",
                         since=since)
        self.assertEqual(self.whois_account("alice"), "alice_acct")
        report("join with SASL EXTERNAL: %.2f s", time.monotonic() - t0)
        # The private key was never logged nor shown.
        log = self.bf.log_text()
        self.assertNotIn("PRIVATE KEY", log)
        self.assertNotIn("pw-sasl-123", log)

    def test_external_refused_then_nickserv_identify(self):
        """EXTERNAL refused and no SASL password: the user is told,
        registration goes on, and the NickServ password logs in."""
        self.ircd.register_account("alice_acct", "pw-ns-456")
        self.configure({"nick": "alice_acct", "sasl_external": "1",
                        "nickserv_password": "pw-ns-456"})
        fields, _, _ = self.configure({"nick": "alice_acct",
                                       "sasl_external": "1"})
        self.assertEqual(fields["nickserv_password"], ("text-private", []))
        self.join("#ns", "alice")
        told = self.alice.wait_message(from_=self.server_jid, timeout=15)
        self.assertIn("Going on without logging in", child_text(told, "body"))
        self.bf.wait_log(r"IDENTIFY sent to NickServ")
        deadline = time.monotonic() + 10
        while self.whois_account("alice_acct") != "alice_acct":
            self.assertLess(time.monotonic(), deadline, "not identified")
            time.sleep(0.2)
        self.assertNotIn("pw-ns-456", self.bf.log_text())


class IrcServerSettingsTest(SettingsTestCase):
    """Against ngIRCd, reached under two names (localhost and 127.0.0.1)
    so that each has its own settings; the section's irc_throttle is 1
    line/s."""

    def setUp(self):
        self.make_lab("irc-settings")
        self.ircd = self.lab.ngircd()
        self.start_gateway({"irc_ports": self.ircd.port, "irc_throttle": 1})
        self.bob = self.lab.irc_client(self.ircd, "bob")
        self.bob.join("#set")

    def test_encoding_per_server(self):
        # Bad values are refused with the reason; the form shows again.
        _, _, cmd = self.configure({"encoding": "NO-SUCH-CHARSET",
                                    "throttle": "fast"}, ok=False)
        self.assertEqual(cmd.get("status"), "executing")
        self.assertEqual(note_text(cmd)[0], "error")
        self.assertRegex(note_text(cmd)[1], "charset|lines per second")
        fields, _, _ = self.configure({"encoding": "KOI8-R"})
        self.assertEqual(fields["encoding"][1], ["ISO-8859-1"])  # default
        self.configure({"encoding": "CP1252"}, server="127.0.0.1")
        self.join("#set", "alice")
        self.join("#set", "alice2", server="127.0.0.1")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice2")
        russian = "Привет, мир"
        western = "“Smart quotes” — 5 €"
        for text, charset in ((russian, "koi8-r"), (western, "cp1252")):
            raw = text.encode(charset).decode("utf-8", "surrogateescape")
            self.bob.privmsg("#set", raw)
        # Both of bob's lines in each room: the same bytes, read with
        # each server's charset.
        got = {room("#set") + "/bob": [],
               room("#set", "127.0.0.1") + "/bob": []}
        while sum(len(v) for v in got.values()) < 4:
            msg = self.alice.wait_message(
                predicate=lambda el: el.get("type") == "groupchat"
                and el.get("from") in got
                and el.find(q("delay", "urn:xmpp:delay")) is None)
            got[msg.get("from")].append(child_text(msg, "body"))
        koi8 = got[room("#set") + "/bob"]
        cp1252 = got[room("#set", "127.0.0.1") + "/bob"]
        self.assertEqual(koi8[0], russian)  # KOI8-R on localhost
        self.assertEqual(cp1252[1], western)  # CP1252 on 127.0.0.1
        self.assertNotEqual(cp1252[0], russian)
        self.assertNotEqual(koi8[1], western)

    def test_throttle_per_server(self):
        """localhost: throttle 0 (none) overrides the section's 1 line/s;
        127.0.0.1 keeps the section's."""
        self.configure({"throttle": "0"})
        self.join("#set", "alice")
        self.join("#set", "alice2", server="127.0.0.1")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice2")
        body = "&#10;".join("line %d" % i for i in range(8))
        spans = {}
        for nick, server in (("alice", "localhost"), ("alice2", "127.0.0.1")):
            mark = self.bob.mark()
            t0 = time.monotonic()
            self.groupchat("#set", body, server=server)
            for i in range(8):
                line = self.bob.wait_command(
                    "PRIVMSG", lambda p: irc_nick(p[1]) == nick, since=mark,
                    timeout=20)
                mark = self.bob.cursor
                self.assertEqual(line[3][1], "line %d" % i)
            spans[server] = time.monotonic() - t0
        report("8 lines: %.2f s unthrottled, %.2f s at 1 line/s",
               spans["localhost"], spans["127.0.0.1"])
        self.assertLess(spans["localhost"], 1.0)
        self.assertGreater(spans["127.0.0.1"], 3.0)


if __name__ == "__main__":
    main()
