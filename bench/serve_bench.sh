#!/usr/bin/env bash
# Concurrency benchmark of `loom serve`: starts the server on a free loopback port with a
# translation model (LOOM_BENCH_MODEL, default the tiny test Marian) and a decoder LLM
# (LOOM_BENCH_LM, default the tiny test Gemma), runs build/loom_serve_bench for 1/4/16/64
# clients against /v1/completions (streamed, continuous batching) and /v1/translations, stops it.
# Usage: bench/serve_bench.sh [BUILD_DIR]
#   env: CLIENTS=1,4,16,64 REQUESTS=20 BEAM=1 MAX_TOKENS=32 THREADS= ROUTES="completions translations"
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=${LOOM_BENCH_MODEL:-tests/data/hf-tiny/marian-en-zh}
lm=${LOOM_BENCH_LM:-tests/data/hf-tiny/gemma}
err=$(mktemp)
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
"$build/loom" serve --model "mt=$model" --model "lm=$lm" --port 0 --max-queued 1024 --max-running 64 \
    "${threads[@]}" 2>"$err" &
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
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores available (shared); load average before: $(cut -d' ' -f1-3 /proc/loadavg);" \
     "$(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for route in ${ROUTES:-completions translations}; do
  echo
  if [ "$route" = completions ]; then
    echo "/v1/completions: model $lm, streamed, greedy, ${MAX_TOKENS:-32} new tokens, ${REQUESTS:-20} requests per client, 4 short built-in prompts"
    echo
    "$build/loom_serve_bench" --port "$port" --route completions --model lm --clients "${CLIENTS:-1,4,16,64}" \
        --requests "${REQUESTS:-20}" --max-tokens "${MAX_TOKENS:-32}" ${LOOM_BENCH_INPUT:+--input "$LOOM_BENCH_INPUT"}
  else
    echo "/v1/translations: model $model, beam ${BEAM:-1}, ${REQUESTS:-20} requests per client, 4 short built-in sentences"
    echo
    "$build/loom_serve_bench" --port "$port" --route translations --model mt --clients "${CLIENTS:-1,4,16,64}" \
        --requests "${REQUESTS:-20}" --beam "${BEAM:-1}" ${LOOM_BENCH_INPUT:+--input "$LOOM_BENCH_INPUT"}
  fi
done
