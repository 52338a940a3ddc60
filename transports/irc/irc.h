/* IRC transport: what its files share.
 *
 *   irc.c          the module: configuration, addresses (the Biboumi
 *                  scheme, SPEC "Addresses"), stanzas from XMPP
 *   irc-server.c   one IRC connection per (user, IRC server): resolve,
 *                  connect, register, read and write lines, keepalive
 *   irc-channel.c  channels as MUC rooms (XEP-0045)
 *   irc-private.c  private chats, raw commands, text to PRIVMSG lines
 *   irc-history.c  channel history: storage, replay on join, IRCv3
 *                  batch and chathistory;  irc-mam.c  MAM on rooms
 *   irc-bouncer.c  persistent channels: kept while the user is away,
 *                  restored at start-up
 *   irc-muc-admin.c  MODE to roles and affiliations, MUC admin requests,
 *                  invitations
 *   irc-nick.c     occupants' nicks, interned once per (server, nick)
 *   irc-commands.c ad-hoc commands besides configure: connection info,
 *                  disconnecting users and servers
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
#define BF_IRC_NS_MUC_ADMIN "http://jabber.org/protocol/muc#admin"
#define BF_IRC_NS_SID "urn:xmpp:sid:0"
#define BF_IRC_NS_OCCUPANT_ID "urn:xmpp:occupant-id:0"
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
/* The highest irc_throttle (and per-server throttle setting): past it
 * the bucket limits nothing a server would accept anyway. */
#define BF_IRC_THROTTLE_MAX 1000
/* Charset of text from a server that is not UTF-8, unless the user's
 * settings for that server name another. */
#define BF_IRC_ENCODING_DEFAULT "ISO-8859-1"
/* After-connection commands (a server setting): raw IRC lines sent
 * once registered, at most this many (Biboumi's field has no limit; 16
 * covers a few mode, oper and service commands). */
#define BF_IRC_AFTER_CONNECT_MAX 16
/* Channel history: rows kept per channel, lines replayed on join when
 * the client does not say (<history maxstanzas/>), and lines buffered
 * before a batch write. */
#define BF_IRC_HISTORY_MAX 500
#define BF_IRC_HISTORY_DEFAULT 20
#define BF_IRC_HISTORY_PENDING_MAX 256
/* ISUPPORT PREFIX: channel membership modes kept (a byte of bits per
 * occupant); CHANMODES: bytes of its value kept. */
#define BF_IRC_PREFIX_MAX 8
#define BF_IRC_CHANMODES_MAX 63
/* Messages sent with echo-message whose echo has not come back, per
 * channel; past it the oldest is reflected as sent. */
#define BF_IRC_ECHO_PENDING_MAX 64
/* MUC admin requests waiting for the server, per connection. */
#define BF_IRC_ADMIN_PENDING_MAX 16
/* A join waits this long at most for the server's history batch (IRCv3
 * chathistory, or InspIRCd's replay) before the room is shown without it. */
#define BF_IRC_HISTORY_WAIT_MS 3000u
/* A server with batch but no chathistory (InspIRCd 3's m_chanhistory)
 * replays a channel's history right behind NAMES, but a long NAMES may end
 * one read and the replay begin in the next: the room waits this long for
 * a history batch to begin (then for its end, BF_IRC_HISTORY_WAIT_MS). */
#define BF_IRC_HISTORY_REPLAY_MS 100u
/* Lines asked for with CHATHISTORY LATEST when joining. */
#define BF_IRC_CHATHISTORY_LINES 50
/* IRCv3 batches open at once on one connection; a server opening more
 * has the extra ones' lines handled as live lines. */
#define BF_IRC_BATCHES_MAX 8
/* MAM (XEP-0313): results per page at most, whatever <max/> asks. */
#define BF_IRC_MAM_PAGE_MAX 100
/* The module's one timer: connection timeouts are checked this often. */
#define BF_IRC_TICK_MS 1000u
/* Reconnection backoff cap. */
#define BF_IRC_RECONNECT_MAX_MS (60u * 1000u)
/* At start-up, the connections of users with persistent channels are
 * started at most this many per tick (BF_IRC_TICK_MS): 10,000 users take
 * under 7 minutes, and neither the IRC servers nor the resolver see them
 * all in the same second. */
#define BF_IRC_RESTORE_PER_TICK 25

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
  uint64_t id;                 /* the row id, given out before the write
                                  (XEP-0359 stanza-id of the live line) */
  uint64_t stamp_ms;           /* server-time, else the wall clock */
  uint64_t seen_ms;            /* loop clock: the same line on another
                                  user's connection is recognised */
  uint32_t hash;               /* of server, channel, nick, body */
};
/* An IRCv3 batch open on a connection (BATCH +ref type …). */
struct bf_irc_batch {
  char *ref;
  char *channel;               /* a "chathistory" batch's target, else NULL */
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

/* An IRC user seen on a server (irc-nick.c): one record per (server,
 * nick) for the module, shared by every channel and connection listing
 * them. */
typedef struct bf_irc_nicks bf_irc_nicks;
typedef struct bf_irc_nick {
  struct bf_irc_nick *next;    /* in its hash bucket */
  bf_irc_nicks *table;
  unsigned refs;
  unsigned hash;
  char *account;               /* IRCv3 account; NULL: unknown or none */
  char *away;                  /* away message; NULL: not away */
  char *first_nick;            /* the nick the user was first seen with,
                                  carried over nick changes (their
                                  occupant-id without an account); NULL:
                                  name */
  char *server;                /* after the nick in name */
  char name[];                 /* the nick, NUL, the server, NUL */
} bf_irc_nick;

struct bf_irc_nicks {
  bf_irc_nick **buckets;       /* a power of two of them */
  size_t n_buckets, count;
  /* Random, drawn at the first occupant-id made from a nick: those ids
   * cannot be computed from the nick by anyone else. */
  unsigned char salt[16];
  bool salted;
};

/* A channel member: 16 bytes, the nick shared. */
typedef struct bf_irc_occupant {
  bf_irc_nick *nick;           /* a reference held */
  unsigned char modes;         /* bit i: the connection's prefix_chars[i] */
} bf_irc_occupant;

/* A message sent to the channel with echo-message: reflected to the
 * user's resources when the server's echo of its last piece arrives
 * (irc-channel.c). */
typedef struct bf_irc_echo {
  struct bf_irc_echo *next;
  char *id;                    /* the XMPP message's id attribute, or NULL */
  char *origin_id;             /* its XEP-0359 origin-id, or NULL */
  char *body;                  /* what the user wrote */
  unsigned pieces;             /* PRIVMSGs sent for it */
  unsigned left;               /* their echoes (or 404s) still due */
  bool refused;                /* a piece was refused: the error is sent */
} bf_irc_echo;

typedef struct bf_irc_channel {
  struct bf_irc_channel *next;
  char *name;                  /* as the user wrote it, e.g. "#test" */
  char *room;                  /* "#test%server@GW", the room's bare JID */
  bf_irc_member *members;      /* the user's resources in the room */
  size_t n_members;
  bool joined;                 /* the server confirmed our JOIN */
  bool names_done;             /* end of NAMES (366) seen */
  bool created;                /* we were alone and got ops: a new channel
                                  (XEP-0045 status 201) */
  bool rejoining;              /* joined again after a reconnection: being
                                  alone with ops is no creation */
  bool moderated;              /* +m: occupants without a prefix are
                                  visitors (XEP-0045 §5.1) */
  bf_irc_occupant *occupants;
  size_t n_occupants;
  char *topic;
  /* The user's settings for the channel (configure on the room's JID). */
  bool persistent;             /* stays joined while the user is away */
  char *encoding;              /* charset of non-UTF-8 text, or NULL */
  uint64_t away_since_ms;      /* wall clock: kept with no member since
                                  then (the lines missed are replayed) */
  bf_irc_echo *echoes, *echoes_tail; /* oldest first */
  size_t n_echoes;
  uint64_t history_wait_until; /* loop clock: the room is shown once the
                                  server's history batch is in, or then;
                                  0 = not waiting */
} bf_irc_channel;

struct bf_irc_conn {
  bf_irc_conn *next;
  bf_irc *irc;
  char *user;                  /* the user's bare JID */
  char *server;                /* the IRC server's name */
  char *nick;                  /* our current nick */
  char *wanted_nick;           /* the nick the user asked for */
  /* A nick change asked from XMPP (XEP-0045 §7.6) that IRC has not
   * answered yet: the resource that asked, and the room/new-nick JID an
   * error presence comes from (433 nick in use: conflict). */
  char *nick_change_to, *nick_change_from;
  /* From the user's settings for this server (never logged). */
  char *pass, *sasl_user, *sasl_password, *realname, *username;
  char *tls_pin;               /* SHA-256 fingerprint to accept, or NULL */
  bool tls_verify;             /* check the certificate chain and name */
  char *nickserv_password;     /* IDENTIFY after 001 unless SASL logged in */
  char *encoding;              /* fallback charset (bf_irc_to_utf8) */
  char *address;               /* host name or IP connected to instead of
                                  server ("Address" setting), or NULL */
  char *after_connect;         /* raw IRC lines sent once registered, one
                                  per line, or NULL */
  unsigned throttle;           /* lines/s, 0 = none (irc_throttle or the
                                  user's setting) */
  /* SASL EXTERNAL: the user's certificate and key (PEM) for this server,
   * presented on TLS ports; the key is wiped when freed. */
  char *identity_cert, *identity_key;
  enum { BF_IRC_SASL_NONE, BF_IRC_SASL_EXTERNAL, BF_IRC_SASL_PLAIN }
      sasl_mechanism;          /* the one being tried */
  bool external_ready;         /* the certificate went into this TLS
                                  session: EXTERNAL can be tried */
  bool logged_in;              /* SASL succeeded (903) */
  /* CAP LS "sasl=PLAIN,EXTERNAL" (cap-notify 3.2): the mechanisms the
   * server lists (BF_IRC_SASL_* bits); 0 = no list given, any may do. */
  unsigned sasl_offered;
  bool told_not_tls;           /* the "not a TLS port" warning was sent */
  struct bf_irc_tls *tls_session; /* on a TLS port, once connected */
  /* Flood control: a token bucket refilled on demand (at each send and
   * each module tick), and the lines waiting for tokens. */
  double tokens;
  uint64_t tokens_at_ms;
  struct bf_irc_pending *pending, *pending_tail;
  size_t n_pending;
  /* Between bf_irc_message_begin and _end: the user's message being
   * sent (borrowed), and its record once a line of it waits. */
  const bf_xml *sending;
  struct bf_irc_pending_message *sending_record;
  /* IRCv3 capabilities (CAP LS 302 / REQ / ACK). */
  bool cap_negotiating;
  unsigned caps_wanted;        /* BF_IRC_CAP_* requested from CAP LS */
  unsigned caps;               /* BF_IRC_CAP_* the server acknowledged */
  /* ISUPPORT (005) PREFIX, e.g. "qaohv" and "~&@%+" (highest first), and
   * CHANMODES "A,B,C,D"; empty until the server sends them, and then
   * "(ov)@+" and "beI,k,l,imnpst" are assumed (modern.ircdocs). */
  char prefix_modes[BF_IRC_PREFIX_MAX + 1], prefix_chars[BF_IRC_PREFIX_MAX + 1];
  char chanmodes[BF_IRC_CHANMODES_MAX + 1];
  struct bf_irc_admin *admin;  /* MUC admin requests waiting for the
                                  server's answer (irc-muc-admin.c) */
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
  bool away;                   /* AWAY sent: the user is in none of its
                                  rooms (bouncer mode) */
  uint64_t last_read_ms;
  uint64_t raw_until_ms;       /* replies shown to the user until then */
  uint64_t reconnect_at_ms;    /* IDLE: when to connect again */
  size_t queued;               /* bytes handed to uv_write, not written */
  unsigned handles;            /* uv handles initialised and not yet
                                  closed (their close callbacks pending
                                  included); the struct is freed at 0 */
  bf_irc_reader reader;
  bf_irc_channel *channels;
  struct bf_irc_batch *batches; /* open IRCv3 batches (irc-history.c) */
  size_t n_batches;
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
  struct bf_irc_restore *restore; /* start-up: (user, server) pairs whose
                                  persistent channels are not joined yet */
  size_t n_restore, restore_at;
  bf_irc_nicks nicks;          /* every occupant's nick (irc-nick.c) */
  bool closing;                /* the module is closing: no reconnection */
  bool paused;                 /* IRC reads stopped: XMPP stream congested */
  uint64_t tick_timer;         /* host timer id */
  /* The line being handled, whichever connection it came from: one loop,
   * one line at a time, so one parse buffer (10 KiB) serves them all. */
  bf_irc_msg *msg;
  struct bf_irc_history_entry *history; /* lines not written yet */
  size_t n_history;
  /* Open-addressing index of history by hash: entry index + 1, 0 =
   * free; twice the entries so probes stay short. */
  uint16_t history_slots[2 * BF_IRC_HISTORY_PENDING_MAX];
  uint64_t next_id, end_id;    /* row ids reserved for this instance */
  uint64_t history_sweep;      /* host timer: joins waiting for a batch */
  uint64_t history_sweep_at;   /* loop clock: when it fires */
  size_t history_waits;        /* rooms that may be waiting (a hint: the
                                  tick only looks when it is not 0) */
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
/* A host name or address the resolver can take (irc.c). */
bool bf_irc_valid_host(const char *s);
int bf_irc_configure_run(void *state, const bf_command_call *call,
                         bf_command_reply *reply);
extern const char bf_irc_settings_schema[];
/* *out: the stored values (taken), an empty form when none. */
int bf_irc_settings_load(bf_irc *irc, const char *user, const char *server,
                         bf_form **out);
int bf_irc_settings_save(bf_irc *irc, const char *user, const char *server,
                         const bf_form *values);
/* The user's client certificate for server (SASL EXTERNAL): the stored
 * one, else (create) a new one, made and stored. *cert, *key: PEM,
 * malloc'd (taken; wipe the key before freeing it). 0, BF_ENOENT (none
 * stored and !create), BF_EIO (no libssl, OpenSSL or SQLite failed: err
 * says why), BF_ENOMEM. */
int bf_irc_settings_identity(bf_irc *irc, const char *user, const char *server,
                             bool create, char **cert, char **key, char *err,
                             size_t err_size);

/* The SHA-256 fingerprint (BF_IRC_TLS_CERTFP_SIZE) of the user's client
 * certificate for server into fp, from its own row: no libssl unless the
 * certificate is made now (create) or predates the row. 0, BF_ENOENT
 * (none and !create), or another error with the cause in err. */
int bf_irc_settings_identity_fp(bf_irc *irc, const char *user,
                                const char *server, bool create, char *fp,
                                size_t fp_size, char *err, size_t err_size);

/* Deletes every setting of the user, servers' and channels'. */
int bf_irc_settings_delete_user(bf_irc *irc, const char *user);

/* Per (user, server, channel) settings: persistent, encoding; and the
 * configure command on a room's JID (#chan%irc.net@GW). */
extern const char bf_irc_channel_settings_schema[];
extern const bf_field bf_irc_channel_fields[];
extern const size_t bf_irc_n_channel_fields;
bool bf_irc_on_room_jid(void *state, const bf_jid *user, const bf_jid *to);
int bf_irc_channel_configure_run(void *state, const bf_command_call *call,
                                 bf_command_reply *reply);
/* *out: the stored values of the channel (taken), an empty form when
 * none; besides the fields, "nick" and "left_at" (bouncer state). */
int bf_irc_channel_settings_load(bf_irc *irc, const char *user,
                                 const char *server, const char *channel,
                                 bf_form **out);
/* Sets ch->persistent and ch->encoding from the stored settings. */
void bf_irc_channel_settings_apply(bf_irc_conn *c, bf_irc_channel *ch);
/* Stores the bouncer state of a kept channel: the nick to reconnect with
 * and when the user left (wall clock ms). Strings borrowed. */
int bf_irc_channel_state_save(bf_irc *irc, const char *user,
                              const char *server, const char *channel,
                              const char *nick, uint64_t left_ms);
/* With user NULL: calls cb once for every (user, server) that has a
 * persistent channel at this gateway (channel NULL); else for every
 * persistent channel of (user, server). Strings borrowed for the call.
 * 0 or BF_EIO. */
int bf_irc_persistent_each(bf_irc *irc, const char *user, const char *server,
                           void (*cb)(void *data, const char *user,
                                      const char *server,
                                      const char *channel),
                           void *data);

/* irc-history.c */
extern const char bf_irc_history_schema[];
/* A channel line (server, channel, nick, body: copied) at stamp_ms
 * (server-time; 0 = now); kept once even when several users' connections
 * see it. replayed: it comes from the server's history (a chathistory
 * batch), so it is also looked for among the stored lines (same nick and
 * text, about the same time). Written at the next flush. Returns its id
 * (that of the same line kept before), 0 when it could not be kept. */
uint64_t bf_irc_history_add(bf_irc *irc, const char *server,
                            const char *channel, const char *nick,
                            const char *body, uint64_t stamp_ms, bool replayed);
/* Adds <stanza-id id by=room/> (XEP-0359) for id (0: nothing) to message
 * (borrowed); room: the room's bare JID, borrowed. */
void bf_irc_history_mark(bf_xml *message, const char *room, uint64_t id);
/* "h42" for id 42, and back (0 for anything else). */
void bf_irc_history_id_text(char *out, size_t size, uint64_t id);
uint64_t bf_irc_history_id_parse(const char *text);
/* XEP-0082 / IRCv3 server-time "2024-05-01T12:00:00.123Z" (or an
 * offset +hh:mm) to ms since the epoch; 0 if malformed. */
uint64_t bf_irc_history_time_parse(const char *text);
/* ms since the epoch to "2024-05-01T12:00:00.123Z" (out: 32 bytes). */
void bf_irc_history_time_text(char *out, size_t size, uint64_t ms);
/* Lowercases an IRC channel name into out (ASCII; as stored). */
void bf_irc_channel_key(char *out, size_t size, const char *name);
/* Writes the buffered lines in one transaction (the module tick). */
void bf_irc_history_flush(bf_irc *irc);
void bf_irc_history_close(bf_irc *irc);
/* Sends the channel's last max lines (only those stored after since_ms,
 * wall clock, when not 0) to `to` as MUC history from room. How many were
 * sent, or BF_EIO. */
int bf_irc_history_send(bf_irc *irc, const char *server, const char *channel,
                        const char *room, const char *to, int max,
                        uint64_t since_ms);
/* IRCv3 batches (BATCH +ref / -ref) and the lines tagged with one: the
 * lines of a "chathistory" batch become stored history, never live
 * messages. True if the line was taken. */
bool bf_irc_history_on_line(bf_irc_conn *c, const bf_irc_msg *msg);
/* The server's NAMES of ch ended: true if the room is to be shown later,
 * once the server's history batch for it is in (CHATHISTORY LATEST is
 * asked for when the server offers draft/chathistory; InspIRCd replays
 * its history right after NAMES), or after BF_IRC_HISTORY_WAIT_MS. */
bool bf_irc_history_wait(bf_irc_conn *c, bf_irc_channel *ch);
/* Rooms whose wait is over are shown (the module tick). */
void bf_irc_history_tick(bf_irc *irc);
/* Forgets the connection's open batches (a new session, or the end). */
void bf_irc_history_conn_reset(bf_irc_conn *c);

/* irc-mam.c: MAM (XEP-0313) on a room's bare JID: the query form, queries
 * with RSM (XEP-0059) and the archive's metadata. iq, from: borrowed.
 * 0 when answered, BF_ENOTSUP when the iq is not MAM. */
int bf_irc_mam_iq(bf_irc *irc, const bf_xml *iq, const bf_jid *from,
                  const bf_irc_address *addr);

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
 * in order; BF_ENOBUFS when BF_IRC_PENDING_MAX are waiting, BF_ENOTCONN
 * once the connection is ending. */
int bf_irc_send_user(bf_irc_conn *c, const char *command,
                     const char *const *params, size_t n, bool trailing);
/* The lines bf_irc_send_user is given from now until bf_irc_message_end
 * are those of stanza, a message from the user (borrowed until then; its
 * from, to, id and origin-id are copied when one of its lines has to
 * wait): if the connection ends before they are all written, the message
 * bounces back to its sender (remote-server-timeout), once. */
void bf_irc_message_begin(bf_irc_conn *c, const bf_xml *stanza);
/* answered: the sender already has its answer (an error reply, or the
 * wait for its echo-message echo, which bounces it if the connection
 * ends): it never bounces from the queue. */
void bf_irc_message_end(bf_irc_conn *c, bool answered);
/* The user's raw IRC commands, one per line of text (sent as typed,
 * after a check that each is one well-formed IRC line of at most 510
 * bytes); the server's replies for the next while go to the user from
 * the server's JID. 0 or BF_EINVAL (nothing sent). */
int bf_irc_send_raw_text(bf_irc_conn *c, const char *text);
/* line (one line, no CR/LF) is a raw command bf_irc_send_raw_text sends. */
bool bf_irc_raw_line_valid(const char *line);
/* The names of the capabilities in caps (BF_IRC_CAP_* bits), ", "
 * between them, into out (cut at a whole name when it is too small). */
void bf_irc_caps_names(unsigned caps, char *out, size_t size);
/* A chat message from the IRC server's JID (irc.net@GW) to the user
 * (text borrowed). */
void bf_irc_tell_user(bf_irc_conn *c, const char *text);
/* QUIT (reason may be NULL) and close. */
void bf_irc_conn_quit(bf_irc_conn *c, const char *reason);
void bf_irc_conns_close(bf_irc *irc);
/* Timeouts of every connection: connect, keepalive, reconnect backoff.
 * Called every BF_IRC_TICK_MS by the module's one timer. */
void bf_irc_conns_tick(bf_irc *irc);
/* Reads from IRC again after a pause for back-pressure (the XMPP stream
 * drained or went down); nothing if not paused. */
void bf_irc_conns_resume(bf_irc *irc);

/* irc-commands.c: get-irc-connection-info (on irc.net@GW),
 * disconnect-user (admins) and disconnect-from-irc-servers (on the
 * gateway). */
int bf_irc_info_run(void *state, const bf_command_call *call,
                    bf_command_reply *reply);
int bf_irc_disconnect_user_run(void *state, const bf_command_call *call,
                               bf_command_reply *reply);
int bf_irc_disconnect_servers_run(void *state, const bf_command_call *call,
                                  bf_command_reply *reply);

/* irc-nick.c */
/* The record of nick on server with a reference more (created when
 * new; server, nick: copied), or NULL on ENOMEM. */
bf_irc_nick *bf_irc_nick_get(bf_irc_nicks *t, const char *server,
                             const char *nick);
/* The record, no reference taken; NULL when no channel lists the nick. */
bf_irc_nick *bf_irc_nick_find(bf_irc_nicks *t, const char *server,
                              const char *nick);
/* Drops a reference (n may be NULL); the last one frees the record. */
void bf_irc_nick_unref(bf_irc_nick *n);
/* *field (account, away) becomes a copy of value (NULL clears it). 0 or
 * BF_ENOMEM (then *field is unchanged). */
int bf_irc_nick_set(char **field, const char *value);
/* The table itself, once every channel is freed. */
void bf_irc_nicks_close(bf_irc_nicks *t);
/* XEP-0421 occupant-id of n, 32 hex digits: derived from its account
 * when known, else from its first nick and the table's salt; "" on
 * failure. */
#define BF_IRC_OCCUPANT_ID_SIZE 33
void bf_irc_nick_occupant_id(bf_irc_nick *n, char out[BF_IRC_OCCUPANT_ID_SIZE]);

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
/* No resource of the user is in ch any more: a persistent channel stays
 * joined (away since now), another is PARTed (status: the reason, may be
 * NULL) and freed. The caller QUITs the connection when no channel is
 * left. */
void bf_irc_channel_released(bf_irc_conn *c, bf_irc_channel *ch,
                             const char *status);

/* Every resource of the user leaves every room of the connection (the
 * user went offline; status: why, may be NULL): persistent channels stay
 * joined, the others are PARTed; no channel left: QUIT. */
void bf_irc_rooms_left(bf_irc_conn *c, const char *status);

/* irc-bouncer.c */
/* Start-up: reads which users have persistent channels; their
 * connections are started by bf_irc_bouncer_tick, a few per tick. */
int bf_irc_bouncer_init(bf_irc *irc);
void bf_irc_bouncer_tick(bf_irc *irc);
/* Close: the state of kept channels is stored for the next start. */
void bf_irc_bouncer_close(bf_irc *irc);
/* The user unregistered: connections end, settings go. */
void bf_irc_user_forget(bf_irc *irc, const char *user);
/* The wall clock in ms (history stamps, away_since_ms). */
uint64_t bf_irc_wall_ms(void);
/* Sends AWAY (set or unset) when whether the user is in any room of the
 * connection changed. */
void bf_irc_away_update(bf_irc_conn *c);
/* The user's channel name on c, or NULL. */
bf_irc_channel *bf_irc_channel_find(bf_irc_conn *c, const char *name);
/* The connection's PREFIX characters, highest first ("@+" by default). */
const char *bf_irc_prefix_chars(const bf_irc_conn *c);
/* The membership bits of the prefixes *entry starts with ("@+nick"),
 * *entry moved past them. */
unsigned char bf_irc_prefix_modes(const bf_irc_conn *c, const char **entry);
/* nick among ch's occupants, or NULL. */
bf_irc_occupant *bf_irc_occupant_find(bf_irc_conn *c, bf_irc_channel *ch,
                                      const char *nick);
/* stanza (borrowed) to each of the user's resources in ch. */
void bf_irc_send_to_members(bf_irc_conn *c, bf_irc_channel *ch, bf_xml *stanza,
                            bool durable);
/* <presence from='room/nick'> with a muc#user item for o (NULL: no
 * modes known), type (NULL = available), status text and codes
 * (NULL-terminated list, or NULL), to one resource (to) or to all of them
 * (to NULL); new_nick for a nick change (303). All borrowed. */
void bf_irc_occupant_presence(bf_irc_conn *c, bf_irc_channel *ch,
                              const char *nick, const bf_irc_occupant *o,
                              const char *type, const char *status_text,
                              const char *const *codes, const char *to,
                              const char *new_nick);
/* A groupchat message from the room itself (a status line: modes, bans),
 * text borrowed. */
void bf_irc_room_notice(bf_irc_conn *c, bf_irc_channel *ch, const char *text);

/* irc-channel.c, shared with irc-private.c */
/* IRC text (any encoding, IRC formatting) to an XMPP body, malloc'd (NULL
 * on ENOMEM); encoding: the charset of text that is not UTF-8, NULL: the
 * connection's. */
char *bf_irc_body_of(const bf_irc_conn *c, const char *text,
                     const char *encoding);
/* An error reply to stanza (borrowed), text may be NULL. */
void bf_irc_reply_error(bf_irc *irc, const bf_xml *stanza,
                        const char *condition, const char *text);
/* A message of the user that did not reach IRC, bounced back as an error
 * (RFC 6120 §8.3) from `from` (the address it was sent to) with its id
 * and origin-id (XEP-0359; either may be NULL), condition (of its usual
 * type) and text; "to" is for the caller to set. All borrowed. A new
 * root, or NULL on ENOMEM. */
bf_xml *bf_irc_bounce_new(const char *from, const char *id,
                          const char *origin_id, const char *condition,
                          const char *text);

/* irc-private.c */
/* body (borrowed) to target (a channel or a nick), one PRIVMSG per line
 * and per piece under the line limit; `/me ` becomes a CTCP ACTION.
 * *pieces (may be NULL): how many PRIVMSGs were sent, even on error. 0,
 * BF_E2BIG or bf_irc_send_user's error. */
int bf_irc_privmsg(bf_irc_conn *c, const char *target, const char *body,
                   unsigned *pieces);
/* A PRIVMSG or NOTICE from nick to us: a chat message from
 * nick%server@GW to the user (CTCP VERSION and PING answered). */
void bf_irc_private_received(bf_irc_conn *c, const char *nick,
                             const char *text, bool notice);
/* A chat message body from the user to nick (NULL or "": the server's
 * JID, where each line is a raw command) on c (NULL: not connected).
 * Always 0: errors are replied to stanza. */
int bf_irc_private_send(bf_irc *irc, const bf_xml *stanza, bf_irc_conn *c,
                        const char *nick, const char *body);

/* irc-muc-admin.c */
/* RPL_ISUPPORT: PREFIX and CHANMODES kept on c. */
void bf_irc_on_isupport(bf_irc_conn *c, const bf_irc_msg *m);
/* True if o has channel operator status (@) or higher. */
bool bf_irc_is_operator(const bf_irc_conn *c, const bf_irc_occupant *o);
/* A channel MODE: occupants' roles and affiliations, the change shown in
 * the room. */
void bf_irc_on_mode(bf_irc_conn *c, bf_irc_channel *ch, const bf_irc_msg *m);
/* RPL_CHANNELMODEIS (324), the answer to the MODE sent on joining: the
 * channel's modes (moderated or not). */
void bf_irc_on_channel_modes(bf_irc_conn *c, bf_irc_channel *ch,
                             const bf_irc_msg *m);
/* An IRC INVITE to us: a XEP-0045 mediated invitation to the user. */
void bf_irc_on_invite(bf_irc_conn *c, const bf_irc_msg *m);
/* A message to the room with muc#user <invite/>s (x): INVITE each. */
void bf_irc_invite_from_xmpp(bf_irc_conn *c, bf_irc_channel *ch,
                             const bf_xml *stanza, const bf_xml *x);
/* An iq to a room (XEP-0045 §8-9 muc#admin). 0, or BF_ENOTSUP when it
 * is not one. */
int bf_irc_admin_iq(bf_irc *irc, const bf_xml *iq, const bf_jid *from,
                    const bf_irc_address *a);
/* The server's answers to admin requests (errors, the PONG that closes
 * each): true when m was one. */
bool bf_irc_admin_on_reply(bf_irc_conn *c, const bf_irc_msg *m);
/* The connection is gone: its waiting admin requests fail. */
void bf_irc_admin_close(bf_irc_conn *c);
/* The room is joined and its history is in: each waiting resource gets
 * the occupants, itself, the history and the subject. */
void bf_irc_room_entered(bf_irc_conn *c, bf_irc_channel *ch);
/* The XMPP body of a channel line's IRC text: UTF-8, styled, "/me …" for
 * a CTCP ACTION; NULL for another CTCP (not shown) or on ENOMEM.
 * malloc'd (taken). */
char *bf_irc_channel_body(const bf_irc_conn *c, const bf_irc_channel *ch,
                          const char *text);

#endif
