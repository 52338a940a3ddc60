/* Private: small helpers shared across the core. */
#ifndef BF_UTIL_H
#define BF_UTIL_H

#include <stddef.h>

/* The struct that embeds member at ptr (libuv handles -> their owner). */
#define bf_container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

#define BF_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
