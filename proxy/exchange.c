/*
 * exchange: one request/response between a client connection and an
 * upstream.  Owns validation, routing, the upstream choice and retries, the
 * response relay, tunnels and the access-log line.  Touches the client only
 * through conn's functions and its plaintext input buffer, and the upstream
 * only through upstream's.
 *
 * The request head stays at the start of c->in for the whole exchange (the
 * spans in x->req point into it); body bytes after it are forwarded as they
 * are parsed and dropped at once.  Response heads are assembled in x->rhead;
 * response bodies stream from the worker's read buffer to the client.
 */
#include "exchange.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "access.h"
#include "conn.h"
#include "gen.h"
#include "http1.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

#define RESP_MAX_HEADERS 256
/* Attempts per request: every server once, plus a retry for a stale
 * pooled connection. */
#define MAX_ATTEMPTS 8
/* 1xx heads forwarded before the final response: a few 103s are normal. */
#define EXCHANGE_MAX_INTERIM 16

struct exchange {
    struct conn *c;
    struct worker *w;
    struct gen *g;                  /* c->gen: configuration and pools */
    struct exchange *next_free;

    struct http1_msg req;
    struct http1_msg resp;
    struct http1_limits req_lim;
    struct http1_limits resp_lim;
    struct http1_out out;           /* client-bound plaintext, via w->scratch */

    size_t head_len;                /* request head at the start of c->in */
    int req_head_done;
    int req_done;
    int resp_started;               /* a response head went to the client */
    int resp_done;
    int upgraded;
    int close_after;
    int upstream_extra;             /* bytes after the response: not reusable */
    int upstream_paused;            /* client is slow: upstream not read */
    int replayable;                 /* no body: the head alone can be resent */
    int up_reading;                 /* the attached connection is being read */
    int write_failed;               /* the upstream closed its read side */
    int continue_due;               /* the client waits for 100 before its body */
    size_t head_at;                 /* the response head starts at x->out.buf[head_at], */
    uint64_t head_flushed;          /* unless x->out.flushed has moved from this */

    const struct cfg_route *route;
    struct upstream_pool *pool;
    struct upconn *up;
    uint64_t tried;
    unsigned attempts;
    unsigned nattempted;
    uint32_t attempted[MAX_ATTEMPTS]; /* servers tried, in order, for the logs */
    unsigned interim;               /* 1xx heads from the upstream so far */
    struct buf_chunk *uhead;        /* serialised request head, for retries */
    struct buf_chunk *rhead;        /* response head being assembled */
    enum http1_framing framing;

    int status;
    uint64_t resp_bytes;
    uint64_t start_ns;
    const char *upstream_error;

    struct http1_header headers[];  /* request's, then the response's */
};

static const struct upconn_owner_ops upstream_ops;
static void fail_upstream(struct exchange *x, int status, enum upstream_error kind,
                          const char *why);
static int on_request_head(void *ctx, struct http1_msg *m);
static int on_request_body(void *ctx, const char *p, size_t n);
static int on_request_end(void *ctx, struct http1_msg *m);
static int on_response_head(void *ctx, struct http1_msg *m);
static int on_response_body(void *ctx, const char *p, size_t n);
static int on_response_end(void *ctx, struct http1_msg *m);

static const struct http1_handler request_handler = {on_request_head, on_request_body,
                                                     on_request_end};
static const struct http1_handler response_handler = {on_response_head, on_response_body,
                                                      on_response_end};

/* ---- allocation ---- */

static struct exchange *exchange_new(struct conn *c)
{
    struct worker *w = c->w;
    struct gen *g = c->gen;
    const struct cfg *cfg = g->cfg;
    unsigned nreq = (unsigned)cfg->limits.max_headers;
    struct exchange *x = g->free_exchanges;
    if (x != NULL) {
        g->free_exchanges = x->next_free;
        g->nfree_exchanges--;
    } else {
        x = malloc(sizeof(*x) + (nreq + RESP_MAX_HEADERS) * sizeof(struct http1_header));
        if (x == NULL)
            return NULL;
    }
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->w = w;
    x->g = g;
    x->req_lim = (struct http1_limits){
        .max_head = cfg->limits.max_header_bytes,
        .max_uri = cfg->limits.max_uri_bytes,
        .max_headers = nreq,
        .max_body = cfg->limits.max_body_bytes,
    };
    x->resp_lim = (struct http1_limits){
        .max_head = g->inbufs.chunk_size - 1,
        .max_uri = g->inbufs.chunk_size - 1,
        .max_headers = RESP_MAX_HEADERS,
    };
    http1_msg_init(&x->req, 1, x->headers, nreq, &x->req_lim, &request_handler, x);
    http1_msg_init(&x->resp, 0, x->headers + nreq, RESP_MAX_HEADERS, &x->resp_lim,
                   &response_handler, x);
    x->out = (struct http1_out){.sink = conn_sink(c), .buf = w->scratch,
                                .cap = sizeof(w->scratch)};
    x->start_ns = uv_hrtime();
    return x;
}

/* Back to the generation's pool, whose configuration fixed its size. */
static void exchange_free(struct exchange *x)
{
    struct gen *g = x->g;
    buf_chunk_put(&g->inbufs, &x->uhead);
    buf_chunk_put(&g->inbufs, &x->rhead);
    if (g->nfree_exchanges < 64) {
        x->next_free = g->free_exchanges;
        g->free_exchanges = x;
        g->nfree_exchanges++;
    } else {
        free(x);
    }
}

void exchange_pool_free(struct gen *g)
{
    while (g->free_exchanges != NULL) {
        struct exchange *x = g->free_exchanges;
        g->free_exchanges = x->next_free;
        free(x);
    }
    g->nfree_exchanges = 0;
}

/* ---- ending ---- */

static void log_access(struct exchange *x)
{
    uint64_t duration_ns = uv_hrtime() - x->start_ns;
    struct route_stats *rs = x->route ? x->g->rstats[x->route - x->g->cfg->routes] : x->g->noroute;
    metrics_request(&x->w->metrics, rs, x->status, duration_ns / 1000);
    const struct conn *c = x->c;
    const char *servers[MAX_ATTEMPTS];
    for (unsigned i = 0; i < x->nattempted; i++)
        servers[i] = x->pool->cfg->servers[x->attempted[i]].name;
    struct access_entry e = {
        .remote = c->peer_ip,
        .listener = x->g->cfg->listeners[c->lidx].name,
        .tls = c->tls != NULL ? tls_session_version(c->tls) : NULL,
        .req = x->req_head_done ? &x->req : NULL,
        .status = x->status,
        .bytes = x->resp_bytes,
        .duration_ns = duration_ns,
        .upstreams = servers,
        .nupstreams = x->nattempted,
        .route = x->route,
    };
    if (log_access_enabled())
        access_log_write(&x->w->access, x->g->cfg, &e);
}

static void detach_upstream(struct exchange *x, int reusable)
{
    struct upconn *up = x->up;
    if (up == NULL)
        return;
    x->up = NULL;
    if (reusable)
        upconn_release(up);
    else
        upconn_close(up);
}

/* The exchange is over: free it and tell the connection. */
static void finish(struct exchange *x)
{
    struct conn *c = x->c;
    int reusable = x->resp_done && x->req_done && !x->upstream_extra && !x->upgraded &&
                   (x->resp.flags & HTTP1_F_KEEP_ALIVE) && x->pool->cfg->keepalive > 0;
    int close_after = x->close_after;
    log_access(x);
    detach_upstream(x, reusable);
    if (x->req_head_done && c->in_len >= x->head_len)
        conn_consume_input(c, 0, x->head_len);
    else
        close_after = 1;
    c->x = NULL;
    exchange_free(x);
    conn_exchange_done(c, close_after);
}

static int flush_client(struct exchange *x)
{
    int rc = http1_out_flush(&x->out);
    if (rc == 0)
        rc = conn_flush(x->c);
    return rc;
}

/* moat's own 5xx answers are the operator's business: at warn, naming the
 * server that failed last (the replay lines name the earlier ones). */
static void log_answer(const struct exchange *x, int status, const char *why)
{
    const struct conn *c = x->c;
    int ulen = (int)x->req.uri.len;
    if (status < 500)
        log_debug("%s: %d %s", c->peer_ip, status, why);
    else if (x->nattempted == 0)
        log_warn("%s %.*s: %d %s", c->peer_ip, ulen, x->req.uri.p, status, why);
    else
        log_warn("%s %.*s: %d %s (upstream %s: %s)", c->peer_ip, ulen, x->req.uri.p, status, why,
                 x->pool->cfg->name, x->pool->cfg->servers[x->attempted[x->nattempted - 1]].name);
}

/* Answers status itself; the exchange ends. */
static void respond_error(struct exchange *x, int status, const char *why)
{
    struct conn *c = x->c;
    if (x->resp_started && x->out.flushed == x->head_flushed && !x->out.err) {
        /* The response went bad before any of it left (a head and a broken
         * body in one read): the client can still get a clean answer. */
        x->out.len = x->head_at;
        x->resp_started = 0;
        x->resp_bytes = 0;
    }
    if (x->resp_started) {
        log_debug("connection from %s: %s after the response started", c->peer_ip, why);
        x->close_after = 1;
        exchange_abort(c);
        conn_abort(c);
        return;
    }
    detach_upstream(x, 0);
    /* Keep the connection only when the request is fully read (or has no
     * body) and the answer does not come from a framing problem. */
    int bodyless = x->req_head_done && !(x->req.flags & HTTP1_F_CHUNKED) &&
                   (!(x->req.flags & HTTP1_F_CONTENT_LENGTH) || x->req.content_length == 0);
    int keep = (x->req_done || bodyless) && (x->req.flags & HTTP1_F_KEEP_ALIVE) &&
               (status == 404 || status == 502 || status == 504);
    log_answer(x, status, why);
    x->status = status;
    x->close_after = !keep;
    /* RFC 9110 wants the methods a 405 allows; moat forwards all but CONNECT.
     * HSTS is about the host, not the response: moat's own answers carry it
     * too (RFC 6797 8.1), as nginx's "add_header ... always". */
    const char *allow =
        status == 405 ? "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE\r\n" : "";
    const char *hsts = x->g->cfg->forwarding.hsts;
    char extra[96 + CFG_MAX_HSTS];
    snprintf(extra, sizeof(extra), "%s%s%s%s", allow, hsts ? "Strict-Transport-Security: " : "",
             hsts ? hsts : "", hsts ? "\r\n" : "");
    x->resp_bytes += http1_write_simple_response(&x->out, status, x->close_after, extra, NULL,
                                                 (x->req.flags & HTTP1_F_HEAD) != 0);
    x->resp_started = 1;
    x->resp_done = 1;
    flush_client(x);
    if (c->state == CONN_CLOSED)
        return;
    finish(x);
}

void exchange_abort(struct conn *c)
{
    struct exchange *x = c->x;
    if (x == NULL)
        return;
    if (x->upgraded) {
        log_access(x);
    } else if (x->req_head_done && !x->resp_done) {
        if (x->status == 0)
            x->status = 499; /* nginx's "client closed request" */
        log_access(x);
    }
    detach_upstream(x, 0);
    c->x = NULL;
    exchange_free(x);
}

void exchange_on_header_timeout(struct conn *c)
{
    if (c->x == NULL && (c->x = exchange_new(c)) == NULL) {
        conn_abort(c);
        return;
    }
    respond_error(c->x, 408, "request head timed out");
}

/* The request body stopped coming while moat waited for it with nothing
 * left to send upstream: the client's stall, not the upstream's, as nginx
 * answers client_body_timeout. */
static int client_owes_body(const struct exchange *x)
{
    return x->req_head_done && !x->req_done && !x->resp_started && !x->write_failed &&
           !x->c->input_blocked && (x->up == NULL || x->up->out.bytes == 0);
}

int exchange_on_client_timeout(struct conn *c)
{
    struct exchange *x = c->x;
    if (x == NULL || !client_owes_body(x))
        return 0;
    respond_error(x, 408, "request body timed out");
    return 1;
}

int exchange_reading_head(const struct conn *c)
{
    return c->x != NULL && !c->x->req_head_done;
}

int exchange_request_complete(const struct conn *c)
{
    return c->x != NULL && c->x->req_done;
}

/* ---- request side ---- */

static int build_upstream_head(struct exchange *x)
{
    struct conn *c = x->c;
    if (x->uhead == NULL && (x->uhead = buf_chunk_get(&x->g->inbufs)) == NULL)
        return 500;
    struct http1_fwd fwd = {
        .client_ip = {c->peer_ip, strlen(c->peer_ip)},
        .trusted_peer = cfg_is_trusted_proxy(x->g->cfg, (struct sockaddr *)&c->peer),
        .listener_port = c->port,
        .default_host = {x->pool->cfg->servers[0].name, strlen(x->pool->cfg->servers[0].name)},
        .keep_alive = x->pool->cfg->keepalive > 0,
    };
    /* No sink: the head must fit, so that it can be sent again on retry. */
    struct http1_out o = {.sink = NULL, .buf = x->uhead->data, .cap = x->uhead->cap};
    http1_write_request_head(&o, &x->req, &fwd);
    if (o.len + 1 > o.cap || o.err)
        return 431;
    x->uhead->len = (uint32_t)o.len;
    return 0;
}

static void count_upstream_error(struct exchange *x, enum upstream_error kind)
{
    STAT_INC(x->g->ustats[x->pool - x->g->upstreams]->errors[kind]);
}

static void arm_response_timer(struct exchange *x)
{
    if (x->up != NULL)
        upconn_set_timeout(x->up, x->pool->cfg->response_timeout_ms);
}

/* Attaches a connection (pooled or new) and queues the request on it:
 * the head, or everything queued on a connection that failed to connect.
 * Sending starts in push_request(), outside parser callbacks. */
static int attach_upstream(struct exchange *x, struct upconn *up, struct outq *carry)
{
    if (up == NULL)
        return 502;
    x->up = up;
    x->up_reading = 0;
    x->attempts++;
    /* A stale pooled connection retried on the same server is one try. */
    if (x->nattempted < MAX_ATTEMPTS &&
        (x->nattempted == 0 || x->attempted[x->nattempted - 1] != up->server))
        x->attempted[x->nattempted++] = (uint32_t)up->server;
    if (carry != NULL)
        outq_move(&up->out, carry);
    else if (outq_append(&up->out, x->uhead->data, x->uhead->len) != 0)
        return 500;
    return 0;
}

/* Sets x->route for m's host and path (NULL: none); -1 for a Host that
 * is no host. */
static int find_route(struct exchange *x, const struct http1_msg *m)
{
    char host[ROUTE_MAX_HOST + 1];
    int hl = route_normalize_host(m->host, host);
    if (hl < 0)
        return -1;
    x->route = route_match(x->g->cfg, (struct span){host, (size_t)hl}, m->path);
    return 0;
}

static int on_request_head(void *ctx, struct http1_msg *m)
{
    struct exchange *x = ctx;
    struct conn *c = x->c;

    x->req_head_done = 1;
    if (find_route(x, m) != 0) {
        m->error_reason = "invalid Host";
        return 400;
    }
    if (x->route == NULL) {
        m->error_reason = "no route";
        return 404;
    }
    x->pool = &x->g->upstreams[x->route->upstream];
    x->replayable = !(m->flags & HTTP1_F_CHUNKED) &&
                    (!(m->flags & HTTP1_F_CONTENT_LENGTH) || m->content_length == 0);
    x->resp.request_was_head = (m->flags & HTTP1_F_HEAD) != 0;
    int rc = build_upstream_head(x);
    if (rc != 0)
        return rc;
    /* The head timer is done; a body is paced by the idle timer. */
    conn_set_timeout(c, x->g->cfg->timeouts.client_idle_ms);
    rc = attach_upstream(x, upstream_acquire(x->pool, &x->tried, &upstream_ops, x), NULL);
    if (rc == 502) {
        /* Counted, or an outage of a whole upstream shows in no error. */
        x->upstream_error = "no server available";
        m->error_reason = x->upstream_error;
        count_upstream_error(x, UPSTREAM_ERROR_DOWN);
    }
    /* moat answers Expect: 100-continue itself, as nginx does, and does not
     * pass it on: an upstream that reads the body without sending 100 left
     * the client waiting (curl, 1 s) before every upload. */
    x->continue_due = rc == 0 && (m->flags & HTTP1_F_EXPECT_CONTINUE) &&
                      ((m->flags & HTTP1_F_CHUNKED) || m->content_length > 0);
    return rc;
}

static int queue_upstream(struct exchange *x, const char *p, size_t n)
{
    if (x->write_failed)
        return 0; /* the upstream stopped reading: its answer is what counts */
    if (x->up == NULL || outq_append(&x->up->out, p, n) != 0)
        return 500;
    /* The response is not due before the request has been sent: while a
     * body comes in, response_timeout counts from its latest bytes (as
     * nginx's proxy_send_timeout), and a client that stops sending meets
     * client_idle instead. */
    if (x->up_reading && !x->resp_started)
        arm_response_timer(x);
    return 0;
}

static int on_request_body(void *ctx, const char *p, size_t n)
{
    struct exchange *x = ctx;
    char line[20];
    if (!(x->req.flags & HTTP1_F_CHUNKED))
        return queue_upstream(x, p, n);
    size_t len = http1_format_chunk_size(line, n);
    if (queue_upstream(x, line, len) || queue_upstream(x, p, n) ||
        queue_upstream(x, "\r\n", 2))
        return 500;
    return 0;
}

static int on_request_end(void *ctx, struct http1_msg *m)
{
    struct exchange *x = ctx;
    x->req_done = 1;
    if ((m->flags & HTTP1_F_CHUNKED) && queue_upstream(x, "0\r\n\r\n", 5) != 0)
        return 500;
    /* From here the upstream's response timer governs, not the client's. */
    conn_set_timeout(x->c, 0);
    return 0;
}

/* Sends what is queued once the connection is up; stops the client when
 * the upstream does not keep up. */
static void push_request(struct exchange *x)
{
    struct upconn *up = x->up;
    if (up == NULL || !up->connected || x->write_failed)
        return;
    if (!x->up_reading) {
        if (upconn_read_start(up) != 0) {
            fail_upstream(x, 502, UPSTREAM_ERROR_RESET, "upstream read failed");
            return;
        }
        x->up_reading = 1;
        arm_response_timer(x);
    }
    if (upconn_flush(up) != 0) {
        fail_upstream(x, 502, UPSTREAM_ERROR_RESET, "upstream write failed");
        return;
    }
    if (up->out.bytes > CONN_HIGH_WATER)
        conn_block_input(x->c);
}

void exchange_on_client_input(struct conn *c)
{
    struct exchange *x = c->x;
    if (x == NULL) {
        /* Robustness (RFC 9112 2.2): empty lines before a request. */
        while (c->in_len >= 2 && c->in[0] == '\r' && c->in[1] == '\n')
            conn_consume_input(c, 0, 2);
        if (c->in_len == 0 || (c->in_len == 1 && c->in[0] == '\r'))
            return;
        x = exchange_new(c);
        if (x == NULL) {
            conn_abort(c);
            return;
        }
        c->x = x;
        conn_set_timeout(c, c->x->g->cfg->timeouts.client_header_ms);
    }
    if (x->req_done)
        return;
    size_t used = 0;
    enum http1_result res;
    int head_now = !x->req_head_done;
    if (head_now) {
        long r = http1_scan_head(&x->req.scan, c->in, c->in_len, 1, &x->req_lim);
        if (r == 0)
            return;
        if (r < 0) {
            respond_error(x, (int)-r, "malformed request head");
            return;
        }
        x->head_len = (size_t)r;
        res = http1_parse(&x->req, c->in, x->head_len, &used);
        if (res == HTTP1_ERROR) {
            x->req_head_done = 1;
            /* A whole head refused for its body or expectation still
             * counts under its route. */
            if (x->req.error_status == 413 || x->req.error_status == 417)
                find_route(x, &x->req);
            respond_error(x, x->req.error_status, x->req.error_reason ? x->req.error_reason : "bad request");
            return;
        }
    }
    if (x->continue_due) {
        x->continue_due = 0;
        if (c->in_len == x->head_len) { /* none of the body has come yet */
            http1_out_str(&x->out, "HTTP/1.1 100 Continue\r\n\r\n");
            if (flush_client(x) != 0)
                return;
        }
    } else if (head_now && !x->req_done && c->in_len == x->head_len && x->up != NULL) {
        /* A head whose body is still to come: a client with Nagle on
         * (Python's http.client writes a file body apart from the head)
         * waits for our ACK of the head before sending it. */
        conn_ack_soon(c);
    }
    if (!x->req_done && c->in_len > x->head_len) {
        res = http1_parse(&x->req, c->in + x->head_len, c->in_len - x->head_len, &used);
        if (res == HTTP1_ERROR) {
            respond_error(x, x->req.error_status, "bad request body");
            return;
        }
        /* Forwarded: drop the body bytes, keep the head. */
        conn_consume_input(c, x->head_len, used);
        /* client_idle is the wait between the body's bytes, not a deadline
         * for all of it (nginx's client_body_timeout). */
        if (!x->req_done)
            conn_set_timeout(c, x->g->cfg->timeouts.client_idle_ms);
    }
    push_request(x);
}

void exchange_tunnel_to_upstream(struct conn *c, const char *p, size_t n)
{
    struct exchange *x = c->x;
    if (x == NULL || x->up == NULL)
        return;
    conn_set_timeout(c, c->x->g->cfg->timeouts.client_idle_ms);
    if (outq_append(&x->up->out, p, n) != 0) {
        conn_abort(c);
        return;
    }
    push_request(x);
}

/* ---- response side ---- */

static int on_response_head(void *ctx, struct http1_msg *m)
{
    struct exchange *x = ctx;
    struct conn *c = x->c;
    struct http1_resp_fwd fwd = {.client_version = x->req.version, .hsts = x->g->cfg->forwarding.hsts};

    if (m->status == 101) {
        if (!(x->req.flags & HTTP1_F_UPGRADE) || !x->req_done) {
            m->error_reason = "upstream switched protocols unasked";
            return 502;
        }
        x->upgraded = 1;
    } else if (m->status < 200) {
        /* An upstream that sends 1xx heads without end never answers: a
         * bound like every other one in a response. */
        if (++x->interim > EXCHANGE_MAX_INTERIM) {
            m->error_reason = "upstream sent too many interim responses";
            return 502;
        }
        /* Interim responses go to HTTP/1.1 clients only (RFC 9110 15.2);
         * a 100 is moat's to send (on_request_head). */
        if (x->req.version == 11 && m->status != 100)
            http1_write_response_head(&x->out, m, &fwd);
        return 0;
    }
    x->framing = http1_response_framing(&x->req, m);
    x->close_after = !(x->req.flags & HTTP1_F_KEEP_ALIVE) || x->framing == HTTP1_FRAMING_CLOSE ||
                     !x->req_done || c->w->stopping;
    fwd.framing = x->framing;
    fwd.close = x->close_after && !x->upgraded;
    x->head_at = x->out.len;
    x->head_flushed = x->out.flushed;
    http1_write_response_head(&x->out, m, &fwd);
    x->status = m->status;
    x->resp_started = 1;
    return 0;
}

static int on_response_body(void *ctx, const char *p, size_t n)
{
    struct exchange *x = ctx;
    x->resp_bytes += n;
    if (x->framing == HTTP1_FRAMING_CHUNKED) {
        http1_write_chunk_header(&x->out, n);
        http1_out_put(&x->out, p, n);
        http1_write_chunk_trailer(&x->out);
    } else {
        http1_out_put(&x->out, p, n);
    }
    return x->out.err ? 500 : 0;
}

static int on_response_end(void *ctx, struct http1_msg *m)
{
    struct exchange *x = ctx;
    if (m->status < 200 && m->status != 101)
        return 0;
    if (x->framing == HTTP1_FRAMING_CHUNKED)
        http1_write_last_chunk(&x->out);
    x->resp_done = 1;
    return 0;
}

static void fail_upstream(struct exchange *x, int status, enum upstream_error kind,
                          const char *why)
{
    x->upstream_error = why;
    count_upstream_error(x, kind);
    respond_error(x, status, why);
}

/* Parses the complete head at the start of x->rhead (r bytes) and what
 * follows it.  Returns 1 when another head may follow in x->rhead (after an
 * interim response), 0 when done with x->rhead, -1 when the exchange ended. */
static int parse_response_head(struct exchange *x, size_t r)
{
    struct buf_chunk *h = x->rhead;
    size_t used;
    enum http1_result res = http1_parse(&x->resp, h->data, r, &used);
    if (res == HTTP1_ERROR) {
        fail_upstream(x, 502, UPSTREAM_ERROR_MALFORMED,
                      x->resp.error_reason ? x->resp.error_reason : "bad response");
        return -1;
    }
    size_t left = h->len - r;
    if (res == HTTP1_DONE) {
        /* A message without body: an interim response (the next head may
         * follow at once) or the final one. */
        memmove(h->data, h->data + r, left);
        h->len = (uint32_t)left;
        if (x->resp_done || x->upgraded)
            return 0;
        http1_msg_reset(&x->resp);
        x->resp.scan = (struct http1_scan){0};
        return left > 0 ? 1 : 0;
    }
    /* Body bytes that came with the head. */
    if (left > 0 && http1_parse(&x->resp, h->data + r, left, &used) == HTTP1_ERROR) {
        fail_upstream(x, 502, UPSTREAM_ERROR_MALFORMED, "bad response body");
        return -1;
    }
    if (x->resp_done && used < left)
        x->upstream_extra = 1;
    h->len = 0;
    buf_chunk_put(&x->g->inbufs, &x->rhead);
    return 0;
}

/* Head bytes arrive in x->rhead; returns bytes of p used, or -1 when the
 * exchange ended. */
static long collect_response_head(struct exchange *x, const char *p, size_t n)
{
    if (x->rhead == NULL && (x->rhead = buf_chunk_get(&x->g->inbufs)) == NULL) {
        fail_upstream(x, 502, UPSTREAM_ERROR_RESET, "out of memory");
        return -1;
    }
    struct buf_chunk *h = x->rhead;
    size_t room = h->cap - h->len, take = n < room ? n : room;
    memcpy(h->data + h->len, p, take);
    h->len += (uint32_t)take;
    for (;;) {
        long r = http1_scan_head(&x->resp.scan, h->data, h->len, 0, &x->resp_lim);
        if (r < 0) {
            fail_upstream(x, 502, UPSTREAM_ERROR_MALFORMED, "malformed response head");
            return -1;
        }
        if (r == 0)
            return (long)take;
        int more = parse_response_head(x, (size_t)r);
        if (more < 0)
            return -1;
        if (more == 0)
            return (long)take;
    }
}

/* Moves upstream bytes to the client; returns 0, or -1 when the exchange ended. */
static int relay_response(struct exchange *x, const char *p, size_t n)
{
    while (n > 0 && !x->resp_done && !x->upgraded) {
        if (!x->resp.in_body || x->rhead != NULL) {
            long used = collect_response_head(x, p, n);
            if (used < 0)
                return -1;
            p += used;
            n -= (size_t)used;
            continue;
        }
        size_t used;
        enum http1_result res = http1_parse(&x->resp, p, n, &used);
        if (res == HTTP1_ERROR) {
            log_warn("%s: upstream %s: %s", x->c->peer_ip, x->pool->cfg->name,
                     x->resp.error_reason ? x->resp.error_reason : "bad response body");
            x->upstream_error = "bad response body";
            respond_error(x, 502, "bad response body");
            return -1;
        }
        p += used;
        n -= used;
    }
    if (x->upgraded) {
        /* Tunnel bytes that came with the 101, in order. */
        if (x->rhead != NULL) {
            http1_out_put(&x->out, x->rhead->data, x->rhead->len);
            x->resp_bytes += x->rhead->len;
        }
        x->resp_bytes += n;
        buf_chunk_put(&x->g->inbufs, &x->rhead);
        http1_out_put(&x->out, p, n);
        return 0;
    }
    if (n > 0 || (x->rhead != NULL && x->rhead->len > 0))
        x->upstream_extra = 1;
    return 0;
}

static void after_relay(struct exchange *x)
{
    struct conn *c = x->c;
    if (flush_client(x) != 0 || c->state == CONN_CLOSED)
        return;
    if (x->upgraded) {
        /* Logged when the tunnel ends (exchange_abort), with its bytes and
         * duration, as nginx logs a WebSocket. */
        conn_consume_input(c, 0, x->head_len);
        x->head_len = 0;
        upconn_set_timeout(x->up, 0);
        conn_enter_tunnel(c);
        return;
    }
    if (x->resp_done) {
        finish(x);
        return;
    }
    if (conn_out_pending(c) > CONN_HIGH_WATER && x->up != NULL) {
        /* The client reads slower than the upstream writes. */
        upconn_read_stop(x->up);
        upconn_set_timeout(x->up, 0);
        x->upstream_paused = 1;
        conn_set_timeout(c, x->g->cfg->timeouts.client_idle_ms);
    }
}

void exchange_on_client_drained(struct conn *c)
{
    struct exchange *x = c->x;
    if (x == NULL || !x->upstream_paused || x->up == NULL)
        return;
    x->upstream_paused = 0;
    if (upconn_read_start(x->up) != 0) {
        conn_abort(c);
        return;
    }
    if (!x->upgraded) {
        conn_set_timeout(c, 0);
        arm_response_timer(x);
    }
}

static void tunnel_to_client(struct exchange *x, const char *p, size_t n)
{
    struct conn *c = x->c;
    conn_set_timeout(c, x->g->cfg->timeouts.client_idle_ms);
    x->resp_bytes += n;
    if (sink_write(conn_sink(c), p, n) != 0 || conn_flush(c) != 0)
        return;
    if (conn_out_pending(c) > CONN_HIGH_WATER) {
        upconn_read_stop(x->up);
        x->upstream_paused = 1;
    }
}

/* 1 if the request may be sent again: idempotent, all of it held in
 * x->uhead, and nothing of an answer seen yet. */
static int can_replay(const struct exchange *x)
{
    return x->replayable && (x->req.flags & HTTP1_F_IDEMPOTENT) && !x->resp_started &&
           x->rhead == NULL && x->attempts < MAX_ATTEMPTS;
}

/* A pooled connection the upstream had closed: try once more on a fresh
 * one when the request can be replayed safely. */
static int retry_stale(struct exchange *x)
{
    struct upconn *up = x->up;
    if (up == NULL || !up->reused || !can_replay(x))
        return 0;
    size_t server = up->server;
    detach_upstream(x, 0);
    log_debug("%s: pooled upstream connection was stale, retrying", x->c->peer_ip);
    if (attach_upstream(x, upstream_connect(x->pool, server, &upstream_ops, x), NULL) != 0)
        return 0;
    push_request(x);
    return 1;
}

/* The server failed this request before answering.  As with nginx's
 * defaults (max_fails=1, fail_timeout=10s) it is skipped for a while, so
 * that a server which accepts and then hangs or resets does not fail a
 * share of all requests; a request that can be replayed safely moves on to
 * a server not tried yet.  A timeout is not replayed: the client has
 * already waited response_timeout once. */
static void server_failed(struct exchange *x, int status, enum upstream_error kind,
                          const char *why)
{
    upstream_mark_failed(x->pool, x->up->server);
    if (kind == UPSTREAM_ERROR_TIMEOUT || !can_replay(x)) {
        fail_upstream(x, status, kind, why);
        return;
    }
    log_warn("upstream %s: %s: %s; trying the next server", x->pool->cfg->name,
             x->pool->cfg->servers[x->up->server].name, why);
    count_upstream_error(x, kind);
    detach_upstream(x, 0);
    if (attach_upstream(x, upstream_acquire(x->pool, &x->tried, &upstream_ops, x), NULL) != 0) {
        x->upstream_error = why;
        respond_error(x, status, why);
        return;
    }
    push_request(x);
}

static void on_upstream_eof(struct exchange *x, int err)
{
    struct conn *c = x->c;
    if (x->upgraded) {
        conn_close_after_flush(c);
        return;
    }
    if (!x->resp.in_body || x->rhead != NULL) {
        if (retry_stale(x))
            return;
        server_failed(x, 502, UPSTREAM_ERROR_RESET,
                      err == UV_EOF ? "upstream closed before responding"
                                    : "upstream reset before responding");
        return;
    }
    /* Only a clean close ends a close-delimited body: after a reset the
     * client must not take what it got for the whole response. */
    if (err == UV_EOF && http1_finish(&x->resp) == HTTP1_DONE && x->resp_done) {
        x->close_after = x->close_after || x->framing == HTTP1_FRAMING_CLOSE;
        x->upstream_extra = 1; /* it closed: never reuse */
        after_relay(x);
        return;
    }
    log_warn("%s: upstream %s closed mid-response", c->peer_ip, x->pool->cfg->name);
    fail_upstream(x, 502, UPSTREAM_ERROR_RESET, "upstream closed mid-response");
}

static void on_upstream_read(void *owner, struct upconn *up, const char *p, ssize_t n)
{
    struct exchange *x = owner;
    (void)up;
    if (n < 0) {
        on_upstream_eof(x, (int)n);
        return;
    }
    if (x->upgraded) {
        tunnel_to_client(x, p, (size_t)n);
        return;
    }
    arm_response_timer(x);
    if (relay_response(x, p, (size_t)n) != 0)
        return;
    after_relay(x);
}

/* The connection never came up, so nothing was sent: the server is skipped
 * for a while and the queued request moves to the next server not tried
 * yet, or the client gets status. */
static void try_next_server(struct exchange *x, struct upconn *up, int status,
                            enum upstream_error kind, const char *why)
{
    struct outq carry;
    count_upstream_error(x, kind);
    upstream_mark_failed(x->pool, up->server);
    outq_init(&carry, up->out.pool, NULL, NULL, NULL);
    outq_move(&carry, &up->out);
    detach_upstream(x, 0);
    int rc = x->attempts < MAX_ATTEMPTS
                 ? attach_upstream(x, upstream_acquire(x->pool, &x->tried, &upstream_ops, x),
                                   &carry)
                 : 502;
    if (rc != 0) {
        outq_discard(&carry);
        x->upstream_error = why;
        respond_error(x, status, why);
        return;
    }
    push_request(x);
}

static void on_upstream_connect(void *owner, struct upconn *up, int status)
{
    struct exchange *x = owner;
    if (status == 0) {
        push_request(x);
        return;
    }
    log_warn("upstream %s: connect to %s failed: %s", x->pool->cfg->name,
             x->pool->cfg->servers[up->server].name, uv_strerror(status));
    try_next_server(x, up, 502, UPSTREAM_ERROR_CONNECT, "upstream refused the connection");
}

static void on_upstream_written(void *owner, struct upconn *up, int status)
{
    struct exchange *x = owner;
    if (status < 0) {
        if (retry_stale(x))
            return;
        if (x->upgraded) {
            conn_close_after_flush(x->c);
            return;
        }
        if (x->up_reading && !x->resp_started) {
            /* An upstream that answers early (413 to a big upload) and
             * closes stops our writes; its answer may already wait in the
             * socket.  Stop sending and let the read side decide: the
             * response, or EOF/reset (502). */
            x->write_failed = 1;
            outq_discard(&up->out);
            conn_block_input(x->c);
            arm_response_timer(x);
            return;
        }
        server_failed(x, 502, UPSTREAM_ERROR_RESET, "upstream write failed");
        return;
    }
    if (up->out.bytes > 0)
        upconn_flush(up);
    else if (x->c->input_blocked)
        conn_unblock_input(x->c);
}

static void on_upstream_timeout(void *owner, struct upconn *up)
{
    struct exchange *x = owner;
    if (!up->connected) {
        log_warn("upstream %s: connect to %s timed out", x->pool->cfg->name,
                 x->pool->cfg->servers[up->server].name);
        try_next_server(x, up, 504, UPSTREAM_ERROR_TIMEOUT, "upstream connect timed out");
        return;
    }
    if (client_owes_body(x)) {
        respond_error(x, 408, "request body timed out");
        return;
    }
    if (x->resp_started) {
        log_warn("%s: upstream %s stalled mid-response", x->c->peer_ip, x->pool->cfg->name);
        count_upstream_error(x, UPSTREAM_ERROR_TIMEOUT);
        x->close_after = 1;
        conn_abort(x->c);
        return;
    }
    server_failed(x, 504, UPSTREAM_ERROR_TIMEOUT, "upstream response timed out");
}

static const struct upconn_owner_ops upstream_ops = {
    .on_connect = on_upstream_connect,
    .on_read = on_upstream_read,
    .on_written = on_upstream_written,
    .on_timeout = on_upstream_timeout,
};
