/*
 * worker: a thread with its own loop.  Owns the loop's listeners, pools,
 * upstream keep-alive pools and the graceful drain.  Touches other threads'
 * state never; main reaches it through the wakeup async handle.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "exchange.h"
#include "listener.h"
#include "log.h"
#include "sesscache.h"
#include "tickets.h"
#include "tls.h"
#include "upstream.h"

struct worker *worker_of(uv_handle_t *handle)
{
    return container_of(handle->loop, struct worker, loop);
}

void worker_alloc_read(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct worker *w = worker_of(handle);
    (void)suggested;
    /* One buffer for every socket of the loop: a read callback consumes or
     * copies what it got before the next read can start. */
    buf->base = w->read_buf;
    buf->len = sizeof(w->read_buf);
}

static void on_flush_logs(uv_prepare_t *p)
{
    struct worker *w = p->data;
    log_buf_flush(&w->access);
}

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void close_walked(uv_handle_t *h, void *arg)
{
    (void)arg;
    close_if_open(h);
}

/* Everything is drained: let the loop end. */
static void finish_stop(struct worker *w)
{
    for (size_t i = 0; i < w->cfg->nupstreams; i++)
        upstream_pool_close(&w->upstreams[i]);
    log_buf_flush(&w->access);
    close_if_open((uv_handle_t *)&w->wakeup);
    close_if_open((uv_handle_t *)&w->flush);
    close_if_open((uv_handle_t *)&w->drain_timer);
}

void worker_conn_closed(struct worker *w)
{
    w->nconns--;
    if (w->stopping && w->nconns == 0)
        finish_stop(w);
}

static void on_drain_deadline(uv_timer_t *t)
{
    struct worker *w = t->data;
    if (w->nconns > 0)
        log_warn("worker %u: shutdown_timeout reached, closing %llu connection(s)", w->id,
                 (unsigned long long)w->nconns);
    for (struct conn *c = w->conns; c != NULL; c = c->next)
        conn_abort(c);
}

static void begin_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_stop(&w->listeners[i]);
    struct conn *next;
    for (struct conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        conn_drain(c);
    }
    if (w->nconns == 0) {
        finish_stop(w);
        return;
    }
    uint64_t ms = w->cfg->shutdown_timeout_ms ? w->cfg->shutdown_timeout_ms : 1;
    uv_timer_start(&w->drain_timer, on_drain_deadline, ms, 0);
}

static void on_wakeup(uv_async_t *a)
{
    struct worker *w = a->data;
    if (__atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE))
        begin_stop(w);
}

int worker_init(struct worker *w, unsigned id, const struct runtime *rt, char *err,
                size_t errlen)
{
    const struct cfg *cfg = rt->cfg;
    memset(w, 0, offsetof(struct worker, read_buf));
    w->id = id;
    w->rt = rt;
    w->cfg = rt->cfg;
    w->max_conns = (cfg->limits.max_connections + cfg->workers - 1) / cfg->workers;
    if (uv_loop_init(&w->loop) != 0) {
        snprintf(err, errlen, "worker %u: cannot create an event loop", id);
        return -1;
    }
    size_t head = cfg->limits.max_header_bytes > 32768 ? cfg->limits.max_header_bytes : 32768;
    buf_pool_init(&w->chunks, 16384, 1024);
    buf_pool_init(&w->inbufs, head + 16384, 256);
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    uv_prepare_init(&w->loop, &w->flush);
    w->flush.data = w;
    uv_prepare_start(&w->flush, on_flush_logs);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_unref((uv_handle_t *)&w->drain_timer);

    w->upstreams = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*w->upstreams));
    w->listeners = calloc(cfg->nlisteners, sizeof(*w->listeners));
    w->tickets = calloc(cfg->nlisteners, sizeof(*w->tickets));
    if (w->upstreams == NULL || w->listeners == NULL || w->tickets == NULL) {
        snprintf(err, errlen, "worker %u: out of memory", id);
        return -1;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (upstream_pool_init(&w->upstreams[i], w, &cfg->upstreams[i]) != 0) {
            snprintf(err, errlen, "worker %u: out of memory", id);
            return -1;
        }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *lc = &cfg->listeners[i];
        struct tls_ctx_set *tls = NULL;
        struct tls_resumption res = {
            .cache = rt->caches[i],
            .cache_timeout_s = lc->tls.session_cache.timeout_ms / 1000,
            .ticket_lifetime_s = lc->tls.session_tickets.rotate_ms / 1000,
        };
        if (rt->seeds[i] != NULL) {
            w->tickets[i] = res.tickets = ticket_keys_new(rt->seeds[i]);
            if (res.tickets == NULL) {
                snprintf(err, errlen, "worker %u: cannot set up ticket keys", id);
                return -1;
            }
        }
        if (tls_ctx_set_new(&tls, &lc->tls, rt->certs[i], rt->ncerts[i], &res, err, errlen) != 0)
            return -1;
        int rc = listener_start(&w->listeners[i], w, lc, tls, rt->listen_fds[i][id], rt->ports[i]);
        w->nlisteners++;
        if (rc != 0) {
            snprintf(err, errlen, "listener \"%s\": listen: %s", lc->name, uv_strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

int worker_start(struct worker *w)
{
    return uv_thread_create(&w->thread, worker_main, w);
}

void worker_stop(struct worker *w)
{
    __atomic_store_n(&w->stop_requested, 1, __ATOMIC_RELEASE);
    uv_async_send(&w->wakeup);
}

void worker_join(struct worker *w)
{
    uv_thread_join(&w->thread);
}

void worker_destroy(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        tls_ctx_set_free(&w->listeners[i].tls);
    for (size_t i = 0; w->tickets != NULL && i < w->cfg->nlisteners; i++)
        ticket_keys_free(&w->tickets[i]);
    free(w->tickets);
    /* Closing handles of a worker that never ran (start-up failure). */
    uv_walk(&w->loop, close_walked, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    exchange_pool_free(w);
    buf_pool_destroy(&w->chunks);
    buf_pool_destroy(&w->inbufs);
    free(w->upstreams);
    free(w->listeners);
}
