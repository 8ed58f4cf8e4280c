#!/usr/bin/env python3
"""Summarizes scripts/experiments/lm_scaling.sh: prints a Markdown table (per arm and size:
parameters, best validation loss on the held-out book in nats/byte, bits/byte, byte perplexity,
the update it was reached at, training tokens/s) and writes OUT/summary.json,
OUT/lm-ppl-vs-params.svg (bits/byte vs parameters, log scale, one line per arm) and
OUT/lm-valid-curves.svg (bits/byte vs update for every run).
Parameters are counted from the exported model's safetensors header (embedding included; byte
vocabulary, so the embedding is 256·d_model).
Python standard library only. Usage: summarize-lm-scaling.py OUT"""
import json, math, os, struct, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgplot  # noqa: E402

out = sys.argv[1]
arms = ["standard", "openelm", "delight", "delight-mh"]
colors = {"standard": "#555555", "openelm": "#1f77b4", "delight": "#d62728", "delight-mh": "#ff7f0e"}
LN2 = math.log(2.0)


def n_params(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for k, v in header.items():
        if k != "__metadata__":
            total += math.prod(v["shape"])
    return total


runs = []
for name in sorted(os.listdir(out)):
    d = os.path.join(out, name)
    metrics = os.path.join(d, "metrics.jsonl")
    model = os.path.join(d, "model", "model.safetensors")
    if not (os.path.isdir(d) and os.path.exists(metrics) and os.path.exists(model)):
        continue
    arm, size = name.rsplit("-d", 1)
    recs = [json.loads(l) for l in open(metrics) if l.strip()]
    valid = [(r["step"], r["valid_loss"]) for r in recs if r.get("kind") == "valid" and "valid_loss" in r]
    train = [r["tokens_per_s"] for r in recs if r.get("kind") == "train" and "tokens_per_s" in r]
    if not valid:
        continue
    best_step, best = min(valid, key=lambda v: v[1])
    cfg = json.load(open(os.path.join(d, "model", "config.json")))
    runs.append({"run": name, "arm": arm, "d_model": int(size), "n_layers": cfg["n_layers"],
                 "parameters": n_params(model), "best_valid_loss": best, "best_step": best_step,
                 "last_step": valid[-1][0], "bits_per_byte": best / LN2, "byte_ppl": math.exp(best),
                 "train_tokens_per_s": sorted(train)[len(train) // 2] if train else None,
                 "curve": valid})

runs.sort(key=lambda r: (arms.index(r["arm"]) if r["arm"] in arms else 9, r["parameters"]))
print("| arm | d_model | parameters | valid loss (nats/byte) | bits/byte | byte ppl | best at update | train tok/s (median) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    tps = f"{r['train_tokens_per_s']:.0f}" if r["train_tokens_per_s"] else "-"
    print(f"| {r['arm']} | {r['d_model']} | {r['parameters']:,} | {r['best_valid_loss']:.4f} | {r['bits_per_byte']:.4f} | "
          f"{r['byte_ppl']:.3f} | {r['best_step']} / {r['last_step']} | {tps} |")
json.dump(runs, open(os.path.join(out, "summary.json"), "w"), indent=1)

if runs:
    lo = math.floor(min(r["bits_per_byte"] for r in runs) * 10) / 10
    hi = math.ceil(max(r["bits_per_byte"] for r in runs) * 10) / 10
    if hi - lo < 0.2:
        hi = lo + 0.2
    by_arm = {}
    for r in runs:
        by_arm.setdefault(r["arm"], []).append((r["parameters"], r["bits_per_byte"]))
    svgplot.line_chart(os.path.join(out, "lm-ppl-vs-params.svg"),
                       "held-out book, bits/byte vs parameters (lower is better)",
                       "parameters (log scale)", "bits/byte", {a: sorted(p) for a, p in by_arm.items()},
                       True, colors, ylim=(lo, hi), yfmt="{:.2f}", xfmt=lambda v: f"{v / 1e6:.2f}M")
    curves = {f"{r['arm']} d{r['d_model']}": [(s, v / LN2) for s, v in r["curve"]] for r in runs}
    top = math.ceil(max(v for c in curves.values() for _, v in c) * 2) / 2
    svgplot.line_chart(os.path.join(out, "lm-valid-curves.svg"), "validation bits/byte during training",
                       "update", "bits/byte", curves, False, colors, ylim=(lo, max(top, lo + 0.5)), yfmt="{:.2f}")
