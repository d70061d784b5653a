#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need,
# builds moat twice (optimised, and with AddressSanitizer + UBSan) with
# warnings as errors, and runs every unit and integration test in both.
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

if [ "${MOAT_TEST_SKIP_ASAN:-0}" != 1 ]; then
    echo "== AddressSanitizer + UndefinedBehaviorSanitizer build: the same tests"
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export MOAT_TEST_TIMEOUT_SCALE=${MOAT_TEST_TIMEOUT_SCALE:-3}
    export MOAT_TEST_SANITIZED=1
    run_suite "$root/build-asan" -DMOAT_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
fi
echo "== all tests passed in $(( $(date +%s) - start ))s"
