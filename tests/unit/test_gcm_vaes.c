/*
 * Unit tests for moat's 256-bit AES-GCM (proxy/gcm_vaes.c), which the
 * bundled wolfSSL uses for every TLS record on CPUs with VAES: the GCM
 * specification's test cases, then every length from 0 to 300 bytes and
 * record-sized ones, with AES-128, -192 and -256 and TLS-sized and odd
 * additional data, each compared with wolfSSL's own AVX2 code; decryption
 * round trips, in place too, and refuses altered tags, data and AAD.
 * Exits 77 (skipped) where the CPU lacks the instructions.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "check.h"
#include "gcm_vaes.h"

/* wolfSSL's AVX2 AES-GCM, the reference (wolfcrypt/src/aes_gcm_asm.S). */
void AES_GCM_encrypt_avx2(const unsigned char *in, unsigned char *out, const unsigned char *addt,
                          const unsigned char *ivec, unsigned char *tag, word32 nbytes,
                          word32 abytes, word32 ibytes, word32 tbytes, const unsigned char *key,
                          int nr);

static size_t unhex(const char *s, unsigned char *out)
{
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        sscanf(s + 2 * i, "%2x", &b);
        out[i] = (unsigned char)b;
    }
    return n;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static void fill_random(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        p[i] = (unsigned char)(rng_state >> 24);
    }
}

struct spec_case {
    const char *key, *iv, *plain, *aad, *cipher, *tag;
};

/* "The Galois/Counter Mode of Operation (GCM)", McGrew and Viega, appendix B:
 * test cases 2, 3, 4 and 16 (96-bit IVs). */
static const struct spec_case spec_cases[] = {
    {"00000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "", "0388dace60b6a392f328c2b971b2fe78",
     "ab6e47d42cec13bdf53a67b21257bddf"},
    {"feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {"feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void test_spec_cases(void)
{
    for (size_t c = 0; c < sizeof(spec_cases) / sizeof(spec_cases[0]); c++) {
        const struct spec_case *sc = &spec_cases[c];
        unsigned char key[32], iv[12], plain[64], aad[20], want[64], want_tag[16];
        unsigned char got[64], tag[16], back[64];
        size_t klen = unhex(sc->key, key), n = unhex(sc->plain, plain);
        size_t alen = unhex(sc->aad, aad);
        unhex(sc->iv, iv);
        unhex(sc->cipher, want);
        unhex(sc->tag, want_tag);

        Aes aes;
        CHECK_INT(wc_AesInit(&aes, NULL, INVALID_DEVID), 0);
        CHECK_INT(wc_AesGcmSetKey(&aes, key, (word32)klen), 0);
        moat_gcm_vaes_encrypt(plain, got, aad, iv, tag, (unsigned)n, (unsigned)alen, 12, 16,
                              (const unsigned char *)aes.key, (int)aes.rounds);
        CHECK(memcmp(got, want, n) == 0);
        CHECK(memcmp(tag, want_tag, 16) == 0);

        int ok = -1;
        moat_gcm_vaes_decrypt(want, back, aad, iv, want_tag, (unsigned)n, (unsigned)alen, 12, 16,
                              (const unsigned char *)aes.key, (int)aes.rounds, &ok);
        CHECK_INT(ok, 1);
        CHECK(memcmp(back, plain, n) == 0);

        /* Through wolfSSL's API (which keeps messages this short for its
         * own code): the same answers. */
        memset(got, 0, sizeof(got));
        CHECK_INT(wc_AesGcmEncrypt(&aes, got, plain, (word32)n, iv, 12, tag, 16, aad,
                                   (word32)alen),
                  0);
        CHECK(memcmp(got, want, n) == 0);
        CHECK(memcmp(tag, want_tag, 16) == 0);
        CHECK_INT(wc_AesGcmDecrypt(&aes, back, want, (word32)n, iv, 12, want_tag, 16, aad,
                                   (word32)alen),
                  0);
        CHECK(memcmp(back, plain, n) == 0);
        want_tag[0] ^= 1;
        CHECK_INT(wc_AesGcmDecrypt(&aes, back, want, (word32)n, iv, 12, want_tag, 16, aad,
                                   (word32)alen),
                  AES_GCM_AUTH_E);
        wc_AesFree(&aes);
    }
}

/* One message both ways against the reference; returns 0 when all agree. */
static int cross_check(Aes *aes, size_t n, size_t alen, unsigned int tbytes)
{
    static unsigned char plain[70000], ref[70000], got[70000], back[70000];
    unsigned char aad[64], iv[12], ref_tag[16], tag[16];
    const unsigned char *key = (const unsigned char *)aes->key;
    int nr = (int)aes->rounds, bad = 0;
    fill_random(plain, n);
    fill_random(aad, alen);
    fill_random(iv, sizeof(iv));

    AES_GCM_encrypt_avx2(plain, ref, aad, iv, ref_tag, (word32)n, (word32)alen, 12, tbytes, key,
                         nr);
    moat_gcm_vaes_encrypt(plain, got, aad, iv, tag, (unsigned)n, (unsigned)alen, 12, tbytes, key,
                          nr);
    bad |= memcmp(got, ref, n) != 0 || memcmp(tag, ref_tag, tbytes) != 0;

    int ok = -1;
    moat_gcm_vaes_decrypt(ref, back, aad, iv, ref_tag, (unsigned)n, (unsigned)alen, 12, tbytes,
                          key, nr, &ok);
    bad |= ok != 1 || memcmp(back, plain, n) != 0;

    /* In place, as TLS often works. */
    memcpy(back, plain, n);
    moat_gcm_vaes_encrypt(back, back, aad, iv, tag, (unsigned)n, (unsigned)alen, 12, tbytes, key,
                          nr);
    bad |= memcmp(back, ref, n) != 0 || memcmp(tag, ref_tag, tbytes) != 0;
    moat_gcm_vaes_decrypt(back, back, aad, iv, ref_tag, (unsigned)n, (unsigned)alen, 12, tbytes,
                          key, nr, &ok);
    bad |= ok != 1 || memcmp(back, plain, n) != 0;

    /* Any change to tag, data or AAD is refused. */
    ref_tag[tbytes - 1] ^= 0x80;
    moat_gcm_vaes_decrypt(ref, back, aad, iv, ref_tag, (unsigned)n, (unsigned)alen, 12, tbytes,
                          key, nr, &ok);
    bad |= ok != 0;
    ref_tag[tbytes - 1] ^= 0x80;
    if (n > 0) {
        ref[n / 2] ^= 1;
        moat_gcm_vaes_decrypt(ref, back, aad, iv, ref_tag, (unsigned)n, (unsigned)alen, 12,
                              tbytes, key, nr, &ok);
        bad |= ok != 0;
        ref[n / 2] ^= 1;
    }
    if (alen > 0) {
        aad[0] ^= 4;
        moat_gcm_vaes_decrypt(ref, back, aad, iv, ref_tag, (unsigned)n, (unsigned)alen, 12,
                              tbytes, key, nr, &ok);
        bad |= ok != 0;
    }
    if (bad)
        fprintf(stderr, "mismatch: %zu bytes, %zu of AAD, AES-%d, %u-byte tag\n", n, alen,
                (nr - 6) * 32, tbytes);
    return bad;
}

static void test_against_wolfssl(void)
{
    static const size_t aad_lengths[] = {0, 5, 13, 16, 20, 33};
    static const size_t large[] = {1000, 16383, 16384, 16384 + 17, 65536 + 113};
    for (unsigned int klen = 16; klen <= 32; klen += 8) {
        unsigned char key[32];
        fill_random(key, klen);
        Aes aes;
        CHECK_INT(wc_AesInit(&aes, NULL, INVALID_DEVID), 0);
        CHECK_INT(wc_AesGcmSetKey(&aes, key, klen), 0);
        int failures = 0;
        for (size_t n = 0; n <= 300; n++)
            failures += cross_check(&aes, n, aad_lengths[n % 6], n % 5 == 0 ? 12 : 16);
        for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++)
            for (size_t a = 0; a < 6; a++)
                failures += cross_check(&aes, large[i], aad_lengths[a], 16);
        CHECK_INT(failures, 0);
        wc_AesFree(&aes);
    }
}

/* A 16 KiB TLS record through wolfSSL's API, which hands it to moat's code:
 * the reference's ciphertext and tag, and a refused tag. */
static void test_record_through_wolfssl_api(void)
{
    static unsigned char plain[16384], ref[16384], got[16384];
    unsigned char key[16], iv[12], aad[13], ref_tag[16], tag[16];
    fill_random(key, sizeof(key));
    fill_random(iv, sizeof(iv));
    fill_random(aad, sizeof(aad));
    fill_random(plain, sizeof(plain));
    Aes aes;
    CHECK_INT(wc_AesInit(&aes, NULL, INVALID_DEVID), 0);
    CHECK_INT(wc_AesGcmSetKey(&aes, key, sizeof(key)), 0);
    AES_GCM_encrypt_avx2(plain, ref, aad, iv, ref_tag, sizeof(plain), sizeof(aad), 12, 16,
                         (const unsigned char *)aes.key, (int)aes.rounds);
    CHECK_INT(wc_AesGcmEncrypt(&aes, got, plain, sizeof(plain), iv, 12, tag, 16, aad,
                               sizeof(aad)),
              0);
    CHECK(memcmp(got, ref, sizeof(ref)) == 0);
    CHECK(memcmp(tag, ref_tag, 16) == 0);
    CHECK_INT(wc_AesGcmDecrypt(&aes, got, ref, sizeof(ref), iv, 12, ref_tag, 16, aad,
                               sizeof(aad)),
              0);
    CHECK(memcmp(got, plain, sizeof(plain)) == 0);
    ref[100] ^= 1;
    CHECK_INT(wc_AesGcmDecrypt(&aes, got, ref, sizeof(ref), iv, 12, ref_tag, 16, aad,
                               sizeof(aad)),
              AES_GCM_AUTH_E);
    wc_AesFree(&aes);
}

int main(void)
{
    if (!moat_gcm_vaes_usable()) {
        printf("skipped: this CPU has no VAES/VPCLMULQDQ\n");
        return 77;
    }
    test_spec_cases();
    test_against_wolfssl();
    test_record_through_wolfssl_api();
    return check_result();
}
