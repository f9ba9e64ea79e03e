#!/usr/bin/env bash
# make api-fuzz: schemathesis, with all its checks, against a live `offload serve` on SQLite
# (the API test jobs, two inline workers, an admin key). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DIR=$(mktemp -d)
PORT=${OFFLOAD_FUZZ_PORT:-$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
export OFFLOAD_DATABASE_URL="sqlite:///$DIR/fuzz.db"
export OFFLOAD_APP=tests.apps.api_jobs:app
export OFFLOAD_API_RATE_LIMIT=0          # the fuzzer is one key sending as fast as it can
export OFFLOAD_API_MAX_WAIT_SECONDS=2    # Prefer: wait=N stays short
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

KEY=$($BIN/offload keys create --tenant fuzz --role admin 2>/dev/null)
$BIN/offload serve --port "$PORT" --inline-workers 2 --log-level warning >"$DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done

$BIN/schemathesis --config-file scripts/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $KEY" \
    --max-examples "${OFFLOAD_FUZZ_EXAMPLES:-25}" \
    --generation-deterministic \
    --request-timeout 10 \
    "$@" || { status=$?; echo "--- server log ---"; tail -50 "$DIR/server.log"; exit $status; }
