#!/usr/bin/env bash
# Runs ruff, then the whole test suite once per Keras backend; fails if any step fails.
# Extra arguments go to pytest, e.g. `bash tests/run_all_backends.sh -x -k vae`.
# It uses the active virtual environment, else the checkout's .venv (the one the
# README's first command makes), so it also works from a new terminal.
#
# On a machine with more than one core the three suites run at the same time: one
# suite keeps about one core busy (much of a test is Python and compilation), so
# together they finish in little more than the longest alone. Each suite's output
# is printed whole once it has ended; PyTorch gets one thread so that it does not
# spin against the others. RESVAE_TEST_JOBS=1 runs them one after another, live.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
export TF_CPP_MIN_LOG_LEVEL=3
backends=(tensorflow jax torch)
status=0
echo "=== ruff (lint and format)"
ruff check . && ruff format --check . || status=1

suite() {
    KERAS_BACKEND=$1 python -m pytest -q -p no:cacheprovider --durations=15 "${@:2}" tests
}

cores="$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
if [ "${RESVAE_TEST_JOBS:-$cores}" -le 1 ] 2>/dev/null; then
    for backend in "${backends[@]}"; do
        echo "=== KERAS_BACKEND=$backend"
        suite "$backend" "$@" || status=1
    done
    exit $status
fi

logs="$(mktemp -d "${TMPDIR:-/tmp}/resvae-tests.XXXXXX")"
stop_suites() {
    for pid in $(jobs -p); do
        pkill -P "$pid" 2>/dev/null
        kill "$pid" 2>/dev/null
    done
    rm -rf "$logs"
}
trap stop_suites EXIT
declare -A pids
for backend in "${backends[@]}"; do
    if [ "$backend" = torch ]; then
        OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} suite "$backend" "$@" >"$logs/$backend" 2>&1 &
    else
        suite "$backend" "$@" >"$logs/$backend" 2>&1 &
    fi
    pids[$backend]=$!
done
echo "=== the ${backends[*]} suites run at once; each is printed when it has ended"
for backend in "${backends[@]}"; do
    wait "${pids[$backend]}" || status=1
    echo "=== KERAS_BACKEND=$backend"
    cat "$logs/$backend"
done
exit $status
