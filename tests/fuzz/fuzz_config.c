/*
 * fuzz_config: cfg_load_string() on arbitrary text, with a small and a
 * large error buffer.  Both loads must agree; errors must be
 * NUL-terminated inside the buffer; a loaded configuration must hold the
 * invariants the rest of moat relies on (every route names an upstream
 * that exists, at least one listener and one server per upstream, limits
 * in range), and is freed.  Leaks and hangs (alias bombs, deep nesting)
 * are caught by libFuzzer.
 *
 * Input: byte 0 picks the small error buffer's size (1-64 bytes), the rest
 * is the YAML text.
 *
 * Upstream server names are resolved by getaddrinfo() at load time; this
 * target replaces it (see below) so that fuzzing never waits on DNS.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "fuzz_common.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Name resolution without the network: "localhost" and names ending in
 * ".test" resolve to 127.0.0.1, everything else fails.  Defined here, it
 * takes precedence over the C library's for this program only.
 */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res);
void freeaddrinfo(struct addrinfo *ai);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    (void)hints;
    size_t n = node ? strlen(node) : 0;
    if (n == 0 || (strcmp(node, "localhost") != 0 && (n < 5 || strcmp(node + n - 5, ".test") != 0)))
        return EAI_NONAME;
    struct {
        struct addrinfo ai;
        struct sockaddr_in sin;
    } *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return EAI_MEMORY;
    r->sin.sin_family = AF_INET;
    r->sin.sin_port = htons((uint16_t)atoi(service ? service : "0"));
    r->sin.sin_addr.s_addr = htonl(0x7f000001);
    r->ai.ai_family = AF_INET;
    r->ai.ai_socktype = SOCK_STREAM;
    r->ai.ai_addr = (struct sockaddr *)&r->sin;
    r->ai.ai_addrlen = sizeof(r->sin);
    *res = &r->ai;
    return 0;
}

void freeaddrinfo(struct addrinfo *ai)
{
    free(ai);
}

static void check_cfg(const struct cfg *c)
{
    FUZZ_CHECK(c->nlisteners >= 1, "no listener");
    FUZZ_CHECK(c->workers >= 1, "no worker");
    FUZZ_CHECK(c->arena != NULL, "no arena");
    for (size_t i = 0; i < c->nlisteners; i++) {
        const struct cfg_listener *l = &c->listeners[i];
        FUZZ_CHECK(l->name != NULL && l->bind != NULL, "listener without name or bind");
        FUZZ_CHECK(l->addr.ss_family == AF_INET || l->addr.ss_family == AF_INET6,
                   "listener address family %d", l->addr.ss_family);
        FUZZ_CHECK(l->has_tls != (l->redirect_to_https != 0), "listener kind");
        if (l->has_tls) {
            FUZZ_CHECK(l->tls.ncerts >= 1 && l->tls.ncerts <= 255, "%zu certificates",
                       l->tls.ncerts);
            for (size_t k = 0; k < l->tls.ncerts; k++)
                FUZZ_CHECK(l->tls.certs[k].cert && l->tls.certs[k].key, "certificate paths");
            FUZZ_CHECK(l->tls.min_version != NULL, "min_version");
            FUZZ_CHECK(l->tls.handshake_timeout_ms >= 1, "handshake timeout");
        }
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct cfg_route *r = &c->routes[i];
        FUZZ_CHECK(r->upstream < c->nupstreams, "route to upstream %zu of %zu", r->upstream,
                   c->nupstreams);
        FUZZ_CHECK(r->path != NULL && r->path[0] == '/', "route path");
        /* A request for the route's own host (as written, or with the
         * trailing dot a client may add) and path finds a route. */
        struct span path = {r->path, strlen(r->path)};
        int reachable = r->host == NULL && route_match(c, (struct span){"", 0}, path) != NULL;
        for (int dot = 0; r->host != NULL && dot < 2 && !reachable; dot++) {
            char host[ROUTE_MAX_HOST + 8], norm[ROUTE_MAX_HOST + 1];
            FUZZ_CHECK(strlen(r->host) <= 253, "route host length");
            snprintf(host, sizeof(host), "%s%s%s", r->wildcard ? "a" : "", r->host, dot ? "." : "");
            int hl = route_normalize_host((struct span){host, strlen(host)}, norm);
            reachable = hl >= 0 && route_match(c, (struct span){norm, (size_t)hl}, path) != NULL;
        }
        FUZZ_CHECK(reachable, "route %zu (host \"%s\", path \"%s\") unreachable", i,
                   r->host ? r->host : "*", r->path);
    }
    for (size_t i = 0; i < c->nupstreams; i++) {
        const struct cfg_upstream *u = &c->upstreams[i];
        FUZZ_CHECK(u->name != NULL && u->nservers >= 1, "upstream without servers");
        FUZZ_CHECK(u->connect_timeout_ms >= 1 && u->response_timeout_ms >= 1, "timeouts");
        for (size_t s = 0; s < u->nservers; s++)
            FUZZ_CHECK(u->servers[s].addr.ss_family == AF_INET ||
                           u->servers[s].addr.ss_family == AF_INET6,
                       "server address family");
    }
    FUZZ_CHECK(c->limits.max_header_bytes >= 1024 && c->limits.max_header_bytes <= 1024 * 1024,
               "max_header_bytes");
    FUZZ_CHECK(c->limits.max_headers >= 1 && c->limits.max_headers <= 1000, "max_headers");
    FUZZ_CHECK(c->timeouts.client_header_ms >= 1 && c->timeouts.client_idle_ms >= 1, "timeouts");
    FUZZ_CHECK(c->forwarding.ntrusted == c->forwarding.ntrusted_proxies, "trusted proxies");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)};
    (void)cfg_is_trusted_proxy(c, (struct sockaddr *)&a);
    struct sockaddr_in6 b = {.sin6_family = AF_INET6};
    b.sin6_addr.s6_addr[15] = 1;
    (void)cfg_is_trusted_proxy(c, (struct sockaddr *)&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t small = 1 + data[0] % 64;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char *err_small = malloc(small);
    static char err_large[16384];
    struct cfg *a = NULL, *b = NULL;
    if (err_small == NULL)
        abort();

    int ra = cfg_load_string("fuzz.yaml", text, len, "/nonexistent", &a, err_small, small);
    FUZZ_CHECK(memchr(err_small, '\0', small) != NULL, "error not terminated in %zu bytes", small);
    int rb = cfg_load_string("fuzz.yaml", text, len, "/nonexistent", &b, err_large,
                             sizeof(err_large));
    FUZZ_CHECK(memchr(err_large, '\0', sizeof(err_large)) != NULL, "error not terminated");
    FUZZ_CHECK(ra == rb, "loads disagree: %d with %zu error bytes, %d with %zu", ra, small, rb,
               sizeof(err_large));
    FUZZ_CHECK(ra == 0 || ra == -1, "cfg_load_string returned %d", ra);
    if (rb == 0) {
        FUZZ_CHECK(a != NULL && b != NULL, "success without a configuration");
        check_cfg(b);
        cfg_free(&a);
        cfg_free(&b);
        FUZZ_CHECK(a == NULL && b == NULL, "cfg_free left the pointer");
    } else {
        FUZZ_CHECK(err_large[0] != '\0', "failure without a message");
        FUZZ_CHECK(strncmp(err_large, "fuzz.yaml:", 10) == 0, "message without the file name: %.80s",
                   err_large);
    }
    free(err_small);
    return 0;
}
