"""End-to-end test of SIGHUP: the daemon reopens log_file (after a log
rotation moved it away) and applies a changed log_level, without dropping
its component stream."""
import os
import re
import signal
import time

from harness import (E2ETestCase, Lab, babelfish_config, main, read_text,
                     report, wait_for)

# durable: each echo ends with a debug line "server confirmed outbox up
# to N", which shows the log level in force.
GATEWAYS = {"echo1": {"transport": "echo", "domain": "echo.localhost",
                      "secret": "s3cret", "durable": "yes"}}
CONFIRMED = r"debug .*server confirmed outbox"


class SighupTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("signals")

    def tearDown(self):
        self.lab.close()

    def test_sighup_reopens_log_and_applies_log_level(self):
        prosody = self.lab.prosody({"echo.localhost": "s3cret"})
        log = os.path.join(self.lab.root, "babelfish.log")
        config = lambda level: babelfish_config(  # noqa: E731
            self.lab, prosody, GATEWAYS, log_level=level, log_file=log)
        bf = self.lab.babelfish(config("info"))
        prosody.wait_auth("echo.localhost", daemon=bf)
        wait_for(lambda: "connected to" in read_text(log), 10,
                 what="a 'connected' line in log_file")
        alice = self.lab.client(prosody, "alice")
        alice.message("bob@echo.localhost", body="before sighup", type_="chat")
        alice.wait_message(from_="bob@echo.localhost")
        alice.iq("echo.localhost", "<ping xmlns='urn:xmpp:ping'/>")
        self.assertNotRegex(read_text(log), CONFIRMED)  # log_level = info

        # Rotation: the file is moved away, then SIGHUP.
        rotated = log + ".1"
        os.rename(log, rotated)
        # SIGHUP re-reads the file the daemon was started with.
        with open(bf.cfg, "w") as f:
            f.write(config("debug"))
        t0 = time.monotonic()
        bf.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in read_text(log), 10,
                 what="a 'reloaded' line in the new log file")
        report("SIGHUP -> new log file written in %.3f s",
               time.monotonic() - t0)
        self.assertNotIn("reloaded", read_text(rotated))

        # The new level applies: an echo now produces the debug line.
        alice.message("bob@echo.localhost", body="after sighup", type_="chat")
        alice.wait_message(from_="bob@echo.localhost")
        wait_for(lambda: re.search(CONFIRMED, read_text(log)), 10,
                 what="a debug line after log_level = debug and SIGHUP")

        # Still the same stream: no reconnect happened.
        self.assertEqual(prosody.count_auth("echo.localhost"), 1)
        rc, took = bf.stop()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0)


if __name__ == "__main__":
    main()
