"""End-to-end tests of the daemon's connection lifecycle: server restart,
server down at start-up, wrong secret, and clean SIGTERM shutdown.

Prosody's own log is the referee for component sessions (counted with
Prosody.count_auth / count_auth_failed); the daemon's log is checked for
what an operator must see."""
import signal
import time

from harness import (E2ETestCase, Lab, babelfish_config, child_text, main,
                     report)

ECHO1 = {"echo1": {"transport": "echo", "domain": "echo.localhost",
                   "secret": "s3cret"}}
SANITIZER = r"AddressSanitizer|LeakSanitizer|runtime error:"
STOP_LIMIT_S = 5.0


class LifecycleTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("reconnect")

    def tearDown(self):
        self.lab.close()

    def echo(self, client, to="bob@echo.localhost", body=None, timeout=10):
        body = body or "ping %s" % client.new_id()
        client.message(to, body=body, type_="chat")
        reply = client.wait_message(from_=to, timeout=timeout)
        self.assertEqual(child_text(reply, "body"), body)
        self.assertEqual(reply.get("to"), client.jid)

    def stop_daemon(self, bf, what):
        rc, took = bf.stop(timeout=STOP_LIMIT_S + 5)
        report("SIGTERM (%s) -> exit %s in %.3f s", what, rc, took)
        self.assertEqual(rc, 0, "daemon exit code")
        self.assertLess(took, STOP_LIMIT_S)
        self.assertNotRegex(bf.log_text(), SANITIZER)

    def test_sigterm_exits_cleanly(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret"})
        bf = self.lab.babelfish(babelfish_config(self.lab, prosody, ECHO1))
        prosody.wait_auth("echo.localhost", daemon=bf)
        alice = self.lab.client(prosody, "alice")
        self.echo(alice)
        # Traffic still in flight when the signal arrives.
        for i in range(50):
            alice.message("bob@echo.localhost", body="in flight %d" % i)
        alice.pump(0)
        self.stop_daemon(bf, "online, messages in flight")

    def test_sigint_exits_cleanly(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret"})
        bf = self.lab.babelfish(babelfish_config(self.lab, prosody, ECHO1))
        prosody.wait_auth("echo.localhost", daemon=bf)
        rc, took = bf.stop(timeout=STOP_LIMIT_S + 5, sig=signal.SIGINT)
        report("SIGINT -> exit %s in %.3f s", rc, took)
        self.assertEqual(rc, 0)
        self.assertLess(took, STOP_LIMIT_S)

    def test_prosody_restart_reconnects(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret"})
        bf = self.lab.babelfish(babelfish_config(self.lab, prosody, ECHO1))
        prosody.wait_auth("echo.localhost", daemon=bf)
        alice = self.lab.client(prosody, "alice")
        self.echo(alice)
        alice.disconnect()

        mark = bf.mark()
        rc, took = prosody.stop(timeout=10)
        report("prosody SIGTERM: exit %s in %.2f s", rc, took)
        bf.wait_log(r"(?i)reconnect", timeout=5, since=mark)
        t_up0 = time.monotonic()
        prosody.start()
        t_up = time.monotonic()
        report("prosody restarted on the same ports in %.2f s", t_up - t_up0)
        prosody.wait_auth("echo.localhost", count=2, timeout=10,
                          daemon=bf)
        report("daemon re-authenticated %.2f s after prosody was ready",
               time.monotonic() - t_up)
        self.assertTrue(bf.alive())

        alice = self.lab.client(prosody, "alice")
        self.echo(alice, body="after restart")
        self.assertEqual(prosody.count_auth("echo.localhost"), 2)
        self.stop_daemon(bf, "after a reconnect")

    def test_server_down_at_start(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret"})
        prosody.stop(timeout=10)
        t0 = time.monotonic()
        bf = self.lab.babelfish(babelfish_config(self.lab, prosody, ECHO1))
        # At least two refused attempts, and the daemon stays up.
        bf.wait_log(r"(?i)reconnect", timeout=8, count=2)
        report("2 reconnect lines while the server is down: %.2f s",
               time.monotonic() - t0)
        self.assertTrue(bf.alive())
        prosody.start()
        t_up = time.monotonic()
        prosody.wait_auth("echo.localhost", timeout=10, daemon=bf)
        report("daemon authenticated %.2f s after prosody was ready",
               time.monotonic() - t_up)
        alice = self.lab.client(prosody, "alice")
        self.echo(alice)
        self.stop_daemon(bf, "after a late connect")

    def test_wrong_secret(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret",
                                    "bad.localhost": "the-right-secret"})
        gateways = dict(ECHO1)
        gateways["bad"] = {"transport": "echo", "domain": "bad.localhost",
                           "secret": "a-wrong-secret"}
        t0 = time.monotonic()
        bf = self.lab.babelfish(babelfish_config(self.lab, prosody, gateways))
        prosody.wait_auth("echo.localhost", daemon=bf)

        line = bf.wait_log(r"^.*not-authorized.*$", timeout=5).group(0)
        report("daemon says: %s", line.strip())
        self.assertRegex(line, r"(?i)secret")
        self.assertIn("bad", line)
        self.assertNotIn("a-wrong-secret", bf.log_text())

        # The healthy gateway is unaffected.
        alice = self.lab.client(prosody, "alice")
        self.echo(alice)

        # It keeps retrying with backoff (reconnect_min 1 s, max 4 s): over
        # a 6 s window, at least two attempts and no hot loop. The window
        # is a measurement, so it is waited out.
        window = 6.0
        time.sleep(max(0.0, t0 + window - time.monotonic()))
        attempts = prosody.count_auth_failed("bad.localhost")
        logged = bf.count_log(r"not-authorized")
        report("wrong secret: %d attempts refused by prosody in %.1f s; "
               "daemon logged not-authorized %d times", attempts,
               time.monotonic() - t0, logged)
        self.assertGreaterEqual(attempts, 2)
        self.assertLessEqual(attempts, 8)
        self.assertGreaterEqual(logged, 2)
        self.assertEqual(prosody.count_auth("bad.localhost"), 0)
        self.assertTrue(bf.alive())
        self.echo(alice, body="still fine")
        self.assertEqual(prosody.count_auth("echo.localhost"), 1)
        self.stop_daemon(bf, "one gateway in backoff")


if __name__ == "__main__":
    main()
