/*
 * admin: the admin HTTP endpoint on the main loop.  Owns its listening
 * handle and its connections; reads (never writes) workers' counters, the
 * current runtime and the health checker.
 */
#include "admin.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "memcap.h"
#include "metrics.h"
#include "runtime.h"
#include "sesscache.h"
#include "strutil.h"
#include "worker.h"

#define ADMIN_MAX_REQUEST 8192
#define ADMIN_TIMEOUT_MS 5000

/* Ownership: admin_start allocates; freed once admin_stop ran and every
 * handle (listener and connections) closed. */
struct admin {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    struct admin_source src;
    struct admin_conn *conns;
    unsigned handles;
    int closing;
};

/* Ownership: allocated on accept, freed after both handles closed. */
struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    struct admin *admin;
    struct admin_conn *next;
    char *response;
    size_t len;
    int handles;
    int answered;
    char buf[ADMIN_MAX_REQUEST];
};

/* ---- text ---- */

struct text {
    char *p;
    size_t len, cap;
    int oom;
};

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0 || t->oom)
            return;
        if (t->p != NULL && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (p == NULL) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* A label value: backslash, double quote and newline escaped. */
static const char *label(const char *s, char *out, size_t len)
{
    size_t o = 0;
    for (; *s && o + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    return out;
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- sums over workers ---- */

static uint64_t sum_active(const struct admin_source *src)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < *src->nworkers; i++)
        n += STAT_GET(src->workers[i].metrics.active);
    return n;
}

static void render_listeners(struct text *t, const struct admin_source *src)
{
    const struct cfg *cfg = (*src->rt)->cfg;
    char l[256];
    static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};
    /* Every listener name any worker has counted for, current or not. */
    struct {
        const char *name;
        uint64_t tls, conns, refused, refused_memory, hs[2][2], errors, tickets[3];
    } sums[256];
    size_t n = 0;
    for (unsigned w = 0; w < *src->nworkers; w++) {
        struct metrics *m = &src->workers[w].metrics;
        pthread_mutex_lock(&m->lock);
        for (struct listener_stats *s = m->listeners; s != NULL; s = s->next) {
            size_t k;
            for (k = 0; k < n && strcmp(sums[k].name, s->name) != 0; k++)
                ;
            if (k == n) {
                if (n == sizeof(sums) / sizeof(sums[0]))
                    continue;
                memset(&sums[n], 0, sizeof(sums[n]));
                sums[n++].name = s->name;
            }
            sums[k].tls |= STAT_GET(s->tls);
            sums[k].conns += STAT_GET(s->connections);
            sums[k].refused += STAT_GET(s->refused);
            sums[k].refused_memory += STAT_GET(s->refused_memory);
            sums[k].errors += STAT_GET(s->handshake_errors);
            for (int v = 0; v < 2; v++)
                for (int r = 0; r < 2; r++)
                    sums[k].hs[v][r] += STAT_GET(s->handshakes[v][r]);
            sums[k].tickets[0] += STAT_GET(s->tickets.issued);
            sums[k].tickets[1] += STAT_GET(s->tickets.accepted);
            sums[k].tickets[2] += STAT_GET(s->tickets.rejected);
        }
        pthread_mutex_unlock(&m->lock);
    }
    family(t, "moat_connections_total", "counter", "Client connections accepted.");
    for (size_t k = 0; k < n; k++)
        text_printf(t, "moat_connections_total{listener=\"%s\"} %llu\n",
                    label(sums[k].name, l, sizeof(l)), (unsigned long long)sums[k].conns);
    family(t, "moat_connections_refused_total", "counter",
           "Client connections closed at once: max_connections reached, or max_memory.");
    for (size_t k = 0; k < n; k++) {
        text_printf(t, "moat_connections_refused_total{listener=\"%s\",reason=\"max_connections\"} %llu\n",
                    label(sums[k].name, l, sizeof(l)), (unsigned long long)sums[k].refused);
        text_printf(t, "moat_connections_refused_total{listener=\"%s\",reason=\"max_memory\"} %llu\n",
                    label(sums[k].name, l, sizeof(l)), (unsigned long long)sums[k].refused_memory);
    }
    /* Redirect listeners do no TLS: they get no TLS series. */
    family(t, "moat_tls_handshakes_total", "counter", "Completed TLS handshakes.");
    for (size_t k = 0; k < n; k++)
        for (int v = 0; sums[k].tls && v < 2; v++)
            for (int r = 0; r < 2; r++)
                text_printf(t,
                            "moat_tls_handshakes_total{listener=\"%s\",version=\"%s\","
                            "resumed=\"%s\"} %llu\n",
                            label(sums[k].name, l, sizeof(l)), versions[v], r ? "true" : "false",
                            (unsigned long long)sums[k].hs[v][r]);
    family(t, "moat_tls_handshake_errors_total", "counter",
           "Handshakes that failed or timed out, and non-TLS bytes on a TLS port.");
    for (size_t k = 0; k < n; k++)
        if (sums[k].tls)
            text_printf(t, "moat_tls_handshake_errors_total{listener=\"%s\"} %llu\n",
                        label(sums[k].name, l, sizeof(l)), (unsigned long long)sums[k].errors);
    family(t, "moat_session_tickets_total", "counter",
           "Session tickets issued, and tickets presented that were accepted or rejected.");
    static const char *const results[] = {"issued", "accepted", "rejected"};
    for (size_t k = 0; k < n; k++)
        for (int r = 0; sums[k].tls && r < 3; r++)
            text_printf(t, "moat_session_tickets_total{listener=\"%s\",result=\"%s\"} %llu\n",
                        label(sums[k].name, l, sizeof(l)), results[r],
                        (unsigned long long)sums[k].tickets[r]);
    (void)cfg;
}

/* Sums over every listener's cache, without labels: the product's contract
 * names these metrics bare (each listener's own counts are in the log when
 * moat stops). */
static void render_session_cache(struct text *t, const struct admin_source *src)
{
    const struct runtime *rt = *src->rt;
    struct sesscache_stats sum = {0};
    for (size_t i = 0; i < rt->cfg->nlisteners; i++) {
        if (rt->caches[i] == NULL)
            continue;
        struct sesscache_stats s;
        sesscache_stats(rt->caches[i], &s);
        sum.hits += s.hits;
        sum.misses += s.misses;
        sum.entries += s.entries;
        sum.evictions += s.evictions;
    }
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"moat_session_cache_hits_total", "counter", "Session IDs found in the cache."},
        {"moat_session_cache_misses_total", "counter", "Session IDs not found (or expired)."},
        {"moat_session_cache_entries", "gauge", "Sessions in the cache."},
        {"moat_session_cache_evictions_total", "counter", "Sessions pushed out by the size bound."},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(t, fams[f].name, fams[f].type, fams[f].help);
        uint64_t v = f == 0 ? sum.hits : f == 1 ? sum.misses : f == 2 ? sum.entries
                                                                       : sum.evictions;
        text_printf(t, "%s %llu\n", fams[f].name, (unsigned long long)v);
    }
}

/* One (route, code) sum across workers; code 0 stands for "other". */
struct code_sum {
    const char *label;
    uint64_t code;
    uint64_t total;
};

static int add_code_sum(struct code_sum **sums, size_t *n, size_t *cap, const char *label,
                        uint64_t code, uint64_t count)
{
    for (size_t k = 0; k < *n; k++)
        if ((*sums)[k].code == code && strcmp((*sums)[k].label, label) == 0) {
            (*sums)[k].total += count;
            return 0;
        }
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        struct code_sum *p = realloc(*sums, ncap * sizeof(*p));
        if (p == NULL)
            return -1;
        *sums = p;
        *cap = ncap;
    }
    (*sums)[(*n)++] = (struct code_sum){label, code, count};
    return 0;
}

static void render_requests(struct text *t, const struct admin_source *src)
{
    char l[700];
    struct code_sum *sums = NULL;
    size_t n = 0, cap = 0;
    /* Route entries are never freed while the worker lives, so their labels
     * stay valid after the registry lock is dropped. */
    for (unsigned w = 0; w < *src->nworkers; w++) {
        struct metrics *m = &src->workers[w].metrics;
        pthread_mutex_lock(&m->lock);
        for (struct route_stats *r = m->routes; r != NULL; r = r->next) {
            for (unsigned slot = 0; slot < ROUTE_CODE_SLOTS; slot++) {
                uint64_t code = STAT_GET(r->codes[slot]);
                if (code != 0 && add_code_sum(&sums, &n, &cap, r->label, code,
                                              STAT_GET(r->counts[slot])) != 0)
                    t->oom = 1;
            }
            uint64_t other = STAT_GET(r->overflow);
            if (other != 0 && add_code_sum(&sums, &n, &cap, r->label, 0, other) != 0)
                t->oom = 1;
        }
        pthread_mutex_unlock(&m->lock);
    }
    family(t, "moat_requests_total", "counter", "Requests answered, by route and status code.");
    for (size_t k = 0; k < n; k++) {
        if (sums[k].code == 0)
            text_printf(t, "moat_requests_total{route=\"%s\",code=\"other\"} %llu\n",
                        label(sums[k].label, l, sizeof(l)), (unsigned long long)sums[k].total);
        else
            text_printf(t, "moat_requests_total{route=\"%s\",code=\"%llu\"} %llu\n",
                        label(sums[k].label, l, sizeof(l)), (unsigned long long)sums[k].code,
                        (unsigned long long)sums[k].total);
    }
    free(sums);
}

static void render_durations(struct text *t, const struct admin_source *src)
{
    uint64_t buckets[DURATION_BUCKETS] = {0}, sum_us = 0, count = 0;
    for (unsigned w = 0; w < *src->nworkers; w++) {
        const struct metrics *m = &src->workers[w].metrics;
        for (int b = 0; b < DURATION_BUCKETS; b++)
            buckets[b] += STAT_GET(m->duration_buckets[b]);
        sum_us += STAT_GET(m->duration_sum_us);
        count += STAT_GET(m->duration_count);
    }
    family(t, "moat_request_duration_seconds", "histogram",
           "Time from a request's first byte to the end of its response.");
    uint64_t cumulative = 0;
    for (int b = 0; b < DURATION_BUCKETS; b++) {
        cumulative += buckets[b];
        if (b < DURATION_BUCKETS - 1)
            text_printf(t, "moat_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                        metrics_duration_bounds[b], (unsigned long long)cumulative);
        else
            text_printf(t, "moat_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                        (unsigned long long)cumulative);
    }
    /* The buckets are read one by one while workers count: the total is
     * the +Inf bucket, so that the exposition is self-consistent. */
    (void)count;
    text_printf(t, "moat_request_duration_seconds_sum %.6f\n", (double)sum_us / 1e6);
    text_printf(t, "moat_request_duration_seconds_count %llu\n", (unsigned long long)cumulative);
}

static void render_upstreams(struct text *t, const struct admin_source *src)
{
    static const char *const kinds[] = {"connect", "timeout", "reset", "malformed", "down"};
    char l[256], l2[512];
    struct code_sum *sums = NULL;
    size_t n = 0, cap = 0;
    for (unsigned w = 0; w < *src->nworkers; w++) {
        struct metrics *m = &src->workers[w].metrics;
        pthread_mutex_lock(&m->lock);
        for (const struct upstream_stats *u = m->upstreams; u != NULL; u = u->next)
            for (int k = 0; k < UPSTREAM_ERROR_KINDS; k++)
                if (add_code_sum(&sums, &n, &cap, u->name, (uint64_t)k,
                                 STAT_GET(u->errors[k])) != 0)
                    t->oom = 1;
        pthread_mutex_unlock(&m->lock);
    }
    family(t, "moat_upstream_errors_total", "counter",
           "Upstream failures by kind: connect, timeout, reset, malformed, down (no server "
           "to try).");
    for (size_t k = 0; k < n; k++)
        text_printf(t, "moat_upstream_errors_total{upstream=\"%s\",kind=\"%s\"} %llu\n",
                    label(sums[k].label, l, sizeof(l)), kinds[sums[k].code],
                    (unsigned long long)sums[k].total);
    free(sums);
    struct health_view v;
    if (src->health == NULL || health_view(src->health, 0, &v) != 0)
        return;
    family(t, "moat_upstream_server_up", "gauge",
           "1 while a health-checked upstream server passes its checks.");
    for (size_t i = 0; health_view(src->health, i, &v) == 0; i++)
        text_printf(t, "moat_upstream_server_up{upstream=\"%s\",server=\"%s\"} %d\n",
                    label(v.upstream, l, sizeof(l)), label(v.server, l2, sizeof(l2)), v.up);
}

/* The name that labels certificate k's expiry, so that every series is
 * unique (two certificates may share a first name): its first name that no
 * earlier certificate of the listener holds.  Failing that, its first name
 * no earlier certificate with its kind of key is served for, and *by_key
 * says to add the key's kind to the labels: an RSA certificate beside an
 * ECDSA one for the same site.  NULL when none is left: that certificate is
 * never served, and moat warned of it when it loaded. */
static const char *expiry_name(const struct cert_pair *certs, size_t k, int *by_key)
{
    *by_key = 0;
    for (size_t n = 0; n < certs[k].nnames; n++)
        if (!cert_name_held_earlier(certs, k, certs[k].names[n]))
            return certs[k].names[n];
    *by_key = 1;
    for (size_t n = 0; n < certs[k].nnames; n++)
        if (!cert_name_served_earlier(certs, k, certs[k].names[n]))
            return certs[k].names[n];
    return NULL;
}

static void render_metrics(struct text *t, const struct admin_source *src)
{
    const struct runtime *rt = *src->rt;
    char l1[256], l2[512];
    family(t, "moat_connections_active", "gauge", "Client connections open now.");
    text_printf(t, "moat_connections_active %llu\n", (unsigned long long)sum_active(src));
    family(t, "moat_memory_resident_bytes", "gauge", "Resident memory, sampled every 100 ms.");
    text_printf(t, "moat_memory_resident_bytes %llu\n", (unsigned long long)memcap_resident());
    family(t, "moat_memory_budget_bytes", "gauge", "limits.max_memory (0: none).");
    text_printf(t, "moat_memory_budget_bytes %llu\n", (unsigned long long)memcap_budget());
    render_listeners(t, src);
    render_session_cache(t, src);
    render_requests(t, src);
    render_durations(t, src);
    render_upstreams(t, src);
    family(t, "moat_reloads_total", "counter", "Configuration reloads, by result.");
    text_printf(t, "moat_reloads_total{result=\"success\"} %llu\n",
                (unsigned long long)*src->reloads_ok);
    text_printf(t, "moat_reloads_total{result=\"failure\"} %llu\n",
                (unsigned long long)*src->reloads_failed);
    family(t, "moat_certificate_expiry_timestamp_seconds", "gauge",
           "When each served certificate expires (Unix time).");
    for (size_t i = 0; i < rt->cfg->nlisteners; i++)
        for (size_t k = 0; rt->certs[i] && k < rt->ncerts[i]; k++) {
            int by_key;
            const char *name = expiry_name(rt->certs[i], k, &by_key);
            if (name == NULL)
                continue;
            text_printf(t,
                        "moat_certificate_expiry_timestamp_seconds{listener=\"%s\",name=\"%s\"%s%s%s} "
                        "%lld\n",
                        label(rt->cfg->listeners[i].name, l1, sizeof(l1)),
                        label(name, l2, sizeof(l2)), by_key ? ",key=\"" : "",
                        by_key ? cert_key_name(rt->certs[i][k].key_type) : "", by_key ? "\"" : "",
                        (long long)rt->certs[i][k].not_after);
        }
}

/* ---- connections ---- */

static void maybe_free(struct admin *a)
{
    if (a->closing && a->handles == 0)
        free(a);
}

static void on_admin_conn_close(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct admin *a = c->admin;
    struct admin_conn **link = &a->conns;
    while (*link != NULL && *link != c)
        link = &(*link)->next;
    if (*link == c)
        *link = c->next;
    free(c->response);
    free(c);
    a->handles--;
    maybe_free(a);
}

static void close_conn(struct admin_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_admin_conn_close);
        uv_close((uv_handle_t *)&c->timer, on_admin_conn_close);
    }
}

static void on_admin_written(uv_write_t *req, int status)
{
    (void)status;
    close_conn(req->data);
}

static void respond(struct admin_conn *c, int status, const char *reason, const char *type,
                    const char *body, size_t len, int head_only)
{
    char head[256];
    /* RFC 9110: a 405 names the methods that are allowed. */
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
                      status, reason, type, len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t blen = head_only ? 0 : len;
    c->response = malloc((size_t)hl + blen);
    if (c->response == NULL) {
        close_conn(c);
        return;
    }
    memcpy(c->response, head, (size_t)hl);
    if (blen)
        memcpy(c->response + hl, body, blen);
    c->len = (size_t)hl + blen;
    c->answered = 1;
    uv_buf_t b = uv_buf_init(c->response, (unsigned)c->len);
    c->write_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_admin_written) != 0)
        close_conn(c);
}

static void handle_request(struct admin_conn *c)
{
    const struct admin_source *src = &c->admin->src;
    char method[16], path[256];
    if (sscanf(c->buf, "%15s %255s HTTP/1.", method, path) != 2) {
        respond(c, 400, "Bad Request", "text/plain", "bad request\n", 12, 0);
        return;
    }
    int head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        respond(c, 405, "Method Not Allowed", "text/plain", "GET or HEAD\n", 12, 0);
        return;
    }
    char *q = strchr(path, '?');
    if (q != NULL)
        *q = '\0';
    if (strcmp(path, "/healthz") == 0) {
        if (*src->draining)
            respond(c, 503, "Service Unavailable", "text/plain", "draining\n", 9, head);
        else if (memcap_over()) /* every new connection is refused: send none here */
            respond(c, 503, "Service Unavailable", "text/plain", "over max_memory\n", 16, head);
        else
            respond(c, 200, "OK", "text/plain", "ok\n", 3, head);
    } else if (strcmp(path, "/metrics") == 0) {
        struct text t = {0};
        render_metrics(&t, src);
        if (t.oom) {
            free(t.p);
            respond(c, 500, "Internal Server Error", "text/plain", "out of memory\n", 14, 0);
            return;
        }
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", t.p, t.len, head);
        free(t.p);
    } else {
        respond(c, 404, "Not Found", "text/plain", "try /metrics or /healthz\n", 25, head);
    }
}

/*
 * 1 when the start of a request can never become "METHOD /target
 * HTTP/1.x": TLS, binary or HTTP/0.9 bytes are answered at once instead of
 * holding the connection until the timeout.
 */
static int request_line_is_bad(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    if (i < n && (i == 0 || p[i] != ' '))
        return 1;
    const char *lf = memchr(p, '\n', n);
    if (lf == NULL)
        return 0;
    size_t line = (size_t)(lf - p);
    if (line > 0 && p[line - 1] == '\r')
        line--;
    static const char v10[] = " HTTP/1.0", v11[] = " HTTP/1.1";
    size_t vlen = sizeof(v10) - 1;
    if (line < i + 2 + vlen || p[i + 1] == ' ')
        return 1;
    const char *v = p + line - vlen;
    if (memcmp(v, v10, vlen) != 0 && memcmp(v, v11, vlen) != 0)
        return 1;
    return memchr(p + i + 1, ' ', (size_t)(v - (p + i + 1))) != NULL;
}

static void on_admin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct admin_conn *c = h->data;
    (void)suggested;
    buf->base = c->buf + c->len;
    buf->len = sizeof(c->buf) - 1 - c->len;
}

static void on_admin_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct admin_conn *c = s->data;
    (void)buf;
    if (c->answered)
        return;
    if (n < 0) {
        close_conn(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (request_line_is_bad(c->buf, c->len)) {
        uv_read_stop(s);
        respond(c, 400, "Bad Request", "text/plain", "bad request\n", 12, 0);
    } else if (memmem(c->buf, c->len, "\r\n\r\n", 4) != NULL ||
               memmem(c->buf, c->len, "\n\n", 2) != NULL) {
        uv_read_stop(s);
        handle_request(c);
    } else if (c->len >= sizeof(c->buf) - 1) {
        uv_read_stop(s);
        respond(c, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10, 0);
    }
}

static void on_admin_timeout(uv_timer_t *t)
{
    close_conn(t->data);
}

static void on_admin_connection(uv_stream_t *server, int status)
{
    struct admin *a = server->data;
    if (status < 0)
        return;
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->admin = a;
    uv_tcp_init(a->loop, &c->tcp);
    uv_timer_init(a->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->next = a->conns;
    a->conns = c;
    a->handles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_admin_alloc, on_admin_read) != 0) {
        close_conn(c);
        return;
    }
    uv_timer_start(&c->timer, on_admin_timeout, ADMIN_TIMEOUT_MS, 0);
}

static void on_admin_close(uv_handle_t *h)
{
    struct admin *a = h->data;
    a->handles--;
    maybe_free(a);
}

struct admin *admin_start(uv_loop_t *loop, int fd, const struct admin_source *src, char *err,
                          size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        close(fd);
        snprintf(err, errlen, "admin: out of memory");
        return NULL;
    }
    a->loop = loop;
    a->src = *src;
    uv_tcp_init(loop, &a->tcp);
    a->tcp.data = a;
    a->handles = 1;
    int rc = uv_tcp_open(&a->tcp, fd);
    if (rc != 0)
        close(fd);
    else
        rc = uv_listen((uv_stream_t *)&a->tcp, 128, on_admin_connection);
    if (rc != 0) {
        snprintf(err, errlen, "admin: listen: %s", uv_strerror(rc));
        a->closing = 1;
        uv_close((uv_handle_t *)&a->tcp, on_admin_close);
        return NULL;
    }
    return a;
}

void admin_stop(struct admin **ap)
{
    struct admin *a = *ap;
    if (a == NULL)
        return;
    *ap = NULL;
    a->closing = 1;
    for (struct admin_conn *c = a->conns; c != NULL; c = c->next)
        close_conn(c);
    uv_close((uv_handle_t *)&a->tcp, on_admin_close);
}

/* Waits for fd to be ready for events until deadline (poll milliseconds
 * left in *left). */
static int wait_fd(int fd, short events, int *left)
{
    struct pollfd p = {.fd = fd, .events = events};
    uint64_t start = uv_hrtime();
    int rc = poll(&p, 1, *left);
    *left -= (int)((uv_hrtime() - start) / 1000000);
    return rc == 1 ? 0 : -1;
}

int admin_probe(const char *addr, int timeout_ms)
{
    struct sockaddr_storage ss;
    char why[128], buf[64];
    if (parse_numeric_hostport(addr, &ss, why, sizeof(why)) != 0) {
        fprintf(stderr, "moat: healthcheck: %s: %s\n", addr, why);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int left = timeout_ms, err = 0;
    socklen_t elen = sizeof(err);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n\r\n";
    size_t got = 0;
    if (fd < 0)
        goto fail;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS)
        goto fail;
    if (wait_fd(fd, POLLOUT, &left) != 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ||
        err != 0 || write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
        goto fail;
    while (got < 12 && left > 0 && wait_fd(fd, POLLIN, &left) == 0) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(fd);
    if (got >= 12 && strncmp(buf, "HTTP/1.1 200", 12) == 0)
        return 0;
    fprintf(stderr, "moat: healthcheck: %s answered \"%.12s\"\n", addr, got ? buf : "nothing");
    return -1;
fail:
    fprintf(stderr, "moat: healthcheck: %s: %s\n", addr, strerror(err ? err : errno));
    if (fd >= 0)
        close(fd);
    return -1;
}
