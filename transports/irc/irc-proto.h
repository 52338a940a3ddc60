/* IRC transport: the wire protocol. Parsing one IRC line (IRCv3 message
 * tags, source, command, parameters), framing lines out of a byte stream,
 * and building outgoing lines that can never carry CR, LF or NUL.
 *
 * References: modern.ircdocs.horse (message format), IRCv3 message-tags
 * (tag escaping), RFC 1459 §2.3 (512 bytes with CRLF). */
#ifndef BF_IRC_PROTO_H
#define BF_IRC_PROTO_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 1459 §2.3.1: a line is at most 512 bytes, CRLF included. */
#define BF_IRC_LINE_MAX 512
/* IRCv3 message-tags: the tag section may add 8191 bytes (client tags
 * 4094 of them), '@' and the space included. */
#define BF_IRC_TAGS_MAX 8191
/* The longest line the reader accepts: tags + the RFC line. Longer lines
 * are dropped whole (and counted), never split into two messages. */
#define BF_IRC_READ_MAX (BF_IRC_TAGS_MAX + BF_IRC_LINE_MAX)
/* modern.ircdocs: at most 15 parameters. */
#define BF_IRC_PARAMS_MAX 15
#define BF_IRC_TAGS_COUNT_MAX 64

typedef struct bf_irc_tag {
  const char *key;             /* e.g. "time", "msgid", "+draft/reply" */
  const char *value;           /* unescaped; "" when the tag has none */
} bf_irc_tag;

/* A parsed line. Every pointer points into buf (the message owns it);
 * valid until the message is parsed into again or goes away. */
typedef struct bf_irc_msg {
  bf_irc_tag tags[BF_IRC_TAGS_COUNT_MAX];
  size_t n_tags;
  const char *source;          /* "nick!user@host" or "server", NULL if none */
  const char *nick;            /* the part of source before '!' / '@' (the
                                  whole source for a server); NULL if none */
  const char *user, *host;     /* NULL when source has no '!' / '@' part */
  const char *command;         /* as sent ("PRIVMSG", "001"), never NULL
                                  after a successful parse */
  const char *params[BF_IRC_PARAMS_MAX];
  size_t n_params;             /* the trailing parameter, if any, is the
                                  last one (':' removed) */
  /* The line's parts, NUL-terminated; the source is stored twice (whole,
   * and split into nick, user, host), hence the room past
   * BF_IRC_READ_MAX. */
  char buf[BF_IRC_READ_MAX + BF_IRC_LINE_MAX];
} bf_irc_msg;

/* Parses one line (without its CR LF; len bytes, not NUL-terminated;
 * borrowed, copied into msg). Middle parameters are separated by one or
 * more spaces; the 15th parameter takes the rest of the line (a leading
 * ':' removed), as RFC 2812 §2.3.1 allows. Returns 0, or BF_EINVAL: empty
 * or only spaces, only tags or a source and no command, a command that is
 * not letters and digits, a NUL, CR or LF byte, over BF_IRC_READ_MAX,
 * malformed tags (an empty tag section, an empty or ill-formed key, more
 * than BF_IRC_TAGS_COUNT_MAX tags), an empty source, or a source too long
 * to store twice. msg is left with n_tags = n_params = 0 and NULL
 * pointers on error. */
int bf_irc_parse(bf_irc_msg *msg, const char *line, size_t len);

/* The value of tag key (unescaped), or NULL if the message has no such
 * tag. A key sent more than once gives its last value (message-tags:
 * "disregard all but the final occurrence"). */
const char *bf_irc_tag_value(const bf_irc_msg *msg, const char *key);

/* True if command is the numeric reply num (e.g. "001" and 1). */
bool bf_irc_is_numeric(const bf_irc_msg *msg, int num);

/* ---- framing ----------------------------------------------------------
 * Bytes from the socket go in; whole lines (CR LF, or a lone LF, as some
 * servers send) come out through the callback. Lines longer than
 * BF_IRC_READ_MAX are dropped whole; `dropped` counts them. A line that
 * is whole inside one feed is handed out where it is, without a copy;
 * only a line cut between two reads is held, in a buffer allocated while
 * it is (from 512 bytes, doubling up to BF_IRC_READ_MAX + 2), or while
 * the caller paused: an idle connection holds no buffer at all. */
typedef struct bf_irc_reader {
  char *buf;                   /* the held partial line, or NULL */
  size_t len, cap;             /* bytes held, buf's size */
  bool skipping;               /* inside a line that was too long */
  bool holding;                /* paused: buf holds unhandled stream bytes */
  unsigned long dropped;
} bf_irc_reader;

/* What a line callback returns to pause (back-pressure): this line is
 * not handled; it and everything after it are kept, and handed out
 * first by the next bf_irc_reader_feed (len 0 to just resume). */
#define BF_IRC_READER_PAUSE 2

/* cb gets each non-empty line without its line ending (len bytes; line
 * is borrowed for the call and not NUL-terminated; it may hold NUL bytes,
 * which bf_irc_parse refuses). Empty lines are skipped (RFC 2812 §2.3.1).
 * cb returns 0 to go on, BF_IRC_READER_PAUSE to pause (feed returns
 * it), or another non-zero value to stop early: bf_irc_reader_feed then
 * returns that value at once, without touching r again (the unread rest
 * of data is discarded: the caller is closing the connection). BF_ENOMEM
 * when bytes cannot be held (a partial line is dropped and counted). */
typedef int (*bf_irc_line_cb)(void *data, const char *line, size_t len);
void bf_irc_reader_init(bf_irc_reader *r);
/* Frees the held partial line, if any; r can be fed again after init. */
void bf_irc_reader_close(bf_irc_reader *r);
int bf_irc_reader_feed(bf_irc_reader *r, const char *data, size_t len,
                       bf_irc_line_cb cb, void *cb_data);

/* ---- building lines ------------------------------------------------------
 * The only way babelfish writes to IRC. An argument containing CR, LF or
 * NUL is refused (BF_EINVAL): text from XMPP must go through
 * bf_irc_split_text (irc-text.h) first. Middle parameters must also be
 * non-empty, not start with ':' and not contain a space. */

/* Writes "COMMAND p1 p2 … :trailing\r\n" to out (size bytes, then a
 * NUL, which size must leave room for). command and params are borrowed.
 * params: n (at most BF_IRC_PARAMS_MAX) strings; the last one is sent as a
 * trailing parameter (with ':') when trailing is true (ignored when n is
 * 0). The command must be letters and digits. Returns the line's length
 * (CR LF included, NUL not), BF_EINVAL for a forbidden byte, a bad
 * command or a bad middle parameter, BF_E2BIG when the line would exceed
 * size - 1 or BF_IRC_LINE_MAX. Nothing useful is left in out on error.
 * (Being C strings, the arguments cannot carry NUL: text after a NUL
 * byte never reaches the line.) */
int bf_irc_build(char *out, size_t size, const char *command,
                 const char *const *params, size_t n, bool trailing);

#endif
