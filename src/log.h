/* Private: logging to stderr, one line per event:
 *   2026-11-24T16:20:00.123Z info  [irc] connected to 127.0.0.1:5347
 * Control characters in messages are escaped (\xNN) so a foreign string
 * cannot forge log lines. Never pass a secret. */
#ifndef BF_LOG_H
#define BF_LOG_H

#include <stdarg.h>

#include "babelfish/module.h" /* enum bf_log_level, BF_PRINTF */

/* level: messages above it are dropped. file: NULL = stderr as inherited;
 * else stderr is redirected (append) to that file, and bf__log_reopen
 * reopens it (SIGHUP, after log rotation). Returns 0 or a negated errno. */
int bf__log_init(int level, const char *file);
int bf__log_reopen(void);
void bf__log_set_level(int level);
int bf__log_get_level(void);
/* "error"|"warn"|"info"|"debug" -> level, or -1. */
int bf__log_level_parse(const char *name);

/* tag: the gateway section name, or NULL for the core ("babelfish"). */
void bf__log(int level, const char *tag, const char *fmt, ...) BF_PRINTF(3, 4);
void bf__vlog(int level, const char *tag, const char *fmt, va_list ap);

#define bf__error(tag, ...) bf__log(BF_LOG_ERROR, tag, __VA_ARGS__)
#define bf__warn(tag, ...) bf__log(BF_LOG_WARN, tag, __VA_ARGS__)
#define bf__info(tag, ...) bf__log(BF_LOG_INFO, tag, __VA_ARGS__)
#define bf__debug(tag, ...) bf__log(BF_LOG_DEBUG, tag, __VA_ARGS__)

#endif
