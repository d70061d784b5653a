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
#include "strutil.h"
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
static int load_certificates(struct app *a)
{
    struct cfg *cfg = a->cfg;
    char err[1024];
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
        for (size_t k = 0; k < n; k++) {
            int rc = l->tls.ncerts == 0
                         ? cert_pair_generate(&a->rt.certs[i][k], "localhost", err, sizeof(err))
                         : cert_pair_load(&a->rt.certs[i][k], l->tls.certs[k].cert,
                                          l->tls.certs[k].key, err, sizeof(err));
            if (rc != 0) {
                fprintf(stderr, "%s:%u:%u: %s\n", cfg->path, l->tls.ncerts ? l->tls.certs[k].pos.line : 0,
                        l->tls.ncerts ? l->tls.certs[k].pos.col : 0, err);
                failed = 1;
                continue;
            }
            a->rt.ncerts[i]++;
            warn_expiry(l, &a->rt.certs[i][k]);
        }
        if (failed)
            continue;
        struct tls_ctx_set *set = NULL;
        if (tls_ctx_set_new(&set, &l->tls, a->rt.certs[i], a->rt.ncerts[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "%s:%u:%u: listener \"%s\": %s\n", cfg->path, l->tls.pos.line,
                    l->tls.pos.col, l->name, err);
            failed = 1;
        }
        tls_ctx_set_free(&set);
    }
    return failed ? -1 : 0;
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

static int bind_listeners(struct app *a, const char *listen_file)
{
    struct cfg *cfg = a->cfg;
    char err[512];
    a->rt.listen_fds = calloc(cfg->nlisteners, sizeof(int *));
    a->rt.ports = calloc(cfg->nlisteners, sizeof(unsigned));
    if (a->rt.listen_fds == NULL || a->rt.ports == NULL)
        return -1;
    FILE *lf = NULL;
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
        struct sockaddr_storage ss = cfg->listeners[i].addr;
        char addr[64];
        if (ss.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)a->rt.ports[i]);
        else
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)a->rt.ports[i]);
        format_sockaddr((struct sockaddr *)&ss, addr, sizeof(addr));
        log_info("listener \"%s\" on https://%s", cfg->listeners[i].name, addr);
        if (listen_file != NULL) {
            if (lf == NULL && (lf = fopen(listen_file, "w")) == NULL) {
                log_error("%s: %s", listen_file, strerror(errno));
                return -1;
            }
            fprintf(lf, "%s %s\n", cfg->listeners[i].name, addr);
        }
    }
    if (lf != NULL && fclose(lf) != 0) {
        log_error("%s: %s", listen_file, strerror(errno));
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

static int run(struct app *a, const char *listen_file)
{
    char err[512];
    a->nworkers = (unsigned)a->cfg->workers;
    if (bind_listeners(a, listen_file) != 0)
        return 1;
    a->rt.cfg = a->cfg;
    a->workers = calloc(a->nworkers, sizeof(struct worker));
    if (a->workers == NULL)
        return 1;
    int rc = 0;
    for (unsigned i = 0; i < a->nworkers && rc == 0; i++) {
        if (worker_init(&a->workers[i], i, &a->rt, err, sizeof(err)) != 0) {
            log_error("%s", err);
            worker_destroy(&a->workers[i]);
            rc = 1;
            break;
        }
        if (worker_start(&a->workers[i]) != 0) {
            log_error("worker %u: cannot start its thread", i);
            worker_destroy(&a->workers[i]);
            rc = 1;
            break;
        }
        a->started++;
    }
    a->loop = uv_default_loop();
    static const int signums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    for (size_t i = 0; i < ARRAY_SIZE(signums); i++) {
        uv_signal_init(a->loop, &a->signals[i]);
        a->signals[i].data = a;
        uv_signal_start(&a->signals[i], on_signal, signums[i]);
    }
    if (rc == 0)
        log_info("moat %s running with %u worker(s)", MOAT_VERSION, a->nworkers);
    else
        on_signal(&a->signals[0], SIGTERM);
    uv_run(a->loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < a->started; i++) {
        worker_join(&a->workers[i]);
        worker_destroy(&a->workers[i]);
    }
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
    if (load_certificates(&a) != 0) {
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
    free_certificates(&a);
    cfg_free(&a.cfg);
    tls_global_cleanup();
    return rc;
}
