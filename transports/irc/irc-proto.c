/* IRC transport: the wire protocol (irc-proto.h). One line is parsed into
 * tags, source, command and parameters (modern.ircdocs.horse "Message
 * format", IRCv3 message-tags); a byte stream is cut into lines; outgoing
 * lines are built from structured parts and can never carry CR, LF or NUL
 * (PROTOCOL-NOTES §5.7). Nothing here touches the loop; the only
 * allocation is the reader's buffer for a line cut between two reads. */
#include "irc-proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "babelfish/error.h"

static bool is_alnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

/* ---- parsing ---------------------------------------------------------------- */

/* Writes into msg->buf; the cursor and its end. */
typedef struct writer {
  char *at, *end;
} writer;

/* Copies n bytes and a NUL; the copy, or NULL when out of room. */
static const char *store(writer *w, const char *s, size_t n) {
  if ((size_t)(w->end - w->at) < n + 1)
    return NULL;
  char *copy = w->at;
  memcpy(copy, s, n);
  copy[n] = '\0';
  w->at += n + 1;
  return copy;
}

/* message-tags: key = ['+'] [vendor '/'] key_name, key_name letters,
 * digits and '-', vendor a host name. '_' is let through too: some
 * servers use it, and nothing here depends on the key's shape beyond it
 * being a token. */
static bool tag_key_valid(const char *k, size_t n) {
  size_t i = 0;
  if (n && k[0] == '+')
    i = 1;
  if (i == n || k[n - 1] == '/' || k[i] == '/')
    return false;
  for (; i < n; i++) {
    unsigned char c = (unsigned char)k[i];
    if (!is_alnum(c) && c != '-' && c != '.' && c != '/' && c != '_')
      return false;
  }
  return true;
}

/* message-tags "Escaping values": \: ; \s space \\ \ \r CR \n LF; any
 * other escaped character stands for itself and a lone backslash at the
 * end is dropped. Writes the unescaped value and a NUL. */
static const char *unescape(writer *w, const char *v, size_t n) {
  if ((size_t)(w->end - w->at) < n + 1)
    return NULL; /* unescaping never grows a value */
  char *out = w->at, *o = out;
  for (size_t i = 0; i < n; i++) {
    if (v[i] != '\\') {
      *o++ = v[i];
      continue;
    }
    if (++i == n)
      break;
    switch (v[i]) {
    case ':': *o++ = ';'; break;
    case 's': *o++ = ' '; break;
    case 'r': *o++ = '\r'; break;
    case 'n': *o++ = '\n'; break;
    default: *o++ = v[i]; break; /* "\\" too */
    }
  }
  *o = '\0';
  w->at = o + 1;
  return out;
}

/* The tag section between '@' and the first space: key[=value] entries
 * separated by ';'. */
static int parse_tags(bf_irc_msg *msg, writer *w, const char *s, size_t n) {
  if (n == 0)
    return BF_EINVAL;
  size_t i = 0;
  while (i <= n) {
    const char *semi = memchr(s + i, ';', n - i);
    size_t end = semi ? (size_t)(semi - s) : n;
    const char *eq = memchr(s + i, '=', end - i);
    size_t key_end = eq ? (size_t)(eq - s) : end;
    if (!tag_key_valid(s + i, key_end - i))
      return BF_EINVAL;
    if (msg->n_tags == BF_IRC_TAGS_COUNT_MAX)
      return BF_EINVAL;
    bf_irc_tag *t = &msg->tags[msg->n_tags];
    t->key = store(w, s + i, key_end - i);
    t->value = eq ? unescape(w, eq + 1, end - key_end - 1) : "";
    if (!t->key || !t->value)
      return BF_EINVAL;
    msg->n_tags++;
    i = end + 1;
  }
  return 0;
}

/* "nick!user@host", "nick@host", "nick!user" or a server name. A '!'
 * after the '@' belongs to the host. */
static int parse_source(bf_irc_msg *msg, writer *w, const char *s, size_t n) {
  msg->source = store(w, s, n);
  if (!msg->source)
    return BF_EINVAL;
  const char *at = memchr(s, '@', n);
  const char *bang = memchr(s, '!', at ? (size_t)(at - s) : n);
  const char *nick_end = bang ? bang : at ? at : s + n;
  msg->nick = store(w, s, (size_t)(nick_end - s));
  if (!msg->nick)
    return BF_EINVAL;
  if (bang) {
    const char *user_end = at ? at : s + n;
    msg->user = store(w, bang + 1, (size_t)(user_end - bang - 1));
    if (!msg->user)
      return BF_EINVAL;
  }
  if (at) {
    msg->host = store(w, at + 1, (size_t)(s + n - at - 1));
    if (!msg->host)
      return BF_EINVAL;
  }
  return 0;
}

static void clear(bf_irc_msg *msg) {
  msg->n_tags = 0;
  msg->n_params = 0;
  msg->source = msg->nick = msg->user = msg->host = NULL;
  msg->command = NULL;
}

int bf_irc_parse(bf_irc_msg *msg, const char *line, size_t len) {
  int rc = BF_EINVAL;
  if (!msg)
    return BF_EINVAL;
  clear(msg);
  if (!line || len == 0 || len > BF_IRC_READ_MAX)
    goto out;
  /* A NUL cannot be relayed, and a CR or LF inside a line is bad framing
   * (modern.ircdocs: never a lone CR or LF); refusing them means no part
   * of a parsed message can inject a line when echoed back. */
  for (size_t k = 0; k < len; k++)
    if (line[k] == '\0' || line[k] == '\r' || line[k] == '\n')
      goto out;

  writer w = {msg->buf, msg->buf + sizeof msg->buf};
  size_t i = 0;
  if (line[0] == '@') {
    const char *sp = memchr(line, ' ', len);
    if (!sp)
      goto out; /* only tags */
    if ((rc = parse_tags(msg, &w, line + 1, (size_t)(sp - line) - 1)) != 0)
      goto out;
    rc = BF_EINVAL;
    i = (size_t)(sp - line);
  }
  while (i < len && line[i] == ' ')
    i++;
  if (i < len && line[i] == ':') {
    const char *sp = memchr(line + i, ' ', len - i);
    size_t end = sp ? (size_t)(sp - line) : len;
    if (end == i + 1)
      goto out; /* ": " */
    if ((rc = parse_source(msg, &w, line + i + 1, end - i - 1)) != 0)
      goto out;
    rc = BF_EINVAL;
    i = end;
  }
  while (i < len && line[i] == ' ')
    i++;
  size_t start = i;
  while (i < len && line[i] != ' ') {
    if (!is_alnum((unsigned char)line[i]))
      goto out;
    i++;
  }
  if (i == start || !(msg->command = store(&w, line + start, i - start)))
    goto out;

  /* RFC 2812 §2.3.1: params = *14( SPACE middle ) [ SPACE ":" trailing ]
   *                          =/ 14( SPACE middle ) [ SPACE [ ":" ] trailing ]
   * with RFC 1459's "one or more" spaces between them. */
  for (;;) {
    while (i < len && line[i] == ' ')
      i++;
    if (i == len)
      break;
    const char *p;
    if (line[i] == ':' || msg->n_params == BF_IRC_PARAMS_MAX - 1) {
      if (line[i] == ':')
        i++;
      p = store(&w, line + i, len - i);
      i = len;
    } else {
      start = i;
      while (i < len && line[i] != ' ')
        i++;
      p = store(&w, line + start, i - start);
    }
    if (!p)
      goto out;
    msg->params[msg->n_params++] = p;
    if (i == len)
      break;
  }
  rc = 0;
out:
  if (rc)
    clear(msg);
  return rc;
}

const char *bf_irc_tag_value(const bf_irc_msg *msg, const char *key) {
  for (size_t i = msg->n_tags; i-- > 0;)
    if (strcmp(msg->tags[i].key, key) == 0)
      return msg->tags[i].value;
  return NULL;
}

bool bf_irc_is_numeric(const bf_irc_msg *msg, int num) {
  const char *c = msg->command;
  if (!c || !(c[0] >= '0' && c[0] <= '9') || !(c[1] >= '0' && c[1] <= '9') ||
      !(c[2] >= '0' && c[2] <= '9') || c[3] != '\0')
    return false;
  return (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0') == num;
}

/* ---- framing ---------------------------------------------------------------- */

/* The first size of the buffer holding a partial line: most IRC lines
 * fit (RFC 1459 §2.3), tagged ones make it grow. */
#define READER_HOLD_MIN 512

void bf_irc_reader_init(bf_irc_reader *r) {
  r->buf = NULL;
  r->len = r->cap = 0;
  r->skipping = false;
  r->holding = false;
  r->dropped = 0;
}

void bf_irc_reader_close(bf_irc_reader *r) {
  free(r->buf);
  r->buf = NULL;
  r->len = r->cap = 0;
  r->holding = false;
}

/* Appends n bytes to buf. A partial line (the caller checked its limit)
 * grows it up to BF_IRC_READ_MAX + 2; what a pause holds is at most what
 * the caller read before it stopped reading. */
static int hold(bf_irc_reader *r, const char *data, size_t n) {
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : READER_HOLD_MIN;
    while (cap < r->len + n)
      cap *= 2;
    if (!r->holding && cap > BF_IRC_READ_MAX + 2)
      cap = BF_IRC_READ_MAX + 2;
    char *grown = realloc(r->buf, cap);
    if (!grown)
      return BF_ENOMEM;
    r->buf = grown;
    r->cap = cap;
  }
  memcpy(r->buf + r->len, data, n);
  r->len += n;
  return 0;
}

/* The callback paused on line (whole bytes, its CR included): keep it,
 * its LF and the rest of data, in place of the partial-line buffer. */
static int pause_at(bf_irc_reader *r, const char *line, size_t whole,
                    const char *rest, size_t rest_len) {
  char *kept = malloc(whole + 1 + rest_len);
  if (!kept) {
    r->dropped++;
    return BF_ENOMEM;
  }
  memcpy(kept, line, whole);
  kept[whole] = '\n';
  if (rest_len)
    memcpy(kept + whole + 1, rest, rest_len);
  free(r->buf); /* line may have been in it: copied above */
  r->buf = kept;
  r->len = r->cap = whole + 1 + rest_len;
  r->holding = true;
  return BF_IRC_READER_PAUSE;
}

static int feed_lines(bf_irc_reader *r, const char *data, size_t len,
                      bf_irc_line_cb cb, void *cb_data) {
  int rc = 0;
  size_t i = 0;
  while (i < len) {
    const char *nl = memchr(data + i, '\n', len - i);
    size_t chunk = nl ? (size_t)(nl - data) - i : len - i;
    const char *line = data + i;
    i += chunk + 1;
    if (r->skipping) {
      r->skipping = !nl;
      continue;
    }
    /* Up to BF_IRC_READ_MAX bytes and the CR of a CR LF are kept; one
     * byte more and the line is dropped whole: half a line parsed as a
     * message could be anything. */
    if (r->len + chunk > BF_IRC_READ_MAX + 1) {
      r->skipping = !nl;
      r->dropped++;
      r->len = 0;
      continue;
    }
    if (!nl || r->len) {
      if (hold(r, line, chunk) != 0) {
        r->skipping = !nl;
        r->dropped++;
        r->len = 0;
        rc = BF_ENOMEM;
        continue;
      }
      if (!nl)
        break;
      line = r->buf;
      chunk = r->len;
      r->len = 0;
    }
    size_t whole = chunk;
    if (chunk && line[chunk - 1] == '\r')
      chunk--;
    if (chunk > BF_IRC_READ_MAX) {
      r->dropped++;
      continue;
    }
    if (chunk == 0)
      continue;
    int stop = cb(cb_data, line, chunk);
    if (stop == BF_IRC_READER_PAUSE)
      return pause_at(r, line, whole, data + i, len - i);
    if (stop)
      return stop;
  }
  /* Nothing held: give the buffer back (an idle connection keeps none). */
  if (r->len == 0 && r->buf)
    bf_irc_reader_close(r);
  return rc;
}

int bf_irc_reader_feed(bf_irc_reader *r, const char *data, size_t len,
                       bf_irc_line_cb cb, void *cb_data) {
  if (!r->holding)
    return feed_lines(r, data, len, cb, cb_data);
  /* Paused: new bytes go behind the kept ones, which come out first. */
  if (len && hold(r, data, len) != 0)
    return BF_ENOMEM;
  char *kept = r->buf;
  size_t n = r->len;
  r->buf = NULL;
  r->len = r->cap = 0;
  r->holding = false;
  int rc = feed_lines(r, kept, n, cb, cb_data);
  free(kept);
  return rc;
}

/* ---- building --------------------------------------------------------------- */

static bool has_line_break(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

int bf_irc_build(char *out, size_t size, const char *command,
                 const char *const *params, size_t n, bool trailing) {
  if (!out || !command || !command[0] || (n && !params) ||
      n > BF_IRC_PARAMS_MAX)
    return BF_EINVAL;
  size_t total = strlen(command) + 2; /* CR LF */
  for (const char *c = command; *c; c++)
    if (!is_alnum((unsigned char)*c))
      return BF_EINVAL;
  for (size_t i = 0; i < n; i++) {
    const char *p = params[i];
    if (!p || has_line_break(p))
      return BF_EINVAL;
    bool is_trailing = trailing && i == n - 1;
    /* A middle parameter that is empty, starts with ':' or holds a space
     * would shift every parameter after it (§5.7). */
    if (!is_trailing && (!p[0] || p[0] == ':' || strchr(p, ' ')))
      return BF_EINVAL;
    total += 1 + strlen(p) + (is_trailing ? 1 : 0);
  }
  if (total > BF_IRC_LINE_MAX || total >= size)
    return BF_E2BIG;

  char *o = out;
  size_t k = strlen(command);
  memcpy(o, command, k);
  o += k;
  for (size_t i = 0; i < n; i++) {
    *o++ = ' ';
    if (trailing && i == n - 1)
      *o++ = ':';
    k = strlen(params[i]);
    memcpy(o, params[i], k);
    o += k;
  }
  *o++ = '\r';
  *o++ = '\n';
  *o = '\0';
  return (int)(o - out);
}
