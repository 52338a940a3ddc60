#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *bf_test_tmpdir(const char *name) {
  const char *base = getenv("BF_TEST_TMP");
  if (!base || !*base)
    base = "/tmp";
  mkdir(base, 0700);
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
