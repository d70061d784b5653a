/*
 * Unit tests for the X25519 key pairs of the wolfSSL moat links.  The bundled
 * build computes public keys with a fixed-base multiplication instead of the
 * Montgomery ladder (scripts/build-wolfssl.sh); a wrong public key would only
 * show as handshakes that fail, or worse, agree on a secret nobody else can
 * compute.  Checked against RFC 7748's vectors and, for random scalars,
 * against the ladder on the base point (wc_curve25519_generic).
 */
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/random.h>

#include "check.h"

static void from_hex(const char *hex, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = hex[2 * i + k];
            v = v * 16 + (unsigned)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
        }
        out[i] = (unsigned char)v;
    }
}

static void clamp(unsigned char *k)
{
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
}

/* RFC 7748 section 6.1: Alice's and Bob's key pairs. */
static void test_rfc7748_public_keys(void)
{
    static const char *const pairs[][2] = {
        {"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
         "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"},
        {"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
         "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        unsigned char priv[32], want[32], got[32];
        from_hex(pairs[i][0], priv, 32);
        from_hex(pairs[i][1], want, 32);
        clamp(priv);
        CHECK_INT(wc_curve25519_make_pub(32, got, 32, priv), 0);
        CHECK(memcmp(got, want, 32) == 0);
    }
}

/* The fixed-base public key equals the ladder's for random scalars,
 * including the extremes of the clamped range. */
static void test_matches_ladder(void)
{
    static const unsigned char base[32] = {9};
    WC_RNG rng;
    CHECK_INT(wc_InitRng(&rng), 0);
    int mismatches = 0;
    for (int i = 0; i < 2000; i++) {
        unsigned char priv[32], fixed[32], ladder[32];
        if (i == 0)
            memset(priv, 0, sizeof(priv));
        else if (i == 1)
            memset(priv, 0xff, sizeof(priv));
        else
            CHECK_INT(wc_RNG_GenerateBlock(&rng, priv, sizeof(priv)), 0);
        clamp(priv);
        CHECK_INT(wc_curve25519_make_pub(32, fixed, 32, priv), 0);
        CHECK_INT(wc_curve25519_generic(32, ladder, 32, priv, 32, base), 0);
        mismatches += memcmp(fixed, ladder, 32) != 0;
    }
    CHECK_INT(mismatches, 0);
    wc_FreeRng(&rng);
}

/* Two key pairs made the way TLS makes them agree on one shared secret. */
static void test_key_agreement(void)
{
    WC_RNG rng;
    curve25519_key a, b;
    CHECK_INT(wc_InitRng(&rng), 0);
    for (int i = 0; i < 50; i++) {
        unsigned char sa[32], sb[32];
        word32 la = sizeof(sa), lb = sizeof(sb);
        CHECK_INT(wc_curve25519_init(&a), 0);
        CHECK_INT(wc_curve25519_init(&b), 0);
        CHECK_INT(wc_curve25519_make_key(&rng, 32, &a), 0);
        CHECK_INT(wc_curve25519_make_key(&rng, 32, &b), 0);
        CHECK_INT(wc_curve25519_shared_secret(&a, &b, sa, &la), 0);
        CHECK_INT(wc_curve25519_shared_secret(&b, &a, sb, &lb), 0);
        CHECK_INT(la, 32);
        CHECK(la == lb && memcmp(sa, sb, la) == 0);
        wc_curve25519_free(&a);
        wc_curve25519_free(&b);
    }
    wc_FreeRng(&rng);
}

int main(void)
{
    test_rfc7748_public_keys();
    test_matches_ladder();
    test_key_agreement();
    return check_result();
}
