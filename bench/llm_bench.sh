#!/usr/bin/env bash
# Decoder-LLM prompt processing (pp) and text generation (tg) tokens/s, llama-bench style, on
# full-size architectures with random weights (`loom init-model --like gemma-2b|llama-3.2-1b`,
# float32 safetensors), for each compute type and thread count; every row is its own process
# (peak RSS = that process's VmHWM). Prints a Markdown table with machine, date, commit, load.
#
# Usage: bench/llm_bench.sh [BUILD_DIR]
#   env: MODELS (gemma-2b llama-3.2-1b), TYPES (float32 bfloat16 int8), THREADS (1 2),
#        PP (512), TG (128), REPS (1), DIR (/tmp/loom-llm-bench: where checkpoints are written;
#        gemma-2b needs 10 GB of disk as float32, llama-3.2-1b 5 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
exe=$build/loom_llm_bench
models=${MODELS:-gemma-2b llama-3.2-1b}
types=${TYPES:-float32 bfloat16 int8}
threads_list=${THREADS:-1 2}
pp=${PP:-512}
tg=${TG:-128}
reps=${REPS:-1}
dir=${DIR:-/tmp/loom-llm-bench}
[ -x "$exe" ] || { echo "missing $exe: build first (cmake -DLOOM_BUILD_BENCH=ON; cmake --build $build --target loom_llm_bench)" >&2; exit 1; }
[ -x "$build/loom" ] || { echo "missing $build/loom" >&2; exit 1; }

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores available; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "workload: random weights, batch 1, random token ids; pp$pp = one forward pass over $pp tokens, tg$tg = $tg single-token steps from an empty KV cache; best of $reps"
echo
echo "| model | compute | threads | pp$pp tok/s | tg$tg tok/s | weights MiB | mapped MiB | peak RSS MiB | RSS / weights | load s | load avg |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for m in $models; do
  ck=$dir/$m
  [ -f "$ck/model.safetensors" ] || "$build/loom" init-model --like "$m" "$ck" >&2
  for t in $types; do
    for th in $threads_list; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      "$exe" --model "$ck" --compute-type "$t" --threads "$th" --pp "$pp" --tg "$tg" --reps "$reps" |
        python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); m, load = sys.argv[1], sys.argv[2]
w = r["weight_bytes"] / 2**20
row = [m, r["compute_type"], r["threads"], "%.1f" % r["pp_tok_s"], "%.2f" % r["tg_tok_s"], "%.0f" % w,
       "%.0f" % (r["mapped_weight_bytes"] / 2**20), "%.0f" % r["peak_rss_mib"], "%.2f" % (r["peak_rss_mib"] / w),
       "%.1f" % r["load_s"], load]
print("| " + " | ".join(str(x) for x in row) + " |")
' "$m" "$load"
    done
  done
done
