#!/usr/bin/env bash
# Experiment 6b (papers.md §5.4, heavily scaled down): does a kNN memory help a small
# Memorizing-Transformer LM? Follows the paper's recipe: pre-train with a small memory, then
# fine-tune the same weights with a large one (`loom train lm --init-from`).
#
#   model  3 layers, d_model 96, byte tokens, layers 0-1 standard attention with a 128-token
#          sliding window (XL cache), layer 2 a kNN layer (exact top-16 over L2-normalised keys,
#          learned temperature, learned per-head gate; local path = 128-token XL window)
#   data   7 Gutenberg books for training; the held-out book 84-0.txt (Frankenstein) for
#          evaluation, streamed with the memory reset only at its start
#   knn    phase 1: windows of 16 subsequences (2,048 tokens), batch 2, kNN memory 1,024 tokens
#          (so the memory fills and evicts inside every window), STEPS1 updates;
#          phase 2: --init-from phase 1, windows of 64 subsequences (8,192 tokens), batch 1,
#          kNN memory 8,192 tokens, STEPS2 updates (fresh AdamW, lr 1e-3 cosine)
#   xl     the baseline: the same model with layer 2 a standard 128-window attention layer (no
#          kNN memory), trained through the same two phases (same windows, batches, updates)
#   eval   `loom eval lm` on the first EVAL_TOKENS tokens of 84-0.txt with the kNN capacity set
#          at evaluation time to 0 (memory off: the layer outputs (1 - gate) x local), 128 (only
#          the previous subsequence, which the XL window already holds), 2K, 8K and 32K tokens,
#          for the phase-1 and the phase-2 weights, with --memory-stats (gates, attention mass on
#          memory, retrieval distances, same-chapter share); the XL baseline once per phase;
#          then the phase-2 weights at 128 / 8K / 32K and XL phase 2 on the first EVAL2_TOKENS.
#
# The two models train in parallel (one process each, OMP_NUM_THREADS=1); about 1 hour on 2
# cores with the defaults. Every step resumes (`--resume`), so a rerun skips finished work.
#
# Usage: scripts/experiments/knn_memory.sh [OUT_DIR]
#        env: STEPS1 (1000), STEPS2 (200), EVAL_TOKENS (32768), EVAL2_TOKENS (65536; 0 = skip the
#        longer check), LOOM (build/loom), PAR (2 = jobs at once)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/exp-knn}
loom=${LOOM:-build/loom}
steps1=${STEPS1:-1000}
steps2=${STEPS2:-200}
eval_tokens=${EVAL_TOKENS:-32768}
eval2_tokens=${EVAL2_TOKENS:-65536}
par=${PAR:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cfg=scripts/experiments/configs
mkdir -p "$out"
g=data/lm-text/gutenberg
books=($g/11-0.txt $g/1342-0.txt $g/1661.txt $g/2600-0.txt $g/2701-0.txt $g/345.txt $g/98-0.txt)
heldout=$g/84-0.txt
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?')" | tee "$out/machine.txt"

# train NAME CONFIG STEPS [--init-from DIR]
train() {
  local name=$1 config=$2 steps=$3; shift 3
  local t0; t0=$(date +%s)
  "$loom" train lm --config "$config" --data "${books[@]}" --out "$out/$name" --steps "$steps" \
    --export last --quiet --resume "$@"
  echo "$name: trained $steps updates in $(( $(date +%s) - t0 )) s" | tee -a "$out/machine.txt"
}

# Phase 1 (small memory), both models at once.
train knn-p1 $cfg/knn-gutenberg.json "$steps1" & p1=$!
train xl-p1 $cfg/xl-gutenberg.json "$steps1" & p2=$!
wait $p1; wait $p2
# Phase 2 (large memory, long windows) from the phase-1 weights.
train knn-p2 $cfg/knn-gutenberg-ft.json "$steps2" --init-from "$out/knn-p1" & p1=$!
train xl-p2 $cfg/xl-gutenberg-ft.json "$steps2" --init-from "$out/xl-p1" & p2=$!
wait $p1; wait $p2

# Evaluations: EVAL_TOKENS of the held-out book, PAR at a time. Chapters ("Chapter N" and
# "Letter N" headings) are the sections of the same-section statistic. A second, longer pass
# (EVAL2_TOKENS, 0 = skip) checks the phase-2 gain on more text: memory 128 / 8K / 32K and XL.
jobs_file=$out/eval-jobs.txt
: > "$jobs_file"
for run in knn-p1 knn-p2; do
  for mem in 0 128 2048 8192 32768; do
    echo "$run $mem $eval_tokens" >> "$jobs_file"
  done
done
echo "xl-p1 -1 $eval_tokens" >> "$jobs_file"
echo "xl-p2 -1 $eval_tokens" >> "$jobs_file"
if [ "$eval2_tokens" -gt 0 ]; then
  for mem in 128 8192 32768; do echo "knn-p2 $mem $eval2_tokens" >> "$jobs_file"; done
  echo "xl-p2 -1 $eval2_tokens" >> "$jobs_file"
fi
export loom out eval_tokens heldout
xargs -P "$par" -L 1 bash -c '
  run=$0 mem=$1 tokens=$2 name=$0
  args=()
  if [ "$mem" -ge 0 ]; then
    name=$run-mem$mem
    args=(--knn-memory-size "$mem" --section-marker "Chapter ,Letter ")
  fi
  [ "$tokens" != "$eval_tokens" ] && name=$name-t$tokens
  [ "$mem" -ge 0 ] && args+=(--memory-stats "$out/stats-$name.json")
  [ -s "$out/eval-$name.json" ] && exit 0
  "$loom" eval lm --model "$out/$run/model" --max-tokens "$tokens" --threads 1 --json "${args[@]}" \
    "$heldout" > "$out/eval-$name.json.tmp"
  mv "$out/eval-$name.json.tmp" "$out/eval-$name.json"' < "$jobs_file"

python3 scripts/experiments/summarize-knn.py "$out" | tee "$out/results.md"
