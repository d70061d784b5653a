/*
 * redirect: the plain-HTTP redirect connection.  Owns its socket, timer
 * and buffers; reads the worker's current configuration through the
 * generation it holds.
 */
#include "redirect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "gen.h"
#include "http1.h"
#include "listener.h"
#include "log.h"
#include "route.h"
#include "strutil.h"
#include "worker.h"

#define REDIRECT_MAX_HEAD 16384
#define REDIRECT_MAX_HEADERS 100
#define REDIRECT_LINGER_MS 1000

/* Ownership: allocated on accept; freed after both handles closed. */
struct redir {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct worker *w;
    struct redir *prev, *next;  /* the worker's list */
    struct gen *gen;            /* one reference */
    unsigned https_port;
    size_t lidx;                /* the listener's index in gen's configuration */
    uint64_t start_ns;
    char peer_ip[64];
    int handles;
    int answered;
    int head_parsed;
    struct http1_msg req;
    struct http1_limits lim;
    struct http1_header headers[REDIRECT_MAX_HEADERS];
    size_t len;
    char out[REDIRECT_MAX_HEAD + 512];
    size_t out_len;
    char in[REDIRECT_MAX_HEAD];
};

static void on_redir_close(uv_handle_t *h)
{
    struct redir *r = h->data;
    if (--r->handles > 0)
        return;
    struct worker *w = r->w;
    if (r->prev)
        r->prev->next = r->next;
    else
        w->redirects = r->next;
    if (r->next)
        r->next->prev = r->prev;
    gen_unref(&r->gen);
    free(r);
    STAT_ADD(w->metrics.active, (uint64_t)-1);
    worker_conn_closed(w);
}

static void close_redir(struct redir *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->tcp)) {
        uv_close((uv_handle_t *)&r->tcp, on_redir_close);
        uv_close((uv_handle_t *)&r->timer, on_redir_close);
    }
}

static void answer_error(struct redir *r, int status);

static void on_redir_timer(uv_timer_t *t)
{
    struct redir *r = t->data;
    if (!r->answered)
        answer_error(r, 408);
    else
        close_redir(r);
}

static void on_redir_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    (void)req;
}

static void on_redir_written(uv_write_t *req, int status)
{
    struct redir *r = req->data;
    if (status < 0) {
        close_redir(r);
        return;
    }
    /* Half-close and read what the client still sends for a moment, so
     * that the answer is not lost to a reset. */
    r->shutdown_req.data = r;
    if (uv_shutdown(&r->shutdown_req, (uv_stream_t *)&r->tcp, on_redir_shutdown) != 0)
        close_redir(r);
    else
        uv_timer_start(&r->timer, on_redir_timer, REDIRECT_LINGER_MS, 0);
}

/* Redirects are requests too: the access log and moat_requests_total (no
 * route) have them, as nginx's log and counters have. */
static void log_answer(struct redir *r, int status, uint64_t body_bytes)
{
    uint64_t duration_ns = uv_hrtime() - r->start_ns;
    metrics_request(&r->w->metrics, r->gen->noroute, status, duration_ns / 1000);
    if (!log_access_enabled())
        return;
    const struct cfg *cfg = r->gen->cfg;
    struct access_entry e = {
        .remote = r->peer_ip,
        .listener = cfg->listeners[r->lidx].name,
        .req = r->head_parsed ? &r->req : NULL,
        .status = status,
        .bytes = body_bytes,
        .duration_ns = duration_ns,
    };
    access_log_write(&r->w->access, cfg, &e);
}

static void send_out(struct redir *r)
{
    r->answered = 1;
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
    r->write_req.data = r;
    if (uv_write(&r->write_req, (uv_stream_t *)&r->tcp, &b, 1, on_redir_written) != 0)
        close_redir(r);
}

static void answer_error(struct redir *r, int status)
{
    struct http1_out o = {.buf = r->out, .cap = sizeof(r->out)};
    uint64_t body = http1_write_simple_response(&o, status, 1, NULL, NULL, 0);
    r->out_len = o.len;
    log_answer(r, status, body);
    send_out(r);
}

static void answer_redirect(struct redir *r)
{
    char host[ROUTE_MAX_HOST + 1];
    int hl = route_normalize_host(r->req.host, host);
    if (hl <= 0) {
        answer_error(r, 400);
        return;
    }
    /* The port is written even when it is 443: https://host:443/... is
     * what the product's contract promises. */
    char port[8];
    snprintf(port, sizeof(port), ":%u", r->https_port);
    struct span uri = r->req.uri;
    if (span_eq(uri, "*"))
        uri = SPAN_LIT("/");
    int n = snprintf(r->out, sizeof(r->out),
                     "HTTP/1.1 308 Permanent Redirect\r\n"
                     "Location: https://%s%s%.*s\r\n"
                     "Content-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     host, port, (int)uri.len, uri.p);
    if (n < 0 || (size_t)n >= sizeof(r->out)) {
        answer_error(r, 414);
        return;
    }
    r->out_len = (size_t)n;
    log_answer(r, 308, 0);
    send_out(r);
}

static int on_head(void *ctx, struct http1_msg *m)
{
    (void)ctx;
    (void)m;
    return 0;
}

static int on_body(void *ctx, const char *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return 0;
}

static int on_end(void *ctx, struct http1_msg *m)
{
    (void)ctx;
    (void)m;
    return 0;
}

static const struct http1_handler redirect_handler = {on_head, on_body, on_end};

static void on_redir_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct redir *r = h->data;
    (void)suggested;
    if (r->answered) {
        /* Discarding what follows the request. */
        buf->base = r->w->read_buf;
        buf->len = sizeof(r->w->read_buf);
        return;
    }
    buf->base = r->in + r->len;
    buf->len = sizeof(r->in) - r->len;
}

static void on_redir_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct redir *r = s->data;
    (void)buf;
    if (n < 0) {
        close_redir(r);
        return;
    }
    if (r->answered || n == 0)
        return;
    r->len += (size_t)n;
    long head = http1_scan_head(&r->req.scan, r->in, r->len, 1, &r->lim);
    if (head == 0 && r->len == sizeof(r->in))
        head = -431;
    if (head == 0)
        return;
    if (head < 0) {
        answer_error(r, (int)-head);
        return;
    }
    size_t used;
    if (http1_parse(&r->req, r->in, (size_t)head, &used) == HTTP1_ERROR) {
        answer_error(r, r->req.error_status ? r->req.error_status : 400);
        return;
    }
    r->head_parsed = 1;
    answer_redirect(r);
}

void redirect_accept(struct listener *l, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    struct worker *w = l->w;
    struct redir *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        close(fd);
        return;
    }
    const struct cfg *cfg = w->gen->cfg;
    r->w = w;
    r->gen = w->gen;
    gen_ref(r->gen);
    r->https_port = (unsigned)cfg->listeners[l->index].redirect_to_https;
    r->lidx = l->index;
    r->start_ns = uv_hrtime();
    format_peer_ip(peer, peer_len, r->peer_ip, sizeof(r->peer_ip));
    r->lim = (struct http1_limits){
        .max_head = cfg->limits.max_header_bytes < REDIRECT_MAX_HEAD - 1
                        ? cfg->limits.max_header_bytes
                        : REDIRECT_MAX_HEAD - 1,
        .max_uri = cfg->limits.max_uri_bytes,
        .max_headers = REDIRECT_MAX_HEADERS,
    };
    http1_msg_init(&r->req, 1, r->headers, REDIRECT_MAX_HEADERS, &r->lim, &redirect_handler, r);
    uv_tcp_init(&w->loop, &r->tcp);
    uv_timer_init(&w->loop, &r->timer);
    r->tcp.data = r;
    r->timer.data = r;
    r->handles = 2;
    r->next = w->redirects;
    if (w->redirects)
        w->redirects->prev = r;
    w->redirects = r;
    w->nconns++;
    STAT_INC(w->metrics.active);
    STAT_INC(r->gen->lstats[l->index]->connections);
    if (uv_tcp_open(&r->tcp, fd) != 0) {
        close(fd);
        close_redir(r);
        return;
    }
    if (uv_read_start((uv_stream_t *)&r->tcp, on_redir_alloc, on_redir_read) != 0) {
        close_redir(r);
        return;
    }
    uv_timer_start(&r->timer, on_redir_timer, cfg->timeouts.client_header_ms, 0);
}

void redirect_drain(struct worker *w, int now)
{
    for (struct redir *r = w->redirects; r != NULL; r = r->next)
        if (now || !r->answered)
            close_redir(r);
}
