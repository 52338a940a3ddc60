/* The IRC transport's ad-hoc commands besides configure, as Biboumi's:
 * get-irc-connection-info on a server's JID (irc.net@GW), and on the
 * gateway disconnect-user (admins: QUIT every IRC connection of some
 * users) and disconnect-from-irc-servers (a user's own connections; an
 * admin picks the user first). */
#include "irc.h"
#include "irc-tls.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <babelfish/babelfish.h>

/* Appends to a bounded text; once full, the text ends with "…" and
 * further appends do nothing. */
typedef struct text_out {
  char *buf;
  size_t size, len;
  bool full;
} text_out;

static void put(text_out *t, const char *fmt, ...) BF_PRINTF(2, 3);
static void put(text_out *t, const char *fmt, ...) {
  static const char more[] = "…";
  if (t->full)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < t->size - t->len) {
    t->len += (size_t)n;
    return;
  }
  t->full = true;
  t->len = t->size - sizeof more; /* whole UTF-8: cut back to a lead byte */
  while (t->len && ((unsigned char)t->buf[t->len] & 0xC0) == 0x80)
    t->len--;
  memcpy(t->buf + t->len, more, sizeof more);
}

static const char *state_text(const bf_irc_conn *c) {
  switch (c->state) {
  case BF_IRC_IDLE: return "waiting to reconnect";
  case BF_IRC_RESOLVING: return "looking up the server's address";
  case BF_IRC_CONNECTING: return "connecting";
  case BF_IRC_REGISTERING: return "logging in";
  case BF_IRC_ONLINE: return "connected";
  default: return "disconnecting";
  }
}

/* The peer's IP address, or "" when not connected. */
static void peer_address(const bf_irc_conn *c, char *out, size_t size) {
  struct sockaddr_storage sa;
  int len = sizeof sa;
  out[0] = '\0';
  if (!c->tcp_open ||
      uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) != 0)
    return;
  if (sa.ss_family == AF_INET)
    (void)uv_ip4_name((struct sockaddr_in *)&sa, out, size);
  else if (sa.ss_family == AF_INET6)
    (void)uv_ip6_name((struct sockaddr_in6 *)&sa, out, size);
}

static void conn_info(bf_irc *irc, bf_irc_conn *c, text_out *t) {
  char ip[64], buf[BF_IRC_TLS_FINGERPRINT_SIZE + 64];
  const char *host = c->address ? c->address : c->server;
  peer_address(c, ip, sizeof ip);
  put(t, "%s: %s", c->server, state_text(c));
  if (c->state == BF_IRC_REGISTERING || c->state == BF_IRC_ONLINE) {
    bool tls = c->tls[c->port_at];
    put(t, " to %s%s%s%s port %u, %s", host, ip[0] ? " (" : "", ip,
        ip[0] ? ")" : "", c->ports[c->port_at], tls ? "TLS" : "no TLS");
    if (tls && c->tls_session) {
      put(t, " (%s", bf_irc_tls_describe(c->tls_session, buf, sizeof buf));
      if (!bf_irc_tls_fingerprint(c->tls_session, buf, sizeof buf))
        put(t, ", the server's certificate SHA-256 %s", buf);
      put(t, ")");
    }
    put(t, ", as %s.", c->nick);
  } else {
    put(t, " (%s).", host);
  }
  bf_irc_caps_names(c->caps, buf, sizeof buf);
  put(t, "\nIRCv3 capabilities: %s.", buf[0] ? buf : "none");
  put(t, "\nLogged in with SASL: %s.",
      !c->logged_in ? "no"
      : c->sasl_mechanism == BF_IRC_SASL_EXTERNAL ? "yes (EXTERNAL, client "
                                                    "certificate)"
                                                  : "yes (PLAIN)");
  char fp[BF_IRC_TLS_CERTFP_SIZE], err[200];
  if (c->identity_cert &&
      !bf_irc_settings_identity_fp(irc, c->user, c->server, false, fp,
                                   sizeof fp, err, sizeof err))
    put(t, "\nYour client certificate's SHA-256 fingerprint: %s.", fp);
  size_t n = 0;
  for (const bf_irc_channel *ch = c->channels; ch; ch = ch->next)
    n++;
  put(t, "\nChannels (%zu):", n);
  for (const bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
    put(t, "\n  %s%s", ch->name, ch->joined ? "" : " (joining)");
    if (!ch->n_members)
      put(t, ": none of your resources%s",
          ch->persistent ? " (kept while you are away)" : "");
    for (size_t i = 0; i < ch->n_members; i++) {
      const char *slash = strchr(ch->members[i].jid, '/');
      put(t, "%s%s", i ? ", " : ": ", slash ? slash + 1 : ch->members[i].jid);
    }
  }
}

int bf_irc_info_run(void *state, const bf_command_call *call,
                    bf_command_reply *reply) {
  bf_irc *irc = state;
  bf_irc_address a;
  char *user = bf_jid_bare(call->from);
  int rc = user ? bf_irc_address_parse(irc, call->to->local, &a) : BF_ENOMEM;
  if (!rc) {
    bf_irc_conn *c = bf_irc_conn_find(irc, user, a.server);
    text_out t = {reply->note, sizeof reply->note, 0, false};
    if (c)
      conn_info(irc, c, &t);
    else
      put(&t, "You are not connected to %s.", a.server);
  }
  free(user);
  return rc;
}

/* ---- disconnecting -------------------------------------------------------- */

/* QUITs every connection of user (bare JID) with reason, the user told
 * why from each server's JID when told (not NULL). Only the servers
 * listed in servers[0..n) when servers is not NULL. How many. */
static size_t disconnect(bf_irc *irc, const char *user,
                         const char *const *servers, size_t n,
                         const char *reason, const char *told) {
  size_t count = 0;
  for (bf_irc_conn *c = irc->conns, *next; c; c = next) {
    next = c->next; /* the QUIT may unlink c */
    if (strcmp(c->user, user) != 0 || c->state == BF_IRC_CLOSING ||
        c->shutting_down)
      continue;
    bool listed = !servers;
    for (size_t i = 0; servers && i < n; i++)
      listed |= !strcmp(servers[i], c->server);
    if (!listed)
      continue;
    if (told)
      bf_irc_tell_user(c, told);
    bf_irc_conn_quit(c, reason);
    count++;
  }
  return count;
}

static const bf_field disconnect_user_fields[] = {
    {.var = "jids", .type = BF_FIELD_JID_MULTI, .label = "The users to "
     "disconnect", .desc = "Their IRC connections end (QUIT)",
     .required = true},
    {.var = "quit-message", .type = BF_FIELD_TEXT_SINGLE,
     .label = "Quit message", .desc = "Shown on IRC and to the users",
     .default_value = "Disconnected by the gateway's administrator",
     .max_length = 300},
};

int bf_irc_disconnect_user_run(void *state, const bf_command_call *call,
                               bf_command_reply *reply) {
  bf_irc *irc = state;
  if (call->step == 0) {
    reply->fields = disconnect_user_fields;
    reply->n_fields = sizeof disconnect_user_fields /
                      sizeof *disconnect_user_fields;
    reply->title = "Disconnect users from IRC";
    reply->instructions = "Every IRC connection of these users ends.";
    reply->next_step = 1;
    return 0;
  }
  const char *const *jids;
  size_t n = bf_form_values(call->form, "jids", &jids), users = 0, conns = 0;
  const char *reason = bf_form_value(call->form, "quit-message");
  if (!reason || !*reason)
    reason = disconnect_user_fields[1].default_value;
  char told[400];
  snprintf(told, sizeof told, "An administrator of the gateway disconnected "
           "you from this IRC server: %s", reason);
  for (size_t i = 0; i < n; i++) {
    bf_jid jid;
    if (bf_jid_parse(&jid, jids[i]))
      continue; /* checked by the form already */
    char *bare = bf_jid_bare(&jid);
    bf_jid_close(&jid);
    if (!bare)
      return BF_ENOMEM;
    size_t k = disconnect(irc, bare, NULL, 0, reason, told);
    users += k > 0;
    conns += k;
    free(bare);
  }
  irc->host->log(irc->host, BF_LOG_INFO, "disconnect-user: %zu IRC "
                 "connections of %zu users ended", conns, users);
  snprintf(reply->note, sizeof reply->note, "%zu IRC connection%s of %zu "
           "user%s ended.", conns, conns == 1 ? "" : "s", users,
           users == 1 ? "" : "s");
  return 0;
}

static const bf_field pick_user_fields[] = {
    {.var = "jid", .type = BF_FIELD_JID_SINGLE, .label = "User",
     .desc = "Whose IRC connections to list", .required = true},
};

/* The servers form, built per call (the core copies it): a list-multi
 * of the user's connections and the quit message. Static: one loop, and
 * the core reads it before run is called again. */
static bf_field servers_fields[2];
static bf_field_option servers_options[BF_IRC_SERVERS_PER_USER_MAX + 1];

/* Step 2's form for user's connections, or a note when there is none. */
static int servers_form(bf_irc *irc, const bf_command_call *call,
                        const char *user, bf_command_reply *reply) {
  size_t n = 0;
  for (bf_irc_conn *c = irc->conns; c; c = c->next) {
    bool seen = false;
    if (strcmp(c->user, user) != 0 || c->state == BF_IRC_CLOSING ||
        c->shutting_down)
      continue;
    for (size_t i = 0; i < n; i++)
      seen |= !strcmp(servers_options[i].value, c->server);
    if (!seen && n < BF_IRC_SERVERS_PER_USER_MAX)
      servers_options[n++] = (bf_field_option){c->server, NULL};
  }
  servers_options[n] = (bf_field_option){NULL, NULL};
  if (!n) {
    snprintf(reply->note, sizeof reply->note, "%s has no IRC connection.",
             user);
    return 0;
  }
  servers_fields[0] = (bf_field){.var = "servers",
                                 .type = BF_FIELD_LIST_MULTI,
                                 .label = "IRC servers to disconnect from",
                                 .required = true,
                                 .options = servers_options};
  servers_fields[1] = disconnect_user_fields[1];
  int rc = bf_form_set(call->data, "user", user);
  reply->fields = servers_fields;
  reply->n_fields = 2;
  reply->title = "Disconnect from IRC servers";
  reply->instructions = "The connections chosen end (QUIT).";
  reply->next_step = 2;
  return rc;
}

int bf_irc_disconnect_servers_run(void *state, const bf_command_call *call,
                                  bf_command_reply *reply) {
  bf_irc *irc = state;
  char *me = bf_jid_bare(call->from);
  int rc = me ? 0 : BF_ENOMEM;
  if (rc)
    goto out;
  if (call->step == 0 && irc->host->is_admin(irc->host, call->from)) {
    /* An admin may end anyone's: whose first. */
    if (!(rc = bf_form_set(call->data, "jid", me))) {
      reply->fields = pick_user_fields;
      reply->n_fields = 1;
      reply->title = "Disconnect from IRC servers";
      reply->values = call->data;
      reply->next_step = 1;
    }
    goto out;
  }
  if (call->step == 0) {
    rc = servers_form(irc, call, me, reply);
    goto out;
  }
  if (call->step == 1) {
    bf_jid jid;
    char *user = NULL;
    const char *text = bf_form_value(call->form, "jid");
    if (!text || bf_jid_parse(&jid, text)) {
      rc = BF_EINVAL; /* required, and checked by the form already */
      goto out;
    }
    user = bf_jid_bare(&jid);
    bf_jid_close(&jid);
    rc = user ? servers_form(irc, call, user, reply) : BF_ENOMEM;
    free(user);
    goto out;
  }
  /* Step 2: the user is the one step 0 or 1 stored, never the form's. */
  const char *user = bf_form_value(call->data, "user");
  const char *const *servers;
  size_t n = bf_form_values(call->form, "servers", &servers);
  const char *reason = bf_form_value(call->form, "quit-message");
  if (!user) {
    rc = BF_EINVAL;
    goto out;
  }
  if (!reason || !*reason)
    reason = strcmp(user, me) ? disconnect_user_fields[1].default_value
                              : "Disconnected by the user";
  char told[400];
  snprintf(told, sizeof told, "An administrator of the gateway disconnected "
           "you from this IRC server: %s", reason);
  size_t k = disconnect(irc, user, servers, n, reason,
                        strcmp(user, me) ? told : NULL);
  snprintf(reply->note, sizeof reply->note, "Disconnected from %zu IRC "
           "server%s.", k, k == 1 ? "" : "s");
out:
  free(me);
  return rc;
}
