/*
 * http1: strict HTTP/1.1 head checks, llhttp glue, header semantics and head
 * serialisation.  Never touches sockets or TLS: bytes in, spans and sink
 * writes out.
 */
#include "http1.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- pre-parse ---- */

/* RFC 9110 tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~ */
static const unsigned char tchar_table[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static int is_tchar(unsigned char c)
{
    return tchar_table[c];
}

/* field-vchar / SP / HTAB, obs-text included: everything but CTLs. */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static size_t scan_token(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    return i;
}

/* "HTTP/d.d": returns 10/11 for 1.0/1.1, 0 for another version, -1 if malformed. */
static int scan_version(const char *p, size_t n)
{
    if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' ||
        p[7] < '0' || p[7] > '9')
        return -1;
    if (p[5] == '1' && (p[7] == '0' || p[7] == '1'))
        return 10 + (p[7] - '0');
    return 0;
}

static int check_request_line(const char *p, size_t n)
{
    size_t m = scan_token(p, n);
    if (m == 0 || m >= n || p[m] != ' ')
        return -400;
    size_t t = m + 1, te = t;
    while (te < n && (unsigned char)p[te] > 0x20 && (unsigned char)p[te] < 0x7f)
        te++;
    if (te == t || te >= n || p[te] != ' ')
        return -400;
    int v = scan_version(p + te + 1, n - te - 1);
    if (v < 0)
        return -400;
    if (v == 0)
        return -505;
    /* PRI is only ever the start of the HTTP/2 preface, which llhttp waits
     * to complete rather than report as a head: refuse it in HTTP/1.x. */
    if (m == 3 && memcmp(p, "PRI", 3) == 0)
        return -400;
    return 0;
}

static int check_status_line(const char *p, size_t n)
{
    if (n < 12 || scan_version(p, 8) <= 0 || p[8] != ' ')
        return -502;
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return -502;
    if (n == 12)
        return 0;
    if (p[12] != ' ')
        return -502;
    for (size_t i = 13; i < n; i++)
        if (!is_value_char((unsigned char)p[i]))
            return -502;
    return 0;
}

static int check_header_line(const char *p, size_t n, int bad)
{
    size_t m = scan_token(p, n);
    /* A leading space is obs-fold; an empty name or space before the colon
     * is how smuggling starts. */
    if (m == 0 || m >= n || p[m] != ':')
        return bad;
    for (size_t i = m + 1; i < n; i++)
        if (!is_value_char((unsigned char)p[i]))
            return bad;
    return 0;
}

/* The size limit a head ending (or still open) at byte end would break.
 * A head over max_header_bytes is 431 whatever part of it is long (the
 * product's contract); the request line alone also has max_uri_bytes. */
static long scan_limit(const struct http1_scan *sc, size_t end, int is_request,
                       const struct http1_limits *lim)
{
    if (end > lim->max_head)
        return is_request ? -431 : -502;
    if (sc->lines == 0 && is_request && end > lim->max_uri)
        return -414;
    return 0;
}

/* A byte that cannot be part of a method is refused at once, not when a
 * line ends: a TLS record sent to a plain-HTTP port has no line end. */
static long scan_method(struct http1_scan *sc, const char *buf, size_t from, size_t to)
{
    for (size_t i = from; i < to && !sc->method_done; i++) {
        if (buf[i] == ' ' && i > 0)
            sc->method_done = 1;
        else if (!is_tchar((unsigned char)buf[i]))
            return -400;
    }
    return 0;
}

long http1_scan_head(struct http1_scan *sc, const char *buf, size_t len, int is_request,
                     const struct http1_limits *lim)
{
    int bad = is_request ? -400 : -502;
    int too_big = is_request ? -431 : -502;
    while (sc->pos < len) {
        const char *lf = memchr(buf + sc->pos, '\n', len - sc->pos);
        size_t end = lf ? (size_t)(lf - buf) + 1 : len; /* bytes of the head so far */
        long rc = scan_limit(sc, end, is_request, lim);
        if (rc == 0 && is_request)
            rc = scan_method(sc, buf, sc->pos, end - (lf != NULL));
        if (rc != 0)
            return rc;
        if (lf == NULL) {
            sc->pos = len;
            return 0;
        }
        size_t i = end - 1; /* the LF */
        if (i == sc->line_start || buf[i - 1] != '\r')
            return bad; /* bare LF */
        const char *line = buf + sc->line_start;
        size_t n = i - 1 - sc->line_start;
        if (n == 0) {
            if (sc->lines == 0)
                return bad;
            sc->pos = end;
            return (long)end;
        }
        if (sc->lines == 0)
            rc = is_request ? check_request_line(line, n) : check_status_line(line, n);
        else
            rc = check_header_line(line, n, bad);
        if (rc != 0)
            return rc;
        if (sc->lines > lim->max_headers)
            return too_big;
        sc->lines++;
        sc->line_start = end;
        sc->pos = end;
    }
    return 0;
}

/* ---- header meaning ---- */

static enum http1_hdr classify_exact(struct span name)
{
#define KNOWN(s, k) {s, sizeof(s) - 1, k}
    static const struct {
        const char *name;
        size_t len;
        enum http1_hdr kind;
    } known[] = {
        KNOWN("host", HTTP1_HDR_HOST),
        KNOWN("content-length", HTTP1_HDR_CONTENT_LENGTH),
        KNOWN("transfer-encoding", HTTP1_HDR_TRANSFER_ENCODING),
        KNOWN("connection", HTTP1_HDR_CONNECTION),
        KNOWN("keep-alive", HTTP1_HDR_KEEP_ALIVE),
        KNOWN("proxy-connection", HTTP1_HDR_PROXY_CONNECTION),
        KNOWN("te", HTTP1_HDR_TE),
        KNOWN("trailer", HTTP1_HDR_TRAILER),
        KNOWN("upgrade", HTTP1_HDR_UPGRADE),
        KNOWN("expect", HTTP1_HDR_EXPECT),
        KNOWN("http2-settings", HTTP1_HDR_HTTP2_SETTINGS),
        KNOWN("proxy-authorization", HTTP1_HDR_PROXY_AUTHORIZATION),
        KNOWN("proxy", HTTP1_HDR_PROXY),
        KNOWN("x-forwarded-for", HTTP1_HDR_X_FORWARDED_FOR),
        KNOWN("x-forwarded-proto", HTTP1_HDR_X_FORWARDED_PROTO),
        KNOWN("x-forwarded-host", HTTP1_HDR_X_FORWARDED_HOST),
        KNOWN("x-forwarded-port", HTTP1_HDR_X_FORWARDED_PORT),
        KNOWN("forwarded", HTTP1_HDR_FORWARDED),
        /* Apps read these before X-Forwarded-For (chi's RealIP, gin): from
         * anyone, they would let a client choose its address. */
        KNOWN("x-real-ip", HTTP1_HDR_CLIENT_IP),
        KNOWN("true-client-ip", HTTP1_HDR_CLIENT_IP),
        KNOWN("x-client-ip", HTTP1_HDR_CLIENT_IP),
        KNOWN("client-ip", HTTP1_HDR_CLIENT_IP),
        KNOWN("x-cluster-client-ip", HTTP1_HDR_CLIENT_IP),
        KNOWN("cf-connecting-ip", HTTP1_HDR_CLIENT_IP),
        KNOWN("fastly-client-ip", HTTP1_HDR_CLIENT_IP),
        KNOWN("x-forwarded", HTTP1_HDR_CLIENT_IP),
        KNOWN("x-original-forwarded-for", HTTP1_HDR_CLIENT_IP),
        KNOWN("strict-transport-security", HTTP1_HDR_STRICT_TRANSPORT_SECURITY),
        KNOWN("user-agent", HTTP1_HDR_USER_AGENT),
        KNOWN("referer", HTTP1_HDR_REFERER),
    };
#undef KNOWN
    /* Lengths differ for most names: compare them before the bytes. */
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (name.len == known[i].len && strncasecmp(name.p, known[i].name, name.len) == 0)
            return known[i].kind;
    static const char xf[] = "x-forwarded-";
    if (name.len > sizeof(xf) - 1 && strncasecmp(name.p, xf, sizeof(xf) - 1) == 0)
        return HTTP1_HDR_X_FORWARDED_OTHER;
    return HTTP1_HDR_OTHER;
}

int http1_hdr_describes_client(enum http1_hdr k)
{
    return k == HTTP1_HDR_X_FORWARDED_FOR || k == HTTP1_HDR_X_FORWARDED_PROTO ||
           k == HTTP1_HDR_X_FORWARDED_HOST || k == HTTP1_HDR_X_FORWARDED_PORT ||
           k == HTTP1_HDR_FORWARDED || k == HTTP1_HDR_X_FORWARDED_OTHER ||
           k == HTTP1_HDR_CLIENT_IP;
}

enum http1_hdr http1_classify(struct span name)
{
    enum http1_hdr k = classify_exact(name);
    char dashed[64];
    if (k != HTTP1_HDR_OTHER || name.len > sizeof(dashed) || memchr(name.p, '_', name.len) == NULL)
        return k;
    /* CGI, WSGI, PHP and Rack read X_Real_IP as X-Real-IP (both become
     * HTTP_X_REAL_IP): a twin of a header moat removes or sets must not
     * carry a client's value past it, not even through a trusted proxy,
     * since no proxy sets such names. */
    for (size_t i = 0; i < name.len; i++)
        dashed[i] = name.p[i] == '_' ? '-' : name.p[i];
    k = classify_exact((struct span){dashed, name.len});
    return k == HTTP1_HDR_OTHER || k == HTTP1_HDR_USER_AGENT || k == HTTP1_HDR_REFERER
               ? HTTP1_HDR_OTHER
               : HTTP1_HDR_UNDERSCORE_TWIN;
}

/* Headers that describe one hop and never travel further, and the two that
 * only ever mislead the next one (Proxy, underscore twins). */
static int is_hop_by_hop(enum http1_hdr k)
{
    switch (k) {
    case HTTP1_HDR_CONNECTION:
    case HTTP1_HDR_KEEP_ALIVE:
    case HTTP1_HDR_PROXY_CONNECTION:
    case HTTP1_HDR_TE:
    case HTTP1_HDR_TRAILER:
    case HTTP1_HDR_TRANSFER_ENCODING:
    case HTTP1_HDR_UPGRADE:
    case HTTP1_HDR_HTTP2_SETTINGS:
    case HTTP1_HDR_PROXY_AUTHORIZATION:
    case HTTP1_HDR_PROXY:
    case HTTP1_HDR_UNDERSCORE_TWIN:
        return 1;
    default:
        return 0;
    }
}

static int parse_connection_tokens(struct http1_msg *m, unsigned *close, unsigned *keep,
                                   unsigned *upgrade)
{
    for (unsigned i = 0; i < m->nheaders; i++) {
        if (m->headers[i].kind != HTTP1_HDR_CONNECTION)
            continue;
        struct span list = m->headers[i].value, tok;
        while (span_next_list_item(&list, &tok)) {
            if (scan_token(tok.p, tok.len) != tok.len)
                return -1;
            if (span_caseeq(tok, "close"))
                *close = 1;
            else if (span_caseeq(tok, "keep-alive"))
                *keep = 1;
            else if (span_caseeq(tok, "upgrade"))
                *upgrade = 1;
            else if (m->nconnection_tokens < sizeof(m->connection_tokens) / sizeof(m->connection_tokens[0]))
                m->connection_tokens[m->nconnection_tokens++] = tok;
            else
                return -1;
        }
    }
    /* Headers the client named as hop-by-hop are dropped too, except those
     * moat regenerates itself, which an attacker could otherwise strip. */
    for (unsigned i = 0; i < m->nheaders; i++) {
        struct http1_header *h = &m->headers[i];
        if (is_hop_by_hop(h->kind))
            h->dropped = 1;
        for (unsigned t = 0; t < m->nconnection_tokens && !h->dropped; t++)
            if (h->kind == HTTP1_HDR_OTHER && span_caseeq_span(h->name, m->connection_tokens[t]))
                h->dropped = 1;
    }
    return 0;
}

struct framing_count {
    unsigned host, cl, te, upgrade, expect;
    struct span te_value, upgrade_value, expect_value, host_value;
};

static void count_framing(const struct http1_msg *m, struct framing_count *fc)
{
    memset(fc, 0, sizeof(*fc));
    for (unsigned i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        switch (h->kind) {
        case HTTP1_HDR_HOST: fc->host++; fc->host_value = h->value; break;
        case HTTP1_HDR_CONTENT_LENGTH: fc->cl++; break;
        case HTTP1_HDR_TRANSFER_ENCODING: fc->te++; fc->te_value = h->value; break;
        case HTTP1_HDR_UPGRADE: fc->upgrade++; fc->upgrade_value = h->value; break;
        case HTTP1_HDR_EXPECT: fc->expect++; fc->expect_value = h->value; break;
        default: break;
        }
    }
}

static int fail(struct http1_msg *m, int status, const char *why)
{
    m->error_status = status;
    m->error_reason = why;
    return status;
}

/* Splits the request target into what is routed and what is sent on. */
static int analyze_target(struct http1_msg *m)
{
    struct span t = m->target;
    if (memchr(t.p, '#', t.len) != NULL)
        return fail(m, 400, "fragment in request target");
    if (t.len > 0 && t.p[0] == '/') {
        m->uri = t;
    } else if (span_eq(t, "*")) {
        if (llhttp_get_method(&m->parser) != HTTP_OPTIONS)
            return fail(m, 400, "asterisk-form target outside OPTIONS");
        m->uri = t;
        m->path = SPAN_LIT("/");
        return 0;
    } else {
        size_t skip;
        if (t.len > 7 && strncasecmp(t.p, "http://", 7) == 0)
            skip = 7;
        else if (t.len > 8 && strncasecmp(t.p, "https://", 8) == 0)
            skip = 8;
        else
            return fail(m, 400, "request target is not origin-form or absolute-form");
        size_t e = skip;
        while (e < t.len && t.p[e] != '/' && t.p[e] != '?')
            e++;
        struct span authority = {t.p + skip, e - skip};
        if (authority.len == 0 || memchr(authority.p, '@', authority.len) != NULL)
            return fail(m, 400, "bad authority in absolute-form target");
        if (e < t.len && t.p[e] == '?')
            return fail(m, 400, "absolute-form target without a path");
        m->host = authority;
        m->uri = e < t.len ? (struct span){t.p + e, t.len - e} : SPAN_LIT("/");
        m->flags |= HTTP1_F_ABSOLUTE_FORM;
    }
    const char *q = memchr(m->uri.p, '?', m->uri.len);
    m->path = (struct span){m->uri.p, q ? (size_t)(q - m->uri.p) : m->uri.len};
    if (!http1_path_is_safe(m->path))
        return fail(m, 400, "dot segment in path");
    if (!uri_path_escapes_are_sound(m->path))
        return fail(m, 400, "broken percent-escape or %00 in path");
    return 0;
}

static int analyze_request(struct http1_msg *m)
{
    struct framing_count fc;
    unsigned conn_close = 0, conn_keep = 0, conn_upgrade = 0;
    int method = llhttp_get_method(&m->parser);

    m->version = llhttp_get_http_major(&m->parser) * 10 + llhttp_get_http_minor(&m->parser);
    if (m->version != 10 && m->version != 11)
        return fail(m, 505, "HTTP version not supported");
    if (method == HTTP_CONNECT)
        return fail(m, 405, "CONNECT is not supported");
    if (method == HTTP_HEAD)
        m->flags |= HTTP1_F_HEAD;
    if (method == HTTP_GET || method == HTTP_HEAD || method == HTTP_PUT ||
        method == HTTP_DELETE || method == HTTP_OPTIONS || method == HTTP_TRACE)
        m->flags |= HTTP1_F_IDEMPOTENT;

    count_framing(m, &fc);
    if (parse_connection_tokens(m, &conn_close, &conn_keep, &conn_upgrade) != 0)
        return fail(m, 400, "bad Connection header");
    if (fc.host > 1)
        return fail(m, 400, "more than one Host header");
    if (fc.host == 0 && m->version == 11)
        return fail(m, 400, "missing Host header");
    if (fc.host == 1) {
        if (fc.host_value.len == 0)
            return fail(m, 400, "empty Host header");
        m->host = fc.host_value;
    }
    if (fc.cl > 1)
        return fail(m, 400, "more than one Content-Length");
    if (fc.te > 0) {
        if (fc.te > 1 || !span_caseeq(fc.te_value, "chunked"))
            return fail(m, 400, "Transfer-Encoding other than chunked");
        if (m->version == 10)
            return fail(m, 400, "Transfer-Encoding in HTTP/1.0");
        if (fc.cl > 0)
            return fail(m, 400, "both Content-Length and Transfer-Encoding");
        m->flags |= HTTP1_F_CHUNKED;
    } else if (fc.cl == 1) {
        m->flags |= HTTP1_F_CONTENT_LENGTH;
        m->content_length = m->parser.content_length;
        /* Beyond a signed 64-bit length other parsers disagree on it. */
        if (m->content_length > INT64_MAX)
            return fail(m, 400, "Content-Length out of range");
    }
    if (conn_upgrade && fc.upgrade == 1 && m->version == 11 && method == HTTP_GET) {
        struct span list = fc.upgrade_value, first;
        if (span_next_list_item(&list, &first) && span_caseeq(first, "websocket"))
            m->flags |= HTTP1_F_UPGRADE;
    }
    if (m->version == 11 ? !conn_close : (conn_keep && !conn_close))
        m->flags |= HTTP1_F_KEEP_ALIVE;
    /* The target first: a request refused for its body or expectation is
     * still whole enough to be counted under its route. */
    int rc = analyze_target(m);
    if (rc != 0)
        return rc;
    if (m->lim->max_body != 0 && (m->flags & HTTP1_F_CONTENT_LENGTH) &&
        m->content_length > m->lim->max_body)
        return fail(m, 413, "body larger than max_body_bytes");
    if (fc.expect > 0 && m->version == 11) {
        if (fc.expect > 1 || !span_caseeq(fc.expect_value, "100-continue"))
            return fail(m, 417, "unsupported expectation");
        m->flags |= HTTP1_F_EXPECT_CONTINUE;
    }
    return 0;
}

static int analyze_response(struct http1_msg *m)
{
    struct framing_count fc;
    unsigned conn_close = 0, conn_keep = 0, conn_upgrade = 0;

    m->version = llhttp_get_http_major(&m->parser) * 10 + llhttp_get_http_minor(&m->parser);
    if (m->version != 10 && m->version != 11)
        return fail(m, 502, "upstream HTTP version");
    m->status = llhttp_get_status_code(&m->parser);
    if (m->status < 100 || m->status > 599)
        return fail(m, 502, "upstream status code");
    count_framing(m, &fc);
    if (parse_connection_tokens(m, &conn_close, &conn_keep, &conn_upgrade) != 0)
        return fail(m, 502, "upstream Connection header");
    if (fc.cl > 1)
        return fail(m, 502, "upstream sent more than one Content-Length");
    if (fc.te > 0) {
        if (fc.te > 1 || !span_caseeq(fc.te_value, "chunked"))
            return fail(m, 502, "upstream Transfer-Encoding other than chunked");
        m->flags |= HTTP1_F_CHUNKED;
    } else if (fc.cl == 1) {
        m->flags |= HTTP1_F_CONTENT_LENGTH;
        m->content_length = m->parser.content_length;
        if (m->content_length > INT64_MAX)
            return fail(m, 502, "upstream Content-Length out of range");
    }
    if (m->status == 101)
        m->flags |= HTTP1_F_UPGRADE;
    if ((m->status >= 100 && m->status < 200) || m->status == 204 || m->status == 304 ||
        m->request_was_head)
        m->flags |= HTTP1_F_NO_BODY;
    if (m->version == 11 ? !conn_close : (conn_keep && !conn_close))
        m->flags |= HTTP1_F_KEEP_ALIVE;
    return 0;
}

/* ---- llhttp callbacks ---- */

static struct http1_msg *msg_of(llhttp_t *p)
{
    return p->data;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    msg_of(p)->method = (struct span){at, n};
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    msg_of(p)->target = (struct span){at, n};
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    msg_of(p)->reason = (struct span){at, n};
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = msg_of(p);
    if (m->nheaders >= m->max_headers) {
        fail(m, m->is_request ? 431 : 502, "too many headers");
        return -1;
    }
    struct http1_header *h = &m->headers[m->nheaders++];
    h->name = (struct span){at, n};
    h->value = (struct span){at + n, 0};
    h->kind = http1_classify(h->name);
    h->dropped = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct http1_msg *m = msg_of(p);
    assert(m->nheaders > 0);
    m->headers[m->nheaders - 1].value = span_trim((struct span){at, n});
    return 0;
}

static void set_body_mode(struct http1_msg *m)
{
    struct http1_body *b = &m->body;
    memset(b, 0, sizeof(*b));
    if ((m->flags & (HTTP1_F_NO_BODY | HTTP1_F_UPGRADE)) && !m->is_request)
        b->mode = HTTP1_BODY_NONE;
    else if (m->flags & HTTP1_F_CHUNKED)
        b->mode = HTTP1_BODY_CHUNKED;
    else if (m->flags & HTTP1_F_CONTENT_LENGTH)
        b->mode = m->content_length ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
    else
        b->mode = m->is_request ? HTTP1_BODY_NONE : HTTP1_BODY_CLOSE;
    b->remaining = b->mode == HTTP1_BODY_LENGTH ? m->content_length : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http1_msg *m = msg_of(p);
    int rc = m->is_request ? analyze_request(m) : analyze_response(m);
    m->in_body = 1;
    if (rc == 0) {
        set_body_mode(m);
        rc = m->handler->on_head(m->ctx, m);
    }
    if (rc != 0) {
        if (m->error_status == 0) /* the handler may have said why */
            fail(m, rc, m->error_reason != NULL ? m->error_reason : "refused");
        return -1;
    }
    /* llhttp parses heads only: moat decodes the body itself. */
    return 1;
}

static int on_message_complete(llhttp_t *p)
{
    struct http1_msg *m = msg_of(p);
    if (m->body.mode == HTTP1_BODY_NONE) {
        int rc = m->handler->on_end(m->ctx, m);
        if (rc != 0) {
            if (m->error_status == 0)
                fail(m, rc, "end refused");
            return -1;
        }
    }
    /* One message at a time: the caller decides when the next one starts. */
    return HPE_PAUSED;
}

/* ---- the body decoder ---- */

enum chunk_state {
    CHUNK_SIZE = 0,         /* hex digits */
    CHUNK_EXT,              /* after ";" or whitespace, up to CR */
    CHUNK_SIZE_LF,
    CHUNK_DATA,
    CHUNK_DATA_CR,
    CHUNK_DATA_LF,
    CHUNK_TRAILER_START,    /* start of a trailer line, or the final CRLF */
    CHUNK_TRAILER_NAME,
    CHUNK_TRAILER_VALUE,
    CHUNK_TRAILER_LF,
    CHUNK_END_LF,
    CHUNK_DONE,
};

static int deliver(struct http1_msg *m, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    m->body_bytes += n;
    if (m->is_request && m->lim->max_body != 0 && m->body_bytes > m->lim->max_body)
        return fail(m, 413, "body larger than max_body_bytes");
    int rc = m->handler->on_body(m->ctx, p, n);
    if (rc != 0 && m->error_status == 0)
        fail(m, rc, "body refused");
    return rc;
}

/* One byte of chunk framing (everything but chunk data).  Returns 0 or an
 * error status. */
static int chunk_framing_byte(struct http1_msg *m, unsigned char c)
{
    struct http1_body *b = &m->body;
    int bad = m->is_request ? 400 : 502;
    switch ((enum chunk_state)b->state) {
    case CHUNK_SIZE: {
        int v = hex_digit_value((char)c);
        if (++b->line > HTTP1_MAX_CHUNK_LINE)
            return fail(m, bad, "chunk-size line too long");
        if (v >= 0) {
            if (b->remaining > (UINT64_MAX >> 4))
                return fail(m, bad, "chunk size overflows"); /* malformed, as nginx says */
            b->remaining = (b->remaining << 4) | (uint64_t)v;
            b->digits++;
            return 0;
        }
        if (b->digits == 0)
            return fail(m, bad, "chunk size without digits");
        if (c == ';' || c == ' ' || c == '\t') {
            b->state = CHUNK_EXT;
            return 0;
        }
        if (c == '\r') {
            b->state = CHUNK_SIZE_LF;
            return 0;
        }
        return fail(m, bad, "bad chunk size");
    }
    case CHUNK_EXT:
        /* Extensions are dropped, not forwarded: any visible text is fine,
         * within the line bound; control bytes (bare LF included) are not. */
        if (++b->line > HTTP1_MAX_CHUNK_LINE)
            return fail(m, bad, "chunk extensions too long");
        if (c == '\r')
            b->state = CHUNK_SIZE_LF;
        else if (!is_value_char(c))
            return fail(m, bad, "bad chunk extension");
        return 0;
    case CHUNK_SIZE_LF:
        if (c != '\n')
            return fail(m, bad, "chunk size line without CRLF");
        b->line = 0;
        b->digits = 0;
        if (b->remaining == 0) {
            b->state = CHUNK_TRAILER_START;
            return 0;
        }
        /* Refuse at once a chunk that announces more than the budget. */
        if (m->is_request && m->lim->max_body != 0 &&
            b->remaining > m->lim->max_body - (m->body_bytes < m->lim->max_body ? m->body_bytes : m->lim->max_body))
            return fail(m, 413, "chunk larger than max_body_bytes");
        b->state = CHUNK_DATA;
        return 0;
    case CHUNK_DATA_CR:
        if (c != '\r')
            return fail(m, bad, "chunk data without CRLF");
        b->state = CHUNK_DATA_LF;
        return 0;
    case CHUNK_DATA_LF:
        if (c != '\n')
            return fail(m, bad, "chunk data without CRLF");
        b->state = CHUNK_SIZE;
        b->remaining = 0;
        return 0;
    case CHUNK_TRAILER_START:
    case CHUNK_TRAILER_NAME:
    case CHUNK_TRAILER_VALUE:
    case CHUNK_TRAILER_LF:
    case CHUNK_END_LF:
        if (++m->trailer_bytes > m->lim->max_head)
            return fail(m, m->is_request ? 431 : 502, "trailers too large");
        switch ((enum chunk_state)b->state) {
        case CHUNK_TRAILER_START:
            if (c == '\r')
                b->state = CHUNK_END_LF;
            else if (is_tchar(c))
                b->state = CHUNK_TRAILER_NAME;
            else
                return fail(m, bad, "bad trailer line"); /* obs-fold, bare LF */
            return 0;
        case CHUNK_TRAILER_NAME:
            if (c == ':')
                b->state = CHUNK_TRAILER_VALUE;
            else if (!is_tchar(c))
                return fail(m, bad, "bad trailer name");
            return 0;
        case CHUNK_TRAILER_VALUE:
            if (c == '\r')
                b->state = CHUNK_TRAILER_LF;
            else if (!is_value_char(c))
                return fail(m, bad, "bad trailer value");
            return 0;
        case CHUNK_TRAILER_LF:
            if (c != '\n')
                return fail(m, bad, "trailer without CRLF");
            b->state = CHUNK_TRAILER_START;
            return 0;
        default:
            if (c != '\n')
                return fail(m, bad, "chunked body without its final CRLF");
            b->state = CHUNK_DONE;
            return 0;
        }
    case CHUNK_DATA:
    case CHUNK_DONE:
        break;
    }
    return fail(m, bad, "chunked decoder state");
}

/* Decodes body bytes p[0..n); *used: bytes that belonged to this message.
 * Returns 1 when the body is complete, 0 when it goes on, -1 on error. */
static int decode_body(struct http1_msg *m, const char *p, size_t n, size_t *used)
{
    struct http1_body *b = &m->body;
    size_t i = 0;
    switch (b->mode) {
    case HTTP1_BODY_NONE:
        *used = 0;
        return 1;
    case HTTP1_BODY_CLOSE:
        *used = n;
        return deliver(m, p, n) ? -1 : 0;
    case HTTP1_BODY_LENGTH: {
        size_t take = n < b->remaining ? n : (size_t)b->remaining;
        *used = take;
        if (deliver(m, p, take) != 0)
            return -1;
        b->remaining -= take;
        return b->remaining == 0;
    }
    case HTTP1_BODY_CHUNKED:
        break;
    }
    while (i < n && b->state != CHUNK_DONE) {
        if (b->state == CHUNK_DATA) {
            size_t take = n - i < b->remaining ? n - i : (size_t)b->remaining;
            if (deliver(m, p + i, take) != 0)
                return -1;
            i += take;
            b->remaining -= take;
            if (b->remaining == 0)
                b->state = CHUNK_DATA_CR;
            continue;
        }
        if (chunk_framing_byte(m, (unsigned char)p[i++]) != 0)
            return -1;
    }
    *used = i;
    return b->state == CHUNK_DONE;
}

static const llhttp_settings_t request_settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static const llhttp_settings_t response_settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

void http1_msg_init(struct http1_msg *m, int is_request, struct http1_header *headers,
                    unsigned max_headers, const struct http1_limits *lim,
                    const struct http1_handler *handler, void *ctx)
{
    m->is_request = is_request;
    m->headers = headers;
    m->max_headers = max_headers;
    m->lim = lim;
    m->handler = handler;
    m->ctx = ctx;
    http1_msg_reset(m);
}

void http1_msg_reset(struct http1_msg *m)
{
    struct http1_header *headers = m->headers;
    unsigned max_headers = m->max_headers;
    const struct http1_limits *lim = m->lim;
    const struct http1_handler *handler = m->handler;
    void *ctx = m->ctx;
    int is_request = m->is_request;
    int was_head = m->request_was_head;

    memset(m, 0, sizeof(*m));
    m->headers = headers;
    m->max_headers = max_headers;
    m->lim = lim;
    m->handler = handler;
    m->ctx = ctx;
    m->is_request = is_request;
    m->request_was_head = was_head;
    /* llhttp keeps a pointer to the settings; they are never written. */
    llhttp_init(&m->parser, is_request ? HTTP_REQUEST : HTTP_RESPONSE,
                (llhttp_settings_t *)(is_request ? &request_settings : &response_settings));
    m->parser.data = m;
}

static enum http1_result body_result(struct http1_msg *m, int rc)
{
    if (rc < 0)
        return HTTP1_ERROR;
    if (rc == 0)
        return HTTP1_MORE;
    m->body.mode = HTTP1_BODY_NONE;
    int end = m->handler->on_end(m->ctx, m);
    if (end != 0) {
        if (m->error_status == 0)
            fail(m, end, "end refused");
        return HTTP1_ERROR;
    }
    return HTTP1_DONE;
}

enum http1_result http1_parse(struct http1_msg *m, const char *p, size_t n, size_t *used)
{
    size_t head = 0;
    *used = 0;
    if (!m->in_body) {
        llhttp_errno_t err = llhttp_execute(&m->parser, p, n);
        if (err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
            if (err == HPE_OK) {
                *used = n;
                return HTTP1_MORE;
            }
            if (m->error_status == 0)
                fail(m, m->is_request ? 400 : 502, llhttp_get_error_reason(&m->parser));
            return HTTP1_ERROR;
        }
        head = (size_t)(llhttp_get_error_pos(&m->parser) - p);
        *used = head;
        if (m->body.mode == HTTP1_BODY_NONE)
            return HTTP1_DONE; /* on_end ran in on_message_complete */
    }
    size_t body = 0;
    enum http1_result r = body_result(m, decode_body(m, p + head, n - head, &body));
    *used = head + body;
    return r;
}

enum http1_result http1_finish(struct http1_msg *m)
{
    if (m->in_body && m->body.mode == HTTP1_BODY_CLOSE)
        return body_result(m, 1);
    if (m->error_status == 0)
        fail(m, m->is_request ? 400 : 502, "connection closed mid-message");
    return HTTP1_ERROR;
}

/* What one character of a path means for dot-segment detection, with its
 * percent-encoded forms decoded: *adv is how many extra bytes it used. */
enum path_char {
    PATH_CHAR_OTHER = 0,
    PATH_CHAR_DOT,
    PATH_CHAR_SEPARATOR,
};

static enum path_char classify_path_char(struct span path, size_t i, size_t *adv)
{
    char c = path.p[i];
    *adv = 0;
    if (c == '/' || c == '\\')
        return PATH_CHAR_SEPARATOR;
    if (c == '.')
        return PATH_CHAR_DOT;
    if (c != '%' || i + 2 >= path.len)
        return PATH_CHAR_OTHER;
    char a = path.p[i + 1], b = (char)(path.p[i + 2] | 0x20);
    *adv = 2;
    if (a == '2' && b == 'e')
        return PATH_CHAR_DOT;
    if ((a == '2' && b == 'f') || (a == '5' && b == 'c'))
        return PATH_CHAR_SEPARATOR;
    *adv = 0;
    return PATH_CHAR_OTHER;
}

int http1_path_is_safe(struct span path)
{
    unsigned dots = 0, other = 0;
    for (size_t i = 0; i <= path.len; i++) {
        size_t adv = 0;
        enum path_char k = i == path.len ? PATH_CHAR_SEPARATOR
                                         : classify_path_char(path, i, &adv);
        if (k == PATH_CHAR_SEPARATOR) {
            /* Backends resolve "." and ".." segments; a prefix route must
             * not be escaped that way. */
            if (other == 0 && (dots == 1 || dots == 2))
                return 0;
            dots = other = 0;
        } else if (k == PATH_CHAR_DOT) {
            dots++;
        } else {
            other++;
        }
        i += adv;
    }
    return 1;
}
