#!/usr/bin/env bash
# Experiment: language-model perplexity vs parameters for three decoder blocks at three sizes
# (issue 15 item 3; papers.md §1.7–1.8 and §2.2–2.3):
#   standard  LLaMA/OpenELM-style block, every layer the same: d_head 32, SwiGLU FFN 2.5·d_model
#   openelm   OpenELM layer-wise scaling (Mehta et al. 2024, arXiv 2404.14619 §3): α 0.5→1.0
#             (query heads), β 0.5→4.0 (FFN width) from the first to the last layer
#   delight   DeLighT blocks (Mehta et al., ICLR 2021, arXiv 2008.00623 §3): DExTra unit d→d/2,
#             one attention head of width d/2, light FFN d→d/4→d, block-wise scaling of the
#             DExTra depth 4→8 and width multiplier 2→3 over the blocks
# Each at d_model 64 / 128 / 192 with 4 layers (blocks), byte tokens, RoPE, RMSNorm, tied
# embeddings, 256-token windows (full causal attention inside the window).
#   data   7 Gutenberg books for training (windows of 256 bytes, stride 64, shuffled); the
#          held-out book 84-0.txt (Frankenstein) for validation: its non-overlapping
#          256-byte windows, each scored from an empty context
#   train  STEPS updates of 16 windows (4,096 tokens), AdamW lr 3e-3, 100 warm-up, cosine,
#          clip 1.0, seed 1; validation every 200 updates; the best checkpoint is exported
# The 9 runs go PAR at a time with OMP_NUM_THREADS=1 each (about 1 hour on 2 cores with the
# defaults). Every run resumes (`--resume`), so a rerun skips finished work.
#
# Usage: scripts/experiments/lm_scaling.sh [OUT_DIR]
#        env: STEPS (1200), PAR (2), LOOM (build/loom), ARMS ("standard openelm delight"),
#             SIZES ("192 128 64"), LR (empty = the configs' 3e-3; e.g. LR=0.006 ARMS=delight
#             SIZES=128 into another OUT_DIR for the learning-rate check of the results page)
# Writes OUT_DIR/<arm>-d<size>/ (runs), OUT_DIR/results.md, OUT_DIR/summary.json and
# OUT_DIR/lm-ppl-vs-params.svg, OUT_DIR/lm-valid-curves.svg.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/exp-lm-scaling}
loom=${LOOM:-build/loom}
steps=${STEPS:-1200}
par=${PAR:-2}
arms=${ARMS:-standard openelm delight}
sizes=${SIZES:-192 128 64}
lr_args=${LR:+--lr $LR}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cfg=scripts/experiments/configs/lm-scaling
mkdir -p "$out"
g=data/lm-text/gutenberg
books="$g/11-0.txt $g/1342-0.txt $g/1661.txt $g/2600-0.txt $g/2701-0.txt $g/345.txt $g/98-0.txt"
heldout=$g/84-0.txt
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?'); steps $steps${LR:+, lr $LR}" | tee "$out/machine.txt"

jobs_file=$out/jobs.txt
: > "$jobs_file"
for d in $sizes; do  # largest first, so the longest runs start early
  for a in $arms; do echo "$a-d$d" >> "$jobs_file"; done
done
export loom out steps cfg books heldout lr_args
xargs -P "$par" -L 1 bash -c '
  name=$0
  t0=$(date +%s)
  "$loom" train lm --config "$cfg/$name.json" --data $books --valid "$heldout" --out "$out/$name" \
    --steps "$steps" --export best --quiet --resume $lr_args
  echo "$name: $steps updates in $(( $(date +%s) - t0 )) s" >> "$out/machine.txt"' < "$jobs_file"

python3 scripts/experiments/summarize-lm-scaling.py "$out" | tee "$out/results.md"
