/*
 * tickets: the seed, per-period key derivation and ticket sealing.  Uses
 * wolfCrypt (HKDF, AES-GCM, RNG) only.
 */
#include "tickets.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>

#include "metrics.h"

#define KEY_LEN 32
#define GCM_IV_LEN 12
#define GCM_TAG_LEN 16
#define SLOTS 3

static const char hkdf_salt[] = "moat session ticket keys v1";

struct ticket_seed {
    unsigned refs;          /* atomic */
    uint64_t rotate_s;
    char context[72];
    int has_binding;
    uint8_t binding[32];
    size_t len;
    uint8_t secret[TICKET_MAX_SEED];
};

struct key_slot {
    int64_t period;         /* -1: empty */
    uint8_t name[TICKET_NAME_LEN];
    Aes aes;
};

/* Ownership: one per worker and listener, freed with ticket_keys_free(). */
struct ticket_keys {
    const struct ticket_seed *seed;
    WC_RNG rng;
    struct key_slot slots[SLOTS];
    struct ticket_stats *stats;
};

static int read_seed(struct ticket_seed *s, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not hang us */
    struct stat st;
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    /* Group read is fine: that is how Kubernetes mounts a Secret for a
     * non-root container (root:fsGroup, 0440).  Anyone else reading it, or
     * anyone but the owner changing it, is not. */
    if (st.st_mode & 027) {
        snprintf(err, errlen,
                 "%s: readable by others or writable by group or others (mode %03o); "
                 "chmod 600 (or 640) it",
                 path, (unsigned)(st.st_mode & 0777));
        goto fail;
    }
    if (st.st_size < TICKET_MIN_SEED || st.st_size > TICKET_MAX_SEED) {
        snprintf(err, errlen, "%s: %lld bytes; a ticket key file holds %d to %d random bytes",
                 path, (long long)st.st_size, TICKET_MIN_SEED, TICKET_MAX_SEED);
        goto fail;
    }
    size_t got = 0, want = (size_t)st.st_size;
    while (got < want) {
        ssize_t n = read(fd, s->secret + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s: cannot read", path);
            goto fail;
        }
        got += (size_t)n;
    }
    s->len = got;
    close(fd);
    return 0;
fail:
    close(fd);
    return -1;
}

int ticket_seed_load(struct ticket_seed **out, const char *path, uint64_t rotate_s,
                     const char *context, const uint8_t *binding, char *err, size_t errlen)
{
    struct ticket_seed *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->refs = 1;
    s->rotate_s = rotate_s ? rotate_s : 1;
    snprintf(s->context, sizeof(s->context), "%s", context);
    if (binding != NULL) {
        s->has_binding = 1;
        memcpy(s->binding, binding, sizeof(s->binding));
    }
    if (path != NULL) {
        if (read_seed(s, path, err, errlen) != 0) {
            ticket_seed_unref(&s);
            return -1;
        }
    } else {
        WC_RNG rng;
        if (wc_InitRng(&rng) != 0 || wc_RNG_GenerateBlock(&rng, s->secret, 64) != 0) {
            snprintf(err, errlen, "no random number generator for ticket keys");
            ticket_seed_unref(&s);
            return -1;
        }
        wc_FreeRng(&rng);
        s->len = 64;
    }
    *out = s;
    return 0;
}

void ticket_seed_ref(struct ticket_seed *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void ticket_seed_unref(struct ticket_seed **sp)
{
    struct ticket_seed *s = *sp;
    if (s == NULL)
        return;
    *sp = NULL;
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    memset(s, 0, sizeof(*s));
    free(s);
}

int ticket_seed_equal(const struct ticket_seed *a, const struct ticket_seed *b)
{
    return a->rotate_s == b->rotate_s && a->len == b->len &&
           strcmp(a->context, b->context) == 0 && a->has_binding == b->has_binding &&
           memcmp(a->binding, b->binding, sizeof(a->binding)) == 0 &&
           memcmp(a->secret, b->secret, a->len) == 0;
}

uint64_t ticket_seed_rotate(const struct ticket_seed *seed)
{
    return seed->rotate_s;
}

struct ticket_keys *ticket_keys_new(const struct ticket_seed *seed, struct ticket_stats *counters)
{
    struct ticket_keys *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->seed = seed;
    k->stats = counters;
    if (wc_InitRng(&k->rng) != 0) {
        free(k);
        return NULL;
    }
    for (int i = 0; i < SLOTS; i++) {
        k->slots[i].period = -1;
        wc_AesInit(&k->slots[i].aes, NULL, INVALID_DEVID);
    }
    return k;
}

void ticket_keys_free(struct ticket_keys **kp)
{
    struct ticket_keys *k = *kp;
    if (k == NULL)
        return;
    for (int i = 0; i < SLOTS; i++)
        wc_AesFree(&k->slots[i].aes);
    wc_FreeRng(&k->rng);
    memset(k, 0, sizeof(*k));
    free(k);
    *kp = NULL;
}

/* The slot holding period p's key, derived now if no slot has it. */
static struct key_slot *slot_for(struct ticket_keys *k, int64_t p)
{
    struct key_slot *victim = &k->slots[0];
    for (int i = 0; i < SLOTS; i++) {
        if (k->slots[i].period == p)
            return &k->slots[i];
        if (k->slots[i].period < victim->period)
            victim = &k->slots[i];
    }
    /* info = context, NUL, [binding,] period (big-endian 64 bits): without a
     * binding, the keys of earlier versions, which replicas may still use. */
    uint8_t info[sizeof(k->seed->context) + 1 + sizeof(k->seed->binding) + 8];
    uint8_t okm[TICKET_NAME_LEN + KEY_LEN];
    size_t n = strlen(k->seed->context) + 1;
    memcpy(info, k->seed->context, n);
    if (k->seed->has_binding) {
        memcpy(info + n, k->seed->binding, sizeof(k->seed->binding));
        n += sizeof(k->seed->binding);
    }
    for (int i = 0; i < 8; i++)
        info[n++] = (uint8_t)((uint64_t)p >> (56 - 8 * i));
    if (wc_HKDF(WC_SHA256, k->seed->secret, (word32)k->seed->len, (const byte *)hkdf_salt,
                sizeof(hkdf_salt) - 1, info, (word32)n, okm, sizeof(okm)) != 0 ||
        wc_AesGcmSetKey(&victim->aes, okm + TICKET_NAME_LEN, KEY_LEN) != 0) {
        memset(okm, 0, sizeof(okm));
        victim->period = -1;
        return NULL;
    }
    memcpy(victim->name, okm, TICKET_NAME_LEN);
    memset(okm, 0, sizeof(okm));
    victim->period = p;
    return victim;
}

static int64_t period_of(const struct ticket_keys *k, time_t now)
{
    return (int64_t)((uint64_t)now / k->seed->rotate_s);
}

/* What a ticket authenticates besides its contents. */
struct ticket_aad {
    uint8_t bytes[TICKET_NAME_LEN + GCM_IV_LEN + TICKET_BINDING_LEN];
};

static struct ticket_aad ticket_aad(const uint8_t *name, const uint8_t *iv,
                                    const uint8_t *binding)
{
    struct ticket_aad a;
    memcpy(a.bytes, name, TICKET_NAME_LEN);
    memcpy(a.bytes + TICKET_NAME_LEN, iv, GCM_IV_LEN);
    memcpy(a.bytes + TICKET_NAME_LEN + GCM_IV_LEN, binding, TICKET_BINDING_LEN);
    return a;
}

enum ticket_result ticket_seal(struct ticket_keys *k, const uint8_t binding[TICKET_BINDING_LEN],
                               uint8_t name[TICKET_NAME_LEN], uint8_t iv[TICKET_IV_LEN],
                               uint8_t *data, size_t len, uint8_t mac[TICKET_MAC_LEN], time_t now)
{
    struct key_slot *s = slot_for(k, period_of(k, now));
    if (s == NULL)
        return TICKET_ERROR;
    memcpy(name, s->name, TICKET_NAME_LEN);
    memset(iv, 0, TICKET_IV_LEN);
    memset(mac, 0, TICKET_MAC_LEN);
    if (wc_RNG_GenerateBlock(&k->rng, iv, GCM_IV_LEN) != 0)
        return TICKET_ERROR;
    /* The key name, the nonce and the binding are authenticated with the
     * ticket. */
    struct ticket_aad aad = ticket_aad(name, iv, binding);
    if (wc_AesGcmEncrypt(&s->aes, data, data, (word32)len, iv, GCM_IV_LEN, mac, GCM_TAG_LEN,
                         aad.bytes, sizeof(aad.bytes)) != 0)
        return TICKET_ERROR;
    STAT_INC(k->stats->issued);
    return TICKET_OK;
}

enum ticket_result ticket_open(struct ticket_keys *k, const uint8_t binding[TICKET_BINDING_LEN],
                               const uint8_t name[TICKET_NAME_LEN], const uint8_t iv[TICKET_IV_LEN],
                               uint8_t *data, size_t len, const uint8_t mac[TICKET_MAC_LEN],
                               time_t now)
{
    int64_t p = period_of(k, now);
    /* Current period first: the common case. */
    static const int order[] = {0, -1, 1};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        struct key_slot *s = slot_for(k, p + order[i]);
        if (s == NULL)
            return TICKET_ERROR;
        if (memcmp(s->name, name, TICKET_NAME_LEN) != 0)
            continue;
        struct ticket_aad aad = ticket_aad(name, iv, binding);
        if (wc_AesGcmDecrypt(&s->aes, data, data, (word32)len, iv, GCM_IV_LEN, mac, GCM_TAG_LEN,
                             aad.bytes, sizeof(aad.bytes)) != 0) {
            STAT_INC(k->stats->rejected);
            return TICKET_BAD;
        }
        STAT_INC(k->stats->accepted);
        return order[i] < 0 ? TICKET_OK_RENEW : TICKET_OK;
    }
    STAT_INC(k->stats->rejected);
    return TICKET_UNKNOWN_KEY;
}
