#!/usr/bin/env bash
# DeLighT vs Transformer on Tatoeba English→Chinese (issue 3, papers.md §5.1), sized for a 2-core CPU.
# Every model trains on the same data, vocabulary, split, token budget per batch and number of
# updates (compute matched by target tokens seen, not by wall time), then translates three test
# sets with beam 4 and is scored with `loom eval mt --lang zh` (sacreBLEU `zh` tokenizer, chrF2).
#
#   scripts/experiments/delight-en-zh.sh                 # all models, results in runs/delight-en-zh
#   MODELS="transformer-d256" STEPS=200 scripts/experiments/delight-en-zh.sh   # a quick subset
#   CONFIGS=configs/mt/converge SEEDS="1 2" STEPS=4000 BEAM=4 JOBS=2 \
#     MODELS="transformer-d128 transformer-d80 delight-d128 delight-d80" \
#     OUT=runs/delight-en-zh-converge scripts/experiments/delight-en-zh.sh   # the converged runs
#
# With SEEDS set, each model trains once per seed (--seed: initialisation, dropout, batch order;
# the data split has its own fixed seed) into <model>-s<seed>. JOBS runs that many at a time.
#
# Writes runs/delight-en-zh/<model>/ (the training run: metrics.jsonl, plots/, model/) and
# runs/delight-en-zh/<model>/eval/*.json, then prints the results table (summarize.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
LOOM=${LOOM:-build/loom}
OUT=${OUT:-runs/delight-en-zh}
MODELS=${MODELS:-"transformer-d128 delight-d128"}
CONFIGS=${CONFIGS:-configs/mt}  # directory of <model>.json
STEPS=${STEPS:-250}            # optimizer updates per model
MAX_TOKENS=${MAX_TOKENS:-2000} # padded source+target tokens per batch
VOCAB=${VOCAB:-4000}           # joint SentencePiece unigram vocabulary
BEAM=${BEAM:-1}
THREADS=${THREADS:-1}
DATA=data/tatoeba-cmn/cmn.txt
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS

PARALLEL=${PARALLEL:-1}         # 1: train the models at the same time (THREADS threads each)
JOBS=${JOBS:-0}                 # with PARALLEL=1: at most this many at once (0 = all)

one_model() {
  local m=$1 seed=$2 run=$OUT/$1${SEEDS:+-s$2}
  if [ ! -f "$run/model/model.safetensors" ]; then
    local resume=(); [ -d "$run/checkpoints" ] && resume=(--resume)
    # Every run trains the same joint SentencePiece model (same data, seed and options; the
    # trainer is deterministic) and makes the same seeded split, so all models share both.
    /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$run.time" \
      "$LOOM" train mt --config "$CONFIGS/$m.json" --data "$DATA" --out "$run" \
        --steps "$STEPS" --max-tokens "$MAX_TOKENS" --spm-vocab-size "$VOCAB" \
        --valid-size 500 --test-size 1000 --seed "$seed" --quiet "${resume[@]}"
  fi
  mkdir -p "$run/eval"
  cut -f1 "$run/data/test.tsv" > "$run/eval/tatoeba-heldout.en"
  cut -f2 "$run/data/test.tsv" > "$run/eval/tatoeba-heldout.zh"
  local -A src=( [tatoeba-heldout]="$run/eval/tatoeba-heldout.en" [flores200-devtest]=data/flores200/eng_Latn.devtest [ntrex]=data/ntrex/newstest2019-src.eng.txt )
  local -A ref=( [tatoeba-heldout]="$run/eval/tatoeba-heldout.zh" [flores200-devtest]=data/flores200/zho_Hans.devtest [ntrex]=data/ntrex/newstest2019-ref.zho_Hans.txt )
  for t in tatoeba-heldout flores200-devtest ntrex; do
    hyp=$run/eval/$t.hyp.zh
    [ -f "$hyp" ] || "$LOOM" translate --model "$run/model" --beam "$BEAM" --threads "$THREADS" "${src[$t]}" "$hyp"
    "$LOOM" eval mt --lang zh --ref "${ref[$t]}" --hyp "$hyp" --json > "$run/eval/$t.json"
  done
  "$LOOM" model-info "$run/model" > "$run/model-info.txt"
}

RUNS=()
for m in $MODELS; do
  for seed in ${SEEDS:-1}; do
    RUNS+=("$m${SEEDS:+-s$seed}")
    if [ "$PARALLEL" = 1 ]; then
      while [ "$JOBS" -gt 0 ] && [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
      one_model "$m" "$seed" > "$OUT/${RUNS[-1]}.log" 2>&1 &
    else one_model "$m" "$seed"; fi
  done
done
wait
python3 scripts/experiments/summarize-mt.py "$OUT" "${RUNS[@]}"
