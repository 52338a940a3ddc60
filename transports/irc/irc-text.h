/* IRC transport: text between XMPP and IRC. Splitting XMPP bodies into IRC
 * lines, decoding what IRC sends into UTF-8, IRC formatting codes to
 * XEP-0393 styling, and CTCP framing.
 *
 * Protocol notes §5.4–5.7 (splitting, CTCP, encoding, injection). */
#ifndef BF_IRC_TEXT_H
#define BF_IRC_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Splits an XMPP body (text: borrowed, a C string, so it holds no NUL)
 * into IRC line payloads: one per line of the body (CR LF, LF or CR end a
 * line; empty lines are skipped), each cut into pieces of at most max
 * bytes at UTF-8 character boundaries, preferring the last space in the
 * piece when there is one in its second half (that space stays at the end
 * of the earlier piece, so the pieces of a line put together give back
 * the line exactly as sanitized), and never inside a colour code.
 * Sanitizing: C0 controls except \x01 (CTCP), \x02 \x03 \x0f \x11 \x16
 * \x1d \x1e \x1f (formatting) and TAB are removed, and so are DEL and the
 * C1 controls (U+0080..U+009F); invalid UTF-8 (overlong forms,
 * surrogates, past U+10FFFF, truncated) is replaced with U+FFFD. So a
 * piece is valid UTF-8 and never holds CR, LF or NUL. cb gets each piece
 * (borrowed, NUL-terminated, len bytes, never empty); non-zero stops (and
 * is returned). max: at least 16. Returns 0, BF_EINVAL (max < 16, text or
 * cb NULL), BF_ENOMEM. */
typedef int (*bf_irc_piece_cb)(void *data, const char *piece, size_t len);
int bf_irc_split_text(const char *text, size_t max, bf_irc_piece_cb cb,
                      void *data);

/* The room for text in "PRIVMSG target :text\r\n" as the server relays it
 * to others, with our own prefix ":nick!user@host " counted
 * (modern.ircdocs: the 512 bytes apply to what the recipient receives).
 * prefix_len: strlen("nick!user@host") as the server shows us (use an
 * upper estimate, e.g. nick + 1 + 10 + 1 + 63, when unknown). */
size_t bf_irc_text_room(const char *command, const char *target,
                        size_t prefix_len);

/* IRC bytes (in: borrowed, len bytes) to UTF-8 (malloc'd,
 * NUL-terminated, taken): valid UTF-8 is kept as is; otherwise the whole
 * text is decoded from fallback (an iconv charset name, e.g.
 * "ISO-8859-1", "CP1252"; NULL = ISO-8859-1), bytes the charset does not
 * define (CP1252's 0x81, …) becoming U+FFFD. NUL bytes are dropped; the
 * result is always valid UTF-8. Returns NULL on ENOMEM, or on an unknown
 * charset when the fallback is needed (valid UTF-8 never opens it: check
 * charsets at configuration time with bf_irc_charset_known). */
char *bf_irc_to_utf8(const char *in, size_t len, const char *fallback);
/* True if iconv can convert from charset (borrowed) to UTF-8. */
bool bf_irc_charset_known(const char *charset);

/* True if s (borrowed, len bytes) is valid UTF-8 (RFC 3629: no overlong
 * forms, surrogates or code points past U+10FFFF). */
bool bf_irc_utf8_valid(const char *s, size_t len);

/* IRC formatting (bold \x02, italics \x1d, strikethrough \x1e,
 * monospace \x11, underline \x1f, colour \x03[fg[,bg]], hex colour \x04,
 * reverse \x16, reset \x0f) in in (borrowed, UTF-8) to XEP-0393 styling:
 * bold -> *x*, italics -> _x_, strikethrough -> ~x~, monospace -> `x`.
 * A code left open runs to the end of its line. Styling is written only
 * where a receiver reads back exactly the IRC spans (XEP-0393 §5.2: a
 * span does not start or end with whitespace, opens at the start of the
 * line or after whitespace, never crosses a line, spans nest and a
 * preformatted one has no children); bold inside a word, or a line whose
 * own characters (*, _, ~, `) could already style it, gets plain text.
 * Everything else (colours, underline, reverse) is removed, and so are
 * C0 controls but TAB and LF, DEL, C1 controls and U+FFFE/U+FFFF (not
 * allowed in XML); invalid UTF-8 becomes U+FFFD. malloc'd (taken); NULL
 * on ENOMEM or in NULL. */
char *bf_irc_format_to_styling(const char *in);
/* Removes every IRC formatting code (for nicks, topics in plain
 * contexts), with the same clean-up as bf_irc_format_to_styling.
 * malloc'd (taken); NULL on ENOMEM or in NULL. */
char *bf_irc_strip_format(const char *in);

/* CTCP (\x01COMMAND args\x01) in a PRIVMSG/NOTICE text (borrowed): true
 * if text is one; *command and *args (borrowed into buf, size bytes) are
 * set, args "" if none (args is what follows the one space after the
 * command). The closing \x01 is optional (as in the wild); text after it
 * is ignored. False when the command is empty or not printable ASCII or
 * does not fit in buf; arguments too long for buf are cut at a character
 * boundary. */
bool bf_irc_ctcp_parse(const char *text, char *buf, size_t size,
                       const char **command, const char **args);

#endif
