/* Private: the transport registry (built-in modules) and the loader of
 * external ones (modules_dir/NAME.so). */
#ifndef BF_MODULE_PRIVATE_H
#define BF_MODULE_PRIVATE_H

#include <stddef.h>

#include "babelfish/module.h"
#include "conf.h"

typedef struct bf_module_ref {
  const bf_module *module;
  void *dl;                    /* dlopen handle, NULL for built-ins */
} bf_module_ref;

/* Finds transport name: a built-in first, else modules_dir/NAME.so, whose
 * ABI version is checked before anything else is read. On error writes the
 * cause and the fix to err and returns BF_ENOENT / BF_EINVAL. */
int bf__module_load(const char *name, const char *modules_dir,
                    bf_module_ref *ref, char *err, size_t err_size);
void bf__module_unload(bf_module_ref *ref);

/* Checks a gateway section against its module: every key must be a core
 * gateway key or one of module->config_keys, then module->check_config.
 * host: a host whose config() reads this section. Errors are written to err
 * as "FILE:LINE: message". 0 or BF_EINVAL. */
int bf__module_check_section(const bf_module *module, const bf_conf *conf,
                             const bf_conf_gateway *gw, const bf_host *host,
                             char *err, size_t err_size);

/* Names of the built-in transports, NULL-terminated (for --version). */
const bf_module *const *bf__module_builtins(void);

#endif
