/*
 * gen: one worker's view of one runtime (a configuration generation): the
 * TLS contexts of each listener, this worker's ticket keys, the upstream
 * keep-alive pools, the request-buffer and exchange pools sized for the
 * configuration's limits.  Built and used on the worker's thread only.
 *
 * A connection holds a reference to the generation it was accepted in and
 * keeps using it until it closes: a reload changes what new connections
 * get, never what open ones are doing.  The worker holds a reference to its
 * current generation.  The last reference frees it.
 */
#ifndef MOAT_GEN_H
#define MOAT_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

struct runtime;
struct worker;
struct tls_ctx_set;
struct ticket_keys;
struct upstream_pool;

struct gen {
    unsigned refs;                  /* the worker's thread only */
    struct worker *w;
    struct runtime *rt;             /* one reference */
    const struct cfg *cfg;          /* rt->cfg */
    struct tls_ctx_set **tls;       /* per listener */
    struct ticket_keys **tickets;   /* per listener; NULL entries: no tickets */
    struct listener_stats **lstats; /* per listener: the worker's counters */
    struct route_stats **rstats;    /* per route */
    struct route_stats *noroute;    /* requests that matched no route */
    struct upstream_stats **ustats; /* per upstream */
    struct upstream_pool *upstreams;/* per upstream */
    struct buf_pool inbufs;         /* request and response heads */
    void *free_exchanges;           /* recycled struct exchange */
    unsigned nfree_exchanges;
};

/* Builds w's generation for rt (takes a reference to rt).  Returns NULL
 * with err set when it cannot. */
struct gen *gen_new(struct worker *w, struct runtime *rt, char *err, size_t errlen);
void gen_ref(struct gen *g);
void gen_unref(struct gen **g);

#endif
