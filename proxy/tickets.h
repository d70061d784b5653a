/*
 * tickets: session-ticket keys.  A listener has one secret seed (from
 * session_tickets.key_file, or random); the key of each rotation period is
 * derived from the seed and the period number with HKDF-SHA256, so replicas
 * sharing the file agree on every key without talking to each other.  A
 * ticket is sealed with AES-256-GCM under the current period's key and
 * opened under the previous, current or next one (clock skew).
 *
 * A struct ticket_seed is immutable and shared; each worker has its own
 * struct ticket_keys (derived keys, random generator, counters), so sealing
 * and opening take no lock.  Knows nothing of wolfSSL's TLS objects.
 *
 * Key file format: the raw bytes of the file are the seed; at least 32,
 * at most 4096; others must not read it, nor group or others write it.
 * Generate one with: head -c 64 /dev/urandom > ticket.key; chmod 600 ticket.key
 */
#ifndef MOAT_TICKETS_H
#define MOAT_TICKETS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TICKET_NAME_LEN 16
#define TICKET_IV_LEN 16
#define TICKET_MAC_LEN 32
#define TICKET_MIN_SEED 32
#define TICKET_MAX_SEED 4096
#define TICKET_BINDING_LEN 8

struct ticket_seed;
struct ticket_keys;

/*
 * path NULL: a random seed.  rotate_s: seconds per period (>= 1).  context
 * (the listener's name) goes into every derived key, so that one key file
 * shared by two listeners never lets a ticket from one resume on the other.
 * binding (32 bytes, or NULL) goes in too: the listener's client-certificate
 * policy (cert_cas), so that a ticket issued under another policy is not
 * accepted.
 */
int ticket_seed_load(struct ticket_seed **out, const char *path, uint64_t rotate_s,
                     const char *context, const uint8_t *binding, char *err, size_t errlen);
/* Shared by runtimes across reloads: atomic references. */
void ticket_seed_ref(struct ticket_seed *seed);
void ticket_seed_unref(struct ticket_seed **seed);
/* 1 if a and b would derive the same keys. */
int ticket_seed_equal(const struct ticket_seed *a, const struct ticket_seed *b);

struct ticket_stats;

/* counters: where this worker counts issued, accepted and rejected tickets
 * (borrowed; outlives the keys). */
struct ticket_keys *ticket_keys_new(const struct ticket_seed *seed, struct ticket_stats *counters);
void ticket_keys_free(struct ticket_keys **keys);

enum ticket_result {
    TICKET_OK = 0,
    TICKET_OK_RENEW,        /* opened with last period's key: issue a new one */
    TICKET_UNKNOWN_KEY,     /* retired or foreign key: full handshake */
    TICKET_BAD,             /* forged or damaged */
    TICKET_ERROR,
};

/* Encrypts data[0..len) in place under the current key; fills name, iv and
 * mac.  binding (the identity of the certificate that proved the session)
 * is authenticated with it: the ticket opens only under the same
 * certificate, not under another name's nor after a reload replaced it.
 * Returns TICKET_OK or TICKET_ERROR. */
enum ticket_result ticket_seal(struct ticket_keys *k, const uint8_t binding[TICKET_BINDING_LEN],
                               uint8_t name[TICKET_NAME_LEN], uint8_t iv[TICKET_IV_LEN],
                               uint8_t *data, size_t len, uint8_t mac[TICKET_MAC_LEN], time_t now);
/* Decrypts and authenticates data[0..len) in place. */
enum ticket_result ticket_open(struct ticket_keys *k, const uint8_t binding[TICKET_BINDING_LEN],
                               const uint8_t name[TICKET_NAME_LEN], const uint8_t iv[TICKET_IV_LEN],
                               uint8_t *data, size_t len, const uint8_t mac[TICKET_MAC_LEN],
                               time_t now);

uint64_t ticket_seed_rotate(const struct ticket_seed *seed);

#endif
