#!/usr/bin/env bash
# Measures the time from process start to the first answered GET /health,
# on a fresh data dir (first start: schema, catalog import, key generation)
# and on a warm one, and prints the median of N runs of each.
# Usage: scripts/startup-time.sh [runs] [binary]
set -euo pipefail
runs=${1:-7}
bin=${2:-target/release/agentgate}
port=${PORT:-18931}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

one_run() {
  local dir=$1
  local start end
  start=$(date +%s%N)
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" >/dev/null 2>&1 &
  local pid=$!
  until curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1; do sleep 0.001; done
  end=$(date +%s%N)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo $(( (end - start) / 1000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cold=$(for i in $(seq "$runs"); do one_run "$tmp/cold-$i"; done | median)
one_run "$tmp/warm" >/dev/null
warm=$(for i in $(seq "$runs"); do one_run "$tmp/warm"; done | median)
echo "first start (fresh data dir): median ${cold} us over $runs runs"
echo "restart (existing data dir):  median ${warm} us over $runs runs"
