#!/usr/bin/env bash
# Experiment: Infini-attention (Munkhdalai et al. 2024, "Leave No Context Behind", §3, §4.1;
# papers.md §3.1, §5.3) against a same-size sliding-window baseline on passkey retrieval
# (Mohtashami & Jaggi 2023), scaled down to 2 CPU cores. Both arms are trained the same way:
# byte tokens, a length curriculum (prompts of 64-160 tokens, then 128-320, then 256-512 —
# 4 to 8 segments of 64), loss on the answer and, as an auxiliary copying signal, on the prompt
# (configs/passkey-*.json). Then:
#   - exact 5-digit match at the training length (512 tokens, TRAIN_TRIALS keys x 5 depths);
#   - the grid at LENGTHS (up to 128x the training length) x 5 depths: a prompt of L tokens
#     folds L/64 segments into the Infini memory, so its rows are accuracy vs memory updates;
#   - the learned memory gates per layer and head (`loom model-info --gates`);
#   - stage 2: the Infini model fine-tuned on 1K-2K-token prompts, tested at 2K and 8x/32x/128x.
# Writes OUT/summary.md, OUT/*.json, OUT/*.svg.
#
# Usage: scripts/experiments/passkey_infini.sh [OUT_DIR]
#   env: STEPS (default: the configs' 5000), LENGTHS, TRIALS, TRAIN_TRIALS, LOOM, ARMS, FT2K (1)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/exp-passkey}
loom=${LOOM:-build/loom}
lengths=${LENGTHS:-512,1K,2K,4K,8K,16K,32K,64K}
trials=${TRIALS:-4}
train_trials=${TRAIN_TRIALS:-20}
arms=${ARMS:-"infini local"}
steps_flag=()
[ -n "${STEPS:-}" ] && steps_flag=(--steps "$STEPS")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?')" | tee "$out/machine.txt"
for arm in $arms; do
  start=$(date +%s)
  "$loom" train lm --config scripts/experiments/configs/passkey-$arm.json --out "$out/$arm" "${steps_flag[@]}" --quiet --resume
  echo "$arm: trained in $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
  grep '"valid"' "$out/$arm/metrics.jsonl" | tail -n 1
done
for arm in $arms; do
  start=$(date +%s)
  "$loom" eval passkey --model "$out/$arm/model" --lengths 512 --depths 0,25,50,75,100 --trials "$train_trials" \
    --seed 7 --json "$out/$arm-trainlen.json" --quiet | tee "$out/$arm-trainlen.txt"
  "$loom" eval passkey --model "$out/$arm/model" --lengths "$lengths" --depths 0,25,50,75,100 --trials "$trials" \
    --json "$out/$arm-passkey.json" --svg "$out/$arm-passkey.svg" --quiet | tee "$out/$arm-passkey.txt"
  "$loom" model-info --gates "$out/$arm/model" > "$out/$arm-gates.txt" 2>&1 || true
  echo "$arm: evaluated in $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
done
python3 scripts/experiments/summarize-passkey.py "$out" 64 512 | tee "$out/summary.md"
cat "$out"/infini-gates.txt

# Stage 2 (FT2K=0 skips it): the paper's remedy for length, fine-tuning on longer prompts —
# the Infini model, from its exported weights (--init-from), 300 updates on 1K-2K-token prompts
# (16-32 memory updates), then the same tests at its new training length 2K and at 8x/32x/128x.
if [ "${FT2K:-1}" = 1 ] && [[ " $arms " == *" infini "* ]]; then
  arm=infini-ft2k
  start=$(date +%s)
  "$loom" train lm --config scripts/experiments/configs/passkey-infini-ft2k.json --init-from "$out/infini" \
    --out "$out/$arm" --quiet --resume
  echo "$arm: trained in $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
  start=$(date +%s)
  "$loom" eval passkey --model "$out/$arm/model" --lengths 2K --depths 0,25,50,75,100 --trials "$train_trials" \
    --seed 7 --json "$out/$arm-trainlen.json" --quiet | tee "$out/$arm-trainlen.txt"
  "$loom" eval passkey --model "$out/$arm/model" --lengths 2K,4K,8K,16K,32K,64K,128K,256K --depths 0,25,50,75,100 \
    --trials "$trials" --json "$out/$arm-passkey.json" --svg "$out/$arm-passkey.svg" --quiet | tee "$out/$arm-passkey.txt"
  "$loom" model-info --gates "$out/$arm/model" > "$out/$arm-gates.txt" 2>&1 || true
  echo "$arm: evaluated in $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
fi
