/* The IRC transport: configuration, addresses and stanzas from XMPP.
 *
 * Addresses (SPEC "Addresses", the Biboumi scheme): `#chan%irc.net@GW` is
 * a channel as a MUC room, `nick%irc.net@GW` a private chat, `irc.net@GW`
 * the IRC server itself. With `irc_server = irc.net` (fixed-server mode)
 * the `%irc.net` part is left out. Localparts are XEP-0106-unescaped
 * first, so `&chan` arrives as `\26chan`. */
#include "irc.h"
#include "irc-tls.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <babelfish/babelfish.h>

#define DEFAULT_PORTS "+6697 6667"

static const char *const irc_config_keys[] = {
    "irc_server", "irc_ports",  "irc_tls_verify", "irc_throttle",
    "realname",   "username",   NULL,
};

static const char *const irc_features[] = {
    BF_IRC_NS_MUC, "urn:xmpp:ping", NULL,
};

int bf_irc_ports_parse(const char *text, unsigned *ports, bool *tls,
                       size_t max) {
  size_t n = 0;
  const char *p = text;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t')
      p++;
    if (!*p)
      break;
    bool plus = *p == '+';
    if (plus)
      p++;
    char *end;
    unsigned long port = strtoul(p, &end, 10);
    if (end == p || port == 0 || port > 65535 ||
        (*end && *end != ' ' && *end != ',' && *end != '\t') || n == max)
      return BF_EINVAL;
    ports[n] = (unsigned)port;
    tls[n] = plus;
    n++;
    p = end;
  }
  return n ? (int)n : BF_EINVAL;
}

/* A host name or address the resolver can take: letters, digits, '-',
 * '.', ':' (IPv6), at most 253 bytes. */
bool bf_irc_valid_host(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 253)
    return false;
  for (; *s; s++) {
    if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != ':')
      return false;
  }
  return true;
}

static int irc_check_config(const bf_host *host, char *err, size_t err_size,
                            const char **bad_key) {
  unsigned ports[BF_IRC_PORTS_MAX];
  bool tls[BF_IRC_PORTS_MAX];
  const char *value = host->config(host, "irc_ports");
  if (value && bf_irc_ports_parse(value, ports, tls, BF_IRC_PORTS_MAX) < 0) {
    snprintf(err, err_size,
             "irc_ports '%s' is not a list of ports; write e.g. +6697 6667 "
             "('+' = TLS), at most %d",
             value, BF_IRC_PORTS_MAX);
    *bad_key = "irc_ports";
    return BF_EINVAL;
  }
  value = host->config(host, "irc_tls_verify");
  bool verify;
  if (value && bf_config_bool(value, &verify) != 0) {
    snprintf(err, err_size, "irc_tls_verify must be yes or no, not '%s'",
             value);
    *bad_key = "irc_tls_verify";
    return BF_EINVAL;
  }
  value = host->config(host, "irc_throttle");
  if (value) {
    char *end;
    unsigned long rate = strtoul(value, &end, 10);
    if (end == value || *end || rate > BF_IRC_THROTTLE_MAX) {
      snprintf(err, err_size, "irc_throttle must be lines per second, 0 to "
               "%d (0 = no limit), not '%s'", BF_IRC_THROTTLE_MAX, value);
      *bad_key = "irc_throttle";
      return BF_EINVAL;
    }
  }
  value = host->config(host, "irc_server");
  if (value && !bf_irc_valid_host(value)) {
    snprintf(err, err_size, "irc_server '%s' is not a host name", value);
    *bad_key = "irc_server";
    return BF_EINVAL;
  }
  static const char *const words[] = {"realname", "username"};
  for (size_t i = 0; i < 2; i++) {
    value = host->config(host, words[i]);
    if (value && (!*value || strlen(value) > 64 || strpbrk(value, "\r\n"))) {
      snprintf(err, err_size, "%s must be 1 to 64 characters", words[i]);
      *bad_key = words[i];
      return BF_EINVAL;
    }
  }
  value = host->config(host, "username");
  if (value && strpbrk(value, " @!")) {
    snprintf(err, err_size, "username '%s' may not contain spaces, @ or !",
             value);
    *bad_key = "username";
    return BF_EINVAL;
  }
  return 0;
}

static void irc_tick(void *data) {
  bf_irc_conns_tick(data);
  bf_irc_bouncer_tick(data);
  bf_irc_history_flush(data);
  bf_irc_history_tick(data);
}

static int irc_init(const bf_host *host, void **state) {
  if (host->abi_version < 2) {
    host->log(host, BF_LOG_ERROR, "this babelfish is too old for the IRC "
                                  "transport (module ABI 2 needed)");
    return BF_ENOTSUP;
  }
  bf_irc *irc = calloc(1, sizeof *irc);
  if (!irc)
    return BF_ENOMEM;
  irc->host = host;
  irc->fixed_server = host->config(host, "irc_server");
  const char *ports = host->config(host, "irc_ports");
  int n = bf_irc_ports_parse(ports ? ports : DEFAULT_PORTS, irc->ports,
                             irc->tls, BF_IRC_PORTS_MAX);
  irc->n_ports = n > 0 ? (size_t)n : 0;
  irc->tls_verify = true;
  (void)bf_config_bool(host->config(host, "irc_tls_verify"), &irc->tls_verify);
  const char *throttle = host->config(host, "irc_throttle");
  irc->throttle = throttle ? (unsigned)strtoul(throttle, NULL, 10)
                           : BF_IRC_THROTTLE_DEFAULT;
  irc->realname = host->config(host, "realname");
  irc->username = host->config(host, "username");
  irc->history = calloc(BF_IRC_HISTORY_PENDING_MAX, sizeof *irc->history);
  irc->msg = malloc(sizeof *irc->msg);
  /* The module's schema, append-only: migration i+1 takes it from
   * version i to i+1. */
  static const char *const migrations[] = {bf_irc_settings_schema,
                                           bf_irc_history_schema,
                                           bf_irc_channel_settings_schema};
  int rc = irc->history && irc->msg ? host->schema(host, migrations,
                                       sizeof migrations / sizeof *migrations)
                        : BF_ENOMEM;
  if (!rc)
    (void)bf_irc_bouncer_init(irc); /* logged; the gateway works without */
  if (!rc)
    rc = host->timer_start(host, BF_IRC_TICK_MS, BF_IRC_TICK_MS, irc_tick, irc,
                           &irc->tick_timer);
  if (rc) {
    bf_irc_bouncer_close(irc);
    free(irc->history);
    free(irc->msg);
    free(irc);
    return rc;
  }
  *state = irc;
  return 0;
}

static void irc_close(void *state) {
  bf_irc *irc = state;
  bf_irc_bouncer_close(irc);
  bf_irc_conns_close(irc);
  bf_irc_nicks_close(&irc->nicks);
  bf_irc_history_close(irc);
  free(irc->history);
  free(irc->msg);
  bf_irc_tls_shutdown();
  irc->host->log(irc->host, BF_LOG_INFO,
                 "%lu IRC lines in, %lu out, %lu channel lines stored",
                 irc->lines_in, irc->lines_out, irc->history_written);
  free(irc);
}

/* ---- addresses ---------------------------------------------------------- */

int bf_irc_address_parse(const bf_irc *irc, const char *local,
                         bf_irc_address *addr) {
  memset(addr, 0, sizeof *addr);
  char *raw = bf_jid_unescape(local);
  if (!raw)
    return BF_ENOMEM;
  int rc = BF_EINVAL;
  const char *server = NULL;
  char *name = raw;
  if (irc->fixed_server) {
    server = irc->fixed_server;
  } else {
    char *pct = strrchr(raw, '%');
    if (pct) {
      *pct = '\0';
      server = pct + 1;
    } else {
      server = raw; /* "irc.net@GW": the server itself */
      name = NULL;
    }
  }
  if (!bf_irc_valid_host(server) || strlen(server) >= sizeof addr->server)
    goto out;
  if (name && (!*name || strlen(name) >= sizeof addr->name ||
               strpbrk(name, " ,\a\r\n")))
    goto out;
  snprintf(addr->server, sizeof addr->server, "%s", server);
  if (name)
    snprintf(addr->name, sizeof addr->name, "%s", name);
  addr->channel = name && strchr("#&+!", name[0]);
  rc = 0;
out:
  free(raw);
  return rc;
}

char *bf_irc_jid(const bf_irc *irc, const char *server, const char *name) {
  char local[600];
  if (irc->fixed_server)
    snprintf(local, sizeof local, "%s", name && *name ? name : server);
  else if (name && *name)
    snprintf(local, sizeof local, "%s%%%s", name, server);
  else
    snprintf(local, sizeof local, "%s", server);
  char *escaped = bf_jid_escape(local);
  if (!escaped)
    return NULL;
  size_t n = strlen(escaped) + strlen(irc->host->domain) + 2;
  char *jid = malloc(n);
  if (jid)
    snprintf(jid, n, "%s@%s", escaped, irc->host->domain);
  free(escaped);
  return jid;
}

/* ---- stanzas ------------------------------------------------------------- */

static void send_free(bf_irc *irc, bf_xml *stanza) {
  if (stanza)
    (void)irc->host->send(irc->host, stanza);
  bf_xml_free(stanza);
}

/* XEP-0045 §6.4: a channel answers disco#info as a room. */
static void room_info(bf_irc *irc, const bf_xml *iq, const bf_irc_address *a) {
  bf_xml *reply = bf_stanza_result(iq);
  bf_xml *query = reply ? bf_xml_add_child(reply, "query", BF_NS_DISCO_INFO) : NULL;
  bf_xml *id = query ? bf_xml_add_child(query, "identity", NULL) : NULL;
  if (!id || bf_xml_set_attr(id, "category", "conference") ||
      bf_xml_set_attr(id, "type", "irc") || bf_xml_set_attr(id, "name", a->name)) {
    bf_xml_free(reply);
    return;
  }
  static const char *const features[] = {
      BF_IRC_NS_MUC, "muc_open", "muc_nonanonymous", "muc_persistent",
      "http://jabber.org/protocol/muc#self-ping-optimization",
      BF_IRC_NS_OCCUPANT_ID, /* XEP-0421 §3 */
      BF_NS_DISCO_INFO, "urn:xmpp:mam:2", "urn:xmpp:mam:2#extended",
      "urn:xmpp:sid:0",
  };
  for (size_t i = 0; i < sizeof features / sizeof *features; i++)
    bf_xml_set_attr(bf_xml_add_child(query, "feature", NULL), "var",
                    features[i]);
  send_free(irc, reply);
}

static int irc_iq(bf_irc *irc, const bf_xml *iq, const bf_jid *from,
                  const bf_jid *to, const bf_irc_address *a) {
  const bf_xml *payload = bf_xml_first_child(iq);
  const char *type = bf_xml_attr(iq, "type");
  const char *ns = payload ? bf_xml_xmlns(payload) : "";
  if (payload && a->channel && !to->resource) {
    if (!strcmp(ns, BF_IRC_NS_MUC_ADMIN))
      return bf_irc_admin_iq(irc, iq, from, a);
    if (!strcmp(ns, "urn:xmpp:mam:2"))
      return bf_irc_mam_iq(irc, iq, from, a);
  }
  if (!payload || strcmp(type, "get") != 0)
    return BF_ENOTSUP;
  if (a->channel && !to->resource && !strcmp(ns, BF_NS_DISCO_INFO) &&
      !bf_xml_attr(payload, "node")) {
    room_info(irc, iq, a);
    return 0;
  }
  if (!strcmp(ns, BF_NS_PING)) {
    /* XEP-0410 §3: a self-ping to our own occupant JID says whether the
     * client is still joined; a ping never becomes a CTCP PING. */
    char bare[512];
    snprintf(bare, sizeof bare, "%s@%s", from->local ? from->local : "",
             from->domain);
    bf_irc_conn *c = bf_irc_conn_find(irc, bare, a->server);
    bool joined = false;
    for (bf_irc_channel *ch = c ? c->channels : NULL; ch && a->channel;
         ch = ch->next) {
      if (strcasecmp(ch->name, a->name) != 0 || !ch->joined)
        continue;
      char *full = bf_jid_full(from);
      for (size_t i = 0; full && i < ch->n_members; i++)
        joined |= !strcmp(ch->members[i].jid, full);
      free(full);
    }
    bf_xml *reply = !a->channel || joined || !to->resource
                        ? bf_stanza_result(iq)
                        : bf_stanza_error(iq, NULL, "not-acceptable",
                                          "you are not joined to this room");
    send_free(irc, reply);
    return 0;
  }
  return BF_ENOTSUP;
}

static int irc_on_stanza(void *state, const bf_xml *stanza, const bf_jid *from,
                         const bf_jid *to) {
  bf_irc *irc = state;
  bf_irc_address addr;
  if (!to->local || !from->local)
    return BF_ENOTSUP;
  int rc = bf_irc_address_parse(irc, to->local, &addr);
  const char *name = bf_xml_name(stanza);
  if (rc) {
    if (!strcmp(name, "presence"))
      return 0;
    bf_xml *err = bf_stanza_error(stanza, NULL, "item-not-found",
                                  irc->fixed_server
                                      ? "not an IRC address"
                                      : "not an IRC address; write "
                                        "#channel%irc.server or nick%irc.server");
    send_free(irc, err);
    return 0;
  }
  if (!strcmp(name, "iq"))
    return irc_iq(irc, stanza, from, to, &addr);
  if (!strcmp(name, "presence"))
    return bf_irc_presence(irc, stanza, from, to, &addr);
  return bf_irc_message(irc, stanza, from, to, &addr);
}

/* The XMPP server restarted or the stream came back: clients rejoin by
 * themselves, but those that stayed get the rooms' state again. */
static void irc_on_online(void *state) { bf_irc_rooms_resend(state); }

/* Back-pressure (irc-server.c): IRC reads paused for a congested XMPP
 * stream resume once it drained, or when it is gone (durable stanzas are
 * stored meanwhile, room state is sent again on the next stream). */
static void irc_resume_reads(void *state) { bf_irc_conns_resume(state); }

/* When the user's last resource goes, they leave every room: persistent
 * channels stay joined (bouncer mode), the others are PARTed, and a
 * connection with no channel left QUITs. */
static void irc_on_session_stop(void *state, const bf_jid *user) {
  bf_irc *irc = state;
  char *bare = bf_jid_bare(user);
  for (bf_irc_conn *c = irc->conns, *next; bare && c; c = next) {
    next = c->next;
    if (!strcmp(c->user, bare) && c->state != BF_IRC_CLOSING &&
        !c->shutting_down)
      bf_irc_rooms_left(c, "Gateway: the user went offline");
  }
  free(bare);
}

/* The user unregistered: their connections end, their settings go. */
static void irc_on_unregister(void *state, const bf_jid *user) {
  char *bare = bf_jid_bare(user);
  if (bare)
    bf_irc_user_forget(state, bare);
  free(bare);
}

static const bf_command irc_commands[] = {
    {"configure", "Configure this IRC server", BF_COMMAND_ON_CONTACT,
     bf_irc_on_server_jid, bf_irc_configure_run},
    {"configure", "Configure this IRC channel", BF_COMMAND_ON_CONTACT,
     bf_irc_on_room_jid, bf_irc_channel_configure_run},
    {"get-irc-connection-info", "Get your IRC connection info",
     BF_COMMAND_ON_CONTACT, bf_irc_on_server_jid, bf_irc_info_run},
    {"disconnect-user", "Disconnect users from their IRC servers",
     BF_COMMAND_ON_GATEWAY | BF_COMMAND_ADMIN, NULL,
     bf_irc_disconnect_user_run},
    {"disconnect-from-irc-servers", "Disconnect from IRC servers",
     BF_COMMAND_ON_GATEWAY, NULL, bf_irc_disconnect_servers_run},
};

const bf_module bf_irc_module = {
    .abi_version = BF_MODULE_ABI_VERSION,
    .name = "irc",
    .description = "IRC gateway (babelfish)",
    .disco_type = "irc",
    .features = irc_features,
    .config_keys = irc_config_keys,
    .check_config = irc_check_config,
    .init = irc_init,
    .close = irc_close,
    .on_stanza = irc_on_stanza,
    .on_online = irc_on_online,
    .on_offline = irc_resume_reads,
    .flags = 0,
    .register_fields = NULL,
    .n_register_fields = 0,
    .register_instructions = NULL,
    .on_register = NULL,
    .on_unregister = irc_on_unregister,
    .gateway_prompt = "IRC channel or nick, e.g. #chan%irc.libera.chat",
    .gateway_desc = "Enter a channel or nick and its server",
    .gateway_address = NULL,
    .on_session_start = NULL,
    .on_session_stop = irc_on_session_stop,
    .on_resource = NULL,
    .on_subscribe = NULL,
    .commands = irc_commands,
    .n_commands = sizeof irc_commands / sizeof *irc_commands,
    .on_drained = irc_resume_reads,
};
