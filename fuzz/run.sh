#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, each for a bounded time.
set -euo pipefail

ALL_TARGETS=(
    statement_render
    username_template
    password_policy_hcl
    acl_policy_hcl
    field_coercion
    jwt_parse
    plugin_protocol
)

usage() {
    cat <<EOF
Usage: fuzz/run.sh [--help] [TARGET...]

Runs each fuzz target (default: all of them) for FUZZ_SECONDS seconds of libFuzzer time,
one after another with a single fuzzing process, and prints one summary line per target.
Exits non-zero if any target crashed, leaked, timed out or ran out of memory; the failing
input is in fuzz/artifacts/<target>/ and the full log in fuzz/artifacts/<target>.log.

Targets: ${ALL_TARGETS[*]}

Corpora: fuzz/corpus/<target> (written, not checked in) and the checked-in seeds in
testdata/fuzz/<target> (read only; crash reproducers live in its regressions/ folder).

Environment:
  FUZZ_SECONDS   seconds per target (default 600)
  FUZZ_RSS_MB    memory limit per target in MB (default 2048)
  FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 30)
  FUZZ_ARGS      extra libFuzzer arguments

Needs cargo-fuzz (cargo install cargo-fuzz) and a nightly toolchain (cargo +nightly).
Reproduce a crash: cargo +nightly fuzz run <target> <artifact file>
EOF
}

targets=()
for arg in "$@"; do
    case "$arg" in
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            echo "unknown option: $arg" >&2
            usage >&2
            exit 2
            ;;
        *)
            if [[ " ${ALL_TARGETS[*]} " != *" $arg "* ]]; then
                echo "unknown target: $arg" >&2
                exit 2
            fi
            targets+=("$arg")
            ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

seconds="${FUZZ_SECONDS:-600}"
rss="${FUZZ_RSS_MB:-2048}"
timeout="${FUZZ_TIMEOUT:-30}"
cd "$(dirname "$0")/.."

# Build every target once, up front, so build time is not fuzzing time.
cargo +nightly fuzz build

failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "testdata/fuzz/$t"
    log="fuzz/artifacts/$t.log"
    status=0
    started=$SECONDS
    # shellcheck disable=SC2086
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "testdata/fuzz/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss" -timeout="$timeout" \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    elapsed=$((SECONDS - started))
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    if [[ $status -eq 0 ]]; then
        result=ok
    else
        result="FAILED (exit $status; see $log)"
        failed=1
    fi
    printf '%-20s %5ss  execs %-10s exec/s %-7s cov %-6s ft %-7s corpus %-6s %s\n' \
        "$t" "$elapsed" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit "$failed"
