#!/usr/bin/env bash
# Experiment 6b (papers.md §5.4, heavily scaled down): one small Memorizing-Transformer LM
# (3 layers, d_model 96, last layer kNN with exact top-16, XL cache / local window of one
# 128-token subsequence, byte tokens) trained on 7 Gutenberg books (windows of 4 subsequences = 512 tokens, batch 2,
# kNN memory 1K tokens, memory reset per window), then evaluated on the held-out book
# 84-0.txt (Frankenstein) streamed with memory reset only at its start, with the memory
# capacity set at evaluation time to 128 (= one subsequence, already in the XL cache: the
# no-extra-memory baseline), 2K, 8K and 32K tokens. The SAME weights serve every arm.
#
# Usage: scripts/experiments/knn_memory.sh [OUT_DIR]   (env: STEPS, EVAL_TOKENS, LOOM)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/exp-knn}
loom=${LOOM:-build/loom}
steps=${STEPS:-600}
eval_tokens=${EVAL_TOKENS:-32768}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
books=(data/lm-text/gutenberg/11-0.txt data/lm-text/gutenberg/1342-0.txt data/lm-text/gutenberg/1661.txt
       data/lm-text/gutenberg/2600-0.txt data/lm-text/gutenberg/2701-0.txt data/lm-text/gutenberg/345.txt
       data/lm-text/gutenberg/98-0.txt)
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?')" | tee "$out/machine.txt"
start=$(date +%s)
"$loom" train lm --config scripts/experiments/configs/knn-gutenberg.json --data "${books[@]}" --out "$out/run" --steps "$steps" --quiet --resume
echo "trained $steps steps in $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
for mem in 128 2048 8192 32768; do
  "$loom" eval lm --model "$out/run/model" --knn-memory-size "$mem" --max-tokens "$eval_tokens" --json \
    data/lm-text/gutenberg/84-0.txt > "$out/eval-mem$mem.json"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(f\"memory {j['knn_memory_size']:>6}: loss {j['loss']:.4f} nats/token, ppl {j['ppl']:.3f}, {j['tokens']} tokens, {j['tokens_per_s']:.0f} tokens/s\")" "$out/eval-mem$mem.json" | tee -a "$out/results.txt"
done
