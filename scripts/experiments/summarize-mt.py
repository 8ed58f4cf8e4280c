#!/usr/bin/env python3
"""Prints the results table of scripts/experiments/delight-en-zh.sh (Markdown) from the run
directories: parameters (loom model-info), training tokens/s and wall time (metrics.jsonl,
/usr/bin/time), best validation BLEU, and BLEU/chrF2 on the test sets (loom eval mt --json).
The per-run SVG plots (loss, lr, BLEU) are in OUT/<model>/plots/.
Usage: summarize-mt.py OUT MODEL..."""
import json, os, re, sys

out, models = sys.argv[1], sys.argv[2:]
tests = ["tatoeba-heldout", "flores200-devtest", "ntrex"]
print("| model | params (total) | params w/o embedding tables | updates | train tok/s | wall | final valid ppl | "
      + " | ".join(f"{t} BLEU / chrF2" for t in tests) + " |")
print("|---" * (7 + len(tests)) + "|")
for m in models:
    run = os.path.join(out, m)
    info = open(os.path.join(run, "model-info.txt")).read()
    mm = re.search(r"parameters: total (\d+) .*?embedding tables (\d+) \| output projection (\d+)", info)
    total, emb, outp = (int(x) for x in mm.groups())
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    train = [r for r in rows if r.get("kind") == "train"]
    valid = [r for r in rows if r.get("kind") == "valid"]
    steps = max(r["step"] for r in train)
    tps = sum(r.get("tokens_per_s", 0) for r in train[len(train) // 2:]) / max(1, len(train) - len(train) // 2)
    wall = f"{train[-1]['wall_s'] / 60:.1f} min"  # training wall time (resumed runs: summed segments)
    best = valid[-1]["valid_ppl"] if valid else float("nan")
    cells = []
    for t in tests:
        j = json.load(open(os.path.join(run, "eval", t + ".json")))
        cells.append(f"{j['bleu']['score']:.1f} / {j['chrf']['score']:.1f}")
    print(f"| {m} | {total/1e6:.2f} M | {(total-emb-outp)/1e6:.2f} M | {steps} | {tps:.0f} | {wall} | {best:.1f} | "
          + " | ".join(cells) + " |")
