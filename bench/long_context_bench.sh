#!/usr/bin/env bash
# Long-context streaming benchmark: a small decoder LM (4 layers, d_model 128, 4 heads × 32,
# SwiGLU FFN 512, vocabulary 256, random weights) reads one random token stream chunk by chunk.
#   - Infini-attention (every layer), segment SEGMENT: 1M tokens; the state is (M, z) per layer
#     and head plus one unfinished segment, so peak RSS must not grow with the length.
#   - Full causal attention (every layer, KV cache of all tokens), chunk FULL_CHUNK: up to
#     FULL_MAX tokens (its memory and time grow with the length; 1M does not fit).
# Each configuration runs in its own process (peak RSS = the process high-water mark, VmHWM).
# Prints a Markdown table and checks that Infini's peak RSS at the last checkpoint is within
# 10% of the value at the first.
#
# Usage: bench/long_context_bench.sh [BUILD_DIR]
#   env: SEGMENT (512), TOKENS (1048576), REPORT (65536,262144,1048576), FULL_MAX (32768),
#        FULL_CHUNK (512), THREADS (1: on a shared, loaded machine 2 OpenMP threads spin and run
#        ~20x slower than 1)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
exe=$build/loom_long_context_bench
segment=${SEGMENT:-512}
tokens=${TOKENS:-1048576}
report=${REPORT:-65536,262144,1048576}
full_max=${FULL_MAX:-32768}
full_chunk=${FULL_CHUNK:-512}
threads=${THREADS:-1}
[ -x "$exe" ] || { echo "missing $exe: build first (cmake --build $build --target loom_long_context_bench)" >&2; exit 1; }

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores available, $threads threads; $(date -u +%Y-%m-%d); loom $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "model: 4 layers, d_model 128, 4 heads x 32, SwiGLU FFN 512, vocabulary 256, float32, batch 1, random tokens"
echo

infini=$(mktemp) full=$(mktemp)
trap 'rm -f "$infini" "$full"' EXIT
"$exe" --attention infini --tokens "$tokens" --segment "$segment" --chunk "$segment" --report "$report" --threads "$threads" > "$infini"
full_report=$(python3 -c "import sys; m=int(sys.argv[1]); print(','.join(str(x) for x in [4096,8192,16384,32768,65536,131072] if x<=m))" "$full_max")
"$exe" --attention standard --tokens "$full_max" --segment "$full_chunk" --chunk "$full_chunk" --report "$full_report" --threads "$threads" > "$full"

echo "| attention | tokens | tok/s | peak RSS MiB | state MiB |"
echo "|---|---:|---:|---:|---:|"
fmt() {  # label file
  sed -n 's/^tokens=\([0-9]*\) seconds=[0-9.]* tok_per_s=\([0-9]*\) peak_rss_mib=\([0-9.]*\) state_mib=\([0-9.]*\)$/\1 \2 \3 \4/p' "$2" |
    while read -r t r m s; do echo "| $1 | $t | $r | $m | $s |"; done
}
fmt "infini (segment $segment)" "$infini"
fmt "full causal (chunk $full_chunk)" "$full"
echo
python3 - "$infini" <<'PY'
import re, sys
rows = [tuple(map(float, re.findall(r"tokens=(\d+) .* peak_rss_mib=([\d.]+)", l)[0]))
        for l in open(sys.argv[1]) if l.startswith("tokens=")]
(t0, m0), (t1, m1) = rows[0], rows[-1]
ok = m1 <= 1.10 * m0
print(f"infini peak RSS {m1:.1f} MiB at {int(t1)} tokens vs {m0:.1f} MiB at {int(t0)}: "
      f"{100 * (m1 / m0 - 1):+.1f}% ({'within' if ok else 'NOT within'} 10%)")
sys.exit(0 if ok else 1)
PY
