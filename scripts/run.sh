#!/usr/bin/env bash
# moat's main job on a fresh machine: install what is needed, build, start a
# small demo app on 127.0.0.1:8080 and moat in front of it on
# https://localhost:8443, and print the curl line to try.  Ctrl-C stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" --build --demo
"$root/scripts/build.sh" "$root/build"

demo="$root/build/demo"
mkdir -p "$demo"
# A local CA and a certificate for localhost, made once; curl trusts the CA.
if [ ! -f "$demo/site.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=moat demo CA" -keyout "$demo/ca.key" -out "$demo/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$demo/site.key" -out "$demo/site.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$demo/ext.cnf"
    openssl x509 -req -in "$demo/site.csr" -CA "$demo/ca.pem" -CAkey "$demo/ca.key" \
        -CAcreateserial -days 825 -extfile "$demo/ext.cnf" -out "$demo/site.pem" 2>/dev/null
    chmod 600 "$demo"/*.key
fi
sed "s#@DEMO@#$demo#g" "$root/config/demo.yaml" >"$demo/moat.yaml"

for port in 8080 8443; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "run.sh: port $port on 127.0.0.1 is already in use; stop what holds it first" >&2
        exit 1
    fi
done

python3 "$root/scripts/demo_app.py" 8080 &
app=$!
trap 'kill "$app" 2>/dev/null; wait "$app" 2>/dev/null || true' EXIT
"$root/build/moat" -t -c "$demo/moat.yaml"
cat <<MSG

  moat is starting in front of the demo app (127.0.0.1:8080). Try:

    curl --cacert $demo/ca.pem https://localhost:8443/

  Ctrl-C stops moat and the demo app.

MSG
set +e
"$root/build/moat" -c "$demo/moat.yaml"
rc=$?
exit $rc
