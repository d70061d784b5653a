/*
 * tls: the only module that touches WOLFSSL and WOLFSSL_CTX.  TLS runs over
 * memory: the connection hands in ciphertext it read (tls_session_feed) and
 * ciphertext to send goes to a struct sink; plaintext goes in and out
 * through tls_read/tls_write.  No sockets here.
 *
 * A struct tls_ctx_set holds one WOLFSSL_CTX per certificate of a listener.
 * Each worker builds its own set, so creating sessions never takes a lock
 * shared with another event loop.
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cert.h"
#include "config.h"

struct tls_ctx_set;
struct tls_session;
struct sesscache;
struct ticket_keys;

/* How a listener's sessions resume.  Borrowed: must outlive the set. */
struct tls_resumption {
    struct sesscache *cache;        /* TLS 1.2 session IDs; NULL: none */
    uint64_t cache_timeout_s;
    struct ticket_keys *tickets;    /* this worker's ticket keys; NULL: no tickets */
    uint64_t ticket_lifetime_s;
};

enum {
    TLS_OK = 0,
    TLS_WANT_READ = 1,
    TLS_EOF = -1,     /* close_notify received */
    TLS_ERROR = -2,
};

int tls_global_init(void);
void tls_global_cleanup(void);
const char *tls_library_version(void);
/* "bundled (assembly, AES-NI, lean)" or "system" */
const char *tls_library_build(void);

/*
 * Builds contexts for a listener from certificates already read by cert.
 * Checks that every key matches its certificate.  client_cas: the CAs of
 * cfg's client_auth (NULL: no client certificates asked for).  Returns 0,
 * or with a message naming the file at fault CERT_BAD_KEY_FILE when a key
 * does not load, -1 otherwise.
 */
int tls_ctx_set_new(struct tls_ctx_set **out, const struct cfg_tls *cfg,
                    const struct cert_pair *pairs, size_t npairs,
                    const struct cert_cas *client_cas, const struct tls_resumption *res,
                    char *err, size_t errlen);
void tls_ctx_set_free(struct tls_ctx_set **set);
/* 0 if wolfSSL takes cfg's cipher list, or -1 with the reason. */
int tls_cipher_list_check(const struct cfg_tls *cfg, char *err, size_t errlen);
/*
 * Copies the names of a cipher list that this build knows (suites by
 * wolfSSL's or IANA's names, wolfSSL's keywords) to known, ':' between
 * them, and the others to unknown (", " between them; may be NULL).
 * Returns how many names were unknown.
 */
size_t tls_cipher_list_known(const char *ciphers, char *known, size_t len, char *unknown,
                             size_t ulen);
/* 1 if the TLS 1.2 suites of ciphers (NULL: moat's default) include one a
 * certificate with a key of kind key can serve. */
int tls_ciphers_serve_tls12(const char *ciphers, enum cert_key key);
/* 0 if wolfSSL takes cas as client CAs, or -1 with a message naming the file. */
int tls_client_cas_check(const struct cert_cas *cas, char *err, size_t errlen);

enum tls_sniff {
    TLS_SNIFF_MORE = 0,     /* the ClientHello is not complete yet */
    TLS_SNIFF_TLS,          /* a TLS handshake record */
    TLS_SNIFF_HTTP,         /* looks like plain HTTP */
    TLS_SNIFF_GARBAGE,
    TLS_SNIFF_NO_GROUP,     /* a ClientHello sharing no key-exchange group with moat */
    TLS_SNIFF_OVERSIZE,     /* a first record longer than TLS allows plaintext (2^14) */
    TLS_SNIFF_BAD_NAME,     /* a server name too long or with a NUL in it */
    TLS_SNIFF_EMPTY_NAME,   /* a server_name extension with an empty host name */
};

/* The alert record that refuses a ClientHello (fatal handshake_failure). */
extern const uint8_t tls_handshake_failure_alert[7];
/* The fatal alert record that refuses a hello the sniffer judged
 * (NO_GROUP, OVERSIZE, BAD_NAME, EMPTY_NAME); NULL for the other kinds. */
const uint8_t *tls_sniff_alert(enum tls_sniff kind);

#define TLS_MAX_SNI 255

/* What a ClientHello says that picks the certificate: filled by tls_sniff
 * for tls_session_new. */
struct tls_hello {
    char sni[TLS_MAX_SNI + 1];  /* lower case, without a final dot; "" if none */
    int readable;               /* 0: the rest is unknown (wolfSSL judges the hello) */
    int tls13;                  /* offers TLS 1.3 */
    unsigned keys13;            /* bits 1u << CERT_KEY_*: what it verifies under TLS 1.3 */
    unsigned keys12;            /* and under TLS 1.2, by signature algorithms and curves */
    uint32_t suites12;          /* the TLS 1.2 suites it offers that say a kind of key */
};

/*
 * Looks at the first *n bytes a client sent.  For TLS, once the whole
 * ClientHello is there (in one record or several), fills *hello.  A hello
 * split over several records is rewritten in place into as few records as
 * TLS allows, so wolfSSL takes any split a client may choose; *n shrinks by
 * the record headers saved.
 */
enum tls_sniff tls_sniff(uint8_t *p, size_t *n, struct tls_hello *hello);

/*
 * A server session for a client that sent hello, using the certificate
 * whose names match best among those whose key the client can verify.
 * Ciphertext to send goes to out, which must outlive the session.  Returns
 * NULL when memory is exhausted.
 */
struct tls_session *tls_session_new(struct tls_ctx_set *set, const struct tls_hello *hello,
                                    struct sink *out);
void tls_session_free(struct tls_session **s);

/* Ciphertext read from the socket; consumed by the calls below.  The bytes
 * must stay valid until then; tls_session_pending_input() tells what is left. */
void tls_session_feed(struct tls_session *s, const uint8_t *p, size_t n);
size_t tls_session_pending_input(const struct tls_session *s, const uint8_t **p);
/* 1 if wolfSSL still holds decrypted bytes not yet returned by tls_read. */
int tls_session_has_plaintext(struct tls_session *s);

/* TLS_OK when the handshake is done, TLS_WANT_READ, or TLS_ERROR. */
int tls_handshake(struct tls_session *s);
/* Bytes of plaintext (> 0), 0 when more ciphertext is needed, TLS_EOF or TLS_ERROR. */
int tls_read(struct tls_session *s, void *buf, size_t cap);
/* Encrypts all of p into the output sink: 0 or TLS_ERROR. */
int tls_write(struct tls_session *s, const void *p, size_t n);
/* Writes a close_notify alert to to, or to the session's sink if NULL. */
void tls_close_notify(struct tls_session *s, struct sink *to);

const char *tls_session_version(struct tls_session *s);
const char *tls_session_cipher(struct tls_session *s);
int tls_session_resumed(struct tls_session *s);
/* 1 for TLS 1.3, 0 for TLS 1.2. */
int tls_session_is_tls13(struct tls_session *s);
/* 1 if the handshake failed where wolfSSL closes without the
 * handshake_failure alert the client expects: no cipher suite in common, or
 * no client certificate under TLS 1.2.  Both happen before any key is in
 * use, so the plaintext alert is the right one. */
int tls_session_refused_silently(struct tls_session *s);
/* The last error as text, for the error log. */
const char *tls_session_error(struct tls_session *s, char *buf, size_t len);
/* 1 when the handshake failed on the client's certificate (mutual TLS). */
int tls_session_client_cert_refused(struct tls_session *s);

#endif
