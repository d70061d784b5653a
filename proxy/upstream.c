/*
 * upstream: server choice, connects, the per-worker keep-alive pool and the
 * handles of upstream connections.  Knows nothing of HTTP: bytes and events
 * go to the connection's owner.  Frees a connection only in the last close
 * callback.
 */
#include "upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "health.h"
#include "log.h"
#include "sockopt.h"
#include "strutil.h"
#include "worker.h"

/* How long an idle pooled connection is kept before moat closes it, shorter
 * than the usual backend keep-alive timeouts (nginx 75 s, Node.js 5 s is the
 * outlier: a stale connection is retried for idempotent requests). */
#define UPSTREAM_IDLE_MS 4000
/* Connections idle beyond `keepalive` are kept this long: with more requests
 * in flight than `keepalive`, closing each surplus connection as its
 * response ends only to connect again for the next request cost a quarter
 * of all requests a new connection (and the backend a TIME_WAIT socket). */
#define UPSTREAM_SURPLUS_IDLE_MS 1000
/* A server that answers with more than it was asked for (a second,
 * unsolicited response, or one to a request it parsed out of the last
 * body) and has Nagle on holds those bytes until we ACK its last segment.
 * Linux delays that ACK up to 40 ms, and the next request would carry it:
 * the held bytes then arrive as that request's response, and every later
 * client gets the one before it (nginx and HAProxy do the same).  Forcing
 * the ACK out once a connection has been idle this long brings the extra
 * bytes in while the idle watcher can still close it; a busy connection,
 * reused sooner, pays nothing for it. */
#define UPSTREAM_ACK_AFTER_MS 5

static void on_upconn_close(uv_handle_t *h)
{
    struct upconn *up = h->data;
    if (--up->handles > 0)
        return;
    outq_release(&up->out);
    free(up);
}

static void remove_idle(struct upconn *up)
{
    struct upstream_pool *p = up->pool;
    struct upconn **link = &p->idle[up->server];
    while (*link != NULL && *link != up)
        link = &(*link)->next_idle;
    if (*link == up) {
        *link = up->next_idle;
        p->nidle[up->server]--;
    }
    up->next_idle = NULL;
}

static void uncount(struct upconn *up)
{
    if (up->counted) {
        up->pool->active[up->server]--;
        up->counted = 0;
    }
}

void upconn_close(struct upconn *up)
{
    if (up->closing)
        return;
    up->closing = 1;
    uncount(up);
    if (up->owner == NULL)
        remove_idle(up);
    up->owner = NULL;
    up->ops = NULL;
    uv_close((uv_handle_t *)&up->tcp, on_upconn_close);
    uv_close(deadline_handle(&up->timer), on_upconn_close);
}

static void on_upconn_timer(uv_timer_t *t)
{
    struct upconn *up = t->data;
    if (up->owner == NULL && up->ack_due) {
        up->ack_due = 0;
        sockopt_ack_now(&up->tcp);
        deadline_set(&up->timer, up->idle_ms);
        return;
    }
    if (up->owner == NULL) {
        upconn_close(up); /* idle too long in the pool */
        return;
    }
    up->ops->on_timeout(up->owner, up);
}

void upconn_set_timeout(struct upconn *up, uint64_t ms)
{
    if (up->closing)
        return;
    deadline_set(&up->timer, ms);
}

static void on_upconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct upconn *up = s->data;
    if (nread == 0 || up->closing)
        return;
    if (nread < 0) {
        /* libuv has stopped reading: a later upconn_read_start must not
         * take the flag for a live watcher. */
        up->reading = 0;
        up->peer_closed = 1;
    }
    if (up->owner == NULL) {
        /* Anything from an idle connection (data or EOF) ends it. */
        upconn_close(up);
        return;
    }
    up->ops->on_read(up->owner, up, buf->base, nread);
}

int upconn_read_start(struct upconn *up)
{
    if (up->reading)
        return 0;
    int rc = uv_read_start((uv_stream_t *)&up->tcp, worker_alloc_read, on_upconn_read);
    up->reading = rc == 0;
    return rc;
}

void upconn_read_stop(struct upconn *up)
{
    if (!up->closing && up->reading) {
        uv_read_stop((uv_stream_t *)&up->tcp);
        up->reading = 0;
    }
}

static void on_upconn_written(struct outq *q, int status)
{
    struct upconn *up = container_of(q, struct upconn, out);
    if (up->closing || up->owner == NULL)
        return;
    up->ops->on_written(up->owner, up, status);
}

int upconn_flush(struct upconn *up)
{
    return outq_flush(&up->out);
}

static void on_upconn_connect(uv_connect_t *req, int status)
{
    struct upconn *up = req->data;
    if (up->closing)
        return;
    deadline_set(&up->timer, 0);
    if (status == 0) {
        up->connected = 1;
        uv_tcp_nodelay(&up->tcp, 1);
    }
    up->ops->on_connect(up->owner, up, status);
}

int upstream_pool_init(struct upstream_pool *p, struct worker *w, const struct cfg_upstream *cfg,
                       struct health_state **health)
{
    size_t n = cfg->nservers ? cfg->nservers : 1;
    memset(p, 0, sizeof(*p));
    p->cfg = cfg;
    p->w = w;
    p->health = health;
    p->idle = calloc(n, sizeof(*p->idle));
    p->nidle = calloc(n, sizeof(*p->nidle));
    p->active = calloc(n, sizeof(*p->active));
    p->down_until = calloc(n, sizeof(*p->down_until));
    /* Workers start at different servers so that they do not all hit the
     * first one at once. */
    p->next = cfg->nservers ? w->id % cfg->nservers : 0;
    return p->idle && p->nidle && p->active && p->down_until ? 0 : UV_ENOMEM;
}

void upstream_mark_failed(struct upstream_pool *p, size_t server)
{
    /* A lone server is never taken out: there is nothing better to try
     * (nginx does the same). */
    if (p->cfg->nservers > 1)
        p->down_until[server] = uv_now(&p->w->loop) + UPSTREAM_FAIL_TIMEOUT_MS;
}

/* A server that failed lately is skipped until down_until, unless now is
 * 0: then only the health checks count. */
static int usable(const struct upstream_pool *p, size_t s, uint64_t now)
{
    if (p->health != NULL && p->health[s] != NULL &&
        !__atomic_load_n(&p->health[s]->up, __ATOMIC_RELAXED))
        return 0;
    return now == 0 || p->down_until[s] <= now;
}

void upstream_pool_close(struct upstream_pool *p)
{
    if (p->idle != NULL)
        for (size_t s = 0; s < p->cfg->nservers; s++)
            while (p->idle[s] != NULL)
                upconn_close(p->idle[s]);
    free(p->idle);
    free(p->nidle);
    free(p->active);
    free(p->down_until);
    p->idle = NULL;
    p->nidle = NULL;
    p->active = NULL;
    p->down_until = NULL;
}

struct upconn *upstream_connect(struct upstream_pool *p, size_t server,
                                const struct upconn_owner_ops *ops, void *owner)
{
    struct worker *w = p->w;
    struct upconn *up = calloc(1, sizeof(*up));
    if (up == NULL)
        return NULL;
    up->w = w;
    up->pool = p;
    up->server = server;
    up->ops = ops;
    up->owner = owner;
    uv_tcp_init(&w->loop, &up->tcp);
    deadline_init(&up->timer, &w->loop, on_upconn_timer, up);
    up->tcp.data = up;
    up->connect_req.data = up;
    up->handles = 2;
    outq_init(&up->out, &w->chunks, (uv_stream_t *)&up->tcp, &w->written,
              on_upconn_written);
    const struct sockaddr *sa = (const struct sockaddr *)&p->cfg->servers[server].addr;
    int rc = uv_tcp_connect(&up->connect_req, &up->tcp, sa, on_upconn_connect);
    if (rc != 0) {
        log_warn("upstream %s: connect to %s: %s", p->cfg->name, p->cfg->servers[server].name,
                 uv_strerror(rc));
        upconn_close(up);
        return NULL;
    }
    deadline_set(&up->timer, p->cfg->connect_timeout_ms);
    up->counted = 1;
    p->active[server]++;
    return up;
}

static long pick_server_at(struct upstream_pool *p, const uint64_t *tried, uint64_t now)
{
    size_t n = p->cfg->nservers;
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        size_t s = (p->next + i) % n;
        if ((s < 64 && (*tried & (1ull << s))) || !usable(p, s, now))
            continue;
        if (!p->cfg->least_conn)
            return (long)s;
        if (best < 0 || p->active[s] < p->active[best])
            best = (long)s;
    }
    return best;
}

/* The server to use next, or -1 when none is left to try.  When every
 * server left is skipped for a recent failure, they are tried all the same:
 * one bad moment each must not refuse the whole upstream for 10 s. */
static long pick_server(struct upstream_pool *p, const uint64_t *tried)
{
    long s = pick_server_at(p, tried, uv_now(&p->w->loop));
    return s >= 0 ? s : pick_server_at(p, tried, 0);
}

/* 1 if an idle connection has bytes or an EOF waiting that its watcher has
 * not seen yet: the server spoke out of turn, and whatever it said must
 * never become the next request's response. */
static int idle_spoke(struct upconn *up)
{
    uv_os_fd_t fd;
    char byte;
    if (uv_fileno((uv_handle_t *)&up->tcp, &fd) != 0)
        return 1;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

struct upconn *upstream_acquire(struct upstream_pool *p, uint64_t *tried,
                                const struct upconn_owner_ops *ops, void *owner)
{
    long picked;
    while ((picked = pick_server(p, tried)) >= 0) {
        size_t s = (size_t)picked;
        if (s < 64)
            *tried |= 1ull << s;
        p->next = (s + 1) % p->cfg->nservers;
        struct upconn *up = p->idle[s];
        while (up != NULL && idle_spoke(up)) {
            upconn_close(up); /* leaves the idle list */
            up = p->idle[s];
        }
        if (up != NULL) {
            /* It keeps reading: the owner now gets what arrives. */
            remove_idle(up);
            up->ack_due = 0;
            deadline_set(&up->timer, 0);
            up->ops = ops;
            up->owner = owner;
            up->reused = 1;
            up->counted = 1;
            p->active[s]++;
        } else if ((up = upstream_connect(p, s, ops, owner)) == NULL) {
            continue;
        }
        return up;
    }
    return NULL;
}

void upconn_release(struct upconn *up)
{
    struct upstream_pool *p = up->pool;
    if (up->closing)
        return;
    if (!up->connected || up->peer_closed || up->out.bytes > 0 || p->w->stopping ||
        p->cfg->keepalive == 0) {
        upconn_close(up);
        return;
    }
    int surplus = p->nidle[up->server] >= p->cfg->keepalive;
    uncount(up);
    up->owner = NULL;
    up->ops = NULL;
    up->reused = 0;
    up->next_idle = p->idle[up->server];
    p->idle[up->server] = up;
    p->nidle[up->server]++;
    up->idle_ms = surplus ? UPSTREAM_SURPLUS_IDLE_MS : UPSTREAM_IDLE_MS;
    up->ack_due = 1;
    deadline_set(&up->timer, UPSTREAM_ACK_AFTER_MS);
    /* Watch for the server closing it while idle. */
    if (upconn_read_start(up) != 0)
        upconn_close(up);
}
