/*
 * gcm_vaes: AES-GCM (NIST SP 800-38D) eight blocks at a time in four 256-bit
 * registers.  perf put wolfSSL's AVX2 AES-GCM, which works on one 128-bit
 * block per instruction, at a quarter of moat's CPU when it forwards large
 * responses; this code seals a 16 KiB record 1.6 times as fast.  Its fixed
 * cost per message is higher, so wolfSSL keeps short ones.
 *
 * GHASH works on byte-reversed blocks: loaded that way, a block is a 128-bit
 * integer whose bit 127 is the coefficient of x^0, and a carry-less multiply
 * of two such integers is their polynomial product times x, bit-reversed
 * over 256 bits.  Keeping H multiplied by x^-1 cancels that x, so that
 * partial products of several blocks can be summed and reduced once.
 */
#include "gcm_vaes.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define GCM_TARGET __attribute__((target("avx2,aes,pclmul,vaes,vpclmulqdq")))
#define INLINE GCM_TARGET static inline __attribute__((always_inline))

/* CPUID leaf 1: OSXSAVE, AVX; leaf 7: AVX2, VAES, VPCLMULQDQ; and the kernel
 * must save the YMM registers (XCR0 bits 1 and 2). */
static int cpu_has_vaes(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
        return 0;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6) != 6)
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b & bit_AVX2) && (c & (1u << 9)) && (c & (1u << 10));
}

/* CPUID traps to the hypervisor in a VM: ask once.  0 unknown, 1 no, 2 yes;
 * racing threads store the same answer. */
static atomic_int vaes_state;

int moat_gcm_vaes_usable(void)
{
    int state = atomic_load_explicit(&vaes_state, memory_order_relaxed);
    if (state == 0) {
        state = cpu_has_vaes() ? 2 : 1;
        atomic_store_explicit(&vaes_state, state, memory_order_relaxed);
    }
    return state == 2;
}

/* Everything derived from the key and IV for one message.  hpow holds
 * (H^8, H^7), (H^6, H^5), (H^4, H^3), (H^2, H^1), each times x^-1, low lane
 * first; it is filled only when the message has eight blocks to hash. */
struct gcm {
    const unsigned char *key;
    int nr;
    __m128i h;
    __m256i hpow[4];
    __m256i hmid[4]; /* each power's two halves xored, for Karatsuba */
    __m128i ghash;
    __m128i counter; /* the next counter block, byte-reversed */
    __m128i tag_mask; /* the keystream of the first counter block */
};

INLINE __m128i byte_reverse(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

INLINE __m256i byte_reverse_lanes(__m256i x)
{
    const __m128i rev = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm256_shuffle_epi8(x, _mm256_broadcastsi128_si256(rev));
}

INLINE __m128i round_key(const struct gcm *g, int r)
{
    return _mm_loadu_si128((const __m128i *)(g->key + 16 * r));
}

INLINE __m256i aes_2_blocks(const struct gcm *g, __m256i b)
{
    b = _mm256_xor_si256(b, _mm256_broadcastsi128_si256(round_key(g, 0)));
    for (int r = 1; r < g->nr; r++)
        b = _mm256_aesenc_epi128(b, _mm256_broadcastsi128_si256(round_key(g, r)));
    return _mm256_aesenclast_epi128(b, _mm256_broadcastsi128_si256(round_key(g, g->nr)));
}

/* Eight blocks: four registers of two, interleaved so that the AES units
 * always have independent work. */
INLINE void aes_8_blocks(const struct gcm *g, __m256i *b0, __m256i *b1, __m256i *b2, __m256i *b3)
{
    __m256i k = _mm256_broadcastsi128_si256(round_key(g, 0));
    __m256i x0 = _mm256_xor_si256(*b0, k), x1 = _mm256_xor_si256(*b1, k);
    __m256i x2 = _mm256_xor_si256(*b2, k), x3 = _mm256_xor_si256(*b3, k);
    for (int r = 1; r < g->nr; r++) {
        k = _mm256_broadcastsi128_si256(round_key(g, r));
        x0 = _mm256_aesenc_epi128(x0, k);
        x1 = _mm256_aesenc_epi128(x1, k);
        x2 = _mm256_aesenc_epi128(x2, k);
        x3 = _mm256_aesenc_epi128(x3, k);
    }
    k = _mm256_broadcastsi128_si256(round_key(g, g->nr));
    *b0 = _mm256_aesenclast_epi128(x0, k);
    *b1 = _mm256_aesenclast_epi128(x1, k);
    *b2 = _mm256_aesenclast_epi128(x2, k);
    *b3 = _mm256_aesenclast_epi128(x3, k);
}

/* Reduces the 256-bit product hi:mi:lo (mi overlapping both halves by 64
 * bits) modulo x^128 + x^7 + x^2 + x + 1.  In the reversed order the high
 * powers sit in the low bits; each step folds 64 of them back, using
 * x^128 = 1 + x(1 + x + x^6), whose second term, reversed, is 0xc2 << 56. */
INLINE __m128i gf_reduce(__m128i lo, __m128i mi, __m128i hi)
{
    const __m128i fold = _mm_set_epi64x(0, (long long)0xc200000000000000ULL);
    mi = _mm_xor_si128(mi, _mm_shuffle_epi32(lo, 0x4e));
    mi = _mm_xor_si128(mi, _mm_clmulepi64_si128(lo, fold, 0x00));
    hi = _mm_xor_si128(hi, _mm_shuffle_epi32(mi, 0x4e));
    return _mm_xor_si128(hi, _mm_clmulepi64_si128(mi, fold, 0x00));
}

/* a * b * x: with b = H x^-1 stored, the GHASH product a * H. */
INLINE __m128i gf_mul(__m128i a, __m128i b)
{
    __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
    __m128i mi = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01), _mm_clmulepi64_si128(a, b, 0x10));
    return gf_reduce(lo, mi, hi);
}

GCM_TARGET static void ghash_block(struct gcm *g, __m128i block)
{
    g->ghash = gf_mul(_mm_xor_si128(g->ghash, byte_reverse(block)), g->h);
}

/* The last, short block of a message part is hashed zero-padded. */
GCM_TARGET static void ghash_bytes(struct gcm *g, const unsigned char *p, size_t n)
{
    for (; n >= 16; p += 16, n -= 16)
        ghash_block(g, _mm_loadu_si128((const __m128i *)p));
    if (n > 0) {
        unsigned char last[16] = {0};
        memcpy(last, p, n);
        ghash_block(g, _mm_loadu_si128((const __m128i *)last));
    }
}

GCM_TARGET static void compute_hpow(struct gcm *g)
{
    __m128i pow[9];
    pow[1] = g->h;
    for (int i = 2; i <= 8; i++)
        pow[i] = gf_mul(pow[i - 1], g->h);
    for (int i = 0; i < 4; i++) {
        g->hpow[i] = _mm256_set_m128i(pow[7 - 2 * i], pow[8 - 2 * i]);
        g->hmid[i] = _mm256_xor_si256(g->hpow[i], _mm256_shuffle_epi32(g->hpow[i], 0x4e));
    }
    /* pow[] is dead to the compiler; the erase must stay. */
    for (int i = 1; i <= 8; i++)
        pow[i] = _mm_setzero_si128();
    __asm__ volatile("" : : "r"(pow) : "memory");
}

/* Karatsuba: the middle product from (b.lo ^ b.hi)(h.lo ^ h.hi), whose
 * second factor hmid holds; lo and hi are subtracted once, after summing. */
INLINE void clmul_2_blocks(__m256i b, __m256i h, __m256i hmid, __m256i *lo, __m256i *mi,
                           __m256i *hi)
{
    *lo = _mm256_xor_si256(*lo, _mm256_clmulepi64_epi128(b, h, 0x00));
    *hi = _mm256_xor_si256(*hi, _mm256_clmulepi64_epi128(b, h, 0x11));
    __m256i bmid = _mm256_xor_si256(b, _mm256_shuffle_epi32(b, 0x4e));
    *mi = _mm256_xor_si256(*mi, _mm256_clmulepi64_epi128(bmid, hmid, 0x00));
}

INLINE __m128i fold_lanes(__m256i x)
{
    return _mm_xor_si128(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
}

/* (Y xor B0) H^8 + B1 H^7 + ... + B7 H: one reduction for eight blocks. */
INLINE void ghash_8_blocks(struct gcm *g, __m256i b0, __m256i b1, __m256i b2, __m256i b3)
{
    __m256i lo = _mm256_setzero_si256(), mi = lo, hi = lo;
    b0 = _mm256_xor_si256(byte_reverse_lanes(b0),
                          _mm256_set_m128i(_mm_setzero_si128(), g->ghash));
    clmul_2_blocks(b0, g->hpow[0], g->hmid[0], &lo, &mi, &hi);
    clmul_2_blocks(byte_reverse_lanes(b1), g->hpow[1], g->hmid[1], &lo, &mi, &hi);
    clmul_2_blocks(byte_reverse_lanes(b2), g->hpow[2], g->hmid[2], &lo, &mi, &hi);
    clmul_2_blocks(byte_reverse_lanes(b3), g->hpow[3], g->hmid[3], &lo, &mi, &hi);
    mi = _mm256_xor_si256(mi, _mm256_xor_si256(lo, hi));
    g->ghash = gf_reduce(fold_lanes(lo), fold_lanes(mi), fold_lanes(hi));
}

GCM_TARGET static void gcm_start(struct gcm *g, const unsigned char *key, int nr,
                                 const unsigned char *iv, const unsigned char *aad,
                                 unsigned int abytes)
{
    g->key = key;
    g->nr = nr;
    g->ghash = _mm_setzero_si128();

    /* A 96-bit IV is followed by a 32-bit big-endian counter from 1; byte
     * reversed, the counter is the low 32-bit lane. */
    unsigned char j0_bytes[16];
    memcpy(j0_bytes, iv, 12);
    memcpy(j0_bytes + 12, "\0\0\0\1", 4);
    __m128i j0 = _mm_loadu_si128((const __m128i *)j0_bytes);
    g->counter = _mm_add_epi32(byte_reverse(j0), _mm_set_epi32(0, 0, 0, 1));

    /* H = E(0) and the tag mask E(J0) in one pass. */
    __m256i both = aes_2_blocks(g, _mm256_set_m128i(j0, _mm_setzero_si128()));
    g->tag_mask = _mm256_extracti128_si256(both, 1);

    /* H x^-1: a left shift in the reversed order, folding x^-1 back as
     * x^127 + x^6 + x + 1 (0xc2...01) when the x^0 bit shifts out. */
    __m128i h = byte_reverse(_mm256_castsi256_si128(both));
    __m128i carries = _mm_srli_epi64(h, 63);
    __m128i shifted = _mm_or_si128(_mm_slli_epi64(h, 1), _mm_slli_si128(carries, 8));
    __m128i top = _mm_shuffle_epi32(_mm_srai_epi32(h, 31), 0xff);
    g->h = _mm_xor_si128(shifted,
                         _mm_and_si128(top, _mm_set_epi64x((long long)0xc200000000000000ULL, 1)));

    ghash_bytes(g, aad, abytes);
}

/* Counter mode over n bytes; GHASH over the ciphertext, which is the input
 * when decrypting and the output when encrypting. */
GCM_TARGET static void gcm_crypt(struct gcm *g, const unsigned char *in, unsigned char *out,
                                 size_t n, int decrypt)
{
    const __m256i rev = _mm256_broadcastsi128_si256(
        _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m256i step = _mm256_set_epi32(0, 0, 0, 2, 0, 0, 0, 2);
    __m256i pair = _mm256_add_epi32(_mm256_broadcastsi128_si256(g->counter),
                                    _mm256_set_epi32(0, 0, 0, 1, 0, 0, 0, 0));
    if (n >= 128)
        compute_hpow(g);
    /* Encrypting, the blocks hashed in one round are the previous round's
     * output, so that hashing overlaps the AES of the next eight. */
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
    int pending = 0;
    for (; n >= 128; in += 128, out += 128, n -= 128) {
        __m256i k0 = _mm256_shuffle_epi8(pair, rev);
        __m256i k1 = _mm256_shuffle_epi8(pair = _mm256_add_epi32(pair, step), rev);
        __m256i k2 = _mm256_shuffle_epi8(pair = _mm256_add_epi32(pair, step), rev);
        __m256i k3 = _mm256_shuffle_epi8(pair = _mm256_add_epi32(pair, step), rev);
        pair = _mm256_add_epi32(pair, step);
        __m256i d0 = _mm256_loadu_si256((const __m256i *)in);
        __m256i d1 = _mm256_loadu_si256((const __m256i *)(in + 32));
        __m256i d2 = _mm256_loadu_si256((const __m256i *)(in + 64));
        __m256i d3 = _mm256_loadu_si256((const __m256i *)(in + 96));
        aes_8_blocks(g, &k0, &k1, &k2, &k3);
        if (decrypt)
            ghash_8_blocks(g, d0, d1, d2, d3);
        else if (pending)
            ghash_8_blocks(g, c0, c1, c2, c3);
        c0 = _mm256_xor_si256(d0, k0);
        c1 = _mm256_xor_si256(d1, k1);
        c2 = _mm256_xor_si256(d2, k2);
        c3 = _mm256_xor_si256(d3, k3);
        _mm256_storeu_si256((__m256i *)out, c0);
        _mm256_storeu_si256((__m256i *)(out + 32), c1);
        _mm256_storeu_si256((__m256i *)(out + 64), c2);
        _mm256_storeu_si256((__m256i *)(out + 96), c3);
        pending = !decrypt;
    }
    if (pending)
        ghash_8_blocks(g, c0, c1, c2, c3);
    if (n == 0)
        return;

    /* Up to seven blocks and a piece: one pass of eight keystream blocks
     * over a zero-padded copy, hashed block by block. */
    unsigned char buf[128] __attribute__((aligned(32))) = {0};
    memcpy(buf, in, n);
    if (decrypt)
        ghash_bytes(g, buf, n);
    __m256i k0 = _mm256_shuffle_epi8(pair, rev);
    __m256i k1 = _mm256_shuffle_epi8(pair = _mm256_add_epi32(pair, step), rev);
    __m256i k2 = _mm256_shuffle_epi8(pair = _mm256_add_epi32(pair, step), rev);
    __m256i k3 = _mm256_shuffle_epi8(_mm256_add_epi32(pair, step), rev);
    aes_8_blocks(g, &k0, &k1, &k2, &k3);
    __m256i *b = (__m256i *)buf;
    b[0] = _mm256_xor_si256(b[0], k0);
    b[1] = _mm256_xor_si256(b[1], k1);
    b[2] = _mm256_xor_si256(b[2], k2);
    b[3] = _mm256_xor_si256(b[3], k3);
    memcpy(out, buf, n);
    if (!decrypt)
        ghash_bytes(g, buf, n);
}

GCM_TARGET static void gcm_finish(struct gcm *g, unsigned int abytes, unsigned int nbytes,
                                  unsigned char tag[16])
{
    /* The lengths block, big-endian bit counts, byte-reversed. */
    __m128i lengths = _mm_set_epi64x((long long)((uint64_t)abytes * 8),
                                     (long long)((uint64_t)nbytes * 8));
    g->ghash = gf_mul(_mm_xor_si128(g->ghash, lengths), g->h);
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(byte_reverse(g->ghash), g->tag_mask));
}

/* H and its powers let anyone forge tags under this key. */
GCM_TARGET static void gcm_erase(struct gcm *g)
{
    g->h = g->ghash = g->tag_mask = _mm_setzero_si128();
    for (int i = 0; i < 4; i++)
        g->hpow[i] = g->hmid[i] = _mm256_setzero_si256();
    /* The stores are dead to the compiler; make them count. */
    __asm__ volatile("" : : "r"(g) : "memory");
}

/* One message, either way; full receives the whole 16-byte tag. */
GCM_TARGET static void gcm_message(const unsigned char *in, unsigned char *out,
                                   const unsigned char *aad, const unsigned char *iv,
                                   unsigned int nbytes, unsigned int abytes,
                                   const unsigned char *key, int nr, int decrypt,
                                   unsigned char full[16])
{
    struct gcm g;
    gcm_start(&g, key, nr, iv, aad, abytes);
    gcm_crypt(&g, in, out, nbytes, decrypt);
    gcm_finish(&g, abytes, nbytes, full);
    gcm_erase(&g);
}

void moat_gcm_vaes_encrypt(const unsigned char *in, unsigned char *out, const unsigned char *aad,
                           const unsigned char *iv, unsigned char *tag, unsigned int nbytes,
                           unsigned int abytes, unsigned int ivbytes, unsigned int tbytes,
                           const unsigned char *key, int nr)
{
    (void)ivbytes;
    unsigned char full[16];
    gcm_message(in, out, aad, iv, nbytes, abytes, key, nr, 0, full);
    memcpy(tag, full, tbytes < 16 ? tbytes : 16);
}

void moat_gcm_vaes_decrypt(const unsigned char *in, unsigned char *out, const unsigned char *aad,
                           const unsigned char *iv, const unsigned char *tag, unsigned int nbytes,
                           unsigned int abytes, unsigned int ivbytes, unsigned int tbytes,
                           const unsigned char *key, int nr, int *ok)
{
    (void)ivbytes;
    unsigned char full[16], diff = 0;
    gcm_message(in, out, aad, iv, nbytes, abytes, key, nr, 1, full);
    for (unsigned int i = 0; i < tbytes && i < 16; i++)
        diff |= (unsigned char)(full[i] ^ tag[i]);
    *ok = diff == 0;
}
