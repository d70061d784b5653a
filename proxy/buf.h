/*
 * buf: fixed-size chunks recycled through a per-worker pool, and the output
 * queue that streams chunks to a libuv stream.
 *
 * A pool belongs to one worker (one thread); nothing here locks.  A chunk is
 * owned by whoever holds it: the pool, an output queue, or a connection.
 */
#ifndef MOAT_BUF_H
#define MOAT_BUF_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct buf_chunk {
    struct buf_chunk *next;
    uint32_t len;
    uint32_t cap;
    char data[];
};

struct buf_pool {
    struct buf_chunk *free;
    size_t chunk_size;  /* usable bytes per chunk */
    unsigned nfree;
    unsigned max_free;  /* chunks above this go back to malloc */
    unsigned low_free;  /* fewest chunks free since the last decay */
    size_t in_use;      /* chunks handed out and not returned */
};

void buf_pool_init(struct buf_pool *pool, size_t chunk_size, unsigned max_free);
void buf_pool_destroy(struct buf_pool *pool);
/* Returns an empty chunk (len 0) or NULL when memory is exhausted. */
struct buf_chunk *buf_chunk_get(struct buf_pool *pool);
/* Returns chunk to pool and NULLs *chunk; a NULL *chunk is ignored. */
void buf_chunk_put(struct buf_pool *pool, struct buf_chunk **chunk);
/* Frees the chunks that sat unused in the pool since the last call, so a
 * pool grown by a burst shrinks back once the burst is over; called once a
 * second, it keeps what steady traffic takes and gives back within two. */
void buf_pool_decay(struct buf_pool *pool);

struct outq;
/* Called when a write finished (status 0) or failed (a UV_E* code). */
typedef void (*outq_written_cb)(struct outq *q, int status);

#define OUTQ_MAX_IOV 16

/*
 * Queues of one worker whose bytes all left inside outq_flush and whose
 * on_written is still owed.  outq_flush writes directly when the socket
 * takes everything (a uv_write that completes at once costs libuv an
 * epoll_ctl to re-arm the watcher: a third of the syscalls of a small
 * keep-alive request); the owner's callback then runs from
 * outq_report_written, which the worker calls once per loop iteration before
 * it polls, never from inside outq_flush: the order callers know from
 * uv_write.
 */
struct outq_written {
    struct outq *head;
};

/*
 * Bytes waiting to be written to one stream, in order.  Embedded in its
 * owner; the owner's pool supplies and takes back the chunks.  At most one
 * uv_write is in flight; chunks in flight are never appended to.
 */
struct outq {
    struct buf_chunk *head;
    struct buf_chunk *tail;
    struct buf_pool *pool;
    uv_stream_t *stream;
    outq_written_cb on_written;
    struct outq_written *written; /* NULL: every write goes through uv_write */
    struct outq *written_next;    /* on written's list while a report is owed */
    struct outq **written_pprev;
    size_t bytes;        /* queued and not yet written, including in flight */
    uint32_t head_off;   /* bytes of the head chunk already written */
    unsigned inflight;   /* chunks at the head handed to uv_write */
    struct buf_chunk *last_inflight; /* never appended to; NULL when idle */
    uv_write_t req;
    uv_buf_t iov[OUTQ_MAX_IOV];
};

void outq_init(struct outq *q, struct buf_pool *pool, uv_stream_t *stream,
               struct outq_written *written, outq_written_cb on_written);
/* Copies len bytes to the end of the queue.  Returns 0 or UV_ENOMEM. */
int outq_append(struct outq *q, const void *data, size_t len);
/*
 * Starts writing what is queued unless a write is in flight.  Returns 0 or a
 * UV_E* code from uv_write (then nothing is in flight).  on_written follows
 * later either way.
 */
int outq_flush(struct outq *q);
/* Moves every chunk of src (nothing in flight or written) to the end of dst. */
void outq_move(struct outq *dst, struct outq *src);
/* Drops everything not in flight.  In-flight chunks are freed by the write
 * callback, which still fires (with UV_ECANCELED when the stream closes). */
void outq_discard(struct outq *q);
/* Before the owner frees q: drops what is queued and any report owed. */
void outq_release(struct outq *q);
/* Calls on_written(q, 0) for every queue that wrote everything directly. */
void outq_report_written(struct outq_written *list);


/*
 * Where serialised bytes go: an output queue, or the plaintext side of a TLS
 * session.  write returns 0 or a UV_E* code.
 */
struct sink {
    int (*write)(struct sink *s, const void *data, size_t len);
};

static inline int sink_write(struct sink *s, const void *data, size_t len)
{
    return len ? s->write(s, data, len) : 0;
}

/* A sink that appends to an outq; embed it beside the queue. */
struct outq_sink {
    struct sink sink;
    struct outq *q;
};

void outq_sink_init(struct outq_sink *s, struct outq *q);

#endif
