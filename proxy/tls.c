/*
 * tls: wolfSSL contexts and sessions over memory buffers.  Owns every
 * WOLFSSL and WOLFSSL_CTX; reads no files and opens no sockets.
 */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "log.h"
#include "sesscache.h"
#include "tickets.h"

/* AEAD suites with forward secrecy only, strongest-first within each
 * version; the server's order wins (wolfSSL's default). */
#define DEFAULT_TLS13_SUITES                                                                     \
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256"
static const char default_ciphers[] =
    DEFAULT_TLS13_SUITES ":"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct tls_cert_ctx {
    WOLFSSL_CTX *ctx;
    char **names;       /* borrowed copies owned by this struct */
    size_t nnames;
    enum cert_key key_type;
    /* The certificate's identity (SHA-256 of its chain, cut): what sessions
     * are bound to, so they resume under this certificate only, neither
     * under another name's nor after a reload replaced it. */
    uint8_t identity[TICKET_BINDING_LEN];
};

struct tls_ctx_set {
    struct tls_cert_ctx *certs;
    size_t ncerts;
    int alpn;           /* offer http/1.1 */
    int tls13;          /* the cipher list has TLS 1.3 suites */
    uint32_t suites12;  /* its TLS 1.2 suites, a mask over tls12_suites */
    struct tls_resumption res;
};

/* Ownership: allocated by tls_session_new, freed by tls_session_free. */
struct tls_session {
    WOLFSSL *ssl;
    struct tls_ctx_set *set;
    uint8_t cert_index;     /* which certificate SNI picked */
    struct sink *out;
    const uint8_t *in;  /* ciphertext not yet consumed; borrowed */
    size_t in_len;
    int last_error;
};

int tls_global_init(void)
{
    return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -1;
}

void tls_global_cleanup(void)
{
    wolfSSL_Cleanup();
}

const char *tls_library_version(void)
{
    return wolfSSL_lib_version();
}

const char *tls_library_build(void)
{
#ifdef MOAT_WOLFSSL_BUNDLED
    return "bundled (Debian source, x86-64 assembly, AES-NI, lean feature set, static)";
#else
    return "system (Debian libwolfssl, generic C, full feature set)";
#endif
}

static int on_tls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct tls_session *s = ctx;
    (void)ssl;
    if (s->in_len == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = (size_t)sz < s->in_len ? (size_t)sz : s->in_len;
    memcpy(buf, s->in, n);
    s->in += n;
    s->in_len -= n;
    return (int)n;
}

static int on_tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct tls_session *s = ctx;
    (void)ssl;
    if (sink_write(s->out, buf, (size_t)sz) != 0)
        return WOLFSSL_CBIO_ERR_GENERAL;
    return sz;
}

static void free_cert_ctx(struct tls_cert_ctx *c)
{
    if (c->ctx != NULL)
        wolfSSL_CTX_free(c->ctx);
    for (size_t i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    memset(c, 0, sizeof(*c));
}

static int certificate_identity(const struct cert_pair *p, uint8_t out[TICKET_BINDING_LEN])
{
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(p->chain, (word32)p->chain_len, digest) != 0)
        return -1;
    memcpy(out, digest, TICKET_BINDING_LEN);
    return 0;
}

static int load_pair(WOLFSSL_CTX *ctx, const struct cert_pair *p, char *err, size_t errlen)
{
    int fmt = p->chain_enc == CERT_PEM ? WOLFSSL_FILETYPE_PEM : WOLFSSL_FILETYPE_ASN1;
    int rc = p->chain_enc == CERT_PEM
                 ? wolfSSL_CTX_use_certificate_chain_buffer_format(ctx, p->chain,
                                                                   (long)p->chain_len, fmt)
                 : wolfSSL_CTX_use_certificate_buffer(ctx, p->chain, (long)p->chain_len, fmt);
    if (rc != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "%s: the certificate chain does not load (wolfSSL error %d)",
                 p->source, rc);
        return -1;
    }
    fmt = p->key_enc == CERT_PEM ? WOLFSSL_FILETYPE_PEM : WOLFSSL_FILETYPE_ASN1;
    rc = wolfSSL_CTX_use_PrivateKey_buffer(ctx, p->key, (long)p->key_len, fmt);
    if (rc != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "%s: the private key does not load (wolfSSL error %d)",
                 p->key_source, rc);
        return CERT_BAD_KEY_FILE;
    }
    if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "%s: the private key does not match the certificate", p->source);
        return -1;
    }
    return 0;
}

#define SESSION_ID_OFFSET 9

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* wolfSSL hands over a new session: keep TLS 1.2 ones by session ID (TLS
 * 1.3 resumes through tickets only).  Returns 0: wolfSSL keeps ownership. */
static int on_session_new(WOLFSSL *ssl, WOLFSSL_SESSION *sess)
{
    struct tls_session *s = wolfSSL_GetIOReadCtx(ssl);
    struct sesscache *cache = s->set->res.cache;
    if (cache == NULL || wolfSSL_GetVersion(ssl) == WOLFSSL_TLSV1_3)
        return 0;
    int len = wolfSSL_i2d_SSL_SESSION(sess, NULL);
    unsigned char buf[SESSCACHE_MAX_SESSION], *p = buf;
    if (len <= SESSION_ID_OFFSET || len > SESSCACHE_MAX_SESSION ||
        wolfSSL_i2d_SSL_SESSION(sess, &p) != len)
        return 0;
    /* This wolfSSL build has no accessor for a session's ID (it needs
     * OPENSSL_EXTRA or SESSION_CERTS); the serialised form begins side (1),
     * bornOn (4), timeout (4), ID length (1), ID. */
    size_t idlen = buf[SESSION_ID_OFFSET];
    uint8_t key[SESSCACHE_MAX_ID];
    if (idlen == 0 || idlen + TICKET_BINDING_LEN > sizeof(key) ||
        SESSION_ID_OFFSET + 1 + idlen > (size_t)len) {
        memset(buf, 0, (size_t)len);
        return 0;
    }
    /* Keyed by certificate too: a session resumes only where it began. */
    const uint8_t *identity = s->set->certs[s->cert_index].identity;
    memcpy(key, identity, TICKET_BINDING_LEN);
    memcpy(key + TICKET_BINDING_LEN, buf + SESSION_ID_OFFSET + 1, idlen);
    sesscache_put(cache, key, idlen + TICKET_BINDING_LEN, buf, (size_t)len, monotonic_ms());
    memset(buf, 0, (size_t)len);
    return 0;
}

/* A client offers a session ID.  *copy = 0: wolfSSL frees what we return. */
static WOLFSSL_SESSION *on_session_get(WOLFSSL *ssl, const unsigned char *id, int idlen,
                                       int *copy)
{
    struct tls_session *s = wolfSSL_GetIOReadCtx(ssl);
    struct sesscache *cache = s->set->res.cache;
    unsigned char buf[SESSCACHE_MAX_SESSION];
    uint8_t key[SESSCACHE_MAX_ID];
    *copy = 0;
    if (cache == NULL || idlen <= 0 || (size_t)idlen + TICKET_BINDING_LEN > sizeof(key))
        return NULL;
    memcpy(key, s->set->certs[s->cert_index].identity, TICKET_BINDING_LEN);
    memcpy(key + TICKET_BINDING_LEN, id, (size_t)idlen);
    size_t n = sesscache_get(cache, key, (size_t)idlen + TICKET_BINDING_LEN, buf, sizeof(buf),
                             monotonic_ms());
    if (n == 0)
        return NULL;
    const unsigned char *p = buf;
    WOLFSSL_SESSION *sess = wolfSSL_d2i_SSL_SESSION(NULL, &p, (long)n);
    memset(buf, 0, n);
    return sess;
}

/* Session tickets under moat's key ring.  A ticket that cannot be opened
 * means a full handshake, never a failed one.  Like the session cache, a
 * ticket is bound to the certificate that proved the session: under
 * another server name it would resume without that name's certificate. */
static int on_ticket(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
                     unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                     unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc, unsigned char *ticket,
                     int len, int *outlen, void *ctx)
{
    struct ticket_keys *keys = ctx;
    const struct tls_session *s = wolfSSL_GetIOReadCtx(ssl);
    *outlen = len;
    if (len <= 0 || s == NULL)
        return WOLFSSL_TICKET_RET_REJECT;
    const uint8_t *identity = s->set->certs[s->cert_index].identity;
    if (enc)
        return ticket_seal(keys, identity, name, iv, ticket, (size_t)len, mac, time(NULL)) ==
                       TICKET_OK
                   ? WOLFSSL_TICKET_RET_OK
                   : WOLFSSL_TICKET_RET_FATAL;
    switch (ticket_open(keys, identity, name, iv, ticket, (size_t)len, mac, time(NULL))) {
    case TICKET_OK: return WOLFSSL_TICKET_RET_OK;
    case TICKET_OK_RENEW: return WOLFSSL_TICKET_RET_CREATE;
    default: return WOLFSSL_TICKET_RET_REJECT;
    }
}

/* Asks every client for a certificate that chains to cas.  wolfSSL checks
 * it during the handshake; a resumed session was checked when it began, and
 * the session cache and ticket keys are bound to cas (runtime). */
static int setup_client_auth(WOLFSSL_CTX *ctx, const struct cert_cas *cas, int required,
                             char *err, size_t errlen)
{
    int rc = wolfSSL_CTX_load_verify_buffer(ctx, cas->pem, (long)cas->len, WOLFSSL_FILETYPE_PEM);
    if (rc != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "%s: the CA certificates do not load (wolfSSL error %d)",
                 cas->source, rc);
        return -1;
    }
    int mode = WOLFSSL_VERIFY_PEER | (required ? WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    wolfSSL_CTX_set_verify(ctx, mode, NULL);
    return 0;
}

int tls_client_cas_check(const struct cert_cas *cas, char *err, size_t errlen)
{
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context");
        return -1;
    }
    int rc = setup_client_auth(ctx, cas, 1, err, errlen);
    wolfSSL_CTX_free(ctx);
    return rc;
}

static int setup_resumption(WOLFSSL_CTX *ctx, const struct tls_resumption *res, char *err,
                            size_t errlen)
{
    uint64_t timeout = res->cache_timeout_s;
    if (res->tickets != NULL && res->ticket_lifetime_s > timeout)
        timeout = res->ticket_lifetime_s;
    if (timeout == 0)
        timeout = 1;
    /* wolfSSL's own cache is a few dozen sessions shared by the whole
     * process: moat keeps its own. */
    long mode = WOLFSSL_SESS_CACHE_NO_INTERNAL;
    wolfSSL_CTX_set_session_cache_mode(ctx, res->cache ? mode | WOLFSSL_SESS_CACHE_SERVER
                                                       : WOLFSSL_SESS_CACHE_OFF);
    if (res->cache != NULL) {
        /* No remove callback: without HAVE_EX_DATA, wolfSSL 5.5.4 calls it
         * whenever it frees any session object, which would drop entries
         * just stored.  Entries leave by LRU and timeout. */
        wolfSSL_CTX_sess_set_new_cb(ctx, on_session_new);
        wolfSSL_CTX_sess_set_get_cb(ctx, on_session_get);
    }
    wolfSSL_CTX_set_timeout(ctx, (unsigned int)timeout);
    if (res->tickets == NULL) {
        wolfSSL_CTX_NoTicketTLSv12(ctx);
        wolfSSL_CTX_no_ticket_TLSv13(ctx);
        return 0;
    }
    if (wolfSSL_CTX_set_TicketEncCb(ctx, on_ticket) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_TicketEncCtx(ctx, res->tickets) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_TicketHint(ctx, (int)res->ticket_lifetime_s) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot set up session tickets");
        return -1;
    }
    return 0;
}

#define KEY_BIT(k) (1u << (k))
#define ECDSA_KEYS (KEY_BIT(CERT_KEY_P256) | KEY_BIT(CERT_KEY_P384) | KEY_BIT(CERT_KEY_P521))
/* Keys signing under ECDHE-ECDSA suites in TLS 1.2 (RFC 8422 2.3). */
#define ECDHE_ECDSA_KEYS (ECDSA_KEYS | KEY_BIT(CERT_KEY_ED25519) | KEY_BIT(CERT_KEY_ED448))
#define ALL_KEYS (KEY_BIT(CERT_KEY_RSA) | ECDHE_ECDSA_KEYS)

/*
 * The TLS 1.2 suites that say which kind of key the server signs with:
 * ECDHE-ECDSA (RFC 8422, 7251, 7905), then ECDHE-RSA, DHE-RSA and RSA.  A
 * hello's and a listener's suites are masks over this table, so that the
 * suites they share are one AND.
 */
static const uint16_t tls12_suites[] = {
    0xC009, 0xC00A, 0xC023, 0xC024, 0xC02B, 0xC02C, 0xC0AC, 0xC0AD, 0xC0AE, 0xC0AF, 0xCCA9,
    0xC013, 0xC014, 0xC027, 0xC028, 0xC02F, 0xC030, 0xCCA8, 0x0033, 0x0039, 0x0067, 0x006B,
    0x009E, 0x009F, 0xCCAA, 0x002F, 0x0035, 0x003C, 0x003D, 0x009C, 0x009D,
};
#define TLS12_SUITES (sizeof(tls12_suites) / sizeof(tls12_suites[0]))
#define ECDSA_SUITES ((uint32_t)0x7FF) /* the first 11 */
#define RSA_SUITES ((uint32_t)((1ull << TLS12_SUITES) - 1) & ~ECDSA_SUITES)
_Static_assert(TLS12_SUITES <= 32, "suite masks are 32 bits");

static uint32_t tls12_suite_bit(unsigned suite)
{
    for (size_t i = 0; i < TLS12_SUITES; i++)
        if (tls12_suites[i] == suite)
            return (uint32_t)1 << i;
    return 0;
}

enum suite_word {
    WORD_TLS12,         /* a TLS 1.2 suite (its bit in tls12_suites, or none) */
    WORD_TLS13,
    WORD_UNKNOWN,       /* no suite's name: a keyword, or a typo */
};

/* What a word of a cipher list names, by wolfSSL's names or IANA's. */
static enum suite_word suite_word(const char *name, uint32_t *bit)
{
    byte b0, b1;
    int flags = 0;
    *bit = 0;
    if (wolfSSL_get_cipher_suite_from_name(name, &b0, &b1, &flags) == 0) {
        if (b0 == 0x13)
            return WORD_TLS13;
        *bit = tls12_suite_bit((unsigned)b0 << 8 | b1);
        return WORD_TLS12;
    }
    for (size_t i = 0; i < TLS12_SUITES; i++) {
        const char *iana =
            wolfSSL_get_cipher_name_iana_from_suite(tls12_suites[i] >> 8, tls12_suites[i] & 0xff);
        if (iana != NULL && strcmp(iana, name) == 0) {
            *bit = (uint32_t)1 << i;
            return WORD_TLS12;
        }
    }
    if (strncmp(name, "TLS_AES_", 8) == 0 || strncmp(name, "TLS_CHACHA20_", 13) == 0)
        return WORD_TLS13;
    return WORD_UNKNOWN;
}

/* The TLS 1.2 suites of a cipher list (':' between names) as a mask over
 * tls12_suites, and whether it names TLS 1.3 ones; all of them when a word
 * is no suite's name: then the list does not narrow the choice. */
static uint32_t cipher_list_suites(const char *ciphers, int *tls13)
{
    uint32_t mask = 0;
    *tls13 = 0;
    char name[128];
    for (const char *p = ciphers; *p != '\0';) {
        size_t len = strcspn(p, ":");
        if (len > 0 && len < sizeof(name)) {
            memcpy(name, p, len);
            name[len] = '\0';
            uint32_t bit;
            switch (suite_word(name, &bit)) {
            case WORD_TLS12: mask |= bit; break;
            case WORD_TLS13: *tls13 = 1; break;
            case WORD_UNKNOWN: *tls13 = 1; return ECDSA_SUITES | RSA_SUITES;
            }
        }
        p += len + (p[len] == ':');
    }
    return mask;
}

/* wolfSSL's own keywords, and OpenSSL's operators it may take. */
static int cipher_keyword(const char *word)
{
    return strcmp(word, "ALL") == 0 || strcmp(word, "DEFAULT") == 0 ||
           strcmp(word, "HIGH") == 0 || strchr("!+-@", word[0]) != NULL;
}

size_t tls_cipher_list_known(const char *ciphers, char *known, size_t len, char *unknown,
                             size_t ulen)
{
    size_t k = 0, u = 0, nunknown = 0;
    char word[128];
    known[0] = '\0';
    if (unknown != NULL && ulen > 0)
        unknown[0] = '\0';
    /* OpenSSL also takes spaces and commas between names, and YAML's
     * folded strings put a space after each ':' at a line break. */
    for (const char *p = ciphers; *p != '\0';) {
        p += strspn(p, ":, \t\n");
        size_t n = strcspn(p, ":, \t\n");
        if (n == 0)
            break;
        uint32_t bit;
        int fits = n < sizeof(word);
        if (fits) {
            memcpy(word, p, n);
            word[n] = '\0';
        }
        if (fits && (suite_word(word, &bit) != WORD_UNKNOWN || cipher_keyword(word))) {
            if (k + n + 2 <= len)
                k += (size_t)snprintf(known + k, len - k, "%s%s", k ? ":" : "", word);
        } else {
            nunknown++;
            if (unknown != NULL && u + n + 3 <= ulen)
                u += (size_t)snprintf(unknown + u, ulen - u, "%s%.*s", u ? ", " : "", (int)n, p);
        }
        p += n;
    }
    return nunknown;
}

/*
 * The list wolfSSL gets: the names this build knows (wolfSSL drops the
 * others itself, but then "names no TLS 1.3 suite" must be judged without
 * them).  ciphers governs TLS 1.2, as OpenSSL's cipher string does for
 * nginx and HAProxy: a list that names no TLS 1.3 suite (Mozilla's
 * intermediate string pasted from nginx) keeps moat's TLS 1.3 suites, or
 * every TLS 1.3 client would be refused.  "" when no name is known.
 */
static const char *effective_cipher_list(const struct cfg_tls *cfg, char *buf, size_t len)
{
    if (cfg->ciphers == NULL)
        return default_ciphers;
    char known[CFG_MAX_CIPHERS + 1];
    tls_cipher_list_known(cfg->ciphers, known, sizeof(known), NULL, 0);
    if (known[0] == '\0')
        return "";
    int tls13;
    cipher_list_suites(known, &tls13);
    int n = tls13 ? snprintf(buf, len, "%s", known)
                  : snprintf(buf, len, "%s:%s", DEFAULT_TLS13_SUITES, known);
    return n >= 0 && (size_t)n < len ? buf : "";
}

int tls_ciphers_serve_tls12(const char *ciphers, enum cert_key key)
{
    int tls13;
    char known[CFG_MAX_CIPHERS + 1];
    if (ciphers != NULL)
        tls_cipher_list_known(ciphers, known, sizeof(known), NULL, 0);
    uint32_t mask = cipher_list_suites(ciphers ? known : default_ciphers, &tls13);
    switch (key) {
    case CERT_KEY_RSA: return (mask & RSA_SUITES) != 0;
    case CERT_KEY_P256:
    case CERT_KEY_P384:
    case CERT_KEY_P521:
    case CERT_KEY_ED25519:
    case CERT_KEY_ED448: return (mask & ECDSA_SUITES) != 0;
    default: return 1;
    }
}

static WOLFSSL_CTX *new_ctx(const struct cfg_tls *cfg, char *err, size_t errlen)
{
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    int minv = strcmp(cfg->min_version, "1.3") == 0 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2;
    if (wolfSSL_CTX_SetMinVersion(ctx, minv) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot set the minimum TLS version %s", cfg->min_version);
        goto fail;
    }
    char buf[CFG_MAX_CIPHERS + sizeof(DEFAULT_TLS13_SUITES) + 1];
    const char *ciphers = effective_cipher_list(cfg, buf, sizeof(buf));
    if (ciphers[0] == '\0' || wolfSSL_CTX_set_cipher_list(ctx, ciphers) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen,
                 "cipher list \"%s\" is not usable: moat takes suite names (wolfSSL's or "
                 "IANA's), ':' between them, such as ECDHE-ECDSA-AES128-GCM-SHA256",
                 cfg->ciphers ? cfg->ciphers : ciphers);
        goto fail;
    }
    /* Key exchange over the groups moat offers, best first.  With an
     * explicit list, a client that shares none of them is refused rather
     * than sent a HelloRetryRequest that selects nothing. */
    int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
    if (wolfSSL_CTX_set_groups(ctx, groups, (int)(sizeof(groups) / sizeof(groups[0]))) !=
        WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot set the key-exchange groups");
        goto fail;
    }
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    wolfSSL_CTX_SetIORecv(ctx, on_tls_recv);
    wolfSSL_CTX_SetIOSend(ctx, on_tls_send);
    return ctx;
fail:
    wolfSSL_CTX_free(ctx);
    return NULL;
}

int tls_cipher_list_check(const struct cfg_tls *cfg, char *err, size_t errlen)
{
    WOLFSSL_CTX *ctx = new_ctx(cfg, err, errlen);
    if (ctx == NULL)
        return -1;
    wolfSSL_CTX_free(ctx);
    return 0;
}

int tls_ctx_set_new(struct tls_ctx_set **out, const struct cfg_tls *cfg,
                    const struct cert_pair *pairs, size_t npairs,
                    const struct cert_cas *client_cas, const struct tls_resumption *res,
                    char *err, size_t errlen)
{
    struct tls_ctx_set *set = calloc(1, sizeof(*set));
    if (set == NULL || npairs == 0) {
        snprintf(err, errlen, npairs ? "out of memory" : "no certificate");
        free(set);
        return -1;
    }
    set->certs = calloc(npairs, sizeof(*set->certs));
    if (set->certs == NULL) {
        snprintf(err, errlen, "out of memory");
        free(set);
        return -1;
    }
    int rc = 0;
    set->ncerts = npairs;
    set->alpn = cfg->nalpn > 0;
    char buf[CFG_MAX_CIPHERS + sizeof(DEFAULT_TLS13_SUITES) + 1];
    set->suites12 = cipher_list_suites(effective_cipher_list(cfg, buf, sizeof(buf)), &set->tls13);
    if (res != NULL)
        set->res = *res;
    for (size_t i = 0; i < npairs; i++) {
        struct tls_cert_ctx *c = &set->certs[i];
        c->ctx = new_ctx(cfg, err, errlen);
        if (c->ctx == NULL)
            goto fail;
        rc = load_pair(c->ctx, &pairs[i], err, errlen);
        if (rc != 0 || setup_resumption(c->ctx, &set->res, err, errlen) != 0)
            goto fail;
        if (certificate_identity(&pairs[i], c->identity) != 0) {
            snprintf(err, errlen, "%s: cannot hash the certificate", pairs[i].source);
            goto fail;
        }
        if (client_cas != NULL &&
            setup_client_auth(c->ctx, client_cas, cfg->client_auth.required, err, errlen) != 0)
            goto fail;
        c->key_type = pairs[i].key_type;
        c->names = calloc(pairs[i].nnames ? pairs[i].nnames : 1, sizeof(char *));
        if (c->names == NULL)
            goto fail;
        for (size_t k = 0; k < pairs[i].nnames; k++) {
            c->names[k] = strdup(pairs[i].names[k]);
            if (c->names[k] == NULL)
                goto fail;
            c->nnames++;
        }
    }
    *out = set;
    return 0;
fail:
    tls_ctx_set_free(&set);
    return rc == CERT_BAD_KEY_FILE ? rc : -1;
}

void tls_ctx_set_free(struct tls_ctx_set **set)
{
    struct tls_ctx_set *s = *set;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->ncerts; i++)
        free_cert_ctx(&s->certs[i]);
    free(s->certs);
    free(s);
    *set = NULL;
}

const uint8_t tls_handshake_failure_alert[7] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};

const uint8_t *tls_sniff_alert(enum tls_sniff kind)
{
    static const uint8_t record_overflow[7] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x16};
    static const uint8_t unrecognized_name[7] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70};
    static const uint8_t decode_error[7] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32};
    switch (kind) {
    case TLS_SNIFF_NO_GROUP: return tls_handshake_failure_alert;
    case TLS_SNIFF_OVERSIZE: return record_overflow;
    case TLS_SNIFF_BAD_NAME: return unrecognized_name;
    case TLS_SNIFF_EMPTY_NAME: return decode_error;
    default: return NULL;
    }
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/*
 * Where the cipher suites (their 2-byte length, then the list) of the
 * ClientHello in the complete record p[0..n) start, with *end where the
 * message ends; 0 when the hello is malformed: wolfSSL judges malformed
 * hellos with the alert they deserve.
 */
static size_t hello_suites_at(const uint8_t *p, size_t n, size_t *end)
{
    size_t i = 5;
    if (n < i + 4 || p[i] != 1)
        return 0;
    *end = i + 4 + ((size_t)p[i + 1] << 16 | (size_t)p[i + 2] << 8 | p[i + 3]);
    i += 4 + 2 + 32; /* handshake header, version, random */
    if (*end > n || i + 1 > *end)
        return 0;
    i += 1 + p[i]; /* session id */
    if (i + 2 > *end || i + 2 + be16(p + i) > *end)
        return 0;
    return i;
}

/* The body of extension type in the ClientHello of the complete record
 * p[0..n), or NULL when it is absent or the hello is malformed. */
static const uint8_t *hello_extension(const uint8_t *p, size_t n, unsigned type, size_t *len)
{
    size_t end, i = hello_suites_at(p, n, &end);
    if (i == 0)
        return NULL;
    i += 2 + be16(p + i); /* cipher suites */
    if (i + 1 > end)
        return NULL;
    i += 1 + p[i]; /* compression methods */
    if (i + 2 > end)
        return NULL;
    size_t ext_end = i + 2 + be16(p + i);
    if (ext_end > end)
        return NULL;
    for (i += 2; i + 4 <= ext_end;) {
        size_t ext_len = be16(p + i + 2);
        if (i + 4 + ext_len > ext_end)
            return NULL;
        if (be16(p + i) == type) {
            *len = ext_len;
            return p + i + 4;
        }
        i += 4 + ext_len;
    }
    return NULL;
}

/*
 * 1 when the hello lists supported_groups and none of moat's (x25519,
 * secp256r1, secp384r1).  wolfSSL 5.5.4 would answer such a TLS 1.3 hello
 * with a HelloRetryRequest that selects a group the client never offered.
 */
static int no_common_group(const uint8_t *p, size_t n)
{
    size_t len;
    const uint8_t *ext = hello_extension(p, n, 10, &len);
    if (ext == NULL || len < 2 || be16(ext) + 2u > len)
        return 0;
    for (size_t k = 2; k + 1 < 2u + be16(ext); k += 2) {
        unsigned g = be16(ext + k);
        if (g == WOLFSSL_ECC_X25519 || g == WOLFSSL_ECC_SECP256R1 || g == WOLFSSL_ECC_SECP384R1)
            return 0;
    }
    return 1;
}

/*
 * Copies the hello's host name into sni, lower case and without a final
 * dot.  The refusals are OpenSSL's, which clients know: an empty name is
 * a decode_error, one longer than DNS allows or holding a NUL (which would
 * pick the certificate of whatever comes before it) an unrecognized_name.
 */
static enum tls_sniff hello_server_name(const uint8_t *p, size_t n, char *sni)
{
    size_t len;
    const uint8_t *ext = hello_extension(p, n, 0, &len);
    /* server_name_list<1..>, then name_type host_name(0) and HostName<1..> */
    if (ext == NULL || len < 2 || be16(ext) + 2u != len)
        return TLS_SNIFF_TLS;
    if (len < 5 || ext[2] != 0 || be16(ext + 3) + 5u > len)
        return TLS_SNIFF_TLS;
    size_t name_len = be16(ext + 3);
    const uint8_t *name = ext + 5;
    if (name_len == 0)
        return TLS_SNIFF_EMPTY_NAME;
    if (name_len > TLS_MAX_SNI || memchr(name, 0, name_len) != NULL)
        return TLS_SNIFF_BAD_NAME;
    for (size_t i = 0; i < name_len; i++) {
        char c = (char)name[i];
        sni[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    if (sni[name_len - 1] == '.')
        name_len--;
    sni[name_len] = '\0';
    return TLS_SNIFF_TLS;
}

/* Where the ClientHello ends in the records at the start of a client's
 * bytes: the bytes those records take and the handshake payload they
 * carry. */
struct hello_records {
    size_t bytes;
    size_t payload;
    size_t count;
};

/*
 * Walks the handshake records at the start of p until they carry the whole
 * first handshake message; its 4-byte header may itself be split.  TLS
 * with *out filled once they do, or at once when that message is no
 * ClientHello or one longer than a record (wolfSSL judges those as they
 * come); MORE while bytes are missing; GARBAGE or OVERSIZE for a record no
 * ClientHello can come in.
 */
static enum tls_sniff find_hello_records(const uint8_t *p, size_t n, struct hello_records *out)
{
    uint8_t head[4];
    size_t off = 0, payload = 0, count = 0;
    for (;;) {
        if (n < off + 5)
            return TLS_SNIFF_MORE;
        if (p[off] != 0x16 || p[off + 1] != 3)
            return TLS_SNIFF_GARBAGE; /* nothing may come before the whole hello */
        size_t rec = be16(p + off + 3);
        if (rec == 0)
            return TLS_SNIFF_GARBAGE; /* RFC 8446 5.1: no empty handshake fragment */
        /* Said at once: waiting for 16 KiB that can never be valid held the
         * connection until handshake_timeout. */
        if (rec > 16384)
            return TLS_SNIFF_OVERSIZE;
        if (n < off + 5 + rec)
            return TLS_SNIFF_MORE;
        for (size_t i = 0; i < rec && payload + i < sizeof(head); i++)
            head[payload + i] = p[off + 5 + i];
        off += 5 + rec;
        payload += rec;
        count++;
        if (payload < sizeof(head))
            continue;
        size_t message = 4 + ((size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3]);
        if (payload >= message || head[0] != 1 || message > 16384) {
            *out = (struct hello_records){off, payload, count};
            return TLS_SNIFF_TLS;
        }
    }
}

/* The hello's records as one: the first record's header, then every
 * record's payload.  NULL when memory runs out. */
static uint8_t *join_hello_records(const uint8_t *p, const struct hello_records *h)
{
    uint8_t *whole = malloc(5 + h->payload);
    if (whole == NULL)
        return NULL;
    memcpy(whole, p, 5);
    size_t got = 0;
    for (size_t off = 0; off < h->bytes; off += 5 + be16(p + off + 3)) {
        memcpy(whole + 5 + got, p + off + 5, be16(p + off + 3));
        got += be16(p + off + 3);
    }
    return whole;
}

/*
 * Writes the joined hello back over its records as records each as full as
 * TLS allows (2^14), and closes the gap before the bytes that follow.  A
 * client may split a ClientHello anywhere, down to one byte per record, but
 * wolfSSL needs a message's 4-byte header within one record.  The rewrite
 * is never longer than what it replaces.
 */
static size_t reframe_hello(uint8_t *p, size_t *n, const struct hello_records *h,
                            const uint8_t *whole)
{
    size_t out = 0;
    for (size_t done = 0; done < h->payload;) {
        size_t chunk = h->payload - done < 16384 ? h->payload - done : 16384;
        memcpy(p + out, whole, 3); /* content type and record version */
        p[out + 3] = (uint8_t)(chunk >> 8);
        p[out + 4] = (uint8_t)chunk;
        memcpy(p + out + 5, whole + 5 + done, chunk);
        out += 5 + chunk;
        done += chunk;
    }
    memmove(p + out, p + h->bytes, *n - h->bytes);
    *n -= h->bytes - out;
    return out;
}

/* 1 when the hello (a record header, then the message) offers TLS 1.3. */
static int offers_tls13(const uint8_t *p, size_t n)
{
    size_t len;
    const uint8_t *ext = hello_extension(p, n, 43, &len); /* supported_versions */
    if (ext == NULL || len < 1 || ext[0] + 1u > len)
        return 0;
    for (size_t k = 1; k + 1 < 1u + ext[0]; k += 2)
        if (ext[k] == 3 && ext[k + 1] == 4)
            return 1;
    return 0;
}

/*
 * Removes a change_cipher_spec record right after the hello, at p[end].
 * RFC 8446 5 has a TLS 1.3 server drop it ("middlebox compatibility",
 * sent with early data); wolfSSL 5.5.4 refuses it before its ServerHello
 * with illegal_parameter.  Later ones it drops itself.
 */
static void drop_early_ccs(uint8_t *p, size_t *n, size_t end)
{
    static const uint8_t ccs[6] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};
    if (*n >= end + sizeof(ccs) && memcmp(p + end, ccs, sizeof(ccs)) == 0) {
        memmove(p + end, p + end + sizeof(ccs), *n - end - sizeof(ccs));
        *n -= sizeof(ccs);
    }
}

/* The ECDSA curves of a TLS 1.2 hello's supported_groups (all of them
 * when it has none: RFC 8422 5.1). */
static unsigned hello_ecdsa_curves(const uint8_t *p, size_t n)
{
    size_t len;
    const uint8_t *ext = hello_extension(p, n, 10, &len);
    if (ext == NULL || len < 2 || be16(ext) + 2u > len)
        return ECDSA_KEYS;
    unsigned curves = 0;
    for (size_t k = 2; k + 1 < 2u + be16(ext); k += 2) {
        unsigned g = be16(ext + k);
        curves |= g == WOLFSSL_ECC_SECP256R1   ? KEY_BIT(CERT_KEY_P256)
                  : g == WOLFSSL_ECC_SECP384R1 ? KEY_BIT(CERT_KEY_P384)
                  : g == WOLFSSL_ECC_SECP521R1 ? KEY_BIT(CERT_KEY_P521)
                                               : 0;
    }
    return curves;
}

/* wolfSSL 5.5.4 keeps the first 19 signature schemes of a hello
 * (WOLFSSL_MAX_SIGALGO): the choice must not count on later ones. */
#define SIGALGS_WOLFSSL_READS 19

/* The certificate keys a signature scheme verifies: under TLS 1.3 the
 * scheme names the ECDSA curve and RSA signs with PSS only (RFC 8446
 * 4.2.3); TLS 1.2's hash/signature pairs do not name a curve. */
static unsigned scheme_keys(unsigned scheme, int tls13)
{
    unsigned hash = scheme >> 8, sig = scheme & 0xff;
    switch (scheme) {
    case 0x0804: case 0x0805: case 0x0806: return KEY_BIT(CERT_KEY_RSA); /* rsa_pss_rsae */
    case 0x0807: return KEY_BIT(CERT_KEY_ED25519);
    case 0x0808: return KEY_BIT(CERT_KEY_ED448);
    }
    if (tls13)
        return scheme == 0x0403   ? KEY_BIT(CERT_KEY_P256)
               : scheme == 0x0503 ? KEY_BIT(CERT_KEY_P384)
               : scheme == 0x0603 ? KEY_BIT(CERT_KEY_P521)
                                  : 0;
    if (hash < 1 || hash > 6) /* md5 .. sha512 */
        return 0;
    return sig == 3 ? ECDSA_KEYS : sig == 1 ? KEY_BIT(CERT_KEY_RSA) : 0;
}

/*
 * Reads which certificate keys the client can verify: under TLS 1.3 by
 * the signature schemes alone; under TLS 1.2 by the signature algorithms,
 * the curves and the suites, which tls_session_new meets with the
 * listener's.
 */
static void read_hello_keys(const uint8_t *p, size_t n, struct tls_hello *hello)
{
    size_t end, at = hello_suites_at(p, n, &end);
    if (at == 0)
        return;
    hello->readable = 1;
    hello->tls13 = offers_tls13(p, n);
    for (size_t k = at + 2; k + 1 < at + 2 + be16(p + at); k += 2)
        hello->suites12 |= tls12_suite_bit(be16(p + k));
    size_t len;
    const uint8_t *sig = hello_extension(p, n, 13, &len); /* signature_algorithms */
    unsigned keys13 = 0, keys12 = 0;
    if (sig == NULL || len < 2 || be16(sig) + 2u > len) {
        /* TLS 1.2 then means SHA-1 with the suite's kind (RFC 5246 7.4.1.4.1) */
        keys13 = ALL_KEYS;
        keys12 = KEY_BIT(CERT_KEY_RSA) | ECDSA_KEYS;
    } else {
        size_t count = be16(sig) / 2;
        if (count > SIGALGS_WOLFSSL_READS)
            count = SIGALGS_WOLFSSL_READS;
        for (size_t k = 0; k < count; k++) {
            keys13 |= scheme_keys(be16(sig + 2 + 2 * k), 1);
            keys12 |= scheme_keys(be16(sig + 2 + 2 * k), 0);
        }
    }
    hello->keys13 = keys13;
    hello->keys12 = keys12 & (~ECDSA_KEYS | hello_ecdsa_curves(p, n));
}

/* The sniffer's verdict on a whole hello: p[0..5) a record header, then
 * the handshake message. */
static enum tls_sniff judge_hello(const uint8_t *p, size_t n, struct tls_hello *hello)
{
    enum tls_sniff name = hello_server_name(p, n, hello->sni);
    if (name != TLS_SNIFF_TLS)
        return name;
    if (no_common_group(p, n))
        return TLS_SNIFF_NO_GROUP;
    read_hello_keys(p, n, hello);
    return TLS_SNIFF_TLS;
}

enum tls_sniff tls_sniff(uint8_t *p, size_t *n, struct tls_hello *hello)
{
    memset(hello, 0, sizeof(*hello));
    if (*n == 0)
        return TLS_SNIFF_MORE;
    if (p[0] != 0x16) {
        int letter = (p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z');
        return letter ? TLS_SNIFF_HTTP : TLS_SNIFF_GARBAGE;
    }
    if (*n >= 2 && p[1] != 3)
        return TLS_SNIFF_GARBAGE;
    struct hello_records h;
    enum tls_sniff found = find_hello_records(p, *n, &h);
    if (found != TLS_SNIFF_TLS)
        return found;
    if (h.count == 1 || h.payload > 16384) {
        enum tls_sniff verdict = judge_hello(p, 5 + be16(p + 3), hello);
        if (verdict == TLS_SNIFF_TLS && h.count == 1 && hello->tls13)
            drop_early_ccs(p, n, h.bytes);
        return verdict;
    }
    /* Split hellos are rare (tests, odd stacks): a copy costs nothing that
     * matters, and the server name and groups are read as for one record. */
    uint8_t *whole = join_hello_records(p, &h);
    if (whole == NULL)
        return TLS_SNIFF_GARBAGE;
    enum tls_sniff verdict = judge_hello(whole, 5 + h.payload, hello);
    if (verdict == TLS_SNIFF_TLS) {
        size_t end = reframe_hello(p, n, &h, whole);
        if (hello->tls13)
            drop_early_ccs(p, n, end);
    }
    free(whole);
    return verdict;
}

/* The certificate keys a client that sent hello can verify with this
 * listener's suites. */
static unsigned verifiable_keys(const struct tls_ctx_set *set, const struct tls_hello *hello)
{
    if (!hello->readable)
        return ALL_KEYS;
    if (hello->tls13 && set->tls13)
        return hello->keys13;
    uint32_t shared = hello->suites12 & set->suites12;
    unsigned keys = 0;
    if (shared & ECDSA_SUITES)
        keys |= hello->keys12 & ECDHE_ECDSA_KEYS;
    if (shared & RSA_SUITES)
        keys |= hello->keys12 & KEY_BIT(CERT_KEY_RSA);
    return keys;
}

static int client_takes(const struct tls_cert_ctx *c, unsigned keys)
{
    return c->key_type == CERT_KEY_OTHER || (keys & KEY_BIT(c->key_type)) != 0;
}

static int holds_name(const struct tls_cert_ctx *c, struct span host, int wildcard)
{
    for (size_t k = 0; k < c->nnames; k++) {
        int is_wild = c->names[k][0] == '*';
        if (is_wild == wildcard && cert_name_matches(c->names[k], host))
            return 1;
    }
    return 0;
}

/*
 * By name: exact names, then wildcards; the first certificate for the name
 * whose key the client can verify, so an ECDSA and an RSA certificate can
 * serve one site to every client.  A client that can verify none gets the
 * first and fails as it would anywhere.  No name, or one no certificate
 * holds: the default, certs[0], or else the first certificate for the
 * default's first name that the client can verify.
 */
static size_t pick_cert(struct tls_ctx_set *set, const struct tls_hello *hello)
{
    struct span host = {hello->sni, strlen(hello->sni)};
    unsigned keys = verifiable_keys(set, hello);
    size_t first = SIZE_MAX;
    for (int wildcard = 0; host.len > 0 && wildcard <= 1; wildcard++) {
        for (size_t i = 0; i < set->ncerts; i++) {
            if (!holds_name(&set->certs[i], host, wildcard))
                continue;
            if (client_takes(&set->certs[i], keys))
                return i;
            if (first == SIZE_MAX)
                first = i;
        }
    }
    if (first != SIZE_MAX)
        return first;
    if (client_takes(&set->certs[0], keys) || set->certs[0].nnames == 0)
        return 0;
    const char *site = set->certs[0].names[0];
    for (size_t i = 1; i < set->ncerts; i++) {
        if (!client_takes(&set->certs[i], keys))
            continue;
        for (size_t k = 0; k < set->certs[i].nnames; k++)
            if (strcmp(set->certs[i].names[k], site) == 0)
                return i;
    }
    return 0;
}

struct tls_session *tls_session_new(struct tls_ctx_set *set, const struct tls_hello *hello,
                                    struct sink *out)
{
    struct tls_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    size_t cert = pick_cert(set, hello);
    s->cert_index = (uint8_t)cert;
    s->ssl = wolfSSL_new(set->certs[cert].ctx);
    if (s->ssl == NULL) {
        free(s);
        return NULL;
    }
    s->out = out;
    s->set = set;
    wolfSSL_SetIOReadCtx(s->ssl, s);
    wolfSSL_SetIOWriteCtx(s->ssl, s);
    if (set->alpn) {
        char proto[] = "http/1.1";
        if (wolfSSL_UseALPN(s->ssl, proto, sizeof(proto) - 1,
                            WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) != WOLFSSL_SUCCESS) {
            wolfSSL_free(s->ssl);
            free(s);
            return NULL;
        }
    }
    return s;
}

void tls_session_free(struct tls_session **sp)
{
    struct tls_session *s = *sp;
    if (s == NULL)
        return;
    wolfSSL_free(s->ssl);
    free(s);
    *sp = NULL;
}

void tls_session_feed(struct tls_session *s, const uint8_t *p, size_t n)
{
    s->in = p;
    s->in_len = n;
}

size_t tls_session_pending_input(const struct tls_session *s, const uint8_t **p)
{
    *p = s->in;
    return s->in_len;
}

int tls_session_has_plaintext(struct tls_session *s)
{
    return wolfSSL_pending(s->ssl) > 0;
}

int tls_handshake(struct tls_session *s)
{
    int rc = wolfSSL_accept(s->ssl);
    if (rc == WOLFSSL_SUCCESS)
        return TLS_OK;
    int err = wolfSSL_get_error(s->ssl, rc);
    if (err == WOLFSSL_ERROR_WANT_READ)
        return TLS_WANT_READ;
    s->last_error = err;
    return TLS_ERROR;
}

int tls_read(struct tls_session *s, void *buf, size_t cap)
{
    int rc = wolfSSL_read(s->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (rc > 0)
        return rc;
    int err = wolfSSL_get_error(s->ssl, rc);
    if (err == WOLFSSL_ERROR_WANT_READ)
        return 0;
    if (err == WOLFSSL_ERROR_ZERO_RETURN)
        return TLS_EOF;
    s->last_error = err;
    return TLS_ERROR;
}

int tls_write(struct tls_session *s, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        int chunk = n > 16384 ? 16384 : (int)n;
        int rc = wolfSSL_write(s->ssl, c, chunk);
        if (rc <= 0) {
            s->last_error = wolfSSL_get_error(s->ssl, rc);
            return TLS_ERROR;
        }
        c += rc;
        n -= (size_t)rc;
    }
    return 0;
}

void tls_close_notify(struct tls_session *s, struct sink *to)
{
    struct sink *out = s->out;
    if (to != NULL)
        s->out = to;
    wolfSSL_shutdown(s->ssl);
    s->out = out;
}

const char *tls_session_version(struct tls_session *s)
{
    return wolfSSL_get_version(s->ssl);
}

const char *tls_session_cipher(struct tls_session *s)
{
    return wolfSSL_get_cipher_name(s->ssl);
}

int tls_session_resumed(struct tls_session *s)
{
    return wolfSSL_session_reused(s->ssl);
}

int tls_session_is_tls13(struct tls_session *s)
{
    return wolfSSL_GetVersion(s->ssl) == WOLFSSL_TLSV1_3;
}

int tls_session_refused_silently(struct tls_session *s)
{
    return s->last_error == MATCH_SUITE_ERROR ||
           (s->last_error == NO_PEER_CERT && !tls_session_is_tls13(s));
}

int tls_session_client_cert_refused(struct tls_session *s)
{
    switch (s->last_error) {
    case NO_PEER_CERT:
    case VERIFY_CERT_ERROR:
    case KEYUSE_SIGNATURE_E:
    case EXTKEYUSE_AUTH_E:
    case ASN_NO_SIGNER_E:
    case ASN_BEFORE_DATE_E:
    case ASN_AFTER_DATE_E:
    case ASN_SIG_CONFIRM_E:
    case ASN_PATHLEN_INV_E:
    case ASN_SELF_SIGNED_E:
    case ASN_VERSION_E:
        return 1;
    default:
        return 0;
    }
}

const char *tls_session_error(struct tls_session *s, char *buf, size_t len)
{
    char tmp[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)s->last_error, tmp, sizeof(tmp));
    snprintf(buf, len, "%s (%d)", tmp, s->last_error);
    return buf;
}
