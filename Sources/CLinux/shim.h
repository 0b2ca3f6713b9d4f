// Linux interfaces the Glibc module does not export: epoll, eventfd, thread names.
#ifndef PXGUARD_CLINUX_SHIM_H
#define PXGUARD_CLINUX_SHIM_H
#define _GNU_SOURCE 1
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>

#include <sys/socket.h>
int pthread_setname_np(pthread_t thread, const char *name);
int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

/* CPUs in this thread's affinity mask (CPU_COUNT is a macro); 0 when unknown. */
#include <sched.h>
static inline int pxg_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    return CPU_COUNT(&set);
}

static inline int pxg_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
#endif
