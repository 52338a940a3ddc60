"""End-to-end tests of the daemon attached to a real ejabberd 23.01 (the
Debian package) instead of Prosody: echo, disco#info, version, ping,
unknown namespaces, the durable outbox confirmed by ejabberd answering the
daemon's ping to "localhost", a gateway for a domain ejabberd does not
serve (ejabberd accepts the stream header and refuses the handshake with
not-authorized, PROTOCOL-NOTES section 1.3), and SIGTERM.

ejabberd's own log is the referee for component sessions
(Ejabberd.count_auth / count_auth_failed in harness.py)."""
import os
import re
import time
import xml.etree.ElementTree as ET

from harness import (NS_DISCO_INFO, NS_PING, NS_VERSION, E2ETestCase, Lab,
                     babelfish_config, check_unknown_namespace, child_text,
                     main, outbox_rows, q, report, stanza_error, wait_for)
from test_users import (NS_REGISTER, command, form_fields, form_xml,
                        roster_client)

GATEWAYS = {
    "echo1": {"transport": "echo", "domain": "echo.localhost",
              "secret": "s3cret"},
    "parrot": {"transport": "echo", "domain": "parrot.localhost",
               "secret": "s3cret2", "durable": "yes", "prefix": "parrot:"},
    # Not among ejabberd_service's hosts: header accepted, handshake
    # refused with not-authorized.
    "bad": {"transport": "echo", "domain": "bad.localhost",
            "secret": "s3cret"},
}
SERVED = ("echo.localhost", "parrot.localhost")
SANITIZER = r"AddressSanitizer|LeakSanitizer|runtime error:"
STOP_LIMIT_S = 5.0
AWKWARD = "<>&'\" Grüße 🐟 日本語 <b>not markup</b> &amp;"


def pids_with(text):
    """PIDs whose command line contains text (scan of /proc)."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                if text.encode() in f.read():
                    found.add(int(name))
        except OSError:
            pass
    return found


def epmd_pids():
    found = set()
    for name in os.listdir("/proc"):
        try:
            with open("/proc/%s/comm" % name) as f:
                if f.read().strip() == "epmd":
                    found.add(int(name))
        except (OSError, ValueError):
            pass
    return found


class EjabberdTest(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.t_class = time.monotonic()
        cls.epmd_before = epmd_pids()
        cls.lab = Lab("ejabberd")
        try:
            cls.ej = cls.lab.ejabberd({"echo.localhost": "s3cret",
                                       "parrot.localhost": "s3cret2"})
            report("ejabberd start-up: listeners ready in %.2f s, users "
                   "registered at %.2f s", cls.ej.ready_s,
                   time.monotonic() - cls.t_class)
            cls.db = os.path.join(cls.lab.root, "bf.db")
            cls.t_daemon = time.monotonic()
            cls.bf = cls.lab.babelfish(
                babelfish_config(cls.lab, cls.ej, GATEWAYS))
            for domain in SERVED:
                cls.ej.wait_auth(domain, timeout=10, daemon=cls.bf)
            report("daemon start -> echo and parrot authenticated: %.2f s",
                   time.monotonic() - cls.t_daemon)
            cls.alice = cls.lab.client(cls.ej, "alice")
        except BaseException:
            cls.lab.dump_logs()
            cls.lab.close()
            raise

    @classmethod
    def tearDownClass(cls):
        # Nothing here may cost a served gateway its stream, whatever the
        # bad gateway does meanwhile.
        sessions = {d: cls.ej.count_auth(d) for d in SERVED}
        served_trouble = re.findall(
            r"^\S+ (?:warn|error)\s+\[(?:echo1|parrot)\].*$",
            cls.bf.log_text(), re.M)
        bf_alive = cls.bf.alive()
        rc, took = cls.bf.stop(timeout=STOP_LIMIT_S + 5)
        report("SIGTERM -> daemon exit %s in %.3f s", rc, took)
        report("component sessions during the run: %s", sessions)
        log = cls.bf.log_text()
        node = cls.ej.node
        ej_rc, ej_took = cls.ej.stop()
        report("ejabberdctl stop -> ejabberd gone in %.2f s (exit %s)",
               ej_took, ej_rc)
        cls.lab.close()
        leftovers = pids_with(node)
        new_epmd = epmd_pids() - cls.epmd_before
        report("whole class (ejabberd start to stop): %.1f s",
               time.monotonic() - cls.t_class)
        problems = []
        if not bf_alive:
            problems.append("the daemon died during the tests")
        if rc != 0:
            problems.append("daemon exit code %s, want 0" % rc)
        if took >= STOP_LIMIT_S:
            problems.append("daemon took %.1f s to stop" % took)
        if re.search(SANITIZER, log):
            problems.append("sanitizer report in the daemon log")
        if any(n != 1 for n in sessions.values()):
            problems.append("component sessions %s, want 1 each" % sessions)
        if served_trouble:
            problems.append("warnings/errors for served gateways: %s"
                            % served_trouble)
        if leftovers:
            problems.append("ejabberd processes left: %s" % sorted(leftovers))
        if new_epmd:
            problems.append("an epmd was started: %s" % sorted(new_epmd))
        if problems:
            raise AssertionError("; ".join(problems))

    def setUp(self):
        self.assertTrue(self.bf.alive(), "daemon died:\n%s"
                        % self.bf.log_text())
        self.alice.inbox.clear()

    def echo(self, to, body, type_="chat", subject=None, thread=None):
        self.alice.message(to, body=body, subject=subject, thread=thread,
                           type_=type_)
        reply = self.alice.wait_message(from_=to)
        self.assertEqual(reply.get("to"), self.alice.jid)
        self.assertEqual(reply.get("type"), type_)
        return reply

    # -- echo ---------------------------------------------------------------

    def test_echo_escaped_and_non_ascii_text(self):
        reply = self.echo("bob@echo.localhost", AWKWARD,
                          subject="Sujet: «ça» & <ok>", thread="th&<'\">")
        self.assertEqual(child_text(reply, "body"), AWKWARD)
        self.assertEqual(child_text(reply, "subject"), "Sujet: «ça» & <ok>")
        self.assertEqual(child_text(reply, "thread"), "th&<'\">")

    def test_echo_latency_and_order(self):
        times = []
        for i in range(20):
            t0 = time.monotonic()
            reply = self.echo("bob@echo.localhost", "one by one %d" % i)
            times.append((time.monotonic() - t0) * 1000)
            self.assertEqual(child_text(reply, "body"), "one by one %d" % i)
        times.sort()
        report("echo round trip through ejabberd, 20 one by one: median "
               "%.1f ms, max %.1f ms", times[10], times[-1])
        n = 200
        t0 = time.monotonic()
        for i in range(n):
            self.alice.message("burst@echo.localhost", body="m%03d" % i,
                               type_="chat")
        got = [child_text(self.alice.wait_message(
            from_="burst@echo.localhost"), "body") for _ in range(n)]
        report("%d echoes round trip through ejabberd: %.3f s", n,
               time.monotonic() - t0)
        self.assertEqual(got, ["m%03d" % i for i in range(n)])

    # -- IQs to the gateway domain ----------------------------------------

    def test_disco_info_identity_is_gateway(self):
        reply = self.alice.iq("echo.localhost",
                              "<query xmlns='%s'/>" % NS_DISCO_INFO)
        self.assertEqual(reply.get("type"), "result", stanza_error(reply))
        self.assertEqual(reply.get("from"), "echo.localhost")
        query = reply.find(q("query", NS_DISCO_INFO))
        self.assertIsNotNone(query)
        identities = [(i.get("category"), i.get("type"))
                      for i in query.findall(q("identity", NS_DISCO_INFO))]
        features = {f.get("var")
                    for f in query.findall(q("feature", NS_DISCO_INFO))}
        report("disco#info via ejabberd: identities %s", identities)
        self.assertIn("gateway", [c for c, _ in identities])
        for feature in (NS_DISCO_INFO, NS_VERSION, NS_PING):
            self.assertIn(feature, features)

    def test_version(self):
        reply = self.alice.iq("echo.localhost",
                              "<query xmlns='%s'/>" % NS_VERSION)
        self.assertEqual(reply.get("type"), "result", stanza_error(reply))
        query = reply.find(q("query", NS_VERSION))
        self.assertIsNotNone(query)
        self.assertEqual(child_text(query, "name", NS_VERSION), "babelfish")
        self.assertRegex(child_text(query, "version", NS_VERSION) or "",
                         r"\d+\.\d+")

    def test_ping(self):
        t0 = time.monotonic()
        reply = self.alice.iq("echo.localhost", "<ping xmlns='%s'/>" % NS_PING)
        report("ping echo.localhost via ejabberd: %.1f ms",
               (time.monotonic() - t0) * 1000)
        self.assertEqual(reply.get("type"), "result", stanza_error(reply))
        self.assertEqual(reply.get("from"), "echo.localhost")

    def test_unknown_namespace_is_service_unavailable(self):
        check_unknown_namespace(self, self.alice,
                                ("echo.localhost", "bob@echo.localhost/res"))

    # -- durable outbox ------------------------------------------------------

    def test_durable_outbox_is_confirmed_by_ejabberd(self):
        mark = self.bf.mark()
        t0 = time.monotonic()
        for i in range(20):
            self.alice.message("polly@parrot.localhost", body="hello %d" % i,
                               type_="chat")
        for i in range(20):
            self.alice.wait_message(
                from_="polly@parrot.localhost",
                predicate=lambda el, i=i: child_text(el, "body")
                == "parrot: hello %d" % i)
        report("20 durable echoes delivered through ejabberd in %.3f s",
               time.monotonic() - t0)
        # The rows go once ejabberd answered the daemon's ping to its own
        # domain ("localhost"), sent after them on the same stream; one
        # ping may confirm only the first rows, the next one the rest.
        wait_for(lambda: outbox_rows(self.db) == 0, 10,
                 what="an empty outbox (%d rows)" % outbox_rows(self.db))
        report("outbox emptied %.3f s after the first send",
               time.monotonic() - t0)
        confirmed = [int(n) for n in re.findall(
            r"\[parrot\] server confirmed outbox up to (\d+)",
            self.bf.log_text(mark))]
        report("confirmations by ping: %s", confirmed)
        # Fresh database: the 20 rows were ids 1..20.
        self.assertTrue(confirmed and confirmed[-1] >= 20, confirmed)
        self.assertEqual(self.bf.count_log(r"no answer from localhost",
                                           since=mark), 0)

    # -- a domain ejabberd does not serve ----------------------------------

    def test_registration_session_and_commands(self):
        """The gateway-users flow on ejabberd, which differs from Prosody
        in how it routes probes and subscriptions."""
        gw = "echo.localhost"
        bob = roster_client(self.lab, self.ej, "bob")
        reply = bob.iq(gw, "<query xmlns='%s'>%s</query>" % (
            NS_REGISTER, form_xml({"nick": "bobby", "password": "b-pw"},
                                  form_type=NS_REGISTER)), type_="set")
        self.assertEqual(reply.get("type"), "result")
        bob.wait_stanza(lambda el: el.tag == q("presence")
                        and el.get("from") == gw
                        and el.get("type") == "subscribe",
                        what="subscribe from the gateway")
        self.bf.wait_log(r"session started for bob@localhost", timeout=10)
        reply = bob.iq(gw, "<query xmlns='%s'/>" % NS_REGISTER)
        self.assertEqual(form_fields(reply)["nick"][1], ["bobby"])
        self.assertNotIn("b-pw", ET.tostring(reply, "unicode"))
        reply, cmd = command(bob, "configure", to=gw)
        self.assertEqual(cmd.get("status"), "executing")
        reply, cmd = command(bob, "configure", to=gw, action="complete",
                             sessionid=cmd.get("sessionid"),
                             form=form_xml({"nick": "bob2"}))
        self.assertEqual(cmd.get("status"), "completed")
        bob.message(gw, body="help", type_="chat")
        help_ = bob.wait_message(from_=gw, predicate=lambda el:
                                 "configure" in (child_text(el, "body") or ""))
        self.assertEqual(help_.get("type"), "chat")
        mark = self.bf.mark()
        reply = bob.iq(gw, "<query xmlns='%s'><remove/></query>" % NS_REGISTER,
                       type_="set")
        self.assertEqual(reply.get("type"), "result")
        self.bf.wait_log(r"session stopped for bob@localhost", since=mark)
        bob.disconnect()

    def test_unserved_domain_is_not_authorized_and_retried(self):
        line = self.bf.wait_log(r"^.*bad\.localhost.*not-authorized.*$",
                                timeout=10).group(0)
        report("daemon says: %s", line.strip())
        self.assertRegex(line, r"(?i)secret")
        self.assertRegex(line, r"hosts")
        self.assertNotIn("s3cret", self.bf.log_text())
        # It keeps retrying: a second refusal in ejabberd's log.
        wait_t0 = time.monotonic()
        self.ej.wait_log(r"Failed external component \S+ authentication "
                         r"for bad\.localhost from", timeout=10, count=2)
        self.assertGreaterEqual(self.bf.count_log(r"not-authorized"), 2)
        self.assertEqual(self.ej.count_auth("bad.localhost"), 0)
        self.assertRegex(self.ej.log_text(),
                         r"Domain bad\.localhost is unconfigured")
        # With reconnect_min = 1 s (doubled after not-authorized): no hot
        # loop.
        elapsed = time.monotonic() - self.t_daemon
        attempts = self.ej.count_auth_failed("bad.localhost")
        report("bad.localhost: %d handshakes refused by ejabberd in %.1f s "
               "(waited %.1f s for the 2nd)", attempts, elapsed,
               time.monotonic() - wait_t0)
        self.assertLessEqual(attempts, 2 + elapsed / 1.0)
        # The served gateways did not notice.
        reply = self.echo("bob@echo.localhost", "still fine")
        self.assertEqual(child_text(reply, "body"), "still fine")
        self.assertEqual(self.ej.count_auth("echo.localhost"), 1)


if __name__ == "__main__":
    main()
