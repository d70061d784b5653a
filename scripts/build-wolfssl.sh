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
    --enable-curve25519 --enable-rsapss --enable-hkdf --disable-dh \
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
