/* IRC channels as MUC rooms (XEP-0045); private chats are in
 * irc-private.c.
 *
 * A room is joined per (user, channel) on the user's one connection to the
 * server; every resource of the user that joined gets the room's traffic.
 * Without echo-message IRC never echoes our own messages, so the room's
 * reflection of them (XEP-0045 §7.4) is made here; with it, the server's
 * echo is the reflection. Occupants' nicks are interned (irc-nick.c);
 * modes, admin requests and invitations are in irc-muc-admin.c. */
#include "irc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "irc-text.h"

/* XEP-0045 §15.6 status codes. */
#define STATUS_SELF "110"
#define STATUS_CREATED "201"
#define STATUS_NICK_MODIFIED "210"
#define STATUS_NICK_CHANGE "303"
#define STATUS_KICKED "307"
#define STATUS_SHUTDOWN "332"

static void echoes_clear(bf_irc_channel *ch);
static void echoes_lost(bf_irc_conn *c, bf_irc_channel *ch);

/* Drops every occupant (their nicks' references with them). */
static void occupants_clear(bf_irc_channel *ch) {
  for (size_t i = 0; i < ch->n_occupants; i++)
    bf_irc_nick_unref(ch->occupants[i].nick);
  free(ch->occupants);
  ch->occupants = NULL;
  ch->n_occupants = 0;
}

void bf_irc_channel_free(bf_irc_channel *ch) {
  for (size_t i = 0; i < ch->n_members; i++)
    free(ch->members[i].jid);
  free(ch->members);
  occupants_clear(ch);
  echoes_clear(ch);
  free(ch->name);
  free(ch->room);
  free(ch->topic);
  free(ch->encoding);
  free(ch);
}

bf_irc_channel *bf_irc_channel_find(bf_irc_conn *c, const char *name) {
  for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
    if (!strcasecmp(ch->name, name))
      return ch;
  }
  return NULL;
}

static void channel_remove(bf_irc_conn *c, bf_irc_channel *ch) {
  for (bf_irc_channel **p = &c->channels; *p; p = &(*p)->next) {
    if (*p == ch) {
      *p = ch->next;
      bf_irc_channel_free(ch);
      return;
    }
  }
}

/* Whether a resource of the user is online: the core tracks the
 * presence of registered users; anyone else is only seen in rooms (their
 * directed presence), on any of their connections. */
static bool user_online(const bf_irc *irc, const char *user) {
  const char *const *resources;
  if (irc->host->user_resources(irc->host, user, &resources) > 0)
    return true;
  for (const bf_irc_conn *c = irc->conns; c; c = c->next) {
    for (const bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
      if (ch->n_members && !strcmp(c->user, user))
        return true;
    }
  }
  return false;
}

/* IRC took ch away without the user leaving it (a KICK, a refused join
 * or rejoin): it goes, even when persistent (the setting stays: it is
 * joined again when the user joins the room, or at babelfish's next
 * start, never in a loop behind a ban or a kick). Its connection's last
 * channel gone: with the user online (in the room that went, say), the
 * connection stays for raw commands to the server's JID, as in Biboumi,
 * where only leaving the last room ends it (it ends when the user goes
 * offline); with nobody online (bouncer mode) nothing else would ever end
 * it, so it QUITs. */
static void channel_lost(bf_irc_conn *c, bf_irc_channel *ch) {
  bool in_the_room = ch->n_members > 0;
  channel_remove(c, ch);
  const bf_host *host = c->irc->host;
  if (!c->channels && !c->shutting_down && !in_the_room &&
      !user_online(c->irc, c->user)) {
    host->log(host, BF_LOG_INFO, "%s on %s: no channel left and the user is "
              "offline: quitting", c->user, c->server);
    bf_irc_conn_quit(c, "Gateway: no channel left");
  } else {
    bf_irc_away_update(c);
  }
}

/* ---- occupants -------------------------------------------------------------- */

const char *bf_irc_prefix_chars(const bf_irc_conn *c) {
  return c->prefix_chars[0] ? c->prefix_chars : "@+";
}

unsigned char bf_irc_prefix_modes(const bf_irc_conn *c, const char **entry) {
  const char *chars = bf_irc_prefix_chars(c);
  unsigned char modes = 0;
  const char *at;
  /* multi-prefix may give several, highest first */
  while (**entry && (at = strchr(chars, **entry)) != NULL) {
    modes |= (unsigned char)(1u << (at - chars));
    (*entry)++;
  }
  return modes;
}

bf_irc_occupant *bf_irc_occupant_find(bf_irc_conn *c, bf_irc_channel *ch,
                                      const char *nick) {
  bf_irc_nick *n = bf_irc_nick_find(&c->irc->nicks, c->server, nick);
  for (size_t i = 0; n && i < ch->n_occupants; i++) {
    if (ch->occupants[i].nick == n)
      return &ch->occupants[i];
  }
  return NULL;
}

/* Adds nick (or sets its modes when it is there). NULL on ENOMEM. */
static bf_irc_occupant *occupant_add(bf_irc_conn *c, bf_irc_channel *ch,
                                     const char *nick, unsigned char modes) {
  bf_irc_occupant *o = bf_irc_occupant_find(c, ch, nick);
  if (o) {
    o->modes = modes;
    return o;
  }
  bf_irc_occupant *grown =
      realloc(ch->occupants, (ch->n_occupants + 1) * sizeof *grown);
  if (!grown)
    return NULL;
  ch->occupants = grown;
  o = &ch->occupants[ch->n_occupants];
  if (!(o->nick = bf_irc_nick_get(&c->irc->nicks, c->server, nick)))
    return NULL;
  o->modes = modes;
  ch->n_occupants++;
  return o;
}

static void occupant_remove(bf_irc_channel *ch, bf_irc_occupant *o) {
  bf_irc_nick_unref(o->nick);
  *o = ch->occupants[--ch->n_occupants];
}

/* IRC channel modes to MUC (Biboumi's mapping), by the highest prefix:
 * ~ owner, & and @ admin, % moderator member, + participant member; no
 * prefix: participant, or visitor in a moderated (+m) channel, where only
 * voice or more may speak (XEP-0045 §5.1.1). */
static void affiliation_of(const bf_irc_conn *c, const bf_irc_channel *ch,
                           unsigned char modes, const char **affiliation,
                           const char **role) {
  const char *chars = bf_irc_prefix_chars(c);
  char prefix = 0;
  for (size_t i = 0; chars[i] && !prefix; i++) {
    if (modes & (1u << i))
      prefix = chars[i];
  }
  switch (prefix) {
  case 0:
    *affiliation = "none";
    *role = ch->moderated ? "visitor" : "participant";
    break;
  case '~': *affiliation = "owner"; *role = "moderator"; break;
  case '&':
  case '@': *affiliation = "admin"; *role = "moderator"; break;
  case '%': *affiliation = "member"; *role = "moderator"; break;
  default: *affiliation = "member"; *role = "participant"; break;
  }
}

/* XEP-0421: every occupant's presences and messages carry its id (n
 * NULL: none known). */
static void add_occupant_id(bf_xml *stanza, bf_irc_nick *n) {
  char id[BF_IRC_OCCUPANT_ID_SIZE];
  if (!n)
    return;
  bf_irc_nick_occupant_id(n, id);
  if (id[0])
    bf_xml_set_attr(bf_xml_add_child(stanza, "occupant-id", BF_IRC_NS_OCCUPANT_ID),
                    "id", id);
}

/* ---- stanzas to the user's resources ------------------------------------------ */

void bf_irc_send_to_members(bf_irc_conn *c, bf_irc_channel *ch, bf_xml *stanza,
                            bool durable) {
  const bf_host *host = c->irc->host;
  for (size_t i = 0; i < ch->n_members; i++) {
    if (bf_xml_set_attr(stanza, "to", ch->members[i].jid))
      break;
    int rc = durable ? host->send_durable(host, stanza) : host->send(host, stanza);
    if (rc)
      host->log(host, BF_LOG_WARN, "could not send to %s: %s",
                ch->members[i].jid, bf_strerror(rc));
  }
}

static char *occupant_jid(const bf_irc_channel *ch, const char *nick) {
  size_t n = strlen(ch->room) + strlen(nick) + 2;
  char *jid = malloc(n);
  if (jid)
    snprintf(jid, n, "%s/%s", ch->room, nick);
  return jid;
}

void bf_irc_room_notice(bf_irc_conn *c, bf_irc_channel *ch, const char *text) {
  bf_xml *m = bf_xml_new("message", NULL);
  if (m && !bf_xml_set_attr(m, "from", ch->room) &&
      !bf_xml_set_attr(m, "type", "groupchat") &&
      bf_xml_add_text_child(m, "body", NULL, text))
    bf_irc_send_to_members(c, ch, m, false);
  bf_xml_free(m);
}

void bf_irc_occupant_presence(bf_irc_conn *c, bf_irc_channel *ch,
                              const char *nick, const bf_irc_occupant *o,
                              const char *type, const char *status_text,
                              const char *const *codes, const char *to,
                              const char *new_nick) {
  const char *affiliation, *role;
  affiliation_of(c, ch, o ? o->modes : 0, &affiliation, &role);
  bool gone = type && !strcmp(type, "unavailable");
  if (gone)
    role = "none";
  bf_irc_nick *n = o ? o->nick : NULL;
  char *from = occupant_jid(ch, nick);
  bf_xml *p = from ? bf_xml_new("presence", NULL) : NULL;
  bf_xml *x = p ? bf_xml_add_child(p, "x", BF_IRC_NS_MUC_USER) : NULL;
  bf_xml *item = x ? bf_xml_add_child(x, "item", NULL) : NULL;
  if (!item || bf_xml_set_attr(p, "from", from) ||
      (type && bf_xml_set_attr(p, "type", type)) ||
      bf_xml_set_attr(item, "affiliation", affiliation) ||
      bf_xml_set_attr(item, "role", role) ||
      (new_nick && bf_xml_set_attr(item, "nick", new_nick)))
    goto out;
  /* away-notify: RFC 6121 §4.7.2.1 <show>away</show>, the message as
   * status; account-notify / extended-join: the account as status when
   * there is no other. */
  char account_text[300] = "";
  if (!gone && n && n->away)
    bf_xml_add_text_child(p, "show", NULL, "away");
  if (!status_text && !gone && n) {
    if (n->away && *n->away)
      status_text = n->away;
    else if (n->account && !n->away)
      snprintf(account_text, sizeof account_text, "logged in as %s",
               n->account);
  }
  if (!status_text && account_text[0])
    status_text = account_text;
  if (status_text && *status_text)
    bf_xml_add_text_child(p, "status", NULL, status_text);
  for (size_t i = 0; codes && codes[i]; i++)
    bf_xml_set_attr(bf_xml_add_child(x, "status", NULL), "code", codes[i]);
  add_occupant_id(p, n);
  if (to) {
    int rc = bf_xml_set_attr(p, "to", to);
    if (!rc)
      rc = c->irc->host->send(c->irc->host, p);
    if (rc)
      c->irc->host->log(c->irc->host, BF_LOG_WARN,
                        "could not send a presence of %s to %s: %s", ch->room,
                        to, bf_strerror(rc));
  } else {
    bf_irc_send_to_members(c, ch, p, false);
  }
out:
  bf_xml_free(p);
  free(from);
}

/* The subject message (XEP-0045 §7.2.15): always sent after the
 * presences, empty when the channel has no topic. */
static void send_subject(bf_irc_conn *c, bf_irc_channel *ch, const char *to,
                         const char *by) {
  bf_xml *m = bf_xml_new("message", NULL);
  char *from = by ? occupant_jid(ch, by) : NULL;
  if (m && !bf_xml_set_attr(m, "from", from ? from : ch->room) &&
      !bf_xml_set_attr(m, "type", "groupchat") &&
      bf_xml_add_text_child(m, "subject", NULL, ch->topic ? ch->topic : "")) {
    if (to) {
      if (!bf_xml_set_attr(m, "to", to))
        (void)c->irc->host->send(c->irc->host, m);
    } else {
      bf_irc_send_to_members(c, ch, m, true);
    }
  }
  bf_xml_free(m);
  free(from);
}

/* Everything a resource sees when it enters the room: the others, itself
 * (110, 210 when IRC gave it another nick, 201 when the join created the
 * channel), the subject. */
static void send_roster(bf_irc_conn *c, bf_irc_channel *ch, const char *to,
                        int history) {
  const bf_irc_occupant *self = NULL;
  for (size_t i = 0; i < ch->n_occupants; i++) {
    const bf_irc_occupant *o = &ch->occupants[i];
    if (!strcasecmp(o->nick->name, c->nick))
      self = o;
    else
      bf_irc_occupant_presence(c, ch, o->nick->name, o, NULL, NULL, NULL, to, NULL);
  }
  bool renamed = strcmp(c->nick, c->wanted_nick) != 0;
  const char *codes[4] = {STATUS_SELF};
  size_t n = 1;
  if (renamed)
    codes[n++] = STATUS_NICK_MODIFIED;
  if (ch->created)
    codes[n++] = STATUS_CREATED;
  bf_irc_occupant_presence(c, ch, c->nick, self, NULL, NULL, codes, to, NULL);
  /* XEP-0045 §7.2.14: history after the presences, before the subject;
   * back in a channel kept while away: the lines missed. */
  (void)bf_irc_history_send(c->irc, c->server, ch->name, ch->room, to, history,
                            ch->away_since_ms);
  send_subject(c, ch, to, NULL);
}

/* The rooms of the connection that a resource is in are left with an
 * error or a reason: self-presence unavailable. */
static void leave_all(bf_irc_conn *c, bf_irc_channel *ch, const char *reason,
                      const char *code) {
  const char *codes[] = {STATUS_SELF, code, NULL};
  bf_irc_occupant_presence(c, ch, c->nick, bf_irc_occupant_find(c, ch, c->nick),
                    "unavailable", reason, codes, NULL, NULL);
}

/* ---- from IRC ------------------------------------------------------------------ */

void bf_irc_on_registered(bf_irc_conn *c) {
  for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
    const char *params[] = {ch->name};
    (void)bf_irc_send(c, "JOIN", params, 1, false);
  }
  bf_irc_away_update(c);
}

static void join_failed(bf_irc_conn *c, bf_irc_channel *ch,
                        const char *condition, const char *text);

void bf_irc_on_closed(bf_irc_conn *c, const char *reason) {
  bf_irc_admin_close(c);
  while (c->channels) {
    bf_irc_channel *ch = c->channels;
    c->channels = ch->next;
    echoes_lost(c, ch);
    /* A room being joined fails the join; a joined one is left (332). */
    if (ch->names_done)
      leave_all(c, ch, reason, STATUS_SHUTDOWN);
    else
      join_failed(c, ch, "remote-server-not-found",
                  reason ? reason : "cannot reach the IRC server");
    bf_irc_channel_free(ch);
  }
}

void bf_irc_on_lost(bf_irc_conn *c, const char *status) {
  for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
    if (ch->names_done) {
      const bf_irc_occupant *self = NULL;
      for (size_t i = 0; i < ch->n_occupants; i++) {
        const bf_irc_occupant *o = &ch->occupants[i];
        if (strcasecmp(o->nick->name, c->nick) != 0)
          bf_irc_occupant_presence(c, ch, o->nick->name, o, "unavailable",
                            "disconnected from the gateway", NULL, NULL, NULL);
        else
          self = o;
      }
      const char *codes[] = {STATUS_SELF, NULL};
      bf_irc_occupant_presence(c, ch, c->nick, self, NULL, status, codes, NULL, NULL);
    }
    occupants_clear(ch);
    echoes_lost(c, ch);
    ch->joined = ch->names_done = ch->created = false;
    ch->rejoining = true;
  }
}

void bf_irc_rooms_resend(bf_irc *irc) {
  for (bf_irc_conn *c = irc->conns; c; c = c->next) {
    for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
      for (size_t i = 0; ch->names_done && i < ch->n_members; i++)
        send_roster(c, ch, ch->members[i].jid, 0);
    }
  }
}

/* IRC text (any encoding, IRC formatting) to an XMPP body; text that is
 * not UTF-8 is read as encoding (the channel's), else as c's fallback
 * charset (the server's setting; NULL: the default). */
char *bf_irc_body_of(const bf_irc_conn *c, const char *text,
                     const char *encoding) {
  char *utf8 = bf_irc_to_utf8(text, strlen(text),
                              encoding ? encoding : c->encoding);
  char *styled = utf8 ? bf_irc_format_to_styling(utf8) : NULL;
  free(utf8);
  return styled;
}

/* The XMPP body of a channel line's IRC text (the channel's encoding,
 * else the server's): "/me …" for a CTCP ACTION, NULL for another CTCP. */
char *bf_irc_channel_body(const bf_irc_conn *c, const bf_irc_channel *ch,
                          const char *text) {
  char buf[BF_IRC_LINE_MAX];
  const char *ctcp, *args;
  const char *encoding = ch ? ch->encoding : NULL;
  if (!bf_irc_ctcp_parse(text, buf, sizeof buf, &ctcp, &args))
    return bf_irc_body_of(c, text, encoding);
  if (strcasecmp(ctcp, "ACTION") != 0)
    return NULL; /* other CTCPs to a channel are not shown */
  char *inner = bf_irc_body_of(c, args, encoding);
  size_t n = inner ? strlen(inner) + 5 : 0;
  char *body = inner ? malloc(n) : NULL;
  if (body)
    snprintf(body, n, "/me %s", inner); /* XEP-0245 */
  free(inner);
  return body;
}

/* A channel line as a groupchat message from room/nick, stored as
 * history and carrying its stable XEP-0359 stanza-id. echo: the user's
 * own message coming back (echo-message), reflected with the id the
 * user's client gave it (XEP-0045 §7.4); NULL for anyone else's, whose
 * msgid is the message id. */
static void channel_message(bf_irc_conn *c, bf_irc_channel *ch, const char *nick,
                            const char *text, const bf_irc_msg *msg,
                            const bf_irc_echo *echo) {
  char *body = echo && echo->body && echo->pieces > 1
                   ? strdup(echo->body) /* split into several lines: as written */
                   : bf_irc_channel_body(c, ch, text);
  char *from = occupant_jid(ch, nick);
  const char *msgid = msg ? bf_irc_tag_value(msg, "msgid") : NULL;
  bf_xml *m = body && from ? bf_xml_new("message", NULL) : NULL;
  if (m && !bf_xml_set_attr(m, "from", from) &&
      !bf_xml_set_attr(m, "type", "groupchat") &&
      bf_xml_add_text_child(m, "body", NULL, body)) {
    if (echo) {
      if (echo->id)
        bf_xml_set_attr(m, "id", echo->id);
      if (echo->origin_id)
        bf_xml_set_attr(bf_xml_add_child(m, "origin-id", BF_IRC_NS_SID), "id",
                        echo->origin_id);
    } else if (msgid) {
      bf_xml_set_attr(m, "id", msgid);
    }
    bf_irc_occupant *o = bf_irc_occupant_find(c, ch, nick);
    add_occupant_id(m, o ? o->nick : NULL);
    uint64_t stamp =
        bf_irc_history_time_parse(msg ? bf_irc_tag_value(msg, "time") : NULL);
    bf_irc_history_mark(m, ch->room, bf_irc_history_add(c->irc, c->server,
                                                        ch->name, nick, body,
                                                        stamp, false));
    bf_irc_send_to_members(c, ch, m, true);
  }
  bf_xml_free(m);
  free(from);
  free(body);
}

/* ---- echo-message ------------------------------------------------------------ */

static void echo_free(bf_irc_echo *e) {
  free(e->id);
  free(e->origin_id);
  free(e->body);
  free(e);
}

static bf_irc_echo *echo_pop(bf_irc_channel *ch) {
  bf_irc_echo *e = ch->echoes;
  if (e) {
    ch->echoes = e->next;
    if (!ch->echoes)
      ch->echoes_tail = NULL;
    ch->n_echoes--;
  }
  return e;
}

static void echoes_clear(bf_irc_channel *ch) {
  for (bf_irc_echo *e; (e = echo_pop(ch));)
    echo_free(e);
}

/* Our own line came back: the oldest message sent is reflected once its
 * last piece is back. An echo nothing waits for (a raw PRIVMSG to the
 * server's JID) is shown like anyone's line. */
static void channel_echo(bf_irc_conn *c, bf_irc_channel *ch, const char *text,
                         const bf_irc_msg *m) {
  bf_irc_echo *e = ch->echoes;
  if (!e) {
    channel_message(c, ch, c->nick, text, m, NULL);
    return;
  }
  if (--e->left > 0)
    return;
  (void)echo_pop(ch);
  if (!e->refused)
    channel_message(c, ch, c->nick, text, m, e);
  echo_free(e);
}

bf_xml *bf_irc_bounce_new(const char *from, const char *id,
                          const char *origin_id, const char *condition,
                          const char *text) {
  bf_xml *m = bf_xml_new("message", NULL);
  bf_xml *err = m ? bf_xml_add_child(m, "error", NULL) : NULL;
  if (err && !bf_xml_set_attr(m, "from", from) &&
      !bf_xml_set_attr(m, "type", "error") &&
      (!id || !bf_xml_set_attr(m, "id", id)) &&
      (!origin_id ||
       !bf_xml_set_attr(bf_xml_add_child(m, "origin-id", BF_IRC_NS_SID), "id",
                        origin_id)) &&
      !bf_xml_set_attr(err, "type", bf_stanza_error_type(condition)) &&
      bf_xml_add_child(err, condition, BF_NS_STANZAS) &&
      bf_xml_add_text_child(err, "text", BF_NS_STANZAS, text))
    return m;
  bf_xml_free(m);
  return NULL;
}

/* A message waiting for its echo bounces back to the user's resources as
 * an error with its id (RFC 6120 §8.3): condition (type: its error type)
 * and text, borrowed. */
static void echo_bounce(bf_irc_conn *c, bf_irc_channel *ch,
                        const bf_irc_echo *e, const char *condition,
                        const char *text) {
  bf_xml *m = bf_irc_bounce_new(ch->room, e->id, e->origin_id, condition, text);
  if (m)
    bf_irc_send_to_members(c, ch, m, false);
  bf_xml_free(m);
}

/* ERR_CANNOTSENDTOCHAN (+m, +n, banned): the oldest message waiting for
 * its echo bounces, once however many of its pieces are refused. */
static void echo_refused(bf_irc_conn *c, bf_irc_channel *ch, const char *text) {
  bf_irc_echo *e = ch->echoes;
  if (!e->refused) {
    e->refused = true;
    echo_bounce(c, ch, e, "forbidden", text);
  }
  if (--e->left == 0)
    echo_free(echo_pop(ch));
}

/* The connection is gone with messages still waiting for their echo: the
 * server may or may not have passed them on, and will never say. Rather
 * than reflect them as sent (the user would never know one was lost) they
 * bounce with their id (a temporary error: the client marks them failed
 * and the user can send them again once the room is back). */
static void echoes_lost(bf_irc_conn *c, bf_irc_channel *ch) {
  for (bf_irc_echo *e; (e = echo_pop(ch));) {
    if (!e->refused)
      echo_bounce(c, ch, e, "remote-server-timeout",
                  "the connection to the IRC server was lost before it "
                  "confirmed this message: it may not have reached the "
                  "channel");
    echo_free(e);
  }
}

/* A message sent with echo-message waits for its echo. 0 or BF_ENOMEM. */
static int echo_expect(bf_irc_conn *c, bf_irc_channel *ch, const bf_xml *stanza,
                       const char *body, unsigned pieces) {
  if (ch->n_echoes >= BF_IRC_ECHO_PENDING_MAX) {
    /* The server lost track (or never echoes): the oldest is shown as
     * sent rather than kept forever. */
    bf_irc_echo *old = echo_pop(ch);
    if (!old->refused)
      channel_message(c, ch, c->nick, old->body, NULL, old);
    echo_free(old);
  }
  const bf_xml *origin = bf_xml_child(stanza, "origin-id", BF_IRC_NS_SID);
  const char *id = bf_xml_attr(stanza, "id");
  const char *origin_id = origin ? bf_xml_attr(origin, "id") : NULL;
  bf_irc_echo *e = calloc(1, sizeof *e);
  if (!e || !(e->body = strdup(body)) || (id && !(e->id = strdup(id))) ||
      (origin_id && !(e->origin_id = strdup(origin_id)))) {
    if (e)
      echo_free(e);
    return BF_ENOMEM;
  }
  e->pieces = e->left = pieces;
  if (ch->echoes_tail)
    ch->echoes_tail->next = e;
  else
    ch->echoes = e;
  ch->echoes_tail = e;
  ch->n_echoes++;
  return 0;
}
/* ERR_*: a join refused (XEP-0045 §7.2.x error conditions). */
static void join_refused(bf_irc_conn *c, const bf_irc_msg *m,
                         const char *condition) {
  if (m->n_params < 2)
    return;
  bf_irc_channel *ch = bf_irc_channel_find(c, m->params[1]);
  if (!ch || ch->joined)
    return;
  join_failed(c, ch, condition, m->params[m->n_params - 1]);
  channel_lost(c, ch);
}

/* The join of every member of ch failed: an error presence from the room
 * (XEP-0045 §7.2.6 and following). */
/* An error presence (from a room/nick JID, to a resource). */
static void presence_error(bf_irc_conn *c, const char *from, const char *to,
                           const char *condition, const char *text) {
  bf_xml *p = bf_xml_new("presence", NULL);
  bf_xml *err = p ? bf_xml_add_child(p, "error", NULL) : NULL;
  if (err && !bf_xml_set_attr(p, "from", from) &&
      !bf_xml_set_attr(p, "to", to) && !bf_xml_set_attr(p, "type", "error") &&
      !bf_xml_set_attr(err, "type", bf_stanza_error_type(condition))) {
    bf_xml_add_child(err, condition, "urn:ietf:params:xml:ns:xmpp-stanzas");
    bf_xml_add_text_child(err, "text", "urn:ietf:params:xml:ns:xmpp-stanzas",
                          text);
    (void)c->irc->host->send(c->irc->host, p);
  }
  bf_xml_free(p);
}

static void join_failed(bf_irc_conn *c, bf_irc_channel *ch,
                        const char *condition, const char *text) {
  char *from = occupant_jid(ch, c->wanted_nick);
  for (size_t i = 0; from && i < ch->n_members; i++)
    presence_error(c, from, ch->members[i].jid, condition, text);
  free(from);
}

static void nick_change_done(bf_irc_conn *c) {
  free(c->nick_change_to);
  free(c->nick_change_from);
  c->nick_change_to = c->nick_change_from = NULL;
}

/* XEP-0045 §7.6: a joined resource's presence to room/new-nick. The nick
 * is the connection's, so every room follows: NICK on IRC, and the
 * server's NICK brings the 303 presences; a refusal (433, 432, 436)
 * comes back to that resource as an error presence from room/new-nick. */
static void nick_change(bf_irc_conn *c, bf_irc_channel *ch,
                        const bf_xml *stanza, const char *full,
                        const char *nick) {
  if (c->nick_change_to) {
    bf_irc_reply_error(c->irc, stanza, "resource-constraint",
                       "a nick change is already under way");
    return;
  }
  char *wanted = strdup(nick);
  c->nick_change_to = strdup(full);
  c->nick_change_from = occupant_jid(ch, nick);
  const char *params[] = {nick};
  if (!wanted || !c->nick_change_to || !c->nick_change_from ||
      bf_irc_send_user(c, "NICK", params, 1, false) != 0) {
    free(wanted);
    nick_change_done(c);
    bf_irc_reply_error(c->irc, stanza, "resource-constraint",
                       "the IRC server is not accepting commands now");
    return;
  }
  free(c->wanted_nick);
  c->wanted_nick = wanted; /* the nick to come back with after a reconnection */
}

/* 433 / 432 / 436 for a nick change asked from XMPP: true if it was. */
static bool nick_change_refused(bf_irc_conn *c, const bf_irc_msg *m) {
  if (!c->nick_change_to)
    return false;
  bool conflict = !bf_irc_is_numeric(m, 432);
  presence_error(c, c->nick_change_from, c->nick_change_to,
                 conflict ? "conflict" : "jid-malformed",
                 m->params[m->n_params - 1]);
  free(c->wanted_nick);
  c->wanted_nick = strdup(c->nick); /* stays what it is */
  nick_change_done(c);
  return true;
}

void bf_irc_room_entered(bf_irc_conn *c, bf_irc_channel *ch) {
  for (size_t i = 0; i < ch->n_members; i++) {
    send_roster(c, ch, ch->members[i].jid, ch->members[i].history);
    ch->members[i].history = 0; /* a rejoin after a reconnection: none */
  }
  if (ch->n_members)
    ch->away_since_ms = 0;
  ch->created = false;
}

bool bf_irc_on_line(bf_irc_conn *c, const bf_irc_msg *m) {
  if (bf_irc_history_on_line(c, m))
    return true;
  const char *cmd = m->command;
  const char *nick = m->nick ? m->nick : "";
  bool me = m->nick && !strcasecmp(m->nick, c->nick);
  bf_irc_channel *ch = NULL;
  bf_irc_occupant *o;
  if (c->admin && bf_irc_admin_on_reply(c, m))
    return true;
  if (!strcasecmp(cmd, "JOIN") && m->n_params >= 1) {
    if (!(ch = bf_irc_channel_find(c, m->params[0])))
      return true;
    if (me) {
      ch->joined = true;
      /* RPL_CHANNELMODEIS (324) says whether it is moderated. */
      const char *params[] = {ch->name};
      (void)bf_irc_send(c, "MODE", params, 1, false);
    } else if ((o = occupant_add(c, ch, nick, 0))) {
      /* extended-join: JOIN #chan account :realname ("*": none) */
      if ((c->caps & BF_IRC_CAP_EXTENDED_JOIN) && m->n_params >= 2)
        (void)bf_irc_nick_set(&o->nick->account, strcmp(m->params[1], "*")
                                                     ? m->params[1] : NULL);
      if (ch->names_done)
        bf_irc_occupant_presence(c, ch, nick, o, NULL, NULL, NULL, NULL, NULL);
    }
  } else if (bf_irc_is_numeric(m, 353) && m->n_params >= 4) {
    /* RPL_NAMREPLY: me, symbol, channel, "nick @op +voice" */
    if (!(ch = bf_irc_channel_find(c, m->params[2])) || ch->names_done)
      return true;
    char *names = strdup(m->params[3]);
    char *save = NULL;
    for (char *t = names ? strtok_r(names, " ", &save) : NULL; t;
         t = strtok_r(NULL, " ", &save)) {
      const char *entry = t;
      unsigned char modes = bf_irc_prefix_modes(c, &entry);
      if (*entry)
        (void)occupant_add(c, ch, entry, modes);
    }
    free(names);
  } else if (bf_irc_is_numeric(m, 366) && m->n_params >= 2) {
    if (!(ch = bf_irc_channel_find(c, m->params[1])) || ch->names_done)
      return true;
    ch->names_done = true;
    o = bf_irc_occupant_find(c, ch, c->nick);
    if (!o)
      o = occupant_add(c, ch, c->nick, 0);
    /* Alone with ops: the JOIN created the channel (XEP-0045 §10.1.1),
     * unless it is a rejoin after a reconnection (the channel was there,
     * everyone else left while the connection was down). */
    ch->created = !ch->rejoining && o && ch->n_occupants == 1 &&
                  bf_irc_is_operator(c, o);
    ch->rejoining = false;
    if (!bf_irc_history_wait(c, ch))
      bf_irc_room_entered(c, ch);
  } else if (bf_irc_is_numeric(m, 332) && m->n_params >= 3) {
    if (!(ch = bf_irc_channel_find(c, m->params[1])))
      return true;
    free(ch->topic);
    ch->topic = bf_irc_body_of(c, m->params[2], ch->encoding);
  } else if (!strcasecmp(cmd, "TOPIC") && m->n_params >= 2) {
    if (!(ch = bf_irc_channel_find(c, m->params[0])))
      return true;
    free(ch->topic);
    ch->topic = bf_irc_body_of(c, m->params[1], ch->encoding);
    send_subject(c, ch, NULL, nick);
  } else if ((!strcasecmp(cmd, "PRIVMSG") || !strcasecmp(cmd, "NOTICE")) &&
             m->n_params >= 2 && m->nick) {
    if (!(ch = bf_irc_channel_find(c, m->params[0]))) {
      if (!strcasecmp(m->params[0], c->nick))
        bf_irc_private_received(c, nick, m->params[1],
                                !strcasecmp(cmd, "NOTICE"));
    } else if (me && (c->caps & BF_IRC_CAP_ECHO_MESSAGE)) {
      channel_echo(c, ch, m->params[1], m);
    } else {
      channel_message(c, ch, nick, m->params[1], m, NULL);
    }
  } else if (bf_irc_is_numeric(m, 404) && m->n_params >= 3 &&
             (ch = bf_irc_channel_find(c, m->params[1])) && ch->echoes) {
    /* ERR_CANNOTSENDTOCHAN: no echo will come; the message bounces. */
    echo_refused(c, ch, m->params[2]);
  } else if (!strcasecmp(cmd, "PART") && m->n_params >= 1) {
    if (!(ch = bf_irc_channel_find(c, m->params[0])))
      return true;
    if (me)
      return true; /* our own PART: the room was already left */
    if ((o = bf_irc_occupant_find(c, ch, nick))) {
      bf_irc_occupant_presence(c, ch, nick, o, "unavailable",
                        m->n_params >= 2 ? m->params[1] : NULL, NULL, NULL,
                        NULL);
      occupant_remove(ch, o);
    }
  } else if (!strcasecmp(cmd, "QUIT") && m->nick) {
    for (ch = c->channels; ch; ch = ch->next) {
      if (!(o = bf_irc_occupant_find(c, ch, nick)))
        continue;
      bf_irc_occupant_presence(c, ch, nick, o, "unavailable",
                        m->n_params >= 1 ? m->params[0] : NULL, NULL, NULL,
                        NULL);
      occupant_remove(ch, o);
    }
  } else if (!strcasecmp(cmd, "NICK") && m->n_params >= 1 && m->nick) {
    const char *new_nick = m->params[0];
    bf_irc_nick *old = bf_irc_nick_find(&c->irc->nicks, c->server, nick);
    for (ch = c->channels; old && ch; ch = ch->next) {
      if (!(o = bf_irc_occupant_find(c, ch, nick)))
        continue;
      /* XEP-0045 §7.6: unavailable with 303 and the new nick, then
       * available under the new one. */
      const char *codes303[] = {STATUS_NICK_CHANGE, me ? STATUS_SELF : NULL, NULL};
      bf_irc_occupant_presence(c, ch, nick, o, "unavailable", NULL, codes303, NULL,
                        new_nick);
      bf_irc_nick *renamed = bf_irc_nick_get(&c->irc->nicks, c->server, new_nick);
      if (!renamed) {
        occupant_remove(ch, o);
        continue;
      }
      /* The same IRC user: what is known of them follows the nick (the
       * first connection to see the NICK carries it over). */
      if (!renamed->account && old->account)
        (void)bf_irc_nick_set(&renamed->account, old->account);
      if (!renamed->away && old->away)
        (void)bf_irc_nick_set(&renamed->away, old->away);
      if (!renamed->first_nick)
        (void)bf_irc_nick_set(&renamed->first_nick, old->first_nick
                                                        ? old->first_nick
                                                        : old->name);
      old->refs++; /* kept for the next channels of the loop */
      bf_irc_nick_unref(o->nick);
      o->nick = renamed;
      const char *codes[] = {me ? STATUS_SELF : NULL, NULL};
      bf_irc_occupant_presence(c, ch, new_nick, o, NULL, NULL, codes, NULL, NULL);
      bf_irc_nick_unref(old);
    }
    if (me) {
      char *copy = strdup(new_nick);
      if (copy) {
        free(c->nick);
        c->nick = copy;
      }
      nick_change_done(c);
    }
  } else if ((!strcasecmp(cmd, "AWAY") || !strcasecmp(cmd, "ACCOUNT")) &&
             m->nick) {
    /* away-notify: AWAY [:message]; account-notify: ACCOUNT name|* */
    bf_irc_nick *n = bf_irc_nick_find(&c->irc->nicks, c->server, nick);
    if (!n)
      return true;
    const char *value = m->n_params ? m->params[0] : NULL;
    if (!strcasecmp(cmd, "AWAY"))
      (void)bf_irc_nick_set(&n->away, value);
    else
      (void)bf_irc_nick_set(&n->account, value && strcmp(value, "*") ? value
                                                                     : NULL);
    for (ch = c->channels; ch; ch = ch->next) {
      if (ch->names_done && (o = bf_irc_occupant_find(c, ch, nick)))
        bf_irc_occupant_presence(c, ch, nick, o, NULL, NULL, NULL, NULL, NULL);
    }
  } else if (!strcasecmp(cmd, "KICK") && m->n_params >= 2) {
    if (!(ch = bf_irc_channel_find(c, m->params[0])))
      return true;
    const char *victim = m->params[1];
    bool kicked_me = !strcasecmp(victim, c->nick);
    o = bf_irc_occupant_find(c, ch, victim);
    const char *codes[] = {STATUS_KICKED, kicked_me ? STATUS_SELF : NULL, NULL};
    bf_irc_occupant_presence(c, ch, victim, o, "unavailable",
                      m->n_params >= 3 ? m->params[2] : NULL, codes, NULL,
                      NULL);
    if (kicked_me)
      channel_lost(c, ch);
    else if (o)
      occupant_remove(ch, o);
  } else if (!strcasecmp(cmd, "MODE") && m->n_params >= 2 &&
             (ch = bf_irc_channel_find(c, m->params[0]))) {
    bf_irc_on_mode(c, ch, m);
  } else if (!strcasecmp(cmd, "INVITE") && m->n_params >= 2 && m->nick) {
    bf_irc_on_invite(c, m);
  } else if (bf_irc_is_numeric(m, 324) && m->n_params >= 3 &&
             (ch = bf_irc_channel_find(c, m->params[1]))) {
    bf_irc_on_channel_modes(c, ch, m);
    return false; /* still shown after a raw MODE */
  } else if (bf_irc_is_numeric(m, 5)) {
    bf_irc_on_isupport(c, m);
    return false; /* still shown after a raw command */
  } else if ((bf_irc_is_numeric(m, 433) || bf_irc_is_numeric(m, 432) ||
              bf_irc_is_numeric(m, 436)) && m->n_params >= 2) {
    return nick_change_refused(c, m);
  } else if (bf_irc_is_numeric(m, 474)) {
    join_refused(c, m, "forbidden");             /* banned */
  } else if (bf_irc_is_numeric(m, 473)) {
    join_refused(c, m, "registration-required"); /* invite only */
  } else if (bf_irc_is_numeric(m, 475)) {
    join_refused(c, m, "not-authorized");        /* bad channel key */
  } else if (bf_irc_is_numeric(m, 471)) {
    join_refused(c, m, "service-unavailable");   /* full */
  } else if (bf_irc_is_numeric(m, 403) || bf_irc_is_numeric(m, 479)) {
    join_refused(c, m, "item-not-found");        /* no such / bad name */
  } else {
    return false;
  }
  return true;
}

/* ---- from XMPP ---------------------------------------------------------------- */

static int member_add(bf_irc_channel *ch, const char *jid, int history) {
  for (size_t i = 0; i < ch->n_members; i++) {
    if (!strcmp(ch->members[i].jid, jid))
      return 0;
  }
  bf_irc_member *grown = realloc(ch->members, (ch->n_members + 1) * sizeof *grown);
  if (!grown)
    return BF_ENOMEM;
  ch->members = grown;
  if (!(ch->members[ch->n_members].jid = strdup(jid)))
    return BF_ENOMEM;
  ch->members[ch->n_members].history = history;
  ch->n_members++;
  return 0;
}

static bool member_remove(bf_irc_channel *ch, const char *jid) {
  for (size_t i = 0; i < ch->n_members; i++) {
    if (!strcmp(ch->members[i].jid, jid)) {
      free(ch->members[i].jid);
      ch->members[i] = ch->members[--ch->n_members];
      return true;
    }
  }
  return false;
}

void bf_irc_reply_error(bf_irc *irc, const bf_xml *stanza,
                        const char *condition, const char *text) {
  bf_xml *err = bf_stanza_error(stanza, NULL, condition, text);
  if (err)
    (void)irc->host->send(irc->host, err);
  bf_xml_free(err);
}

/* modern.ircdocs "Clients": nicks have no spaces, commas, '*', '?',
 * '!', '@', don't start with '$', ':', '#', '&' or a digit. Kept to the
 * RFC 2812 set, which every server accepts. */
static bool valid_nick(const char *nick) {
  size_t n = strlen(nick);
  if (!n || n > 30 || isdigit((unsigned char)nick[0]) || nick[0] == '-')
    return false;
  for (const char *p = nick; *p; p++) {
    if (!isalnum((unsigned char)*p) && !strchr("-[]\\`^{}|_", *p))
      return false;
  }
  return true;
}

static int join(bf_irc *irc, const bf_xml *stanza, const bf_jid *from,
                const bf_jid *to, const bf_irc_address *a, const char *bare,
                const char *full) {
  if (!to->resource) {
    bf_irc_reply_error(irc, stanza, "jid-malformed",
                       "join with a nick: ROOM/NICK");
    return 0;
  }
  if (!valid_nick(to->resource)) {
    bf_irc_reply_error(irc, stanza, "jid-malformed",
                       "not a valid IRC nick: letters, digits and -[]\\`^{}|_ "
                       "only, not starting with a digit or -, at most 30");
    return 0;
  }
  (void)from;
  bf_irc_conn *c = bf_irc_conn_find(irc, bare, a->server);
  if (!c && bf_irc_conns_of(irc, bare) >= BF_IRC_SERVERS_PER_USER_MAX) {
    bf_irc_reply_error(irc, stanza, "policy-violation",
                       "you are connected to as many IRC servers as this "
                       "gateway allows");
    return 0;
  }
  if (!c && !(c = bf_irc_conn_get(irc, bare, a->server, to->resource))) {
    bf_irc_reply_error(irc, stanza, "remote-server-not-found",
                       "cannot connect to that IRC server");
    return 0;
  }
  bf_irc_channel *ch = bf_irc_channel_find(c, a->name);
  size_t n_channels = 0;
  for (bf_irc_channel *k = c->channels; k; k = k->next)
    n_channels++;
  if (!ch && n_channels >= BF_IRC_CHANNELS_PER_CONN_MAX) {
    bf_irc_reply_error(irc, stanza, "policy-violation",
                       "you are in as many channels of this server as this "
                       "gateway allows");
    return 0;
  }
  bool new_channel = !ch;
  if (!ch) {
    ch = calloc(1, sizeof *ch);
    char *room = bf_irc_jid(irc, a->server, a->name);
    if (!ch || !room || !(ch->name = strdup(a->name))) {
      free(room);
      free(ch);
      bf_irc_reply_error(irc, stanza, "internal-server-error", NULL);
      return 0;
    }
    ch->room = room;
    ch->next = c->channels;
    c->channels = ch;
    bf_irc_channel_settings_apply(c, ch);
  }
  /* Back in a channel kept while away: every line missed, unless the
   * client says how many it wants. */
  bool back = !ch->n_members && ch->away_since_ms;
  bool already = false;
  for (size_t i = 0; i < ch->n_members; i++)
    already |= !strcmp(ch->members[i].jid, full);
  /* XEP-0045 §7.2.15: <history maxstanzas='N'/> in the join. */
  const bf_xml *mx = bf_xml_child(stanza, "x", BF_IRC_NS_MUC);
  const bf_xml *hist = mx ? bf_xml_child(mx, "history", BF_IRC_NS_MUC) : NULL;
  const char *maxstanzas = hist ? bf_xml_attr(hist, "maxstanzas") : NULL;
  int history = maxstanzas ? atoi(maxstanzas)
                : back     ? BF_IRC_HISTORY_MAX
                           : BF_IRC_HISTORY_DEFAULT;
  if (history < 0)
    history = 0;
  if (history > BF_IRC_HISTORY_MAX)
    history = BF_IRC_HISTORY_MAX;
  if (already && ch->joined && strcmp(to->resource, c->nick) != 0) {
    nick_change(c, ch, stanza, full, to->resource);
    return 0;
  }
  if (member_add(ch, full, history) != 0) {
    bf_irc_reply_error(irc, stanza, "internal-server-error", NULL);
    return 0;
  }
  bf_irc_away_update(c);
  if (ch->names_done && !ch->history_wait_until && !already) {
    send_roster(c, ch, full, history); /* another resource joins the room */
    ch->away_since_ms = 0;
  } else if (new_channel && c->state == BF_IRC_ONLINE) {
    const bf_xml *x = bf_xml_child(stanza, "x", BF_IRC_NS_MUC);
    const char *key = x ? bf_xml_child_text(x, "password", BF_IRC_NS_MUC) : NULL;
    const char *params[] = {a->name, key};
    (void)bf_irc_send(c, "JOIN", params, key && *key ? 2 : 1, false);
  }
  return 0;
}

static void leave(bf_irc *irc, const bf_irc_address *a, const char *bare,
                  const char *full, const char *status) {
  bf_irc_conn *c = bf_irc_conn_find(irc, bare, a->server);
  bf_irc_channel *ch = c ? bf_irc_channel_find(c, a->name) : NULL;
  if (!ch || !member_remove(ch, full))
    return;
  /* XEP-0045 §7.14: the leaving resource gets its own unavailable. */
  const char *codes[] = {STATUS_SELF, NULL};
  bf_irc_occupant_presence(c, ch, c->nick, bf_irc_occupant_find(c, ch, c->nick),
                    "unavailable", NULL, codes, full, NULL);
  if (ch->n_members)
    return;
  bf_irc_channel_released(c, ch, status);
  if (!c->channels)
    bf_irc_conn_quit(c, NULL);
}

void bf_irc_rooms_left(bf_irc_conn *c, const char *status) {
  for (bf_irc_channel *ch = c->channels, *next; ch; ch = next) {
    next = ch->next;
    if (!ch->n_members)
      continue; /* already kept: away since then */
    if (ch->names_done)
      leave_all(c, ch, status, NULL);
    for (size_t i = 0; i < ch->n_members; i++)
      free(ch->members[i].jid);
    ch->n_members = 0;
    bf_irc_channel_released(c, ch, status);
  }
  if (!c->channels)
    bf_irc_conn_quit(c, status);
}

void bf_irc_channel_released(bf_irc_conn *c, bf_irc_channel *ch,
                             const char *status) {
  if (ch->persistent) {
    /* Bouncer mode: still on IRC, lines stored as history meanwhile. */
    ch->away_since_ms = bf_irc_wall_ms();
    (void)bf_irc_channel_state_save(c->irc, c->user, c->server, ch->name,
                                    c->wanted_nick, ch->away_since_ms);
    bf_irc_away_update(c);
    return;
  }
  const char *params[] = {ch->name, status ? status : "Leaving"};
  (void)bf_irc_send(c, "PART", params, 2, true);
  channel_remove(c, ch);
  bf_irc_away_update(c);
}

int bf_irc_presence(bf_irc *irc, const bf_xml *stanza, const bf_jid *from,
                    const bf_jid *to, const bf_irc_address *a) {
  const char *type = bf_xml_attr(stanza, "type");
  if (!a->channel || (type && strcmp(type, "unavailable") != 0))
    return 0;
  char *bare = bf_jid_bare(from);
  char *full = bf_jid_full(from);
  if (bare && full) {
    if (!type)
      (void)join(irc, stanza, from, to, a, bare, full);
    else
      leave(irc, a, bare, full, bf_xml_child_text(stanza, "status", BF_NS_COMPONENT));
  }
  free(bare);
  free(full);
  return 0;
}

int bf_irc_message(bf_irc *irc, const bf_xml *stanza, const bf_jid *from,
                   const bf_jid *to, const bf_irc_address *a) {
  const char *type = bf_xml_attr(stanza, "type");
  if (type && !strcmp(type, "error"))
    return 0;
  char bare[600];
  snprintf(bare, sizeof bare, "%s@%s", from->local, from->domain);
  bf_irc_conn *c = bf_irc_conn_find(irc, bare, a->server);
  const char *body = bf_xml_child_text(stanza, "body", BF_NS_COMPONENT);
  const char *subject = bf_xml_child_text(stanza, "subject", BF_NS_COMPONENT);
  if (a->channel && !to->resource) {
    bf_irc_channel *ch = c ? bf_irc_channel_find(c, a->name) : NULL;
    if (ch && ch->n_members && !ch->joined) {
      /* In the room, but the IRC side is (re)connecting or (re)joining:
       * a temporary error, so the client offers to send it again. */
      bf_irc_reply_error(irc, stanza, "remote-server-timeout",
                         "not sent to IRC: the channel is being joined again "
                         "(the connection was lost); send it again once back");
      return 0;
    }
    if (!ch || !ch->joined || !ch->n_members) { /* n_members: kept */
      bf_irc_reply_error(irc, stanza, "not-acceptable", "join the room first");
      return 0;
    }
    if (subject && !body) {
      const char *params[] = {ch->name, subject};
      bf_irc_message_begin(c, stanza);
      int rc = bf_irc_send_user(c, "TOPIC", params, 2, true);
      if (rc)
        bf_irc_reply_error(irc, stanza, "resource-constraint",
                           "the IRC server is not accepting messages now");
      bf_irc_message_end(c, rc != 0);
      return 0;
    }
    const bf_xml *ux = bf_xml_child(stanza, "x", BF_IRC_NS_MUC_USER);
    if (ux && bf_xml_child(ux, "invite", BF_IRC_NS_MUC_USER)) {
      bf_irc_invite_from_xmpp(c, ch, stanza, ux);
      return 0;
    }
    if (!body)
      return 0; /* chat states and the like */
    unsigned pieces = 0;
    bf_irc_message_begin(c, stanza);
    int rc = bf_irc_privmsg(c, ch->name, body, &pieces);
    bool echoed = pieces && (c->caps & BF_IRC_CAP_ECHO_MESSAGE) &&
                  echo_expect(c, ch, stanza, body, pieces) == 0;
    if (echoed)
      pieces = 0; /* reflected when the server echoes it */
    bf_irc_message_end(c, rc != 0 || echoed);
    if (rc != 0) {
      bf_irc_reply_error(irc, stanza, "resource-constraint",
                         "the IRC server is not accepting messages now");
      return 0;
    }
    if (!pieces)
      return 0;
    /* XEP-0045 §7.4: the room reflects the message to every occupant,
     * the sender included, with the sender's id. */
    char *nick_jid = occupant_jid(ch, c->nick);
    bf_xml *m = nick_jid ? bf_xml_new("message", NULL) : NULL;
    if (m && !bf_xml_set_attr(m, "from", nick_jid) &&
        !bf_xml_set_attr(m, "type", "groupchat") &&
        (!bf_xml_attr(stanza, "id") ||
         !bf_xml_set_attr(m, "id", bf_xml_attr(stanza, "id"))) &&
        bf_xml_add_text_child(m, "body", NULL, body)) {
      bf_irc_occupant *self = bf_irc_occupant_find(c, ch, c->nick);
      add_occupant_id(m, self ? self->nick : NULL);
      bf_irc_history_mark(m, ch->room, bf_irc_history_add(irc, c->server,
                                                          ch->name, c->nick,
                                                          body, 0, false));
      bf_irc_send_to_members(c, ch, m, false);
    }
    bf_xml_free(m);
    free(nick_jid);
    return 0;
  }
  if (!body)
    return 0;
  return bf_irc_private_send(irc, stanza, c, a->channel ? to->resource : a->name,
                             body);
}
