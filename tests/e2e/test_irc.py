"""End-to-end tests of the IRC transport: a real Prosody, a real ngIRCd
(Debian's), babelfish between them, slixmpp clients on the XMPP side and a
raw IRC client on the IRC side. Channels as MUC rooms, messages both ways,
private chats, /me, CR/LF injection attempts, long non-ASCII bodies split
under the 512-byte limit, leaving, and an IRC server restart."""
import os
import sqlite3
import time

from harness import (child_text, irc_nick, irc_parse, main, q, report,
                     stanza_error)
from irc_common import (GW, IrcTestCase, codes, join_room, room, send_join)
from test_users import command, form_fields, form_xml


class IrcTest(IrcTestCase):
    def setUp(self):
        self.start_ngircd_bob_alice("irc")

    # Joins the room; returns (self-presence, subject message).
    join = staticmethod(join_room)

    def groupchat(self, client, channel, body):
        client.send_raw("<message to='%s' type='groupchat' id='g%d'>"
                        "<body>%s</body></message>"
                        % (room(channel), int(time.monotonic() * 1e6), body))

    def test_channel_as_room(self):
        t0 = time.monotonic()
        self.join(self.alice, "#test", "alice")
        report("MUC join through IRC: %.1f ms", (time.monotonic() - t0) * 1000)
        # bob, already there, is an occupant; alice arrives on IRC.
        self.assertTrue(any(
            el.tag == q("presence") and el.get("from") == room("#test") + "/bob"
            for el in self.alice.inbox) or self.alice.wait_stanza(
                lambda el: el.get("from") == room("#test") + "/bob"))
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")

        # IRC -> XMPP
        self.bob.privmsg("#test", "hello from IRC, Grüße 🐟")
        msg = self.alice.wait_message(from_=room("#test") + "/bob")
        self.assertEqual(msg.get("type"), "groupchat")
        self.assertEqual(child_text(msg, "body"), "hello from IRC, Grüße 🐟")

        # XMPP -> IRC, and the room's reflection to the sender
        self.groupchat(self.alice, "#test", "hi bob, 日本語")
        line = self.bob.wait_command("PRIVMSG", lambda p: irc_nick(p[1]) == "alice")
        self.assertEqual(line[3], ["#test", "hi bob, 日本語"])
        echo = self.alice.wait_message(from_=room("#test") + "/alice")
        self.assertEqual(child_text(echo, "body"), "hi bob, 日本語")

        # /me both ways (XEP-0245 <-> CTCP ACTION)
        self.groupchat(self.alice, "#test", "/me waves")
        line = self.bob.wait_command("PRIVMSG", lambda p: irc_nick(p[1]) == "alice")
        self.assertEqual(line[3][1], "\x01ACTION waves\x01")
        self.bob.privmsg("#test", "\x01ACTION dances\x01")
        msg = self.alice.wait_message(from_=room("#test") + "/bob",
                                      predicate=lambda el: "dances" in
                                      (child_text(el, "body") or ""))
        self.assertEqual(child_text(msg, "body"), "/me dances")

    def test_injection_and_long_bodies(self):
        self.join(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        # CR, LF and NUL-free tricks: each line is its own PRIVMSG, never
        # a command of its own.
        mark = self.bob.mark()
        self.groupchat(self.alice, "#test",
                       "one&#13;&#10;QUIT :pwned&#10;PRIVMSG #test :three&#13;four")
        texts = []
        for _ in range(4):
            line = self.bob.wait_command(
                "PRIVMSG", lambda p: irc_nick(p[1]) == "alice", since=mark)
            mark = self.bob.cursor
            texts.append(line[3][1])
        self.assertEqual(texts, ["one", "QUIT :pwned", "PRIVMSG #test :three",
                                 "four"])
        # alice is still there.
        self.assertIn("alice", self.bob.names("#test"))

        # 2,000 characters of mixed text: split under 512 bytes (as bob
        # receives them, prefix included) at character boundaries.
        body = ("Grüße aus Köln 🐟 日本語のテキスト and some ASCII words " * 60)[:2000]
        mark = self.bob.mark()
        self.groupchat(self.alice, "#test", body)
        pieces = []
        while sum(len(p) for p in pieces) < len(body.replace(" ", "")):
            raw = self.bob.wait_line(
                lambda l: irc_parse(l)[2] == "PRIVMSG"
                and irc_nick(irc_parse(l)[1]) == "alice", since=mark)
            mark = self.bob.cursor
            self.assertLessEqual(len(raw.encode("utf-8")) + 2, 512)
            pieces.append(irc_parse(raw)[3][1].replace(" ", ""))
        self.assertEqual("".join(pieces), body.replace(" ", ""))
        report("2,000-character body: %d PRIVMSGs", len(pieces))

    def test_flood_control_keeps_order(self):
        """A 40-line body: the first 20 lines (the bucket's burst at the
        default 10 lines/s) go at once, the rest as it refills; nothing is
        lost or reordered."""
        self.join(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        mark = self.bob.mark()
        t0 = time.monotonic()
        self.groupchat(self.alice, "#test",
                       "&#10;".join("line %02d" % i for i in range(40)))
        got = []
        while len(got) < 40:
            line = self.bob.wait_command(
                "PRIVMSG", lambda p: irc_nick(p[1]) == "alice", since=mark)
            mark = self.bob.cursor
            got.append(line[3][1])
        took = time.monotonic() - t0
        self.assertEqual(got, ["line %02d" % i for i in range(40)])
        report("40 lines through flood control: %.2f s", took)
        self.assertGreater(took, 1.0)  # throttled, not all at once
        self.assertLess(took, 6.0)

    def test_history_once_per_channel_and_replayed(self):
        carol = self.lab.client(self.prosody, "carol")
        self.join(carol, "#test", "carol")
        self.join(self.alice, "#test", "alice")
        for text in ("h1", "h2", "h3"):
            self.bob.privmsg("#test", text)
        for who in (carol, self.alice):
            who.wait_message(from_=room("#test") + "/bob",
                             predicate=lambda el: child_text(el, "body") == "h3")
        # Seen on two users' connections, stored once (batched: give the
        # module tick a moment).
        db = os.path.join(self.lab.root, "bf.db")
        def rows():
            con = sqlite3.connect(db, timeout=5)
            try:
                return con.execute("SELECT nick, body FROM irc_history WHERE "
                                   "channel = '#test' ORDER BY id").fetchall()
            finally:
                con.close()
        deadline = time.monotonic() + 5
        while len(rows()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(rows(), [("bob", "h1"), ("bob", "h2"), ("bob", "h3")])
        # A new resource of alice asks for the last two lines.
        phone = self.lab.client(self.prosody, "alice", resource="phone")
        send_join(phone, "#test", "alice", history=2)
        got = []
        while len(got) < 2:
            m = phone.wait_message(from_=room("#test") + "/bob")
            delay = m.find("{urn:xmpp:delay}delay")
            self.assertIsNotNone(delay)
            self.assertEqual(delay.get("from"), room("#test"))
            sid = m.find("{urn:xmpp:sid:0}stanza-id")
            self.assertEqual(sid.get("by"), room("#test"))
            got.append(child_text(m, "body"))
        self.assertEqual(got, ["h2", "h3"])
        subject = phone.wait_message(from_=room("#test"), predicate=lambda el:
                                     el.find(q("subject")) is not None)
        self.assertIsNotNone(subject)

    def test_private_chat(self):
        self.join(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        bob_jid = "bob%%localhost@%s" % GW
        self.bob.privmsg("alice", "psst")
        msg = self.alice.wait_message(from_=bob_jid)
        self.assertEqual(msg.get("type"), "chat")
        self.assertEqual(child_text(msg, "body"), "psst")
        self.alice.message(bob_jid, body="yes?", type_="chat")
        line = self.bob.wait_command("PRIVMSG", lambda p: irc_nick(p[1]) == "alice")
        self.assertEqual(line[3], ["bob", "yes?"])
        # CTCP VERSION is answered; an XMPP ping never becomes a CTCP PING.
        self.bob.privmsg("alice", "\x01VERSION\x01")
        line = self.bob.wait_command("NOTICE", lambda p: irc_nick(p[1]) == "alice")
        self.assertTrue(line[3][1].startswith("\x01VERSION babelfish"))
        reply = self.alice.iq(room("#test") + "/alice",
                              "<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual(reply.get("type"), "result")  # XEP-0410 self-ping
        self.bob.pump(0.3)
        self.assertFalse(any("PING" in l and "\x01" in l for l in self.bob.lines))

    def test_raw_commands_to_the_server_jid(self):
        self.join(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        server = "localhost@" + GW
        self.alice.message(server, body="WHOIS bob", type_="chat")
        reply = self.alice.wait_message(
            from_=server, predicate=lambda el: "bob" in (child_text(el, "body") or ""))
        self.assertEqual(reply.get("type"), "chat")
        # Two lines, two commands; a malformed one refuses the whole text.
        self.alice.message(server, body="PRIVMSG bob :raw one\nPRIVMSG bob :raw two",
                           type_="chat")
        for text in ("raw one", "raw two"):
            line = self.bob.wait_command("PRIVMSG", lambda p: irc_nick(p[1]) == "alice")
            self.assertEqual(line[3], ["bob", text])
        self.alice.message(server, body=":spoofed!x@y PRIVMSG bob :no", type_="chat")
        err = self.alice.wait_message(from_=server, predicate=lambda el:
                                      el.get("type") == "error")
        self.assertEqual(stanza_error(err)[1], "not-acceptable")

    def test_leave_and_quit(self):
        self.join(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        self.bob.privmsg("#test", "bye then")
        self.alice.wait_message(from_=room("#test") + "/bob")
        # bob leaves: alice sees him go.
        self.bob.send("PART #test :gone fishing")
        pres = self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#test") + "/bob"
            and el.get("type") == "unavailable")
        self.assertEqual(child_text(pres, "status"), "gone fishing")
        self.bob.join("#test")
        self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#test") + "/bob" and el.get("type") is None)
        # alice leaves: PART, then QUIT (no channel left).
        self.alice.send_raw("<presence type='unavailable' to='%s/alice'/>"
                            % room("#test"))
        self.bob.wait_command("PART", lambda p: irc_nick(p[1]) == "alice")
        # No channel left: the connection QUITs (bob shares no channel to
        # see it; ISON tells).
        deadline = time.monotonic() + 10
        while True:
            mark = self.bob.mark()
            self.bob.send("ISON alice")
            reply = self.bob.wait_command("303", since=mark)
            if reply[3][-1].strip() == "":
                break
            self.assertLess(time.monotonic(), deadline, "alice still online")
            time.sleep(0.1)

    def test_sigterm_quits_irc_and_tells_users(self):
        self.join(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        rc, took = self.bf.stop()
        self.assertEqual(rc, 0)
        report("SIGTERM with an IRC connection: exit in %.3f s", took)
        _, _, _, params = self.bob.wait_command(
            "QUIT", lambda p: irc_nick(p[1]) == "alice")
        self.assertIn("shutting down", params[0])
        pres = self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#test") + "/alice"
            and el.get("type") == "unavailable")
        self.assertIn("332", codes(pres))

    def test_join_errors_and_unknown_addresses(self):
        reply = self.alice.iq("no-server-here@" + GW,
                              "<query xmlns='jabber:iq:version'/>")
        self.assertEqual(reply.get("type"), "error")
        # A nick IRC would refuse: refused at once, nothing sent to IRC.
        send_join(self.alice, "#test", "a b")
        err = self.alice.wait_stanza(
            lambda el: el.tag == q("presence") and el.get("type") == "error")
        self.assertEqual(stanza_error(err)[1], "jid-malformed")
        # A channel that needs a key: not-authorized.
        self.bob.send("MODE #test +k sesame")  # bob is op: he joined first
        self.bob.wait_command("MODE")
        send_join(self.alice, "#test", "alice")
        err = self.alice.wait_stanza(
            lambda el: el.tag == q("presence") and el.get("type") == "error")
        self.assertEqual(stanza_error(err)[1], "not-authorized")

    def test_irc_server_restart(self):
        """The IRC server restarts mid-conversation: alice stays in the
        room, is told, and is back in it once babelfish has reconnected
        and rejoined; the conversation goes on."""
        self.join(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        self.bob.privmsg("#test", "before the restart")
        self.alice.wait_message(from_=room("#test") + "/bob")
        t0 = time.monotonic()
        self.ircd.restart()
        told = self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#test") + "/alice"
            and el.get("type") is None
            and "reconnecting" in (child_text(el, "status") or ""),
            what="self-presence saying it reconnects")
        self.assertIn("110", codes(told))
        # Meanwhile (the first reconnection is 1 s away) a message gets a
        # temporary error, not silence.
        self.alice.send_raw("<message to='%s' type='groupchat' id='gap'>"
                            "<body>in the gap</body></message>" % room("#test"))
        err = self.alice.wait_stanza(
            lambda el: el.tag == q("message") and el.get("id") == "gap",
            what="the error for a message sent while reconnecting")
        self.assertEqual(stanza_error(err), ("wait", "remote-server-timeout"))
        bob = self.rejoined()
        report("back in the room %.2f s after the IRC server restart",
               time.monotonic() - t0)
        bob.privmsg("#test", "after the restart")
        msg = self.alice.wait_message(from_=room("#test") + "/bob",
                                      predicate=lambda el: child_text(el, "body")
                                      == "after the restart")
        self.groupchat(self.alice, "#test", "still here")
        line = bob.wait_command("PRIVMSG", lambda p: irc_nick(p[1]) == "alice")
        self.assertEqual(line[3], ["#test", "still here"])
        self.assertTrue(msg is not None and self.bf.alive())


class IrcTlsTest(IrcTestCase):
    """TLS to a real ngIRCd with a self-signed certificate: refused with a
    clear message when verified against the system's CAs, accepted when
    pinned by its fingerprint (the configure command)."""

    def setUp(self):
        self.make_lab("irc-tls")
        self.ircd = self.lab.ngircd(tls=True)
        self.start_gateway({"irc_ports": "+%d" % self.ircd.tls_port})

    def test_self_signed_refused_then_pinned(self):
        server_jid = "localhost@" + GW
        send_join(self.alice, "#tls", "alice")
        msg = self.alice.wait_message(from_=server_jid, timeout=15)
        self.assertIn("self-signed", child_text(msg, "body"))
        self.assertIn(self.ircd.fingerprint, child_text(msg, "body"))
        # The join fails (no retry loop for a refused certificate).
        err = self.alice.wait_stanza(
            lambda el: el.tag == q("presence") and el.get("type") == "error")
        self.assertEqual(stanza_error(err)[1], "remote-server-not-found")
        # Pin it, and join.
        reply, cmd = command(self.alice, "configure", to=server_jid)
        reply, cmd = command(self.alice, "configure", to=server_jid,
                             action="complete", sessionid=cmd.get("sessionid"),
                             form=form_xml({"tls_pin": self.ircd.fingerprint}))
        self.assertEqual(cmd.get("status"), "completed")
        bob = self.lab.irc_client(self.ircd, "bob")
        bob.join("#tls")
        t0 = time.monotonic()
        send_join(self.alice, "#tls", "alice")
        self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#tls") + "/alice"
            and el.get("type") is None, timeout=15, what="joined over TLS")
        report("join over TLS (pinned): %.1f ms", (time.monotonic() - t0) * 1000)
        bob.privmsg("#tls", "encrypted hello")
        got = self.alice.wait_message(from_=room("#tls") + "/bob")
        self.assertEqual(child_text(got, "body"), "encrypted hello")
        self.assertRegex(self.bf.log_text(), r"TLS TLSv1\.[23] ")


class IrcV3Test(IrcTestCase):
    """Against InspIRCd + Atheme: per-server settings through the
    configure command on the server's JID, CAP negotiation and SASL
    PLAIN."""

    def setUp(self):
        self.make_lab("ircv3")
        self.ircd = self.lab.inspircd()
        self.start_gateway({"irc_ports": self.ircd.port})
        self.server_jid = "localhost@" + GW

    def configure(self, values):
        reply, cmd = command(self.alice, "configure", to=self.server_jid)
        self.assertEqual(cmd.get("status"), "executing",
                         "no configure form on the server JID")
        fields = form_fields(cmd)
        self.assertEqual(fields["sasl_password"][0], "text-private")
        reply, cmd = command(self.alice, "configure", to=self.server_jid,
                             action="complete",
                             sessionid=cmd.get("sessionid"),
                             form=form_xml(values))
        self.assertEqual(cmd.get("status"), "completed")
        return fields

    def test_sasl_login_with_stored_settings(self):
        self.ircd.register_account("alice_acct", "pw-sasl-123")
        self.configure({"nick": "alicia", "sasl_user": "alice_acct",
                        "sasl_password": "pw-sasl-123"})
        # Read back: the password is never shown.
        fields = self.configure({"nick": "alicia", "sasl_user": "alice_acct",
                                 "sasl_password": ""})
        self.assertEqual(fields["nick"][1], ["alicia"])
        self.assertEqual(fields["sasl_password"][1], [])
        self.assertNotIn("pw-sasl-123", self.bf.log_text())

        dave = self.lab.irc_client(self.ircd, "dave")
        dave.join("#v3")
        t0 = time.monotonic()
        send_join(self.alice, "#v3", "alice")
        pres = self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#v3") + "/alicia"
            and el.get("type") is None, timeout=15,
            what="self-presence as alicia")
        self.assertEqual(codes(pres), {"110", "210"})  # the nick was changed
        report("join with SASL through InspIRCd: %.2f s", time.monotonic() - t0)
        dave.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alicia")
        mark = dave.mark()
        dave.send("WHOIS alicia")
        _, _, _, params = dave.wait_command("330", since=mark)
        self.assertEqual(params[1:3], ["alicia", "alice_acct"])

    def test_sasl_failure_is_told(self):
        self.ircd.register_account("alice_acct", "pw-sasl-123")
        self.configure({"sasl_user": "alice_acct", "sasl_password": "wrong"})
        send_join(self.alice, "#v3", "alice")
        msg = self.alice.wait_message(from_=self.server_jid, timeout=15)
        self.assertIn("SASL login as alice_acct failed", child_text(msg, "body"))
        # The connection goes on without the account: the room is joined.
        self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#v3") + "/alice"
            and el.get("type") is None, timeout=15)


if __name__ == "__main__":
    main()
