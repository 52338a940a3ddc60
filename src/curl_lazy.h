/* Private: libcurl, loaded on the first transfer instead of at start-up.
 *
 * Debian's libcurl brings some thirty libraries with it (GnuTLS for RTMP,
 * Kerberos, LDAP, SSH, HTTP/2, …): linked normally they add about 4.4 MiB
 * to the resident size of a daemon that may never make an HTTP request.
 * So the HTTP facility calls curl through this table, filled by dlopen on
 * first use; only http.c includes this header. The macros below make the
 * calls read like plain libcurl. */
#ifndef BF_CURL_LAZY_H
#define BF_CURL_LAZY_H

#include <stddef.h>

/* The function-pointer table can't go through curl's type-checking
 * macros. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

typedef struct bf_curl_api {
  CURLcode (*global_init)(long flags);
  void (*global_cleanup)(void);
  CURL *(*easy_init)(void);
  void (*easy_cleanup)(CURL *easy);
  CURLcode (*easy_setopt)(CURL *easy, CURLoption option, ...);
  CURLcode (*easy_getinfo)(CURL *easy, CURLINFO info, ...);
  const char *(*easy_strerror)(CURLcode code);
  void (*free)(void *p);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_cleanup)(CURLM *multi);
  CURLMcode (*multi_setopt)(CURLM *multi, CURLMoption option, ...);
  CURLMcode (*multi_add_handle)(CURLM *multi, CURL *easy);
  CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *easy);
  CURLMcode (*multi_assign)(CURLM *multi, curl_socket_t s, void *p);
  CURLMcode (*multi_socket_action)(CURLM *multi, curl_socket_t s, int ev,
                                   int *running);
  CURLMsg *(*multi_info_read)(CURLM *multi, int *queued);
  const char *(*multi_strerror)(CURLMcode code);
  struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
  void (*slist_free_all)(struct curl_slist *list);
  CURLU *(*url)(void);
  void (*url_cleanup)(CURLU *url);
  CURLUcode (*url_get)(const CURLU *url, CURLUPart part, char **out,
                       unsigned int flags);
  CURLUcode (*url_set)(CURLU *url, CURLUPart part, const char *content,
                       unsigned int flags);
} bf_curl_api;

extern bf_curl_api bf__curl;

/* Loads libcurl.so.4 and fills bf__curl (once; later calls return the
 * first outcome). On failure writes the cause to err and returns BF_EIO. */
int bf__curl_load(char *err, size_t err_size);

#ifndef BF_CURL_LAZY_IMPLEMENTATION
/* curl.h wraps these three in argument-count macros; ours replace them. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init bf__curl.global_init
#define curl_global_cleanup bf__curl.global_cleanup
#define curl_easy_init bf__curl.easy_init
#define curl_easy_cleanup bf__curl.easy_cleanup
#define curl_easy_setopt bf__curl.easy_setopt
#define curl_easy_getinfo bf__curl.easy_getinfo
#define curl_easy_strerror bf__curl.easy_strerror
#define curl_free bf__curl.free
#define curl_multi_init bf__curl.multi_init
#define curl_multi_cleanup bf__curl.multi_cleanup
#define curl_multi_setopt bf__curl.multi_setopt
#define curl_multi_add_handle bf__curl.multi_add_handle
#define curl_multi_remove_handle bf__curl.multi_remove_handle
#define curl_multi_assign bf__curl.multi_assign
#define curl_multi_socket_action bf__curl.multi_socket_action
#define curl_multi_info_read bf__curl.multi_info_read
#define curl_multi_strerror bf__curl.multi_strerror
#define curl_slist_append bf__curl.slist_append
#define curl_slist_free_all bf__curl.slist_free_all
#define curl_url bf__curl.url
#define curl_url_cleanup bf__curl.url_cleanup
#define curl_url_get bf__curl.url_get
#define curl_url_set bf__curl.url_set
#endif

#endif
