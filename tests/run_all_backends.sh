#!/usr/bin/env bash
# Runs ruff, then the whole test suite once per Keras backend; fails if any step fails.
# Extra arguments go to pytest, e.g. `bash tests/run_all_backends.sh -x -k vae`.
# It uses the active virtual environment, else the checkout's .venv (the one the
# README's first command makes), so it also works from a new terminal.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
export TF_CPP_MIN_LOG_LEVEL=3
status=0
echo "=== ruff (lint and format)"
ruff check . && ruff format --check . || status=1
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider "$@" tests || status=1
done
exit $status
