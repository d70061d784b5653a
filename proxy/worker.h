/*
 * worker: one thread, one libuv loop, and everything that loop owns: its
 * listening sockets, its connections, its buffer pools, its upstream
 * keep-alive pools and its access-log buffer.  Other threads reach a worker
 * only through worker_stop() (a uv_async_t).
 */
#ifndef MOAT_WORKER_H
#define MOAT_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "config.h"
#include "log.h"

struct conn;
struct listener;
struct upstream_pool;
struct tls_ctx_set;
struct sesscache;
struct ticket_seed;
struct ticket_keys;

/* Set up by main before the workers start; read-only afterwards. */
struct runtime {
    struct cfg *cfg;
    struct cert_pair **certs;   /* per listener, cfg->listeners[i].tls.ncerts pairs */
    size_t *ncerts;
    int **listen_fds;           /* [listener][worker] bound, not yet listening */
    unsigned *ports;            /* bound port per listener */
    struct sesscache **caches;  /* per listener, NULL when disabled */
    struct ticket_seed **seeds; /* per listener, NULL when tickets are off */
};

/* Per-worker counters: written by the worker's thread only. */
struct worker_stats {
    uint64_t connections_total;
    uint64_t connections_refused;
    uint64_t handshakes;
    uint64_t handshakes_resumed;
    uint64_t handshake_errors;
    uint64_t requests;
};

#define WORKER_READ_BUF (64 * 1024)
#define WORKER_SCRATCH (16 * 1024)

struct worker {
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;
    uv_prepare_t flush;
    uv_timer_t drain_timer;
    const struct runtime *rt;
    struct cfg *cfg;

    struct listener *listeners;
    size_t nlisteners;
    struct ticket_keys **tickets;       /* per listener: this worker's keys */
    struct upstream_pool *upstreams;    /* one per cfg upstream */

    struct buf_pool chunks;             /* output queues */
    struct buf_pool inbufs;             /* request and response heads */
    void *free_exchanges;               /* recycled struct exchange */
    unsigned nfree_exchanges;

    struct conn *conns;                 /* every open client connection */
    uint64_t nconns;
    uint64_t max_conns;                 /* this worker's share of max_connections */

    int stopping;
    int stop_requested;                 /* set by another thread */
    int scratch_busy;
    struct worker_stats stats;
    struct log_buf access;

    char read_buf[WORKER_READ_BUF];     /* every read lands here first */
    char scratch[WORKER_SCRATCH];       /* plaintext bound for TLS */
};

/* Prepares w (loop, pools, listeners) on the calling thread.  Returns 0 or
 * -1 with err set. */
int worker_init(struct worker *w, unsigned id, const struct runtime *rt, char *err,
                size_t errlen);
/* Starts the worker's thread. */
int worker_start(struct worker *w);
/* From any thread: stop accepting and drain (graceful shutdown). */
void worker_stop(struct worker *w);
void worker_join(struct worker *w);
/* After join: frees what worker_init made. */
void worker_destroy(struct worker *w);

/* libuv alloc_cb that hands out the worker's shared read buffer. */
void worker_alloc_read(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
struct worker *worker_of(uv_handle_t *handle);

/* Called by conn when a connection is gone; may finish a drain. */
void worker_conn_closed(struct worker *w);

#endif
