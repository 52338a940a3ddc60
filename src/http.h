/* Private: the HTTP client facility — libcurl's multi interface driven by
 * the libuv loop (one uv_poll per curl socket, one uv_timer for curl's
 * timeouts), as in curl's docs/examples/multi-uv.c but with every return
 * checked. Used through bf_host.http_request by transports. */
#ifndef BF_HTTP_H
#define BF_HTTP_H

#include <stdint.h>

#include <uv.h>

#include "babelfish/module.h"

typedef struct bf_http bf_http;

/* loop: borrowed. curl_global_init happens on the first request, not
 * here, so an idle daemon pays nothing for it. 0 or BF_ENOMEM. */
int bf__http_new(bf_http **http, uv_loop_t *loop);

/* See bf_host.http_request. req: copied. Only http, https, smtp, smtps,
 * imap, imaps URLs are allowed (BF_EINVAL otherwise); redirects are not
 * followed. */
int bf__http_request(bf_http *http, const bf_http_request *req,
                     bf_http_done_cb cb, void *data, uint64_t *id);
/* Cancels a transfer: its callback runs now with BF_ECANCELED. Unknown
 * ids are ignored. */
void bf__http_cancel(bf_http *http, uint64_t id);

/* Transfers under way. */
unsigned bf__http_active(const bf_http *http);

/* Cancels every transfer (callbacks get BF_ECANCELED) and closes the uv
 * handles; memory is released from the close callbacks, so the loop must
 * run once more afterwards. NULL allowed. */
void bf__http_free(bf_http *http);

#endif
