/*
 * fuzz_conn: whole connections.  A real runtime (configuration text with a
 * self-signed certificate generated in memory), one real worker whose loop
 * runs on this thread (worker_init without worker_start), and an upstream
 * stub: a libuv TCP server on the same loop that answers each request it
 * receives with the next response taken from the input.  Each input opens
 * a loopback TCP connection to the worker's listener, so the bytes go
 * through the listener, struct conn, the TLS session, exchange and
 * upstream exactly as in production, and the loop runs (UV_RUN_NOWAIT,
 * bounded) until nothing moves.
 *
 * Input: byte 0 flags, byte 1 the seed of the piece sizes, then
 *   raw mode (flags bit 0 clear): bytes written to the socket as they are:
 *     sniffing, plain HTTP on the TLS port, ClientHello parsing, garbage
 *     records, truncated handshakes; with bit 7 set, to the plain-HTTP
 *     redirect listener instead (redirect.c), whose one answer must be a
 *     well-formed 308 to https:// or a well-formed error;
 *   TLS mode (flags bit 0 set): a wolfSSL client completes a handshake
 *     (bit 1: TLS 1.2 only, bit 2: no SNI), then sends the client part as
 *     plaintext in pieces; the input reads
 *       client-plaintext SEP response SEP response ...
 *     with SEP = "\x00@@\x00".  The stub answers when a request head
 *     arrives (bit 3: when the whole request arrived), and shuts its side
 *     down after each answer when bit 4 is set.  Bit 5: the client sends
 *     close_notify at the end; bit 6: the client then writes the raw bytes
 *     of the last response part outside TLS (garbage records after a
 *     handshake) instead of them being a response.
 *
 * Invariants (abort on violation): the handshake completes; every request
 * that reaches the upstream is strict HTTP/1.1 by moat's own scanner and
 * parser and by the independent reader in fuzz_common.h, one message after
 * another (unless a 101 switched to a tunnel); what the client gets starts
 * with a well-formed head when it starts with "HTTP/"; after each input
 * every connection is gone, upstream pools are empty and no chunk of the
 * worker's or the generation's pools is still in use; a connection that
 * does not end when the client goes away is reported.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "conn.h"
#include "config.h"
#include "fuzz_common.h"
#include "gen.h"
#include "http1.h"
#include "log.h"
#include "redirect.h"
#include "runtime.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEP "\x00@@\x00"
#define SEP_LEN 4
#define MAX_RESPONSES 8
#define MAX_ITERATIONS 4000     /* loop turns per input */
#define IDLE_TURNS 3            /* turns without progress that mean "settled" */

/* ---- the upstream stub ---- */

struct stub_conn {
    uv_tcp_t tcp;
    uv_shutdown_t shutdown_req;
    struct stub_conn *next;
    struct fuzz_buf in;         /* bytes received, not yet checked */
    struct http1_msg msg;
    struct http1_limits lim;
    struct http1_header headers[128];
    int in_head;                /* 0: scanning a head; 1: in a body */
    size_t head_len;
    int tunnel;                 /* a 101 was sent: the rest is not HTTP */
    int shut;
    int closing;
    unsigned answered;
};

static struct {
    int ready;
    struct runtime *rt;
    struct worker w;
    uv_tcp_t stub_server;
    unsigned stub_port;
    unsigned listen_port;
    unsigned redirect_port;
    WOLFSSL_CTX *client_ctx[2];     /* [0]: up to TLS 1.3, [1]: TLS 1.2 */
    struct stub_conn *stubs;
    unsigned nstubs;

    /* this input */
    const char *responses[MAX_RESPONSES];
    size_t response_len[MAX_RESPONSES];
    unsigned nresponses;
    unsigned next_response;
    uint8_t flags;
    uint64_t progress;          /* bytes moved anywhere; changes mean "not settled" */
    uint64_t requests_seen;
} F;

static void on_stub_closed(uv_handle_t *h)
{
    struct stub_conn *s = h->data;
    struct stub_conn **link = &F.stubs;
    while (*link != s)
        link = &(*link)->next;
    *link = s->next;
    F.nstubs--;
    fuzz_buf_free(&s->in);
    free(s);
}

static void stub_close(struct stub_conn *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    uv_close((uv_handle_t *)&s->tcp, on_stub_closed);
}

struct stub_write {
    uv_write_t req;
    char data[];
};

static void on_stub_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_stub_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* Sends the next scripted response. */
static void stub_answer(struct stub_conn *s)
{
    if (F.next_response >= F.nresponses || s->closing || s->shut)
        return;
    const char *r = F.responses[F.next_response];
    size_t n = F.response_len[F.next_response++];
    s->answered++;
    if (n >= 12 && memcmp(r, "HTTP/1.1 101", 12) == 0)
        s->tunnel = 1;
    if (n > 0) {
        struct stub_write *w = malloc(sizeof(*w) + n);
        if (w == NULL)
            abort();
        memcpy(w->data, r, n);
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_stub_written) != 0)
            free(w);
    }
    if (F.flags & 16) {
        s->shut = 1;
        if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_stub_shutdown) != 0)
            stub_close(s);
    }
}

static int stub_on_head(void *ctx, struct http1_msg *m)
{
    struct stub_conn *s = ctx;
    FUZZ_CHECK(m->version == 11, "upstream request is HTTP/1.%d", m->version % 10);
    FUZZ_CHECK(m->host.len > 0, "upstream request without Host");
    F.requests_seen++;
    if (!(F.flags & 8))
        stub_answer(s);
    return 0;
}

static int stub_on_body(void *ctx, const char *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return 0;
}

static int stub_on_end(void *ctx, struct http1_msg *m)
{
    struct stub_conn *s = ctx;
    (void)m;
    if (F.flags & 8)
        stub_answer(s);
    return 0;
}

static const struct http1_handler stub_handler = {stub_on_head, stub_on_body, stub_on_end};

/* Every byte moat sends upstream is strict HTTP/1.1, message after message. */
static void stub_check(struct stub_conn *s)
{
    static struct fuzz_head fh;
    while (s->in.len > 0 && !s->tunnel) {
        size_t used = 0;
        if (!s->in_head) {
            long r = http1_scan_head(&s->msg.scan, s->in.p, s->in.len, 1, &s->lim);
            FUZZ_CHECK(r >= 0, "moat sent upstream a head its own scanner refuses (%ld): %.*s", r,
                       (int)(s->in.len < 400 ? s->in.len : 400), s->in.p);
            if (r == 0)
                return;
            const char *why = fuzz_read_head(s->in.p, (size_t)r, FUZZ_REQUEST, &fh);
            FUZZ_CHECK(why == NULL, "upstream head: %s", why);
            s->head_len = (size_t)r;
            s->in_head = 1;
            enum http1_result res = http1_parse(&s->msg, s->in.p, s->head_len, &used);
            FUZZ_CHECK(res != HTTP1_ERROR, "moat sent upstream a head its parser refuses: %s",
                       s->msg.error_reason ? s->msg.error_reason : "");
            memmove(s->in.p, s->in.p + s->head_len, s->in.len - s->head_len);
            s->in.len -= s->head_len;
            if (res == HTTP1_DONE) {
                if (s->msg.flags & HTTP1_F_UPGRADE) {
                    s->tunnel = 1;
                    return;
                }
                http1_msg_reset(&s->msg);
                s->in_head = 0;
            }
            continue;
        }
        enum http1_result res = http1_parse(&s->msg, s->in.p, s->in.len, &used);
        FUZZ_CHECK(res != HTTP1_ERROR, "moat sent upstream a body its parser refuses: %s",
                   s->msg.error_reason ? s->msg.error_reason : "");
        memmove(s->in.p, s->in.p + used, s->in.len - used);
        s->in.len -= used;
        if (res == HTTP1_DONE) {
            http1_msg_reset(&s->msg);
            s->in_head = 0;
        }
    }
}

static void stub_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char b[65536];
    (void)h;
    (void)suggested;
    buf->base = b;
    buf->len = sizeof(b);
}

static void on_stub_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct stub_conn *s = st->data;
    if (n == 0)
        return;
    if (n < 0) {
        stub_close(s);
        return;
    }
    F.progress += (uint64_t)n;
    if (s->tunnel)
        return;
    fuzz_buf_put(&s->in, buf->base, (size_t)n);
    stub_check(s);
}

static void on_stub_connection(uv_stream_t *server, int status)
{
    if (status != 0)
        return;
    struct stub_conn *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    uv_tcp_init(server->loop, &s->tcp);
    s->tcp.data = s;
    s->next = F.stubs;
    F.stubs = s;
    F.nstubs++;
    F.progress++;
    if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0) {
        stub_close(s);
        return;
    }
    s->lim = (struct http1_limits){.max_head = 1u << 20, .max_uri = 1u << 20,
                                   .max_headers = 128};
    http1_msg_init(&s->msg, 1, s->headers, 128, &s->lim, &stub_handler, s);
    uv_read_start((uv_stream_t *)&s->tcp, stub_alloc, on_stub_read);
}

/* ---- set-up, once per process ---- */

static void hook_nop(struct worker *w, void *arg)
{
    (void)w;
    (void)arg;
}

static void setup(void)
{
    char err[4096];
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ALERT);
    if (tls_global_init() != 0)
        abort();

    /* The stub's socket first: the configuration names its port. */
    int sfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sin);
    if (sfd < 0 || bind(sfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(sfd, 128) != 0 ||
        getsockname(sfd, (struct sockaddr *)&sin, &slen) != 0) {
        perror("fuzz_conn: upstream stub");
        abort();
    }
    F.stub_port = ntohs(sin.sin_port);

    static char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "workers: 1\n"
             "listeners:\n"
             "  - name: fuzz\n"
             "    bind: \"127.0.0.1:0\"\n"
             "    tls:\n"
             "      certificates: []\n"
             "      session_cache: {size: 0}\n"
             "  - name: plain\n"
             "    bind: \"127.0.0.1:0\"\n"
             "    redirect_to_https: 8443\n"
             "routes:\n"
             "  - path: /\n"
             "    upstream: app\n"
             "  - host: other.test\n"
             "    path: /nokeep/\n"
             "    upstream: nokeep\n"
             "upstreams:\n"
             "  app:\n"
             "    servers: [\"127.0.0.1:%u\"]\n"
             "    keepalive: 4\n"
             "  nokeep:\n"
             "    servers: [\"127.0.0.1:%u\"]\n"
             "    keepalive: 0\n"
             "limits:\n"
             "  max_header_bytes: 4k\n"
             "  max_uri_bytes: 1k\n"
             "  max_headers: 32\n"
             "  max_body_bytes: 64k\n"
             "log:\n"
             "  access: null\n"
             "  level: error\n",
             F.stub_port, F.stub_port);
    struct cfg_source src = {.kind = CFG_SOURCE_TEXT, .name = "fuzz_conn", .text = yaml,
                             .self_signed = 1};
    F.rt = runtime_load(&src, NULL, 1, 0, err, sizeof(err));
    if (F.rt == NULL) {
        fprintf(stderr, "fuzz_conn: runtime: %s\n", err);
        abort();
    }
    log_set_level(LOG_ALERT);
    F.listen_port = F.rt->ports[0];
    F.redirect_port = F.rt->ports[1];
    struct worker_hooks hooks = {hook_nop, hook_nop, NULL};
    if (worker_init(&F.w, 0, F.rt, &hooks, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_conn: worker: %s\n", err);
        abort();
    }
    uv_tcp_init(&F.w.loop, &F.stub_server);
    if (uv_tcp_open(&F.stub_server, sfd) != 0 ||
        uv_listen((uv_stream_t *)&F.stub_server, 128, on_stub_connection) != 0)
        abort();

    F.client_ctx[0] = wolfSSL_CTX_new(wolfSSLv23_client_method());
    F.client_ctx[1] = wolfSSL_CTX_new(wolfTLSv1_2_client_method());
    for (int i = 0; i < 2; i++) {
        if (F.client_ctx[i] == NULL)
            abort();
        wolfSSL_CTX_set_verify(F.client_ctx[i], WOLFSSL_VERIFY_NONE, NULL);
    }
    F.ready = 1;
}

/* ---- the client ---- */

struct client {
    int fd;
    WOLFSSL *ssl;
    struct fuzz_buf rx;         /* what moat sent (plaintext in TLS mode) */
    int eof;
};

static int client_connect(struct client *c, unsigned port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        abort();
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 && errno != EINPROGRESS) {
        perror("fuzz_conn: connect");
        abort();
    }
    return 0;
}

/* Reads what moat sent; returns bytes read. */
static size_t client_pump(struct client *c)
{
    char buf[16384];
    size_t total = 0;
    while (!c->eof) {
        if (c->ssl != NULL) {
            int n = wolfSSL_read(c->ssl, buf, sizeof(buf));
            if (n > 0) {
                fuzz_buf_put(&c->rx, buf, (size_t)n);
                total += (size_t)n;
                continue;
            }
            int e = wolfSSL_get_error(c->ssl, n);
            if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
                c->eof = 1;
            break;
        }
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n > 0) {
            fuzz_buf_put(&c->rx, buf, (size_t)n);
            total += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            c->eof = 1;
        break;
    }
    return total;
}

/* One loop turn and the client's reads; returns 1 if anything moved. */
static int turn(struct client *c)
{
    uint64_t before = F.progress;
    uint64_t conns = F.w.nconns;
    uv_run(&F.w.loop, UV_RUN_NOWAIT);
    size_t got = c ? client_pump(c) : 0;
    return got > 0 || F.progress != before || F.w.nconns != conns;
}

/* Runs the loop until nothing moves for a few turns (or the bound). */
static void settle(struct client *c, unsigned *budget)
{
    unsigned idle = 0;
    while (idle < IDLE_TURNS && *budget > 0) {
        (*budget)--;
        idle = turn(c) ? 0 : idle + 1;
    }
}

static int client_handshake(struct client *c, unsigned *budget)
{
    int tls12 = (F.flags & 2) != 0;
    c->ssl = wolfSSL_new(F.client_ctx[tls12]);
    if (c->ssl == NULL)
        abort();
    if (!(F.flags & 4))
        wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, "localhost", 9);
    wolfSSL_set_fd(c->ssl, c->fd);
    while (*budget > 0) {
        (*budget)--;
        int rc = wolfSSL_connect(c->ssl);
        if (rc == WOLFSSL_SUCCESS)
            return 0;
        int e = wolfSSL_get_error(c->ssl, rc);
        if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) {
            char why[WOLFSSL_MAX_ERROR_SZ];
            fuzz_fail(__FILE__, __LINE__, "TLS handshake with moat failed: %d %s", e,
                      wolfSSL_ERR_error_string((unsigned long)e, why));
        }
        uv_run(&F.w.loop, UV_RUN_NOWAIT);
    }
    fuzz_fail(__FILE__, __LINE__, "TLS handshake did not finish");
}

static void client_send(struct client *c, const uint8_t *p, size_t n, int raw, unsigned *budget)
{
    size_t off = 0;
    while (off < n && !c->eof && *budget > 0) {
        ssize_t k;
        if (!raw && c->ssl != NULL) {
            int r = wolfSSL_write(c->ssl, p + off, (int)(n - off));
            if (r <= 0) {
                int e = wolfSSL_get_error(c->ssl, r);
                if (e == WOLFSSL_ERROR_WANT_WRITE || e == WOLFSSL_ERROR_WANT_READ) {
                    (*budget)--;
                    turn(c);
                    continue;
                }
                c->eof = 1;
                return;
            }
            k = r;
        } else {
            k = send(c->fd, p + off, n - off, MSG_NOSIGNAL);
            if (k < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    (*budget)--;
                    turn(c);
                    continue;
                }
                c->eof = 1;
                return;
            }
        }
        off += (size_t)k;
    }
}

/* ---- one input ---- */

/* Open file descriptors: none may be left behind by an input. */
static unsigned count_fds(void)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static void split_responses(const uint8_t *p, size_t n, size_t *client_len)
{
    const uint8_t *end = p + n;
    const uint8_t *sep = memmem(p, n, SEP, SEP_LEN);
    *client_len = sep ? (size_t)(sep - p) : n;
    F.nresponses = 0;
    while (sep != NULL && F.nresponses < MAX_RESPONSES) {
        const uint8_t *r = sep + SEP_LEN;
        sep = memmem(r, (size_t)(end - r), SEP, SEP_LEN);
        F.responses[F.nresponses] = (const char *)r;
        F.response_len[F.nresponses++] = (size_t)((sep ? sep : end) - r);
    }
}

static void check_client_rx(const struct client *c, int redirect)
{
    static struct fuzz_head fh;
    if (redirect) {
        /* One complete answer, nothing else. */
        const struct fuzz_field *f = NULL;
        uint64_t v;
        if (c->rx.len == 0)
            return;
        const char *why = fuzz_read_head(c->rx.p, c->rx.len, FUZZ_RESPONSE, &fh);
        FUZZ_CHECK(why == NULL, "redirect answer: %s", why);
        FUZZ_CHECK(fuzz_count(&fh, "content-length", &f) == 1 &&
                       fuzz_decimal(f->value, f->value_len, &v) && v == c->rx.len - fh.len,
                   "redirect answer length");
        FUZZ_CHECK(fuzz_count(&fh, "connection", &f) == 1 && fuzz_value_is(f, "close"),
                   "redirect answer without Connection: close");
        if (fh.status == 308)
            FUZZ_CHECK(fuzz_count(&fh, "location", &f) == 1 && f->value_len > 8 &&
                           memcmp(f->value, "https://", 8) == 0,
                       "308 without an https:// Location");
        else
            FUZZ_CHECK(fh.status >= 400 && fh.status <= 599, "redirect status %d", fh.status);
        return;
    }
    if (c->rx.len < 5 || memcmp(c->rx.p, "HTTP/", 5) != 0)
        return;
    const char *why = fuzz_read_head(c->rx.p, c->rx.len, FUZZ_RESPONSE, &fh);
    FUZZ_CHECK(why == NULL || strcmp(why, "incomplete") == 0, "head to the client: %s", why);
}

static void close_stubs(void)
{
    for (struct stub_conn *s = F.stubs; s != NULL; s = s->next)
        stub_close(s);
}

/* Everything of this input is gone: connections, stubs, pooled upstream
 * connections, buffers. */
static void teardown(struct client *c, unsigned budget)
{
    if (c->ssl != NULL)
        wolfSSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    unsigned turns = 0;
    /* Stubs are closed on every turn: moat may still connect for a request
     * the client pipelined before it went away. */
    while ((F.w.nconns > 0 || F.nstubs > 0) && turns++ < 200) {
        close_stubs();
        uv_run(&F.w.loop, UV_RUN_NOWAIT);
    }
    if (F.w.nconns > 0) {
        /* Still open although the client is gone: waiting on a timer. */
        redirect_drain(&F.w, 1);
        struct conn *next;
        for (struct conn *k = F.w.conns; k != NULL; k = next) {
            next = k->next;
            conn_abort(k);
        }
        for (turns = 0; F.w.nconns > 0 && turns < 100; turns++)
            uv_run(&F.w.loop, UV_RUN_NOWAIT);
    }
    FUZZ_CHECK(F.w.nconns == 0 && F.w.conns == NULL && F.w.redirects == NULL,
               "%llu connection(s) left",
               (unsigned long long)F.w.nconns);
    for (turns = 0; turns < 200; turns++) {
        struct gen *g = F.w.gen;
        unsigned busy = 0;
        for (size_t i = 0; i < g->cfg->nupstreams; i++)
            busy += g->upstreams[i].nidle[0] + g->upstreams[i].active[0];
        if (busy == 0 && F.nstubs == 0)
            break;
        close_stubs();
        uv_run(&F.w.loop, UV_RUN_NOWAIT);
    }
    /* Close callbacks of the last handles. */
    for (turns = 0; turns < 4; turns++)
        uv_run(&F.w.loop, UV_RUN_NOWAIT);
    struct gen *g = F.w.gen;
    for (size_t i = 0; i < g->cfg->nupstreams; i++)
        FUZZ_CHECK(g->upstreams[i].nidle[0] == 0 && g->upstreams[i].active[0] == 0,
                   "upstream %zu: %u idle, %u active after the input", i, g->upstreams[i].nidle[0],
                   g->upstreams[i].active[0]);
    FUZZ_CHECK(F.nstubs == 0, "stub connections left");
    FUZZ_CHECK(g->refs == 1, "generation has %u references", g->refs);
    FUZZ_CHECK(g->inbufs.in_use == 0, "%zu input chunks in use", g->inbufs.in_use);
    FUZZ_CHECK(F.w.chunks.in_use == 0, "%zu output chunks in use", F.w.chunks.in_use);
    (void)budget;
    fuzz_buf_free(&c->rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!F.ready)
        setup();
    if (size < 2)
        return 0;
    F.flags = data[0];
    struct fuzz_pieces pieces;
    fuzz_pieces_init(&pieces, data[1]);
    data += 2;
    size -= 2;
    F.next_response = 0;
    F.nresponses = 0;

    struct client c = {0};
    unsigned budget = MAX_ITERATIONS;
    unsigned fds = count_fds();
    int tls = F.flags & 1;
    int redirect = !tls && (F.flags & 128);
    client_connect(&c, redirect ? F.redirect_port : F.listen_port);
    /* The listener accepts. */
    for (unsigned i = 0; i < 50 && F.w.nconns == 0; i++)
        uv_run(&F.w.loop, UV_RUN_NOWAIT);
    FUZZ_CHECK(F.w.nconns == 1, "listener did not accept");

    const uint8_t *raw_tail = NULL;
    size_t raw_tail_len = 0;
    size_t client_len = size;
    if (tls) {
        split_responses(data, size, &client_len);
        if ((F.flags & 64) && F.nresponses > 0) {
            F.nresponses--;
            raw_tail = (const uint8_t *)F.responses[F.nresponses];
            raw_tail_len = F.response_len[F.nresponses];
        }
        client_handshake(&c, &budget);
        settle(&c, &budget);
    }
    size_t off = 0;
    while (off < client_len && !c.eof && budget > 0) {
        size_t n = fuzz_pieces_next(&pieces, client_len - off);
        client_send(&c, data + off, n, !tls, &budget);
        off += n;
        /* Byte by byte, moat reads each byte alone; otherwise everything
         * that follows from a piece happens before the next one. */
        if (pieces.mode == 1)
            turn(&c);
        else
            settle(&c, &budget);
    }
    if (raw_tail != NULL && !c.eof) {
        client_send(&c, raw_tail, raw_tail_len, 1, &budget);
        settle(&c, &budget);
    }
    if (tls && (F.flags & 32) && !c.eof) {
        wolfSSL_shutdown(c.ssl);
        settle(&c, &budget);
    }
    settle(&c, &budget);
    check_client_rx(&c, redirect);
    if (getenv("FUZZ_CONN_DEBUG") != NULL)
        fprintf(stderr, "fuzz_conn: flags %#x, %u turns, %llu requests upstream, %u answered, "
                        "client got %zu bytes: %.*s\n",
                F.flags, MAX_ITERATIONS - budget, (unsigned long long)F.requests_seen,
                F.next_response, c.rx.len, (int)(c.rx.len < 60 ? c.rx.len : 60), c.rx.p);
    F.requests_seen = 0;
    teardown(&c, budget);
    unsigned left = count_fds();
    FUZZ_CHECK(left <= fds, "%u file descriptors open after the input, %u before", left, fds);
    return 0;
}
