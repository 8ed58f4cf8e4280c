#!/usr/bin/env bash
# End-to-end translation benchmark: source and target tokens/s and peak RSS of `loom` on the
# full-size opus-mt-en-zh architecture with random weights (written by `loom init-model`),
# for each compute type (float32 / int8 / bf16 linear layers, `loom translate --compute-type`),
# batch 1/16/64, greedy and beam 4, 1 and 2 threads. Every output has exactly
# NEW_TOKENS target tokens (EOS suppressed until then), so random weights do the same work as a
# trained model would on 32-token translations. Each configuration runs in its own process
# (peak RSS is per process) and reports the best of REPEAT timed runs after one warm-up.
#
# The same workload through other engines: the model directory is a plain HF checkpoint and
# the input is the first SENTENCES lines of FLORES-200 devtest; see docs/benchmarks.md.
#
# The last column hashes every output token id: a later run (or another compute type) with the
# same hash produced the same translations. Save the table and compare the next run against it.
#
# Usage: bench/translate_bench.sh [BUILD_DIR]
#   env: COMPUTE_TYPES="float32 int8 bf16" THREADS="1 2" BATCHES="1 16 64" BEAMS="1 4" REPEAT=3
#        NEW_TOKENS=32 LOOM_BENCH_MODEL=DIR LOOM_BENCH_INPUT=FILE
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=${LOOM_BENCH_MODEL:-$build/bench-models/opus-mt-en-zh}
input=${LOOM_BENCH_INPUT:-data/flores200/eng_Latn.devtest}
new_tokens=${NEW_TOKENS:-32}
repeat=${REPEAT:-3}
[ -f "$model/model.safetensors" ] || "$build/loom" init-model --like opus-mt-en-zh "$model" >&2

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores available; $(date -u +%Y-%m-%d); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?'); libtorch $("$build/loom" version | sed 's/.*libtorch \([^)]*\).*/\1/')"
echo "workload: random-weight opus-mt-en-zh (d_model 512, 6+6 layers, V 65001), FLORES-200 devtest sentences, $new_tokens target tokens each, best of $repeat"
echo
echo "| threads | beam | batch | sentences | src tok/s | tgt tok/s | peak RSS MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for threads in ${THREADS:-1 2}; do
  for beam in ${BEAMS:-1 4}; do
    for batch in ${BATCHES:-1 16 64}; do
      sentences=$(( batch < 16 ? 16 : 2 * batch ))
      "$build/loom_translate_bench" --model "$model" --input "$input" --sentences "$sentences" \
        --batch "$batch" --beam "$beam" --threads "$threads" --new-tokens "$new_tokens" --repeat "$repeat"
    done
  done
done
