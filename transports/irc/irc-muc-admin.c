/* Channel administration both ways, as XEP-0045 sees it:
 *
 *   - IRC MODE lines become occupants' roles and affiliations (from the
 *     server's ISUPPORT PREFIX) and a status line in the room;
 *   - muc#admin requests from the user (§8-9: kick, voice, moderator,
 *     ban) become KICK and MODE, answered once the server has answered;
 *   - invitations: a mediated invite (§7.8.2) to an IRC nick becomes
 *     INVITE, an IRC INVITE becomes a mediated invitation (§7.8.2) from
 *     the room.
 *
 * IRC does not acknowledge a MODE or a KICK that changes nothing, so an
 * admin request is closed by a PING sent after its commands: the server
 * answers in order, so the PONG comes after any error they caused. */
#include "irc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* modern.ircdocs "RPL_ISUPPORT": without PREFIX or CHANMODES. */
#define DEFAULT_PREFIX_MODES "ov"
#define DEFAULT_CHANMODES "beI,k,l,imnpst"
/* The PING token that closes an admin request: this and a number. */
#define ADMIN_TOKEN "bf-admin-"

/* An admin request waiting for the server. */
typedef struct bf_irc_admin {
  struct bf_irc_admin *next;
  bf_xml *iq;                  /* the request, answered at the PONG */
  unsigned token;
  const char *condition;       /* the first error the server gave, or NULL */
  char text[256];              /* and its text */
} bf_irc_admin;

/* ---- ISUPPORT ------------------------------------------------------------ */

void bf_irc_on_isupport(bf_irc_conn *c, const bf_irc_msg *m) {
  /* 005 me TOKEN… :are supported by this server */
  for (size_t i = 1; i + 1 < m->n_params; i++) {
    const char *t = m->params[i];
    if (!strncmp(t, "PREFIX=(", 8)) {
      const char *close = strchr(t + 8, ')');
      size_t n = close ? (size_t)(close - (t + 8)) : 0;
      if (!close || n != strlen(close + 1) || n > BF_IRC_PREFIX_MAX)
        continue; /* malformed, or more prefixes than a byte of bits */
      memcpy(c->prefix_modes, t + 8, n);
      c->prefix_modes[n] = '\0';
      memcpy(c->prefix_chars, close + 1, n);
      c->prefix_chars[n] = '\0';
    } else if (!strncmp(t, "CHANMODES=", 10)) {
      snprintf(c->chanmodes, sizeof c->chanmodes, "%s", t + 10);
    }
  }
}

static const char *prefix_modes(const bf_irc_conn *c) {
  return c->prefix_chars[0] ? c->prefix_modes : DEFAULT_PREFIX_MODES;
}

bool bf_irc_is_operator(const bf_irc_conn *c, const bf_irc_occupant *o) {
  const char *at = strchr(bf_irc_prefix_chars(c), '@');
  size_t op = at ? (size_t)(at - bf_irc_prefix_chars(c)) : 0;
  return (o->modes & ((2u << op) - 1u)) != 0; /* @ or any higher prefix */
}

/* Whether channel mode letter takes a parameter when set (add) or unset:
 * CHANMODES types A (lists) and B always, C only when set, D never. */
static bool mode_takes_param(const bf_irc_conn *c, char letter, bool add) {
  const char *types = c->chanmodes[0] ? c->chanmodes : DEFAULT_CHANMODES;
  int type = 0; /* A */
  for (const char *p = types; *p; p++) {
    if (*p == ',')
      type++;
    else if (*p == letter)
      return type < 2 || (type == 2 && add);
  }
  return false;
}

/* ---- MODE from IRC --------------------------------------------------------- */

/* +m set or lifted: the occupants with no prefix become visitors or
 * participants again (XEP-0045 §9.6, §9.7: a role change to everyone). */
static void moderated_set(bf_irc_conn *c, bf_irc_channel *ch, bool moderated) {
  if (ch->moderated == moderated)
    return;
  ch->moderated = moderated;
  for (size_t i = 0; ch->names_done && i < ch->n_occupants; i++) {
    const bf_irc_occupant *o = &ch->occupants[i];
    if (o->modes)
      continue;
    bool me = !strcasecmp(o->nick->name, c->nick);
    const char *codes[] = {me ? "110" : NULL, NULL};
    bf_irc_occupant_presence(c, ch, o->nick->name, o, NULL, NULL, codes, NULL,
                             NULL);
  }
}

void bf_irc_on_channel_modes(bf_irc_conn *c, bf_irc_channel *ch,
                             const bf_irc_msg *m) {
  /* 324 me #chan +modes [params…] */
  const char *modes = m->params[2];
  const char *minus = strchr(modes, '-');
  const char *moderated = strchr(modes, 'm');
  moderated_set(c, ch, moderated && (!minus || moderated < minus));
}

void bf_irc_on_mode(bf_irc_conn *c, bf_irc_channel *ch, const bf_irc_msg *m) {
  /* MODE #chan +o-v+b alice bob mask: parameters taken in order by the
   * letters that have one. */
  const char *modes = prefix_modes(c);
  size_t arg = 2;
  bool add = true;
  for (const char *p = m->params[1]; *p; p++) {
    if (*p == '+' || *p == '-') {
      add = *p == '+';
      continue;
    }
    const char *prefix = strchr(modes, *p);
    if (*p == 'm' && !prefix) {
      moderated_set(c, ch, add);
      continue;
    }
    if (!prefix) {
      if (mode_takes_param(c, *p, add) && arg < m->n_params)
        arg++;
      continue;
    }
    if (arg >= m->n_params)
      break;
    const char *nick = m->params[arg++];
    bf_irc_occupant *o = bf_irc_occupant_find(c, ch, nick);
    if (!o)
      continue;
    unsigned char bit = (unsigned char)(1u << (prefix - modes));
    o->modes = add ? (unsigned char)(o->modes | bit)
                   : (unsigned char)(o->modes & ~bit);
    /* XEP-0045 §9.6/§8.4: the new role and affiliation to everyone. */
    if (ch->names_done) {
      bool me = !strcasecmp(nick, c->nick);
      const char *codes[] = {me ? "110" : NULL, NULL};
      bf_irc_occupant_presence(c, ch, o->nick->name, o, NULL, NULL, codes,
                               NULL, NULL);
    }
  }
  if (!ch->names_done)
    return; /* the modes a server sets on a new channel, before NAMES */
  /* The change as IRC users see it: "alice sets mode +b bob!*@*". */
  char text[BF_IRC_LINE_MAX];
  int n = snprintf(text, sizeof text, "%s sets mode %s",
                   m->nick ? m->nick : "The server", m->params[1]);
  for (size_t i = 2; i < m->n_params && n > 0 && (size_t)n < sizeof text; i++)
    n += snprintf(text + n, sizeof text - (size_t)n, " %s", m->params[i]);
  bf_irc_room_notice(c, ch, text);
}

/* The condition for a command that could not be sent: refused by the
 * line builder (a nick or reason IRC cannot carry), or not accepted now
 * (flood control full, connection gone). NULL when it was sent. */
static const char *sent(int rc, const char **why) {
  if (!rc)
    return NULL;
  if (rc == BF_EINVAL || rc == BF_E2BIG) {
    *why = "that nick or reason cannot be sent to IRC";
    return "bad-request";
  }
  *why = "the IRC server is not accepting commands now";
  return "resource-constraint";
}

/* ---- invitations ------------------------------------------------------------ */

void bf_irc_on_invite(bf_irc_conn *c, const bf_irc_msg *m) {
  /* INVITE me #chan; with invite-notify, also others' invitations, which
   * are not ours to pass on. */
  if (strcasecmp(m->params[0], c->nick) != 0)
    return;
  const bf_host *host = c->irc->host;
  char *room = bf_irc_jid(c->irc, c->server, m->params[1]);
  char *inviter = bf_irc_jid(c->irc, c->server, m->nick);
  char text[600];
  snprintf(text, sizeof text, "%s invites you to %s", m->nick, m->params[1]);
  bf_xml *msg = room && inviter ? bf_xml_new("message", NULL) : NULL;
  bf_xml *x = msg ? bf_xml_add_child(msg, "x", BF_IRC_NS_MUC_USER) : NULL;
  bf_xml *invite = x ? bf_xml_add_child(x, "invite", NULL) : NULL;
  /* XEP-0045 §7.8.2: from the room, the inviter in <invite from/>; a
   * body for clients that show no invitations. */
  if (invite && !bf_xml_set_attr(msg, "from", room) &&
      !bf_xml_set_attr(msg, "to", c->user) &&
      !bf_xml_set_attr(invite, "from", inviter) &&
      bf_xml_add_text_child(msg, "body", BF_NS_COMPONENT, text)) {
    int rc = host->send_durable(host, msg);
    if (rc)
      host->log(host, BF_LOG_WARN, "could not send an invitation to %s: %s",
                room, bf_strerror(rc));
  }
  bf_xml_free(msg);
  free(room);
  free(inviter);
}

/* The IRC nick a JID stands for on c's server: nick%server@GW, or an
 * occupant of one of its rooms (#chan%server@GW/nick). Copied to out;
 * false if it is neither. */
static bool nick_of_jid(bf_irc_conn *c, const char *text, char *out,
                        size_t size) {
  bf_jid jid;
  bf_irc_address a;
  bool ok = false;
  if (!text || bf_jid_parse(&jid, text) != 0)
    return false;
  if (jid.local && !strcmp(jid.domain, c->irc->host->domain) &&
      bf_irc_address_parse(c->irc, jid.local, &a) == 0 &&
      !strcasecmp(a.server, c->server)) {
    const char *nick = a.channel ? jid.resource : a.name;
    if (nick && *nick && strlen(nick) < size && !strpbrk(nick, " ,*?!@")) {
      snprintf(out, size, "%s", nick);
      ok = true;
    }
  }
  bf_jid_close(&jid);
  return ok;
}

void bf_irc_invite_from_xmpp(bf_irc_conn *c, bf_irc_channel *ch,
                             const bf_xml *stanza, const bf_xml *x) {
  for (const bf_xml *inv = bf_xml_first_child(x); inv; inv = bf_xml_next(inv)) {
    if (strcmp(bf_xml_name(inv), "invite") != 0)
      continue;
    char nick[256];
    if (!nick_of_jid(c, bf_xml_attr(inv, "to"), nick, sizeof nick)) {
      bf_irc_reply_error(c->irc, stanza, "jid-malformed",
                         "invite an IRC user of this channel's server: "
                         "nick%server@gateway");
      return;
    }
    const char *params[] = {nick, ch->name};
    const char *why = NULL;
    const char *condition = sent(bf_irc_send_user(c, "INVITE", params, 2, false),
                                 &why);
    if (condition) {
      bf_irc_reply_error(c->irc, stanza, condition, why);
      return;
    }
  }
}

/* ---- muc#admin requests ----------------------------------------------------- */

static void admin_free(bf_irc_admin *r) {
  bf_xml_free(r->iq);
  free(r);
}

/* The answer to the oldest request: a result, or the error the server
 * gave (XEP-0045 §8.2: not-allowed when we are no channel operator). */
static void admin_answer(bf_irc_conn *c) {
  bf_irc_admin *r = c->admin;
  c->admin = r->next;
  bf_xml *reply = r->condition
                      ? bf_stanza_error(r->iq, NULL, r->condition, r->text)
                      : bf_stanza_result(r->iq);
  if (reply)
    (void)c->irc->host->send(c->irc->host, reply);
  bf_xml_free(reply);
  admin_free(r);
}

void bf_irc_admin_close(bf_irc_conn *c) {
  while (c->admin) {
    if (!c->admin->condition) {
      c->admin->condition = "remote-server-not-found";
      snprintf(c->admin->text, sizeof c->admin->text,
               "the connection to the IRC server was lost");
    }
    admin_answer(c);
  }
}

bool bf_irc_admin_on_reply(bf_irc_conn *c, const bf_irc_msg *m) {
  bf_irc_admin *r = c->admin;
  if (!strcasecmp(m->command, "PONG")) {
    char token[32];
    snprintf(token, sizeof token, ADMIN_TOKEN "%u", r->token);
    if (!m->n_params || strcmp(m->params[m->n_params - 1], token) != 0)
      return false;
    admin_answer(c);
    return true;
  }
  /* The errors KICK and MODE can cause (modern.ircdocs numerics). */
  static const struct {
    int numeric;
    const char *condition;
  } errors[] = {
      {482, "not-allowed"},    /* ERR_CHANOPRIVSNEEDED */
      {441, "item-not-found"}, /* ERR_USERNOTINCHANNEL */
      {401, "item-not-found"}, /* ERR_NOSUCHNICK */
      {442, "not-allowed"},    /* ERR_NOTONCHANNEL */
      {478, "not-allowed"},    /* ERR_BANLISTFULL */
      {472, "not-acceptable"}, /* ERR_UNKNOWNMODE */
  };
  for (size_t i = 0; i < sizeof errors / sizeof *errors; i++) {
    if (!bf_irc_is_numeric(m, errors[i].numeric))
      continue;
    if (!r->condition) {
      r->condition = errors[i].condition;
      snprintf(r->text, sizeof r->text, "%s",
               m->n_params ? m->params[m->n_params - 1] : "refused");
    }
    return true;
  }
  return false;
}

/* One <item/> of a request as IRC commands. NULL, or the condition to
 * answer with (and *why). */
static const char *admin_item(bf_irc_conn *c, bf_irc_channel *ch,
                              const bf_xml *item, const char **why) {
  const char *role = bf_xml_attr(item, "role");
  const char *affiliation = bf_xml_attr(item, "affiliation");
  const char *reason = bf_xml_child_text(item, "reason", BF_IRC_NS_MUC_ADMIN);
  char nick[256];
  const char *given = bf_xml_attr(item, "nick");
  if (given && *given && strlen(given) < sizeof nick &&
      !strpbrk(given, " ,*?!@")) {
    snprintf(nick, sizeof nick, "%s", given);
  } else if (!nick_of_jid(c, bf_xml_attr(item, "jid"), nick, sizeof nick)) {
    *why = "name the occupant: nick='…', or jid='nick%server@gateway'";
    return "bad-request";
  }
  const char *kick[] = {ch->name, nick, reason};
  size_t kick_n = reason && *reason ? 3 : 2;
  char mask[300];
  snprintf(mask, sizeof mask, "%s!*@*", nick);
  const char *mode = NULL;
  if (role && !strcmp(role, "none")) {           /* §8.2 kick */
    return sent(bf_irc_send_user(c, "KICK", kick, kick_n, kick_n == 3), why);
  } else if (role && !strcmp(role, "visitor")) { /* §8.4 revoke voice */
    mode = "-v";
  } else if (role && !strcmp(role, "participant")) {
    /* §8.3 grant voice, or §9.7 revoke moderator */
    const bf_irc_occupant *o = bf_irc_occupant_find(c, ch, nick);
    mode = o && bf_irc_is_operator(c, o) ? "-o" : "+v";
  } else if (role && !strcmp(role, "moderator")) { /* §9.6 */
    mode = "+o";
  } else if (affiliation && !strcmp(affiliation, "outcast")) { /* §9.1 ban */
    const char *ban[] = {ch->name, "+b", mask};
    const char *condition = sent(bf_irc_send_user(c, "MODE", ban, 3, false), why);
    if (!condition && bf_irc_occupant_find(c, ch, nick))
      condition = sent(bf_irc_send_user(c, "KICK", kick, kick_n, kick_n == 3), why);
    return condition;
  } else if (affiliation && !strcmp(affiliation, "none")) { /* §9.2 unban */
    const char *unban[] = {ch->name, "-b", mask};
    return sent(bf_irc_send_user(c, "MODE", unban, 3, false), why);
  } else {
    *why = "IRC channels take role none, visitor, participant or "
           "moderator, and affiliation outcast or none";
    return "feature-not-implemented";
  }
  const char *params[] = {ch->name, mode, nick};
  return sent(bf_irc_send_user(c, "MODE", params, 3, false), why);
}

int bf_irc_admin_iq(bf_irc *irc, const bf_xml *iq, const bf_jid *from,
                    const bf_irc_address *a) {
  const bf_xml *query = bf_xml_first_child(iq);
  if (!a->channel || !query ||
      strcmp(bf_xml_xmlns(query), BF_IRC_NS_MUC_ADMIN) != 0 ||
      strcmp(bf_xml_attr(iq, "type"), "set") != 0)
    return BF_ENOTSUP;
  char bare[600];
  snprintf(bare, sizeof bare, "%s@%s", from->local ? from->local : "",
           from->domain);
  bf_irc_conn *c = bf_irc_conn_find(irc, bare, a->server);
  bf_irc_channel *ch = c ? bf_irc_channel_find(c, a->name) : NULL;
  if (!ch || !ch->names_done) {
    bf_irc_reply_error(irc, iq, "not-acceptable", "join the room first");
    return 0;
  }
  size_t waiting = 0;
  bf_irc_admin **tail = &c->admin;
  for (; *tail; tail = &(*tail)->next)
    waiting++;
  if (waiting >= BF_IRC_ADMIN_PENDING_MAX) {
    bf_irc_reply_error(irc, iq, "resource-constraint",
                       "too many requests waiting for the IRC server");
    return 0;
  }
  bf_irc_admin *r = calloc(1, sizeof *r);
  if (!r || !(r->iq = bf_xml_copy(iq))) {
    free(r);
    bf_irc_reply_error(irc, iq, "internal-server-error", NULL);
    return 0;
  }
  static unsigned tokens;
  r->token = ++tokens;
  const char *condition = NULL, *why = NULL;
  size_t items = 0;
  for (const bf_xml *item = bf_xml_first_child(query); item && !condition;
       item = bf_xml_next(item)) {
    if (strcmp(bf_xml_name(item), "item") != 0)
      continue;
    items++;
    condition = admin_item(c, ch, item, &why);
  }
  if (!items) {
    condition = "bad-request";
    why = "no <item/> in the request";
  }
  char token[32];
  snprintf(token, sizeof token, ADMIN_TOKEN "%u", r->token);
  const char *ping[] = {token};
  if (!condition)
    condition = sent(bf_irc_send_user(c, "PING", ping, 1, false), &why);
  if (condition) {
    bf_irc_reply_error(irc, iq, condition, why);
    admin_free(r);
    return 0;
  }
  *tail = r;
  return 0;
}
