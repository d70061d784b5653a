/*
 * upstream: connections from a worker to upstream servers.  Owns server
 * choice (round robin, skipping servers tried for this request), connects
 * with a timeout, the per-worker keep-alive pool of idle connections, and
 * the bytes queued towards the server.  What travels on a connection is the
 * exchange's business: upstream reports reads, EOF and errors to its owner
 * through struct upconn_owner.
 */
#ifndef MOAT_UPSTREAM_H
#define MOAT_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "deadline.h"
#include "config.h"

struct worker;
struct upconn;
struct health_state;

/* What the exchange using a connection hears about it. */
struct upconn_owner_ops {
    void (*on_connect)(void *owner, struct upconn *up, int status);
    /* n > 0 bytes read; UV_EOF or another UV_E* code. */
    void (*on_read)(void *owner, struct upconn *up, const char *p, ssize_t n);
    /* The output queue drained (status 0) or a write failed. */
    void (*on_written)(void *owner, struct upconn *up, int status);
    void (*on_timeout)(void *owner, struct upconn *up);
};

struct upconn {
    uv_tcp_t tcp;
    struct deadline timer;
    uv_connect_t connect_req;
    struct worker *w;
    struct upstream_pool *pool;
    size_t server;
    struct outq out;
    const struct upconn_owner_ops *ops;
    void *owner;                /* NULL while idle in the pool */
    struct upconn *next_idle;
    int connected;
    int reading;
    int peer_closed;            /* EOF or an error was read: never pooled */
    int counted;                /* in pool->active for least_conn */
    int reused;                 /* came from the keep-alive pool */
    int ack_due;                /* idle; our delayed ACK not forced out yet */
    uint64_t idle_ms;           /* how long it stays pooled after that */
    int closing;
    int handles;                /* libuv handles not yet closed */
};

/* One per configured upstream per worker generation. */
struct upstream_pool {
    const struct cfg_upstream *cfg;
    struct worker *w;
    struct health_state **health; /* per server; NULL: no active checks */
    size_t next;                /* round-robin cursor */
    struct upconn **idle;       /* per server: LIFO of idle connections */
    unsigned *nidle;
    unsigned *active;           /* per server: connections in use */
    uint64_t *down_until;       /* per server: skipped until then (uv_now ms) */
};

/* How long a server that refused a connection is skipped by a worker when
 * the upstream has others (nginx's fail_timeout). */
#define UPSTREAM_FAIL_TIMEOUT_MS 10000

int upstream_pool_init(struct upstream_pool *p, struct worker *w, const struct cfg_upstream *cfg,
                       struct health_state **health);
/* A connect to server failed or timed out: skip it for a while. */
void upstream_mark_failed(struct upstream_pool *p, size_t server);
/* Closes idle connections; in-use ones belong to their exchanges. */
void upstream_pool_close(struct upstream_pool *p);

/*
 * Picks a server not in tried (a bitmask over the first 64 servers) that is
 * neither failing its health checks nor marked failed: round robin, or the
 * fewest connections in use with least_conn.  Takes an idle connection to
 * it or starts connecting.  on_connect fires for new
 * connections only; a pooled one is returned ready (up->reused set).
 * Returns NULL when every server was tried or memory ran out.
 */
struct upconn *upstream_acquire(struct upstream_pool *p, uint64_t *tried,
                                const struct upconn_owner_ops *ops, void *owner);
/* A new connection to server, never a pooled one (retrying after a pooled
 * connection turned out stale). */
struct upconn *upstream_connect(struct upstream_pool *p, size_t server,
                                const struct upconn_owner_ops *ops, void *owner);
/* Arms (ms > 0) or stops (ms == 0) the connection's timer. */
void upconn_set_timeout(struct upconn *up, uint64_t ms);
/* Begins reading; reads go to ops->on_read. */
int upconn_read_start(struct upconn *up);
void upconn_read_stop(struct upconn *up);
/* Starts writing what is queued in up->out. */
int upconn_flush(struct upconn *up);
/* Back into the keep-alive pool, or closed when the pool is full. */
void upconn_release(struct upconn *up);
/* Closes now; no callback reaches the owner afterwards. */
void upconn_close(struct upconn *up);

#endif
