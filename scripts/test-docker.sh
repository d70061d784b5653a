#!/usr/bin/env bash
# moat's container image, tested for real with podman (there is no Docker
# engine or registry here; see ../shared/ENVIRONMENT.md, "Containers"):
#
#  1. installs podman (scripts/setup.sh --docker), makes the
#     docker.io/library/debian:bookworm-slim base image with debootstrap if it
#     is missing, and builds docker/Dockerfile as localhost/moat;
#  2. builds a tiny backend image (docker/test-backend.c, static, FROM scratch);
#  3. runs the backend with --network host on loopback and moat as its sidecar
#     in the same network namespace (--network container:...), configured by
#     environment variables, certificates mounted read-only;
#  4. checks HTTPS through it, X-Forwarded-Proto, the image's HEALTHCHECK, the
#     non-root user, a certificate swap applied by `podman kill --signal HUP`,
#     ticket resumption across two replicas sharing a key file, a Kubernetes-
#     style Secret swap picked up by the watcher, names resolved from
#     /etc/hosts and from a DNS server, the YAML way, a prompt `podman stop`
#     with exit code 0, and the image size (< 8 MB).
#
# Every step has a timeout; every container (and the DNS responder) is
# removed, by name or PID, on success and on failure.  Traffic stays on
# 127.0.0.1.  Environment: MOAT_TEST_TIMEOUT_SCALE multiplies the timeouts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E "$0" "$@" # podman here runs rootful (runc, cgroupfs)
fi

scale=${MOAT_TEST_TIMEOUT_SCALE:-1}
t() { echo $(($1 * scale)); } # a timeout in seconds, scaled
start=$(date +%s)
step() { printf '== [%3ss] %s\n' "$(($(date +%s) - start))" "$*"; }
fail() {
    echo "test-docker: FAIL: $*" >&2
    exit 1
}
ok() { echo "   ok: $*"; }

base=docker.io/library/debian:bookworm-slim
image=localhost/moat
backend_image=localhost/moat-test-backend
pod=(podman --runtime runc --cgroup-manager cgroupfs)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
# Our containers, dependents first: the order they are removed in.
names=(moat-test-yaml moat-test-dns moat-test-hosts moat-test-sidecar moat-test-app)
dns_pid=""
slow_pid=""
work=$(mktemp -d /tmp/moat-test-docker.XXXXXX)

cleanup() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ]; then
        for c in "${names[@]}"; do
            if podman container exists "$c" 2>/dev/null; then
                echo "---- podman logs $c (error log, last 30 lines)" >&2
                timeout 20 podman logs "$c" 2>&1 | grep -v -e 'systemd connection' -e '^{"time"' |
                    tail -n 30 >&2
            fi
        done
        [ -s "$work/dns.err" ] && { echo "---- DNS responder" >&2; tail -n 20 "$work/dns.err" >&2; }
    fi
    for c in "${names[@]}"; do
        podman container exists "$c" 2>/dev/null &&
            timeout 60 "${pod[@]}" rm -f -t 0 "$c" >/dev/null 2>&1
    done
    [ -n "$slow_pid" ] && kill "$slow_pid" 2>/dev/null
    if [ -n "$dns_pid" ]; then
        kill "$dns_pid" 2>/dev/null
        wait "$dns_pid" 2>/dev/null
    fi
    rm -rf "$work"
    [ "$rc" -eq 0 ] || echo "test-docker: failed after $(($(date +%s) - start))s" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "install podman, runc, debootstrap, uidmap; gcc, openssl, curl, python3"
"$root/scripts/setup.sh" --build --demo --docker

# Leftovers of an interrupted run (our own names only).
for c in "${names[@]}"; do
    podman container exists "$c" && timeout 60 "${pod[@]}" rm -f -t 0 "$c" >/dev/null 2>&1
done

# --- 1. base image and moat's image --------------------------------------
if podman image exists "$base"; then
    step "base image $base exists: reused"
else
    step "base image $base: debootstrap --variant=minbase bookworm, podman import"
    rootfs="$work/rootfs"
    timeout "$(t 600)" debootstrap --variant=minbase bookworm "$rootfs" \
        http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
        { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
    # Like the real debian:bookworm-slim: updates and security suites too, so
    # the image's wolfSSL source carries Debian's security patches.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    tar -C "$rootfs" -c . | timeout "$(t 300)" podman import -q - "$base" >/dev/null
    rm -rf "$rootfs"
fi

step "podman build -f docker/Dockerfile -t $image ."
# --format docker: the OCI image format has no HEALTHCHECK; Docker's keeps it.
# Layers are cached (podman's default): a rebuild after a change in proxy/
# reuses the package and wolfSSL layers.
build_start=$(date +%s)
timeout "$(t 900)" podman build --isolation=chroot --format docker -f docker/Dockerfile \
    -t "$image" . >"$work/build.log" 2>&1 ||
    { tail -n 40 "$work/build.log" >&2; fail "podman build"; }
ok "image built in $(($(date +%s) - build_start))s"

size=$(podman image inspect --format '{{.Size}}' "$image")
gz=$(podman save "$image" 2>/dev/null | gzip -9 | wc -c)
echo "   image size: $size bytes uncompressed ($((size / 1024)) KiB), $gz bytes compressed (podman save | gzip -9)"
[ "$size" -lt 8000000 ] || fail "image is $size bytes, not under 8 MB"
ok "image under 8 MB"

cfg=$(podman image inspect --format '{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Entrypoint}}' "$image")
[ "$cfg" = '10001:10001|SIGTERM|["/moat"]' ] || fail "image config: $cfg"
hc=$(podman image inspect --format '{{json .HealthCheck}}' "$image")
case "$hc" in *'"CMD","/moat","--healthcheck"'*) ;; *) fail "image HEALTHCHECK: $hc" ;; esac
ok "USER 10001:10001, STOPSIGNAL SIGTERM, ENTRYPOINT /moat, HEALTHCHECK /moat --healthcheck"

# What is in the image: the binary and a handful of small files, no shell.
probe=$("${pod[@]}" create "$image")
files=$(podman export "$probe" | tar -t | sort | tr '\n' ' ')
"${pod[@]}" rm -f "$probe" >/dev/null 2>&1
echo "   image files: $files"
case " $files " in *" moat "*) ;; *) fail "no /moat in the image" ;; esac
case " $files " in *bin/sh*) fail "a shell in the image" ;; esac

# --- 2. backend image ------------------------------------------------------
step "backend image: docker/test-backend.c, gcc -static, FROM scratch"
mkdir -p "$work/backend"
gcc -static -O2 -Wall -Wextra -Werror -o "$work/backend/test-backend" docker/test-backend.c
cat >"$work/backend/Containerfile" <<'EOF'
FROM scratch
COPY test-backend /test-backend
USER 10002:10002
STOPSIGNAL SIGTERM
ENTRYPOINT ["/test-backend"]
EOF
timeout "$(t 120)" podman build -q --isolation=chroot -t "$backend_image" "$work/backend" >/dev/null ||
    fail "building the backend image"

# --- 3. certificates, key file, ports ------------------------------------
step "test CA, certificates (serials 1001 and 2002), ticket key, free ports"
certs="$work/certs"
mkdir -p "$certs" "$work/new" "$work/tickets"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=moat test CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/ext.cnf"
leaf() { # leaf SERIAL DIR: DIR/site.pem and DIR/site.key
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$2/site.key" -out "$work/site.csr" 2>/dev/null
    openssl x509 -req -in "$work/site.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -set_serial "0x$1" -days 2 -extfile "$work/ext.cnf" -out "$2/site.pem" 2>/dev/null
}
leaf 1001 "$certs"
leaf 2002 "$work/new"
head -c 64 /dev/urandom >"$work/tickets/ticket.key"
# The container runs as 10001: its files are that user's, keys mode 600.
chmod 600 "$certs/site.key" "$work/new/site.key" "$work/tickets/ticket.key"
chmod 644 "$certs/site.pem" "$work/new/site.pem"
chown -R 10001:10001 "$certs" "$work/new" "$work/tickets"
chmod 755 "$work" # the mounted directories' parent (mktemp made it 700)

read -r p_app p_tls p_admin p_tls2 p_admin2 p_tls3 p_admin3 p_tls4 p_admin4 p_unused < <(
    python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
echo "   ports: app $p_app, sidecar $p_tls/$p_admin, hosts $p_tls2/$p_admin2, dns $p_tls3/$p_admin3, yaml $p_tls4/$p_admin4"

# Polls "$@" every 0.2 s until it succeeds, at most $1 seconds.
wait_for() {
    local secs=$1
    shift
    local end=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}
https() { # https PORT PATH: GET through moat, trusting only the test CA
    curl -sS --max-time "$(t 10)" --cacert "$work/ca.pem" \
        --resolve "localhost:$1:127.0.0.1" "https://localhost:$1$2"
}
serial() { # the serial of the certificate moat serves on PORT
    timeout "$(t 10)" openssl s_client -connect "127.0.0.1:$1" -servername localhost \
        </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
healthz() { curl -fsS --max-time "$(t 5)" "http://127.0.0.1:$1/healthz"; }
run_moat() { # run_moat NAME [podman run options...]: detached, moat's image
    local n=$1
    shift
    timeout "$(t 60)" "${pod[@]}" run -d --name "$n" "${limits[@]}" "$@" "$image" \
        >"$work/$n.run" 2>&1 || { cat "$work/$n.run" >&2; fail "podman run $n"; }
}

# --- 4. the app and moat as its sidecar ----------------------------------
step "backend container (--network host, 127.0.0.1:$p_app)"
timeout "$(t 60)" "${pod[@]}" run -d --name moat-test-app "${limits[@]}" --network host \
    "$backend_image" app "127.0.0.1:$p_app" >"$work/app.run" 2>&1 ||
    { cat "$work/app.run" >&2; fail "podman run moat-test-app"; }
wait_for "$(t 10)" curl -fsS --max-time 2 "http://127.0.0.1:$p_app/" || fail "backend not answering"
ok "backend answers on 127.0.0.1:$p_app"

step "moat sidecar (--network container:moat-test-app), configured by environment"
# Hardened the way docker/compose.yaml and docker/kubernetes.yaml run it.
# MOAT_WATCH=false: this one must change certificates on SIGHUP only.
run_moat moat-test-sidecar --network container:moat-test-app \
    --read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges \
    -v "$certs:/etc/moat/certs:ro" -v "$work/tickets/ticket.key:/etc/moat/ticket.key:ro" \
    -e MOAT_UPSTREAM="127.0.0.1:$p_app" -e MOAT_LISTEN="127.0.0.1:$p_tls" \
    -e MOAT_ADMIN="127.0.0.1:$p_admin" \
    -e MOAT_CERT=/etc/moat/certs/site.pem -e MOAT_KEY=/etc/moat/certs/site.key \
    -e MOAT_TICKET_KEY_FILE=/etc/moat/ticket.key -e MOAT_WATCH=false
wait_for "$(t 15)" healthz "$p_admin" || fail "moat's /healthz did not answer 200"

body=$(https "$p_tls" /through/moat?x=1) || fail "HTTPS request through moat"
for want in "backend app" "GET /through/moat?x=1 HTTP/1.1" "X-Forwarded-Proto: https" \
    "X-Forwarded-Port: $p_tls" "X-Forwarded-For: 127.0.0.1" "Host: localhost:$p_tls"; do
    grep -qF "$want" <<<"$body" || { echo "$body" >&2; fail "the backend did not see \"$want\""; }
done
ok "HTTPS through moat (curl --cacert); the backend saw X-Forwarded-Proto: https"

urls=()
for i in $(seq 1 20); do urls+=("https://localhost:$p_tls/r$i"); done
n=$(curl -sS --max-time "$(t 20)" --cacert "$work/ca.pem" --resolve "localhost:$p_tls:127.0.0.1" \
    "${urls[@]}" | grep -c '^backend app$') || true
[ "$n" = 20 ] || fail "20 keep-alive requests: $n answers"
ok "20 requests on one keep-alive connection"

timeout "$(t 30)" podman healthcheck run moat-test-sidecar >"$work/hc.out" 2>&1 ||
    { cat "$work/hc.out" >&2; fail "podman healthcheck run"; }
status=$(podman inspect --format '{{.State.Health.Status}}' moat-test-sidecar)
[ "$status" = healthy ] || fail "health status $status"
if timeout "$(t 30)" podman exec moat-test-sidecar /moat --healthcheck "127.0.0.1:$p_unused" \
    >/dev/null 2>&1; then
    fail "moat --healthcheck succeeded against a closed port"
fi
ok "podman healthcheck run: healthy (and --healthcheck fails against a closed port)"

top=$(podman top moat-test-sidecar user,huser,args | tail -n +2)
echo "   podman top: $top"
read -r user huser _ <<<"$top"
[ "$user" = moat ] && [ "$huser" = 10001 ] || fail "moat runs as $user/$huser"
hpid=$(podman inspect --format '{{.State.Pid}}' moat-test-sidecar)
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$hpid/status")
gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$hpid/status")
[ "$uids" = "10001 10001 10001 10001" ] && [ "$gids" = "10001 10001 10001 10001" ] ||
    fail "moat's uids $uids, gids $gids"
ok "not root: user moat, uid/gid 10001 (real, effective, saved, fs)"

ver=$(timeout "$(t 30)" "${pod[@]}" run --rm "${limits[@]}" --network none "$image" -V 2>/dev/null) ||
    fail "moat -V in the image"
grep -q 'wolfSSL 5.5.4, bundled' <<<"$ver" || { echo "$ver" >&2; fail "moat -V: no bundled wolfSSL"; }
rc=0
out=$(timeout "$(t 30)" "${pod[@]}" run --rm "${limits[@]}" --network none --entrypoint /bin/sh \
    "$image" -c true 2>&1) || rc=$?
[ "$rc" = 127 ] && grep -q 'stat /bin/sh: no such file' <<<"$out" ||
    { echo "$out" >&2; fail "running /bin/sh in the image: exit $rc"; }
ok "moat -V runs in the image; there is no shell (/bin/sh: not found)"

# --- tickets shared by replicas, and names from /etc/hosts ---------------
step "a second replica: the same ticket key; upstream by name from /etc/hosts (--add-host)"
# Kubernetes' Secret volume, as docker/kubernetes.yaml mounts it (fsGroup
# 10001): files root:10001 mode 0440 behind the ..data symlink, which is
# swapped atomically on renewal.  This replica watches it (MOAT_WATCH
# defaults to true with a certificate).
kube="$work/kube"
secret_dir() { # secret_dir NAME SOURCE_DIR: one timestamped Secret payload
    mkdir -p "$kube/$1"
    cp "$2/site.pem" "$kube/$1/tls.crt"
    cp "$2/site.key" "$kube/$1/tls.key"
    chown -R 0:10001 "$kube/$1"
    chmod 2750 "$kube/$1"
    chmod 0440 "$kube/$1/tls.crt" "$kube/$1/tls.key"
}
mkdir -p "$kube"
secret_dir ..2001_01_01_00_00_01.1 "$certs"
ln -s ..2001_01_01_00_00_01.1 "$kube/..data"
ln -s ..data/tls.crt "$kube/tls.crt"
ln -s ..data/tls.key "$kube/tls.key"
chown -h 0:10001 "$kube" "$kube/..data" "$kube/tls.crt" "$kube/tls.key"
chmod 2750 "$kube"
run_moat moat-test-hosts --network host --add-host backend.test:127.0.0.1 \
    -v "$kube:/etc/moat/certs:ro" -v "$work/tickets/ticket.key:/etc/moat/ticket.key:ro" \
    -e MOAT_UPSTREAM="backend.test:$p_app" -e MOAT_LISTEN="127.0.0.1:$p_tls2" \
    -e MOAT_ADMIN="127.0.0.1:$p_admin2" -e MOAT_ACCESS_LOG=off \
    -e MOAT_CERT=/etc/moat/certs/tls.crt -e MOAT_KEY=/etc/moat/certs/tls.key \
    -e MOAT_TICKET_KEY_FILE=/etc/moat/ticket.key
wait_for "$(t 15)" healthz "$p_admin2" || fail "the /etc/hosts replica did not become healthy"
body=$(https "$p_tls2" /by-name) || fail "HTTPS through the replica with upstream backend.test"
grep -qF "backend app" <<<"$body" || { echo "$body" >&2; fail "backend.test did not reach the app"; }
ok "upstream backend.test:$p_app resolved from /etc/hosts inside the image"

# A TLS 1.2 session from the sidecar resumes on this replica: only the
# shared ticket key can make that happen (session-ID caches are per process).
timeout "$(t 10)" openssl s_client -tls1_2 -connect "127.0.0.1:$p_tls" -servername localhost \
    -sess_out "$work/sess.pem" </dev/null >"$work/s1.out" 2>&1 || fail "s_client to the sidecar"
timeout "$(t 10)" openssl s_client -tls1_2 -connect "127.0.0.1:$p_tls2" -servername localhost \
    -sess_in "$work/sess.pem" </dev/null >"$work/s2.out" 2>&1 || fail "s_client to the replica"
grep -q '^Reused, ' "$work/s2.out" ||
    { grep -E '^(New|Reused),' "$work/s2.out" >&2; fail "no resumption across replicas sharing the ticket key"; }
ok "a session from one replica resumed on the other (shared ticket key)"

# --- certificate swap + SIGHUP --------------------------------------------
step "swap the mounted certificate, podman kill --signal HUP"
s=$(serial "$p_tls")
[ "$s" = 1001 ] || fail "serving serial '$s', expected 1001"
cp -p "$work/new/site.pem" "$certs/site.pem.new"
cp -p "$work/new/site.key" "$certs/site.key.new"
mv "$certs/site.key.new" "$certs/site.key"
mv "$certs/site.pem.new" "$certs/site.pem"
sleep 1.5
s=$(serial "$p_tls")
[ "$s" = 1001 ] || fail "serial changed to '$s' before SIGHUP (MOAT_WATCH=false)"
timeout "$(t 30)" "${pod[@]}" kill --signal HUP moat-test-sidecar >/dev/null || fail "podman kill --signal HUP"
end=$(($(date +%s) + $(t 10)))
until [ "$(serial "$p_tls")" = 2002 ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "still serving serial $(serial "$p_tls") 10 s after SIGHUP"
    sleep 0.2
done
body=$(https "$p_tls" /after-reload) || fail "HTTPS after the reload"
grep -qF "backend app" <<<"$body" || fail "no backend answer after the reload"
reloads=$(curl -fsS --max-time 5 "http://127.0.0.1:$p_admin/metrics" |
    grep -E '^moat_reloads_total\{result="success"\}' | awk '{print $2}')
[ "$reloads" = 1 ] || fail "moat_reloads_total{result=\"success\"} is '$reloads'"
ok "new serial 2002 served after SIGHUP; moat_reloads_total{result=\"success\"} 1"

step "Kubernetes-style Secret swap (..data symlink) on the watching replica"
[ "$(serial "$p_tls2")" = 1001 ] || fail "the replica does not serve serial 1001"
secret_dir ..2001_01_01_00_00_02.2 "$work/new"
ln -s ..2001_01_01_00_00_02.2 "$kube/..data_tmp"
mv -T "$kube/..data_tmp" "$kube/..data"
rm -rf "$kube/..2001_01_01_00_00_01.1"
end=$(($(date +%s) + $(t 10)))
until [ "$(serial "$p_tls2")" = 2002 ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "the watching replica still serves $(serial "$p_tls2") 10 s after the swap"
    sleep 0.2
done
ok "renewed Secret picked up without a signal (MOAT_WATCH)"

# --- names from a DNS server ---------------------------------------------
step "upstream by a name only a DNS server knows (--dns 127.0.0.1)"
dns_name=backend.dns-only.test
python3 docker/test-dns.py 127.0.0.1 53 "$dns_name" 127.0.0.1 "$(t 300)" \
    >"$work/dns.out" 2>"$work/dns.err" &
dns_pid=$!
wait_for "$(t 10)" grep -q ready "$work/dns.out" || true
if ! grep -q ready "$work/dns.out"; then
    wait "$dns_pid" 2>/dev/null && rc=0 || rc=$?
    dns_pid=""
    [ "$rc" = 3 ] || { cat "$work/dns.err" >&2; fail "the DNS responder did not start"; }
    echo "   SKIPPED: 127.0.0.1:53 is taken on this machine: $(cat "$work/dns.err")"
else
    run_moat moat-test-dns --network host --dns 127.0.0.1 \
        -v "$certs:/etc/moat/certs:ro" \
        -e MOAT_UPSTREAM="$dns_name:$p_app" -e MOAT_LISTEN="127.0.0.1:$p_tls3" \
        -e MOAT_ADMIN="127.0.0.1:$p_admin3" -e MOAT_ACCESS_LOG=off \
        -e MOAT_CERT=/etc/moat/certs/site.pem -e MOAT_KEY=/etc/moat/certs/site.key
    wait_for "$(t 15)" healthz "$p_admin3" || fail "the DNS replica did not become healthy"
    body=$(https "$p_tls3" /by-dns) || fail "HTTPS through the replica with upstream $dns_name"
    grep -qF "backend app" <<<"$body" || { echo "$body" >&2; fail "$dns_name did not reach the app"; }
    grep -q "asked $dns_name type 1: 1 answer" "$work/dns.err" ||
        { cat "$work/dns.err" >&2; fail "moat did not ask the DNS server for $dns_name"; }
    ok "upstream $dns_name:$p_app resolved through DNS inside the image"
    # Control for the resumption check above: without the key file, a
    # session from the sidecar is not resumed here.
    timeout "$(t 10)" openssl s_client -tls1_2 -connect "127.0.0.1:$p_tls3" -servername localhost \
        -sess_in "$work/sess.pem" </dev/null >"$work/s3.out" 2>&1 || fail "s_client to the DNS replica"
    grep -q '^New, ' "$work/s3.out" || fail "a replica without the ticket key resumed a session"
    ok "control: a replica without the shared key makes a full handshake"
    kill "$dns_pid"
    wait "$dns_pid" 2>/dev/null || true
    dns_pid=""
fi

# --- the YAML way ----------------------------------------------------------
step "the YAML way: /etc/moat/moat.yaml mounted, certificates relative to it"
mkdir -p "$work/yaml"
cat >"$work/yaml/moat.yaml" <<EOF
workers: 1
shutdown_timeout: 5s
listeners:
  - name: public
    bind: "127.0.0.1:$p_tls4"
    tls:
      certificates:
        - cert: certs/site.pem
          key: certs/site.key
      session_tickets:
        key_file: ticket.key
routes:
  - path: /
    upstream: app
upstreams:
  app:
    servers: ["backend.test:$p_app"]
admin:
  bind: "127.0.0.1:$p_admin4"
log:
  access: stdout
EOF
chmod 644 "$work/yaml/moat.yaml"
yaml_mounts=(-v "$work/yaml/moat.yaml:/etc/moat/moat.yaml:ro" -v "$certs:/etc/moat/certs:ro"
    -v "$work/tickets/ticket.key:/etc/moat/ticket.key:ro")
out=$(timeout "$(t 30)" "${pod[@]}" run --rm "${limits[@]}" --network host \
    --add-host backend.test:127.0.0.1 "${yaml_mounts[@]}" "$image" -t 2>&1) ||
    { echo "$out" >&2; fail "moat -t on /etc/moat/moat.yaml"; }
grep -q "configuration OK" <<<"$out" || { echo "$out" >&2; fail "moat -t said: $out"; }
ok "moat -t: configuration OK"
# MOAT_CONFIG overrides the default path; MOAT_ADMIN tells the HEALTHCHECK
# where this configuration's admin endpoint is.
run_moat moat-test-yaml --network host --add-host backend.test:127.0.0.1 \
    -v "$work/yaml/moat.yaml:/config/moat.yaml:ro" -v "$certs:/config/certs:ro" \
    -v "$work/tickets/ticket.key:/config/ticket.key:ro" \
    -e MOAT_CONFIG=/config/moat.yaml -e MOAT_ADMIN="127.0.0.1:$p_admin4"
wait_for "$(t 15)" healthz "$p_admin4" || fail "the YAML replica did not become healthy"
body=$(https "$p_tls4" /by-yaml) || fail "HTTPS through the YAML-configured moat"
grep -qF "backend app" <<<"$body" || { echo "$body" >&2; fail "the YAML route did not reach the app"; }
timeout "$(t 30)" podman healthcheck run moat-test-yaml >/dev/null 2>&1 ||
    fail "podman healthcheck run with the YAML configuration"
ok "MOAT_CONFIG=/config/moat.yaml serves; healthcheck passes"
timeout "$(t 30)" "${pod[@]}" rm -f -t 10 moat-test-yaml >/dev/null 2>&1

# --- stop: prompt, exit code 0 ---------------------------------------------
step "podman stop -t 10: SIGTERM, drain, exit 0"
# A request in flight when the sidecar is told to stop still gets its answer.
https "$p_tls" /slow >"$work/slow.out" 2>&1 &
slow_pid=$!
sleep 0.5
for c in moat-test-dns moat-test-hosts moat-test-sidecar; do
    podman container exists "$c" || continue
    t0=$(date +%s%N)
    timeout "$(t 30)" "${pod[@]}" stop -t 10 "$c" >/dev/null 2>&1 || fail "podman stop $c"
    ms=$((($(date +%s%N) - t0) / 1000000))
    code=$(podman inspect --format '{{.State.ExitCode}}' "$c")
    [ "$code" = 0 ] || fail "$c exited with $code"
    [ "$ms" -lt 5000 ] || fail "podman stop $c took ${ms} ms"
    ok "$c stopped in ${ms} ms, exit code 0"
done
rc=0
wait "$slow_pid" || rc=$?
slow_pid=""
[ "$rc" = 0 ] && grep -q '^backend app$' "$work/slow.out" ||
    { cat "$work/slow.out" >&2; fail "the request in flight during the stop failed (curl exit $rc)"; }
ok "a request in flight during podman stop was answered"
podman logs moat-test-sidecar 2>&1 | grep -q '\[info\] stopped' ||
    fail "the sidecar's log has no clean 'stopped' line"
if curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$p_admin/healthz"; then
    fail "the admin endpoint still answers after stop"
fi

step "all container tests passed in $(($(date +%s) - start))s (image: $size bytes, $gz gzip -9)"
