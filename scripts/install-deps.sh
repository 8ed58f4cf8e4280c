#!/usr/bin/env bash
# Installs every system package loom needs to build, test and benchmark (Debian 12 packages only).
# Nothing else is downloaded. Run as root (or with sudo available).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev            # tensors, autograd, optimizers (libtorch 1.13, CPU)
  libgloo-dev             # headers of c10d::ProcessGroupGloo (data-parallel training)
  libsentencepiece-dev    # Marian / NLLB tokenizers
  libfaiss-dev            # approximate kNN search of the Memorizing Transformer memory; rag vectors
  libicu-dev              # Unicode: BPE regexes and normalization, BERT tokenizer, sentence / word breaks
  libsqlite3-dev          # rag: document store + FTS5 BM25 index
  libgumbo-dev            # rag: HTML text extraction
  libpoppler-cpp-dev      # rag: PDF text extraction
  nlohmann-json3-dev      # config.json, JSONL, safetensors headers
  libcli11-dev            # command line
  libspdlog-dev libfmt-dev
  libcurl4-openssl-dev    # loom download (HTTPS)
  libcpp-httplib-dev      # loom serve (HTTP server) and the local hub server in tests
  chromium                # browser test of loom serve's web page (headless, puppeteer-core)
  fonts-wqy-microhei      # CJK glyphs in that browser's screenshots
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev  # libFuzzer targets and sanitizers (optional builds)
  python3                 # test helpers (kill/resume driver)
  tmux                    # loom chat is tested in a tmux pane (send keys, read the pane)
  python3-dev pybind11-dev  # the loom Python module (docs/python.md)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node + npm for the real-client tests of loom serve (openai, puppeteer-core from
# tests/package.json). A machine may already have a Node build that bundles npm (and conflicts
# with Debian's npm package): then nothing is installed.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#PKGS[@]} packages present"
