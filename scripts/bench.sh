#!/usr/bin/env bash
# Keep-alive small-request throughput through moat, side by side with the
# same backend reached directly, on loopback.  Prints a Markdown table of
# medians over several runs.  A script that prints figures, never a test.
#
# Usage: scripts/bench.sh [-d SECONDS] [-c CONNECTIONS] [-r RUNS] [-w WORKERS]
# moat is pinned to CPU 0; the load generator and the backend share CPU 1,
# so moat's figure is per proxy core.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=10 conns=50 runs=3 workers=1
while getopts d:c:r:w: opt; do
    case $opt in
        d) duration=$OPTARG ;;
        c) conns=$OPTARG ;;
        r) runs=$OPTARG ;;
        w) workers=$OPTARG ;;
        *) echo "usage: $0 [-d SECONDS] [-c CONNECTIONS] [-r RUNS] [-w WORKERS]" >&2; exit 2 ;;
    esac
done

"$root/scripts/setup.sh" --bench
"$root/scripts/build.sh" "$root/build" >/dev/null

work=$(mktemp -d /tmp/moat-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ncpu=$(nproc)
proxy_cpu=0
load_cpu=$((ncpu > 1 ? 1 : 0))

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listening on port $1" >&2
    exit 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# Backend: nginx answering a small body from memory.
backend_port=$(free_port)
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/nginx/logs/error.log error;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$backend_port;
        location / { return 200 "hello from the backend\n"; }
    }
}
NGINX
taskset -c "$load_cpu" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
wait_port "$backend_port"

moat_port=$(free_port)
cat >"$work/moat.yaml" <<YAML
workers: $workers
listeners:
  - name: bench
    bind: "127.0.0.1:$moat_port"
    tls:
      certificates:
        - cert: cert.pem
          key: key.pem
routes:
  - path: /
    upstream: backend
upstreams:
  backend:
    servers: ["127.0.0.1:$backend_port"]
    keepalive: 64
log:
  access: null
  level: warn
YAML
taskset -c "$proxy_cpu" "$root/build/moat" -c "$work/moat.yaml" &
pids+=($!)
wait_port "$moat_port"

# One wrk run: prints "requests/s p50_ms p99_ms".
measure() {
    taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${duration}s" --latency "$1" 2>/dev/null |
        awk '/Requests\/sec/ {rps=$2}
             /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
             function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
             END {printf "%.0f %.3f %.3f\n", rps, ms(p50), ms(p99)}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A rps p50 p99
for target in direct moat; do
    url=http://127.0.0.1:$backend_port/
    [ "$target" = moat ] && url=https://127.0.0.1:$moat_port/
    measure "$url" >/dev/null # warm-up: connections, session caches
    : >"$work/$target.txt"
    for _ in $(seq "$runs"); do measure "$url" >>"$work/$target.txt"; done
    rps[$target]=$(awk '{print $1}' "$work/$target.txt" | median)
    p50[$target]=$(awk '{print $2}' "$work/$target.txt" | median)
    p99[$target]=$(awk '{print $3}' "$work/$target.txt" | median)
done

echo
echo "Keep-alive small requests, $conns connections, ${duration}s x $runs runs (median), $(date -u +%Y-%m-%d), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "moat: $workers worker(s) pinned to CPU $proxy_cpu; wrk and the nginx backend on CPU $load_cpu"
echo
echo "| target | requests/s | p50 ms | p99 ms | vs direct |"
echo "|---|---:|---:|---:|---:|"
for target in direct moat; do
    ratio=$(awk -v a="${rps[$target]}" -v b="${rps[direct]}" 'BEGIN {printf "%.2f", a/b}')
    label=$target
    [ "$target" = direct ] && label="backend direct (plain HTTP)"
    [ "$target" = moat ] && label="through moat (HTTPS, TLS 1.3)"
    echo "| $label | ${rps[$target]} | ${p50[$target]} | ${p99[$target]} | $ratio |"
done
