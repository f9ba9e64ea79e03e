#!/usr/bin/env bash
# Create/refresh the benchmark virtualenv (.venv-bench at the repo root).
# Idempotent: a stamp file holds the hash of the requirements (and of pyproject.toml,
# because offload itself is installed editable when it exists); if it matches, nothing runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-bench"
REQ="$ROOT/bench/requirements-peers.txt"
STAMP="$VENV/.bench-stamp"
PY="${PYTHON:-python3.11}"

want="$(cat "$REQ" "$ROOT/pyproject.toml" 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "bench: .venv-bench is up to date"
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
if [[ -f "$ROOT/pyproject.toml" ]]; then
    # Make offload importable in the bench venv; its deps come from its own metadata.
    # A broken work-in-progress package must not block benchmarking the peers: warn, skip the
    # stamp (so the next run retries) and let the runner list offload as "not available".
    if ! "$VENV/bin/python" -m pip install --quiet -e "$ROOT"; then
        echo "bench: WARNING: 'pip install -e .' failed; offload will be reported unavailable" >&2
        exit 0
    fi
fi
echo "$want" > "$STAMP"
echo "bench: .venv-bench ready"
