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

void outq_init(struct outq *q, struct buf_pool *pool, uv_stream_t *stream,
               outq_written_cb on_written)
{
    memset(q, 0, sizeof(*q));
    q->pool = pool;
    q->stream = stream;
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

static void on_outq_write_done(uv_write_t *req, int status)
{
    struct outq *q = req->data;
    unsigned n = q->inflight;
    q->inflight = 0;
    q->last_inflight = NULL;
    while (n-- > 0) {
        struct buf_chunk *c = q->head;
        q->head = c->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->bytes -= c->len;
        buf_chunk_put(q->pool, &c);
    }
    q->on_written(q, status);
}

int outq_flush(struct outq *q)
{
    if (q->inflight > 0 || q->head == NULL)
        return 0;
    unsigned n = 0;
    struct buf_chunk *last = NULL;
    for (struct buf_chunk *c = q->head; c != NULL && n < OUTQ_MAX_IOV; c = c->next) {
        if (c->len == 0)
            break;
        q->iov[n++] = uv_buf_init(c->data, c->len);
        last = c;
    }
    if (n == 0)
        return 0;
    int rc = uv_write(&q->req, q->stream, q->iov, n, on_outq_write_done);
    if (rc == 0) {
        q->inflight = n;
        q->last_inflight = last;
    }
    return rc;
}

int outq_busy(const struct outq *q)
{
    return q->inflight > 0;
}

void outq_move(struct outq *dst, struct outq *src)
{
    assert(src->inflight == 0);
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
    while (c != NULL) {
        struct buf_chunk *next = c->next;
        q->bytes -= c->len;
        buf_chunk_put(q->pool, &c);
        c = next;
    }
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
