"""End-to-end tests of what becomes of the user's lines still waiting for
flood control (irc_throttle) when the IRC connection ends, against
ngIRCd: every message is either delivered on IRC or answered with an
error carrying its id, none silently lost, and none sent late after the
reconnection."""
import time

from harness import (irc_nick, irc_parse, main, q, report, stanza_error,
                     stanza_error_text)
from irc_common import GW, NS_SID, IrcTestCase, join_room, room


class IrcQueueTest(IrcTestCase):
    """Prosody, ngIRCd, babelfish at irc_throttle 1 (1 line/s in bursts
    of 4), bob on IRC in #test, alice on XMPP in it."""

    def setUp(self):
        self.start_ngircd_bob_alice("irc-queue", irc_throttle=1)
        join_room(self.alice, "#test", "alice")
        self.bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        self.mark = self.bob.mark()

    def send(self, to, type_, id_, body=None, subject=None, origin_id=None):
        """A message from alice with id id_ (and an origin-id)."""
        parts = ""
        if body is not None:
            parts += "<body>%s</body>" % body
        if subject is not None:
            parts += "<subject>%s</subject>" % subject
        if origin_id:
            parts += "<origin-id xmlns='%s' id='%s'/>" % (NS_SID, origin_id)
        self.alice.send_raw("<message to='%s' type='%s' id='%s'>%s</message>"
                            % (to, type_, id_, parts))

    def irc_lines(self, since):
        """What bob got from alice since then: (command, target, text)."""
        got = []
        for line in self.bob.lines[since:]:
            _, source, command, params = irc_parse(line)
            if command in ("PRIVMSG", "TOPIC") and irc_nick(source) == "alice":
                got.append((command, params[0], params[-1]))
        return got

    def bounces(self, ids, timeout=10):
        """The error answering each of ids: {id: element}."""
        found = {}
        for id_ in ids:
            found[id_] = self.alice.wait_stanza(
                lambda el, i=id_: el.tag == q("message")
                and el.get("type") == "error" and el.get("id") == i,
                timeout, what="error for %s" % id_)
        return found

    def check_bounce(self, err, address, origin_id=None):
        self.assertEqual(err.get("from"), address)
        self.assertEqual(stanza_error(err), ("wait", "remote-server-timeout"))
        self.assertIn("not sent to IRC", stanza_error_text(err))
        if origin_id:
            origin = err.find(q("origin-id", NS_SID))
            self.assertEqual(origin.get("id"), origin_id)

    def test_irc_server_stops_with_lines_waiting(self):
        """Five messages, 15 lines: the burst (4 lines) goes at once, the
        rest waits at 1 line a second; ngIRCd stops: each message is
        delivered whole or bounces (once) with its id from where it was
        sent; after the reconnection the bounced lines are not sent late."""
        bob_jid = "bob%%localhost@%s" % GW
        # (id, where, what bob gets when it is delivered)
        sent = [
            ("m1", room("#test"), [("PRIVMSG", "#test", "one %d" % i)
                                   for i in range(10)]),
            ("m2", bob_jid, [("PRIVMSG", "bob", "in private")]),
            ("m3", room("#test"), [("TOPIC", "#test", "new topic")]),
            ("m4", room("#test"), [("PRIVMSG", "#test", "four a"),
                                   ("PRIVMSG", "#test", "four b")]),
            ("m5", room("#test"), [("PRIVMSG", "#test", "five")]),
        ]
        self.send(room("#test"), "groupchat", "m1",
                  "&#10;".join("one %d" % i for i in range(10)))
        self.send(bob_jid, "chat", "m2", "in private", origin_id="o-m2")
        self.send(room("#test"), "groupchat", "m3", subject="new topic")
        self.send(room("#test"), "groupchat", "m4", "four a&#10;four b")
        self.send(room("#test"), "groupchat", "m5", "five")
        # The burst is out (4 of m1's 10 lines); 10 lines wait, 1 a
        # second.
        self.bob.wait_command("PRIVMSG", lambda p: p[3][1] == "one 3",
                              since=self.mark)
        t0 = time.monotonic()
        self.ircd.stop(timeout=10)
        self.bob.wait_closed()
        got = self.irc_lines(self.mark)
        delivered = [id_ for id_, _, lines in sent
                     if all(line in got for line in lines)]
        waiting = [id_ for id_, _, _ in sent if id_ not in delivered]
        # Nothing is lost: whatever bob got was sent in order, and the
        # messages not delivered whole bounce.
        self.assertEqual(got, [line for _, _, lines in sent
                               for line in lines][:len(got)])
        self.assertIn("m1", waiting)  # 6 s from its last line
        self.assertIn("m5", waiting)  # 10 s behind
        errors = self.bounces(waiting)
        report("IRC server stopped with %d lines written: %d of %d messages "
               "bounced %.2f s later", len(got), len(waiting), len(sent),
               time.monotonic() - t0)
        for id_, address, _ in sent:
            if id_ in errors:
                self.check_bounce(errors[id_], address,
                                  "o-m2" if id_ == "m2" else None)
        # Once each, and none for a message delivered whole.
        self.alice.pump(0.5)
        extra = [el.get("id") for el in self.alice.inbox
                 if el.tag == q("message") and el.get("type") == "error"]
        self.assertEqual(extra, [])

        # ngIRCd is back, babelfish rejoins: the first line bob gets from
        # alice is the new one, none of the bounced ones.
        self.ircd.start()
        bob = self.rejoined()
        self.send(room("#test"), "groupchat", "m6", "after the rejoin")
        line = bob.wait_command("PRIVMSG", lambda p: irc_nick(p[1]) == "alice")
        self.assertEqual(line[3], ["#test", "after the rejoin"])
        bob.pump(1.5)  # a late line would come at 1 a second
        self.assertEqual(self.bob_lines_from_alice(bob), 1)

    def bob_lines_from_alice(self, bob):
        return sum(1 for line in bob.lines
                   if irc_parse(line)[2] in ("PRIVMSG", "TOPIC")
                   and irc_nick(irc_parse(line)[1]) == "alice")

    def test_leaving_the_last_room_with_lines_waiting(self):
        """alice leaves her last room while a long message waits: the
        connection PARTs and QUITs at once, and the message bounces with
        its id rather than being cut short without a word."""
        self.send(room("#test"), "groupchat", "long",
                  "&#10;".join("line %d" % i for i in range(10)))
        self.bob.wait_command("PRIVMSG", lambda p: p[3][1] == "line 3",
                              since=self.mark)
        self.alice.send_raw("<presence to='%s/alice' type='unavailable'/>"
                            % room("#test"))
        self.bob.wait_command("PART", lambda p: irc_nick(p[1]) == "alice")
        got = self.irc_lines(self.mark)
        self.assertLess(len(got), 10)
        self.check_bounce(self.bounces(["long"])["long"], room("#test"))


if __name__ == "__main__":
    main()
