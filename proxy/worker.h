/*
 * worker: one thread, one libuv loop, and everything that loop owns: its
 * listening sockets, its connections, its current generation (see gen.h),
 * its buffer pool and its access-log buffer.  Other threads reach a worker
 * only through worker_post_runtime() and worker_stop() (a uv_async_t).
 */
#ifndef MOAT_WORKER_H
#define MOAT_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"

struct conn;
struct gen;
struct redir;
struct listener;
struct runtime;
struct worker;

#define WORKER_READ_BUF (64 * 1024)
#define WORKER_SCRATCH (16 * 1024)

/* Called on the worker's thread: wake the main loop with an async handle. */
typedef void (*worker_event_cb)(struct worker *w, void *arg);

struct worker_hooks {
    worker_event_cb on_applied;     /* a posted runtime is in use (or dropped) */
    worker_event_cb on_exit;        /* the loop has ended: drained */
    void *arg;
};

struct worker {
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;
    uv_prepare_t before_poll;
    uv_timer_t drain_timer;
    uv_timer_t decay_timer;             /* buffer pools give back what bursts left */

    struct gen *gen;                    /* current generation */
    struct listener **listeners;        /* one per listener of gen->cfg */
    size_t nlisteners;
    struct buf_pool chunks;             /* output queues */
    struct outq_written written;        /* output queues owed on_written */
    int reserve_fd;                     /* spare descriptor for shedding (listener.c) */

    struct conn *conns;                 /* every open client connection */
    struct redir *redirects;            /* open redirect connections */
    uint64_t nconns;
    uint64_t full_logged_ms;            /* last "max_connections reached" line; 0: none */

    int stopping;
    int stop_requested;                 /* set by another thread */
    struct runtime *posted;             /* set by another thread (atomic exchange) */
    struct worker_hooks hooks;
    struct metrics metrics;
    struct log_buf access;

    char read_buf[WORKER_READ_BUF];     /* every read lands here first */
    char scratch[WORKER_SCRATCH];       /* plaintext bound for TLS */
};

/* Prepares w on the calling thread: its loop, and a generation for rt
 * with listeners on rt's sockets.  Returns 0 or -1 with err set. */
int worker_init(struct worker *w, unsigned id, struct runtime *rt,
                const struct worker_hooks *hooks, char *err, size_t errlen);
int worker_start(struct worker *w);
/* From any thread: switch new connections to rt (a reload).  Takes a
 * reference to rt; on_applied fires once the worker has switched. */
void worker_post_runtime(struct worker *w, struct runtime *rt);
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
