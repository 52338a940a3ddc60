/* The HTTP client facility: libcurl's multi interface on the libuv loop.
 *
 * libcurl tells us which sockets to watch (on_curl_socket: one uv_poll_t
 * per socket, its context attached with curl_multi_assign) and when to
 * call it back (on_curl_timer: one uv_timer_t). We report readiness with
 * curl_multi_socket_action and collect finished transfers with
 * curl_multi_info_read. The model is curl's docs/examples/multi-uv.c, with
 * every return checked and transfers that can be cancelled from inside
 * any callback.
 */
#include "http.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


#include "babelfish/error.h"
#include "buf.h"
#include "curl_lazy.h"
#include "log.h"
#include "util.h"

#ifndef BF_VERSION
#define BF_VERSION "0"
#endif

#define DEFAULT_TIMEOUT_MS 30000
/* A peer that has not accepted the connection after this long is down;
 * failing early beats holding the caller for the whole transfer budget. */
#define MAX_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_MAX_RESPONSE (1024 * 1024)

/* Schemes a transport may use; anything else (file://, ftp://, dict://,
 * gopher://…) could read local files or reach services nobody meant to
 * expose. Also handed to libcurl as the only protocols it may speak. */
static const char *const allowed_schemes[] = {
    "http", "https", "smtp", "smtps", "imap", "imaps",
};
#define ALLOWED_PROTOCOLS "http,https,smtp,smtps,imap,imaps"

typedef struct http_socket {
  uv_poll_t poll;
  bf_http *http;
  curl_socket_t fd;
  struct http_socket *prev, *next;
} http_socket;

typedef struct http_transfer {
  CURL *easy;
  uint64_t id;
  bf_http_done_cb cb;
  void *data;
  struct curl_slist *headers;
  bf_buf response;
  int abort_rc;                  /* why on_curl_write stopped the transfer */
  char error[CURL_ERROR_SIZE];   /* CURLOPT_ERRORBUFFER */
  char message[64];              /* our own cause, when it is not curl's */
  struct http_transfer *prev, *next;
} http_transfer;

struct bf_http {
  uv_loop_t *loop;
  uv_timer_t timer;
  CURLM *multi;                  /* NULL until the first request */
  bool curl_initialised;
  bool closing;
  uint64_t last_id;
  unsigned active;
  http_transfer *transfers;
  http_socket *sockets;
};

/* ---- sockets and timer: what libcurl asks us to watch ------------------- */

static void on_socket_close(uv_handle_t *handle) {
  free(bf_container_of((uv_poll_t *)handle, http_socket, poll));
}

static void socket_close(bf_http *http, http_socket *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    http->sockets = s->next;
  if (s->next)
    s->next->prev = s->prev;
  /* uv_close stops the poll first, so libuv forgets the fd before libcurl
   * closes it and may hand the same number to a new socket. */
  uv_close((uv_handle_t *)&s->poll, on_socket_close);
}

static void drive(bf_http *http, CURLMcode mc);

static void on_poll(uv_poll_t *poll, int status, int events) {
  http_socket *s = bf_container_of(poll, http_socket, poll);
  bf_http *http = s->http;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  int running;
  drive(http, curl_multi_socket_action(http->multi, s->fd, flags, &running));
}

/* CURLMOPT_SOCKETFUNCTION. Returning -1 makes libcurl fail every transfer
 * of the multi handle, which drive() then reports. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp) {
  bf_http *http = userp;
  http_socket *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s)
      socket_close(http, s);
    return 0;
  }
  if (!s) {
    if (http->closing)
      return 0;
    s = calloc(1, sizeof *s);
    if (!s)
      return -1;
    if (uv_poll_init_socket(http->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->http = http;
    s->fd = fd;
    s->next = http->sockets;
    if (s->next)
      s->next->prev = s;
    http->sockets = s;
    if (curl_multi_assign(http->multi, fd, s) != CURLM_OK) {
      socket_close(http, s);
      return -1;
    }
  }
  int events = 0;
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  if (!events)
    return uv_poll_stop(&s->poll) == 0 ? 0 : -1;
  return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_timer(uv_timer_t *timer) {
  bf_http *http = bf_container_of(timer, bf_http, timer);
  int running;
  drive(http, curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0,
                                       &running));
}

/* CURLMOPT_TIMERFUNCTION. libcurl must not be re-entered from here, even
 * for timeout 0: the uv timer calls it back on the next loop iteration. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  bf_http *http = userp;
  if (timeout_ms < 0 || http->closing)
    return uv_timer_stop(&http->timer) == 0 ? 0 : -1;
  return uv_timer_start(&http->timer, on_timer, (uint64_t)timeout_ms, 0) == 0
             ? 0 : -1;
}

/* ---- transfers ----------------------------------------------------------- */

static void transfer_free(http_transfer *t) {
  if (t->easy)
    curl_easy_cleanup(t->easy);
  curl_slist_free_all(t->headers);
  bf__buf_close(&t->response);
  free(t);
}

/* Takes t out of the multi handle and the list, runs its callback once,
 * frees it. The callback may start or cancel transfers, or free the
 * facility: t is already unreachable from http, so nothing it does can
 * touch t again. */
static void transfer_end(bf_http *http, http_transfer *t, int rc, long status,
                         const char *error) {
  /* curl_multi_remove_handle fails only for a handle that is not in the
   * multi handle or when called from a libcurl callback, neither of which
   * happens here; curl_easy_cleanup would detach it anyway. */
  (void)curl_multi_remove_handle(http->multi, t->easy);
  if (t->prev)
    t->prev->next = t->next;
  else
    http->transfers = t->next;
  if (t->next)
    t->next->prev = t->prev;
  http->active--;

  bf_http_response res = {
      .rc = rc,
      .status = status,
      .body = t->response.data ? t->response.data : "",
      .body_len = t->response.len,
      .error = rc ? error : NULL,
  };
  t->cb(t->data, &res);
  transfer_free(t);
}

/* Ends, with rc, every transfer that exists now; transfers their callbacks
 * start are left alone (else a callback that retries would loop). */
static void end_all(bf_http *http, int rc, const char *error) {
  uint64_t last = http->last_id;
  for (;;) {
    http_transfer *t = http->transfers;
    while (t && t->id > last)
      t = t->next;
    if (!t)
      break;
    transfer_end(http, t, rc, 0, error);
  }
}

static void transfer_done(bf_http *http, http_transfer *t, CURLcode result) {
  long status = 0;
  if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
    status = 0;
  int rc = 0;
  const char *error = t->error;
  switch (result) {
  case CURLE_OK:
    break;
  case CURLE_OPERATION_TIMEDOUT:
    rc = BF_ETIMEDOUT;
    break;
  case CURLE_FILESIZE_EXCEEDED: /* Content-Length above CURLOPT_MAXFILESIZE */
    rc = BF_E2BIG;
    break;
  case CURLE_WRITE_ERROR:
    rc = t->abort_rc ? t->abort_rc : BF_EIO;
    break;
  case CURLE_OUT_OF_MEMORY:
    rc = BF_ENOMEM;
    break;
  default:
    rc = BF_EIO;
    break;
  }
  /* libcurl may still write t->error until the handle leaves the multi
   * handle, so our own causes go to t->message. */
  if (rc == BF_E2BIG) {
    snprintf(t->message, sizeof t->message, "response larger than %zu bytes",
             t->response.max);
    error = t->message;
  } else if (rc == BF_ENOMEM) {
    error = "out of memory";
  } else if (rc && !t->error[0]) {
    error = curl_easy_strerror(result);
  }
  transfer_end(http, t, rc, status, error);
}

/* Reports the transfers libcurl has finished, then a failure of the multi
 * handle itself. Each message is read afresh after a callback: a callback
 * that cancels another finished transfer removes its message too. */
static void drive(bf_http *http, CURLMcode mc) {
  CURLMsg *msg;
  int pending;
  while (http->multi && (msg = curl_multi_info_read(http->multi, &pending))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURLcode result = msg->data.result;
    void *priv = NULL;
    if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv) !=
            CURLE_OK || !priv)
      continue; /* not one of ours: cannot happen, every easy sets it */
    transfer_done(http, priv, result);
  }
  /* BAD_SOCKET: an event for a socket libcurl has already let go of. */
  if (http->multi && mc != CURLM_OK && mc != CURLM_BAD_SOCKET)
    end_all(http, BF_EIO, curl_multi_strerror(mc));
}

static size_t on_curl_write(char *ptr, size_t size, size_t nmemb, void *data) {
  http_transfer *t = data;
  size_t len = size * nmemb;
  int rc = bf__buf_append(&t->response, ptr, len);
  if (rc) {
    t->abort_rc = rc;
    return 0; /* not len: libcurl aborts with CURLE_WRITE_ERROR */
  }
  return len;
}

/* ---- checks on what the caller asks for ---------------------------------- */

static bool has_control_char(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

/* The scheme of a well-formed URL, lower-cased, if it is one we allow.
 * scheme: at least 8 bytes. */
static int check_url(const char *url, char *scheme, size_t scheme_size) {
  int rc = BF_EINVAL;
  char *part = NULL;
  CURLU *u = curl_url();
  if (!u)
    return BF_ENOMEM;
  /* No CURLU_GUESS_SCHEME: "example.com/x" is refused, not made http. */
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
    goto out;
  if (curl_url_get(u, CURLUPART_SCHEME, &part, 0) != CURLUE_OK)
    goto out;
  for (size_t i = 0; i < BF_ARRAY_SIZE(allowed_schemes); i++) {
    if (strcasecmp(part, allowed_schemes[i]) == 0) {
      snprintf(scheme, scheme_size, "%s", allowed_schemes[i]);
      rc = 0;
      break;
    }
  }
out:
  curl_free(part);
  curl_url_cleanup(u);
  return rc;
}

/* RFC 9110 §5.6.2: a method is a token. */
static bool is_token(const char *s) {
  static const char tchar[] = "!#$%&'*+-.^_`|~";
  if (!*s)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') &&
        !(c >= 'A' && c <= 'Z') && !strchr(tchar, c))
      return false;
  }
  return true;
}

static int check_request(const bf_http_request *req, bool is_http) {
  if (req->method) {
    /* For IMAP a custom request is a command with arguments, so only
     * line breaks (command injection) are refused there. */
    if (is_http ? !is_token(req->method)
                : !*req->method || has_control_char(req->method))
      return BF_EINVAL;
  }
  /* libcurl uploads SMTP/IMAP data with a read callback, not POSTFIELDS,
   * and SMTP needs envelope addresses bf_http_request cannot carry: refuse
   * rather than silently drop the body. */
  if ((req->body || (req->method && !strcmp(req->method, "POST"))) && !is_http)
    return BF_EINVAL;
  if (!req->body && req->body_len)
    return BF_EINVAL;
  if (req->body && req->method && !strcmp(req->method, "HEAD"))
    return BF_EINVAL;
  for (const char *const *h = req->headers; h && *h; h++) {
    /* A CR or LF would let a header value smuggle in another header. */
    if (!strchr(*h, ':') || has_control_char(*h))
      return BF_EINVAL;
  }
  return 0;
}

static int ensure_multi(bf_http *http) {
  if (http->multi)
    return 0;
  if (!http->curl_initialised) {
    char why[256];
    if (bf__curl_load(why, sizeof why) != 0) {
      bf__error(NULL, "HTTP client unavailable: %s", why);
      return BF_EIO;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return BF_EIO;
    http->curl_initialised = true;
  }
  CURLM *multi = curl_multi_init();
  if (!multi)
    return BF_ENOMEM;
  if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) ||
      curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, http) ||
      curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) ||
      curl_multi_setopt(multi, CURLMOPT_TIMERDATA, http)) {
    curl_multi_cleanup(multi);
    return BF_EIO;
  }
  http->multi = multi;
  return 0;
}

static int curl_rc(CURLcode cc) {
  return cc == CURLE_OUT_OF_MEMORY ? BF_ENOMEM : BF_EIO;
}

/* Sets option opt of t->easy; on failure sets rc and leaves by out. */
#define SETOPT(opt, value)                                     \
  do {                                                         \
    CURLcode cc_ = curl_easy_setopt(t->easy, opt, value);      \
    if (cc_ != CURLE_OK) {                                     \
      rc = curl_rc(cc_);                                       \
      goto out;                                                \
    }                                                          \
  } while (0)

static int transfer_setup(http_transfer *t, const bf_http_request *req) {
  int rc = 0;
  uint64_t timeout = req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
  if (timeout > LONG_MAX)
    timeout = LONG_MAX;
  long connect_timeout = timeout < MAX_CONNECT_TIMEOUT_MS
                             ? (long)timeout : MAX_CONNECT_TIMEOUT_MS;
  bool has_expect = false;

  SETOPT(CURLOPT_URL, req->url);
  SETOPT(CURLOPT_PROTOCOLS_STR, ALLOWED_PROTOCOLS);
  SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, ALLOWED_PROTOCOLS);
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  /* libcurl's defaults, stated so no one "fixes" them off. */
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
  SETOPT(CURLOPT_USERAGENT, "babelfish/" BF_VERSION);
  SETOPT(CURLOPT_PRIVATE, (void *)t);
  SETOPT(CURLOPT_ERRORBUFFER, t->error);
  SETOPT(CURLOPT_WRITEFUNCTION, on_curl_write);
  SETOPT(CURLOPT_WRITEDATA, (void *)t);
  /* Refuses at once a response whose Content-Length is over the cap;
   * on_curl_write enforces it for the others. */
  SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t->response.max);

  const char *method = req->method;
  const char *body = req->body;
  size_t body_len = req->body_len;
  if (!body && method && !strcmp(method, "POST"))
    body = ""; /* POST without POSTFIELDS would read stdin */
  if (body) {
    /* Size first, so COPYPOSTFIELDS copies body_len bytes, NULs included. */
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    SETOPT(CURLOPT_COPYPOSTFIELDS, body);
  }
  if (method && !strcmp(method, "HEAD"))
    SETOPT(CURLOPT_NOBODY, 1L); /* a custom HEAD would wait for a body */
  else if (method && strcmp(method, body ? "POST" : "GET") != 0)
    SETOPT(CURLOPT_CUSTOMREQUEST, method);

  for (const char *const *h = req->headers; h && *h; h++) {
    struct curl_slist *list = curl_slist_append(t->headers, *h);
    if (!list) {
      rc = BF_ENOMEM;
      goto out;
    }
    t->headers = list;
    if (!strncasecmp(*h, "Expect:", 7))
      has_expect = true;
  }
  if (body && !has_expect) {
    /* libcurl would send "Expect: 100-continue" for a large body and wait
     * a second for a 100 that many webhook servers never send. */
    struct curl_slist *list = curl_slist_append(t->headers, "Expect:");
    if (!list) {
      rc = BF_ENOMEM;
      goto out;
    }
    t->headers = list;
  }
  if (t->headers)
    SETOPT(CURLOPT_HTTPHEADER, t->headers);
out:
  return rc;
}

#undef SETOPT

/* ---- API ----------------------------------------------------------------- */

int bf__http_new(bf_http **http, uv_loop_t *loop) {
  int rc = 0;
  bf_http *h = calloc(1, sizeof *h);
  if (!h) {
    rc = BF_ENOMEM;
    goto out;
  }
  h->loop = loop;
  rc = uv_timer_init(loop, &h->timer);
  if (rc) {
    free(h);
    h = NULL;
  }
out:
  *http = h;
  return rc;
}

int bf__http_request(bf_http *http, const bf_http_request *req,
                     bf_http_done_cb cb, void *data, uint64_t *id) {
  int rc = 0;
  http_transfer *t = NULL;
  char scheme[8];
  if (!http || !req || !req->url || !cb)
    return BF_EINVAL;
  if (http->closing)
    return BF_ECANCELED;
  rc = ensure_multi(http);
  if (rc)
    goto out;
  rc = check_url(req->url, scheme, sizeof scheme);
  if (rc)
    goto out;
  rc = check_request(req, !strncmp(scheme, "http", 4));
  if (rc)
    goto out;

  t = calloc(1, sizeof *t);
  if (!t) {
    rc = BF_ENOMEM;
    goto out;
  }
  t->cb = cb;
  t->data = data;
  bf__buf_init(&t->response,
               req->max_response ? req->max_response : DEFAULT_MAX_RESPONSE);
  t->easy = curl_easy_init();
  if (!t->easy) {
    rc = BF_ENOMEM;
    goto out;
  }
  rc = transfer_setup(t, req);
  if (rc)
    goto out;
  CURLMcode mc = curl_multi_add_handle(http->multi, t->easy);
  if (mc != CURLM_OK) {
    rc = mc == CURLM_OUT_OF_MEMORY ? BF_ENOMEM : BF_EIO;
    goto out;
  }
  t->id = ++http->last_id;
  t->next = http->transfers;
  if (t->next)
    t->next->prev = t;
  http->transfers = t;
  http->active++;
  if (id)
    *id = t->id;
  t = NULL;
out:
  if (t)
    transfer_free(t);
  return rc;
}

void bf__http_cancel(bf_http *http, uint64_t id) {
  if (!http)
    return;
  for (http_transfer *t = http->transfers; t; t = t->next) {
    if (t->id == id) {
      transfer_end(http, t, BF_ECANCELED, 0, "transfer cancelled");
      return;
    }
  }
}

unsigned bf__http_active(const bf_http *http) {
  return http ? http->active : 0;
}

static void on_timer_close(uv_handle_t *handle) {
  bf_http *http = bf_container_of((uv_timer_t *)handle, bf_http, timer);
  /* Here, not in bf__http_free: when that runs inside a done callback,
   * the transfer being reported still has its easy handle. */
  if (http->curl_initialised)
    curl_global_cleanup();
  free(http);
}

void bf__http_free(bf_http *http) {
  if (!http || http->closing)
    return;
  /* From here on requests are refused, so callbacks below cannot add
   * transfers behind our back. */
  http->closing = true;
  end_all(http, BF_ECANCELED, "transfer cancelled: shutting down");
  if (http->multi) {
    /* Closes the cached connections; libcurl may report their sockets
     * through on_curl_socket(CURL_POLL_REMOVE) while doing so. It can
     * only fail when called from a libcurl callback, which we never do. */
    (void)curl_multi_cleanup(http->multi);
    http->multi = NULL;
  }
  while (http->sockets)
    socket_close(http, http->sockets);
  uv_close((uv_handle_t *)&http->timer, on_timer_close);
}
