/*
 * fuzz_response: the upstream side of an exchange, as exchange.c runs it,
 * on bytes that arrive in pieces: response heads collected in a bounded
 * chunk and scanned incrementally, interim responses (1xx) followed by the
 * final one, a 101 that switches to a tunnel, bodies framed by
 * Content-Length, chunked or the close (http1_finish at EOF), and what the
 * client gets: http1_write_response_head() with the framing
 * http1_response_framing() chose and the body re-chunked when needed.
 *
 * Input: byte 0 the request (bit 0 HEAD, bit 1 HTTP/1.0 client, bit 2
 * client keep-alive, bit 3 websocket upgrade asked, bit 4 HSTS, bit 5
 * request body still arriving), byte 1 the seed of the piece sizes and
 * (bit 7) whether the upstream closes after its bytes, then what the
 * upstream sends.
 *
 * Invariants (abort on violation): every head the client gets is
 * well-formed HTTP/1.1 by an independent reader, with at most one framing
 * header, the one the framing needs, and Connection: close when the body
 * ends with the connection; interim heads only to HTTP/1.1 clients and
 * a 101 only when asked; body bytes exactly as the framing says (valid
 * chunks, Content-Length never exceeded, nothing after a body-less
 * response); the client stream read back by moat's parser ends where the
 * response ended; errors before the response answer with one
 * well-formed 502.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "http1.h"
#include "strutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHUNK_CAP (32768 + 16384)   /* gen.c: input chunks */
#define RESP_MAX_HEADERS 256         /* exchange.c */

struct resp_state {
    /* the request this answers */
    struct http1_msg req;
    const char *hsts;
    int req_done;               /* the request was read whole */

    struct http1_msg resp;
    struct http1_limits lim;
    struct http1_header headers[RESP_MAX_HEADERS];
    char *rhead;                /* x->rhead, NULL when not collecting */
    size_t rhead_len;

    /* to the client */
    struct fuzz_buf client;
    struct fuzz_sink sink;
    struct http1_out out;
    char scratch[1024];
    enum http1_framing framing;
    size_t final_head_at;       /* where the final head starts in client */
    int final_written;
    const char *head;           /* the upstream head being parsed */
    size_t head_len;
    size_t body_at;             /* where its body starts */
    int resp_started;
    int resp_done;
    int upgraded;
    int close_after;
    int failed;                 /* the exchange ended in an error */
    int aborted;                /* ... after the response started */
    int upstream_extra;
    unsigned interims;
    uint64_t body_data;
};

static struct resp_state st;

/* What moat accepted from the upstream is strictly valid, and llhttp saw
 * the same fields as an independent reading. */
static void check_upstream_head(const struct resp_state *s, const struct http1_msg *m)
{
    static struct fuzz_head h;
    const char *why = fuzz_read_head(s->head, s->head_len, FUZZ_RESPONSE | FUZZ_ANY_VERSION, &h);
    FUZZ_CHECK(why == NULL, "moat accepted an upstream head that is not strict HTTP/1.x: %s", why);
    FUZZ_CHECK(h.status == m->status, "status %d, llhttp read %d", h.status, m->status);
    fuzz_check_same_fields(&h, m);
}

static int on_head(void *ctx, struct http1_msg *m)
{
    struct resp_state *s = ctx;
    struct http1_resp_fwd fwd = {.client_version = s->req.version, .hsts = s->hsts};
    check_upstream_head(s, m);
    FUZZ_CHECK(m->status >= 100 && m->status <= 599, "status %d accepted", m->status);
    FUZZ_CHECK(!((m->flags & HTTP1_F_CHUNKED) && (m->flags & HTTP1_F_CONTENT_LENGTH)),
               "both framings");
    if (m->status == 101) {
        if (!(s->req.flags & HTTP1_F_UPGRADE) || !s->req_done) {
            m->error_reason = "upstream switched protocols unasked";
            return 502;
        }
        s->upgraded = 1;
    } else if (m->status < 200) {
        s->interims++;
        if (s->req.version == 11)
            http1_write_response_head(&s->out, m, &fwd);
        return 0;
    }
    s->framing = http1_response_framing(&s->req, m);
    FUZZ_CHECK(s->req.version == 11 || s->framing != HTTP1_FRAMING_CHUNKED,
               "chunked framing for an HTTP/1.0 client");
    s->close_after = !(s->req.flags & HTTP1_F_KEEP_ALIVE) || s->framing == HTTP1_FRAMING_CLOSE ||
                     !s->req_done;
    fwd.framing = s->framing;
    fwd.close = s->close_after && !s->upgraded;
    http1_out_flush(&s->out);
    s->final_head_at = s->client.len;
    s->final_written = 1;
    http1_write_response_head(&s->out, m, &fwd);
    http1_out_flush(&s->out);
    s->body_at = s->client.len;
    s->resp_started = 1;
    return 0;
}

static int on_body(void *ctx, const char *p, size_t n)
{
    struct resp_state *s = ctx;
    FUZZ_CHECK(n > 0, "empty body callback");
    FUZZ_CHECK(s->resp_started && !s->resp_done, "body outside the final response");
    FUZZ_CHECK(s->framing != HTTP1_FRAMING_NONE, "body for a response without one");
    s->body_data += n;
    if (s->framing == HTTP1_FRAMING_CHUNKED) {
        http1_write_chunk_header(&s->out, n);
        http1_out_put(&s->out, p, n);
        http1_write_chunk_trailer(&s->out);
    } else {
        http1_out_put(&s->out, p, n);
    }
    return s->out.err ? 500 : 0;
}

static int on_end(void *ctx, struct http1_msg *m)
{
    struct resp_state *s = ctx;
    if (m->status < 200 && m->status != 101)
        return 0;
    if (s->framing == HTTP1_FRAMING_CHUNKED)
        http1_write_last_chunk(&s->out);
    s->resp_done = 1;
    return 0;
}

static const struct http1_handler handler = {on_head, on_body, on_end};

/* respond_error(): a 502 when nothing was sent yet, else the connection
 * is cut. */
static void respond_error(struct resp_state *s)
{
    s->failed = 1;
    if (s->resp_started) {
        s->aborted = 1;
        return;
    }
    http1_out_flush(&s->out);
    s->final_head_at = s->client.len;
    s->final_written = 1;
    http1_write_simple_response(&s->out, 502, 1, NULL, NULL, 0);
    http1_out_flush(&s->out);
    s->body_at = s->client.len;
}

/* parse_response_head(): 1 when another head may follow, 0 when done with
 * rhead, -1 when the exchange ended. */
static int parse_head(struct resp_state *s, size_t r)
{
    size_t used = 0;
    s->head = s->rhead;
    s->head_len = r;
    enum http1_result res = http1_parse(&s->resp, s->rhead, r, &used);
    if (res == HTTP1_ERROR) {
        respond_error(s);
        return -1;
    }
    size_t left = s->rhead_len - r;
    if (res == HTTP1_DONE) {
        FUZZ_CHECK(used == r, "response ended %zu bytes into a %zu-byte head", used, r);
        memmove(s->rhead, s->rhead + r, left);
        s->rhead_len = left;
        if (s->resp_done || s->upgraded)
            return 0;
        http1_msg_reset(&s->resp);
        s->resp.scan = (struct http1_scan){0};
        return left > 0 ? 1 : 0;
    }
    FUZZ_CHECK(s->resp.flags & (HTTP1_F_CHUNKED | HTTP1_F_CONTENT_LENGTH) ||
                   !(s->resp.flags & HTTP1_F_NO_BODY),
               "parser expects a body after a body-less head");
    if (left > 0 && http1_parse(&s->resp, s->rhead + r, left, &used) == HTTP1_ERROR) {
        respond_error(s);
        return -1;
    }
    if (s->resp_done && used < left)
        s->upstream_extra = 1;
    free(s->rhead);
    s->rhead = NULL;
    s->rhead_len = 0;
    return 0;
}

static long collect_head(struct resp_state *s, const char *p, size_t n)
{
    if (s->rhead == NULL) {
        s->rhead = malloc(CHUNK_CAP);
        if (s->rhead == NULL)
            abort();
        s->rhead_len = 0;
    }
    size_t room = CHUNK_CAP - s->rhead_len, take = n < room ? n : room;
    memcpy(s->rhead + s->rhead_len, p, take);
    s->rhead_len += take;
    for (;;) {
        long r = http1_scan_head(&s->resp.scan, s->rhead, s->rhead_len, 0, &s->lim);
        if (r != 0) {
            struct http1_scan once = {0};
            long r1 = http1_scan_head(&once, s->rhead, s->rhead_len, 0, &s->lim);
            FUZZ_CHECK(r == r1, "incremental scan %ld, one scan %ld", r, r1);
        }
        if (r < 0) {
            FUZZ_CHECK(r == -502, "response scan status %ld", r);
            respond_error(s);
            return -1;
        }
        if (r == 0) {
            /* exchange.c keeps the head chunk full and waits: a head that
             * does not fit is caught by the scan limit first. */
            FUZZ_CHECK(s->rhead_len < CHUNK_CAP, "head chunk full without a verdict");
            return (long)take;
        }
        int more = parse_head(s, (size_t)r);
        if (more < 0)
            return -1;
        if (more == 0)
            return (long)take;
    }
}

/* relay_response() */
static int relay(struct resp_state *s, const char *p, size_t n)
{
    while (n > 0 && !s->resp_done && !s->upgraded) {
        if (!s->resp.in_body || s->rhead != NULL) {
            long used = collect_head(s, p, n);
            if (used < 0)
                return -1;
            FUZZ_CHECK(used > 0 || s->resp_done || s->upgraded,
                       "no progress on %zu upstream bytes: relay_response would spin", n);
            p += used;
            n -= (size_t)used;
            continue;
        }
        size_t used;
        enum http1_result res = http1_parse(&s->resp, p, n, &used);
        if (res == HTTP1_ERROR) {
            respond_error(s);
            return -1;
        }
        FUZZ_CHECK(used <= n && (res == HTTP1_DONE || used == n), "parser used %zu of %zu", used,
                   n);
        p += used;
        n -= used;
    }
    if (s->upgraded) {
        if (s->rhead != NULL)
            http1_out_put(&s->out, s->rhead, s->rhead_len);
        free(s->rhead);
        s->rhead = NULL;
        http1_out_put(&s->out, p, n);
        return 0;
    }
    if (n > 0 || (s->rhead != NULL && s->rhead_len > 0))
        s->upstream_extra = 1;
    return 0;
}

/* on_upstream_eof() */
static void upstream_eof(struct resp_state *s)
{
    if (s->upgraded)
        return;
    if (!s->resp.in_body || s->rhead != NULL) {
        respond_error(s);
        return;
    }
    if (http1_finish(&s->resp) == HTTP1_DONE && s->resp_done)
        return;
    respond_error(s);
}

static int reparse_head(void *ctx, struct http1_msg *m)
{
    (void)ctx;
    (void)m;
    return 0;
}

static int reparse_body(void *ctx, const char *p, size_t n)
{
    (void)p;
    *(uint64_t *)ctx += n;
    return 0;
}

static const struct http1_handler reparse_handler = {reparse_head, reparse_body, reparse_head};

/* Checks one head the client got at c[0..n); returns its length. */
static size_t check_client_head(const char *c, size_t n, struct fuzz_head *h, int final)
{
    const char *why = fuzz_read_head(c, n, FUZZ_RESPONSE, h);
    FUZZ_CHECK(why == NULL, "head to the client: %s", why);
    const struct fuzz_field *cl = NULL, *te = NULL;
    unsigned ncl = fuzz_count(h, "content-length", &cl);
    unsigned nte = fuzz_count(h, "transfer-encoding", &te);
    FUZZ_CHECK(nte == 0 || ncl == 0, "Content-Length and Transfer-Encoding to the client");
    FUZZ_CHECK(ncl <= 1 && nte <= 1, "%u Content-Length, %u Transfer-Encoding", ncl, nte);
    if (!final) {
        FUZZ_CHECK(h->status >= 100 && h->status < 200, "interim status %d", h->status);
        FUZZ_CHECK(nte == 0 || h->status == 101, "Transfer-Encoding on an interim response");
        /* RFC 9110 8.6: no Content-Length in a 1xx response. */
        FUZZ_CHECK(ncl == 0, "Content-Length forwarded on a %d response", h->status);
    }
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct fuzz_field *f = &h->fields[i];
        FUZZ_CHECK(!fuzz_name_is(f, "keep-alive") && !fuzz_name_is(f, "proxy-connection") &&
                       !fuzz_name_is(f, "te") && !fuzz_name_is(f, "trailer"),
                   "hop-by-hop %.*s to the client", (int)f->name_len, f->name);
    }
    return h->len;
}

static void check_client(struct resp_state *s)
{
    static struct fuzz_head h;
    const char *c = s->client.p;
    size_t n = s->client.len;
    size_t at = 0;

    /* Interim heads, each complete. */
    if (!s->final_written)
        s->final_head_at = n;
    while (at < s->final_head_at) {
        at += check_client_head(c + at, n - at, &h, 0);
        FUZZ_CHECK(s->req.version == 11, "interim response to an HTTP/1.0 client");
    }
    FUZZ_CHECK(at == s->final_head_at, "interim heads overlap the final one");
    if (!s->final_written)
        return;
    if (s->failed && !s->resp_started) {
        size_t hl = check_client_head(c + at, n - at, &h, 1);
        const struct fuzz_field *cl = NULL;
        uint64_t v;
        FUZZ_CHECK(h.status == 502, "error answer %d", h.status);
        FUZZ_CHECK(fuzz_count(&h, "content-length", &cl) == 1 &&
                       fuzz_decimal(cl->value, cl->value_len, &v) && v == n - at - hl,
                   "error answer length");
        return;
    }
    size_t hl = check_client_head(c + at, n - at, &h, 1);
    FUZZ_CHECK(at + hl == s->body_at, "final head length");
    FUZZ_CHECK(h.status == s->resp.status, "status changed: %d -> %d", s->resp.status, h.status);
    const struct fuzz_field *cl = NULL, *te = NULL, *conn = NULL;
    unsigned ncl = fuzz_count(&h, "content-length", &cl);
    unsigned nte = fuzz_count(&h, "transfer-encoding", &te);
    unsigned nconn = fuzz_count(&h, "connection", &conn);
    const char *body = c + s->body_at;
    size_t blen = n - s->body_at;
    uint64_t v = 0;
    switch (s->framing) {
    case HTTP1_FRAMING_NONE:
        FUZZ_CHECK(nte == 0, "Transfer-Encoding on a body-less response");
        FUZZ_CHECK(ncl == 0 || h.status != 204, "Content-Length forwarded on a 204 response");
        FUZZ_CHECK(s->upgraded || blen == 0, "%zu body bytes on a body-less response", blen);
        break;
    case HTTP1_FRAMING_LENGTH:
        FUZZ_CHECK(nte == 0 && ncl == 1 && fuzz_decimal(cl->value, cl->value_len, &v) &&
                       v == s->resp.content_length,
                   "Content-Length framing without the length");
        FUZZ_CHECK(blen <= v, "%zu body bytes for Content-Length %llu", blen,
                   (unsigned long long)v);
        FUZZ_CHECK(!s->resp_done || blen == v, "response done after %zu of %llu bytes", blen,
                   (unsigned long long)v);
        break;
    case HTTP1_FRAMING_CHUNKED: {
        size_t used = 0;
        uint64_t dec = 0;
        FUZZ_CHECK(ncl == 0 && nte == 1 && fuzz_value_is(te, "chunked"),
                   "chunked framing without Transfer-Encoding: chunked");
        int complete = fuzz_read_chunked(body, blen, &used, &dec);
        FUZZ_CHECK(complete == s->resp_done, "chunked body complete %d, response done %d",
                   complete, s->resp_done);
        FUZZ_CHECK(!complete || used == blen, "bytes after the last chunk");
        FUZZ_CHECK(dec == s->body_data, "chunk sizes do not add up");
        break;
    }
    case HTTP1_FRAMING_CLOSE:
        FUZZ_CHECK(ncl == 0 && nte == 0, "framing header on a close-delimited body");
        FUZZ_CHECK(nconn >= 1 && fuzz_value_is(conn, "close"),
                   "close-delimited body without Connection: close");
        FUZZ_CHECK(blen == s->body_data, "close-delimited body changed length");
        break;
    }
    if (s->close_after && !s->upgraded)
        FUZZ_CHECK(nconn >= 1 && fuzz_value_is(conn, "close"), "closing without Connection: close");

    /* What the client's parser makes of it: one response, ending where
     * moat ended it. */
    if (s->upgraded || s->aborted)
        return;
    static struct http1_header hdrs[FUZZ_MAX_FIELDS + 8];
    struct http1_limits lim = {.max_head = n + 1, .max_uri = n + 1,
                               .max_headers = FUZZ_MAX_FIELDS + 8};
    static struct http1_msg r;
    uint64_t got = 0;
    size_t used = 0;
    http1_msg_init(&r, 0, hdrs, FUZZ_MAX_FIELDS + 8, &lim, &reparse_handler, &got);
    r.request_was_head = (s->req.flags & HTTP1_F_HEAD) != 0;
    http1_msg_reset(&r);
    enum http1_result res = http1_parse(&r, c + at, n - at, &used);
    FUZZ_CHECK(res != HTTP1_ERROR, "client cannot parse the response: %s",
               r.error_reason ? r.error_reason : "");
    if (s->resp_done && s->framing != HTTP1_FRAMING_CLOSE)
        FUZZ_CHECK(res == HTTP1_DONE && used == n - at, "client sees the response end at %zu of %zu",
                   used, n - at);
    if (res == HTTP1_DONE)
        FUZZ_CHECK(s->resp_done, "client sees an end moat did not");
    FUZZ_CHECK(got == s->body_data, "client read %llu body bytes, moat sent %llu",
               (unsigned long long)got, (unsigned long long)s->body_data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t rf = data[0], pf = data[1];
    struct fuzz_pieces pieces;
    fuzz_pieces_init(&pieces, pf);
    data += 2;
    size -= 2;

    memset(&st, 0, sizeof(st));
    /* The request as analyze_request() would have left it. */
    st.req.version = rf & 2 ? 10 : 11;
    st.req.flags = HTTP1_F_IDEMPOTENT;
    if (rf & 1)
        st.req.flags |= HTTP1_F_HEAD;
    if (rf & 4)
        st.req.flags |= HTTP1_F_KEEP_ALIVE;
    if ((rf & 8) && st.req.version == 11)
        st.req.flags |= HTTP1_F_UPGRADE;
    st.req_done = !(rf & 32);
    st.hsts = rf & 16 ? "max-age=63072000" : NULL;
    st.lim = (struct http1_limits){.max_head = CHUNK_CAP - 1, .max_uri = CHUNK_CAP - 1,
                                   .max_headers = RESP_MAX_HEADERS};
    http1_msg_init(&st.resp, 0, st.headers, RESP_MAX_HEADERS, &st.lim, &handler, &st);
    st.resp.request_was_head = (st.req.flags & HTTP1_F_HEAD) != 0;
    http1_msg_reset(&st.resp);
    fuzz_sink_init(&st.sink, &st.client);
    st.out = (struct http1_out){.sink = &st.sink.sink, .buf = st.scratch,
                                .cap = 64 + (rf >> 6) * 150};

    size_t off = 0;
    int ended = 0;
    while (off < size && !ended) {
        size_t n = fuzz_pieces_next(&pieces, size - off);
        if (relay(&st, (const char *)data + off, n) != 0)
            ended = 1;
        off += n;
        if (st.resp_done && !st.upgraded)
            ended = 1; /* finish(): the rest is not read */
    }
    if (!ended && (pf & 0x80))
        upstream_eof(&st);
    http1_out_flush(&st.out);
    FUZZ_CHECK(st.out.err == 0, "output error");
    if (getenv("FUZZ_DUMP") != NULL)
        fwrite(st.client.p, 1, st.client.len, stderr);
    check_client(&st);

    free(st.rhead);
    fuzz_buf_free(&st.client);
    return 0;
}
