/*
 * route: host and path matching over struct cfg's route list.
 */
#include "route.h"

#include <arpa/inet.h>
#include <string.h>

static int is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~' || c == '!' || c == '$' || c == '&' || c == '\'' ||
           c == '(' || c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=' ||
           c == '%';
}

int route_normalize_host(struct span host, char *out)
{
    size_t n = host.len, end;
    const char *p = host.p;
    if (n == 0)
        return 0;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL)
            return -1;
        end = (size_t)(close - p) + 1;
        char literal[64];
        struct in6_addr a6;
        if (end - 2 >= sizeof(literal))
            return -1;
        memcpy(literal, p + 1, end - 2);
        literal[end - 2] = '\0';
        if (inet_pton(AF_INET6, literal, &a6) != 1)
            return -1;
    } else {
        end = 0;
        while (end < n && p[end] != ':')
            end++;
    }
    if (end < n) {
        /* Only a port may follow the host, in at most five digits: a
         * longer one is padding that would be copied upstream. */
        uint64_t port;
        size_t digits = n - end - 1;
        if (p[end] != ':' || digits > 5 || parse_u64(p + end + 1, digits, &port) != 0 ||
            port > 65535)
            return -1;
    }
    size_t len = end;
    if (len > 1 && p[0] != '[' && p[len - 1] == '.')
        len--;
    if (len == 0 || len > ROUTE_MAX_HOST)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (p[0] != '[' && !is_host_char(c))
            return -1;
        /* RFC 3986 pct-encoded: "%" HEXDIG HEXDIG, nothing else. */
        if (c == '%' && (i + 2 >= len || hex_digit_value(p[i + 1]) < 0 ||
                         hex_digit_value(p[i + 2]) < 0))
            return -1;
        out[i] = (char)c;
    }
    out[len] = '\0';
    return (int)len;
}

/* prefix is normalized (config.c): against a path without escapes, bytes
 * compare as RFC 3986 units do. */
static int path_has_prefix(struct span path, int escaped, const char *prefix, size_t *plen)
{
    size_t n = strlen(prefix);
    *plen = n;
    if (!escaped)
        return path.len >= n && memcmp(path.p, prefix, n) == 0;
    size_t i = 0, k = 0;
    while (k < n)
        if (i >= path.len || uri_path_unit(path.p, path.len, &i) != uri_path_unit(prefix, n, &k))
            return 0;
    return 1;
}

enum route_tier {
    ROUTE_TIER_EXACT = 0,
    ROUTE_TIER_WILDCARD,
    ROUTE_TIER_ANY,
};

/* How specifically route r matches host in tier t: -1 for not at all. */
static long host_score(const struct cfg_route *r, struct span host, enum route_tier t)
{
    switch (t) {
    case ROUTE_TIER_EXACT:
        return r->host != NULL && !r->wildcard && span_eq(host, r->host) ? 0 : -1;
    case ROUTE_TIER_WILDCARD: {
        if (r->host == NULL || !r->wildcard)
            return -1;
        size_t n = strlen(r->host); /* ".suffix" */
        if (host.len <= n || memcmp(host.p + host.len - n, r->host, n) != 0)
            return -1;
        return (long)n;
    }
    case ROUTE_TIER_ANY:
        return r->host == NULL ? 0 : -1;
    }
    return -1;
}

const struct cfg_route *route_match(const struct cfg *cfg, struct span host, struct span path)
{
    int escaped = memchr(path.p, '%', path.len) != NULL;
    for (enum route_tier t = ROUTE_TIER_EXACT; t <= ROUTE_TIER_ANY; t++) {
        const struct cfg_route *best = NULL;
        long best_host = -1;
        size_t best_path = 0;
        for (size_t i = 0; i < cfg->nroutes; i++) {
            const struct cfg_route *r = &cfg->routes[i];
            long hs = host_score(r, host, t);
            size_t plen;
            if (hs < 0 || !path_has_prefix(path, escaped, r->path, &plen))
                continue;
            if (hs > best_host || (hs == best_host && plen > best_path)) {
                best = r;
                best_host = hs;
                best_path = plen;
            }
        }
        if (best != NULL)
            return best;
    }
    return NULL;
}
