/* IRC channels as MUC rooms (XEP-0045) and private chats.
 *
 * A room is joined per (user, channel) on the user's one connection to the
 * server; every resource of the user that joined gets the room's traffic.
 * IRC never echoes our own messages (without echo-message), so the room's
 * reflection of them (XEP-0045 §7.4) is made here. */
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
#define STATUS_NICK_MODIFIED "210"
#define STATUS_NICK_CHANGE "303"
#define STATUS_KICKED "307"
#define STATUS_SHUTDOWN "332"

void bf_irc_channel_free(bf_irc_channel *ch) {
  for (size_t i = 0; i < ch->n_members; i++)
    free(ch->members[i].jid);
  free(ch->members);
  for (size_t i = 0; i < ch->n_occupants; i++)
    free(ch->occupants[i]);
  free(ch->occupants);
  free(ch->name);
  free(ch->room);
  free(ch->topic);
  free(ch);
}

static bf_irc_channel *channel_find(bf_irc_conn *c, const char *name) {
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

/* ---- occupants -------------------------------------------------------------- */

/* The membership prefix of a NAMES entry ('@', '+', …; multi-prefix may
 * give several: the first is the highest). */
static bool is_prefix(char ch) { return ch && strchr("~&@%+", ch) != NULL; }

static const char *nick_of(const char *entry) {
  while (is_prefix(*entry))
    entry++;
  return entry;
}

static ssize_t occupant_index(const bf_irc_channel *ch, const char *nick) {
  for (size_t i = 0; i < ch->n_occupants; i++) {
    if (!strcasecmp(nick_of(ch->occupants[i]), nick))
      return (ssize_t)i;
  }
  return -1;
}

static void occupant_add(bf_irc_channel *ch, const char *entry) {
  ssize_t at = occupant_index(ch, nick_of(entry));
  char *copy = strdup(entry);
  if (!copy)
    return;
  if (at >= 0) {
    free(ch->occupants[at]);
    ch->occupants[at] = copy;
    return;
  }
  char **grown = realloc(ch->occupants, (ch->n_occupants + 1) * sizeof *grown);
  if (!grown) {
    free(copy);
    return;
  }
  ch->occupants = grown;
  ch->occupants[ch->n_occupants++] = copy;
}

static void occupant_remove(bf_irc_channel *ch, const char *nick) {
  ssize_t at = occupant_index(ch, nick);
  if (at < 0)
    return;
  free(ch->occupants[at]);
  ch->occupants[at] = ch->occupants[--ch->n_occupants];
}

/* IRC channel modes to MUC (Biboumi's mapping): ~ owner, & and @ admin,
 * % moderator member, + participant member. */
static void affiliation_of(char prefix, const char **affiliation,
                           const char **role) {
  switch (prefix) {
  case '~': *affiliation = "owner"; *role = "moderator"; break;
  case '&':
  case '@': *affiliation = "admin"; *role = "moderator"; break;
  case '%': *affiliation = "member"; *role = "moderator"; break;
  case '+': *affiliation = "member"; *role = "participant"; break;
  default: *affiliation = "none"; *role = "participant"; break;
  }
}

/* ---- stanzas to the user's resources ------------------------------------------ */

static void send_to_members(bf_irc_conn *c, bf_irc_channel *ch, bf_xml *stanza,
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

/* <presence from='room/nick'> with muc#user item and status codes
 * (NULL-terminated), to one member (to) or to all (to NULL). */
static void occupant_presence(bf_irc_conn *c, bf_irc_channel *ch,
                              const char *entry, const char *type,
                              const char *status_text,
                              const char *const *codes, const char *to,
                              const char *new_nick) {
  const char *nick = nick_of(entry);
  const char *affiliation, *role;
  affiliation_of(entry[0], &affiliation, &role);
  if (type && !strcmp(type, "unavailable"))
    role = "none";
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
  if (status_text && *status_text)
    bf_xml_add_text_child(p, "status", NULL, status_text);
  for (size_t i = 0; codes && codes[i]; i++)
    bf_xml_set_attr(bf_xml_add_child(x, "status", NULL), "code", codes[i]);
  if (to) {
    int rc = bf_xml_set_attr(p, "to", to);
    if (!rc)
      rc = c->irc->host->send(c->irc->host, p);
    if (rc)
      c->irc->host->log(c->irc->host, BF_LOG_WARN,
                        "could not send a presence of %s to %s: %s", ch->room,
                        to, bf_strerror(rc));
  } else {
    send_to_members(c, ch, p, false);
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
      send_to_members(c, ch, m, true);
    }
  }
  bf_xml_free(m);
  free(from);
}

/* Everything a resource sees when it enters the room: the others, itself
 * (110, and 210 when IRC gave it another nick), the subject. */
static void send_roster(bf_irc_conn *c, bf_irc_channel *ch, const char *to,
                        int history) {
  const char *self = NULL;
  for (size_t i = 0; i < ch->n_occupants; i++) {
    if (!strcasecmp(nick_of(ch->occupants[i]), c->nick))
      self = ch->occupants[i];
    else
      occupant_presence(c, ch, ch->occupants[i], NULL, NULL, NULL, to, NULL);
  }
  bool renamed = strcmp(c->nick, c->wanted_nick) != 0;
  const char *codes[] = {STATUS_SELF, renamed ? STATUS_NICK_MODIFIED : NULL,
                         NULL};
  occupant_presence(c, ch, self ? self : c->nick, NULL, NULL, codes, to, NULL);
  /* XEP-0045 §7.2.14: history after the presences, before the subject. */
  (void)bf_irc_history_send(c->irc, c->server, ch->name, ch->room, to, history);
  send_subject(c, ch, to, NULL);
}

/* The rooms of the connection that a resource is in are left with an
 * error or a reason: self-presence unavailable. */
static void leave_all(bf_irc_conn *c, bf_irc_channel *ch, const char *reason,
                      const char *code) {
  const char *codes[] = {STATUS_SELF, code, NULL};
  occupant_presence(c, ch, c->nick, "unavailable", reason, codes, NULL, NULL);
}

/* ---- from IRC ------------------------------------------------------------------ */

void bf_irc_on_registered(bf_irc_conn *c) {
  for (bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
    const char *params[] = {ch->name};
    (void)bf_irc_send(c, "JOIN", params, 1, false);
  }
}

static void join_failed(bf_irc_conn *c, bf_irc_channel *ch,
                        const char *condition, const char *text);

void bf_irc_on_closed(bf_irc_conn *c, const char *reason) {
  while (c->channels) {
    bf_irc_channel *ch = c->channels;
    c->channels = ch->next;
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
      for (size_t i = 0; i < ch->n_occupants; i++) {
        if (strcasecmp(nick_of(ch->occupants[i]), c->nick) != 0)
          occupant_presence(c, ch, ch->occupants[i], "unavailable",
                            "disconnected from the gateway", NULL, NULL, NULL);
      }
      const char *codes[] = {STATUS_SELF, NULL};
      occupant_presence(c, ch, c->nick, NULL, status, codes, NULL, NULL);
    }
    for (size_t i = 0; i < ch->n_occupants; i++)
      free(ch->occupants[i]);
    free(ch->occupants);
    ch->occupants = NULL;
    ch->n_occupants = 0;
    ch->joined = ch->names_done = false;
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

/* IRC text (any encoding, IRC formatting) to an XMPP body. */
static char *body_of(const char *text) {
  char *utf8 = bf_irc_to_utf8(text, strlen(text), NULL);
  char *styled = utf8 ? bf_irc_format_to_styling(utf8) : NULL;
  free(utf8);
  return styled;
}

char *bf_irc_channel_body(const char *text) {
  char buf[BF_IRC_LINE_MAX];
  const char *ctcp, *args;
  if (!bf_irc_ctcp_parse(text, buf, sizeof buf, &ctcp, &args))
    return body_of(text);
  if (strcasecmp(ctcp, "ACTION") != 0)
    return NULL; /* other CTCPs to a channel are not shown */
  char *inner = body_of(args);
  size_t n = inner ? strlen(inner) + 5 : 0;
  char *body = inner ? malloc(n) : NULL;
  if (body)
    snprintf(body, n, "/me %s", inner); /* XEP-0245 */
  free(inner);
  return body;
}

static void channel_message(bf_irc_conn *c, bf_irc_channel *ch, const char *nick,
                            const char *text, const bf_irc_msg *msg) {
  char *body = bf_irc_channel_body(text);
  char *from = occupant_jid(ch, nick);
  bf_xml *m = body && from ? bf_xml_new("message", NULL) : NULL;
  if (m && !bf_xml_set_attr(m, "from", from) &&
      !bf_xml_set_attr(m, "type", "groupchat") &&
      bf_xml_add_text_child(m, "body", NULL, body)) {
    const char *msgid = bf_irc_tag_value(msg, "msgid");
    if (msgid)
      bf_xml_set_attr(m, "id", msgid);
    uint64_t stamp = bf_irc_history_time_parse(bf_irc_tag_value(msg, "time"));
    bf_irc_history_mark(m, ch->room, bf_irc_history_add(c->irc, c->server,
                                                        ch->name, nick, body,
                                                        stamp, false));
    send_to_members(c, ch, m, true);
  }
  bf_xml_free(m);
  free(from);
  free(body);
}

/* A private message (or notice) from nick: a chat message from
 * nick%server@GW to the user. */
static void private_message(bf_irc_conn *c, const char *nick, const char *text,
                            bool notice) {
  char buf[BF_IRC_LINE_MAX];
  const char *ctcp = NULL, *args = NULL;
  const bf_host *host = c->irc->host;
  if (!bf_irc_ctcp_parse(text, buf, sizeof buf, &ctcp, &args)) {
    ctcp = NULL;
  } else {
    if (notice)
      return;
    if (!strcasecmp(ctcp, "VERSION") || !strcasecmp(ctcp, "PING")) {
      char reply[300];
      snprintf(reply, sizeof reply, "\001%s %s\001", ctcp,
               !strcasecmp(ctcp, "PING") ? args : "babelfish " BF_VERSION);
      const char *params[] = {nick, reply};
      (void)bf_irc_send(c, "NOTICE", params, 2, true);
      return;
    }
    if (strcasecmp(ctcp, "ACTION") != 0)
      return;
  }
  char *inner = body_of(ctcp && !strcasecmp(ctcp, "ACTION") ? args : text);
  char *body = inner;
  if (inner && ctcp && !strcasecmp(ctcp, "ACTION")) {
    size_t n = strlen(inner) + 5;
    body = malloc(n);
    if (body)
      snprintf(body, n, "/me %s", inner);
    free(inner);
  }
  char *from = bf_irc_jid(c->irc, c->server, nick);
  bf_xml *m = body && from ? bf_xml_new("message", NULL) : NULL;
  if (m && !bf_xml_set_attr(m, "from", from) &&
      !bf_xml_set_attr(m, "to", c->user) &&
      !bf_xml_set_attr(m, "type", "chat") &&
      bf_xml_add_text_child(m, "body", NULL, body)) {
    int rc = host->send_durable(host, m);
    if (rc)
      host->log(host, BF_LOG_WARN, "could not store a private message: %s",
                bf_strerror(rc));
  }
  bf_xml_free(m);
  free(from);
  free(body);
}

/* ERR_*: a join refused (XEP-0045 §7.2.x error conditions). */
static void join_refused(bf_irc_conn *c, const bf_irc_msg *m,
                         const char *condition) {
  if (m->n_params < 2)
    return;
  bf_irc_channel *ch = channel_find(c, m->params[1]);
  if (!ch || ch->joined)
    return;
  join_failed(c, ch, condition, m->params[m->n_params - 1]);
  channel_remove(c, ch);
}

/* The join of every member of ch failed: an error presence from the room
 * (XEP-0045 §7.2.6 and following). */
static void join_failed(bf_irc_conn *c, bf_irc_channel *ch,
                        const char *condition, const char *text) {
  for (size_t i = 0; i < ch->n_members; i++) {
    char *from = occupant_jid(ch, c->wanted_nick);
    bf_xml *p = from ? bf_xml_new("presence", NULL) : NULL;
    bf_xml *err = p ? bf_xml_add_child(p, "error", NULL) : NULL;
    if (err && !bf_xml_set_attr(p, "from", from) &&
        !bf_xml_set_attr(p, "to", ch->members[i].jid) &&
        !bf_xml_set_attr(p, "type", "error") &&
        !bf_xml_set_attr(err, "type", bf_stanza_error_type(condition))) {
      bf_xml_add_child(err, condition, "urn:ietf:params:xml:ns:xmpp-stanzas");
      bf_xml_add_text_child(err, "text", "urn:ietf:params:xml:ns:xmpp-stanzas",
                            text);
      (void)c->irc->host->send(c->irc->host, p);
    }
    bf_xml_free(p);
    free(from);
  }
}

void bf_irc_room_entered(bf_irc_conn *c, bf_irc_channel *ch) {
  for (size_t i = 0; i < ch->n_members; i++) {
    send_roster(c, ch, ch->members[i].jid, ch->members[i].history);
    ch->members[i].history = 0; /* a rejoin after a reconnection: none */
  }
}

bool bf_irc_on_line(bf_irc_conn *c, const bf_irc_msg *m) {
  if (bf_irc_history_on_line(c, m))
    return true;
  const char *cmd = m->command;
  const char *nick = m->nick ? m->nick : "";
  bool me = m->nick && !strcasecmp(m->nick, c->nick);
  bf_irc_channel *ch = NULL;
  if (!strcasecmp(cmd, "JOIN") && m->n_params >= 1) {
    if (!(ch = channel_find(c, m->params[0])))
      return true;
    if (me) {
      ch->joined = true;
    } else {
      occupant_add(ch, nick);
      if (ch->names_done)
        occupant_presence(c, ch, nick, NULL, NULL, NULL, NULL, NULL);
    }
  } else if (bf_irc_is_numeric(m, 353) && m->n_params >= 4) {
    /* RPL_NAMREPLY: me, symbol, channel, "nick @op +voice" */
    if (!(ch = channel_find(c, m->params[2])) || ch->names_done)
      return true;
    char *names = strdup(m->params[3]);
    char *save = NULL;
    for (char *t = names ? strtok_r(names, " ", &save) : NULL; t;
         t = strtok_r(NULL, " ", &save))
      occupant_add(ch, t);
    free(names);
  } else if (bf_irc_is_numeric(m, 366) && m->n_params >= 2) {
    if (!(ch = channel_find(c, m->params[1])) || ch->names_done)
      return true;
    ch->names_done = true;
    if (occupant_index(ch, c->nick) < 0)
      occupant_add(ch, c->nick);
    if (!bf_irc_history_wait(c, ch))
      bf_irc_room_entered(c, ch);
  } else if (bf_irc_is_numeric(m, 332) && m->n_params >= 3) {
    if (!(ch = channel_find(c, m->params[1])))
      return true;
    free(ch->topic);
    ch->topic = body_of(m->params[2]);
  } else if (!strcasecmp(cmd, "TOPIC") && m->n_params >= 2) {
    if (!(ch = channel_find(c, m->params[0])))
      return true;
    free(ch->topic);
    ch->topic = body_of(m->params[1]);
    send_subject(c, ch, NULL, nick);
  } else if ((!strcasecmp(cmd, "PRIVMSG") || !strcasecmp(cmd, "NOTICE")) &&
             m->n_params >= 2 && m->nick) {
    if ((ch = channel_find(c, m->params[0])))
      channel_message(c, ch, nick, m->params[1], m);
    else if (!strcasecmp(m->params[0], c->nick))
      private_message(c, nick, m->params[1], !strcasecmp(cmd, "NOTICE"));
  } else if (!strcasecmp(cmd, "PART") && m->n_params >= 1) {
    if (!(ch = channel_find(c, m->params[0])))
      return true;
    if (me)
      return true; /* our own PART: the room was already left */
    ssize_t at = occupant_index(ch, nick);
    if (at >= 0)
      occupant_presence(c, ch, ch->occupants[at], "unavailable",
                        m->n_params >= 2 ? m->params[1] : NULL, NULL, NULL,
                        NULL);
    occupant_remove(ch, nick);
  } else if (!strcasecmp(cmd, "QUIT") && m->nick) {
    for (ch = c->channels; ch; ch = ch->next) {
      ssize_t at = occupant_index(ch, nick);
      if (at < 0)
        continue;
      occupant_presence(c, ch, ch->occupants[at], "unavailable",
                        m->n_params >= 1 ? m->params[0] : NULL, NULL, NULL,
                        NULL);
      occupant_remove(ch, nick);
    }
  } else if (!strcasecmp(cmd, "NICK") && m->n_params >= 1 && m->nick) {
    const char *new_nick = m->params[0];
    for (ch = c->channels; ch; ch = ch->next) {
      ssize_t at = occupant_index(ch, nick);
      if (at < 0)
        continue;
      /* XEP-0045 §7.6: unavailable with 303 and the new nick, then
       * available under the new one. */
      char prefix[2] = {is_prefix(ch->occupants[at][0]) ? ch->occupants[at][0] : 0};
      char entry[128];
      snprintf(entry, sizeof entry, "%s%s", prefix, new_nick);
      const char *codes303[] = {STATUS_NICK_CHANGE, me ? STATUS_SELF : NULL, NULL};
      occupant_presence(c, ch, ch->occupants[at], "unavailable", NULL,
                        codes303, NULL, new_nick);
      occupant_remove(ch, nick);
      occupant_add(ch, entry);
      const char *codes[] = {me ? STATUS_SELF : NULL, NULL};
      occupant_presence(c, ch, entry, NULL, NULL, codes, NULL, NULL);
    }
    if (me) {
      char *copy = strdup(new_nick);
      if (copy) {
        free(c->nick);
        c->nick = copy;
      }
    }
  } else if (!strcasecmp(cmd, "KICK") && m->n_params >= 2) {
    if (!(ch = channel_find(c, m->params[0])))
      return true;
    const char *victim = m->params[1];
    bool kicked_me = !strcasecmp(victim, c->nick);
    ssize_t at = occupant_index(ch, victim);
    const char *codes[] = {STATUS_KICKED, kicked_me ? STATUS_SELF : NULL, NULL};
    occupant_presence(c, ch, at >= 0 ? ch->occupants[at] : victim,
                      "unavailable", m->n_params >= 3 ? m->params[2] : NULL,
                      codes, NULL, NULL);
    if (kicked_me)
      channel_remove(c, ch);
    else
      occupant_remove(ch, victim);
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

static void reply_error(bf_irc *irc, const bf_xml *stanza, const char *condition,
                        const char *text) {
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
    reply_error(irc, stanza, "jid-malformed", "join with a nick: ROOM/NICK");
    return 0;
  }
  if (!valid_nick(to->resource)) {
    reply_error(irc, stanza, "jid-malformed",
                "not a valid IRC nick: letters, digits and -[]\\`^{}|_ "
                "only, not starting with a digit or -, at most 30");
    return 0;
  }
  (void)from;
  bf_irc_conn *c = bf_irc_conn_find(irc, bare, a->server);
  if (!c && bf_irc_conns_of(irc, bare) >= BF_IRC_SERVERS_PER_USER_MAX) {
    reply_error(irc, stanza, "policy-violation",
                "you are connected to as many IRC servers as this gateway "
                "allows");
    return 0;
  }
  if (!c && !(c = bf_irc_conn_get(irc, bare, a->server, to->resource))) {
    reply_error(irc, stanza, "remote-server-not-found",
                "cannot connect to that IRC server");
    return 0;
  }
  bf_irc_channel *ch = channel_find(c, a->name);
  size_t n_channels = 0;
  for (bf_irc_channel *k = c->channels; k; k = k->next)
    n_channels++;
  if (!ch && n_channels >= BF_IRC_CHANNELS_PER_CONN_MAX) {
    reply_error(irc, stanza, "policy-violation",
                "you are in as many channels of this server as this gateway "
                "allows");
    return 0;
  }
  bool new_channel = !ch;
  if (!ch) {
    ch = calloc(1, sizeof *ch);
    char *room = bf_irc_jid(irc, a->server, a->name);
    if (!ch || !room || !(ch->name = strdup(a->name))) {
      free(room);
      free(ch);
      reply_error(irc, stanza, "internal-server-error", NULL);
      return 0;
    }
    ch->room = room;
    ch->next = c->channels;
    c->channels = ch;
  }
  bool already = false;
  for (size_t i = 0; i < ch->n_members; i++)
    already |= !strcmp(ch->members[i].jid, full);
  /* XEP-0045 §7.2.15: <history maxstanzas='N'/> in the join. */
  const bf_xml *mx = bf_xml_child(stanza, "x", BF_IRC_NS_MUC);
  const bf_xml *hist = mx ? bf_xml_child(mx, "history", BF_IRC_NS_MUC) : NULL;
  const char *maxstanzas = hist ? bf_xml_attr(hist, "maxstanzas") : NULL;
  int history = maxstanzas ? atoi(maxstanzas) : BF_IRC_HISTORY_DEFAULT;
  if (history < 0)
    history = 0;
  if (history > BF_IRC_HISTORY_MAX)
    history = BF_IRC_HISTORY_MAX;
  if (member_add(ch, full, history) != 0) {
    reply_error(irc, stanza, "internal-server-error", NULL);
    return 0;
  }
  if (ch->names_done && !ch->history_wait_until && !already) {
    send_roster(c, ch, full, history); /* another resource joins the room */
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
  bf_irc_channel *ch = c ? channel_find(c, a->name) : NULL;
  if (!ch || !member_remove(ch, full))
    return;
  /* XEP-0045 §7.14: the leaving resource gets its own unavailable. */
  const char *codes[] = {STATUS_SELF, NULL};
  occupant_presence(c, ch, c->nick, "unavailable", NULL, codes, full, NULL);
  if (ch->n_members)
    return;
  const char *params[] = {ch->name, status ? status : "Leaving"};
  (void)bf_irc_send(c, "PART", params, 2, true);
  channel_remove(c, ch);
  if (!c->channels)
    bf_irc_conn_quit(c, NULL);
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

/* Sends text to target, one PRIVMSG per line and per piece that fits. */
typedef struct {
  bf_irc_conn *conn;
  const char *target;
  bool action;
  int rc;
} privmsg_walk;

static int send_piece(void *data, const char *piece, size_t len) {
  privmsg_walk *w = data;
  char text[BF_IRC_LINE_MAX + 16];
  if (w->action)
    snprintf(text, sizeof text, "\001ACTION %.*s\001", (int)len, piece);
  else
    snprintf(text, sizeof text, "%.*s", (int)len, piece);
  const char *params[] = {w->target, text};
  w->rc = bf_irc_send_user(w->conn, "PRIVMSG", params, 2, true);
  return w->rc;
}

static int privmsg(bf_irc_conn *c, const char *target, const char *body) {
  bool action = !strncmp(body, "/me ", 4); /* XEP-0245 */
  privmsg_walk w = {c, target, action, 0};
  /* Room for the text as others receive it (our prefix counted), minus
   * the CTCP framing of an action. */
  size_t prefix = strlen(c->nick) + 1 + 10 + 1 + 63;
  size_t room = bf_irc_text_room("PRIVMSG", target, prefix);
  if (action)
    room = room > 9 ? room - 9 : 0;
  if (room < 16)
    return BF_E2BIG;
  int rc = bf_irc_split_text(action ? body + 4 : body, room, send_piece, &w);
  return rc ? rc : w.rc;
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
    bf_irc_channel *ch = c ? channel_find(c, a->name) : NULL;
    if (!ch || !ch->joined) {
      reply_error(irc, stanza, "not-acceptable", "join the room first");
      return 0;
    }
    if (subject && !body) {
      const char *params[] = {ch->name, subject};
      (void)bf_irc_send_user(c, "TOPIC", params, 2, true);
      return 0;
    }
    if (!body)
      return 0; /* chat states and the like */
    if (privmsg(c, ch->name, body) != 0) {
      reply_error(irc, stanza, "resource-constraint",
                  "the IRC server is not accepting messages now");
      return 0;
    }
    /* XEP-0045 §7.4: the room reflects the message to every occupant,
     * the sender included, with the sender's id. */
    char *nick_jid = occupant_jid(ch, c->nick);
    bf_xml *m = nick_jid ? bf_xml_new("message", NULL) : NULL;
    if (m && !bf_xml_set_attr(m, "from", nick_jid) &&
        !bf_xml_set_attr(m, "type", "groupchat") &&
        (!bf_xml_attr(stanza, "id") ||
         !bf_xml_set_attr(m, "id", bf_xml_attr(stanza, "id"))) &&
        bf_xml_add_text_child(m, "body", NULL, body)) {
      bf_irc_history_mark(m, ch->room, bf_irc_history_add(irc, c->server,
                                                          ch->name, c->nick,
                                                          body, 0, false));
      send_to_members(c, ch, m, false);
    }
    bf_xml_free(m);
    free(nick_jid);
    return 0;
  }
  if (!body)
    return 0;
  /* A private chat: nick%server@GW, or room/nick (a MUC private
   * message), both to the nick. */
  const char *nick = a->channel ? to->resource : a->name;
  if (!nick || !*nick) {
    /* To the server's JID: each line is a raw IRC command (Biboumi's
     * behaviour), e.g. "WHOIS bob" or "MODE #chan +i". */
    if (!c || c->state != BF_IRC_ONLINE) {
      reply_error(irc, stanza, "recipient-unavailable",
                  "not connected to that IRC server: join one of its "
                  "channels first");
      return 0;
    }
    if (bf_irc_send_raw_text(c, body) != 0)
      reply_error(irc, stanza, "not-acceptable",
                  "each line must be one IRC command of at most 510 bytes");
    return 0;
  }
  if (!c || c->state != BF_IRC_ONLINE) {
    reply_error(irc, stanza, "recipient-unavailable",
                "not connected to that IRC server: join one of its channels "
                "first");
    return 0;
  }
  if (privmsg(c, nick, body) != 0)
    reply_error(irc, stanza, "resource-constraint",
                "the IRC server is not accepting messages now");
  return 0;
}
