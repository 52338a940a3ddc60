/* babelfish — error codes shared by the core and transport modules.
 *
 * Functions that act return int: 0 on success or a negative BF_E… code.
 * The codes are negated errno values, the way libuv's UV_E… codes are, so
 * a system error can be passed through unchanged.
 */
#ifndef BABELFISH_ERROR_H
#define BABELFISH_ERROR_H

#include <errno.h>

#define BF_OK 0
#define BF_EINVAL (-EINVAL)         /* bad argument or malformed input */
#define BF_ENOMEM (-ENOMEM)         /* out of memory */
#define BF_ENOENT (-ENOENT)         /* no such item */
#define BF_EEXIST (-EEXIST)         /* already exists */
#define BF_E2BIG (-E2BIG)           /* over a configured size limit */
#define BF_ENOBUFS (-ENOBUFS)       /* a queue is full (back-pressure) */
#define BF_EAGAIN (-EAGAIN)         /* try again later */
#define BF_EIO (-EIO)               /* storage or I/O failure */
#define BF_ENOTSUP (-ENOTSUP)       /* not handled / not supported */
#define BF_ENOTCONN (-ENOTCONN)     /* the stream is not connected */
#define BF_ETIMEDOUT (-ETIMEDOUT)   /* a timeout expired */
#define BF_EPROTO (-EPROTO)         /* protocol violation by the peer */
#define BF_ECANCELED (-ECANCELED)   /* cancelled (shutdown) */
#define BF_EPERM (-EPERM)           /* not allowed */

/* A static English message for a BF_E… code (or any negated errno). */
const char *bf_strerror(int rc);

#endif
