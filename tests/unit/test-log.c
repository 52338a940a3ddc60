/* Unit tests: logging (src/log.c). Each test points fd 2 at a file through
 * bf__log_init and reads back what was written; the real stderr is put
 * back afterwards so cmocka can report. */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "support.h"

typedef struct fixture {
  char *dir;
  char path[512];
  char moved[512];
  int saved_stderr;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = bf_test_tmpdir("test-log");
  snprintf(f->path, sizeof f->path, "%s/babelfish.log", f->dir);
  snprintf(f->moved, sizeof f->moved, "%s/babelfish.log.1", f->dir);
  f->saved_stderr = dup(STDERR_FILENO);
  assert_true(f->saved_stderr >= 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  dup2(f->saved_stderr, STDERR_FILENO);
  close(f->saved_stderr);
  bf__log_init(BF_LOG_INFO, NULL); /* forget the file */
  unlink(f->path);
  unlink(f->moved);
  rmdir(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static char *slurp(const char *path) {
  FILE *file = fopen(path, "rb");
  assert_non_null(file);
  char *text = malloc(65536);
  assert_non_null(text);
  size_t n = fread(text, 1, 65535, file);
  text[n] = '\0';
  fclose(file);
  return text;
}

static size_t count_lines(const char *text) {
  size_t n = 0;
  for (; *text; text++)
    n += *text == '\n';
  return n;
}

static void assert_matches(const char *text, const char *pattern) {
  regex_t re;
  assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
  int rc = regexec(&re, text, 0, NULL, 0);
  regfree(&re);
  if (rc != 0)
    fail_msg("'%s' does not match /%s/", text, pattern);
}

#define STAMP "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

static void test_format(void **state) {
  fixture *f = *state;
  time_t before = time(NULL);
  assert_int_equal(bf__log_init(BF_LOG_DEBUG, f->path), 0);
  bf__info(NULL, "hello %d", 42);
  bf__warn("irc", "w");
  bf__error("mail", "e");
  bf__debug("hooks", "d%s", "!");
  char *text = slurp(f->path);
  assert_matches(text, "^" STAMP " info  \\[babelfish\\] hello 42\n"
                       STAMP " warn  \\[irc\\] w\n"
                       STAMP " error \\[mail\\] e\n"
                       STAMP " debug \\[hooks\\] d!\n$");
  /* UTC, to the millisecond, and now */
  struct tm tm = {0};
  int ms = -1;
  assert_int_equal(sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year,
                          &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                          &tm.tm_sec, &ms),
                   7);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t stamp = timegm(&tm);
  assert_true(stamp >= before && stamp <= time(NULL));
  assert_in_range(ms, 0, 999);
  free(text);

  /* created 0640: logs name users */
  struct stat st;
  assert_int_equal(stat(f->path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0640 & ~(unsigned)umask(022));
}

static void test_levels(void **state) {
  fixture *f = *state;
  assert_int_equal(bf__log_init(BF_LOG_WARN, f->path), 0);
  assert_int_equal(bf__log_get_level(), BF_LOG_WARN);
  bf__debug(NULL, "dropped debug");
  bf__info(NULL, "dropped info");
  bf__warn(NULL, "kept warn");
  bf__error(NULL, "kept error");
  bf__log_set_level(BF_LOG_DEBUG);
  assert_int_equal(bf__log_get_level(), BF_LOG_DEBUG);
  bf__debug(NULL, "kept debug");
  bf__log_set_level(BF_LOG_ERROR);
  bf__warn(NULL, "dropped warn");
  char *text = slurp(f->path);
  assert_int_equal(count_lines(text), 3);
  assert_null(strstr(text, "dropped"));
  assert_non_null(strstr(text, "kept warn"));
  assert_non_null(strstr(text, "kept error"));
  assert_non_null(strstr(text, "kept debug"));
  free(text);

  assert_int_equal(bf__log_level_parse("error"), BF_LOG_ERROR);
  assert_int_equal(bf__log_level_parse("warn"), BF_LOG_WARN);
  assert_int_equal(bf__log_level_parse("INFO"), BF_LOG_INFO);
  assert_int_equal(bf__log_level_parse("debug"), BF_LOG_DEBUG);
  assert_int_equal(bf__log_level_parse("verbose"), -1);
  assert_int_equal(bf__log_level_parse(""), -1);
  assert_int_equal(bf__log_level_parse(NULL), -1);
  assert_int_equal(bf__log_init(7, NULL), BF_EINVAL);
  assert_int_equal(bf__log_get_level(), BF_LOG_ERROR);
}

static void test_escaping(void **state) {
  fixture *f = *state;
  assert_int_equal(bf__log_init(BF_LOG_INFO, f->path), 0);
  /* a foreign string that tries to forge a second line */
  bf__info("ir\nc", "nick %s said",
           "x\n2026-01-01T00:00:00.000Z error [babelfish] forged\r\x1b[31m\x7f\t");
  bf__info(NULL, "h\xc3\xa9llo \xe2\x9c\x93 back\\slash");
  char *text = slurp(f->path);
  assert_int_equal(count_lines(text), 2);
  assert_non_null(strstr(text, " [ir\\x0ac] nick x\\x0a2026-01-01T00:00:00.000Z "
                               "error [babelfish] forged\\x0d\\x1b[31m\\x7f\\x09 said\n"));
  /* UTF-8 and backslashes are kept as they are */
  assert_non_null(strstr(text, "] h\xc3\xa9llo \xe2\x9c\x93 back\\slash\n"));
  free(text);
}

static void test_truncation(void **state) {
  fixture *f = *state;
  assert_int_equal(bf__log_init(BF_LOG_INFO, f->path), 0);
  size_t n = 20000;
  char *big = malloc(n + 1);
  assert_non_null(big);
  /* two-byte characters, so a cut at a byte boundary could split one */
  for (size_t i = 0; i + 1 < n; i += 2)
    memcpy(big + i, "\xc3\xa9", 2);
  big[n] = '\0';
  bf__info(NULL, "%s", big);
  bf__info(NULL, "x%sy", big + 1); /* odd offset: starts mid-character */
  memset(big, '\n', 3000);
  big[3000] = '\0'; /* escaping makes it 12,000 bytes */
  bf__info(NULL, "%s", big);
  bf__info(NULL, "short");
  free(big);

  char *text = slurp(f->path);
  assert_int_equal(count_lines(text), 4);
  char *line = text;
  for (int i = 0; i < 3; i++) {
    char *end = strchr(line, '\n');
    size_t len = (size_t)(end - line) + 1;
    assert_true(len <= 8192);
    assert_true(len > 8000);
    static const char marker[] = "\xe2\x80\xa6[truncated]";
    assert_memory_equal(end - (sizeof marker - 1), marker, sizeof marker - 1);
    /* what precedes the marker ends on a whole character */
    const unsigned char *before = (const unsigned char *)end - (sizeof marker - 1);
    if (i < 2)
      assert_memory_equal(before - 2, "\xc3\xa9", 2);
    else
      assert_memory_equal(before - 4, "\\x0a", 4);
    line = end + 1;
  }
  assert_non_null(strstr(line, "] short\n"));
  free(text);
}

static void test_reopen(void **state) {
  fixture *f = *state;
  assert_int_equal(bf__log_init(BF_LOG_INFO, f->path), 0);
  bf__info(NULL, "one");
  /* what logrotate does before sending SIGHUP */
  assert_int_equal(rename(f->path, f->moved), 0);
  bf__info(NULL, "two");
  assert_int_equal(bf__log_reopen(), 0);
  bf__info(NULL, "three");
  char *old = slurp(f->moved);
  char *now = slurp(f->path);
  assert_int_equal(count_lines(old), 2);
  assert_non_null(strstr(old, "] one\n"));
  assert_non_null(strstr(old, "] two\n"));
  assert_int_equal(count_lines(now), 1);
  assert_non_null(strstr(now, "] three\n"));
  free(old);
  free(now);

  /* appends, never truncates */
  assert_int_equal(bf__log_init(BF_LOG_INFO, f->path), 0);
  bf__info(NULL, "four");
  now = slurp(f->path);
  assert_int_equal(count_lines(now), 2);
  free(now);

  /* without a file, reopening does nothing */
  assert_int_equal(bf__log_init(BF_LOG_INFO, NULL), 0);
  assert_int_equal(bf__log_reopen(), 0);
}

static void test_errors_and_errno(void **state) {
  fixture *f = *state;
  char bad[600];
  snprintf(bad, sizeof bad, "%s/no/such/dir/x.log", f->dir);
  assert_int_equal(bf__log_init(BF_LOG_INFO, f->path), 0);
  assert_int_equal(bf__log_init(BF_LOG_DEBUG, bad), -ENOENT);
  /* a failed init changes nothing: same level, same file */
  assert_int_equal(bf__log_get_level(), BF_LOG_INFO);
  errno = EACCES;
  bf__info(NULL, "errno says %m");
  assert_int_equal(errno, EACCES);
  char *text = slurp(f->path);
  char expect[256];
  snprintf(expect, sizeof expect, "errno says %s\n", strerror(EACCES));
  assert_non_null(strstr(text, expect));
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_format, setup, teardown),
      cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_and_errno, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
