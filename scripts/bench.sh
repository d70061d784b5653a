#!/usr/bin/env bash
# moat's benchmark: moat side by side with HAProxy, nginx and hitch (all from
# Debian), each terminating TLS in front of the same plain-HTTP backend, on
# loopback.  Measures keep-alive requests/s (p50/p99), full and resumed TLS
# handshakes/s (TLS 1.3 PSK, TLS 1.2 session ID, TLS 1.2 ticket; resumption
# verified by the client), bulk download MB/s and memory per idle TLS
# connection, each as the median of several runs, and the proxy's own CPU
# time for every figure (per-proxy-CPU-second figures stay comparable when the
# load generator saturates its core).  Writes Markdown tables and a PNG chart.
# A script that prints figures, never a test.
#
# Usage: scripts/bench.sh [options]
#   -d SECONDS   length of each timed run (default 5)
#   -r RUNS      runs per figure, the median is reported (default 3)
#   -w WORKERS   worker processes/threads for every proxy (default 1)
#   -c CONNS     wrk connections for the keep-alive test (default 50)
#   -C CONC      handshakes in flight for the handshake tests (default 32)
#   -n CONNS     idle TLS connections for the memory test (default: as many
#                as `ulimit -n` allows, at most 10000: 9500 with a 20000 limit)
#   -k ec|rsa    certificate key: ECDSA P-256 (default) or RSA-2048
#   -t "LIST"    targets, from: moat haproxy nginx hitch responder (default:
#                all five; responder is the floor, a TLS server on moat's own
#                wolfSSL build that answers by itself: scripts/bench/responder.c)
#   -o FILE      Markdown results (default ./bench-results.md)
#   -p FILE      PNG chart (default: the results file with .png)
#   -m BINARY    use this moat binary instead of building one
#   -B DIR       build directory for moat (default build-bench/ in the repo)
#   -P CPUS      CPUs for the proxy under test (taskset list, default 0)
#   -L CPUS      CPUs for the load generators and the backend (default 1)
#   -g           handshake tests also send one GET and read the answer
#   --quick      smoke run: -d 1 -r 1 -n 500, and wait at most 20 s in all
#                for other processes to leave the cores (default 3 min)
#   --keep       keep the work directory (configurations, logs, raw output)
#
# Every process the script starts is stopped by its PID on exit, and every
# wait is bounded.  Traffic stays on 127.0.0.1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
orig_args="$*"

usage() { sed -n '/^# Usage:/,/^# Every process/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

duration=5 runs=3 workers=1 conns=50 hs_conc=32 idle_n=auto key=ec
targets="moat haproxy nginx hitch responder" out=bench-results.md chart="" moat_bin=""
build_dir="$root/build-bench" proxy_cpus=0 load_cpus="" hs_get=0 keep=0
bulk_kib=1024 bulk_conns=8
while [ $# -gt 0 ]; do
    case "$1" in
        -d) duration=$2; shift ;;
        -r) runs=$2; shift ;;
        -w) workers=$2; shift ;;
        -c) conns=$2; shift ;;
        -C) hs_conc=$2; shift ;;
        -n) idle_n=$2; shift ;;
        -k) key=$2; shift ;;
        -t) targets=$2; shift ;;
        -o) out=$2; shift ;;
        -p) chart=$2; shift ;;
        -m) moat_bin=$2; shift ;;
        -B) build_dir=$2; shift ;;
        -P) proxy_cpus=$2; shift ;;
        -L) load_cpus=$2; shift ;;
        -g) hs_get=1 ;;
        --quick) duration=1 runs=1 idle_n=500 quick=1 ;;
        --keep) keep=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
for v in "$duration" "$runs" "$workers" "$conns" "$hs_conc"; do
    [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] || { echo "bench: bad number: $v" >&2; exit 2; }
done
case "$key" in ec | rsa) ;; *) echo "bench: -k takes ec or rsa" >&2; exit 2 ;; esac
for t in $targets; do
    case "$t" in moat | haproxy | nginx | hitch | responder) ;; *) echo "bench: unknown target $t" >&2; exit 2 ;; esac
done
[ -n "$chart" ] || chart="${out%.md}.png"
ncpu=$(nproc)
[ -n "$load_cpus" ] || load_cpus=$((ncpu > 1 ? 1 : 0))
load_core=${load_cpus%%[,-]*}
proxy_core=${proxy_cpus%%[,-]*}

log() { echo "bench: $*" >&2; }

"$root/scripts/setup.sh" --bench

work=$(mktemp -d /tmp/moat-bench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/logs" "$work/res" "$work/www"
pids=()

# Every descendant of a PID (itself included).
tree_pids() {
    ps -e -o pid=,ppid= | awk -v r="$1" '
        { par[$1] = $2 }
        END {
            s[r] = 1; ch = 1
            while (ch) { ch = 0; for (p in par) if (!(p in s) && (par[p] in s)) { s[p] = 1; ch = 1 } }
            for (p in s) if (p in par) print p
        }'
}

stop_pid() { # PID: TERM to it and its descendants, KILL after 5 s
    local all p
    all=$(tree_pids "$1")
    [ -n "$all" ] || return 0
    for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && return 0
        sleep 0.1
    done
    for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
}

cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    wait 2>/dev/null || true
    if [ "$keep" -eq 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# More descriptors for the idle-connection test, as far as the hard limit goes.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=1048576
if [ "$idle_n" = auto ]; then
    # hitch needs two descriptors per connection (client and backend)
    idle_n=$(((nofile - 1000) / 2 / 100 * 100))
    [ "$idle_n" -gt 10000 ] && idle_n=10000
    [ "$idle_n" -lt 100 ] && idle_n=100
fi

# --- moat and the client ------------------------------------------------------
# The bundled wolfSSL's prefix as CMakeLists.txt computes it by default (the
# cache directory plus 12 hex digits of the SHA-256 of the SHA-256s of
# build-wolfssl.sh and the two hook headers), for a moat binary without a
# build directory beside it.
wolf_cache=${MOAT_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/moat}}
wolf_cache=${wolf_cache:-$HOME/.cache/moat}
wolf_recipe=$(cd "$root" && for f in scripts/build-wolfssl.sh proxy/rng.h proxy/gcm_vaes.h; do
    sha256sum "$f" | cut -c1-64; done | tr -d '\n' | sha256sum | cut -c1-12)
wolf_current="$wolf_cache/wolfssl-5.5.4-$wolf_recipe"
if [ -z "$moat_bin" ]; then
    log "building moat in $build_dir"
    "$root/scripts/build.sh" "$build_dir" >"$work/logs/build.log" 2>&1 || { tail -20 "$work/logs/build.log" >&2; exit 1; }
    moat_bin="$build_dir/moat"
fi
[ -x "$moat_bin" ] || { echo "bench: no moat binary at $moat_bin" >&2; exit 1; }
cc -O2 -Wall -o "$work/hsbench" "$root/scripts/bench/hsbench.c" -lssl -lcrypto
# The responder and the crypto floor use the wolfSSL build moat links.
# -m BINARY: the prefix its build directory names, else the current one
# (none when that build links Debian's libwolfssl: MOAT_WOLFSSL=system).
moat_cmake_cache="$(dirname "$moat_bin")/CMakeCache.txt"
wolf_prefix=$(sed -n 's/^MOAT_WOLFSSL_PREFIX_USED:INTERNAL=//p' "$moat_cmake_cache" 2>/dev/null || true)
if grep -q '^MOAT_WOLFSSL:STRING=system' "$moat_cmake_cache" 2>/dev/null; then
    wolf_prefix=/nonexistent
elif [ -z "$wolf_prefix" ]; then
    wolf_prefix=$wolf_current
    log "no CMakeCache.txt next to $moat_bin: assuming it links $wolf_prefix"
fi
if [ -n "$wolf_prefix" ] && [ -f "$wolf_prefix/lib/libwolfssl.a" ]; then
    for tool in responder cryptofloor; do
        cc -O2 -Wall -I "$wolf_prefix/include" -o "$work/$tool" "$root/scripts/bench/$tool.c" \
            "$wolf_prefix/lib/libwolfssl.a" "$root/proxy/rng.c" "$root/proxy/gcm_vaes.c" -lm -lpthread
    done
else
    wolf_prefix=""
    log "no bundled wolfSSL next to $moat_bin: no responder, no crypto floor"
    targets=$(echo " $targets " | sed 's/ responder / /; s/^ //; s/ $//')
fi

# --- certificate --------------------------------------------------------------
if [ "$key" = ec ]; then
    newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) cert_desc="ECDSA P-256"
else
    newkey=(-newkey rsa:2048) cert_desc="RSA-2048"
fi
openssl req -x509 "${newkey[@]}" -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/combined.pem"
chmod 600 "$work/key.pem" "$work/combined.pem"

# The same cipher preference everywhere (moat's default order): AES-128-GCM
# first, forward secrecy only; X25519 then P-256 for the key exchange.
ciphers12="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
ciphers13="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

# --- helpers ------------------------------------------------------------------
used_ports=" "
free_port() {
    local p listening
    listening=$(ss -Hltn | awk '{n = split($4, a, ":"); print a[n]}' | tr '\n' ' ')
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        case " $listening $used_ports " in *" $p "*) continue ;; esac
        used_ports="$used_ports$p "
        echo "$p"
        return 0
    done
    echo "bench: no free port" >&2
    exit 1
}

wait_port() { # PORT PID NAME
    for _ in $(seq 100); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "bench: $3 exited at start-up:" >&2
            tail -20 "$work/logs/$3.log" >&2
            exit 1
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: $3: nothing listening on port $1 after 10 s" >&2
    tail -20 "$work/logs/$3.log" >&2
    exit 1
}

start() { # NAME CPUS COMMAND...: starts pinned in the background; sets $started
    local name=$1 cpus=$2
    shift 2
    taskset -c "$cpus" "$@" >"$work/logs/$name.log" 2>&1 &
    started=$!
    pids+=("$started")
}

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # PID: user+system ticks of the process tree (all threads)
    local p line t=0 f
    for p in $(tree_pids "$1"); do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -r -a f <<<"${line##*) }"
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
}
rss_kib() { # PID: resident KiB summed over the process tree
    local p t=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
# "busy" leaves out niced time: a background job at nice 19 (a fuzzer, say)
# yields the core to the proxy and the client at once, so it neither counts
# as other load nor makes wait_quiet wait.
core_stat() { # CPU: "busy total" jiffies
    awk -v c="cpu$1" '$1 == c {b = $2 + $4 + $7 + $8 + $9; print b, b + $3 + $5 + $6}' /proc/stat
}
busy_pct() { # "busy total" before, after
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " ");
        d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0)}'
}
calc() { awk "BEGIN {printf \"$1\", ($2)}"; }

rec() { echo "$3" >>"$work/res/$1.$2"; }        # METRIC TARGET VALUE
med() {                                         # METRIC TARGET -> median or "-"
    [ -s "$work/res/$1.$2" ] || { echo "-"; return; }
    sort -g "$work/res/$1.$2" | awk '{a[NR] = $1} END {
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
flag() { echo "$1: $2" >>"$work/flags"; }       # TARGET TEXT
# CPU that something other than the proxy used on the proxy's core during a
# measurement (other sessions' builds, say): recorded, and flagged past 15 %.
other_load() { # TARGET TEST "busy total"-before after PROXY_CPU_S SECONDS
    local o
    o=$(calc %.0f "$(busy_pct "$3" "$4") - 100 * $5 / $6")
    [ "$o" -lt 0 ] && o=0
    rec other "$1" "$o"
}
# Other sessions may share the machine: before each measurement wait (within
# a budget of 3 minutes for the whole run) until both cores are quiet.  Once
# the budget is spent, the rest of the run measures at once (said once; the
# "other load" figures and notes then show which figures were disturbed).
quiet_budget=180
[ "${quick:-0}" -eq 0 ] || quiet_budget=20
wait_quiet() {
    local a0 b0 a1 b1 pa pb said=0
    [ "$quiet_budget" -gt 0 ] || return 0
    while :; do
        a0=$(core_stat "$proxy_core") b0=$(core_stat "$load_core")
        sleep 1
        a1=$(core_stat "$proxy_core") b1=$(core_stat "$load_core")
        pa=$(busy_pct "$a0" "$a1") pb=$(busy_pct "$b0" "$b1")
        [ "$pa" -le 10 ] && [ "$pb" -le 10 ] && return 0
        quiet_budget=$((quiet_budget - 1))
        if [ "$quiet_budget" -le 0 ]; then
            log "  the machine stays busy (CPU $proxy_core $pa %, CPU $load_core $pb %): measuring at once from now on"
            return 0
        fi
        [ "$said" -eq 1 ] || log "  waiting for other processes to leave the cores (CPU $proxy_core $pa %, CPU $load_core $pb %)"
        said=1
    done
}
kv() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; } # LINE KEY

# --- backend ------------------------------------------------------------------
head -c $((bulk_kib * 1024)) /dev/urandom >"$work/www/bulk.bin"
chmod -R a+rX "$work/www"
body="hello from the backend"
backend_port=$(free_port)
wconns=$((nofile - 200))
mkdir -p "$work/backend/logs"
cat >"$work/backend/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
error_log $work/backend/logs/error.log error;
pid $work/backend/nginx.pid;
events { worker_connections $wconns; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_header_timeout 300s;
    client_body_temp_path $work/backend/body;
    proxy_temp_path $work/backend/proxy;
    fastcgi_temp_path $work/backend/fastcgi;
    uwsgi_temp_path $work/backend/uwsgi;
    scgi_temp_path $work/backend/scgi;
    server {
        listen 127.0.0.1:$backend_port backlog=4096;
        location / { return 200 "$body\n"; }
        location = /bulk.bin { root $work/www; }
    }
}
NGINX
start backend "$load_cpus" nginx -p "$work/backend" -c "$work/backend/nginx.conf"
wait_port "$backend_port" "$started" backend

# --- the TLS terminators --------------------------------------------------------
# Three variants of each: "main" (session cache and tickets on), "noticket"
# (tickets off: TLS 1.2 session-ID resumption), "nocache" (session-ID cache
# off: TLS 1.2 ticket resumption).  hitch has neither switch, so its main
# instance serves all three (see the notes in the results).
variants="main noticket nocache"
declare -A tport tpid

start_moat() { # VARIANT PORT
    local size=20480 tickets=true
    [ "$1" = noticket ] && tickets=false
    [ "$1" = nocache ] && size=0
    cat >"$work/moat-$1.yaml" <<YAML
workers: $workers
listeners:
  - name: bench
    bind: "127.0.0.1:$2"
    tls:
      certificates:
        - cert: $work/cert.pem
          key: $work/key.pem
      min_version: "1.2"
      alpn: ["http/1.1"]
      session_cache: {size: $size, timeout: 300s}
      session_tickets: {enabled: $tickets, key_file: null, rotate: 12h}
routes:
  - path: /
    upstream: backend
upstreams:
  backend:
    servers: ["127.0.0.1:$backend_port"]
    keepalive: 64
timeouts:
  client_header: 60s
  client_idle: 120s
forwarding:
  hsts: null
log:
  access: null
  level: warn
YAML
    start "moat-$1" "$proxy_cpus" "$moat_bin" -c "$work/moat-$1.yaml"
}

# HAProxy wants two descriptors per connection and refuses to start when
# maxconn does not fit in the descriptor limit
hap_maxconn=$((idle_n + 1000))
[ "$hap_maxconn" -le $(((nofile - 200) / 2)) ] || hap_maxconn=$(((nofile - 200) / 2))
start_haproxy() {
    local cache=20480 tickets=""
    [ "$1" = noticket ] && tickets=" no-tls-tickets"
    [ "$1" = nocache ] && cache=0
    cat >"$work/haproxy-$1.cfg" <<HAP
global
    nbthread $workers
    maxconn $hap_maxconn
    tune.ssl.cachesize $cache
    tune.ssl.lifetime 300
    ssl-default-bind-ciphers $ciphers12
    ssl-default-bind-ciphersuites $ciphers13
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 120s
    option http-keep-alive
    http-reuse always
frontend bench
    bind 127.0.0.1:$2 ssl crt $work/combined.pem alpn http/1.1 curves X25519:P-256$tickets
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend backend
backend backend
    server b1 127.0.0.1:$backend_port
HAP
    start "haproxy-$1" "$proxy_cpus" haproxy -db -f "$work/haproxy-$1.cfg"
}

start_nginx() {
    local cache="shared:SSL:5m" tickets=on reuse=""
    [ "$1" = noticket ] && tickets=off
    [ "$1" = nocache ] && cache=off
    [ "$workers" -gt 1 ] && reuse=" reuseport"
    local d="$work/nginx-$1"
    mkdir -p "$d/logs"
    cat >"$d/nginx.conf" <<NGINX
worker_processes $workers;
worker_rlimit_nofile $nofile;
daemon off;
error_log $d/logs/error.log error;
pid $d/nginx.pid;
events { worker_connections $wconns; }
http {
    access_log off;
    server_tokens off;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    client_header_timeout 60s;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $ciphers12;
    ssl_conf_command Ciphersuites $ciphers13;
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve X25519:prime256v1;
    ssl_session_cache $cache;
    ssl_session_timeout 300s;
    ssl_session_tickets $tickets;
    upstream backend {
        server 127.0.0.1:$backend_port;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:$2 ssl backlog=4096$reuse;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffer_size 16k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;
            proxy_max_temp_file_size 0;
        }
    }
}
NGINX
    start "nginx-$1" "$proxy_cpus" nginx -p "$d" -c "$d/nginx.conf"
}

start_responder() {
    start "responder-$1" "$proxy_cpus" "$work/responder" "$2" "$work/cert.pem" "$work/key.pem" \
        "$workers" $((bulk_kib * 1024))
}

start_hitch() {
    cat >"$work/hitch-$1.conf" <<HITCH
frontend = "[127.0.0.1]:$2"
backend = "[127.0.0.1]:$backend_port"
pem-file = "$work/combined.pem"
workers = $workers
backlog = 4096
ciphers = "$ciphers12"
ciphersuites = "$ciphers13"
prefer-server-ciphers = on
ecdh-curve = "X25519:prime256v1"
tls-protos = TLSv1.2 TLSv1.3
alpn-protos = "http/1.1"
daemon = off
log-level = 1
user = "nobody"
HITCH
    start "hitch-$1" "$proxy_cpus" hitch --config="$work/hitch-$1.conf"
}

declare -A label version
label[moat]=moat label[haproxy]=HAProxy label[nginx]=nginx label[hitch]=hitch
label[responder]="wolfSSL responder"
version[moat]=$("$moat_bin" -V | awk 'NR == 1 {print $2}')
version[haproxy]=$(haproxy -v | awk 'NR == 1 {sub(/-.*/, "", $3); print $3}')
version[nginx]=$(nginx -v 2>&1 | sed 's/.*nginx\///; s/ .*//')
version[hitch]=$(hitch -V 2>&1 | awk '{print $2}')
version[responder]="(floor)"

for t in $targets; do
    for v in $variants; do
        if { [ "$t" = hitch ] || [ "$t" = responder ]; } && [ "$v" != main ]; then
            tport[$t.$v]=${tport[$t.main]} tpid[$t.$v]=${tpid[$t.main]}
            continue
        fi
        port=$(free_port)
        "start_$t" "$v" "$port"
        tport[$t.$v]=$port tpid[$t.$v]=$started
        wait_port "$port" "$started" "$t-$v"
    done
done

# --- checks: every target really terminates TLS and proxies -----------------------
declare -A negotiated
for t in $targets; do
    for v in $variants; do
        p=${tport[$t.$v]}
        got=$(curl -sk --max-time 5 "https://127.0.0.1:$p/" || true)
        [ "$got" = "$body" ] || { echo "bench: $t ($v) on port $p answered '$got', not the backend's body" >&2; exit 1; }
    done
    p=${tport[$t.main]}
    size=$(curl -sk --max-time 10 -o /dev/null -w '%{size_download}' "https://127.0.0.1:$p/bulk.bin" || true)
    [ "$size" = $((bulk_kib * 1024)) ] || { echo "bench: $t: bulk download was $size bytes" >&2; exit 1; }
    l13=$(timeout 20 "$work/hsbench" -p "$p" -d 0.3 -c 1 -v 1.3 -m full)
    l12=$(timeout 20 "$work/hsbench" -p "$p" -d 0.3 -c 1 -v 1.2 -m full)
    negotiated[$t]="$(kv "$l13" proto) $(kv "$l13" cipher) $(kv "$l13" group); $(kv "$l12" proto) $(kv "$l12" cipher) $(kv "$l12" group)"
    [ "$(kv "$l13" proto)" = TLSv1.3 ] && [ "$(kv "$l12" proto)" = TLSv1.2 ] ||
        { echo "bench: $t: handshake check failed: $l13 / $l12" >&2; exit 1; }
done

# --- measurements -----------------------------------------------------------------
wrk_parse() { # wrk output on stdin -> "rps p50ms p99ms requests bytes seconds errors"
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
                         if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
        function bytes(v) { if (v ~ /GB$/) return v * 1073741824; if (v ~ /MB$/) return v * 1048576
                            if (v ~ /KB$/) return v * 1024; return v + 0 }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
        / requests in / { gsub(/,/, ""); req = $1; secs = ms($4) / 1000; b = bytes($5) }
        /Non-2xx/ { err += $NF }
        /Socket errors/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        END { printf "%.0f %.3f %.3f %d %.0f %.3f %d\n", rps, p50, p99, req, b, secs, err }'
}

run_wrk() { # TARGET URL CONNS -> wrk_parse line + " proxy_cpu_s load_busy proxy_busy"
    local pid=${tpid[$1.main]} c0 c1 l0 l1 p0 p1 res
    c0=$(cpu_ticks "$pid") l0=$(core_stat "$load_core") p0=$(core_stat "$proxy_core")
    res=$(timeout $((duration + 30)) taskset -c "$load_cpus" wrk -t1 -c"$3" -d"${duration}s" --latency "$2" 2>&1 | wrk_parse || true)
    c1=$(cpu_ticks "$pid") l1=$(core_stat "$load_core") p1=$(core_stat "$proxy_core")
    echo "$res $(calc %.3f "($c1 - $c0) / $clk_tck") $(busy_pct "$l0" "$l1") $p0 $p1"
}

measure_keepalive() { # TARGET
    local r
    wait_quiet
    r=$(run_wrk "$1" "https://127.0.0.1:${tport[$1.main]}/" "$conns")
    set -- "$1" $r
    rec ka_rps "$1" "$2"
    rec ka_p50 "$1" "$3"
    rec ka_p99 "$1" "$4"
    rec ka_pcs "$1" "$(calc %.0f "$9 > 0 ? $5 / $9 : 0")"
    rec ka_pcore "$1" "$(calc %.0f "100 * $9 / $7")"
    rec ka_load "$1" "${10}"
    other_load "$1" keep-alive "${11} ${12}" "${13} ${14}" "$9" "$7"
    [ "$8" -eq 0 ] || flag "$1" "keep-alive: $8 failed requests or socket errors"
    log "  keep-alive: $2 req/s, p99 $4 ms, proxy CPU $9 s, load core ${10}%"
}

measure_bulk() {
    local r
    wait_quiet
    r=$(run_wrk "$1" "https://127.0.0.1:${tport[$1.main]}/bulk.bin" "$bulk_conns")
    set -- "$1" $r
    rec bulk_mbs "$1" "$(calc %.0f "$6 / $7 / 1e6")"
    rec bulk_pcs "$1" "$(calc %.0f "$9 > 0 ? $6 / $9 / 1e6 : 0")"
    rec bulk_load "$1" "${10}"
    other_load "$1" bulk "${11} ${12}" "${13} ${14}" "$9" "$7"
    [ "$8" -eq 0 ] || flag "$1" "bulk: $8 failed requests or socket errors"
    log "  bulk: $(calc %.0f "$6 / $7 / 1e6") MB/s, proxy CPU $9 s, load core ${10}%"
}

# kind -> variant, TLS version, client mode
declare -A hs_variant=([t13full]=main [t13res]=main [t12full]=main [t12id]=noticket [t12tkt]=nocache)
declare -A hs_version=([t13full]=1.3 [t13res]=1.3 [t12full]=1.2 [t12id]=1.2 [t12tkt]=1.2)
declare -A hs_mode=([t13full]=full [t13res]=ticket [t12full]=full [t12id]=id [t12tkt]=ticket)
declare -A hs_name=([t13full]="TLS 1.3 full" [t13res]="TLS 1.3 resumed (PSK ticket)" [t12full]="TLS 1.2 full"
    [t12id]="TLS 1.2 resumed, session ID" [t12tkt]="TLS 1.2 resumed, ticket")
hs_kinds="t13full t13res t12full t12id t12tkt"

measure_hs() { # TARGET KIND
    local t=$1 k=$2 v=${hs_variant[$2]} pid port c0 c1 l0 l1 p0 p1 line n res cpu get=()
    pid=${tpid[$t.$v]} port=${tport[$t.$v]}
    [ "$hs_get" -eq 1 ] && get=(-g)
    wait_quiet
    c0=$(cpu_ticks "$pid") l0=$(core_stat "$load_core") p0=$(core_stat "$proxy_core")
    line=$(timeout $((duration + 30)) taskset -c "$load_cpus" "$work/hsbench" -p "$port" -d "$duration" \
        -c "$hs_conc" -v "${hs_version[$k]}" -m "${hs_mode[$k]}" "${get[@]}" 2>>"$work/logs/hsbench.log" || true)
    c1=$(cpu_ticks "$pid") l1=$(core_stat "$load_core") p1=$(core_stat "$proxy_core")
    echo "$t $k $line" >>"$work/logs/hsbench.log"
    n=$(kv "$line" handshakes) res=$(kv "$line" resumed)
    [ -n "$n" ] || { flag "$t" "${hs_name[$k]}: the client failed"; return; }
    cpu=$(calc %.3f "($c1 - $c0) / $clk_tck")
    rec "hs_${k}_rate" "$t" "$(kv "$line" rate)"
    rec "hs_${k}_pcs" "$t" "$(calc %.0f "$cpu > 0 ? $n / $cpu : 0")"
    rec "hs_${k}_res" "$t" "$(calc %.2f "$n > 0 ? 100 * $res / $n : 0")"
    rec "hs_${k}_client" "$t" "$(calc %.0f "100 * $(kv "$line" client_cpu)")"
    rec "hs_${k}_load" "$t" "$(busy_pct "$l0" "$l1")"
    other_load "$t" "${hs_name[$k]}" "$p0" "$p1" "$cpu" "$(kv "$line" seconds)"
    local bad=$(($(kv "$line" errors) + $(kv "$line" timeouts) + $(kv "$line" wrong_version) + $(kv "$line" no_ticket)))
    [ "$bad" -eq 0 ] || flag "$t" "${hs_name[$k]}: $bad errors/timeouts/missing tickets (first: $(kv "$line" first_error))"
    [ "$hs_get" -eq 0 ] || [ "$(kv "$line" bad_responses)" -eq 0 ] ||
        flag "$t" "${hs_name[$k]}: $(kv "$line" bad_responses) bad responses"
    local reused
    reused=$(kv "$line" reused_tickets)
    [ $((reused * 100)) -le "$n" ] ||
        flag "$t" "${hs_name[$k]}: the client ran out of unused tickets and offered $reused tickets a second time"
    [ "${hs_mode[$k]}" != id ] || [ "$(kv "$line" ticket_sessions)" -eq 0 ] ||
        flag "$t" "${hs_name[$k]}: the client offered tickets"
    [ "${hs_mode[$k]}" != ticket ] || [ "$(kv "$line" id_sessions)" -eq 0 ] ||
        flag "$t" "${hs_name[$k]}: the client offered sessions without a ticket"
    if [ "${hs_mode[$k]}" = full ]; then
        [ "$res" -eq 0 ] || flag "$t" "${hs_name[$k]}: $res of $n handshakes resumed although no session was offered"
    elif [ "$n" -eq 0 ] || [ $((res * 100)) -lt $((n * 95)) ]; then
        flag "$t" "${hs_name[$k]}: only $res of $n handshakes resumed (NOT a resumption figure)"
    elif [ "$res" -lt "$n" ]; then
        flag "$t" "${hs_name[$k]}: $((n - res)) of $n offered sessions were not resumed"
    fi
    log "  ${hs_name[$k]}: $(kv "$line" rate)/s, resumed $res/$n, proxy CPU $cpu s, client CPU $(kv "$line" client_cpu)"
}

# A fresh instance for each memory measurement: a process that served
# thousands of connections before keeps their freed memory, and "RSS after -
# RSS before" would then count almost nothing.
restart_main() { # TARGET
    local t=$1 old=${tpid[$1.main]} v i keep=()
    stop_pid "$old"
    for i in "${!pids[@]}"; do [ "${pids[$i]}" = "$old" ] || keep+=("${pids[$i]}"); done
    pids=("${keep[@]}")
    "start_$t" main "${tport[$t.main]}"
    for v in $variants; do [ "${tpid[$t.$v]}" = "$old" ] && tpid[$t.$v]=$started; done
    wait_port "${tport[$t.main]}" "$started" "$t-main"
    # warm-up: whatever is allocated once, on the first connections
    timeout 30 taskset -c "$load_cpus" "$work/hsbench" -p "${tport[$t.main]}" -d 1 -c 8 -m full >/dev/null 2>&1 || true
}

measure_idle() { # TARGET
    restart_main "$1"
    local t=$1 pid=${tpid[$1.main]} port=${tport[$1.main]} r0 r1 held hpid line=""
    wait_quiet
    r0=$(rss_kib "$pid")
    start "hold-$t" "$load_cpus" "$work/hsbench" -p "$port" -d 300 -c 64 -v 1.3 -m full -H "$idle_n"
    hpid=$started
    for _ in $(seq 1200); do # at most 120 s to open them
        line=$(grep -m1 '^ready' "$work/logs/hold-$t.log" 2>/dev/null || true)
        [ -n "$line" ] && break
        kill -0 "$hpid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        flag "$t" "idle connections: the client did not get its connections up in time"
        stop_pid "$hpid"
        return
    fi
    sleep 2
    r1=$(rss_kib "$pid")
    held=$(ss -Htn state established "( sport = :$port )" | wc -l)
    stop_pid "$hpid"
    [ "$held" -ge $((idle_n * 99 / 100)) ] ||
        flag "$t" "idle connections: only $held of $idle_n still open on the server side ($line)"
    [ "$held" -gt 0 ] || return 0
    rec idle_kib "$t" "$(calc %.1f "($r1 - $r0) / $held")"
    rec idle_held "$t" "$held"
    rec idle_before "$t" "$(calc %.1f "$r0 / 1024")"
    rec idle_after "$t" "$(calc %.1f "$r1 / 1024")"
    log "  idle: $held connections, RSS $r0 -> $r1 KiB, $(calc %.1f "($r1 - $r0) / $held") KiB each"
    # let the server side drain before the next test (at most 15 s)
    for _ in $(seq 150); do
        [ "$(ss -Htn state established "( sport = :$port )" | wc -l)" -lt 10 ] && break
        sleep 0.1
    done
}

crypto=""
if [ -n "$wolf_prefix" ]; then
    wait_quiet
    crypto=$(timeout 120 taskset -c "$proxy_core" "$work/cryptofloor" 2 "$key" | tr '\n' ' ' || true)
    log "crypto floor: $crypto"
fi
t_start=$(date +%s)
log "targets: $targets; $workers worker(s) on CPU $proxy_cpus; load on CPU $load_cpus; ${duration}s x $runs runs; $idle_n idle connections"
for t in $targets; do # warm-up, not recorded
    timeout 30 taskset -c "$load_cpus" wrk -t1 -c"$conns" -d1s "https://127.0.0.1:${tport[$t.main]}/" >/dev/null 2>&1 || true
    timeout 30 taskset -c "$load_cpus" "$work/hsbench" -p "${tport[$t.main]}" -d 1 -m ticket >/dev/null 2>&1 || true
done
for run in $(seq "$runs"); do
    for t in $targets; do
        log "run $run/$runs: $t"
        measure_keepalive "$t"
        for k in $hs_kinds; do measure_hs "$t" "$k"; done
        measure_bulk "$t"
        measure_idle "$t"
    done
done
elapsed=$(($(date +%s) - t_start))

# --- report -----------------------------------------------------------------------
peers=""
for t in $targets; do [ "$t" = moat ] || [ "$t" = responder ] || peers="$peers $t"; done
floor=""
case " $targets " in *" moat "*" responder "* | *" responder "*" moat "*) floor=responder ;; esac

# ratio: moat / best peer; DIR = hi (higher is better) or lo
ratio() { # METRIC DIR
    local m b="" v
    m=$(med "$1" moat)
    for t in $peers; do
        v=$(med "$1" "$t")
        [ "$v" = - ] && continue
        if [ -z "$b" ]; then b=$v
        elif [ "$2" = hi ]; then b=$(calc %s "$v > $b ? $v : $b")
        else b=$(calc %s "$v < $b ? $v : $b"); fi
    done
    if [ "$m" = - ] || [ -z "$b" ] || [ "$(calc %d "$b == 0")" = 1 ]; then echo "-"; else calc %.2f "$m / $b"; fi
}
fmt() { # VALUE PRINTF-FORMAT
    [ "$1" = - ] && { echo "-"; return; }
    calc "$2" "$1"
}
header_row() {
    local h="| |" s="|---|"
    for t in $targets; do h="$h ${label[$t]} ${version[$t]} |"; s="$s---:|"; done
    [ -n "$peers" ] && h="$h moat / best peer |" s="$s---:|"
    [ -n "$floor" ] && h="$h moat / floor |" s="$s---:|"
    echo "$h"
    echo "$s"
}
# The header of a table with one column per target and no ratio columns.
names_row() {
    local h="| |" s="|---|"
    for t in $targets; do h="$h ${label[$t]} |"; s="$s---:|"; done
    echo "$h"
    echo "$s"
}
floor_ratio() { # METRIC
    local m f
    m=$(med "$1" moat) f=$(med "$1" responder)
    if [ "$m" = - ] || [ "$f" = - ] || [ "$(calc %d "$f == 0")" = 1 ]; then echo "-"
    else calc %.0f%% "100 * $m / $f"; fi
}
row() { # TITLE METRIC FORMAT DIR(hi|lo|-) [MARK-METRIC]
    local line="| $1 |" v mark
    for t in $targets; do
        v=$(fmt "$(med "$2" "$t")" "$3")
        mark=""
        if [ -n "${5:-}" ] && [ "$(med "$5" "$t")" != - ] && [ "$(calc %d "$(med "$5" "$t") >= 90")" = 1 ]; then
            mark=" †"
            saturated=1
        fi
        line="$line $v$mark |"
    done
    if [ -n "$peers" ]; then
        if [ "$4" = - ]; then line="$line |"; else line="$line $(ratio "$2" "$4") |"; fi
    fi
    if [ -n "$floor" ]; then
        if [ "$4" = - ]; then line="$line |"; else line="$line $(floor_ratio "$2") |"; fi
    fi
    echo "$line"
}

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
run_date=$(date -u '+%Y-%m-%d %H:%M UTC')
saturated=0
{
    echo "# moat benchmark: $run_date · $cpu_model ($ncpu CPUs) · $workers worker(s) per proxy"
    echo
    echo "Each proxy terminates TLS ($cert_desc certificate) in front of the same plain-HTTP nginx backend"
    echo "on 127.0.0.1, pinned with taskset to CPU $proxy_cpus; the load generators and the backend share CPU $load_cpus."
    echo "Every figure is the median of $runs run(s) of ${duration} s; targets are interleaved run by run."
    echo "Proxy CPU is utime+stime from /proc of the proxy's processes and threads, summed."
    echo "Ratio column: moat / best peer (best = highest; lowest for latency and memory)."
    [ -z "$floor" ] || echo "Floor column: moat as a % of the wolfSSL responder, a TLS server on moat's own wolfSSL build that answers by itself (no proxying): what moat costs above the TLS library."
    echo "† = the client's core was ≥ 90 % busy: that figure is a lower bound set by the client;"
    echo "compare the per-proxy-CPU-second figures instead."
    echo
    echo "Negotiated (TLS 1.3; TLS 1.2): $(for t in $targets; do printf '%s: %s. ' "${label[$t]}" "${negotiated[$t]}"; done)"
    echo
    if [ -n "$crypto" ]; then
        echo "## Crypto floor (one core, the same wolfSSL build: scripts/bench/cryptofloor.c)"
        echo
        if [ "$key" = rsa ]; then
            echo "| X25519 key exchanges/s | P-256 ECDHE/s | ECDSA P-256 signatures/s | RSA-2048 PSS signatures/s | X25519 + RSA-2048 signature (one full TLS 1.3 handshake's public-key work)/s | AES-128-GCM MB/s (16 KiB records) |"
            echo "|---:|---:|---:|---:|---:|---:|"
            echo "| $(kv "$crypto" x25519_per_s) | $(kv "$crypto" p256_ecdhe_per_s) | $(kv "$crypto" ecdsa_p256_sign_per_s) | $(kv "$crypto" rsa2048_sign_per_s) | $(kv "$crypto" full_hs_floor_per_s) | $(kv "$crypto" aes128gcm_mb_s) |"
        else
            echo "| X25519 key exchanges/s | P-256 ECDHE/s | ECDSA P-256 signatures/s | X25519 + ECDSA (one full TLS 1.3 handshake's public-key work)/s | AES-128-GCM MB/s (16 KiB records) |"
            echo "|---:|---:|---:|---:|---:|"
            echo "| $(kv "$crypto" x25519_per_s) | $(kv "$crypto" p256_ecdhe_per_s) | $(kv "$crypto" ecdsa_p256_sign_per_s) | $(kv "$crypto" full_hs_floor_per_s) | $(kv "$crypto" aes128gcm_mb_s) |"
        fi
        echo
        echo "A key exchange is a fresh key pair plus the shared secret (the server's side of one handshake)."
        echo
    fi
    echo "## Keep-alive small requests (wrk -t1 -c$conns, TLS 1.3, $((${#body} + 1))-byte body)"
    echo
    header_row
    row "requests/s" ka_rps %.0f hi ka_load
    row "p50 latency, ms" ka_p50 %.3f lo
    row "p99 latency, ms" ka_p99 %.3f lo
    row "requests per proxy CPU-second" ka_pcs %.0f hi
    row "proxy CPU, % of a core" ka_pcore %.0f -
    row "load-generator core busy, %" ka_load %.0f -
    echo
    echo "## TLS handshakes per second (hsbench: OpenSSL $(openssl version | awk '{print $2}') client, $hs_conc in flight, X25519$([ "$hs_get" -eq 1 ] && echo ", one GET each"))"
    echo
    header_row
    for k in $hs_kinds; do row "${hs_name[$k]}" "hs_${k}_rate" %.0f hi "hs_${k}_client"; done
    echo
    echo "## TLS handshakes per proxy CPU-second (what one proxy core sustains)"
    echo
    header_row
    for k in $hs_kinds; do row "${hs_name[$k]}" "hs_${k}_pcs" %.0f hi; done
    echo
    echo "## Handshake verification: % of handshakes resumed (client CPU %)"
    echo
    echo "Full handshakes offer no session and must show 0 %; resumed ones must show ~100 %."
    echo "TLS 1.2 resumptions offer the newest session the server issued (session ID or ticket);"
    echo "TLS 1.3 resumptions offer each ticket once, as browsers do (a server may refuse a reused one)."
    echo
    names_row
    for k in $hs_kinds; do
        line="| ${hs_name[$k]} |"
        for t in $targets; do
            line="$line $(fmt "$(med "hs_${k}_res" "$t")" %.1f) % ($(fmt "$(med "hs_${k}_client" "$t")" %.0f) %) |"
        done
        echo "$line"
    done
    echo
    echo "## Bulk download (wrk -t1 -c$bulk_conns, ${bulk_kib} KiB response, TLS 1.3)"
    echo
    header_row
    row "MB/s" bulk_mbs %.0f hi bulk_load
    row "MB per proxy CPU-second" bulk_pcs %.0f hi
    row "load-generator core busy, %" bulk_load %.0f -
    echo
    echo "## Memory per idle TLS connection ($idle_n connections, TLS 1.3, handshake done, then idle)"
    echo
    echo "Each measurement restarts the proxy, warms it up with a few connections, then opens the idle ones."
    echo
    header_row
    row "KiB per connection" idle_kib %.1f lo
    row "connections open on the server side" idle_held %.0f -
    row "proxy RSS before, MiB" idle_before %.1f -
    row "proxy RSS after, MiB" idle_after %.1f -
    echo
    echo "## Conditions"
    echo
    names_row
    line="| other load on the proxy core, % (median; max) |"
    for t in $targets; do
        line="$line $(med other "$t"); $( [ -s "$work/res/other.$t" ] && sort -n "$work/res/other.$t" | tail -1 || echo -) |"
    done
    echo "$line"
    echo
    echo "## Notes"
    echo
    if [ "$saturated" -eq 1 ]; then
        echo "- † marks figures where the client's core was saturated: the proxy had CPU to spare."
    fi
    case " $targets " in *" hitch "*)
        echo "- hitch (Debian's build) can switch off neither its tickets nor OpenSSL's per-process session"
        echo "  cache, so all its handshake figures come from one instance; its TLS 1.2 session-ID figure"
        echo "  uses a client that refuses tickets.  hitch forwards raw TCP: one backend connection per"
        echo "  client connection, so its handshakes also cost the backend an accept."
        if [ "$workers" -gt 1 ]; then
            echo "- hitch with $workers workers: Debian's hitch is built without its shared session cache"
            echo "  (no session-cache setting), so each worker process keeps its own OpenSSL cache and a"
            echo "  TLS 1.2 session ID resumes only when it lands on the worker that issued it (about 1/$workers)."
        fi ;;
    esac
    case " $targets " in *" responder "*)
        echo "- The wolfSSL responder uses wolfSSL's own session cache and default ticket keys, one"
        echo "  instance for every handshake figure; it answers each request itself, so its keep-alive"
        echo "  and bulk figures involve no backend at all." ;;
    esac
    if [ "$workers" -gt 1 ] && [ "$proxy_cpus" = 0 ]; then
        echo "- $workers workers share CPU 0: this shows the overhead of more workers, not scaling"
        echo "  (-P 0-1 gives the proxy both cores, shared with the client)."
    fi
    for t in $targets; do
        [ -s "$work/res/other.$t" ] || continue
        n=$(awk '$1 > 15' "$work/res/other.$t" | wc -l)
        [ "$n" -eq 0 ] || echo "- ${label[$t]}: in $n of $(wc -l <"$work/res/other.$t") measurements other processes used more than 15 % of the proxy's core (max $(sort -n "$work/res/other.$t" | tail -1) %): those figures are disturbed."
    done
    if [ -s "$work/flags" ]; then
        sort "$work/flags" | uniq -c | sed 's/^ *\([0-9]*\) \(.*\)/- \2 (in \1 run(s))/'
    else
        echo "- Every handshake figure was verified: no errors, full handshakes never resumed, resumed ones always did."
    fi
    echo "- Command: \`scripts/bench.sh $orig_args\` ($(( elapsed / 60 )) min $(( elapsed % 60 )) s of measurement)."
} >"$out.tmp"
mv "$out.tmp" "$out"

# --- chart ------------------------------------------------------------------------
declare -A color=([moat]=$((16#d62728)) [haproxy]=$((16#1f77b4)) [nginx]=$((16#2ca02c)) [hitch]=$((16#9467bd))
    [responder]=$((16#7f7f7f)))
nan() { [ "$1" = - ] && echo NaN || echo "$1"; }
{
    for spec in ka_rps:ka_pcs hs_t13full_rate:hs_t13full_pcs hs_t13res_rate:hs_t13res_pcs \
        hs_t12id_rate:hs_t12id_pcs bulk_mbs:bulk_pcs idle_kib:; do
        a=${spec%%:*} b=${spec#*:}
        for t in $targets; do
            echo "\"${label[$t]}\" $(nan "$(med "$a" "$t")") $([ -n "$b" ] && nan "$(med "$b" "$t")" || echo NaN) ${color[$t]}"
        done
        printf '\n\n'
    done
} >"$work/chart.dat"
cat >"$work/chart.gp" <<GP
set terminal pngcairo size 1500,900 font ",10"
set output "$chart"
set multiplot layout 2,3 title "moat vs HAProxy, nginx, hitch: $run_date, $cpu_model, $workers worker(s), proxy on CPU $proxy_cpus\n(solid: measured; hatched: per proxy CPU-second, what one proxy core sustains)" font ",12"
set style fill solid 0.85 border -1
set grid ytics
set yrange [0:*]
set xrange [-0.6:$(($(echo $targets | wc -w) - 1)).6]
unset key
set format y "%.0f"
bw = 0.38
set offsets 0, 0, graph 0.08, 0
set title "keep-alive requests/s (wrk, TLS 1.3)"
do for [n=0:3] {
    if (n > 0) {
        set title (n == 1 ? "TLS 1.3 full handshakes/s" : n == 2 ? "TLS 1.3 resumed handshakes/s (PSK)" : "TLS 1.2 resumed handshakes/s (session ID)")
    }
    plot "$work/chart.dat" index n using (\$0 - 0.2):2:(bw):4:xtic(1) with boxes lc rgb variable, \
         "" index n using (\$0 + 0.2):3:(bw):4 with boxes lc rgb variable fill pattern 4, \
         "" index n using (\$0 - 0.2):2:(sprintf("%.0f", \$2)) with labels offset 0,0.7 font ",8", \
         "" index n using (\$0 + 0.2):3:(sprintf("%.0f", \$3)) with labels offset 0,0.7 font ",8"
}
set title "bulk download MB/s (1 MiB responses)"
plot "$work/chart.dat" index 4 using (\$0 - 0.2):2:(bw):4:xtic(1) with boxes lc rgb variable, \
     "" index 4 using (\$0 + 0.2):3:(bw):4 with boxes lc rgb variable fill pattern 4, \
     "" index 4 using (\$0 - 0.2):2:(sprintf("%.0f", \$2)) with labels offset 0,0.7 font ",8", \
     "" index 4 using (\$0 + 0.2):3:(sprintf("%.0f", \$3)) with labels offset 0,0.7 font ",8"
set title "KiB per idle TLS connection ($idle_n open; lower is better)"
plot "$work/chart.dat" index 5 using 0:2:(0.6):4:xtic(1) with boxes lc rgb variable, \
     "" index 5 using 0:2:(sprintf("%.1f", \$2)) with labels offset 0,0.7 font ",9"
unset multiplot
GP
gnuplot "$work/chart.gp" 2>"$work/logs/gnuplot.log" || { log "gnuplot failed:"; cat "$work/logs/gnuplot.log" >&2; }

cat "$out"
log "results: $out; chart: $chart ($((elapsed / 60)) min $((elapsed % 60)) s)"
