/*
 * sidecar: turns flags and environment variables into configuration text.
 * Owns that text (static, built once); knows the YAML schema only as text.
 */
#include "sidecar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SIDECAR_NAME "sidecar settings"
#define MAX_LINES 64

static char text[16384];
/* Which setting each line of text comes from, for error messages. */
static const char *line_origin[MAX_LINES];

struct writer {
    size_t len;
    unsigned line;
    int overflow;
};

/* Appends one line, remembering where it came from. */
static void line(struct writer *w, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void line(struct writer *w, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text + w->len, sizeof(text) - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 2 >= sizeof(text) - w->len || w->line + 1 >= MAX_LINES) {
        w->overflow = 1;
        return;
    }
    w->len += (size_t)n;
    text[w->len++] = '\n';
    text[w->len] = '\0';
    line_origin[++w->line] = origin;
}

/* A YAML double-quoted scalar: the value cannot break the document. */
static const char *quoted(const char *v, char *out, size_t len)
{
    size_t o = 0;
    out[o++] = '"';
    for (; *v && o + 5 < len; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/* The sidecar variables but MOAT_ADMIN, which --healthcheck reads too. */
static const char *const names[] = {
    "MOAT_UPSTREAM", "MOAT_LISTEN", "MOAT_CERT", "MOAT_KEY", "MOAT_REDIRECT",
    "MOAT_TICKET_KEY_FILE", "MOAT_WORKERS", "MOAT_WATCH", "MOAT_ACCESS_LOG",
    "MOAT_CLIENT_CA", "MOAT_CLIENT_AUTH", "MOAT_LOG_LEVEL", "MOAT_LOG_FORMAT",
};

/* An empty variable is a mistake (MOAT_CLIENT_CA=$UNSET turned mutual TLS
 * off, MOAT_CERT= $UNSET served the self-signed certificate): refused,
 * never read as "the default". */
static const char *empty_variable(void)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        if (v != NULL && v[0] == '\0')
            return names[i];
    }
    const char *admin = getenv("MOAT_ADMIN");
    return admin != NULL && admin[0] == '\0' ? "MOAT_ADMIN" : NULL;
}

/* 1 if v, spaces around it aside, is one of words in any case. */
static int is_word(const char *v, const char *const *words, size_t nwords)
{
    v += strspn(v, " \t");
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < nwords; i++)
        if (strlen(words[i]) == n && strncasecmp(v, words[i], n) == 0)
            return 1;
    return 0;
}

/* MOAT_ACCESS_LOG=false wrote to a file named "false". */
static int means_off(const char *v)
{
    static const char *const words[] = {"off", "null", "none", "false", "no", "n", "~"};
    return is_word(v, words, sizeof(words) / sizeof(words[0]));
}

static int means_on(const char *v)
{
    static const char *const words[] = {"on", "true", "yes", "y"};
    return is_word(v, words, sizeof(words) / sizeof(words[0]));
}

static const char *pick(const char *flag, const char *env, const char *deflt, const char **origin,
                        const char *flag_name, const char *env_name)
{
    const char *v = getenv(env);
    if (flag != NULL) {
        *origin = flag_name;
        return flag;
    }
    if (v != NULL && v[0] != '\0') {
        *origin = env_name;
        return v;
    }
    *origin = env_name;
    return deflt;
}

/* "sidecar settings:7:12: message" becomes "MOAT_UPSTREAM: message". */
static void explain(char *err, size_t errlen)
{
    char out[8192];
    size_t o = 0;
    const char *p = err;
    const size_t prefix = strlen(SIDECAR_NAME);
    while (*p && o + 1 < sizeof(out)) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        unsigned ln = 0, col = 0;
        int skip = 0;
        if (strncmp(p, SIDECAR_NAME ":", prefix + 1) == 0 &&
            sscanf(p + prefix + 1, "%u:%u: %n", &ln, &col, &skip) == 2 && skip > 0 &&
            ln < MAX_LINES && line_origin[ln] != NULL) {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s: %.*s", line_origin[ln],
                                  (int)(n - prefix - 1 - (size_t)skip), p + prefix + 1 + skip);
        } else {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%.*s", (int)n, p);
        }
        if (o >= sizeof(out))
            o = sizeof(out) - 1;
        p += n;
        if (*p == '\n' && o + 1 < sizeof(out)) {
            out[o++] = '\n';
            p++;
        }
    }
    out[o] = '\0';
    snprintf(err, errlen, "%s", out);
}

int sidecar_source(const struct sidecar_flags *f, struct cfg_source *src, char *err, size_t errlen)
{
    const char *o_up, *o_listen, *o_cert, *o_key, *o_admin, *o_redirect, *o_tk, *o_workers,
        *o_watch, *o_log, *o_ca, *o_auth, *o_level, *o_format;
    const char *upstream = pick(f->upstream, "MOAT_UPSTREAM", NULL, &o_up, "--upstream",
                                "MOAT_UPSTREAM");
    if (upstream == NULL)
        return 0;
    const char *empty = empty_variable();
    if (empty != NULL) {
        snprintf(err, errlen, "%s: set but empty: give it a value, or unset it for the default",
                 empty);
        return -1;
    }
    const char *listen = pick(f->listen, "MOAT_LISTEN", "0.0.0.0:8443", &o_listen, "--listen",
                              "MOAT_LISTEN");
    const char *cert = pick(f->cert, "MOAT_CERT", NULL, &o_cert, "--cert", "MOAT_CERT");
    const char *key = pick(f->key, "MOAT_KEY", NULL, &o_key, "--key", "MOAT_KEY");
    const char *admin = pick(f->admin, "MOAT_ADMIN", "127.0.0.1:9901", &o_admin, "--admin",
                             "MOAT_ADMIN");
    const char *redirect = pick(f->redirect, "MOAT_REDIRECT", NULL, &o_redirect, "--redirect",
                                "MOAT_REDIRECT");
    const char *ticket_key = pick(NULL, "MOAT_TICKET_KEY_FILE", NULL, &o_tk, NULL,
                                  "MOAT_TICKET_KEY_FILE");
    const char *workers = pick(NULL, "MOAT_WORKERS", "auto", &o_workers, NULL, "MOAT_WORKERS");
    const char *watch = pick(NULL, "MOAT_WATCH", cert ? "true" : "false", &o_watch, NULL,
                             "MOAT_WATCH");
    const char *access = pick(NULL, "MOAT_ACCESS_LOG", "stdout", &o_log, NULL, "MOAT_ACCESS_LOG");
    const char *client_ca = pick(NULL, "MOAT_CLIENT_CA", NULL, &o_ca, NULL, "MOAT_CLIENT_CA");
    const char *level = pick(NULL, "MOAT_LOG_LEVEL", "info", &o_level, NULL, "MOAT_LOG_LEVEL");
    const char *format = pick(NULL, "MOAT_LOG_FORMAT", "json", &o_format, NULL, "MOAT_LOG_FORMAT");
    const char *auth_env = getenv("MOAT_CLIENT_AUTH");
    const char *client_auth = pick(NULL, "MOAT_CLIENT_AUTH", "required", &o_auth, NULL,
                                   "MOAT_CLIENT_AUTH");
    int optional = strcmp(client_auth, "optional") == 0;
    if (!optional && strcmp(client_auth, "required") != 0) {
        snprintf(err, errlen, "MOAT_CLIENT_AUTH: \"%s\" is neither \"required\" nor \"optional\"",
                 client_auth);
        return -1;
    }
    if (auth_env != NULL && auth_env[0] != '\0' && client_ca == NULL) {
        snprintf(err, errlen, "MOAT_CLIENT_AUTH: needs MOAT_CLIENT_CA, the CAs to check against");
        return -1;
    }
    if (means_on(access)) {
        snprintf(err, errlen, "MOAT_ACCESS_LOG: \"%s\" is no place to log to: stdout, stderr, a "
                              "file path, or off", access);
        return -1;
    }
    if (cert == NULL && getenv("MOAT_WATCH") != NULL && strcmp(watch, "true") == 0) {
        snprintf(err, errlen, "MOAT_WATCH: true, but there is no certificate file to watch "
                              "(MOAT_CERT or --cert)");
        return -1;
    }
    if ((cert == NULL) != (key == NULL)) {
        snprintf(err, errlen, "%s: a certificate needs its key (%s), and a key its certificate",
                 cert ? o_cert : o_key, cert ? "MOAT_KEY or --key" : "MOAT_CERT or --cert");
        return -1;
    }
    char q[4][1024];
    struct writer w = {0};
    line(&w, o_workers, "workers: %s", quoted(workers, q[0], sizeof(q[0])));
    line(&w, NULL, "listeners:");
    line(&w, NULL, "  - name: https");
    line(&w, o_listen, "    bind: %s", quoted(listen, q[0], sizeof(q[0])));
    line(&w, NULL, "    tls:");
    line(&w, o_watch, "      watch: %s", watch);
    if (ticket_key != NULL)
        line(&w, o_tk, "      session_tickets: {key_file: %s}", quoted(ticket_key, q[0], sizeof(q[0])));
    if (client_ca != NULL) {
        line(&w, NULL, "      client_auth:");
        line(&w, o_ca, "        ca: %s", quoted(client_ca, q[0], sizeof(q[0])));
        line(&w, o_auth, "        required: %s", optional ? "false" : "true");
    }
    if (cert != NULL) {
        line(&w, NULL, "      certificates:");
        line(&w, o_cert, "        - cert: %s", quoted(cert, q[0], sizeof(q[0])));
        line(&w, o_key, "          key: %s", quoted(key, q[1], sizeof(q[1])));
    } else {
        line(&w, NULL, "      certificates: []");
    }
    if (redirect != NULL) {
        const char *colon = strrchr(listen, ':');
        line(&w, NULL, "  - name: redirect");
        line(&w, o_redirect, "    bind: %s", quoted(redirect, q[0], sizeof(q[0])));
        line(&w, o_listen, "    redirect_to_https: %s", colon ? colon + 1 : "443");
    }
    line(&w, NULL, "routes:");
    line(&w, NULL, "  - path: /");
    line(&w, NULL, "    upstream: app");
    line(&w, NULL, "upstreams:");
    line(&w, NULL, "  app:");
    line(&w, o_up, "    servers: [%s]", quoted(upstream, q[0], sizeof(q[0])));
    if (strcmp(admin, "off") != 0) {
        line(&w, NULL, "admin:");
        line(&w, o_admin, "  bind: %s", quoted(admin, q[0], sizeof(q[0])));
    }
    line(&w, NULL, "log:");
    static const char *const std_out[] = {"stdout"}, *const std_err[] = {"stderr"};
    if (means_off(access))
        line(&w, o_log, "  access: null");
    else if (is_word(access, std_out, 1) || is_word(access, std_err, 1))
        line(&w, o_log, "  access: %s", is_word(access, std_out, 1) ? "stdout" : "stderr");
    else
        line(&w, o_log, "  access: %s", quoted(access, q[0], sizeof(q[0])));
    line(&w, o_format, "  format: %s", quoted(format, q[0], sizeof(q[0])));
    line(&w, o_level, "  level: %s", quoted(level, q[0], sizeof(q[0])));
    if (w.overflow) {
        snprintf(err, errlen, "sidecar settings too long");
        return -1;
    }
    memset(src, 0, sizeof(*src));
    src->kind = CFG_SOURCE_TEXT;
    src->name = SIDECAR_NAME;
    src->text = text;
    src->self_signed = cert == NULL;
    src->explain = explain;
    return 1;
}

size_t sidecar_unused_variables(char *out, size_t len)
{
    size_t n = 0, used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        if (v == NULL || (i > 0 && v[0] == '\0'))
            continue;
        int w = snprintf(out + used, len - used, "%s%s%s", n ? ", " : "", names[i],
                         v[0] == '\0' ? " (empty)" : "");
        if (w > 0 && (size_t)w < len - used)
            used += (size_t)w;
        n++;
    }
    return n;
}
