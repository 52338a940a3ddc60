#include "buf.h"

#include <stdlib.h>
#include <string.h>

#include "babelfish/error.h"

void bf__buf_init(bf_buf *buf, size_t max) {
  buf->data = NULL;
  buf->len = 0;
  buf->cap = 0;
  buf->max = max;
}

void bf__buf_close(bf_buf *buf) {
  free(buf->data);
  bf__buf_init(buf, buf->max);
}

int bf__buf_grow(bf_buf *buf, size_t extra) {
  if (buf->max && (extra > buf->max || buf->len > buf->max - extra))
    return BF_E2BIG;
  size_t need = buf->len + extra + 1;
  if (need <= buf->cap)
    return 0;
  size_t cap = buf->cap ? buf->cap : 256;
  while (cap < need)
    cap *= 2;
  char *data = realloc(buf->data, cap);
  if (!data)
    return BF_ENOMEM;
  buf->data = data;
  buf->cap = cap;
  return 0;
}

int bf__buf_append(bf_buf *buf, const void *data, size_t len) {
  int rc = bf__buf_reserve(buf, len);
  if (rc)
    return rc;
  if (len)
    memcpy(buf->data + buf->len, data, len);
  buf->len += len;
  buf->data[buf->len] = '\0';
  return 0;
}

int bf__buf_append_str(bf_buf *buf, const char *str) {
  return bf__buf_append(buf, str, strlen(str));
}

void bf__buf_consume(bf_buf *buf, size_t n) {
  if (n >= buf->len) {
    bf__buf_reset(buf);
    return;
  }
  memmove(buf->data, buf->data + n, buf->len - n);
  buf->len -= n;
  buf->data[buf->len] = '\0';
}

void bf__buf_reset(bf_buf *buf) {
  buf->len = 0;
  if (buf->data)
    buf->data[0] = '\0';
}
