#!/bin/sh
# Installs the pinned npm packages of tests/package.json (+ package-lock.json) into DIR
# (the build directory's node/), once per lock-file change. Used as a CTest fixture.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
mkdir -p "$dir"
if [ -d "$dir/node_modules" ] && cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
  echo "node packages up to date in $dir"
  exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$dir/"
cd "$dir"
# Chromium comes from Debian (apt-get install chromium): puppeteer-core downloads nothing.
npm ci --no-audit --no-fund --loglevel=error
