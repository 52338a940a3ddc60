/* The echo transport — and the template to copy when starting a new one.
 *
 * What it does: a <message/> sent to any JID at the gateway's domain
 * (bob@echo.example.org, or bob@echo.example.org/res) comes back from that
 * JID to the sender, with the same type, body, subject and thread. With
 * `durable = yes` in its section the answer goes through the durable
 * outbox (stored in SQLite until the server confirms it), the path every
 * real transport uses for what it accepted from its foreign network.
 *
 * How a transport is put together:
 *   1. One `const bf_module` descriptor (at the bottom): ABI version first,
 *      then names, disco type, config keys and callbacks. NULL callbacks
 *      mean "not supported".
 *   2. `init` gets a bf_host: the core's services (send stanzas, loop,
 *      timers, storage, HTTP, log, config). Keep the pointer; it is valid
 *      until `close` returns. Allocate your per-gateway state there.
 *   3. `on_stanza` gets every stanza for your domain that the core did not
 *      answer itself. Return 0 when you handled it (and sent any reply),
 *      BF_ENOTSUP to let the core apply the RFC 6120 defaults.
 *   4. Build stanzas with bf_xml_…; the core checks 'from' (must be at your
 *      domain) and 'to' before anything is written, and the serializer
 *      makes any text safe for XML.
 *
 * Built in: listed in src/module.c. As an external module (this same file
 * compiled with -DBF_MODULE_EXTERNAL into NAME.so, see CMakeLists.txt) it
 * exports BF_MODULE_SYMBOL and is found in modules_dir by `transport = NAME`.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <babelfish/babelfish.h>

#ifndef BF_ECHO_NAME
#define BF_ECHO_NAME "echo"
#endif

/* Per-gateway state: one per config section using this transport. */
typedef struct echo {
  const bf_host *host;  /* borrowed; valid until echo_close */
  const char *prefix;   /* borrowed from the config: prepended to bodies,
                           followed by a space */
  bool durable;
  unsigned long echoed;
} echo;

/* The section keys this transport accepts besides the core's (transport,
 * domain, secret, server, port, xmpp_domain). Anything else is a config
 * error that names its line. */
static const char *const echo_config_keys[] = {"prefix", "durable", NULL};

static int parse_bool(const char *value, bool *out) {
  if (!value)
    return BF_ENOENT;
  if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") ||
      !strcmp(value, "1") || !strcasecmp(value, "on")) {
    *out = true;
    return 0;
  }
  if (!strcasecmp(value, "no") || !strcasecmp(value, "false") ||
      !strcmp(value, "0") || !strcasecmp(value, "off")) {
    *out = false;
    return 0;
  }
  return BF_EINVAL;
}

/* Validation at start-up and by --check-config: say what is wrong and how
 * to fix it; name the key so the error cites its line. */
static int echo_check_config(const bf_host *host, char *err, size_t err_size,
                             const char **bad_key) {
  bool durable;
  const char *value = host->config(host, "durable");
  if (value && parse_bool(value, &durable) != 0) {
    snprintf(err, err_size, "durable must be yes or no, not '%s'", value);
    *bad_key = "durable";
    return BF_EINVAL;
  }
  const char *prefix = host->config(host, "prefix");
  if (prefix && strlen(prefix) > 256) {
    snprintf(err, err_size, "prefix is longer than 256 bytes");
    *bad_key = "prefix";
    return BF_EINVAL;
  }
  return 0;
}

static int echo_init(const bf_host *host, void **state) {
  echo *e = calloc(1, sizeof *e);
  if (!e)
    return BF_ENOMEM;
  e->host = host;
  e->prefix = host->config(host, "prefix");
  (void)parse_bool(host->config(host, "durable"), &e->durable);
  *state = e;
  return 0;
}

static void echo_close(void *state) {
  echo *e = state;
  e->host->log(e->host, BF_LOG_INFO, "echoed %lu messages", e->echoed);
  free(e);
}

/* Copies <name/> from src to dst if present, optionally prefixing text. */
static int copy_text_child(bf_xml *dst, const bf_xml *src, const char *name,
                           const char *prefix) {
  const char *text = bf_xml_child_text(src, name, BF_NS_COMPONENT);
  if (!text)
    return 0;
  bf_xml *child = bf_xml_add_child(dst, name, NULL);
  if (!child)
    return BF_ENOMEM;
  if (prefix && (bf_xml_add_text(child, prefix, strlen(prefix)) ||
                 bf_xml_add_text(child, " ", 1)))
    return BF_ENOMEM;
  return bf_xml_add_text(child, text, strlen(text));
}

static int echo_on_stanza(void *state, const bf_xml *stanza,
                          const bf_jid *from, const bf_jid *to) {
  echo *e = state;
  (void)from;
  /* Only messages to a contact JID (with a localpart) are echoed; the
   * gateway's own domain and presence/iq go to the core's defaults. */
  if (strcmp(bf_xml_name(stanza), "message") != 0 || !to->local)
    return BF_ENOTSUP;
  const char *type = bf_xml_attr(stanza, "type");
  if (type && !strcmp(type, "error"))
    return 0; /* never answer an error (RFC 6120 §8.3.1) */

  int rc = BF_ENOMEM;
  bf_xml *reply = bf_xml_new("message", NULL);
  if (!reply)
    return rc;
  /* Reply from exactly the address the sender wrote to. */
  if (bf_xml_set_attr(reply, "from", bf_xml_attr(stanza, "to")) ||
      bf_xml_set_attr(reply, "to", bf_xml_attr(stanza, "from")) ||
      (type && bf_xml_set_attr(reply, "type", type)) ||
      (bf_xml_attr(stanza, "id") &&
       bf_xml_set_attr(reply, "id", bf_xml_attr(stanza, "id"))))
    goto out;
  if (copy_text_child(reply, stanza, "subject", NULL) ||
      copy_text_child(reply, stanza, "body", e->prefix) ||
      copy_text_child(reply, stanza, "thread", NULL))
    goto out;
  rc = e->durable ? e->host->send_durable(e->host, reply)
                  : e->host->send(e->host, reply);
  if (rc == 0)
    e->echoed++;
  else
    e->host->log(e->host, BF_LOG_WARN, "could not echo a message: %s",
                 bf_strerror(rc));
  rc = 0; /* handled, even if the echo could not be sent */
out:
  bf_xml_free(reply);
  return rc;
}

#ifdef BF_MODULE_EXTERNAL
BF_EXPORT
#endif
const bf_module
#ifdef BF_MODULE_EXTERNAL
    bf_module_entry
#else
    bf_echo_module
#endif
    = {
        .abi_version = BF_MODULE_ABI_VERSION,
        .name = BF_ECHO_NAME,
        .description = "Echo gateway (babelfish)",
        .disco_type = "xmpp", /* XEP-0030 registry: gateway/xmpp */
        .features = NULL,
        .config_keys = echo_config_keys,
        .check_config = echo_check_config,
        .init = echo_init,
        .close = echo_close,
        .on_stanza = echo_on_stanza,
        .on_online = NULL,
        .on_offline = NULL,
};
