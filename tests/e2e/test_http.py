"""End-to-end tests of the daemon's HTTP listener (`http = HOST:PORT`):
GET /health and GET /metrics while two echo gateways are attached to a
real Prosody, through a Prosody stop and restart, and a clean SIGTERM.
Also: a listener address already in use stops the start-up with a clear
error."""
import json
import re
import socket
import statistics
import time
import urllib.error
import urllib.request

from harness import (E2ETestCase, Lab, babelfish_config, child_text,
                     free_port, main, port_open, report, wait_for)

SECRET1 = "s3cret-one"
SECRET2 = "s3cret-two"
GATEWAYS = {
    "echo1": {"transport": "echo", "domain": "echo.localhost",
              "secret": SECRET1},
    "echo2": {"transport": "echo", "domain": "echo2.localhost",
              "secret": SECRET2},
}
SANITIZER = r"AddressSanitizer|LeakSanitizer|runtime error:"
STOP_LIMIT_S = 5.0
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def get(port, path, method="GET"):
    """(status, content type, body text) of one request."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return (res.status, res.headers.get("Content-Type"),
                    res.read().decode())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()


def metrics(port):
    """{(name, frozenset(labels)): value} of a /metrics scrape."""
    status, ctype, text = get(port, "/metrics")
    assert status == 200 and ctype == PROMETHEUS_TYPE, (status, ctype)
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r'(\w+)(?:\{(.*)\})? (\S+)', line)
        assert m, "bad metric line %r" % line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"',
                                      m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def gw(section):
    return frozenset({("gateway", section)})


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class HttpTest(E2ETestCase):
    def setUp(self):
        self.lab = Lab("http")

    def tearDown(self):
        self.lab.close()

    def health(self, port):
        status, ctype, body = get(port, "/health")
        self.assertEqual(ctype, "application/json")
        return status, json.loads(body)

    def test_health_metrics_through_a_prosody_restart(self):
        prosody = self.lab.prosody({"echo.localhost": SECRET1,
                                    "echo2.localhost": SECRET2})
        port = free_port()
        bf = self.lab.babelfish(babelfish_config(
            self.lab, prosody, GATEWAYS, http="127.0.0.1:%d" % port))
        prosody.wait_auth("echo.localhost", daemon=bf)
        prosody.wait_auth("echo2.localhost", daemon=bf)
        bf.wait_log(r"http: listening on 127\.0\.0\.1:%d" % port)

        # Both sessions online: 200 "ok". The handshake is logged by
        # Prosody a moment before the daemon reads its answer.
        def healthy():
            status, doc = self.health(port)
            return (status, doc) if status == 200 else None
        status, doc = wait_for(healthy, 5, what="/health 200")
        self.assertEqual(doc["status"], "ok")
        self.assertEqual(doc["gateways"], {
            "echo1": {"domain": "echo.localhost", "connected": True,
                      "outbox": 0},
            "echo2": {"domain": "echo2.localhost", "connected": True,
                      "outbox": 0},
        })
        status, _, body = get(port, "/health", method="HEAD")
        self.assertEqual((status, body), (200, ""))

        before = metrics(port)
        self.assertEqual(before[("babelfish_gateway_connected", frozenset({
            ("gateway", "echo1"), ("domain", "echo.localhost"),
            ("transport", "echo")}))], 1)
        self.assertEqual(before[("babelfish_connects_total", gw("echo2"))], 1)
        self.assertEqual(before[("babelfish_outbox_stanzas", gw("echo1"))], 0)
        self.assertIn(("babelfish_write_queue_bytes", gw("echo2")), before)
        self.assertIn(("babelfish_stanza_errors_sent_total", gw("echo1")),
                      before)
        self.assertIn(("babelfish_oversize_stanzas_total", gw("echo1")),
                      before)
        self.assertGreater(before[("babelfish_uptime_seconds", frozenset())], 0)

        # An echo moves echo1's counters, not echo2's.
        alice = self.lab.client(prosody, "alice")
        body_text = "via http test %s" % alice.new_id()
        alice.message("bob@echo.localhost", body=body_text, type_="chat")
        reply = alice.wait_message(from_="bob@echo.localhost")
        self.assertEqual(child_text(reply, "body"), body_text)
        after = metrics(port)
        for name in ("babelfish_stanzas_received_total",
                     "babelfish_stanzas_sent_total",
                     "babelfish_bytes_received_total",
                     "babelfish_bytes_sent_total"):
            self.assertGreater(after[(name, gw("echo1"))],
                               before[(name, gw("echo1"))], name)
        report("echo1 stanzas received %d -> %d, sent %d -> %d",
               before[("babelfish_stanzas_received_total", gw("echo1"))],
               after[("babelfish_stanzas_received_total", gw("echo1"))],
               before[("babelfish_stanzas_sent_total", gw("echo1"))],
               after[("babelfish_stanzas_sent_total", gw("echo1"))])

        # No secret in any answer.
        for path in ("/health", "/metrics"):
            text = get(port, path)[2]
            self.assertNotIn(SECRET1, text)
            self.assertNotIn(SECRET2, text)

        status, ctype, body = get(port, "/hooks/deploy", method="POST")
        self.assertEqual((status, ctype), (404, "application/json"))
        self.assertEqual(json.loads(body),
                         {"error": "no webhook gateway is configured"})
        status, _, _ = get(port, "/nope")
        self.assertEqual(status, 404)
        status, _, _ = get(port, "/metrics", method="PUT")
        self.assertEqual(status, 405)

        # Request latency, keep-alive off (a new connection each time, as
        # a monitor does).
        for path in ("/health", "/metrics"):
            times = []
            for _ in range(100):
                t0 = time.perf_counter()
                self.assertEqual(get(port, path)[0], 200)
                times.append(time.perf_counter() - t0)
            times.sort()
            report("GET %s: median %.2f ms, p99 %.2f ms (100 requests, "
                   "urllib client)", path, statistics.median(times) * 1e3,
                   times[98] * 1e3)
        report("daemon VmRSS with http set, 2 gateways online: %d KiB",
               rss_kib(bf.pid))
        alice.disconnect()

        # Prosody goes away: 503 "degraded", both disconnected.
        mark = bf.mark()
        prosody.stop(timeout=10)
        bf.wait_log(r"(?i)reconnect", timeout=5, since=mark)

        def degraded():
            status, doc = self.health(port)
            return (status, doc) if status == 503 else None
        status, doc = wait_for(degraded, 5, what="/health 503")
        self.assertEqual(doc["status"], "degraded")
        self.assertFalse(doc["gateways"]["echo1"]["connected"])
        self.assertFalse(doc["gateways"]["echo2"]["connected"])
        down = metrics(port)
        self.assertEqual(down[("babelfish_gateway_connected", frozenset({
            ("gateway", "echo2"), ("domain", "echo2.localhost"),
            ("transport", "echo")}))], 0)

        # Back: 200 again once both sessions are re-established.
        prosody.start()
        prosody.wait_auth("echo.localhost", count=2, daemon=bf)
        prosody.wait_auth("echo2.localhost", count=2, daemon=bf)
        status, doc = wait_for(healthy, 5, what="/health 200 again")
        self.assertEqual(doc["status"], "ok")
        self.assertEqual(metrics(port)[("babelfish_connects_total",
                                        gw("echo1"))], 2)

        # SIGTERM with a monitor's connection open: exit 0 within 5 s,
        # the listener gone.
        idle = socket.create_connection(("127.0.0.1", port))
        idle.sendall(b"GET /health HTT")
        rc, took = bf.stop(timeout=STOP_LIMIT_S + 5)
        idle.close()
        report("SIGTERM -> exit %s in %.3f s", rc, took)
        self.assertEqual(rc, 0)
        self.assertLess(took, STOP_LIMIT_S)
        self.assertFalse(port_open(port))
        self.assertNotRegex(bf.log_text(), SANITIZER)

    def test_address_in_use_stops_start_up(self):
        prosody = self.lab.prosody({"echo.localhost": SECRET1})
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        try:
            cfg = self.lab.write("inuse.ini", babelfish_config(
                self.lab, prosody, {"echo1": GATEWAYS["echo1"]},
                http="127.0.0.1:%d" % port))
            r = self.lab.run_babelfish("-c", cfg)
        finally:
            taken.close()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, r"http: cannot listen on 127\.0\.0\.1:%d: "
                         r".*[Aa]ddress already in use" % port)
        self.assertNotRegex(r.stderr, SANITIZER)
        self.assertEqual(prosody.count_auth("echo.localhost"), 0)


if __name__ == "__main__":
    main()
