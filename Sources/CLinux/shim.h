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

static inline int pxg_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
#endif
