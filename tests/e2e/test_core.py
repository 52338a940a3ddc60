"""End-to-end tests of the core runtime: the daemon against a real Prosody,
with the echo transport built in ([echo1]) and loaded as a module
([echo2], echo_so.so), and the command-line options."""
import re
import time

from harness import (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION,
                     E2ETestCase, Lab, babelfish_config,
                     check_unknown_namespace, child_text, main, q, report,
                     stanza_error)

GATEWAYS = {
    "echo1": {"transport": "echo", "domain": "echo.localhost",
              "secret": "s3cret"},
    "echo2": {"transport": "echo_so", "domain": "echo2.localhost",
              "secret": "s3cret2"},
}
DOMAINS = ("echo.localhost", "echo2.localhost")
SANITIZER = r"AddressSanitizer|LeakSanitizer|runtime error:"


def check_echo(test, client, to, body, subject=None, thread=None,
               type_="chat", timeout=10):
    """Sends a message to `to` and checks the echo: from `to`, to the
    sender's full JID, same body/subject/thread/type."""
    client.message(to, body=body, subject=subject, thread=thread,
                   type_=type_)
    reply = client.wait_message(from_=to, timeout=timeout)
    test.assertEqual(reply.get("to"), client.jid)
    test.assertEqual(child_text(reply, "body"), body)
    test.assertEqual(child_text(reply, "subject"), subject)
    test.assertEqual(child_text(reply, "thread"), thread)
    if type_ in (None, "normal"):
        test.assertIn(reply.get("type"), (None, "normal"))
    else:
        test.assertEqual(reply.get("type"), type_)
    return reply


class CoreTest(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = Lab("core")
        try:
            cls.prosody = cls.lab.prosody({"echo.localhost": "s3cret",
                                           "echo2.localhost": "s3cret2"})
            t0 = time.monotonic()
            cls.bf = cls.lab.babelfish(
                babelfish_config(cls.lab, cls.prosody, GATEWAYS))
            for domain in DOMAINS:
                cls.prosody.wait_auth(domain, timeout=10, daemon=cls.bf)
            report("daemon start -> both components authenticated: %.2f s",
                   time.monotonic() - t0)
            cls.alice = cls.lab.client(cls.prosody, "alice")
        except BaseException:
            cls.lab.dump_logs()
            cls.lab.close()
            raise

    @classmethod
    def tearDownClass(cls):
        # Nothing in this class may cost a component its stream: one
        # session per domain for the whole run, and no stream error.
        sessions = {d: cls.prosody.count_auth(d) for d in DOMAINS}
        stream_errors = re.findall(r"^.*Disconnecting component.*$",
                                   cls.prosody.debug_text(), re.M)
        rc, took = cls.bf.stop(timeout=10)
        report("daemon stop after the core tests: exit %s in %.2f s", rc, took)
        report("component sessions during the core tests: %s", sessions)
        log = cls.bf.log_text()
        cls.lab.close()
        problems = []
        if rc != 0:
            problems.append("daemon exit code %s, want 0" % rc)
        if re.search(SANITIZER, log):
            problems.append("sanitizer report in the daemon log")
        if any(n != 1 for n in sessions.values()):
            problems.append("component sessions %s, want 1 each" % sessions)
        if stream_errors:
            problems.append("prosody closed a component stream: %s"
                            % stream_errors)
        if problems:
            cls.lab.dump_logs()
            raise AssertionError("; ".join(problems))

    def setUp(self):
        self.assertTrue(self.bf.alive(), "daemon died:\n%s" % self.bf.log_text())
        self.alice.inbox.clear()

    # -- echo ---------------------------------------------------------------

    def test_echo_builtin_transport(self):
        check_echo(self, self.alice, "bob@echo.localhost", "hello",
                   subject="greeting", thread="t-1", type_="chat")

    def test_echo_module_transport(self):
        check_echo(self, self.alice, "bob@echo2.localhost", "hello module",
                   subject="via .so", thread="t-2", type_="chat")

    def test_echo_keeps_type(self):
        for type_ in (None, "normal", "headline", "chat"):
            with self.subTest(type=type_):
                check_echo(self, self.alice, "carol@echo.localhost",
                           "type %s" % type_, type_=type_)

    def test_echo_escaped_and_non_ascii_text(self):
        for domain in DOMAINS:
            with self.subTest(domain=domain):
                check_echo(self, self.alice, "bob@" + domain,
                           "<>&'\" Grüße 🐟 日本語 <b>not markup</b> &amp;",
                           subject="Sujet: «ça» & <ok>",
                           thread="th&<'\">", type_="chat")

    def test_echo_multiline_and_whitespace_body(self):
        # No CR: Prosody 0.12 serialises it raw, so any XML parser after it
        # turns CR LF into LF (XML 1.0 section 2.11).
        check_echo(self, self.alice, "bob@echo.localhost",
                   "  line one\n\tline two\n\nline three  ")

    def test_echo_burst_in_order(self):
        n = 200
        t0 = time.monotonic()
        for i in range(n):
            self.alice.message("burst@echo.localhost", body="m%03d" % i,
                               type_="chat")
        got = [child_text(self.alice.wait_message(
            from_="burst@echo.localhost", timeout=10), "body")
            for _ in range(n)]
        report("%d echoes round trip: %.3f s", n, time.monotonic() - t0)
        self.assertEqual(got, ["m%03d" % i for i in range(n)])

    # -- IQs to the gateway domain ----------------------------------------

    def test_disco_info(self):
        for domain in DOMAINS:
            with self.subTest(domain=domain):
                reply = self.alice.iq(domain,
                                      "<query xmlns='%s'/>" % NS_DISCO_INFO)
                self.assertEqual(reply.get("type"), "result",
                                 stanza_error(reply))
                self.assertEqual(reply.get("from"), domain)
                query = reply.find(q("query", NS_DISCO_INFO))
                self.assertIsNotNone(query)
                identities = [(i.get("category"), i.get("type"), i.get("name"))
                              for i in query.findall(q("identity",
                                                       NS_DISCO_INFO))]
                features = {f.get("var") for f in
                            query.findall(q("feature", NS_DISCO_INFO))}
                report("%s identities %s, features %s", domain, identities,
                       sorted(features))
                self.assertIn("gateway", [c for c, _, _ in identities])
                for feature in (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_VERSION,
                                NS_PING):
                    self.assertIn(feature, features)

    def test_disco_items(self):
        for domain in DOMAINS:
            with self.subTest(domain=domain):
                reply = self.alice.iq(domain,
                                      "<query xmlns='%s'/>" % NS_DISCO_ITEMS)
                self.assertEqual(reply.get("type"), "result",
                                 stanza_error(reply))
                self.assertIsNotNone(reply.find(q("query", NS_DISCO_ITEMS)))

    def test_version(self):
        cli = self.lab.run_babelfish("--version")
        cli_version = re.search(r"\d+\.\d+(\.\d+)?", cli.stdout + cli.stderr)
        for domain in DOMAINS:
            with self.subTest(domain=domain):
                reply = self.alice.iq(domain,
                                      "<query xmlns='%s'/>" % NS_VERSION)
                self.assertEqual(reply.get("type"), "result",
                                 stanza_error(reply))
                query = reply.find(q("query", NS_VERSION))
                self.assertIsNotNone(query)
                name = child_text(query, "name", NS_VERSION)
                version = child_text(query, "version", NS_VERSION)
                report("%s jabber:iq:version: name=%r version=%r os=%r",
                       domain, name, version,
                       child_text(query, "os", NS_VERSION))
                self.assertEqual(name, "babelfish")
                self.assertRegex(version or "", r"\d+\.\d+")
                if cli_version:
                    self.assertIn(cli_version.group(0), version)

    def test_ping(self):
        for to in DOMAINS:
            with self.subTest(to=to):
                t0 = time.monotonic()
                reply = self.alice.iq(to, "<ping xmlns='%s'/>" % NS_PING)
                report("ping %s: %.1f ms", to,
                       (time.monotonic() - t0) * 1000)
                self.assertEqual(reply.get("type"), "result",
                                 stanza_error(reply))
                self.assertEqual(reply.get("from"), to)

    def test_unknown_namespace_is_service_unavailable(self):
        check_unknown_namespace(self, self.alice,
                                ("echo.localhost", "bob@echo.localhost",
                                 "echo2.localhost", "bob@echo2.localhost/res"))

    # -- limits -------------------------------------------------------------

    def test_oversize_stanza_is_refused_and_stream_survives(self):
        bf_mark = self.bf.mark()
        auth_before = {d: self.prosody.count_auth(d) for d in DOMAINS}
        size = 2 * 1024 * 1024
        t0 = time.monotonic()
        reply = self.alice.iq(
            "echo.localhost",
            "<query xmlns='urn:example:e2e:big'>%s</query>" % ("x" * size),
            timeout=30)
        took = time.monotonic() - t0
        report("2 MiB iq -> %s %s in %.2f s", reply.get("type"),
               stanza_error(reply), took)
        self.assertEqual(reply.get("type"), "error")
        self.assertEqual(reply.get("from"), "echo.localhost")
        self.assertIn(stanza_error(reply)[1],
                      ("policy-violation", "resource-constraint"))
        # The stream survived: the next echo works at once, and neither
        # Prosody nor the daemon saw a new component session.
        check_echo(self, self.alice, "bob@echo.localhost", "after the big one")
        check_echo(self, self.alice, "bob@echo2.localhost", "other gateway")
        self.assertEqual({d: self.prosody.count_auth(d) for d in DOMAINS},
                         auth_before)
        after = self.bf.log_text(bf_mark)
        self.assertNotRegex(after, r"(?i)reconnect", after)
        self.assertTrue(self.bf.alive())


class CommandLineTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("cli")

    def tearDown(self):
        self.lab.close()

    def test_version_option(self):
        r = self.lab.run_babelfish("--version")
        report("--version: exit %d, %r", r.returncode, (r.stdout + r.stderr)[:200])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout + r.stderr, r"\d+\.\d+\.\d+")

    def _good_config(self):
        # Only a port number is needed: --check-config does not connect.
        class FakeProsody:
            component_port = 5347
        return babelfish_config(self.lab, FakeProsody, GATEWAYS)

    def test_check_config_good(self):
        path = self.lab.write("good.ini", self._good_config())
        r = self.lab.run_babelfish("--check-config", "-c", path)
        report("--check-config good: exit %d, %r", r.returncode,
               (r.stdout + r.stderr)[:300])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def _expect_error_at(self, name, text, line, pattern=None):
        path = self.lab.write(name, text)
        r = self.lab.run_babelfish("--check-config", "-c", path)
        out = r.stdout + r.stderr
        report("--check-config %s: exit %d, %r", name, r.returncode,
               out.strip()[:300])
        self.assertEqual(r.returncode, 1, out)
        self.assertRegex(out, r"%s:%d\b" % (re.escape(path), line))
        if pattern:
            self.assertRegex(out, pattern)

    def test_check_config_bad_value(self):
        lines = self._good_config().splitlines()
        port = next(i for i, l in enumerate(lines) if l.startswith("port ="))
        lines[port] = "port = banana"
        self._expect_error_at("bad-port.ini", "\n".join(lines) + "\n",
                              port + 1, r"(?i)port")

    def test_check_config_missing_domain(self):
        lines = self._good_config().splitlines()
        header = lines.index("[echo2]")
        domain = next(i for i in range(header, len(lines))
                      if lines[i].startswith("domain ="))
        del lines[domain]
        # conf.h: a missing key is reported at its section header's line.
        self._expect_error_at("no-domain.ini", "\n".join(lines) + "\n",
                              header + 1, r"(?i)domain")

    def test_check_config_unknown_transport(self):
        lines = self._good_config().splitlines()
        header = lines.index("[echo2]")
        transport = next(i for i in range(header, len(lines))
                         if lines[i].startswith("transport ="))
        lines[transport] = "transport = no_such_transport"
        self._expect_error_at("bad-transport.ini", "\n".join(lines) + "\n",
                              transport + 1, r"no_such_transport")


if __name__ == "__main__":
    main()
