"""End-to-end tests of the durable outbox against a real Prosody: a stanza
a transport hands to send_durable is delivered and its row deleted only
once the server confirmed it (by answering a ping sent after it); rows
left unconfirmed (a crash) are re-sent when the daemon starts again."""
import os
import sqlite3
import time

from harness import (E2ETestCase, Lab, babelfish_config, child_text, main,
                     outbox_rows, report, wait_for)

GATEWAYS = {
    "parrot": {"transport": "echo", "domain": "parrot.localhost",
               "secret": "s3cret", "durable": "yes", "prefix": "parrot:"},
}


class DurableTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("durable")
        self.prosody = self.lab.prosody({"parrot.localhost": "s3cret"})
        self.config = babelfish_config(self.lab, self.prosody, GATEWAYS)
        self.db = os.path.join(self.lab.root, "bf.db")

    def tearDown(self):
        self.lab.close()

    def start_daemon(self):
        since = self.prosody.debug_mark()
        bf = self.lab.babelfish(self.config)
        self.prosody.wait_auth("parrot.localhost", since=since, timeout=10,
                               daemon=bf)
        return bf

    def test_durable_echo_is_confirmed_and_deleted(self):
        bf = self.start_daemon()
        alice = self.lab.client(self.prosody, "alice")
        t0 = time.monotonic()
        for i in range(20):
            alice.message("polly@parrot.localhost", body="hello %d" % i,
                          type_="chat")
        for i in range(20):
            reply = alice.wait_message(
                from_="polly@parrot.localhost",
                predicate=lambda el, i=i: child_text(el, "body")
                == "parrot: hello %d" % i)
            self.assertEqual(reply.get("to"), alice.jid)
        report("20 durable echoes delivered in %.3f s", time.monotonic() - t0)
        # The ping after them was answered by Prosody: rows are gone.
        wait_for(lambda: outbox_rows(self.db) == 0, 10,
                 what="an empty outbox (%d rows)" % outbox_rows(self.db))
        report("outbox emptied %.3f s after the first send",
               time.monotonic() - t0)
        rc, _ = bf.stop()
        self.assertEqual(rc, 0)

    def test_unconfirmed_rows_are_resent_after_restart(self):
        bf = self.start_daemon()
        rc, _ = bf.stop()
        self.assertEqual(rc, 0)
        # What a crash between storing and the server's confirmation
        # leaves behind: rows in the outbox, in order.
        alice = self.lab.client(self.prosody, "alice")
        db = sqlite3.connect(self.db, timeout=5)
        with db:
            for i in range(3):
                db.execute(
                    "INSERT INTO outbox (gateway, xml, created) VALUES (?, ?, ?)",
                    ("parrot.localhost",
                     ("<message from='polly@parrot.localhost' to='%s' "
                      "type='chat'><body>left over %d</body></message>"
                      % (alice.jid, i)).encode(), int(time.time())))
        db.close()
        self.assertEqual(outbox_rows(self.db), 3)

        t0 = time.monotonic()
        bf = self.start_daemon()
        for i in range(3):
            reply = alice.wait_message(from_="polly@parrot.localhost")
            self.assertEqual(child_text(reply, "body"), "left over %d" % i)
        report("3 unconfirmed rows re-sent %.3f s after the restart",
               time.monotonic() - t0)
        wait_for(lambda: outbox_rows(self.db) == 0, 10,
                 what="an empty outbox (%d rows)" % outbox_rows(self.db))
        rc, _ = bf.stop()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    main()
