/*
 * config: moat's configuration as an immutable value.  cfg_load() reads and
 * validates a whole YAML file (or the embedded default) into a struct cfg
 * that owns all its memory; cfg_free() releases it.  Nothing here opens a
 * socket or reads a certificate: tls and listener do that from the values.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "log.h"

/* 1-based position of a value in the configuration file. */
struct cfg_pos {
    unsigned line;
    unsigned col;
};

struct cfg_cert {
    char *cert; /* path, resolved against the configuration's directory */
    char *key;
    struct cfg_pos pos;
    struct cfg_pos key_pos;
};

struct cfg_session_cache {
    uint64_t size;          /* entries; 0: no session-ID cache */
    uint64_t timeout_ms;
};

struct cfg_session_tickets {
    int enabled;
    char *key_file;         /* NULL: random keys in memory */
    uint64_t rotate_ms;
    struct cfg_pos key_file_pos;
};

/* Mutual TLS: clients present a certificate that chains to ca. */
struct cfg_client_auth {
    char *ca;               /* PEM file of the CA certificates to accept */
    int required;           /* 0: a client may present none (one it presents must verify) */
    struct cfg_pos ca_pos;
};

struct cfg_tls {
    struct cfg_cert *certs; /* the first is the default */
    size_t ncerts;
    char *min_version;      /* "1.2" or "1.3" */
    char *ciphers;          /* NULL: moat's secure default */
    char **alpn;
    size_t nalpn;
    uint64_t handshake_timeout_ms;
    int watch;              /* reload when a certificate or key file changes */
    struct cfg_session_cache session_cache;
    struct cfg_session_tickets session_tickets;
    int has_client_auth;
    struct cfg_client_auth client_auth;
    struct cfg_pos pos;
    struct cfg_pos ciphers_pos;
};

struct cfg_listener {
    char *name;
    char *bind;
    struct sockaddr_storage addr;
    int has_tls;
    struct cfg_tls tls;
    uint64_t redirect_to_https; /* plain-HTTP listener answering 308 to this port; 0: none */
    struct cfg_pos pos;
    struct cfg_pos bind_pos;
    struct cfg_pos redirect_pos; /* line 0: redirect_to_https not given */
};

struct cfg_route {
    char *host;             /* lower case; NULL matches any host */
    char *path;             /* prefix, starts with '/' */
    char *upstream_name;
    size_t upstream;        /* index into cfg.upstreams */
    int wildcard;           /* host is "*.suffix"; host then holds ".suffix" */
    struct cfg_pos pos;
    struct cfg_pos upstream_pos;
};

enum cfg_balance {
    CFG_BALANCE_ROUND_ROBIN = 0,
    CFG_BALANCE_LEAST_CONN,
};

#define CFG_MAX_SERVER_ADDRS 16
/* A Strict-Transport-Security value: real ones are under 100 characters;
 * moat's own answers build the header in a bounded buffer. */
#define CFG_MAX_HSTS 256
/* A cipher list: every suite wolfSSL knows by name fits. */
#define CFG_MAX_CIPHERS 2048

struct cfg_server {
    char *name;             /* as written: "127.0.0.1:3000" or "app:3000" */
    struct sockaddr_storage addr;
};

struct cfg_upstream {
    char *name;
    char **server_specs;    /* as written */
    size_t nserver_specs;
    struct cfg_server *servers; /* resolved addresses */
    size_t nservers;
    char *balance;
    int least_conn;         /* balance: least_conn */
    struct {
        int enabled;
        char *path;
        uint64_t interval_ms;
        uint64_t timeout_ms;
    } health_check;
    uint64_t connect_timeout_ms;
    uint64_t response_timeout_ms;
    uint64_t keepalive;
    struct cfg_pos pos;
};

struct cfg_cidr {
    int family;             /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

struct cfg {
    char *path;             /* NULL for the embedded default */
    char *dir;
    uint64_t workers;       /* resolved: never 0 */
    uint64_t shutdown_timeout_ms;

    struct cfg_listener *listeners;
    size_t nlisteners;
    struct cfg_route *routes;
    size_t nroutes;
    struct cfg_upstream *upstreams;
    size_t nupstreams;

    struct {
        uint64_t client_header_ms;
        uint64_t client_idle_ms;
    } timeouts;

    struct {
        uint64_t max_connections;
        uint64_t max_header_bytes;
        uint64_t max_uri_bytes;
        uint64_t max_headers;
        uint64_t max_body_bytes; /* 0: unlimited */
        uint64_t max_memory;     /* resident bytes before refusing connections; 0: none */
    } limits;

    struct {
        char **trusted_proxies;
        size_t ntrusted_proxies;
        struct cfg_cidr *trusted;
        size_t ntrusted;
        char *hsts;          /* NULL: no Strict-Transport-Security */
    } forwarding;

    struct {
        char *access;        /* "stdout", "stderr", a path, or NULL */
        struct cfg_pos access_pos;
        char *format;
        char *level;
        enum log_format access_format;
        enum log_level error_level;
    } log;

    struct {
        int enabled;
        char *bind;
        struct sockaddr_storage addr;
        struct cfg_pos pos;
    } admin;

    int embedded_default;    /* no file: self-signed certificate for localhost */
    void *arena;             /* owns every pointer above */
};

/* Where a configuration comes from. */
enum cfg_source_kind {
    CFG_SOURCE_FILE = 0,    /* path */
    CFG_SOURCE_DEFAULT,     /* the embedded default */
    CFG_SOURCE_TEXT,        /* text built by moat itself (sidecar settings) */
};

struct cfg_source {
    enum cfg_source_kind kind;
    const char *path;       /* FILE */
    const char *name;       /* TEXT: the name errors use */
    const char *text;       /* TEXT */
    int self_signed;        /* TEXT: a listener may have no certificate */
    /* TEXT: rewrites errors (which cite name:line:col) in place. */
    void (*explain)(char *err, size_t errlen);
};

/* Loads and validates what src describes; errors as for cfg_load(). */
int cfg_load_source(const struct cfg_source *src, struct cfg **out, char *err, size_t errlen);

/*
 * Loads and validates path.  On success returns 0 and *out; on failure
 * returns -1 and writes "file:line:col: message" lines (at most errlen
 * bytes, several errors separated by newlines) to err.
 */
int cfg_load(const char *path, struct cfg **out, char *err, size_t errlen);
/* Same, from text in memory; name is used in error messages. */
int cfg_load_string(const char *name, const char *text, size_t len, const char *dir,
                    struct cfg **out, char *err, size_t errlen);
/* The embedded default: 127.0.0.1:8443 -> 127.0.0.1:8080. */
int cfg_load_default(struct cfg **out, char *err, size_t errlen);
void cfg_free(struct cfg **cfg);

/* 1 if addr (AF_INET/AF_INET6, v4-mapped v6 counted as v4) is in a trusted CIDR. */
int cfg_is_trusted_proxy(const struct cfg *cfg, const struct sockaddr *addr);

#endif
