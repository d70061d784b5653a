/*
 * http1: HTTP/1.1 messages on top of llhttp.  Owns the strict pre-parse
 * checks that llhttp 8.1 does not make, the meaning of each header moat
 * cares about, and the re-serialisation of heads sent on.  Works on bytes
 * handed to it and writes to a struct sink; knows nothing of sockets, TLS or
 * routing.
 *
 * A head is accepted in two steps: http1_scan_head() walks the raw bytes as
 * they arrive (CRLF line ends only, no obs-fold, token names, visible values,
 * size and count limits) until the blank line; then http1_parse() hands the
 * complete head to llhttp in one call, so each span callback fires exactly
 * once and spans point into the caller's buffer, which must keep the head
 * bytes in place until the message is done.  Body bytes are decoded by
 * moat's own framing decoder (Content-Length, strict chunked coding with
 * bounded size lines and trailers, or until the close) as they come, and
 * delivered through the handler without being retained.
 */
#ifndef MOAT_HTTP1_H
#define MOAT_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"
#include "strutil.h"

struct http1_limits {
    size_t max_head;        /* whole head, request line included */
    size_t max_uri;         /* request line */
    unsigned max_headers;
    uint64_t max_body;      /* 0: unlimited */
};

struct http1_scan {
    size_t pos;             /* next byte to examine */
    size_t line_start;
    unsigned lines;
    int method_done;        /* the request method's space was seen */
};

/* Returns 0 when more bytes are needed, the head's length (blank line
 * included) when it is complete, or -status (400, 414, 431, 505; 502 for a
 * response) when it is invalid. */
long http1_scan_head(struct http1_scan *sc, const char *buf, size_t len, int is_request,
                     const struct http1_limits *lim);

enum http1_hdr {
    HTTP1_HDR_OTHER = 0,
    HTTP1_HDR_HOST,
    HTTP1_HDR_CONTENT_LENGTH,
    HTTP1_HDR_TRANSFER_ENCODING,
    HTTP1_HDR_CONNECTION,
    HTTP1_HDR_KEEP_ALIVE,
    HTTP1_HDR_PROXY_CONNECTION,
    HTTP1_HDR_TE,
    HTTP1_HDR_TRAILER,
    HTTP1_HDR_UPGRADE,
    HTTP1_HDR_EXPECT,
    HTTP1_HDR_HTTP2_SETTINGS,
    HTTP1_HDR_PROXY_AUTHORIZATION,
    HTTP1_HDR_X_FORWARDED_FOR,
    HTTP1_HDR_X_FORWARDED_PROTO,
    HTTP1_HDR_X_FORWARDED_HOST,
    HTTP1_HDR_X_FORWARDED_PORT,
    HTTP1_HDR_FORWARDED,
    HTTP1_HDR_X_FORWARDED_OTHER, /* any other X-Forwarded-*: kept from trusted proxies only */
    HTTP1_HDR_CLIENT_IP,         /* X-Real-IP and its kin: the same */
    HTTP1_HDR_PROXY,             /* httpoxy: CGI apps take it for $HTTP_PROXY */
    HTTP1_HDR_UNDERSCORE_TWIN,   /* X_Real_IP, Transfer_Encoding: never passed on */
    HTTP1_HDR_STRICT_TRANSPORT_SECURITY,
    HTTP1_HDR_USER_AGENT,
    HTTP1_HDR_REFERER,
};

enum http1_hdr http1_classify(struct span name);
/* 1 for the headers that describe the client (X-Forwarded-*, Forwarded,
 * X-Real-IP, ...): passed on from trusted proxies only. */
int http1_hdr_describes_client(enum http1_hdr k);

struct http1_header {
    struct span name;
    struct span value;
    enum http1_hdr kind;
    int dropped;            /* named in Connection, or hop-by-hop */
};

enum {
    HTTP1_F_CONTENT_LENGTH = 1u << 0,
    HTTP1_F_CHUNKED = 1u << 1,
    HTTP1_F_KEEP_ALIVE = 1u << 2,      /* the connection may carry another message */
    HTTP1_F_UPGRADE = 1u << 3,         /* request: websocket asked; response: 101 */
    HTTP1_F_EXPECT_CONTINUE = 1u << 4,
    HTTP1_F_HEAD = 1u << 5,            /* request method HEAD */
    HTTP1_F_IDEMPOTENT = 1u << 6,
    HTTP1_F_ABSOLUTE_FORM = 1u << 7,
    HTTP1_F_NO_BODY = 1u << 8,         /* response: 1xx, 204, 304 or to HEAD */
};

/* The longest chunk-size line (size and extensions) accepted. */
#define HTTP1_MAX_CHUNK_LINE 4096

enum http1_body_mode {
    HTTP1_BODY_NONE = 0,
    HTTP1_BODY_LENGTH,
    HTTP1_BODY_CHUNKED,
    HTTP1_BODY_CLOSE,       /* responses only: until the connection closes */
};

/* The body decoder's state; part of struct http1_msg. */
struct http1_body {
    enum http1_body_mode mode;
    uint64_t remaining;     /* LENGTH: bytes left; CHUNKED: of this chunk */
    unsigned state;         /* CHUNKED: where in the grammar */
    unsigned line;          /* bytes of the current chunk-size line */
    int digits;             /* hex digits seen in this chunk size */
};

struct http1_msg;

/* Callbacks from http1_parse(); each returns 0 or an HTTP status (>= 400)
 * that stops parsing with that error. */
struct http1_handler {
    int (*on_head)(void *ctx, struct http1_msg *m);
    int (*on_body)(void *ctx, const char *p, size_t n);
    int (*on_end)(void *ctx, struct http1_msg *m);
};

struct http1_msg {
    llhttp_t parser;
    const struct http1_handler *handler;
    void *ctx;
    const struct http1_limits *lim;
    struct http1_scan scan;
    int is_request;
    int in_body;            /* head delivered */
    int request_was_head;   /* response to a HEAD request: no body */

    /* request */
    struct span method;
    struct span target;     /* as sent */
    struct span path;       /* origin-form path, no query */
    struct span uri;        /* what to send upstream: path and query */
    struct span host;       /* Host, or the absolute-form authority */
    /* response */
    int status;
    struct span reason;

    int version;            /* 10 or 11 */
    unsigned flags;
    uint64_t content_length;
    uint64_t body_bytes;    /* delivered so far */
    size_t trailer_bytes;
    struct http1_body body;
    struct span connection_tokens[8];
    unsigned nconnection_tokens;

    struct http1_header *headers;
    unsigned nheaders;
    unsigned max_headers;
    int error_status;       /* set when parsing failed */
    const char *error_reason;
};

void http1_msg_init(struct http1_msg *m, int is_request, struct http1_header *headers,
                    unsigned max_headers, const struct http1_limits *lim,
                    const struct http1_handler *handler, void *ctx);
/* Ready for the next message on the same connection. */
void http1_msg_reset(struct http1_msg *m);

enum http1_result {
    HTTP1_MORE = 0,         /* all bytes used; the message goes on */
    HTTP1_DONE,             /* the message ended; *used bytes were its own */
    HTTP1_ERROR,            /* m->error_status says what to answer */
};

/*
 * Parses p[0..n).  The first call of a message must hand over exactly the
 * head that http1_scan_head() measured; later calls carry body bytes.
 */
enum http1_result http1_parse(struct http1_msg *m, const char *p, size_t n, size_t *used);
/* The peer closed: ends a body delimited by the close, or fails. */
enum http1_result http1_finish(struct http1_msg *m);

/* What the request needs from outside to be forwarded. */
struct http1_fwd {
    struct span client_ip;      /* textual address of the TCP peer */
    int trusted_peer;           /* keep and extend its X-Forwarded-* */
    unsigned listener_port;
    struct span default_host;   /* Host for HTTP/1.0 requests without one */
    int keep_alive;             /* ask the upstream to keep the connection */
};

/* A bounded scratch buffer that spills into a sink when full; with no sink,
 * filling it sets err to -ENOBUFS. */
struct http1_out {
    struct sink *sink;
    char *buf;
    size_t len;
    size_t cap;
    int err;
    uint64_t flushed;       /* bytes handed to the sink so far */
};

void http1_out_put(struct http1_out *o, const char *p, size_t n);
void http1_out_str(struct http1_out *o, const char *s);
void http1_out_uint(struct http1_out *o, uint64_t v);
/* Writes what remains; returns 0 or the first sink error. */
int http1_out_flush(struct http1_out *o);

/* Request head as sent to the upstream, with its own framing. */
void http1_write_request_head(struct http1_out *o, const struct http1_msg *req,
                              const struct http1_fwd *fwd);

enum http1_framing {
    HTTP1_FRAMING_NONE = 0, /* no body (or the length the head states, for HEAD) */
    HTTP1_FRAMING_LENGTH,   /* Content-Length from the upstream */
    HTTP1_FRAMING_CHUNKED,  /* moat chunks the body */
    HTTP1_FRAMING_CLOSE,    /* the body ends when the connection closes */
};

/* The framing the client gets for response resp to request req. */
enum http1_framing http1_response_framing(const struct http1_msg *req,
                                          const struct http1_msg *resp);

struct http1_resp_fwd {
    enum http1_framing framing;
    int close;                  /* the client connection ends after this */
    int client_version;         /* 10 or 11 */
    const char *hsts;           /* NULL: none */
};

void http1_write_response_head(struct http1_out *o, const struct http1_msg *resp,
                               const struct http1_resp_fwd *fwd);

/* A complete response moat makes itself (errors); body NULL: the status
 * line's text.  head: the request was HEAD, so the body is left out.
 * Returns the bytes of body written. */
size_t http1_write_simple_response(struct http1_out *o, int status, int close,
                                   const char *extra_headers, const char *body, int head);

/* "<hex n>\r\n" into out; returns its length. */
size_t http1_format_chunk_size(char out[20], size_t n);
/* Chunked framing around n body bytes; the terminator of a chunked body. */
void http1_write_chunk_header(struct http1_out *o, size_t n);
void http1_write_chunk_trailer(struct http1_out *o);
void http1_write_last_chunk(struct http1_out *o);

const char *http1_reason(int status);

/* 1 if path (no query) has no "." or ".." segment, even percent-encoded. */
int http1_path_is_safe(struct span path);

#endif
