/* A growable byte buffer with a hard cap. */
#ifndef BF_BUF_H
#define BF_BUF_H

#include <stddef.h>

typedef struct bf_buf {
  char *data;   /* owned; NUL-terminated after every append */
  size_t len;
  size_t cap;   /* allocated size */
  size_t max;   /* appends past this many bytes fail with BF_E2BIG; 0 = no cap */
} bf_buf;

void bf__buf_init(bf_buf *buf, size_t max);
void bf__buf_close(bf_buf *buf);
/* The slow path of bf__buf_reserve. */
int bf__buf_grow(bf_buf *buf, size_t extra);

/* Makes room for extra more bytes (+1 for the NUL). 0, BF_E2BIG, BF_ENOMEM.
 * Inline: the serializer calls it for every run of text it copies. */
static inline int bf__buf_reserve(bf_buf *buf, size_t extra) {
  if (extra < buf->cap - buf->len &&
      (!buf->max || (extra <= buf->max && buf->len <= buf->max - extra)))
    return 0;
  return bf__buf_grow(buf, extra);
}
int bf__buf_append(bf_buf *buf, const void *data, size_t len);
int bf__buf_append_str(bf_buf *buf, const char *str);
/* Drops the first n bytes (n <= len). */
void bf__buf_consume(bf_buf *buf, size_t n);
void bf__buf_reset(bf_buf *buf);

#endif
