/* libcurl loaded on first use: see curl_lazy.h for why. */
#define BF_CURL_LAZY_IMPLEMENTATION 1
#include "curl_lazy.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "babelfish/error.h"

/* The SONAME of Debian's libcurl4 (OpenSSL flavour), the library
 * pkg-config's libcurl names at build time. */
#define LIBCURL_SONAME "libcurl.so.4"

bf_curl_api bf__curl;

static int load_rc = 1; /* 1 = not tried yet */
static char load_error[256];

int bf__curl_load(char *err, size_t err_size) {
  if (load_rc == 1) {
    load_rc = BF_EIO;
    void *dl = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
      const char *why = dlerror();
      snprintf(load_error, sizeof load_error, "cannot load %s: %s",
               LIBCURL_SONAME, why ? why : "unknown error");
      goto out;
    }
    static const struct {
      const char *name;
      size_t offset;
    } symbols[] = {
#define SYM(field, name) {name, offsetof(bf_curl_api, field)}
        SYM(global_init, "curl_global_init"),
        SYM(global_cleanup, "curl_global_cleanup"),
        SYM(easy_init, "curl_easy_init"),
        SYM(easy_cleanup, "curl_easy_cleanup"),
        SYM(easy_setopt, "curl_easy_setopt"),
        SYM(easy_getinfo, "curl_easy_getinfo"),
        SYM(easy_strerror, "curl_easy_strerror"),
        SYM(free, "curl_free"),
        SYM(multi_init, "curl_multi_init"),
        SYM(multi_cleanup, "curl_multi_cleanup"),
        SYM(multi_setopt, "curl_multi_setopt"),
        SYM(multi_add_handle, "curl_multi_add_handle"),
        SYM(multi_remove_handle, "curl_multi_remove_handle"),
        SYM(multi_assign, "curl_multi_assign"),
        SYM(multi_socket_action, "curl_multi_socket_action"),
        SYM(multi_info_read, "curl_multi_info_read"),
        SYM(multi_strerror, "curl_multi_strerror"),
        SYM(slist_append, "curl_slist_append"),
        SYM(slist_free_all, "curl_slist_free_all"),
        SYM(url, "curl_url"),
        SYM(url_cleanup, "curl_url_cleanup"),
        SYM(url_get, "curl_url_get"),
        SYM(url_set, "curl_url_set"),
#undef SYM
    };
    bf_curl_api api;
    for (size_t i = 0; i < sizeof symbols / sizeof *symbols; i++) {
      void *fn = dlsym(dl, symbols[i].name);
      if (!fn) {
        snprintf(load_error, sizeof load_error, "%s lacks %s: too old?",
                 LIBCURL_SONAME, symbols[i].name);
        dlclose(dl);
        goto out;
      }
      /* POSIX guarantees a function pointer round-trips through void *. */
      memcpy((char *)&api + symbols[i].offset, &fn, sizeof fn);
    }
    bf__curl = api;
    load_rc = 0; /* the library stays loaded for the life of the process */
  }
out:
  if (load_rc && err && err_size)
    snprintf(err, err_size, "%s", load_error);
  return load_rc;
}
