/*
 * main: the command line, loading and checking the configuration and
 * certificates, binding listeners, starting the workers and turning signals
 * into actions.  Owns the struct runtime the workers read.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cert.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "sesscache.h"
#include "strutil.h"
#include "tickets.h"
#include "tls.h"
#include "version.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/moat/moat.yaml"
#define EXPIRY_WARNING_DAYS 14

static const char usage_text[] =
    "usage: moat [-c FILE] [-t] [-V] [-h] [--listen-file FILE]\n"
    "  -c, --config FILE     configuration file (default: $MOAT_CONFIG, else " DEFAULT_CONFIG ")\n"
    "  -t, --test            check the whole configuration and exit: 0 and \"configuration OK\",\n"
    "                        or 1 with the errors on stderr\n"
    "  -V, --version         moat's version and the versions of libuv, wolfSSL, llhttp, libyaml\n"
    "  -h, --help            this text\n"
    "      --listen-file FILE  once listening, write \"NAME ADDRESS\" per listener to FILE\n"
    "                        (useful with port 0 in tests)\n";

struct options {
    const char *config;
    const char *listen_file;
    int test;
};

struct app {
    struct cfg *cfg;
    struct runtime rt;
    struct worker *workers;
    unsigned nworkers;
    unsigned started;
    uv_loop_t *loop;
    uv_signal_t signals[4];
    int stopping;
};

static int parse_args(int argc, char **argv, struct options *o)
{
    enum { OPT_LISTEN_FILE = 256 };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"listen-file", required_argument, NULL, OPT_LISTEN_FILE},
        {NULL, 0, NULL, 0},
    };
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:tVh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->config = optarg; break;
        case 't': o->test = 1; break;
        case OPT_LISTEN_FILE: o->listen_file = optarg; break;
        case 'V': version_print(stdout); exit(0);
        case 'h': fputs(usage_text, stdout); exit(0);
        case ':':
            fprintf(stderr, "moat: option %s needs an argument\n%s", argv[optind - 1], usage_text);
            return -1;
        default:
            fprintf(stderr, "moat: unknown option %s\n%s", argv[optind - 1], usage_text);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moat: unexpected argument \"%s\"\n%s", argv[optind], usage_text);
        return -1;
    }
    return 0;
}

/* -c, then $MOAT_CONFIG, then the default path if it exists; else NULL
 * (the embedded default). */
static const char *config_path(const struct options *o)
{
    if (o->config != NULL)
        return o->config;
    const char *env = getenv("MOAT_CONFIG");
    if (env != NULL && env[0] != '\0')
        return env;
    if (access(DEFAULT_CONFIG, F_OK) == 0)
        return DEFAULT_CONFIG;
    return NULL;
}

static void warn_expiry(const struct cfg_listener *l, const struct cert_pair *p)
{
    time_t now = time(NULL);
    if (p->not_after == 0)
        return;
    if (p->not_after < now)
        log_warn("listener \"%s\": certificate %s expired", l->name, p->source);
    else if (p->not_after - now < EXPIRY_WARNING_DAYS * 86400)
        log_warn("listener \"%s\": certificate %s expires in %lld day(s)", l->name, p->source,
                 (long long)((p->not_after - now) / 86400));
    if (p->not_before > now + 300)
        log_warn("listener \"%s\": certificate %s is not valid yet", l->name, p->source);
}

/* Reads every certificate and checks it in a TLS context, as the workers
 * will.  Returns 0 or -1 after printing the errors. */
/* Loads pair k of listener l (generates the embedded default's) and checks
 * it in a TLS context as the workers will.  Errors point at the pair. */
static int load_pair(const struct cfg *cfg, const struct cfg_listener *l, size_t k,
                     struct cert_pair *pair)
{
    char err[1024];
    struct cfg_pos pos = l->tls.ncerts ? l->tls.certs[k].pos : l->tls.pos;
    int rc = l->tls.ncerts == 0 ? cert_pair_generate(pair, "localhost", err, sizeof(err))
                                : cert_pair_load(pair, l->tls.certs[k].cert, l->tls.certs[k].key,
                                                 err, sizeof(err));
    if (rc == 0) {
        struct tls_ctx_set *set = NULL;
        rc = tls_ctx_set_new(&set, &l->tls, pair, 1, NULL, err, sizeof(err));
        tls_ctx_set_free(&set);
        if (rc != 0)
            cert_pair_free(pair);
    }
    if (rc != 0) {
        fprintf(stderr, "%s:%u:%u: listener \"%s\": %s\n", cfg->path, pos.line, pos.col,
                l->name, err);
        return -1;
    }
    warn_expiry(l, pair);
    return 0;
}

/* Reads every certificate of every listener.  Returns 0 or -1 after
 * printing all the errors. */
static int load_certificates(struct app *a)
{
    struct cfg *cfg = a->cfg;
    int failed = 0;
    a->rt.certs = calloc(cfg->nlisteners, sizeof(*a->rt.certs));
    a->rt.ncerts = calloc(cfg->nlisteners, sizeof(*a->rt.ncerts));
    if (a->rt.certs == NULL || a->rt.ncerts == NULL)
        return -1;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        size_t n = l->tls.ncerts ? l->tls.ncerts : 1;
        a->rt.certs[i] = calloc(n, sizeof(struct cert_pair));
        if (a->rt.certs[i] == NULL)
            return -1;
        /* ncerts counts the slots in use, failed ones included (zeroed). */
        a->rt.ncerts[i] = n;
        for (size_t k = 0; k < n; k++)
            if (load_pair(cfg, l, k, &a->rt.certs[i][k]) != 0)
                failed = 1;
    }
    return failed ? -1 : 0;
}

/* The session cache and ticket seed of each listener: shared by every
 * worker.  Returns 0 or -1 after printing the errors. */
static int load_resumption(struct app *a)
{
    struct cfg *cfg = a->cfg;
    char err[512];
    int failed = 0;
    a->rt.caches = calloc(cfg->nlisteners, sizeof(*a->rt.caches));
    a->rt.seeds = calloc(cfg->nlisteners, sizeof(*a->rt.seeds));
    if (a->rt.caches == NULL || a->rt.seeds == NULL)
        return -1;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        const struct cfg_session_tickets *t = &l->tls.session_tickets;
        if (l->tls.session_cache.size > 0 &&
            (a->rt.caches[i] = sesscache_new(l->tls.session_cache.size,
                                             l->tls.session_cache.timeout_ms)) == NULL)
            return -1;
        if (t->enabled &&
            ticket_seed_load(&a->rt.seeds[i], t->key_file, t->rotate_ms / 1000, l->name, err,
                             sizeof(err)) != 0) {
            fprintf(stderr, "%s:%u:%u: listener \"%s\": session_tickets.key_file: %s\n",
                    cfg->path, t->key_file_pos.line, t->key_file_pos.col, l->name, err);
            failed = 1;
        }
    }
    return failed ? -1 : 0;
}

static void free_resumption(struct app *a)
{
    for (size_t i = 0; a->cfg != NULL && i < a->cfg->nlisteners; i++) {
        if (a->rt.caches)
            sesscache_free(&a->rt.caches[i]);
        if (a->rt.seeds)
            ticket_seed_free(&a->rt.seeds[i]);
    }
    free(a->rt.caches);
    free(a->rt.seeds);
}

static void free_certificates(struct app *a)
{
    if (a->rt.certs == NULL)
        return;
    for (size_t i = 0; i < a->cfg->nlisteners; i++) {
        for (size_t k = 0; a->rt.certs[i] && k < a->rt.ncerts[i]; k++)
            cert_pair_free(&a->rt.certs[i][k]);
        free(a->rt.certs[i]);
    }
    free(a->rt.certs);
    free(a->rt.ncerts);
}

/* "127.0.0.1:8443" for listener i as bound (port 0 resolved). */
static void bound_address(const struct app *a, size_t i, char *out, size_t len)
{
    struct sockaddr_storage ss = a->cfg->listeners[i].addr;
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)a->rt.ports[i]);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)a->rt.ports[i]);
    format_sockaddr((struct sockaddr *)&ss, out, len);
}

static int bind_listeners(struct app *a)
{
    struct cfg *cfg = a->cfg;
    char err[512];
    a->rt.listen_fds = calloc(cfg->nlisteners, sizeof(int *));
    a->rt.ports = calloc(cfg->nlisteners, sizeof(unsigned));
    if (a->rt.listen_fds == NULL || a->rt.ports == NULL)
        return -1;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        a->rt.listen_fds[i] = calloc(a->nworkers, sizeof(int));
        if (a->rt.listen_fds[i] == NULL)
            return -1;
        if (listener_bind_group(&cfg->listeners[i], a->nworkers, a->rt.listen_fds[i],
                                &a->rt.ports[i], err, sizeof(err)) != 0) {
            free(a->rt.listen_fds[i]);
            a->rt.listen_fds[i] = NULL;
            log_error("%s", err);
            return -1;
        }
    }
    return 0;
}

/* Written once every listener accepts and signals are handled, and renamed
 * into place, so that a reader never sees it early or half written. */
static int write_listen_file(const struct app *a, const char *path)
{
    char tmp[4096], addr[64];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        log_error("%s: %s", tmp, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < a->cfg->nlisteners; i++) {
        bound_address(a, i, addr, sizeof(addr));
        fprintf(f, "%s %s\n", a->cfg->listeners[i].name, addr);
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        log_error("%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct app *a = s->data;
    switch (signum) {
    case SIGTERM:
    case SIGINT:
        if (a->stopping) {
            log_warn("%s again: still draining (at most shutdown_timeout)", strsignal(signum));
            return;
        }
        a->stopping = 1;
        log_info("%s: stopping; draining connections", strsignal(signum));
        for (unsigned i = 0; i < a->started; i++)
            worker_stop(&a->workers[i]);
        for (size_t i = 0; i < ARRAY_SIZE(a->signals); i++)
            uv_close((uv_handle_t *)&a->signals[i], NULL);
        return;
    case SIGUSR1: {
        int rc = log_access_open(a->cfg->log.access);
        if (rc != 0)
            log_error("reopening the access log %s: %s", a->cfg->log.access, strerror(-rc));
        else
            log_info("access log reopened");
        return;
    }
    case SIGHUP:
        log_warn("SIGHUP: configuration reload is not supported yet; nothing changed");
        return;
    }
}

/* Resumption counters, summed over workers, once the workers are done.
 * The admin endpoint will expose them live. */
static void log_resumption_summary(const struct app *a)
{
    uint64_t full = 0, resumed = 0, errors = 0;
    for (unsigned i = 0; i < a->started; i++) {
        full += a->workers[i].stats.handshakes - a->workers[i].stats.handshakes_resumed;
        resumed += a->workers[i].stats.handshakes_resumed;
        errors += a->workers[i].stats.handshake_errors;
    }
    log_info("handshakes: %llu full, %llu resumed, %llu failed", (unsigned long long)full,
             (unsigned long long)resumed, (unsigned long long)errors);
    for (unsigned i = 0; i < a->started; i++)
        log_info("worker %u: %llu connections, %llu handshakes, %llu resumed", i,
                 (unsigned long long)a->workers[i].stats.connections_total,
                 (unsigned long long)a->workers[i].stats.handshakes,
                 (unsigned long long)a->workers[i].stats.handshakes_resumed);
    for (size_t l = 0; l < a->cfg->nlisteners; l++) {
        const char *name = a->cfg->listeners[l].name;
        if (a->rt.caches[l] != NULL) {
            struct sesscache_stats s;
            sesscache_stats(a->rt.caches[l], &s);
            log_info("listener \"%s\" session cache: %llu hits, %llu misses, %llu entries, "
                     "%llu evictions, %llu expired",
                     name, (unsigned long long)s.hits, (unsigned long long)s.misses,
                     (unsigned long long)s.entries, (unsigned long long)s.evictions,
                     (unsigned long long)s.expirations);
        }
        if (a->rt.seeds[l] != NULL) {
            struct ticket_stats sum = {0}, t;
            for (unsigned i = 0; i < a->started; i++) {
                if (a->workers[i].tickets == NULL || a->workers[i].tickets[l] == NULL)
                    continue;
                ticket_keys_stats(a->workers[i].tickets[l], &t);
                sum.issued += t.issued;
                sum.accepted += t.accepted;
                sum.rejected += t.rejected;
            }
            log_info("listener \"%s\" session tickets: %llu issued, %llu accepted, %llu rejected",
                     name, (unsigned long long)sum.issued, (unsigned long long)sum.accepted,
                     (unsigned long long)sum.rejected);
        }
    }
}

static void start_signals(struct app *a)
{
    static const int signums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    a->loop = uv_default_loop();
    for (size_t i = 0; i < ARRAY_SIZE(signums); i++) {
        uv_signal_init(a->loop, &a->signals[i]);
        a->signals[i].data = a;
        uv_signal_start(&a->signals[i], on_signal, signums[i]);
    }
}

static int start_workers(struct app *a)
{
    char err[512];
    a->workers = calloc(a->nworkers, sizeof(struct worker));
    if (a->workers == NULL)
        return -1;
    for (unsigned i = 0; i < a->nworkers; i++) {
        if (worker_init(&a->workers[i], i, &a->rt, err, sizeof(err)) != 0) {
            log_error("%s", err);
            worker_destroy(&a->workers[i]);
            return -1;
        }
        if (worker_start(&a->workers[i]) != 0) {
            log_error("worker %u: cannot start its thread", i);
            worker_destroy(&a->workers[i]);
            return -1;
        }
        a->started++;
    }
    return 0;
}

static int run(struct app *a, const char *listen_file)
{
    int rc = 0;
    char addr[64];
    a->nworkers = (unsigned)a->cfg->workers;
    a->rt.cfg = a->cfg;
    /* Signals first: a SIGTERM during start-up still means a clean stop. */
    start_signals(a);
    if (bind_listeners(a) != 0 || start_workers(a) != 0 ||
        (listen_file != NULL && write_listen_file(a, listen_file) != 0))
        rc = 1;
    if (rc == 0) {
        for (size_t i = 0; i < a->cfg->nlisteners; i++) {
            bound_address(a, i, addr, sizeof(addr));
            log_info("listener \"%s\" on https://%s", a->cfg->listeners[i].name, addr);
        }
        log_info("moat %s running with %u worker(s)", MOAT_VERSION, a->nworkers);
    } else if (!a->stopping) {
        on_signal(&a->signals[0], SIGTERM);
    }
    uv_run(a->loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < a->started; i++)
        worker_join(&a->workers[i]);
    if (rc == 0)
        log_resumption_summary(a);
    for (unsigned i = 0; i < a->started; i++)
        worker_destroy(&a->workers[i]);
    uv_loop_close(a->loop);
    free(a->workers);
    for (size_t i = 0; i < a->cfg->nlisteners && a->rt.listen_fds; i++)
        free(a->rt.listen_fds[i]);
    free(a->rt.listen_fds);
    free(a->rt.ports);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    struct app a = {0};
    char err[8192];

    if (parse_args(argc, argv, &o) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (tls_global_init() != 0) {
        fprintf(stderr, "moat: wolfSSL failed to initialise\n");
        return 1;
    }
    const char *path = config_path(&o);
    int rc = path ? cfg_load(path, &a.cfg, err, sizeof(err))
                  : cfg_load_default(&a.cfg, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    log_set_level(a.cfg->log.error_level);
    if (load_certificates(&a) != 0 || load_resumption(&a) != 0) {
        rc = 1;
        goto out;
    }
    if (o.test) {
        printf("configuration OK\n");
        goto out;
    }
    if (path == NULL)
        fprintf(stderr, "moat: no configuration file (-c, $MOAT_CONFIG, " DEFAULT_CONFIG
                        "): serving https://127.0.0.1:8443 -> http://127.0.0.1:8080 with a "
                        "self-signed certificate for localhost\n");
    rc = log_access_open(a.cfg->log.access);
    if (rc != 0) {
        log_error("access log %s: %s", a.cfg->log.access, strerror(-rc));
        rc = 1;
        goto out;
    }
    rc = run(&a, o.listen_file);
out:
    free_resumption(&a);
    free_certificates(&a);
    cfg_free(&a.cfg);
    tls_global_cleanup();
    return rc;
}
