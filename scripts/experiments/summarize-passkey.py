#!/usr/bin/env python3
"""Summarizes scripts/experiments/passkey_infini.sh: prints Markdown tables (exact 5-digit match
and per-digit accuracy at the training length and per test length, Infini beside the local
baseline, with the number of Infini memory updates = segments folded before the answer) and writes
OUT/passkey-vs-memory-updates.svg (exact match vs memory updates, both arms) and
OUT/passkey-valid-curve.svg (validation exact match vs training update, both arms).
Python standard library only. Usage: summarize-passkey.py OUT [SEGMENT_LEN (64)] [TRAIN_LEN (512)]"""
import json, math, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgplot  # noqa: E402

out = sys.argv[1]
seg = int(sys.argv[2]) if len(sys.argv) > 2 else 64
train_len = int(sys.argv[3]) if len(sys.argv) > 3 else 512
arms = ["infini", "local"]
colors = {"infini": "#1f77b4", "local": "#d62728", "infini-ft2k": "#2ca02c"}


def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None


def label(n):
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def row_means(g, i):
    ex = sum(g["exact"][i]) / len(g["exact"][i])
    dg = sum(g["digit"][i]) / len(g["digit"][i])
    toks = sum(g["prompt_tokens"][i]) / len(g["prompt_tokens"][i])
    return ex, dg, toks


# ---- training length: the >= 95 % check
print("### At the training length\n")
print("| model | prompt tokens | trials | exact match (mean over depths) | per depth (0/25/50/75/100 %) | per-digit |")
print("|---|---:|---:|---:|---|---:|")
for a in arms:
    g = load(f"{a}-trainlen.json")
    if not g:
        continue
    for i, n in enumerate(g["lengths"]):
        ex, dg, toks = row_means(g, i)
        per = " / ".join(f"{v:.2f}" for v in g["exact"][i])
        print(f"| {a} | {toks:.0f} | {g['trials'] * len(g['depths'])} | **{ex:.3f}** | {per} | {dg:.3f} |")

# ---- the length grid = accuracy vs memory updates
grids = {a: load(f"{a}-passkey.json") for a in arms}
print("\n### Longer prompts (accuracy vs number of memory updates)\n")
print("| prompt length | × training length | Infini memory updates | Infini exact / per-digit | local exact / per-digit |")
print("|---:|---:|---:|---:|---:|")
base = grids["infini"] or grids["local"]
points = {a: [] for a in arms}
if base:
    for i, n in enumerate(base["lengths"]):
        cells = []
        toks = None
        for a in arms:
            g = grids[a]
            if not g:
                cells.append("–")
                continue
            ex, dg, toks = row_means(g, i)
            points[a].append((math.ceil(toks / seg), ex, dg))
            cells.append(f"{ex:.2f} / {dg:.2f}")
        print(f"| {label(n)} | {n / train_len:g} | {math.ceil(toks / seg)} | {cells[0]} | {cells[1]} |")


# ---- stage 2: the Infini model fine-tuned on 1K-2K-token prompts
ft_t, ft_g = load("infini-ft2k-trainlen.json"), load("infini-ft2k-passkey.json")
if ft_t:
    ex, dg, toks = row_means(ft_t, 0)
    per = " / ".join(f"{v:.2f}" for v in ft_t["exact"][0])
    print("\n### Stage 2: Infini fine-tuned on 1K-2K-token prompts\n")
    print(f"At its training length 2K ({toks:.0f} tokens, {ft_t['trials'] * len(ft_t['depths'])} prompts): "
          f"exact match **{ex:.3f}** (per depth {per}), per-digit {dg:.3f}.\n")
if ft_g:
    print("| prompt length | × 2K | memory updates | exact / per-digit |")
    print("|---:|---:|---:|---:|")
    for i, n in enumerate(ft_g["lengths"]):
        ex, dg, toks = row_means(ft_g, i)
        points.setdefault("infini-ft2k", []).append((math.ceil(toks / seg), ex, dg))
        print(f"| {label(n)} | {n / 2048:g} | {math.ceil(toks / seg)} | {ex:.2f} / {dg:.2f} |")


def svg_lines(path, title, xlabel, ylabel, series, logx):
    svgplot.line_chart(path, title, xlabel, ylabel, series, logx, colors)


svg_lines(os.path.join(out, "passkey-vs-memory-updates.svg"),
          "passkey exact match vs memory updates (segments of %d tokens)" % seg,
          "segments before the answer (log scale)", "exact 5-digit match",
          {f"{a} exact": [(x, e) for x, e, _ in points[a]] for a in points if points[a]}, True)

curves = {}
for a in arms:
    p = os.path.join(out, a, "metrics.jsonl")
    if os.path.exists(p):
        rows = [json.loads(l) for l in open(p) if l.strip()]
        curves[f"{a} valid"] = [(r["step"], r["passkey_acc"]) for r in rows if r.get("kind") == "valid"]
svg_lines(os.path.join(out, "passkey-valid-curve.svg"), "validation exact match (teacher forced) during training",
          "update", "exact 5-digit match", curves, False)
