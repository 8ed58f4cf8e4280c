#!/usr/bin/env bash
# Training speed of `loom train mt`: DeLighT vs the Transformer of about the same parameter
# count (configs/mt/*-d128.json: 1.80 M vs 1.90 M with the 4k vocabulary), optionally for
# several loom binaries (e.g. main's and a branch's) in the same run, alternating, so that a
# shared machine's load hits all of them alike. Prints one table row per binary and model with
# the best-of-rounds target tokens/s and the ratio to the Transformer of the same binary.
#
#   bench/train_speed.sh                                   # build/loom, 60 updates, 2 threads, 3 rounds
#   BINS="main=/path/to/main/loom new=build/loom" STEPS=60 THREADS=2 ROUNDS=3 bench/train_speed.sh
#   NPROC=2 THREADS=1 bench/train_speed.sh                 # 2 data-parallel workers of 1 thread each
#
# NPROC > 1 runs `loom train mt --nproc NPROC` (Gloo data parallel on this machine: the same
# updates as one process, each worker back-propagating a slice of every batch), THREADS per worker.
#
# tokens/s = target (non-pad) tokens per second as `loom train` logs it (metrics.jsonl,
# tokens_per_s), averaged over the log intervals after the first (warm-up); wall = training
# time of the run. Data: data/tatoeba-cmn (the setup of docs/results/delight-en-zh.md, batches
# of 2,000 padded tokens); the SentencePiece model is trained once and shared by all runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BINS=${BINS:-"loom=build/loom"}
MODELS=${MODELS:-"transformer-d128 delight-d128"}
STEPS=${STEPS:-60}
THREADS=${THREADS:-2}
NPROC=${NPROC:-1}
ROUNDS=${ROUNDS:-3}
MAX_TOKENS=${MAX_TOKENS:-2000}
OUT=${OUT:-runs/train-speed}
DATA=data/tatoeba-cmn/cmn.txt
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS THREADS NPROC
first_bin=${BINS%% *}; first_bin=${first_bin#*=}
if [ ! -f "$OUT/spm/source.spm" ]; then
  "$first_bin" train mt --config configs/mt/transformer-d128.json --data "$DATA" --out "$OUT/spm-run" --steps 1 \
    --spm-vocab-size 4000 --valid-size 500 --test-size 1000 --seed 1 --bleu-sentences 0 --quiet
  mkdir -p "$OUT/spm" && cp "$OUT/spm-run/spm/source.spm" "$OUT/spm/source.spm"
fi
for r in $(seq 1 "$ROUNDS"); do
  for b in $BINS; do
    name=${b%%=*} bin=${b#*=}
    for m in $MODELS; do
      run=$OUT/$name-$m-r$r
      rm -rf "$run"
      "$bin" train mt --config "configs/mt/$m.json" --data "$DATA" --src-spm "$OUT/spm/source.spm" --out "$run" \
        --steps "$STEPS" --max-tokens "$MAX_TOKENS" --valid-size 500 --test-size 1000 --seed 1 \
        --valid-every 1000000 --save-every 1000000 --bleu-sentences 0 --nproc "$NPROC" --quiet
      "$bin" model-info "$run/model" | sed -n 's/^parameters: total \([0-9]*\).*/\1/p' > "$run/params.txt"
      echo "round $r $name $m: $(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if "tokens_per_s" in l][1:]; print(round(sum(x["tokens_per_s"] for x in r)/len(r)))' "$run/metrics.jsonl") tok/s" >&2
    done
  done
done
python3 - "$OUT" "$ROUNDS" "$BINS" "$MODELS" <<'PY'
import json, os, sys
out, rounds, bins, models = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
print("| binary | model | params | tokens/s (best of %d) | all rounds | ratio to transformer |" % rounds
      + "  (%s thread(s) x %s process(es))" % (os.environ.get("THREADS", "2"), os.environ.get("NPROC", "1")))
print("|---|---|---:|---:|---|---:|")
for b in bins:
    name = b.split("=", 1)[0]
    best = {}
    for m in models:
        vals = []
        for r in range(1, rounds + 1):
            run = f"{out}/{name}-{m}-r{r}"
            recs = [json.loads(l) for l in open(run + "/metrics.jsonl") if "tokens_per_s" in l][1:]
            vals.append(sum(x["tokens_per_s"] for x in recs) / len(recs))
        params = int(open(f"{out}/{name}-{m}-r1/params.txt").read().strip() or 0)
        best[m] = max(vals)
        base = [k for k in models if k.startswith("transformer")]
        ratio = best[m] / best[base[0]] if base and base[0] in best else float("nan")
        print(f"| {name} | {m} | {params/1e6:.2f} M | {best[m]:.0f} | {' / '.join(f'{v:.0f}' for v in vals)} | {ratio:.2f} |")
PY
