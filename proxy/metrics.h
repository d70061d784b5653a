/*
 * metrics: counters each worker keeps for the admin endpoint.  A worker
 * owns its struct metrics and is the only writer of its counters; the
 * main thread reads them while the worker runs.  Counters are updated with
 * single-writer relaxed atomics (a plain load, add and store: no lock, no
 * locked instruction) and read with relaxed loads.  Entries are keyed by
 * name and survive reloads, so counters only grow; the registry lock guards
 * adding entries (at a reload) and walking them (a scrape), never a count.
 */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H

#include <pthread.h>
#include <stdint.h>

#define STAT_ADD(field, n)                                                                 \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n),          \
                     __ATOMIC_RELAXED)
#define STAT_INC(field) STAT_ADD(field, 1)
#define STAT_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct ticket_stats {
    uint64_t issued;
    uint64_t accepted;
    uint64_t rejected;      /* unknown key or bad ticket: full handshake */
};

struct listener_stats {
    struct listener_stats *next;
    char name[72];
    uint64_t connections;
    uint64_t refused;           /* over max_connections */
    uint64_t handshakes[2][2];  /* [0: TLS 1.2, 1: TLS 1.3][resumed] */
    uint64_t handshake_errors;
    struct ticket_stats tickets;
};

struct metrics {
    pthread_mutex_t lock;
    struct listener_stats *listeners;
};

void metrics_init(struct metrics *m);
void metrics_destroy(struct metrics *m);
/* The entry for name, added on first use.  NULL only when out of memory. */
struct listener_stats *metrics_listener(struct metrics *m, const char *name);

#endif
