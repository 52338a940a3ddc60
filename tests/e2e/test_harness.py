"""Self-test of the e2e harness against Prosody alone (no daemon): when a
daemon test fails, this tells whether the lab itself works. Checks the
XEP-0114 handshake with a raw socket, c2s login, and routing both ways
between a client and a component (PROTOCOL-NOTES sections 1.1, 1.4, 4.1)."""
import time

from harness import (E2ETestCase, Lab, RawComponent, child_text, main, q,
                     report, stanza_error)


class HarnessTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("harness")
        t0 = time.monotonic()
        self.prosody = self.lab.prosody({"raw.localhost": "s3cret"})
        report("prosody ready in %.2f s (c2s %d, component %d)",
               time.monotonic() - t0, self.prosody.c2s_port,
               self.prosody.component_port)

    def tearDown(self):
        self.lab.close()

    def test_component_and_client_routing(self):
        comp = RawComponent(self.prosody.component_port, "raw.localhost",
                            "s3cret")
        self.assertRegex(comp.handshake_reply, r"<handshake\s*/>")
        self.prosody.wait_auth("raw.localhost")

        bad = RawComponent(self.prosody.component_port, "raw.localhost",
                           "wrong")
        self.assertIn("not-authorized", bad.handshake_reply)
        bad.close()
        self.assertEqual(self.prosody.count_auth_failed("raw.localhost"), 1)

        alice = self.lab.client(self.prosody, "alice")
        alice.message("bob@raw.localhost", body="hi <there>", type_="chat")
        got = comp.recv_until(rb"</message>")
        self.assertIn("from='%s'" % alice.jid, got.replace('"', "'"))
        self.assertIn("hi &lt;there&gt;", got)

        comp.send("<message from='bob@raw.localhost' to='%s' type='chat'>"
                  "<body>back</body></message>" % alice.jid)
        msg = alice.wait_message(from_="bob@raw.localhost")
        self.assertEqual(child_text(msg, "body"), "back")
        self.assertEqual(msg.get("type"), "chat")

        # An iq to the component, answered by hand with an error.
        alice.send_raw("<iq type='get' to='raw.localhost' id='h1'>"
                       "<query xmlns='urn:e2e:unknown'/></iq>")
        got = comp.recv_until(rb"</iq>")
        self.assertIn("urn:e2e:unknown", got)
        comp.send("<iq type='error' from='raw.localhost' to='%s' id='h1'>"
                  "<error type='cancel'><service-unavailable xmlns="
                  "'urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                  % alice.jid)
        reply = alice.wait_stanza(lambda el: el.tag == q("iq")
                                  and el.get("id") == "h1")
        self.assertEqual(stanza_error(reply), ("cancel", "service-unavailable"))
        comp.close()

    def test_restart_keeps_users_and_ports(self):
        rc, took = self.prosody.restart()
        report("prosody stop: rc=%s in %.2f s", rc, took)
        self.assertEqual(rc, 0)
        bob = self.lab.client(self.prosody, "bob")
        reply = bob.iq("localhost", "<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual(reply.get("type"), "result")


if __name__ == "__main__":
    main()
