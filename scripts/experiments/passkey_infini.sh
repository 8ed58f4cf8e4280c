#!/usr/bin/env bash
# Experiment 6a (papers.md §5.3, heavily scaled down): Infini-attention vs a same-size
# segment-local baseline (standard attention with a sliding window = one segment) on passkey
# retrieval. Both are trained on prompts of 192–512 byte tokens (3–8 segments of 64) for STEPS
# updates, then tested at LENGTHS (up to 64× the training length) and 5 needle depths.
# The test grid doubles as "accuracy vs number of memory updates": a prompt of L tokens folds
# L/64 segments into the Infini memory.
#
# Usage: scripts/experiments/passkey_infini.sh [OUT_DIR]   (env: STEPS, LENGTHS, TRIALS, LOOM)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/exp-passkey}
loom=${LOOM:-build/loom}
steps=${STEPS:-200}
lengths=${LENGTHS:-512,1K,2K,4K,8K,16K,32K,64K}
trials=${TRIALS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?')" | tee "$out/machine.txt"
for arm in infini local; do
  start=$(date +%s)
  "$loom" train lm --config scripts/experiments/configs/passkey-$arm.json --out "$out/$arm" --steps "$steps" --quiet --resume
  echo "$arm: trained $steps steps in $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
  tail -n 1 "$out/$arm/metrics.jsonl"
done
for arm in infini local; do
  start=$(date +%s)
  "$loom" eval passkey --model "$out/$arm/model" --lengths "$lengths" --depths 0,25,50,75,100 --trials "$trials" \
    --json "$out/$arm-passkey.json" --svg "$out/$arm-passkey.svg" --quiet | tee "$out/$arm-passkey.txt"
  echo "$arm: passkey grid in $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
done
