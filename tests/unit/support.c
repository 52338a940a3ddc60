#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *bf_test_tmpdir(const char *name) {
  const char *base = getenv("BF_TEST_TMP");
  if (!base || !*base)
    base = "/tmp";
  /* 0755: the e2e tests run servers as their own users (ejabberd) below
   * this folder; each test's own folder is private (mkdtemp, 0700). */
  mkdir(base, 0755);
  size_t n = strlen(base) + strlen(name) + 32;
  char *tmpl = malloc(n);
  if (!tmpl)
    abort();
  snprintf(tmpl, n, "%s/%s-XXXXXX", base, name);
  if (!mkdtemp(tmpl))
    abort();
  return tmpl;
}

char *bf_test_write_file(const char *dir, const char *name, const char *text) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *path = malloc(n);
  if (!path)
    abort();
  snprintf(path, n, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    abort();
  fputs(text, f);
  fclose(f);
  return path;
}

char *bf_test_xml_string(const bf_xml *el) {
  char *s = bf_xml_to_string(el, NULL);
  assert_non_null(s);
  return s;
}

void bf_test_assert_xml(const bf_xml *el, const char *expected) {
  char *s = bf_test_xml_string(el);
  assert_string_equal(s, expected);
  free(s);
}

void bf_test_unlink_db(const char *path) {
  static const char *const suffixes[] = {"", "-wal", "-shm", ".lock"};
  char p[4096];
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
    unlink(p);
  }
}
