/*
 * metrics: the per-worker registry of named counter blocks.  Owns the
 * blocks; never frees one while the worker lives, so pointers handed to a
 * generation stay valid across reloads.
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
}

/* Prometheus' usual latency buckets, in seconds. */
const double metrics_duration_bounds[DURATION_BUCKETS - 1] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

#define FREE_LIST(head, type)                                                              \
    while ((head) != NULL) {                                                               \
        type *next_ = (head)->next;                                                        \
        free(head);                                                                        \
        (head) = next_;                                                                    \
    }

void metrics_destroy(struct metrics *m)
{
    FREE_LIST(m->listeners, struct listener_stats);
    FREE_LIST(m->routes, struct route_stats);
    FREE_LIST(m->upstreams, struct upstream_stats);
    pthread_mutex_destroy(&m->lock);
}

/* Finds the entry named key in the list at head (each entry starts with a
 * next pointer, its key at key_off), or appends a zeroed one. */
#define FIND_OR_ADD(m, head, type, field, key)                                             \
    do {                                                                                   \
        pthread_mutex_lock(&(m)->lock);                                                    \
        type *e_ = (head), **tail_ = &(head);                                              \
        for (; e_ != NULL; tail_ = &e_->next, e_ = e_->next)                               \
            if (strcmp(e_->field, (key)) == 0)                                             \
                break;                                                                     \
        if (e_ == NULL && (e_ = calloc(1, sizeof(*e_))) != NULL) {                         \
            snprintf(e_->field, sizeof(e_->field), "%s", (key));                           \
            *tail_ = e_;                                                                   \
        }                                                                                  \
        pthread_mutex_unlock(&(m)->lock);                                                  \
        return e_;                                                                         \
    } while (0)

struct listener_stats *metrics_listener(struct metrics *m, const char *name)
{
    FIND_OR_ADD(m, m->listeners, struct listener_stats, name, name);
}

struct route_stats *metrics_route(struct metrics *m, const char *label)
{
    FIND_OR_ADD(m, m->routes, struct route_stats, label, label);
}

struct upstream_stats *metrics_upstream(struct metrics *m, const char *name)
{
    FIND_OR_ADD(m, m->upstreams, struct upstream_stats, name, name);
}

void metrics_request(struct metrics *m, struct route_stats *r, int status, uint64_t duration_us)
{
    if (r != NULL) {
        uint64_t code = (uint64_t)status;
        unsigned i = (unsigned)(code % ROUTE_CODE_SLOTS), n;
        /* Open addressing over the slots; only this worker writes them. */
        for (n = 0; n < ROUTE_CODE_SLOTS; n++, i = (i + 1) % ROUTE_CODE_SLOTS) {
            uint64_t have = r->codes[i];
            if (have == code)
                break;
            if (have == 0) {
                STAT_ADD(r->codes[i], code);
                break;
            }
        }
        if (n == ROUTE_CODE_SLOTS)
            STAT_INC(r->overflow);
        else
            STAT_INC(r->counts[i]);
    }
    double s = (double)duration_us / 1e6;
    unsigned b = 0;
    while (b < DURATION_BUCKETS - 1 && s > metrics_duration_bounds[b])
        b++;
    STAT_INC(m->duration_buckets[b]);
    STAT_ADD(m->duration_sum_us, duration_us);
    STAT_INC(m->duration_count);
}

void metrics_route_label(const char *host, int wildcard, const char *path, char *out,
                         size_t len)
{
    snprintf(out, len, "%s%s%s", host == NULL ? "" : wildcard ? "*" : "", host ? host : "",
             path);
}
