/*
 * worker: a thread with its own loop.  Owns the loop's listeners, its
 * current generation, its chunk pool and the graceful drain.  Touches
 * other threads' state never; main reaches it through the wakeup async
 * handle, with a runtime to switch to or a stop request.
 */
#include "worker.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "gen.h"
#include "listener.h"
#include "log.h"
#include "redirect.h"
#include "runtime.h"
#include "strutil.h"

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

static void on_before_poll(uv_prepare_t *p)
{
    struct worker *w = p->data;
    outq_report_written(&w->written);
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

static void stop_listeners(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i] != NULL)
            listener_stop(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}

/* Everything is drained: let the loop end. */
static void finish_stop(struct worker *w)
{
    /* Idle pooled upstream connections of the current generation. */
    gen_unref(&w->gen);
    log_buf_flush(&w->access);
    close_if_open((uv_handle_t *)&w->wakeup);
    close_if_open((uv_handle_t *)&w->before_poll);
    close_if_open((uv_handle_t *)&w->drain_timer);
    close_if_open((uv_handle_t *)&w->decay_timer);
}

void worker_conn_closed(struct worker *w)
{
    w->nconns--;
    if (w->stopping && w->nconns == 0)
        finish_stop(w);
}

static void on_pool_decay(uv_timer_t *t)
{
    struct worker *w = t->data;
    buf_pool_decay(&w->chunks);
    if (w->gen != NULL)
        buf_pool_decay(&w->gen->inbufs);
}

static void on_drain_deadline(uv_timer_t *t)
{
    struct worker *w = t->data;
    if (w->nconns > 0)
        log_warn("worker %u: shutdown_timeout reached, closing %llu connection(s)", w->id,
                 (unsigned long long)w->nconns);
    for (struct conn *c = w->conns; c != NULL; c = c->next)
        conn_abort(c);
    redirect_drain(w, 1);
}

static void begin_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    stop_listeners(w);
    struct conn *next;
    for (struct conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        conn_drain(c);
    }
    redirect_drain(w, 0);
    if (w->nconns == 0) {
        finish_stop(w);
        return;
    }
    uint64_t ms = w->gen->cfg->shutdown_timeout_ms ? w->gen->cfg->shutdown_timeout_ms : 1;
    uv_timer_start(&w->drain_timer, on_drain_deadline, ms, 0);
}

/*
 * Listeners for rt's configuration: one whose bind address is unchanged
 * keeps its socket (and its accept queue); new ones listen on the sockets
 * main bound for rt; the rest close.  Nothing changes on failure.
 */
static int switch_listeners(struct worker *w, struct runtime *rt, char *err, size_t errlen)
{
    const struct cfg *cfg = rt->cfg;
    size_t n = cfg->nlisteners;
    struct listener **next = calloc(n ? n : 1, sizeof(*next));
    unsigned char *kept = calloc(w->nlisteners ? w->nlisteners : 1, 1);
    unsigned char *fresh = calloc(n ? n : 1, 1);
    int rc = next && kept && fresh ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct cfg_listener *lc = &cfg->listeners[i];
        if (rt->listen_fds[i] != NULL) {
            int fd = rt->listen_fds[i][w->id];
            rt->listen_fds[i][w->id] = -1;
            next[i] = listener_start(w, lc, i, fd, rt->ports[i], err, errlen);
            fresh[i] = 1;
            rc = next[i] ? 0 : -1;
            continue;
        }
        for (size_t j = 0; j < w->nlisteners && next[i] == NULL; j++) {
            if (!kept[j] && listener_same_socket(lc, w->listeners[j]->name, w->listeners[j]->bind)) {
                kept[j] = 1;
                next[i] = w->listeners[j];
            }
        }
        if (next[i] == NULL) {
            snprintf(err, errlen, "listener \"%s\": no socket to keep for %s", lc->name,
                     lc->bind);
            rc = -1;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            next[i]->index = i;
        for (size_t j = 0; j < w->nlisteners; j++)
            if (!kept[j])
                listener_stop(w->listeners[j]);
        free(w->listeners);
        w->listeners = next;
        w->nlisteners = n;
        next = NULL;
    }
    for (size_t i = 0; next != NULL && i < n; i++)
        if (fresh[i] && next[i] != NULL)
            listener_stop(next[i]);
    free(next);
    free(kept);
    free(fresh);
    return rc;
}

/* Makes rt this worker's configuration for new connections. */
static int apply_runtime(struct worker *w, struct runtime *rt, char *err, size_t errlen)
{
    struct gen *g = gen_new(w, rt, err, errlen);
    if (g == NULL)
        return -1;
    if (switch_listeners(w, rt, err, errlen) != 0) {
        gen_unref(&g);
        return -1;
    }
    gen_unref(&w->gen);
    w->gen = g;
    return 0;
}

static void on_wakeup(uv_async_t *a)
{
    struct worker *w = a->data;
    struct runtime *rt = __atomic_exchange_n(&w->posted, NULL, __ATOMIC_ACQ_REL);
    if (rt != NULL) {
        char err[512];
        if (w->stopping)
            ; /* nothing to switch to: the worker is draining */
        else if (apply_runtime(w, rt, err, sizeof(err)) != 0)
            log_error("worker %u: reload not applied: %s", w->id, err);
        runtime_unref(&rt);
        w->hooks.on_applied(w, w->hooks.arg);
    }
    if (__atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE))
        begin_stop(w);
}

int worker_init(struct worker *w, unsigned id, struct runtime *rt,
                const struct worker_hooks *hooks, char *err, size_t errlen)
{
    memset(w, 0, offsetof(struct worker, read_buf));
    w->id = id;
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->hooks = *hooks;
    if (uv_loop_init(&w->loop) != 0) {
        snprintf(err, errlen, "worker %u: cannot create an event loop", id);
        return -1;
    }
    buf_pool_init(&w->chunks, 16384, 1024);
    metrics_init(&w->metrics);
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    uv_prepare_init(&w->loop, &w->before_poll);
    w->before_poll.data = w;
    uv_prepare_start(&w->before_poll, on_before_poll);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_unref((uv_handle_t *)&w->drain_timer);
    uv_timer_init(&w->loop, &w->decay_timer);
    w->decay_timer.data = w;
    uv_timer_start(&w->decay_timer, on_pool_decay, 1000, 1000);
    uv_unref((uv_handle_t *)&w->decay_timer);
    return apply_runtime(w, rt, err, errlen);
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    w->hooks.on_exit(w, w->hooks.arg);
}

int worker_start(struct worker *w)
{
    return uv_thread_create(&w->thread, worker_main, w);
}

void worker_post_runtime(struct worker *w, struct runtime *rt)
{
    runtime_ref(rt);
    struct runtime *old = __atomic_exchange_n(&w->posted, rt, __ATOMIC_ACQ_REL);
    if (old != NULL) {
        /* Superseded before the worker took it: it still reports once. */
        runtime_unref(&old);
        w->hooks.on_applied(w, w->hooks.arg);
    }
    uv_async_send(&w->wakeup);
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
    struct runtime *rt = __atomic_exchange_n(&w->posted, NULL, __ATOMIC_ACQ_REL);
    runtime_unref(&rt);
    stop_listeners(w);
    gen_unref(&w->gen);
    /* Closing handles of a worker that never ran (start-up failure). */
    uv_walk(&w->loop, close_walked, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    if (w->reserve_fd >= 0)
        close(w->reserve_fd);
    buf_pool_destroy(&w->chunks);
    metrics_destroy(&w->metrics);
}
