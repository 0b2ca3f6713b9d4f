// Linux interfaces the Glibc module does not export: epoll, eventfd, thread names.
#ifndef PXGUARD_CLINUX_SHIM_H
#define PXGUARD_CLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>

#include <sys/socket.h>
int pthread_setname_np(pthread_t thread, const char *name);
int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
#include <time.h>
int pthread_timedjoin_np(pthread_t thread, void **retval, const struct timespec *abstime);

/* CPUs in this thread's affinity mask; 0 when unknown. sched_getaffinity and
   CPU_COUNT need _GNU_SOURCE, which would change glibc's struct definitions
   against Swift's Glibc module, so the call is declared here with a plain mask. */
#include <stddef.h>
int sched_getaffinity(int pid, size_t cpusetsize, void *mask);
static inline int pxg_affinity_cpu_count(void) {
    unsigned long mask[64] = {0}; /* 4096 CPUs */
    if (sched_getaffinity(0, sizeof(mask), mask) != 0) return 0;
    int count = 0;
    for (size_t i = 0; i < sizeof(mask) / sizeof(mask[0]); i++) count += __builtin_popcountl(mask[i]);
    return count;
}

static inline int pxg_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
#endif
