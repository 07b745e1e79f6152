#!/usr/bin/env bash
# Crash test: runs tests/crash.rs RUNS times (default 5). Each run starts the
# real gateway on 127.0.0.1, drives UCP REST completes from CRASH_CLIENTS
# clients (default 8) for CRASH_LOAD_MS (default 3000), kills it with
# SIGKILL, restarts it on the same data dir, recovers every session left in
# complete_in_progress and checks the books (acknowledged orders, stock +
# sold == initial, ledger == fees of the orders). Stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
export CRASH_LOAD_MS="${CRASH_LOAD_MS:-3000}"
export CRASH_CLIENTS="${CRASH_CLIENTS:-8}"
# Build once, then run a private copy of the test binary: other builds that
# share the target dir must not swap it between runs.
exe="$(cargo test --test crash --no-run --message-format=json 2>/dev/null |
  grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
[ -n "$exe" ] || { echo "could not build tests/crash.rs"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$exe" "$work/crash"
log="$work/log"
for i in $(seq 1 "$runs"); do
  echo "--- crash run $i/$runs (load ${CRASH_LOAD_MS} ms, ${CRASH_CLIENTS} clients)"
  if ! "$work/crash" --nocapture >"$log" 2>&1; then
    cat "$log"
    echo "crash test: run $i failed ($((i - 1))/$runs passed before it)"
    exit 1
  fi
  grep -E "^crash:" "$log" || true
done
echo "crash test: $runs/$runs passed"
