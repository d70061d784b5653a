#!/usr/bin/env bash
# Builds the wolfSSL that moat links statically, from Debian's source package
# (so it carries Debian's security patches), with the x86-64 assembly and
# AES-NI that Debian's generic binary package leaves out, and with only the
# features a TLS-terminating proxy needs (a lean build keeps per-connection
# memory small).
#
# Usage: scripts/build-wolfssl.sh PREFIX
# The result is installed under PREFIX (include/, lib/libwolfssl.a).  PREFIX is
# a cache: when PREFIX/lib/libwolfssl.a exists, nothing is done.  CMake chooses
# a PREFIX that changes whenever this script changes, so new flags rebuild.
set -euo pipefail

prefix=${1:?usage: build-wolfssl.sh PREFIX}
version=5.5.4

if [ -f "$prefix/lib/libwolfssl.a" ] && [ -f "$prefix/include/wolfssl/options.h" ]; then
    exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
"$here/setup.sh" --wolfssl-source

work=$(mktemp -d "${TMPDIR:-/tmp}/moat-wolfssl.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# apt-get source unpacks and applies Debian's patches (security fixes).
apt-get source -qq "wolfssl=$version*" >/dev/null 2>&1 || apt-get source -qq wolfssl >/dev/null
src=$(find . -maxdepth 1 -type d -name "wolfssl-$version*" | head -n 1)
[ -n "$src" ] || { echo "build-wolfssl: no wolfssl-$version source found" >&2; exit 1; }
cd "$src"

./autogen.sh >/dev/null 2>&1

# Random bytes come from moat_random_block() (proxy/rng.c: getrandom) instead
# of a Hash_DRBG per connection, whose set-up reads /dev/urandom (open, read,
# close) and runs the DRBG's SHA-256 health test for every WOLFSSL object:
# 15 % of the CPU of a TLS 1.2 session-ID resumption.  AES-GCM on messages of
# 512 bytes and more goes to moat_gcm_vaes_* (proxy/gcm_vaes.c, see the
# aes.c patch below).  Whatever links this library provides the functions;
# wolfSSL's sources see moat's own headers for them (included everywhere,
# assembly too, hence the guard; CMake's cache key covers both headers).
root=$(cd "$here/.." && pwd)
printf '#ifndef __ASSEMBLER__\n#include "%s"\n#include "%s"\n#endif\n' \
    "$root/proxy/rng.h" "$root/proxy/gcm_vaes.h" >"$work/moat_hooks.h"

# X25519 key pairs: the public key is a fixed-base multiple, which Ed25519's
# precomputed table computes several times faster than the ladder wolfSSL
# 5.5.4 uses (later wolfSSL releases do the same).  Every TLS 1.3 handshake,
# resumed ones too, makes one key pair: perf showed the ladder at a third of
# the CPU of a TLS 1.3 resumption, half of it for the key pair.  Needs
# --enable-ed25519 (for ge_operations.c); moat uses no Ed25519 otherwise.
patch -p1 --quiet <<'PATCH'
--- a/wolfcrypt/src/curve25519.c
+++ b/wolfcrypt/src/curve25519.c
@@ -33,6 +33,9 @@
 
 #include <wolfssl/wolfcrypt/curve25519.h>
 #include <wolfssl/wolfcrypt/error-crypt.h>
+#ifdef HAVE_ED25519
+    #include <wolfssl/wolfcrypt/ge_operations.h>
+#endif
 #ifdef NO_INLINE
     #include <wolfssl/wolfcrypt/misc.h>
 #else
@@ -100,6 +103,30 @@
  * return value is propagated from curve25519() (0 on success), or
  * ECC_BAD_ARG_E, and the byte vectors are little endian.
  */
+#if defined(HAVE_ED25519) && !defined(FREESCALE_LTC_ECC)
+/* moat: a public key is the base point times the private key.  Ed25519's
+ * precomputed table of base point multiples does that several times faster
+ * than the Montgomery ladder; the Edwards point (X:Y:Z) maps to the
+ * Montgomery u-coordinate (Z + Y) / (Z - Y).  A clamped scalar is a
+ * multiple of 8 below 2^255, never a multiple of the group order, so Z - Y is
+ * never zero. */
+static int curve25519_base(byte* pub, const byte* priv)
+{
+    ge_p3 p;
+    fe num, den;
+
+    ge_scalarmult_base(&p, priv);
+    fe_add(num, p.Z, p.Y);
+    fe_sub(den, p.Z, p.Y);
+    fe_invert(den, den);
+    fe_mul(num, num, den);
+    fe_tobytes(pub, num);
+    ForceZero(&p, sizeof(p));
+    ForceZero(den, sizeof(den));
+    return 0;
+}
+#endif
+
 int wc_curve25519_make_pub(int public_size, byte* pub, int private_size,
                            const byte* priv)
 {
@@ -133,7 +160,11 @@
 
     SAVE_VECTOR_REGISTERS(return _svr_ret;);
 
+#ifdef HAVE_ED25519
+    ret = curve25519_base(pub, priv);
+#else
     ret = curve25519(pub, priv, kCurve25519BasePoint);
+#endif
 
     RESTORE_VECTOR_REGISTERS();
 #endif
PATCH

# SHA-256 with the x86 SHA extensions when the CPU has them (AMD since Zen,
# Intel since Ice Lake and Goldmont); wolfSSL 5.5.4 only has AVX code for it.
# TLS 1.2's PRF and TLS 1.3's key schedule are HMAC-SHA-256 all the way:
# perf put the AVX2 transform at a tenth of the CPU of a resumption.
patch -p1 --quiet <<'PATCH'
--- a/wolfcrypt/src/sha256.c
+++ b/wolfcrypt/src/sha256.c
@@ -349,6 +349,9 @@
     }  /* extern "C" */
 #endif
 
+    #include <cpuid.h>
+    #include <immintrin.h>
+
     static int (*Transform_Sha256_p)(wc_Sha256* sha256, const byte* data);
                                                        /* = _Transform_Sha256 */
     static int (*Transform_Sha256_Len_p)(wc_Sha256* sha256, const byte* data,
@@ -372,6 +375,99 @@
     }
 #define XTRANSFORM_LEN(...) inline_XTRANSFORM_LEN(__VA_ARGS__)
 
+    /* moat: SHA-256 with the x86 SHA extensions (sha256rnds2, sha256msg1/2),
+     * which this wolfSSL release does not use: several times faster per
+     * block than the AVX2 code.  Same contract as the AVX transforms: data is
+     * the message in its byte order, digest holds A..H as native words. */
+    static const ALIGN16 word32 moat_sha256_k[64] = {
+    0x428a2f98U, 0x71374491U, 0xb5c0fbcfU, 0xe9b5dba5U,
+    0x3956c25bU, 0x59f111f1U, 0x923f82a4U, 0xab1c5ed5U,
+    0xd807aa98U, 0x12835b01U, 0x243185beU, 0x550c7dc3U,
+    0x72be5d74U, 0x80deb1feU, 0x9bdc06a7U, 0xc19bf174U,
+    0xe49b69c1U, 0xefbe4786U, 0x0fc19dc6U, 0x240ca1ccU,
+    0x2de92c6fU, 0x4a7484aaU, 0x5cb0a9dcU, 0x76f988daU,
+    0x983e5152U, 0xa831c66dU, 0xb00327c8U, 0xbf597fc7U,
+    0xc6e00bf3U, 0xd5a79147U, 0x06ca6351U, 0x14292967U,
+    0x27b70a85U, 0x2e1b2138U, 0x4d2c6dfcU, 0x53380d13U,
+    0x650a7354U, 0x766a0abbU, 0x81c2c92eU, 0x92722c85U,
+    0xa2bfe8a1U, 0xa81a664bU, 0xc24b8b70U, 0xc76c51a3U,
+    0xd192e819U, 0xd6990624U, 0xf40e3585U, 0x106aa070U,
+    0x19a4c116U, 0x1e376c08U, 0x2748774cU, 0x34b0bcb5U,
+    0x391c0cb3U, 0x4ed8aa4aU, 0x5b9cca4fU, 0x682e6ff3U,
+    0x748f82eeU, 0x78a5636fU, 0x84c87814U, 0x8cc70208U,
+    0x90befffaU, 0xa4506cebU, 0xbef9a3f7U, 0xc67178f2U,
+    };
+
+    static int moat_cpu_has_sha_ni(void)
+    {
+        unsigned int a, b, c, d;
+        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
+            return 0;
+        return (b >> 29) & 1;
+    }
+
+    __attribute__((target("sha,ssse3,sse4.1")))
+    static void moat_sha256_shani_blocks(word32* digest, const byte* data,
+                                         word32 blocks)
+    {
+        const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL,
+                                             0x0405060700010203LL);
+        /* A..H in memory; the instructions want ABEF and CDGH. */
+        __m128i t = _mm_shuffle_epi32(
+            _mm_loadu_si128((const __m128i*)&digest[0]), 0xB1);
+        __m128i cdgh = _mm_shuffle_epi32(
+            _mm_loadu_si128((const __m128i*)&digest[4]), 0x1B);
+        __m128i abef = _mm_alignr_epi8(t, cdgh, 8);
+        cdgh = _mm_blend_epi16(cdgh, t, 0xF0);
+
+        while (blocks-- > 0) {
+            __m128i abef0 = abef, cdgh0 = cdgh, w[4];
+            int r;
+            for (r = 0; r < 4; r++) {
+                w[r] = _mm_shuffle_epi8(
+                    _mm_loadu_si128((const __m128i*)(data + 16 * r)), bswap);
+            }
+            /* Sixteen groups of four rounds; from the fifth on, the group's
+             * schedule words come from the four groups before it. */
+            for (r = 0; r < 16; r++) {
+                __m128i m;
+                if (r >= 4) {
+                    m = _mm_sha256msg1_epu32(w[r & 3], w[(r + 1) & 3]);
+                    m = _mm_add_epi32(m, _mm_alignr_epi8(w[(r + 3) & 3],
+                                                         w[(r + 2) & 3], 4));
+                    w[r & 3] = _mm_sha256msg2_epu32(m, w[(r + 3) & 3]);
+                }
+                m = _mm_add_epi32(w[r & 3], _mm_load_si128(
+                        (const __m128i*)&moat_sha256_k[4 * r]));
+                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m);
+                abef = _mm_sha256rnds2_epu32(abef, cdgh,
+                                             _mm_shuffle_epi32(m, 0x0E));
+            }
+            abef = _mm_add_epi32(abef, abef0);
+            cdgh = _mm_add_epi32(cdgh, cdgh0);
+            data += WC_SHA256_BLOCK_SIZE;
+        }
+
+        t = _mm_shuffle_epi32(abef, 0x1B);
+        cdgh = _mm_shuffle_epi32(cdgh, 0xB1);
+        _mm_storeu_si128((__m128i*)&digest[0], _mm_blend_epi16(t, cdgh, 0xF0));
+        _mm_storeu_si128((__m128i*)&digest[4], _mm_alignr_epi8(cdgh, t, 8));
+    }
+
+    static int Transform_Sha256_SHANI(wc_Sha256* sha256, const byte* data)
+    {
+        moat_sha256_shani_blocks(sha256->digest, data, 1);
+        return 0;
+    }
+
+    static int Transform_Sha256_SHANI_Len(wc_Sha256* sha256, const byte* data,
+                                          word32 len)
+    {
+        moat_sha256_shani_blocks(sha256->digest, data,
+                                 len / WC_SHA256_BLOCK_SIZE);
+        return 0;
+    }
+
     static void Sha256_SetTransform(void)
     {
 
@@ -380,6 +476,17 @@
 
         intel_flags = cpuid_get_flags();
 
+        /* The AVX flags decide elsewhere that blocks reach the transform
+         * unswapped, as this one wants them. */
+        if ((IS_INTEL_AVX1(intel_flags) || IS_INTEL_AVX2(intel_flags)) &&
+                moat_cpu_has_sha_ni()) {
+            Transform_Sha256_p = Transform_Sha256_SHANI;
+            Transform_Sha256_Len_p = Transform_Sha256_SHANI_Len;
+            Transform_Sha256_is_vectorized = 1;
+            transform_check = 1;
+            return;
+        }
+
     #ifdef HAVE_INTEL_AVX2
         if (1 && IS_INTEL_AVX2(intel_flags)) {
         #ifdef HAVE_INTEL_RORX
PATCH

# AES-GCM with 256-bit VAES and VPCLMULQDQ where the CPU has them (AMD since
# Zen 3, Intel since Ice Lake): wolfSSL 5.5.4's fastest code does one block
# per instruction, and perf put it at a quarter of moat's CPU when it forwards
# large responses.  moat's code is 1.6 times as fast on 16 KiB records but
# has a higher fixed cost per message, so short records (requests, small
# responses, handshake messages) stay with wolfSSL's AVX2 code; the two meet
# at about 512 bytes here.
patch -p1 --quiet <<'PATCH'
--- a/wolfcrypt/src/aes.c
+++ b/wolfcrypt/src/aes.c
@@ -7842,6 +7842,13 @@
 #endif /* STM32_CRYPTO_AES_GCM */
 
 #ifdef WOLFSSL_AESNI
+    /* moat: 256-bit VAES code (proxy/gcm_vaes.c), faster from 512 bytes. */
+    if (sz >= 512 && ivSz == GCM_NONCE_MID_SZ && aes->use_aesni &&
+            moat_gcm_vaes_usable()) {
+        moat_gcm_vaes_encrypt(in, out, authIn, iv, authTag, sz, authInSz, ivSz,
+                              authTagSz, (const byte*)aes->key, (int)aes->rounds);
+        return 0;
+    }
     #ifdef HAVE_INTEL_AVX2
     if (IS_INTEL_AVX2(intel_flags)) {
         SAVE_VECTOR_REGISTERS(return _svr_ret;);
@@ -8398,6 +8405,13 @@
 #endif /* STM32_CRYPTO_AES_GCM */
 
 #ifdef WOLFSSL_AESNI
+    if (sz >= 512 && ivSz == GCM_NONCE_MID_SZ && aes->use_aesni &&
+            moat_gcm_vaes_usable()) {
+        moat_gcm_vaes_decrypt(in, out, authIn, iv, authTag, sz, authInSz, ivSz,
+                              authTagSz, (const byte*)aes->key, (int)aes->rounds,
+                              &res);
+        return res == 0 ? AES_GCM_AUTH_E : 0;
+    }
     #ifdef HAVE_INTEL_AVX2
     if (IS_INTEL_AVX2(intel_flags)) {
         SAVE_VECTOR_REGISTERS(return _svr_ret;);
PATCH

# A client certificate whose keyUsage leaves out digitalSignature may not
# sign, yet wolfSSL 5.5.4 let TLS 1.3 clients use one: its check looks at
# the suite's signature algorithm, which TLS 1.3 suites do not name.  TLS
# 1.2 refused such a certificate already (bad_certificate), as OpenSSL does.
patch -p1 --quiet <<'PATCH'
--- a/src/internal.c
+++ b/src/internal.c
@@ -13961,10 +13961,13 @@
                         ret = KEYUSE_ENCIPHER_E;
                         WOLFSSL_ERROR_VERBOSE(ret);
                     }
-                    if ((ssl->specs.kea != rsa_kea) &&
-                        (ssl->specs.sig_algo == rsa_sa_algo ||
+                    /* moat: a TLS 1.3 suite names no signature algorithm,
+                     * yet every certificate signs a CertificateVerify. */
+                    if ((IsAtLeastTLSv1_3(ssl->version) ||
+                         ((ssl->specs.kea != rsa_kea) &&
+                          (ssl->specs.sig_algo == rsa_sa_algo ||
                             (ssl->specs.sig_algo == ecc_dsa_sa_algo &&
-                                 !ssl->specs.static_ecdh)) &&
+                                 !ssl->specs.static_ecdh)))) &&
                         (args->dCert->extKeyUsage & KEYUSE_DIGITAL_SIG) == 0) {
                         WOLFSSL_MSG("KeyUse Digital Sig not set");
                         ret = KEYUSE_SIGNATURE_E;
PATCH

# Features: TLS 1.2 + 1.3 only, AEAD suites with forward secrecy only
# (maxstrength), X25519 and P-256/P-384 key exchange, RSA (with PSS, which TLS
# 1.3 requires for RSA keys) and ECDSA certificates, SNI, ALPN, session
# tickets, the external session cache, HKDF for ticket-key derivation and
# certificate generation for the embedded self-signed default.  Room for
# 512 cipher suites in a ClientHello (wolfSSL's default, 150, makes it
# refuse scanners and some test clients); the list is freed after the
# handshake, so idle connections do not pay for it.  A TLS 1.3 server that
# does not ask for a client certificate sends its session ticket right after
# its Finished (RFC 8446, 4.6.1, the note) instead of after the client's: the
# ticket leaves in the same write as the rest of the server's flight, which
# saves a write and a packet per handshake (with client_auth, wolfSSL waits).
./configure --prefix="$prefix" --enable-static --disable-shared \
    --disable-examples --disable-crypttests --disable-benchmark \
    --enable-intelasm --enable-aesni --enable-sp --enable-sp-asm \
    --enable-tls13 --enable-tlsv12 --disable-oldtls --enable-maxstrength \
    --enable-aesgcm --enable-chacha --enable-poly1305 \
    --enable-curve25519 --enable-ed25519 --enable-rsapss --enable-hkdf --disable-dh \
    --enable-sni --enable-alpn --enable-session-ticket \
    --enable-certgen --enable-certext --enable-keygen \
    --disable-psk --disable-des3 --disable-sha3 --disable-hashdrbg \
    CFLAGS="-O2 -fPIC -DHAVE_EXT_CACHE -DWOLFSSL_ALT_NAMES -DNO_SESSION_CACHE_REF -DWOLFSSL_MAX_SUITE_SZ=1024 -DWOLFSSL_TLS13_TICKET_BEFORE_FINISHED -DCUSTOM_RAND_GENERATE_BLOCK=moat_random_block -include $work/moat_hooks.h" \
    >"$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log" >&2; exit 1; }

make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
rm -rf "$prefix.tmp"
make install DESTDIR= prefix="$prefix.tmp" >/dev/null
# Install atomically so that an interrupted build never looks finished.
sed -i "s|$prefix.tmp|$prefix|g" "$prefix.tmp/lib/pkgconfig/wolfssl.pc" 2>/dev/null || true
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
echo "build-wolfssl: wolfSSL $version installed in $prefix"
