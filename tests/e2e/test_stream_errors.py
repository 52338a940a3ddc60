"""End-to-end tests of the stream errors an admin meets first, against a
real Prosody: a gateway domain the server does not serve (host-unknown)
and a second daemon for a domain already served (conflict). Each must be
logged as the fix to make, retried without a hot loop, and must not
disturb the gateways that work."""
import os
import time

from harness import (E2ETestCase, Lab, babelfish_config, child_text, main,
                     report)

ECHO = {"echo1": {"transport": "echo", "domain": "echo.localhost",
                  "secret": "s3cret"}}


class StreamErrorTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("stream-errors")

    def tearDown(self):
        self.lab.close()

    def echo(self, client, body):
        client.message("bob@echo.localhost", body=body, type_="chat")
        reply = client.wait_message(from_="bob@echo.localhost")
        self.assertEqual(child_text(reply, "body"), body)

    def test_unknown_domain_is_host_unknown(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret"})
        gateways = dict(ECHO)
        gateways["nope"] = {"transport": "echo", "domain": "nope.localhost",
                            "secret": "s3cret"}
        t0 = time.monotonic()
        bf = self.lab.babelfish(babelfish_config(self.lab, prosody, gateways))
        prosody.wait_auth("echo.localhost", daemon=bf)
        line = bf.wait_log(r"^.*host-unknown.*$", timeout=5).group(0)
        report("daemon says: %s", line.strip())
        # The fix, spelled out: which Component line to add.
        self.assertIn('Component "nope.localhost"', line)
        self.assertIn("[nope]", line)
        alice = self.lab.client(prosody, "alice")
        self.echo(alice, "unaffected")
        # Retried with backoff (reconnect_min 1 s, max 4 s), not in a loop.
        time.sleep(max(0.0, t0 + 6.0 - time.monotonic()))
        tries = bf.count_log(r"host-unknown")
        report("host-unknown: %d attempts in %.1f s", tries,
               time.monotonic() - t0)
        self.assertGreaterEqual(tries, 2)
        self.assertLessEqual(tries, 8)
        rc, _ = bf.stop()
        self.assertEqual(rc, 0)

    def test_second_daemon_gets_conflict_and_backs_off(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret"})
        first = self.lab.babelfish(
            babelfish_config(self.lab, prosody, ECHO), name="first")
        prosody.wait_auth("echo.localhost", daemon=first)
        # Another instance (its own database: one daemon per database) for
        # the same domain. Prosody's default kick_new refuses it.
        t0 = time.monotonic()
        second = self.lab.babelfish(
            babelfish_config(self.lab, prosody, ECHO,
                             database=os.path.join(self.lab.root, "second.db")),
            name="second")
        line = second.wait_log(r"^.*conflict.*$", timeout=5).group(0)
        report("second daemon says: %s", line.strip())
        self.assertRegex(line, r"another connection already serves "
                               r"echo\.localhost")
        # It backs off from 5 s on instead of fighting (reconnect_max 4 s
        # does not apply to conflicts): at most 2 attempts in 6 s.
        time.sleep(max(0.0, t0 + 6.0 - time.monotonic()))
        tries = second.count_log(r"\(conflict\)")
        report("conflict: %d attempts in %.1f s", tries, time.monotonic() - t0)
        self.assertLessEqual(tries, 2)
        # The first one keeps serving, on its one session.
        alice = self.lab.client(prosody, "alice")
        self.echo(alice, "first still serves")
        self.assertEqual(prosody.count_auth("echo.localhost"), 1)
        for bf in (second, first):
            rc, _ = bf.stop()
            self.assertEqual(rc, 0)


if __name__ == "__main__":
    main()
