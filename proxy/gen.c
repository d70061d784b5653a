/*
 * gen: a worker's generation.  Owns its TLS contexts, ticket keys,
 * upstream pools and the pools sized by the configuration; frees them when
 * the last connection of the generation is gone.
 */
#include "gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "metrics.h"
#include "runtime.h"
#include "tickets.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

static void gen_free(struct gen *g)
{
    const struct cfg *cfg = g->cfg;
    if (g->upstreams != NULL) {
        for (size_t i = 0; i < cfg->nupstreams; i++)
            upstream_pool_close(&g->upstreams[i]);
        free(g->upstreams);
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (g->tls != NULL)
            tls_ctx_set_free(&g->tls[i]);
        if (g->tickets != NULL)
            ticket_keys_free(&g->tickets[i]);
    }
    free(g->tls);
    free(g->tickets);
    free(g->lstats);
    free(g->rstats);
    free(g->ustats);
    exchange_pool_free(g);
    buf_pool_destroy(&g->inbufs);
    runtime_unref(&g->rt);
    free(g);
}

/* The worker's counter blocks for this configuration's routes and
 * upstreams, found by name so that counts carry across reloads. */
static int resolve_stats(struct gen *g, struct worker *w)
{
    const struct cfg *cfg = g->cfg;
    char label[320];
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct cfg_route *r = &cfg->routes[i];
        metrics_route_label(r->host, r->wildcard, r->path, label, sizeof(label));
        if ((g->rstats[i] = metrics_route(&w->metrics, label)) == NULL)
            return -1;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if ((g->ustats[i] = metrics_upstream(&w->metrics, cfg->upstreams[i].name)) == NULL)
            return -1;
    g->noroute = metrics_route(&w->metrics, "");
    return g->noroute ? 0 : -1;
}

struct gen *gen_new(struct worker *w, struct runtime *rt, char *err, size_t errlen)
{
    const struct cfg *cfg = rt->cfg;
    struct gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        snprintf(err, errlen, "worker %u: out of memory", w->id);
        return NULL;
    }
    g->refs = 1;
    g->w = w;
    g->rt = rt;
    runtime_ref(rt);
    g->cfg = cfg;
    /* Heads up to max_header_bytes, plus room for body bytes behind them. */
    size_t head = cfg->limits.max_header_bytes > 32768 ? cfg->limits.max_header_bytes : 32768;
    buf_pool_init(&g->inbufs, head + 16384, 256);
    g->tls = calloc(cfg->nlisteners, sizeof(*g->tls));
    g->tickets = calloc(cfg->nlisteners, sizeof(*g->tickets));
    g->lstats = calloc(cfg->nlisteners, sizeof(*g->lstats));
    g->rstats = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*g->rstats));
    g->ustats = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*g->ustats));
    g->upstreams = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*g->upstreams));
    if (g->tls == NULL || g->tickets == NULL || g->lstats == NULL || g->upstreams == NULL ||
        g->rstats == NULL || g->ustats == NULL || resolve_stats(g, w) != 0) {
        snprintf(err, errlen, "worker %u: out of memory", w->id);
        goto fail;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (upstream_pool_init(&g->upstreams[i], w, &cfg->upstreams[i],
                               rt->health ? rt->health[i] : NULL) != 0) {
            snprintf(err, errlen, "worker %u: out of memory", w->id);
            goto fail;
        }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *lc = &cfg->listeners[i];
        struct tls_resumption res = {
            .cache = rt->caches[i],
            .cache_timeout_s = lc->tls.session_cache.timeout_ms / 1000,
            .ticket_lifetime_s = lc->tls.session_tickets.rotate_ms / 1000,
        };
        g->lstats[i] = metrics_listener(&w->metrics, lc->name);
        if (g->lstats[i] == NULL) {
            snprintf(err, errlen, "worker %u: out of memory", w->id);
            goto fail;
        }
        if (!lc->has_tls)
            continue; /* a redirect listener */
        __atomic_store_n(&g->lstats[i]->tls, 1, __ATOMIC_RELAXED);
        if (rt->seeds[i] != NULL) {
            g->tickets[i] = res.tickets = ticket_keys_new(rt->seeds[i], &g->lstats[i]->tickets);
            if (res.tickets == NULL) {
                snprintf(err, errlen, "worker %u: cannot set up ticket keys", w->id);
                goto fail;
            }
        }
        if (tls_ctx_set_new(&g->tls[i], &lc->tls, rt->certs[i], rt->ncerts[i],
                            runtime_client_cas(rt, i), &res, err, errlen) != 0)
            goto fail;
    }
    return g;
fail:
    gen_free(g);
    return NULL;
}

void gen_ref(struct gen *g)
{
    g->refs++;
}

void gen_unref(struct gen **gp)
{
    struct gen *g = *gp;
    if (g == NULL)
        return;
    *gp = NULL;
    if (--g->refs == 0)
        gen_free(g);
}
