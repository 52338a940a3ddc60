/* Private: the daemon's HTTP listener (`http = HOST:PORT`): GET /health
 * and GET /metrics for monitors, on the one libuv loop.
 *
 * libmicrohttpd does the HTTP. Its runtime brings GnuTLS and friends
 * (several MiB resident), so it is loaded with dlopen only when `http` is
 * set, and driven in its "external select" mode: its epoll descriptor is
 * watched with a uv_poll_t and its timeouts with a uv_timer_t, so no
 * thread is started. */
#ifndef BF_HTTPD_H
#define BF_HTTPD_H

#include <stddef.h>

#include "gateway.h"

typedef struct bf_httpd bf_httpd;

/* Loads libmicrohttpd.so.12 and listens on listen ("HOST:PORT" or
 * "[IPv6]:PORT"; port 0 picks a free one) on daemon->loop. daemon:
 * borrowed, kept (read at every request: its gateways, store and start
 * time must outlive the listener). On failure writes the cause (the
 * library that could not be loaded, or the address that could not be
 * bound) to err and returns BF_EIO, BF_EINVAL or BF_ENOMEM; *httpd is
 * then NULL. */
int bf__httpd_start(bf_httpd **httpd, bf_daemon *daemon, const char *listen,
                    char *err, size_t err_size);

/* The port listened on (useful after port 0). */
unsigned bf__httpd_port(const bf_httpd *httpd);

/* Closes the listener and every open connection now. The uv handles are
 * closed and the memory is released from their close callbacks, so the
 * loop must run once more. NULL allowed. */
void bf__httpd_stop(bf_httpd *httpd);

#endif
