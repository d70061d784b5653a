#!/usr/bin/env bash
# Runs moat's libFuzzer targets (tests/fuzz/fuzz_*.c) and merges what they
# find into the committed corpora (tests/fuzz/corpus/<target>/).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  how long each target runs (default 60)
#   TARGET              request, response, config, conn (default: all)
#
# Environment:
#   FUZZ_JOBS=N         run N fuzzing processes per target (libFuzzer -fork=N)
#   FUZZ_MINIMIZE=1     rebuild each corpus from scratch (-merge=1 into an
#                       empty directory) instead of only adding new inputs;
#                       regress-* inputs are always kept.  Committed corpora
#                       keep one input per new edge (-use_counters=0);
#                       BUILD_DIR/corpus/ keeps everything for the next run
#   FUZZ_RESEED=1       also start from the hand-made seeds (tests/fuzz/seeds.py)
#   MOAT_WOLFSSL_PREFIX where the bundled wolfSSL is (passed to CMake)
#   BUILD_DIR           default build-fuzz
#
# Installs clang and libFuzzer with scripts/setup.sh --fuzz when missing,
# builds BUILD_DIR with -DMOAT_FUZZ=ON (clang, ASan+UBSan, assertions on),
# runs each target with tests/fuzz/http.dict, and prints executions, speed
# and coverage per target.  Crashes, leaks and sanitizer reports land in
# BUILD_DIR/artifacts/; the script exits 1 when there are any.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=()
    for f in "$root"/tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        targets+=("${n#fuzz_}")
    done
fi
build=${BUILD_DIR:-$root/build-fuzz}
jobs=${FUZZ_JOBS:-1}

"$root/scripts/setup.sh" --build --fuzz

cmake_args=(-DMOAT_FUZZ=ON -DMOAT_WERROR=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
            "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g")   # no -DNDEBUG: assertions on
if [ -n "${MOAT_WOLFSSL_PREFIX:-}" ]; then
    cmake_args+=("-DMOAT_WOLFSSL_PREFIX=$MOAT_WOLFSSL_PREFIX")
fi
CC=clang-14 cmake -S "$root" -B "$build" "${cmake_args[@]}" >/dev/null
make -C "$build" -j"$(nproc)" $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null

# UBSan reports are findings too; leaks are checked after every input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}

max_len() {
    case "$1" in
        request|response) echo 8192 ;;
        config) echo 4096 ;;
        conn) echo 4096 ;;
        *) echo 4096 ;;
    esac
}

artifacts=$build/artifacts
mkdir -p "$artifacts"
if [ "${FUZZ_RESEED:-0}" = 1 ]; then
    rm -rf "$build/seeds"
    python3 "$root/tests/fuzz/seeds.py" "$build/seeds"
fi

summary=()
failed=0
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz_$t
    corpus=$root/tests/fuzz/corpus/$t
    work=$build/corpus/$t
    log=$build/fuzz-$t.log
    mkdir -p "$corpus" "$work"
    cp -n "$corpus"/* "$work"/ 2>/dev/null || true
    seeds=()
    [ -d "$build/seeds/$t" ] && seeds=("$build/seeds/$t")
    before=$(ls "$artifacts" | grep -c "^$t-" || true)
    fork=()
    [ "$jobs" -gt 1 ] && fork=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    echo "fuzz: $t for ${seconds}s (max_len $(max_len "$t"), $jobs job(s)), log $log" >&2
    start=$(date +%s)
    "$bin" "$work" "${seeds[@]}" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
        -dict="$root/tests/fuzz/http.dict" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t-" "${fork[@]}" >"$log" 2>&1 || true
    elapsed=$(( $(date +%s) - start ))

    # Merge what is new into the committed corpus: inputs that reach new
    # edges (-use_counters=0), smallest first.  The work directory keeps
    # the full corpus (counters too) for the next run.
    if [ "${FUZZ_MINIMIZE:-0}" = 1 ]; then
        fresh=$build/corpus-min/$t
        rm -rf "$fresh"
        mkdir -p "$fresh"
        cp "$corpus"/regress-* "$fresh"/ 2>/dev/null || true
        "$bin" -merge=1 -use_counters=0 -max_len="$(max_len "$t")" "$fresh" "$corpus" "$work" \
            >"$build/merge-$t.log" 2>&1
        find "$corpus" -maxdepth 1 -type f -delete
        cp "$fresh"/* "$corpus"/
    else
        "$bin" -merge=1 -use_counters=0 -max_len="$(max_len "$t")" "$corpus" "$work" \
            >"$build/merge-$t.log" 2>&1
    fi

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then  # fork mode prints no final stats
        execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    fi
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    files=$(ls "$corpus" | wc -l)
    bytes=$(du -sb "$corpus" | cut -f1)
    after=$(ls "$artifacts" | grep -c "^$t-" || true)
    found=$((after - before))
    rate=$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))
    summary+=("$(printf '%-9s %6ss %12s execs %8s/s  cov %6s  ft %7s  corpus %4s files %8s bytes  findings %s' \
        "$t" "$elapsed" "${execs:-?}" "$rate" "${cov:-?}" "${ft:-?}" "$files" "$bytes" "$found")")
    if [ "$found" -gt 0 ]; then
        failed=1
        grep -E 'ERROR: |fuzz invariant violated|runtime error|SUMMARY' "$log" | head -5 >&2 || true
    fi
done

echo
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "findings in $artifacts: reproduce with $build/tests/fuzz_<target> <file>" >&2
    exit 1
fi
