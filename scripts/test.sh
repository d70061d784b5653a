#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need,
# builds moat twice (optimised, and with AddressSanitizer + UBSan) with
# warnings as errors, runs every unit and integration test in both, and a
# smoke subset of the integration tests with moat under valgrind.
#
# Environment: MOAT_TEST_TIMEOUT_SCALE multiplies every test timeout (slow
# machines); MOAT_TEST_SKIP_ASAN=1 runs the optimised build only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" --tests

jobs=$(nproc)
run_suite() {
    local dir=$1
    shift
    "$root/scripts/build.sh" "$dir" -DMOAT_WERROR=ON "$@"
    (cd "$dir" && ctest --output-on-failure --timeout 900 -j"$jobs")
}

start=$(date +%s)
echo "== release build: unit and integration tests"
run_suite "$root/build"

# memcheck sees what the sanitizers do not (uninitialised reads inside
# wolfSSL's assembly, leaks of the release build): a smoke subset, as it
# runs some 20 times slower.
echo "== valgrind (memcheck) on the release build: smoke subset"
(cd "$root/tests/integration" &&
    MOAT_BIN="$root/build/moat" MOAT_TEST_VALGRIND=1 MOAT_TEST_SANITIZED=1 \
    MOAT_TEST_TIMEOUT_SCALE=${MOAT_TEST_TIMEOUT_SCALE:-10} \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        "test_proxy.py::test_get_via_curl_forwarded_headers" \
        "test_proxy.py::test_post_chunked_with_trailers_and_extensions" \
        "test_proxy.py::test_client_keepalive_several_requests_one_tls_connection" \
        "test_proxy.py::test_pipelining_responses_in_order" \
        "test_proxy.py::test_websocket_upgrade_tunnels_both_ways" \
        "test_proxy.py::test_download_until_close_without_length" \
        "test_resumption.py::test_s_client_reconnect_tls12_session_id" \
        "test_resumption.py::test_s_client_tls13_sess_out_sess_in" \
        "test_resumption.py::test_resumption_across_worker_loops" \
        "test_reload.py::test_sighup_swaps_certificate_open_connections_and_tunnels_keep_working" \
        "test_hostile.py::test_nothing_after_a_bad_request_reaches_the_backend" \
        "test_faults.py::test_upstream_answers_413_early")

if [ "${MOAT_TEST_SKIP_ASAN:-0}" != 1 ]; then
    echo "== AddressSanitizer + UndefinedBehaviorSanitizer build: the same tests"
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export MOAT_TEST_TIMEOUT_SCALE=${MOAT_TEST_TIMEOUT_SCALE:-3}
    export MOAT_TEST_SANITIZED=1
    run_suite "$root/build-asan" -DMOAT_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
fi
echo "== all tests passed in $(( $(date +%s) - start ))s"
