"""What the IRC transport's end-to-end tests (test_irc*.py) share: the
gateway's address, the MUC namespaces, room JIDs, joining a room the way
a MUC client does, and a TestCase that starts babelfish with one [irc]
section and checks at the end that it stopped cleanly."""
from harness import (E2ETestCase, Lab, babelfish_config, child_text, irc_nick,
                     q)

GW = "irc.localhost"
SECRET = "s3cret"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_SID = "urn:xmpp:sid:0"
SANITIZER = r"AddressSanitizer|LeakSanitizer|runtime error:"


def room(channel, server="localhost"):
    return "%s%%%s@%s" % (channel, server, GW)


def codes(el):
    return {s.get("code") for s in el.iter("{%s}status" % NS_MUC_USER)}


def item(el):
    return el.find("{%s}x/{%s}item" % (NS_MUC_USER, NS_MUC_USER))


def send_join(client, channel, nick, history=None, server="localhost"):
    """Sends the MUC join presence (with <history maxstanzas/> if
    history is a number)."""
    x = ("<x xmlns='%s'/>" % NS_MUC if history is None else
         "<x xmlns='%s'><history maxstanzas='%d'/></x>" % (NS_MUC, history))
    client.send_raw("<presence to='%s/%s'>%s</presence>"
                    % (room(channel, server), nick, x))


def wait_self_presence(client, channel, nick, timeout=10,
                       what="self-presence with 110", available=False):
    """The room's presence of nick with status 110 (and no type, if
    available)."""
    return client.wait_stanza(
        lambda el: el.tag == q("presence")
        and el.get("from") == "%s/%s" % (room(channel), nick)
        and (not available or el.get("type") is None)
        and "110" in codes(el),
        timeout=timeout, what=what)


def wait_subject(client, channel):
    return client.wait_message(
        from_=room(channel),
        predicate=lambda el: el.find(q("subject")) is not None)


def join_room(client, channel, nick, history=None, timeout=10,
              what="self-presence with 110", available=False):
    """Joins the room; returns (self-presence, subject message)."""
    send_join(client, channel, nick, history)
    self_presence = wait_self_presence(client, channel, nick, timeout, what,
                                       available)
    return self_presence, wait_subject(client, channel)


def irc_section(**keys):
    """The [irc] section: the gateway's own keys, then keys."""
    section = {"transport": "irc", "domain": GW, "secret": SECRET}
    section.update(keys)
    return section


class IrcTestCase(E2ETestCase):
    """A lab with Prosody serving GW, babelfish with one [irc] section;
    tearDown stops babelfish and checks it ended cleanly."""

    def make_lab(self, name, **prosody):
        self.lab = Lab(name)
        self.prosody = self.lab.prosody({GW: SECRET}, **prosody)

    def start_gateway(self, keys, alice=True, **core):
        """babelfish with irc_section(**keys) (core: [babelfish] keys),
        authenticated with Prosody; then alice's client, if alice."""
        self.bf = self.lab.babelfish(babelfish_config(
            self.lab, self.prosody, {"irc": irc_section(**keys)}, **core))
        self.prosody.wait_auth(GW, daemon=self.bf)
        if alice:
            self.alice = self.lab.client(self.prosody, "alice")

    def start_ngircd_bob_alice(self, name, **keys):
        """A lab named name with ngIRCd and babelfish on it (irc_ports,
        then keys), bob on IRC in #test, then alice's client."""
        self.make_lab(name)
        self.ircd = self.lab.ngircd()
        keys = dict({"irc_ports": self.ircd.port}, **keys)
        self.start_gateway(keys, alice=False)
        self.bob = self.lab.irc_client(self.ircd, "bob")
        self.bob.join("#test")
        self.alice = self.lab.client(self.prosody, "alice")

    def rejoined(self, channel="#test"):
        """Once the IRC server is back: a new bob on IRC in channel sees
        alice's JOIN, and alice her self-presence without a status (back
        in the room); returns bob."""
        bob = self.lab.irc_client(self.ircd, "bob")
        bob.join(channel)
        bob.wait_command("JOIN", lambda p: irc_nick(p[1]) == "alice",
                         timeout=15)
        self.alice.wait_stanza(
            lambda el: el.tag == q("presence")
            and el.get("from") == room(channel) + "/alice"
            and el.get("type") is None and child_text(el, "status") is None,
            what="self-presence after the rejoin")
        return bob

    def tearDown(self):
        rc, _ = self.bf.stop()
        self.lab.close()
        self.assertNotRegex(self.bf.log_text(), SANITIZER)
        self.assertEqual(rc, 0)
