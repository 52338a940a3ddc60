"""End-to-end tests of persistent IRC channels (bouncer mode) and
per-channel settings, against a real Prosody (with offline storage, as
shipped) and a real ngIRCd: the configure command on a room's JID,
channels kept while the user left the room or went offline, the lines
missed replayed on the way back (no new JOIN), AWAY while away, private
messages kept by the XMPP server, connections restored at start-up
without the user, unregistration, and a channel's own encoding."""
import os
import re
import sqlite3
import time

from harness import (babelfish_config, child_text, irc_nick, irc_parse, main,
                     q, report, stanza_error)
from irc_common import GW, IrcTestCase, irc_section, join_room, room
from test_users import command, form_fields, form_xml, note_text, roster_client

NS_REGISTER = "jabber:iq:register"


class IrcBouncerTest(IrcTestCase):
    def setUp(self):
        self.make_lab("irc-bouncer", offline=True)
        self.ircd = self.lab.ngircd()
        self.config = babelfish_config(
            self.lab, self.prosody,
            {"irc": irc_section(irc_ports=self.ircd.port)})
        self.bf = self.start()
        self.bob = self.lab.irc_client(self.ircd, "bob")
        self.bob.join("#test")
        self.db = os.path.join(self.lab.root, "bf.db")

    # -- helpers --

    def start(self):
        since = self.prosody.debug_mark()
        bf = self.lab.babelfish(self.config)
        self.prosody.wait_auth(GW, since=since, daemon=bf)
        return bf

    def rows(self, sql, *args):
        con = sqlite3.connect(self.db, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def join(self, client, channel, nick, history=None):
        """Joins the room; returns the bodies of the history replayed
        (messages with a delay) before the subject."""
        join_room(client, channel, nick, history, available=True)
        replayed = [el for el in client.inbox if el.tag == q("message")
                    and el.find("{urn:xmpp:delay}delay") is not None
                    and (el.get("from") or "").startswith(room(channel) + "/")]
        for el in replayed:
            client.inbox.remove(el)
        return [child_text(el, "body") for el in replayed]

    def leave(self, client, channel, nick):
        client.send_raw("<presence type='unavailable' to='%s/%s'/>"
                        % (room(channel), nick))
        client.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == "%s/%s" % (room(channel), nick)
            and el.get("type") == "unavailable", what="self unavailable")

    def configure(self, client, channel, values):
        """Runs configure on the room's JID; returns (fields shown, final
        command element)."""
        reply, cmd = command(client, "configure", to=room(channel))
        self.assertEqual(cmd.get("status"), "executing",
                         "no configure form on the room's JID")
        fields = form_fields(cmd)
        reply, cmd = command(client, "configure", to=room(channel),
                             action="complete",
                             sessionid=cmd.get("sessionid"),
                             form=form_xml(values))
        return fields, cmd

    def away_text(self, nick):
        """nick's away text as WHOIS tells bob (RPL_AWAY, 301), or None."""
        mark = self.bob.mark()
        self.bob.send("WHOIS %s" % nick)
        line = self.bob.wait_line(lambda l: " 301 " in l or " 318 " in l,
                                  since=mark)
        self.bob.wait_command("318", since=mark)
        return irc_parse(line)[3][-1] if " 301 " in line else None

    def wait_away(self, nick, away=True, timeout=5):
        """Until nick is (or is no longer) AWAY; returns the text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.away_text(nick)
            if (text is not None) == away:
                return text
            self.assertLess(time.monotonic(), deadline,
                            "%s away is not %s" % (nick, away))
            time.sleep(0.1)

    def wait_quit_of(self, nick, timeout=10):
        """Polls ISON until nick is no longer on the IRC server."""
        deadline = time.monotonic() + timeout
        while True:
            mark = self.bob.mark()
            self.bob.send("ISON %s" % nick)
            reply = self.bob.wait_command("303", since=mark)
            if reply[3][-1].strip() == "":
                return
            self.assertLess(time.monotonic(), deadline, "%s still on" % nick)
            time.sleep(0.1)

    def registered_alice_keeping_test(self):
        """alice (with a roster, resource pc) registered, her session
        started, #test made persistent: returns her client."""
        alice = roster_client(self.lab, self.prosody, "alice", "pc")
        mark = self.bf.mark()
        self.register(alice)
        self.bf.wait_log(r"session of alice@localhost starts", since=mark)
        _, cmd = self.configure(alice, "#test", {"persistent": "1"})
        self.assertEqual(cmd.get("status"), "completed")
        return alice

    def register(self, client):
        reply = client.iq(GW, "<query xmlns='%s'>%s</query>" % (
            NS_REGISTER, form_xml({}, form_type=NS_REGISTER)), type_="set")
        self.assertEqual(reply.get("type"), "result")

    # -- tests --

    def test_room_configure_persistent_and_back(self):
        alice = self.lab.client(self.prosody, "alice")
        self.join(alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        # The form: persistent (boolean) and encoding; a charset iconv
        # does not know is refused with the reason, nothing stored.
        fields, cmd = self.configure(alice, "#test",
                                     {"persistent": "1", "encoding": "NOPE-42"})
        self.assertEqual(fields["persistent"][0], "boolean")
        self.assertEqual(fields["encoding"][0], "text-single")
        self.assertEqual(cmd.get("status"), "executing")
        self.assertIn("charset", note_text(cmd)[1])
        self.assertEqual(self.rows("SELECT count(*) FROM irc_channel_settings")
                         [0][0], 0)
        fields, cmd = self.configure(alice, "#test",
                                     {"persistent": "1",
                                      "encoding": "ISO-8859-15"})
        self.assertEqual(cmd.get("status"), "completed")
        fields, _ = self.configure(alice, "#test", {"persistent": "1",
                                                    "encoding": "ISO-8859-15"})
        self.assertEqual(fields["persistent"][1], ["1"])
        self.assertEqual(fields["encoding"][1], ["ISO-8859-15"])

        # The channel's encoding: 0xA4 is the euro sign in ISO-8859-15
        # (it would be ¤ in the default Latin-1).
        self.bob.privmsg("#test", "\udca4 caf\udce9")
        msg = alice.wait_message(from_=room("#test") + "/bob")
        self.assertEqual(child_text(msg, "body"), "€ café")

        # alice leaves the room: still on IRC (no PART), and AWAY.
        mark = self.bob.mark()
        self.leave(alice, "#test", "alice")
        self.assertIn("XMPP", self.wait_away("alice"))
        self.bob.pump(0.3)
        self.assertFalse(any(" PART " in l for l in self.bob.lines[mark:]))
        # Out of the room, alice cannot write to it.
        alice.send_raw("<message to='%s' type='groupchat' id='out'><body>"
                       "hi</body></message>" % room("#test"))
        err = alice.wait_stanza(lambda el: el.get("id") == "out"
                                and el.get("type") == "error")
        self.assertEqual(stanza_error(err)[1], "not-acceptable")
        for text in ("missed 1", "missed 2"):
            self.bob.privmsg("#test", text)
        self.bob.pump(0.3)

        # Back: the IRC state is used as it is (no JOIN), the lines missed
        # and only those are the history.
        mark = self.bob.mark()
        t0 = time.monotonic()
        replayed = self.join(alice, "#test", "alice")
        report("back in a persistent room: %.1f ms",
               (time.monotonic() - t0) * 1000)
        self.assertEqual(replayed, ["missed 1", "missed 2"])
        self.wait_away("alice", away=False)
        self.assertFalse(any(" JOIN " in l for l in self.bob.lines[mark:]))
        self.assertTrue(any(el.get("from") == room("#test") + "/bob"
                            for el in alice.inbox if el.tag == q("presence")))

        # No longer persistent: leaving PARTs, and the connection QUITs.
        _, cmd = self.configure(alice, "#test", {"persistent": "0"})
        self.assertEqual(cmd.get("status"), "completed")
        self.leave(alice, "#test", "alice")
        self.bob.wait_command("PART", lambda p: irc_nick(p[1]) == "alice")
        self.wait_quit_of("alice")

    def test_kept_while_offline_restored_at_start_and_unregistered(self):
        alice = self.registered_alice_keeping_test()
        # A second, non-persistent channel is PARTed when she goes.
        self.bob.join("#other")
        self.join(alice, "#test", "alice")
        self.join(alice, "#other", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice"
                              and p[3][0] == "#other")

        # alice leaves #test (kept), then goes offline: #test stays,
        # #other is left, she is AWAY.
        self.leave(alice, "#test", "alice")
        self.bob.privmsg("#test", "before you went offline")
        self.bob.pump(0.3)
        mark = self.bf.mark()
        alice.disconnect()
        self.bf.wait_log(r"session of alice@localhost ends", since=mark)
        part = self.bob.wait_command("PART", lambda p: irc_nick(p[1]) == "alice")
        self.assertEqual(part[3][0], "#other")
        self.assertIn("XMPP", self.wait_away("alice"))
        self.bob.privmsg("#test", "while you were out")
        self.bob.privmsg("alice", "call me")
        self.bob.pump(0.3)

        # Back online: the private message was kept by the server, the
        # channel's lines by the gateway.
        alice = roster_client(self.lab, self.prosody, "alice", "pc")
        pm = alice.wait_message(from_="bob%%localhost@%s" % GW)
        self.assertEqual(pm.get("type"), "chat")
        self.assertEqual(child_text(pm, "body"), "call me")
        self.assertEqual(self.join(alice, "#test", "alice"),
                         ["before you went offline", "while you were out"])
        mark = self.bf.mark()
        alice.disconnect()
        self.bf.wait_log(r"session of alice@localhost ends", since=mark)

        # babelfish restarts while alice is offline: her connection and
        # channel come back without her (no stagger wait for one user).
        rc, _ = self.bf.stop()
        self.assertEqual(rc, 0)
        self.bob.wait_command("QUIT", lambda p: irc_nick(p[1]) == "alice")
        t0 = time.monotonic()
        self.bf = self.start()
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice"
                              and p[3][0] == "#test", timeout=15)
        report("persistent channel rejoined %.2f s after the start",
               time.monotonic() - t0)
        self.bf.wait_log(r"restored 1 IRC connections, 0 to go")
        self.assertIn("XMPP", self.wait_away("alice"))
        self.bob.privmsg("#test", "after the restart")
        self.bob.pump(0.3)
        alice = roster_client(self.lab, self.prosody, "alice", "pc")
        self.assertEqual(self.join(alice, "#test", "alice"),
                         ["after the restart"])

        # Unregistration: the connection ends, the settings go.
        reply = alice.iq(GW, "<query xmlns='%s'><remove/></query>"
                         % NS_REGISTER, type_="set")
        self.assertEqual(reply.get("type"), "result")
        self.bob.wait_command("QUIT", lambda p: irc_nick(p[1]) == "alice")
        self.assertEqual(self.rows("SELECT count(*) FROM irc_channel_settings "
                                   "WHERE user = 'alice@localhost'")[0][0], 0)

    def test_kicked_or_refused_while_offline_quits(self):
        """A kept channel is all alice's connection has while she is
        offline: a KICK, or a ban that refuses its rejoin at start-up,
        ends the connection (QUIT) instead of leaving it open with no
        channel forever; the channel stays persistent in her settings and
        is not joined again in a loop."""
        alice = self.registered_alice_keeping_test()
        self.join(alice, "#test", "alice")
        mark = self.bf.mark()
        alice.disconnect()
        self.bf.wait_log(r"session of alice@localhost ends", since=mark)
        self.assertIn("XMPP", self.wait_away("alice"))

        # bob made #test, so he is its operator: he kicks her.
        mark = self.bf.mark()
        self.bob.send("KICK #test alice :not while you are away")
        self.bf.wait_log(r"alice@localhost on localhost: no channel left and "
                         r"the user is offline: quitting", since=mark)
        self.wait_quit_of("alice")
        persistent = ("SELECT value FROM irc_channel_settings WHERE user = "
                      "'alice@localhost' AND channel = '#test' AND var = "
                      "'persistent'")
        self.assertEqual(self.rows(persistent), [("1",)])

        # Banned, then babelfish restarts: the restored connection's JOIN
        # is refused (474) and it QUITs, once.
        self.bob.send("MODE #test +b alice!*@*")
        self.bob.wait_command("MODE", lambda p: p[3] == ["#test", "+b",
                                                          "alice!*@*"])
        rc, _ = self.bf.stop()
        self.assertEqual(rc, 0)
        joins = self.bob.mark()
        self.bf = self.start()
        self.bf.wait_log(r"restored 1 IRC connections, 0 to go")
        self.bf.wait_log(r"alice@localhost on localhost: no channel left and "
                         r"the user is offline: quitting")
        self.wait_quit_of("alice")
        self.bob.pump(3.0)  # a reconnection would come within 1-2 s
        self.assertEqual(len(re.findall(r"no channel left",
                                        self.bf.log_text())), 1)
        self.assertFalse([l for l in self.bob.lines[joins:]
                          if l.startswith(":alice!") and " JOIN " in l],
                         "alice joined again")
        self.assertEqual(self.rows(persistent), [("1",)])

    def test_restore_is_staggered(self):
        """30 users with a persistent channel: 25 connect at the first
        tick, the other 5 a tick later; all are back in the channel."""
        users = ["u%02d" % i for i in range(30)]
        con = sqlite3.connect(self.db, timeout=5)
        with con:
            for u in users:
                for var, value in (("persistent", "1"), ("nick", u),
                                   ("left_at", "0")):
                    con.execute("INSERT INTO irc_channel_settings VALUES "
                                "(?, ?, 'localhost', '#test', ?, ?)",
                                (GW, u + "@localhost", var, value))
        con.close()
        rc, _ = self.bf.stop()
        self.assertEqual(rc, 0)
        t0 = time.monotonic()
        self.bf = self.start()
        self.bf.wait_log(r"30 IRC connections with persistent channels to "
                         r"restore, 25 a second")
        self.bf.wait_log(r"restored 25 IRC connections, 5 to go")
        self.bf.wait_log(r"restored 5 IRC connections, 0 to go")
        joined = set()
        while len(joined) < len(users):
            line = self.bob.wait_command("JOIN", timeout=15)
            joined.add(irc_nick(line[1]))
        report("30 persistent users back in the channel in %.2f s",
               time.monotonic() - t0)
        self.assertEqual(joined, set(users))
        self.assertEqual(self.bf.count_log(r"to go"), 2)


if __name__ == "__main__":
    main()
