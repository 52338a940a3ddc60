/* bench-irc: the IRC transport benchmark, babelfish against Debian's
 * biboumi in the same run (tests/bench/README.md, "IRC"; issue 4).
 *
 * For each gateway and each scenario the driver starts the gateway afresh
 * (its own SQLite file in a fresh folder) and plays both of its peers on
 * loopback:
 *   - the XMPP server on a component port (XEP-0114 §3 handshake; XEP-0199
 *     pings answered, which is also what confirms babelfish's durable
 *     outbox);
 *   - an IRC server on another port: many connections, registration
 *     answered at once (001-005, MOTD), JOIN answered with the JOIN echo and
 *     NAMES (353/366) of a made-up member list, PING answered, CAP LS
 *     answered with no capability and CAP REQ refused.
 * Users `uI@localhost/r` join rooms `#chan%127.0.0.1@GW/uI`; a join is done
 * when the self-presence (status 110) comes back. Measured: RSS per
 * connection (VmRSS before and after), join throughput, idle CPU
 * (/proc/PID/stat utime+stime over a quiet period), and for a channel of
 * 50 users the groupchat messages delivered per second and the added
 * latency (the send time travels in the message text).
 *
 * A test tool, not daemon code: one thread, epoll, blocking-style phases.
 * Everything listens on 127.0.0.1 only. */
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
#include <stdarg.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sqlite3.h>

#include "bench-util.h"
#include "xml-scan.h"

extern char **environ;

#define GW_DOMAIN "irc.localhost"
#define USER_DOMAIN "localhost"
#define SECRET "benchsecret"
#define STREAM_ID "bench-irc-1"
/* The IRC server as users name it in room JIDs (resolves to loopback). */
#define IRC_HOST "127.0.0.1"
/* The fake server's own name, as the source of its numerics. */
#define IRC_NAME "irc.bench"
#define SERVER_HEADER                                                       \
  "<?xml version='1.0'?><stream:stream "                                    \
  "xmlns:stream='http://etherx.jabber.org/streams' "                        \
  "xmlns='jabber:component:accept' from='" GW_DOMAIN "' id='" STREAM_ID   \
  "'>"

#define NS_PER_MS 1000000ull
#define RX_CHUNK (256u * 1024)
#define RX_MAX (8u << 20)           /* cap on one element from the gateway */
#define HEADER_MAX 4096u
#define IRC_IN_MAX (64u * 1024)     /* cap on an unterminated IRC line */
#define IRC_OUT_FILL (64u * 1024)   /* flood lines queued per connection */
#define NAMES_LINE 400u             /* bytes of nicks per 353 line */
#define MAX_CHANNELS 32u            /* per user (a bit mask) */

/* Targets (issue 4, README.md). */
#define TARGET_PLAIN_KIB 5.0
#define TARGET_BIG_RATIO (1.0 / 3.0)
#define TARGET_IDLE_CPU 1.0
#define TARGET_IDLE_USERS 4000u
#define TARGET_JOIN_USERS 10000u
#define TARGET_JOIN_S 60.0
#define TARGET_FANOUT_RATE 20000.0
#define TARGET_FANOUT_P99_MS 5.0

enum { GW_BABELFISH, GW_BIBOUMI, N_GW };
static const char *const gw_names[N_GW] = {"babelfish", "biboumi"};

enum { SC_PLAIN, SC_BIG, SC_FANOUT, SC_JOIN, N_SC };
static const char *const sc_names[N_SC] = {"plain", "big", "fanout", "join"};

typedef struct options {
  const char *bin[N_GW];
  const char *tmp;
  bool gw[N_GW];
  bool sc[N_SC];
  unsigned plain_users, plain_members;
  unsigned big_users, big_channels, big_members;
  unsigned fan_users, fan_max_s, fan_inflight;
  uint64_t fan_msgs;
  unsigned lat_lines, lat_rate;
  unsigned join_users, join_max_s;
  unsigned idle_s, window, big_window, timeout_s;
  unsigned long write_queue_max; /* babelfish's; 0 = its default */
  bool keep, enforce;
} options;

/* ---- figures ------------------------------------------------------------- */

typedef struct figure {
  char name[64];
  double v[N_GW];
  bool has[N_GW];
  int decimals;
  bool ratio;                 /* print ratio_NAME (measured, not a count) */
} figure;

static figure figs[96];
static size_t n_figs;

static figure *fig_find(const char *name)
{
  for (size_t i = 0; i < n_figs; i++)
    if (!strcmp(figs[i].name, name))
      return &figs[i];
  return NULL;
}

static void fig_put(int gw, const char *name, double v, int decimals,
                    bool ratio)
{
  figure *f = fig_find(name);
  if (!f) {
    if (n_figs == sizeof figs / sizeof *figs)
      return;
    f = &figs[n_figs++];
    snprintf(f->name, sizeof f->name, "%s", name);
  }
  f->v[gw] = v;
  f->has[gw] = true;
  f->decimals = decimals;
  f->ratio = ratio;
  fprintf(stderr, "bench-irc: %s_%s %.*f\n", gw_names[gw], name, decimals, v);
}

/* A measured figure: babelfish's, biboumi's and their ratio are printed. */
static void fig(int gw, const char *name, double v, int decimals)
{
  fig_put(gw, name, v, decimals, true);
}

/* A count or a setting, printed for each gateway without a ratio. */
static void fig_info(int gw, const char *name, double v, int decimals)
{
  fig_put(gw, name, v, decimals, false);
}

static bool fig_get(int gw, const char *name, double *v)
{
  figure *f = fig_find(name);
  if (!f || !f->has[gw])
    return false;
  *v = f->v[gw];
  return true;
}

/* ---- the run: one gateway, one scenario --------------------------------- */

/* The component connection (the gateway's XMPP side). */
typedef struct comp {
  int fd;
  bench_rx in;                /* the gateway's stream, framed */
  char *tx;
  size_t tx_len, tx_off, tx_cap;
  bool want_out;
} comp;

/* One connection of the gateway to the fake IRC server. */
typedef struct ircc {
  int fd;
  int user;                   /* from the nick "uI"; -1 before NICK */
  bool has_nick, has_user, registered, want_out;
  char nick[32];
  char *in;
  size_t in_len, in_cap;
  char *out;
  size_t out_len, out_off, out_cap;
  uint64_t flood_next, flood_end;  /* flood lines still to generate */
  uint64_t flood_base;        /* the user's deliveries before the flood */
} ircc;

typedef struct run {
  const options *o;
  int gw, sc;
  char dir[PATH_MAX];
  char conf[PATH_MAX + 32], log[PATH_MAX + 32], db[PATH_MAX + 32];
  int comp_listen, irc_listen, ep;
  unsigned comp_port, irc_port;
  int cpu_driver, cpu_daemon;
  pid_t pid;
  bool closing, failed;
  uint64_t alive_check_ns;
  comp c;
  ircc **ircs;
  size_t n_ircs, cap_ircs;
  ircc **by_user;             /* user index -> its IRC connection */

  /* scenario */
  unsigned users, chans, members;
  unsigned window;            /* users with a join in flight; 0 = all */
  uint32_t *mask;             /* channels joined, per user */
  unsigned char *done;        /* 1 joined, 2 refused */
  unsigned joined, refused;
  uint64_t last_join_ns;

  /* counters */
  uint64_t pings, occupant_presences, others, irc_lines_in;
  char first_error[600];

  /* fan-out */
  uint64_t delivered, last_delivery_ns;
  uint64_t *user_delivered;   /* fan-out messages delivered, per user */
  bool lat_on;
  uint64_t *lat;
  size_t lat_n, lat_cap;
} run;

/* epoll tags for the non-IRC-connection descriptors */
static char tag_comp_listen, tag_comp, tag_irc_listen;

static void print_log_tail(const run *r)
{
  FILE *f = fopen(r->log, "r");
  if (!f)
    return;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size > 4096 ? size - 4096 : 0, SEEK_SET);
  char buf[4097];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  if (n)
    fprintf(stderr, "bench-irc: --- tail of %s ---\n%s%s--- end ---\n",
            r->log, buf, buf[n - 1] != '\n' ? "\n" : "");
}

static int listen_loopback(int backlog, unsigned *port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(fd, backlog) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

static int ep_add(run *r, int fd, void *tag, uint32_t events)
{
  struct epoll_event ev = {.events = events, .data.ptr = tag};
  if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    fprintf(stderr, "bench-irc: epoll_ctl: %s\n", strerror(errno));
    return -1;
  }
  return 0;
}

static void ep_mod(run *r, int fd, void *tag, uint32_t events)
{
  struct epoll_event ev = {.events = events, .data.ptr = tag};
  epoll_ctl(r->ep, EPOLL_CTL_MOD, fd, &ev);
}

static int write_config(run *r)
{
  FILE *f = fopen(r->conf, "w");
  if (!f) {
    fprintf(stderr, "bench-irc: %s: %s\n", r->conf, strerror(errno));
    return -1;
  }
  if (r->gw == GW_BABELFISH) {
    snprintf(r->db, sizeof r->db, "%s/babelfish.db", r->dir);
    fprintf(f,
            "[babelfish]\nserver = 127.0.0.1\nport = %u\n"
            "database = %s\nlog_level = warn\n",
            r->comp_port, r->db);
    /* A small write queue makes a join burst congest the XMPP side (the
     * IRC back-pressure check of irc-smoke.sh); max_stanza_size must fit
     * in it. */
    if (r->o->write_queue_max)
      fprintf(f, "write_queue_max = %lu\nmax_stanza_size = %lu\n",
              r->o->write_queue_max, r->o->write_queue_max / 2);
    fprintf(f,
            "[irc]\ntransport = irc\ndomain = " GW_DOMAIN "\n"
            "secret = " SECRET "\nirc_ports = %u\n",
            r->irc_port);
  } else {
    /* biboumi(1): key=value, no spaces. identd off (port 113 needs
     * privileges); TLS policy files looked up beside the config. The IRC
     * port is per user and server, in its database (see
     * biboumi_set_ports). */
    snprintf(r->db, sizeof r->db, "%s/biboumi.sqlite", r->dir);
    fprintf(f,
            "hostname=" GW_DOMAIN "\npassword=" SECRET "\n"
            "xmpp_server_ip=127.0.0.1\nport=%u\ndb_name=%s\n"
            "log_file=%s\nlog_level=2\nidentd_port=0\n"
            "policy_directory=%s\nrealname_customization=true\n"
            "realname_from_jid=false\n",
            r->comp_port, r->db, r->log, r->dir);
  }
  if (fclose(f) != 0) {
    fprintf(stderr, "bench-irc: %s: %s\n", r->conf, strerror(errno));
    return -1;
  }
  return 0;
}

static int run_init(run *r, const options *o, int gw, int sc)
{
  memset(r, 0, sizeof *r);
  r->o = o;
  r->gw = gw;
  r->sc = sc;
  r->comp_listen = r->irc_listen = r->ep = r->c.fd = -1;
  r->pid = -1;
  r->cpu_driver = r->cpu_daemon = -1;
  snprintf(r->dir, sizeof r->dir, "%s/bf-bench-irc-XXXXXX", o->tmp);
  if (!mkdtemp(r->dir)) {
    fprintf(stderr, "bench-irc: mkdtemp %s: %s\n", r->dir, strerror(errno));
    r->dir[0] = '\0';
    return -1;
  }
  snprintf(r->conf, sizeof r->conf, "%s/%s.conf", r->dir, gw_names[gw]);
  snprintf(r->log, sizeof r->log, "%s/%s.log", r->dir, gw_names[gw]);
  r->comp_listen = listen_loopback(8, &r->comp_port);
  r->irc_listen = listen_loopback(4096, &r->irc_port);
  if (r->comp_listen < 0 || r->irc_listen < 0) {
    fprintf(stderr, "bench-irc: listen on 127.0.0.1: %s\n", strerror(errno));
    return -1;
  }
  r->ep = epoll_create1(EPOLL_CLOEXEC);
  if (r->ep < 0 || ep_add(r, r->irc_listen, &tag_irc_listen, EPOLLIN) < 0)
    return -1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2) {
    for (int i = 0; i < CPU_SETSIZE; i++) {
      if (!CPU_ISSET(i, &set))
        continue;
      if (r->cpu_driver < 0)
        r->cpu_driver = i;
      else if (r->cpu_daemon < 0)
        r->cpu_daemon = i;
    }
  }
  return write_config(r);
}

static void ircc_free(ircc *c)
{
  if (!c)
    return;
  if (c->fd >= 0)
    close(c->fd);
  free(c->in);
  free(c->out);
  free(c);
}

static void run_close(run *r)
{
  for (size_t i = 0; i < r->n_ircs; i++)
    ircc_free(r->ircs[i]);
  free(r->ircs);
  free(r->by_user);
  free(r->mask);
  free(r->done);
  free(r->lat);
  free(r->user_delivered);
  free(r->c.in.rx);
  free(r->c.tx);
  if (r->c.fd >= 0)
    close(r->c.fd);
  if (r->comp_listen >= 0)
    close(r->comp_listen);
  if (r->irc_listen >= 0)
    close(r->irc_listen);
  if (r->ep >= 0)
    close(r->ep);
  if (!r->dir[0])
    return;
  if (r->o->keep || r->failed)
    fprintf(stderr, "bench-irc: kept %s\n", r->dir);
  else
    nftw(r->dir, unlink_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- the gateway process ------------------------------------------------- */

static void describe_exit(const run *r, int status)
{
  if (WIFEXITED(status))
    fprintf(stderr, "bench-irc: %s (pid %d) exited with status %d\n",
            gw_names[r->gw], (int)r->pid, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    fprintf(stderr, "bench-irc: %s (pid %d) was killed by signal %d (%s)\n",
            gw_names[r->gw], (int)r->pid, WTERMSIG(status),
            strsignal(WTERMSIG(status)));
}

/* Starts the gateway on its own core, output to the log. */
static int daemon_spawn(run *r)
{
  const char *bin = r->o->bin[r->gw];
  posix_spawn_file_actions_t fa;
  int rc = -1;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, r->log,
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  char *argv_bf[] = {(char *)bin, "-c", r->conf, NULL};
  char *argv_bb[] = {(char *)bin, r->conf, NULL};
  if (pin(r->cpu_daemon, "bench-irc") < 0)
    goto out;
  int err = posix_spawn(&r->pid, bin, &fa, NULL,
                        r->gw == GW_BABELFISH ? argv_bf : argv_bb, environ);
  if (pin(r->cpu_driver, "bench-irc") < 0)
    goto out;
  if (err) {
    r->pid = -1;
    fprintf(stderr, "bench-irc: cannot run %s: %s\n", bin, strerror(err));
    goto out;
  }
  rc = 0;
out:
  posix_spawn_file_actions_destroy(&fa);
  return rc;
}

/* Whether the gateway is still there; a death outside of a stop fails the
 * run. Checked at most every 100 ms. */
static int check_alive(run *r, bool force)
{
  uint64_t now = now_ns();
  if (r->pid <= 0 || (!force && now - r->alive_check_ns < 100 * NS_PER_MS))
    return 0;
  r->alive_check_ns = now;
  int status;
  if (waitpid(r->pid, &status, WNOHANG) != r->pid)
    return 0;
  if (!r->closing) {
    fprintf(stderr, "bench-irc: %s died during the %s scenario\n",
            gw_names[r->gw], sc_names[r->sc]);
    describe_exit(r, status);
    r->pid = -1;
    return -1;
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM) {
    describe_exit(r, status);
    r->pid = -1;
    return -1;
  }
  r->pid = -1;
  return 0;
}

/* ---- component side -------------------------------------------------------- */

static int buf_append(char **buf, size_t *len, size_t *cap, const char *data,
                      size_t n)
{
  if (*len + n > *cap) {
    size_t c = *cap ? *cap * 2 : 4096;
    while (c < *len + n)
      c *= 2;
    char *p = realloc(*buf, c);
    if (!p) {
      fprintf(stderr, "bench-irc: out of memory\n");
      return -1;
    }
    *buf = p;
    *cap = c;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  return 0;
}

static int comp_flush(run *r)
{
  comp *c = &r->c;
  while (c->tx_off < c->tx_len) {
    ssize_t w = write(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      if (r->closing)
        return 0;
      fprintf(stderr, "bench-irc: write to %s: %s\n", gw_names[r->gw],
              strerror(errno));
      return -1;
    }
    c->tx_off += (size_t)w;
  }
  if (c->tx_off == c->tx_len)
    c->tx_off = c->tx_len = 0;
  bool want = c->tx_len > 0;
  if (want != c->want_out) {
    c->want_out = want;
    ep_mod(r, c->fd, &tag_comp, EPOLLIN | (want ? EPOLLOUT : 0));
  }
  return 0;
}

static int comp_send(run *r, const char *data, size_t n)
{
  return buf_append(&r->c.tx, &r->c.tx_len, &r->c.tx_cap, data, n);
}

/* XEP-0199 ping from the gateway: answered from/to swapped, same id. */
static int answer_ping(run *r, const char *tag, size_t tag_len)
{
  const char *id, *from, *to;
  size_t id_len, from_len, to_len;
  char id_q, from_q, to_q;
  if (!tag_attr(tag, tag_len, "id", &id, &id_len, &id_q))
    return 0;
  if (!tag_attr(tag, tag_len, "from", &from, &from_len, &from_q)) {
    from = GW_DOMAIN;
    from_len = strlen(from);
    from_q = '\'';
  }
  if (!tag_attr(tag, tag_len, "to", &to, &to_len, &to_q)) {
    to = USER_DOMAIN;
    to_len = strlen(to);
    to_q = '\'';
  }
  char buf[3 * 1024];
  int n = snprintf(buf, sizeof buf,
                   "<iq type='result' from=%c%.*s%c to=%c%.*s%c id=%c%.*s%c/>",
                   to_q, (int)to_len, to, to_q, from_q, (int)from_len, from,
                   from_q, id_q, (int)id_len, id, id_q);
  if (n < 0 || (size_t)n >= sizeof buf)
    return 0;
  r->pings++;
  return comp_send(r, buf, (size_t)n);
}

static void note_error(run *r, const char *s, size_t n)
{
  if (!r->first_error[0])
    snprintf(r->first_error, sizeof r->first_error, "%.*s",
             (int)(n > 500 ? 500 : n), s);
}

/* The channel index of a room JID: K of "#bigK%127.0.0.1@GW/nick", 0 for
 * the other scenarios' rooms (one channel per user). */
static unsigned channel_index(const char *v, size_t n)
{
  return n > 4 && !memcmp(v, "#big", 4) ? (unsigned)strtoul(v + 4, NULL, 10)
                                        : 0;
}

/* The user index of "uI@localhost/r", or -1. */
static long user_index(const char *v, size_t n)
{
  if (n < 2 || v[0] != 'u' || v[1] < '0' || v[1] > '9')
    return -1;
  return strtol(v + 1, NULL, 10);
}

static void mark_done(run *r, long user, unsigned char how, uint64_t now)
{
  if (user < 0 || (unsigned long)user >= r->users || r->done[user])
    return;
  r->done[user] = how;
  if (how == 1) {
    r->joined++;
    r->last_join_ns = now;
  } else {
    r->refused++;
  }
}

static void on_presence(run *r, const char *s, size_t n, size_t gt,
                        uint64_t now)
{
  const char *type = NULL, *to = NULL, *from = NULL;
  size_t type_len = 0, to_len = 0, from_len = 0;
  char q;
  bool typed = tag_attr(s, gt, "type", &type, &type_len, &q);
  if (!tag_attr(s, gt, "to", &to, &to_len, &q) ||
      !tag_attr(s, gt, "from", &from, &from_len, &q)) {
    r->others++;
    return;
  }
  long user = user_index(to, to_len);
  if (typed && type_len == 5 && !memcmp(type, "error", 5)) {
    note_error(r, s, n);
    mark_done(r, user, 2, now);
    return;
  }
  if (typed) {
    r->others++;
    return;
  }
  if (!memmem(s, n, "code='110'", 10) && !memmem(s, n, "code=\"110\"", 10)) {
    r->occupant_presences++;
    return;
  }
  if (user < 0 || (unsigned long)user >= r->users || !r->mask)
    return;
  unsigned ch = channel_index(from, from_len);
  if (ch >= r->chans)
    return;
  r->mask[user] |= 1u << ch;
  uint32_t full = r->chans >= 32 ? 0xffffffffu : (1u << r->chans) - 1;
  if ((r->mask[user] & full) == full)
    mark_done(r, user, 1, now);
}

/* A groupchat message of the fan-out: body "bench SEQ SENT_NS". */
static void on_message(run *r, const char *s, size_t n, size_t gt,
                       uint64_t now)
{
  if (!attr_equals(s, gt, "type", "groupchat")) {
    if (attr_equals(s, gt, "type", "error"))
      note_error(r, s, n);
    r->others++;
    return;
  }
  const char *body = memmem(s, n, "<body>bench ", 12);
  if (!body) {
    r->others++;
    return;
  }
  char *end;
  const char *p = body + 12;
  (void)strtoull(p, &end, 10);
  uint64_t sent = *end == ' ' ? strtoull(end + 1, NULL, 10) : 0;
  r->delivered++;
  r->last_delivery_ns = now;
  const char *to;
  size_t to_len;
  char q;
  if (tag_attr(s, gt, "to", &to, &to_len, &q)) {
    long u = user_index(to, to_len);
    if (u >= 0 && (unsigned long)u < r->users && r->user_delivered)
      r->user_delivered[u]++;
  }
  if (r->lat_on && sent && sent <= now) {
    if (r->lat_n == r->lat_cap) {
      size_t cap = r->lat_cap ? r->lat_cap * 2 : 4096;
      uint64_t *grown = realloc(r->lat, cap * sizeof *grown);
      if (!grown)
        return;
      r->lat = grown;
      r->lat_cap = cap;
    }
    r->lat[r->lat_n++] = now - sent;
  }
}

static int on_stanza(run *r, const char *s, size_t n, uint64_t now)
{
  size_t gt = tag_end(s, 0, n);
  if (!gt)
    return 0;
  if (element_is(s, n, "presence")) {
    on_presence(r, s, n, gt, now);
    return 0;
  }
  if (element_is(s, n, "message")) {
    on_message(r, s, n, gt, now);
    return 0;
  }
  if (element_is(s, n, "iq")) {
    if (attr_equals(s, gt, "type", "get") && memmem(s, n, "urn:xmpp:ping", 13))
      return answer_ping(r, s, gt);
    r->others++;
    return 0;
  }
  if (element_is(s, n, "stream:error"))
    fprintf(stderr, "bench-irc: stream error from %s: %.*s\n",
            gw_names[r->gw], (int)(n > 2000 ? 2000 : n), s);
  r->others++;
  return 0;
}

static int scan_stanza(void *data, const char *s, size_t n, uint64_t now)
{
  return on_stanza(data, s, n, now);
}

/* Frames the gateway's stream (xml-scan.h). */
static int scan(run *r, uint64_t now)
{
  return bench_rx_scan(&r->c.in, RX_MAX, "bench-irc", scan_stanza, r, now);
}

/* One read into rx: 1 data, 0 EAGAIN, -1 EOF or error. */
static int comp_read(run *r)
{
  comp *c = &r->c;
  if (c->in.rx_cap - c->in.rx_len < RX_CHUNK) {
    size_t cap = c->in.rx_len + RX_CHUNK;
    char *p = realloc(c->in.rx, cap);
    if (!p)
      return -1;
    c->in.rx = p;
    c->in.rx_cap = cap;
  }
  for (;;) {
    ssize_t n = read(c->fd, c->in.rx + c->in.rx_len, c->in.rx_cap - c->in.rx_len);
    if (n > 0) {
      c->in.rx_len += (size_t)n;
      return 1;
    }
    if (n == 0)
      return -1;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    return -1;
  }
}

static void comp_close(run *r)
{
  if (r->c.fd < 0)
    return;
  if (write(r->c.fd, "</stream:stream>", 16) < 0) {
    /* best effort: the gateway may be gone */
  }
  epoll_ctl(r->ep, EPOLL_CTL_DEL, r->c.fd, NULL);
  close(r->c.fd);
  r->c.fd = -1;
}

static int comp_readable(run *r)
{
  for (int i = 0; i < 8 && r->c.fd >= 0; i++) {
    int got = comp_read(r);
    if (got < 0) {
      if (r->closing) {
        comp_close(r);
        return 0;
      }
      fprintf(stderr, "bench-irc: %s closed the component connection\n",
              gw_names[r->gw]);
      return -1;
    }
    if (got == 0)
      break;
    if (scan(r, now_ns()) < 0)
      return -1;
    if (r->c.in.stream_closed) {
      if (r->closing) {
        comp_close(r);
        return 0;
      }
      fprintf(stderr, "bench-irc: %s closed its stream\n", gw_names[r->gw]);
      return -1;
    }
  }
  return r->c.fd >= 0 ? comp_flush(r) : 0;
}

/* Waits for more bytes (handshake phase, before epoll). */
static int rx_wait(run *r, uint64_t deadline, const char *what)
{
  for (;;) {
    int got = comp_read(r);
    if (got > 0)
      return 0;
    if (got < 0) {
      fprintf(stderr, "bench-irc: %s closed the connection before %s\n",
              gw_names[r->gw], what);
      return -1;
    }
    uint64_t now = now_ns();
    if (now >= deadline) {
      fprintf(stderr, "bench-irc: timed out waiting for %s\n", what);
      return -1;
    }
    struct pollfd pfd = {.fd = r->c.fd, .events = POLLIN};
    poll(&pfd, 1, (int)((deadline - now) / NS_PER_MS + 1));
  }
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
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      return -1;
    if (now_ns() >= deadline)
      return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    poll(&pfd, 1, 10);
  }
  return 0;
}

/* Accepts the gateway's component connection and plays the server's side
 * of XEP-0114 §3. biboumi puts an xmlns on <handshake>: any attributes
 * are allowed. */
static int serve_component(run *r)
{
  uint64_t deadline = now_ns() + 15 * NS_PER_S;
  for (;;) {
    struct pollfd pfd = {.fd = r->comp_listen, .events = POLLIN};
    if (poll(&pfd, 1, 20) > 0) {
      r->c.fd = accept4(r->comp_listen, NULL, NULL,
                        SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (r->c.fd >= 0)
        break;
    }
    if (check_alive(r, true) < 0)
      return -1;
    if (now_ns() >= deadline) {
      fprintf(stderr, "bench-irc: %s did not connect within 15 s\n",
              gw_names[r->gw]);
      return -1;
    }
  }
  int one = 1;
  setsockopt(r->c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  comp *c = &r->c;
  size_t header_end = 0;
  for (;;) {
    const char *h = c->in.rx_len ? memmem(c->in.rx, c->in.rx_len, "<stream:stream", 14)
                              : NULL;
    size_t gt = h ? tag_end(c->in.rx, (size_t)(h - c->in.rx), c->in.rx_len) : 0;
    if (gt) {
      size_t hs = (size_t)(h - c->in.rx);
      if (!memmem(h, gt - hs, "jabber:component:accept", 23) ||
          !attr_equals(h, gt - hs + 1, "to", GW_DOMAIN)) {
        fprintf(stderr, "bench-irc: unexpected stream header: %.*s\n",
                (int)(gt - hs + 1), h);
        return -1;
      }
      header_end = gt + 1;
      break;
    }
    if (c->in.rx_len > HEADER_MAX || rx_wait(r, deadline, "the header") < 0)
      return -1;
  }
  if (write_all(c->fd, SERVER_HEADER, strlen(SERVER_HEADER), deadline) < 0)
    return -1;
  const char *end_tag;
  for (;;) {
    end_tag = memmem(c->in.rx + header_end, c->in.rx_len - header_end,
                     "</handshake>", 12);
    if (end_tag)
      break;
    if (c->in.rx_len - header_end > HEADER_MAX ||
        rx_wait(r, deadline, "the handshake") < 0)
      return -1;
  }
  const char *start = memmem(c->in.rx + header_end,
                             (size_t)(end_tag - c->in.rx) - header_end,
                             "<handshake", 10);
  const char *gt = start ? memchr(start, '>', (size_t)(end_tag - start))
                         : NULL;
  char want[41];
  if (handshake_hex(STREAM_ID SECRET, want) < 0)
    return -1;
  if (!gt || end_tag - (gt + 1) != 40 || memcmp(gt + 1, want, 40) != 0) {
    fprintf(stderr, "bench-irc: wrong handshake from %s (want %s)\n",
            gw_names[r->gw], want);
    return -1;
  }
  if (write_all(c->fd, "<handshake/>", 12, deadline) < 0)
    return -1;
  size_t used = (size_t)(end_tag + 12 - c->in.rx);
  memmove(c->in.rx, c->in.rx + used, c->in.rx_len - used);
  c->in.rx_len -= used;
  c->in.rx_pos = 0;
  c->in.depth = 1;
  if (ep_add(r, c->fd, &tag_comp, EPOLLIN) < 0)
    return -1;
  return scan(r, now_ns());
}

/* biboumi takes the ports of an IRC server from each user's settings
 * (ircserveroptions_, the "configure" ad-hoc command on the server's JID;
 * default 6667 plain, 6697 and 6670 TLS). The driver writes those rows
 * before the users arrive, as if each had configured the server: the
 * fake server's port, no TLS port, the other columns at biboumi's
 * defaults (throttle limit 10). The table is created by biboumi at
 * start-up; its columns are read from it, so that a later schema does not
 * break the insert. */
static int biboumi_set_ports(run *r, unsigned users)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *info = NULL, *ins = NULL;
  int rc = -1;
  char cols[1024] = "", vals[1024] = "", sql[sizeof cols + sizeof vals + 64];
  char *kinds = NULL; /* per column: 'o' owner, 's' server, 'p' ports, 't'
                         TLS ports, 'T' text '', 'v' verify, 'h' history,
                         'l' throttle, 'i' other integer */
  int n = 0;
  if (sqlite3_open_v2(r->db, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
    goto out;
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_prepare_v2(db, "PRAGMA table_info(ircserveroptions_)", -1,
                         &info, NULL) != SQLITE_OK)
    goto out;
  kinds = calloc(64, 1);
  if (!kinds)
    goto out;
  while (sqlite3_step(info) == SQLITE_ROW && n < 63) {
    const char *name = (const char *)sqlite3_column_text(info, 1);
    const char *type = (const char *)sqlite3_column_text(info, 2);
    if (!name || !strcmp(name, "id_"))
      continue;
    char k = type && !strncasecmp(type, "INT", 3) ? 'i' : 'T';
    if (!strcmp(name, "owner_"))
      k = 'o';
    else if (!strcmp(name, "server_"))
      k = 's';
    else if (!strcmp(name, "ports_"))
      k = 'p';
    else if (!strcmp(name, "tlsports_"))
      k = 't';
    else if (!strcmp(name, "verifycert_"))
      k = 'v';
    else if (!strcmp(name, "maxhistorylength_"))
      k = 'h';
    else if (!strcmp(name, "throttlelimit_"))
      k = 'l';
    size_t cl = strlen(cols), vl = strlen(vals);
    snprintf(cols + cl, sizeof cols - cl, "%s%s", n ? "," : "", name);
    snprintf(vals + vl, sizeof vals - vl, "%s?", n ? "," : "");
    kinds[n++] = k;
  }
  if (!memchr(kinds, 'o', (size_t)n) || !memchr(kinds, 'p', (size_t)n)) {
    fprintf(stderr, "bench-irc: biboumi's ircserveroptions_ table has no "
                    "owner_/ports_ column\n");
    goto out;
  }
  snprintf(sql, sizeof sql, "INSERT INTO ircserveroptions_ (%s) VALUES (%s)",
           cols, vals);
  if (sqlite3_prepare_v2(db, sql, -1, &ins, NULL) != SQLITE_OK ||
      sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    goto out;
  char port[16];
  snprintf(port, sizeof port, "%u", r->irc_port);
  for (unsigned u = 0; u < users; u++) {
    char owner[64];
    snprintf(owner, sizeof owner, "u%u@" USER_DOMAIN, u);
    for (int i = 0; i < n; i++) {
      switch (kinds[i]) {
      case 'o': sqlite3_bind_text(ins, i + 1, owner, -1, SQLITE_TRANSIENT); break;
      case 's': sqlite3_bind_text(ins, i + 1, IRC_HOST, -1, SQLITE_STATIC); break;
      case 'p': sqlite3_bind_text(ins, i + 1, port, -1, SQLITE_TRANSIENT); break;
      case 'v': sqlite3_bind_int(ins, i + 1, 1); break;
      case 'h': sqlite3_bind_int(ins, i + 1, 20); break;
      case 'l': sqlite3_bind_int(ins, i + 1, 10); break;
      case 'i': sqlite3_bind_int(ins, i + 1, 0); break;
      default: sqlite3_bind_text(ins, i + 1, "", -1, SQLITE_STATIC); break;
      }
    }
    if (sqlite3_step(ins) != SQLITE_DONE)
      goto out;
    sqlite3_reset(ins);
  }
  if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    goto out;
  rc = 0;
out:
  if (rc && db)
    fprintf(stderr, "bench-irc: biboumi's database %s: %s\n", r->db,
            sqlite3_errmsg(db));
  else if (rc)
    fprintf(stderr, "bench-irc: cannot open biboumi's database %s\n", r->db);
  sqlite3_finalize(info);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  free(kinds);
  return rc;
}

/* ---- the fake IRC server ------------------------------------------------ */

static void irc_drop(run *r, ircc *c)
{
  if (c->fd >= 0) {
    epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
  if (c->user >= 0 && (unsigned)c->user < r->users && r->by_user &&
      r->by_user[c->user] == c)
    r->by_user[c->user] = NULL;
}

static int irc_send(ircc *c, const char *data, size_t n)
{
  if (c->fd < 0)
    return 0;
  return buf_append(&c->out, &c->out_len, &c->out_cap, data, n);
}

static int irc_printf(ircc *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int irc_printf(ircc *c, const char *fmt, ...)
{
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 2, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -1;
  if ((size_t)n > sizeof line - 3)
    n = (int)sizeof line - 3;
  line[n++] = '\r';
  line[n++] = '\n';
  return irc_send(c, line, (size_t)n);
}

/* Queues the next flood lines of c: at most fan_inflight lines written to
 * it and not yet delivered to its user (0: no such bound). */
static void flood_fill(run *r, ircc *c)
{
  if (c->flood_next >= c->flood_end || c->fd < 0)
    return;
  uint64_t end = c->flood_end;
  unsigned inflight = r->o->fan_inflight;
  if (inflight && c->user >= 0 && r->user_delivered) {
    uint64_t done = r->user_delivered[c->user] - c->flood_base;
    if (done + inflight < end)
      end = done + inflight;
  }
  uint64_t now = now_ns();
  while (c->flood_next < end && c->out_len - c->out_off < IRC_OUT_FILL) {
    char line[128];
    int n = snprintf(line, sizeof line,
                     ":talker!talker@" IRC_HOST " PRIVMSG #fan :bench %" PRIu64
                     " %" PRIu64 "\r\n",
                     c->flood_next, now);
    if (irc_send(c, line, (size_t)n) < 0)
      return;
    c->flood_next++;
  }
}

static int irc_flush(run *r, ircc *c)
{
  for (;;) {
    flood_fill(r, c);
    if (c->fd < 0 || c->out_off >= c->out_len)
      break;
    ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      irc_drop(r, c); /* the gateway closed it: not our concern here */
      return 0;
    }
    c->out_off += (size_t)w;
    if (c->out_off == c->out_len)
      c->out_off = c->out_len = 0;
  }
  if (c->out_off == c->out_len)
    c->out_off = c->out_len = 0;
  if (c->fd < 0)
    return 0;
  bool want = c->out_len > 0;
  if (want != c->want_out) {
    c->want_out = want;
    ep_mod(r, c->fd, c, EPOLLIN | (want ? EPOLLOUT : 0));
  }
  return 0;
}

/* NAMES of a channel: the joining user, then made-up members; #fan lists
 * its operator "talker" (the sender of the fan-out) and every user of the
 * scenario. */
static int send_names(run *r, ircc *c, const char *chan)
{
  char line[NAMES_LINE + 64];
  size_t len = 0;
  bool fan = !strcmp(chan, "#fan");
  unsigned k = !strncmp(chan, "#big", 4) ? (unsigned)strtoul(chan + 4, NULL, 10)
                                          : 0;
  unsigned count = fan ? r->users + 1 : r->members ? r->members : 1;
  for (unsigned j = 0; j < count; j++) {
    char nick[48];
    if (fan)
      snprintf(nick, sizeof nick, j == 0 ? "@talker" : "u%u", j - 1);
    else if (j == 0)
      snprintf(nick, sizeof nick, "%s", c->nick);
    else /* ~5 % operators, ~10 % voiced, like a busy channel */
      snprintf(nick, sizeof nick, "%smember%u_%03u",
               j % 20 == 0 ? "@" : j % 10 == 5 ? "+" : "", k, j);
    size_t nl = strlen(nick);
    if (len && len + 1 + nl > NAMES_LINE) {
      if (irc_printf(c, ":" IRC_NAME " 353 %s = %s :%.*s", c->nick, chan,
                     (int)len, line) < 0)
        return -1;
      len = 0;
    }
    if (len)
      line[len++] = ' ';
    memcpy(line + len, nick, nl);
    len += nl;
  }
  if (len && irc_printf(c, ":" IRC_NAME " 353 %s = %s :%.*s", c->nick, chan,
                        (int)len, line) < 0)
    return -1;
  return irc_printf(c, ":" IRC_NAME " 366 %s %s :End of /NAMES list.",
                    c->nick, chan);
}

static int maybe_register(ircc *c)
{
  if (c->registered || !c->has_nick || !c->has_user)
    return 0;
  c->registered = true;
  const char *n = c->nick;
  return irc_printf(c, ":" IRC_NAME " 001 %s :Welcome to the Bench IRC "
                       "Network %s!%s@" IRC_HOST, n, n, n) < 0 ||
                 irc_printf(c, ":" IRC_NAME " 002 %s :Your host is "
                               IRC_NAME ", running version bench-1", n) < 0 ||
                 irc_printf(c, ":" IRC_NAME " 003 %s :This server was "
                               "created today", n) < 0 ||
                 irc_printf(c, ":" IRC_NAME " 004 %s " IRC_NAME
                               " bench-1 iosw biklmnopstv", n) < 0 ||
                 irc_printf(c, ":" IRC_NAME " 005 %s CHANTYPES=# "
                               "PREFIX=(ov)@+ CHANMODES=b,k,l,imnpst "
                               "NETWORK=Bench CASEMAPPING=rfc1459 NICKLEN=30 "
                               ":are supported by this server", n) < 0 ||
                 irc_printf(c, ":" IRC_NAME " 375 %s :- " IRC_NAME
                               " Message of the day -", n) < 0 ||
                 irc_printf(c, ":" IRC_NAME " 376 %s :End of /MOTD command.",
                            n) < 0
             ? -1
             : 0;
}

/* One line from a gateway (RFC 1459 framing; tags and source skipped). */
static int irc_line(run *r, ircc *c, char *line)
{
  r->irc_lines_in++;
  char *p = line;
  if (*p == '@') {
    p = strchr(p, ' ');
    if (!p)
      return 0;
    while (*p == ' ')
      p++;
  }
  if (*p == ':') {
    p = strchr(p, ' ');
    if (!p)
      return 0;
    while (*p == ' ')
      p++;
  }
  char *params[16];
  size_t n = 0;
  char *cmd = p;
  p = strchr(p, ' ');
  if (p) {
    *p++ = '\0';
    while (*p && n < 16) {
      while (*p == ' ')
        p++;
      if (!*p)
        break;
      if (*p == ':') {
        params[n++] = p + 1;
        break;
      }
      params[n++] = p;
      p = strchr(p, ' ');
      if (!p)
        break;
      *p++ = '\0';
    }
  }
  if (!strcasecmp(cmd, "CAP")) {
    if (n >= 1 && !strcasecmp(params[0], "LS"))
      return irc_printf(c, ":" IRC_NAME " CAP * LS :");
    if (n >= 2 && !strcasecmp(params[0], "REQ"))
      return irc_printf(c, ":" IRC_NAME " CAP * NAK :%s", params[1]);
    return 0;
  }
  if (!strcasecmp(cmd, "NICK") && n >= 1) {
    snprintf(c->nick, sizeof c->nick, "%s", params[0]);
    c->has_nick = true;
    long u = user_index(c->nick, strlen(c->nick));
    if (u >= 0 && (unsigned long)u < r->users && r->by_user) {
      c->user = (int)u;
      r->by_user[u] = c;
    }
    return maybe_register(c);
  }
  if (!strcasecmp(cmd, "USER")) {
    c->has_user = true;
    return maybe_register(c);
  }
  if (!strcasecmp(cmd, "PING"))
    return irc_printf(c, ":" IRC_NAME " PONG " IRC_NAME " :%s",
                      n ? params[n - 1] : "");
  if (!strcasecmp(cmd, "JOIN") && n >= 1) {
    char *save = NULL;
    for (char *ch = strtok_r(params[0], ",", &save); ch;
         ch = strtok_r(NULL, ",", &save)) {
      if (irc_printf(c, ":%s!%s@" IRC_HOST " JOIN :%s", c->nick, c->nick,
                     ch) < 0 ||
          send_names(r, c, ch) < 0)
        return -1;
    }
    return 0;
  }
  if (!strcasecmp(cmd, "PART") && n >= 1)
    return irc_printf(c, ":%s!%s@" IRC_HOST " PART %s", c->nick, c->nick,
                      params[0]);
  if (!strcasecmp(cmd, "QUIT")) {
    irc_printf(c, "ERROR :Closing Link: " IRC_HOST " (Quit)");
    irc_flush(r, c);
    irc_drop(r, c);
    return 0;
  }
  return 0; /* PRIVMSG, MODE, WHO…: nothing to answer here */
}

static int irc_readable(run *r, ircc *c)
{
  for (int rounds = 0; rounds < 4 && c->fd >= 0; rounds++) {
    if (c->in_cap - c->in_len < 4096) {
      size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
      char *p = realloc(c->in, cap);
      if (!p)
        return -1;
      c->in = p;
      c->in_cap = cap;
    }
    ssize_t got = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                     errno != EINTR)) {
      irc_drop(r, c);
      return 0;
    }
    if (got < 0)
      break;
    c->in_len += (size_t)got;
    size_t start = 0;
    for (;;) {
      char *nl = memchr(c->in + start, '\n', c->in_len - start);
      if (!nl)
        break;
      size_t end = (size_t)(nl - c->in);
      c->in[end] = '\0';
      if (end > start && c->in[end - 1] == '\r')
        c->in[end - 1] = '\0';
      if (irc_line(r, c, c->in + start) < 0)
        return -1;
      if (c->fd < 0)
        return 0;
      start = end + 1;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len > IRC_IN_MAX) {
      fprintf(stderr, "bench-irc: an IRC line over %u bytes\n", IRC_IN_MAX);
      return -1;
    }
  }
  return irc_flush(r, c);
}

static int irc_accept(run *r)
{
  for (;;) {
    int fd = accept4(r->irc_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
          errno == ECONNABORTED)
        return 0;
      fprintf(stderr, "bench-irc: accept: %s\n", strerror(errno));
      return errno == EMFILE || errno == ENFILE ? -1 : 0;
    }
    ircc *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      return -1;
    }
    c->fd = fd;
    c->user = -1;
    if (r->n_ircs == r->cap_ircs) {
      size_t cap = r->cap_ircs ? r->cap_ircs * 2 : 256;
      ircc **grown = realloc(r->ircs, cap * sizeof *grown);
      if (!grown) {
        ircc_free(c);
        return -1;
      }
      r->ircs = grown;
      r->cap_ircs = cap;
    }
    r->ircs[r->n_ircs++] = c;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (ep_add(r, fd, c, EPOLLIN) < 0)
      return -1;
  }
}

/* ---- the loop --------------------------------------------------------------- */

/* One round of I/O, waiting at most until `until` (monotonic ns). */
static int pump(run *r, uint64_t until)
{
  if (check_alive(r, false) < 0)
    return -1;
  struct epoll_event ev[512];
  uint64_t now = now_ns();
  int timeout = until > now ? (int)((until - now + NS_PER_MS - 1) / NS_PER_MS)
                            : 0;
  int n = epoll_wait(r->ep, ev, 512, timeout);
  if (n < 0) {
    if (errno == EINTR)
      return 0;
    fprintf(stderr, "bench-irc: epoll_wait: %s\n", strerror(errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    void *tag = ev[i].data.ptr;
    uint32_t e = ev[i].events;
    if (tag == &tag_irc_listen) {
      if (irc_accept(r) < 0)
        return -1;
    } else if (tag == &tag_comp) {
      if (r->c.fd < 0)
        continue;
      if ((e & EPOLLOUT) && comp_flush(r) < 0)
        return -1;
      if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && comp_readable(r) < 0)
        return -1;
    } else if (tag != &tag_comp_listen) {
      ircc *c = tag;
      if (c->fd < 0)
        continue;
      if ((e & EPOLLOUT) && irc_flush(r, c) < 0)
        return -1;
      if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->fd >= 0 &&
          irc_readable(r, c) < 0)
        return -1;
    }
  }
  if (r->c.fd >= 0 && r->c.tx_len > r->c.tx_off && comp_flush(r) < 0)
    return -1;
  return 0;
}

static int pump_for(run *r, uint64_t ns)
{
  uint64_t end = now_ns() + ns;
  while (now_ns() < end)
    if (pump(r, end) < 0)
      return -1;
  return 0;
}

/* SIGTERM, then what a server does: answer the stream's close, answer the
 * IRC QUITs, until the gateway exits (5 s, then SIGKILL). A crash on the
 * way out is a failure. */
static int daemon_stop(run *r)
{
  if (r->pid <= 0)
    return 0;
  r->closing = true;
  kill(r->pid, SIGTERM);
  uint64_t deadline = now_ns() + 5 * NS_PER_S;
  while (r->pid > 0 && now_ns() < deadline) {
    if (pump(r, now_ns() + 20 * NS_PER_MS) < 0)
      return -1;
    if (check_alive(r, true) < 0)
      return -1;
  }
  if (r->pid > 0) {
    fprintf(stderr, "bench-irc: warning: %s did not exit within 5 s of "
                    "SIGTERM; killing it\n", gw_names[r->gw]);
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = -1;
  }
  return 0;
}

/* ---- workloads -------------------------------------------------------------- */

static int scenario_alloc(run *r, unsigned users, unsigned chans,
                          unsigned members)
{
  r->users = users;
  r->chans = chans;
  r->window = r->sc == SC_BIG ? r->o->big_window : r->o->window;
  r->members = members;
  r->mask = calloc(users, sizeof *r->mask);
  r->done = calloc(users, 1);
  r->by_user = calloc(users, sizeof *r->by_user);
  r->user_delivered = calloc(users, sizeof *r->user_delivered);
  if (!r->mask || !r->done || !r->by_user || !r->user_delivered) {
    fprintf(stderr, "bench-irc: out of memory\n");
    return -1;
  }
  return 0;
}

static void channel_name(const run *r, unsigned user, unsigned k, char *out,
                         size_t size)
{
  if (r->sc == SC_BIG)
    snprintf(out, size, "#big%u", k);
  else if (r->sc == SC_FANOUT)
    snprintf(out, size, "#fan");
  else
    snprintf(out, size, "#p%u", user);
}

static int send_join(run *r, unsigned user)
{
  for (unsigned k = 0; k < r->chans; k++) {
    char chan[32], buf[512];
    channel_name(r, user, k, chan, sizeof chan);
    int n = snprintf(buf, sizeof buf,
                     "<presence from='u%u@" USER_DOMAIN "/r' to='%s%%" IRC_HOST
                     "@" GW_DOMAIN "/u%u'><x xmlns='http://jabber.org/"
                     "protocol/muc'/></presence>",
                     user, chan, user);
    if (comp_send(r, buf, (size_t)n) < 0)
      return -1;
  }
  return 0;
}

/* Joins users 0..users-1 (r->chans channels each), at most window users
 * in flight. 0 when every join ended (joined or refused), 1 when joins
 * stopped progressing for timeout_s or max_s passed, -1 on failure.
 * *seconds: first presence sent -> last self-presence read. */
static int join_all(run *r, unsigned max_s, double *seconds)
{
  const options *o = r->o;
  uint64_t t0 = now_ns(), progress = t0;
  unsigned sent = 0, seen = 0;
  int rc = 0;
  while (r->joined + r->refused < r->users) {
    while (sent < r->users &&
           (r->window == 0 || sent - (r->joined + r->refused) < r->window)) {
      if (send_join(r, sent++) < 0)
        return -1;
    }
    if (comp_flush(r) < 0 || pump(r, now_ns() + 100 * NS_PER_MS) < 0)
      return -1;
    uint64_t now = now_ns();
    if (r->joined + r->refused != seen) {
      seen = r->joined + r->refused;
      progress = now;
    } else if (now - progress > (uint64_t)o->timeout_s * NS_PER_S) {
      fprintf(stderr, "bench-irc: %s: joins stalled for %u s at %u of %u\n",
              gw_names[r->gw], o->timeout_s, r->joined, r->users);
      rc = 1;
      break;
    }
    if (max_s && now - t0 > (uint64_t)max_s * NS_PER_S) {
      fprintf(stderr, "bench-irc: %s: %u of %u joined after %u s; "
                      "stopping\n", gw_names[r->gw], r->joined, r->users,
              max_s);
      rc = 1;
      break;
    }
  }
  uint64_t last = r->last_join_ns ? r->last_join_ns : now_ns();
  *seconds = (double)(last - t0) / 1e9;
  if (r->refused)
    fprintf(stderr, "bench-irc: %s: %u joins refused, the first: %s\n",
            gw_names[r->gw], r->refused, r->first_error);
  return rc;
}

/* Settles (answering pings) and reads VmRSS in KiB. */
static long settle_rss(run *r, unsigned ms)
{
  if (pump_for(r, (uint64_t)ms * NS_PER_MS) < 0)
    return -1;
  return proc_status_kib(r->pid, "VmRSS");
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, size_t n, unsigned pct)
{
  if (!n)
    return -1;
  size_t at = (n * pct + 99) / 100;
  return (double)v[at ? at - 1 : 0] / 1e6;
}

/* The members of #fan, all registered and joined. */
static int fan_conns(run *r, ircc ***out)
{
  ircc **v = calloc(r->users, sizeof *v);
  if (!v)
    return -1;
  for (unsigned u = 0; u < r->users; u++) {
    v[u] = r->by_user[u];
    if (!v[u] || v[u]->fd < 0) {
      fprintf(stderr, "bench-irc: user %u has no IRC connection\n", u);
      free(v);
      return -1;
    }
  }
  *out = v;
  return 0;
}

/* The paced run: lat_lines PRIVMSGs at lat_rate per second to every
 * member, each stamped when written; every delivery is a sample. */
static int fanout_latency(run *r, ircc **v)
{
  const options *o = r->o;
  uint64_t want = (uint64_t)o->lat_lines * r->users;
  uint64_t base = r->delivered;
  r->lat_on = true;
  r->lat_n = 0;
  uint64_t t0 = now_ns();
  for (unsigned k = 0; k < o->lat_lines; k++) {
    uint64_t due = t0 + (uint64_t)k * NS_PER_S / o->lat_rate;
    while (now_ns() < due)
      if (pump(r, due) < 0)
        return -1;
    uint64_t now = now_ns();
    char line[128];
    int n = snprintf(line, sizeof line,
                     ":talker!talker@" IRC_HOST " PRIVMSG #fan :bench %u %"
                     PRIu64 "\r\n", k, now);
    for (unsigned u = 0; u < r->users; u++)
      if (irc_send(v[u], line, (size_t)n) < 0 || irc_flush(r, v[u]) < 0)
        return -1;
  }
  uint64_t progress = now_ns(), seen = r->delivered;
  while (r->delivered - base < want) {
    if (pump(r, now_ns() + 100 * NS_PER_MS) < 0)
      return -1;
    if (r->delivered != seen) {
      seen = r->delivered;
      progress = now_ns();
    } else if (now_ns() - progress > (uint64_t)o->timeout_s * NS_PER_S) {
      fprintf(stderr, "bench-irc: %s: paced run stalled at %" PRIu64
                      " of %" PRIu64 "\n", gw_names[r->gw],
              r->delivered - base, want);
      break;
    }
  }
  r->lat_on = false;
  qsort(r->lat, r->lat_n, sizeof *r->lat, cmp_u64);
  fig_info(r->gw, "fanout_paced_stanzas_per_sec",
      (double)o->lat_rate * r->users, 0);
  fig(r->gw, "fanout_p50_ms", pct_ms(r->lat, r->lat_n, 50), 2);
  fig(r->gw, "fanout_p99_ms", pct_ms(r->lat, r->lat_n, 99), 2);
  fig(r->gw, "fanout_max_ms", pct_ms(r->lat, r->lat_n, 100), 2);
  if (r->lat_n < want)
    fig_info(r->gw, "fanout_paced_lost", (double)(want - r->lat_n), 0);
  return 0;
}

/* The flood: fan_msgs PRIVMSGs written to every member as fast as the
 * gateway reads them; groupchat messages counted on the component. */
static int fanout_flood(run *r, ircc **v)
{
  const options *o = r->o;
  uint64_t want = o->fan_msgs * r->users, base = r->delivered;
  double cpu0 = proc_cpu_s(r->pid), self0 = self_cpu_s();
  uint64_t t0 = now_ns();
  for (unsigned u = 0; u < r->users; u++) {
    v[u]->flood_next = 0;
    v[u]->flood_end = o->fan_msgs;
    v[u]->flood_base = r->user_delivered[u];
    if (irc_flush(r, v[u]) < 0)
      return -1;
  }
  uint64_t progress = t0, seen = base;
  bool capped = false;
  while (r->delivered - base < want) {
    if (pump(r, now_ns() + 100 * NS_PER_MS) < 0)
      return -1;
    for (unsigned u = 0; u < r->users; u++) /* deliveries open the window */
      if (v[u]->flood_next < v[u]->flood_end && irc_flush(r, v[u]) < 0)
        return -1;
    uint64_t now = now_ns();
    if (r->delivered != seen) {
      seen = r->delivered;
      progress = now;
    } else if (now - progress > (uint64_t)o->timeout_s * NS_PER_S) {
      fprintf(stderr, "bench-irc: %s: flood stalled at %" PRIu64 " of %"
                      PRIu64 "\n", gw_names[r->gw], r->delivered - base, want);
      capped = true;
      break;
    }
    if (o->fan_max_s && now - t0 > (uint64_t)o->fan_max_s * NS_PER_S) {
      fprintf(stderr, "bench-irc: %s: %" PRIu64 " of %" PRIu64 " delivered "
                      "after %u s; stopping the flood there\n",
              gw_names[r->gw], r->delivered - base, want, o->fan_max_s);
      capped = true;
      break;
    }
  }
  uint64_t got = r->delivered - base;
  double secs = (double)((capped ? now_ns() : r->last_delivery_ns) - t0) / 1e9;
  double cpu1 = proc_cpu_s(r->pid), self1 = self_cpu_s();
  for (unsigned u = 0; u < r->users; u++)
    v[u]->flood_end = v[u]->flood_next; /* stop generating */
  fig_info(r->gw, "fanout_delivered", (double)got, 0);
  fig(r->gw, "fanout_seconds", secs, 2);
  fig(r->gw, "fanout_msgs_per_sec", secs > 0 ? (double)got / secs : 0, 0);
  fig(r->gw, "fanout_irc_lines_per_sec",
      secs > 0 ? (double)got / secs / r->users : 0, 0);
  fig_info(r->gw, "fanout_complete", capped ? 0 : 1, 0);
  if (cpu0 >= 0 && cpu1 >= 0 && secs > 0)
    fig(r->gw, "fanout_cpu_percent", (cpu1 - cpu0) / secs * 100, 0);
  if (secs > 0)
    fig_info(r->gw, "fanout_driver_cpu_percent", (self1 - self0) / secs * 100, 0);
  return 0;
}

static int scenario_body(run *r)
{
  const options *o = r->o;
  double join_s = 0;
  int jr;
  long before = settle_rss(r, 1000);
  if (before < 0)
    return -1;
  switch (r->sc) {
  case SC_PLAIN: {
    jr = join_all(r, 0, &join_s);
    if (jr < 0)
      return -1;
    long after = settle_rss(r, 2000);
    if (after < 0)
      return -1;
    unsigned n = r->joined ? r->joined : 1;
    fig_info(r->gw, "plain_users", r->users, 0);
    fig_info(r->gw, "plain_joined", r->joined, 0);
    fig(r->gw, "plain_join_s", join_s, 2);
    fig(r->gw, "plain_join_per_sec", join_s > 0 ? r->joined / join_s : 0, 0);
    fig_info(r->gw, "plain_rss_before_kib", before, 0);
    fig(r->gw, "plain_rss_after_kib", after, 0);
    fig(r->gw, "plain_rss_per_conn_kib", (double)(after - before) / n, 2);
    /* idle: nothing happens but the gateway's own timers and pings */
    double cpu0 = proc_cpu_s(r->pid);
    uint64_t lines0 = r->irc_lines_in, t0 = now_ns();
    if (pump_for(r, (uint64_t)o->idle_s * NS_PER_S) < 0)
      return -1;
    double wall = (double)(now_ns() - t0) / 1e9, cpu1 = proc_cpu_s(r->pid);
    fig(r->gw, "idle_cpu_percent", (cpu1 - cpu0) / wall * 100, 2);
    fig_info(r->gw, "idle_irc_lines", (double)(r->irc_lines_in - lines0), 0);
    break;
  }
  case SC_BIG: {
    jr = join_all(r, 0, &join_s);
    if (jr < 0)
      return -1;
    long after = settle_rss(r, 2000);
    if (after < 0)
      return -1;
    unsigned n = r->joined ? r->joined : 1;
    fig_info(r->gw, "big_users", r->users, 0);
    fig_info(r->gw, "big_joined", r->joined, 0);
    fig(r->gw, "big_join_s", join_s, 2);
    fig(r->gw, "big_join_per_sec", join_s > 0 ? r->joined / join_s : 0, 0);
    fig(r->gw, "big_rss_after_kib", after, 0);
    fig(r->gw, "big_rss_per_user_kib", (double)(after - before) / n, 1);
    fig_info(r->gw, "big_occupant_presences", (double)r->occupant_presences, 0);
    break;
  }
  case SC_FANOUT: {
    jr = join_all(r, 0, &join_s);
    if (jr != 0 || r->joined != r->users) {
      fprintf(stderr, "bench-irc: %s: only %u of %u users in #fan\n",
              gw_names[r->gw], r->joined, r->users);
      return -1;
    }
    ircc **v;
    if (pump_for(r, 500 * NS_PER_MS) < 0 || fan_conns(r, &v) < 0)
      return -1;
    int rc = (o->lat_lines ? fanout_latency(r, v) : 0) < 0 ||
                     (o->fan_msgs ? fanout_flood(r, v) : 0) < 0
                 ? -1
                 : 0;
    free(v);
    if (rc < 0)
      return -1;
    fig_info(r->gw, "fanout_users", r->users, 0);
    fig(r->gw, "fanout_rss_kib", proc_status_kib(r->pid, "VmRSS"), 0);
    break;
  }
  case SC_JOIN: {
    jr = join_all(r, o->join_max_s, &join_s);
    if (jr < 0)
      return -1;
    fig_info(r->gw, "join_users", r->users, 0);
    fig_info(r->gw, "join_joined", r->joined, 0);
    fig(r->gw, "join_s", join_s, 2);
    fig(r->gw, "join_per_sec", join_s > 0 ? r->joined / join_s : 0, 0);
    fig(r->gw, "join_rss_after_kib", proc_status_kib(r->pid, "VmRSS"), 0);
    break;
  }
  }
  return 0;
}

/* One gateway, one scenario, from spawn to exit. 0 ok, -1 failure. */
static int run_scenario(const options *o, int gw, int sc)
{
  run r;
  int rc = -1;
  unsigned users = 0, chans = 1, members = 1;
  switch (sc) {
  case SC_PLAIN: users = o->plain_users; members = o->plain_members; break;
  case SC_BIG:
    users = o->big_users;
    chans = o->big_channels;
    members = o->big_members;
    break;
  case SC_FANOUT: users = o->fan_users; members = o->fan_users + 1; break;
  case SC_JOIN: users = o->join_users; break;
  }
  fprintf(stderr, "bench-irc: %s, %s: %u users\n", gw_names[gw], sc_names[sc],
          users);
  if (run_init(&r, o, gw, sc) < 0 ||
      scenario_alloc(&r, users, chans, members) < 0 || daemon_spawn(&r) < 0 ||
      serve_component(&r) < 0)
    goto out;
  if (gw == GW_BIBOUMI && biboumi_set_ports(&r, users) < 0)
    goto out;
  if (scenario_body(&r) < 0)
    goto out;
  rc = 0;
out:
  if (daemon_stop(&r) < 0)
    rc = -1;
  if (rc < 0) {
    r.failed = true;
    print_log_tail(&r);
  }
  run_close(&r);
  return rc;
}

/* ---- main ---------------------------------------------------------------- */

static bool target(const char *name, double value, bool at_least, double want,
                   int decimals, const char *note)
{
  bool pass = at_least ? value >= want : value <= want;
  printf("target %s %.*f %s %.*f %s%s%s\n", name, decimals, value,
         at_least ? ">=" : "<=", decimals, want, pass ? "PASS" : "MISS",
         note ? " " : "", note ? note : "");
  return pass;
}

static void usage(FILE *f)
{
  fprintf(f,
      "usage: bench-irc [options]\n"
      "  --gateways LIST       babelfish,biboumi (default both; biboumi is\n"
      "                        skipped when its binary is missing)\n"
      "  --scenarios LIST      plain,big,fanout,join (default all)\n"
      "  --plain-users N       plain: users, 1 channel each (default 4000)\n"
      "  --plain-members N     plain: members of each channel (default 1)\n"
      "  --big-users N         big: users (default 200)\n"
      "  --big-channels N      big: channels per user (default 5)\n"
      "  --big-members N       big: members per channel (default 200)\n"
      "  --fanout-users N      fanout: users in #fan (default 50)\n"
      "  --fanout-msgs N       fanout: IRC messages in the flood (default "
      "10000)\n"
      "  --fanout-max-s S      fanout: stop the flood after S s (default 60)\n"
      "  --fanout-inflight N   fanout: flood lines written to a connection\n"
      "                        and not yet delivered, at most (default 200,\n"
      "                        0 = write as fast as the gateway reads)\n"
      "  --latency-lines N     fanout: paced messages (default 200, 0 = "
      "skip)\n"
      "  --latency-rate R      fanout: paced messages/s (default 10)\n"
      "  --join-users N        join: users joining (default 10000)\n"
      "  --join-max-s S        join: give up after S s (default 90)\n"
      "  --idle-s S            plain: idle CPU period (default 10)\n"
      "  --window N            users with a join in flight (default 500, 0 = "
      "all)\n"
      "  --big-window N        the same in the big scenario (default 10)\n"
      "  --write-queue-max B   babelfish's write_queue_max (default its own, "
      "8M)\n"
      "  --timeout S           no progress for S s = stalled (default 30)\n"
      "  --babelfish PATH      default $BABELFISH, else ../babelfish beside "
      "this program\n"
      "  --biboumi PATH        default $BIBOUMI, else /usr/bin/biboumi\n"
      "  --tmp DIR             parent of the work folders (default "
      "$BF_TEST_TMP, $TMPDIR, /tmp)\n"
      "  --enforce             exit 3 when a target is missed\n"
      "  --keep                keep the work folders\n"
      "exit: 0 ok, 1 babelfish failed, 2 usage, 3 target missed "
      "(--enforce)\n");
}

static bool parse_list(const char *arg, const char *const *names, size_t n,
                       bool *out)
{
  char *copy = strdup(arg), *save = NULL;
  bool ok = copy != NULL;
  memset(out, 0, n * sizeof *out);
  for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && ok;
       t = strtok_r(NULL, ",", &save)) {
    size_t i = 0;
    while (i < n && strcmp(t, names[i]) != 0)
      i++;
    if (i == n) {
      fprintf(stderr, "bench-irc: unknown name '%s'\n", t);
      ok = false;
    } else {
      out[i] = true;
    }
  }
  free(copy);
  return ok;
}

static unsigned uarg(const char *s) { return (unsigned)strtoul(s, NULL, 10); }

static int parse_options(int argc, char **argv, options *o, char *self,
                         size_t self_size)
{
  enum { O_GW = 256, O_SC, O_PU, O_PM, O_BU, O_BC, O_BM, O_FU, O_FM, O_FMAX, O_FIN,
         O_LL, O_LR, O_JU, O_JMAX, O_IDLE, O_WIN, O_BWIN, O_TO, O_BF, O_BB, O_TMP,
         O_ENF, O_KEEP, O_WQ };
  static const struct option longs[] = {
      {"gateways", required_argument, NULL, O_GW},
      {"scenarios", required_argument, NULL, O_SC},
      {"plain-users", required_argument, NULL, O_PU},
      {"plain-members", required_argument, NULL, O_PM},
      {"big-users", required_argument, NULL, O_BU},
      {"big-channels", required_argument, NULL, O_BC},
      {"big-members", required_argument, NULL, O_BM},
      {"fanout-users", required_argument, NULL, O_FU},
      {"fanout-msgs", required_argument, NULL, O_FM},
      {"fanout-max-s", required_argument, NULL, O_FMAX},
      {"fanout-inflight", required_argument, NULL, O_FIN},
      {"latency-lines", required_argument, NULL, O_LL},
      {"latency-rate", required_argument, NULL, O_LR},
      {"join-users", required_argument, NULL, O_JU},
      {"join-max-s", required_argument, NULL, O_JMAX},
      {"idle-s", required_argument, NULL, O_IDLE},
      {"window", required_argument, NULL, O_WIN},
      {"big-window", required_argument, NULL, O_BWIN},
      {"write-queue-max", required_argument, NULL, O_WQ},
      {"timeout", required_argument, NULL, O_TO},
      {"babelfish", required_argument, NULL, O_BF},
      {"biboumi", required_argument, NULL, O_BB},
      {"tmp", required_argument, NULL, O_TMP},
      {"enforce", no_argument, NULL, O_ENF},
      {"keep", no_argument, NULL, O_KEEP},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  *o = (options){.gw = {true, true}, .sc = {true, true, true, true},
                 .plain_users = 4000, .plain_members = 1, .big_users = 200,
                 .big_channels = 5, .big_members = 200, .fan_users = 50,
                 .fan_msgs = 10000, .fan_max_s = 60, .fan_inflight = 200,
                 .lat_lines = 200, .lat_rate = 10, .join_users = 10000, .join_max_s = 90,
                 .idle_s = 10, .window = 500, .big_window = 10,
                 .timeout_s = 30};
  int opt;
  while ((opt = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    switch (opt) {
    case O_GW:
      if (!parse_list(optarg, gw_names, N_GW, o->gw))
        return -1;
      break;
    case O_SC:
      if (!parse_list(optarg, sc_names, N_SC, o->sc))
        return -1;
      break;
    case O_PU: o->plain_users = uarg(optarg); break;
    case O_PM: o->plain_members = uarg(optarg); break;
    case O_BU: o->big_users = uarg(optarg); break;
    case O_BC: o->big_channels = uarg(optarg); break;
    case O_BM: o->big_members = uarg(optarg); break;
    case O_FU: o->fan_users = uarg(optarg); break;
    case O_FM: o->fan_msgs = strtoull(optarg, NULL, 10); break;
    case O_FMAX: o->fan_max_s = uarg(optarg); break;
    case O_FIN: o->fan_inflight = uarg(optarg); break;
    case O_LL: o->lat_lines = uarg(optarg); break;
    case O_LR: o->lat_rate = uarg(optarg); break;
    case O_JU: o->join_users = uarg(optarg); break;
    case O_JMAX: o->join_max_s = uarg(optarg); break;
    case O_IDLE: o->idle_s = uarg(optarg); break;
    case O_WIN: o->window = uarg(optarg); break;
    case O_BWIN: o->big_window = uarg(optarg); break;
    case O_WQ: o->write_queue_max = uarg(optarg); break;
    case O_TO: o->timeout_s = uarg(optarg); break;
    case O_BF: o->bin[GW_BABELFISH] = optarg; break;
    case O_BB: o->bin[GW_BIBOUMI] = optarg; break;
    case O_TMP: o->tmp = optarg; break;
    case O_ENF: o->enforce = true; break;
    case O_KEEP: o->keep = true; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
  }
  if (optind != argc || !o->plain_users || !o->big_users ||
      !o->big_channels || o->big_channels > MAX_CHANNELS || !o->fan_users ||
      !o->join_users || !o->timeout_s || !o->idle_s ||
      (o->lat_lines && !o->lat_rate)) {
    usage(stderr);
    return -1;
  }
  if (!o->bin[GW_BABELFISH])
    o->bin[GW_BABELFISH] = getenv("BABELFISH");
  if (!o->bin[GW_BABELFISH]) {
    ssize_t n = readlink("/proc/self/exe", self, self_size - 16);
    if (n <= 0) {
      fprintf(stderr, "bench-irc: give --babelfish PATH\n");
      return -1;
    }
    self[n] = '\0';
    strcpy(strrchr(self, '/'), "/../babelfish");
    o->bin[GW_BABELFISH] = self;
  }
  if (!o->bin[GW_BIBOUMI])
    o->bin[GW_BIBOUMI] = getenv("BIBOUMI");
  if (!o->bin[GW_BIBOUMI])
    o->bin[GW_BIBOUMI] = "/usr/bin/biboumi";
  if (!o->tmp)
    o->tmp = getenv("BF_TEST_TMP");
  if (!o->tmp)
    o->tmp = getenv("TMPDIR");
  if (!o->tmp)
    o->tmp = "/tmp";
  mkdir(o->tmp, 0755);
  /* absolute: the gateways take relative paths in their configs from
   * the config's folder */
  static char tmp_abs[PATH_MAX];
  if (!realpath(o->tmp, tmp_abs)) {
    fprintf(stderr, "bench-irc: %s: %s\n", o->tmp, strerror(errno));
    return -1;
  }
  o->tmp = tmp_abs;
  return 0;
}

static void print_figures(void)
{
  for (size_t i = 0; i < n_figs; i++) {
    const figure *f = &figs[i];
    for (int g = 0; g < N_GW; g++)
      if (f->has[g])
        printf("%s_%s %.*f\n", gw_names[g], f->name, f->decimals, f->v[g]);
    if (f->ratio && f->has[GW_BABELFISH] && f->has[GW_BIBOUMI] &&
        f->v[GW_BIBOUMI] != 0)
      printf("ratio_%s %.3f\n", f->name,
             f->v[GW_BABELFISH] / f->v[GW_BIBOUMI]);
  }
}

static bool print_targets(const options *o)
{
  bool pass = true;
  double v, b;
  char note[128];
  if (fig_get(GW_BABELFISH, "plain_rss_per_conn_kib", &v))
    pass &= target("plain_rss_per_conn_kib", v, false, TARGET_PLAIN_KIB, 2,
                   o->plain_members == 1 ? NULL : "(members > 1)");
  if (fig_get(GW_BABELFISH, "big_rss_per_user_kib", &v)) {
    if (fig_get(GW_BIBOUMI, "big_rss_per_user_kib", &b) && b > 0)
      pass &= target("big_rss_ratio_to_biboumi", v / b, false,
                     TARGET_BIG_RATIO, 3, NULL);
    else
      printf("target big_rss_ratio_to_biboumi n/a (no biboumi figure)\n");
  }
  if (fig_get(GW_BABELFISH, "idle_cpu_percent", &v)) {
    snprintf(note, sizeof note, "(at %u users; the target is at %u)",
             o->plain_users, TARGET_IDLE_USERS);
    pass &= target("idle_cpu_percent", v, false, TARGET_IDLE_CPU, 2,
                   o->plain_users == TARGET_IDLE_USERS ? NULL : note);
  }
  if (fig_get(GW_BABELFISH, "join_s", &v)) {
    double joined = 0;
    fig_get(GW_BABELFISH, "join_joined", &joined);
    snprintf(note, sizeof note, "(%.0f of %u joined; the target is for %u)",
             joined, o->join_users, TARGET_JOIN_USERS);
    if (joined < o->join_users)
      v = 1e9; /* not all joined: a miss whatever the time */
    pass &= target("join_s", v, false, TARGET_JOIN_S, 2,
                   joined < o->join_users ||
                           o->join_users != TARGET_JOIN_USERS
                       ? note
                       : NULL);
  }
  if (fig_get(GW_BABELFISH, "fanout_msgs_per_sec", &v))
    pass &= target("fanout_msgs_per_sec", v, true, TARGET_FANOUT_RATE, 0,
                   NULL);
  if (fig_get(GW_BABELFISH, "fanout_p99_ms", &v))
    pass &= target("fanout_p99_ms", v, false, TARGET_FANOUT_P99_MS, 2, NULL);
  return pass;
}

int main(int argc, char **argv)
{
  options o;
  char self[PATH_MAX];
  if (parse_options(argc, argv, &o, self, sizeof self) < 0)
    return 2;
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Every IRC connection is a descriptor here and in the gateway. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  unsigned most = o.plain_users;
  if (o.sc[SC_JOIN] && o.join_users > most)
    most = o.join_users;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < most + 64)
    fprintf(stderr, "bench-irc: warning: %llu descriptors allowed, %u users "
                    "need more (ulimit -n)\n",
            (unsigned long long)rl.rlim_cur, most);
  if (o.gw[GW_BIBOUMI] && access(o.bin[GW_BIBOUMI], X_OK) != 0) {
    fprintf(stderr, "bench-irc: %s: %s; biboumi skipped\n",
            o.bin[GW_BIBOUMI], strerror(errno));
    printf("biboumi_status unavailable (%s not found)\n", o.bin[GW_BIBOUMI]);
    o.gw[GW_BIBOUMI] = false;
  }
  printf("babelfish %s\n", o.gw[GW_BABELFISH] ? o.bin[GW_BABELFISH] : "-");
  printf("biboumi %s\n", o.gw[GW_BIBOUMI] ? o.bin[GW_BIBOUMI] : "-");

  /* the driver on the first core, each gateway on the second */
  int rc = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2) {
    int first = -1;
    for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
      if (CPU_ISSET(i, &set))
        first = i;
    if (pin(first, "bench-irc") < 0)
      return 1;
    printf("pinning driver_cpu %d, gateway on another core\n", first);
  } else {
    printf("pinning none (fewer than 2 cores available)\n");
  }

  bool biboumi_failed = false;
  for (int sc = 0; sc < N_SC && rc == 0; sc++) {
    if (!o.sc[sc])
      continue;
    for (int gw = 0; gw < N_GW; gw++) {
      if (!o.gw[gw] || (gw == GW_BIBOUMI && biboumi_failed))
        continue;
      if (run_scenario(&o, gw, sc) < 0) {
        if (gw == GW_BABELFISH) {
          rc = 1;
          break;
        }
        printf("biboumi_status failed in the %s scenario (see above)\n",
               sc_names[sc]);
        biboumi_failed = true;
      }
    }
  }
  print_figures();
  if (rc)
    return rc;
  bool pass = print_targets(&o);
  return pass || !o.enforce ? 0 : 3;
}
