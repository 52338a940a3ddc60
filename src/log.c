/* Logging: one line per event on stderr (fd 2), written with a single
 * write() so that lines from one process never interleave, and so that a
 * log_file is simply fd 2 pointed at a file (dup2) — whatever else writes to
 * stderr (a library's warning, a sanitizer report) lands there too. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Declared again with the format attribute so that -Wformat-nonliteral
 * accepts the vsnprintf below; log.h leaves it off because callers that
 * forward their own va_list (host->log) would then be warned instead. */
void bf__vlog(int level, const char *tag, const char *fmt, va_list ap)
    BF_PRINTF(3, 0);

/* A line never exceeds this many bytes, newline included. */
#define LINE_MAX_BYTES 8192
/* The message is formatted into twice the line's size: escaping only
 * grows it, so when vsnprintf had to cut, the line cap is hit first and
 * the "…[truncated]" marker is always added. */
#define MESSAGE_MAX_BYTES (2 * LINE_MAX_BYTES)
/* A tag is a section name; cap it so it cannot crowd out the message. */
#define TAG_MAX_BYTES 64

static const char truncated_marker[] = "\xe2\x80\xa6[truncated]";

static int log_level = BF_LOG_INFO;
static char *log_path; /* the file fd 2 is redirected to, or NULL */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int bf__log_level_parse(const char *name) {
  if (!name)
    return -1;
  for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++) {
    if (!strcasecmp(name, level_names[i]))
      return i;
  }
  return -1;
}

void bf__log_set_level(int level) {
  if (level < BF_LOG_ERROR)
    level = BF_LOG_ERROR;
  if (level > BF_LOG_DEBUG)
    level = BF_LOG_DEBUG;
  log_level = level;
}

int bf__log_get_level(void) { return log_level; }

/* Points fd 2 at path (appending, created 0640: logs may name users, so
 * they are not world-readable). Returns 0 or a negated errno. */
static int redirect_stderr(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return -errno;
  int rc = 0;
  if (fd != STDERR_FILENO) {
    /* dup2 clears O_CLOEXEC on fd 2: children keep logging there. */
    if (dup2(fd, STDERR_FILENO) < 0)
      rc = -errno;
    close(fd);
  }
  return rc;
}

int bf__log_init(int level, const char *file) {
  int rc = 0;
  char *copy = NULL;
  if (level < BF_LOG_ERROR || level > BF_LOG_DEBUG) {
    rc = BF_EINVAL;
    goto out;
  }
  if (file) {
    copy = strdup(file);
    if (!copy) {
      rc = BF_ENOMEM;
      goto out;
    }
    if ((rc = redirect_stderr(file)) < 0)
      goto out;
  }
  log_level = level;
  free(log_path);
  log_path = copy;
  copy = NULL;
out:
  free(copy);
  return rc;
}

int bf__log_reopen(void) {
  if (!log_path)
    return 0;
  return redirect_stderr(log_path);
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes
 * available), or 0 if s does not start one. Only the structure is checked:
 * the point is to keep a multi-byte character whole when the line is cut. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
  size_t len;
  if (s[0] >= 0xf0 && s[0] <= 0xf4)
    len = 4;
  else if (s[0] >= 0xe0)
    len = s[0] <= 0xef ? 3 : 0;
  else if (s[0] >= 0xc2)
    len = 2;
  else
    return 0;
  if (len == 0 || len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  }
  return len;
}

/* Appends src[0..n) to out (at *pos, never past limit) with C0 controls
 * and DEL as \xNN, so a foreign string cannot start a new line or send
 * terminal escapes. Returns false if it had to stop early. */
static bool append_escaped(char *out, size_t *pos, size_t limit,
                           const char *src, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)src;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x20 || c == 0x7f) {
      if (limit - *pos < 4)
        return false;
      out[(*pos)++] = '\\';
      out[(*pos)++] = 'x';
      out[(*pos)++] = hex[c >> 4];
      out[(*pos)++] = hex[c & 0xf];
      i++;
      continue;
    }
    size_t len = c >= 0x80 ? utf8_sequence(s + i, n - i) : 0;
    if (len == 0)
      len = 1; /* ASCII, or a stray byte copied as it is */
    if (limit - *pos < len)
      return false;
    memcpy(out + *pos, s + i, len);
    *pos += len;
    i += len;
  }
  return true;
}

void bf__vlog(int level, const char *tag, const char *fmt, va_list ap) {
  if (level > log_level)
    return;
  /* Logging must not disturb the caller's errno (it may log, then test
   * it); it is saved first so that %m still reports it. */
  int saved_errno = errno;
  char message[MESSAGE_MAX_BYTES];
  char line[LINE_MAX_BYTES];

  int n = vsnprintf(message, sizeof message, fmt, ap);
  size_t message_len = 0;
  if (n > 0)
    message_len = (size_t)n < sizeof message ? (size_t)n : sizeof message - 1;

  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  size_t pos = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  if (level < BF_LOG_ERROR)
    level = BF_LOG_ERROR;
  if (level > BF_LOG_DEBUG)
    level = BF_LOG_DEBUG;
  pos += (size_t)snprintf(line + pos, sizeof line - pos, ".%03ldZ %-5s [",
                          now.tv_nsec / 1000000L, level_names[level]);
  if (!tag)
    tag = "babelfish";
  size_t tag_len = strnlen(tag, TAG_MAX_BYTES);
  append_escaped(line, &pos, pos + 4 * TAG_MAX_BYTES, tag, tag_len);
  line[pos++] = ']';
  line[pos++] = ' ';

  /* Room is kept for the marker and the newline. */
  size_t limit = sizeof line - (sizeof truncated_marker - 1) - 1;
  if (!append_escaped(line, &pos, limit, message, message_len)) {
    memcpy(line + pos, truncated_marker, sizeof truncated_marker - 1);
    pos += sizeof truncated_marker - 1;
  }
  line[pos++] = '\n';

  /* One write() per line; a short write (a full disk) is finished rather
   * than dropped silently, and an error is ignored: there is nowhere left
   * to report it. */
  const char *p = line;
  size_t left = pos;
  while (left > 0) {
    ssize_t w = write(STDERR_FILENO, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  errno = saved_errno;
}

void bf__log(int level, const char *tag, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bf__vlog(level, tag, fmt, ap);
  va_end(ap);
}
