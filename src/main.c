/* babelfish — the daemon: command line, start-up, signals, shutdown. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "conf.h"
#include "gateway.h"
#include "http.h"
#include "httpd.h"
#include "log.h"
#include "module.h"
#include "store.h"
#include "util.h"

#define DEFAULT_CONFIG "/etc/babelfish/babelfish.conf"
/* SPEC: SIGTERM/SIGINT stop within 5 s; keep a margin. */
#define STOP_DEADLINE_MS 4500

typedef struct app {
  uv_loop_t loop;
  bf_conf conf;
  bf_daemon daemon;
  bf_httpd *httpd;             /* NULL unless `http` is set */
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t deadline;
  bool stopping;
  size_t running;
  int exit_code;
} app;

static app the_app;

static void usage(FILE *out) {
  fprintf(out,
          "Usage: babelfish [-c FILE] [--check-config]\n"
          "       babelfish --version\n"
          "\n"
          "An XMPP gateway daemon: attaches to an XMPP server as external\n"
          "components (XEP-0114) and bridges foreign networks.\n"
          "\n"
          "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
          "      --check-config  validate the configuration and exit\n"
          "  -V, --version       print the version and the built-in transports\n"
          "  -h, --help          this text\n");
}

static void print_version(void) {
  printf("babelfish %s (module ABI %u)\ntransports:", BF_VERSION,
         (unsigned)BF_MODULE_ABI_VERSION);
  for (const bf_module *const *m = bf__module_builtins(); *m; m++)
    printf(" %s", (*m)->name);
  printf("\n");
}

static void close_cb(uv_handle_t *handle) { (void)handle; }

static void finish_stop(app *a) {
  uv_timer_stop(&a->deadline);
  uv_close((uv_handle_t *)&a->deadline, close_cb);
  uv_close((uv_handle_t *)&a->sigterm, close_cb);
  uv_close((uv_handle_t *)&a->sigint, close_cb);
  uv_close((uv_handle_t *)&a->sighup, close_cb);
  bf__http_free(a->daemon.http);
  a->daemon.http = NULL;
}

static void on_gateway_stopped(bf_gateway *gw) {
  (void)gw;
  app *a = &the_app;
  if (--a->running == 0)
    finish_stop(a);
}

static void on_deadline(uv_timer_t *timer) {
  (void)timer;
  bf__error(NULL, "gateways did not stop within %d ms; exiting anyway",
            STOP_DEADLINE_MS);
  the_app.exit_code = 1;
  uv_stop(&the_app.loop);
}

static void begin_stop(app *a, const char *why) {
  if (a->stopping) {
    bf__warn(NULL, "%s again while stopping; exiting now", why);
    a->exit_code = 1;
    uv_stop(&a->loop);
    return;
  }
  a->stopping = true;
  bf__info(NULL, "%s: stopping", why);
  /* First: it reads the gateways, and nobody needs it while they stop. */
  bf__httpd_stop(a->httpd);
  a->httpd = NULL;
  uv_timer_start(&a->deadline, on_deadline, STOP_DEADLINE_MS, 0);
  a->running = a->daemon.n_gateways;
  if (a->running == 0) {
    finish_stop(a);
    return;
  }
  for (size_t i = 0; i < a->daemon.n_gateways; i++)
    bf__gateway_stop(a->daemon.gateways[i], on_gateway_stopped);
}

/* SIGHUP and the admins' reload command: reopen the log file (rotation)
 * and apply what can change without reconnecting: the log level. */
static int reload(bf_daemon *daemon, char *msg, size_t msg_size) {
  app *a = bf_container_of(daemon, app, daemon);
  if (bf__log_reopen() != 0)
    bf__error(NULL, "cannot reopen the log file");
  bf_conf fresh;
  char err[1024];
  int rc = bf__conf_load(&fresh, a->conf.path, err, sizeof err);
  if (rc != 0) {
    bf__error(NULL, "reload: %s; keeping the running configuration", err);
    snprintf(msg, msg_size, "The configuration has an error, nothing was "
             "changed: %s", err);
    bf__conf_free(&fresh);
    return rc;
  }
  bf__log_set_level(fresh.log_level);
  a->conf.log_level = fresh.log_level;
  bf__conf_free(&fresh);
  snprintf(msg, msg_size, "Reloaded: log reopened, log_level applied (other "
           "changes take effect at the next restart).");
  bf__info(NULL, "reloaded: log reopened, log_level applied (other changes "
                 "take effect at the next restart)");
  return 0;
}

static void on_signal(uv_signal_t *handle, int signum) {
  app *a = handle->data;
  char msg[1280];
  if (signum == SIGHUP)
    (void)reload(&a->daemon, msg, sizeof msg);
  else
    begin_stop(a, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void free_gateways(bf_daemon *d) {
  for (size_t i = 0; i < d->n_gateways; i++)
    bf__gateway_free(d->gateways[i]);
  free(d->gateways);
  d->gateways = NULL;
  d->n_gateways = 0;
}

/* Creates every gateway and checks its section against its module, so
 * --check-config catches transport keys too. */
static int make_gateways(app *a, char *err, size_t err_size) {
  bf_daemon *d = &a->daemon;
  d->gateways = calloc(a->conf.n_gateways, sizeof *d->gateways);
  if (!d->gateways)
    return BF_ENOMEM;
  for (size_t i = 0; i < a->conf.n_gateways; i++) {
    int rc = bf__gateway_new(&d->gateways[i], d, &a->conf.gateways[i], err,
                             err_size);
    if (rc)
      return rc;
    d->n_gateways++;
    rc = bf__gateway_check(d->gateways[i], err, err_size);
    if (rc)
      return rc;
  }
  return 0;
}

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"config", required_argument, NULL, 'c'},
      {"check-config", no_argument, NULL, 'C'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *path = DEFAULT_CONFIG;
  bool check_only = false;
  int opt;
  while ((opt = getopt_long(argc, argv, "c:Vh", options, NULL)) != -1) {
    switch (opt) {
    case 'c': path = optarg; break;
    case 'C': check_only = true; break;
    case 'V': print_version(); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "babelfish: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }

  app *a = &the_app;
  char err[2048] = "";
  int rc = bf__conf_load(&a->conf, path, err, sizeof err);
  if (rc) {
    fprintf(stderr, "%s\n", err);
    bf__conf_free(&a->conf);
    return 1;
  }
  if (uv_loop_init(&a->loop) != 0) {
    fprintf(stderr, "babelfish: cannot create the event loop\n");
    return 1;
  }
  a->daemon.loop = &a->loop;
  a->daemon.conf = &a->conf;
  a->daemon.reload = reload;
  rc = make_gateways(a, err, sizeof err);
  if (rc) {
    fprintf(stderr, "%s\n", err[0] ? err : bf_strerror(rc));
    a->exit_code = 1;
    goto out;
  }
  if (check_only) {
    printf("%s: OK (%zu gateway%s)\n", path, a->conf.n_gateways,
           a->conf.n_gateways == 1 ? "" : "s");
    goto out;
  }

  if (bf__log_init(a->conf.log_level, a->conf.log_file) != 0) {
    fprintf(stderr, "babelfish: cannot open log_file %s\n", a->conf.log_file);
    a->exit_code = 1;
    goto out;
  }
  /* A peer closing a socket must be an error return, not a signal. */
  signal(SIGPIPE, SIG_IGN);
  rc = bf__store_open(&a->daemon.store, a->conf.database, err, sizeof err);
  if (rc) {
    bf__error(NULL, "%s", err);
    a->exit_code = 1;
    goto out;
  }
  if (bf__store_checkpoint_in_background(a->daemon.store, &a->loop) != 0)
    bf__warn(NULL, "SQLite is not thread-safe here: WAL checkpoints run in "
                   "commits on the main thread (slower fan-out)");
  rc = bf__http_new(&a->daemon.http, &a->loop);
  if (rc) {
    bf__error(NULL, "cannot start the HTTP client: %s", bf_strerror(rc));
    a->exit_code = 1;
    goto out;
  }
  if (a->conf.http) {
    rc = bf__httpd_start(&a->httpd, &a->daemon, a->conf.http, err, sizeof err);
    if (rc) {
      bf__error(NULL, "%s", err);
      a->exit_code = 1;
      goto out;
    }
  }
  uv_signal_init(&a->loop, &a->sigterm);
  uv_signal_init(&a->loop, &a->sigint);
  uv_signal_init(&a->loop, &a->sighup);
  uv_timer_init(&a->loop, &a->deadline);
  a->sigterm.data = a->sigint.data = a->sighup.data = a;
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  uv_signal_start(&a->sighup, on_signal, SIGHUP);
  a->daemon.started_ms = uv_now(&a->loop);

  size_t started = 0;
  for (size_t i = 0; i < a->daemon.n_gateways; i++) {
    bf_gateway *gw = a->daemon.gateways[i];
    if (bf__gateway_start(gw) == 0) {
      started++;
      bf__info(gw->conf->section, "gateway %s (transport %s) started",
               gw->conf->domain, gw->module.module->name);
    }
  }
  bf__info(NULL, "babelfish %s running: %zu of %zu gateways started",
           BF_VERSION, started, a->daemon.n_gateways);
  if (started == 0)
    begin_stop(a, "no gateway could start");

  uv_run(&a->loop, UV_RUN_DEFAULT);
  if (!a->exit_code)
    bf__info(NULL, "stopped");

  if (a->running > 0) {
    /* Forced stop: handles are still open inside the gateways; the
     * database is all that needs a clean close. */
    bf__store_close(a->daemon.store);
    return a->exit_code;
  }

out:
  if (a->daemon.http) {
    bf__http_free(a->daemon.http);
    a->daemon.http = NULL;
    uv_run(&a->loop, UV_RUN_DEFAULT);
  }
  free_gateways(&a->daemon);
  bf__store_close(a->daemon.store);
  (void)uv_loop_close(&a->loop);
  bf__conf_free(&a->conf);
  return a->exit_code;
}
