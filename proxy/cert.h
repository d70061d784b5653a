/*
 * cert: certificate and key material as bytes, and what moat needs to know
 * about a certificate (its names and expiry).  Reads certificate files with
 * a size bound and generates the embedded default's self-signed pair.  Uses
 * wolfCrypt's ASN.1 code only: never a WOLFSSL or WOLFSSL_CTX.
 */
#ifndef MOAT_CERT_H
#define MOAT_CERT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "strutil.h"

#define CERT_MAX_FILE_BYTES (1u << 20)
#define CERT_MAX_NAMES 128

enum cert_encoding {
    CERT_PEM = 0,
    CERT_DER,
};

/* The kinds of key a client says it can verify, which is how a listener
 * with ECDSA and RSA certificates for a site picks between them.  ECDSA
 * keys count by curve: TLS 1.3 names the curve in the signature scheme,
 * TLS 1.2 clients list the curves they take. */
enum cert_key {
    CERT_KEY_OTHER = 0, /* served to whoever asks */
    CERT_KEY_RSA,
    CERT_KEY_P256,
    CERT_KEY_P384,
    CERT_KEY_P521,
    CERT_KEY_ED25519,
    CERT_KEY_ED448,
};

/* A certificate chain and its private key, owned (malloc) by the struct. */
struct cert_pair {
    unsigned char *chain;       /* leaf first */
    size_t chain_len;
    enum cert_encoding chain_enc;
    unsigned char *key;
    size_t key_len;
    enum cert_encoding key_enc;
    char *names[CERT_MAX_NAMES]; /* lower-case DNS names (SAN, else CN) */
    size_t nnames;
    enum cert_key key_type;     /* the leaf's public key */
    time_t not_before;
    time_t not_after;
    char source[512];           /* for messages: the certificate's path */
    char key_source[512];       /* and the key's */
};

/*
 * The CA certificates a listener accepts client certificates from (PEM),
 * owned by the struct.  binding is a digest of the certificates and the
 * policy: a session resumes only where it would be accepted again.
 */
struct cert_cas {
    unsigned char *pem;
    size_t len;
    uint8_t binding[32];
    char source[512];           /* for messages: the file's path */
};

/* Reads path; required is the listener's client_auth.required.  Returns 0,
 * or -1 with a message naming the file. */
int cert_cas_load(struct cert_cas *cas, const char *path, int required, char *err,
                  size_t errlen);
void cert_cas_free(struct cert_cas *cas);

/* Reads both files.  Returns 0, or with a message naming the file -1 when
 * the certificate file is at fault, CERT_BAD_KEY_FILE when the key file is. */
#define CERT_BAD_KEY_FILE (-2)
int cert_pair_load(struct cert_pair *pair, const char *cert_path, const char *key_path,
                   char *err, size_t errlen);
/* An ECDSA P-256 key and a self-signed certificate for host, valid for a
 * year, with host and 127.0.0.1 as subject alternative names: made on the
 * first call, the same pair on later ones (reloads).  Main thread only. */
int cert_pair_generate(struct cert_pair *pair, const char *host, char *err, size_t errlen);
void cert_pair_free(struct cert_pair *pair);

/*
 * What must hold before a pair is served: the leaf is valid now (not
 * expired, not before its start), it carries at least one DNS name.
 * Returns 0, or -1 with the reason.  The chain's order is checked when it
 * is loaded.
 */
int cert_pair_check(const struct cert_pair *pair, time_t now, char *err, size_t errlen);

/* 1 if one of certs[0..k) holds name among its names. */
int cert_name_held_earlier(const struct cert_pair *certs, size_t k, const char *name);
/* 1 if one of certs[0..k) is served for name to every client certs[k]
 * could be: it holds name and has the same kind of key (or one of a kind
 * every client is served).  SNI picks the first certificate for a name
 * among those with a key the client takes. */
int cert_name_served_earlier(const struct cert_pair *certs, size_t k, const char *name);
/* "rsa", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519", "ed448" or "other". */
const char *cert_key_name(enum cert_key key);

/* 1 if host (lower-case) matches name: exact, or "*.suffix" over one label. */
int cert_name_matches(const char *name, struct span host);

#endif
