/*
 * access: access-log line formatting.  Owns no state; writes only to the
 * log buffer it is given.
 */
#include "access.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "http1.h"
#include "strutil.h"

/*
 * A line always ends whole, with every field: each value a client chose
 * has a budget (escaped bytes), and the budgets and the fixed parts fit in
 * ACCESS_MAX_LINE.  A value longer than its budget is cut there, at a
 * character boundary.
 */
#define ACCESS_MAX_LINE 16384
#define TARGET_BUDGET 6144      /* the request target (combined: the request line) */
#define HEADER_BUDGET 2048      /* User-Agent, Referer */
#define HOST_BUDGET 1024
#define NAME_BUDGET 256         /* method, addresses, names from the configuration */

struct line {
    char buf[ACCESS_MAX_LINE];
    size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->len + n >= sizeof(l->buf))
        n = sizeof(l->buf) - 1 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void printf_(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void printf_(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, sizeof(l->buf) - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < sizeof(l->buf) - l->len ? (size_t)n : sizeof(l->buf) - 1 - l->len;
}

static void json_str(struct line *l, const char *key, const char *s, size_t n, size_t budget)
{
    printf_(l, ",\"%s\":\"", key);
    size_t cap = l->len + budget + 1 < sizeof(l->buf) - 2 ? l->len + budget + 1 : sizeof(l->buf) - 2;
    json_escape_append(l->buf, cap, &l->len, s, n);
    put(l, "\"", 1);
}

/* names joined by ", ", as nginx's $upstream_addr lists the servers tried. */
static void json_str_list(struct line *l, const char *key, const char *const *names, unsigned n)
{
    printf_(l, ",\"%s\":\"", key);
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            put(l, ", ", 2);
        size_t cap = l->len + NAME_BUDGET + 1 < sizeof(l->buf) - 2 ? l->len + NAME_BUDGET + 1
                                                                     : sizeof(l->buf) - 2;
        json_escape_append(l->buf, cap, &l->len, names[i], strlen(names[i]));
    }
    put(l, "\"", 1);
}

static struct span header_value(const struct http1_msg *req, enum http1_hdr kind)
{
    if (req != NULL)
        for (unsigned i = 0; i < req->nheaders; i++)
            if (req->headers[i].kind == kind)
                return req->headers[i].value;
    return (struct span){"", 0};
}

static void format_json(struct line *l, const struct access_entry *e, const char *when)
{
    const struct http1_msg *r = e->req;
    printf_(l, "{\"time\":\"%s\"", when);
    json_str(l, "remote", e->remote, strlen(e->remote), NAME_BUDGET);
    json_str(l, "listener", e->listener, strlen(e->listener), NAME_BUDGET);
    if (r != NULL) {
        json_str(l, "method", r->method.p, r->method.len, NAME_BUDGET);
        json_str(l, "uri", r->target.p, r->target.len, TARGET_BUDGET);
        json_str(l, "proto", r->version == 10 ? "HTTP/1.0" : "HTTP/1.1", 8, NAME_BUDGET);
        json_str(l, "host", r->host.p, r->host.len, HOST_BUDGET);
    }
    printf_(l, ",\"status\":%d,\"bytes\":%llu,\"duration\":%.6f", e->status,
            (unsigned long long)e->bytes, (double)e->duration_ns / 1e9);
    if (e->route != NULL)
        json_str(l, "upstream_name", e->route->upstream_name, strlen(e->route->upstream_name),
                 NAME_BUDGET);
    if (e->nupstreams > 0)
        json_str_list(l, "upstream", e->upstreams, e->nupstreams);
    if (e->tls != NULL)
        json_str(l, "tls", e->tls, strlen(e->tls), NAME_BUDGET);
    struct span ua = header_value(r, HTTP1_HDR_USER_AGENT);
    struct span ref = header_value(r, HTTP1_HDR_REFERER);
    if (ua.len)
        json_str(l, "user_agent", ua.p, ua.len, HEADER_BUDGET);
    if (ref.len)
        json_str(l, "referer", ref.p, ref.len, HEADER_BUDGET);
    put(l, "}", 1);
}

/* Quoted fields of the combined format: '"' and '\' are escaped, control
 * bytes hex-escaped, as nginx does. */
static void combined_quoted(struct line *l, struct span s, size_t budget)
{
    put(l, "\"", 1);
    size_t end = l->len + budget < sizeof(l->buf) - 1 ? l->len + budget : sizeof(l->buf) - 1;
    for (size_t i = 0; i < s.len && l->len + 4 <= end; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            printf_(l, "\\x%02X", ch);
        else
            l->buf[l->len++] = (char)ch;
    }
    put(l, "\"", 1);
}

/* nginx's $remote_user: the user name of Basic credentials, as the client
 * sent it (moat checks no password); "-" for none. */
static void remote_user(struct line *l, const struct http1_msg *r)
{
    for (unsigned i = 0; r != NULL && i < r->nheaders; i++) {
        const struct http1_header *h = &r->headers[i];
        if (h->kind != HTTP1_HDR_OTHER || !span_caseeq(h->name, "authorization"))
            continue;
        struct span v = span_trim(h->value);
        if (v.len < 6 || !span_caseeq((struct span){v.p, 6}, "basic "))
            break;
        unsigned char cred[192];
        long n = base64_decode(span_trim((struct span){v.p + 6, v.len - 6}), cred, sizeof(cred));
        const unsigned char *colon = n > 0 ? memchr(cred, ':', (size_t)n) : NULL;
        if (colon == NULL || colon == cred)
            break;
        /* Escaped as the quoted fields are, and spaces too: the field is
         * not quoted, and a log parser splits it on spaces. */
        for (const unsigned char *c = cred; c < colon; c++) {
            if (*c == '"' || *c == '\\' || *c <= 0x20 || *c >= 0x7f)
                printf_(l, "\\x%02X", *c);
            else if (l->len + 1 < sizeof(l->buf))
                l->buf[l->len++] = (char)*c;
        }
        return;
    }
    printf_(l, "-");
}

static void format_combined(struct line *l, const struct access_entry *e, const struct tm *tm)
{
    const struct http1_msg *r = e->req;
    char when[64];
    strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S +0000", tm);
    printf_(l, "%s - ", e->remote);
    remote_user(l, r);
    printf_(l, " [%s] ", when);
    if (r != NULL) {
        char line[TARGET_BUDGET];
        int n = snprintf(line, sizeof(line), "%.*s %.*s %s", (int)r->method.len, r->method.p,
                         (int)r->target.len, r->target.p,
                         r->version == 10 ? "HTTP/1.0" : "HTTP/1.1");
        size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        combined_quoted(l, (struct span){line, len}, TARGET_BUDGET);
    } else {
        puts_(l, "\"-\"");
    }
    printf_(l, " %d %llu ", e->status, (unsigned long long)e->bytes);
    struct span ref = header_value(r, HTTP1_HDR_REFERER);
    struct span ua = header_value(r, HTTP1_HDR_USER_AGENT);
    combined_quoted(l, ref.len ? ref : SPAN_LIT("-"), HEADER_BUDGET);
    put(l, " ", 1);
    combined_quoted(l, ua.len ? ua : SPAN_LIT("-"), HEADER_BUDGET);
}

void access_log_write(struct log_buf *buf, const struct cfg *cfg, const struct access_entry *e)
{
    static _Thread_local struct line l;
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    l.len = 0;
    if (cfg->log.access_format == LOG_FORMAT_COMBINED) {
        format_combined(&l, e, &tm);
    } else {
        char when[40];
        size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof(when) - n, ".%03dZ", (int)(tv.tv_usec / 1000));
        format_json(&l, e, when);
    }
    log_buf_append_line(buf, l.buf, l.len);
}
