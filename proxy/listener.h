/*
 * listener: listening sockets.  listener_bind_group() runs on the main
 * thread and binds one SO_REUSEPORT socket per worker, so that the kernel
 * spreads accepts over the loops; each worker then listens on its own
 * socket and accepts into conn.  A worker's listener survives reloads that
 * keep its bind address.
 *
 * moat accepts itself (accept4 on a uv_poll_t) rather than through
 * uv_listen(): when file descriptors run out, libuv 1.44 retries accept in
 * a tight loop once its one reserve descriptor is taken by another thread.
 * Here each worker keeps its own reserve: out of descriptors, it closes the
 * reserve, accepts and closes what waits in the backlog (shedding it), and
 * takes the reserve back; without a reserve it pauses accepting for
 * LISTENER_PAUSE_MS.  The loop never spins.
 */
#ifndef MOAT_LISTENER_H
#define MOAT_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

#include "config.h"

struct worker;

/* Ownership: listener_start() allocates, the last close callback frees. */
struct listener {
    uv_poll_t poll;             /* readable: connections wait in the backlog */
    uv_timer_t pause;           /* accepting paused: out of file descriptors */
    int fd;
    int handles;
    uint64_t shed;              /* connections closed unserved since the last log */
    uint64_t last_log_ms;
    struct worker *w;
    size_t index;               /* in the worker's current configuration */
    unsigned port;
    char bind[128];             /* as configured */
    char name[72];
};

/* 1 if a listener configured as cfg can keep the socket of one configured
 * with name and bind: the same address, and the same name when the port
 * is 0 (each port-0 listener has a port of its own). */
int listener_same_socket(const struct cfg_listener *cfg, const char *name, const char *bind);

/*
 * Binds n sockets to l->addr (port 0 picks one port for all of them).
 * Refuses an address another process already holds, even with
 * SO_REUSEPORT.  Returns 0 and fds[0..n), the bound port in *port; or -1
 * with err set.
 */
int listener_bind_group(const struct cfg_listener *l, unsigned n, int *fds, unsigned *port,
                        char *err, size_t errlen);

#define LISTENER_PAUSE_MS 100

/* Listens on fd (which it owns from now on, even on failure) in w's loop
 * as listener index of the worker's configuration.  Returns the listener,
 * or NULL with err set. */
struct listener *listener_start(struct worker *w, const struct cfg_listener *cfg, size_t index,
                                int fd, unsigned port, char *err, size_t errlen);
/* Stops accepting; the listener is freed once its handle closed. */
void listener_stop(struct listener *l);

#endif
