#!/usr/bin/env python3
"""Prints the results table of scripts/experiments/delight-en-zh.sh (Markdown) from the run
directories: parameters (loom model-info), training tokens/s and wall time (metrics.jsonl,
/usr/bin/time), best validation BLEU, and BLEU/chrF2 on the test sets (loom eval mt --json).
The per-run SVG plots (loss, lr, BLEU) are in OUT/<model>/plots/.
Usage: summarize-mt.py OUT MODEL..."""
import json, math, os, re, sys

out, models = sys.argv[1], sys.argv[2:]
tests = ["tatoeba-heldout", "flores200-devtest", "ntrex"]


def load_run(m):
    """One run directory: parameter counts, metrics.jsonl records and the test-set scores."""
    run = os.path.join(out, m)
    info = open(os.path.join(run, "model-info.txt")).read()
    mm = re.search(r"parameters: total (\d+) .*?embedding tables (\d+) \| output projection (\d+)", info)
    total, emb, outp = (int(x) for x in mm.groups())
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    scores = {}
    for t in tests:
        j = json.load(open(os.path.join(run, "eval", t + ".json")))
        scores[t] = (j["bleu"]["score"], j["chrf"]["score"])
    return {"total": total, "emb": emb, "outp": outp, "scores": scores,
            "train": [r for r in rows if r.get("kind") == "train"],
            "valid": [r for r in rows if r.get("kind") == "valid"]}


loaded = {m: load_run(m) for m in models}
print("| model | params (total) | params w/o embedding tables | updates | train tok/s | wall | final valid ppl | "
      + " | ".join(f"{t} BLEU / chrF2" for t in tests) + " |")
print("|---" * (7 + len(tests)) + "|")
for m in models:
    r = loaded[m]
    train, valid = r["train"], r["valid"]
    steps = max(x["step"] for x in train)
    tps = sum(x.get("tokens_per_s", 0) for x in train[len(train) // 2:]) / max(1, len(train) - len(train) // 2)
    wall = f"{train[-1]['wall_s'] / 60:.1f} min"  # training wall time (resumed runs: summed segments)
    best = valid[-1]["valid_ppl"] if valid else float("nan")
    cells = [f"{b:.1f} / {c:.1f}" for b, c in (r["scores"][t] for t in tests)]
    print(f"| {m} | {r['total']/1e6:.2f} M | {(r['total']-r['emb']-r['outp'])/1e6:.2f} M | {steps} | {tps:.0f} | {wall} | "
          f"{best:.1f} | " + " | ".join(cells) + " |")

# Runs named <model>-s<seed> (delight-en-zh.sh with SEEDS): one row per model with the mean over
# seeds and each seed's value, OUT/summary.json, and two charts: OUT/valid-loss-curves.svg
# (validation loss vs update, every run) and OUT/bleu-vs-params.svg (mean held-out Tatoeba BLEU
# vs parameters, one line per architecture).
groups = {}  # model -> [(seed, run name)]
for m in models:
    mm = re.fullmatch(r"(.*)-s(\d+)", m)
    if mm:
        groups.setdefault(mm.group(1), []).append((mm.group(2), m))
if groups:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import svgplot  # noqa: E402

    summary, curves = [], {}
    for g, runs in groups.items():
        per = []
        for seed, m in runs:
            r = loaded[m]
            valid = [(x["step"], x["valid_loss"]) for x in r["valid"]]
            curves[f"{g} s{seed}"] = valid
            best_step, best = min(valid, key=lambda v: v[1])
            per.append({"run": m, "parameters": r["total"], "best_valid_loss": best, "best_step": best_step,
                        "last_valid_loss": valid[-1][1], "last_step": valid[-1][0], "test": r["scores"]})
        mean = lambda xs: sum(xs) / len(xs)
        summary.append({"model": g, "parameters": per[0]["parameters"], "seeds": per,
                        "mean": {t: [mean([p["test"][t][k] for p in per]) for k in (0, 1)] for t in tests}})
    print()
    print("| model | params | seeds | valid loss: best (update) per seed | last | "
          + " | ".join(f"{t} BLEU / chrF2 (mean; per seed)" for t in tests) + " |")
    print("|---" * (5 + len(tests)) + "|")
    for s in summary:
        best = "; ".join(f"{p['best_valid_loss']:.3f} ({p['best_step']})" for p in s["seeds"])
        last = "; ".join(f"{p['last_valid_loss']:.3f}" for p in s["seeds"])
        cells = []
        for t in tests:
            each = ", ".join(f"{p['test'][t][0]:.1f}" for p in s["seeds"])
            cells.append(f"**{s['mean'][t][0]:.1f}** / {s['mean'][t][1]:.1f} ({each})")
        print(f"| {s['model']} | {s['parameters'] / 1e6:.2f} M | {len(s['seeds'])} | {best} | {last} | "
              + " | ".join(cells) + " |")
    json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
    colors = {"transformer": "#555555", "delight": "#d62728", "transformer-d128": "#555555",
              "transformer-d80": "#aaaaaa", "delight-d128": "#d62728", "delight-d80": "#ff7f0e"}
    lo = min(v for c in curves.values() for _, v in c)
    hi = max(v for c in curves.values() for _, v in c)
    svgplot.line_chart(os.path.join(out, "valid-loss-curves.svg"),
                       "validation loss (label-smoothed) during training", "update", "loss (nats/token)",
                       curves, False, colors, ylim=(math.floor(lo * 2) / 2, math.ceil(hi * 2) / 2),
                       yfmt="{:.1f}")
    by_arch = {}
    for s in summary:
        by_arch.setdefault(s["model"].split("-")[0], []).append((s["parameters"], s["mean"][tests[0]][0]))
    top = max(b for pts in by_arch.values() for _, b in pts)
    svgplot.line_chart(os.path.join(out, "bleu-vs-params.svg"),
                       f"{tests[0]} BLEU (beam, mean of seeds) vs parameters", "parameters",
                       "BLEU", {a: sorted(p) for a, p in by_arch.items()}, False, colors,
                       ylim=(0, math.ceil(top / 5) * 5 + 5), yfmt="{:.0f}", xfmt=lambda v: f"{v / 1e6:.2f}M")
