/*
 * Unit tests for http1: the strict head scanner, request and response
 * parsing through llhttp with a recording handler, the heads moat sends on
 * (compared whole), response framing and dot-segment detection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "http1.h"

/* ---- helpers ---- */

/* A span as a C string; eight rotating buffers. */
static const char *S(struct span s)
{
    static char bufs[8][1024];
    static unsigned k;
    char *b = bufs[k++ % 8];
    size_t n = s.len < sizeof(bufs[0]) - 1 ? s.len : sizeof(bufs[0]) - 1;
    if (n > 0)
        memcpy(b, s.p, n);
    b[n] = '\0';
    return b;
}

struct parsed {
    struct http1_msg m;
    struct http1_header headers[64];
    struct http1_limits lim;
    int heads, ends;
    char body[4096];
    size_t body_len;
    long head_len;
    enum http1_result res;
    size_t used; /* by the last http1_parse() */
};

static int rec_head(void *ctx, struct http1_msg *m)
{
    struct parsed *p = ctx;
    CHECK(m == &p->m);
    p->heads++;
    return 0;
}

static int rec_body(void *ctx, const char *at, size_t n)
{
    struct parsed *p = ctx;
    CHECK_INT(p->heads, 1);
    if (p->body_len + n < sizeof(p->body)) {
        memcpy(p->body + p->body_len, at, n);
        p->body_len += n;
        p->body[p->body_len] = '\0';
    }
    return 0;
}

static int rec_end(void *ctx, struct http1_msg *m)
{
    struct parsed *p = ctx;
    CHECK(m == &p->m);
    p->ends++;
    return 0;
}

static const struct http1_handler recorder = {rec_head, rec_body, rec_end};

static struct parsed P; /* large: kept out of the stack */

static struct parsed *p_init(int is_request, unsigned max_headers)
{
    struct parsed *p = &P;
    memset(p, 0, sizeof(*p));
    p->lim = (struct http1_limits){.max_head = 8192, .max_uri = 2048, .max_headers = 100};
    http1_msg_init(&p->m, is_request, p->headers, max_headers, &p->lim, &recorder, p);
    return p;
}

/* Scans the head of raw, parses it, then the rest in one call. */
static enum http1_result p_feed(struct parsed *p, const char *raw, size_t len)
{
    struct http1_scan sc = {0};
    p->head_len = http1_scan_head(&sc, raw, len, p->m.is_request, &p->lim);
    if (p->head_len <= 0)
        return p->res = HTTP1_ERROR;
    p->res = http1_parse(&p->m, raw, (size_t)p->head_len, &p->used);
    if (p->res == HTTP1_MORE && (size_t)p->head_len < len)
        p->res = http1_parse(&p->m, raw + p->head_len, len - (size_t)p->head_len, &p->used);
    return p->res;
}

static struct parsed *req(const char *raw)
{
    struct parsed *p = p_init(1, 64);
    p_feed(p, raw, strlen(raw));
    return p;
}

/* 0 if the request was accepted, the status moat answers if not (negative
 * from the scanner, positive from the parser). */
static int req_status_lim(const char *raw, uint64_t max_body)
{
    struct parsed *p = p_init(1, 64);
    p->lim.max_body = max_body;
    p_feed(p, raw, strlen(raw));
    if (p->head_len <= 0)
        return (int)p->head_len;
    if (p->res == HTTP1_ERROR) {
        CHECK(p->m.error_status >= 400);
        return p->m.error_status;
    }
    return 0;
}

static int req_status(const char *raw)
{
    return req_status_lim(raw, 0);
}

static struct parsed *resp(const char *raw, int to_head)
{
    struct parsed *p = p_init(0, 64);
    p->m.request_was_head = to_head;
    p_feed(p, raw, strlen(raw));
    return p;
}

struct capture {
    struct sink sink;
    char data[8192];
    size_t len;
};

static int capture_write(struct sink *s, const void *p, size_t n)
{
    struct capture *c = (struct capture *)s;
    if (c->len + n >= sizeof(c->data))
        return -1;
    memcpy(c->data + c->len, p, n);
    c->len += n;
    c->data[c->len] = '\0';
    return 0;
}

struct writer {
    struct capture cap;
    char scratch[32]; /* small: heads spill through the sink */
    struct http1_out out;
};

static struct http1_out *w_init(struct writer *w)
{
    memset(w, 0, sizeof(*w));
    w->cap.sink.write = capture_write;
    w->out = (struct http1_out){.sink = &w->cap.sink, .buf = w->scratch, .cap = sizeof(w->scratch)};
    return &w->out;
}

static const char *w_done(struct writer *w)
{
    CHECK_INT(http1_out_flush(&w->out), 0);
    return w->cap.data;
}

/* ---- scanner ---- */

static long scan(const char *raw, int is_request, const struct http1_limits *lim)
{
    struct http1_scan sc = {0};
    return http1_scan_head(&sc, raw, strlen(raw), is_request, lim);
}

static const struct http1_limits LIM = {.max_head = 8192, .max_uri = 2048, .max_headers = 100};

static long scanq(const char *raw)
{
    return scan(raw, 1, &LIM);
}

static long scanr(const char *raw)
{
    return scan(raw, 0, &LIM);
}

static void test_scan_incremental(void)
{
    static const char head[] = "GET /index.html?q=1 HTTP/1.1\r\n"
                               "Host: example.com\r\n"
                               "User-Agent: t/1\r\n"
                               "Accept:*/*\r\n"
                               "X-Empty:\r\n"
                               "\r\n";
    size_t len = sizeof(head) - 1;
    struct http1_scan sc = {0};
    int early = 0;
    long rc = 0;
    for (size_t i = 1; i <= len; i++) {
        rc = http1_scan_head(&sc, head, i, 1, &LIM);
        if (i < len && rc != 0)
            early++;
    }
    CHECK_INT(early, 0);
    CHECK_INT(rc, (long)len);

    /* Body bytes after the head are not part of it. */
    char buf[256];
    snprintf(buf, sizeof(buf), "%sBODY", head);
    CHECK_INT(scanq(buf), (long)len);

    /* In two arbitrary pieces. */
    memset(&sc, 0, sizeof(sc));
    CHECK_INT(http1_scan_head(&sc, head, 31, 1, &LIM), 0);
    CHECK_INT(http1_scan_head(&sc, head, len, 1, &LIM), (long)len);

    static const char rhead[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    memset(&sc, 0, sizeof(sc));
    early = 0;
    for (size_t i = 1; i <= sizeof(rhead) - 1; i++) {
        rc = http1_scan_head(&sc, rhead, i, 0, &LIM);
        if (i < sizeof(rhead) - 1 && rc != 0)
            early++;
    }
    CHECK_INT(early, 0);
    CHECK_INT(rc, (long)(sizeof(rhead) - 1));
    CHECK_INT(scanr("HTTP/1.1 204\r\n\r\n"), 16);
    CHECK_INT(scanr("HTTP/1.0 200 \r\n\r\n"), 17);
    CHECK_INT(scanr("HTTP/1.1 200 caf\xc3\xa9\r\n\r\n"), 22);
}

static void test_scan_request_errors(void)
{
    /* line ends */
    CHECK_INT(scanq("GET / HTTP/1.1\nHost: a\r\n\r\n"), -400);
    /* the HTTP/2 preface method, in any version (fuzz: pri-head-unanswered) */
    CHECK_INT(scanq("PRI * HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("PRI / HTTP/1.0\r\n\r\n"), -400);
    CHECK_INT(scanq("PRIX / HTTP/1.1\r\nHost: a\r\n\r\n") > 0, 1);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\n\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), -400);
    CHECK_INT(scanq("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    /* obs-fold and header names */
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\n  folded\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\n: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHo st: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"), -400);
    /* values: NUL and controls refused, HTAB and obs-text allowed */
    {
        static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
        struct http1_scan sc = {0};
        CHECK_INT(http1_scan_head(&sc, nul, sizeof(nul) - 1, 1, &LIM), -400);
    }
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n"), 35);
    CHECK_INT(scanq("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n"), 37);
    /* request lines */
    CHECK_INT(scanq("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTX/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / http/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("G@T / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET\tHTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    CHECK_INT(scanq("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), -505);
    CHECK_INT(scanq("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), -505);
    CHECK_INT(scanq("GET / HTTP/3.0\r\nHost: a\r\n\r\n"), -505);
    CHECK_INT(scanq("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), -505);
    /* HTTP/0.9 style: no version */
    CHECK_INT(scanq("GET /\r\n\r\n"), -400);
    CHECK_INT(scanq("GET /index.html\r\n"), -400);
    CHECK_INT(scanq("GET\r\n\r\n"), -400);
    CHECK_INT(scanq("\r\n\r\n"), -400);
}

static void test_scan_limits(void)
{
    struct http1_limits lim = {.max_head = 8192, .max_uri = 32, .max_headers = 3};
    char buf[1024];

    /* request line: max_uri */
    CHECK_INT(scan("GET /aaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n", 1, &lim), 40); /* 27 bytes */
    CHECK_INT(scan("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n", 1,
                   &lim),
              -414);
    /* 414 as soon as the line is too long, before its end arrives */
    CHECK_INT(scan("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1, &lim), -414);
    CHECK_INT(scan("GET /aaaaaaaaaaaaaaaaaaaaaaaaa", 1, &lim), 0);
    /* 431 when the head exceeds max_head, even if the request line alone does */
    struct http1_limits tiny = {.max_head = 20, .max_uri = 2048, .max_headers = 3};
    CHECK_INT(scan("GET /aaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", 1, &tiny), -431);
    CHECK_INT(scan("GET /aaaaaaaaaaaaaaaaaaaaaaaaa", 1, &tiny), -431);

    /* header count: max_headers exactly is fine, one more is 431 */
    CHECK_INT(scan("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", 1, &lim), 39);
    CHECK_INT(scan("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 1, &lim), -431);
    CHECK_INT(scan("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 0, &lim), -502);

    /* whole head: max_head, blank line included */
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"; /* 27 bytes */
    struct http1_limits h = {.max_head = 27, .max_uri = 2048, .max_headers = 100};
    CHECK_INT(scan(head, 1, &h), 27);
    h.max_head = 26;
    CHECK_INT(scan(head, 1, &h), -431);
    h.max_head = 25;
    CHECK_INT(scan(head, 1, &h), -431);
    h.max_head = 24;
    CHECK_INT(scan(head, 1, &h), -431);
    static const char rhead[] = "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n"; /* 25 bytes */
    h.max_head = 25;
    CHECK_INT(scan(rhead, 0, &h), 25);
    h.max_head = 24;
    CHECK_INT(scan(rhead, 0, &h), -502);

    /* a long header value without its line end yet */
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
    memset(buf + n, 'v', 200);
    buf[n + 200] = '\0';
    h.max_head = 100;
    CHECK_INT(scan(buf, 1, &h), -431);
    h.max_head = 8192;
    CHECK_INT(scan(buf, 1, &h), 0);
}

static void test_scan_response_errors(void)
{
    CHECK_INT(scanr("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 200 OK\r\nA: 1\r\n b\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 200 OK\r\nA : 1\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 200 OK\r\n: 1\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 20 OK\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 2000 OK\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 2x0 OK\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1  200 OK\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/2.0 200 OK\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/2 200 OK\r\n\r\n"), -502);
    CHECK_INT(scanr("HTTP/1.1 200 O\x01K\r\n\r\n"), -502);
    CHECK_INT(scanr("ICY 200 OK\r\n\r\n"), -502);
    CHECK_INT(scanr("\r\n"), -502);
}

/* ---- request parsing ---- */

static void test_parse_origin_form(void)
{
    static const char raw[] = "GET /a/b?x=1&y=%2F HTTP/1.1\r\n"
                              "Host: Example.com\r\n"
                              "User-Agent: t\r\n"
                              "Accept:   */*  \t\r\n"
                              "\r\n";
    struct parsed *p = req(raw);
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->head_len, (long)sizeof(raw) - 1);
    CHECK_INT(p->used, sizeof(raw) - 1);
    CHECK_INT(p->heads, 1);
    CHECK_INT(p->ends, 1);
    CHECK_INT(p->body_len, 0);
    CHECK_INT(p->m.error_status, 0);
    CHECK_STR(S(p->m.method), "GET");
    CHECK_STR(S(p->m.target), "/a/b?x=1&y=%2F");
    CHECK_STR(S(p->m.path), "/a/b");
    CHECK_STR(S(p->m.uri), "/a/b?x=1&y=%2F");
    CHECK_STR(S(p->m.host), "Example.com");
    CHECK_INT(p->m.version, 11);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_IDEMPOTENT);
    CHECK_INT(p->m.content_length, 0);
    CHECK_INT(p->m.nheaders, 3);
    if (p->m.nheaders == 3) {
        CHECK_INT(p->headers[0].kind, HTTP1_HDR_HOST);
        CHECK_INT(p->headers[1].kind, HTTP1_HDR_USER_AGENT);
        CHECK_INT(p->headers[2].kind, HTTP1_HDR_OTHER);
        CHECK_STR(S(p->headers[2].name), "Accept");
        CHECK_STR(S(p->headers[2].value), "*/*");
        CHECK_INT(p->headers[0].dropped + p->headers[1].dropped + p->headers[2].dropped, 0);
    }

    p = req("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_IDEMPOTENT | HTTP1_F_HEAD);
    p = req("POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_CONTENT_LENGTH);
    CHECK_STR(S(p->m.path), "/form");
    CHECK_STR(S(p->m.uri), "/form");
}

static void test_parse_absolute_form(void)
{
    struct parsed *p = req("GET http://API.example.com:8080/v1/x?q=1 HTTP/1.1\r\n"
                           "Host: other.example\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_STR(S(p->m.target), "http://API.example.com:8080/v1/x?q=1");
    CHECK_STR(S(p->m.host), "API.example.com:8080");
    CHECK_STR(S(p->m.uri), "/v1/x?q=1");
    CHECK_STR(S(p->m.path), "/v1/x");
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_IDEMPOTENT | HTTP1_F_ABSOLUTE_FORM);

    p = req("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_STR(S(p->m.host), "example.com");
    CHECK_STR(S(p->m.uri), "/");
    CHECK_STR(S(p->m.path), "/");

    CHECK_INT(req_status("GET http://user@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"), 400);
    CHECK_INT(req_status("GET http://example.com?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"), 400);
    CHECK_INT(req_status("GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"), 400);
    CHECK_INT(req_status("GET http://example.com/../etc HTTP/1.1\r\nHost: example.com\r\n\r\n"),
              400);
}

static void test_parse_asterisk_form(void)
{
    struct parsed *p = req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_STR(S(p->m.method), "OPTIONS");
    CHECK_STR(S(p->m.target), "*");
    CHECK_STR(S(p->m.uri), "*");
    CHECK_STR(S(p->m.path), "/");
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_IDEMPOTENT);
    CHECK_INT(req_status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void test_parse_rejections(void)
{
    /* Host */
    CHECK_INT(req_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    CHECK_INT(req_status("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_INT(req_status("GET / HTTP/1.1\r\nX: y\r\n\r\n"), 400);
    CHECK_INT(req_status("GET / HTTP/1.0\r\n\r\n"), 0);
    struct parsed *p = req("GET / HTTP/1.0\r\nUser-Agent: old\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.version, 10);
    CHECK_INT(p->m.host.len, 0);
    CHECK_INT(p->m.flags, HTTP1_F_IDEMPOTENT);
    CHECK_INT(p->heads, 1);

    /* framing */
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                         "Content-Length: 1\r\n\r\nx"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                         "Content-Length: 2\r\n\r\nxy"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         "Content-Length: 3\r\n\r\n0\r\n\r\n"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"), 400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx"), 400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), 400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                         "0\r\n\r\n"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                         "0\r\n\r\n"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"),
              400);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
                         "0\r\n\r\n"),
              0);
    CHECK_INT(req_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
    CHECK_INT(req_status("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "0\r\n\r\n"),
              400);

    /* methods and expectations */
    CHECK_INT(req_status("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
              405);
    CHECK_INT(req_status("GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"), 417);
    CHECK_INT(req_status("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n"
                         "Content-Length: 1\r\n\r\n"),
              417);
    CHECK_INT(req_status("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                         "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
              417);
    p = req("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n");
    CHECK_INT(p->res, HTTP1_MORE);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_IDEMPOTENT | HTTP1_F_CONTENT_LENGTH |
                              HTTP1_F_EXPECT_CONTINUE);
    CHECK_INT(p->m.content_length, 2);
    /* HTTP/1.0 has no expectations: ignored */
    p = req("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.flags & HTTP1_F_EXPECT_CONTINUE, 0);

    /* body size */
    CHECK_INT(req_status_lim("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 100),
              413);
    CHECK_INT(req_status_lim("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", 100), 0);
    CHECK_INT(req_status_lim("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000\r\n\r\n",
                             0),
              0);
    CHECK_INT(req_status_lim("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                             10),
              413);
    CHECK_INT(req_status_lim("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                             11),
              0);

    /* targets */
    CHECK_INT(req_status("GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/%2e%2e/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/%2E%2e/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/.%2e/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/..%2fb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/..%2Fb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a%2f..%2fb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/.. HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/..?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /./a HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(req_status("GET /a/..b/c.d?x=/../ HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_INT(req_status("GET /.well-known/acme HTTP/1.1\r\nHost: a\r\n\r\n"), 0);

    /* Connection tokens must be tokens */
    CHECK_INT(req_status("GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n"), 400);
}

static void test_parse_keep_alive(void)
{
    static const struct {
        const char *raw;
        int keep;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: x, keep-alive\r\n\r\n", 1},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct parsed *p = req(cases[i].raw);
        CHECK_INT(p->res, HTTP1_DONE);
        int keep = (p->m.flags & HTTP1_F_KEEP_ALIVE) != 0;
        CHECK_INT(keep, cases[i].keep);
        if (keep != cases[i].keep)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].raw);
    }
}

static void test_parse_connection_drops(void)
{
    struct parsed *p = req("GET / HTTP/1.1\r\n"
                           "Host: a\r\n"
                           "Connection: X-Foo, keep-alive, x-forwarded-for\r\n"
                           "X-Foo: 1\r\n"
                           "X-Bar: 2\r\n"
                           "Keep-Alive: timeout=5\r\n"
                           "TE: trailers\r\n"
                           "Proxy-Connection: keep-alive\r\n"
                           "X-Forwarded-For: 1.1.1.1\r\n"
                           "Upgrade: h2c\r\n"
                           "x-foo: 3\r\n"
                           "\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.nheaders, 10);
    if (p->m.nheaders == 10) {
        static const int dropped[10] = {0, 1, 1, 0, 1, 1, 1, 0, 1, 1};
        for (unsigned i = 0; i < 10; i++) {
            CHECK_INT(p->headers[i].dropped, dropped[i]);
            if (p->headers[i].dropped != dropped[i])
                fprintf(stderr, "  header %u \"%s\"\n", i, S(p->headers[i].name));
        }
    }
    CHECK_INT(p->m.nconnection_tokens, 2);
    if (p->m.nconnection_tokens == 2)
        CHECK_STR(S(p->m.connection_tokens[0]), "X-Foo");
    CHECK_INT(p->m.flags & HTTP1_F_UPGRADE, 0); /* h2c is not websocket */

    p = req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK(p->m.flags & HTTP1_F_UPGRADE);
    p = req("POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Content-Length: 0\r\n\r\n");
    CHECK_INT(p->m.flags & HTTP1_F_UPGRADE, 0);
    p = req("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    CHECK_INT(p->m.flags & HTTP1_F_UPGRADE, 0);
}

static void test_parse_bodies(void)
{
    static const char head[] = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char body[] = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    char raw[512];
    snprintf(raw, sizeof(raw), "%s%s", head, body);

    struct parsed *p = req(raw);
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->used, sizeof(body) - 1);
    CHECK_STR(p->body, "hello world");
    CHECK_INT(p->m.body_bytes, 11);
    CHECK_INT(p->heads, 1);
    CHECK_INT(p->ends, 1);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_CHUNKED);
    CHECK_INT(p->m.nheaders, 2); /* trailers are not headers */

    /* Body bytes one at a time. */
    p = p_init(1, 64);
    CHECK_INT(p_feed(p, head, sizeof(head) - 1), HTTP1_MORE);
    CHECK_INT(p->used, sizeof(head) - 1);
    CHECK_INT(p->ends, 0);
    int bad = 0;
    for (size_t i = 0; i < sizeof(body) - 1; i++) {
        size_t used = 99;
        enum http1_result r = http1_parse(&p->m, body + i, 1, &used);
        enum http1_result want = i + 2 == sizeof(body) ? HTTP1_DONE : HTTP1_MORE;
        if (r != want || used != 1)
            bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_STR(p->body, "hello world");
    CHECK_INT(p->ends, 1);

    /* Content-Length body, then a pipelined request in the same buffer. */
    static const char two[] = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                              "GET /second HTTP/1.1\r\nHost: b\r\n\r\n";
    p = req(two);
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->used, 5);
    CHECK_STR(p->body, "hello");
    CHECK_INT(p->m.content_length, 5);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_CONTENT_LENGTH);
    CHECK_INT(p->ends, 1);
    size_t off = (size_t)p->head_len + p->used;
    http1_msg_reset(&p->m);
    p->heads = p->ends = 0;
    p->body_len = 0;
    p->body[0] = '\0';
    struct http1_scan sc = {0};
    long h2 = http1_scan_head(&sc, two + off, sizeof(two) - 1 - off, 1, &p->lim);
    CHECK_INT(h2, (long)(sizeof(two) - 1 - off));
    if (h2 > 0) {
        size_t used;
        CHECK_INT(http1_parse(&p->m, two + off, (size_t)h2, &used), HTTP1_DONE);
        CHECK_STR(S(p->m.path), "/second");
        CHECK_STR(S(p->m.host), "b");
        CHECK_INT(p->m.nheaders, 1);
        CHECK_INT(p->heads, 1);
        CHECK_INT(p->ends, 1);
        CHECK_INT(p->body_len, 0);
    }

    /* Bad chunk framing. */
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "zz\r\nhello\r\n0\r\n\r\n"),
              400);

    /* More headers than the array holds. */
    p = p_init(1, 2);
    static const char many[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    CHECK_INT(p_feed(p, many, sizeof(many) - 1), HTTP1_ERROR);
    CHECK_INT(p->m.error_status, 431);
    CHECK_INT(p->heads, 0);
}

static void test_parse_responses(void)
{
    struct parsed *p = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"
                            "hello",
                            0);
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.status, 200);
    CHECK_STR(S(p->m.reason), "OK");
    CHECK_INT(p->m.version, 11);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_CONTENT_LENGTH);
    CHECK_STR(p->body, "hello");

    p = resp("HTTP/1.1 204 No Content\r\n\r\n", 0);
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_NO_BODY);

    p = resp("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", 1);
    CHECK_INT(p->res, HTTP1_DONE);
    CHECK_INT(p->m.flags, HTTP1_F_KEEP_ALIVE | HTTP1_F_CONTENT_LENGTH | HTTP1_F_NO_BODY);
    CHECK_INT(p->body_len, 0);

    p = resp("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nabc", 0);
    CHECK_INT(p->res, HTTP1_MORE);
    CHECK_INT(p->m.flags, 0);
    CHECK_STR(p->body, "abc");
    CHECK_INT(http1_finish(&p->m), HTTP1_DONE);
    CHECK_INT(p->ends, 1);

    p = resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0);
    CHECK_INT(p->res, HTTP1_MORE);
    CHECK_INT(http1_finish(&p->m), HTTP1_ERROR);
    CHECK_INT(p->m.error_status, 502);

    p = resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0);
    CHECK_INT(p->res, HTTP1_ERROR);
    CHECK_INT(p->m.error_status, 502);
    p = resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
             "0\r\n\r\n",
             0);
    CHECK_INT(p->res, HTTP1_ERROR);
    CHECK_INT(p->m.error_status, 502);
    p = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0);
    CHECK_INT(p->res, HTTP1_ERROR);
    CHECK_INT(p->m.error_status, 502);
    /* a length other parsers read as negative (fuzz: response) */
    p = resp("HTTP/1.1 200 OK\r\nContent-Length: 11000000000000000001\r\n\r\n", 0);
    CHECK_INT(p->res, HTTP1_ERROR);
    CHECK_INT(p->m.error_status, 502);
    p = resp("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n", 0);
    CHECK(p->res != HTTP1_ERROR);
    CHECK_INT(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n"),
              400);
}

/* ---- serialisation ---- */

static const char request_a[] = "POST /api/x?y=1 HTTP/1.1\r\n"
                                "Host: Example.com\r\n"
                                "User-Agent: t\r\n"
                                "X-Forwarded-For: 6.6.6.6\r\n"
                                "X-Forwarded-Proto: http\r\n"
                                "Forwarded: for=6.6.6.6\r\n"
                                "Connection: keep-alive, X-Secret\r\n"
                                "X-Secret: s\r\n"
                                "Keep-Alive: timeout=5\r\n"
                                "Content-Length: 5\r\n"
                                "Accept: */*\r\n"
                                "\r\n"
                                "hello";

static const char *write_request(const char *raw, const struct http1_fwd *fwd)
{
    static struct writer w;
    struct parsed *p = req(raw);
    CHECK(p->res != HTTP1_ERROR);
    http1_write_request_head(w_init(&w), &p->m, fwd);
    return w_done(&w);
}

static void test_write_request(void)
{
    struct http1_fwd fwd = {.client_ip = SPAN_LIT("203.0.113.7"), .trusted_peer = 0,
                            .listener_port = 8443, .default_host = SPAN_LIT("127.0.0.1:8443"),
                            .keep_alive = 1};
    CHECK_STR(write_request(request_a, &fwd), "POST /api/x?y=1 HTTP/1.1\r\n"
                                              "Host: Example.com\r\n"
                                              "User-Agent: t\r\n"
                                              "Accept: */*\r\n"
                                              "X-Forwarded-For: 203.0.113.7\r\n"
                                              "X-Forwarded-Proto: https\r\n"
                                              "X-Forwarded-Host: Example.com\r\n"
                                              "X-Forwarded-Port: 8443\r\n"
                                              "Content-Length: 5\r\n"
                                              "\r\n");

    fwd.trusted_peer = 1;
    fwd.keep_alive = 0;
    CHECK_STR(write_request(request_a, &fwd), "POST /api/x?y=1 HTTP/1.1\r\n"
                                              "Host: Example.com\r\n"
                                              "User-Agent: t\r\n"
                                              "X-Forwarded-Proto: http\r\n"
                                              "Forwarded: for=6.6.6.6\r\n"
                                              "Accept: */*\r\n"
                                              "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"
                                              "X-Forwarded-Host: Example.com\r\n"
                                              "X-Forwarded-Port: 8443\r\n"
                                              "Content-Length: 5\r\n"
                                              "Connection: close\r\n"
                                              "\r\n");

    static const char request_b[] = "PUT http://api.example.com:8080/v1/obj HTTP/1.1\r\n"
                                    "Host: ignored.example\r\n"
                                    "Transfer-Encoding: chunked\r\n"
                                    "Expect: 100-continue\r\n"
                                    "X-Forwarded-Host: front.example\r\n"
                                    "X-Forwarded-Port: 443\r\n"
                                    "X-Forwarded-For: 1.1.1.1\r\n"
                                    "X-Forwarded-For: 2.2.2.2\r\n"
                                    "x-forwarded-server: lb1\r\n"
                                    "X-Forwarded-: not one of them\r\n"
                                    "X-Real-IP: 3.3.3.3\r\n"
                                    "True-Client-IP: 3.3.3.3\r\n"
                                    "X-Client-IP: 3.3.3.3\r\n"
                                    "X-Real-IPs: not one of them\r\n"
                                    "X_Real_IP: 4.4.4.4\r\n"
                                    "x-forwarded_for: 4.4.4.4\r\n"
                                    "X_FORWARDED_SERVER: lb2\r\n"
                                    "CF-Connecting-IP: 5.5.5.5\r\n"
                                    "X-Original-Forwarded-For: 5.5.5.5\r\n"
                                    "My_Header: kept\r\n"
                                    "Proxy: http://evil.test:8080\r\n"
                                    "Transfer_Encoding: identity\r\n"
                                    "Proxy_Authorization: Basic eDp5\r\n"
                                    "User_Agent: kept too\r\n"
                                    "\r\n";
    fwd = (struct http1_fwd){.client_ip = SPAN_LIT("2001:db8::1"), .listener_port = 443,
                             .keep_alive = 1};
    CHECK_STR(write_request(request_b, &fwd), "PUT /v1/obj HTTP/1.1\r\n"
                                              "Host: api.example.com:8080\r\n"
                                              "X-Forwarded-: not one of them\r\n"
                                              "X-Real-IPs: not one of them\r\n"
                                              "My_Header: kept\r\n"
                                              "User_Agent: kept too\r\n"
                                              "X-Forwarded-For: 2001:db8::1\r\n"
                                              "X-Forwarded-Proto: https\r\n"
                                              "X-Forwarded-Host: api.example.com:8080\r\n"
                                              "X-Forwarded-Port: 443\r\n"
                                              "Transfer-Encoding: chunked\r\n"
                                              "\r\n");
    fwd.trusted_peer = 1;
    CHECK_STR(write_request(request_b, &fwd), "PUT /v1/obj HTTP/1.1\r\n"
                                              "Host: api.example.com:8080\r\n"
                                              "X-Forwarded-Host: front.example\r\n"
                                              "X-Forwarded-Port: 443\r\n"
                                              "x-forwarded-server: lb1\r\n"
                                              "X-Forwarded-: not one of them\r\n"
                                              "X-Real-IP: 3.3.3.3\r\n"
                                              "True-Client-IP: 3.3.3.3\r\n"
                                              "X-Client-IP: 3.3.3.3\r\n"
                                              "X-Real-IPs: not one of them\r\n"
                                              "CF-Connecting-IP: 5.5.5.5\r\n"
                                              "X-Original-Forwarded-For: 5.5.5.5\r\n"
                                              "My_Header: kept\r\n"
                                              "User_Agent: kept too\r\n"
                                              "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 2001:db8::1\r\n"
                                              "X-Forwarded-Proto: https\r\n"
                                              "Transfer-Encoding: chunked\r\n"
                                              "\r\n");

    /* HTTP/1.0 without Host: the upstream's address as Host, as nginx
     * does, and no X-Forwarded-Host, since the client named no host. */
    fwd = (struct http1_fwd){.client_ip = SPAN_LIT("10.0.0.9"), .listener_port = 8443,
                             .default_host = SPAN_LIT("127.0.0.1:3000"), .keep_alive = 0};
    CHECK_STR(write_request("GET /x HTTP/1.0\r\nUser-Agent: old\r\n\r\n", &fwd),
              "GET /x HTTP/1.1\r\n"
              "Host: 127.0.0.1:3000\r\n"
              "User-Agent: old\r\n"
              "X-Forwarded-For: 10.0.0.9\r\n"
              "X-Forwarded-Proto: https\r\n"
              "X-Forwarded-Port: 8443\r\n"
              "Connection: close\r\n"
              "\r\n");

    /* WebSocket upgrade. */
    fwd = (struct http1_fwd){.client_ip = SPAN_LIT("1.2.3.4"), .listener_port = 443,
                             .keep_alive = 1};
    CHECK_STR(write_request("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                            "Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            &fwd),
              "GET /ws HTTP/1.1\r\n"
              "Host: a\r\n"
              "Sec-WebSocket-Key: k\r\n"
              "Sec-WebSocket-Version: 13\r\n"
              "X-Forwarded-For: 1.2.3.4\r\n"
              "X-Forwarded-Proto: https\r\n"
              "X-Forwarded-Host: a\r\n"
              "X-Forwarded-Port: 443\r\n"
              "Connection: upgrade\r\n"
              "Upgrade: websocket\r\n"
              "\r\n");
}

static const char *write_response(const char *raw, int to_head, int client_version, int close,
                                  const char *hsts)
{
    static struct writer w;
    static struct http1_msg request;
    memset(&request, 0, sizeof(request));
    request.version = client_version;
    request.flags = to_head ? HTTP1_F_HEAD : 0;
    struct parsed *p = resp(raw, to_head);
    CHECK(p->res != HTTP1_ERROR);
    struct http1_resp_fwd fwd = {.framing = http1_response_framing(&request, &p->m),
                                 .close = close, .client_version = client_version, .hsts = hsts};
    http1_write_response_head(w_init(&w), &p->m, &fwd);
    return w_done(&w);
}

static void test_write_response(void)
{
    static const char r200[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 5\r\n"
                               "Connection: keep-alive\r\n"
                               "Keep-Alive: timeout=5\r\n"
                               "\r\n";
    CHECK_STR(write_response(r200, 0, 11, 0, "max-age=63072000"),
              "HTTP/1.1 200 OK\r\n"
              "Content-Type: text/plain\r\n"
              "Content-Length: 5\r\n"
              "Strict-Transport-Security: max-age=63072000\r\n"
              "\r\n");
    CHECK_STR(write_response(r200, 0, 11, 1, NULL), "HTTP/1.1 200 OK\r\n"
                                                    "Content-Type: text/plain\r\n"
                                                    "Content-Length: 5\r\n"
                                                    "Connection: close\r\n"
                                                    "\r\n");
    CHECK_STR(write_response(r200, 0, 10, 0, NULL), "HTTP/1.1 200 OK\r\n"
                                                    "Content-Type: text/plain\r\n"
                                                    "Content-Length: 5\r\n"
                                                    "Connection: keep-alive\r\n"
                                                    "\r\n");
    /* chunked, re-chunked by moat */
    static const char r201[] = "HTTP/1.1 201 Created\r\n"
                               "Transfer-Encoding: chunked\r\n"
                               "Location: /x\r\n"
                               "\r\n";
    CHECK_STR(write_response(r201, 0, 11, 0, "max-age=1"), "HTTP/1.1 201 Created\r\n"
                                                           "Location: /x\r\n"
                                                           "Transfer-Encoding: chunked\r\n"
                                                           "Strict-Transport-Security: max-age=1\r\n"
                                                           "\r\n");
    /* close-delimited: to an HTTP/1.0 client it stays close-delimited */
    static const char r10[] = "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n";
    CHECK_STR(write_response(r10, 0, 10, 1, NULL), "HTTP/1.1 200 OK\r\n"
                                                   "Content-Type: text/html\r\n"
                                                   "Connection: close\r\n"
                                                   "\r\n");
    CHECK_STR(write_response(r10, 0, 11, 0, NULL), "HTTP/1.1 200 OK\r\n"
                                                   "Content-Type: text/html\r\n"
                                                   "Transfer-Encoding: chunked\r\n"
                                                   "\r\n");
    /* no body */
    CHECK_STR(write_response("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", 0, 11, 0,
                             "max-age=1"),
              "HTTP/1.1 304 Not Modified\r\n"
              "ETag: \"x\"\r\n"
              "Strict-Transport-Security: max-age=1\r\n"
              "\r\n");
    CHECK_STR(write_response("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", 1, 11, 0, NULL),
              "HTTP/1.1 200 OK\r\n"
              "Content-Length: 42\r\n"
              "\r\n");
    /* the upstream's own HSTS wins */
    CHECK_STR(write_response("HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=5\r\n"
                             "Content-Length: 0\r\n\r\n",
                             0, 11, 0, "max-age=63072000"),
              "HTTP/1.1 200 OK\r\n"
              "Strict-Transport-Security: max-age=5\r\n"
              "Content-Length: 0\r\n"
              "\r\n");
    /* empty reason phrase: moat's own */
    CHECK_STR(write_response("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 0, 11, 0, NULL),
              "HTTP/1.1 404 Not Found\r\n"
              "Content-Length: 0\r\n"
              "\r\n");
    /* interim responses: no framing, no HSTS */
    CHECK_STR(write_response("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n",
                             0, 11, 0, "max-age=1"),
              "HTTP/1.1 101 Switching Protocols\r\n"
              "Sec-WebSocket-Accept: x\r\n"
              "Connection: upgrade\r\n"
              "Upgrade: websocket\r\n"
              "\r\n");
    CHECK_STR(write_response("HTTP/1.1 100 Continue\r\n\r\n", 0, 11, 0, "max-age=1"),
              "HTTP/1.1 100 Continue\r\n\r\n");
    /* RFC 9110 8.6: no Content-Length on 1xx or 204, kept on 304
     * (fuzz: content-length-on-1xx-204) */
    CHECK_STR(write_response("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 0, 11, 0,
                             NULL),
              "HTTP/1.1 204 No Content\r\n\r\n");
    CHECK_STR(write_response("HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\nLink: </s>\r\n\r\n",
                             0, 11, 0, NULL),
              "HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n");
    CHECK_STR(write_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", 0, 11, 0,
                             NULL),
              "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
    /* the length as moat read it, not the upstream's spelling */
    CHECK_STR(write_response("HTTP/1.1 200 OK\r\ncontent-length: 000000000000000000000005\r\n"
                             "X: y\r\n\r\n",
                             0, 11, 0, NULL),
              "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\n");
}

static void test_response_framing(void)
{
    struct http1_msg rq, rs;
    memset(&rq, 0, sizeof(rq));
    memset(&rs, 0, sizeof(rs));
    rq.version = 11;
    rs.flags = HTTP1_F_CONTENT_LENGTH;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_LENGTH);
    rs.flags = HTTP1_F_CHUNKED;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_CHUNKED);
    rs.flags = 0;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_CHUNKED);
    rs.flags = HTTP1_F_NO_BODY | HTTP1_F_CONTENT_LENGTH;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_NONE);
    rs.flags = HTTP1_F_UPGRADE;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_NONE);
    rq.version = 10;
    rs.flags = 0;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_CLOSE);
    rs.flags = HTTP1_F_CHUNKED;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_CLOSE);
    rs.flags = HTTP1_F_CONTENT_LENGTH;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_LENGTH);
    rs.flags = HTTP1_F_NO_BODY;
    CHECK_INT(http1_response_framing(&rq, &rs), HTTP1_FRAMING_NONE);
}

static void test_write_misc(void)
{
    static struct writer w;
    CHECK_INT(http1_write_simple_response(w_init(&w), 404, 1, NULL, NULL, 0), 14);
    CHECK_STR(w_done(&w), "HTTP/1.1 404 Not Found\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Length: 14\r\n"
                          "Connection: close\r\n"
                          "\r\n"
                          "404 Not Found\n");
    http1_write_simple_response(w_init(&w), 413, 0, "Retry-After: 1\r\n", "too big\n", 0);
    CHECK_STR(w_done(&w), "HTTP/1.1 413 Content Too Large\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Length: 8\r\n"
                          "Retry-After: 1\r\n"
                          "\r\n"
                          "too big\n");
    /* HEAD: the same head, no content after it */
    CHECK_INT(http1_write_simple_response(w_init(&w), 404, 0, NULL, NULL, 1), 0);
    CHECK_STR(w_done(&w), "HTTP/1.1 404 Not Found\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Length: 14\r\n"
                          "\r\n");
    struct http1_out *o = w_init(&w);
    http1_write_chunk_header(o, 255);
    http1_out_str(o, "x");
    http1_write_chunk_trailer(o);
    http1_write_last_chunk(o);
    CHECK_STR(w_done(&w), "ff\r\nx\r\n0\r\n\r\n");
    o = w_init(&w);
    http1_out_uint(o, 0);
    http1_out_put(o, " ", 1);
    http1_out_uint(o, UINT64_MAX);
    CHECK_STR(w_done(&w), "0 18446744073709551615");
    CHECK_STR(http1_reason(200), "OK");
    CHECK_STR(http1_reason(431), "Request Header Fields Too Large");
    CHECK_STR(http1_reason(505), "HTTP Version Not Supported");
    CHECK_STR(http1_reason(799), "Unknown");
    CHECK_INT(http1_classify(SPAN_LIT("content-LENGTH")), HTTP1_HDR_CONTENT_LENGTH);
    CHECK_INT(http1_classify(SPAN_LIT("X-Forwarded-For")), HTTP1_HDR_X_FORWARDED_FOR);
    CHECK_INT(http1_classify(SPAN_LIT("Hostx")), HTTP1_HDR_OTHER);
    CHECK_INT(http1_classify(SPAN_LIT("Hos")), HTTP1_HDR_OTHER);
}

static int safe(const char *path)
{
    return http1_path_is_safe((struct span){path, strlen(path)});
}

static void test_path_is_safe(void)
{
    CHECK_INT(safe("/"), 1);
    CHECK_INT(safe("/a/b/c"), 1);
    CHECK_INT(safe("/a/...b"), 1);
    CHECK_INT(safe("/a/..."), 1);
    CHECK_INT(safe("/a/..b"), 1);
    CHECK_INT(safe("/a/b.."), 1);
    CHECK_INT(safe("/a.b/c."), 1);
    CHECK_INT(safe("/.well-known/x"), 1);
    CHECK_INT(safe("/%2e%2ex"), 1);
    CHECK_INT(safe("/a%2"), 1);
    CHECK_INT(safe("/a%"), 1);
    CHECK_INT(safe("/a%2fb"), 1);
    CHECK_INT(safe("/%252e%252e/"), 1); /* double-encoded: not moat's to decode */
    CHECK_INT(safe(""), 1);

    CHECK_INT(safe("/."), 0);
    CHECK_INT(safe("/.."), 0);
    CHECK_INT(safe("/./a"), 0);
    CHECK_INT(safe("/a/./b"), 0);
    CHECK_INT(safe("/a/../b"), 0);
    CHECK_INT(safe("/a/.."), 0);
    CHECK_INT(safe("/a/."), 0);
    CHECK_INT(safe("/a/%2e%2e/b"), 0);
    CHECK_INT(safe("/a/%2E%2E/b"), 0);
    CHECK_INT(safe("/a/%2e/b"), 0);
    CHECK_INT(safe("/a/%2e"), 0);
    CHECK_INT(safe("/a/.%2E"), 0);
    CHECK_INT(safe("/a/%2e."), 0);
    CHECK_INT(safe("/a/..%2fb"), 0);
    CHECK_INT(safe("/a/..%2Fb"), 0);
    CHECK_INT(safe("/a%2f..%2fb"), 0);
    CHECK_INT(safe("/a/..%5cb"), 0);
    CHECK_INT(safe("/a\\..\\b"), 0);
    CHECK_INT(safe("/a/..\\"), 0);
    CHECK_INT(safe(".."), 0);
    CHECK_INT(safe("a/../b"), 0);
}

int main(void)
{
    test_scan_incremental();
    test_scan_request_errors();
    test_scan_limits();
    test_scan_response_errors();
    test_parse_origin_form();
    test_parse_absolute_form();
    test_parse_asterisk_form();
    test_parse_rejections();
    test_parse_keep_alive();
    test_parse_connection_drops();
    test_parse_bodies();
    test_parse_responses();
    test_write_request();
    test_write_response();
    test_response_framing();
    test_write_misc();
    test_path_is_safe();
    return check_result();
}
