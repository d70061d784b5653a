/*
 * buf: chunk pool and output queue.  Touches only libuv streams handed to
 * it; never parses or interprets bytes.
 */
#include "buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void buf_pool_init(struct buf_pool *pool, size_t chunk_size, unsigned max_free)
{
    memset(pool, 0, sizeof(*pool));
    pool->chunk_size = chunk_size;
    pool->max_free = max_free;
}

void buf_pool_destroy(struct buf_pool *pool)
{
    while (pool->free != NULL) {
        struct buf_chunk *c = pool->free;
        pool->free = c->next;
        free(c);
    }
    pool->nfree = 0;
}

struct buf_chunk *buf_chunk_get(struct buf_pool *pool)
{
    struct buf_chunk *c = pool->free;
    if (c != NULL) {
        pool->free = c->next;
        pool->nfree--;
        if (pool->nfree < pool->low_free)
            pool->low_free = pool->nfree;
    } else {
        c = malloc(sizeof(*c) + pool->chunk_size);
        if (c == NULL)
            return NULL;
        c->cap = (uint32_t)pool->chunk_size;
    }
    c->next = NULL;
    c->len = 0;
    pool->in_use++;
    return c;
}

void buf_chunk_put(struct buf_pool *pool, struct buf_chunk **chunk)
{
    struct buf_chunk *c = *chunk;
    if (c == NULL)
        return;
    *chunk = NULL;
    assert(pool->in_use > 0);
    pool->in_use--;
    if (pool->nfree >= pool->max_free) {
        free(c);
        return;
    }
    c->next = pool->free;
    pool->free = c;
    pool->nfree++;
}

void buf_pool_decay(struct buf_pool *pool)
{
    for (unsigned idle = pool->low_free; idle > 0 && pool->free != NULL; idle--) {
        struct buf_chunk *c = pool->free;
        pool->free = c->next;
        pool->nfree--;
        free(c);
    }
    pool->low_free = pool->nfree;
}

void outq_init(struct outq *q, struct buf_pool *pool, uv_stream_t *stream,
               struct outq_written *written, outq_written_cb on_written)
{
    memset(q, 0, sizeof(*q));
    q->pool = pool;
    q->stream = stream;
    q->written = written;
    q->on_written = on_written;
    q->req.data = q;
}

int outq_append(struct outq *q, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        struct buf_chunk *t = q->tail;
        if (t == NULL || t == q->last_inflight || t->len == t->cap) {
            struct buf_chunk *c = buf_chunk_get(q->pool);
            if (c == NULL)
                return UV_ENOMEM;
            if (t == NULL)
                q->head = c;
            else
                t->next = c;
            q->tail = t = c;
        }
        size_t n = t->cap - t->len;
        if (n > len)
            n = len;
        memcpy(t->data + t->len, p, n);
        t->len += (uint32_t)n;
        q->bytes += n;
        p += n;
        len -= n;
    }
    return 0;
}

static void owe_report(struct outq *q)
{
    if (q->written_pprev != NULL)
        return;
    struct outq_written *list = q->written;
    q->written_next = list->head;
    if (list->head != NULL)
        list->head->written_pprev = &q->written_next;
    list->head = q;
    q->written_pprev = &list->head;
}

static void forget_report(struct outq *q)
{
    if (q->written_pprev == NULL)
        return;
    *q->written_pprev = q->written_next;
    if (q->written_next != NULL)
        q->written_next->written_pprev = q->written_pprev;
    q->written_next = NULL;
    q->written_pprev = NULL;
}

void outq_report_written(struct outq_written *list)
{
    struct outq *q;
    while ((q = list->head) != NULL) {
        forget_report(q);
        q->on_written(q, 0);
    }
}

/* Frees the n chunks at the head, which have been written. */
static void drop_head_chunks(struct outq *q, unsigned n)
{
    while (n-- > 0) {
        struct buf_chunk *c = q->head;
        q->head = c->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->bytes -= c->len - q->head_off;
        q->head_off = 0;
        buf_chunk_put(q->pool, &c);
    }
}

/* Accounts for n bytes written from the head, which nothing has in flight. */
static void consume(struct outq *q, size_t n)
{
    while (n > 0) {
        struct buf_chunk *c = q->head;
        size_t left = c->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            q->bytes -= n;
            return;
        }
        n -= left;
        drop_head_chunks(q, 1);
    }
}

static void on_outq_write_done(uv_write_t *req, int status)
{
    struct outq *q = req->data;
    unsigned n = q->inflight;
    q->inflight = 0;
    q->last_inflight = NULL;
    drop_head_chunks(q, n);
    q->on_written(q, status);
}

/* Points iov at up to OUTQ_MAX_IOV chunks from the head; returns how many and
 * their total length in *total. */
static unsigned gather(struct outq *q, size_t *total, struct buf_chunk **last)
{
    unsigned n = 0;
    *total = 0;
    for (struct buf_chunk *c = q->head; c != NULL && n < OUTQ_MAX_IOV; c = c->next) {
        uint32_t off = c == q->head ? q->head_off : 0;
        if (c->len == off)
            break;
        q->iov[n++] = uv_buf_init(c->data + off, c->len - off);
        *total += c->len - off;
        *last = c;
    }
    return n;
}

int outq_flush(struct outq *q)
{
    if (q->inflight > 0 || q->head == NULL)
        return 0;
    size_t total;
    struct buf_chunk *last = NULL;
    unsigned n = gather(q, &total, &last);
    if (n == 0)
        return 0;
    if (q->written != NULL) {
        int rc;
        while ((rc = uv_try_write(q->stream, q->iov, n)) > 0) {
            consume(q, (size_t)rc);
            if ((size_t)rc < total)
                break;
            if ((n = gather(q, &total, &last)) == 0) {
                owe_report(q);
                return 0;
            }
        }
        /* What is left (the socket is full, or an error that uv_write will
         * report through on_written) goes the asynchronous way. */
        n = gather(q, &total, &last);
    }
    int rc = uv_write(&q->req, q->stream, q->iov, n, on_outq_write_done);
    if (rc == 0) {
        forget_report(q);  /* the uv_write callback reports for both */
        q->inflight = n;
        q->last_inflight = last;
    }
    return rc;
}

void outq_move(struct outq *dst, struct outq *src)
{
    assert(src->inflight == 0 && src->head_off == 0);
    if (src->head == NULL)
        return;
    if (dst->tail != NULL)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    dst->bytes += src->bytes;
    src->head = src->tail = NULL;
    src->bytes = 0;
}

void outq_discard(struct outq *q)
{
    struct buf_chunk **link = &q->head;
    for (unsigned i = 0; i < q->inflight && *link != NULL; i++)
        link = &(*link)->next;
    struct buf_chunk *c = *link;
    *link = NULL;
    q->tail = NULL;
    for (struct buf_chunk *t = q->head; t != NULL; t = t->next)
        q->tail = t;
    if (q->inflight == 0 && c != NULL) {
        /* The head's written part is no longer counted in bytes. */
        q->bytes += q->head_off;
        q->head_off = 0;
    }
    while (c != NULL) {
        struct buf_chunk *next = c->next;
        q->bytes -= c->len;
        buf_chunk_put(q->pool, &c);
        c = next;
    }
}

void outq_release(struct outq *q)
{
    forget_report(q);
    outq_discard(q);
}

static int outq_sink_write(struct sink *s, const void *data, size_t len)
{
    struct outq_sink *os = (struct outq_sink *)s;
    return outq_append(os->q, data, len);
}

void outq_sink_init(struct outq_sink *s, struct outq *q)
{
    s->sink.write = outq_sink_write;
    s->q = q;
}
