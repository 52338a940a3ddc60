/* IRC transport: what its files share.
 *
 *   irc.c          the module: configuration, addresses (the Biboumi
 *                  scheme, SPEC "Addresses"), stanzas from XMPP
 *   irc-server.c   one IRC connection per (user, IRC server): resolve,
 *                  connect, register, read and write lines, keepalive
 *   irc-channel.c  channels as MUC rooms (XEP-0045) and private chats
 *   irc-proto.c    the IRC line format;  irc-text.c  text conversions
 */
#ifndef BF_IRC_H
#define BF_IRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <babelfish/babelfish.h>

#include "irc-proto.h"

#define BF_IRC_NS_MUC "http://jabber.org/protocol/muc"
#define BF_IRC_NS_MUC_USER "http://jabber.org/protocol/muc#user"
/* The most ports tried per server (irc_ports). */
#define BF_IRC_PORTS_MAX 8
/* Bytes queued to one IRC server before the connection is dropped as
 * stuck (the server stopped reading). */
#define BF_IRC_WRITE_QUEUE_MAX (256u * 1024u)
/* No line from the server for this long: send a PING; no answer to it
 * within as long again: the connection is dead. */
#define BF_IRC_PING_INTERVAL_MS (120u * 1000u)
/* Per user: IRC servers connected at once, and channels per server. */
#define BF_IRC_SERVERS_PER_USER_MAX 16
#define BF_IRC_CHANNELS_PER_CONN_MAX 200
/* Lines waiting for the flood-control bucket, per connection; past it a
 * message is refused (resource-constraint). */
#define BF_IRC_PENDING_MAX 256
/* Default irc_throttle: lines per second to one server, in bursts of
 * twice that. */
#define BF_IRC_THROTTLE_DEFAULT 10
/* Channel history: rows kept per channel, lines replayed on join when
 * the client does not say (<history maxstanzas/>), and lines buffered
 * before a batch write. */
#define BF_IRC_HISTORY_MAX 500
#define BF_IRC_HISTORY_DEFAULT 20
#define BF_IRC_HISTORY_PENDING_MAX 256
/* The module's one timer: connection timeouts are checked this often. */
#define BF_IRC_TICK_MS 1000u
/* Reconnection backoff cap. */
#define BF_IRC_RECONNECT_MAX_MS (60u * 1000u)

typedef struct bf_irc bf_irc;

/* IRCv3 capabilities babelfish requests when a server offers them (CAP
 * LS 302 / REQ / ACK); bits of bf_irc_conn.caps. */
enum {
  BF_IRC_CAP_SASL = 1u << 0,
  BF_IRC_CAP_MULTI_PREFIX = 1u << 1,
  BF_IRC_CAP_SERVER_TIME = 1u << 2,
  BF_IRC_CAP_MESSAGE_TAGS = 1u << 3,
  BF_IRC_CAP_ECHO_MESSAGE = 1u << 4,
  BF_IRC_CAP_AWAY_NOTIFY = 1u << 5,
  BF_IRC_CAP_ACCOUNT_NOTIFY = 1u << 6,
  BF_IRC_CAP_EXTENDED_JOIN = 1u << 7,
  BF_IRC_CAP_BATCH = 1u << 8,
  BF_IRC_CAP_CHATHISTORY = 1u << 9,  /* "draft/chathistory" */
};

/* A channel line waiting to be written (irc-history.c). */
struct bf_irc_history_entry {
  char *server, *channel, *nick, *body;
  uint64_t stamp_ms;           /* wall clock */
  uint64_t seen_ms;            /* loop clock: the same line on another
                                  user's connection is recognised */
};
typedef struct bf_irc_conn bf_irc_conn;

/* An XMPP address at the gateway, in IRC terms. */
typedef struct bf_irc_address {
  char server[256];            /* "irc.example.org"; "" = the gateway */
  char name[256];              /* "#chan", "nick", or "" (the server) */
  bool channel;                /* name is a channel */
} bf_irc_address;

/* A resource of the user joined to a channel, with its MUC nick. */
typedef struct bf_irc_member {
  char *jid;                   /* the user's full JID */
  int history;                 /* history lines to replay when joined */
} bf_irc_member;

typedef struct bf_irc_channel {
  struct bf_irc_channel *next;
  char *name;                  /* as the user wrote it, e.g. "#test" */
  char *room;                  /* "#test%server@GW", the room's bare JID */
  bf_irc_member *members;      /* the user's resources in the room */
  size_t n_members;
  bool joined;                 /* the server confirmed our JOIN */
  bool names_done;             /* end of NAMES (366) seen */
  char **occupants;            /* nicks, with their prefix char ('@', '+'…) */
  size_t n_occupants;
  char *topic;
} bf_irc_channel;

struct bf_irc_conn {
  bf_irc_conn *next;
  bf_irc *irc;
  char *user;                  /* the user's bare JID */
  char *server;                /* the IRC server's name */
  char *nick;                  /* our current nick */
  char *wanted_nick;           /* the nick the user asked for */
  /* From the user's settings for this server (never logged). */
  char *pass, *sasl_user, *sasl_password, *realname, *username;
  char *tls_pin;               /* SHA-256 fingerprint to accept, or NULL */
  bool tls_verify;             /* check the certificate chain and name */
  struct bf_irc_tls *tls_session; /* on a TLS port, once connected */
  /* Flood control: a token bucket refilled on demand (at each send and
   * each module tick), and the lines waiting for tokens. */
  double tokens;
  uint64_t tokens_at_ms;
  struct bf_irc_pending *pending, *pending_tail;
  size_t n_pending;
  /* IRCv3 capabilities (CAP LS 302 / REQ / ACK). */
  bool cap_negotiating;
  unsigned caps_wanted;        /* BF_IRC_CAP_* requested from CAP LS */
  unsigned caps;               /* BF_IRC_CAP_* the server acknowledged */
  unsigned ports[BF_IRC_PORTS_MAX];
  bool tls[BF_IRC_PORTS_MAX];
  size_t n_ports, port_at;
  struct addrinfo *addresses, *address_at;
  uv_getaddrinfo_t resolver;
  uv_tcp_t tcp;
  uv_connect_t connect;
  enum {
    BF_IRC_IDLE, BF_IRC_RESOLVING, BF_IRC_CONNECTING, BF_IRC_REGISTERING,
    BF_IRC_ONLINE, BF_IRC_CLOSING
  } state;
  bool tcp_open, resolving;
  bool quitting;               /* ended on purpose: never reconnect */
  bool shutting_down;          /* QUIT sent, waiting for the shutdown */
  unsigned attempts;           /* reconnections since the last success */
  bool ping_sent;
  uint64_t last_read_ms;
  uint64_t raw_until_ms;       /* replies shown to the user until then */
  uint64_t reconnect_at_ms;    /* IDLE: when to connect again */
  size_t queued;               /* bytes handed to uv_write, not written */
  unsigned handles;            /* uv handles initialised and not yet
                                  closed (their close callbacks pending
                                  included); the struct is freed at 0 */
  bf_irc_reader reader;
  bf_irc_channel *channels;
};

struct bf_irc {
  const bf_host *host;
  const char *fixed_server;    /* irc_server, or NULL */
  unsigned ports[BF_IRC_PORTS_MAX];
  bool tls[BF_IRC_PORTS_MAX];
  size_t n_ports;
  const char *realname;
  const char *username;
  bool tls_verify;             /* irc_tls_verify (default yes) */
  unsigned throttle;           /* irc_throttle: lines/s, 0 = none */
  bf_irc_conn *conns;
  bool closing;                /* the module is closing: no reconnection */
  bool paused;                 /* IRC reads stopped: XMPP stream congested */
  uint64_t tick_timer;         /* host timer id */
  /* The line being handled, whichever connection it came from: one loop,
   * one line at a time, so one parse buffer (10 KiB) serves them all. */
  bf_irc_msg *msg;
  struct bf_irc_history_entry *history; /* lines not written yet */
  size_t n_history;
  unsigned long history_written;
  unsigned long lines_in, lines_out;
};

/* irc.c */
/* Parses the localpart of a JID at the gateway into *addr; BF_EINVAL if
 * it is not an IRC address (e.g. no server in multi-server mode). */
int bf_irc_address_parse(const bf_irc *irc, const char *local,
                         bf_irc_address *addr);
/* "NAME%SERVER@GW" (or "NAME@GW" in fixed-server mode; "SERVER@GW" for
 * the server itself): malloc'd, XEP-0106-escaped where needed. */
char *bf_irc_jid(const bf_irc *irc, const char *server, const char *name);
/* Parses "+6697 6667" (a '+' means TLS) into ports/tls: how many, or
 * BF_EINVAL. */
int bf_irc_ports_parse(const char *text, unsigned *ports, bool *tls,
                       size_t max);

/* irc-settings.c: per (user, server) settings and the configure command
 * on the server's JID. */
extern const bf_field bf_irc_settings_fields[];
extern const size_t bf_irc_n_settings_fields;
/* The configure command: offered on a server's JID (irc.net@GW). */
bool bf_irc_on_server_jid(void *state, const bf_jid *user, const bf_jid *to);
int bf_irc_configure_run(void *state, const bf_command_call *call,
                         bf_command_reply *reply);
extern const char bf_irc_settings_schema[];
/* *out: the stored values (taken), an empty form when none. */
int bf_irc_settings_load(bf_irc *irc, const char *user, const char *server,
                         bf_form **out);
int bf_irc_settings_save(bf_irc *irc, const char *user, const char *server,
                         const bf_form *values);

/* irc-history.c */
extern const char bf_irc_history_schema[];
/* A channel line (server, channel, nick, body: copied); kept once even
 * when several users' connections see it. Written at the next flush. */
void bf_irc_history_add(bf_irc *irc, const char *server, const char *channel,
                        const char *nick, const char *body);
/* Writes the buffered lines in one transaction (the module tick). */
void bf_irc_history_flush(bf_irc *irc);
void bf_irc_history_close(bf_irc *irc);
/* Sends the channel's last max lines to `to` as MUC history from room.
 * How many were sent, or BF_EIO. */
int bf_irc_history_send(bf_irc *irc, const char *server, const char *channel,
                        const char *room, const char *to, int max);

/* irc-server.c */
/* The user's connection to server, or NULL. */
bf_irc_conn *bf_irc_conn_find(bf_irc *irc, const char *user,
                              const char *server);
/* How many connections the user has (all servers). */
size_t bf_irc_conns_of(const bf_irc *irc, const char *user);
/* Finds or starts the connection (nick: wanted nick for a new one).
 * NULL on ENOMEM. */
bf_irc_conn *bf_irc_conn_get(bf_irc *irc, const char *user,
                             const char *server, const char *nick);
/* Sends one line built from params (see bf_irc_build). 0, BF_EINVAL,
 * BF_E2BIG, BF_ENOTCONN, BF_ENOBUFS. */
int bf_irc_send(bf_irc_conn *c, const char *command, const char *const *params,
                size_t n, bool trailing);
/* bf_irc_send through the flood-control bucket: what the user sends
 * (messages, joins, topics, raw commands). Lines beyond the bucket wait,
 * in order; BF_ENOBUFS when BF_IRC_PENDING_MAX are waiting. */
int bf_irc_send_user(bf_irc_conn *c, const char *command,
                     const char *const *params, size_t n, bool trailing);
/* The user's raw IRC commands, one per line of text (sent as typed,
 * after a check that each is one well-formed IRC line of at most 510
 * bytes); the server's replies for the next while go to the user from
 * the server's JID. 0 or BF_EINVAL (nothing sent). */
int bf_irc_send_raw_text(bf_irc_conn *c, const char *text);
/* QUIT (reason may be NULL) and close. */
void bf_irc_conn_quit(bf_irc_conn *c, const char *reason);
void bf_irc_conns_close(bf_irc *irc);
/* Timeouts of every connection: connect, keepalive, reconnect backoff.
 * Called every BF_IRC_TICK_MS by the module's one timer. */
void bf_irc_conns_tick(bf_irc *irc);
/* Reads from IRC again after a pause for back-pressure (the XMPP stream
 * drained or went down); nothing if not paused. */
void bf_irc_conns_resume(bf_irc *irc);

/* irc-channel.c */
/* The connection is registered: join the channels waiting for it. */
void bf_irc_on_registered(bf_irc_conn *c);
/* One line from the server, after the connection's own handling. True
 * if it meant something to the rooms or chats. */
bool bf_irc_on_line(bf_irc_conn *c, const bf_irc_msg *msg);
/* The connection is gone (error, QUIT): rooms still on it are left with
 * reason. */
void bf_irc_on_closed(bf_irc_conn *c, const char *reason);
/* c took over the rooms of a lost connection and will reconnect: the
 * users stay in the rooms (status), the other occupants go, the rooms are
 * joined again after registration. */
void bf_irc_on_lost(bf_irc_conn *c, const char *status);
/* The XMPP stream is back: every joined room's state is sent again. */
void bf_irc_rooms_resend(bf_irc *irc);
/* XMPP side: presence to a room, groupchat message to a room, chat
 * message to a nick. 0 or BF_ENOTSUP. */
int bf_irc_presence(bf_irc *irc, const bf_xml *stanza, const bf_jid *from,
                    const bf_jid *to, const bf_irc_address *addr);
int bf_irc_message(bf_irc *irc, const bf_xml *stanza, const bf_jid *from,
                   const bf_jid *to, const bf_irc_address *addr);
void bf_irc_channel_free(bf_irc_channel *ch);

#endif
