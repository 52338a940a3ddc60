/* One IRC connection per (XMPP user, IRC server), shared by all the
 * user's resources: resolve (libuv getaddrinfo), try each address on each
 * configured port, register (NICK/USER; SASL EXTERNAL with the user's
 * client certificate or PLAIN; NickServ IDENTIFY), answer PING, keep the
 * connection alive, write lines through the one builder that refuses
 * CR/LF/NUL. */
#include "irc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "irc-text.h"
#include "irc-tls.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define CONNECT_TIMEOUT_MS 20000u

#define conn_of(handle, member) \
  ((bf_irc_conn *)((char *)(handle) - offsetof(bf_irc_conn, member)))

static void conn_log(const bf_irc_conn *c, int level, const char *fmt, ...)
    BF_PRINTF(3, 4);
static void conn_log(const bf_irc_conn *c, int level, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  c->irc->host->log(c->irc->host, level, "%s on %s: %s", c->user, c->server,
                    text);
}

bf_irc_conn *bf_irc_conn_find(bf_irc *irc, const char *user,
                              const char *server) {
  for (bf_irc_conn *c = irc->conns; c; c = c->next) {
    if (c->state != BF_IRC_CLOSING && !c->shutting_down &&
        !strcmp(c->user, user) &&
        !strcasecmp(c->server, server))
      return c;
  }
  return NULL;
}

size_t bf_irc_conns_of(const bf_irc *irc, const char *user) {
  size_t n = 0;
  for (const bf_irc_conn *c = irc->conns; c; c = c->next)
    n += !strcmp(c->user, user);
  return n;
}

static void pending_free(bf_irc_conn *c);
static void pending_lost(bf_irc_conn *c);

/* Wipes and frees a secret (a password, a private key). */
static void forget(char *secret) {
  if (secret)
    explicit_bzero(secret, strlen(secret));
  free(secret);
}

static void conn_free(bf_irc_conn *c) {
  while (c->channels) {
    bf_irc_channel *ch = c->channels;
    c->channels = ch->next;
    bf_irc_channel_free(ch);
  }
  if (c->addresses)
    uv_freeaddrinfo(c->addresses);
  free(c->user);
  free(c->server);
  free(c->nick);
  free(c->wanted_nick);
  free(c->nick_change_to);
  free(c->nick_change_from);
  free(c->sasl_user);
  free(c->realname);
  free(c->username);
  free(c->tls_pin);
  free(c->encoding);
  free(c->address);
  free(c->after_connect);
  free(c->identity_cert);
  forget(c->nickserv_password);
  forget(c->identity_key);
  forget(c->sasl_password);
  forget(c->pass);
  bf_irc_tls_free(c->tls_session);
  pending_free(c);
  bf_irc_history_conn_reset(c);
  bf_irc_reader_close(&c->reader);
  free(c);
}

static void on_handle_closed(uv_handle_t *handle) {
  bf_irc_conn *c = handle->data;
  if (--c->handles == 0 && !c->resolving)
    conn_free(c);
}

static void unlink_conn(bf_irc_conn *c) {
  for (bf_irc_conn **p = &c->irc->conns; *p; p = &(*p)->next) {
    if (*p == c) {
      *p = c->next;
      return;
    }
  }
}

static bf_irc_conn *conn_new(bf_irc *irc, const char *user, const char *server,
                             const char *nick);
static void conn_start(bf_irc_conn *c);

/* The connection was lost while the user is in rooms: a new one takes the
 * rooms over and connects after a backoff (1 s, doubling to 60 s, with
 * jitter); the users stay in the rooms and are told by a status. */
static void reconnect_later(bf_irc_conn *c, const char *reason) {
  bf_irc_conn *n = conn_new(c->irc, c->user, c->server, c->wanted_nick);
  if (!n)
    return;
  n->attempts = c->attempts + 1;
  unsigned shift = n->attempts > 7 ? 6 : n->attempts - 1;
  uint64_t delay = 1000u << shift;
  if (delay > BF_IRC_RECONNECT_MAX_MS)
    delay = BF_IRC_RECONNECT_MAX_MS;
  delay += (uint64_t)rand() % (delay / 4 + 1);
  n->channels = c->channels;
  c->channels = NULL;
  char status[400];
  snprintf(status, sizeof status,
           "Connection to the IRC server lost (%s); reconnecting in %llu s",
           reason ? reason : "closed", (unsigned long long)(delay + 999) / 1000);
  bf_irc_on_lost(n, status);
  n->state = BF_IRC_IDLE;
  n->reconnect_at_ms = uv_now(c->irc->host->loop) + delay;
  conn_log(n, BF_LOG_INFO, "reconnecting in %llu ms (attempt %u)",
           (unsigned long long)delay, n->attempts);
}

/* Reconnect only what worked before: a connection that never got into a
 * room (wrong port, refused certificate, unknown host) fails its joins
 * instead of retrying forever. */
static bool was_in_rooms(const bf_irc_conn *c) {
  if (c->attempts > 0)
    return true; /* already a reconnection */
  for (const bf_irc_channel *ch = c->channels; ch; ch = ch->next) {
    if (ch->names_done || (ch->persistent && !ch->n_members))
      return true; /* in use, or kept while the user is away */
  }
  return false;
}

/* Ends the connection: handles close, the struct goes when the last one
 * has. Rooms in use move to a new connection that reconnects, unless the
 * user or babelfish ended it (quitting, closing). */
static void conn_close(bf_irc_conn *c, const char *reason) {
  if (c->state == BF_IRC_CLOSING)
    return;
  c->state = BF_IRC_CLOSING;
  unlink_conn(c);
  pending_lost(c);
  if (c->channels && !c->quitting && !c->irc->closing && was_in_rooms(c))
    reconnect_later(c, reason);
  bf_irc_on_closed(c, reason);
  if (c->resolving)
    uv_cancel((uv_req_t *)&c->resolver); /* on_resolved sees CLOSING */
  c->handles++; /* held until this function returns */
  if (c->tcp_open) {
    c->tcp_open = false;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  }
  if (--c->handles == 0 && !c->resolving)
    conn_free(c);
}

/* ---- writing -------------------------------------------------------------- */

typedef struct write_req {
  uv_write_t req;
  bf_irc_conn *conn;
  size_t len;
  char data[];
} write_req;

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  bf_irc_conn *c = w->conn;
  c->queued -= w->len;
  free(w);
  if (status < 0 && status != UV_ECANCELED && c->state != BF_IRC_CLOSING) {
    conn_log(c, BF_LOG_WARN, "write failed: %s", uv_strerror(status));
    conn_close(c, "connection lost");
  }
}

/* Bytes to the socket as they are (plain text, or TLS records). */
static int write_bytes(bf_irc_conn *c, const char *line, size_t len) {
  if (c->queued + len > BF_IRC_WRITE_QUEUE_MAX) {
    conn_log(c, BF_LOG_WARN, "the server stopped reading (%zu bytes queued)",
             c->queued);
    conn_close(c, "the IRC server stopped reading");
    return BF_ENOBUFS;
  }
  write_req *w = malloc(sizeof *w + len);
  if (!w)
    return BF_ENOMEM;
  w->conn = c;
  w->len = len;
  memcpy(w->data, line, len);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
  if (rc < 0) {
    free(w);
    return BF_EIO;
  }
  c->queued += len;
  return 0;
}

static int on_cipher(void *data, const char *buf, size_t len) {
  return write_bytes(data, buf, len);
}

static int write_line(bf_irc_conn *c, const char *line, size_t len) {
  if (!c->tcp_open || (c->state != BF_IRC_REGISTERING && c->state != BF_IRC_ONLINE))
    return BF_ENOTCONN;
  c->irc->lines_out++;
  if (!c->tls_session)
    return write_bytes(c, line, len);
  char err[512];
  int rc = bf_irc_tls_write(c->tls_session, line, len, err, sizeof err);
  if (rc && rc != BF_ENOBUFS)
    conn_log(c, BF_LOG_WARN, "TLS: %s", err);
  return rc;
}

/* How long after a raw command the server's replies are shown. */
#define RAW_REPLIES_MS 10000u

/* One well-formed IRC line of at most 510 bytes, with neither a source
 * nor tags (the user speaks for themselves). check: parse space. */
static bool raw_line_valid(bf_irc_msg *check, const char *line) {
  size_t len = strlen(line);
  return len <= BF_IRC_LINE_MAX - 2 && bf_irc_parse(check, line, len) == 0 &&
         !check->source && !check->n_tags;
}

bool bf_irc_raw_line_valid(const char *line) {
  bf_irc_msg *check = malloc(sizeof *check);
  bool valid = check && !strpbrk(line, "\r\n") && raw_line_valid(check, line);
  free(check);
  return valid;
}

int bf_irc_send_raw_text(bf_irc_conn *c, const char *text) {
  /* Checked whole first: all lines or none. */
  bf_irc_msg *check = malloc(sizeof *check);
  char *copy = strdup(text);
  int rc = check && copy ? 0 : BF_ENOMEM;
  size_t lines = 0;
  for (char *save = NULL, *l = copy ? strtok_r(copy, "\r\n", &save) : NULL;
       l && !rc; l = strtok_r(NULL, "\r\n", &save)) {
    if (!raw_line_valid(check, l))
      rc = BF_EINVAL;
    lines++;
  }
  free(copy);
  free(check);
  if (rc || !lines)
    return rc ? rc : BF_EINVAL;
  /* Rebuilt from the parse: the line written is the one checked. */
  copy = strdup(text);
  check = copy ? malloc(sizeof *check) : NULL;
  for (char *save = NULL, *l = check ? strtok_r(copy, "\r\n", &save) : NULL;
       l && !rc; l = strtok_r(NULL, "\r\n", &save)) {
    if (bf_irc_parse(check, l, strlen(l)) != 0)
      break;
    /* The last parameter goes as trailing when the user wrote one, or
     * when it must (a space or a leading ':' in it). */
    bool trailing = check->n_params &&
                    (strstr(l, " :") || strchr(check->params[check->n_params - 1], ' ') ||
                     !check->params[check->n_params - 1][0] ||
                     check->params[check->n_params - 1][0] == ':');
    rc = bf_irc_send_user(c, check->command, check->params, check->n_params,
                          trailing);
  }
  free(check);
  free(copy);
  c->raw_until_ms = uv_now(c->irc->host->loop) + RAW_REPLIES_MS;
  return rc;
}

int bf_irc_send(bf_irc_conn *c, const char *command, const char *const *params,
                size_t n, bool trailing) {
  char line[BF_IRC_LINE_MAX + 1];
  int len = bf_irc_build(line, sizeof line, command, params, n, trailing);
  if (len < 0)
    return len;
  return write_line(c, line, (size_t)len);
}

/* ---- flood control -------------------------------------------------------- */

/* A message of the user with lines waiting for the bucket: enough to
 * answer its sender if they are never written. Its pieces (a long or
 * multi-line body is several PRIVMSGs) share it. */
typedef struct bf_irc_pending_message {
  unsigned lines;              /* its lines waiting */
  bool answered;               /* the sender has its answer: no bounce */
  char *sender;                /* the full JID it came from */
  char *address;               /* the gateway address it was sent to */
  char *id, *origin_id;        /* may be NULL */
} bf_irc_pending_message;

typedef struct bf_irc_pending {
  struct bf_irc_pending *next;
  bf_irc_pending_message *message; /* NULL: not from a message (KICK,
                                      MODE…: answered their own way) */
  size_t len;
  char line[];
} bf_irc_pending;

static void pending_message_free(bf_irc_pending_message *m) {
  free(m->sender);
  free(m->address);
  free(m->id);
  free(m->origin_id);
  free(m);
}

/* The record of the message being sent, made at its first waiting line.
 * NULL when no message is being sent, or on ENOMEM (c->sending set). */
static bf_irc_pending_message *sending_record(bf_irc_conn *c) {
  if (c->sending_record || !c->sending)
    return c->sending_record;
  const char *sender = bf_xml_attr(c->sending, "from");
  const char *address = bf_xml_attr(c->sending, "to");
  const char *id = bf_xml_attr(c->sending, "id");
  const bf_xml *origin = bf_xml_child(c->sending, "origin-id", BF_IRC_NS_SID);
  const char *origin_id = origin ? bf_xml_attr(origin, "id") : NULL;
  bf_irc_pending_message *m = calloc(1, sizeof *m);
  if (!m || !(m->sender = strdup(sender)) || !(m->address = strdup(address)) ||
      (id && !(m->id = strdup(id))) ||
      (origin_id && !(m->origin_id = strdup(origin_id)))) {
    if (m)
      pending_message_free(m);
    return NULL;
  }
  return c->sending_record = m;
}

void bf_irc_message_begin(bf_irc_conn *c, const bf_xml *stanza) {
  /* The router passes on only stanzas with from and to; without them
   * there would be nobody to answer. */
  c->sending = bf_xml_attr(stanza, "from") && bf_xml_attr(stanza, "to")
                   ? stanza : NULL;
  c->sending_record = NULL;
}

void bf_irc_message_end(bf_irc_conn *c, bool answered) {
  if (c->sending_record)
    c->sending_record->answered |= answered;
  c->sending = NULL;
  c->sending_record = NULL;
}

/* The message's sender learns it did not reach IRC (once): an error from
 * the address it was sent to, with its id. */
static void pending_bounce(bf_irc_conn *c, bf_irc_pending_message *m,
                           const char *text) {
  if (m->answered)
    return;
  m->answered = true;
  const bf_host *host = c->irc->host;
  bf_xml *error = bf_irc_bounce_new(m->address, m->id, m->origin_id,
                                    "remote-server-timeout", text);
  if (error && !bf_xml_set_attr(error, "to", m->sender))
    (void)host->send(host, error);
  bf_xml_free(error);
}

/* The first waiting line leaves the queue (written or lost). */
static void pending_pop(bf_irc_conn *c) {
  bf_irc_pending *p = c->pending;
  c->pending = p->next;
  if (!c->pending)
    c->pending_tail = NULL;
  c->n_pending--;
  /* A message's lines are all queued before the tick can write one, so
   * its last line never leaves while it is still being sent. */
  if (p->message && --p->message->lines == 0)
    pending_message_free(p->message);
  free(p);
}

static void pending_free(bf_irc_conn *c) {
  while (c->pending)
    pending_pop(c);
  c->sending_record = NULL; /* freed with its lines */
}

/* The connection ends (lost, QUIT, the gateway stopping) with lines still
 * waiting: each message not wholly written bounces to its sender.
 * Why not keep them for the reconnection instead: a reconnection comes
 * after a backoff of up to a minute (or never: the server may stay down,
 * the user may have left), by when the conversation has moved on and the
 * user was told the room was lost; lines landing then, unannounced, are
 * worse than a message the client marks as failed, which the user can
 * send again (or not) once back. The messages waiting for their
 * echo-message echo are bounced the same way (irc-channel.c). */
static void pending_lost(bf_irc_conn *c) {
  for (bf_irc_pending *p = c->pending; p; p = p->next) {
    if (p->message)
      pending_bounce(c, p->message,
                     "not sent to IRC: the connection to the IRC server "
                     "ended while this message waited for flood control; "
                     "send it again once reconnected");
  }
  pending_free(c);
}

/* Refills the bucket for the time since the last refill (no timer:
 * called when a line is sent and at each module tick). */
static void refill(bf_irc_conn *c, uint64_t now) {
  unsigned rate = c->throttle;
  double burst = rate * 2.0 < 4 ? 4 : rate * 2.0;
  if (now > c->tokens_at_ms)
    c->tokens += (double)(now - c->tokens_at_ms) * rate / 1000.0;
  if (c->tokens > burst)
    c->tokens = burst;
  c->tokens_at_ms = now;
}

/* Writes waiting lines while there are tokens. A write that ends the
 * connection (conn_close) has bounced what waited, the line being
 * written included (it leaves the queue only once written). */
static void flush_pending(bf_irc_conn *c) {
  if (!c->pending || c->state != BF_IRC_ONLINE)
    return;
  refill(c, uv_now(c->irc->host->loop));
  while (c->pending && c->tokens >= 1.0) {
    bf_irc_pending *p = c->pending;
    c->tokens -= 1.0;
    int rc = write_line(c, p->line, p->len);
    if (c->state != BF_IRC_ONLINE)
      return;
    if (rc && p->message)
      pending_bounce(c, p->message,
                     "not sent to IRC: the connection to the IRC server "
                     "could not write it");
    pending_pop(c);
  }
}

int bf_irc_send_user(bf_irc_conn *c, const char *command,
                     const char *const *params, size_t n, bool trailing) {
  if (c->state == BF_IRC_CLOSING || c->shutting_down)
    return BF_ENOTCONN; /* its waiting lines were bounced already */
  char line[BF_IRC_LINE_MAX + 1];
  int len = bf_irc_build(line, sizeof line, command, params, n, trailing);
  if (len < 0)
    return len;
  if (!c->throttle)
    return write_line(c, line, (size_t)len);
  refill(c, uv_now(c->irc->host->loop));
  if (!c->pending && c->tokens >= 1.0 && c->state == BF_IRC_ONLINE) {
    c->tokens -= 1.0;
    return write_line(c, line, (size_t)len);
  }
  if (c->n_pending >= BF_IRC_PENDING_MAX)
    return BF_ENOBUFS;
  bf_irc_pending *p = malloc(sizeof *p + (size_t)len);
  if (!p)
    return BF_ENOMEM;
  p->next = NULL;
  p->message = sending_record(c);
  if (c->sending && !p->message) {
    free(p); /* refused rather than sent with no way to bounce */
    return BF_ENOMEM;
  }
  if (p->message)
    p->message->lines++;
  p->len = (size_t)len;
  memcpy(p->line, line, (size_t)len);
  if (c->pending_tail)
    c->pending_tail->next = p;
  else
    c->pending = p;
  c->pending_tail = p;
  c->n_pending++;
  return 0;
}

/* ---- reading ---------------------------------------------------------------- */

/* Registration (modern.ircdocs "Connection registration"): PASS, then
 * CAP LS 302 so that capabilities and SASL are settled before CAP END,
 * NICK and USER. A server without CAP ignores it (421) and registers. */
static void send_registration(bf_irc_conn *c) {
  const bf_irc *irc = c->irc;
  const char *pass[] = {c->pass};
  const char *cap[] = {"LS", "302"};
  const char *nick[] = {c->nick};
  const char *user_name = c->username ? c->username
                          : irc->username ? irc->username : c->nick;
  const char *real = c->realname ? c->realname
                     : irc->realname ? irc->realname : c->nick;
  const char *user[] = {user_name, "0", "*", real};
  c->caps = c->caps_wanted = c->sasl_offered = 0;
  c->sasl_mechanism = BF_IRC_SASL_NONE;
  c->logged_in = false;
  bf_irc_history_conn_reset(c); /* batch refs are per session */
  if (c->pass)
    (void)bf_irc_send(c, "PASS", pass, 1, true);
  c->cap_negotiating = bf_irc_send(c, "CAP", cap, 2, false) == 0;
  (void)bf_irc_send(c, "NICK", nick, 1, false);
  (void)bf_irc_send(c, "USER", user, 4, true);
}

static void cap_end(bf_irc_conn *c) {
  const char *end[] = {"END"};
  if (c->cap_negotiating)
    (void)bf_irc_send(c, "CAP", end, 1, false);
  c->cap_negotiating = false;
}

void bf_irc_tell_user(bf_irc_conn *c, const char *text) {
  const bf_host *host = c->irc->host;
  char *from = bf_irc_jid(c->irc, c->server, NULL);
  bf_xml *m = from ? bf_xml_new("message", NULL) : NULL;
  if (m && !bf_xml_set_attr(m, "from", from) &&
      !bf_xml_set_attr(m, "to", c->user) &&
      !bf_xml_set_attr(m, "type", "chat") &&
      bf_xml_add_text_child(m, "body", NULL, text))
    (void)host->send(host, m);
  bf_xml_free(m);
  free(from);
}

/* The capabilities babelfish uses, by name. */
static const struct {
  const char *name;
  unsigned bit;
} irc_caps[] = {
    {"sasl", BF_IRC_CAP_SASL},
    {"multi-prefix", BF_IRC_CAP_MULTI_PREFIX},
    {"server-time", BF_IRC_CAP_SERVER_TIME},
    {"message-tags", BF_IRC_CAP_MESSAGE_TAGS},
    {"echo-message", BF_IRC_CAP_ECHO_MESSAGE},
    {"away-notify", BF_IRC_CAP_AWAY_NOTIFY},
    {"account-notify", BF_IRC_CAP_ACCOUNT_NOTIFY},
    {"extended-join", BF_IRC_CAP_EXTENDED_JOIN},
    {"batch", BF_IRC_CAP_BATCH},
    {"draft/chathistory", BF_IRC_CAP_CHATHISTORY},
};

void bf_irc_caps_names(unsigned caps, char *out, size_t size) {
  size_t at = 0;
  out[0] = '\0';
  for (size_t i = 0; i < sizeof irc_caps / sizeof *irc_caps; i++) {
    if (!(caps & irc_caps[i].bit))
      continue;
    int n = snprintf(out + at, size - at, "%s%s", at ? ", " : "",
                     irc_caps[i].name);
    if (n < 0 || (size_t)n >= size - at)
      break;
    at += (size_t)n;
  }
}

static unsigned cap_bit(const char *name) {
  for (size_t i = 0; i < sizeof irc_caps / sizeof *irc_caps; i++) {
    if (!strcmp(name, irc_caps[i].name))
      return irc_caps[i].bit;
  }
  return 0;
}

/* The bits named in a CAP list ("a b=v -c"); values and removals ('-')
 * are skipped. */
static unsigned cap_bits(const char *list) {
  unsigned bits = 0;
  char name[64];
  for (const char *p = list; *p;) {
    while (*p == ' ')
      p++;
    size_t n = strcspn(p, " ");
    size_t k = strcspn(p, " =");
    if (n && *p != '-' && k < sizeof name) {
      memcpy(name, p, k);
      name[k] = '\0';
      bits |= cap_bit(name);
    }
    p += n;
  }
  return bits;
}

/* The mechanisms of "sasl=PLAIN,EXTERNAL" in a CAP LS list (IRCv3
 * sasl-3.2), as bits 1 << BF_IRC_SASL_*; 0 when sasl has no value. */
static unsigned sasl_mechanisms(const char *list) {
  unsigned bits = 0;
  for (const char *p = list; *p;) {
    while (*p == ' ')
      p++;
    size_t n = strcspn(p, " ");
    if (n > 5 && !strncmp(p, "sasl=", 5)) {
      for (const char *m = p + 5; m < p + n;) {
        size_t k = strcspn(m, ", ");
        if (k == 8 && !strncasecmp(m, "EXTERNAL", 8))
          bits |= 1u << BF_IRC_SASL_EXTERNAL;
        else if (k == 5 && !strncasecmp(m, "PLAIN", 5))
          bits |= 1u << BF_IRC_SASL_PLAIN;
        else if (!k)
          break;
        m += k + (m[k] == ',');
      }
      bits |= bits ? 0 : 1u << BF_IRC_SASL_NONE; /* listed, none known */
    }
    p += n;
  }
  return bits;
}

/* The server lists mechanism, or lists none (any may be tried). */
static bool sasl_offers(const bf_irc_conn *c, unsigned mechanism) {
  return !c->sasl_offered || (c->sasl_offered & (1u << mechanism));
}

/* SASL is worth asking for: the user's certificate is in this TLS
 * session, or there is an account and password. */
static bool sasl_possible(const bf_irc_conn *c) {
  return (c->external_ready && sasl_offers(c, BF_IRC_SASL_EXTERNAL)) ||
         (c->sasl_user && c->sasl_password &&
          sasl_offers(c, BF_IRC_SASL_PLAIN));
}

/* The server's list of mechanisms lacks the ones the user configured:
 * told once per connection, the login goes on with what is offered. */
static void sasl_check_offered(bf_irc_conn *c) {
  bool external = c->external_ready && !sasl_offers(c, BF_IRC_SASL_EXTERNAL);
  bool plain = c->sasl_user && c->sasl_password &&
               !sasl_offers(c, BF_IRC_SASL_PLAIN);
  if (!external && !plain)
    return;
  char text[400];
  snprintf(text, sizeof text, "%s does not offer SASL %s%s%s: %s.",
           c->server, external ? "EXTERNAL" : "", external && plain ? " or " : "",
           plain ? "PLAIN" : "",
           sasl_possible(c) ? "logging in with the mechanism it offers"
                            : "going on without logging in with SASL");
  conn_log(c, BF_LOG_INFO, "SASL mechanism not offered by the server");
  bf_irc_tell_user(c, text);
}

/* Tries the next SASL mechanism (IRCv3 sasl-3.1): EXTERNAL first when
 * the certificate was presented, then PLAIN with an account and
 * password; CAP END (registration goes on) when none is left. */
static void sasl_next(bf_irc_conn *c) {
  const char *mechanism = NULL;
  if (c->sasl_mechanism == BF_IRC_SASL_NONE && c->external_ready &&
      sasl_offers(c, BF_IRC_SASL_EXTERNAL)) {
    c->sasl_mechanism = BF_IRC_SASL_EXTERNAL;
    mechanism = "EXTERNAL";
  } else if (c->sasl_mechanism != BF_IRC_SASL_PLAIN && c->sasl_user &&
             c->sasl_password && sasl_offers(c, BF_IRC_SASL_PLAIN)) {
    c->sasl_mechanism = BF_IRC_SASL_PLAIN;
    mechanism = "PLAIN";
  }
  if (!mechanism) {
    cap_end(c);
    return;
  }
  const char *params[] = {mechanism};
  (void)bf_irc_send(c, "AUTHENTICATE", params, 1, false);
}

/* CAP LS / ACK / NAK (IRCv3 capability negotiation 3.2). The wanted
 * capabilities of every LS line are gathered and requested at once with
 * the last one ("CAP * LS * :..." says more follow); SASL only with an
 * account to log in with. */
static void on_cap(bf_irc_conn *c, const bf_irc_msg *m) {
  if (m->n_params < 3)
    return;
  const char *sub = m->params[1];
  const char *list = m->params[m->n_params - 1];
  if (!strcasecmp(sub, "LS")) {
    bool more = m->n_params >= 4 && !strcmp(m->params[2], "*");
    c->caps_wanted |= cap_bits(list);
    c->sasl_offered |= sasl_mechanisms(list);
    if (more)
      return;
    if (c->caps_wanted & BF_IRC_CAP_SASL)
      sasl_check_offered(c);
    if (!sasl_possible(c))
      c->caps_wanted &= ~(unsigned)BF_IRC_CAP_SASL;
    char req[400] = "";
    for (size_t i = 0; i < sizeof irc_caps / sizeof *irc_caps; i++) {
      if (!(c->caps_wanted & irc_caps[i].bit))
        continue;
      if (req[0])
        strcat(req, " ");
      strcat(req, irc_caps[i].name);
    }
    if (req[0]) {
      const char *params[] = {"REQ", req};
      (void)bf_irc_send(c, "CAP", params, 2, true);
    } else {
      cap_end(c);
    }
    return;
  }
  if (!strcasecmp(sub, "ACK")) {
    c->caps |= cap_bits(list);
    if (c->caps & BF_IRC_CAP_SASL)
      sasl_next(c);
    else
      cap_end(c);
    return;
  }
  if (!strcasecmp(sub, "NAK"))
    cap_end(c);
}

/* SASL PLAIN (IRCv3 sasl-3.1): "AUTHENTICATE +" asks for the payload,
 * base64(authzid \0 authcid \0 password), sent in 400-byte chunks. */
static void on_authenticate(bf_irc_conn *c) {
  unsigned char plain[600];
  size_t u = strlen(c->sasl_user), p = strlen(c->sasl_password);
  if (2 * u + p + 2 > sizeof plain) {
    cap_end(c);
    return;
  }
  memcpy(plain, c->sasl_user, u);
  plain[u] = '\0';
  memcpy(plain + u + 1, c->sasl_user, u);
  plain[2 * u + 1] = '\0';
  memcpy(plain + 2 * u + 2, c->sasl_password, p);
  char b64[4 * sizeof plain / 3 + 8];
  int n = EVP_EncodeBlock((unsigned char *)b64, plain, (int)(2 * u + p + 2));
  OPENSSL_cleanse(plain, sizeof plain);
  for (int at = 0; at < n; at += 400) {
    char chunk[401];
    int len = n - at < 400 ? n - at : 400;
    memcpy(chunk, b64 + at, (size_t)len);
    chunk[len] = '\0';
    const char *params[] = {chunk};
    (void)bf_irc_send(c, "AUTHENTICATE", params, 1, false);
    if (len == 400 && at + 400 == n) {
      const char *plus[] = {"+"}; /* a last full chunk is followed by + */
      (void)bf_irc_send(c, "AUTHENTICATE", plus, 1, false);
    }
  }
  OPENSSL_cleanse(b64, sizeof b64);
}

/* SASL refused (904 failed, 905 too long, 902 nick locked, 906
 * aborted): the user is told why and what to do; EXTERNAL refused goes
 * on with PLAIN when there is a password, and registration goes on
 * without an account otherwise (NickServ IDENTIFY may still log in). */
static void on_sasl_failed(bf_irc_conn *c, const bf_irc_msg *m) {
  const char *why = m->n_params > 1 ? m->params[m->n_params - 1] : "refused";
  bool retry = bf_irc_is_numeric(m, 904) || bf_irc_is_numeric(m, 905);
  char text[700];
  conn_log(c, BF_LOG_WARN, "SASL %s login failed (%s)",
           c->sasl_mechanism == BF_IRC_SASL_EXTERNAL ? "EXTERNAL" : "PLAIN",
           m->command);
  if (c->sasl_mechanism == BF_IRC_SASL_EXTERNAL) {
    char fp[BF_IRC_TLS_CERTFP_SIZE];
    if (bf_irc_tls_identity_certfp(c->identity_cert, fp, sizeof fp, NULL, 0))
      snprintf(fp, sizeof fp, "?");
    bool plain_next = retry && c->sasl_user && c->sasl_password;
    snprintf(text, sizeof text, "Login with your client certificate (SASL "
             "EXTERNAL) failed: %s. Register its fingerprint with the "
             "services (e.g. /msg NickServ CERT ADD %s) while logged in, or "
             "turn it off with the configure command on %s. %s", why, fp,
             c->server, plain_next ? "Trying the SASL password instead."
                                   : "Going on without logging in.");
    bf_irc_tell_user(c, text);
    if (retry) {
      sasl_next(c);
      return;
    }
  } else {
    snprintf(text, sizeof text, "SASL login as %s failed: %s. Check the "
             "account and password with the configure command on %s.",
             c->sasl_user ? c->sasl_user : "?", why, c->server);
    bf_irc_tell_user(c, text);
  }
  cap_end(c);
}

/* NickServ IDENTIFY after registration (the password never logged). */
static void nickserv_identify(bf_irc_conn *c) {
  char text[300];
  int n = snprintf(text, sizeof text, "IDENTIFY %s", c->nickserv_password);
  const char *params[] = {"NickServ", text};
  if (n > 0 && (size_t)n < sizeof text &&
      bf_irc_send(c, "PRIVMSG", params, 2, true) == 0)
    conn_log(c, BF_LOG_INFO, "IDENTIFY sent to NickServ");
  else
    conn_log(c, BF_LOG_WARN, "cannot send IDENTIFY to NickServ (the "
             "password is too long or holds a line break)");
  explicit_bzero(text, sizeof text);
}

/* The after-connection commands (the user's setting, checked when it
 * was saved; checked again by bf_irc_send_raw_text). */
static void send_after_connect(bf_irc_conn *c) {
  /* Their replies are not all shown (the MOTD follows 001): only errors,
   * as for any line. */
  uint64_t raw_until_ms = c->raw_until_ms;
  int rc = bf_irc_send_raw_text(c, c->after_connect);
  c->raw_until_ms = raw_until_ms;
  if (!rc) {
    conn_log(c, BF_LOG_INFO, "after-connection commands sent");
    return;
  }
  conn_log(c, BF_LOG_WARN, "after-connection commands not sent: %s",
           bf_strerror(rc));
  char text[300];
  snprintf(text, sizeof text, "Your after-connection commands were not sent "
           "(%s): fix them with the configure command on %s.",
           rc == BF_EINVAL ? "one is not a valid IRC line" : bf_strerror(rc),
           c->server);
  bf_irc_tell_user(c, text);
}

/* 433 (nick in use) while registering: try NICK_, then NICK__, … */
static void next_nick(bf_irc_conn *c) {
  size_t n = strlen(c->nick);
  char *nick = n < 30 ? malloc(n + 2) : NULL;
  if (!nick) {
    conn_close(c, "no free nick");
    return;
  }
  memcpy(nick, c->nick, n);
  nick[n] = '_';
  nick[n + 1] = '\0';
  free(c->nick);
  c->nick = nick;
  const char *params[] = {c->nick};
  (void)bf_irc_send(c, "NICK", params, 1, false);
}

/* Lines nothing else handled that the user should see from the server's
 * JID: notices from the server itself, error numerics, and every reply
 * while a raw command is recent. */
static bool server_reply_for_user(const bf_irc_conn *c, const bf_irc_msg *m) {
  if (c->state != BF_IRC_ONLINE)
    return false;
  if (uv_now(c->irc->host->loop) < c->raw_until_ms)
    return true;
  if (!strcasecmp(m->command, "NOTICE") && (!m->nick || !m->user))
    return true; /* from the server, not from a user */
  int num = atoi(m->command);
  return num >= 400 && num < 600;
}

static void show_reply(bf_irc_conn *c, const bf_irc_msg *m) {
  char text[BF_IRC_READ_MAX];
  size_t at = 0;
  /* The parameters after our own nick (numerics) or the target. */
  for (size_t i = 1; i < m->n_params && at < sizeof text - 1; i++) {
    int n = snprintf(text + at, sizeof text - at, "%s%s", at ? " " : "",
                     m->params[i]);
    at += n > 0 ? (size_t)n : 0;
  }
  if (at >= sizeof text)
    at = sizeof text - 1;
  text[at] = '\0';
  char *utf8 = bf_irc_to_utf8(text, at, c->encoding);
  char *plain = utf8 ? bf_irc_strip_format(utf8) : NULL;
  if (plain && *plain)
    bf_irc_tell_user(c, plain);
  free(plain);
  free(utf8);
}

static bool xmpp_writable(const bf_irc *irc);
static void conns_pause(bf_irc *irc);

static int on_line(void *data, const char *line, size_t len) {
  bf_irc_conn *c = data;
  bf_irc_msg *m = c->irc->msg;
  /* Back-pressure: no line is handled while the XMPP stream is congested
   * (the reader keeps it and the rest for bf_irc_conns_resume). */
  if (c->irc->paused || !xmpp_writable(c->irc)) {
    if (!c->irc->paused)
      conns_pause(c->irc);
    return BF_IRC_READER_PAUSE;
  }
  c->irc->lines_in++;
  if (bf_irc_parse(m, line, len) != 0) {
    conn_log(c, BF_LOG_DEBUG, "ignoring a malformed line of %zu bytes", len);
    return 0;
  }
  if (!strcasecmp(m->command, "PING")) {
    const char *params[] = {m->n_params ? m->params[m->n_params - 1] : "x"};
    (void)bf_irc_send(c, "PONG", params, 1, true);
    return 0;
  }
  if (!strcasecmp(m->command, "PONG")) {
    c->ping_sent = false;
    (void)bf_irc_on_line(c, m); /* it may close a MUC admin request */
    return 0;
  }
  if (!strcasecmp(m->command, "CAP")) {
    on_cap(c, m);
    return 0;
  }
  if (!strcasecmp(m->command, "AUTHENTICATE")) {
    if (!(c->caps & BF_IRC_CAP_SASL))
      return 0;
    if (c->sasl_mechanism == BF_IRC_SASL_EXTERNAL) {
      /* RFC 4422 App. A: an empty response, the identity is the
       * certificate's. */
      const char *empty[] = {"+"};
      (void)bf_irc_send(c, "AUTHENTICATE", empty, 1, false);
    } else if (c->sasl_mechanism == BF_IRC_SASL_PLAIN) {
      on_authenticate(c);
    }
    return 0;
  }
  if (bf_irc_is_numeric(m, 903) || bf_irc_is_numeric(m, 907)) {
    /* 907: already logged in (a second CAP REQ sasl, say). */
    if (c->sasl_mechanism == BF_IRC_SASL_EXTERNAL)
      conn_log(c, BF_LOG_INFO, "SASL login with the client certificate");
    else
      conn_log(c, BF_LOG_INFO, "SASL login as %s", c->sasl_user);
    c->logged_in = true;
    cap_end(c);
    return 0;
  }
  if (bf_irc_is_numeric(m, 904) || bf_irc_is_numeric(m, 905) ||
      bf_irc_is_numeric(m, 902) || bf_irc_is_numeric(m, 906)) {
    /* 908 (the mechanisms offered) is not here: 904 follows it. */
    on_sasl_failed(c, m);
    return 0;
  }
  if (!strcasecmp(m->command, "ERROR")) {
    conn_log(c, BF_LOG_INFO, "server closed the link: %s",
             m->n_params ? m->params[0] : "");
    conn_close(c, m->n_params ? m->params[0] : "closed by the server");
    return 1;
  }
  if (bf_irc_is_numeric(m, 1) && c->state == BF_IRC_REGISTERING) {
    /* RPL_WELCOME: the first parameter is our nick as the server sees it. */
    c->state = BF_IRC_ONLINE;
    if (m->n_params && strcmp(m->params[0], c->nick) != 0) {
      char *nick = strdup(m->params[0]);
      if (nick) {
        free(c->nick);
        c->nick = nick;
      }
    }
    conn_log(c, BF_LOG_INFO, "registered as %s", c->nick);
    c->attempts = 0;
    if (c->nickserv_password && !c->logged_in)
      nickserv_identify(c); /* before the JOINs: +r channels */
    if (c->after_connect)
      send_after_connect(c); /* before the JOINs too: modes, OPER */
    bf_irc_on_registered(c);
    return c->state == BF_IRC_CLOSING;
  }
  if ((bf_irc_is_numeric(m, 433) || bf_irc_is_numeric(m, 432)) &&
      c->state == BF_IRC_REGISTERING) {
    next_nick(c);
    return c->state == BF_IRC_CLOSING;
  }
  if (!bf_irc_on_line(c, m) && server_reply_for_user(c, m))
    show_reply(c, m);
  return c->state == BF_IRC_CLOSING;
}

/* ---- back-pressure ----------------------------------------------------------
 * IRC lines are what make stanzas: while the XMPP stream's write queue is
 * past half its cap (host->writable false) no IRC socket is read, until
 * on_drained (or the stream going down) resumes them all, so a join
 * burst waits in the IRC servers' sockets instead of being dropped. What
 * was already read is handled: one read (64 KiB) per connection at most
 * beyond the mark, well within the queue's other half. */

static bool conn_reads(const bf_irc_conn *c) {
  return c->tcp_open &&
         (c->state == BF_IRC_REGISTERING || c->state == BF_IRC_ONLINE);
}

static bool xmpp_writable(const bf_irc *irc) {
  const bf_host *h = irc->host;
  return h->abi_version < 3 || !h->writable || h->writable(h);
}

static void on_alloc(uv_handle_t *handle, size_t size, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(bf_irc_conn *c) {
  if (!c->irc->paused)
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void conns_pause(bf_irc *irc) {
  irc->paused = true;
  irc->host->log(irc->host, BF_LOG_DEBUG,
                 "the XMPP stream is congested: IRC reads paused");
  for (bf_irc_conn *c = irc->conns; c; c = c->next)
    if (conn_reads(c))
      uv_read_stop((uv_stream_t *)&c->tcp);
}

void bf_irc_conns_resume(bf_irc *irc) {
  if (!irc->paused)
    return;
  irc->paused = false;
  irc->host->log(irc->host, BF_LOG_DEBUG, "IRC reads resumed");
  for (bf_irc_conn *c = irc->conns; c; c = c->next)
    if (conn_reads(c))
      conn_read_start(c);
  /* The lines kept at the pause, until one congests the stream again.
   * Handling a line may close connections (not only its own), so the walk
   * starts over from the head after each. */
  for (bool again = true; again && !irc->paused;) {
    again = false;
    for (bf_irc_conn *c = irc->conns; c; c = c->next) {
      if (c->reader.holding) {
        (void)bf_irc_reader_feed(&c->reader, NULL, 0, on_line, c);
        again = true;
        break;
      }
    }
  }
}

static void on_alloc(uv_handle_t *handle, size_t size, uv_buf_t *buf) {
  (void)handle;
  static char slab[64 * 1024]; /* one loop, one thread: read straight in */
  (void)size;
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read_data(bf_irc_conn *c, const char *data, size_t len);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  bf_irc_conn *c = conn_of(stream, tcp);
  if (nread < 0) {
    conn_log(c, BF_LOG_INFO, "connection lost: %s",
             nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
    conn_close(c, "connection to the IRC server lost");
    return;
  }
  c->last_read_ms = uv_now(stream->loop);
  c->ping_sent = false;
  on_read_data(c, buf->base, (size_t)nread);
  if (!c->irc->paused && !xmpp_writable(c->irc))
    conns_pause(c->irc);
}

static void on_read_data(bf_irc_conn *c, const char *data, size_t len) {
  if (!c->tls_session) {
    (void)bf_irc_reader_feed(&c->reader, data, len, on_line, c);
    return;
  }
  char err[512] = "";
  bool was_ready = bf_irc_tls_ready(c->tls_session);
  int rc = bf_irc_tls_read(c->tls_session, data, len, err, sizeof err);
  if (!was_ready && bf_irc_tls_ready(c->tls_session)) {
    char fp[BF_IRC_TLS_FINGERPRINT_SIZE], how[96];
    if (bf_irc_tls_fingerprint(c->tls_session, fp, sizeof fp) != 0)
      fp[0] = '\0';
    conn_log(c, BF_LOG_INFO, "TLS %s, certificate %s",
             bf_irc_tls_describe(c->tls_session, how, sizeof how), fp);
  }
  if (rc < 0 && c->state != BF_IRC_CLOSING) {
    conn_log(c, BF_LOG_WARN, "TLS: %s", err[0] ? err : bf_strerror(rc));
    if (rc == BF_EPERM || rc == BF_EPROTO) {
      char text[700];
      snprintf(text, sizeof text, "Cannot connect to %s over TLS: %s", c->server,
               err[0] ? err : bf_strerror(rc));
      bf_irc_tell_user(c, text);
    }
    if (rc == BF_EPERM)
      c->quitting = true; /* a configuration problem: retrying won't help */
    conn_close(c, rc == BF_EPERM ? "the IRC server's certificate was refused"
                                 : "TLS connection to the IRC server failed");
  }
}

/* Plaintext out of TLS: the same line reader as a plain connection. */
static int on_plain(void *data, const char *buf, size_t len) {
  bf_irc_conn *c = data;
  int rc = bf_irc_reader_feed(&c->reader, buf, len, on_line, c);
  return c->state == BF_IRC_CLOSING ? (rc ? rc : 1) : 0;
}

/* ---- connecting ------------------------------------------------------------- */

static void try_next(bf_irc_conn *c);

/* A failed attempt's socket is closed; then the next pair is tried (the
 * uv_tcp_t is reused, so not before its close callback). */
static void on_attempt_closed(uv_handle_t *handle) {
  bf_irc_conn *c = handle->data;
  c->handles--;
  if (c->state == BF_IRC_CLOSING) {
    if (c->handles == 0 && !c->resolving)
      conn_free(c);
    return;
  }
  c->address_at = c->address_at->ai_next;
  try_next(c);
}

static void attempt_failed(bf_irc_conn *c) {
  c->tcp_open = false;
  uv_close((uv_handle_t *)&c->tcp, on_attempt_closed);
}

static void on_connected(uv_connect_t *req, int status) {
  bf_irc_conn *c = conn_of(req, connect);
  if (c->state == BF_IRC_CLOSING)
    return;
  if (status < 0) {
    conn_log(c, BF_LOG_DEBUG, "port %u: %s", c->ports[c->port_at],
             uv_strerror(status));
    attempt_failed(c);
    return;
  }
  c->state = BF_IRC_REGISTERING;
  c->last_read_ms = uv_now(c->irc->host->loop);
  bool tls = c->tls[c->port_at];
  conn_log(c, BF_LOG_INFO, "connected on port %u%s", c->ports[c->port_at],
           tls ? " (TLS)" : "");
  conn_read_start(c);
  if (tls) {
    char err[512] = "";
    bf_irc_tls_callbacks cb = {.on_plain = on_plain, .on_cipher = on_cipher,
                               .data = c};
    bf_irc_tls_free(c->tls_session);
    c->tls_session = NULL;
    /* The name checked is the one connected to ("Address"). */
    int rc = bf_irc_tls_new(&c->tls_session,
                            c->address ? c->address : c->server, c->tls_verify,
                            c->tls_pin, &cb, err, sizeof err);
    c->external_ready = false;
    if (!rc && c->identity_cert) {
      /* A damaged certificate: on without it (PLAIN may still work). */
      c->external_ready = bf_irc_tls_set_identity(
                              c->tls_session, c->identity_cert,
                              c->identity_key, err, sizeof err) == 0;
      if (!c->external_ready) {
        conn_log(c, BF_LOG_WARN, "TLS: %s", err);
        bf_irc_tell_user(c, "Your client certificate for this server is damaged: "
                     "SASL EXTERNAL is not used.");
      }
    }
    if (!rc)
      rc = bf_irc_tls_start(c->tls_session, err, sizeof err);
    if (rc) {
      conn_log(c, BF_LOG_WARN, "TLS: %s", err[0] ? err : bf_strerror(rc));
      conn_close(c, "TLS is not available");
      return;
    }
  } else if (c->identity_cert && !c->told_not_tls) {
    c->external_ready = false;
    c->told_not_tls = true; /* once, not at every port or attempt */
    char text[300];
    snprintf(text, sizeof text, "Port %u of %s is not a TLS port: your "
             "client certificate (SASL EXTERNAL) is not used. Give a TLS port "
             "(e.g. +6697) with the configure command on %s.",
             c->ports[c->port_at], c->server, c->server);
    bf_irc_tell_user(c, text);
  }
  /* With TLS these lines are held until the certificate is accepted. */
  send_registration(c);
}

/* The next (address, port) pair: every address of the first port, then
 * of the next port. */
static void try_next(bf_irc_conn *c) {
  for (;;) {
    if (!c->address_at) {
      if (++c->port_at >= c->n_ports) {
        conn_log(c, BF_LOG_WARN, "cannot connect on any port");
        conn_close(c, "cannot connect to the IRC server");
        return;
      }
      c->address_at = c->addresses;
    }
    struct sockaddr_storage sa;
    memcpy(&sa, c->address_at->ai_addr, c->address_at->ai_addrlen);
    uint16_t port = htons((uint16_t)c->ports[c->port_at]);
    if (sa.ss_family == AF_INET) {
      ((struct sockaddr_in *)&sa)->sin_port = port;
    } else if (sa.ss_family == AF_INET6) {
      ((struct sockaddr_in6 *)&sa)->sin6_port = port;
    } else {
      c->address_at = c->address_at->ai_next;
      continue;
    }
    uv_tcp_init(c->irc->host->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_open = true;
    c->handles++;
    c->state = BF_IRC_CONNECTING;
    if (uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&sa,
                       on_connected) != 0)
      attempt_failed(c);
    return;
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  bf_irc_conn *c = conn_of(req, resolver);
  c->resolving = false;
  if (c->state == BF_IRC_CLOSING) {
    if (res)
      uv_freeaddrinfo(res);
    if (c->handles == 0)
      conn_free(c);
    return;
  }
  if (status < 0) {
    conn_log(c, BF_LOG_WARN, "cannot resolve: %s", uv_strerror(status));
    conn_close(c, "cannot resolve the IRC server's name");
    return;
  }
  c->addresses = res;
  c->address_at = res;
  c->port_at = 0;
  try_next(c);
}

/* One connection's timeouts, checked by the module's one sweep timer
 * (no timer per connection: 4,000 idle connections must cost nothing). */
static void conn_tick(bf_irc_conn *c, uint64_t now) {
  if (c->state == BF_IRC_IDLE) {
    if (now >= c->reconnect_at_ms)
      conn_start(c); /* a reconnection's backoff is over */
    return;
  }
  if (c->state == BF_IRC_RESOLVING || c->state == BF_IRC_CONNECTING ||
      c->state == BF_IRC_REGISTERING) {
    if (now - c->last_read_ms >= CONNECT_TIMEOUT_MS) {
      conn_log(c, BF_LOG_WARN, "no registration within %u s",
               CONNECT_TIMEOUT_MS / 1000);
      conn_close(c, "the IRC server did not answer");
    }
    return;
  }
  flush_pending(c);
  if (c->state != BF_IRC_ONLINE || now - c->last_read_ms < BF_IRC_PING_INTERVAL_MS)
    return;
  if (c->ping_sent) {
    conn_log(c, BF_LOG_WARN, "no answer to PING: connection dead");
    conn_close(c, "connection to the IRC server timed out");
    return;
  }
  const char *params[] = {"babelfish"};
  (void)bf_irc_send(c, "PING", params, 1, false);
  c->ping_sent = true;
  c->last_read_ms = now;
}

void bf_irc_conns_tick(bf_irc *irc) {
  uint64_t now = uv_now(irc->host->loop);
  for (bf_irc_conn *c = irc->conns, *next; c; c = next) {
    next = c->next; /* conn_tick may close c, or add a reconnection at the
                       head of the list */
    if (irc->paused && conn_reads(c))
      c->last_read_ms = now; /* not read on purpose: not a dead link */
    conn_tick(c, now);
  }
}

static char *dup_setting(const bf_form *f, const char *var) {
  const char *value = bf_form_value(f, var);
  return value && *value ? strdup(value) : NULL;
}

/* The user's settings for this server, if any (configure command). */
static void apply_settings(bf_irc_conn *c) {
  bf_form *f = NULL;
  if (bf_irc_settings_load(c->irc, c->user, c->server, &f) != 0)
    return;
  char *nick = dup_setting(f, "nick");
  if (nick) {
    free(c->nick);
    c->nick = nick;
  }
  c->pass = dup_setting(f, "password");
  c->sasl_user = dup_setting(f, "sasl_user");
  c->sasl_password = dup_setting(f, "sasl_password");
  c->realname = dup_setting(f, "realname");
  c->username = dup_setting(f, "username");
  c->tls_pin = dup_setting(f, "tls_pin");
  c->nickserv_password = dup_setting(f, "nickserv_password");
  c->after_connect = dup_setting(f, "after_connect");
  c->address = dup_setting(f, "address");
  if (c->address && !bf_irc_valid_host(c->address)) {
    conn_log(c, BF_LOG_WARN, "address setting '%s' is not a host name: "
             "not used", c->address);
    free(c->address);
    c->address = NULL;
  }
  /* Checked again: the system's iconv may have lost it since. */
  char *encoding = dup_setting(f, "encoding");
  if (encoding && !bf_irc_charset_known(encoding)) {
    conn_log(c, BF_LOG_WARN, "encoding %s unknown to iconv: %s used",
             encoding, c->encoding);
    free(encoding);
  } else if (encoding) {
    free(c->encoding);
    c->encoding = encoding;
  }
  const char *throttle = bf_form_value(f, "throttle");
  if (throttle && *throttle)
    c->throttle = (unsigned)strtoul(throttle, NULL, 10);
  const char *external = bf_form_value(f, "sasl_external");
  char err[300];
  if (external && !strcmp(external, "1") &&
      bf_irc_settings_identity(c->irc, c->user, c->server, true,
                               &c->identity_cert, &c->identity_key, err,
                               sizeof err) != 0) {
    conn_log(c, BF_LOG_WARN, "no client certificate: %s", err);
    char text[400];
    snprintf(text, sizeof text, "Cannot use a client certificate: %s. "
             "SASL EXTERNAL is not used.", err);
    bf_irc_tell_user(c, text);
  }
  const char *verify = bf_form_value(f, "tls_verify");
  if (verify && !strcmp(verify, "0"))
    c->tls_verify = false;
  const char *ports = bf_form_value(f, "ports");
  if (ports && *ports) {
    int n = bf_irc_ports_parse(ports, c->ports, c->tls, BF_IRC_PORTS_MAX);
    if (n > 0)
      c->n_ports = (size_t)n;
  }
  bf_form_free(f);
}

/* A connection in state IDLE, in the list. NULL on ENOMEM. */
static bf_irc_conn *conn_new(bf_irc *irc, const char *user, const char *server,
                             const char *nick) {
  bf_irc_conn *c = calloc(1, sizeof *c);
  if (!c || !(c->user = strdup(user)) || !(c->server = strdup(server)) ||
      !(c->nick = strdup(nick)) || !(c->wanted_nick = strdup(nick))) {
    if (c)
      conn_free(c);
    return NULL;
  }
  c->irc = irc;
  memcpy(c->ports, irc->ports, sizeof c->ports);
  memcpy(c->tls, irc->tls, sizeof c->tls);
  c->n_ports = irc->n_ports;
  c->tls_verify = irc->tls_verify;
  c->throttle = irc->throttle;
  if (!(c->encoding = strdup(BF_IRC_ENCODING_DEFAULT))) {
    conn_free(c);
    return NULL;
  }
  apply_settings(c);
  bf_irc_reader_init(&c->reader);
  c->last_read_ms = uv_now(irc->host->loop);
  c->state = BF_IRC_IDLE;
  c->next = irc->conns;
  irc->conns = c;
  return c;
}

/* Resolves the server's name, then connects (on_resolved). */
static void conn_start(bf_irc_conn *c) {
  uv_loop_t *loop = c->irc->host->loop;
  c->last_read_ms = uv_now(loop);
  c->state = BF_IRC_RESOLVING;
  if (c->addresses) {
    uv_freeaddrinfo(c->addresses);
    c->addresses = NULL;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  c->resolving = true;
  int rc = uv_getaddrinfo(loop, &c->resolver, on_resolved,
                          c->address ? c->address : c->server, NULL, &hints);
  if (rc < 0) {
    c->resolving = false;
    conn_log(c, BF_LOG_WARN, "cannot resolve: %s", uv_strerror(rc));
    conn_close(c, "cannot resolve the IRC server's name");
    return;
  }
  conn_log(c, BF_LOG_DEBUG, "connecting as %s", c->nick);
}

bf_irc_conn *bf_irc_conn_get(bf_irc *irc, const char *user,
                             const char *server, const char *nick) {
  bf_irc_conn *c = bf_irc_conn_find(irc, user, server);
  if (c)
    return c;
  if (!irc->n_ports || !(c = conn_new(irc, user, server, nick)))
    return NULL;
  conn_start(c);
  return c->state == BF_IRC_CLOSING ? NULL : c;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  bf_irc_conn *c = req->data;
  free(req);
  conn_close(c, NULL);
}

void bf_irc_conn_quit(bf_irc_conn *c, const char *reason) {
  c->quitting = true; /* whatever happens now, no reconnection */
  pending_lost(c); /* nothing is written after the QUIT */
  if ((c->state == BF_IRC_ONLINE || c->state == BF_IRC_REGISTERING) &&
      !c->shutting_down) {
    const char *params[] = {reason ? reason : "Gateway shutting down"};
    (void)bf_irc_send(c, "QUIT", params, 1, true);
    if (c->tls_session)
      (void)bf_irc_tls_close_notify(c->tls_session);
    /* Let the QUIT reach the server before the socket closes. */
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req) {
      req->data = c;
      if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
        c->shutting_down = true;
        bf_irc_on_closed(c, reason);
        return;
      }
      free(req);
    }
  }
  conn_close(c, reason);
}

void bf_irc_conns_close(bf_irc *irc) {
  irc->closing = true;
  while (irc->conns) {
    bf_irc_conn *c = irc->conns;
    if (c->state == BF_IRC_ONLINE) {
      const char *params[] = {"Gateway shutting down"};
      (void)bf_irc_send(c, "QUIT", params, 1, true);
    }
    conn_close(c, "the gateway is shutting down");
  }
}
