/*
 * sesscache: a sharded LRU map from session ID to serialised session.
 * Owns its entries; each shard's lock guards that shard only, and no lock
 * is held while calling out.
 */
#include "sesscache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHARDS 16

/* Ownership: malloc'd by put, freed by eviction, expiry, remove or free. */
struct entry {
    struct entry *hnext;            /* hash chain */
    struct entry *prev, *next;      /* LRU: head is most recent */
    uint64_t expires_ms;
    uint32_t hash;
    uint16_t len;
    uint8_t idlen;
    uint8_t id[SESSCACHE_MAX_ID];
    uint8_t data[];
};

struct shard {
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t nbuckets;                /* power of two */
    struct entry *head, *tail;
    size_t count;
    size_t capacity;
    struct sesscache_stats stats;
};

struct sesscache {
    unsigned refs;                  /* atomic */
    uint64_t timeout_ms;
    unsigned nshards;       /* fewer than MAX_SHARDS for tiny caches */
    struct shard shards[MAX_SHARDS];
};

/* FNV-1a: session IDs are random already; this only spreads them. */
static uint32_t hash_id(const uint8_t *id, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ id[i]) * 16777619u;
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n && p < ((size_t)1 << 30))
        p <<= 1;
    return p;
}

static void lru_unlink(struct shard *s, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct shard *s, struct entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

static struct entry **find_link(struct shard *s, uint32_t h, const uint8_t *id, size_t idlen)
{
    struct entry **link = &s->buckets[h & (s->nbuckets - 1)];
    while (*link != NULL) {
        struct entry *e = *link;
        if (e->hash == h && e->idlen == idlen && memcmp(e->id, id, idlen) == 0)
            return link;
        link = &e->hnext;
    }
    return link;
}

static void drop(struct shard *s, struct entry *e)
{
    struct entry **link = find_link(s, e->hash, e->id, e->idlen);
    if (*link == e)
        *link = e->hnext;
    lru_unlink(s, e);
    s->count--;
    /* Serialised sessions hold the master secret. */
    memset(e, 0, sizeof(*e) + e->len);
    free(e);
}

static struct shard *shard_of(struct sesscache *c, uint32_t h)
{
    return &c->shards[(h >> 24) % c->nshards];
}

/* Shard i's share of capacity: the shares add up to capacity exactly. */
static size_t share(const struct sesscache *c, uint64_t capacity, unsigned i)
{
    return (size_t)(capacity / c->nshards + (i < capacity % c->nshards ? 1 : 0));
}

struct sesscache *sesscache_new(uint64_t capacity, uint64_t timeout_ms)
{
    struct sesscache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->refs = 1;
    c->timeout_ms = timeout_ms;
    c->nshards = capacity < MAX_SHARDS ? (unsigned)(capacity ? capacity : 1) : MAX_SHARDS;
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->capacity = share(c, capacity, i);
        s->nbuckets = pow2_at_least(s->capacity);
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        if (s->buckets == NULL) {
            sesscache_unref(&c);
            return NULL;
        }
    }
    return c;
}

void sesscache_ref(struct sesscache *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void sesscache_unref(struct sesscache **cp)
{
    struct sesscache *c = *cp;
    if (c == NULL)
        return;
    *cp = NULL;
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        while (s->head != NULL)
            drop(s, s->head);
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(c);
}

void sesscache_configure(struct sesscache *c, uint64_t capacity, uint64_t timeout_ms)
{
    /* The shard count stays: entries already hashed to shards keep their
     * place.  A shard whose share becomes 0 holds nothing. */
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        s->capacity = share(c, capacity, i);
        while (s->count > s->capacity) {
            drop(s, s->tail);
            s->stats.evictions++;
        }
        pthread_mutex_unlock(&s->lock);
    }
    __atomic_store_n(&c->timeout_ms, timeout_ms, __ATOMIC_RELAXED);
}

int sesscache_put(struct sesscache *c, const uint8_t *id, size_t idlen, const uint8_t *data,
                  size_t len, uint64_t now_ms)
{
    if (idlen == 0 || idlen > SESSCACHE_MAX_ID || len == 0 || len > SESSCACHE_MAX_SESSION)
        return -1;
    struct entry *e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return -1;
    uint32_t h = hash_id(id, idlen);
    memset(e, 0, sizeof(*e));
    e->hash = h;
    e->idlen = (uint8_t)idlen;
    memcpy(e->id, id, idlen);
    e->len = (uint16_t)len;
    memcpy(e->data, data, len);
    e->expires_ms = now_ms + __atomic_load_n(&c->timeout_ms, __ATOMIC_RELAXED);

    struct shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->lock);
    struct entry **link = find_link(s, h, id, idlen);
    if (*link != NULL)
        drop(s, *link);
    if (s->capacity == 0) {
        pthread_mutex_unlock(&s->lock);
        memset(e, 0, sizeof(*e) + len);
        free(e);
        return -1;
    }
    while (s->count >= s->capacity && s->tail != NULL) {
        s->stats.evictions++;
        drop(s, s->tail);
    }
    link = find_link(s, h, id, idlen);
    *link = e;
    lru_push_front(s, e);
    s->count++;
    s->stats.stores++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

size_t sesscache_get(struct sesscache *c, const uint8_t *id, size_t idlen, uint8_t *out,
                     size_t cap, uint64_t now_ms)
{
    if (idlen == 0 || idlen > SESSCACHE_MAX_ID)
        return 0;
    uint32_t h = hash_id(id, idlen);
    struct shard *s = shard_of(c, h);
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    struct entry *e = *find_link(s, h, id, idlen);
    if (e != NULL && e->expires_ms <= now_ms) {
        drop(s, e);
        s->stats.expirations++;
        e = NULL;
    }
    if (e != NULL && e->len <= cap) {
        memcpy(out, e->data, e->len);
        n = e->len;
        lru_unlink(s, e);
        lru_push_front(s, e);
        s->stats.hits++;
    } else {
        s->stats.misses++;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void sesscache_remove(struct sesscache *c, const uint8_t *id, size_t idlen)
{
    if (idlen == 0 || idlen > SESSCACHE_MAX_ID)
        return;
    uint32_t h = hash_id(id, idlen);
    struct shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->lock);
    struct entry *e = *find_link(s, h, id, idlen);
    if (e != NULL)
        drop(s, e);
    pthread_mutex_unlock(&s->lock);
}

void sesscache_stats(struct sesscache *c, struct sesscache_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        out->hits += s->stats.hits;
        out->misses += s->stats.misses;
        out->stores += s->stats.stores;
        out->evictions += s->stats.evictions;
        out->expirations += s->stats.expirations;
        out->entries += s->count;
        pthread_mutex_unlock(&s->lock);
    }
}
