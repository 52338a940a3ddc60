"""End-to-end tests of the IRC transport's MUC features: channel modes as
roles and affiliations, a created channel (201), MUC admin requests from
XMPP (kick, voice, moderator, ban) against a real ngIRCd, invitations both
ways; and, against InspIRCd + Atheme, the IRCv3 occupant capabilities:
echo-message reflections, away-notify, account-notify and extended-join."""
import time

from harness import child_text, irc_nick, main, q, report, stanza_error
from irc_common import (GW, NS_MUC_USER, NS_SID, IrcTestCase, codes, item,
                        join_room, room, send_join)

NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"


class MucCase(IrcTestCase):
    def start(self, ircd, **section):
        self.ircd = ircd
        section["irc_ports"] = self.ircd.port
        self.start_gateway(section)

    def join(self, channel, nick="alice"):
        """Joins as alice; returns her self-presence."""
        return join_room(self.alice, channel, nick, timeout=15,
                         what="self-presence")[0]

    def presence_of(self, channel, nick, predicate=lambda el: True):
        return self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == "%s/%s" % (room(channel), nick)
            and predicate(el), what="presence of %s" % nick)

    def admin(self, channel, item_xml):
        return self.alice.iq(room(channel), "<query xmlns='%s'>%s</query>"
                             % (NS_MUC_ADMIN, item_xml), type_="set")


class IrcMucTest(MucCase):
    """Against Debian's ngIRCd (PREFIX=(qaohv)~&@%+)."""

    def setUp(self):
        self.make_lab("irc-muc")
        self.start(self.lab.ngircd())

    def test_created_channel_modes_and_roles(self):
        pres = self.join("#new")
        # Alone in a new channel, with ops: 201 (XEP-0045 §10.1.1).
        self.assertEqual(codes(pres), {"110", "201"})
        self.assertEqual((item(pres).get("role"), item(pres).get("affiliation")),
                         ("moderator", "admin"))
        bob = self.lab.irc_client(self.ircd, "bob")
        bob.join("#new")
        pres = self.presence_of("#new", "bob")
        self.assertEqual(item(pres).get("role"), "participant")
        self.assertEqual(item(pres).get("affiliation"), "none")

        # MUC admin: moderator -> MODE +o, answered once the server is done.
        t0 = time.monotonic()
        reply = self.admin("#new", "<item nick='bob' role='moderator'/>")
        report("muc#admin role change through IRC: %.1f ms",
               (time.monotonic() - t0) * 1000)
        self.assertEqual(reply.get("type"), "result")
        bob.wait_command("MODE", lambda p: p[3] == ["#new", "+o", "bob"])
        pres = self.presence_of("#new", "bob", lambda el:
                                item(el).get("role") == "moderator")
        self.assertEqual(item(pres).get("affiliation"), "admin")
        notice = self.alice.wait_message(from_=room("#new"), predicate=lambda el:
                                         child_text(el, "body") is not None)
        self.assertEqual(child_text(notice, "body"), "alice sets mode +o bob")
        self.assertEqual(notice.get("type"), "groupchat")

        # Modes set on IRC: a channel mode is a status line, and alice
        # loses her ops (her own presence, 110).
        bob.send("MODE #new +m")
        notice = self.alice.wait_message(from_=room("#new"), predicate=lambda el:
                                         "+m" in (child_text(el, "body") or ""))
        self.assertEqual(child_text(notice, "body"), "bob sets mode +m")
        bob.send("MODE #new -o+v alice alice")
        pres = self.presence_of("#new", "alice", lambda el:
                                item(el).get("affiliation") == "member")
        self.assertIn("110", codes(pres))
        self.assertEqual(item(pres).get("role"), "participant")  # voiced

        # No longer an operator: IRC's 482 is the iq's error.
        reply = self.admin("#new", "<item nick='bob' role='none'/>")
        self.assertEqual(reply.get("type"), "error")
        self.assertEqual(stanza_error(reply)[1], "not-allowed")
        # A request that names nobody, and one IRC cannot express.
        reply = self.admin("#new", "<item role='none'/>")
        self.assertEqual(stanza_error(reply)[1], "bad-request")
        reply = self.admin("#new", "<item nick='bob' affiliation='owner'/>")
        self.assertEqual(stanza_error(reply)[1], "feature-not-implemented")
        # Not joined: refused without a word to IRC.
        reply = self.admin("#elsewhere", "<item nick='bob' role='none'/>")
        self.assertEqual(stanza_error(reply)[1], "not-acceptable")

    def test_kick_voice_and_ban(self):
        self.join("#kb")
        bob, carol = self.lab.irc_clients(self.ircd, ["bob", "carol"])
        for c in (bob, carol):
            c.join("#kb")
            self.presence_of("#kb", c.nick)
        # Voice and devoice (participant / visitor).
        self.assertEqual(self.admin(
            "#kb", "<item nick='carol' role='participant'/>").get("type"),
            "result")
        bob.wait_command("MODE", lambda p: p[3] == ["#kb", "+v", "carol"])
        pres = self.presence_of("#kb", "carol", lambda el:
                                item(el).get("affiliation") == "member")
        self.assertEqual(item(pres).get("role"), "participant")
        self.assertEqual(self.admin(
            "#kb", "<item nick='carol' role='visitor'/>").get("type"), "result")
        bob.wait_command("MODE", lambda p: p[3] == ["#kb", "-v", "carol"])
        self.presence_of("#kb", "carol", lambda el:
                         item(el).get("affiliation") == "none")

        # Kick with a reason.
        reply = self.admin("#kb", "<item nick='bob' role='none'>"
                           "<reason>off topic</reason></item>")
        self.assertEqual(reply.get("type"), "result")
        _, _, _, params = bob.wait_command("KICK")
        self.assertEqual(params, ["#kb", "bob", "off topic"])
        pres = self.presence_of("#kb", "bob", lambda el:
                                el.get("type") == "unavailable")
        self.assertEqual(codes(pres), {"307"})
        self.assertEqual(child_text(pres, "status"), "off topic")

        # Ban (outcast): +b nick!*@*, then KICK; carol cannot come back.
        reply = self.admin("#kb", "<item jid='carol%%localhost@%s' "
                           "affiliation='outcast'/>" % GW)
        self.assertEqual(reply.get("type"), "result")
        carol.wait_command("MODE", lambda p: p[3] == ["#kb", "+b", "carol!*@*"])
        carol.wait_command("KICK", lambda p: p[3][:2] == ["#kb", "carol"])
        notice = self.alice.wait_message(from_=room("#kb"), predicate=lambda el:
                                         "+b" in (child_text(el, "body") or ""))
        self.assertEqual(child_text(notice, "body"),
                         "alice sets mode +b carol!*@*")
        mark = carol.mark()
        carol.send("JOIN #kb")
        carol.wait_command("474", since=mark)  # ERR_BANNEDFROMCHAN
        # affiliation none lifts the ban.
        self.assertEqual(self.admin(
            "#kb", "<item nick='carol' affiliation='none'/>").get("type"),
            "result")
        self.alice.wait_message(from_=room("#kb"), predicate=lambda el:
                                child_text(el, "body")
                                == "alice sets mode -b carol!*@*")
        self.assertIn("carol", carol.join("#kb"))

    def test_invitations_both_ways(self):
        self.join("#inv")
        dave = self.lab.irc_client(self.ircd, "dave")
        # XMPP -> IRC: a mediated invitation to an IRC nick's JID.
        self.alice.send_raw(
            "<message to='%s'><x xmlns='%s'><invite to='dave%%localhost@%s'>"
            "<reason>come</reason></invite></x></message>"
            % (room("#inv"), NS_MUC_USER, GW))
        _, source, _, params = dave.wait_command("INVITE")
        self.assertEqual(irc_nick(source), "alice")
        self.assertEqual(params, ["dave", "#inv"])
        self.assertIn("alice", dave.join("#inv"))
        # Not an IRC user of this server: refused.
        self.alice.send_raw(
            "<message to='%s' id='bad-inv'><x xmlns='%s'><invite "
            "to='someone@example.org'/></x></message>"
            % (room("#inv"), NS_MUC_USER))
        err = self.alice.wait_message(predicate=lambda el:
                                      el.get("id") == "bad-inv")
        self.assertEqual(stanza_error(err)[1], "jid-malformed")

        # IRC -> XMPP: INVITE becomes an invitation from the room.
        dave.join("#elsewhere")
        dave.send("INVITE alice #elsewhere")
        msg = self.alice.wait_message(from_=room("#elsewhere"))
        invite = msg.find("{%s}x/{%s}invite" % (NS_MUC_USER, NS_MUC_USER))
        self.assertIsNotNone(invite)
        self.assertEqual(invite.get("from"), "dave%%localhost@%s" % GW)
        self.assertEqual(child_text(msg, "body"),
                         "dave invites you to #elsewhere")


    def test_kicked_or_refused_online_keeps_the_connection(self):
        """Kicked from her only channel, then refused on the way back
        (banned), alice is still online: the connection stays (raw
        commands to the server's JID still work), as in Biboumi."""
        bob = self.lab.irc_client(self.ircd, "bob")
        bob.join("#k")
        self.join("#k")
        bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        bob.send("MODE #k +b alice!*@*")
        bob.send("KICK #k alice :out")
        pres = self.presence_of("#k", "alice", lambda el:
                                el.get("type") == "unavailable")
        self.assertEqual(codes(pres), {"110", "307"})
        self.assertEqual(child_text(pres, "status"), "out")
        send_join(self.alice, "#k", "alice")
        err = self.alice.wait_stanza(lambda el: el.tag == q("presence")
                                     and el.get("type") == "error",
                                     what="the refused rejoin")
        self.assertEqual(stanza_error(err)[1], "forbidden")
        self.alice.send_raw("<message to='localhost@%s' type='chat'><body>"
                            "PRIVMSG bob :still connected</body></message>"
                            % GW)
        bob.wait_command("PRIVMSG", lambda p: irc_nick(p[1]) == "alice"
                         and p[3] == ["bob", "still connected"])
        self.assertNotRegex(self.bf.log_text(), r"no channel left")

    def test_rejoin_after_reconnection_is_no_creation(self):
        """201 is for a channel the join created: not for the rejoin
        after the IRC server restarted, alone in the channel again."""
        self.assertEqual(codes(self.join("#solo")), {"110", "201"})
        self.ircd.restart()
        self.presence_of("#solo", "alice", lambda el: "reconnecting"
                         in (child_text(el, "status") or ""))
        pres = self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room("#solo") + "/alice"
            and el.get("type") is None and child_text(el, "status") is None,
            timeout=20, what="self-presence after the rejoin")
        self.assertEqual(codes(pres), {"110"})
        self.assertEqual(item(pres).get("role"), "moderator")

    def test_occupant_ids_without_accounts(self):
        """XEP-0421 on a server without accounts: the room says so in
        disco#info, and every occupant (alice too) has an id, from a
        salted hash of their nick, kept across a nick change."""
        info = self.alice.iq(room("#ids"), "<query xmlns='%s'/>"
                             % "http://jabber.org/protocol/disco#info")
        features = {f.get("var") for f in info.iter(
            "{http://jabber.org/protocol/disco#info}feature")}
        self.assertIn(NS_OCCUPANT_ID, features)
        pres = self.join("#ids")
        own = pres.find("{%s}occupant-id" % NS_OCCUPANT_ID).get("id")
        self.assertRegex(own, r"^[0-9a-f]{32}$")
        bob = self.lab.irc_client(self.ircd, "bob")
        bob.join("#ids")
        bob_id = self.presence_of("#ids", "bob").find(
            "{%s}occupant-id" % NS_OCCUPANT_ID).get("id")
        self.assertRegex(bob_id, r"^[0-9a-f]{32}$")
        self.assertNotEqual(bob_id, own)
        bob.send("NICK bobby")
        pres = self.presence_of("#ids", "bobby", lambda el:
                                el.get("type") is None)
        self.assertEqual(pres.find("{%s}occupant-id" % NS_OCCUPANT_ID)
                         .get("id"), bob_id)
        bob.privmsg("#ids", "hi")
        msg = self.alice.wait_message(from_=room("#ids") + "/bobby")
        self.assertEqual(msg.find("{%s}occupant-id" % NS_OCCUPANT_ID)
                         .get("id"), bob_id)
        # Her own reflected message (no echo-message here) has hers.
        self.alice.send_raw("<message to='%s' type='groupchat'><body>yo"
                            "</body></message>" % room("#ids"))
        msg = self.alice.wait_message(from_=room("#ids") + "/alice")
        self.assertEqual(msg.find("{%s}occupant-id" % NS_OCCUPANT_ID)
                         .get("id"), own)

    def test_nick_change_from_xmpp(self):
        """XEP-0045 §7.6: presence to room/new-nick from a joined resource
        is NICK on IRC; a nick in use is a conflict from room/new-nick."""
        bob = self.lab.irc_client(self.ircd, "bob")
        bob.join("#nick")
        self.join("#nick")
        bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        t0 = time.monotonic()
        self.alice.send_raw("<presence to='%s/alice2'/>" % room("#nick"))
        bob.wait_command("NICK", lambda p: irc_nick(p[1]) == "alice"
                         and p[3] == ["alice2"])
        gone = self.presence_of("#nick", "alice", lambda el:
                                el.get("type") == "unavailable")
        self.assertEqual(codes(gone), {"303", "110"})
        self.assertEqual(item(gone).get("nick"), "alice2")
        back = self.presence_of("#nick", "alice2", lambda el:
                                el.get("type") is None)
        report("nick change through IRC: %.1f ms",
               (time.monotonic() - t0) * 1000)
        self.assertIn("110", codes(back))
        # Messages go on under the new nick, both ways.
        self.alice.send_raw("<message to='%s' type='groupchat'>"
                            "<body>renamed</body></message>" % room("#nick"))
        _, source, _, params = bob.wait_command(
            "PRIVMSG", lambda p: p[3] == ["#nick", "renamed"])
        self.assertEqual(irc_nick(source), "alice2")
        # bob's nick is taken: 433 is a conflict, and nothing changes.
        self.alice.send_raw("<presence to='%s/bob'/>" % room("#nick"))
        err = self.alice.wait_stanza(
            lambda el: el.tag == q("presence") and el.get("type") == "error"
            and el.get("from") == room("#nick") + "/bob", what="conflict")
        self.assertEqual(stanza_error(err)[1], "conflict")
        bob.privmsg("#nick", "still there?")
        m = self.alice.wait_message(from_=room("#nick") + "/bob")
        self.assertEqual(child_text(m, "body"), "still there?")
        self.alice.send_raw("<message to='%s' type='groupchat'>"
                            "<body>yes</body></message>" % room("#nick"))
        _, source, _, _ = bob.wait_command("PRIVMSG",
                                           lambda p: p[3] == ["#nick", "yes"])
        self.assertEqual(irc_nick(source), "alice2")

    def test_moderated_channel_visitors(self):
        """+m: occupants without voice are visitors, on the roster of a
        channel already moderated and when +m/-m/+v change it."""
        bob, carol = self.lab.irc_clients(self.ircd, ["bob", "carol"])
        bob.join("#mod")
        carol.join("#mod")
        bob.send("MODE #mod +m")
        bob.wait_command("MODE", lambda p: p[3] == ["#mod", "+m"])
        self.join("#mod")
        # The roster came before the channel's modes (324): then a role
        # change to visitor for her and carol, bob stays moderator.
        pres = self.presence_of("#mod", "alice", lambda el:
                                item(el).get("role") == "visitor")
        self.assertIn("110", codes(pres))
        self.presence_of("#mod", "carol", lambda el:
                         item(el).get("role") == "visitor")
        bob.send("MODE #mod +v carol")
        self.presence_of("#mod", "carol", lambda el:
                         item(el).get("role") == "participant"
                         and item(el).get("affiliation") == "member")
        bob.send("MODE #mod -m")
        pres = self.presence_of("#mod", "alice", lambda el:
                                item(el).get("role") == "participant"
                                and "110" in codes(el))
        self.assertEqual(item(pres).get("affiliation"), "none")
        bob.send("MODE #mod +m")
        self.presence_of("#mod", "alice", lambda el:
                         item(el).get("role") == "visitor")
        # carol, voiced, is no visitor: no presence of hers for +m.
        self.alice.pump(0.5)
        self.assertFalse([el for el in self.alice.inbox
                          if el.get("from") == room("#mod") + "/carol"
                          and item(el) is not None
                          and item(el).get("role") == "visitor"])


class IrcMucV3Test(MucCase):
    """Against InspIRCd 3 + Atheme: echo-message, away-notify,
    account-notify, extended-join."""

    def setUp(self):
        self.make_lab("irc-muc-v3")
        self.start(self.lab.inspircd())

    def test_echo_message_reflection(self):
        dave = self.lab.irc_client(self.ircd, "dave")
        dave.join("#echo")
        self.join("#echo")
        dave.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        self.assertRegex(self.bf.log_text(), r"registered as alice")
        self.alice.send_raw(
            "<message to='%s' type='groupchat' id='m-1'><body>echo me</body>"
            "<origin-id xmlns='%s' id='o-1'/></message>" % (room("#echo"), NS_SID))
        dave.wait_command("PRIVMSG", lambda p: p[3] == ["#echo", "echo me"])
        echo = self.alice.wait_message(from_=room("#echo") + "/alice")
        # The client's ids, and the archive's id (MAM) as the stanza-id.
        self.assertEqual(echo.get("id"), "m-1")
        self.assertEqual(echo.find("{%s}origin-id" % NS_SID).get("id"), "o-1")
        sid = echo.find("{%s}stanza-id" % NS_SID)
        self.assertIsNotNone(sid, "the reflection has no stanza-id")
        self.assertRegex(sid.get("id"), r"^h[0-9]+$")
        self.assertEqual(sid.get("by"), room("#echo"))
        self.assertEqual(child_text(echo, "body"), "echo me")
        # Exactly one reflection.
        self.alice.pump(1.0)
        self.assertFalse([el for el in self.alice.inbox
                          if el.get("from") == room("#echo") + "/alice"
                          and el.tag == q("message")])
        # A body split into three lines: one reflection, as written.
        self.alice.send_raw("<message to='%s' type='groupchat' id='m-2'>"
                            "<body>a&#10;b&#10;c</body></message>" % room("#echo"))
        for text in "abc":
            dave.wait_command("PRIVMSG", lambda p, t=text: p[3] == ["#echo", t])
        echo = self.alice.wait_message(from_=room("#echo") + "/alice")
        self.assertEqual((echo.get("id"), child_text(echo, "body")),
                         ("m-2", "a\nb\nc"))
        self.alice.pump(1.0)
        self.assertFalse([el for el in self.alice.inbox
                          if el.get("from") == room("#echo") + "/alice"
                          and el.tag == q("message")])
        # A message the channel refuses (+m, no voice) bounces with its id
        # instead of waiting for an echo forever.
        dave.send("MODE #echo +m")
        self.alice.wait_message(from_=room("#echo"), predicate=lambda el:
                                "+m" in (child_text(el, "body") or ""))
        self.alice.send_raw("<message to='%s' type='groupchat' id='m-3'>"
                            "<body>muted</body></message>" % room("#echo"))
        err = self.alice.wait_message(predicate=lambda el:
                                      el.get("id") == "m-3")
        self.assertEqual(err.get("type"), "error")
        self.assertEqual(stanza_error(err)[1], "forbidden")

    def test_away_and_accounts(self):
        self.ircd.register_account("dave", "pw-dave-123")
        self.ircd.register_account("erin", "pw-erin-123")
        self.join("#acct")
        # extended-join: dave logs in with SASL, his JOIN carries the account.
        dave = self.lab.irc_client(self.ircd, "dave",
                                   sasl=("dave", "pw-dave-123"))
        dave.join("#acct")
        pres = self.presence_of("#acct", "dave")
        self.assertEqual(child_text(pres, "status"), "logged in as dave")
        dave_id = pres.find("{%s}occupant-id" % NS_OCCUPANT_ID)
        self.assertIsNotNone(dave_id)
        self.assertRegex(dave_id.get("id"), r"^[0-9a-f]{32}$")
        self.assertNotIn("dave", dave_id.get("id"))
        # account-notify: erin joins without an account, then identifies.
        erin = self.lab.irc_client(self.ircd, "erin")
        erin.join("#acct")
        pres = self.presence_of("#acct", "erin")
        # No account yet: an id from her nick, replaced by the account's.
        nick_id = pres.find("{%s}occupant-id" % NS_OCCUPANT_ID).get("id")
        self.assertRegex(nick_id, r"^[0-9a-f]{32}$")
        erin.privmsg("NickServ", "IDENTIFY pw-erin-123")
        pres = self.presence_of("#acct", "erin")
        self.assertEqual(child_text(pres, "status"), "logged in as erin")
        erin_id = pres.find("{%s}occupant-id" % NS_OCCUPANT_ID).get("id")
        self.assertNotIn(erin_id, (dave_id.get("id"), nick_id))
        # The id follows the account across a nick change.
        erin.send("NICK erin2")
        pres = self.presence_of("#acct", "erin2", lambda el:
                                el.get("type") is None)
        self.assertEqual(pres.find("{%s}occupant-id" % NS_OCCUPANT_ID).get("id"),
                         erin_id)
        # away-notify: away with its message, then back.
        dave.send("AWAY :gone to lunch")
        pres = self.presence_of("#acct", "dave")
        self.assertEqual(child_text(pres, "show"), "away")
        self.assertEqual(child_text(pres, "status"), "gone to lunch")
        dave.send("AWAY")
        pres = self.presence_of("#acct", "dave")
        self.assertIsNone(pres.find(q("show")))
        self.assertEqual(child_text(pres, "status"), "logged in as dave")
        # Messages carry the occupant id too.
        dave.privmsg("#acct", "hello")
        msg = self.alice.wait_message(from_=room("#acct") + "/dave")
        self.assertEqual(msg.find("{%s}occupant-id" % NS_OCCUPANT_ID).get("id"),
                         dave_id.get("id"))



class IrcMucEchoLostTest(MucCase):
    """InspIRCd (echo-message) with flood control at 1 line a second, so
    that messages are still waiting for their echo when the IRC server
    goes away."""

    def setUp(self):
        self.make_lab("irc-muc-echo-lost")
        self.start(self.lab.inspircd(services=False), irc_throttle=1)

    def test_unconfirmed_messages_bounce_on_reconnection(self):
        dave = self.lab.irc_client(self.ircd, "dave")
        dave.join("#lost")
        self.join("#lost")
        dave.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice")
        ids = ["lost-%d" % i for i in range(6)]
        for i in ids:
            self.alice.send_raw("<message to='%s' type='groupchat' id='%s'>"
                                "<body>%s</body></message>" % (room("#lost"), i, i))
        self.alice.wait_message(from_=room("#lost") + "/alice")  # one echo
        self.ircd.stop()
        # Every message is either reflected (echoed) or bounced with its
        # id and a temporary error: none is lost without a word.
        outcome = {}
        deadline = time.monotonic() + 10
        while len(outcome) < len(ids) - 1 and time.monotonic() < deadline:
            self.alice.pump(0.2)
            for el in list(self.alice.inbox):
                if el.tag == q("message") and el.get("id") in ids:
                    self.alice.inbox.remove(el)
                    outcome[el.get("id")] = el
        self.assertEqual(len(outcome), len(ids) - 1, sorted(outcome))
        # Once each: a message waiting both for flood control and for its
        # echo bounces from the echo wait only.
        self.alice.pump(0.5)
        self.assertEqual([el.get("id") for el in self.alice.inbox
                          if el.tag == q("message") and el.get("id") in ids],
                         [])
        bounced = [el for el in outcome.values() if el.get("type") == "error"]
        self.assertTrue(bounced, "nothing was waiting for its echo")
        for el in bounced:
            self.assertEqual(el.get("from"), room("#lost"))
            self.assertEqual(stanza_error(el)[:2],
                             ("wait", "remote-server-timeout"))
        report("%d of %d messages bounced when the IRC server went away",
               len(bounced), len(ids))


if __name__ == "__main__":
    main()
