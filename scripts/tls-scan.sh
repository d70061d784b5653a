#!/usr/bin/env bash
# Scans moat's default TLS settings with testssl.sh (Debian's package) on
# loopback and prints a summary: protocols, cipher categories, forward
# secrecy, server defaults, every vulnerability check, and the rating.
# README's "TLS scan" section is this script's output.
#
# Usage: scripts/tls-scan.sh [-m MOAT_BINARY] [-k ec|rsa] [-o FULL_LOG]
#   -m   moat binary to scan (default: build/moat, built if missing)
#   -k   certificate key: ECDSA P-256 (default) or RSA-2048
#   -o   also keep testssl.sh's full output in this file
#
# moat is started by PID and stopped on exit; every wait is bounded.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
moat=$root/build/moat key=ec full_log=""
while getopts "m:k:o:" opt; do
    case "$opt" in
        m) moat=$OPTARG ;;
        k) key=$OPTARG ;;
        o) full_log=$OPTARG ;;
        *) sed -n '/^# Usage:/,/^# moat is/p' "$0" >&2; exit 2 ;;
    esac
done

"$root/scripts/setup.sh" --build --scan >&2
[ -x "$moat" ] || "$root/scripts/build.sh" "$root/build" >&2

work=$(mktemp -d /tmp/moat-tls-scan.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        timeout 10 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ "$key" = rsa ]; then
    keyopt=(-newkey rsa:2048)
else
    keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
fi
openssl req -x509 "${keyopt[@]}" -nodes -days 30 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$work/site.key" -out "$work/site.pem" \
    2>/dev/null
chmod 600 "$work/site.key"
# Defaults everywhere: only the certificate, the loopback port and the log
# level are set.
cat >"$work/moat.yaml" <<EOF
workers: 1
listeners:
  - name: public
    bind: "127.0.0.1:0"
    tls:
      certificates:
        - cert: site.pem
          key: site.key
routes:
  - path: /
    upstream: app
upstreams:
  app:
    servers: ["127.0.0.1:9"]
log:
  level: warn
EOF
"$moat" -c "$work/moat.yaml" --listen-file "$work/listen" >/dev/null 2>"$work/moat.log" &
pid=$!
for _ in $(seq 100); do
    [ -s "$work/listen" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/moat.log" >&2; exit 1; }
    sleep 0.1
done
addr=$(awk '$1 == "public" {print $2}' "$work/listen")
[ -n "$addr" ] || { echo "tls-scan: moat did not start" >&2; exit 1; }

echo "tls-scan: testssl.sh $(testssl --version 2>/dev/null | sed -n 's/.*testssl  *\([0-9][0-9.]*\) from.*/\1/p' | head -1) against moat $("$moat" --version | head -1 | cut -d' ' -f2) defaults on $addr ($key key)" >&2
timeout 900 testssl --quiet --color 0 --warnings off --sneaky --openssl /usr/bin/openssl \
    "$addr" >"$work/testssl.out" 2>&1 || true
[ -z "$full_log" ] || cp "$work/testssl.out" "$full_log"

# The summary: every protocol and cipher-category line, forward secrecy,
# the vulnerability checks and the rating, without testssl's banner.
grep -E '^ (SSLv|TLS 1|NULL|Anonymous|Export|LOW|Triple|Obsoleted|Strong|PFS|   TLSv1\.[23]:|Secure Reneg|Secure Client|Heartbleed|CCS|Ticketbleed|ROBOT|CRIME|BREACH|POODLE|TLS_FALLBACK|SWEET32|FREAK|DROWN|LOGJAM|BEAST|LUCKY13|Winshock|RC4|Overall Grade|Grade cap|Has server cipher|Negotiated|Cipher order|TLS session ticket|SSL Session ID|Session Resumption|Server key size|Elliptic curves|TLS 1.3 sig|Finite field|Certificate Compression)' \
    "$work/testssl.out" | sed 's/[[:space:]]*$//' || true
sims=$(sed -n '/Running client simulations/,$p' "$work/testssl.out" | grep -cE ' TLSv1\.[23] ' || true)
nosims=$(sed -n '/Running client simulations/,$p' "$work/testssl.out" | grep -c 'No connection' || true)
echo " Client simulations: $sims connected, $nosims without a connection"
if grep -q 'VULNERABLE' "$work/testssl.out"; then
    echo "tls-scan: testssl.sh reports VULNERABLE" >&2
    exit 1
fi
kill -0 "$pid" 2>/dev/null || { echo "tls-scan: moat died during the scan" >&2; exit 1; }
