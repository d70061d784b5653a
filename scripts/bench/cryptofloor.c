/*
 * cryptofloor: what one core does with the wolfCrypt build moat links, with
 * no TLS, no sockets and no proxy around it.  scripts/bench.sh prints these
 * figures beside the handshake and bulk results as the ceiling no TLS server
 * on this wolfSSL can pass.
 *
 * Usage: cryptofloor [SECONDS [ec|rsa]]
 *   SECONDS is the length of each measurement (default 2); rsa adds RSA-2048
 *   signatures (RSA-PSS, as TLS 1.3 signs) and makes them the handshake's.
 *
 * Output: one line of key=value pairs on stdout:
 *   x25519_per_s           ephemeral X25519 key pairs generated + shared
 *                          secrets computed per second (a server's
 *                          key-exchange share of one handshake)
 *   p256_ecdhe_per_s       the same with P-256
 *   ecdsa_p256_sign_per_s  ECDSA P-256 signatures per second
 *   rsa2048_sign_per_s     RSA-2048 PSS signatures per second (rsa only)
 *   full_hs_floor_per_s    X25519 exchange + one signature per second (ECDSA,
 *                          or RSA with rsa): the server's public-key work in
 *                          one full TLS 1.3 handshake
 *   aes128gcm_mb_s         AES-128-GCM encryption of 16 KiB buffers (one
 *                          full TLS record), MB/s
 *
 * Build: cc -O2 -I PREFIX/include cryptofloor.c PREFIX/lib/libwolfssl.a -lm -lpthread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#define RECORD 16384

static double duration = 2.0;
static WC_RNG rng;
static ecc_key cert_key, p256_peer;
static RsaKey rsa_key;
static int use_rsa;
static curve25519_key x25519_peer;
static Aes aes;
static unsigned char plain[RECORD], cipher[RECORD];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "cryptofloor: %s failed: %d\n", what, rc);
        exit(1);
    }
}

/* One server-side X25519 exchange: a fresh key pair, then the secret. */
static void x25519_once(void)
{
    curve25519_key k;
    unsigned char secret[CURVE25519_KEYSIZE];
    word32 len = sizeof(secret);
    check(wc_curve25519_init(&k), "curve25519_init");
    check(wc_curve25519_make_key(&rng, CURVE25519_KEYSIZE, &k), "curve25519_make_key");
    check(wc_curve25519_shared_secret(&k, &x25519_peer, secret, &len), "curve25519_shared_secret");
    wc_curve25519_free(&k);
}

/* The same with P-256 (secp256r1). */
static void p256_once(void)
{
    ecc_key k;
    unsigned char secret[32];
    word32 len = sizeof(secret);
    check(wc_ecc_init(&k), "ecc_init");
    check(wc_ecc_make_key_ex(&rng, 32, &k, ECC_SECP256R1), "ecc_make_key");
    check(wc_ecc_set_rng(&k, &rng), "ecc_set_rng");
    check(wc_ecc_shared_secret(&k, &p256_peer, secret, &len), "ecc_shared_secret");
    wc_ecc_free(&k);
}

/* One CertificateVerify signature over a SHA-256-sized digest. */
static void sign_once(void)
{
    unsigned char digest[32] = {1, 2, 3}, sig[ECC_MAX_SIG_SIZE];
    word32 len = sizeof(sig);
    check(wc_ecc_sign_hash(digest, sizeof(digest), sig, &len, &rng, &cert_key), "ecc_sign_hash");
}

static void rsa_sign_once(void)
{
    unsigned char digest[32] = {1, 2, 3}, sig[256];
    int rc = wc_RsaPSS_Sign(digest, sizeof(digest), sig, sizeof(sig), WC_HASH_TYPE_SHA256,
                            WC_MGF1SHA256, &rsa_key, &rng);
    if (rc <= 0)
        check(rc < 0 ? rc : -1, "RsaPSS_Sign");
}

static void handshake_once(void)
{
    x25519_once();
    if (use_rsa)
        rsa_sign_once();
    else
        sign_once();
}

static void aesgcm_once(void)
{
    unsigned char iv[12] = {0}, tag[16], aad[13] = {23, 3, 3};
    check(wc_AesGcmEncrypt(&aes, cipher, plain, RECORD, iv, sizeof(iv), tag, sizeof(tag), aad,
                           sizeof(aad)),
          "AesGcmEncrypt");
}

/* Runs fn for about `duration` seconds; returns operations per second. */
static double rate(void (*fn)(void))
{
    long n = 0, batch = 1;
    double t0, t;
    fn(); /* warm-up: tables, lazy initialisation */
    t0 = now();
    do {
        for (long i = 0; i < batch; i++)
            fn();
        n += batch;
        t = now();
        if (t - t0 < 0.05 && batch < 1 << 20)
            batch *= 2;
    } while (t - t0 < duration);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    if (argc > 3 || (argc >= 2 && atof(argv[1]) <= 0) ||
        (argc == 3 && strcmp(argv[2], "ec") != 0 && strcmp(argv[2], "rsa") != 0)) {
        fprintf(stderr, "usage: cryptofloor [SECONDS [ec|rsa]]\n");
        return 2;
    }
    if (argc >= 2)
        duration = atof(argv[1]);
    use_rsa = argc == 3 && strcmp(argv[2], "rsa") == 0;
    check(wc_InitRng(&rng), "InitRng");
    check(wc_curve25519_init(&x25519_peer), "curve25519_init");
    check(wc_curve25519_make_key(&rng, CURVE25519_KEYSIZE, &x25519_peer), "curve25519_make_key");
    check(wc_ecc_init(&p256_peer), "ecc_init");
    check(wc_ecc_make_key_ex(&rng, 32, &p256_peer, ECC_SECP256R1), "ecc_make_key");
    check(wc_ecc_init(&cert_key), "ecc_init");
    check(wc_ecc_make_key_ex(&rng, 32, &cert_key, ECC_SECP256R1), "ecc_make_key");
    if (use_rsa) {
        check(wc_InitRsaKey(&rsa_key, NULL), "InitRsaKey");
        check(wc_MakeRsaKey(&rsa_key, 2048, WC_RSA_EXPONENT, &rng), "MakeRsaKey");
        check(wc_RsaSetRNG(&rsa_key, &rng), "RsaSetRNG");
    }
    unsigned char key[16] = {0x42};
    memset(plain, 'x', sizeof(plain));
    check(wc_AesInit(&aes, NULL, INVALID_DEVID), "AesInit");
    check(wc_AesGcmSetKey(&aes, key, sizeof(key)), "AesGcmSetKey");

    double x = rate(x25519_once);
    double p = rate(p256_once);
    double s = rate(sign_once);
    double r = use_rsa ? rate(rsa_sign_once) : 0;
    double h = rate(handshake_once);
    double g = rate(aesgcm_once) * RECORD / 1e6;
    printf("x25519_per_s=%.0f p256_ecdhe_per_s=%.0f ecdsa_p256_sign_per_s=%.0f ", x, p, s);
    if (use_rsa)
        printf("rsa2048_sign_per_s=%.0f ", r);
    printf("full_hs_floor_per_s=%.0f aes128gcm_mb_s=%.0f\n", h, g);
    return 0;
}
