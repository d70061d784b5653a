/*
 * fuzz_common: what the fuzz targets share.  A checker for serialised
 * HTTP/1.1 heads and chunked bodies written independently of proxy/http1.c
 * (so that a bug there is not mirrored here), a growable byte buffer with a
 * struct sink in front of it, and the input-driven piece sizes that feed
 * bytes to moat as a socket would.
 *
 * Header-only (static inline): tests/CMakeLists.txt builds every fuzz_*.c
 * as a target of its own.
 */
#ifndef MOAT_FUZZ_COMMON_H
#define MOAT_FUZZ_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "http1.h"

/* ---- failing ---- */

static inline void fuzz_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static inline void fuzz_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: fuzz invariant violated: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond))                                                           \
            fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);                        \
    } while (0)

/* ---- bytes ---- */

struct fuzz_buf {
    char *p;
    size_t len;
    size_t cap;
};

static inline void fuzz_buf_put(struct fuzz_buf *b, const void *d, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static inline void fuzz_buf_free(struct fuzz_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* A struct sink that appends to a fuzz_buf. */
struct fuzz_sink {
    struct sink sink;
    struct fuzz_buf *buf;
    unsigned writes;
};

static inline int fuzz_sink_write(struct sink *s, const void *d, size_t n)
{
    struct fuzz_sink *fs = (struct fuzz_sink *)s;
    fs->writes++;
    fuzz_buf_put(fs->buf, d, n);
    return 0;
}

static inline void fuzz_sink_init(struct fuzz_sink *s, struct fuzz_buf *b)
{
    s->sink.write = fuzz_sink_write;
    s->buf = b;
    s->writes = 0;
}

/*
 * Piece sizes for feeding n bytes the way reads would deliver them: all at
 * once, one byte at a time, or pseudo-random sizes (small or large) from a
 * seed taken from the input, so that the fuzzer controls the splits.
 */
struct fuzz_pieces {
    unsigned mode;
    uint32_t state;
};

static inline void fuzz_pieces_init(struct fuzz_pieces *fp, uint8_t seed)
{
    fp->mode = seed & 3u;
    fp->state = 0x9e3779b9u ^ ((uint32_t)seed * 0x01000193u);
}

static inline size_t fuzz_pieces_next(struct fuzz_pieces *fp, size_t left)
{
    size_t n;
    fp->state ^= fp->state << 13;
    fp->state ^= fp->state >> 17;
    fp->state ^= fp->state << 5;
    switch (fp->mode) {
    case 0: n = left; break;
    case 1: n = 1; break;
    case 2: n = 1 + fp->state % 16; break;
    default: n = 1 + fp->state % 700; break;
    }
    return n < left ? n : left;
}

/* ---- an independent, strict reading of what moat serialises ---- */

static inline int fuzz_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-content: HTAB, SP, VCHAR, obs-text. */
static inline int fuzz_is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

#define FUZZ_MAX_FIELDS 1100

struct fuzz_field {
    const char *name;
    size_t name_len;
    const char *value;      /* without surrounding whitespace */
    size_t value_len;
};

struct fuzz_head {
    size_t len;             /* the head, final CRLF CRLF included */
    /* request */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    /* response */
    int status;
    unsigned nfields;
    struct fuzz_field fields[FUZZ_MAX_FIELDS];
};

enum {
    FUZZ_RESPONSE = 0,
    FUZZ_REQUEST = 1,
    FUZZ_ANY_VERSION = 2,   /* HTTP/1.0 too (what moat accepts, not what it writes) */
};

/*
 * Reads a head at p[0..n): HTTP/1.1 (or 1.0 with FUZZ_ANY_VERSION), CRLF
 * line ends only, no bare CR or LF, no NUL or other control bytes outside
 * HTAB, header names that are tokens, no obs-fold.  Returns NULL (with *h
 * filled) when p starts with a complete and well-formed head, or a static
 * string that says what is wrong: "incomplete" when the blank line is
 * missing.
 */
static inline const char *fuzz_read_head(const char *p, size_t n, int mode, struct fuzz_head *h)
{
    int is_request = mode & FUZZ_REQUEST;
    int any_version = mode & FUZZ_ANY_VERSION;
    size_t i = 0, line = 0;
    memset(h, 0, offsetof(struct fuzz_head, fields));
    for (;;) {
        size_t s = i;
        while (i < n && p[i] != '\r' && p[i] != '\n')
            i++;
        if (i == n)
            return "incomplete";
        if (p[i] == '\n')
            return "bare LF";
        if (i + 1 == n)
            return "incomplete";
        if (p[i + 1] != '\n')
            return "bare CR";
        const char *l = p + s;
        size_t ll = i - s;
        i += 2;
        if (ll == 0) {
            if (line == 0)
                return "empty start line";
            h->len = i;
            return NULL;
        }
        if (memchr(l, '\0', ll) != NULL)
            return "NUL in head";
        if (line++ == 0) {
            if (is_request) {
                size_t m = 0;
                while (m < ll && fuzz_is_tchar((unsigned char)l[m]))
                    m++;
                if (m == 0 || m >= ll || l[m] != ' ')
                    return "bad method";
                size_t t = m + 1, te = t;
                while (te < ll && (unsigned char)l[te] > 0x20 && (unsigned char)l[te] < 0x7f)
                    te++;
                if (te == t || ll - te != 9 ||
                    (memcmp(l + te, " HTTP/1.1", 9) != 0 &&
                     (!any_version || memcmp(l + te, " HTTP/1.0", 9) != 0)))
                    return "bad request target or version";
                h->method = l;
                h->method_len = m;
                h->target = l + t;
                h->target_len = te - t;
            } else {
                if (ll < 12 || (memcmp(l, "HTTP/1.1 ", 9) != 0 &&
                                (!any_version || memcmp(l, "HTTP/1.0 ", 9) != 0)))
                    return "bad status line";
                for (int k = 9; k < 12; k++)
                    if (l[k] < '0' || l[k] > '9')
                        return "bad status code";
                if (ll > 12 && l[12] != ' ')
                    return "bad status line";
                for (size_t k = 13; k < ll; k++)
                    if (!fuzz_is_field_char((unsigned char)l[k]))
                        return "control byte in reason";
                h->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
            }
            continue;
        }
        size_t m = 0;
        while (m < ll && fuzz_is_tchar((unsigned char)l[m]))
            m++;
        if (m == 0 || m >= ll || l[m] != ':')
            return "header name is not a token followed by a colon";
        for (size_t k = m + 1; k < ll; k++)
            if (!fuzz_is_field_char((unsigned char)l[k]))
                return "control byte in a header value";
        if (h->nfields >= FUZZ_MAX_FIELDS)
            return "too many header fields";
        struct fuzz_field *f = &h->fields[h->nfields++];
        size_t vs = m + 1, ve = ll;
        while (vs < ve && (l[vs] == ' ' || l[vs] == '\t'))
            vs++;
        while (ve > vs && (l[ve - 1] == ' ' || l[ve - 1] == '\t'))
            ve--;
        f->name = l;
        f->name_len = m;
        f->value = l + vs;
        f->value_len = ve - vs;
    }
}

/* The header lines the independent reader found in h are the ones llhttp
 * gave moat in m, in the same order and byte for byte. */
static inline void fuzz_check_same_fields(const struct fuzz_head *h, const struct http1_msg *m)
{
    FUZZ_CHECK(h->nfields == m->nheaders, "%u header lines, llhttp saw %u", h->nfields,
               m->nheaders);
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct fuzz_field *f = &h->fields[i];
        const struct http1_header *g = &m->headers[i];
        FUZZ_CHECK(f->name_len == g->name.len && memcmp(f->name, g->name.p, f->name_len) == 0 &&
                       f->value_len == g->value.len &&
                       memcmp(f->value, g->value.p, f->value_len) == 0,
                   "header %u read differently by llhttp", i);
    }
}

static inline int fuzz_name_is(const struct fuzz_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static inline int fuzz_value_is(const struct fuzz_field *f, const char *v)
{
    return f->value_len == strlen(v) && strncasecmp(f->value, v, f->value_len) == 0;
}

/* How many fields are called name; *last gets the last of them. */
static inline unsigned fuzz_count(const struct fuzz_head *h, const char *name,
                                  const struct fuzz_field **last)
{
    unsigned k = 0;
    for (unsigned i = 0; i < h->nfields; i++)
        if (fuzz_name_is(&h->fields[i], name)) {
            k++;
            if (last)
                *last = &h->fields[i];
        }
    return k;
}

/* 1 if the value is 1-19 decimal digits; *v gets them. */
static inline int fuzz_decimal(const char *p, size_t n, uint64_t *v)
{
    if (n == 0 || n > 19)
        return 0;
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        *v = *v * 10 + (uint64_t)(p[i] - '0');
    }
    return 1;
}

/*
 * Reads a chunked body as moat writes it (lower-case hex sizes without
 * leading zeros or extensions, no trailers): returns 1 when p[0..n) holds
 * the complete body (*used: its length), 0 when it is a valid prefix,
 * or aborts saying what is wrong.  *data gets the decoded length.
 */
static inline int fuzz_read_chunked(const char *p, size_t n, size_t *used, uint64_t *data)
{
    size_t i = 0;
    *data = 0;
    for (;;) {
        size_t s = i;
        uint64_t size = 0;
        while (i < n && ((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            FUZZ_CHECK(i - s < 16, "chunk size too long");
            size = size * 16 + (uint64_t)(p[i] <= '9' ? p[i] - '0' : p[i] - 'a' + 10);
            i++;
        }
        if (i == n)
            return 0;
        FUZZ_CHECK(i > s, "chunk size expected at offset %zu, got 0x%02x", s, (unsigned char)p[i]);
        FUZZ_CHECK(p[s] != '0' || i - s == 1, "chunk size with a leading zero");
        FUZZ_CHECK(p[i] == '\r', "chunk size line not ended by CRLF");
        if (i + 1 == n)
            return 0;
        FUZZ_CHECK(p[i + 1] == '\n', "bare CR after a chunk size");
        i += 2;
        if (size == 0) {
            if (i == n || (i + 1 == n && p[i] == '\r'))
                return 0;
            FUZZ_CHECK(p[i] == '\r' && p[i + 1] == '\n', "trailer section after the last chunk");
            *used = i + 2;
            return 1;
        }
        if (n - i < size)
            return 0;
        i += (size_t)size;
        *data += size;
        if (i == n || (i + 1 == n && p[i] == '\r'))
            return 0;
        FUZZ_CHECK(p[i] == '\r' && p[i + 1] == '\n', "chunk data not followed by CRLF");
        i += 2;
    }
}

#endif
