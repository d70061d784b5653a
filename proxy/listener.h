/*
 * listener: listening sockets.  listener_bind_group() runs on the main
 * thread and binds one SO_REUSEPORT socket per worker, so that the kernel
 * spreads accepts over the loops; each worker then listens on its own
 * socket and accepts into conn.
 */
#ifndef MOAT_LISTENER_H
#define MOAT_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

#include "config.h"

struct worker;
struct tls_ctx_set;

/* A worker's view of one configured listener. */
struct listener {
    uv_tcp_t tcp;
    struct worker *w;
    const struct cfg_listener *cfg;
    struct tls_ctx_set *tls;
    unsigned port;
    int open;
};

/*
 * Binds n sockets to l->addr (port 0 picks one port for all of them).
 * Refuses an address another process already holds, even with
 * SO_REUSEPORT.  Returns 0 and fds[0..n), the bound port in *port; or -1
 * with err set.
 */
int listener_bind_group(const struct cfg_listener *l, unsigned n, int *fds, unsigned *port,
                        char *err, size_t errlen);

/* Starts listening on fd in w's loop.  Returns 0 or a UV_E* code. */
int listener_start(struct listener *l, struct worker *w, const struct cfg_listener *cfg,
                   struct tls_ctx_set *tls, int fd, unsigned port);
/* Stops accepting; the handle closes asynchronously. */
void listener_stop(struct listener *l);

#endif
