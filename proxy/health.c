/*
 * health: the active checker.  Owns its targets, their probes and their
 * verdicts; runs only on the main loop.
 */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "runtime.h"

#define PROBE_MAX_RESPONSE 64

struct target;

/* One check in flight.  Ownership: the target starts it; freed in the
 * close callback of its socket. */
struct probe {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    struct target *t;           /* NULL once the target gave up on it */
    char request[512];
    char response[PROBE_MAX_RESPONSE + 1];
    size_t len;
};

struct target {
    struct target *next;
    struct health *h;
    char upstream[72];
    char server[128];
    struct sockaddr_storage addr;
    char path[256];
    uint64_t interval_ms;
    uint64_t timeout_ms;
    struct health_state *state; /* never freed before the process ends */
    uv_timer_t timer;
    struct probe *probe;
    int active;                 /* still configured */
};

struct retired {
    struct retired *next;
    struct health_state *state;
};

struct health {
    uv_loop_t *loop;
    struct target *targets;
    struct retired *retired;    /* verdicts of targets no longer checked */
    int stopping;
};

static void schedule(struct target *t, uint64_t ms);

static void on_probe_close(uv_handle_t *h)
{
    free(h->data);
}

static void end_probe(struct target *t, int up, const char *why)
{
    struct probe *p = t->probe;
    if (p != NULL) {
        t->probe = NULL;
        p->t = NULL;
        uv_close((uv_handle_t *)&p->tcp, on_probe_close);
    }
    int was = __atomic_load_n(&t->state->up, __ATOMIC_RELAXED);
    if (was != up) {
        __atomic_store_n(&t->state->up, up, __ATOMIC_RELAXED);
        if (up)
            log_info("upstream %s: server %s is up again", t->upstream, t->server);
        else
            log_warn("upstream %s: server %s is down: %s", t->upstream, t->server, why);
    }
    schedule(t, t->interval_ms);
}

static void on_probe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;
    (void)suggested;
    buf->base = p->response + p->len;
    buf->len = PROBE_MAX_RESPONSE - p->len;
}

static void on_probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct probe *p = s->data;
    (void)buf;
    if (p->t == NULL || n == 0)
        return;
    if (n > 0)
        p->len += (size_t)n;
    p->response[p->len] = '\0';
    /* "HTTP/1.x NNN" is all the verdict needs. */
    if (p->len >= 12 || n < 0 || p->len == PROBE_MAX_RESPONSE) {
        int status = 0;
        if (strncmp(p->response, "HTTP/1.", 7) == 0 && p->len >= 12)
            status = atoi(p->response + 9);
        char why[64];
        snprintf(why, sizeof(why), status ? "status %d" : "no HTTP response", status);
        end_probe(p->t, status >= 200 && status < 400, why);
    }
}

static void on_probe_written(uv_write_t *req, int status)
{
    struct probe *p = req->data;
    if (p->t != NULL && status < 0)
        end_probe(p->t, 0, uv_strerror(status));
}

static void on_probe_connect(uv_connect_t *req, int status)
{
    struct probe *p = req->data;
    struct target *t = p->t;
    if (t == NULL)
        return;
    if (status < 0) {
        end_probe(t, 0, uv_strerror(status));
        return;
    }
    uv_buf_t b = uv_buf_init(p->request, (unsigned)strlen(p->request));
    p->write_req.data = p;
    if (uv_write(&p->write_req, (uv_stream_t *)&p->tcp, &b, 1, on_probe_written) != 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, on_probe_alloc, on_probe_read) != 0)
        end_probe(t, 0, "write failed");
}

static void start_probe(struct target *t)
{
    struct probe *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        schedule(t, t->interval_ms);
        return;
    }
    p->t = t;
    snprintf(p->request, sizeof(p->request),
             "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat-health-check\r\n"
             "Connection: close\r\n\r\n",
             t->path, t->server);
    uv_tcp_init(t->h->loop, &p->tcp);
    p->tcp.data = p;
    p->connect_req.data = p;
    t->probe = p;
    if (uv_tcp_connect(&p->connect_req, &p->tcp, (struct sockaddr *)&t->addr, on_probe_connect) != 0) {
        end_probe(t, 0, "cannot connect");
        return;
    }
    schedule(t, t->timeout_ms);
}

static void on_target_timer(uv_timer_t *timer)
{
    struct target *t = timer->data;
    if (t->probe != NULL)
        end_probe(t, 0, "timed out");
    else
        start_probe(t);
}

static void schedule(struct target *t, uint64_t ms)
{
    uv_timer_start(&t->timer, on_target_timer, ms, 0);
}

struct health *health_new(uv_loop_t *loop)
{
    struct health *h = calloc(1, sizeof(*h));
    if (h != NULL)
        h->loop = loop;
    return h;
}

static struct target *find_target(struct health *h, const struct cfg_upstream *u,
                                  const struct cfg_server *s)
{
    for (struct target *t = h->targets; t != NULL; t = t->next)
        if (!t->active && strcmp(t->upstream, u->name) == 0 && strcmp(t->server, s->name) == 0 &&
            memcmp(&t->addr, &s->addr, sizeof(t->addr)) == 0)
            return t;
    return NULL;
}

static struct target *new_target(struct health *h, const struct cfg_upstream *u,
                                 const struct cfg_server *s)
{
    struct target *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->state = calloc(1, sizeof(*t->state))) == NULL) {
        free(t);
        return NULL;
    }
    t->h = h;
    snprintf(t->upstream, sizeof(t->upstream), "%s", u->name);
    snprintf(t->server, sizeof(t->server), "%s", s->name);
    t->addr = s->addr;
    t->state->up = 1; /* until a check says otherwise, as nginx and HAProxy assume */
    uv_timer_init(h->loop, &t->timer);
    t->timer.data = t;
    /* Appended: /metrics lists servers in the order the file names them. */
    struct target **tail = &h->targets;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = t;
    schedule(t, 0);
    return t;
}

static void on_target_close(uv_handle_t *handle)
{
    free(handle->data);
}

/* Stops checking targets the new configuration dropped; their verdicts
 * stay allocated (an old generation may still read them). */
static void drop_inactive(struct health *h)
{
    struct target **link = &h->targets;
    while (*link != NULL) {
        struct target *t = *link;
        if (t->active) {
            link = &t->next;
            continue;
        }
        *link = t->next;
        struct retired *r = calloc(1, sizeof(*r));
        if (r != NULL) {
            r->state = t->state;
            r->next = h->retired;
            h->retired = r;
        }
        if (t->probe != NULL) {
            t->probe->t = NULL;
            uv_close((uv_handle_t *)&t->probe->tcp, on_probe_close);
        }
        uv_close((uv_handle_t *)&t->timer, on_target_close);
    }
}

int health_apply(struct health *h, struct runtime *rt)
{
    const struct cfg *cfg = rt->cfg;
    for (struct target *t = h->targets; t != NULL; t = t->next)
        t->active = 0;
    rt->health = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*rt->health));
    if (rt->health == NULL)
        return -1;
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const struct cfg_upstream *up = &cfg->upstreams[u];
        if (!up->health_check.enabled)
            continue;
        rt->health[u] = calloc(up->nservers ? up->nservers : 1, sizeof(*rt->health[u]));
        if (rt->health[u] == NULL)
            return -1;
        for (size_t s = 0; s < up->nservers; s++) {
            struct target *t = find_target(h, up, &up->servers[s]);
            if (t == NULL && (t = new_target(h, up, &up->servers[s])) == NULL)
                return -1;
            t->active = 1;
            snprintf(t->path, sizeof(t->path), "%s", up->health_check.path);
            t->interval_ms = up->health_check.interval_ms;
            t->timeout_ms = up->health_check.timeout_ms;
            rt->health[u][s] = t->state;
        }
    }
    drop_inactive(h);
    return 0;
}

void health_stop(struct health **hp)
{
    struct health *h = *hp;
    if (h == NULL)
        return;
    *hp = NULL;
    for (struct target *t = h->targets; t != NULL; t = t->next)
        t->active = 0;
    drop_inactive(h);
    /* Workers are gone by now: the verdicts can go. */
    while (h->retired != NULL) {
        struct retired *r = h->retired;
        h->retired = r->next;
        free(r->state);
        free(r);
    }
    free(h);
}

int health_view(const struct health *h, size_t i, struct health_view *out)
{
    for (const struct target *t = h->targets; t != NULL; t = t->next, i--) {
        if (i == 0) {
            out->upstream = t->upstream;
            out->server = t->server;
            out->up = __atomic_load_n(&t->state->up, __ATOMIC_RELAXED);
            return 0;
        }
    }
    return -1;
}
