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
  libcpp-httplib-dev      # local hub server in tests
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev  # libFuzzer targets and sanitizers (optional builds)
  python3                 # test helpers (kill/resume driver)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#PKGS[@]} packages present"
