#!/usr/bin/env bash
# Concurrency benchmark of `loom serve` (translation): starts the server on a free loopback
# port with MODEL (default: the tiny test Marian; set LOOM_BENCH_MODEL to a real model
# directory such as models/en-zh), runs build/loom_serve_bench for 1/4/16/64 clients, stops it.
# Usage: bench/serve_bench.sh [BUILD_DIR]   (env: CLIENTS=1,4,16,64 REQUESTS=20 BEAM=1 THREADS=)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=${LOOM_BENCH_MODEL:-tests/data/hf-tiny/marian-en-zh}
err=$(mktemp)
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
"$build/loom" serve --model "mt=$model" --port 0 --max-queued 1024 "${threads[@]}" 2>"$err" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$err"' EXIT
port=
for _ in $(seq 600); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$err")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$err" >&2; exit 1; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores available (shared); $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "model: $model, beam ${BEAM:-1}, ${REQUESTS:-20} requests per client, 4 short built-in sentences"
echo
"$build/loom_serve_bench" --port "$port" --clients "${CLIENTS:-1,4,16,64}" --requests "${REQUESTS:-20}" \
    --beam "${BEAM:-1}" ${LOOM_BENCH_INPUT:+--input "$LOOM_BENCH_INPUT"}
