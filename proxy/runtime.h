/*
 * runtime: everything one configuration needs at run time, built by main
 * at start and on every reload, then read by every worker: the parsed
 * configuration, the certificates, the listening sockets bound for it, and
 * each listener's session cache and ticket seed (carried over from the
 * previous runtime, so resumption survives reloads).
 *
 * Immutable once built.  Reference-counted atomically: main holds one
 * reference to the current runtime, each worker's generation one.  The
 * last reference frees it, from whichever thread drops it.
 */
#ifndef MOAT_RUNTIME_H
#define MOAT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "cert.h"
#include "config.h"

struct health_state;
struct sesscache;
struct ticket_seed;

struct runtime {
    unsigned refs;              /* atomic */
    uint64_t generation;        /* 1 at start, +1 per successful reload */
    struct cfg *cfg;
    unsigned nworkers;
    struct cert_pair **certs;   /* [listener][certificate] */
    size_t *ncerts;
    struct cert_cas *client_cas; /* per listener; .pem NULL: no client_auth */
    /*
     * [listener][worker]: sockets bound for this runtime, taken (set to -1)
     * by the worker that listens on them.  NULL for a listener whose bind
     * address is unchanged from the previous runtime: workers keep the
     * socket they already listen on.
     */
    int **listen_fds;
    unsigned *ports;            /* bound port per listener */
    struct sesscache **caches;  /* per listener; NULL: disabled */
    struct ticket_seed **seeds; /* per listener; NULL: no tickets */
    /* [upstream][server] verdicts of active checks, filled by main before
     * the workers see the runtime; NULL rows for unchecked upstreams. */
    struct health_state ***health;
    int admin_fd;               /* bound for this runtime; -1: none or unchanged */
    unsigned admin_port;
};

/*
 * Loads the configuration src describes, reads and
 * checks every certificate, sets up resumption (reusing prev's cache and
 * seed for a listener of the same name where they still fit) and, unless
 * check_only, binds the sockets of listeners that are new or moved.
 * Returns the runtime with one reference, or NULL after writing the errors
 * (file:line:col: message, one per line) to err.
 */
struct runtime *runtime_load(const struct cfg_source *src, const struct runtime *prev,
                             unsigned nworkers, int check_only, char *err, size_t errlen);
/* The CAs of listener i's client_auth; NULL when it has none. */
const struct cert_cas *runtime_client_cas(const struct runtime *rt, size_t i);
void runtime_ref(struct runtime *rt);
void runtime_unref(struct runtime **rt);

/* "127.0.0.1:8443" for listener i as bound (port 0 resolved). */
void runtime_bound_address(const struct runtime *rt, size_t i, char *out, size_t len);

#endif
