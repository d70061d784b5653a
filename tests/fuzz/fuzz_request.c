/*
 * fuzz_request: the client side of an exchange, as exchange.c runs it, on
 * bytes that arrive in pieces: robustness CRLFs, http1_scan_head() on the
 * growing buffer, http1_parse() of the head then of the body bytes,
 * routing (route_normalize_host, route_match), the upstream head
 * (http1_write_request_head into a bounded buffer with no sink, as
 * build_upstream_head does), the body re-encoded as it is forwarded, and
 * pipelined requests after one that completed or was answered 404.
 *
 * Input: byte 0 flags (bit 0 trusted peer, bit 1 upstream keep-alive,
 * bit 2 small limits, bits 3-4 how head bytes are split), byte 1 the seed
 * of the piece sizes, then what the client sends.
 *
 * Invariants (abort on violation):
 * - scanning the buffer incrementally gives what one scan of it gives;
 * - a request without Content-Length or chunked framing has no body;
 * - the upstream head is well-formed HTTP/1.1 by an independent reader:
 *   CRLF lines, token names, no control bytes, exactly one Host, at most
 *   one framing header and the one the parsed flags say, the method and
 *   path moat routed on, the Host moat routed on;
 *   and it reads back through moat's own parser with the same meaning;
 * - the forwarded body is exactly what the framing announces: chunked
 *   bodies are valid and end once, Content-Length bodies never exceed it;
 * - the route found matches the host and a prefix of a safe path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "http1.h"
#include "route.h"
#include "strutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config_yaml[] =
    "listeners:\n"
    "  - name: l\n"
    "    bind: \"127.0.0.1:0\"\n"
    "    tls:\n"
    "      certificates: [{cert: /nonexistent/c.pem, key: /nonexistent/c.key}]\n"
    "routes:\n"
    "  - {host: example.com, path: /api/, upstream: api}\n"
    "  - {host: example.com, path: /, upstream: web}\n"
    "  - {host: \"*.example.org\", path: /, upstream: api}\n"
    "  - {host: \"[::1]\", path: /, upstream: web}\n"
    "  - {host: localhost, path: /, upstream: web}\n"
    "  - {path: /static/, upstream: web}\n"
    "  - {path: /v1/, upstream: api}\n"
    "upstreams:\n"
    "  web: {servers: [\"127.0.0.1:8080\"]}\n"
    "  api: {servers: [\"[::1]:9000\"], keepalive: 0}\n";

static struct cfg *cfg;

#define BUF_SLACK 16384

struct req_state {
    /* emulation of struct conn's input */
    char *in;
    size_t in_len;
    size_t in_cap;

    /* emulation of struct exchange */
    int active;
    struct http1_msg req;
    struct http1_limits lim;
    struct http1_header *headers;
    size_t head_len;
    int head_done;
    int req_done;
    int closed;                 /* the connection would close */
    int tunnel;

    const struct http1_fwd *fwd;
    size_t uhead_cap;           /* as the generation's input chunks */
    char *uhead;

    struct fuzz_buf body;       /* forwarded body bytes, framing included */
    uint64_t body_data;         /* payload delivered by on_body */
    unsigned heads, ends;
};

static void init_config(void)
{
    char err[2048];
    if (cfg_load_string("fuzz_request", config_yaml, sizeof(config_yaml) - 1, NULL, &cfg, err,
                        sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_request: configuration: %s\n", err);
        abort();
    }
}

/* The upstream head must mean what moat decided. */
static void check_upstream_head(const struct req_state *st, const struct http1_msg *m,
                                const char *out, size_t len, struct span routed_host)
{
    static struct fuzz_head h;
    const char *why = fuzz_read_head(out, len, FUZZ_REQUEST, &h);
    FUZZ_CHECK(why == NULL, "upstream head: %s", why);
    FUZZ_CHECK(h.len == len, "upstream head has %zu bytes after its end", len - h.len);
    FUZZ_CHECK(h.method_len == m->method.len && memcmp(h.method, m->method.p, h.method_len) == 0,
               "method changed");
    FUZZ_CHECK(h.target_len == m->uri.len && memcmp(h.target, m->uri.p, h.target_len) == 0,
               "request target is not the parsed uri");

    const struct fuzz_field *host = NULL, *cl = NULL, *te = NULL;
    FUZZ_CHECK(fuzz_count(&h, "host", &host) == 1, "not exactly one Host");
    unsigned ncl = fuzz_count(&h, "content-length", &cl);
    unsigned nte = fuzz_count(&h, "transfer-encoding", &te);
    FUZZ_CHECK(ncl + nte <= 1, "%u Content-Length and %u Transfer-Encoding", ncl, nte);
    if (m->flags & HTTP1_F_CHUNKED) {
        FUZZ_CHECK(nte == 1 && fuzz_value_is(te, "chunked"), "chunked request without TE: chunked");
    } else if (m->flags & HTTP1_F_CONTENT_LENGTH) {
        uint64_t v;
        FUZZ_CHECK(ncl == 1 && fuzz_decimal(cl->value, cl->value_len, &v) && v == m->content_length,
                   "Content-Length does not say %llu", (unsigned long long)m->content_length);
    } else {
        FUZZ_CHECK(ncl + nte == 0, "framing header on a request without a body");
    }
    FUZZ_CHECK(fuzz_count(&h, "x-forwarded-for", NULL) == 1, "X-Forwarded-For count");
    unsigned nconn = fuzz_count(&h, "connection", NULL);
    FUZZ_CHECK(nconn <= 1, "%u Connection headers", nconn);
    for (unsigned i = 0; i < h.nfields; i++) {
        const struct fuzz_field *f = &h.fields[i];
        FUZZ_CHECK(!fuzz_name_is(f, "te") && !fuzz_name_is(f, "keep-alive") &&
                       !fuzz_name_is(f, "proxy-connection") && !fuzz_name_is(f, "trailer") &&
                       !fuzz_name_is(f, "http2-settings") &&
                       !fuzz_name_is(f, "proxy-authorization"),
                   "hop-by-hop header %.*s forwarded", (int)f->name_len, f->name);
        if (fuzz_name_is(f, "upgrade"))
            FUZZ_CHECK(m->flags & HTTP1_F_UPGRADE, "Upgrade forwarded without a websocket upgrade");
    }
    if (!st->fwd->trusted_peer)
        FUZZ_CHECK(fuzz_count(&h, "forwarded", NULL) == 0 &&
                       fuzz_count(&h, "x-forwarded-proto", NULL) == 1 &&
                       fuzz_count(&h, "x-forwarded-port", NULL) == 1 &&
                       /* no Host (HTTP/1.0): no X-Forwarded-Host, as nginx */
                       fuzz_count(&h, "x-forwarded-host", NULL) == (m->host.len > 0),
                   "client's forwarding headers kept from an untrusted peer");
    /* The backend routes (virtual hosts) on the Host it sees. */
    if (m->host.len > 0) {
        char norm[ROUTE_MAX_HOST + 1];
        int hl = route_normalize_host((struct span){host->value, host->value_len}, norm);
        FUZZ_CHECK(hl >= 0 && (size_t)hl == routed_host.len &&
                       memcmp(norm, routed_host.p, routed_host.len) == 0,
                   "forwarded Host \"%.*s\" is not the host routed on", (int)host->value_len,
                   host->value);
    }

    /* moat's own scanner takes it. */
    struct http1_limits lim = {.max_head = len + 1, .max_uri = len + 1,
                               .max_headers = FUZZ_MAX_FIELDS + 8};
    struct http1_scan sc = {0};
    FUZZ_CHECK(http1_scan_head(&sc, out, len, 1, &lim) == (long)len,
               "moat's scanner refuses moat's upstream head");
}

static int reparse_head(void *ctx, struct http1_msg *m)
{
    (void)ctx;
    (void)m;
    return 0;
}

static int reparse_body(void *ctx, const char *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return 0;
}

static const struct http1_handler reparse_handler = {reparse_head, reparse_body, reparse_head};

static void check_reparse(const struct http1_msg *m, const char *out, size_t len)
{
    static struct http1_header hdrs[FUZZ_MAX_FIELDS + 8];
    struct http1_limits lim = {.max_head = len + 1, .max_uri = len + 1,
                               .max_headers = FUZZ_MAX_FIELDS + 8};
    static struct http1_msg r;
    size_t used = 0;
    http1_msg_init(&r, 1, hdrs, FUZZ_MAX_FIELDS + 8, &lim, &reparse_handler, NULL);
    enum http1_result res = http1_parse(&r, out, len, &used);
    FUZZ_CHECK(res != HTTP1_ERROR, "upstream head refused by moat's parser: %d %s", r.error_status,
               r.error_reason ? r.error_reason : "");
    unsigned framing = HTTP1_F_CHUNKED | HTTP1_F_CONTENT_LENGTH;
    FUZZ_CHECK((r.flags & framing) == (m->flags & framing), "framing changed: %#x -> %#x",
               m->flags & framing, r.flags & framing);
    FUZZ_CHECK(!(m->flags & HTTP1_F_CONTENT_LENGTH) || r.content_length == m->content_length,
               "Content-Length changed");
    FUZZ_CHECK(r.version == 11, "upstream request is not HTTP/1.1");
    FUZZ_CHECK(r.path.len == m->path.len && memcmp(r.path.p, m->path.p, m->path.len) == 0,
               "path changed");
    FUZZ_CHECK(((r.flags ^ m->flags) & (HTTP1_F_HEAD | HTTP1_F_UPGRADE)) == 0,
               "HEAD or upgrade changed");
    FUZZ_CHECK(res == HTTP1_DONE ? !(r.flags & framing) || (r.flags & HTTP1_F_CONTENT_LENGTH &&
                                                            r.content_length == 0)
                                 : (r.flags & framing) != 0,
               "body expectation changed");
}

/* What moat accepted from the client is strictly valid, and llhttp saw the
 * same header lines as the scanner: an independent reading of the client's
 * head finds the same method, target and fields. */
static void check_client_head(const struct req_state *st, const struct http1_msg *m)
{
    static struct fuzz_head h;
    const char *why = fuzz_read_head(st->in, st->head_len, FUZZ_REQUEST | FUZZ_ANY_VERSION, &h);
    FUZZ_CHECK(why == NULL, "moat accepted a client head that is not strict HTTP/1.x: %s", why);
    FUZZ_CHECK(h.len == st->head_len, "head lengths differ: %zu, %zu", h.len, st->head_len);
    FUZZ_CHECK(h.method_len == m->method.len && memcmp(h.method, m->method.p, h.method_len) == 0,
               "llhttp read another method");
    FUZZ_CHECK(h.target_len == m->target.len && memcmp(h.target, m->target.p, h.target_len) == 0,
               "llhttp read another target");
    fuzz_check_same_fields(&h, m);
}

static int on_head(void *ctx, struct http1_msg *m)
{
    struct req_state *st = ctx;
    char host[ROUTE_MAX_HOST + 1];
    st->heads++;
    check_client_head(st, m);
    FUZZ_CHECK(st->heads == 1, "on_head twice");
    st->head_done = 1;
    FUZZ_CHECK(m->version == 10 || m->version == 11, "version %d accepted", m->version);
    FUZZ_CHECK(!((m->flags & HTTP1_F_CHUNKED) && (m->flags & HTTP1_F_CONTENT_LENGTH)),
               "both framings");
    FUZZ_CHECK(m->path.len > 0 && m->path.p[0] == '/', "path does not start with /");
    FUZZ_CHECK(http1_path_is_safe(m->path), "unsafe path accepted");
    FUZZ_CHECK(memchr(m->uri.p, '#', m->uri.len) == NULL, "fragment forwarded");
    FUZZ_CHECK(m->version == 10 || m->host.len > 0, "HTTP/1.1 without a host");

    int hl = route_normalize_host(m->host, host);
    if (hl < 0) {
        m->error_reason = "invalid Host";
        return 400;
    }
    for (int i = 0; i < hl; i++)
        FUZZ_CHECK(host[i] < 'A' || host[i] > 'Z', "normalised host has upper case");
    struct span hs = {host, (size_t)hl};
    const struct cfg_route *r = route_match(cfg, hs, m->path);
    if (r == NULL)
        return 404;
    FUZZ_CHECK(m->path.len >= strlen(r->path) && memcmp(m->path.p, r->path, strlen(r->path)) == 0,
               "route path is not a prefix");
    if (r->host != NULL && !r->wildcard)
        FUZZ_CHECK(span_eq(hs, r->host), "exact route for another host");
    if (r->host != NULL && r->wildcard) {
        size_t n = strlen(r->host);
        FUZZ_CHECK(hs.len > n && memcmp(hs.p + hs.len - n, r->host, n) == 0,
                   "wildcard route for another host");
    }

    /* As build_upstream_head: no sink, a head that outgrows the chunk is
     * an error (431), never a write (regress-upstream-head-null-sink). */
    struct http1_out o = {.sink = NULL, .buf = st->uhead, .cap = st->uhead_cap};
    http1_write_request_head(&o, m, st->fwd);
    FUZZ_CHECK(o.len <= o.cap, "upstream head past its buffer");
    if (o.len + 1 > o.cap || o.err)
        return 431;
    check_upstream_head(st, m, o.buf, o.len, hs);
    check_reparse(m, o.buf, o.len);
    return 0;
}

static int on_body(void *ctx, const char *p, size_t n)
{
    struct req_state *st = ctx;
    FUZZ_CHECK(st->heads == 1 && st->ends == 0, "body outside a message");
    FUZZ_CHECK(n > 0, "empty body callback");
    FUZZ_CHECK(st->req.flags & (HTTP1_F_CHUNKED | HTTP1_F_CONTENT_LENGTH),
               "body bytes for a request without framing");
    st->body_data += n;
    if (st->req.flags & HTTP1_F_CONTENT_LENGTH)
        FUZZ_CHECK(st->body_data <= st->req.content_length, "body longer than Content-Length");
    if (!(st->req.flags & HTTP1_F_CHUNKED)) {
        fuzz_buf_put(&st->body, p, n);
        return 0;
    }
    char line[20];
    size_t len = http1_format_chunk_size(line, n);
    fuzz_buf_put(&st->body, line, len);
    fuzz_buf_put(&st->body, p, n);
    fuzz_buf_put(&st->body, "\r\n", 2);
    return 0;
}

static int on_end(void *ctx, struct http1_msg *m)
{
    struct req_state *st = ctx;
    st->ends++;
    FUZZ_CHECK(st->ends == 1 && st->heads == 1, "on_end without one head");
    st->req_done = 1;
    if (m->flags & HTTP1_F_CHUNKED)
        fuzz_buf_put(&st->body, "0\r\n\r\n", 5);
    return 0;
}

static const struct http1_handler handler = {on_head, on_body, on_end};

/* What the forwarded body bytes say, once the request is over (failed:
 * ended by an error, whose bytes http1.c counted without delivering). */
static void check_body(struct req_state *st, int failed)
{
    const struct http1_msg *m = &st->req;
    FUZZ_CHECK(failed ? m->body_bytes >= st->body_data : m->body_bytes == st->body_data,
               "body_bytes %llu, delivered %llu", (unsigned long long)m->body_bytes,
               (unsigned long long)st->body_data);
    if (m->flags & HTTP1_F_CHUNKED) {
        size_t used = 0;
        uint64_t dec = 0;
        int complete = fuzz_read_chunked(st->body.p, st->body.len, &used, &dec);
        FUZZ_CHECK(complete == st->req_done, "chunked body complete %d, request done %d", complete,
                   st->req_done);
        FUZZ_CHECK(!complete || used == st->body.len, "bytes after the last chunk");
        FUZZ_CHECK(dec == st->body_data, "chunk sizes do not add up");
    } else if (m->flags & HTTP1_F_CONTENT_LENGTH) {
        FUZZ_CHECK(st->body.len == st->body_data, "re-encoded a Content-Length body");
        FUZZ_CHECK(!st->req_done || st->body_data == m->content_length,
                   "request ended after %llu of %llu bytes", (unsigned long long)st->body_data,
                   (unsigned long long)m->content_length);
    } else {
        FUZZ_CHECK(st->body.len == 0, "body forwarded without framing");
    }
}

static void consume(struct req_state *st, size_t from, size_t n)
{
    FUZZ_CHECK(from + n <= st->in_len, "consumed past the input");
    memmove(st->in + from, st->in + from + n, st->in_len - from - n);
    st->in_len -= n;
}

static void end_exchange(struct req_state *st, int keep, int failed)
{
    if (st->head_done)
        check_body(st, failed);
    if (!keep || !st->head_done) {
        st->closed = 1;
        return;
    }
    consume(st, 0, st->head_len);
    st->active = 0;
}

/* exchange.c's respond_error(): which errors keep the connection. */
static void respond_error(struct req_state *st, int status)
{
    const struct http1_msg *m = &st->req;
    FUZZ_CHECK(status >= 400 && status <= 599, "error status %d", status);
    int bodyless = st->head_done && !(m->flags & HTTP1_F_CHUNKED) &&
                   (!(m->flags & HTTP1_F_CONTENT_LENGTH) || m->content_length == 0);
    int keep = (st->req_done || bodyless) && (m->flags & HTTP1_F_KEEP_ALIVE) &&
               (status == 404 || status == 502 || status == 504);
    end_exchange(st, keep, 1);
}

/* Scanning the buffer in one go says what the incremental scan said. */
static void check_one_scan(struct req_state *st, long r)
{
    struct http1_scan once = {0};
    long r1 = http1_scan_head(&once, st->in, st->in_len, 1, &st->lim);
    FUZZ_CHECK(r == r1, "incremental scan %ld, one scan %ld", r, r1);
}

/* exchange_on_client_input(), with the upstream answering at once. */
static void client_input(struct req_state *st, uint8_t flags)
{
    for (unsigned rounds = 0; rounds < 64 && !st->closed && !st->tunnel; rounds++) {
        if (!st->active) {
            while (st->in_len >= 2 && st->in[0] == '\r' && st->in[1] == '\n')
                consume(st, 0, 2);
            if (st->in_len == 0 || (st->in_len == 1 && st->in[0] == '\r'))
                return;
            st->active = 1;
            st->head_done = st->req_done = 0;
            st->heads = st->ends = 0;
            st->head_len = 0;
            st->body.len = 0;
            st->body_data = 0;
            http1_msg_init(&st->req, 1, st->headers, st->lim.max_headers, &st->lim, &handler, st);
        }
        size_t used = 0;
        enum http1_result res;
        if (!st->head_done) {
            long r = http1_scan_head(&st->req.scan, st->in, st->in_len, 1, &st->lim);
            if (r != 0)
                check_one_scan(st, r);
            if (r == 0)
                return;
            if (r < 0) {
                FUZZ_CHECK(r == -400 || r == -414 || r == -431 || r == -505, "scan status %ld", r);
                respond_error(st, (int)-r);
                return;
            }
            FUZZ_CHECK((size_t)r <= st->lim.max_head && r >= 4 &&
                           memcmp(st->in + r - 4, "\r\n\r\n", 4) == 0,
                       "scan length %ld", r);
            st->head_len = (size_t)r;
            res = http1_parse(&st->req, st->in, st->head_len, &used);
            if (res == HTTP1_ERROR) {
                st->head_done = 1;
                respond_error(st, st->req.error_status);
                return;
            }
            FUZZ_CHECK(st->heads == 1, "head parsed without on_head");
            if (res == HTTP1_DONE)
                FUZZ_CHECK(used == st->head_len, "message ended %zu bytes into a %zu-byte head", used,
                           st->head_len);
            else
                FUZZ_CHECK(st->req.flags & (HTTP1_F_CHUNKED | HTTP1_F_CONTENT_LENGTH),
                           "parser expects a body moat does not frame");
        }
        if (!st->req_done && st->in_len > st->head_len) {
            res = http1_parse(&st->req, st->in + st->head_len, st->in_len - st->head_len, &used);
            if (res == HTTP1_ERROR) {
                respond_error(st, st->req.error_status);
                return;
            }
            FUZZ_CHECK(used <= st->in_len - st->head_len, "used past the input");
            FUZZ_CHECK(res == HTTP1_DONE || used == st->in_len - st->head_len,
                       "parser left bytes without ending the message");
            consume(st, st->head_len, used);
        }
        if (!st->req_done)
            return;
        /* The response came: on_response_head's close_after, roughly. */
        if (st->req.flags & HTTP1_F_UPGRADE) {
            st->tunnel = 1;
            return;
        }
        int keep = (st->req.flags & HTTP1_F_KEEP_ALIVE) && (flags & 2);
        end_exchange(st, keep, 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg == NULL)
        init_config();
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    struct fuzz_pieces pieces;
    fuzz_pieces_init(&pieces, (uint8_t)(data[1] ^ (flags >> 3)));
    data += 2;
    size -= 2;

    static struct req_state st;
    struct http1_fwd fwd = {
        .client_ip = SPAN_LIT("192.0.2.7"),
        .trusted_peer = flags & 1,
        .listener_port = 8443,
        .default_host = SPAN_LIT("127.0.0.1:8080"),
        .keep_alive = (flags & 2) != 0,
    };
    memset(&st, 0, sizeof(st));
    if (flags & 4) {
        st.lim = (struct http1_limits){.max_head = 1024, .max_uri = 256, .max_headers = 8,
                                       .max_body = 64};
    } else {
        st.lim = (struct http1_limits){.max_head = cfg->limits.max_header_bytes,
                                       .max_uri = cfg->limits.max_uri_bytes,
                                       .max_headers = (unsigned)cfg->limits.max_headers,
                                       .max_body = cfg->limits.max_body_bytes};
    }
    /* gen.c: chunks hold max(max_header_bytes, 32k) + 16k; the small
     * limits keep that ratio so that the fuzzer can reach the edge. */
    size_t head = st.lim.max_head > 32768 ? st.lim.max_head : 32768;
    if (flags & 4)
        head = 1024;
    st.uhead_cap = st.in_cap = head + (flags & 4 ? 512 : BUF_SLACK);
    st.in = malloc(st.in_cap);
    st.uhead = malloc(st.uhead_cap);
    st.headers = calloc(st.lim.max_headers, sizeof(struct http1_header));
    st.fwd = &fwd;
    if (st.in == NULL || st.uhead == NULL || st.headers == NULL)
        abort();

    size_t off = 0;
    while (off < size && !st.closed && !st.tunnel) {
        size_t room = st.in_cap - st.in_len;
        if (room == 0)
            break; /* conn stops reading: the exchange is stuck */
        size_t n = fuzz_pieces_next(&pieces, size - off);
        if (n > room)
            n = room;
        memcpy(st.in + st.in_len, data + off, n);
        st.in_len += n;
        off += n;
        client_input(&st, flags);
    }
    if (st.active && !st.head_done && !st.closed)
        check_one_scan(&st, 0);
    if (st.active && st.head_done && !st.closed)
        check_body(&st, 0);

    free(st.in);
    free(st.uhead);
    free(st.headers);
    fuzz_buf_free(&st.body);
    return 0;
}
