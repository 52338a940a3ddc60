/* Shared helpers for the unit tests. */
#ifndef BF_TEST_SUPPORT_H
#define BF_TEST_SUPPORT_H

#include <stddef.h>

#include "babelfish/xml.h"

/* A fresh private scratch folder under $BF_TEST_TMP (or /tmp), malloc'd. */
char *bf_test_tmpdir(const char *name);
/* Writes text to dir/name; returns the malloc'd path. */
char *bf_test_write_file(const char *dir, const char *name, const char *text);

/* Deletes an SQLite database and its -wal, -shm and .lock companions
 * (missing ones are fine). path: borrowed. */
void bf_test_unlink_db(const char *path);

/* el serialized (malloc'd; fails the test on ENOMEM). */
char *bf_test_xml_string(const bf_xml *el);
/* Fails the test unless el serializes to exactly expected. */
void bf_test_assert_xml(const bf_xml *el, const char *expected);

#endif
