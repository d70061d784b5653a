/*
 * Unit tests for config: the YAML schema as users write it, loaded with
 * cfg_load_string(); values, defaults, path resolution, every class of
 * error with its exact "file:line:col: message", unsupported keys, nulls,
 * trusted proxies and alias bombs.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "strutil.h"
#include "log.h"

/* Lines 1-7, 8-10 and 11-13 of a minimal valid configuration. */
#define BASE_LISTENERS                                                                     \
    "listeners:\n"                                                                         \
    "  - name: a\n"                                                                        \
    "    bind: \"127.0.0.1:8443\"\n"                                                       \
    "    tls:\n"                                                                           \
    "      certificates:\n"                                                                \
    "        - cert: c.pem\n"                                                              \
    "          key: k.pem\n"
#define BASE_ROUTES                                                                        \
    "routes:\n"                                                                            \
    "  - path: /\n"                                                                        \
    "    upstream: web\n"
#define BASE_UPSTREAMS                                                                     \
    "upstreams:\n"                                                                         \
    "  web:\n"                                                                             \
    "    servers: [\"127.0.0.1:3000\"]\n"
#define BASE BASE_LISTENERS BASE_ROUTES BASE_UPSTREAMS /* additions start on line 14 */

static char err[8192];

static struct cfg *load_dir(const char *text, const char *dir)
{
    struct cfg *c = NULL;
    err[0] = '\0';
    int rc = cfg_load_string("t.yaml", text, strlen(text), dir, &c, err, sizeof(err));
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  unexpected errors:\n%s\n", err);
        return NULL;
    }
    CHECK(c != NULL);
    return c;
}

static struct cfg *load(const char *text)
{
    return load_dir(text, "/srv/moat");
}

/* Loads text expecting failure; the errors are left in err. */
static int load_fails(const char *text)
{
    struct cfg *c = NULL;
    err[0] = '\0';
    int rc = cfg_load_string("t.yaml", text, strlen(text), "/srv/moat", &c, err, sizeof(err));
    CHECK_INT(rc, -1);
    if (rc == 0) {
        fprintf(stderr, "  accepted a bad configuration:\n%s\n", text);
        cfg_free(&c);
        return 0;
    }
    return 1;
}

/* The whole error text must be exactly want. */
static void expect_error(const char *text, const char *want)
{
    if (load_fails(text))
        CHECK_STR(err, want);
}

/* The error text must contain want. */
static void expect_error_part(const char *text, const char *want)
{
    if (load_fails(text))
        CHECK_CONTAINS(err, want);
}

static const char full_yaml[] =
    "workers: 4\n"
    "shutdown_timeout: 45s\n"
    "listeners:\n"
    "  - name: public\n"
    "    bind: \"0.0.0.0:8443\"\n"
    "    tls:\n"
    "      certificates:\n"
    "        - cert: certs/site.pem\n"
    "          key: certs/site.key\n"
    "        - cert: /etc/moat/other.pem\n"
    "          key: /etc/moat/other.key\n"
    "      min_version: \"1.3\"\n"
    "      ciphers: \"ECDHE-ECDSA-AES128-GCM-SHA256:TLS13-AES128-GCM-SHA256\"\n"
    "      alpn: [\"http/1.1\"]\n"
    "      handshake_timeout: 5s\n"
    "  - name: v6\n"
    "    bind: \"[::1]:9443\"\n"
    "    tls:\n"
    "      certificates:\n"
    "        - cert: v6.pem\n"
    "          key: v6.key\n"
    "routes:\n"
    "  - host: API.Example.com\n"
    "    path: /v1/\n"
    "    upstream: api\n"
    "  - host: \"*.Example.org.\"\n"
    "    path: /\n"
    "    upstream: web\n"
    "  - path: /\n"
    "    upstream: web\n"
    "upstreams:\n"
    "  web:\n"
    "    servers: [\"127.0.0.1:3000\", \"[::1]:3001\"]\n"
    "    balance: round_robin\n"
    "    connect_timeout: 250ms\n"
    "    response_timeout: 2m\n"
    "    keepalive: 8\n"
    "  api:\n"
    "    servers:\n"
    "      - \"10.0.0.1:80\"\n"
    "timeouts:\n"
    "  client_header: 5s\n"
    "  client_idle: 1m\n"
    "limits:\n"
    "  max_connections: 1000\n"
    "  max_header_bytes: 16k\n"
    "  max_uri_bytes: 4k\n"
    "  max_headers: 50\n"
    "  max_body_bytes: 1m\n"
    "forwarding:\n"
    "  trusted_proxies: [\"10.0.0.0/8\", \"192.168.1.1\", \"fd00::/8\"]\n"
    "  hsts: \"max-age=300; includeSubDomains\"\n"
    "log:\n"
    "  access: logs/access.log\n"
    "  format: combined\n"
    "  level: debug\n";

static void test_full(void)
{
    struct cfg *c = load(full_yaml);
    if (c == NULL)
        return;
    CHECK_STR(c->path, "t.yaml");
    CHECK_STR(c->dir, "/srv/moat");
    CHECK_INT(c->embedded_default, 0);
    CHECK_INT(c->workers, 4);
    CHECK_INT(c->shutdown_timeout_ms, 45000);

    CHECK_INT(c->nlisteners, 2);
    if (c->nlisteners == 2) {
        const struct cfg_listener *l = &c->listeners[0];
        CHECK_STR(l->name, "public");
        CHECK_STR(l->bind, "0.0.0.0:8443");
        CHECK_INT(l->addr.ss_family, AF_INET);
        CHECK_INT(ntohs(((const struct sockaddr_in *)&l->addr)->sin_port), 8443);
        CHECK_INT(l->has_tls, 1);
        CHECK_INT(l->tls.ncerts, 2);
        if (l->tls.ncerts == 2) {
            CHECK_STR(l->tls.certs[0].cert, "/srv/moat/certs/site.pem");
            CHECK_STR(l->tls.certs[0].key, "/srv/moat/certs/site.key");
            CHECK_STR(l->tls.certs[1].cert, "/etc/moat/other.pem");
            CHECK_STR(l->tls.certs[1].key, "/etc/moat/other.key");
            CHECK_INT(l->tls.certs[1].pos.line, 10);
            CHECK_INT(l->tls.certs[1].pos.col, 11);
        }
        CHECK_STR(l->tls.min_version, "1.3");
        CHECK_STR(l->tls.ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256:TLS13-AES128-GCM-SHA256");
        CHECK_INT(l->tls.nalpn, 1);
        if (l->tls.nalpn == 1)
            CHECK_STR(l->tls.alpn[0], "http/1.1");
        CHECK_INT(l->tls.handshake_timeout_ms, 5000);
        CHECK_INT(l->pos.line, 4);
        CHECK_INT(l->pos.col, 5);
        CHECK_INT(l->bind_pos.line, 5);
        CHECK_INT(l->bind_pos.col, 11);

        l = &c->listeners[1];
        CHECK_STR(l->name, "v6");
        CHECK_INT(l->addr.ss_family, AF_INET6);
        CHECK_INT(ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port), 9443);
        CHECK_INT(l->tls.ncerts, 1);
        if (l->tls.ncerts == 1)
            CHECK_STR(l->tls.certs[0].cert, "/srv/moat/v6.pem");
        CHECK_STR(l->tls.min_version, "1.2");
        CHECK(l->tls.ciphers == NULL);
        CHECK_INT(l->tls.handshake_timeout_ms, 10000);
    }

    CHECK_INT(c->nupstreams, 2);
    if (c->nupstreams == 2) {
        const struct cfg_upstream *u = &c->upstreams[0];
        CHECK_STR(u->name, "web");
        CHECK_INT(u->nserver_specs, 2);
        CHECK_INT(u->nservers, 2);
        if (u->nservers == 2) {
            char a[64];
            CHECK_STR(u->servers[0].name, "127.0.0.1:3000");
            CHECK_INT(u->servers[0].addr.ss_family, AF_INET);
            CHECK_STR(u->servers[1].name, "[::1]:3001");
            CHECK_INT(u->servers[1].addr.ss_family, AF_INET6);
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&u->servers[1].addr)->sin6_addr,
                      a, sizeof(a));
            CHECK_STR(a, "::1");
        }
        CHECK_STR(u->balance, "round_robin");
        CHECK_INT(u->connect_timeout_ms, 250);
        CHECK_INT(u->response_timeout_ms, 120000);
        CHECK_INT(u->keepalive, 8);
        u = &c->upstreams[1];
        CHECK_STR(u->name, "api");
        CHECK_INT(u->nservers, 1);
        if (u->nservers == 1)
            CHECK_INT(ntohs(((const struct sockaddr_in *)&u->servers[0].addr)->sin_port), 80);
        CHECK_INT(u->keepalive, 32);
    }

    CHECK_INT(c->nroutes, 3);
    if (c->nroutes == 3) {
        const struct cfg_route *r = &c->routes[0];
        CHECK_STR(r->host, "api.example.com");
        CHECK_INT(r->wildcard, 0);
        CHECK_STR(r->path, "/v1/");
        CHECK_STR(r->upstream_name, "api");
        CHECK_INT(r->upstream, 1);
        CHECK_INT(r->pos.line, 23);
        CHECK_INT(r->pos.col, 5);
        CHECK_INT(r->upstream_pos.line, 25);
        CHECK_INT(r->upstream_pos.col, 15);
        r = &c->routes[1];
        CHECK_STR(r->host, ".example.org"); /* lower case, no trailing dot, "*" dropped */
        CHECK_INT(r->wildcard, 1);
        CHECK_INT(r->upstream, 0);
        r = &c->routes[2];
        CHECK(r->host == NULL);
        CHECK_STR(r->path, "/");
        CHECK_INT(r->upstream, 0);
    }

    CHECK_INT(c->timeouts.client_header_ms, 5000);
    CHECK_INT(c->timeouts.client_idle_ms, 60000);
    CHECK_INT(c->limits.max_connections, 1000);
    CHECK_INT(c->limits.max_header_bytes, 16384);
    CHECK_INT(c->limits.max_uri_bytes, 4096);
    CHECK_INT(c->limits.max_headers, 50);
    CHECK_INT(c->limits.max_body_bytes, 1048576);
    CHECK_INT(c->forwarding.ntrusted_proxies, 3);
    CHECK_INT(c->forwarding.ntrusted, 3);
    if (c->forwarding.ntrusted == 3) {
        CHECK_STR(c->forwarding.trusted_proxies[1], "192.168.1.1");
        CHECK_INT(c->forwarding.trusted[0].family, AF_INET);
        CHECK_INT(c->forwarding.trusted[0].prefix, 8);
        CHECK_INT(c->forwarding.trusted[1].prefix, 32);
        CHECK_INT(c->forwarding.trusted[2].family, AF_INET6);
        CHECK_INT(c->forwarding.trusted[2].prefix, 8);
    }
    CHECK_STR(c->forwarding.hsts, "max-age=300; includeSubDomains");
    CHECK_STR(c->log.access, "/srv/moat/logs/access.log");
    CHECK_STR(c->log.format, "combined");
    CHECK_STR(c->log.level, "debug");
    CHECK_INT(c->log.access_format, LOG_FORMAT_COMBINED);
    CHECK_INT(c->log.error_level, LOG_DEBUG);
    cfg_free(&c);
    CHECK(c == NULL);
    cfg_free(&c); /* idempotent */
}

static void test_defaults(void)
{
    struct cfg *c = load(BASE);
    if (c == NULL)
        return;
    CHECK(c->workers >= 1);
    CHECK_INT(c->workers, sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1);
    CHECK_INT(c->shutdown_timeout_ms, 30000);
    CHECK_INT(c->nlisteners, 1);
    if (c->nlisteners == 1) {
        const struct cfg_tls *t = &c->listeners[0].tls;
        CHECK_INT(t->handshake_timeout_ms, 10000);
        CHECK_STR(t->min_version, "1.2");
        CHECK(t->ciphers == NULL);
        CHECK_INT(t->nalpn, 1);
        if (t->nalpn == 1)
            CHECK_STR(t->alpn[0], "http/1.1");
        CHECK_INT(t->ncerts, 1);
        if (t->ncerts == 1) {
            CHECK_STR(t->certs[0].cert, "/srv/moat/c.pem");
            CHECK_STR(t->certs[0].key, "/srv/moat/k.pem");
        }
    }
    CHECK_INT(c->limits.max_header_bytes, 16384);
    CHECK_INT(c->limits.max_uri_bytes, 8192);
    CHECK_INT(c->limits.max_headers, 100);
    CHECK_INT(c->limits.max_body_bytes, 0);
    CHECK_INT(c->limits.max_connections, 65536);
    CHECK_INT(c->timeouts.client_header_ms, 10000);
    CHECK_INT(c->timeouts.client_idle_ms, 60000);
    CHECK_INT(c->nupstreams, 1);
    if (c->nupstreams == 1) {
        CHECK_INT(c->upstreams[0].keepalive, 32);
        CHECK_INT(c->upstreams[0].connect_timeout_ms, 3000);
        CHECK_INT(c->upstreams[0].response_timeout_ms, 60000);
        CHECK_STR(c->upstreams[0].balance, "round_robin");
    }
    CHECK_INT(c->nroutes, 1);
    if (c->nroutes == 1) {
        CHECK(c->routes[0].host == NULL);
        CHECK_STR(c->routes[0].path, "/");
        CHECK_INT(c->routes[0].upstream, 0);
    }
    CHECK_STR(c->forwarding.hsts, "max-age=63072000");
    CHECK_INT(c->forwarding.ntrusted, 0);
    CHECK_STR(c->log.access, "stdout");
    CHECK_STR(c->log.format, "json");
    CHECK_STR(c->log.level, "info");
    CHECK_INT(c->log.access_format, LOG_FORMAT_JSON);
    CHECK_INT(c->log.error_level, LOG_INFO);
    cfg_free(&c);

    /* "auto" written out, and empty sections, mean the same. */
    c = load(BASE "workers: auto\ntimeouts:\nlimits: {}\nlog:\n");
    if (c != NULL) {
        CHECK(c->workers >= 1);
        CHECK_INT(c->timeouts.client_header_ms, 10000);
        CHECK_INT(c->limits.max_headers, 100);
        CHECK_STR(c->log.access, "stdout");
        cfg_free(&c);
    }
    c = load(BASE "workers: 1\n");
    if (c != NULL) {
        CHECK_INT(c->workers, 1);
        cfg_free(&c);
    }
}

static void test_embedded_default(void)
{
    struct cfg *c = NULL;
    err[0] = '\0';
    int rc = cfg_load_default(&c, err, sizeof(err));
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK_INT(c->embedded_default, 1);
    CHECK(c->workers >= 1);
    CHECK_INT(c->nlisteners, 1);
    if (c->nlisteners == 1) {
        const struct cfg_listener *l = &c->listeners[0];
        char a[64];
        CHECK_INT(l->has_tls, 1);
        CHECK_INT(l->tls.ncerts, 0);
        CHECK_INT(l->addr.ss_family, AF_INET);
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&l->addr)->sin_addr, a, sizeof(a));
        CHECK_STR(a, "127.0.0.1");
        CHECK_INT(ntohs(((const struct sockaddr_in *)&l->addr)->sin_port), 8443);
    }
    CHECK_INT(c->nroutes, 1);
    if (c->nroutes == 1) {
        CHECK(c->routes[0].host == NULL);
        CHECK_STR(c->routes[0].path, "/");
    }
    CHECK_INT(c->nupstreams, 1);
    if (c->nupstreams == 1 && c->upstreams[0].nservers == 1) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&c->upstreams[0].servers[0].addr;
        char a[64];
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
        CHECK_STR(a, "127.0.0.1");
        CHECK_INT(ntohs(in->sin_port), 8080);
    } else {
        CHECK(0);
    }
    CHECK_INT(c->limits.max_header_bytes, 16384);
    CHECK_STR(c->forwarding.hsts, "max-age=63072000");
    cfg_free(&c);

    /* Outside the embedded default, tls needs a certificate. */
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"127.0.0.1:8443\"\n"
                 "    tls:\n"
                 "      certificates: []\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:5:7: listener \"a\": tls needs at least one certificate");
}

static void test_paths(void)
{
    struct cfg *c = load_dir(BASE "log:\n  access: /var/log/moat.log\n", "/etc/moat");
    if (c != NULL) {
        CHECK_STR(c->listeners[0].tls.certs[0].cert, "/etc/moat/c.pem");
        CHECK_STR(c->log.access, "/var/log/moat.log");
        cfg_free(&c);
    }
    c = load_dir(BASE "log:\n  access: stderr\n", "/etc/moat");
    if (c != NULL) {
        CHECK_STR(c->log.access, "stderr");
        cfg_free(&c);
    }

    /* cfg_load: relative to the file's own directory. */
    char dir[] = "/tmp/moat-test-config-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        CHECK(0);
        return;
    }
    char path[256], want[400];
    snprintf(path, sizeof(path), "%s/moat.yaml", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs(BASE, f);
    fclose(f);
    int rc = cfg_load(path, &c, err, sizeof(err));
    CHECK_INT(rc, 0);
    if (rc == 0) {
        CHECK_STR(c->path, path);
        CHECK_STR(c->dir, dir);
        snprintf(want, sizeof(want), "%s/c.pem", dir);
        CHECK_STR(c->listeners[0].tls.certs[0].cert, want);
        cfg_free(&c);
    } else {
        fprintf(stderr, "  %s\n", err);
    }
    /* A file error names the file. */
    f = fopen(path, "w");
    if (f != NULL) {
        fputs(BASE "workers: 0\n", f);
        fclose(f);
        CHECK_INT(cfg_load(path, &c, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "%s:14:10: \"workers\": 0 is out of range (1 to 256)", path);
        CHECK_STR(err, want);
    }
    unlink(path);
    rmdir(dir);
    snprintf(path, sizeof(path), "%s/absent.yaml", dir);
    CHECK_INT(cfg_load(path, &c, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "absent.yaml: cannot open");
}

/* The base configuration with a second TLS listener "b" on bind. */
static void second_listener_yaml(char *out, size_t len, const char *bind)
{
    snprintf(out, len,
             BASE_LISTENERS "  - name: b\n"
                            "    bind: \"%s\"\n"
                            "    tls:\n"
                            "      certificates:\n"
                            "        - cert: c.pem\n"
                            "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
             bind);
}

static void test_errors_exact(void)
{
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - path: /\n"
                 "    upstream: api\n" BASE_UPSTREAMS,
                 "t.yaml:10:15: upstream \"api\" is not defined");
    expect_error(BASE "worker: 4\n",
                 "t.yaml:14:1: unknown key \"worker\" in the top level; did you mean \"workers\"?");
    expect_error(BASE "timeouts:\n  client_hedaer: 5s\n",
                 "t.yaml:15:3: unknown key \"client_hedaer\" in timeouts; did you mean "
                 "\"client_header\"?");
    expect_error(BASE "frobnicate: 1\n", "t.yaml:14:1: unknown key \"frobnicate\" in the top level");
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"127.0.0.1:8443\"\n"
                 "    tls:\n"
                 "      certificate:\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:5:7: unknown key \"certificate\" in tls; did you mean \"certificates\"?");
    expect_error(BASE "workers: 2\nworkers: 3\n",
                 "t.yaml:15:1: key \"workers\" is given twice in the top level");
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"127.0.0.1:8443\"\n"
                 "    bind: \"127.0.0.1:8444\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:4:5: key \"bind\" is given twice in listener");
    expect_error(BASE_LISTENERS BASE_ROUTES BASE_UPSTREAMS "  web:\n    servers: [\"127.0.0.1:1\"]\n",
                 "t.yaml:14:3: upstream \"web\" is defined twice");

    /* wrong types */
    expect_error(BASE "workers: [1]\n",
                 "t.yaml:14:10: \"workers\": expected \"auto\" or a positive integer");
    expect_error(BASE "workers: many\n",
                 "t.yaml:14:10: \"workers\": expected \"auto\" or a positive integer, got \"many\"");
    expect_error(BASE "limits:\n  max_headers: lots\n",
                 "t.yaml:15:16: \"max_headers\": expected a non-negative integer, got \"lots\"");
    expect_error(BASE "timeouts: 5s\n", "t.yaml:14:11: \"timeouts\": expected a mapping");
    expect_error("listeners: public\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:1:12: \"listeners\": expected a list of mappings");
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n  web:\n    servers: \"127.0.0.1:3000\"\n",
                 "t.yaml:13:14: \"servers\": expected a list of strings");
    expect_error(BASE "workers: null\n",
                 "t.yaml:14:10: \"workers\": expected \"auto\" or a positive integer, got null");
    expect_error(BASE "log:\n  level: verbose\n",
                 "t.yaml:15:10: \"level\": \"verbose\" is not one of \"error\", \"warn\", \"info\", "
                 "\"debug\"");

    /* out of range */
    expect_error(BASE "workers: 0\n", "t.yaml:14:10: \"workers\": 0 is out of range (1 to 256)");
    expect_error(BASE "workers: 257\n", "t.yaml:14:10: \"workers\": 257 is out of range (1 to 256)");
    expect_error(BASE "limits:\n  max_headers: 1001\n",
                 "t.yaml:15:16: \"max_headers\": 1001 is out of range (1 to 1000)");
    expect_error(BASE "limits:\n  max_header_bytes: 512\n",
                 "t.yaml:15:21: \"max_header_bytes\": 512 is out of range (1k to 1m)");
    expect_error(BASE_LISTENERS BASE_ROUTES BASE_UPSTREAMS "    keepalive: 70000\n",
                 "t.yaml:14:16: \"keepalive\": 70000 is out of range (0 to 65535)");
    expect_error(BASE "timeouts:\n  client_header: 0s\n",
                 "t.yaml:15:18: \"client_header\": 0s is out of range (1ms to 1h)");

    /* bad durations and sizes */
    expect_error(BASE "timeouts:\n  client_header: 10x\n",
                 "t.yaml:15:18: \"client_header\": expected a duration such as 250ms, 10s, 5m or "
                 "12h, got \"10x\"");
    expect_error(BASE "shutdown_timeout: -1s\n",
                 "t.yaml:14:19: \"shutdown_timeout\": expected a duration such as 250ms, 10s, 5m "
                 "or 12h, got \"-1s\"");
    expect_error(BASE "limits:\n  max_body_bytes: 1.5m\n",
                 "t.yaml:15:19: \"max_body_bytes\": expected a size such as 512, 16k or 1m, got "
                 "\"1.5m\"");

    /* bind addresses and listeners */
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"localhost:8443\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:3:11: listener \"a\": bind \"localhost:8443\": \"localhost\" is not a "
                 "numeric IP address");
    expect_error_part("listeners:\n"
                      "  - name: a\n"
                      "    bind: \"127.0.0.1\"\n"
                      "    tls:\n"
                      "      certificates:\n"
                      "        - cert: c.pem\n"
                      "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                      "t.yaml:3:11: listener \"a\": bind \"127.0.0.1\": expected \"host:port\"");
    expect_error_part("listeners:\n"
                      "  - name: a\n"
                      "    bind: \"[::1]:70000\"\n"
                      "    tls:\n"
                      "      certificates:\n"
                      "        - cert: c.pem\n"
                      "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                      "t.yaml:3:11: listener \"a\": bind \"[::1]:70000\": invalid port \"70000\"");
    expect_error(BASE_LISTENERS
                 "  - name: a\n"
                 "    bind: \"127.0.0.1:9443\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:8:5: listener \"a\" is defined twice");
    expect_error(BASE_LISTENERS
                 "  - name: b\n"
                 "    bind: \"127.0.0.1:8443\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:9:11: listener \"b\": 127.0.0.1:8443 is already bound by \"a\"");
    /* Written differently, the same socket: the kernel would split clients. */
    static const char *const overlapping[] = {"0.0.0.0:8443", "[::]:8443", "[::ffff:127.0.0.1]:8443"};
    for (size_t i = 0; i < sizeof(overlapping) / sizeof(overlapping[0]); i++) {
        char yaml[1024], want[256];
        second_listener_yaml(yaml, sizeof(yaml), overlapping[i]);
        snprintf(want, sizeof(want),
                 "t.yaml:9:11: listener \"b\": %s overlaps 127.0.0.1:8443 of \"a\": the kernel "
                 "would split clients between them",
                 overlapping[i]);
        expect_error(yaml, want);
    }
    /* Other addresses or ports on the same machine are fine. */
    static const char *const apart[] = {"127.0.0.2:8443", "[::1]:8443", "0.0.0.0:8444"};
    for (size_t i = 0; i < sizeof(apart) / sizeof(apart[0]); i++) {
        char yaml[1024];
        second_listener_yaml(yaml, sizeof(yaml), apart[i]);
        struct cfg *c = load(yaml);
        cfg_free(&c);
    }
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:2:5: listener: missing required key \"bind\"");
    expect_error("listeners: []\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:1:12: at least one listener is needed");
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"127.0.0.1:8443\"\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:2:5: listener \"a\": needs exactly one of \"tls\" (HTTPS) and "
                 "\"redirect_to_https\" (plain HTTP answering with redirects)");
    expect_error("listeners:\n"
                 "  - name: a b\n"
                 "    bind: \"127.0.0.1:8443\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:2:5: listener name \"a b\" must be 1-64 of [A-Za-z0-9_.-]");
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"127.0.0.1:8443\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n"
                 "      alpn: [h2]\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:5:7: listener \"a\": alpn \"h2\" is not supported (moat speaks http/1.1)");

    /* upstreams */
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n  web:\n    servers: []\n",
                 "t.yaml:13:14: upstream \"web\": servers must not be empty");
    /* Errors about one list item point at the item. */
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n  web:\n    servers: [\"127.0.0.1:0\"]\n",
                 "t.yaml:13:15: upstream \"web\": server \"127.0.0.1:0\" needs a port");
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n  web:\n    keepalive: 1\n",
                 "t.yaml:13:5: upstream: missing required key \"servers\"");
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n  web:\n    servers: [\"127.0.0.1:3000\"]\n"
                 "  \"w b\":\n    servers: [\"127.0.0.1:3000\"]\n",
                 "t.yaml:15:5: upstream name \"w b\" must be 1-64 of [A-Za-z0-9_.-]");

    /* routes */
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - host: bad host\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route host \"bad host\" is not a host name, \"*.suffix\" or [ipv6]");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - host: a.*.com\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route host \"a.*.com\" is not a host name, \"*.suffix\" or [ipv6]");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - host: \"*.*.example.com\"\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route host \"*.*.example.com\" is not a host name, \"*.suffix\" or "
                 "[ipv6]");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - host: \"[::1\"\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route host \"[::1\" is not a host name, \"*.suffix\" or [ipv6]");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - path: v1/\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route path \"v1/\" must start with \"/\" and hold no spaces, \"?\" or "
                 "\"#\"");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - path: /a?b\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route path \"/a?b\" must start with \"/\" and hold no spaces, \"?\" "
                 "or \"#\"");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - path: /\n"
                 "    upstream: web\n"
                 "  - path: /\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:11:5: route for host \"(any)\" path \"/\" is defined twice");
    /* Routes are compared as RFC 3986 normalizes paths. */
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - path: /dup/\n"
                 "    upstream: web\n"
                 "  - path: /d%75p/\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:11:5: route for host \"(any)\" path \"/dup/\" is defined twice");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - path: /bad%zz/\n"
                 "    upstream: web\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route path \"/bad%zz/\" has a broken percent-escape or %00");
    {
        struct cfg *c = load(BASE_LISTENERS
                             "routes:\n"
                             "  - path: /caf%c3%a9/%7eme/%2f\n"
                             "    upstream: web\n" BASE_UPSTREAMS);
        if (c != NULL) {
            CHECK_STR(c->routes[0].path, "/caf%C3%A9/~me/%2F");
            cfg_free(&c);
        }
    }
    expect_error(BASE_LISTENERS "routes: []\n" BASE_UPSTREAMS,
                 "t.yaml:8:9: at least one route is needed");
    expect_error(BASE_LISTENERS
                 "routes:\n"
                 "  - path: /\n" BASE_UPSTREAMS,
                 "t.yaml:9:5: route: missing required key \"upstream\"");
    expect_error(BASE_LISTENERS BASE_ROUTES,
                 "t.yaml:1:1: the top level: missing required key \"upstreams\"");

    /* forwarding and log */
    expect_error(BASE "forwarding:\n  trusted_proxies: [\"10.0.0.0/33\"]\n",
                 "t.yaml:15:21: trusted_proxies: \"10.0.0.0/33\" is not an address or CIDR");
    expect_error(BASE "forwarding:\n  hsts: \"max-age=1\\n\"\n",
                 "t.yaml:15:9: hsts: the value must be printable ASCII");
    {
        char text[sizeof(BASE) + 400];
        snprintf(text, sizeof(text), BASE "forwarding:\n  hsts: \"max-age=1; %0*d\"\n", 250, 0);
        expect_error(text, "t.yaml:15:9: hsts: the value is longer than 256 characters");
    }
    expect_error(BASE "log:\n  access: \"\"\n", "t.yaml:15:11: log.access: empty path");
    /* hsts: false used to be sent as "Strict-Transport-Security: false" */
    expect_error(BASE "forwarding:\n  hsts: false\n",
                 "t.yaml:15:9: \"hsts\": expected a string, got the YAML boolean false (quote it "
                 "to mean the word; null for none)");
    {
        static const struct {
            const char *value, *problem;
        } bad[] = {
            {"\"includeSubDomains\"", "needs max-age=SECONDS"},
            {"\"\"", "needs max-age=SECONDS"},
            {"\"max-age=\"", "needs max-age=SECONDS, a number"},
            {"\"max-age=5x\"", "needs max-age=SECONDS, a number"},
            {"\"max-age=5;max-age=6\"", "has a directive twice"},
            {"\"max-age=1, preload\"", "is not a list of directives separated by \";\""},
            {"'max-age=\"12'", "has an unterminated quoted value"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char text[sizeof(BASE) + 200], want[400], shown[64];
            snprintf(text, sizeof(text), BASE "forwarding:\n  hsts: %s\n", bad[i].value);
            /* the value as moat quotes it: YAML's quotes gone */
            snprintf(shown, sizeof(shown), "%.*s", (int)strlen(bad[i].value) - 2, bad[i].value + 1);
            snprintf(want, sizeof(want),
                     "t.yaml:15:9: hsts: \"%s\" %s, or browsers ignore it (RFC 6797; "
                     "\"max-age=63072000\"); null sends no Strict-Transport-Security",
                     shown, bad[i].problem);
            expect_error(text, want);
        }
    }
    {
        struct cfg *c = load(BASE "forwarding:\n  hsts: \"includeSubDomains; Max-Age = \\\"300\\\"\"\n");
        if (c != NULL) {
            CHECK_STR(c->forwarding.hsts, "includeSubDomains; Max-Age = \"300\"");
            cfg_free(&c);
        }
    }
    /* access: off wrote to a file named "off" */
    expect_error(BASE "log:\n  access: off\n",
                 "t.yaml:15:11: \"access\": expected a string, got the YAML boolean off (quote "
                 "it to mean the word; null for none)");
    expect_error(BASE "log:\n  access: !!bool \"false\"\n",
                 "t.yaml:15:11: \"access\": expected a string, got \"false\" tagged "
                 "tag:yaml.org,2002:bool");
    expect_error(BASE "log:\n  access: >\n    /var/log/moat.log\n",
                 "t.yaml:15:11: \"access\": the block scalar keeps its final line break; write "
                 ">- (or quote the value)");
    expect_error(BASE "log:\n  access: n\n",
                 "t.yaml:15:11: \"access\": expected a string, got the YAML boolean n (quote "
                 "it to mean the word; null for none)");
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n  web:\n    servers: [\"127.0.0.1:1\"]\n"
                 "    health_check: {path: yes}\n",
                 "t.yaml:14:26: \"path\": expected a string, got the YAML boolean yes (quote it "
                 "to mean the word)");
}

/* An error about one list item points at that item, not at the list. */
static void test_error_item_positions(void)
{
    expect_error(BASE "forwarding:\n"
                      "  trusted_proxies:\n"
                      "    - 10.0.0.0/8\n"
                      "    - banana\n",
                 "t.yaml:17:7: trusted_proxies: \"banana\" is not an address or CIDR");
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n"
                                            "  web:\n"
                                            "    servers:\n"
                                            "      - \"127.0.0.1:3000\"\n"
                                            "      - \"127.0.0.1\"\n",
                 "t.yaml:15:9: upstream \"web\": server \"127.0.0.1\": expected host:port");
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n"
                                            "  web:\n"
                                            "    servers: [\"::1:3000\"]\n",
                 "t.yaml:13:15: upstream \"web\": server \"::1:3000\": an IPv6 address goes in "
                 "brackets: \"[::1]:3000\"");
    expect_error(BASE_LISTENERS BASE_ROUTES "upstreams:\n"
                                            "  web:\n"
                                            "    servers: [\"127.0.0.1:99999\"]\n",
                 "t.yaml:13:15: upstream \"web\": server \"127.0.0.1:99999\": port 99999 is out "
                 "of range (1 to 65535)");
}

static void test_errors_yaml(void)
{
    if (load_fails(BASE "workers: [1, 2\n"))
        CHECK_CONTAINS(err, "YAML syntax error");
    if (load_fails(BASE "workers: 1: 2\n")) {
        CHECK_CONTAINS(err, "t.yaml:14:");
        CHECK_CONTAINS(err, "YAML syntax error: mapping values are not allowed");
    }
    if (load_fails(BASE "\tworkers: 1\n")) {
        CHECK_CONTAINS(err, "t.yaml:14:1: YAML syntax error");
    }
    if (load_fails(BASE "routes: *nope\n"))
        CHECK_CONTAINS(err, "t.yaml:14:9: YAML syntax error");

    expect_error(BASE "---\nworkers: 2\n", "t.yaml:15:1: only one YAML document is allowed");
    /* A second document that does not even parse must not be ignored. */
    if (load_fails(BASE "---\n- [\n"))
        CHECK_CONTAINS(err, "t.yaml:1");

    expect_error("- a\n- b\n", "t.yaml:1:1: the configuration must be a YAML mapping");
    expect_error("hello\n", "t.yaml:1:1: the configuration must be a YAML mapping");
    /* Every configuration error has a line and column, an empty file too. */
    expect_error_part("", "t.yaml:1:1: the configuration must be a YAML mapping");
    expect_error_part("# only a comment\n", "t.yaml:1:1: the configuration must be a YAML mapping");
    expect_error(BASE "[1]: x\n", "t.yaml:14:1: keys in the top level must be strings");
}

static void test_errors_multiple(void)
{
    expect_error(BASE "workers: 0\n"
                      "shutdown_timeout: soon\n"
                      "limits:\n"
                      "  max_headers: 0\n",
                 "t.yaml:14:10: \"workers\": 0 is out of range (1 to 256)\n"
                 "t.yaml:15:19: \"shutdown_timeout\": expected a duration such as 250ms, 10s, 5m "
                 "or 12h, got \"soon\"\n"
                 "t.yaml:17:16: \"max_headers\": 0 is out of range (1 to 1000)");
    /* One line per error, whatever the quoted value holds. */
    expect_error(BASE "shutdown_timeout: \"1\\n\\ts\"\n",
                 "t.yaml:14:19: \"shutdown_timeout\": expected a duration such as 250ms, 10s, 5m "
                 "or 12h, got \"1??s\"");
    /* Checks across keys also report every problem. */
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"localhost:8443\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n"
                 "routes:\n"
                 "  - path: /\n"
                 "    upstream: api\n" BASE_UPSTREAMS,
                 "t.yaml:3:11: listener \"a\": bind \"localhost:8443\": \"localhost\" is not a "
                 "numeric IP address\n"
                 "t.yaml:10:15: upstream \"api\" is not defined");

    /* Many errors: bounded output, no overflow of a small buffer. */
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof(text), "%s", BASE);
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "bogus%d: 1\n", i);
    char small[100];
    memset(small, 'Z', sizeof(small));
    struct cfg *c = NULL;
    CHECK_INT(cfg_load_string("t.yaml", text, n, NULL, &c, small, 64), -1);
    CHECK(memchr(small, '\0', 64) != NULL);
    CHECK_INT(small[64], 'Z');
    CHECK_INT(strncmp(small, "t.yaml:14:1: unknown key \"bogus0\"", 32), 0);
    if (load_fails(text)) {
        unsigned lines = 1;
        for (const char *p = err; *p; p++)
            lines += *p == '\n';
        CHECK(lines >= 30 && lines <= 60);
    }
}

/* Session resumption settings (issue 3): values, defaults and bounds. */
static void test_resumption(void)
{
    struct cfg *c = load(BASE_LISTENERS
                         "      session_cache:\n"
                         "        size: 100\n"
                         "        timeout: 2m\n"
                         "      session_tickets:\n"
                         "        enabled: false\n"
                         "        key_file: keys/ticket.key\n"
                         "        rotate: 1h\n" BASE_ROUTES BASE_UPSTREAMS);
    if (c != NULL) {
        const struct cfg_tls *t = &c->listeners[0].tls;
        CHECK_INT(t->session_cache.size, 100);
        CHECK_INT(t->session_cache.timeout_ms, 120000);
        CHECK_INT(t->session_tickets.enabled, 0);
        CHECK_CONTAINS(t->session_tickets.key_file, "keys/ticket.key");
        CHECK_INT(t->session_tickets.rotate_ms, 3600000);
        CHECK_INT(t->session_tickets.key_file_pos.line, 13);
        cfg_free(&c);
    }
    c = load(BASE);
    if (c != NULL) {
        const struct cfg_tls *t = &c->listeners[0].tls;
        CHECK_INT(t->session_cache.size, 20480);
        CHECK_INT(t->session_cache.timeout_ms, 300000);
        CHECK_INT(t->session_tickets.enabled, 1);
        CHECK(t->session_tickets.key_file == NULL);
        CHECK_INT(t->session_tickets.rotate_ms, 12 * 3600000);
        cfg_free(&c);
    }
    /* size 0 disables the cache; key_file null means random keys. */
    c = load(BASE_LISTENERS "      session_cache: {size: 0}\n"
                            "      session_tickets: {key_file: null}\n" BASE_ROUTES BASE_UPSTREAMS);
    if (c != NULL) {
        CHECK_INT(c->listeners[0].tls.session_cache.size, 0);
        CHECK(c->listeners[0].tls.session_tickets.key_file == NULL);
        cfg_free(&c);
    }
    expect_error(BASE_LISTENERS "      session_cache:\n        timeout: 10ms\n" BASE_ROUTES
                     BASE_UPSTREAMS,
                 "t.yaml:9:18: \"timeout\": 10ms is out of range (1s to 24h)");
    expect_error(BASE_LISTENERS "      session_tickets:\n        rotate: 30d\n" BASE_ROUTES
                     BASE_UPSTREAMS,
                 "t.yaml:9:17: \"rotate\": 30d is out of range (1s to 72h)");
    expect_error(BASE_LISTENERS "      session_tickets:\n        enabled: yes\n" BASE_ROUTES
                     BASE_UPSTREAMS,
                 "t.yaml:9:18: \"enabled\": expected true or false, got \"yes\"");
    expect_error(BASE_LISTENERS "      session_cache:\n        entries: 5\n" BASE_ROUTES
                     BASE_UPSTREAMS,
                 "t.yaml:9:9: unknown key \"entries\" in session_cache");
}

/* Lifecycle keys (issue 4): redirect listeners, health checks, least_conn,
 * the admin listener and certificate watching. */
static void test_lifecycle_keys(void)
{
    struct cfg *c = load(BASE_LISTENERS "      watch: true\n"
                         "  - name: plain\n"
                         "    bind: \"127.0.0.1:8080\"\n"
                         "    redirect_to_https: 8443\n" BASE_ROUTES BASE_UPSTREAMS
                         "    balance: least_conn\n"
                         "    health_check:\n"
                         "      path: /healthz\n"
                         "      interval: 2s\n"
                         "admin:\n"
                         "  bind: \"127.0.0.1:9901\"\n");
    if (c != NULL) {
        CHECK_INT(c->listeners[0].tls.watch, 1);
        CHECK_INT(c->listeners[0].redirect_to_https, 0);
        CHECK_INT(c->listeners[1].has_tls, 0);
        CHECK_INT(c->listeners[1].redirect_to_https, 8443);
        CHECK_INT(c->upstreams[0].least_conn, 1);
        CHECK_INT(c->upstreams[0].health_check.enabled, 1);
        CHECK_STR(c->upstreams[0].health_check.path, "/healthz");
        CHECK_INT(c->upstreams[0].health_check.interval_ms, 2000);
        CHECK_INT(c->upstreams[0].health_check.timeout_ms, 2000);
        CHECK_INT(c->admin.enabled, 1);
        CHECK_INT(sockaddr_port((struct sockaddr *)&c->admin.addr), 9901);
        cfg_free(&c);
    }
    /* Redirect listeners alone forward nothing: no routes or upstreams. */
    c = load("listeners:\n"
             "  - name: plain\n"
             "    bind: \"127.0.0.1:8080\"\n"
             "    redirect_to_https: 443\n");
    if (c != NULL) {
        CHECK_INT(c->nroutes, 0);
        CHECK_INT(c->nupstreams, 0);
        cfg_free(&c);
    }
    expect_error(BASE_LISTENERS BASE_UPSTREAMS,
                 "t.yaml:1:1: the top level: missing required key \"routes\"");
    c = load(BASE);
    if (c != NULL) {
        CHECK_INT(c->admin.enabled, 0);
        CHECK_INT(c->upstreams[0].health_check.enabled, 0);
        CHECK_INT(c->upstreams[0].least_conn, 0);
        CHECK_INT(c->listeners[0].tls.watch, 0);
        cfg_free(&c);
    }
    expect_error(BASE_LISTENERS "    redirect_to_https: 443\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:2:5: listener \"a\": needs exactly one of \"tls\" (HTTPS) and "
                 "\"redirect_to_https\" (plain HTTP answering with redirects)");
    /* 0 is no port to send clients to: it used to read as "neither". */
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: \"127.0.0.1:8080\"\n"
                 "    redirect_to_https: 0\n",
                 "t.yaml:4:24: \"redirect_to_https\": 0 is out of range (1 to 65535): it is the "
                 "port clients are sent to");
    expect_error(BASE "    health_check:\n      interval: 1s\n",
                 "t.yaml:15:7: health_check: missing required key \"path\"");
    expect_error(BASE "    health_check:\n      path: healthz\n",
                 "t.yaml:15:13: upstream \"web\": health_check.path must start with \"/\" and "
                 "hold no spaces or control characters");
    expect_error(BASE "admin:\n", "t.yaml:14:1: admin: missing required key \"bind\"");
    expect_error(BASE "admin:\n  bind: \"localhost:9901\"\n",
                 "t.yaml:15:9: admin: bind \"localhost:9901\": \"localhost\" is not a numeric IP "
                 "address");
    expect_error(BASE "admin:\n  bind: \"127.0.0.1:8443\"\n",
                 "t.yaml:15:9: admin: bind \"127.0.0.1:8443\" takes the address of listener \"a\" "
                 "(127.0.0.1:8443)");
    expect_error(BASE "admin:\n  bind: \"[::]:8443\"\n",
                 "t.yaml:15:9: admin: bind \"[::]:8443\" takes the address of listener \"a\" "
                 "(127.0.0.1:8443)");
    expect_error(BASE "    balance: random\n",
                 "t.yaml:14:14: \"balance\": \"random\" is not one of \"round_robin\", "
                 "\"least_conn\"");
}

static void test_client_auth(void)
{
    struct cfg *c = load(BASE);
    if (c != NULL) {
        CHECK_INT(c->listeners[0].tls.has_client_auth, 0);
        cfg_free(&c);
    }
    c = load(BASE_LISTENERS
             "      client_auth:\n"
             "        ca: certs/clients-ca.pem\n" BASE_ROUTES BASE_UPSTREAMS);
    if (c != NULL) {
        const struct cfg_tls *t = &c->listeners[0].tls;
        CHECK_INT(t->has_client_auth, 1);
        CHECK_STR(t->client_auth.ca, "/srv/moat/certs/clients-ca.pem");
        CHECK_INT(t->client_auth.required, 1);
        CHECK_INT(t->client_auth.ca_pos.line, 9);
        cfg_free(&c);
    }
    c = load(BASE_LISTENERS
             "      client_auth:\n"
             "        ca: /etc/ca.pem\n"
             "        required: false\n" BASE_ROUTES BASE_UPSTREAMS);
    if (c != NULL) {
        CHECK_STR(c->listeners[0].tls.client_auth.ca, "/etc/ca.pem");
        CHECK_INT(c->listeners[0].tls.client_auth.required, 0);
        cfg_free(&c);
    }
    /* An empty or null section is a mistake, not "off". */
    expect_error(BASE_LISTENERS "      client_auth:\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:8:7: client_auth: missing required key \"ca\"");
    expect_error(BASE_LISTENERS "      client_auth:\n        required: true\n" BASE_ROUTES
                     BASE_UPSTREAMS,
                 "t.yaml:9:9: client_auth: missing required key \"ca\"");
    expect_error(BASE_LISTENERS "      client_auth:\n        ca: a.pem\n        verify: yes\n"
                     BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:10:9: unknown key \"verify\" in client_auth");
    expect_error(BASE_LISTENERS "      client_auth:\n        ca: a.pem\n        required: maybe\n"
                     BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:10:19: \"required\": expected true or false, got \"maybe\"");
}

static void test_nulls(void)
{
    struct cfg *c = load(BASE_LISTENERS
                         "      ciphers: null\n"
                         "      alpn: null\n" BASE_ROUTES BASE_UPSTREAMS
                         "forwarding:\n"
                         "  hsts: null\n"
                         "  trusted_proxies: ~\n"
                         "log:\n"
                         "  access: null\n");
    if (c != NULL) {
        CHECK(c->listeners[0].tls.ciphers == NULL);
        CHECK_INT(c->listeners[0].tls.nalpn, 0);
        CHECK(c->forwarding.hsts == NULL);
        CHECK_INT(c->forwarding.ntrusted, 0);
        CHECK(c->log.access == NULL);
        cfg_free(&c);
    }
    /* Quoted "null" is a string. */
    c = load(BASE "log:\n  access: \"null\"\n");
    if (c != NULL) {
        CHECK_STR(c->log.access, "/srv/moat/null");
        cfg_free(&c);
    }
    c = load(BASE_LISTENERS "      ciphers: ~\n" BASE_ROUTES BASE_UPSTREAMS);
    if (c != NULL) {
        CHECK(c->listeners[0].tls.ciphers == NULL);
        cfg_free(&c);
    }
    /* Not nullable: required strings and paths. */
    expect_error("listeners:\n"
                 "  - name: a\n"
                 "    bind: null\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: c.pem\n"
                 "          key: k.pem\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:3:11: \"bind\": expected a string, got null");
    expect_error(BASE_LISTENERS "      ciphers: \"\"\n" BASE_ROUTES BASE_UPSTREAMS,
                 "t.yaml:8:16: listener \"a\": invalid cipher list");
}

static struct sockaddr_storage addr4(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    CHECK_INT(inet_pton(AF_INET, s, &in->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage addr6(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
    in->sin6_family = AF_INET6;
    CHECK_INT(inet_pton(AF_INET6, s, &in->sin6_addr), 1);
    return ss;
}

static int trusted4(const struct cfg *c, const char *s)
{
    struct sockaddr_storage ss = addr4(s);
    return cfg_is_trusted_proxy(c, (struct sockaddr *)&ss);
}

static int trusted6(const struct cfg *c, const char *s)
{
    struct sockaddr_storage ss = addr6(s);
    return cfg_is_trusted_proxy(c, (struct sockaddr *)&ss);
}

static void test_trusted_proxies(void)
{
    struct cfg *c = load(BASE "forwarding:\n"
                              "  trusted_proxies:\n"
                              "    - 10.0.0.0/8\n"
                              "    - 192.168.1.1\n"
                              "    - 172.16.0.0/12\n"
                              "    - 2001:db8::/32\n"
                              "    - \"::1\"\n"
                              "    - fe80::/10\n");
    if (c != NULL) {
        CHECK_INT(c->forwarding.ntrusted, 6);
        CHECK_INT(trusted4(c, "10.0.0.1"), 1);
        CHECK_INT(trusted4(c, "10.255.255.255"), 1);
        CHECK_INT(trusted4(c, "11.0.0.1"), 0);
        CHECK_INT(trusted4(c, "9.255.255.255"), 0);
        CHECK_INT(trusted4(c, "192.168.1.1"), 1);
        CHECK_INT(trusted4(c, "192.168.1.2"), 0);
        CHECK_INT(trusted4(c, "192.168.0.1"), 0);
        CHECK_INT(trusted4(c, "172.16.0.1"), 1);
        CHECK_INT(trusted4(c, "172.31.255.255"), 1);
        CHECK_INT(trusted4(c, "172.32.0.0"), 0);
        CHECK_INT(trusted4(c, "172.15.255.255"), 0);
        CHECK_INT(trusted4(c, "127.0.0.1"), 0);
        CHECK_INT(trusted6(c, "2001:db8::1"), 1);
        CHECK_INT(trusted6(c, "2001:db8:ffff:ffff::1"), 1);
        CHECK_INT(trusted6(c, "2001:db9::1"), 0);
        CHECK_INT(trusted6(c, "::1"), 1);
        CHECK_INT(trusted6(c, "::2"), 0);
        CHECK_INT(trusted6(c, "fe80::1"), 1);
        CHECK_INT(trusted6(c, "febf::1"), 1);
        CHECK_INT(trusted6(c, "fec0::1"), 0);
        /* v4-mapped IPv6 counts as IPv4 */
        CHECK_INT(trusted6(c, "::ffff:10.1.2.3"), 1);
        CHECK_INT(trusted6(c, "::ffff:192.168.1.1"), 1);
        CHECK_INT(trusted6(c, "::ffff:11.1.2.3"), 0);
        CHECK_INT(trusted6(c, "::ffff:172.32.0.1"), 0);
        struct sockaddr_storage un;
        memset(&un, 0, sizeof(un));
        un.ss_family = AF_UNIX;
        CHECK_INT(cfg_is_trusted_proxy(c, (struct sockaddr *)&un), 0);
        cfg_free(&c);
    }

    c = load(BASE "forwarding:\n  trusted_proxies: [\"0.0.0.0/0\"]\n");
    if (c != NULL) {
        CHECK_INT(trusted4(c, "1.2.3.4"), 1);
        CHECK_INT(trusted4(c, "255.255.255.255"), 1);
        CHECK_INT(trusted6(c, "::ffff:1.2.3.4"), 1);
        CHECK_INT(trusted6(c, "2001:db8::1"), 0);
        cfg_free(&c);
    }
    c = load(BASE "forwarding:\n  trusted_proxies: [\"::/0\", \"10.0.0.7/32\"]\n");
    if (c != NULL) {
        CHECK_INT(trusted6(c, "2001:db8::1"), 1);
        CHECK_INT(trusted4(c, "10.0.0.7"), 1);
        CHECK_INT(trusted4(c, "10.0.0.6"), 0);
        cfg_free(&c);
    }
    c = load(BASE "forwarding:\n  trusted_proxies: []\n");
    if (c != NULL) {
        CHECK_INT(trusted4(c, "10.0.0.1"), 0);
        CHECK_INT(trusted6(c, "::1"), 0);
        cfg_free(&c);
    }
    /* The mapped form written in the file matches the plain IPv4 peer too. */
    c = load(BASE "forwarding:\n  trusted_proxies: [\"::ffff:10.0.0.0/104\"]\n");
    if (c != NULL) {
        CHECK_INT(trusted6(c, "::ffff:10.9.9.9"), 1);
        CHECK_INT(trusted4(c, "10.9.9.9"), 1);
        cfg_free(&c);
    }

    expect_error_part(BASE "forwarding:\n  trusted_proxies: [banana]\n",
                      "trusted_proxies: \"banana\" is not an address or CIDR");
    expect_error_part(BASE "forwarding:\n  trusted_proxies: [\"10.0.0.0/\"]\n",
                      "trusted_proxies: \"10.0.0.0/\" is not an address or CIDR");
    expect_error_part(BASE "forwarding:\n  trusted_proxies: [\"10.0.0.0/-1\"]\n",
                      "trusted_proxies: \"10.0.0.0/-1\" is not an address or CIDR");
    expect_error_part(BASE "forwarding:\n  trusted_proxies: [\"::/129\"]\n",
                      "trusted_proxies: \"::/129\" is not an address or CIDR");
    expect_error_part(BASE "forwarding:\n  trusted_proxies: [\"10.0.0.0/8/8\"]\n",
                      "trusted_proxies: \"10.0.0.0/8/8\" is not an address or CIDR");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Billion laughs as one flow sequence: nine levels of nine aliases each,
 * every level anchored before it is used. */
static size_t laughs(char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "[&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]");
    for (int i = 1; i <= 8; i++) {
        n += (size_t)snprintf(out + n, cap - n, ", &a%d [", i);
        for (int k = 0; k < 9; k++)
            n += (size_t)snprintf(out + n, cap - n, "%s*a%d", k ? ", " : "", i - 1);
        n += (size_t)snprintf(out + n, cap - n, "]");
    }
    n += (size_t)snprintf(out + n, cap - n, ", *a8, *a8, *a8]");
    return n;
}

static void test_alias_bombs(void)
{
    static char text[300000];
    struct cfg *c = NULL;
    double t0 = now_s();

    char bomb[4096];
    laughs(bomb, sizeof(bomb));

    snprintf(text, sizeof(text), "%sbomb: %s\n", BASE, bomb);
    CHECK_INT(cfg_load_string("t.yaml", text, strlen(text), NULL, &c, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "t.yaml:14:1: unknown key \"bomb\"");

    /* The bomb inside keys that are walked. */
    snprintf(text, sizeof(text), "%sforwarding:\n  trusted_proxies: %s\n", BASE, bomb);
    CHECK_INT(cfg_load_string("t.yaml", text, strlen(text), NULL, &c, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "t.yaml:15:");
    CHECK(c == NULL);
    snprintf(text, sizeof(text), "listeners: %s\n%s%s", bomb, BASE_ROUTES, BASE_UPSTREAMS);
    CHECK_INT(cfg_load_string("t.yaml", text, strlen(text), NULL, &c, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "t.yaml:1:");
    snprintf(text, sizeof(text), "%sroutes: %s\n%s", BASE_LISTENERS, bomb, BASE_UPSTREAMS);
    CHECK_INT(cfg_load_string("t.yaml", text, strlen(text), NULL, &c, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "t.yaml:8:");

    /* A walked fan-out: 1000 listeners, each with 1000 certificates. */
    size_t n = (size_t)snprintf(text, sizeof(text),
                                "listeners:\n"
                                "  - &l\n"
                                "    name: a\n"
                                "    bind: \"127.0.0.1:8443\"\n"
                                "    tls:\n"
                                "      certificates: [&c {cert: c.pem, key: k.pem}");
    for (int i = 1; i < 1000; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, ", *c");
    n += (size_t)snprintf(text + n, sizeof(text) - n, "]\n");
    for (int i = 1; i < 1000; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "  - *l\n");
    n += (size_t)snprintf(text + n, sizeof(text) - n, "%s", BASE_ROUTES BASE_UPSTREAMS);
    CHECK_INT(cfg_load_string("t.yaml", text, n, NULL, &c, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "configuration too large");
    CHECK_CONTAINS(err, "t.yaml:");

    double elapsed = now_s() - t0;
    CHECK(elapsed < 5.0);
    if (elapsed >= 5.0)
        fprintf(stderr, "  alias bombs took %.1fs\n", elapsed);
}

int main(void)
{
    test_full();
    test_defaults();
    test_embedded_default();
    test_paths();
    test_errors_exact();
    test_error_item_positions();
    test_errors_yaml();
    test_errors_multiple();
    test_resumption();
    test_lifecycle_keys();
    test_client_auth();
    test_nulls();
    test_trusted_proxies();
    test_alias_bombs();
    return check_result();
}
