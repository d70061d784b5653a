/*
 * Unit tests for SHA-256 and HMAC-SHA-256 in the wolfSSL moat links: the
 * bundled build swaps in its own transform on CPUs with the SHA extensions
 * (scripts/build-wolfssl.sh), and every TLS key and Finished message depends
 * on it.  FIPS 180-4 example messages (one block, two blocks, a million
 * bytes fed in uneven pieces) and RFC 4231's HMAC cases.
 */
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "check.h"

static void hex(const unsigned char *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static const char *sha256_hex(const void *data, size_t len, size_t piece)
{
    static char out[65];
    unsigned char d[32];
    wc_Sha256 s;
    wc_InitSha256(&s);
    const unsigned char *p = data;
    while (len > 0) {
        size_t n = len < piece ? len : piece;
        wc_Sha256Update(&s, p, (word32)n);
        p += n;
        len -= n;
    }
    wc_Sha256Final(&s, d);
    wc_Sha256Free(&s);
    hex(d, 32, out);
    return out;
}

static void test_fips180_examples(void)
{
    static const char two_blocks[] =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const char long_msg[] =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    for (size_t piece = 1; piece <= 200; piece += 199) {
        CHECK_STR(sha256_hex("", 0, piece),
                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        CHECK_STR(sha256_hex("abc", 3, piece),
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        CHECK_STR(sha256_hex(two_blocks, strlen(two_blocks), piece),
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        CHECK_STR(sha256_hex(long_msg, strlen(long_msg), piece),
                  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    }
    static unsigned char million[1000000];
    memset(million, 'a', sizeof(million));
    /* Whole blocks at once (the multi-block transform) and uneven pieces. */
    CHECK_STR(sha256_hex(million, sizeof(million), sizeof(million)),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    CHECK_STR(sha256_hex(million, sizeof(million), 4099),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static const char *hmac_hex(const void *key, size_t klen, const void *data, size_t dlen)
{
    static char out[65];
    unsigned char d[32];
    Hmac h;
    wc_HmacInit(&h, NULL, INVALID_DEVID);
    CHECK_INT(wc_HmacSetKey(&h, WC_SHA256, key, (word32)klen), 0);
    wc_HmacUpdate(&h, data, (word32)dlen);
    wc_HmacFinal(&h, d);
    wc_HmacFree(&h);
    hex(d, 32, out);
    return out;
}

static void test_rfc4231_hmac(void)
{
    unsigned char k1[20], k3[20], d3[50], k6[131];
    memset(k1, 0x0b, sizeof(k1));
    CHECK_STR(hmac_hex(k1, sizeof(k1), "Hi There", 8),
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    CHECK_STR(hmac_hex("Jefe", 4, "what do ya want for nothing?", 28),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(k3, 0xaa, sizeof(k3));
    memset(d3, 0xdd, sizeof(d3));
    CHECK_STR(hmac_hex(k3, sizeof(k3), d3, sizeof(d3)),
              "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    memset(k6, 0xaa, sizeof(k6));
    static const char m6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK_STR(hmac_hex(k6, sizeof(k6), m6, strlen(m6)),
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

int main(void)
{
    test_fips180_examples();
    test_rfc4231_hmac();
    return check_result();
}
