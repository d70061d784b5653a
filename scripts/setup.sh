#!/usr/bin/env bash
# Installs what moat needs from Debian's repositories.  Idempotent: packages
# already present are not fetched again, and apt's index is refreshed only
# when something is missing.
#
# Usage: scripts/setup.sh [--build] [--demo] [--tests] [--bench] [--docker] [--fuzz] [--scan] [--wolfssl-source]
#   --build           compiler, CMake and the four libraries (default)
#   --demo            what scripts/run.sh needs besides the build (openssl, python3)
#   --tests           the real clients and tools the test suite drives
#   --bench           load generators and the peers moat is measured against
#   --fuzz            clang and libFuzzer for scripts/fuzz.sh
#   --scan            testssl.sh for scripts/tls-scan.sh
#   --docker          podman and what it needs to build and run moat's image
#                     without a Docker engine or registry (scripts/test-docker.sh)
#   --wolfssl-source  what scripts/build-wolfssl.sh needs to fetch and build
#                     Debian's wolfSSL source package
set -euo pipefail

build_pkgs="build-essential cmake pkg-config libuv1-dev libyaml-dev node-llhttp libwolfssl-dev"
demo_pkgs="openssl python3 curl"
test_pkgs="curl openssl python3 python3-pytest python3-openssl wrk procps iproute2 clang-14 libclang-rt-14-dev sslscan slowhttptest valgrind"
bench_pkgs="wrk haproxy nginx-light hitch procps iproute2 curl openssl libssl-dev gnuplot-nox"
source_pkgs="dpkg-dev autoconf automake libtool make"
docker_pkgs="podman runc debootstrap uidmap"
fuzz_pkgs="clang-14 libclang-rt-14-dev libfuzzer-14-dev"
scan_pkgs="testssl.sh openssl"

want=""
[ $# -eq 0 ] && set -- --build
for arg in "$@"; do
    case "$arg" in
        --build) want="$want $build_pkgs" ;;
        --demo) want="$want $demo_pkgs" ;;
        --tests) want="$want $build_pkgs $test_pkgs" ;;
        --bench) want="$want $build_pkgs $bench_pkgs" ;;
        --docker) want="$want $docker_pkgs" ;;
        --fuzz) want="$want $fuzz_pkgs" ;;
        --scan) want="$want $scan_pkgs" ;;
        --wolfssl-source) want="$want $source_pkgs" ;;
        *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# deb-src twin of the binary sources, so that `apt-get source wolfssl` works.
ensure_deb_src() {
    local src=/etc/apt/sources.list.d/debian.sources
    local twin=/etc/apt/sources.list.d/moat-deb-src.sources
    if grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ ||
        grep -qs '^deb-src ' /etc/apt/sources.list; then
        return 1
    fi
    if [ -f "$src" ]; then
        sed 's/^Types: deb$/Types: deb-src/' "$src" | as_root tee "$twin" >/dev/null
    else
        grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
            as_root tee /etc/apt/sources.list.d/moat-deb-src.list >/dev/null
    fi
    return 0
}

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done

need_update=0
case " $* " in *" --wolfssl-source "*) ensure_deb_src && need_update=1 ;; esac
[ -n "$missing" ] && need_update=1
# apt-get source needs the deb-src index even when every package is present.
case " $* " in *" --wolfssl-source "*)
    ls /var/lib/apt/lists/*_source_Sources* >/dev/null 2>&1 || need_update=1 ;;
esac

if [ "$need_update" -eq 1 ]; then
    as_root apt-get update -qq
fi
if [ -n "$missing" ]; then
    echo "setup: installing$missing" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
