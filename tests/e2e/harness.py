"""End-to-end test harness: a private Prosody, the babelfish daemon, and
XMPP clients (slixmpp) on loopback, driven synchronously from unittest.

Environment (set by tests/CMakeLists.txt):
  BABELFISH     path of the daemon
  BF_MODULES    folder holding echo_so.so
  BF_TEST_TMP   scratch folder (a unique subfolder is made per Lab)
  BF_SOURCE_DIR source tree (unused here, available to tests)
  BF_KEEP_TMP=1 keep the scratch folders even when every test passes

Everything started here runs in its own process group with a parent-death
signal, and is stopped by PID in Lab.close() / atexit, so no Prosody or
babelfish outlives the test run even when it fails or is killed.

Prosody recipe: /work/shared/PROTOCOL-NOTES.md section 4.1 (run_as_root
variant: no setpriv/chown needed when the tests run as root in CI).
Ejabberd (same interface as Prosody): section 4.2, see the class.
IRC: NgIRCd (plain RFC 2812) and InspIRCd + Atheme (IRCv3, accounts,
SASL) on loopback, and IrcClient, a raw synchronous IRC client; see the
classes. (Debian 12's "ergo" package is a quantum chemistry program, not
the Ergo IRC server, which Debian does not ship.)
"""
import asyncio
import atexit
import base64
import concurrent.futures
import ctypes
import hashlib
import logging
import os
import pwd
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VERSION = "jabber:iq:version"
NS_PING = "urn:xmpp:ping"

PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"

# slixmpp logs every connection error at WARNING/ERROR; the tests assert on
# what matters, so keep the output readable.
logging.basicConfig(level=logging.CRITICAL)

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    """Runs in the child between fork and exec: if the test runner dies
    (ctest timeout, ^C), the child gets SIGTERM instead of leaking."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def env_path(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("environment variable %s is not set (run through "
                           "ctest, or export it)" % name)
    return value


def q(tag, ns=NS_CLIENT):
    """Clark notation: q('body') -> '{jabber:client}body'."""
    return "{%s}%s" % (ns, tag)


def xml_escape(text):
    # CR as a character reference: a raw one would be normalised away by
    # the XML parser (XML 1.0 section 2.11).
    return (text.replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("'", "&apos;")
            .replace('"', "&quot;").replace("\r", "&#13;"))


# ---------------------------------------------------------------- ports ---

_taken_ports = set()


def _port_is_free(port):
    # No SO_REUSEADDR: a port in TIME_WAIT or LISTEN counts as taken.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A free loopback port in 20000-32000: below the Linux ephemeral range
    (32768-60999), where outgoing connections cannot grab it between our
    check and the server's bind (PROTOCOL-NOTES section 4)."""
    for _ in range(500):
        port = random.randint(20000, 32000)
        if port not in _taken_ports and _port_is_free(port):
            _taken_ports.add(port)
            return port
    raise RuntimeError("no free port found in 20000-32000")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_text(path, since=0):
    """A (log) file's text from byte offset since; "" if it doesn't exist
    (yet, or any more after a rotation)."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def file_size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def outbox_rows(db_path):
    """Rows waiting in the daemon's durable outbox (its SQLite file)."""
    db = sqlite3.connect(db_path, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()


def check_unknown_namespace(test, client, targets):
    """An iq get and set of an unknown namespace to each target gets
    cancel/service-unavailable from that target (RFC 6120 §8.4)."""
    for to in targets:
        for type_ in ("get", "set"):
            with test.subTest(to=to, type=type_):
                reply = client.iq(to, "<query xmlns='urn:example:e2e:unknown'/>",
                                  type_=type_)
                test.assertEqual(reply.get("type"), "error")
                test.assertEqual(reply.get("from"), to)
                test.assertEqual(stanza_error(reply),
                                 ("cancel", "service-unavailable"))


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value (returned) or the
    timeout expires (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


# ------------------------------------------------------------ processes ---

class Process:
    """A child process with stdout+stderr appended to a log file."""

    def __init__(self, argv, log_path, cwd=None, name=None):
        self.argv = list(argv)
        self.log_path = log_path
        self.name = name or os.path.basename(argv[0])
        self.cwd = cwd
        self.proc = None
        self.start()

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.cwd,
                start_new_session=True, preexec_fn=_child_setup)
        _live_processes.add(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return self.proc.poll()

    def log_text(self, since=0):
        return read_text(self.log_path, since)

    def mark(self):
        """An offset into the log, for log_text(since=…)/wait_log(since=…)."""
        return file_size(self.log_path)

    def count_log(self, regex, since=0):
        return len(re.findall(regex, self.log_text(since), re.M))

    def wait_log(self, regex, timeout=10, since=0, count=1):
        """Waits until regex matched count times in the log after since;
        returns the last match."""
        def found():
            matches = list(re.finditer(regex, self.log_text(since), re.M))
            return matches[count - 1] if len(matches) >= count else None
        try:
            return wait_for(found, timeout, what="%s log /%s/ x%d"
                            % (self.name, regex, count))
        except AssertionError:
            raise AssertionError(
                "%s: /%s/ not seen %d time(s) in %.1f s (alive=%s); log tail:\n%s"
                % (self.name, regex, count, timeout, self.alive(),
                   tail(self.log_text(since))))

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, timeout=5.0, sig=signal.SIGTERM):
        """Sends sig by PID and waits; SIGKILL after timeout. Returns
        (exit code, seconds from the signal to the exit). The exit code is
        -9 when it had to be killed."""
        if self.proc is None:
            return None, 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        elapsed = time.monotonic() - t0
        _live_processes.discard(self)
        return self.proc.returncode, elapsed


_live_processes = set()


@atexit.register
def _kill_leftovers():
    for p in list(_live_processes):
        try:
            p.stop(timeout=3)
        except Exception:  # noqa: BLE001 – best effort at exit
            pass


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


# -------------------------------------------------------------- Prosody ---

class XmppServer(Process):
    """What Prosody and ejabberd have in common for the tests; each says
    how to count component sessions in its own log (count_auth)."""

    def wait_auth(self, domain, count=1, timeout=10, since=0, daemon=None):
        """Waits for count component sessions of domain; fails at once
        if daemon (the process expected to connect) exits meanwhile."""
        def done():
            if daemon is not None and not daemon.alive():
                raise AssertionError("%s exited with %s before %s connected;"
                                     " log tail:\n%s" % (
                                         daemon.name, daemon.returncode(),
                                         domain, tail(daemon.log_text())))
            return self.count_auth(domain, since) >= count
        wait_for(done, timeout,
                 what="%s component authenticated x%d" % (domain, count))


class Prosody(XmppServer):
    """A private Prosody 0.12 on free loopback ports.

    components: {domain: secret}. Users alice, bob, carol, dave, erin and frank
    (password NAMEpw) on the VirtualHost "localhost". Prosody's own log
    (debug, to a file) is the referee for component connections:
    count_auth(domain)."""

    USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw",
             "dave": "davepw", "erin": "erinpw", "frank": "frankpw"}

    def __init__(self, lab, components, stanza_limit=8 * 1024 * 1024,
                 offline=False):
        """offline: keep messages to offline users (mod_offline) and
        deliver them at their next login, as a stock Prosody does."""
        self.lab = lab
        self.dir = lab.mkdir("prosody")
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data)
        os.makedirs(os.path.join(self.dir, "certs"))
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.components = dict(components)
        self.debug_log = os.path.join(self.data, "prosody.log")
        self.cfg = os.path.join(self.dir, "prosody.cfg.lua")
        lines = [
            'data_path = "%s"' % self.data,
            'pidfile = "%s/prosody.pid"' % self.data,
            'certificates = "%s/certs"' % self.dir,
            'plugin_paths = {}',
            'run_as_root = true',
            'interfaces = { "127.0.0.1" }',
            'local_interfaces = { "127.0.0.1" }',
            'c2s_ports = { %d }' % self.c2s_port,
            'component_ports = { %d }' % self.component_port,
            'component_interfaces = { "127.0.0.1" }',
            'http_ports = {}',
            'https_ports = {}',
            'modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; '
            '"register"; "posix"; %s}' % ('"offline"; ' if offline else ''),
            'modules_disabled = { "s2s"; %s}' % ('' if offline
                                                 else '"offline" '),
            'log = {',
            '  { levels = { min = "debug" }, to = "file", filename = "%s" };'
            % self.debug_log,
            '  { levels = { min = "info" }, to = "console" };',
            '}',
            'authentication = "internal_hashed"',
            'storage = "internal"',
            'c2s_require_encryption = false',
            'allow_unencrypted_plain_auth = true',
            'allow_registration = false',
            # Let big stanzas through Prosody so the daemon's own
            # max_stanza_size is what gets exercised.
            'c2s_stanza_size_limit = %d' % stanza_limit,
            'component_stanza_size_limit = %d' % stanza_limit,
            '',
            'VirtualHost "localhost"',
        ]
        for domain, secret in self.components.items():
            lines += ['', 'Component "%s"' % domain,
                      '  component_secret = "%s"' % secret]
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        for user, password in self.USERS.items():
            r = subprocess.run(
                [PROSODYCTL, "--config", self.cfg, "register", user,
                 "localhost", password],
                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=30, preexec_fn=_child_setup)
            if r.returncode != 0:
                raise RuntimeError("prosodyctl register %s failed (%d): %s%s"
                                   % (user, r.returncode, r.stdout, r.stderr))
        super().__init__([PROSODY, "-F", "--config", self.cfg],
                         os.path.join(self.dir, "console.log"),
                         cwd=self.dir, name="prosody")

    def start(self):
        super().start()
        self.wait_ready()

    def wait_ready(self, timeout=15):
        def ready():
            if not self.alive():
                raise AssertionError("prosody exited (%s):\n%s" % (
                    self.returncode(), tail(self.log_text())))
            return port_open(self.component_port) and self._c2s_answers()
        wait_for(ready, timeout, interval=0.1, what="prosody ports %d/%d"
                 % (self.c2s_port, self.component_port))

    def _c2s_answers(self):
        """True once Prosody's event loop answers a c2s stream header: a
        mere TCP connect succeeds as soon as the port is bound, before
        mod_posix installs its SIGTERM handler (a timer run by the loop)."""
        try:
            with socket.create_connection(("127.0.0.1", self.c2s_port),
                                          timeout=1) as s:
                s.sendall(b"<?xml version='1.0'?><stream:stream to='localhost'"
                          b" xmlns='jabber:client' xmlns:stream="
                          b"'http://etherx.jabber.org/streams' version='1.0'>")
                buf = b""
                while b"<stream:features" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False
                    buf += chunk
                s.sendall(b"</stream:stream>")
                return True
        except OSError:
            return False

    def restart(self):
        """SIGTERM, then start again on the same ports (same data)."""
        rc, took = self.stop(timeout=10)
        self.start()
        return rc, took

    def debug_text(self, since=0):
        return read_text(self.debug_log, since)

    def debug_mark(self):
        return file_size(self.debug_log)

    # mod_component logs these with the component host as the source, e.g.
    # "Nov 24 16:20:00 echo.localhost:component\tinfo\tExternal component
    # successfully authenticated" (mod_component.lua l.82, l.104).
    def count_auth(self, domain, since=0):
        return len(re.findall(
            r"^.*%s:component\s+info\s+External component successfully "
            r"authenticated" % re.escape(domain), self.debug_text(since), re.M))

    def count_auth_failed(self, domain, since=0):
        return len(re.findall(
            r"Component authentication failed for %s\b" % re.escape(domain),
            self.debug_text(since)))



# ------------------------------------------------------------- ejabberd ---

EJABBERDCTL = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
EJABBERD_USER = "ejabberd"

# Kills a process group when the test runner dies (this child gets SIGTERM
# through its parent-death signal) and exits once the group is gone; `wait`
# on a background sleep so the trap runs at once. (dash's kill takes no
# "--": "kill -SIG -PGID".)
_GROUP_WATCHDOG = (
    'trap \'kill -TERM -%(pgid)d 2>/dev/null && '
    '{ sleep 3; kill -KILL -%(pgid)d 2>/dev/null; }; exit 0\' TERM; '
    'while kill -0 -%(pgid)d 2>/dev/null; do sleep 1 & wait $!; done')


class Ejabberd(XmppServer):
    """A private ejabberd 23.01 on free loopback ports, with the same
    interface as Prosody: c2s_port, component_port, components {domain:
    password}, users alice/alicepw and bob/bobpw on "localhost", and
    count_auth/count_auth_failed/wait_auth read from ejabberd's own log.

    Recipe: PROTOCOL-NOTES section 4.2. It runs as the ejabberd user
    (ejabberdctl refuses anyone but root and that user) through setpriv, so
    no `su` puts it in another session, with HOME in its own folder (the
    Erlang cookie) and ERL_DIST_PORT set: no epmd is spawned, and the
    distribution port ejabberdctl talks to listens on loopback only.

    ejabberdctl does not exec the VM, so beam.smp is a grandchild: stop()
    runs `ejabberdctl stop`, then signals beam.smp by PID (from its pid
    file) and the process group; a watchdog child with the parent-death
    signal kills the group if the test runner dies without atexit."""

    USERS = Prosody.USERS

    def __init__(self, lab, components):
        self.lab = lab
        self.dir = lab.mkdir("ejabberd")
        self.etc = os.path.join(self.dir, "etc")
        for sub in ("etc", "db", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.dist_port = free_port()
        self.components = dict(components)
        # A node name per run: nothing shared with another ejabberd here.
        self.node = "bfe2e%d@localhost" % self.dist_port
        self.pid_file = os.path.join(self.dir, "ejabberd.pid")
        self.beam_pid = None
        self.watchdog = None
        self.ready_s = None
        lines = [
            "hosts:", "  - localhost",
            "loglevel: info",
            "log_rotate_count: 0",
            "default_db: mnesia",
            "auth_method: internal",
            "acme:", "  auto: false",
            "hide_sensitive_log_data: false",
            "listen:",
            "  -",
            "    port: %d" % self.c2s_port,
            '    ip: "127.0.0.1"',
            "    module: ejabberd_c2s",
            "    starttls: false",
            "  -",
            "    port: %d" % self.component_port,
            '    ip: "127.0.0.1"',
            "    module: ejabberd_service",
            # The default (true, "legacy behaviour") gives every session
            # the routes of all the listener's hosts, and ejabberd then
            # spreads echo.localhost's stanzas over every gateway's stream
            # (PROTOCOL-NOTES sections 1.7, 1.8).
            "    global_routes: false",
            "    hosts:",
        ]
        for domain, secret in self.components.items():
            lines += ["      %s:" % domain,
                      '        password: "%s"' % secret]
        lines += [
            "acl:", "  admin:", "    user: admin@localhost",
            "access_rules:", "  local:", "    allow: all",
            "modules:",
            "  mod_disco: {}", "  mod_ping: {}", "  mod_roster: {}",
            "  mod_version: {}",
        ]
        self.yml = os.path.join(self.etc, "ejabberd.yml")
        with open(self.yml, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.ctl_cfg = os.path.join(self.etc, "ejabberdctl.cfg")
        with open(self.ctl_cfg, "w") as f:
            f.write("ERL_DIST_PORT=%d\n" % self.dist_port
                    + "INET_DIST_INTERFACE=127.0.0.1\n"
                    + "ERLANG_NODE=%s\n" % self.node
                    + "EJABBERD_PID_PATH=%s\n" % self.pid_file
                    + 'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n')
        # Silences "inetrc not found".
        open(os.path.join(self.etc, "inetrc"), "w").close()
        self._give_to_ejabberd()
        try:
            super().__init__(self.ctl_argv("foreground"),
                             os.path.join(self.dir, "console.log"),
                             cwd=self.dir, name="ejabberd")
            for user, password in self.USERS.items():
                self.ctl("register", user, "localhost", password)
        except BaseException:
            self.stop()
            raise

    def _give_to_ejabberd(self):
        """ejabberdctl checks the user before reading its config: the
        folder must belong to ejabberd, and the lab root (0700 from
        mkdtemp) must let it through."""
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam(EJABBERD_USER)
        os.chmod(self.lab.root, 0o711)
        for top, dirs, files in os.walk(self.dir):
            for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                os.chown(name, pw.pw_uid, pw.pw_gid)

    def ctl_argv(self, *args):
        argv = ["env", "HOME=%s" % self.dir, EJABBERDCTL,
                "--config-dir", self.etc, "--config", self.yml,
                "--ctl-config", self.ctl_cfg,
                "--logs", os.path.join(self.dir, "log"),
                "--spool", os.path.join(self.dir, "db"), *args]
        if os.geteuid() == 0:
            argv = [SETPRIV, "--reuid=" + EJABBERD_USER,
                    "--regid=" + EJABBERD_USER, "--init-groups"] + argv
        return argv

    def ctl(self, *args, timeout=30, check=True):
        """Runs `ejabberdctl ARGS` against this node; returns the
        CompletedProcess (RuntimeError on a non-zero exit if check)."""
        r = subprocess.run(self.ctl_argv(*args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout,
                           cwd=self.dir, preexec_fn=_child_setup)
        if check and r.returncode != 0:
            raise RuntimeError("ejabberdctl %s failed (%d): %s%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def start(self):
        t0 = time.monotonic()
        super().start()
        # start_new_session: the process group is the child's PID.
        self.watchdog = Process(
            ["sh", "-c", _GROUP_WATCHDOG % {"pgid": self.proc.pid}],
            os.path.join(self.dir, "watchdog.log"), name="ejabberd-watchdog")
        self.wait_ready()
        self.ready_s = time.monotonic() - t0

    def wait_ready(self, timeout=30):
        """Until ejabberd logged that it started and both listeners
        accept; then notes the beam.smp PID."""
        def ready():
            if not self.alive():
                raise AssertionError("ejabberd exited (%s):\n%s" % (
                    self.returncode(), tail(self.log_text())))
            return (re.search(r"\bis started in the node\b", self.log_text())
                    and port_open(self.c2s_port)
                    and port_open(self.component_port))
        wait_for(ready, timeout, interval=0.1, what="ejabberd ports %d/%d"
                 % (self.c2s_port, self.component_port))
        with open(self.pid_file) as f:
            self.beam_pid = int(f.read().strip())

    def _beam_alive(self):
        return self.beam_pid is not None and \
            os.path.exists("/proc/%d" % self.beam_pid)

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """`ejabberdctl stop`, then sig to beam.smp by PID, then SIGKILL
        to the process group. Returns (exit code of ejabberdctl
        foreground, seconds taken), like Process.stop."""
        if self.proc is None:
            return None, 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            try:
                self.ctl("stop", timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self._beam_alive():
                    os.kill(self.beam_pid, sig)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        if self._beam_alive() or self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        elapsed = time.monotonic() - t0
        _live_processes.discard(self)
        if self.watchdog is not None:
            self.watchdog.stop(timeout=5)
        return self.proc.returncode, elapsed

    # ejabberd_service logs these at info/warning (23.01), e.g.
    # "[info] (tcp|<0.491.0>) Accepted external component handshake
    # authentication for echo.localhost from 127.0.0.1" and "[warning] …
    # Failed external component handshake authentication for bad.localhost
    # from 127.0.0.1: not authorized".
    def count_auth(self, domain, since=0):
        return len(re.findall(
            r"Accepted external component \S+ authentication for %s from "
            % re.escape(domain), self.log_text(since)))

    def count_auth_failed(self, domain, since=0):
        return len(re.findall(
            r"Failed external component \S+ authentication for %s from "
            % re.escape(domain), self.log_text(since)))



# ------------------------------------------------------------------ IRC ---

NGIRCD = shutil.which("ngircd") or "/usr/sbin/ngircd"
INSPIRCD = shutil.which("inspircd") or "/usr/sbin/inspircd"
ATHEME = shutil.which("atheme-services") or "/usr/bin/atheme-services"

# IRCv3 message-tags, "Escaping values": \: \s \\ \r \n; any other escaped
# character stands for itself, a lone trailing backslash is dropped.
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


def _unescape_tag_value(value):
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 1
            if i < len(value):
                out.append(_TAG_UNESCAPES.get(value[i], value[i]))
        else:
            out.append(c)
        i += 1
    return "".join(out)


def irc_parse(line):
    """(tags, source, command, params) of one IRC line without its CR LF
    (RFC 1459 section 2.3.1 plus IRCv3 message-tags): tags a dict (a tag
    without a value maps to ""), source without its ':' (None when there is
    none), command upper-cased, params a list whose last item is the
    trailing parameter when there is one."""
    tags = {}
    rest = line
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        for item in raw.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = _unescape_tag_value(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    command, _, rest = rest.partition(" ")
    params = []
    while True:
        rest = rest.lstrip(" ")
        if not rest:
            break
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
    return tags, source, command.upper(), params


def irc_nick(source):
    """The nick of a nick!user@host source (a server name stays as is)."""
    return None if source is None else source.split("!", 1)[0]


def _irc_command(line):
    return irc_parse(line)[2]


# Numerics that end a registration attempt without 001 (RFC 2812 section
# 5.2, and ERROR when the server closes the link).
_REGISTER_FAILURES = ("432", "433", "436", "437", "464", "465", "ERROR")
# SASL numerics that end an exchange (IRCv3 SASL 3.1): 903 success, the
# others a failure (908, the list of mechanisms, only comes before 904).
_SASL_DONE = ("902", "903", "904", "905", "906", "907")


class IrcClient:
    """A raw IRC client on a blocking loopback socket, driven synchronously.

    Every line received is kept, in order, in self.lines (decoded as UTF-8
    with surrogateescape, so line.encode("utf-8", "surrogateescape") gives
    the bytes back); wait_line() consumes them through self.cursor. A PING
    is answered with PONG as soon as it is read, whoever waits."""

    def __init__(self, port, timeout=10, name=None):
        self.port = port
        self.timeout = timeout
        self.name = name or "irc@%d" % port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        # Each line is its own send(): without this, Nagle holds the
        # second one until the server's delayed ACK (40 ms).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lines = []
        self.cursor = 0
        self.closed = False
        self._buf = b""
        self.nick = None
        self.caps_available = {}   # CAP LS: name -> value ("" when none)
        self.caps_enabled = set()  # CAP ACK
        self.isupport = {}         # 005 tokens: name -> value ("" when none)
        self.account = None        # after SASL: the 900 account name

    # -- I/O

    def send(self, line):
        """Sends one line; CR LF is added here (RFC 1459 section 2.3)."""
        if "\r" in line or "\n" in line:
            raise ValueError("IRC line with CR or LF: %r" % line)
        self.sock.sendall((line + "\r\n").encode("utf-8", "surrogateescape"))

    def _take(self, raw):
        line = raw.decode("utf-8", "surrogateescape")
        self.lines.append(line)
        if "PING" in line:
            _, _, command, params = irc_parse(line)
            if command == "PING":
                try:
                    self.send("PONG :%s" % (params[-1] if params else ""))
                except OSError:
                    pass

    def _fill(self, timeout):
        """One recv of at most timeout seconds; the complete lines go to
        self.lines. False once the server has closed the connection."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            if self._buf:
                self._take(self._buf.rstrip(b"\r"))
                self._buf = b""
            return False
        self._buf += chunk
        *complete, self._buf = self._buf.split(b"\n")
        for raw in complete:
            self._take(raw.rstrip(b"\r"))
        return True

    def mark(self):
        """An index into self.lines, for wait_line(since=…)."""
        return len(self.lines)

    def wait_line(self, match, timeout=None, since=None, what=None):
        """The first line from since (default: the cursor) that match
        accepts: a regex searched in the raw line, or a predicate of the raw
        line. Moves the cursor past it. AssertionError after timeout, or at
        once when the connection is closed and no line matches."""
        if callable(match):
            pred = match
        else:
            rx = re.compile(match)
            pred = rx.search
        timeout = self.timeout if timeout is None else timeout
        i = self.cursor if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            while i < len(self.lines):
                if pred(self.lines[i]):
                    self.cursor = i + 1
                    return self.lines[i]
                i += 1
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(
                    "%s: no line %s within %.1f s (closed=%s); last lines:\n%s"
                    % (self.name, what or getattr(match, "__name__", match),
                       timeout, self.closed, "\n".join(self.lines[-15:])))
            self._fill(left)

    def wait_command(self, command, test=None, timeout=None, since=None):
        """wait_line for a command (or numeric) whose parsed line
        (tags, source, command, params) test accepts; returns the parsed
        line."""
        def pred(line):
            parsed = irc_parse(line)
            return parsed[2] == command and (test is None or test(parsed))
        return irc_parse(self.wait_line(pred, timeout, since,
                                        what="%s" % command))

    def pump(self, seconds):
        """Reads (and answers PINGs) for a while."""
        deadline = time.monotonic() + seconds
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._fill(left)

    def wait_closed(self, timeout=None):
        """Until the server closes the connection (AssertionError if not)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: still open after %.1f s"
                                     % (self.name, timeout))
            self._fill(left)

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    # -- registration (RFC 2812 section 3.1, IRCv3 capability negotiation)

    def _cap_ls(self, timeout):
        """Reads the CAP LS reply, one line or several ("CAP * LS * :…"
        continuations, version 302)."""
        while True:
            _, _, _, params = self.wait_command(
                "CAP", lambda p: len(p[3]) >= 3 and p[3][1] == "LS",
                timeout)
            for item in params[-1].split():
                name, _, value = item.partition("=")
                self.caps_available[name] = value
            if not (len(params) >= 4 and params[2] == "*"):
                return

    def authenticate_plain(self, account, password, timeout=None):
        """SASL PLAIN (RFC 4616) through AUTHENTICATE, before CAP END;
        returns the final numeric ("903" on success) and sets
        self.account from 900."""
        since = self.mark()
        self.send("AUTHENTICATE PLAIN")
        line = self.wait_line(
            lambda l: _irc_command(l) in ("AUTHENTICATE",) + _SASL_DONE,
            timeout, what="AUTHENTICATE +")
        _, _, command, params = irc_parse(line)
        if command != "AUTHENTICATE":
            return command
        payload = base64.b64encode(("%s\0%s\0%s" % (account, account,
                                                    password)).encode())
        payload = payload.decode()
        # 400-byte chunks; one of exactly 400 is followed by "+".
        chunks = [payload[i:i + 400] for i in range(0, len(payload), 400)]
        if not chunks or len(chunks[-1]) == 400:
            chunks.append("+")
        for chunk in chunks:
            self.send("AUTHENTICATE %s" % chunk)
        _, _, command, params = irc_parse(self.wait_line(
            lambda l: _irc_command(l) in _SASL_DONE, timeout,
            what="SASL result"))
        if command == "903":
            for line in self.lines[since:]:
                _, _, c, p = irc_parse(line)
                if c == "900" and len(p) >= 3:
                    self.account = p[2]
        return command

    def register(self, nick, user=None, realname=None, caps=None, sasl=None,
                 password=None, timeout=None):
        """Registers as nick and waits for 001 and the end of the MOTD.
        caps: the capabilities to request (CAP LS 302 is sent when caps or
        sasl is given, even if caps is empty); sasl: (account, password)
        for SASL PLAIN. AssertionError when a capability is refused, SASL
        fails, or the server answers with an error instead of 001."""
        user = user or "e2e"
        realname = realname or nick
        want = list(caps or [])
        if sasl is not None and "sasl" not in want:
            want.append("sasl")
        negotiate = caps is not None or sasl is not None
        since = self.mark()
        if password is not None:
            self.send("PASS :%s" % password)
        if negotiate:
            self.send("CAP LS 302")
        self.send("NICK %s" % nick)
        self.send("USER %s 0 * :%s" % (user, realname))
        if negotiate:
            self._cap_ls(timeout)
            if want:
                self.send("CAP REQ :%s" % " ".join(want))
                _, _, _, params = self.wait_command(
                    "CAP", lambda p: len(p[3]) >= 3
                    and p[3][1] in ("ACK", "NAK"), timeout)
                if params[1] == "NAK":
                    raise AssertionError("%s: CAP REQ %s refused (offered: %s)"
                                         % (self.name, want,
                                            sorted(self.caps_available)))
                self.caps_enabled.update(params[-1].split())
            if sasl is not None:
                result = self.authenticate_plain(*sasl, timeout=timeout)
                if result != "903":
                    raise AssertionError("%s: SASL PLAIN as %s failed: %s"
                                         % (self.name, sasl[0], result))
            self.send("CAP END")
        _, _, command, params = irc_parse(self.wait_line(
            lambda l: _irc_command(l) in ("001",) + _REGISTER_FAILURES,
            timeout, what="001"))
        if command != "001":
            raise AssertionError("%s: registration as %s failed: %s %s"
                                 % (self.name, nick, command, params))
        self.nick = params[0]
        self.wait_line(lambda l: _irc_command(l) in ("376", "422"), timeout,
                       what="end of MOTD")
        for line in self.lines[since:]:
            _, _, command, params = irc_parse(line)
            if command == "005":
                for token in params[1:-1]:
                    name, _, value = token.partition("=")
                    self.isupport[name] = value
        return self

    # -- commands

    def _names_until_end(self, channel, since, timeout):
        """Nicks of the 353 replies for channel up to its 366 (prefixes
        and, with userhost-in-names, user@host stripped)."""
        errors = ("403", "405", "471", "473", "474", "475", "476", "477",
                  "489")

        def pred(line):
            _, _, command, params = irc_parse(line)
            return ((command == "366" or command in errors)
                    and len(params) >= 2
                    and params[1].lower() == channel.lower())
        _, _, command, params = irc_parse(self.wait_line(
            pred, timeout, since=since, what="366 for %s" % channel))
        if command != "366":
            raise AssertionError("%s: %s refused: %s %s"
                                 % (self.name, channel, command, params))
        end = self.cursor - 1
        prefixes = self.isupport.get("PREFIX", "(qaohv)~&@%+")
        prefixes = prefixes.split(")", 1)[1] if ")" in prefixes else prefixes
        nicks = set()
        for line in self.lines[since:end]:
            _, _, command, params = irc_parse(line)
            if command == "353" and len(params) >= 3 and \
                    params[-2].lower() == channel.lower():
                for entry in params[-1].split():
                    nicks.add(entry.lstrip(prefixes).split("!", 1)[0])
        return nicks

    def join(self, channel, timeout=None):
        """JOINs channel; returns the set of nicks in its NAMES reply."""
        since = self.mark()
        self.send("JOIN %s" % channel)
        return self._names_until_end(channel, since, timeout)

    def names(self, channel, timeout=None):
        since = self.mark()
        self.send("NAMES %s" % channel)
        return self._names_until_end(channel, since, timeout)

    def privmsg(self, target, text):
        self.send("PRIVMSG %s :%s" % (target, text))

    def notice(self, target, text):
        self.send("NOTICE %s :%s" % (target, text))

    def quit(self, message="bye", timeout=5):
        """QUIT, then waits for the server to close the link."""
        try:
            self.send("QUIT :%s" % message)
            self.wait_closed(timeout)
        except (OSError, AssertionError):
            pass
        self.close()


def _irc_probe(port, nick, timeout=2):
    """True once a client registration on port gets 001."""
    try:
        c = IrcClient(port, timeout=timeout, name="probe@%d" % port)
    except OSError:
        return False
    try:
        c.register(nick, timeout=timeout)
        c.quit(timeout=1)
        return True
    except (OSError, AssertionError):
        c.close()
        return False


def self_signed_certificate(folder):
    """A key and a self-signed certificate for localhost / 127.0.0.1 in
    folder: (cert path, key path, SHA-256 fingerprint "AB:CD:...")."""
    cert = os.path.join(folder, "cert.pem")
    key = os.path.join(folder, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60)
    out = subprocess.run(
        ["openssl", "x509", "-in", cert, "-noout", "-fingerprint",
         "-sha256"], check=True, capture_output=True, text=True)
    return cert, key, out.stdout.strip().split("=", 1)[1]


def _give_to(path, user):
    """chown path to user (the caller is root); returns its pwd entry."""
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return pw


class IrcServer(Process):
    """What the IRC daemons share: port, server_name, start() that waits
    until a client registration gets 001 (ready_s: seconds it took),
    restart() on the same port."""

    def start(self):
        t0 = time.monotonic()
        super().start()
        self.wait_ready()
        self.ready_s = time.monotonic() - t0

    def wait_ready(self, timeout=15):
        def ready():
            if not self.alive():
                raise AssertionError("%s exited (%s):\n%s" % (
                    self.name, self.returncode(), tail(self.log_text())))
            return port_open(self.port) and \
                _irc_probe(self.port, "e2eprobe%d" % random.randint(0, 9999))
        wait_for(ready, timeout, interval=0.05,
                 what="%s port %d" % (self.name, self.port))

    def restart(self):
        """stop() (SIGTERM by PID), then start again on the same port;
        returns stop()'s (exit code, seconds)."""
        rc, took = self.stop(timeout=10)
        self.start()
        return rc, took

    def extra_logs(self):
        return []


class NgIRCd(IrcServer):
    """A private ngIRCd 26 (Debian's) on a free loopback port: plain
    RFC 2812 with little IRCv3 (CAP LS offers multi-prefix only). Server
    name irc.localhost, nicks up to 30 characters, no PAM, ident or DNS
    lookups, no connection limit per IP and no flood penalty
    (MaxPenaltyTime = 0) so benchmarks are not throttled.

    ngIRCd will not keep uid 0 ("ServerUID must not be root(0), using
    nobody instead"), and switching itself would clear the parent-death
    signal (prctl(2): cleared when the effective uid changes), so a killed
    test runner would leak it: when the tests run as root, setpriv starts
    it as nobody and sets the parent-death signal after the switch; its
    folder is nobody's (the pid file). With --nodaemon it stays the child
    we started (stop by PID) and logs to stderr (its console log)."""

    def __init__(self, lab, name="ngircd", server_name="irc.localhost",
                 max_nick_length=30, tls=False):
        self.lab = lab
        self.dir = lab.mkdir(name)
        self.port = free_port()
        # tls: also a TLS port with a self-signed certificate for
        # localhost / 127.0.0.1; its SHA-256 fingerprint in self.fingerprint.
        self.tls_port = free_port() if tls else None
        self.fingerprint = None
        self.server_name = server_name
        self.cfg = os.path.join(self.dir, "ngircd.conf")
        self.pid_file = os.path.join(self.dir, "ngircd.pid")
        self.motd_file = os.path.join(self.dir, "ngircd.motd")
        self.ready_s = None
        with open(self.motd_file, "w") as f:
            f.write("babelfish e2e ngIRCd\n")
        lines = [
            "[Global]",
            "Name = %s" % server_name,
            "Info = babelfish e2e",
            "AdminInfo1 = babelfish e2e",
            "AdminInfo2 = loopback only",
            "AdminEMail = root@localhost",
            "Listen = 127.0.0.1",
            "Ports = %d" % self.port,
            "PidFile = %s" % self.pid_file,
            "MotdFile = %s" % self.motd_file,
            "[Limits]",
            "MaxConnections = 0",
            "MaxConnectionsIP = 0",
            "MaxJoins = 0",
            "MaxNickLength = %d" % max_nick_length,
            "MaxPenaltyTime = 0",
            "PingTimeout = 120",
            "PongTimeout = 20",
            "[Options]",
            "PAM = no",
            "Ident = no",
            "DNS = no",
            "ConnectIPv6 = no",
            "MorePrivacy = no",
        ]
        if tls:
            cert, key, self.fingerprint = self_signed_certificate(self.dir)
            if os.geteuid() == 0:
                for path in (cert, key):
                    _give_to(path, "nobody")
            lines += ["[SSL]", "CertFile = %s" % cert, "KeyFile = %s" % key,
                      "Ports = %d" % self.tls_port]
        argv = [NGIRCD, "--nodaemon", "-f", self.cfg]
        if os.geteuid() == 0:
            os.chmod(lab.root, 0o711)
            pw = _give_to(self.dir, "nobody")
            argv = [SETPRIV, "--reuid=%d" % pw.pw_uid,
                    "--regid=%d" % pw.pw_gid, "--clear-groups",
                    "--pdeathsig=TERM"] + argv
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        super().__init__(argv,
                         os.path.join(self.dir, "ngircd.log"),
                         cwd=self.dir, name=name)


class Atheme(Process):
    """Atheme 7.2 services linked to an InspIRCd (its "inspircd" protocol
    module speaks the 2.0 protocol, 1202, which InspIRCd 3 still accepts):
    NickServ (REGISTER, IDENTIFY) and SaslServ (PLAIN; with a TLS
    InspIRCd also NickServ CERT and SaslServ EXTERNAL). Runs in the
    foreground (-n, logging to its console; it then tells every user it is
    "running in debug mode"), its database in its own folder."""

    def __init__(self, ircd):
        self.ircd = ircd
        self.dir = ircd.lab.mkdir("atheme")
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data)
        self.cfg = os.path.join(self.dir, "atheme.conf")
        self.pid_file = os.path.join(self.dir, "atheme.pid")
        self.ready_s = None
        modules = ["protocol/inspircd", "backend/opensex", "crypto/pbkdf2v2",
                   "nickserv/main", "nickserv/register", "nickserv/identify",
                   "nickserv/info", "nickserv/drop", "saslserv/main",
                   "saslserv/plain"]
        if ircd.tls_port and ircd.sasl_external:
            # Client certificates: NickServ CERT ADD, SASL EXTERNAL.
            modules += ["nickserv/cert", "saslserv/external"]
        text = "".join('loadmodule "modules/%s";\n' % m for m in modules)
        text += """
serverinfo {
	name = "%(services)s";
	desc = "babelfish e2e services";
	numeric = "0BS";
	recontime = 1;
	netname = "BFe2e";
	hidehostsuffix = "users.localhost";
	adminname = "e2e";
	adminemail = "root@localhost";
	registeremail = "root@localhost";
	auth = none;
	loglevel = { admin; error; info; network; };
	maxlogins = 50;
	maxusers = 50;
	maxnicks = 5;
	maxchans = 5;
	mdlimit = 30;
	emaillimit = 10;
	emailtime = 300;
};

uplink "%(ircd)s" {
	host = "127.0.0.1";
	port = %(port)d;
	send_password = "%(password)s";
	receive_password = "%(password)s";
};

nickserv {
	nick = "NickServ";
	user = "NickServ";
	host = "%(services)s";
	real = "Nickname Services";
	maxnicks = 5;
	expire = 0;
};

saslserv {
	nick = "SaslServ";
	user = "SaslServ";
	host = "%(services)s";
	real = "SASL Authentication Agent";
};

logfile "%(log)s" { error; info; admin; network; register; };

general {
	permissive_mode = no;
	helpchan = "#help";
	maxfd = 1024;
	flood_msgs = 0;
	flood_time = 0;
	ratelimit_uses = 0;
	ratelimit_period = 0;
	kline_time = 0;
	commit_interval = 5;
	default_clonelimit = 0;
	uplink_sendq_limit = 1048576;
	language = "en";
};
""" % {"services": ircd.services_name, "ircd": ircd.server_name,
       "port": ircd.link_port, "password": ircd.link_password,
       "log": os.path.join(self.dir, "atheme.log")}
        with open(self.cfg, "w") as f:
            f.write(text)
        super().__init__([ATHEME, "-n", "-c", self.cfg, "-D", self.data,
                          "-l", os.path.join(self.dir, "atheme-main.log"),
                          "-p", self.pid_file],
                         os.path.join(self.dir, "console.log"),
                         cwd=self.dir, name="atheme")

    def start(self):
        t0 = time.monotonic()
        since = self.mark()
        super().start()
        # m_pong(): the uplink answered the PING after Atheme's burst, so
        # InspIRCd knows services.localhost and offers sasl from now on.
        self.wait_log(r"finished synching with uplink", timeout=15,
                      since=since)
        self.ready_s = time.monotonic() - t0


class InspIRCd(IrcServer):
    """An IRCv3 server on a free loopback port: Debian's InspIRCd 3.15
    with its IRCv3 modules (CAP 302, server-time, message-tags,
    echo-message, batch, labeled-response, msgid, account-tag,
    account-notify, away-notify, extended-join, multi-prefix,
    userhost-in-names, cap-notify, chghost, setname, monitor) and, when
    services is true, Atheme linked on a second loopback port for accounts
    (register_account: NickServ REGISTER) and SASL PLAIN.

    History: InspIRCd 3 has no CHATHISTORY command (that is InspIRCd 4);
    m_chanhistory replays the last `history` messages of a channel (mode
    +H, set on every new channel through defaultmodes) to whoever joins
    it, in a "chathistory" BATCH with their server-time.

    Registration: InspIRCd 3 completes a registration (001) only on its
    once-a-second timer, so every client registration takes up to 1 s;
    Lab.irc_clients() and register_accounts() register in parallel.

    No ident or DNS lookups; the resolver is pointed at 127.0.0.1 anyway so
    nothing can leave the machine. No flood penalty (fakelag off) and no
    per-IP limit, for benchmarks.

    tls: also a TLS port (tls_port; ssl_gnutls with a self-signed
    certificate for localhost / 127.0.0.1, its SHA-256 fingerprint in
    fingerprint) that asks clients for a certificate, whose SHA-256
    fingerprint sslinfo hands to services (Atheme: NickServ CERT ADD,
    SASL EXTERNAL).

    Runs in the foreground (--nofork; as root
    with --runasroot), stopped by PID, Atheme first; InspIRCd's exit code
    after SIGTERM is 10. Atheme saves its database when it stops, so the
    accounts outlive restart()."""

    def __init__(self, lab, name="inspircd", server_name="irc.localhost",
                 services=True, accounts=None, history=100,
                 max_nick_length=30, tls=False, sasl_external=True):
        self.lab = lab
        self.sasl_external = sasl_external  # Atheme's SaslServ EXTERNAL
        self.dir = lab.mkdir(name)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.fingerprint = None
        self.link_port = free_port()
        self.server_name = server_name
        self.services = services
        self.services_name = "services.localhost"
        self.link_password = uuid.uuid4().hex
        self.cfg = os.path.join(self.dir, "inspircd.conf")
        self.pid_file = os.path.join(self.dir, "inspircd.pid")
        self.motd_file = os.path.join(self.dir, "inspircd.motd")
        self.ircd_log = os.path.join(self.dir, "inspircd.log")
        self.atheme = None
        self.ready_s = None
        with open(self.motd_file, "w") as f:
            f.write("babelfish e2e InspIRCd\n")
        modules = ["cap", "ircv3", "ircv3_accounttag", "ircv3_batch",
                   "ircv3_capnotify", "ircv3_chghost", "ircv3_ctctags",
                   "ircv3_echomessage", "ircv3_invitenotify",
                   "ircv3_labeledresponse", "ircv3_msgid",
                   "ircv3_servertime", "namesx", "uhnames", "monitor",
                   "setname", "chanhistory", "services_account", "sasl",
                   "spanningtree", "svshold"]
        lines = [
            '<config format="xml">',
            '<server name="%s" description="babelfish e2e" id="0BF" '
            'network="BFe2e">' % server_name,
            '<admin name="e2e" nick="e2e" email="root@localhost">',
            '<bind address="127.0.0.1" port="%d" type="clients">' % self.port,
            '<bind address="127.0.0.1" port="%d" type="servers">'
            % self.link_port,
            '<connect name="main" allow="*" timeout="20" pingfreq="120" '
            'hardsendq="16M" softsendq="4M" recvq="64K" threshold="1000" '
            'commandrate="100000" fakelag="no" localmax="100000" '
            'globalmax="100000" useident="no" limit="100000" maxchans="100" '
            'resolvehostnames="no" uniqueusername="no">',
            '<pid file="%s">' % self.pid_file,
            '<log method="file" type="* -USERINPUT -USEROUTPUT" '
            'level="default" target="%s">' % self.ircd_log,
            '<dns server="127.0.0.1" timeout="1">',
            # Prefix modes in defaultmodes are given to the channel's
            # creator (o), H takes the parameter: lines:period.
            '<options defaultmodes="%s">' % (
                "notH %d:1d" % history if history else "not"),
            '<performance nouserdns="yes" clonesonconnect="no" '
            'quietbursts="yes">',
            '<security hidesplits="no" hideulines="no">',
            '<limits maxnick="%d" maxchan="64" maxident="10" maxhost="64" '
            'maxquit="300" maxtopic="330" maxkick="255" maxreal="128" '
            'maxaway="200">' % max_nick_length,
            '<files motd="%s">' % self.motd_file,
            '<chanhistory maxlines="%d" notice="no" bots="yes" '
            'prefixmsg="no">' % history,
            '<sasl target="%s" requiressl="no">' % self.services_name,
            '<uline server="%s" silent="yes">' % self.services_name,
            '<link name="%s" ipaddr="127.0.0.1" port="%d" '
            'allowmask="127.0.0.1/32" timeout="10" sendpass="%s" '
            'recvpass="%s">' % (self.services_name, self.link_port,
                                self.link_password, self.link_password),
        ] + ['<module name="%s">' % m for m in modules]
        if tls:
            cert, key, self.fingerprint = self_signed_certificate(self.dir)
            lines += [
                '<module name="ssl_gnutls">', '<module name="sslinfo">',
                '<sslprofile name="e2e" provider="gnutls" certfile="%s" '
                'keyfile="%s" hash="sha256" requestclientcert="yes">'
                % (cert, key),
                '<bind address="127.0.0.1" port="%d" type="clients" '
                'sslprofile="e2e">' % self.tls_port]
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        argv = [INSPIRCD, "--config=%s" % self.cfg, "--nofork"]
        if os.geteuid() == 0:
            argv.append("--runasroot")
        try:
            super().__init__(argv, os.path.join(self.dir, "console.log"),
                             cwd=self.dir, name=name)
            if accounts:
                self.register_accounts(accounts)
        except BaseException:
            self.stop()
            raise

    def start(self):
        t0 = time.monotonic()
        super().start()
        if self.services:
            if self.atheme is None:
                self.atheme = Atheme(self)
            else:
                self.atheme.start()
        self.ready_s = time.monotonic() - t0

    def stop(self, timeout=5.0, sig=signal.SIGTERM):
        """Atheme first (so it does not log a reconnect), then InspIRCd;
        returns InspIRCd's (exit code, seconds) as Process.stop."""
        if self.atheme is not None:
            self.atheme.stop(timeout=timeout)
        return super().stop(timeout=timeout, sig=sig)

    def register_account(self, account, password, email=None, timeout=10):
        """Creates a services account the way a user does: registers the
        nick account and sends NickServ REGISTER. Returns the seconds it
        took."""
        if not self.services:
            raise RuntimeError("InspIRCd started without services")
        t0 = time.monotonic()
        c = IrcClient(self.port, timeout=timeout, name="register@%d" % self.port)
        try:
            c.register(account)
            c.privmsg("NickServ", "REGISTER %s %s" % (
                password, email or "%s@example.com" % account))
            _, _, _, params = c.wait_command(
                "NOTICE", lambda p: irc_nick(p[1]) == "NickServ")
            if " is now registered to " not in params[-1]:
                raise AssertionError("NickServ REGISTER %s: %s"
                                     % (account, params[-1]))
            c.quit(timeout=2)
        finally:
            c.close()
        return time.monotonic() - t0

    def register_accounts(self, accounts, timeout=10):
        """register_account for each {account: password}, in parallel
        threads; returns the seconds it took."""
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(accounts)) as pool:
            for f in [pool.submit(self.register_account, a, p,
                                  timeout=timeout)
                      for a, p in accounts.items()]:
                f.result()
        return time.monotonic() - t0

    def extra_logs(self):
        logs = [("inspircd.log", self.ircd_log)]
        if self.atheme is not None:
            logs.append(("atheme console", self.atheme.log_path))
        return logs


# ------------------------------------------------------------ babelfish ---

class Babelfish(Process):
    def __init__(self, lab, config_text, name="babelfish", extra_args=()):
        self.dir = lab.mkdir(name)
        self.cfg = os.path.join(self.dir, "babelfish.ini")
        with open(self.cfg, "w") as f:
            f.write(config_text)
        super().__init__([lab.babelfish_path, "-c", self.cfg, *extra_args],
                         os.path.join(self.dir, "babelfish.log"),
                         cwd=self.dir, name=name)


def babelfish_config(lab, prosody, gateways, **core):
    """INI text: [babelfish] with the test defaults (overridable through
    core) and one section per gateway: {section: {key: value}}."""
    values = {
        "server": "127.0.0.1",
        "port": prosody.component_port,
        "database": os.path.join(lab.root, "bf.db"),
        "log_level": "debug",
        "modules_dir": lab.modules_dir,
        "keepalive_interval": 60,
        "ping_interval": 120,
        "ping_timeout": 60,
        "reconnect_min": 1,
        "reconnect_max": 4,
        "max_stanza_size": "512K",
    }
    values.update(core)
    out = ["[babelfish]"] + ["%s = %s" % kv for kv in values.items()]
    for section, keys in gateways.items():
        out += ["", "[%s]" % section] + ["%s = %s" % kv for kv in keys.items()]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------- client ---

class Client:
    """A slixmpp c2s client used synchronously: every call runs the lab's
    event loop until its own work is done (incoming stanzas are queued by
    the handlers meanwhile and inspected with wait_* afterwards)."""

    def __init__(self, lab, user, resource=None):
        self.lab = lab
        self.loop = lab.loop
        self.resource = resource or "e2e-%s" % uuid.uuid4().hex[:6]
        self.jid = "%s@localhost/%s" % (user, self.resource)
        self.password = Prosody.USERS[user]
        self.inbox = []          # ET elements (iq/message/presence), in order
        self._arrived = asyncio.Event()
        self.xmpp = None

    def _on_stanza(self, stanza):
        self.inbox.append(stanza.xml)
        self._arrived.set()

    def connect(self, port, timeout=10):
        xmpp = slixmpp.ClientXMPP(self.jid, self.password)
        xmpp.loop = self.loop
        for name in ("iq", "message", "presence"):
            # A handler per kind so the stanza objects are whole.
            xmpp.register_handler(Callback(
                "e2e-" + name, MatchXPath("{%s}%s" % (NS_CLIENT, name)),
                self._on_stanza))
        started = self.loop.create_future()

        def session_start(_):
            xmpp.send_presence()
            if not started.done():
                started.set_result(True)

        def failed(what):
            def cb(*_):
                if not started.done():
                    started.set_exception(AssertionError(
                        "%s: %s" % (self.jid, what)))
            return cb

        xmpp.add_event_handler("session_start", session_start)
        xmpp.add_event_handler("failed_auth", failed("authentication failed"))
        xmpp.add_event_handler("connection_failed", failed("connection failed"))
        xmpp.connect(("127.0.0.1", port), force_starttls=False,
                     disable_starttls=True)
        self.xmpp = xmpp
        try:
            self.run(asyncio.wait_for(started, timeout))
        except BaseException:
            xmpp.abort()
            self.xmpp = None
            raise
        return self

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def pump(self, seconds):
        """Lets the loop run (deliver/receive) for a while."""
        self.run(asyncio.sleep(seconds))

    def send_raw(self, text):
        self.xmpp.send_raw(text)
        self.pump(0)

    def new_id(self):
        return "e2e-" + uuid.uuid4().hex[:12]

    def wait_stanza(self, predicate, timeout=10, what="stanza"):
        """Removes and returns the first inbox element satisfying
        predicate, waiting up to timeout seconds."""
        async def waiter():
            deadline = self.loop.time() + timeout
            while True:
                for i, el in enumerate(self.inbox):
                    if predicate(el):
                        return self.inbox.pop(i)
                left = deadline - self.loop.time()
                if left <= 0:
                    raise AssertionError(
                        "%s: no %s within %.1f s; inbox: %s" % (
                            self.jid, what, timeout,
                            [ET.tostring(e, "unicode")[:300]
                             for e in self.inbox]))
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    pass
        return self.run(waiter())

    def iq(self, to, payload, type_="get", timeout=10, id_=None):
        """Sends <iq type=type_ to=to id=…>payload</iq> (payload: raw XML
        text) and returns the reply element (result or error)."""
        id_ = id_ or self.new_id()
        self.send_raw("<iq type='%s' to='%s' id='%s'>%s</iq>"
                      % (type_, xml_escape(to), id_, payload))
        return self.wait_stanza(
            lambda el: el.tag == q("iq") and el.get("id") == id_
            and el.get("type") in ("result", "error"),
            timeout, what="iq reply id=%s from %s" % (id_, to))

    def message(self, to, body=None, subject=None, thread=None, type_=None,
                id_=None):
        id_ = id_ or self.new_id()
        parts = []
        if subject is not None:
            parts.append("<subject>%s</subject>" % xml_escape(subject))
        if body is not None:
            parts.append("<body>%s</body>" % xml_escape(body))
        if thread is not None:
            parts.append("<thread>%s</thread>" % xml_escape(thread))
        type_attr = " type='%s'" % type_ if type_ else ""
        self.send_raw("<message to='%s' id='%s'%s>%s</message>"
                      % (xml_escape(to), id_, type_attr, "".join(parts)))
        return id_

    def wait_message(self, from_=None, timeout=10, predicate=None):
        def match(el):
            return (el.tag == q("message")
                    and (from_ is None or el.get("from") == from_)
                    and (predicate is None or predicate(el)))
        return self.wait_stanza(match, timeout,
                                what="message from %s" % (from_ or "anyone"))

    def disconnect(self):
        if self.xmpp is None:
            return
        xmpp, self.xmpp = self.xmpp, None
        try:
            if xmpp.transport is not None:
                self.run(asyncio.wait_for(xmpp.disconnect(wait=0.5), 3))
        except Exception:  # noqa: BLE001 – a dead server is fine here
            pass
        if xmpp.transport is not None:
            xmpp.abort()
        self.pump(0.05)


def child_text(el, tag, ns=NS_CLIENT):
    child = el.find(q(tag, ns))
    return None if child is None else (child.text or "")


def stanza_error_text(el):
    """The <text/> of an error stanza, or None."""
    text = el.find("%s/{%s}text" % (q("error"), NS_STANZAS))
    return None if text is None else (text.text or "")


def stanza_error(el):
    """(type, condition) of an error stanza, or None."""
    err = el.find(q("error"))
    if err is None:
        return None
    cond = None
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and \
                not child.tag.endswith("}text"):
            cond = child.tag.split("}", 1)[1]
            break
    return err.get("type"), cond


# ------------------------------------------------------------- raw comp ---

class RawComponent:
    """A bare XEP-0114 session on a socket, to check a Prosody setup
    without the daemon (harness self-test)."""

    def __init__(self, port, domain, secret, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock.sendall((
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
            " xmlns:stream='http://etherx.jabber.org/streams' to='%s'>"
            % domain).encode())
        header = self.recv_until(rb"<stream:stream[^>]*>")
        m = re.search(r"\bid=['\"]([^'\"]+)['\"]", header)
        if not m:
            raise AssertionError("no stream id in %r" % header)
        digest = hashlib.sha1((m.group(1) + secret).encode()).hexdigest()
        self.sock.sendall(("<handshake>%s</handshake>" % digest).encode())
        self.handshake_reply = self.recv_until(
            rb"<handshake\s*/>|</stream:stream>")

    def recv_until(self, pattern, timeout=5):
        buf = b""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, buf):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
        return buf.decode("utf-8", "replace")

    def send(self, text):
        self.sock.sendall(text.encode())

    def close(self):
        try:
            self.sock.sendall(b"</stream:stream>")
        except OSError:
            pass
        self.sock.close()


# ------------------------------------------------------------------ Lab ---

_roots = []
_keep_roots = False


@atexit.register
def _remove_roots():
    if _keep_roots or os.environ.get("BF_KEEP_TMP") == "1":
        for r in _roots:
            print("e2e: scratch folder kept: %s" % r, file=sys.stderr)
        return
    for r in _roots:
        shutil.rmtree(r, ignore_errors=True)


class Lab:
    """Owns one scratch folder, one asyncio loop, and every process and
    client it starts. Use as a context manager or call close()."""

    def __init__(self, name="lab"):
        base = os.environ.get("BF_TEST_TMP") or tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="e2e-%s-" % name, dir=base)
        _roots.append(self.root)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.processes = []
        self.clients = []
        self._irc_clients = []
        self._n = 0

    @property
    def babelfish_path(self):
        return env_path("BABELFISH")

    @property
    def modules_dir(self):
        return env_path("BF_MODULES")

    def mkdir(self, name):
        self._n += 1
        path = os.path.join(self.root, "%02d-%s" % (self._n, name))
        os.makedirs(path)
        return path

    def prosody(self, components, **kw):
        p = Prosody(self, components, **kw)
        self.processes.append(p)
        return p

    def ejabberd(self, components):
        e = Ejabberd(self, components)
        self.processes.append(e)
        return e

    def ngircd(self, **kw):
        """A started NgIRCd (see the class for kw)."""
        n = NgIRCd(self, **kw)
        self.processes.append(n)
        return n

    def inspircd(self, **kw):
        """A started InspIRCd, with Atheme unless services=False (see the
        class for kw)."""
        i = InspIRCd(self, **kw)
        self.processes.append(i)
        return i

    def irc_client(self, server, nick=None, **register_kw):
        """An IrcClient to server (NgIRCd/InspIRCd), registered as nick
        (register()'s keywords) unless nick is None; closed by close()."""
        c = IrcClient(server.port, name=nick)
        self._irc_clients.append(c)
        if nick is not None:
            c.register(nick, **register_kw)
        return c

    def irc_clients(self, server, specs):
        """Several registered IrcClients, registering in parallel threads
        (InspIRCd 3 takes up to 1 s per registration): specs is a list of
        nicks or (nick, {register() keywords}); returns them in order."""
        specs = [(s, {}) if isinstance(s, str) else s for s in specs]
        clients = []
        for nick, _ in specs:
            clients.append(IrcClient(server.port, name=nick))
            self._irc_clients.append(clients[-1])
        with concurrent.futures.ThreadPoolExecutor(len(specs)) as pool:
            for f in [pool.submit(c.register, nick, **kw)
                      for c, (nick, kw) in zip(clients, specs)]:
                f.result()
        return clients

    def babelfish(self, config_text, **kw):
        b = Babelfish(self, config_text, **kw)
        self.processes.append(b)
        return b

    def client(self, prosody, user="alice", resource=None):
        c = Client(self, user, resource).connect(prosody.c2s_port)
        self.clients.append(c)
        return c

    def run_babelfish(self, *args, timeout=10):
        """Runs the daemon to completion (CLI options); returns
        CompletedProcess with text stdout/stderr."""
        return subprocess.run([self.babelfish_path, *args],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, cwd=self.root,
                              preexec_fn=_child_setup)

    def write(self, name, text):
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def dump_logs(self, out=sys.stderr):
        for p in self.processes:
            print("----- %s log (%s), last lines -----\n%s"
                  % (p.name, p.log_path, tail(p.log_text(), 60)), file=out)
            if isinstance(p, Prosody):
                print("----- prosody debug log, last lines -----\n%s"
                      % tail(p.debug_text(), 40), file=out)
            for title, path in getattr(p, "extra_logs", list)():
                print("----- %s %s, last lines -----\n%s"
                      % (p.name, title, tail(read_text(path), 40)), file=out)

    def close(self):
        for c in self.clients:
            c.disconnect()
        self.clients = []
        for c in self._irc_clients:
            c.close()
        self._irc_clients = []
        # babelfish first, so it does not log a pointless reconnect storm.
        for p in sorted(self.processes,
                        key=lambda p: isinstance(p, (Prosody, Ejabberd,
                                                     IrcServer))):
            p.stop(timeout=5)
        # Cancel what slixmpp left running (its send queue and filters)
        # so closing the loop does not warn about pending coroutines.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(
                asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class E2ETestCase(unittest.TestCase):
    """Base class: prints the labs' logs when a test fails or errors and
    keeps the scratch folder for inspection. Subclasses put their Lab(s)
    in self.lab (per test) or cls.lab (per class)."""

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            global _keep_roots
            _keep_roots = True
            lab = getattr(self, "lab", None)
            if lab is not None:
                lab.dump_logs()
        return out


def report(fmt, *args):
    """Prints a measured figure so it shows in the ctest log."""
    print("  [measure] " + (fmt % args if args else fmt), flush=True)


def main():
    unittest.main(verbosity=2)
