/* Private chats with IRC users (nick%server@GW, or a room's
 * occupant JID), raw IRC commands to the server's JID, and the PRIVMSG
 * lines every text to IRC becomes (rooms' too). */
#include "irc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "irc-text.h"

/* Sends text to target, one PRIVMSG per line and per piece that fits. */
typedef struct {
  bf_irc_conn *conn;
  const char *target;
  bool action;
  int rc;
  unsigned pieces;             /* lines sent */
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
  w->pieces += !w->rc;
  return w->rc;
}

int bf_irc_privmsg(bf_irc_conn *c, const char *target, const char *body,
                   unsigned *pieces) {
  bool action = !strncmp(body, "/me ", 4); /* XEP-0245 */
  privmsg_walk w = {c, target, action, 0, 0};
  /* Room for the text as others receive it (our prefix counted), minus
   * the CTCP framing of an action. */
  size_t prefix = strlen(c->nick) + 1 + 10 + 1 + 63;
  size_t room = bf_irc_text_room("PRIVMSG", target, prefix);
  if (action)
    room = room > 9 ? room - 9 : 0;
  if (room < 16)
    return BF_E2BIG;
  int rc = bf_irc_split_text(action ? body + 4 : body, room, send_piece, &w);
  if (pieces)
    *pieces = w.pieces;
  return rc ? rc : w.rc;
}

/* A private message (or notice) from nick: a chat message from
 * nick%server@GW to the user. */
void bf_irc_private_received(bf_irc_conn *c, const char *nick,
                             const char *text, bool notice) {
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
  char *inner = bf_irc_body_of(c, ctcp && !strcasecmp(ctcp, "ACTION") ? args : text,
                        NULL);
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

int bf_irc_private_send(bf_irc *irc, const bf_xml *stanza, bf_irc_conn *c,
                        const char *nick, const char *body) {
  if (!c || c->state != BF_IRC_ONLINE) {
    bf_irc_reply_error(irc, stanza, "recipient-unavailable",
                       "not connected to that IRC server: join one of its "
                       "channels first");
    return 0;
  }
  if (!nick || !*nick) {
    /* To the server's JID: each line is a raw IRC command (Biboumi's
     * behaviour), e.g. "WHOIS bob" or "MODE #chan +i". */
    bf_irc_message_begin(c, stanza);
    int rc = bf_irc_send_raw_text(c, body);
    if (rc)
      bf_irc_reply_error(irc, stanza, "not-acceptable",
                         "each line must be one IRC command of at most 510 "
                         "bytes");
    bf_irc_message_end(c, rc != 0);
    return 0;
  }
  bf_irc_message_begin(c, stanza);
  int rc = bf_irc_privmsg(c, nick, body, NULL);
  if (rc)
    bf_irc_reply_error(irc, stanza, "resource-constraint",
                       "the IRC server is not accepting messages now");
  bf_irc_message_end(c, rc != 0);
  return 0;
}
