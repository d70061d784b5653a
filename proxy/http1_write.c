/*
 * http1_write: serialisation of HTTP/1.1 heads and chunk framing, the other
 * half of http1 (declared in http1.h).  Writes through struct http1_out
 * into a sink; reads parsed messages, never raw input.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http1.h"

void http1_out_put(struct http1_out *o, const char *p, size_t n)
{
    if (o->err)
        return;
    if (o->len + n > o->cap) {
        if (http1_out_flush(o) != 0)
            return;
        if (n > o->cap) {
            o->err = sink_write(o->sink, p, n);
            o->flushed += n;
            return;
        }
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

void http1_out_str(struct http1_out *o, const char *s)
{
    http1_out_put(o, s, strlen(s));
}

void http1_out_uint(struct http1_out *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    http1_out_put(o, tmp + i, sizeof(tmp) - i);
}

int http1_out_flush(struct http1_out *o)
{
    /* Without a sink the buffer is all there is: overflowing it is an
     * error the caller answers (431), never a write to nowhere. */
    if (o->err == 0 && o->len > 0) {
        o->err = o->sink != NULL ? sink_write(o->sink, o->buf, o->len) : -ENOBUFS;
        o->flushed += o->len;
    }
    o->len = 0;
    return o->err;
}

static void put_span(struct http1_out *o, struct span s)
{
    http1_out_put(o, s.p, s.len);
}

static void put_header(struct http1_out *o, const char *name, struct span value)
{
    http1_out_str(o, name);
    http1_out_put(o, ": ", 2);
    put_span(o, value);
    http1_out_put(o, "\r\n", 2);
}

static int has_header(const struct http1_msg *m, enum http1_hdr kind)
{
    for (unsigned i = 0; i < m->nheaders; i++)
        if (m->headers[i].kind == kind && !m->headers[i].dropped)
            return 1;
    return 0;
}

static void write_forwarded_for(struct http1_out *o, const struct http1_msg *req,
                                const struct http1_fwd *fwd)
{
    http1_out_str(o, "X-Forwarded-For: ");
    if (fwd->trusted_peer) {
        for (unsigned i = 0; i < req->nheaders; i++) {
            const struct http1_header *h = &req->headers[i];
            if (h->kind == HTTP1_HDR_X_FORWARDED_FOR && h->value.len > 0) {
                put_span(o, h->value);
                http1_out_put(o, ", ", 2);
            }
        }
    }
    put_span(o, fwd->client_ip);
    http1_out_put(o, "\r\n", 2);
}

void http1_write_request_head(struct http1_out *o, const struct http1_msg *req,
                              const struct http1_fwd *fwd)
{
    struct span host = req->host.len ? req->host : fwd->default_host;
    put_span(o, req->method);
    http1_out_put(o, " ", 1);
    put_span(o, req->uri);
    http1_out_str(o, " HTTP/1.1\r\nHost: ");
    put_span(o, host);
    http1_out_put(o, "\r\n", 2);

    for (unsigned i = 0; i < req->nheaders; i++) {
        const struct http1_header *h = &req->headers[i];
        if (h->dropped || h->kind == HTTP1_HDR_HOST || h->kind == HTTP1_HDR_CONTENT_LENGTH ||
            h->kind == HTTP1_HDR_X_FORWARDED_FOR)
            continue;
        if (h->kind == HTTP1_HDR_EXPECT)
            continue; /* moat answers 100-continue itself */
        if (http1_hdr_describes_client(h->kind) && !fwd->trusted_peer)
            continue;
        put_span(o, h->name);
        http1_out_put(o, ": ", 2);
        put_span(o, h->value);
        http1_out_put(o, "\r\n", 2);
    }
    write_forwarded_for(o, req, fwd);
    if (!fwd->trusted_peer || !has_header(req, HTTP1_HDR_X_FORWARDED_PROTO))
        http1_out_str(o, "X-Forwarded-Proto: https\r\n");
    /* Without a Host from the client there is no host to report: the
     * upstream's own address would send the app's links to it. */
    if ((!fwd->trusted_peer || !has_header(req, HTTP1_HDR_X_FORWARDED_HOST)) && req->host.len)
        put_header(o, "X-Forwarded-Host", req->host);
    if (!fwd->trusted_peer || !has_header(req, HTTP1_HDR_X_FORWARDED_PORT)) {
        http1_out_str(o, "X-Forwarded-Port: ");
        http1_out_uint(o, fwd->listener_port);
        http1_out_put(o, "\r\n", 2);
    }
    if (req->flags & HTTP1_F_CHUNKED) {
        http1_out_str(o, "Transfer-Encoding: chunked\r\n");
    } else if (req->flags & HTTP1_F_CONTENT_LENGTH) {
        http1_out_str(o, "Content-Length: ");
        http1_out_uint(o, req->content_length);
        http1_out_put(o, "\r\n", 2);
    }
    if (req->flags & HTTP1_F_UPGRADE)
        http1_out_str(o, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    else if (!fwd->keep_alive)
        http1_out_str(o, "Connection: close\r\n");
    http1_out_put(o, "\r\n", 2);
}

enum http1_framing http1_response_framing(const struct http1_msg *req,
                                          const struct http1_msg *resp)
{
    if (resp->flags & (HTTP1_F_NO_BODY | HTTP1_F_UPGRADE))
        return HTTP1_FRAMING_NONE;
    if (resp->flags & HTTP1_F_CONTENT_LENGTH)
        return HTTP1_FRAMING_LENGTH;
    return req->version == 11 ? HTTP1_FRAMING_CHUNKED : HTTP1_FRAMING_CLOSE;
}

void http1_write_response_head(struct http1_out *o, const struct http1_msg *resp,
                               const struct http1_resp_fwd *fwd)
{
    int interim = resp->status < 200;
    /* RFC 9110 8.6: never a Content-Length on 1xx or 204, whatever the
     * upstream sent; on HEAD and 304 it still describes the representation. */
    int keep_length = (fwd->framing == HTTP1_FRAMING_LENGTH ||
                       fwd->framing == HTTP1_FRAMING_NONE) &&
                      !interim && resp->status != 204;
    http1_out_str(o, "HTTP/1.1 ");
    http1_out_uint(o, (uint64_t)resp->status);
    http1_out_put(o, " ", 1);
    if (resp->reason.len)
        put_span(o, resp->reason);
    else
        http1_out_str(o, http1_reason(resp->status));
    http1_out_put(o, "\r\n", 2);

    for (unsigned i = 0; i < resp->nheaders; i++) {
        const struct http1_header *h = &resp->headers[i];
        if (h->dropped)
            continue;
        if (h->kind == HTTP1_HDR_CONTENT_LENGTH) {
            /* The number as moat read it: padding digits never reach the
             * client, whose parser may read them differently. */
            if (keep_length) {
                http1_out_str(o, "Content-Length: ");
                http1_out_uint(o, resp->content_length);
                http1_out_put(o, "\r\n", 2);
            }
            continue;
        }
        put_span(o, h->name);
        http1_out_put(o, ": ", 2);
        put_span(o, h->value);
        http1_out_put(o, "\r\n", 2);
    }
    if (interim) {
        if (resp->flags & HTTP1_F_UPGRADE)
            http1_out_str(o, "Connection: upgrade\r\nUpgrade: websocket\r\n");
        http1_out_put(o, "\r\n", 2);
        return;
    }
    if (fwd->framing == HTTP1_FRAMING_CHUNKED)
        http1_out_str(o, "Transfer-Encoding: chunked\r\n");
    if (fwd->hsts != NULL && !has_header(resp, HTTP1_HDR_STRICT_TRANSPORT_SECURITY)) {
        http1_out_str(o, "Strict-Transport-Security: ");
        http1_out_str(o, fwd->hsts);
        http1_out_put(o, "\r\n", 2);
    }
    if (fwd->close)
        http1_out_str(o, "Connection: close\r\n");
    else if (fwd->client_version == 10)
        http1_out_str(o, "Connection: keep-alive\r\n");
    http1_out_put(o, "\r\n", 2);
}

size_t http1_write_simple_response(struct http1_out *o, int status, int close,
                                   const char *extra_headers, const char *body, int head)
{
    char line[64], deflt[64];
    if (body == NULL) {
        snprintf(deflt, sizeof(deflt), "%d %s\n", status, http1_reason(status));
        body = deflt;
    }
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http1_reason(status));
    http1_out_put(o, line, (size_t)n);
    http1_out_str(o, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    http1_out_uint(o, strlen(body));
    http1_out_put(o, "\r\n", 2);
    if (extra_headers)
        http1_out_str(o, extra_headers);
    if (close)
        http1_out_str(o, "Connection: close\r\n");
    http1_out_put(o, "\r\n", 2);
    if (head)
        return 0; /* a response to HEAD has no content, whatever it says */
    http1_out_str(o, body);
    return strlen(body);
}

size_t http1_format_chunk_size(char out[20], size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    size_t i = sizeof(tmp);
    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = hex[n & 15];
        n >>= 4;
    } while (n != 0);
    memcpy(out, tmp + i, sizeof(tmp) - i);
    return sizeof(tmp) - i;
}

void http1_write_chunk_header(struct http1_out *o, size_t n)
{
    char tmp[20];
    http1_out_put(o, tmp, http1_format_chunk_size(tmp, n));
}

void http1_write_chunk_trailer(struct http1_out *o)
{
    http1_out_put(o, "\r\n", 2);
}

void http1_write_last_chunk(struct http1_out *o)
{
    http1_out_put(o, "0\r\n\r\n", 5);
}

const char *http1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

