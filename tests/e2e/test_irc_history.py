"""End-to-end tests of IRC channel history: MAM (XEP-0313) on rooms against
ngIRCd, with slixmpp's MAM plugin (xep_0313) as the stock client and raw
queries for paging details and errors; and InspIRCd's history replay (an
IRCv3 "chathistory" BATCH on join) stored as history, not shown live."""
import os
import sqlite3
import time
from datetime import datetime
import xml.etree.ElementTree as ET

from slixmpp import JID

from harness import child_text, main, q, report, stanza_error
from irc_common import (GW, NS_SID, IrcTestCase, room, send_join,
                        wait_self_presence)

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"


def join(client, channel, nick, history=None):
    """Joins the room; returns the messages before the subject (the
    history) and the subject."""
    send_join(client, channel, nick, history)
    wait_self_presence(client, channel, nick, timeout=15)
    history_msgs = []
    while True:
        m = client.wait_message(predicate=lambda el: el.get("from", "")
                                .startswith(room(channel)))
        if m.find(q("subject")) is not None:
            return history_msgs, m
        history_msgs.append(m)


def stanza_id(el):
    sid = el.find("{%s}stanza-id" % NS_SID)
    return None if sid is None else sid.get("id")


def mam_query(client, to, form=None, rsm="", flip=False, queryid="q1"):
    """A raw MAM query: returns (result messages, iq reply)."""
    fields = "".join(
        "<field var='%s'>%s</field>" % (var, "".join(
            "<value>%s</value>" % v for v in (val if isinstance(val, list)
                                              else [val])))
        for var, val in (form or {}).items())
    x = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
         "type='hidden'><value>%s</value></field>%s</x>" % (NS_MAM, fields)
         if form is not None else "")
    s = "<set xmlns='%s'>%s</set>" % (NS_RSM, rsm) if rsm else ""
    payload = "<query xmlns='%s' queryid='%s'>%s%s%s</query>" % (
        NS_MAM, queryid, x, s, "<flip-page/>" if flip else "")
    reply = client.iq(to, payload, type_="set")
    results = []
    while True:
        try:
            m = client.wait_stanza(
                lambda el: el.tag == q("message")
                and el.find("{%s}result" % NS_MAM) is not None
                and el.find("{%s}result" % NS_MAM).get("queryid") == queryid,
                timeout=0.05)
        except AssertionError:
            break
        results.append(m)
    return results, reply


def result_of(m):
    """(id, nick, body, stamp) of a MAM result message."""
    r = m.find("{%s}result" % NS_MAM)
    fwd = r.find("{%s}forwarded" % NS_FORWARD)
    inner = fwd.find("{jabber:client}message")
    stamp = fwd.find("{urn:xmpp:delay}delay").get("stamp")
    return (r.get("id"), inner.get("from").split("/", 1)[1],
            child_text(inner, "body"), stamp)


def fin_of(reply):
    fin = reply.find("{%s}fin" % NS_MAM)
    s = fin.find("{%s}set" % NS_RSM)
    text = lambda tag: (s.find("{%s}%s" % (NS_RSM, tag)).text
                        if s.find("{%s}%s" % (NS_RSM, tag)) is not None
                        else None)
    return (fin.get("complete"), text("first"), text("last"),
            int(text("count")))


class IrcMamTest(IrcTestCase):
    """MAM on rooms, against ngIRCd."""

    def setUp(self):
        self.start_ngircd_bob_alice("irc-mam")

    def fill(self):
        """alice in #test; bob says b1..b5, alice says a1: returns the
        live stanza-ids in order."""
        join(self.alice, "#test", "alice")
        ids = []
        for i in range(1, 6):
            # Stamps are in ms: lines read in the same millisecond share
            # one, and the `start` filter below needs them apart.
            time.sleep(0.005)
            self.bob.privmsg("#test", "b%d" % i)
            m = self.alice.wait_message(
                from_=room("#test") + "/bob",
                predicate=lambda el, i=i: child_text(el, "body") == "b%d" % i)
            ids.append(stanza_id(m))
        time.sleep(0.005)
        self.alice.send_raw("<message to='%s' type='groupchat' id='a1'>"
                            "<body>a1</body></message>" % room("#test"))
        m = self.alice.wait_message(from_=room("#test") + "/alice")
        ids.append(stanza_id(m))
        self.assertTrue(all(ids), ids)
        self.assertEqual(len(set(ids)), 6)
        return ids

    def test_stock_client_pages_filters_and_ids(self):
        ids = self.fill()
        # disco#info on the room advertises MAM.
        info = self.alice.iq(room("#test"), "<query xmlns="
                             "'http://jabber.org/protocol/disco#info'/>")
        features = {f.get("var") for f in info.iter(
            "{http://jabber.org/protocol/disco#info}feature")}
        self.assertTrue({NS_MAM, NS_MAM + "#extended", NS_SID} <= features)

        xmpp = self.alice.xmpp
        xmpp.register_plugin("xep_0313")
        mam = xmpp["xep_0313"]

        async def collect(**kw):
            return [m async for m in mam.iterate(jid=JID(room("#test")), **kw)]

        t0 = time.monotonic()
        got = self.alice.run(collect(rsm={"max": 2}))
        report("MAM: 6 messages in pages of 2 through slixmpp: %.1f ms",
               (time.monotonic() - t0) * 1000)
        self.assertEqual(
            [(m["mam_result"]["id"],
              m["mam_result"]["forwarded"]["stanza"]["body"]) for m in got],
            list(zip(ids, ["b1", "b2", "b3", "b4", "b5", "a1"])))
        self.assertEqual(str(got[0]["mam_result"]["forwarded"]["stanza"]
                             ["from"]), room("#test") + "/bob")
        # Backwards (RSM <before/>), newest first.
        got = self.alice.run(collect(rsm={"max": 4}, reverse=True))
        self.assertEqual([m["mam_result"]["id"] for m in got], ids[::-1])
        # with: one occupant.
        got = self.alice.run(collect(with_jid=JID(room("#test") + "/alice")))
        self.assertEqual([m["mam_result"]["forwarded"]["stanza"]["body"]
                          for m in got], ["a1"])
        # start: from the third message's stamp on.
        results, _ = mam_query(self.alice, room("#test"), form={})
        stamps = [result_of(m)[3] for m in results]
        self.assertEqual(len(stamps), 6)
        start = datetime.fromisoformat(stamps[2].replace("Z", "+00:00"))
        got = self.alice.run(collect(start=start))
        self.assertEqual([m["mam_result"]["id"] for m in got], ids[2:])

        # The join history of a new resource has the same ids.
        phone = self.lab.client(self.prosody, "alice", resource="phone")
        history, _ = join(phone, "#test", "alice", history=3)
        self.assertEqual([stanza_id(m) for m in history], ids[3:])
        self.assertEqual([child_text(m, "body") for m in history],
                         ["b4", "b5", "a1"])

    def test_raw_paging_flip_and_extended_fields(self):
        ids = self.fill()
        # after-id / before-id: what lies between.
        results, reply = mam_query(self.alice, room("#test"), form={
            "after-id": ids[1], "before-id": ids[4]})
        self.assertEqual([result_of(m)[0] for m in results], ids[2:4])
        self.assertEqual(fin_of(reply), ("true", ids[2], ids[3], 2))
        # The last page of 2 (empty <before/>), flipped: newest first on
        # the wire, first/last still the page's oldest/newest.
        results, reply = mam_query(self.alice, room("#test"), form={},
                                   rsm="<max>2</max><before/>", flip=True)
        self.assertEqual([result_of(m)[2] for m in results], ["a1", "b5"])
        self.assertEqual(fin_of(reply), (None, ids[4], ids[5], 6))
        # The page before that, then after the first.
        results, reply = mam_query(self.alice, room("#test"), form={},
                                   rsm="<max>2</max><before>%s</before>"
                                   % ids[4])
        self.assertEqual([result_of(m)[0] for m in results], ids[2:4])
        results, reply = mam_query(self.alice, room("#test"), form={},
                                   rsm="<max>10</max><after>%s</after>"
                                   % ids[0])
        self.assertEqual([result_of(m)[0] for m in results], ids[1:])
        self.assertEqual(fin_of(reply)[0], "true")
        # ids: just those.
        results, _ = mam_query(self.alice, room("#test"),
                               form={"ids": [ids[5], ids[0]]})
        self.assertEqual([result_of(m)[0] for m in results], [ids[0], ids[5]])
        # max 0: the count only.
        results, reply = mam_query(self.alice, room("#test"),
                                   rsm="<max>0</max>")
        self.assertEqual((results, fin_of(reply)[3]), ([], 6))
        # The query form and the metadata.
        form = self.alice.iq(room("#test"), "<query xmlns='%s'/>" % NS_MAM)
        vars_ = {f.get("var") for f in form.iter("{jabber:x:data}field")}
        self.assertTrue({"with", "start", "end", "before-id", "after-id",
                         "ids"} <= vars_)
        meta = self.alice.iq(room("#test"), "<metadata xmlns='%s'/>" % NS_MAM)
        self.assertEqual(meta.find("{%s}metadata/{%s}start" % (NS_MAM, NS_MAM))
                         .get("id"), ids[0])
        self.assertEqual(meta.find("{%s}metadata/{%s}end" % (NS_MAM, NS_MAM))
                         .get("id"), ids[5])

    def test_errors_access_and_page_limit(self):
        ids = self.fill()
        to = room("#test")
        cases = [
            (dict(rsm="<after>h999999999</after>"), "item-not-found"),
            (dict(rsm="<before>nonsense</before>"), "item-not-found"),
            (dict(form={"after-id": "h999999999"}), "item-not-found"),
            (dict(form={"ids": [ids[0], "h999999999"]}), "item-not-found"),
            (dict(form={"start": "yesterday"}), "bad-request"),
            (dict(form={"end": "2024-13-01T00:00:00Z"}), "bad-request"),
            (dict(form={"with": "bob@example.org"}), "bad-request"),
            (dict(rsm="<max>-1</max>"), "bad-request"),
            (dict(rsm="<max>lots</max>"), "bad-request"),
            (dict(form={"fulltext": "b1"}), "feature-not-implemented"),
        ]
        for kw, condition in cases:
            results, reply = mam_query(self.alice, to, **kw)
            self.assertEqual(reply.get("type"), "error", kw)
            self.assertEqual(stanza_error(reply)[1], condition, kw)
            self.assertEqual(results, [])
        # Someone not in the room may not read it.
        carol = self.lab.client(self.prosody, "carol")
        _, reply = mam_query(carol, to)
        self.assertEqual(stanza_error(reply)[1], "forbidden")
        # Past BF_IRC_MAM_PAGE_MAX (100) a page is cut, whatever max says;
        # rows written behind the daemon's back (ids above its reserved
        # block, as a second gateway's would be).
        db = os.path.join(self.lab.root, "bf.db")
        con = sqlite3.connect(db, timeout=5)
        try:
            stamp = int(time.time() * 1000)
            con.executemany(
                "INSERT INTO irc_history(gateway, server, channel, stamp, "
                "nick, body) VALUES (?, 'localhost', '#test', ?, 'dave', ?)",
                [(GW, stamp + i, "bulk %d" % i) for i in range(150)])
            con.commit()
        finally:
            con.close()
        results, reply = mam_query(self.alice, to, rsm="<max>1000</max>")
        self.assertEqual(len(results), 100)
        complete, first, last, count = fin_of(reply)
        self.assertIsNone(complete)
        self.assertEqual((first, count), (ids[0], 156))
        self.assertEqual(result_of(results[-1])[2], "bulk 93")


class IrcReplayTest(IrcTestCase):
    """InspIRCd 3's m_chanhistory replays a channel's last lines in a
    "chathistory" BATCH to whoever joins: babelfish stores them (once,
    however many users' connections get them) and shows them as the MUC
    history of the join, never as live messages."""

    def setUp(self):
        self.make_lab("irc-replay")
        self.ircd = self.lab.inspircd(services=False)
        self.start_gateway({"irc_ports": self.ircd.port})

    def rows(self):
        con = sqlite3.connect(os.path.join(self.lab.root, "bf.db"), timeout=5)
        try:
            return con.execute("SELECT id, nick, body FROM irc_history WHERE "
                               "channel = '#hist' ORDER BY stamp, id").fetchall()
        finally:
            con.close()

    def test_replay_becomes_join_history_once(self):
        erin = self.lab.irc_client(self.ircd, "erin")
        erin.join("#hist")
        for i in range(3):
            erin.privmsg("#hist", "old %d" % i)
        erin.send("PING :sync")  # the lines are in before anyone joins
        erin.wait_line(r" PONG ")
        t0 = time.monotonic()
        history, _ = join(self.alice, "#hist", "alice")
        report("join through InspIRCd with a 3-line replay: %.1f ms",
               (time.monotonic() - t0) * 1000)
        self.assertEqual([child_text(m, "body") for m in history],
                         ["old 0", "old 1", "old 2"])
        for m in history:
            self.assertEqual(m.get("from"), room("#hist") + "/erin")
            self.assertIsNotNone(m.find("{urn:xmpp:delay}delay"))
        ids = [stanza_id(m) for m in history]
        self.assertTrue(all(ids))
        # A live line after the join is live, with its id.
        erin.privmsg("#hist", "new 1")
        live = self.alice.wait_message(
            from_=room("#hist") + "/erin",
            predicate=lambda el: child_text(el, "body") == "new 1")
        self.assertIsNone(live.find("{urn:xmpp:delay}delay"))
        ids.append(stanza_id(live))
        # Nothing of the replay came as a live message.
        self.alice.pump(0.3)
        self.assertFalse([el for el in self.alice.inbox
                          if el.tag == q("message")
                          and child_text(el, "body") in ("old 0", "old 1",
                                                         "old 2")])
        # carol's connection gets the same replay (old 0-2, new 1): stored
        # once, and her join history has the same ids.
        carol = self.lab.client(self.prosody, "carol")
        history, _ = join(carol, "#hist", "carol")
        self.assertEqual([child_text(m, "body") for m in history],
                         ["old 0", "old 1", "old 2", "new 1"])
        self.assertEqual([stanza_id(m) for m in history], ids)
        self.assertEqual([("h%d" % r[0], r[2]) for r in self.rows()],
                         list(zip(ids, ["old 0", "old 1", "old 2", "new 1"])))
        # And MAM serves the same lines.
        results, reply = mam_query(self.alice, room("#hist"))
        self.assertEqual([result_of(m)[0] for m in results], ids)


if __name__ == "__main__":
    main()
