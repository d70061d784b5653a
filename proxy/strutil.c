/*
 * strutil: pure helpers.  Nothing here touches sockets, libuv or wolfSSL.
 */
#include "strutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int span_eq(struct span a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.p, lit, n) == 0;
}

int span_caseeq(struct span a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && strncasecmp(a.p, lit, n) == 0;
}

int span_caseeq_span(struct span a, struct span b)
{
    return a.len == b.len && strncasecmp(a.p, b.p, a.len) == 0;
}

struct span span_trim(struct span s)
{
    while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int span_next_list_item(struct span *list, struct span *item)
{
    while (list->len > 0) {
        const char *comma = memchr(list->p, ',', list->len);
        size_t n = comma ? (size_t)(comma - list->p) : list->len;
        *item = span_trim((struct span){list->p, n});
        list->p += comma ? n + 1 : n;
        list->len -= comma ? n + 1 : n;
        if (item->len > 0)
            return 1;
    }
    return 0;
}

int parse_u64(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int split_number_suffix(const char *s, uint64_t *num, const char **suffix)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    if (parse_u64(s, n, num) != 0)
        return -1;
    *suffix = s + n;
    return 0;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b != 0 && a > UINT64_MAX / b)
        return -1;
    *out = a * b;
    return 0;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}};
    uint64_t n;
    const char *suffix;
    if (split_number_suffix(s, &n, &suffix) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(suffix, units[i].suffix) == 0)
            return mul_checked(n, units[i].ms, out);
    return -1;
}

int parse_size(const char *s, uint64_t *out)
{
    uint64_t n;
    const char *suffix;
    if (split_number_suffix(s, &n, &suffix) != 0)
        return -1;
    if (suffix[0] == '\0')
        return mul_checked(n, 1, out);
    if (suffix[1] != '\0')
        return -1;
    switch (suffix[0]) {
    case 'k': case 'K': return mul_checked(n, 1024, out);
    case 'm': case 'M': return mul_checked(n, 1024 * 1024, out);
    case 'g': case 'G': return mul_checked(n, 1024 * 1024 * 1024, out);
    default: return -1;
    }
}

int parse_numeric_hostport(const char *s, struct sockaddr_storage *ss, char *err,
                           size_t errlen)
{
    char host[64];
    const char *colon;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "expected \"[ipv6]:port\"");
            return -1;
        }
        size_t n = (size_t)(close - s - 1);
        if (n >= sizeof(host)) {
            snprintf(err, errlen, "address too long");
            return -1;
        }
        memcpy(host, s + 1, n);
        host[n] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "expected \"host:port\"");
            return -1;
        }
        size_t n = (size_t)(colon - s);
        if (n >= sizeof(host)) {
            snprintf(err, errlen, "address too long");
            return -1;
        }
        memcpy(host, s, n);
        host[n] = '\0';
    }
    uint64_t port;
    if (parse_u64(colon + 1, strlen(colon + 1), &port) != 0 || port > 65535) {
        snprintf(err, errlen, "invalid port \"%s\"", colon + 1);
        return -1;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (s[0] == '[') {
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
            snprintf(err, errlen, "invalid IPv6 address \"%s\"", host);
            return -1;
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    if (strcmp(host, "*") == 0 || host[0] == '\0')
        strcpy(host, "0.0.0.0");
    if (inet_pton(AF_INET, host, &in4->sin_addr) != 1) {
        snprintf(err, errlen, "\"%s\" is not a numeric IP address", host);
        return -1;
    }
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    return 0;
}

void format_sockaddr(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, ntohs(in4->sin_port));
    } else {
        snprintf(out, outlen, "unknown");
    }
}

void format_peer_ip(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char tmp[64];
    if (len == 0 || len > sizeof(struct sockaddr_storage)) {
        snprintf(out, outlen, "-");
        return;
    }
    format_sockaddr(sa, tmp, sizeof(tmp));
    char *end = strrchr(tmp, ':');
    if (end)
        *end = '\0';
    const char *start = tmp;
    if (tmp[0] == '[') {
        start = tmp + 1;
        char *close = strchr(tmp, ']');
        if (close)
            *close = '\0';
    }
    if (strncmp(start, "::ffff:", 7) == 0 && strchr(start, '.') != NULL)
        start += 7;
    snprintf(out, outlen, "%s", start);
}

unsigned sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return 0;
}

unsigned edit_distance(const char *a, const char *b, unsigned max)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned row[256];
    if (strcmp(a, b) == 0)
        return 0;
    if (lb >= ARRAY_SIZE(row) || la >= ARRAY_SIZE(row))
        return max + 1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0], best;
        row[0] = (unsigned)i;
        best = row[0];
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
            unsigned v = diag + cost;
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best > max)
            return max + 1;
    }
    return row[lb] > max ? max + 1 : row[lb];
}

/* Bytes in the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
    if (s[0] < 0xc2 || s[0] > 0xf4 || n > len)
        return 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

void json_escape_append(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t n;
        size_t u = c >= 0x80 ? utf8_sequence((const unsigned char *)s + i, len - i) : 0;
        if (u > 0) {
            /* Well-formed UTF-8 is JSON text as it is. */
            if (p + u >= cap)
                break;
            memcpy(out + p, s + i, u);
            p += u;
            i += u - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20 || c >= 0x7f) {
            /* Control bytes, and bytes that are not UTF-8, are escaped one by
             * one so that every line stays valid JSON whatever a client sent. */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        if (p + n >= cap)
            break;
        memcpy(out + p, esc, n);
        p += n;
    }
    *pos = p;
}

int hex_digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int is_unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

int uri_path_unit(const char *s, size_t len, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '%' && *i + 2 < len && hex_digit_value(s[*i + 1]) >= 0 &&
        hex_digit_value(s[*i + 2]) >= 0) {
        int byte = hex_digit_value(s[*i + 1]) << 4 | hex_digit_value(s[*i + 2]);
        *i += 3;
        return is_unreserved(byte) ? byte : 256 + byte;
    }
    (*i)++;
    return c;
}

int uri_path_escapes_are_sound(struct span path)
{
    for (const char *p = memchr(path.p, '%', path.len); p != NULL;
         p = memchr(p + 3, '%', path.len - (size_t)(p + 3 - path.p))) {
        size_t left = path.len - (size_t)(p - path.p);
        if (left < 3 || hex_digit_value(p[1]) < 0 || hex_digit_value(p[2]) < 0 ||
            (p[1] == '0' && p[2] == '0'))
            return 0;
        if (left == 3)
            break;
    }
    return 1;
}

static int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

long base64_decode(struct span in, unsigned char *out, size_t cap)
{
    while (in.len > 0 && in.p[in.len - 1] == '=')
        in.len--;
    if (in.len % 4 == 1)
        return -1;
    size_t n = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < in.len; i++) {
        int v = base64_value(in.p[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)n;
}
