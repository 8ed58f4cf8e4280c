#!/bin/bash
# Usage: scripts/dev/translate_outputs.sh LOOM_BINARY OUTDIR [REPO] -- records `loom translate` outputs
# on the fixtures (Marian, NLLB, M2M100; greedy + beam 4; TXT + JSONL) and the default model
# models/en-zh. A refactor must leave these bytes unchanged: record with the old binary and the
# new one, then scripts/dev/compare_outputs.sh OLD_DIR NEW_DIR (exit 1 on any difference).
set -u
LOOM=$1; OUT=$2; REPO=${3:-$(cd "$(dirname "$0")/../.." && pwd)}
mkdir -p "$OUT"; rm -f "$OUT"/*
cd "$REPO"
M=tests/data/hf-tiny/marian-en-zh; N=tests/data/hf-tiny/nllb-m2m100; MM=tests/data/hf-tiny/m2m100
head -n 60 data/flores200/eng_Latn.devtest > "$OUT/in60.txt"
head -n 20 data/ntrex/ntrex-docs.jsonl > "$OUT/in20.jsonl"
head -n 40 data/flores200/eng_Latn.devtest > "$OUT/in40.txt"
T="--threads 1 --no-progress"
run() { name=$1; shift; nice -n 19 "$LOOM" translate $T "$@" > "$OUT/$name.log" 2>&1; echo "$name rc=$?" >> "$OUT/rc.txt"; }
for b in 1 4; do
  run marian-b$b-txt -m $M --beam $b "$OUT/in60.txt" "$OUT/marian-b$b.txt"
  run marian-b$b-jsonl -m $M --beam $b "$OUT/in20.jsonl" "$OUT/marian-b$b.jsonl"
  run nllb-b$b-txt -m $N --src eng_Latn --tgt zho_Hans --beam $b "$OUT/in60.txt" "$OUT/nllb-b$b.txt"
  run nllb-b$b-jsonl -m $N --src eng_Latn --tgt zho_Hans --beam $b "$OUT/in20.jsonl" "$OUT/nllb-b$b.jsonl"
  run m2m-b$b-txt -m $MM --src en --tgt zh --beam $b "$OUT/in60.txt" "$OUT/m2m-b$b.txt"
  run default-b$b-txt --beam $b "$OUT/in40.txt" "$OUT/default-b$b.txt"
done
run default-jsonl "$OUT/in20.jsonl" "$OUT/default.jsonl"
