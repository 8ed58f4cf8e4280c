#!/usr/bin/env bash
# loom beside CTranslate2 on one machine, in one run: the translate_bench workload (random-weight
# opus-mt-en-zh architecture, FLORES-200 devtest sentences, exactly NEW_TOKENS target tokens
# each) for every compute type x beam x batch, the two engines alternating over ROUNDS rounds,
# best of each kept (each engine process also keeps the best of 3 timed runs after a warm-up).
# Prints a Markdown table: target tokens/s of each engine, loom/CT2, and each process's peak RSS.
#
# CTranslate2 is built from its public source outside this repository (docs/benchmarks.md says
# how); this script only runs it. Nothing else may run on the machine meanwhile.
#
# Usage: CT2_PYTHONPATH=... CT2_LIBDIR=... bench/peers/translate_vs_ct2.sh [BUILD_DIR]
#   env: MODEL_DIR (/tmp/loom-ct2/opus-mt-en-zh), TYPES ("float32 int8"), BEAMS ("1 4"),
#        BATCHES ("16 64"), THREADS (2), ROUNDS (3), REPEAT (3 timed runs per process), NEW_TOKENS (32),
#        PYTHON (/usr/bin/python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
work=${MODEL_DIR:-/tmp/loom-ct2/opus-mt-en-zh}
py=${PYTHON:-/usr/bin/python3}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
repeat=${REPEAT:-3}
new_tokens=${NEW_TOKENS:-32}
input=data/flores200/eng_Latn.devtest
export PYTHONPATH=${CT2_PYTHONPATH:?set CT2_PYTHONPATH to the directory holding the ctranslate2 package}
export LD_LIBRARY_PATH=${CT2_LIBDIR:?set CT2_LIBDIR to CTranslate2s lib directory}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

[ -f "$work/model.safetensors" ] || "$build/loom" init-model --like opus-mt-en-zh "$work" >&2
[ -f "$work.ct2/model.bin" ] || "$py" bench/peers/loom_to_ct2.py "$work" "$work.ct2" >&2
pieces=$work.pieces
[ -f "$pieces" ] || head -256 "$input" | "$build/loom" tokenize --model "$work" --pieces > "$pieces"

ct2_version=$("$py" -c 'import ctranslate2; print(ctranslate2.__version__)')
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?'); CTranslate2 $ct2_version; $threads threads; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "workload: random-weight opus-mt-en-zh, FLORES-200 devtest sentences (2 x batch of them), $new_tokens target tokens each; best of $rounds alternating rounds x $repeat timed runs"
echo
echo "| compute | beam | batch | loom tgt tok/s | CT2 tgt tok/s | loom / CT2 | peak RSS MiB loom / CT2 |"
echo "|---|---:|---:|---:|---:|---:|---|"
for type in ${TYPES:-float32 int8}; do
  for beam in ${BEAMS:-1 4}; do
    for batch in ${BATCHES:-16 64}; do
      n=$(( 2 * batch ))
      best_l=0; best_c=0; rss_l=0; rss_c=0
      for r in $(seq "$rounds"); do
        # loom row: | type | threads | beam | batch | sentences | src tok/s | tgt tok/s | RSS | hash |
        row=$("$build/loom_translate_bench" --model "$work" --input "$input" --sentences "$n" --batch "$batch" \
          --beam "$beam" --threads "$threads" --new-tokens "$new_tokens" --repeat "$repeat" --compute-type "$type")
        tl=$(echo "$row" | awk -F'|' '{gsub(/ /,"",$8); print $8}'); ml=$(echo "$row" | awk -F'|' '{gsub(/ /,"",$9); print $9}')
        # CT2 row: ROW name compute threads beam batch sentences tgt_tok_s rss ...
        crow=$("$py" bench/peers/ct2_bench.py --model "$work.ct2" --pieces "$pieces" --sentences "$n" --batch "$batch" \
          --beam "$beam" --threads "$threads" --compute "$type" --new-tokens "$new_tokens" --repeat "$repeat" | grep '^ROW')
        tc=$(echo "$crow" | cut -f8); mc=$(echo "$crow" | cut -f9)
        best_l=$(awk -v a="$best_l" -v b="$tl" 'BEGIN{print (b>a)?b:a}'); best_c=$(awk -v a="$best_c" -v b="$tc" 'BEGIN{print (b>a)?b:a}')
        rss_l=$(awk -v a="$rss_l" -v b="$ml" 'BEGIN{print (b>a)?b:a}'); rss_c=$(awk -v a="$rss_c" -v b="$mc" 'BEGIN{print (b>a)?b:a}')
      done
      ratio=$(awk -v a="$best_l" -v b="$best_c" 'BEGIN{printf "%.2f", a/b}')
      echo "| $type | $beam | $batch | $best_l | $best_c | $ratio | $rss_l / $rss_c |"
    done
  done
done
