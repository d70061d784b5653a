/*
 * config: moat's configuration schema (the tables below), the checks that
 * span several keys, and the embedded default.  Reads the configuration file
 * and resolves upstream names; opens nothing else.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_load.h"
#include "strutil.h"

#define CFG_MAX_FILE_BYTES (4u << 20)

#define FIELD(st, k, t, member, ...)                                                \
    {.key = (k), .type = (t), .off = offsetof(st, member), __VA_ARGS__}
#define SECTION_OF(st, what_, fields_, ...)                                          \
    {.what = (what_), .size = sizeof(st), .fields = (fields_),                       \
     .nfields = sizeof(fields_) / sizeof((fields_)[0]), __VA_ARGS__}

static const char *const tls_versions[] = {"1.2", "1.3", NULL};
static const char *const balances[] = {"round_robin", "least_conn", NULL};
static const char *const log_formats[] = {"json", "combined", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static const struct cfg_field cert_fields[] = {
    FIELD(struct cfg_cert, "cert", CFG_T_PATH, cert, .flags = CFG_F_REQUIRED),
    FIELD(struct cfg_cert, "key", CFG_T_PATH, key, .flags = CFG_F_REQUIRED | CFG_F_POS,
          .pos_off = offsetof(struct cfg_cert, key_pos)),
};
static const struct cfg_section cert_section =
    SECTION_OF(struct cfg_cert, "certificate", cert_fields, .has_pos = 1,
               .pos_off = offsetof(struct cfg_cert, pos));

static const struct cfg_field session_cache_fields[] = {
    FIELD(struct cfg_session_cache, "size", CFG_T_UINT, size, .def = "20480",
          .max = 10000000),
    FIELD(struct cfg_session_cache, "timeout", CFG_T_DURATION, timeout_ms, .def = "300s",
          .min = 1000, .max = 86400000),
};
static const struct cfg_section session_cache_section =
    SECTION_OF(struct cfg_session_cache, "session_cache", session_cache_fields);

static const struct cfg_field session_tickets_fields[] = {
    FIELD(struct cfg_session_tickets, "enabled", CFG_T_BOOL, enabled, .def = "true"),
    FIELD(struct cfg_session_tickets, "key_file", CFG_T_PATH, key_file,
          .flags = CFG_F_NULLABLE | CFG_F_POS,
          .pos_off = offsetof(struct cfg_session_tickets, key_file_pos)),
    /* TLS 1.3 caps a ticket's lifetime at 7 days; a ticket lives one to two
     * periods. */
    FIELD(struct cfg_session_tickets, "rotate", CFG_T_DURATION, rotate_ms, .def = "12h",
          .min = 1000, .max = 3 * 86400000ull),
};
static const struct cfg_section session_tickets_section =
    SECTION_OF(struct cfg_session_tickets, "session_tickets", session_tickets_fields);

static const struct cfg_field client_auth_fields[] = {
    FIELD(struct cfg_client_auth, "ca", CFG_T_PATH, ca, .flags = CFG_F_REQUIRED | CFG_F_POS,
          .pos_off = offsetof(struct cfg_client_auth, ca_pos)),
    FIELD(struct cfg_client_auth, "required", CFG_T_BOOL, required, .def = "true"),
};
static const struct cfg_section client_auth_section =
    SECTION_OF(struct cfg_client_auth, "client_auth", client_auth_fields);

static const struct cfg_field tls_fields[] = {
    FIELD(struct cfg_tls, "certificates", CFG_T_SECTION_SEQ, certs, .section = &cert_section,
          .count_off = offsetof(struct cfg_tls, ncerts)),
    FIELD(struct cfg_tls, "min_version", CFG_T_ENUM, min_version, .def = "1.2",
          .enum_names = tls_versions),
    FIELD(struct cfg_tls, "ciphers", CFG_T_STRING, ciphers, .flags = CFG_F_NULLABLE | CFG_F_POS,
          .pos_off = offsetof(struct cfg_tls, ciphers_pos)),
    FIELD(struct cfg_tls, "alpn", CFG_T_STRING_LIST, alpn, .def = "http/1.1",
          .flags = CFG_F_NULLABLE, .count_off = offsetof(struct cfg_tls, nalpn)),
    FIELD(struct cfg_tls, "handshake_timeout", CFG_T_DURATION, handshake_timeout_ms,
          .def = "10s", .min = 1, .max = 3600000),
    FIELD(struct cfg_tls, "session_cache", CFG_T_SECTION, session_cache,
          .section = &session_cache_section),
    FIELD(struct cfg_tls, "session_tickets", CFG_T_SECTION, session_tickets,
          .section = &session_tickets_section),
    FIELD(struct cfg_tls, "watch", CFG_T_BOOL, watch, .def = "false"),
    FIELD(struct cfg_tls, "client_auth", CFG_T_SECTION, client_auth,
          .section = &client_auth_section, .flags = CFG_F_PRESENT,
          .present_off = offsetof(struct cfg_tls, has_client_auth)),
};
static const struct cfg_section tls_section =
    SECTION_OF(struct cfg_tls, "tls", tls_fields, .has_pos = 1,
               .pos_off = offsetof(struct cfg_tls, pos));

static const struct cfg_field listener_fields[] = {
    FIELD(struct cfg_listener, "name", CFG_T_STRING, name, .flags = CFG_F_REQUIRED),
    FIELD(struct cfg_listener, "bind", CFG_T_STRING, bind, .flags = CFG_F_REQUIRED | CFG_F_POS,
          .pos_off = offsetof(struct cfg_listener, bind_pos)),
    FIELD(struct cfg_listener, "tls", CFG_T_SECTION, tls, .section = &tls_section,
          .flags = CFG_F_PRESENT, .present_off = offsetof(struct cfg_listener, has_tls)),
    FIELD(struct cfg_listener, "redirect_to_https", CFG_T_UINT, redirect_to_https, .def = "0",
          .max = 65535, .flags = CFG_F_POS,
          .pos_off = offsetof(struct cfg_listener, redirect_pos)),
};
static const struct cfg_section listener_section =
    SECTION_OF(struct cfg_listener, "listener", listener_fields, .has_pos = 1,
               .pos_off = offsetof(struct cfg_listener, pos));

static const struct cfg_field route_fields[] = {
    FIELD(struct cfg_route, "host", CFG_T_STRING, host, .flags = CFG_F_NULLABLE),
    FIELD(struct cfg_route, "path", CFG_T_STRING, path, .def = "/"),
    FIELD(struct cfg_route, "upstream", CFG_T_STRING, upstream_name,
          .flags = CFG_F_REQUIRED | CFG_F_POS, .pos_off = offsetof(struct cfg_route, upstream_pos)),
};
static const struct cfg_section route_section =
    SECTION_OF(struct cfg_route, "route", route_fields, .has_pos = 1,
               .pos_off = offsetof(struct cfg_route, pos));

struct health_raw {
    int enabled;
    char *path;
    uint64_t interval_ms;
    uint64_t timeout_ms;
    struct cfg_pos path_pos;
};

struct upstream_raw {
    struct cfg_upstream u;
    struct health_raw health;
    struct cfg_pos servers_pos;
    struct cfg_pos *server_pos;   /* per item */
    struct cfg_pos balance_pos;
};

static const struct cfg_field health_fields[] = {
    FIELD(struct health_raw, "path", CFG_T_STRING, path, .flags = CFG_F_REQUIRED | CFG_F_POS,
          .pos_off = offsetof(struct health_raw, path_pos)),
    FIELD(struct health_raw, "interval", CFG_T_DURATION, interval_ms, .def = "5s", .min = 100,
          .max = 3600000),
    FIELD(struct health_raw, "timeout", CFG_T_DURATION, timeout_ms, .def = "2s", .min = 10,
          .max = 600000),
};
static const struct cfg_section health_section =
    SECTION_OF(struct health_raw, "health_check", health_fields);

static const struct cfg_field upstream_fields[] = {
    FIELD(struct upstream_raw, "servers", CFG_T_STRING_LIST, u.server_specs,
          .flags = CFG_F_REQUIRED | CFG_F_POS | CFG_F_ITEM_POS,
          .count_off = offsetof(struct upstream_raw, u.nserver_specs),
          .pos_off = offsetof(struct upstream_raw, servers_pos),
          .item_pos_off = offsetof(struct upstream_raw, server_pos)),
    FIELD(struct upstream_raw, "balance", CFG_T_ENUM, u.balance, .def = "round_robin",
          .enum_names = balances, .flags = CFG_F_POS,
          .pos_off = offsetof(struct upstream_raw, balance_pos)),
    FIELD(struct upstream_raw, "connect_timeout", CFG_T_DURATION, u.connect_timeout_ms,
          .def = "3s", .min = 1, .max = 3600000),
    FIELD(struct upstream_raw, "response_timeout", CFG_T_DURATION, u.response_timeout_ms,
          .def = "60s", .min = 1, .max = 86400000),
    FIELD(struct upstream_raw, "keepalive", CFG_T_UINT, u.keepalive, .def = "32", .max = 65535),
    FIELD(struct upstream_raw, "health_check", CFG_T_SECTION, health, .section = &health_section,
          .flags = CFG_F_PRESENT, .present_off = offsetof(struct upstream_raw, health.enabled)),
};
static const struct cfg_section upstream_section =
    SECTION_OF(struct upstream_raw, "upstream", upstream_fields, .has_pos = 1,
               .pos_off = offsetof(struct upstream_raw, u.pos), .has_name = 1,
               .name_off = offsetof(struct upstream_raw, u.name));

struct top_raw {
    struct cfg c;
    struct upstream_raw *upstreams;
    size_t nupstreams;
    struct cfg_pos trusted_pos;
    struct cfg_pos *trusted_item_pos;
    struct cfg_pos access_pos;
    struct cfg_pos hsts_pos;
    struct cfg_pos routes_pos;
    struct cfg_pos upstreams_pos;
    struct cfg_pos listeners_pos;
    struct cfg_pos admin_bind_pos;
};

static const struct cfg_field timeout_fields[] = {
    FIELD(struct top_raw, "client_header", CFG_T_DURATION, c.timeouts.client_header_ms,
          .def = "10s", .min = 1, .max = 3600000),
    FIELD(struct top_raw, "client_idle", CFG_T_DURATION, c.timeouts.client_idle_ms,
          .def = "60s", .min = 1, .max = 86400000),
};
static const struct cfg_section timeouts_section = SECTION_OF(struct top_raw, "timeouts", timeout_fields);

static const struct cfg_field limit_fields[] = {
    FIELD(struct top_raw, "max_connections", CFG_T_UINT, c.limits.max_connections,
          .def = "65536", .min = 1, .max = 10000000),
    FIELD(struct top_raw, "max_header_bytes", CFG_T_SIZE, c.limits.max_header_bytes,
          .def = "16k", .min = 1024, .max = 1024 * 1024),
    FIELD(struct top_raw, "max_uri_bytes", CFG_T_SIZE, c.limits.max_uri_bytes, .def = "8k",
          .min = 256, .max = 1024 * 1024),
    FIELD(struct top_raw, "max_headers", CFG_T_UINT, c.limits.max_headers, .def = "100",
          .min = 1, .max = 1000),
    FIELD(struct top_raw, "max_body_bytes", CFG_T_SIZE, c.limits.max_body_bytes, .def = "0"),
    FIELD(struct top_raw, "max_memory", CFG_T_SIZE, c.limits.max_memory, .def = "0"),
};
static const struct cfg_section limits_section = SECTION_OF(struct top_raw, "limits", limit_fields);

static const struct cfg_field forwarding_fields[] = {
    FIELD(struct top_raw, "trusted_proxies", CFG_T_STRING_LIST, c.forwarding.trusted_proxies,
          .flags = CFG_F_NULLABLE | CFG_F_POS | CFG_F_ITEM_POS,
          .count_off = offsetof(struct top_raw, c.forwarding.ntrusted_proxies),
          .pos_off = offsetof(struct top_raw, trusted_pos),
          .item_pos_off = offsetof(struct top_raw, trusted_item_pos)),
    FIELD(struct top_raw, "hsts", CFG_T_STRING, c.forwarding.hsts, .def = "max-age=63072000",
          .flags = CFG_F_NULLABLE | CFG_F_POS, .pos_off = offsetof(struct top_raw, hsts_pos)),
};
static const struct cfg_section forwarding_section =
    SECTION_OF(struct top_raw, "forwarding", forwarding_fields);

static const struct cfg_field log_fields[] = {
    FIELD(struct top_raw, "access", CFG_T_STRING, c.log.access, .def = "stdout",
          .flags = CFG_F_NULLABLE | CFG_F_POS, .pos_off = offsetof(struct top_raw, access_pos)),
    FIELD(struct top_raw, "format", CFG_T_ENUM, c.log.format, .def = "json",
          .enum_names = log_formats),
    FIELD(struct top_raw, "level", CFG_T_ENUM, c.log.level, .def = "info",
          .enum_names = log_levels),
};
static const struct cfg_section log_section = SECTION_OF(struct top_raw, "log", log_fields);

static const struct cfg_field admin_fields[] = {
    FIELD(struct top_raw, "bind", CFG_T_STRING, c.admin.bind, .flags = CFG_F_REQUIRED | CFG_F_POS,
          .pos_off = offsetof(struct top_raw, admin_bind_pos)),
};
static const struct cfg_section admin_section = SECTION_OF(struct top_raw, "admin", admin_fields);

static const struct cfg_field top_fields[] = {
    FIELD(struct top_raw, "workers", CFG_T_UINT_OR_AUTO, c.workers, .def = "auto", .min = 1,
          .max = 256),
    FIELD(struct top_raw, "shutdown_timeout", CFG_T_DURATION, c.shutdown_timeout_ms,
          .def = "30s", .max = 86400000),
    FIELD(struct top_raw, "listeners", CFG_T_SECTION_SEQ, c.listeners,
          .flags = CFG_F_REQUIRED | CFG_F_POS, .section = &listener_section,
          .count_off = offsetof(struct top_raw, c.nlisteners),
          .pos_off = offsetof(struct top_raw, listeners_pos)),
    FIELD(struct top_raw, "routes", CFG_T_SECTION_SEQ, c.routes,
          .flags = CFG_F_POS, .section = &route_section,
          .count_off = offsetof(struct top_raw, c.nroutes),
          .pos_off = offsetof(struct top_raw, routes_pos)),
    FIELD(struct top_raw, "upstreams", CFG_T_SECTION_MAP, upstreams, .flags = CFG_F_POS,
          .section = &upstream_section, .count_off = offsetof(struct top_raw, nupstreams),
          .pos_off = offsetof(struct top_raw, upstreams_pos)),
    FIELD(struct top_raw, "timeouts", CFG_T_SECTION, c, .section = &timeouts_section),
    FIELD(struct top_raw, "limits", CFG_T_SECTION, c, .section = &limits_section),
    FIELD(struct top_raw, "forwarding", CFG_T_SECTION, c, .section = &forwarding_section),
    FIELD(struct top_raw, "log", CFG_T_SECTION, c, .section = &log_section),
    FIELD(struct top_raw, "admin", CFG_T_SECTION, c, .section = &admin_section,
          .flags = CFG_F_PRESENT, .present_off = offsetof(struct top_raw, c.admin.enabled)),
};
static const struct cfg_section top_section = SECTION_OF(struct top_raw, "the top level", top_fields);

static const char default_yaml[] =
    "listeners:\n"
    "  - name: default\n"
    "    bind: \"127.0.0.1:8443\"\n"
    "    tls:\n"
    "      certificates: []\n"
    "routes:\n"
    "  - path: /\n"
    "    upstream: app\n"
    "upstreams:\n"
    "  app:\n"
    "    servers: [\"127.0.0.1:8080\"]\n";

/* ---- checks that span keys ---- */

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static int valid_name(const char *s)
{
    if (s[0] == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!is_name_char(*s))
            return 0;
    return 1;
}

/* Visible ASCII and spaces only: values that end up in HTTP headers. */
static int valid_header_text(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static size_t token_length(const char *p)
{
    size_t n = 0;
    while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') ||
           (p[n] >= '0' && p[n] <= '9') || (p[n] != '\0' && strchr("!#$%&'*+-.^_`|~", p[n])))
        n++;
    return n;
}

/*
 * What is wrong with a Strict-Transport-Security value, or NULL.  RFC 6797
 * 6.1: directives are token [ "=" ( token / quoted-string ) ] separated by
 * ";", none twice, and max-age=SECONDS is required; browsers ignore a
 * header that breaks these rules.
 */
static const char *hsts_problem(const char *v)
{
    const char *names[16];
    size_t lens[16], nnames = 0;
    int max_age = 0;
    for (const char *p = v;;) {
        p += strspn(p, " \t");
        size_t n = token_length(p);
        if (n > 0) {
            for (size_t i = 0; i < nnames; i++)
                if (lens[i] == n && strncasecmp(names[i], p, n) == 0)
                    return "has a directive twice";
            if (nnames == sizeof(names) / sizeof(names[0]))
                return "has too many directives";
            names[nnames] = p;
            lens[nnames++] = n;
            int is_max_age = n == 7 && strncasecmp(p, "max-age", 7) == 0;
            p += n + strspn(p + n, " \t");
            if (*p == '=') {
                p += 1 + strspn(p + 1, " \t");
                int quoted = *p == '"';
                const char *value = p + quoted;
                size_t vlen = quoted ? strcspn(value, "\"") : token_length(value);
                if (quoted && value[vlen] != '"')
                    return "has an unterminated quoted value";
                if (is_max_age && (vlen == 0 || strspn(value, "0123456789") != vlen))
                    return "needs max-age=SECONDS, a number";
                p = value + vlen + quoted;
                max_age |= is_max_age;
            } else if (is_max_age) {
                return "needs max-age=SECONDS, a number";
            }
            p += strspn(p, " \t");
        }
        if (*p == '\0')
            break;
        if (*p != ';')
            return "is not a list of directives separated by \";\"";
        p++;
    }
    return max_age ? NULL : "needs max-age=SECONDS";
}

static void check_tls(struct cfg_loader *ld, struct cfg *c, struct cfg_listener *l)
{
    struct cfg_tls *t = &l->tls;
    if (t->ncerts == 0 && !c->embedded_default)
        cfg_error(ld, t->pos, "listener \"%s\": tls needs at least one certificate", l->name);
    if (t->ncerts > 255)
        cfg_error(ld, t->pos, "listener \"%s\": at most 255 certificates", l->name);
    for (size_t i = 0; i < t->nalpn; i++)
        if (strcmp(t->alpn[i], "http/1.1") != 0)
            cfg_error(ld, t->pos, "listener \"%s\": alpn \"%s\" is not supported (moat speaks http/1.1)",
                      l->name, t->alpn[i]);
    if (t->ciphers != NULL && (t->ciphers[0] == '\0' || !valid_header_text(t->ciphers)))
        cfg_error(ld, t->ciphers_pos, "listener \"%s\": invalid cipher list", l->name);
    else if (t->ciphers != NULL && strlen(t->ciphers) > CFG_MAX_CIPHERS)
        cfg_error(ld, t->ciphers_pos, "listener \"%s\": the cipher list is longer than %d "
                  "characters", l->name, CFG_MAX_CIPHERS);
}

static int is_wildcard(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

/* An IPv4 address written v4-mapped (::ffff:a.b.c.d) is that IPv4 address
 * to the kernel; an IPv6 one is returned as is. */
static struct sockaddr_storage unmapped(const struct sockaddr_storage *a)
{
    struct sockaddr_storage out = *a;
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
    if (a->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
        struct sockaddr_in *o4 = (struct sockaddr_in *)&out;
        memset(&out, 0, sizeof(out));
        o4->sin_family = AF_INET;
        o4->sin_port = a6->sin6_port;
        memcpy(&o4->sin_addr, &a6->sin6_addr.s6_addr[12], 4);
    }
    return out;
}

/* 1 if sockets bound to a and b would share connections: the same port and
 * the same address, or a wildcard covering the other (SO_REUSEPORT lets
 * both bind, and the kernel then splits clients between them).  moat's
 * [::] sockets are dual-stack, so they cover every IPv4 address too. */
static int binds_overlap(const struct sockaddr_storage *a_, const struct sockaddr_storage *b_)
{
    struct sockaddr_storage a = unmapped(a_), b = unmapped(b_);
    unsigned port = sockaddr_port((const struct sockaddr *)&a);
    if (port == 0 || port != sockaddr_port((const struct sockaddr *)&b))
        return 0;
    if ((a.ss_family == AF_INET6 && is_wildcard(&a)) || (b.ss_family == AF_INET6 && is_wildcard(&b)))
        return 1;
    if (a.ss_family != b.ss_family)
        return 0;
    if (is_wildcard(&a) || is_wildcard(&b))
        return 1;
    if (a.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)&a)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static void check_listeners(struct cfg_loader *ld, struct top_raw *r)
{
    struct cfg *c = &r->c;
    if (c->nlisteners == 0)
        cfg_error(ld, r->listeners_pos, "at least one listener is needed");
    for (size_t i = 0; i < c->nlisteners; i++) {
        struct cfg_listener *l = &c->listeners[i];
        char why[128];
        if (l->name == NULL || l->bind == NULL)
            continue; /* already reported as missing */
        if (!valid_name(l->name))
            cfg_error(ld, l->pos, "listener name \"%s\" must be 1-64 of [A-Za-z0-9_.-]", l->name);
        for (size_t j = 0; j < i; j++)
            if (c->listeners[j].name && strcmp(c->listeners[j].name, l->name) == 0)
                cfg_error(ld, l->pos, "listener \"%s\" is defined twice", l->name);
        if (parse_numeric_hostport(l->bind, &l->addr, why, sizeof(why)) != 0) {
            cfg_error(ld, l->bind_pos, "listener \"%s\": bind \"%s\": %s", l->name, l->bind, why);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            const struct cfg_listener *o = &c->listeners[j];
            if (o->bind == NULL || o->addr.ss_family == 0 ||
                sockaddr_port((const struct sockaddr *)&o->addr) == 0)
                continue; /* port 0: each listener gets a port of its own */
            if (strcmp(o->bind, l->bind) == 0)
                cfg_error(ld, l->bind_pos, "listener \"%s\": %s is already bound by \"%s\"",
                          l->name, l->bind, o->name);
            else if (binds_overlap(&o->addr, &l->addr))
                cfg_error(ld, l->bind_pos,
                          "listener \"%s\": %s overlaps %s of \"%s\": the kernel would split "
                          "clients between them",
                          l->name, l->bind, o->bind, o->name);
        }
        if (l->redirect_pos.line != 0 && l->redirect_to_https == 0)
            cfg_error(ld, l->redirect_pos,
                      "\"redirect_to_https\": 0 is out of range (1 to 65535): it is the port "
                      "clients are sent to");
        else if (l->has_tls == (l->redirect_to_https != 0))
            cfg_error(ld, l->pos,
                      "listener \"%s\": needs exactly one of \"tls\" (HTTPS) and "
                      "\"redirect_to_https\" (plain HTTP answering with redirects)",
                      l->name);
        else if (l->has_tls)
            check_tls(ld, c, l);
    }
}

static int add_server(struct cfg_loader *ld, struct cfg_upstream *u, size_t *cap,
                      const char *spec, const struct sockaddr *sa, socklen_t len)
{
    for (size_t i = 0; i < u->nservers; i++)
        if (memcmp(&u->servers[i].addr, sa, len) == 0 && strcmp(u->servers[i].name, spec) == 0)
            return 0;
    if (u->nservers == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        struct cfg_server *s = cfg_alloc(ld->arena, ncap * sizeof(*s));
        if (u->nservers)
            memcpy(s, u->servers, u->nservers * sizeof(*s));
        u->servers = s;
        *cap = ncap;
    }
    struct cfg_server *s = &u->servers[u->nservers++];
    s->name = cfg_strdup(ld->arena, spec);
    memcpy(&s->addr, sa, len);
    return 0;
}

/* A server is "ip:port", "[v6]:port" or "name:port"; names resolve now. */
static void resolve_server(struct cfg_loader *ld, struct upstream_raw *ur, size_t index,
                           size_t *cap)
{
    struct cfg_upstream *u = &ur->u;
    const char *spec = u->server_specs[index];
    struct cfg_pos pos = ur->server_pos ? ur->server_pos[index] : ur->servers_pos;
    struct sockaddr_storage ss;
    char why[128];
    if (parse_numeric_hostport(spec, &ss, why, sizeof(why)) == 0) {
        if (sockaddr_port((struct sockaddr *)&ss) == 0) {
            cfg_error(ld, pos, "upstream \"%s\": server \"%s\" needs a port", u->name,
                      spec);
            return;
        }
        add_server(ld, u, cap, spec, (struct sockaddr *)&ss,
                   ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                           : sizeof(struct sockaddr_in6));
        return;
    }
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec || spec[0] == '[') {
        cfg_error(ld, pos, "upstream \"%s\": server \"%s\": expected host:port",
                  u->name, spec);
        return;
    }
    char host[256];
    size_t hl = (size_t)(colon - spec);
    uint64_t port;
    if (memchr(spec, ':', hl) != NULL) {
        /* "::1:8080" reads two ways; nginx and HAProxy want brackets too. */
        cfg_error(ld, pos, "upstream \"%s\": server \"%s\": an IPv6 address goes in "
                  "brackets: \"[%.*s]:%s\"", u->name, spec, (int)hl, spec, colon + 1);
        return;
    }
    if (hl >= sizeof(host) || parse_u64(colon + 1, strlen(colon + 1), &port) != 0) {
        cfg_error(ld, pos, "upstream \"%s\": server \"%s\": expected host:port",
                  u->name, spec);
        return;
    }
    if (port == 0 || port > 65535) {
        cfg_error(ld, pos, "upstream \"%s\": server \"%s\": port %llu is out of range (1 to "
                  "65535)", u->name, spec, (unsigned long long)port);
        return;
    }
    memcpy(host, spec, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        cfg_error(ld, pos, "upstream \"%s\": cannot resolve \"%s\": %s", u->name,
                  host, gai_strerror(rc));
        return;
    }
    size_t added = 0;
    for (struct addrinfo *ai = res; ai != NULL && added < CFG_MAX_SERVER_ADDRS; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        add_server(ld, u, cap, spec, ai->ai_addr, ai->ai_addrlen);
        added++;
    }
    freeaddrinfo(res);
}

static void check_upstreams(struct cfg_loader *ld, struct top_raw *r)
{
    struct cfg *c = &r->c;
    c->nupstreams = r->nupstreams;
    c->upstreams = cfg_alloc(ld->arena, (r->nupstreams ? r->nupstreams : 1) * sizeof(*c->upstreams));
    for (size_t i = 0; i < r->nupstreams; i++) {
        struct upstream_raw *ur = &r->upstreams[i];
        struct cfg_upstream *u = &ur->u;
        size_t cap = 0;
        if (!valid_name(u->name))
            cfg_error(ld, u->pos, "upstream name \"%s\" must be 1-64 of [A-Za-z0-9_.-]", u->name);
        u->least_conn = u->balance != NULL && strcmp(u->balance, "least_conn") == 0;
        if (ur->health.enabled) {
            if (ur->health.path == NULL || ur->health.path[0] != '/' ||
                !valid_header_text(ur->health.path) || strchr(ur->health.path, ' ') != NULL)
                cfg_error(ld, ur->health.path_pos,
                          "upstream \"%s\": health_check.path must start with \"/\" and hold no "
                          "spaces or control characters", u->name);
            u->health_check.enabled = 1;
            u->health_check.path = ur->health.path;
            u->health_check.interval_ms = ur->health.interval_ms;
            u->health_check.timeout_ms = ur->health.timeout_ms;
        }
        if (u->nserver_specs == 0 && u->server_specs != NULL)
            cfg_error(ld, ur->servers_pos, "upstream \"%s\": servers must not be empty", u->name);
        for (size_t s = 0; s < u->nserver_specs; s++)
            resolve_server(ld, ur, s, &cap);
        c->upstreams[i] = *u;
    }
}

static int valid_route_host(const char *h)
{
    if (h[0] == '\0' || strlen(h) > 253)
        return 0;
    if (h[0] == '[') {
        size_t n = strlen(h);
        struct in6_addr a;
        char tmp[64];
        if (h[n - 1] != ']' || n - 2 >= sizeof(tmp))
            return 0;
        memcpy(tmp, h + 1, n - 2);
        tmp[n - 2] = '\0';
        return inet_pton(AF_INET6, tmp, &a) == 1;
    }
    for (const char *p = h; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
              ch == '_'))
            return 0;
    }
    return 1;
}

static int valid_route_path(const char *p)
{
    if (p[0] != '/')
        return 0;
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#')
            return 0;
    return 1;
}

/* Rewrites path in place as RFC 3986 6.2.2 normalizes it (uri_path_unit):
 * escaped unreserved characters decoded, other escapes with upper-case hex,
 * so two routes for the same path compare equal.  -1, leaving path as
 * written for the message, for a broken escape or %00. */
static int normalize_route_path(char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(path);
    if (!uri_path_escapes_are_sound((struct span){path, len}))
        return -1;
    char *out = path;
    for (size_t i = 0; i < len;) {
        int unit = uri_path_unit(path, len, &i);
        if (unit < 256) {
            *out++ = (char)unit;
        } else {
            *out++ = '%';
            *out++ = hex[(unit - 256) >> 4];
            *out++ = hex[unit & 15];
        }
    }
    *out = '\0';
    return 0;
}

/* Routes and upstreams serve the TLS listeners: a configuration of
 * redirect listeners alone may leave both out. */
static void check_routes(struct cfg_loader *ld, struct top_raw *r)
{
    struct cfg *c = &r->c;
    int forwards = 0;
    for (size_t i = 0; i < c->nlisteners; i++)
        forwards |= c->listeners[i].has_tls;
    const struct cfg_pos top = {1, 1};
    if (forwards && r->routes_pos.line == 0)
        cfg_error(ld, top, "the top level: missing required key \"routes\"");
    else if (forwards && c->nroutes == 0)
        cfg_error(ld, r->routes_pos, "at least one route is needed");
    int upstreams_missing = forwards && r->upstreams_pos.line == 0;
    if (upstreams_missing)
        cfg_error(ld, top, "the top level: missing required key \"upstreams\"");
    for (size_t i = 0; i < c->nroutes; i++) {
        struct cfg_route *rt = &c->routes[i];
        if (rt->upstream_name == NULL || rt->path == NULL)
            continue;
        if (rt->host != NULL) {
            for (char *p = rt->host; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
            size_t hl = strlen(rt->host);
            if (hl > 0 && rt->host[hl - 1] == '.')
                rt->host[hl - 1] = '\0';
            const char *check = rt->host;
            if (strncmp(rt->host, "*.", 2) == 0) {
                rt->wildcard = 1;
                rt->host++; /* keep ".suffix": a match needs the dot */
                check = rt->host + 1;
            }
            if (!valid_route_host(check) || strchr(check, '*') != NULL)
                cfg_error(ld, rt->pos, "route host \"%s\" is not a host name, \"*.suffix\" or [ipv6]",
                          rt->wildcard ? rt->host - 1 : rt->host);
        }
        if (!valid_route_path(rt->path))
            cfg_error(ld, rt->pos, "route path \"%s\" must start with \"/\" and hold no spaces, \"?\" or \"#\"",
                      rt->path);
        else if (normalize_route_path(rt->path) != 0)
            cfg_error(ld, rt->pos, "route path \"%s\" has a broken percent-escape or %%00",
                      rt->path);
        size_t u;
        for (u = 0; u < c->nupstreams; u++)
            if (strcmp(c->upstreams[u].name, rt->upstream_name) == 0)
                break;
        if (u == c->nupstreams && !upstreams_missing)
            cfg_error(ld, rt->upstream_pos, "upstream \"%s\" is not defined", rt->upstream_name);
        rt->upstream = u;
        for (size_t j = 0; j < i; j++) {
            const struct cfg_route *o = &c->routes[j];
            int same_host = (o->host == NULL && rt->host == NULL) ||
                            (o->host && rt->host && o->wildcard == rt->wildcard &&
                             strcmp(o->host, rt->host) == 0);
            if (same_host && o->path && strcmp(o->path, rt->path) == 0)
                cfg_error(ld, rt->pos, "route for host \"%s\" path \"%s\" is defined twice",
                          rt->host ? rt->host : "(any)", rt->path);
        }
    }
}

static int parse_cidr(const char *s, struct cfg_cidr *out)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n >= sizeof(addr))
        return -1;
    memcpy(addr, s, n);
    addr[n] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = 128;
    } else {
        return -1;
    }
    if (slash != NULL) {
        uint64_t p;
        if (parse_u64(slash + 1, strlen(slash + 1), &p) != 0 || p > out->prefix)
            return -1;
        out->prefix = (unsigned)p;
    }
    /* Peers are compared as IPv4 when v4-mapped, so ranges written in the
     * mapped form are too. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (out->family == AF_INET6 && out->prefix >= 96 && memcmp(out->addr, mapped, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
    }
    return 0;
}

static void check_forwarding_and_log(struct cfg_loader *ld, struct top_raw *r)
{
    struct cfg *c = &r->c;
    char why[128];
    if (c->admin.enabled && c->admin.bind != NULL &&
        parse_numeric_hostport(c->admin.bind, &c->admin.addr, why, sizeof(why)) != 0)
        cfg_error(ld, r->admin_bind_pos, "admin: bind \"%s\": %s", c->admin.bind, why);
    else if (c->admin.enabled && c->admin.bind != NULL)
        for (size_t i = 0; i < c->nlisteners; i++)
            if (c->listeners[i].bind != NULL &&
                binds_overlap(&c->admin.addr, &c->listeners[i].addr))
                cfg_error(ld, r->admin_bind_pos,
                          "admin: bind \"%s\" takes the address of listener \"%s\" (%s)",
                          c->admin.bind, c->listeners[i].name, c->listeners[i].bind);
    c->admin.pos = r->admin_bind_pos;
    size_t n = c->forwarding.ntrusted_proxies;
    c->forwarding.trusted = cfg_alloc(ld->arena, (n ? n : 1) * sizeof(struct cfg_cidr));
    for (size_t i = 0; i < n; i++) {
        if (parse_cidr(c->forwarding.trusted_proxies[i], &c->forwarding.trusted[i]) != 0)
            cfg_error(ld, r->trusted_item_pos ? r->trusted_item_pos[i] : r->trusted_pos,
                      "trusted_proxies: \"%s\" is not an address or CIDR",
                      c->forwarding.trusted_proxies[i]);
    }
    c->forwarding.ntrusted = n;
    if (c->forwarding.hsts != NULL && !valid_header_text(c->forwarding.hsts))
        cfg_error(ld, r->hsts_pos, "hsts: the value must be printable ASCII");
    else if (c->forwarding.hsts != NULL && strlen(c->forwarding.hsts) > CFG_MAX_HSTS)
        cfg_error(ld, r->hsts_pos, "hsts: the value is longer than %d characters", CFG_MAX_HSTS);
    else if (c->forwarding.hsts != NULL && hsts_problem(c->forwarding.hsts) != NULL)
        cfg_error(ld, r->hsts_pos,
                  "hsts: \"%s\" %s, or browsers ignore it (RFC 6797; \"max-age=63072000\"); "
                  "null sends no Strict-Transport-Security",
                  c->forwarding.hsts, hsts_problem(c->forwarding.hsts));

    const char *a = c->log.access;
    c->log.access_pos = r->access_pos;
    if (a != NULL && strcmp(a, "stdout") != 0 && strcmp(a, "stderr") != 0) {
        if (a[0] == '\0')
            cfg_error(ld, r->access_pos, "log.access: empty path");
        else if (a[0] != '/' && c->dir != NULL) {
            size_t len = strlen(c->dir) + strlen(a) + 2;
            char *p = cfg_alloc(ld->arena, len);
            snprintf(p, len, "%s/%s", c->dir, a);
            c->log.access = p;
        }
    }
    c->log.access_format = strcmp(c->log.format, "combined") == 0 ? LOG_FORMAT_COMBINED
                                                                   : LOG_FORMAT_JSON;
    static const struct {
        const char *name;
        enum log_level level;
    } levels[] = {{"error", LOG_ERROR}, {"warn", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcmp(c->log.level, levels[i].name) == 0)
            c->log.error_level = levels[i].level;
}

/* ---- loading ---- */

/* CPUs this process may really use: its affinity mask, capped by a cgroup
 * CPU quota (containers: --cpus, Kubernetes limits), at least 1. */
static uint64_t usable_cpus(void)
{
    cpu_set_t set;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    long long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r"); /* cgroup v2: "max 100000" */
    if (f != NULL) {
        char q[32];
        if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max") != 0)
            quota = atoll(q);
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) != NULL) {
        if (fscanf(f, "%lld", &quota) != 1)
            quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) != NULL) {
            if (fscanf(f, "%lld", &period) != 1)
                period = 0;
            fclose(f);
        }
    }
    if (quota > 0 && period > 0) {
        long limit = (long)((quota + period - 1) / period);
        if (limit < n)
            n = limit;
    }
    return n > 0 ? (uint64_t)n : 1;
}

static int load_text(const char *name, const char *text, size_t len, const char *dir,
                     int embedded, struct cfg **out, char *err, size_t errlen)
{
    void *arena = cfg_arena_new();
    if (arena == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    struct cfg_loader ld = {.file = name, .dir = dir, .arena = arena, .err = err,
                            .errlen = errlen, .budget = 100000};
    yaml_document_t doc;
    err[0] = '\0';
    if (cfg_yaml_parse(&ld, text, len, &doc) != 0) {
        cfg_arena_free(arena);
        return -1;
    }
    ld.doc = &doc;
    struct top_raw *r = cfg_alloc(arena, sizeof(*r));
    r->c.arena = arena;
    r->c.embedded_default = embedded;
    r->c.path = cfg_strdup(arena, name);
    r->c.dir = dir ? cfg_strdup(arena, dir) : NULL;
    ld.dir = r->c.dir;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        cfg_error(&ld, (struct cfg_pos){1, 1},
                  "the configuration must be a YAML mapping (listeners, routes, upstreams, "
                  "...); this one is empty");
    } else if (root->type != YAML_MAPPING_NODE) {
        cfg_error(&ld, cfg_node_pos(root), "the configuration must be a YAML mapping");
    } else {
        cfg_load_section(&ld, &top_section, root, r);
        if (ld.nerrors == 0) {
            check_listeners(&ld, r);
            check_upstreams(&ld, r);
            check_routes(&ld, r);
            check_forwarding_and_log(&ld, r);
        }
    }
    yaml_document_delete(&doc);
    if (ld.nerrors != 0) {
        cfg_arena_free(arena);
        return -1;
    }
    if (r->c.workers == 0)
        r->c.workers = usable_cpus();
    *out = &r->c;
    return 0;
}

int cfg_load_string(const char *name, const char *text, size_t len, const char *dir,
                    struct cfg **out, char *err, size_t errlen)
{
    return load_text(name, text, len, dir, 0, out, err, errlen);
}

int cfg_load_source(const struct cfg_source *src, struct cfg **out, char *err, size_t errlen)
{
    int rc;
    switch (src->kind) {
    case CFG_SOURCE_FILE:
        return cfg_load(src->path, out, err, errlen);
    case CFG_SOURCE_DEFAULT:
        return cfg_load_default(out, err, errlen);
    case CFG_SOURCE_TEXT:
        rc = load_text(src->name, src->text, strlen(src->text), NULL, src->self_signed, out, err,
                       errlen);
        if (rc != 0 && src->explain != NULL)
            src->explain(err, errlen);
        return rc;
    }
    return -1;
}

int cfg_load_default(struct cfg **out, char *err, size_t errlen)
{
    return load_text("<embedded default>", default_yaml, sizeof(default_yaml) - 1, NULL, 1, out,
                     err, errlen);
}

int cfg_load(const char *path, struct cfg **out, char *err, size_t errlen)
{
    /* O_NONBLOCK: a FIFO must not hang -t or a reload; fstat refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CFG_MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path,
                 CFG_MAX_FILE_BYTES);
        fclose(f);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    char *text = malloc(len + 1);
    if (text == NULL || fread(text, 1, len, f) != len) {
        snprintf(err, errlen, "%s: cannot read: %s", path, text ? strerror(errno) : "out of memory");
        free(text);
        fclose(f);
        return -1;
    }
    fclose(f);
    text[len] = '\0';

    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        if (getcwd(dir, sizeof(dir)) == NULL)
            strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            n = sizeof(dir) - 1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int rc = load_text(path, text, len, dir, 0, out, err, errlen);
    free(text);
    return rc;
}

void cfg_free(struct cfg **cfg)
{
    if (*cfg == NULL)
        return;
    cfg_arena_free((*cfg)->arena);
    *cfg = NULL;
}

int cfg_is_trusted_proxy(const struct cfg *cfg, const struct sockaddr *addr)
{
    const uint8_t *a;
    int family = addr->sa_family;
    if (family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
    } else if (family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        a = in6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            family = AF_INET;
            a += 12;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < cfg->forwarding.ntrusted; i++) {
        const struct cfg_cidr *c = &cfg->forwarding.trusted[i];
        if (c->family != family)
            continue;
        unsigned bits = c->prefix, k = 0;
        while (bits >= 8 && a[k] == c->addr[k]) {
            bits -= 8;
            k++;
        }
        if (bits == 0 || (bits < 8 && ((a[k] ^ c->addr[k]) & (0xffu << (8 - bits)) & 0xff) == 0))
            return 1;
    }
    return 0;
}
