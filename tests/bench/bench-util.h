/* What the benchmark drivers (bench-component.c, bench-irc.c) both need
 * besides XML (xml-scan.h): the clock, CPU and memory of a process from
 * /proc, pinning to a core, removing a run folder, and the XEP-0114
 * handshake digest. */
#ifndef BF_BENCH_UTIL_H
#define BF_BENCH_UTIL_H

#include <errno.h>
#include <ftw.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define NS_PER_S 1000000000ull

static inline uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* The driver's own CPU time (user + system) in seconds. */
static inline double self_cpu_s(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* A "Key:   N kB" line of /proc/PID/status (VmRSS, RssAnon…), or -1. */
static inline long proc_status_kib(pid_t pid, const char *key)
{
  char path[64], line[256];
  long kib = -1;
  size_t key_len = strlen(key);
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
      kib = strtol(line + key_len + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kib;
}

/* utime + stime of pid (all its threads) in seconds, or -1. */
static inline double proc_cpu_s(pid_t pid)
{
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* the command name may contain spaces: fields start after its ')' */
  char *p = strrchr(buf, ')');
  unsigned long ut, st;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                          "%lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Pins the calling process (and what it spawns next) to cpu; < 0: no
 * pinning. who: the driver's name for the error message. */
static inline int pin(int cpu, const char *who)
{
  if (cpu < 0)
    return 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) {
    fprintf(stderr, "%s: sched_setaffinity(%d): %s\n", who, cpu,
            strerror(errno));
    return -1;
  }
  return 0;
}

/* nftw callback: removes a run folder's entries, deepest first. */
static inline int unlink_cb(const char *path, const struct stat *st, int type,
                            struct FTW *ftw)
{
  return remove(path);
}

/* XEP-0114 §3: hex SHA-1 of the stream id followed by the secret. */
static inline int handshake_hex(const char *id_secret, char out[41])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned md_len = 0;
  if (!EVP_Digest(id_secret, strlen(id_secret), md, &md_len, EVP_sha1(),
                  NULL) ||
      md_len != 20)
    return -1;
  for (unsigned i = 0; i < 20; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
  return 0;
}

#endif
