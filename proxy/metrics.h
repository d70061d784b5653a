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
    uint64_t tls;               /* 1 once the listener has served TLS */
    uint64_t connections;
    uint64_t refused;           /* over max_connections */
    uint64_t refused_memory;    /* over limits.max_memory */
    uint64_t handshakes[2][2];  /* [0: TLS 1.2, 1: TLS 1.3][resumed] */
    uint64_t handshake_errors;
    struct ticket_stats tickets;
};

#define ROUTE_CODE_SLOTS 32

/* Requests by status code for one route.  A slot's code is written once,
 * when the worker first sees that code; more distinct codes than slots go
 * to "overflow". */
struct route_stats {
    struct route_stats *next;
    char label[320];            /* host followed by path; "" for no route */
    uint64_t codes[ROUTE_CODE_SLOTS];
    uint64_t counts[ROUTE_CODE_SLOTS];
    uint64_t overflow;
};

enum upstream_error {
    UPSTREAM_ERROR_CONNECT = 0,
    UPSTREAM_ERROR_TIMEOUT,
    UPSTREAM_ERROR_RESET,
    UPSTREAM_ERROR_MALFORMED,
    UPSTREAM_ERROR_DOWN,        /* no server to try: all down or failing */
    UPSTREAM_ERROR_KINDS,
};

struct upstream_stats {
    struct upstream_stats *next;
    char name[72];
    uint64_t errors[UPSTREAM_ERROR_KINDS];
};

#define DURATION_BUCKETS 12 /* the last is +Inf */
extern const double metrics_duration_bounds[DURATION_BUCKETS - 1];

struct metrics {
    pthread_mutex_t lock;
    struct listener_stats *listeners;
    struct route_stats *routes;
    struct upstream_stats *upstreams;
    uint64_t active;                /* open client connections */
    uint64_t duration_buckets[DURATION_BUCKETS];
    uint64_t duration_sum_us;
    uint64_t duration_count;
};

void metrics_init(struct metrics *m);
void metrics_destroy(struct metrics *m);
/* The entry for name, added on first use.  NULL only when out of memory. */
struct listener_stats *metrics_listener(struct metrics *m, const char *name);
struct route_stats *metrics_route(struct metrics *m, const char *label);
struct upstream_stats *metrics_upstream(struct metrics *m, const char *name);

/* One finished request: its route's count for status and the histogram. */
void metrics_request(struct metrics *m, struct route_stats *route, int status,
                     uint64_t duration_us);

/* "host/path", "*.suffix/path" or "/path": the label of route r. */
void metrics_route_label(const char *host, int wildcard, const char *path, char *out,
                         size_t len);

#endif
