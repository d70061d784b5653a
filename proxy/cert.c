/*
 * cert: reads and inspects certificate files, and makes the self-signed
 * default.  wolfCrypt ASN.1 and key generation only; TLS objects live in tls.
 */
#include "cert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

static int read_file(const char *path, unsigned char **out, size_t *len, char *err,
                     size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO must not hang a check or a reload; the
     * regular-file test below refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > CERT_MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: not a non-empty regular file of at most %u bytes", path,
                 CERT_MAX_FILE_BYTES);
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(n + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return -1;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, r < 0 ? strerror(errno) : "short file");
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static time_t cert_date(const byte *raw, int rawlen)
{
    const byte *date;
    byte format;
    int length;
    struct tm tm;
    if (raw == NULL || wc_GetDateInfo(raw, rawlen, &date, &format, &length) != 0 ||
        wc_GetDateAsCalendarTime(date, length, format, &tm) != 0)
        return 0;
    return timegm(&tm);
}

static void add_name(struct cert_pair *pair, const char *name, size_t len)
{
    if (pair->nnames >= CERT_MAX_NAMES || len == 0 || len > 253)
        return;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        copy[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    copy[len] = '\0';
    pair->names[pair->nnames++] = copy;
}

/* Names and validity of the leaf (the first certificate of the chain). */
static int inspect_leaf(struct cert_pair *pair, char *err, size_t errlen)
{
    const unsigned char *der = pair->chain;
    int derlen = (int)pair->chain_len;
    unsigned char *tmp = NULL;
    if (pair->chain_enc == CERT_PEM) {
        tmp = malloc(pair->chain_len);
        if (tmp == NULL) {
            snprintf(err, errlen, "%s: out of memory", pair->source);
            return -1;
        }
        derlen = wc_CertPemToDer(pair->chain, (int)pair->chain_len, tmp, (int)pair->chain_len,
                                 CERT_TYPE);
        if (derlen <= 0) {
            snprintf(err, errlen, "%s: no PEM certificate found", pair->source);
            free(tmp);
            return -1;
        }
        der = tmp;
    }
    struct DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)derlen, NULL);
    int rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot parse the certificate (wolfSSL error %d)", pair->source,
                 rc);
        wc_FreeDecodedCert(&dc);
        free(tmp);
        return -1;
    }
    for (DNS_entry *e = dc.altNames; e != NULL; e = e->next)
        if (e->type == ASN_DNS_TYPE && e->name != NULL)
            add_name(pair, e->name, (size_t)e->len);
    /* wolfSSL lists subjectAltNames last first: restore the certificate's
     * order, so that names[0] is the name it puts first. */
    for (size_t i = 0; i < pair->nnames / 2; i++) {
        char *t = pair->names[i];
        pair->names[i] = pair->names[pair->nnames - 1 - i];
        pair->names[pair->nnames - 1 - i] = t;
    }
    if (pair->nnames == 0 && dc.subjectCN != NULL)
        add_name(pair, dc.subjectCN, (size_t)dc.subjectCNLen);
    pair->key_type = CERT_KEY_OTHER;
    if (dc.keyOID == RSAk)
        pair->key_type = CERT_KEY_RSA;
    else if (dc.keyOID == ECDSAk && dc.pkCurveOID == ECC_SECP256R1_OID)
        pair->key_type = CERT_KEY_P256;
    else if (dc.keyOID == ECDSAk && dc.pkCurveOID == ECC_SECP384R1_OID)
        pair->key_type = CERT_KEY_P384;
    else if (dc.keyOID == ECDSAk && dc.pkCurveOID == ECC_SECP521R1_OID)
        pair->key_type = CERT_KEY_P521;
    else if (dc.keyOID == ED25519k)
        pair->key_type = CERT_KEY_ED25519;
    else if (dc.keyOID == ED448k)
        pair->key_type = CERT_KEY_ED448;
    pair->not_before = cert_date(dc.beforeDate, dc.beforeDateLen);
    pair->not_after = cert_date(dc.afterDate, dc.afterDateLen);
    wc_FreeDecodedCert(&dc);
    free(tmp);
    return 0;
}

/* Subject and issuer name hashes of one DER certificate. */
static int name_hashes(const unsigned char *der, int len, byte subject[KEYID_SIZE],
                       byte issuer[KEYID_SIZE])
{
    struct DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)len, NULL);
    int rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
    if (rc == 0) {
        memcpy(subject, dc.subjectHash, KEYID_SIZE);
        memcpy(issuer, dc.issuerHash, KEYID_SIZE);
    }
    wc_FreeDecodedCert(&dc);
    return rc;
}

/* Leaf first, then each certificate the issuer of the one before it: what
 * clients expect, and what a concatenation in the wrong order breaks. */
static int check_chain_order(const struct cert_pair *pair, char *err, size_t errlen)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    const char *p = (const char *)pair->chain;
    byte prev_issuer[KEYID_SIZE], subject[KEYID_SIZE], issuer[KEYID_SIZE];
    unsigned char *der = malloc(pair->chain_len);
    int index = 0, rc = 0;
    if (der == NULL) {
        snprintf(err, errlen, "%s: out of memory", pair->source);
        return -1;
    }
    while ((p = strstr(p, begin)) != NULL) {
        size_t left = pair->chain_len - (size_t)(p - (const char *)pair->chain);
        int len = wc_CertPemToDer((const unsigned char *)p, (int)left, der,
                                  (int)pair->chain_len, CERT_TYPE);
        if (len <= 0 || name_hashes(der, len, subject, issuer) != 0) {
            snprintf(err, errlen, "%s: certificate %d of the chain does not parse", pair->source,
                     index + 1);
            rc = -1;
            break;
        }
        if (index > 0 && memcmp(prev_issuer, subject, KEYID_SIZE) != 0) {
            snprintf(err, errlen,
                     "%s: chain out of order: certificate %d did not issue certificate %d "
                     "(the leaf comes first, then its issuer, and so on)",
                     pair->source, index + 1, index);
            rc = -1;
            break;
        }
        memcpy(prev_issuer, issuer, KEYID_SIZE);
        index++;
        p += sizeof(begin) - 1;
    }
    free(der);
    return rc;
}

int cert_pair_check(const struct cert_pair *pair, time_t now, char *err, size_t errlen)
{
    if (pair->nnames == 0) {
        snprintf(err, errlen, "%s: the certificate has no DNS name (subjectAltName or CN)",
                 pair->source);
        return -1;
    }
    if (pair->not_after != 0 && pair->not_after < now) {
        snprintf(err, errlen, "%s: the certificate expired %lld day(s) ago", pair->source,
                 (long long)((now - pair->not_after) / 86400));
        return -1;
    }
    if (pair->not_before != 0 && pair->not_before > now + 300) {
        snprintf(err, errlen, "%s: the certificate is not valid before %lld (in %lld s)",
                 pair->source, (long long)pair->not_before, (long long)(pair->not_before - now));
        return -1;
    }
    return 0;
}

int cert_pair_load(struct cert_pair *pair, const char *cert_path, const char *key_path,
                   char *err, size_t errlen)
{
    memset(pair, 0, sizeof(*pair));
    snprintf(pair->source, sizeof(pair->source), "%s", cert_path);
    snprintf(pair->key_source, sizeof(pair->key_source), "%s", key_path);
    if (read_file(cert_path, &pair->chain, &pair->chain_len, err, errlen) != 0)
        return -1;
    int rc = -1;
    if (read_file(key_path, &pair->key, &pair->key_len, err, errlen) != 0)
        goto bad_key;
    if (strstr((char *)pair->chain, "-----BEGIN CERTIFICATE-----") == NULL) {
        snprintf(err, errlen, "%s: not a PEM certificate chain", cert_path);
        goto fail;
    }
    if (strstr((char *)pair->key, "-----BEGIN") == NULL ||
        strstr((char *)pair->key, "PRIVATE KEY-----") == NULL) {
        snprintf(err, errlen, "%s: not a PEM private key", key_path);
        goto bad_key;
    }
    if (strstr((char *)pair->key, "ENCRYPTED") != NULL) {
        snprintf(err, errlen, "%s: encrypted private keys are not supported", key_path);
        goto bad_key;
    }
    pair->chain_enc = CERT_PEM;
    pair->key_enc = CERT_PEM;
    if (inspect_leaf(pair, err, errlen) != 0 || check_chain_order(pair, err, errlen) != 0)
        goto fail;
    return 0;
bad_key:
    rc = CERT_BAD_KEY_FILE;
fail:
    cert_pair_free(pair);
    return rc;
}

int cert_cas_load(struct cert_cas *cas, const char *path, int required, char *err,
                  size_t errlen)
{
    memset(cas, 0, sizeof(*cas));
    snprintf(cas->source, sizeof(cas->source), "%s", path);
    if (read_file(path, &cas->pem, &cas->len, err, errlen) != 0)
        return -1;
    if (strstr((char *)cas->pem, "-----BEGIN CERTIFICATE-----") == NULL) {
        snprintf(err, errlen, "%s: no PEM certificate in the file", path);
        cert_cas_free(cas);
        return -1;
    }
    wc_Sha256 h;
    const byte policy = required ? 'r' : 'o';
    int rc = wc_InitSha256(&h);
    if (rc == 0)
        rc = wc_Sha256Update(&h, &policy, 1);
    if (rc == 0)
        rc = wc_Sha256Update(&h, cas->pem, (word32)cas->len);
    if (rc == 0)
        rc = wc_Sha256Final(&h, cas->binding);
    wc_Sha256Free(&h);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot hash the file", path);
        cert_cas_free(cas);
        return -1;
    }
    return 0;
}

void cert_cas_free(struct cert_cas *cas)
{
    free(cas->pem);
    memset(cas, 0, sizeof(*cas));
}

/* SubjectAltName: dNSName host, iPAddress 127.0.0.1. */
static int build_alt_names(const char *host, byte *out, size_t cap)
{
    size_t hl = strlen(host);
    size_t inner = 2 + hl + 2 + 4;
    if (hl > 100 || inner + 2 > cap)
        return -1;
    size_t i = 0;
    out[i++] = 0x30;
    out[i++] = (byte)inner;
    out[i++] = 0x82;
    out[i++] = (byte)hl;
    memcpy(out + i, host, hl);
    i += hl;
    out[i++] = 0x87;
    out[i++] = 4;
    out[i++] = 127;
    out[i++] = 0;
    out[i++] = 0;
    out[i++] = 1;
    return (int)i;
}

/* The self-signed pair made for a host, kept for the process's life: a
 * reload serves the same one, so clients told to trust or pin it keep
 * working and their sessions resume.  Used by the main thread only. */
static struct {
    char host[256];
    byte der[4096];
    int der_len;
    byte key[512];
    int key_len;
} self_signed;

static int make_self_signed(const char *host, char *err, size_t errlen)
{
    WC_RNG rng;
    ecc_key key;
    Cert c;
    int rc, len;

    self_signed.key_len = 0; /* nothing cached until the new pair is whole */
    if (wc_InitRng(&rng) != 0) {
        snprintf(err, errlen, "self-signed certificate: no random number generator");
        return -1;
    }
    wc_ecc_init(&key);
    rc = wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1);
    if (rc == 0)
        rc = wc_InitCert(&c);
    if (rc == 0) {
        snprintf(c.subject.commonName, sizeof(c.subject.commonName), "%s", host);
        snprintf(c.subject.org, sizeof(c.subject.org), "moat self-signed");
        c.daysValid = 365;
        c.sigType = CTC_SHA256wECDSA;
        c.isCA = 0;
        len = build_alt_names(host, c.altNames, sizeof(c.altNames));
        rc = len < 0 ? -1 : 0;
        c.altNamesSz = len;
    }
    if (rc == 0)
        rc = wc_MakeCert(&c, self_signed.der, sizeof(self_signed.der), NULL, &key, &rng);
    if (rc >= 0)
        rc = wc_SignCert(c.bodySz, c.sigType, self_signed.der, sizeof(self_signed.der), NULL,
                         &key, &rng);
    len = rc;
    if (rc >= 0)
        rc = wc_EccKeyToDer(&key, self_signed.key, sizeof(self_signed.key));
    wc_ecc_free(&key);
    wc_FreeRng(&rng);
    if (rc < 0) {
        snprintf(err, errlen, "self-signed certificate: wolfCrypt error %d", rc);
        return -1;
    }
    self_signed.der_len = len;
    self_signed.key_len = rc;
    snprintf(self_signed.host, sizeof(self_signed.host), "%s", host);
    return 0;
}

int cert_pair_generate(struct cert_pair *pair, const char *host, char *err, size_t errlen)
{
    memset(pair, 0, sizeof(*pair));
    snprintf(pair->source, sizeof(pair->source), "<self-signed %s>", host);
    if ((self_signed.key_len == 0 || strcmp(self_signed.host, host) != 0) &&
        make_self_signed(host, err, errlen) != 0)
        return -1;
    pair->chain = malloc((size_t)self_signed.der_len);
    pair->key = malloc((size_t)self_signed.key_len);
    if (pair->chain == NULL || pair->key == NULL) {
        cert_pair_free(pair);
        snprintf(err, errlen, "self-signed certificate: out of memory");
        return -1;
    }
    memcpy(pair->chain, self_signed.der, (size_t)self_signed.der_len);
    pair->chain_len = (size_t)self_signed.der_len;
    pair->chain_enc = CERT_DER;
    memcpy(pair->key, self_signed.key, (size_t)self_signed.key_len);
    pair->key_len = (size_t)self_signed.key_len;
    pair->key_enc = CERT_DER;
    if (inspect_leaf(pair, err, errlen) != 0) {
        cert_pair_free(pair);
        return -1;
    }
    return 0;
}

void cert_pair_free(struct cert_pair *pair)
{
    if (pair->key != NULL) {
        /* Key material does not outlive its use in freed heap memory. */
        memset(pair->key, 0, pair->key_len);
        free(pair->key);
    }
    free(pair->chain);
    for (size_t i = 0; i < pair->nnames; i++)
        free(pair->names[i]);
    memset(pair, 0, sizeof(*pair));
}

int cert_name_matches(const char *name, struct span host)
{
    size_t n = strlen(name);
    if (n >= 2 && name[0] == '*' && name[1] == '.') {
        /* "*.example.com" covers exactly one more label. */
        const char *dot = memchr(host.p, '.', host.len);
        if (dot == NULL || dot == host.p)
            return 0;
        size_t rest = host.len - (size_t)(dot - host.p);
        return rest == n - 1 && memcmp(dot, name + 1, rest) == 0;
    }
    return host.len == n && memcmp(host.p, name, n) == 0;
}

/* 1 if one of certs[0..k) that any_key or the kind of certs[k]'s key
 * admits holds name. */
static int name_in_earlier(const struct cert_pair *certs, size_t k, const char *name,
                           int any_key)
{
    for (size_t j = 0; j < k; j++) {
        if (!any_key && certs[j].key_type != certs[k].key_type &&
            certs[j].key_type != CERT_KEY_OTHER)
            continue;
        for (size_t m = 0; m < certs[j].nnames; m++)
            if (strcmp(certs[j].names[m], name) == 0)
                return 1;
    }
    return 0;
}

int cert_name_held_earlier(const struct cert_pair *certs, size_t k, const char *name)
{
    return name_in_earlier(certs, k, name, 1);
}

int cert_name_served_earlier(const struct cert_pair *certs, size_t k, const char *name)
{
    return name_in_earlier(certs, k, name, 0);
}

const char *cert_key_name(enum cert_key key)
{
    switch (key) {
    case CERT_KEY_RSA: return "rsa";
    case CERT_KEY_P256: return "ecdsa-p256";
    case CERT_KEY_P384: return "ecdsa-p384";
    case CERT_KEY_P521: return "ecdsa-p521";
    case CERT_KEY_ED25519: return "ed25519";
    case CERT_KEY_ED448: return "ed448";
    default: return "other";
    }
}
