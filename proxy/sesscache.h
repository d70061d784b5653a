/*
 * sesscache: moat's TLS session cache, one per listener, shared by every
 * worker and kept across reloads.  Maps a session ID to the serialised
 * session wolfSSL handed over, bounded by an entry count and an entry size,
 * with LRU eviction and a timeout.  Sharded: each shard has its own lock,
 * so workers resuming different sessions rarely meet.  Knows nothing of
 * wolfSSL: sessions are opaque bytes here.
 */
#ifndef MOAT_SESSCACHE_H
#define MOAT_SESSCACHE_H

#include <stddef.h>
#include <stdint.h>

#define SESSCACHE_MAX_ID 48
#define SESSCACHE_MAX_SESSION 2048  /* larger sessions are not cached */

struct sesscache;

struct sesscache_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t stores;
    uint64_t evictions;     /* pushed out by the size bound */
    uint64_t expirations;
    uint64_t entries;
};

/* capacity: entries (0 is not allowed: no cache at all then);
 * timeout_ms: how long an entry may be resumed. */
struct sesscache *sesscache_new(uint64_t capacity, uint64_t timeout_ms);
/* The cache outlives reloads: every runtime using it holds a reference
 * (atomic); the last unref frees it and NULLs *cache. */
void sesscache_ref(struct sesscache *cache);
void sesscache_unref(struct sesscache **cache);
/* Changes the bounds (a reload); entries above the new capacity go. */
void sesscache_configure(struct sesscache *cache, uint64_t capacity, uint64_t timeout_ms);

/* Stores a copy of data under id, replacing an older entry.  now_ms is a
 * monotonic clock.  Returns 0, or -1 when the entry cannot be cached. */
int sesscache_put(struct sesscache *cache, const uint8_t *id, size_t idlen,
                  const uint8_t *data, size_t len, uint64_t now_ms);
/*
 * Copies the session stored under id into out (cap bytes) and returns its
 * length, or 0 when there is none (or it expired).  A hit refreshes the
 * entry's LRU position, not its expiry.
 */
size_t sesscache_get(struct sesscache *cache, const uint8_t *id, size_t idlen, uint8_t *out,
                     size_t cap, uint64_t now_ms);
void sesscache_remove(struct sesscache *cache, const uint8_t *id, size_t idlen);

void sesscache_stats(struct sesscache *cache, struct sesscache_stats *out);

#endif
