/*
 * health: active health checks of upstream servers, run on the main
 * thread's loop once for the whole process (not once per worker).  Every
 * interval each checked server gets "GET path"; a 2xx or 3xx answer within
 * the timeout means up, anything else down.  The verdict is one word per
 * server that workers read with a relaxed atomic load when they pick a
 * server; the checker is its only writer.
 */
#ifndef MOAT_HEALTH_H
#define MOAT_HEALTH_H

#include <stddef.h>

#include <uv.h>

struct runtime;
struct health;

/* A server's verdict; lives until the process ends, so that a generation
 * still using a removed upstream never reads freed memory. */
struct health_state {
    int up;                     /* atomic: 1 up, 0 down */
};

struct health *health_new(uv_loop_t *loop);
/*
 * Checks what rt's configuration asks for, keeping the verdict and the
 * schedule of servers checked before (same upstream, server and address);
 * fills rt->health.  Call before workers see rt.  Returns 0 or -1 (out of
 * memory).
 */
int health_apply(struct health *h, struct runtime *rt);
/* Stops every check; frees asynchronously. */
void health_stop(struct health **h);

struct health_view {
    const char *upstream;
    const char *server;
    int up;
};

/* The i-th checked server, or -1 past the last. */
int health_view(const struct health *h, size_t i, struct health_view *out);

#endif
