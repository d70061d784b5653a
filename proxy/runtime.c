/*
 * runtime: builds the run-time state of one configuration on the main
 * thread (configuration, certificates, resumption state, bound sockets) and
 * frees it when its last user lets go.  Never touches a worker's loop.
 */
#include "runtime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "sesscache.h"
#include "strutil.h"
#include "tickets.h"
#include "tls.h"

#define EXPIRY_WARNING_DAYS 14

struct errbuf {
    char *p;
    size_t len, cap;
};

static void add_error(struct errbuf *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_error(struct errbuf *e, const char *fmt, ...)
{
    if (e->len + 1 >= e->cap)
        return;
    if (e->len > 0)
        e->p[e->len++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->p + e->len, e->cap - e->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        e->len += (size_t)n < e->cap - e->len ? (size_t)n : e->cap - e->len - 1;
}

const struct cert_cas *runtime_client_cas(const struct runtime *rt, size_t l)
{
    return rt->client_cas[l].pem != NULL ? &rt->client_cas[l] : NULL;
}

/* Loads pair k of listener l (generates the embedded default's) and checks
 * it in a TLS context as the workers will.  Errors point at the pair and
 * name the key at fault: the certificate, the key, or the pair when the
 * two do not belong together. */
static int load_pair(const struct cfg *cfg, const struct cfg_listener *l, size_t k,
                     const struct cert_cas *client_cas, struct cert_pair *pair,
                     struct errbuf *e)
{
    char err[1024];
    time_t now = time(NULL);
    const char *blame = ".cert";
    int rc = l->tls.ncerts == 0 ? cert_pair_generate(pair, "localhost", err, sizeof(err))
                                : cert_pair_load(pair, l->tls.certs[k].cert, l->tls.certs[k].key,
                                                 err, sizeof(err));
    if (rc == 0)
        rc = cert_pair_check(pair, now, err, sizeof(err));
    if (rc == 0) {
        struct tls_ctx_set *set = NULL;
        rc = tls_ctx_set_new(&set, &l->tls, pair, 1, client_cas, NULL, err, sizeof(err));
        tls_ctx_set_free(&set);
        blame = "";
    }
    if (rc != 0 && l->tls.ncerts == 0) {
        cert_pair_free(pair);
        add_error(e, "%s:%u:%u: listener \"%s\": tls: %s", cfg->path, l->tls.pos.line,
                  l->tls.pos.col, l->name, err);
        return -1;
    }
    if (rc != 0) {
        struct cfg_pos pos = l->tls.certs[k].pos;
        if (rc == CERT_BAD_KEY_FILE) {
            pos = l->tls.certs[k].key_pos;
            blame = ".key";
        }
        cert_pair_free(pair);
        add_error(e, "%s:%u:%u: listener \"%s\": certificates[%zu]%s: %s", cfg->path, pos.line,
                  pos.col, l->name, k, blame, err);
        return -1;
    }
    if (pair->not_after - now < EXPIRY_WARNING_DAYS * 86400)
        log_warn("listener \"%s\": certificate %s expires in %lld day(s)", l->name, pair->source,
                 (long long)((pair->not_after - now) / 86400));
    return 0;
}

/* SNI picks the first certificate for a name whose key the client takes:
 * one whose every name an earlier certificate with the same kind of key
 * holds is never served. */
static void warn_if_never_chosen(const struct cfg_listener *l, const struct cert_pair *certs,
                                 size_t k)
{
    for (size_t n = 0; n < certs[k].nnames; n++)
        if (!cert_name_served_earlier(certs, k, certs[k].names[n]))
            return;
    log_warn("listener \"%s\": certificates[%zu] (%s) is never served: earlier certificates "
             "with the same kind of key hold all its names", l->name, k, certs[k].source);
}

/* A custom cipher list may leave TLS 1.2 no suite for a certificate's key:
 * TLS 1.2 clients then get another certificate, or fail. */
static void warn_if_no_tls12_suite(const struct cfg_listener *l, const struct cert_pair *certs,
                                   size_t k)
{
    if (l->tls.ciphers == NULL || strcmp(l->tls.min_version, "1.2") != 0 ||
        tls_ciphers_serve_tls12(l->tls.ciphers, certs[k].key_type))
        return;
    log_warn("listener \"%s\": certificates[%zu] (%s) has a key of kind %s, which no TLS 1.2 "
             "suite of \"ciphers\" can use", l->name, k, certs[k].source,
             cert_key_name(certs[k].key_type));
}

/* As OpenSSL does for nginx, names this build lacks (Mozilla's
 * intermediate list ends with DHE-RSA suites) are skipped; -t says which. */
static void warn_unknown_ciphers(const struct cfg *cfg, const struct cfg_listener *l)
{
    char known[CFG_MAX_CIPHERS + 1], unknown[512];
    if (l->tls.ciphers != NULL &&
        tls_cipher_list_known(l->tls.ciphers, known, sizeof(known), unknown, sizeof(unknown)) > 0)
        log_warn("%s:%u:%u: listener \"%s\": ciphers: skipping what this build has no suite "
                 "for: %s", cfg->path, l->tls.ciphers_pos.line, l->tls.ciphers_pos.col, l->name,
                 unknown);
}

static int load_certificates(struct runtime *rt, struct errbuf *e)
{
    const struct cfg *cfg = rt->cfg;
    char err[1024];
    int failed = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        if (!l->has_tls)
            continue; /* a redirect listener */
        const struct cfg_client_auth *ca = &l->tls.client_auth;
        if (l->tls.has_client_auth &&
            (cert_cas_load(&rt->client_cas[i], ca->ca, ca->required, err, sizeof(err)) != 0 ||
             tls_client_cas_check(&rt->client_cas[i], err, sizeof(err)) != 0)) {
            cert_cas_free(&rt->client_cas[i]);
            add_error(e, "%s:%u:%u: listener \"%s\": client_auth.ca: %s", cfg->path,
                      ca->ca_pos.line, ca->ca_pos.col, l->name, err);
            failed = 1;
            continue;
        }
        /* Said once, at the key: every certificate's context would fail alike. */
        if (l->tls.ciphers != NULL && tls_cipher_list_check(&l->tls, err, sizeof(err)) != 0) {
            add_error(e, "%s:%u:%u: listener \"%s\": ciphers: %s", cfg->path,
                      l->tls.ciphers_pos.line, l->tls.ciphers_pos.col, l->name, err);
            failed = 1;
            continue;
        }
        warn_unknown_ciphers(cfg, l);
        size_t n = l->tls.ncerts ? l->tls.ncerts : 1;
        rt->certs[i] = calloc(n, sizeof(struct cert_pair));
        if (rt->certs[i] == NULL)
            return -1;
        /* Slots of failed pairs stay zeroed: freeing them is harmless. */
        rt->ncerts[i] = n;
        for (size_t k = 0; k < n; k++)
            if (load_pair(cfg, l, k, runtime_client_cas(rt, i), &rt->certs[i][k], e) != 0)
                failed = 1;
        for (size_t k = 0; !failed && k < n; k++) {
            if (k > 0)
                warn_if_never_chosen(l, rt->certs[i], k);
            warn_if_no_tls12_suite(l, rt->certs[i], k);
        }
    }
    return failed ? -1 : 0;
}

static const struct cfg_listener *find_listener(const struct cfg *cfg, const char *name,
                                                size_t *index)
{
    for (size_t i = 0; cfg != NULL && i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0) {
            *index = i;
            return &cfg->listeners[i];
        }
    return NULL;
}

static int same_client_auth(const struct cert_cas *a, const struct cert_cas *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return memcmp(a->binding, b->binding, sizeof(a->binding)) == 0;
}

/* The session cache and ticket seed of each listener.  A listener that
 * keeps its name keeps its cache and, when the key file (or the random
 * seed) is unchanged, its ticket keys: reloads do not cost resumptions. */
static int load_resumption(struct runtime *rt, const struct runtime *prev, struct errbuf *e)
{
    const struct cfg *cfg = rt->cfg;
    char err[512];
    int failed = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        const struct cfg_session_cache *sc = &l->tls.session_cache;
        const struct cfg_session_tickets *t = &l->tls.session_tickets;
        size_t j = 0;
        const struct cfg_listener *old = prev ? find_listener(prev->cfg, l->name, &j) : NULL;
        if (!l->has_tls)
            continue;
        /* Sessions that began under another client-certificate policy
         * (none, other CAs, optional instead of required) must not resume. */
        const struct cert_cas *cas = runtime_client_cas(rt, i);
        if (old != NULL && !same_client_auth(cas, runtime_client_cas(prev, j)))
            old = NULL;
        if (sc->size > 0) {
            if (old != NULL && prev->caches[j] != NULL) {
                rt->caches[i] = prev->caches[j];
                sesscache_ref(rt->caches[i]);
                sesscache_configure(rt->caches[i], sc->size, sc->timeout_ms);
            } else if ((rt->caches[i] = sesscache_new(sc->size, sc->timeout_ms)) == NULL) {
                return -1;
            }
        }
        if (!t->enabled)
            continue;
        const struct ticket_seed *old_seed = old ? prev->seeds[j] : NULL;
        if (old_seed != NULL && t->key_file == NULL &&
            old->tls.session_tickets.key_file == NULL &&
            old->tls.session_tickets.rotate_ms == t->rotate_ms) {
            rt->seeds[i] = (struct ticket_seed *)old_seed;
            ticket_seed_ref(rt->seeds[i]);
            continue;
        }
        if (ticket_seed_load(&rt->seeds[i], t->key_file, t->rotate_ms / 1000, l->name,
                             cas ? cas->binding : NULL, err, sizeof(err)) != 0) {
            add_error(e, "%s:%u:%u: listener \"%s\": session_tickets.key_file: %s", cfg->path,
                      t->key_file_pos.line, t->key_file_pos.col, l->name, err);
            failed = 1;
            continue;
        }
        /* An unchanged key file keeps the very same seed object. */
        if (old_seed != NULL && ticket_seed_equal(old_seed, rt->seeds[i])) {
            ticket_seed_unref(&rt->seeds[i]);
            rt->seeds[i] = (struct ticket_seed *)old_seed;
            ticket_seed_ref(rt->seeds[i]);
        }
    }
    return failed ? -1 : 0;
}

/* An access-log file moat could not open would only be found when workers
 * start (or a reload applies): -t and reloads check it here, as nginx -t
 * does, creating it if need be. */
static int check_access_log(const struct runtime *rt, struct errbuf *e)
{
    const struct cfg *cfg = rt->cfg;
    const char *a = cfg->log.access;
    if (a == NULL || strcmp(a, "stdout") == 0 || strcmp(a, "stderr") == 0)
        return 0;
    /* O_NONBLOCK: a FIFO nobody reads fails with ENXIO instead of
     * hanging the check, or the main thread on a reload. */
    int fd = open(a, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
    if (fd < 0) {
        add_error(e, "%s:%u:%u: log.access: %s: %s", cfg->path, cfg->log.access_pos.line,
                  cfg->log.access_pos.col, a,
                  errno == ENXIO ? "a FIFO that nothing reads" : strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* Binds listeners that are new or moved; one whose bind address the
 * previous runtime already listens on keeps that socket (no refused
 * connection during a reload). */
static int bind_listeners(struct runtime *rt, const struct runtime *prev, struct errbuf *e)
{
    const struct cfg *cfg = rt->cfg;
    char err[512];
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        int inherited = 0;
        for (size_t j = 0; prev != NULL && j < prev->cfg->nlisteners; j++) {
            const struct cfg_listener *o = &prev->cfg->listeners[j];
            if (listener_same_socket(l, o->name, o->bind)) {
                rt->ports[i] = prev->ports[j];
                inherited = 1;
                break;
            }
        }
        if (inherited)
            continue;
        rt->listen_fds[i] = malloc(rt->nworkers * sizeof(int));
        if (rt->listen_fds[i] == NULL)
            return -1;
        if (listener_bind_group(l, rt->nworkers, rt->listen_fds[i], &rt->ports[i], err,
                                sizeof(err)) != 0) {
            free(rt->listen_fds[i]);
            rt->listen_fds[i] = NULL;
            add_error(e, "%s:%u:%u: %s", cfg->path, l->bind_pos.line, l->bind_pos.col, err);
            return -1;
        }
    }
    return 0;
}

/* The admin listener keeps its socket when its address is unchanged. */
static int bind_admin(struct runtime *rt, const struct runtime *prev, struct errbuf *e)
{
    const struct cfg *cfg = rt->cfg;
    char err[512];
    if (!cfg->admin.enabled)
        return 0;
    if (prev != NULL && prev->cfg->admin.enabled &&
        strcmp(prev->cfg->admin.bind, cfg->admin.bind) == 0) {
        rt->admin_port = prev->admin_port;
        return 0;
    }
    struct cfg_listener as_listener = {.name = "admin", .bind = cfg->admin.bind,
                                       .addr = cfg->admin.addr};
    int fd;
    if (listener_bind_group(&as_listener, 1, &fd, &rt->admin_port, err, sizeof(err)) != 0) {
        add_error(e, "%s:%u:%u: %s", cfg->path, cfg->admin.pos.line, cfg->admin.pos.col, err);
        return -1;
    }
    rt->admin_fd = fd;
    return 0;
}

struct runtime *runtime_load(const struct cfg_source *src, const struct runtime *prev,
                             unsigned nworkers, int check_only, char *err, size_t errlen)
{
    struct errbuf e = {err, 0, errlen};
    err[0] = '\0';
    struct runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        add_error(&e, "out of memory");
        return NULL;
    }
    rt->refs = 1;
    rt->admin_fd = -1;
    rt->generation = prev ? prev->generation + 1 : 1;
    if (cfg_load_source(src, &rt->cfg, err, errlen) != 0) {
        free(rt);
        return NULL;
    }
    size_t n = rt->cfg->nlisteners;
    rt->nworkers = nworkers ? nworkers : (unsigned)rt->cfg->workers;
    rt->certs = calloc(n, sizeof(*rt->certs));
    rt->ncerts = calloc(n, sizeof(*rt->ncerts));
    rt->listen_fds = calloc(n, sizeof(*rt->listen_fds));
    rt->ports = calloc(n, sizeof(*rt->ports));
    rt->caches = calloc(n, sizeof(*rt->caches));
    rt->seeds = calloc(n, sizeof(*rt->seeds));
    rt->client_cas = calloc(n, sizeof(*rt->client_cas));
    if (!rt->certs || !rt->ncerts || !rt->listen_fds || !rt->ports || !rt->caches || !rt->seeds ||
        !rt->client_cas) {
        add_error(&e, "out of memory");
        goto fail;
    }
    /* Both steps report all their errors before giving up. */
    int bad = load_certificates(rt, &e) != 0;
    bad |= load_resumption(rt, prev, &e) != 0;
    bad |= check_access_log(rt, &e) != 0;
    if (bad || (!check_only && (bind_listeners(rt, prev, &e) != 0 || bind_admin(rt, prev, &e) != 0))) {
        if (e.len == 0)
            add_error(&e, "out of memory");
        /* Errors about files cite positions in generated text: name the
         * setting instead. */
        if (src->explain != NULL)
            src->explain(err, errlen);
        goto fail;
    }
    return rt;
fail:
    runtime_unref(&rt);
    return NULL;
}

void runtime_ref(struct runtime *rt)
{
    __atomic_add_fetch(&rt->refs, 1, __ATOMIC_RELAXED);
}

void runtime_unref(struct runtime **rtp)
{
    struct runtime *rt = *rtp;
    if (rt == NULL)
        return;
    *rtp = NULL;
    if (__atomic_sub_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    size_t n = rt->cfg ? rt->cfg->nlisteners : 0;
    for (size_t i = 0; i < n; i++) {
        if (rt->certs && rt->certs[i]) {
            for (size_t k = 0; k < rt->ncerts[i]; k++)
                cert_pair_free(&rt->certs[i][k]);
            free(rt->certs[i]);
        }
        if (rt->listen_fds && rt->listen_fds[i]) {
            /* Sockets no worker took (a reload superseded this one). */
            for (unsigned w = 0; w < rt->nworkers; w++)
                if (rt->listen_fds[i][w] >= 0)
                    close(rt->listen_fds[i][w]);
            free(rt->listen_fds[i]);
        }
        if (rt->caches)
            sesscache_unref(&rt->caches[i]);
        if (rt->seeds)
            ticket_seed_unref(&rt->seeds[i]);
        if (rt->client_cas)
            cert_cas_free(&rt->client_cas[i]);
    }
    for (size_t u = 0; rt->health != NULL && u < rt->cfg->nupstreams; u++)
        free(rt->health[u]);
    free(rt->health);
    if (rt->admin_fd >= 0)
        close(rt->admin_fd);
    free(rt->certs);
    free(rt->ncerts);
    free(rt->listen_fds);
    free(rt->ports);
    free(rt->caches);
    free(rt->seeds);
    free(rt->client_cas);
    cfg_free(&rt->cfg);
    free(rt);
}

void runtime_bound_address(const struct runtime *rt, size_t i, char *out, size_t len)
{
    struct sockaddr_storage ss = rt->cfg->listeners[i].addr;
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)rt->ports[i]);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)rt->ports[i]);
    format_sockaddr((struct sockaddr *)&ss, out, len);
}
