/*
 * conn: the client connection state machine (diagram in conn.h).  Owns the
 * client socket, timer, TLS session and buffers; hands plaintext to
 * exchange and sends what exchange writes.  Frees the connection only in
 * the last close callback.
 */
#include "conn.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exchange.h"
#include "gen.h"
#include "listener.h"
#include "log.h"
#include "memcap.h"
#include "metrics.h"
#include "sockopt.h"
#include "strutil.h"
#include "tls.h"
#include "worker.h"

/* Silence from a client that may be waiting for our ACK (conn_ack_soon)
 * before moat sends it. */
#define CONN_ACK_AFTER_MS 1
/* How long a closing connection may take to flush and hear the peer's EOF. */
#define CONN_LINGER_MS 2000
/* Ciphertext held before the handshake starts: one full TLS record. */
#define CONN_MAX_SNIFF (5 + 16384 + 2048)

static void conn_process(struct conn *c);
static void conn_close_handles(struct conn *c);
static void on_client_timer(uv_timer_t *t);
static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static const char *const state_names[] = {"sniff", "handshake", "active", "tunnel", "linger",
                                          "closed"};

/* Legal transitions; anything else is a bug worth an alert. */
static int transition_allowed(enum conn_state from, enum conn_state to)
{
    switch (to) {
    case CONN_HANDSHAKE: return from == CONN_SNIFF;
    case CONN_ACTIVE: return from == CONN_HANDSHAKE;
    case CONN_TUNNEL: return from == CONN_ACTIVE;
    case CONN_LINGER: return from != CONN_CLOSED && from != CONN_LINGER;
    case CONN_CLOSED: return from != CONN_CLOSED;
    default: return 0;
    }
}

static void conn_set_state(struct conn *c, enum conn_state to)
{
    if (!transition_allowed(c->state, to)) {
        log_alert("connection from %s: illegal transition %s -> %s", c->peer_ip,
                  state_names[c->state], state_names[to]);
        assert(!"illegal connection state transition");
    }
    c->state = to;
}

struct sink *conn_sink(struct conn *c)
{
    return &c->plain_sink;
}

size_t conn_out_pending(const struct conn *c)
{
    return c->out.bytes;
}

void conn_set_timeout(struct conn *c, uint64_t ms)
{
    if (c->state == CONN_CLOSED)
        return;
    c->ack_due = 0; /* whoever sets a deadline has heard from the client */
    deadline_set(&c->timer, ms);
}

void conn_ack_soon(struct conn *c)
{
    if (c->state == CONN_CLOSED || c->ack_due)
        return;
    c->ack_due = 1;
    c->ack_resume_at = c->timer.at;
    deadline_set(&c->timer, CONN_ACK_AFTER_MS);
}

/* The ACK was due: send it and put back the deadline it stood in for. */
static void ack_now_and_resume(struct conn *c)
{
    c->ack_due = 0;
    sockopt_ack_now(&c->tcp);
    uint64_t now = uv_now(&c->w->loop);
    if (c->ack_resume_at != 0)
        deadline_set(&c->timer, c->ack_resume_at > now ? c->ack_resume_at - now : 1);
}

static int on_plain_write(struct sink *s, const void *p, size_t n)
{
    struct conn *c = container_of(s, struct conn, plain_sink);
    if (c->tls == NULL || c->state == CONN_CLOSED)
        return UV_EPIPE;
    return tls_write(c->tls, p, n) == 0 ? 0 : UV_EIO;
}

static void start_reading(struct conn *c)
{
    if (!c->reading && c->state != CONN_CLOSED && !c->eof &&
        uv_read_start((uv_stream_t *)&c->tcp, worker_alloc_read, on_client_read) == 0)
        c->reading = 1;
}

static void stop_reading(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

int conn_flush(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return UV_EPIPE;
    int rc = outq_flush(&c->out);
    if (rc != 0) {
        log_debug("connection from %s: write failed: %s", c->peer_ip, uv_strerror(rc));
        conn_abort(c);
    }
    return rc;
}

/* Client connections open in the whole process.  max_connections is one
 * cap for all workers, as its name says, not a share per worker that would
 * refuse a client while another worker has room: one atomic add per
 * connection, never per request. */
static atomic_uint_fast64_t conns_open;

/* ---- closing ---- */

static void on_conn_handle_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct worker *w = c->w;
    tls_session_free(&c->tls);
    free(c->spill);
    if (c->in != NULL) {
        struct buf_chunk *chunk = container_of(c->in, struct buf_chunk, data);
        buf_chunk_put(&c->gen->inbufs, &chunk);
    }
    outq_release(&c->out);
    atomic_fetch_sub_explicit(&conns_open, 1, memory_order_relaxed);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gen_unref(&c->gen);
    free(c);
    STAT_ADD(w->metrics.active, (uint64_t)-1);
    worker_conn_closed(w);
}

static void conn_close_handles(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    conn_set_state(c, CONN_CLOSED);
    exchange_abort(c);
    stop_reading(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_close);
    uv_close(deadline_handle(&c->timer), on_conn_handle_close);
}

void conn_abort(struct conn *c)
{
    conn_close_handles(c);
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    (void)status;
    /* Keep reading until the peer's EOF (or the linger timer), so that
     * unread request bytes do not turn our close into a reset that destroys
     * the response before the client reads it.  When moat is stopping, an
     * idle keep-alive client would hold the exit for the whole linger: with
     * nothing of its left unread, there is nothing for a reset to destroy. */
    if (c->state != CONN_LINGER)
        return;
    if (c->eof || (c->w->stopping && !sockopt_has_unread_input(&c->tcp)))
        conn_close_handles(c);
}

/* Both conn_close_after_flush (the queue drained at once) and the write
 * report that follows it may get here. */
static void start_shutdown(struct conn *c)
{
    if (c->shutdown_started)
        return;
    c->shutdown_started = 1;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown_done) != 0)
        conn_close_handles(c);
}

/* A close_notify alert is some 30 bytes.  With nothing else queued it goes
 * straight to the socket instead of taking a 16 KiB output chunk: 10,000
 * idle connections closed at shutdown would otherwise need 160 MiB at once. */
struct alert_sink {
    struct sink sink;
    struct conn *c;
    size_t len;
    char buf[64];
};

static int alert_sink_write(struct sink *s, const void *data, size_t len)
{
    struct alert_sink *a = container_of(s, struct alert_sink, sink);
    if (a->len + len > sizeof(a->buf)) {
        /* Not an alert after all: queue everything, in order. */
        int rc = outq_append(&a->c->out, a->buf, a->len);
        a->len = 0;
        return rc != 0 ? rc : outq_append(&a->c->out, data, len);
    }
    memcpy(a->buf + a->len, data, len);
    a->len += len;
    return 0;
}

static void send_close_notify(struct conn *c)
{
    if (c->out.bytes > 0) {
        tls_close_notify(c->tls, NULL);
        return;
    }
    struct alert_sink a = {.sink = {alert_sink_write}, .c = c};
    tls_close_notify(c->tls, &a.sink);
    if (a.len == 0)
        return;
    int n = 0;
    if (c->out.bytes == 0) {
        uv_buf_t b = uv_buf_init(a.buf, (unsigned)a.len);
        n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0)
            n = 0; /* EAGAIN, or an error the queued write will report */
    }
    if ((size_t)n < a.len && outq_append(&c->out, a.buf + n, a.len - (size_t)n) != 0)
        log_debug("connection from %s: no memory for close_notify", c->peer_ip);
}

void conn_close_after_flush(struct conn *c)
{
    if (c->state == CONN_CLOSED || c->state == CONN_LINGER)
        return;
    exchange_abort(c);
    if (c->tls != NULL && c->state != CONN_HANDSHAKE)
        send_close_notify(c);
    conn_set_state(c, CONN_LINGER);
    c->close_after_flush = 1;
    free(c->spill);
    c->spill = NULL;
    c->spill_len = 0;
    conn_set_timeout(c, CONN_LINGER_MS);
    if (c->eof) {
        /* Nothing more will come: flush what we can and go. */
        if (c->out.bytes == 0) {
            conn_close_handles(c);
            return;
        }
    } else {
        start_reading(c);
    }
    if (conn_flush(c) == 0 && c->out.bytes == 0)
        start_shutdown(c);
}

static void on_client_written(struct outq *q, int status)
{
    struct conn *c = container_of(q, struct conn, out);
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        log_debug("connection from %s: write failed: %s", c->peer_ip, uv_strerror(status));
        conn_abort(c);
        return;
    }
    if (c->out.bytes > 0) {
        conn_flush(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->state == CONN_LINGER) {
        if (c->out.bytes == 0) {
            if (c->eof)
                conn_close_handles(c);
            else
                start_shutdown(c);
        }
        return;
    }
    if (c->x != NULL && c->out.bytes < CONN_LOW_WATER)
        exchange_on_client_drained(c);
}

/* ---- input ---- */

static int ensure_input_buffer(struct conn *c)
{
    if (c->in != NULL)
        return 0;
    struct buf_chunk *chunk = buf_chunk_get(&c->gen->inbufs);
    if (chunk == NULL)
        return UV_ENOMEM;
    c->in = chunk->data;
    c->in_cap = chunk->cap;
    c->in_len = 0;
    return 0;
}

static void release_input_buffer(struct conn *c)
{
    if (c->in == NULL || c->in_len != 0)
        return;
    struct buf_chunk *chunk = container_of(c->in, struct buf_chunk, data);
    buf_chunk_put(&c->gen->inbufs, &chunk);
    c->in = NULL;
    c->in_cap = 0;
}

void conn_consume_input(struct conn *c, size_t from, size_t n)
{
    assert(from + n <= c->in_len);
    memmove(c->in + from, c->in + from + n, c->in_len - from - n);
    c->in_len -= n;
}

static void on_client_gone(struct conn *c, int err)
{
    c->eof = 1;
    if (err != UV_EOF && err != TLS_EOF)
        log_debug("connection from %s: %s", c->peer_ip,
                  err == TLS_ERROR ? "TLS error" : uv_strerror(err));
    /* A request still waiting for its response is abandoned. */
    conn_close_after_flush(c);
}

static void on_handshake_done(struct conn *c)
{
    struct listener_stats *ls = c->gen->lstats[c->lidx];
    int resumed = tls_session_resumed(c->tls) ? 1 : 0;
    int tls13 = tls_session_is_tls13(c->tls);
    STAT_INC(ls->handshakes[tls13][resumed]);
    log_debug("connection from %s: %s %s%s", c->peer_ip, tls_session_version(c->tls),
              tls_session_cipher(c->tls), resumed ? " (resumed)" : "");
    conn_set_state(c, CONN_ACTIVE);
    /* The first request's head is due within client_header of the
     * handshake, as the following ones are within client_header of their
     * first byte; after a response, client_idle is the keep-alive wait. */
    conn_set_timeout(c, c->gen->cfg->timeouts.client_header_ms);
    /* The client's Finished came last (TLS 1.3, where the ticket left with
     * our Finished, and TLS 1.2 resumption): moat has nothing to send that
     * would carry its ACK, and a client with Nagle on (Python's
     * http.client, s_client) holds its request until the ACK comes. */
    const uint8_t *pending;
    if ((tls13 || resumed) && tls_session_pending_input(c->tls, &pending) == 0 &&
        !tls_session_has_plaintext(c->tls))
        conn_ack_soon(c);
}

/* A refused handshake: a fatal alert (7 bytes), then close. */
static void refuse_handshake(struct conn *c, const uint8_t *alert)
{
    if (outq_append(&c->out, alert, 7) != 0) {
        conn_abort(c);
        return;
    }
    c->eof = 1;
    conn_close_after_flush(c);
}

/* Pulls plaintext out of TLS as far as the exchange can take it. */
static void conn_process_loop(struct conn *c)
{
    struct worker *w = c->w;
    for (;;) {
        if (c->state == CONN_HANDSHAKE) {
            int rc = tls_handshake(c->tls);
            if (rc == TLS_WANT_READ)
                return;
            if (rc != TLS_OK) {
                char why[128];
                STAT_INC(c->gen->lstats[c->lidx]->handshake_errors);
                /* A refused client certificate is an operator's question
                 * ("why can't this service connect?"), as in nginx's
                 * error log; other failures are scanners' noise. */
                if (tls_session_client_cert_refused(c->tls))
                    log_info("connection from %s to listener \"%s\": client certificate "
                             "refused: %s",
                             c->peer_ip, c->gen->cfg->listeners[c->lidx].name,
                             tls_session_error(c->tls, why, sizeof(why)));
                else
                    log_debug("connection from %s: handshake failed: %s", c->peer_ip,
                              tls_session_error(c->tls, why, sizeof(why)));
                if (c->out.bytes == 0 && tls_session_refused_silently(c->tls)) {
                    refuse_handshake(c, tls_handshake_failure_alert); /* wolfSSL sends none */
                    return;
                }
                /* wolfSSL queued an alert: send it, then close. */
                c->eof = 1;
                conn_close_after_flush(c);
                return;
            }
            on_handshake_done(c);
            continue;
        }
        if (c->state == CONN_TUNNEL) {
            if (c->input_blocked)
                return;
            int n = tls_read(c->tls, w->scratch, sizeof(w->scratch));
            if (n == 0)
                return;
            if (n < 0) {
                on_client_gone(c, n);
                return;
            }
            exchange_tunnel_to_upstream(c, w->scratch, (size_t)n);
            continue;
        }
        if (c->state != CONN_ACTIVE || c->input_blocked)
            return;
        if (c->x != NULL && exchange_request_complete(c))
            return; /* pipelined bytes wait for the response */
        if (c->pending_parse) {
            c->pending_parse = 0;
            exchange_on_client_input(c);
            continue;
        }
        /* An idle connection holds no input buffer: take one only when
         * there is something to decrypt. */
        const uint8_t *pending;
        if (c->in == NULL && tls_session_pending_input(c->tls, &pending) == 0 &&
            !tls_session_has_plaintext(c->tls))
            return;
        if (ensure_input_buffer(c) != 0) {
            conn_abort(c);
            return;
        }
        if (c->in_len == c->in_cap)
            return;
        int n = tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0) {
            if (c->x == NULL)
                release_input_buffer(c);
            return;
        }
        if (n < 0) {
            release_input_buffer(c);
            on_client_gone(c, n);
            return;
        }
        c->in_len += (size_t)n;
        c->last_activity = uv_now(&w->loop);
        exchange_on_client_input(c);
    }
}

static void conn_process(struct conn *c)
{
    c->processing++;
    conn_process_loop(c);
    c->processing--;
}

/* Feeds ciphertext p[0..n) and keeps what TLS did not consume. */
static void conn_feed(struct conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *rest;
    tls_session_feed(c->tls, p, n);
    conn_process(c);
    if (c->state == CONN_CLOSED || c->state == CONN_LINGER) {
        if (c->tls)
            tls_session_feed(c->tls, NULL, 0);
        return;
    }
    size_t left = tls_session_pending_input(c->tls, &rest);
    tls_session_feed(c->tls, NULL, 0);
    if (left == 0) {
        if (p == c->spill) {
            free(c->spill);
            c->spill = NULL;
            c->spill_len = 0;
        }
        return;
    }
    if (p == c->spill) {
        memmove(c->spill, rest, left);
        c->spill_len = left;
        return;
    }
    /* The exchange is not taking plaintext: keep the ciphertext and stop
     * reading the socket until it does. */
    uint8_t *keep = realloc(c->spill, c->spill_len + left);
    if (keep == NULL) {
        conn_abort(c);
        return;
    }
    memcpy(keep + c->spill_len, rest, left);
    c->spill = keep;
    c->spill_len += left;
}

/* Reading stops while ciphertext waits in the spill buffer or the exchange
 * cannot take more: that is the client side's backpressure. */
static void update_reading(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    int blocked = c->state != CONN_LINGER &&
                  ((c->spill_len > 0 && c->state != CONN_SNIFF) || c->input_blocked);
    if (blocked)
        stop_reading(c);
    else
        start_reading(c);
}

static void answer_plain_http(struct conn *c)
{
    static const char body[] = "400 Bad Request: this port speaks HTTPS, not plain HTTP.\n";
    char head[160];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 400 Bad Request\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     sizeof(body) - 1);
    log_debug("connection from %s: plain HTTP on a TLS port", c->peer_ip);
    if (outq_append(&c->out, head, (size_t)n) != 0 ||
        outq_append(&c->out, body, sizeof(body) - 1) != 0) {
        conn_abort(c);
        return;
    }
    conn_close_after_flush(c);
}

static void sniff(struct conn *c, const uint8_t *p, size_t n)
{
    struct tls_hello hello;
    if (c->spill_len + n > CONN_MAX_SNIFF) {
        conn_abort(c);
        return;
    }
    uint8_t *buf = realloc(c->spill, c->spill_len + n);
    if (buf == NULL) {
        conn_abort(c);
        return;
    }
    memcpy(buf + c->spill_len, p, n);
    c->spill = buf;
    c->spill_len += n;
    enum tls_sniff kind = tls_sniff(c->spill, &c->spill_len, &hello);
    if (kind == TLS_SNIFF_MORE)
        return;
    if (kind != TLS_SNIFF_TLS) {
        STAT_INC(c->gen->lstats[c->lidx]->handshake_errors);
        const uint8_t *alert = tls_sniff_alert(kind);
        if (kind == TLS_SNIFF_HTTP) {
            answer_plain_http(c);
        } else if (alert != NULL) {
            if (kind == TLS_SNIFF_NO_GROUP)
                log_debug("connection from %s: no key-exchange group in common", c->peer_ip);
            refuse_handshake(c, alert);
        } else {
            conn_abort(c);
        }
        return;
    }
    c->tls = tls_session_new(c->gen->tls[c->lidx], &hello, &c->cipher_sink.sink);
    if (c->tls == NULL) {
        conn_abort(c);
        return;
    }
    conn_set_state(c, CONN_HANDSHAKE);
    conn_feed(c, c->spill, c->spill_len);
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (c->state == CONN_LINGER) {
            c->eof = 1;
            if (c->out.bytes == 0)
                conn_close_handles(c);
            else
                stop_reading(c);
            return;
        }
        stop_reading(c);
        on_client_gone(c, (int)nread);
        return;
    }
    switch (c->state) {
    case CONN_LINGER:
    case CONN_CLOSED:
        return; /* discarded */
    case CONN_SNIFF:
        sniff(c, (const uint8_t *)buf->base, (size_t)nread);
        break;
    default:
        conn_feed(c, (const uint8_t *)buf->base, (size_t)nread);
        break;
    }
    if (c->state != CONN_CLOSED) {
        conn_flush(c);
        update_reading(c);
    }
}

/* Re-runs input processing after the exchange became ready for more. */
static void conn_resume(struct conn *c)
{
    if (c->state != CONN_ACTIVE && c->state != CONN_TUNNEL)
        return;
    if (c->spill_len > 0)
        conn_feed(c, c->spill, c->spill_len);
    else
        conn_process(c);
    if (c->state != CONN_CLOSED) {
        conn_flush(c);
        update_reading(c);
    }
}

void conn_block_input(struct conn *c)
{
    c->input_blocked = 1;
    update_reading(c);
}

void conn_unblock_input(struct conn *c)
{
    if (!c->input_blocked)
        return;
    c->input_blocked = 0;
    conn_resume(c);
}

void conn_enter_tunnel(struct conn *c)
{
    conn_set_state(c, CONN_TUNNEL);
    conn_set_timeout(c, c->gen->cfg->timeouts.client_idle_ms);
    /* Bytes the client sent after its upgrade request belong to the tunnel. */
    if (c->in_len > 0) {
        exchange_tunnel_to_upstream(c, c->in, c->in_len);
        c->in_len = 0;
    }
    release_input_buffer(c);
    /* Ciphertext that waited for the 101 is tunnel data too. */
    if (c->processing == 0)
        conn_resume(c);
}

void conn_exchange_done(struct conn *c, int close_after)
{
    struct worker *w = c->w;
    c->requests++;
    if (close_after || w->stopping) {
        c->in_len = 0;
        release_input_buffer(c);
        conn_close_after_flush(c);
        return;
    }
    release_input_buffer(c);
    conn_set_timeout(c, c->gen->cfg->timeouts.client_idle_ms);
    /* Pipelined requests already read go on from the input loop, never by
     * recursion: a client can pipeline thousands of tiny requests. */
    c->pending_parse = c->in_len > 0;
    if (c->processing == 0)
        conn_resume(c);
}

void conn_drain(struct conn *c)
{
    switch (c->state) {
    case CONN_SNIFF:
    case CONN_HANDSHAKE:
        conn_abort(c);
        break;
    case CONN_ACTIVE:
        if (c->x == NULL)
            conn_close_after_flush(c);
        break;
    default:
        break;
    }
}

/* ---- timers ---- */

static void on_client_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    switch (c->state) {
    case CONN_SNIFF:
    case CONN_HANDSHAKE:
        STAT_INC(c->gen->lstats[c->lidx]->handshake_errors);
        log_debug("connection from %s: handshake timed out", c->peer_ip);
        conn_abort(c);
        return;
    case CONN_ACTIVE:
        if (c->ack_due) {
            ack_now_and_resume(c);
            return;
        }
        /* A new connection that sent no request at all gets the 408 too
         * (HAProxy's way); an idle keep-alive connection closes quietly. */
        if ((c->x != NULL && exchange_reading_head(c)) || (c->x == NULL && c->requests == 0)) {
            exchange_on_header_timeout(c);
            return;
        }
        if (exchange_on_client_timeout(c))
            return;
        if (c->x != NULL) {
            log_debug("connection from %s: client stalled mid-exchange", c->peer_ip);
            conn_abort(c);
            return;
        }
        conn_close_after_flush(c);
        return;
    case CONN_TUNNEL:
        log_debug("connection from %s: tunnel idle", c->peer_ip);
        conn_abort(c);
        return;
    case CONN_LINGER:
        conn_close_handles(c);
        return;
    case CONN_CLOSED:
        return;
    }
}

/* ---- accept ---- */

/* The peer's address alone, as X-Forwarded-For carries it: IPv4 for
 * v4-mapped IPv6 peers of a dual-stack listener. */
static void set_peer_ip(struct conn *c, const struct sockaddr *peer, socklen_t peer_len)
{
    if (peer_len == 0 || peer_len > sizeof(c->peer))
        return;
    memcpy(&c->peer, peer, peer_len);
    format_peer_ip(peer, peer_len, c->peer_ip, sizeof(c->peer_ip));
}

void conn_accept(struct listener *l, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    struct worker *w = l->w;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error("worker %u: out of memory accepting a connection", w->id);
        close(fd);
        return;
    }
    c->w = w;
    c->gen = w->gen;
    gen_ref(c->gen);
    c->lidx = l->index;
    c->port = l->port;
    c->state = CONN_SNIFF;
    uv_tcp_init(&w->loop, &c->tcp);
    deadline_init(&c->timer, &w->loop, on_client_timer, c);
    c->tcp.data = c;
    c->handles = 2;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    uint64_t open_now = atomic_fetch_add_explicit(&conns_open, 1, memory_order_relaxed) + 1;
    STAT_INC(w->metrics.active);
    outq_init(&c->out, &w->chunks, (uv_stream_t *)&c->tcp, &w->written, on_client_written);
    outq_sink_init(&c->cipher_sink, &c->out);
    c->plain_sink.write = on_plain_write;
    strcpy(c->peer_ip, "-");

    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        conn_close_handles(c);
        return;
    }
    if (open_now > c->gen->cfg->limits.max_connections) {
        STAT_INC(c->gen->lstats[c->lidx]->refused);
        /* nginx and HAProxy say so too; once a minute per worker is enough
         * to see it, and no flood can fill the log with it. */
        uint64_t now = uv_now(&w->loop);
        if (w->full_logged_ms == 0 || now - w->full_logged_ms >= 60000) {
            w->full_logged_ms = now;
            log_warn("max_connections (%llu) reached: refusing new connections (counted in "
                     "moat_connections_refused_total)",
                     (unsigned long long)c->gen->cfg->limits.max_connections);
        }
        conn_close_handles(c);
        return;
    }
    if (memcap_over()) {
        STAT_INC(c->gen->lstats[c->lidx]->refused_memory);
        conn_close_handles(c);
        return;
    }
    STAT_INC(c->gen->lstats[c->lidx]->connections);
    set_peer_ip(c, peer, peer_len);
    /* TCP_NODELAY comes from the listening socket (listener.c). */
    conn_set_timeout(c, c->gen->cfg->listeners[c->lidx].tls.handshake_timeout_ms);
    if (uv_read_start((uv_stream_t *)&c->tcp, worker_alloc_read, on_client_read) == 0)
        c->reading = 1;
    else
        conn_close_handles(c);
}
