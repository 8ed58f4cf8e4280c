#!/usr/bin/env bash
# loom beside llama.cpp's llama-bench on one machine, in one run: prompt processing (pp512) and
# generation (tg128) tokens/s at batch 1 on full-size architectures with random weights
# (`loom init-model --like gemma-2b|llama-3.2-1b`), at equal precision: loom float32 / bfloat16 /
# int8 (per-channel weights) beside llama.cpp F32 / BF16 / Q8_0 (per-32 blocks), for each thread
# count. The same float32 weights go to both (bench/peers/loom_to_gguf.py, then llama-quantize).
# Each engine runs in its own process per row, alternating; both report the best of REPS runs.
#
# llama.cpp is built from its public source outside this repository (docs/benchmarks.md says
# how); this script only runs it. Nothing else may run on the machine meanwhile.
#
# Usage: LLAMA_CPP=/path/to/llama.cpp bench/peers/llm_vs_llamacpp.sh [BUILD_DIR]
#   env: MODELS ("gemma-2b llama-3.2-1b"), TYPES ("float32 bfloat16 int8"), THREADS ("1 2"),
#        REPS (2), DIR (/tmp/loom-llm-bench), PYTHON (/usr/bin/python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
ll=${LLAMA_CPP:?set LLAMA_CPP to a llama.cpp checkout built in LLAMA_CPP/build}
py=${PYTHON:-/usr/bin/python3}
dir=${DIR:-/tmp/loom-llm-bench}
reps=${REPS:-2}
declare -A gguf_type=([float32]=F32 [bfloat16]=BF16 [int8]=Q8_0)

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
llv=$(cd "$ll" && git describe --tags 2>/dev/null || cat "$ll/VERSION" 2>/dev/null || echo '?')
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?'); llama.cpp $llv; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "workload: batch 1, random weights and token ids; pp512 = one pass over 512 tokens, tg128 = 128 single-token steps; best of $reps each"
echo
echo "| model | loom / llama.cpp type | threads | pp512 loom | pp512 llama.cpp | pp ratio | tg128 loom | tg128 llama.cpp | tg ratio | peak RSS MiB loom / llama.cpp |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
for m in ${MODELS:-gemma-2b llama-3.2-1b}; do
  ck=$dir/$m
  [ -f "$ck/model.safetensors" ] || "$build/loom" init-model --like "$m" "$ck" >&2
  [ -f "$ck.F32.gguf" ] || PYTHONPATH="$ll/gguf-py" "$py" bench/peers/loom_to_gguf.py "$ck" "$ck.F32.gguf" >&2
  for t in ${TYPES:-float32 bfloat16 int8}; do
    g=${gguf_type[$t]}
    [ -f "$ck.$g.gguf" ] || "$ll/build/bin/llama-quantize" "$ck.F32.gguf" "$ck.$g.gguf" "$g" >&2
    for th in ${THREADS:-1 2}; do
      lr=$("$build/loom_llm_bench" --model "$ck" --compute-type "$t" --threads "$th" --pp 512 --tg 128 --reps "$reps")
      rss_file=$(mktemp)
      cr=$(/usr/bin/time -o "$rss_file" -f 'RSS_KB %M' "$ll/build/bin/llama-bench" -m "$ck.$g.gguf" -t "$th" \
             -p 512 -n 128 -r "$reps" -o jsonl 2>/dev/null)
      cr="$cr
$(cat "$rss_file")"; rm -f "$rss_file"
      "$py" - "$m" "$t/$g" "$th" "$lr" "$cr" <<'PY'
import json, sys
m, types, th, lr, cr = sys.argv[1:]
l = json.loads(lr)
pp = tg = 0.0
rss = 0
for line in cr.splitlines():
    if line.startswith("RSS_KB"):
        rss = int(line.split()[1]) / 1024
    elif line.startswith("{"):
        r = json.loads(line)
        best = max(r["samples_ts"])
        if r["n_prompt"] > 0: pp = best
        else: tg = best
print(f"| {m} | {types} | {th} | {l['pp_tok_s']:.1f} | {pp:.1f} | {l['pp_tok_s'] / pp:.2f} | "
      f"{l['tg_tok_s']:.2f} | {tg:.2f} | {l['tg_tok_s'] / tg:.2f} | {l['peak_rss_mib']:.0f} / {rss:.0f} |")
PY
    done
  done
done
