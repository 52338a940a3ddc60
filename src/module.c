/* Transport registry and loader. */
#include "module.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* Built-in transports: add one line per transports/<name>/ folder. */
extern const bf_module bf_echo_module;
extern const bf_module bf_irc_module;

static const bf_module *const builtins[] = {
    &bf_echo_module,
    &bf_irc_module,
    NULL,
};

/* Keys every gateway section may have, whatever its transport. */
static const char *const core_keys[] = {
    "transport", "domain",      "secret",  "server",
    "port",      "xmpp_domain", "allowed", "message_ids", NULL,
};

const bf_module *const *bf__module_builtins(void) { return builtins; }

/* A transport name is also a file name: keep it to [a-z0-9_-] so it can't
 * walk out of modules_dir. */
static bool valid_name(const char *name) {
  if (!*name || strlen(name) > 64)
    return false;
  for (const char *p = name; *p; p++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
          *p == '-'))
      return false;
  }
  return true;
}

int bf__module_load(const char *name, const char *modules_dir,
                    bf_module_ref *ref, char *err, size_t err_size) {
  ref->module = NULL;
  ref->dl = NULL;
  for (size_t i = 0; builtins[i]; i++) {
    if (!strcmp(builtins[i]->name, name)) {
      ref->module = builtins[i];
      return 0;
    }
  }
  if (!valid_name(name)) {
    snprintf(err, err_size,
             "transport '%s' is not a valid module name (letters a-z, digits, "
             "'_' and '-')",
             name);
    return BF_EINVAL;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.so", modules_dir, name);
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *why = dlerror();
    snprintf(err, err_size,
             "unknown transport '%s': not built in, and %s cannot be loaded "
             "(%s); check modules_dir",
             name, path, why ? why : "unknown error");
    return BF_ENOENT;
  }
  const bf_module *m = dlsym(dl, BF_MODULE_SYMBOL);
  if (!m) {
    snprintf(err, err_size, "%s does not export %s: not a babelfish module",
             path, BF_MODULE_SYMBOL);
    dlclose(dl);
    return BF_EINVAL;
  }
  /* The version is the only field read before it is checked. */
  if (m->abi_version < 1 || m->abi_version > BF_MODULE_ABI_VERSION) {
    snprintf(err, err_size,
             "%s was built for module ABI %u but this babelfish supports 1 to "
             "%u: rebuild it against these headers",
             path, (unsigned)m->abi_version, (unsigned)BF_MODULE_ABI_VERSION);
    dlclose(dl);
    return BF_EINVAL;
  }
  if (!m->name || strcmp(m->name, name) != 0) {
    snprintf(err, err_size, "%s calls itself '%s', not '%s'", path,
             m->name ? m->name : "(null)", name);
    dlclose(dl);
    return BF_EINVAL;
  }
  ref->module = m;
  ref->dl = dl;
  return 0;
}

void bf__module_unload(bf_module_ref *ref) {
  if (ref->dl)
    dlclose(ref->dl);
  ref->dl = NULL;
  ref->module = NULL;
}

static bool in_list(const char *const *list, const char *key) {
  for (size_t i = 0; list && list[i]; i++) {
    if (!strcmp(list[i], key))
      return true;
  }
  return false;
}

int bf__module_check_section(const bf_module *module, const bf_conf *conf,
                             const bf_conf_gateway *gw, const bf_host *host,
                             char *err, size_t err_size) {
  for (size_t i = 0; i < gw->n_entries; i++) {
    const bf_conf_entry *e = &gw->entries[i];
    if (in_list(core_keys, e->key) || in_list(module->config_keys, e->key))
      continue;
    snprintf(err, err_size, "%s:%u: unknown key '%s' in [%s] (transport %s)",
             conf->path, e->line, e->key, gw->section, module->name);
    return BF_EINVAL;
  }
  if (!module->check_config)
    return 0;
  char why[512] = "";
  const char *bad_key = NULL;
  int rc = module->check_config(host, why, sizeof why, &bad_key);
  if (rc == 0)
    return 0;
  snprintf(err, err_size, "%s:%u: [%s]: %s", conf->path,
           bf__conf_line(gw, bad_key ? bad_key : "transport"), gw->section,
           why[0] ? why : "invalid configuration");
  return BF_EINVAL;
}

int bf_config_bool(const char *value, bool *out) {
  static const char *const yes[] = {"yes", "true", "on", "1"};
  static const char *const no[] = {"no", "false", "off", "0"};
  if (!value)
    return BF_ENOENT;
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    if (!strcasecmp(value, yes[i]) || !strcasecmp(value, no[i])) {
      *out = !strcasecmp(value, yes[i]);
      return 0;
    }
  }
  return BF_EINVAL;
}
