#!/usr/bin/env bash
# Experiment 6c: peak RSS and tokens/s against context length for streaming Infini-attention vs
# full causal attention. Reuses bench/long_context_bench.sh (random-weight 4-layer d_model 128
# model; Infini to 1M tokens, full attention to FULL_MAX); builds its target first.
#
# Usage: scripts/experiments/streaming_bench.sh [BUILD_DIR]   (env as bench/long_context_bench.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cmake --build "$build" -j2 --target loom_long_context_bench
bench/long_context_bench.sh "$build"
