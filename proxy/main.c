/*
 * main: the command line, loading and checking the configuration and
 * certificates, binding listeners, starting the workers and turning signals
 * into actions.  Owns the struct runtime the workers read.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "admin.h"
#include "cert.h"
#include "config.h"
#include "health.h"
#include "log.h"
#include "memcap.h"
#include "metrics.h"
#include "runtime.h"
#include "sidecar.h"
#include "sesscache.h"
#include "strutil.h"
#include "tickets.h"
#include "tls.h"
#include "version.h"
#include "watch.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/moat/moat.yaml"
#define EXPIRY_WARNING_DAYS 14

static const char usage_text[] =
    "usage: moat [-c FILE] [-t] [-V] [-h] [--listen-file FILE]\n"
    "       moat --upstream ADDR [--listen ADDR] [--cert FILE --key FILE] [--admin ADDR|off]\n"
    "            [--redirect ADDR]\n"
    "       moat --healthcheck [ADDR]\n"
    "  -c, --config FILE     configuration file (default: $MOAT_CONFIG, else the sidecar\n"
    "                        settings below if an upstream is given, else " DEFAULT_CONFIG ")\n"
    "  -t, --test            check the whole configuration and exit: 0 and \"configuration OK\",\n"
    "                        or 1 with the errors on stderr\n"
    "  -V, --version         moat's version and the versions of libuv, wolfSSL, llhttp, libyaml\n"
    "  -h, --help            this text\n"
    "      --listen-file FILE  once listening, write \"NAME ADDRESS\" per listener to FILE\n"
    "                        (useful with port 0 in tests)\n"
    "sidecar mode, no YAML (flags, or the environment variables in brackets):\n"
    "      --upstream ADDR   the app, \"127.0.0.1:3000\" or \"app:3000\" [MOAT_UPSTREAM]\n"
    "      --listen ADDR     HTTPS address, default 0.0.0.0:8443 [MOAT_LISTEN]\n"
    "      --cert FILE       PEM certificate chain; none: self-signed for localhost [MOAT_CERT]\n"
    "      --key FILE        its PEM private key [MOAT_KEY]\n"
    "      --admin ADDR      admin endpoint, default 127.0.0.1:9901, or off [MOAT_ADMIN]\n"
    "      --redirect ADDR   plain-HTTP address answering 308 to HTTPS [MOAT_REDIRECT]\n"
    "                        also: MOAT_TICKET_KEY_FILE, MOAT_WORKERS, MOAT_WATCH, MOAT_ACCESS_LOG,\n"
    "                        MOAT_CLIENT_CA, MOAT_CLIENT_AUTH\n"
    "      --healthcheck [ADDR]  GET http://ADDR/healthz (default 127.0.0.1:9901, or\n"
    "                        $MOAT_ADMIN) and exit 0 if it answers 200: a container HEALTHCHECK\n";

struct options {
    const char *config;
    const char *listen_file;
    int test;
    int version;
    int help;
    int healthcheck;
    const char *healthcheck_addr;
    struct sidecar_flags sidecar;
};

struct app {
    struct cfg_source source;
    struct runtime *rt;         /* current: one reference */
    struct worker *workers;
    unsigned nworkers;
    unsigned started;
    uv_loop_t *loop;
    uv_signal_t signals[4];
    uv_async_t applied;         /* workers report a reload applied, or their exit */
    unsigned pending_acks;      /* atomic: workers yet to apply rt */
    unsigned exited;            /* atomic: workers whose loop ended */
    struct admin *admin;
    struct health *health;
    struct watch *watch;
    int reloading;
    int reload_again;           /* SIGHUP while reloading: coalesced */
    uint64_t reloads_ok, reloads_failed;
    int stopping;               /* draining: /healthz says 503 */
    const char *listen_file;    /* --listen-file, or NULL */
};

/* The option getopt stopped at, as written: a letter inside a cluster
 * ("-xt") is named alone, since optind still points at the cluster or,
 * for the first one, at argv[0]. */
static const char *option_as_written(char **argv, char *letter, size_t len)
{
    const char *arg = argv[optind - 1];
    if (optopt > 0 && optopt < 128 && strncmp(arg, "--", 2) != 0) {
        snprintf(letter, len, "-%c", optopt);
        return letter;
    }
    return arg;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    enum {
        OPT_LISTEN_FILE = 256,
        OPT_UPSTREAM,
        OPT_LISTEN,
        OPT_CERT,
        OPT_KEY,
        OPT_ADMIN,
        OPT_REDIRECT,
        OPT_HEALTHCHECK,
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"listen-file", required_argument, NULL, OPT_LISTEN_FILE},
        {"upstream", required_argument, NULL, OPT_UPSTREAM},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"admin", required_argument, NULL, OPT_ADMIN},
        {"redirect", required_argument, NULL, OPT_REDIRECT},
        {"healthcheck", optional_argument, NULL, OPT_HEALTHCHECK},
        {NULL, 0, NULL, 0},
    };
    int ch;
    char letter[3];
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:tVh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->config = optarg; break;
        case 't': o->test = 1; break;
        case OPT_LISTEN_FILE: o->listen_file = optarg; break;
        case OPT_UPSTREAM: o->sidecar.upstream = optarg; break;
        case OPT_LISTEN: o->sidecar.listen = optarg; break;
        case OPT_CERT: o->sidecar.cert = optarg; break;
        case OPT_KEY: o->sidecar.key = optarg; break;
        case OPT_ADMIN: o->sidecar.admin = optarg; break;
        case OPT_REDIRECT: o->sidecar.redirect = optarg; break;
        case OPT_HEALTHCHECK:
            o->healthcheck = 1;
            o->healthcheck_addr = optarg;
            break;
        case 'V': o->version = 1; break;
        case 'h': o->help = 1; break;
        case ':':
            fprintf(stderr, "moat: option %s needs an argument\n%s",
                    option_as_written(argv, letter, sizeof(letter)), usage_text);
            return -1;
        default:
            fprintf(stderr, "moat: unknown option %s\n%s",
                    option_as_written(argv, letter, sizeof(letter)), usage_text);
            return -1;
        }
    }
    if (optind < argc && o->healthcheck && o->healthcheck_addr == NULL)
        o->healthcheck_addr = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "moat: unexpected argument \"%s\"\n%s", argv[optind], usage_text);
        return -1;
    }
    /* Only a command line without usage errors gets its -h or -V answered:
     * "moat -V extra" is a mistake, and exits 2 like any other. */
    if (o->help) {
        fputs(usage_text, stdout);
        exit(0);
    }
    if (o->version) {
        version_print(stdout);
        exit(0);
    }
    const struct sidecar_flags *f = &o->sidecar;
    int sidecar = f->upstream || f->listen || f->cert || f->key || f->admin || f->redirect;
    if (sidecar && o->config != NULL) {
        fprintf(stderr, "moat: -c and the sidecar flags (--upstream, ...) do not mix\n");
        return -1;
    }
    const char *config_env = getenv("MOAT_CONFIG");
    if (sidecar && config_env != NULL && config_env[0] != '\0') {
        fprintf(stderr, "moat: $MOAT_CONFIG and the sidecar flags (--upstream, ...) do not mix\n");
        return -1;
    }
    if (sidecar && f->upstream == NULL && getenv("MOAT_UPSTREAM") == NULL) {
        fprintf(stderr, "moat: sidecar flags need --upstream (or MOAT_UPSTREAM)\n");
        return -1;
    }
    return 0;
}

/*
 * -c, then $MOAT_CONFIG, then the sidecar settings when an upstream is
 * given (flag or environment), then the default path if it exists, else
 * the embedded default.  Returns 0 or -1 with err set.
 */
static int config_source(const struct options *o, struct cfg_source *src, char *err,
                         size_t errlen)
{
    memset(src, 0, sizeof(*src));
    src->kind = CFG_SOURCE_FILE;
    const char *env = getenv("MOAT_CONFIG");
    if (o->config != NULL)
        src->path = o->config;
    else if (env != NULL && env[0] != '\0')
        src->path = env;
    else {
        int rc = sidecar_source(&o->sidecar, src, err, errlen);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        if (access(DEFAULT_CONFIG, F_OK) == 0)
            src->path = DEFAULT_CONFIG;
    }
    /* Sidecar variables left over beside a YAML file are only odd; with no
     * file, they were meant to configure moat, and the embedded default
     * would ignore them without a word. */
    char unused[512];
    size_t n = sidecar_unused_variables(unused, sizeof(unused));
    if (n > 0 && src->path != NULL) {
        fprintf(stderr, "moat: warning: %s ignored: the configuration is %s\n", unused,
                src->path);
    } else if (n > 0) {
        snprintf(err, errlen,
                 "%s set, but no upstream: the sidecar mode needs MOAT_UPSTREAM (or "
                 "--upstream), the app's address",
                 unused);
        return -1;
    } else if (src->path == NULL) {
        src->kind = CFG_SOURCE_DEFAULT;
    }
    return 0;
}

static const char *source_name(const struct cfg_source *src)
{
    switch (src->kind) {
    case CFG_SOURCE_FILE: return src->path;
    case CFG_SOURCE_TEXT: return src->name;
    default: return "the embedded default";
    }
}

/* Written once every listener accepts and signals are handled, and renamed
 * into place, so that a reader never sees it early or half written. */
/* "NAME ADDRESS" per listener, then "@admin ADDRESS"; returns the length. */
static size_t format_listen_lines(const struct app *a, char *out, size_t len)
{
    char addr[64];
    size_t n = 0;
    for (size_t i = 0; i < a->rt->cfg->nlisteners && n < len; i++) {
        runtime_bound_address(a->rt, i, addr, sizeof(addr));
        n += (size_t)snprintf(out + n, len - n, "%s %s\n", a->rt->cfg->listeners[i].name, addr);
    }
    /* "@admin" cannot clash: listener names never start with "@". */
    if (a->rt->cfg->admin.enabled && n < len) {
        struct sockaddr_storage ss = a->rt->cfg->admin.addr;
        if (ss.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)a->rt->admin_port);
        else
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)a->rt->admin_port);
        format_sockaddr((struct sockaddr *)&ss, addr, sizeof(addr));
        n += (size_t)snprintf(out + n, len - n, "@admin %s\n", addr);
    }
    return n < len ? n : len;
}

/*
 * A regular file (or none yet) is replaced at once, so that a reader never
 * sees half of it.  "-", /dev/stdout and /dev/stderr go to moat's own
 * descriptors: opening them again would truncate a file stdout is
 * redirected to, or fail on a socket (journald).  Anything else at the
 * path (a symlink, a FIFO) is written through, as nginx writes its pid
 * file: renaming over it would replace the link or the FIFO itself.  A
 * FIFO with no reader is an error rather than a start-up that waits.
 */
static int write_listen_file(const struct app *a, const char *path)
{
    char text[16384], tmp[4096];
    size_t n = format_listen_lines(a, text, sizeof(text));
    int std_fd = strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0 ? STDOUT_FILENO
                 : strcmp(path, "/dev/stderr") == 0                          ? STDERR_FILENO
                                                                             : -1;
    if (std_fd >= 0) {
        if (log_write_all(std_fd, text, n) == 0)
            return 0;
        log_error("--listen-file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int through = lstat(path, &st) == 0 && !S_ISREG(st.st_mode);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    const char *target = through ? path : tmp;
    int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd < 0) {
        log_error("--listen-file %s: cannot write %s: %s", path, target,
                  errno == ENXIO ? "a FIFO with no reader" : strerror(errno));
        return -1;
    }
    int rc = log_write_all(fd, text, n);
    int err = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc == 0 && !through && rename(tmp, path) != 0) {
        rc = -1;
        err = errno;
    }
    if (rc != 0) {
        log_error("--listen-file %s: %s", path, strerror(err));
        if (!through)
            unlink(tmp);
    }
    return rc;
}

static void log_listeners(const struct runtime *rt)
{
    char addr[64];
    for (size_t i = 0; i < rt->cfg->nlisteners; i++) {
        runtime_bound_address(rt, i, addr, sizeof(addr));
        const struct cfg_listener *l = &rt->cfg->listeners[i];
        if (l->redirect_to_https)
            log_info("listener \"%s\" on http://%s (redirects to https, port %llu)", l->name,
                     addr, (unsigned long long)l->redirect_to_https);
        else
            log_info("listener \"%s\" on https://%s", l->name, addr);
    }
}

static void start_reload(struct app *a);

static void start_admin(struct app *a, struct runtime *rt)
{
    char err[256];
    struct admin_source src = {
        .workers = a->workers,
        .nworkers = &a->started,
        .rt = &a->rt,
        .health = NULL,
        .reloads_ok = &a->reloads_ok,
        .reloads_failed = &a->reloads_failed,
        .draining = &a->stopping,
    };
    src.health = a->health;
    int fd = rt->admin_fd;
    rt->admin_fd = -1;
    a->admin = admin_start(a->loop, fd, &src, err, sizeof(err));
    if (a->admin == NULL)
        log_error("%s", err);
}

/* A reload may move, start or stop the admin listener. */
static void switch_admin(struct app *a, struct runtime *rt)
{
    if (!rt->cfg->admin.enabled) {
        admin_stop(&a->admin);
        return;
    }
    if (rt->admin_fd < 0)
        return; /* same address: the listener stays */
    admin_stop(&a->admin);
    start_admin(a, rt);
}

static void finish_reload(struct app *a)
{
    a->reloading = 0;
    /* Draining, the workers accept nothing more: no connection will run on
     * it, and saying "applied" after "stopping" reads as if it did. */
    if (a->stopping)
        log_debug("reload %llu reached every worker while stopping",
                  (unsigned long long)a->rt->generation);
    else
        log_info("reload %llu applied by every worker", (unsigned long long)a->rt->generation);
    if (a->reload_again && !a->stopping) {
        a->reload_again = 0;
        start_reload(a);
    }
}

/* The admin endpoint answers until every worker has drained. */
static void close_main_handles(struct app *a)
{
    /* The handlers stayed through the drain: a logrotate SIGUSR1, a
     * certificate hook's SIGHUP or a second SIGTERM then must not kill
     * moat with the default action.  Nor in the last moments. */
    for (size_t i = 0; i < ARRAY_SIZE(a->signals); i++)
        if (!uv_is_closing((uv_handle_t *)&a->signals[i]))
            uv_close((uv_handle_t *)&a->signals[i], NULL);
    static const int quiet[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    for (size_t i = 0; i < ARRAY_SIZE(quiet); i++)
        signal(quiet[i], SIG_IGN);
    admin_stop(&a->admin);
    health_stop(&a->health);
    watch_stop(&a->watch);
    memcap_stop();
    if (!uv_is_closing((uv_handle_t *)&a->applied))
        uv_close((uv_handle_t *)&a->applied, NULL);
}

/* Runs on the main loop after a worker switched, or ended. */
static void on_workers_applied(uv_async_t *h)
{
    struct app *a = h->data;
    if (a->reloading && __atomic_load_n(&a->pending_acks, __ATOMIC_ACQUIRE) == 0)
        finish_reload(a);
    if (a->stopping && __atomic_load_n(&a->exited, __ATOMIC_ACQUIRE) == a->started)
        close_main_handles(a);
}

static void on_worker_exit(struct worker *w, void *arg)
{
    struct app *a = arg;
    (void)w;
    __atomic_add_fetch(&a->exited, 1, __ATOMIC_ACQ_REL);
    uv_async_send(&a->applied);
}

/* A worker's thread: one more worker runs the new runtime. */
static void on_worker_applied(struct worker *w, void *arg)
{
    struct app *a = arg;
    (void)w;
    if (__atomic_sub_fetch(&a->pending_acks, 1, __ATOMIC_ACQ_REL) == 0)
        uv_async_send(&a->applied);
}

/*
 * SIGHUP: build and check the whole new runtime here, off the workers'
 * loops; on success hand it to every worker, which switches new
 * connections to it.  On failure nothing changes.  Reloads never overlap:
 * one that arrives meanwhile runs once this one is applied everywhere.
 */
static void start_reload(struct app *a)
{
    char err[8192];
    if (a->reloading) {
        a->reload_again = 1;
        return;
    }
    struct runtime *rt = runtime_load(&a->source, a->rt, a->nworkers, 0, err, sizeof(err));
    if (rt != NULL && health_apply(a->health, rt) != 0) {
        snprintf(err, sizeof(err), "health checks: out of memory");
        runtime_unref(&rt);
    }
    if (rt == NULL) {
        a->reloads_failed++;
        log_error("reload failed, still serving the previous configuration:");
        for (char *line = strtok(err, "\n"); line != NULL; line = strtok(NULL, "\n"))
            log_error("  %s", line);
        return;
    }
    if (rt->cfg->workers != a->rt->cfg->workers)
        log_warn("reload: workers stays %u until a restart", a->nworkers);
    log_set_level(rt->cfg->log.error_level);
    memcap_set_budget(rt->cfg->limits.max_memory);
    int rc = log_access_open(rt->cfg->log.access);
    if (rc != 0)
        log_error("reload: access log %s: %s", rt->cfg->log.access, strerror(-rc));
    a->reloads_ok++;
    a->reloading = 1;
    switch_admin(a, rt);
    watch_apply(a->watch, rt->cfg);
    runtime_unref(&a->rt);
    a->rt = rt;
    log_info("reload %llu: configuration loaded", (unsigned long long)rt->generation);
    log_listeners(rt);
    /* A listener the reload added (on port 0 or not) must show there too;
     * a failure to write it is logged and changes nothing else. */
    if (a->listen_file != NULL)
        write_listen_file(a, a->listen_file);
    __atomic_store_n(&a->pending_acks, a->started, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < a->started; i++)
        worker_post_runtime(&a->workers[i], rt);
    if (a->started == 0)
        finish_reload(a);
}

/* Stops accepting; the main loop ends once every worker has drained. */
static void stop(struct app *a)
{
    a->stopping = 1;
    for (unsigned i = 0; i < a->started; i++)
        worker_stop(&a->workers[i]);
    if (__atomic_load_n(&a->exited, __ATOMIC_ACQUIRE) == a->started)
        close_main_handles(a);
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
        log_info("%s: stopping; draining connections", strsignal(signum));
        stop(a);
        return;
    case SIGUSR1: {
        int rc = log_access_open(a->rt->cfg->log.access);
        if (rc != 0)
            log_error("reopening the access log %s: %s", a->rt->cfg->log.access, strerror(-rc));
        else
            log_info("access log reopened");
        return;
    }
    case SIGHUP:
        if (a->stopping) {
            log_warn("SIGHUP while draining: ignored");
            return;
        }
        if (a->reloading)
            log_info("SIGHUP: reloading %s once the reload under way is applied",
                     source_name(&a->source));
        else
            log_info("SIGHUP: reloading %s", source_name(&a->source));
        start_reload(a);
        return;
    }
}

/* Handshake and resumption counters, summed over workers, once the workers
 * are done (the admin endpoint shows them live). */
static void log_resumption_summary(const struct app *a)
{
    uint64_t full = 0, resumed = 0, errors = 0;
    const struct cfg *cfg = a->rt->cfg;
    for (unsigned i = 0; i < a->started; i++) {
        uint64_t wconns = 0, whs = 0, wres = 0;
        for (const struct listener_stats *l = a->workers[i].metrics.listeners; l; l = l->next) {
            for (int v = 0; v < 2; v++) {
                whs += l->handshakes[v][0] + l->handshakes[v][1];
                wres += l->handshakes[v][1];
            }
            wconns += l->connections;
            errors += l->handshake_errors;
        }
        full += whs - wres;
        resumed += wres;
        log_info("worker %u: %llu connections, %llu handshakes, %llu resumed", i,
                 (unsigned long long)wconns, (unsigned long long)whs, (unsigned long long)wres);
    }
    log_info("handshakes: %llu full, %llu resumed, %llu failed", (unsigned long long)full,
             (unsigned long long)resumed, (unsigned long long)errors);
    for (size_t l = 0; l < cfg->nlisteners; l++) {
        const char *name = cfg->listeners[l].name;
        if (a->rt->caches[l] != NULL) {
            struct sesscache_stats s;
            sesscache_stats(a->rt->caches[l], &s);
            log_info("listener \"%s\" session cache: %llu hits, %llu misses, %llu entries, "
                     "%llu evictions, %llu expired",
                     name, (unsigned long long)s.hits, (unsigned long long)s.misses,
                     (unsigned long long)s.entries, (unsigned long long)s.evictions,
                     (unsigned long long)s.expirations);
        }
        if (a->rt->seeds[l] != NULL) {
            struct ticket_stats sum = {0};
            for (unsigned i = 0; i < a->started; i++) {
                struct listener_stats *ls = metrics_listener(&a->workers[i].metrics, name);
                if (ls == NULL)
                    continue;
                sum.issued += ls->tickets.issued;
                sum.accepted += ls->tickets.accepted;
                sum.rejected += ls->tickets.rejected;
            }
            log_info("listener \"%s\" session tickets: %llu issued, %llu accepted, %llu rejected",
                     name, (unsigned long long)sum.issued, (unsigned long long)sum.accepted,
                     (unsigned long long)sum.rejected);
        }
    }
}

static void on_certificates_changed(void *arg)
{
    struct app *a = arg;
    if (a->stopping)
        return;
    log_info("certificate files changed: reloading");
    start_reload(a);
}

/* Client connections open on every worker started so far. */
static uint64_t count_connections(void *arg)
{
    const struct app *a = arg;
    uint64_t n = 0;
    for (unsigned i = 0; i < a->started; i++)
        n += STAT_GET(a->workers[i].metrics.active);
    return n;
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
    uv_async_init(a->loop, &a->applied, on_workers_applied);
    a->applied.data = a;
    a->health = health_new(a->loop);
    a->watch = watch_new(a->loop, on_certificates_changed, a);
    memcap_set_budget(a->rt->cfg->limits.max_memory);
    memcap_start(a->loop, count_connections, a);
}

static int start_workers(struct app *a)
{
    char err[512];
    a->workers = calloc(a->nworkers, sizeof(struct worker));
    if (a->workers == NULL)
        return -1;
    for (unsigned i = 0; i < a->nworkers; i++) {
        struct worker_hooks hooks = {on_worker_applied, on_worker_exit, a};
        if (worker_init(&a->workers[i], i, a->rt, &hooks, err, sizeof(err)) != 0) {
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

static int run(struct app *a)
{
    int rc = 0;
    /* Signals first: a SIGTERM during start-up still means a clean stop. */
    start_signals(a);
    if (a->health == NULL || a->watch == NULL || health_apply(a->health, a->rt) != 0 ||
        watch_apply(a->watch, a->rt->cfg) != 0 || start_workers(a) != 0)
        rc = 1;
    if (rc == 0 && a->rt->cfg->admin.enabled) {
        start_admin(a, a->rt);
        if (a->admin == NULL)
            rc = 1;
    }
    if (rc == 0 && a->listen_file != NULL && write_listen_file(a, a->listen_file) != 0)
        rc = 1;
    if (rc == 0) {
        log_listeners(a->rt);
        log_info("moat %s running with %u worker(s)", MOAT_VERSION, a->nworkers);
    } else if (!a->stopping) {
        log_error("start-up failed: exiting");
        stop(a);
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
    if (o.healthcheck) {
        const char *addr = o.healthcheck_addr;
        if (addr == NULL)
            addr = getenv("MOAT_ADMIN");
        if (addr != NULL && strcmp(addr, "off") == 0) {
            fprintf(stderr, "moat: healthcheck: the admin endpoint is off (MOAT_ADMIN=off): "
                            "nothing answers /healthz\n");
            return 1;
        }
        if (addr == NULL || addr[0] == '\0')
            addr = "127.0.0.1:9901";
        return admin_probe(addr, 2000) == 0 ? 0 : 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (tls_global_init() != 0) {
        fprintf(stderr, "moat: wolfSSL failed to initialise\n");
        return 1;
    }
    if (config_source(&o, &a.source, err, sizeof(err)) != 0) {
        fprintf(stderr, "moat: %s\n", err);
        tls_global_cleanup();
        return 1;
    }
    a.rt = runtime_load(&a.source, NULL, 0, o.test, err, sizeof(err));
    if (a.rt == NULL) {
        fprintf(stderr, "%s\n", err);
        tls_global_cleanup();
        return 1;
    }
    int rc = 0;
    a.nworkers = a.rt->nworkers;
    log_set_level(a.rt->cfg->log.error_level);
    if (o.test) {
        /* Running, moat warns when over budget; a check that passes a
         * budget no client can get under would be silent about it. */
        uint64_t budget = a.rt->cfg->limits.max_memory, rss = memcap_resident_now();
        if (budget != 0 && rss >= budget)
            fprintf(stderr,
                    "moat: warning: limits.max_memory (%llu KiB) is below the %llu KiB moat "
                    "holds with no connection open: every connection would be refused\n",
                    (unsigned long long)(budget >> 10), (unsigned long long)(rss >> 10));
        printf("configuration OK\n");
        goto out;
    }
    if (a.source.kind == CFG_SOURCE_DEFAULT)
        fprintf(stderr, "moat: no configuration file (-c, $MOAT_CONFIG, " DEFAULT_CONFIG
                        "): serving https://127.0.0.1:8443 -> http://127.0.0.1:8080 with a "
                        "self-signed certificate for localhost\n");
    rc = log_access_open(a.rt->cfg->log.access);
    if (rc != 0) {
        log_error("access log %s: %s", a.rt->cfg->log.access, strerror(-rc));
        rc = 1;
        goto out;
    }
    a.listen_file = o.listen_file;
    rc = run(&a);
out:
    runtime_unref(&a.rt);
    tls_global_cleanup();
    return rc;
}
