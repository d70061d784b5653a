/*
 * Unit tests for route: Host normalisation and route selection over tables
 * built from YAML with cfg_load_string(), as users write them.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "route.h"

#define LISTENERS                                                                          \
    "listeners:\n"                                                                         \
    "  - name: a\n"                                                                        \
    "    bind: \"127.0.0.1:8443\"\n"                                                       \
    "    tls:\n"                                                                           \
    "      certificates:\n"                                                                \
    "        - cert: c.pem\n"                                                              \
    "          key: k.pem\n"

/* One upstream per route, named after the route, so a match is easy to name. */
#define UPSTREAMS(...) "upstreams:\n" __VA_ARGS__
#define UP(n) "  " n ":\n    servers: [\"127.0.0.1:3000\"]\n"

static struct cfg *load(const char *text)
{
    struct cfg *c = NULL;
    char err[4096];
    int rc = cfg_load_string("r.yaml", text, strlen(text), NULL, &c, err, sizeof(err));
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", err);
        return NULL;
    }
    return c;
}

/* Normalizes s; returns the result or "(invalid)". */
static const char *norm(const char *s)
{
    static char out[ROUTE_MAX_HOST + 1];
    int n = route_normalize_host((struct span){s, strlen(s)}, out);
    if (n < 0)
        return "(invalid)";
    if ((size_t)n != strlen(out))
        return "(length mismatch)";
    return out;
}

static void test_normalize(void)
{
    CHECK_STR(norm("example.com"), "example.com");
    CHECK_STR(norm("Example.COM"), "example.com");
    CHECK_STR(norm("example.com:8443"), "example.com");
    CHECK_STR(norm("example.com."), "example.com");
    CHECK_STR(norm("Example.com.:443"), "example.com");
    CHECK_STR(norm("127.0.0.1"), "127.0.0.1");
    CHECK_STR(norm("127.0.0.1:80"), "127.0.0.1");
    CHECK_STR(norm("[::1]"), "[::1]");
    CHECK_STR(norm("[::1]:8443"), "[::1]");
    CHECK_STR(norm("[2001:DB8::1]:443"), "[2001:db8::1]");
    CHECK_STR(norm("[::ffff:10.0.0.1]"), "[::ffff:10.0.0.1]");
    CHECK_STR(norm("my_host-1.internal"), "my_host-1.internal");
    CHECK_STR(norm("example.com:0"), "example.com");
    CHECK_STR(norm("example.com:65535"), "example.com");

    char out[ROUTE_MAX_HOST + 1];
    CHECK_INT(route_normalize_host((struct span){"", 0}, out), 0);
    CHECK_INT(route_normalize_host(SPAN_LIT("Example.com:8443"), out), 11);

    /* invalid characters */
    CHECK_STR(norm("exa mple.com"), "(invalid)");
    CHECK_STR(norm("example.com/"), "(invalid)");
    CHECK_STR(norm("a/b"), "(invalid)");
    CHECK_STR(norm("user@example.com"), "(invalid)");
    CHECK_STR(norm("exa\"mple.com"), "(invalid)");
    CHECK_STR(norm("exa\tmple"), "(invalid)");
    CHECK_STR(norm("ex\x80mple"), "(invalid)");
    CHECK_STR(norm("[::1"), "(invalid)");
    CHECK_STR(norm("[::1]x"), "(invalid)");
    CHECK_STR(norm("[::g]"), "(invalid)");
    CHECK_STR(norm("[a b]"), "(invalid)");
    CHECK_STR(norm("[]"), "(invalid)");
    CHECK_STR(norm("[1]"), "(invalid)");
    CHECK_STR(norm("::1"), "(invalid)");
    CHECK_STR(norm(":80"), "(invalid)");
    /* invalid ports */
    CHECK_STR(norm("example.com:"), "(invalid)");
    CHECK_STR(norm("example.com:8x"), "(invalid)");
    CHECK_STR(norm("example.com:-1"), "(invalid)");
    CHECK_STR(norm("example.com:80:80"), "(invalid)");
    CHECK_STR(norm("example.com:123456"), "(invalid)");
    CHECK_STR(norm("example.com:99999"), "(invalid)");
    CHECK_STR(norm("[::1]:"), "(invalid)");
    CHECK_STR(norm("[::1]:x"), "(invalid)");
    CHECK_STR(norm("[::1]:99999"), "(invalid)");
    CHECK_STR(norm("example.com:00443"), "example.com");
    CHECK_STR(norm("example.com:000443"), "(invalid)");
    CHECK_STR(norm("localhost:00000000000000000000000000000000000000000"), "(invalid)");
    /* pct-encoded needs two hex digits */
    CHECK_STR(norm("a%41b"), "a%41b");
    CHECK_STR(norm("a%4"), "(invalid)");
    CHECK_STR(norm("a%zz"), "(invalid)");

    /* length: 255 bytes fit, 256 do not */
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost));
    longhost[255] = '\0';
    CHECK_INT(strlen(norm(longhost)), 255);
    longhost[255] = 'a';
    longhost[256] = '\0';
    CHECK_STR(norm(longhost), "(invalid)");
}

static const char table_yaml[] =
    LISTENERS
    "routes:\n"
    "  - host: api.example.com\n"
    "    path: /v1/\n"
    "    upstream: api_v1\n"
    "  - host: API.Example.com.\n"
    "    path: /\n"
    "    upstream: api_root\n"
    "  - host: \"*.example.com\"\n"
    "    path: /\n"
    "    upstream: wild\n"
    "  - host: \"*.example.com\"\n"
    "    path: /static/\n"
    "    upstream: wild_static\n"
    "  - host: \"*.b.example.com\"\n"
    "    path: /\n"
    "    upstream: wild_b\n"
    "  - host: exact.example.com\n"
    "    path: /x/\n"
    "    upstream: exact_x\n"
    "  - host: \"[::1]\"\n"
    "    path: /\n"
    "    upstream: v6\n"
    "  - path: /\n"
    "    upstream: any\n"
    "  - path: /only/\n"
    "    upstream: any_only\n"
    "  - path: /only/deeper/\n"
    "    upstream: any_deeper\n"
    "  - host: null\n"
    "    path: /nullhost/\n"
    "    upstream: any_null\n"
    UPSTREAMS(UP("api_v1") UP("api_root") UP("wild") UP("wild_static") UP("wild_b")
              UP("exact_x") UP("v6") UP("any") UP("any_only") UP("any_deeper")
              UP("any_null"));

/* The upstream of the route matched for host (normalized first) and path. */
static const char *match(const struct cfg *c, const char *host, const char *path)
{
    char h[ROUTE_MAX_HOST + 1];
    int n = route_normalize_host((struct span){host, strlen(host)}, h);
    if (n < 0)
        return "(bad host)";
    const struct cfg_route *r =
        route_match(c, (struct span){h, (size_t)n}, (struct span){path, strlen(path)});
    if (r == NULL)
        return "(none)";
    if (r->upstream >= c->nupstreams)
        return "(bad upstream index)";
    /* The route's upstream index must agree with its name. */
    if (strcmp(c->upstreams[r->upstream].name, r->upstream_name) != 0)
        return "(index and name disagree)";
    return r->upstream_name;
}

static void test_match(void)
{
    struct cfg *c = load(table_yaml);
    if (c == NULL)
        return;
    /* exact host, longest prefix */
    CHECK_STR(match(c, "api.example.com", "/v1/users"), "api_v1");
    CHECK_STR(match(c, "api.example.com", "/v1/"), "api_v1");
    CHECK_STR(match(c, "api.example.com", "/v1"), "api_root");
    CHECK_STR(match(c, "api.example.com", "/v2/x"), "api_root");
    CHECK_STR(match(c, "API.EXAMPLE.COM:8443", "/v1/x"), "api_v1");
    CHECK_STR(match(c, "api.example.com.", "/"), "api_root");
    /* exact beats wildcard, even with a longer wildcard path */
    CHECK_STR(match(c, "api.example.com", "/static/x"), "api_root");
    /* wildcard: one or more labels, never the bare suffix */
    CHECK_STR(match(c, "a.example.com", "/"), "wild");
    CHECK_STR(match(c, "a.example.com", "/static/app.js"), "wild_static");
    CHECK_STR(match(c, "x.y.example.com", "/"), "wild");
    CHECK_STR(match(c, "example.com", "/"), "any");
    CHECK_STR(match(c, "xexample.com", "/"), "any");
    CHECK_STR(match(c, "a.xexample.com", "/"), "any");
    CHECK_STR(match(c, "example.com.evil.org", "/"), "any");
    /* the longest wildcard suffix first, whatever the path */
    CHECK_STR(match(c, "a.b.example.com", "/"), "wild_b");
    CHECK_STR(match(c, "z.a.b.example.com", "/"), "wild_b");
    CHECK_STR(match(c, "a.b.example.com", "/static/x"), "wild_b");
    CHECK_STR(match(c, "b.example.com", "/"), "wild");
    /* a tier without a matching path falls through */
    CHECK_STR(match(c, "exact.example.com", "/x/1"), "exact_x");
    CHECK_STR(match(c, "exact.example.com", "/y"), "wild");
    CHECK_STR(match(c, "exact.example.com", "/static/y"), "wild_static");
    /* no-host tier, longest prefix */
    CHECK_STR(match(c, "other.org", "/"), "any");
    CHECK_STR(match(c, "other.org", "/only/x"), "any_only");
    CHECK_STR(match(c, "other.org", "/only/deeper/x"), "any_deeper");
    CHECK_STR(match(c, "other.org", "/only"), "any");
    CHECK_STR(match(c, "other.org", "/nullhost/a"), "any_null");
    CHECK_STR(match(c, "", "/only/x"), "any_only"); /* HTTP/1.0 without Host */
    /* IPv6 literal hosts */
    CHECK_STR(match(c, "[::1]:8443", "/a"), "v6");
    CHECK_STR(match(c, "[::2]", "/a"), "any");
    /* Path matching is case-sensitive, on paths compared as RFC 3986
     * normalizes them: escaped unreserved characters are themselves. */
    CHECK_STR(match(c, "api.example.com", "/V1/x"), "api_root");
    CHECK_STR(match(c, "api.example.com", "/%76%31/users"), "api_v1");
    CHECK_STR(match(c, "api.example.com", "/%761/"), "api_v1");
    CHECK_STR(match(c, "other.org", "/%6fnly/%64eeper/x"), "any_deeper");
    CHECK_STR(match(c, "other.org", "/%6Fnly/x"), "any_only");
    /* Reserved characters stay escaped: "%2F" is not a "/". */
    CHECK_STR(match(c, "other.org", "/only%2Fdeeper/x"), "any");
    /* Broken escapes are plain bytes. */
    CHECK_STR(match(c, "other.org", "/%6"), "any");
    CHECK_STR(match(c, "other.org", "/%zzonly/"), "any");

    CHECK_INT(c->routes[1].wildcard, 0);
    CHECK_STR(c->routes[1].host, "api.example.com");
    CHECK(c->routes[10].host == NULL);
    cfg_free(&c);
}

static void test_no_match(void)
{
    struct cfg *c = load(LISTENERS
                         "routes:\n"
                         "  - host: foo.com\n"
                         "    path: /a/\n"
                         "    upstream: foo\n"
                         "  - host: \"*.bar.com\"\n"
                         "    path: /\n"
                         "    upstream: bar\n"
                         "  - path: /api/\n"
                         "    upstream: api\n"
                         UPSTREAMS(UP("foo") UP("bar") UP("api")));
    if (c == NULL)
        return;
    CHECK_STR(match(c, "foo.com", "/a/x"), "foo");
    CHECK_STR(match(c, "foo.com", "/b"), "(none)");
    CHECK_STR(match(c, "foo.com", "/api/x"), "api");
    CHECK_STR(match(c, "other.com", "/a/x"), "(none)");
    CHECK_STR(match(c, "bar.com", "/"), "(none)");
    CHECK_STR(match(c, "x.bar.com", "/anything"), "bar");
    CHECK_STR(match(c, "", "/"), "(none)");
    CHECK_STR(match(c, "", "/api/v1"), "api");
    CHECK_STR(match(c, "sub.foo.com", "/a/x"), "(none)");
    cfg_free(&c);

    /* No route at all for a host when the table only has hosts. */
    c = load(LISTENERS
             "routes:\n"
             "  - host: only.example\n"
             "    upstream: u\n"
             UPSTREAMS(UP("u")));
    if (c != NULL) {
        CHECK_STR(match(c, "only.example", "/"), "u");
        CHECK_STR(match(c, "Only.Example:1", "/deep/path"), "u");
        CHECK_STR(match(c, "other.example", "/"), "(none)");
        CHECK_STR(match(c, "", "/"), "(none)");
        cfg_free(&c);
    }
}

/* Escapes in a route's own path compare as in requests. */
static void test_escaped_route_paths(void)
{
    struct cfg *c = load(LISTENERS
                         "routes:\n"
                         "  - path: /caf%c3%a9/\n"
                         "    upstream: cafe\n"
                         "  - path: /%7euser/\n"
                         "    upstream: tilde\n"
                         "  - path: /\n"
                         "    upstream: any\n"
                         UPSTREAMS(UP("cafe") UP("tilde") UP("any")));
    if (c == NULL)
        return;
    CHECK_STR(match(c, "a.test", "/caf%C3%A9/menu"), "cafe");
    CHECK_STR(match(c, "a.test", "/caf%c3%a9/"), "cafe");
    CHECK_STR(match(c, "a.test", "/caf%C3%A8/"), "any");
    CHECK_STR(match(c, "a.test", "/~user/x"), "tilde");
    CHECK_STR(match(c, "a.test", "/%7Euser/x"), "tilde");
    cfg_free(&c);
}

/* Route order in the file never matters, only specificity. */
static void test_order_independent(void)
{
    struct cfg *c = load(LISTENERS
                         "routes:\n"
                         "  - path: /\n"
                         "    upstream: any\n"
                         "  - host: \"*.example.com\"\n"
                         "    path: /\n"
                         "    upstream: wild\n"
                         "  - host: \"*.a.example.com\"\n"
                         "    path: /\n"
                         "    upstream: wild_a\n"
                         "  - host: x.a.example.com\n"
                         "    path: /\n"
                         "    upstream: exact\n"
                         "  - host: x.a.example.com\n"
                         "    path: /deep/\n"
                         "    upstream: exact_deep\n"
                         UPSTREAMS(UP("any") UP("wild") UP("wild_a") UP("exact") UP("exact_deep")));
    if (c == NULL)
        return;
    CHECK_STR(match(c, "x.a.example.com", "/"), "exact");
    CHECK_STR(match(c, "x.a.example.com", "/deep/1"), "exact_deep");
    CHECK_STR(match(c, "y.a.example.com", "/"), "wild_a");
    CHECK_STR(match(c, "y.example.com", "/"), "wild");
    CHECK_STR(match(c, "example.com", "/"), "any");
    cfg_free(&c);
}

int main(void)
{
    test_normalize();
    test_match();
    test_no_match();
    test_order_independent();
    test_escaped_route_paths();
    return check_result();
}
