#!/usr/bin/env python3
"""Summarises scripts/experiments/knn_memory.sh: a Markdown table of held-out perplexity vs kNN
memory size (phase-1 and phase-2 Memorizing weights beside the XL baseline), the head-averaged
memory statistics, OUT/summary.json and the plot OUT/knn-memory.svg.

Usage: summarize-knn.py OUT_DIR
"""
import json
import math
import os
import sys

out = sys.argv[1]
MEMS = [0, 128, 2048, 8192, 32768]
RUNS = ["knn-p1", "knn-p2"]
BASE = ["xl-p1", "xl-p2"]


def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None


def label(m):
    return f"{m // 1024}K" if m >= 1024 and m % 1024 == 0 else str(m)


evals = {r: {m: load(f"eval-{r}-mem{m}.json") for m in MEMS} for r in RUNS}
stats = {r: {m: load(f"stats-{r}-mem{m}.json") for m in MEMS} for r in RUNS}
base = {b: load(f"eval-{b}.json") for b in BASE}


def cell(j):
    return f"{j['loss']:.4f} / {j['ppl']:.3f}" if j else "-"


print("| kNN memory (tokens) | Memorizing, phase 1 (1K-memory training) | Memorizing, phase 2 (8K fine-tune) "
      "| XL baseline, phase 1 | XL baseline, phase 2 |")
print("|---:|---:|---:|---:|---:|")
for m in MEMS:
    print(f"| {label(m)} | {cell(evals['knn-p1'][m])} | {cell(evals['knn-p2'][m])} | {cell(base['xl-p1'])} "
          f"| {cell(base['xl-p2'])} |")
print("\n(loss in nats/byte / perplexity; the XL baseline has no memory, so its number repeats)\n")

print("| weights | memory | gate (mean of heads) | memory mass | joint-softmax memory share | mean distance "
      "| share <= 128 | share <= 2K | share > 2K | same chapter |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def f(x, fmt):
    return "-" if x is None else format(x, fmt)


for r in RUNS:
    for m in MEMS:
        s = stats[r][m]
        if not s:
            continue
        for layer in s["layers"]:
            h = layer["mean"]
            w = h["share_within"]
            older = None if w.get("2048") is None else max(0.0, 1 - w["2048"])
            print(f"| {r} (layer {layer['layer']}) | {label(m)} | {f(h['gate'], '.4f')} | {f(h['memory_mass'], '.4f')} "
                  f"| {f(h['joint_softmax_memory_share'], '.4f')} | {f(h['mean_distance'], '.0f')} "
                  f"| {f(w.get('128'), '.4f')} | {f(w.get('2048'), '.4f')} | {f(older, '.4f')} "
                  f"| {f(h['same_section_share'], '.4f')} |")

print("\nPer-head gates (phase 2 weights):")
for r in RUNS:
    s = stats[r][8192] or next((x for x in stats[r].values() if x), None)
    if s:
        for layer in s["layers"]:
            print(f"- {r} layer {layer['layer']}: " + ", ".join(f"h{h['head']} {h['gate']:.4f}" for h in layer["heads"]))

# The longer check (EVAL2_TOKENS): files eval-<run>[-mem<M>]-t<N>.json.
longer = sorted({f.rsplit("-t", 1)[1][:-5] for f in os.listdir(out) if f.startswith("eval-") and "-t" in f
                 and f.endswith(".json") and f.rsplit("-t", 1)[1][:-5].isdigit()}, key=int)
long_rows = {}
for n in longer:
    print(f"\nLonger check, first {n} tokens of the held-out book (loss nats/byte / perplexity):")
    print("| arm | loss / ppl | memory mass | share > 2K | same chapter |")
    print("|---|---:|---:|---:|---:|")
    for arm in ["knn-p2-mem128", "knn-p2-mem8192", "knn-p2-mem32768", "xl-p2"]:
        j, st = load(f"eval-{arm}-t{n}.json"), load(f"stats-{arm}-t{n}.json")
        if not j:
            continue
        long_rows.setdefault(n, {})[arm] = {k: j[k] for k in ("loss", "ppl", "tokens")}
        h = st["layers"][0]["mean"] if st else None
        w2k = h["share_within"].get("2048") if h else None
        print(f"| {arm} | {cell(j)} | {f(h and h['memory_mass'], '.4f')} "
              f"| {f(None if w2k is None else max(0.0, 1 - w2k), '.4f')} | {f(h and h['same_section_share'], '.4f')} |")

summary = {"memories": MEMS, "longer": long_rows,
           "knn": {r: {str(m): (evals[r][m] and {k: evals[r][m][k] for k in ("loss", "ppl", "tokens")})
                       for m in MEMS} for r in RUNS},
           "xl": {b: base[b] and {k: base[b][k] for k in ("loss", "ppl", "tokens")} for b in BASE}}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)

# SVG: perplexity vs memory (categorical x), Memorizing lines, XL dashed horizontals.
W, H, L, R, T, B = 720, 400, 70, 230, 40, 50
pts = [evals[r][m]["ppl"] for r in RUNS for m in MEMS if evals[r][m]] + [base[b]["ppl"] for b in BASE if base[b]]
if pts:
    lo, hi = min(pts), max(pts)
    pad = max((hi - lo) * 0.1, 0.01)
    lo, hi = lo - pad, hi + pad

    def X(i):
        return L + (W - L - R) * i / (len(MEMS) - 1)

    def Y(v):
        return T + (H - T - B) * (hi - v) / (hi - lo)

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">held-out perplexity (84-0.txt, '
           f'bytes) vs kNN memory at evaluation</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">kNN memory (tokens per head)</text>',
           f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
           f'text-anchor="middle">perplexity</text>']
    for i, m in enumerate(MEMS):
        svg.append(f'<text x="{X(i)}" y="{H - B + 16}" text-anchor="middle">{label(m)}</text>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        svg.append(f'<line x1="{L - 4}" y1="{Y(v)}" x2="{W - R}" y2="{Y(v)}" stroke="#ddd"/>')
        svg.append(f'<text x="{L - 6}" y="{Y(v) + 4}" text-anchor="end">{v:.3f}</text>')
    colors = {"knn-p1": "#1f77b4", "knn-p2": "#d62728", "xl-p1": "#7f7f7f", "xl-p2": "#2ca02c"}
    names = {"knn-p1": "Memorizing, 1K-memory training", "knn-p2": "Memorizing, + 8K fine-tune",
             "xl-p1": "XL baseline, phase 1", "xl-p2": "XL baseline, phase 2"}
    ly = T + 10
    for r in RUNS:
        xy = [(X(i), Y(evals[r][m]["ppl"])) for i, m in enumerate(MEMS) if evals[r][m]]
        if xy:
            svg.append(f'<polyline fill="none" stroke="{colors[r]}" stroke-width="2" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + '"/>')
            svg += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colors[r]}"/>' for x, y in xy]
        svg.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" stroke="{colors[r]}" stroke-width="2"/>'
                   f'<text x="{W - R + 34}" y="{ly + 4}" font-size="10">{names[r]}</text>')
        ly += 18
    for b in BASE:
        if base[b]:
            y = Y(base[b]["ppl"])
            svg.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="{colors[b]}" '
                       f'stroke-width="2" stroke-dasharray="6 4"/>')
        svg.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" stroke="{colors[b]}" '
                   f'stroke-width="2" stroke-dasharray="6 4"/><text x="{W - R + 34}" y="{ly + 4}" '
                   f'font-size="10">{names[b]}</text>')
        ly += 18
    svg.append("</svg>")
    open(os.path.join(out, "knn-memory.svg"), "w").write("\n".join(svg) + "\n")
