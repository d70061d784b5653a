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
# 15 % of the CPU of a TLS 1.2 session-ID resumption.  Whatever links this
# library provides the function; the header only declares it for random.c
# (and is included everywhere, assembly too, hence the guard).
printf '#ifndef __ASSEMBLER__\nint moat_random_block(unsigned char *out, unsigned int len);\n#endif\n' \
    >"$work/moat_rng.h"

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

# Features: TLS 1.2 + 1.3 only, AEAD suites with forward secrecy only
# (maxstrength), X25519 and P-256/P-384 key exchange, RSA (with PSS, which TLS
# 1.3 requires for RSA keys) and ECDSA certificates, SNI, ALPN, session
# tickets, the external session cache, HKDF for ticket-key derivation and
# certificate generation for the embedded self-signed default.  Room for
# 512 cipher suites in a ClientHello (wolfSSL's default, 150, makes it
# refuse scanners and some test clients); the list is freed after the
# handshake, so idle connections do not pay for it.
./configure --prefix="$prefix" --enable-static --disable-shared \
    --disable-examples --disable-crypttests --disable-benchmark \
    --enable-intelasm --enable-aesni --enable-sp --enable-sp-asm \
    --enable-tls13 --enable-tlsv12 --disable-oldtls --enable-maxstrength \
    --enable-aesgcm --enable-chacha --enable-poly1305 \
    --enable-curve25519 --enable-ed25519 --enable-rsapss --enable-hkdf --disable-dh \
    --enable-sni --enable-alpn --enable-session-ticket \
    --enable-certgen --enable-certext --enable-keygen \
    --disable-psk --disable-des3 --disable-sha3 --disable-hashdrbg \
    CFLAGS="-O2 -fPIC -DHAVE_EXT_CACHE -DWOLFSSL_ALT_NAMES -DNO_SESSION_CACHE_REF -DWOLFSSL_MAX_SUITE_SZ=1024 -DCUSTOM_RAND_GENERATE_BLOCK=moat_random_block -include $work/moat_rng.h" \
    >"$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log" >&2; exit 1; }

make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
rm -rf "$prefix.tmp"
make install DESTDIR= prefix="$prefix.tmp" >/dev/null
# Install atomically so that an interrupted build never looks finished.
sed -i "s|$prefix.tmp|$prefix|g" "$prefix.tmp/lib/pkgconfig/wolfssl.pc" 2>/dev/null || true
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
echo "build-wolfssl: wolfSSL $version installed in $prefix"
