/*
 * admin: the admin listener on the main thread's loop.  Plain HTTP/1.1,
 * one request per connection: GET /metrics (Prometheus text format, summed
 * over workers' counters) and GET /healthz (200 while serving, 503 while
 * draining).  Reads workers' counters with relaxed atomic loads; writes
 * nothing any other thread reads.
 */
#ifndef MOAT_ADMIN_H
#define MOAT_ADMIN_H

#include <stdint.h>

#include <uv.h>

struct runtime;
struct worker;
struct health;

/* What the endpoint reports; owned by main, read on the main thread. */
struct admin_source {
    struct worker *workers;
    const unsigned *nworkers;
    struct runtime *const *rt;      /* the current runtime */
    const struct health *health;
    const uint64_t *reloads_ok;
    const uint64_t *reloads_failed;
    const int *draining;
};

struct admin;

/* Serves on fd (a bound socket; owned from now on, even on failure).
 * Returns NULL with err set. */
struct admin *admin_start(uv_loop_t *loop, int fd, const struct admin_source *src, char *err,
                          size_t errlen);
/* Stops listening and closes open admin connections; frees asynchronously. */
void admin_stop(struct admin **admin);

/*
 * The client side, for a container's HEALTHCHECK without a shell or curl:
 * GET /healthz at addr ("ip:port"), blocking for at most timeout_ms.
 * Returns 0 on 200, -1 otherwise (with the reason on stderr).
 */
int admin_probe(const char *addr, int timeout_ms);

#endif
