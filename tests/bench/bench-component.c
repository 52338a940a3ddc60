/* bench-component: the core benchmark of babelfish (tests/bench/README.md).
 *
 * The driver plays the XMPP server's side of XEP-0114 on loopback. It
 * spawns `babelfish -c FILE` with one echo gateway, accepts the component
 * connection, checks the handshake, floods message stanzas at the echo
 * gateway while reading the echoes, and reports:
 *   - stanzas/s through the daemon (first byte sent -> last echo read);
 *   - the parse-only rate of expat over the very bytes the flood sent, and
 *     the ratio of the two (how close the daemon gets to its parser);
 *   - latency percentiles of a separate paced run;
 *   - idle RSS (after the handshake) and peak RSS (VmHWM);
 *   - with --startup: exec -> connection accepted / handshake received.
 * The daemon and the driver are pinned to different cores, so the daemon
 * has one core to itself and the figures are "per core".
 *
 * It is a test tool, not daemon code: blocking-style I/O over one
 * non-blocking socket and ppoll(2), and a small scanner that splits the
 * daemon's output into top-level elements (the daemon's serializer writes
 * well-formed XML; expat is kept for the parse-only reference). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <expat.h>

#include "bench-util.h"
#include "xml-scan.h"

extern char **environ;

#define BENCH_DOMAIN "echo.localhost"
#define BENCH_SECRET "benchsecret"
#define BENCH_STREAM_ID "bench-id-1"
/* What Prosody answers, minus xml:lang (PROTOCOL-NOTES §1.1). */
#define BENCH_SERVER_HEADER                                                 \
  "<?xml version='1.0'?><stream:stream "                                    \
  "xmlns:stream='http://etherx.jabber.org/streams' "                        \
  "xmlns='jabber:component:accept' from='" BENCH_DOMAIN "' id='"           \
  BENCH_STREAM_ID "'>"

#define RX_CHUNK (256u * 1024)     /* one read(2) */
#define RX_MAX (8u << 20)          /* cap on one incoming element */
#define TX_CHUNK (256u * 1024)     /* one write(2) */
#define REPLY_MAX (1u << 20)       /* cap on queued ping answers */
#define HEADER_MAX 4096u           /* cap on the daemon's stream header */
#define EXPAT_CHUNK (64u * 1024)

/* Targets (README.md). */
#define TARGET_STANZAS_PER_SEC 250000.0
#define TARGET_RATIO 0.50
#define TARGET_IDLE_RSS_KIB 4096.0
#define TARGET_STARTUP_MS 50.0

typedef struct options {
  uint64_t n;               /* stanzas in the flood */
  uint64_t latency_n;       /* stanzas in the paced run; 0 = skip */
  unsigned latency_rate;    /* stanzas/s of the paced run */
  bool startup;             /* --startup mode instead of the flood */
  unsigned runs;            /* start-up runs */
  bool enforce;
  bool keep;
  unsigned timeout_s;       /* no new echo for this long = failure */
  const char *babelfish;
  const char *tmp;          /* parent of the work folder */
} options;

/* The work folder, the listening socket and the core layout. */
typedef struct bench_env {
  char dir[PATH_MAX];
  char conf[PATH_MAX + 16];
  char log[PATH_MAX + 16];
  int listen_fd;
  unsigned port;
  int cpu_driver, cpu_daemon;  /* -1: not pinned */
} bench_env;

/* The accepted component connection. */
typedef struct conn {
  int fd;
  pid_t pid;
  bool closing;             /* we asked the daemon to stop */
  bench_rx in;              /* the daemon's stream, framed */
  uint64_t bytes_in;

  uint64_t messages, pings, others;
  uint64_t last_message_ns;

  /* answers to the daemon's pings, sent only between two of our stanzas */
  char *reply;
  size_t reply_len, reply_cap;

  /* what we are sending (not owned) */
  const char *out;
  size_t out_len, out_off;

  /* paced run: send and receive times by sequence number */
  uint64_t *lat_send, *lat_recv;
  uint64_t lat_n, lat_seen;
} conn;

typedef struct results {
  double stanzas_per_sec, flood_s, daemon_cpu_pct, driver_cpu_pct;
  double expat_per_sec, ratio;
  double lat_p50_us, lat_p99_us, lat_max_us;
  long idle_rss_kib, idle_anon_kib, hwm_kib;
  double startup_accept_ms, startup_handshake_ms;
  uint64_t flood_bytes, messages_out, pings, others;
} results;

static void print_log_tail(const bench_env *e)
{
  FILE *f = fopen(e->log, "r");
  if (!f)
    return;
  /* the last ~4 KiB is enough to show why the daemon stopped */
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size > 4096 ? size - 4096 : 0, SEEK_SET);
  char buf[4097];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  if (n == 0) {
    fprintf(stderr, "bench: %s is empty\n", e->log);
    return;
  }
  fprintf(stderr, "bench: --- tail of %s ---\n%s%s--- end ---\n", e->log, buf,
          n && buf[n - 1] != '\n' ? "\n" : "");
}

/* ---- the connection ---------------------------------------------------- */

static int reply_append(conn *c, const char *data, size_t len)
{
  if (c->reply_len + len > REPLY_MAX) {
    fprintf(stderr, "bench: over %u bytes of ping answers queued\n",
            REPLY_MAX);
    return -1;
  }
  if (c->reply_len + len > c->reply_cap) {
    size_t cap = c->reply_cap ? c->reply_cap * 2 : 4096;
    while (cap < c->reply_len + len)
      cap *= 2;
    char *p = realloc(c->reply, cap);
    if (!p)
      return -1;
    c->reply = p;
    c->reply_cap = cap;
  }
  memcpy(c->reply + c->reply_len, data, len);
  c->reply_len += len;
  return 0;
}

/* Answers an XEP-0199 ping the way Prosody does (PROTOCOL-NOTES §1.6):
 * from and to swapped, the id unchanged. Values are copied raw, with
 * their own quote character, so they stay valid XML as they were. */
static int answer_ping(conn *c, const char *tag, size_t tag_len)
{
  const char *id, *from, *to;
  size_t id_len, from_len, to_len;
  char id_q, from_q, to_q;
  if (!tag_attr(tag, tag_len, "id", &id, &id_len, &id_q)) {
    fprintf(stderr, "bench: the daemon sent a ping without id: %.*s\n",
            (int)tag_len, tag);
    return -1;
  }
  if (!tag_attr(tag, tag_len, "from", &from, &from_len, &from_q)) {
    from = BENCH_DOMAIN;
    from_len = strlen(from);
    from_q = '\'';
  }
  if (!tag_attr(tag, tag_len, "to", &to, &to_len, &to_q)) {
    to = "localhost";
    to_len = strlen(to);
    to_q = '\'';
  }
  char buf[3 * 1024];
  int n = snprintf(buf, sizeof(buf),
                   "<iq type='result' from=%c%.*s%c to=%c%.*s%c id=%c%.*s%c/>",
                   to_q, (int)to_len, to, to_q, from_q, (int)from_len, from,
                   from_q, id_q, (int)id_len, id, id_q);
  if (n < 0 || (size_t)n >= sizeof(buf)) {
    fprintf(stderr, "bench: ping attributes too long\n");
    return -1;
  }
  c->pings++;
  return reply_append(c, buf, (size_t)n);
}

/* One complete top-level element s[0..n) from the daemon. */
static int on_stanza(conn *c, const char *s, size_t n, uint64_t now)
{
  if (element_is(s, n, "message")) {
    c->messages++;
    c->last_message_ns = now;
    if (c->lat_n) {
      /* The echo keeps the body (not necessarily the id): the sequence
       * number is the body's last word. */
      const char *body = memmem(s, n, "<body>", 6);
      const char *word = body ? memmem(body, n - (size_t)(body - s),
                                       "message ", 8)
                              : NULL;
      if (word) {
        uint64_t seq = strtoull(word + 8, NULL, 10);
        if (seq < c->lat_n && !c->lat_recv[seq]) {
          c->lat_recv[seq] = now;
          c->lat_seen++;
        }
      }
    }
    return 0;
  }
  if (element_is(s, n, "iq")) {
    size_t gt = tag_end(s, 0, n);
    if (attr_equals(s, gt, "type", "get") && memmem(s, n, "<ping", 5))
      return answer_ping(c, s, gt);
    c->others++;
    return 0;
  }
  if (element_is(s, n, "stream:error"))
    fprintf(stderr, "bench: stream error from the daemon: %.*s\n",
            (int)(n > 2000 ? 2000 : n), s);
  c->others++;
  return 0;
}

static int scan_stanza(void *data, const char *s, size_t n, uint64_t now)
{
  return on_stanza(data, s, n, now);
}

/* Frames the daemon's stream (xml-scan.h); a closed stream we did not ask
 * for is a failure. */
static int scan(conn *c, uint64_t now)
{
  int rc = bench_rx_scan(&c->in, RX_MAX, "bench", scan_stanza, c, now);
  if (rc < 0)
    return rc;
  if (c->in.stream_closed && !c->closing) {
    fprintf(stderr, "bench: the daemon closed its stream\n");
    return -1;
  }
  return 0;
}

/* One read(2) into rx. 1 = data, 0 = nothing (EAGAIN), -1 = EOF/error. */
static int rx_read(conn *c)
{
  if (c->in.rx_cap - c->in.rx_len < RX_CHUNK) {
    size_t cap = c->in.rx_len + RX_CHUNK;
    char *p = realloc(c->in.rx, cap);
    if (!p)
      return -1;
    c->in.rx = p;
    c->in.rx_cap = cap;
  }
  for (;;) {
    ssize_t r = read(c->fd, c->in.rx + c->in.rx_len, c->in.rx_cap - c->in.rx_len);
    if (r > 0) {
      c->in.rx_len += (size_t)r;
      c->bytes_in += (uint64_t)r;
      return 1;
    }
    if (r == 0) {
      if (!c->closing)
        fprintf(stderr, "bench: the daemon closed the connection\n");
      return -1;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    if (!c->closing)
      fprintf(stderr, "bench: read: %s\n", strerror(errno));
    return -1;
  }
}

/* Reads what is there (a few chunks at most, so that writing gets its
 * turn) and scans it. */
static int drain(conn *c)
{
  for (int i = 0; i < 4; i++) {
    int r = rx_read(c);
    if (r < 0)
      return -1;
    if (r == 0)
      return 0;
    if (scan(c, now_ns()) < 0)
      return -1;
  }
  return 0;
}

/* Whether out_off is between two of our stanzas, where a ping answer may
 * be slipped in. */
static bool at_boundary(const conn *c)
{
  return c->out_off == 0 || c->out_off >= c->out_len ||
         (c->out_off >= 10 &&
          memcmp(c->out + c->out_off - 10, "</message>", 10) == 0);
}

/* Writes until the socket is full or nothing is left. */
static int flush(conn *c)
{
  for (;;) {
    const char *data;
    size_t n;
    bool is_reply = c->reply_len > 0 && at_boundary(c);
    if (is_reply) {
      data = c->reply;
      n = c->reply_len;
    } else if (c->out_off < c->out_len) {
      data = c->out + c->out_off;
      n = c->out_len - c->out_off;
      if (n > TX_CHUNK)
        n = TX_CHUNK;
      if (c->reply_len > 0) {
        /* stop at the end of the current stanza */
        const char *e = memmem(data, n, "</message>", 10);
        if (e)
          n = (size_t)(e - data) + 10;
      }
    } else {
      return 0;
    }
    ssize_t w = write(c->fd, data, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      fprintf(stderr, "bench: write: %s\n", strerror(errno));
      return -1;
    }
    if (is_reply) {
      memmove(c->reply, c->reply + w, c->reply_len - (size_t)w);
      c->reply_len -= (size_t)w;
    } else {
      c->out_off += (size_t)w;
    }
  }
}

/* One round of I/O, waiting at most until wait_until (monotonic ns). */
static int pump(conn *c, uint64_t wait_until)
{
  struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
  if (c->reply_len > 0 || c->out_off < c->out_len)
    pfd.events |= POLLOUT;
  uint64_t now = now_ns();
  uint64_t wait = wait_until > now ? wait_until - now : 0;
  struct timespec ts = {.tv_sec = (time_t)(wait / NS_PER_S),
                        .tv_nsec = (long)(wait % NS_PER_S)};
  int n = ppoll(&pfd, 1, &ts, NULL);
  if (n < 0) {
    if (errno == EINTR)
      return 0;
    fprintf(stderr, "bench: poll: %s\n", strerror(errno));
    return -1;
  }
  if (n == 0)
    return 0;
  if ((pfd.revents & POLLOUT) && flush(c) < 0)
    return -1;
  if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) && drain(c) < 0)
    return -1;
  return 0;
}

static int write_all(int fd, const char *data, size_t len, uint64_t deadline)
{
  while (len > 0) {
    ssize_t w = write(fd, data, len);
    if (w > 0) {
      data += w;
      len -= (size_t)w;
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      fprintf(stderr, "bench: write: %s\n", strerror(errno));
      return -1;
    }
    uint64_t now = now_ns();
    if (now >= deadline) {
      fprintf(stderr, "bench: write timed out\n");
      return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
  }
  return 0;
}

/* Waits for data until deadline and reads it into rx (not scanned). */
static int rx_wait(conn *c, uint64_t deadline, const char *what)
{
  for (;;) {
    int r = rx_read(c);
    if (r != 0)
      return r > 0 ? 0 : -1;
    uint64_t now = now_ns();
    if (now >= deadline) {
      fprintf(stderr, "bench: timed out waiting for %s\n", what);
      return -1;
    }
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
  }
}

/* The server's side of XEP-0114 §3 (PROTOCOL-NOTES §1.1). Sets *t_handshake
 * when the daemon's <handshake> has been read. */
static int serve_handshake(conn *c, uint64_t deadline, uint64_t *t_handshake)
{
  size_t header_end = 0;
  for (;;) {
    const char *h = c->in.rx_len ? memmem(c->in.rx, c->in.rx_len, "<stream:stream",
                                       14)
                              : NULL;
    if (h) {
      size_t gt = tag_end(c->in.rx, (size_t)(h - c->in.rx), c->in.rx_len);
      if (gt) {
        size_t hs = (size_t)(h - c->in.rx);
        if (!memmem(h, gt - hs, "jabber:component:accept", 23) ||
            !attr_equals(h, gt - hs + 1, "to", BENCH_DOMAIN)) {
          fprintf(stderr, "bench: unexpected stream header: %.*s\n",
                  (int)(gt - hs + 1), h);
          return -1;
        }
        header_end = gt + 1;
        break;
      }
    }
    if (c->in.rx_len > HEADER_MAX) {
      fprintf(stderr, "bench: no stream header in %zu bytes\n", c->in.rx_len);
      return -1;
    }
    if (rx_wait(c, deadline, "the stream header") < 0)
      return -1;
  }
  if (write_all(c->fd, BENCH_SERVER_HEADER, strlen(BENCH_SERVER_HEADER),
                deadline) < 0)
    return -1;

  const char *end_tag;
  for (;;) {
    end_tag = memmem(c->in.rx + header_end, c->in.rx_len - header_end,
                     "</handshake>", 12);
    if (end_tag)
      break;
    if (c->in.rx_len - header_end > HEADER_MAX) {
      fprintf(stderr, "bench: no </handshake> in %zu bytes\n",
              c->in.rx_len - header_end);
      return -1;
    }
    if (rx_wait(c, deadline, "the handshake") < 0)
      return -1;
  }
  *t_handshake = now_ns();
  const char *start = memmem(c->in.rx + header_end,
                             (size_t)(end_tag - c->in.rx) - header_end,
                             "<handshake>", 11);
  char want[41];
  if (handshake_hex(BENCH_STREAM_ID BENCH_SECRET, want) < 0) {
    fprintf(stderr, "bench: SHA-1 failed\n");
    return -1;
  }
  if (!start || end_tag - (start + 11) != 40 ||
      memcmp(start + 11, want, 40) != 0) {
    fprintf(stderr, "bench: wrong handshake: %.*s (want %s)\n",
            (int)(end_tag + 12 - (c->in.rx + header_end)), c->in.rx + header_end,
            want);
    return -1;
  }
  if (write_all(c->fd, "<handshake/>", 12, deadline) < 0)
    return -1;

  /* what follows the handshake is stanzas at depth 1 */
  size_t used = (size_t)(end_tag + 12 - c->in.rx);
  memmove(c->in.rx, c->in.rx + used, c->in.rx_len - used);
  c->in.rx_len -= used;
  c->in.rx_pos = 0;
  c->in.depth = 1;
  return scan(c, now_ns());
}

/* ---- the daemon process ------------------------------------------------- */

static int env_init(bench_env *e, const options *o)
{
  memset(e, 0, sizeof(*e));
  e->listen_fd = -1;
  e->cpu_driver = e->cpu_daemon = -1;
  snprintf(e->dir, sizeof(e->dir), "%s/bf-bench-XXXXXX", o->tmp);
  if (!mkdtemp(e->dir)) {
    fprintf(stderr, "bench: mkdtemp %s: %s\n", e->dir, strerror(errno));
    e->dir[0] = '\0';
    return -1;
  }
  snprintf(e->conf, sizeof(e->conf), "%s/bench.ini", e->dir);
  snprintf(e->log, sizeof(e->log), "%s/babelfish.log", e->dir);

  e->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (e->listen_fd < 0) {
    fprintf(stderr, "bench: socket: %s\n", strerror(errno));
    return -1;
  }
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  if (bind(e->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
      listen(e->listen_fd, 8) < 0 ||
      getsockname(e->listen_fd, (struct sockaddr *)&sa, &sl) < 0) {
    fprintf(stderr, "bench: listen on 127.0.0.1: %s\n", strerror(errno));
    return -1;
  }
  e->port = ntohs(sa.sin_port);

  FILE *f = fopen(e->conf, "w");
  if (!f) {
    fprintf(stderr, "bench: %s: %s\n", e->conf, strerror(errno));
    return -1;
  }
  fprintf(f,
          "[babelfish]\nserver = 127.0.0.1\nport = %u\n"
          "database = %s/bench.db\nlog_level = warn\n"
          "[echo]\ntransport = echo\ndomain = " BENCH_DOMAIN "\n"
          "secret = " BENCH_SECRET "\n",
          e->port, e->dir);
  if (fclose(f) != 0) {
    fprintf(stderr, "bench: %s: %s\n", e->conf, strerror(errno));
    return -1;
  }

  /* One core for the daemon, another for the driver, when there are two. */
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) >= 2) {
    for (int i = 0; i < CPU_SETSIZE; i++) {
      if (!CPU_ISSET(i, &set))
        continue;
      if (e->cpu_driver < 0)
        e->cpu_driver = i;
      else if (e->cpu_daemon < 0)
        e->cpu_daemon = i;
    }
  }
  return 0;
}

static void env_close(bench_env *e, bool keep)
{
  if (e->listen_fd >= 0)
    close(e->listen_fd);
  if (!e->dir[0])
    return;
  if (keep)
    fprintf(stderr, "bench: kept %s\n", e->dir);
  else
    nftw(e->dir, unlink_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* Starts the daemon on its core, stdout and stderr to the log. posix_spawn
 * (vfork-like) keeps the start-up time free of copying the driver's page
 * tables. The child inherits the affinity it is spawned with. */
static int daemon_spawn(const options *o, const bench_env *e, pid_t *pid)
{
  posix_spawn_file_actions_t fa;
  int rc = -1;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, e->log,
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  char *argv[] = {(char *)o->babelfish, "-c", (char *)e->conf, NULL};
  if (pin(e->cpu_daemon, "bench") < 0)
    goto out;
  int err = posix_spawn(pid, o->babelfish, &fa, NULL, argv, environ);
  if (pin(e->cpu_driver, "bench") < 0)
    goto out;
  if (err) {
    fprintf(stderr, "bench: cannot run %s: %s\n", o->babelfish,
            strerror(err));
    goto out;
  }
  rc = 0;
out:
  posix_spawn_file_actions_destroy(&fa);
  return rc;
}

static void describe_exit(pid_t pid, int status)
{
  if (WIFEXITED(status))
    fprintf(stderr, "bench: babelfish (pid %d) exited with status %d\n",
            (int)pid, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    fprintf(stderr, "bench: babelfish (pid %d) was killed by signal %d (%s)\n",
            (int)pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
}

/* Accepts the daemon's connection; fails early if it exits first. */
static int accept_daemon(const bench_env *e, conn *c, uint64_t deadline)
{
  for (;;) {
    struct pollfd pfd = {.fd = e->listen_fd, .events = POLLIN};
    int n = poll(&pfd, 1, 20);
    if (n > 0) {
      c->fd = accept4(e->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c->fd < 0) {
        fprintf(stderr, "bench: accept: %s\n", strerror(errno));
        return -1;
      }
      int one = 1;
      /* small paced writes must not wait for acks (latency run) */
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return 0;
    }
    int status;
    if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
      fprintf(stderr, "bench: babelfish exited before connecting\n");
      describe_exit(c->pid, status);
      c->pid = -1;
      return -1;
    }
    if (now_ns() >= deadline) {
      fprintf(stderr, "bench: babelfish did not connect within 10 s\n");
      return -1;
    }
  }
}

/* Stops the daemon the way a server sees a shutdown: SIGTERM, then answer
 * its </stream:stream> with ours and close. A crash is a failure; a slow
 * exit is only reported. */
static int daemon_stop(conn *c)
{
  int rc = 0, status = 0;
  if (c->pid <= 0)
    goto out;
  c->closing = true;
  kill(c->pid, SIGTERM);
  uint64_t deadline = now_ns() + 5 * NS_PER_S;
  bool exited = false;
  while (!exited && now_ns() < deadline) {
    if (c->fd >= 0) {
      struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
      if (poll(&pfd, 1, 10) > 0 &&
          (rx_read(c) < 0 || scan(c, now_ns()) < 0 || c->in.stream_closed)) {
        /* best effort: the daemon may already be gone */
        if (write(c->fd, "</stream:stream>", 16) < 0) {
        }
        close(c->fd);
        c->fd = -1;
      }
    } else {
      poll(NULL, 0, 10);
    }
    exited = waitpid(c->pid, &status, WNOHANG) == c->pid;
  }
  if (!exited) {
    fprintf(stderr, "bench: warning: babelfish did not exit within 5 s of "
                    "SIGTERM; killing it\n");
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &status, 0);
  } else if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM) {
    describe_exit(c->pid, status);
    rc = -1;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench: warning: ");
    describe_exit(c->pid, status);
  }
  c->pid = -1;
out:
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  return rc;
}

/* ---- workloads ---------------------------------------------------------- */

static int format_stanza(char *out, size_t cap, const char *id, uint64_t seq)
{
  return snprintf(out, cap,
                  "<message from='alice@localhost/bench' "
                  "to='bob@" BENCH_DOMAIN "' type='chat' id='%s'>"
                  "<body>Hello from the benchmark, message %" PRIu64
                  "</body></message>",
                  id, seq);
}

/* The whole flood as one buffer, so sending it costs nothing but write(2)
 * and expat can be timed over exactly the same bytes. */
static char *build_flood(uint64_t n, size_t *len)
{
  size_t cap = (size_t)n * 256 + 1, off = 0;
  char *buf = malloc(cap);
  if (!buf) {
    fprintf(stderr, "bench: no memory for %" PRIu64 " stanzas\n", n);
    return NULL;
  }
  for (uint64_t i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof(id), "m%" PRIu64, i);
    off += (size_t)format_stanza(buf + off, cap - off, id, i);
  }
  *len = off;
  return buf;
}

static bool stalled(const conn *c, uint64_t since, const options *o,
                    uint64_t got, uint64_t want)
{
  if (now_ns() - since < (uint64_t)o->timeout_s * NS_PER_S)
    return false;
  fprintf(stderr, "bench: no echo for %u s: got %" PRIu64 " of %" PRIu64
                  " (sent %zu of %zu bytes)\n",
          o->timeout_s, got, want, c->out_off, c->out_len);
  return true;
}

static int run_flood(conn *c, const options *o, const char *flood,
                     size_t flood_len, results *r)
{
  uint64_t base = c->messages;
  c->out = flood;
  c->out_len = flood_len;
  c->out_off = 0;
  double cpu0 = proc_cpu_s(c->pid), self0 = self_cpu_s();
  uint64_t t0 = now_ns(), progress = t0, seen = base;
  while (c->messages - base < o->n) {
    if (pump(c, now_ns() + NS_PER_S / 10) < 0)
      return -1;
    if (c->messages != seen) {
      seen = c->messages;
      progress = now_ns();
    } else if (stalled(c, progress, o, c->messages - base, o->n)) {
      return -1;
    }
  }
  if (c->messages - base != o->n) {
    fprintf(stderr, "bench: %" PRIu64 " echoes for %" PRIu64 " stanzas\n",
            c->messages - base, o->n);
    return -1;
  }
  double wall = (double)(c->last_message_ns - t0) / 1e9;
  double cpu1 = proc_cpu_s(c->pid), self1 = self_cpu_s();
  r->flood_s = wall;
  r->stanzas_per_sec = (double)o->n / wall;
  r->daemon_cpu_pct = cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) / wall * 100
                                             : -1;
  r->driver_cpu_pct = (self1 - self0) / wall * 100;
  r->flood_bytes = flood_len;
  /* flush a ping answer that may still wait for a boundary */
  c->out = NULL;
  c->out_len = c->out_off = 0;
  return 0;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* latency_n stanzas at latency_rate/s, each stamped when written. */
static int run_latency(conn *c, const options *o, results *r)
{
  int rc = -1;
  uint64_t n = o->latency_n;
  size_t cap = (size_t)n * 256 + 1, len = 0;
  char *buf = malloc(cap);
  c->lat_send = calloc(n, sizeof(uint64_t));
  c->lat_recv = calloc(n, sizeof(uint64_t));
  if (!buf || !c->lat_send || !c->lat_recv)
    goto out;
  c->lat_n = n;
  c->lat_seen = 0;
  c->out = buf;
  c->out_off = c->out_len = 0;

  uint64_t t0 = now_ns(), sent = 0, progress = t0, seen = 0;
  while (c->lat_seen < n) {
    uint64_t now = now_ns();
    uint64_t due = (now - t0) * o->latency_rate / NS_PER_S + 1;
    if (due > n)
      due = n;
    for (; sent < due; sent++) {
      char id[48];
      snprintf(id, sizeof(id), "l%" PRIu64 "-%" PRIu64, sent, now / 1000);
      len += (size_t)format_stanza(buf + len, cap - len, id, sent);
      c->lat_send[sent] = now;
    }
    c->out_len = len;
    if (flush(c) < 0)
      goto out;
    uint64_t next = sent < n ? t0 + sent * NS_PER_S / o->latency_rate
                             : now + NS_PER_S / 10;
    if (pump(c, next) < 0)
      goto out;
    if (c->lat_seen != seen) {
      seen = c->lat_seen;
      progress = now_ns();
    } else if (stalled(c, progress, o, c->lat_seen, n)) {
      goto out;
    }
  }
  for (uint64_t i = 0; i < n; i++)
    c->lat_recv[i] -= c->lat_send[i];
  qsort(c->lat_recv, n, sizeof(uint64_t), cmp_u64);
  r->lat_p50_us = (double)c->lat_recv[(n - 1) / 2] / 1e3;
  r->lat_p99_us = (double)c->lat_recv[(n * 99 + 99) / 100 - 1] / 1e3;
  r->lat_max_us = (double)c->lat_recv[n - 1] / 1e3;
  rc = 0;
out:
  c->out = NULL;
  c->out_len = c->out_off = 0;
  c->lat_n = 0;
  free(c->lat_send);
  free(c->lat_recv);
  c->lat_send = c->lat_recv = NULL;
  free(buf);
  return rc;
}

static void XMLCALL on_start(void *data, const XML_Char *name,
                             const XML_Char **attrs)
{
}

static void XMLCALL on_end(void *data, const XML_Char *name)
{
}

static void XMLCALL on_text(void *data, const XML_Char *s, int len)
{
}

/* Seconds expat needs for the stream the driver sent, best of 3. */
static double expat_parse_s(const char *flood, size_t len)
{
  double best = -1;
  for (int run = 0; run < 3; run++) {
    XML_Parser p = XML_ParserCreateNS(NULL, '\x01');
    if (!p)
      return -1;
    XML_SetElementHandler(p, on_start, on_end);
    XML_SetCharacterDataHandler(p, on_text);
    uint64_t t0 = now_ns();
    bool ok = XML_Parse(p, BENCH_SERVER_HEADER,
                        (int)strlen(BENCH_SERVER_HEADER), 0) == XML_STATUS_OK;
    for (size_t off = 0; ok && off < len; off += EXPAT_CHUNK) {
      size_t n = len - off < EXPAT_CHUNK ? len - off : EXPAT_CHUNK;
      ok = XML_Parse(p, flood + off, (int)n, 0) == XML_STATUS_OK;
    }
    double s = (double)(now_ns() - t0) / 1e9;
    if (!ok)
      fprintf(stderr, "bench: expat: %s at line %lu\n",
              XML_ErrorString(XML_GetErrorCode(p)),
              (unsigned long)XML_GetCurrentLineNumber(p));
    XML_ParserFree(p);
    if (!ok)
      return -1;
    if (best < 0 || s < best)
      best = s;
  }
  return best;
}

static void print_pinning(const bench_env *e)
{
  if (e->cpu_daemon >= 0)
    printf("pinning daemon_cpu %d driver_cpu %d (daemon alone on one core)\n",
           e->cpu_daemon, e->cpu_driver);
  else
    printf("pinning none (fewer than 2 cores available)\n");
}

/* Spawns, accepts and handshakes; fills the start-up times in ms. */
static int daemon_start(const options *o, const bench_env *e, conn *c,
                        double *accept_ms, double *handshake_ms)
{
  uint64_t t0 = now_ns(), t_hs = 0;
  if (daemon_spawn(o, e, &c->pid) < 0)
    return -1;
  uint64_t deadline = t0 + 10 * NS_PER_S;
  if (accept_daemon(e, c, deadline) < 0)
    return -1;
  *accept_ms = (double)(now_ns() - t0) / 1e6;
  if (serve_handshake(c, deadline, &t_hs) < 0)
    return -1;
  *handshake_ms = (double)(t_hs - t0) / 1e6;
  return 0;
}

static void conn_free(conn *c)
{
  free(c->in.rx);
  free(c->reply);
}

static int run_throughput(const options *o, const bench_env *e, results *r)
{
  int rc = -1;
  conn c = {.fd = -1, .pid = -1};
  size_t flood_len = 0;
  char *flood = build_flood(o->n, &flood_len);
  if (!flood)
    goto out;
  if (daemon_start(o, e, &c, &r->startup_accept_ms,
                   &r->startup_handshake_ms) < 0)
    goto out;

  /* idle: the daemon is online; let it settle, answering its pings */
  uint64_t idle_end = now_ns() + NS_PER_S;
  while (now_ns() < idle_end)
    if (pump(&c, idle_end) < 0)
      goto out;
  r->idle_rss_kib = proc_status_kib(c.pid, "VmRSS");
  r->idle_anon_kib = proc_status_kib(c.pid, "RssAnon");

  if (run_flood(&c, o, flood, flood_len, r) < 0)
    goto out;
  if (o->latency_n && run_latency(&c, o, r) < 0)
    goto out;
  r->hwm_kib = proc_status_kib(c.pid, "VmHWM");
  r->messages_out = c.messages;
  r->pings = c.pings;
  r->others = c.others;
  rc = 0;
out:
  if (daemon_stop(&c) < 0)
    rc = -1;
  conn_free(&c);
  if (rc == 0) {
    double s = expat_parse_s(flood, flood_len);
    if (s <= 0) {
      rc = -1;
    } else {
      r->expat_per_sec = (double)o->n / s;
      r->ratio = r->stanzas_per_sec / r->expat_per_sec;
    }
  }
  free(flood);
  return rc;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
  qsort(v, n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int run_startup(const options *o, const bench_env *e, results *r)
{
  int rc = -1;
  double *acc = calloc(o->runs, sizeof(double));
  double *hs = calloc(o->runs, sizeof(double));
  if (!acc || !hs)
    goto out;
  for (unsigned i = 0; i < o->runs; i++) {
    conn c = {.fd = -1, .pid = -1};
    int started = daemon_start(o, e, &c, &acc[i], &hs[i]);
    int stopped = daemon_stop(&c);
    conn_free(&c);
    if (started < 0 || stopped < 0)
      goto out;
  }
  r->startup_accept_ms = median(acc, o->runs);
  r->startup_handshake_ms = median(hs, o->runs);
  printf("startup_runs %u\n", o->runs);
  printf("startup_ms_min %.2f\n", acc[0]);
  printf("startup_ms_max %.2f\n", acc[o->runs - 1]);
  rc = 0;
out:
  free(acc);
  free(hs);
  return rc;
}

/* ---- main --------------------------------------------------------------- */

static bool target(const char *name, double value, bool at_least,
                   double want, int decimals)
{
  bool pass = at_least ? value >= want : value <= want;
  printf("target %s %.*f %s %.*f %s\n", name, decimals, value,
         at_least ? ">=" : "<=", decimals, want, pass ? "PASS" : "MISS");
  return pass;
}

static void usage(FILE *f)
{
  fprintf(f,
          "usage: bench-component [options]\n"
          "  -n N               stanzas in the flood (default 1000000)\n"
          "  --latency-n N      stanzas in the paced latency run (default "
          "10000, 0 = skip)\n"
          "  --latency-rate R   stanzas/s of the paced run (default 20000)\n"
          "  --startup          measure start-up time only\n"
          "  --runs N           start-up runs (default 10)\n"
          "  --babelfish PATH   daemon binary (default: $BABELFISH, else\n"
          "                     ../babelfish beside this program)\n"
          "  --tmp DIR          parent of the work folder (default "
          "$BF_TEST_TMP, $TMPDIR, /tmp)\n"
          "  --timeout S        fail when no echo arrives for S s (default "
          "10)\n"
          "  --enforce          exit 3 when a target is missed\n"
          "  --keep             keep the work folder (config, db, log)\n"
          "exit: 0 ok, 1 failure, 2 usage, 3 target missed (--enforce)\n");
}

static int parse_options(int argc, char **argv, options *o, char *self_dir,
                         size_t self_dir_size)
{
  enum { OPT_LAT_N = 256, OPT_LAT_RATE, OPT_STARTUP, OPT_RUNS, OPT_BIN,
         OPT_TMP, OPT_TIMEOUT, OPT_ENFORCE, OPT_KEEP };
  static const struct option longs[] = {
      {"latency-n", required_argument, NULL, OPT_LAT_N},
      {"latency-rate", required_argument, NULL, OPT_LAT_RATE},
      {"startup", no_argument, NULL, OPT_STARTUP},
      {"runs", required_argument, NULL, OPT_RUNS},
      {"babelfish", required_argument, NULL, OPT_BIN},
      {"tmp", required_argument, NULL, OPT_TMP},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"enforce", no_argument, NULL, OPT_ENFORCE},
      {"keep", no_argument, NULL, OPT_KEEP},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  *o = (options){.n = 1000000, .latency_n = 10000, .latency_rate = 20000,
                 .runs = 10, .timeout_s = 10};
  int opt;
  while ((opt = getopt_long(argc, argv, "n:h", longs, NULL)) != -1) {
    switch (opt) {
    case 'n': o->n = strtoull(optarg, NULL, 10); break;
    case OPT_LAT_N: o->latency_n = strtoull(optarg, NULL, 10); break;
    case OPT_LAT_RATE: o->latency_rate = (unsigned)atoi(optarg); break;
    case OPT_STARTUP: o->startup = true; break;
    case OPT_RUNS: o->runs = (unsigned)atoi(optarg); break;
    case OPT_BIN: o->babelfish = optarg; break;
    case OPT_TMP: o->tmp = optarg; break;
    case OPT_TIMEOUT: o->timeout_s = (unsigned)atoi(optarg); break;
    case OPT_ENFORCE: o->enforce = true; break;
    case OPT_KEEP: o->keep = true; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
  }
  if (optind != argc || o->n == 0 || o->runs == 0 || o->timeout_s == 0 ||
      (o->latency_n && o->latency_rate == 0)) {
    usage(stderr);
    return -1;
  }
  if (!o->babelfish)
    o->babelfish = getenv("BABELFISH");
  if (!o->babelfish) {
    ssize_t n = readlink("/proc/self/exe", self_dir, self_dir_size - 16);
    if (n <= 0) {
      fprintf(stderr, "bench: give --babelfish PATH\n");
      return -1;
    }
    self_dir[n] = '\0';
    char *slash = strrchr(self_dir, '/');
    strcpy(slash, "/../babelfish");
    o->babelfish = self_dir;
  }
  if (!o->tmp)
    o->tmp = getenv("BF_TEST_TMP");
  if (!o->tmp)
    o->tmp = getenv("TMPDIR");
  if (!o->tmp)
    o->tmp = "/tmp";
  mkdir(o->tmp, 0755);
  return 0;
}

int main(int argc, char **argv)
{
  options o;
  bench_env e;
  results r = {0};
  char self_dir[PATH_MAX];
  int rc = 1;

  if (parse_options(argc, argv, &o, self_dir, sizeof(self_dir)) < 0)
    return 2;
  /* the daemon closing its socket must be an error, not a signal */
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);

  if (env_init(&e, &o) < 0 || pin(e.cpu_driver, "bench") < 0)
    goto out;
  printf("babelfish %s\n", o.babelfish);
  print_pinning(&e);

  bool all_pass = true;
  if (o.startup) {
    if (run_startup(&o, &e, &r) < 0)
      goto out;
    printf("startup_ms %.2f\n", r.startup_accept_ms);
    printf("startup_handshake_ms %.2f\n", r.startup_handshake_ms);
    all_pass &= target("startup_ms", r.startup_accept_ms, false,
                       TARGET_STARTUP_MS, 2);
  } else {
    if (run_throughput(&o, &e, &r) < 0)
      goto out;
    printf("stanzas %" PRIu64 "\n", o.n);
    printf("flood_bytes %" PRIu64 "\n", r.flood_bytes);
    printf("flood_seconds %.3f\n", r.flood_s);
    printf("stanzas_per_sec %.0f\n", r.stanzas_per_sec);
    printf("daemon_cpu_percent %.0f\n", r.daemon_cpu_pct);
    printf("driver_cpu_percent %.0f\n", r.driver_cpu_pct);
    printf("expat_parse_only_per_sec %.0f\n", r.expat_per_sec);
    printf("ratio %.2f\n", r.ratio);
    if (o.latency_n) {
      printf("latency_stanzas %" PRIu64 " at %u/s\n", o.latency_n,
             o.latency_rate);
      printf("latency_p50_us %.0f\n", r.lat_p50_us);
      printf("latency_p99_us %.0f\n", r.lat_p99_us);
      printf("latency_max_us %.0f\n", r.lat_max_us);
    }
    printf("idle_rss_kib %ld\n", r.idle_rss_kib);
    printf("idle_rss_anon_kib %ld\n", r.idle_anon_kib);
    printf("peak_rss_kib %ld\n", r.hwm_kib);
    printf("first_start_ms %.2f\n", r.startup_accept_ms);
    printf("pings_answered %" PRIu64 "\n", r.pings);
    printf("other_stanzas %" PRIu64 "\n", r.others);
    all_pass &= target("stanzas_per_sec", r.stanzas_per_sec, true,
                       TARGET_STANZAS_PER_SEC, 0);
    all_pass &= target("ratio", r.ratio, true, TARGET_RATIO, 2);
    all_pass &= target("idle_rss_kib", (double)r.idle_rss_kib, false,
                       TARGET_IDLE_RSS_KIB, 0);
  }
  rc = all_pass || !o.enforce ? 0 : 3;
out:
  if (rc == 1)
    print_log_tail(&e);
  env_close(&e, o.keep || rc == 1);
  return rc;
}
