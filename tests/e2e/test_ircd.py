"""Self-test of the IRC side of the e2e harness (no daemon): Debian's
ngIRCd and InspIRCd + Atheme on loopback, driven with the raw IrcClient.
When an IRC transport test fails, this tells whether the lab itself works:
registration, channels and PRIVMSG both ways, a server restart, IRCv3
capabilities, account creation and SASL PLAIN, channel history replay."""
import re
import time

from harness import (E2ETestCase, Lab, irc_nick, irc_parse, main, report)


def privmsg_from(nick, target, text):
    """A wait_line predicate: PRIVMSG target :text from nick."""
    def pred(line):
        _, source, command, params = irc_parse(line)
        return (command == "PRIVMSG" and irc_nick(source) == nick
                and params == [target, text])
    return pred


class ParserTest(E2ETestCase):
    def test_irc_parse(self):
        tags, source, command, params = irc_parse(
            r"@time=2026-01-02T03:04:05.678Z;msgid=a\sb\:c\\d;+draft/x "
            ":nick!user@host privmsg #chan :hello :world  ")
        self.assertEqual(tags, {"time": "2026-01-02T03:04:05.678Z",
                                "msgid": "a b;c\\d", "+draft/x": ""})
        self.assertEqual(source, "nick!user@host")
        self.assertEqual(command, "PRIVMSG")
        self.assertEqual(params, ["#chan", "hello :world  "])
        self.assertEqual(irc_parse("PING :abc"), ({}, None, "PING", ["abc"]))
        self.assertEqual(irc_parse(":srv 005 me A=1 B :are supported")[3],
                         ["me", "A=1", "B", "are supported"])
        self.assertEqual(irc_parse(":srv CAP * LS * :a b")[3],
                         ["*", "LS", "*", "a b"])


class NgIRCdTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("ngircd")
        self.ircd = self.lab.ngircd()
        report("ngircd ready (001 to a probe) in %.2f s on port %d",
               self.ircd.ready_s, self.ircd.port)

    def tearDown(self):
        self.lab.close()

    def test_two_clients_chat(self):
        t0 = time.monotonic()
        # 30 characters: MaxNickLength is raised from RFC 2812's 9.
        alice = self.lab.irc_client(self.ircd, "alice_with_a_long_nick_0123456",
                                    caps=["multi-prefix"])
        report("ngircd registration with CAP LS/REQ in %.1f ms",
               (time.monotonic() - t0) * 1000)
        self.assertEqual(alice.nick, "alice_with_a_long_nick_0123456")
        self.assertEqual(alice.isupport.get("NICKLEN"), "30")
        self.assertIn("multi-prefix", alice.caps_enabled)
        bob = self.lab.irc_client(self.ircd, "bob")

        self.assertEqual(alice.join("#test"), {alice.nick})
        self.assertEqual(bob.join("#test"), {alice.nick, "bob"})
        alice.wait_line(lambda l: irc_parse(l)[2] == "JOIN"
                        and irc_nick(irc_parse(l)[1]) == "bob")

        alice.privmsg("#test", "hello from alice: ünïcode ok")
        bob.wait_line(privmsg_from(alice.nick, "#test",
                                   "hello from alice: ünïcode ok"))
        bob.privmsg(alice.nick, "private reply")
        alice.wait_line(privmsg_from("bob", alice.nick, "private reply"))
        bob.privmsg("#test", "to the channel")
        alice.wait_line(privmsg_from("bob", "#test", "to the channel"))
        self.assertEqual(alice.names("#test"), {alice.nick, "bob"})
        self.assertEqual(bob.names("#test"), {alice.nick, "bob"})

        # The server's PING is answered by the client (round trip here
        # through a client-sent PING, which ngIRCd answers with PONG).
        bob.send("PING :e2e-token")
        bob.wait_line(r" PONG .*e2e-token$")

    def test_restart_drops_and_reregisters(self):
        alice = self.lab.irc_client(self.ircd, "alice")
        bob = self.lab.irc_client(self.ircd, "bob")
        alice.join("#test")
        bob.join("#test")
        old_pid = self.ircd.pid
        t0 = time.monotonic()
        rc, took = self.ircd.restart()
        report("ngircd restart: stop rc=%s in %.2f s, up again (001) after "
               "%.2f s total", rc, took, time.monotonic() - t0)
        self.assertEqual(rc, 0)
        self.assertNotEqual(self.ircd.pid, old_pid)
        alice.wait_closed(5)
        bob.wait_closed(5)
        self.assertTrue(any(irc_parse(l)[2] == "ERROR" for l in alice.lines),
                        "no ERROR before the close: %s" % alice.lines[-5:])

        alice = self.lab.irc_client(self.ircd, "alice")
        bob = self.lab.irc_client(self.ircd, "bob")
        alice.join("#test")
        self.assertEqual(bob.join("#test"), {"alice", "bob"})
        alice.privmsg("#test", "after the restart")
        bob.wait_line(privmsg_from("alice", "#test", "after the restart"))


class InspIRCdTest(E2ETestCase):
    """One InspIRCd + Atheme for the class: Atheme's link costs most of
    the start-up."""

    @classmethod
    def setUpClass(cls):
        cls.lab = Lab("inspircd")
        try:
            cls.ircd = cls.lab.inspircd()
        except BaseException:
            cls.lab.dump_logs()
            cls.lab.close()
            raise
        report("inspircd ready (001 to a probe) in %.2f s, atheme linked "
               "after %.2f s more (ports %d, link %d)",
               cls.ircd.ready_s - cls.ircd.atheme.ready_s,
               cls.ircd.atheme.ready_s, cls.ircd.port, cls.ircd.link_port)

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()

    def test_ircv3_caps_offered(self):
        c = self.lab.irc_client(self.ircd, "capcheck",
                                caps=["server-time", "message-tags"])
        offered = set(c.caps_available)
        for cap in ("server-time", "echo-message", "sasl", "message-tags",
                    "batch", "multi-prefix", "away-notify", "account-notify",
                    "extended-join", "account-tag", "labeled-response",
                    "cap-notify", "userhost-in-names", "setname", "chghost",
                    "invite-notify"):
            self.assertIn(cap, offered)
        self.assertEqual(c.caps_available["sasl"], "PLAIN")
        # InspIRCd 3 has no CHATHISTORY (m_chanhistory replays on join).
        self.assertFalse({"chathistory", "draft/chathistory"} & offered)
        report("inspircd CAP LS 302: %s", " ".join(sorted(offered)))
        # server-time: every line from now on carries @time.
        c.send("PING :tagged")
        tags, _, command, _ = irc_parse(c.wait_line(r" PONG "))
        self.assertRegex(tags.get("time", ""),
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        c.quit()

    def test_account_and_sasl(self):
        took = self.ircd.register_account("carol", "carolpw123")
        report("atheme account via NickServ REGISTER in %.3f s", took)

        t0 = time.monotonic()
        carol, dave = self.lab.irc_clients(self.ircd, [
            ("carol_phone", {"sasl": ("carol", "carolpw123"),
                             "caps": ["server-time", "echo-message",
                                      "account-tag", "extended-join",
                                      "message-tags"]}),
            ("dave", {"caps": ["extended-join", "account-tag"]})])
        report("inspircd: 2 parallel registrations, one with SASL PLAIN, "
               "in %.3f s", time.monotonic() - t0)
        self.assertEqual(carol.account, "carol")
        self.assertTrue(any(irc_parse(l)[2] == "903" for l in carol.lines))

        bad = self.lab.irc_client(self.ircd)
        bad.send("CAP LS 302")
        bad.send("NICK mallory")
        bad.send("USER e2e 0 * :m")
        bad._cap_ls(5)
        bad.send("CAP REQ :sasl")
        bad.wait_line(r" CAP \S+ ACK ")
        self.assertEqual(bad.authenticate_plain("carol", "wrong-password"),
                         "904")
        self.assertIsNone(bad.account)
        bad.quit()

        carol.join("#sasl")
        dave.join("#sasl")
        # extended-join: carol sees dave's JOIN with account "*" (none).
        _, _, _, params = carol.wait_command(
            "JOIN", lambda p: irc_nick(p[1]) == "dave")
        self.assertEqual(params[:2], ["#sasl", "*"])
        carol.privmsg("#sasl", "from an account")
        # echo-message: carol gets her own message back, with server-time.
        tags, _, _, _ = irc_parse(carol.wait_line(
            privmsg_from("carol_phone", "#sasl", "from an account")))
        self.assertIn("time", tags)
        # account-tag: dave sees who sent it.
        tags, _, _, _ = irc_parse(dave.wait_line(
            privmsg_from("carol_phone", "#sasl", "from an account")))
        self.assertEqual(tags.get("account"), "carol")

    def test_channel_history_replay(self):
        erin, frank = self.lab.irc_clients(self.ircd, [
            "erin", ("frank", {"caps": ["server-time", "batch"]})])
        erin.join("#hist")
        for i in range(3):
            erin.privmsg("#hist", "old message %d" % i)
        erin.send("PING :sync")        # the messages are in before we join
        erin.wait_line(r" PONG ")
        since = frank.mark()
        frank.join("#hist")
        _, _, _, params = frank.wait_command(
            "BATCH", lambda p: p[3][0].startswith("+"), since=since)
        self.assertEqual(params[1:], ["chathistory", "#hist"])
        ref = params[0][1:]
        for i in range(3):
            tags, _, _, _ = irc_parse(frank.wait_line(
                privmsg_from("erin", "#hist", "old message %d" % i)))
            self.assertIn("time", tags)
            self.assertEqual(tags.get("batch"), ref)
        frank.wait_command("BATCH", lambda p: p[3] == ["-" + ref])
        report("inspircd m_chanhistory replayed %d line(s) on join",
               sum(1 for l in frank.lines[since:]
                   if re.search(r" PRIVMSG #hist :old message ", l)))


if __name__ == "__main__":
    main()
