#!/bin/bash
# Usage: scripts/dev/compare_outputs.sh REF_DIR NEW_DIR -- byte-for-byte cmp of every output file (not logs).
A=$1; B=$2; bad=0
for f in "$A"/*.txt "$A"/*.jsonl "$A"/rc.txt; do
  n=$(basename "$f"); case $n in in60.txt|in40.txt|in150.txt|in20.jsonl) continue;; esac
  if cmp -s "$f" "$B/$n"; then echo "same  $n ($(wc -c < "$f") bytes)"; else echo "DIFF  $n"; bad=1; fi
done
exit $bad
