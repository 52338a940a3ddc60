#include <string.h>

#include "babelfish/error.h"

const char *bf_strerror(int rc) {
  switch (rc) {
  case BF_OK: return "success";
  case BF_EINVAL: return "invalid argument or malformed input";
  case BF_ENOMEM: return "out of memory";
  case BF_ENOENT: return "not found";
  case BF_EEXIST: return "already exists";
  case BF_E2BIG: return "over the size limit";
  case BF_ENOBUFS: return "queue full";
  case BF_EAGAIN: return "try again later";
  case BF_EIO: return "I/O or storage error";
  case BF_ENOTSUP: return "not supported";
  case BF_ENOTCONN: return "not connected";
  case BF_ETIMEDOUT: return "timed out";
  case BF_EPROTO: return "protocol error";
  case BF_ECANCELED: return "cancelled";
  case BF_EPERM: return "not permitted";
  default: return rc < 0 ? strerror(-rc) : "unknown error";
  }
}
