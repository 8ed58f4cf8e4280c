#!/usr/bin/env python3
"""Checks docs/architecture.md against the include graph of src/loom.

Reads every `#include "loom/<layer>/..."` line of src/loom/<layer>/**.{h,cc}, builds the
layer -> layer graph, and compares it with the arrow block of docs/architecture.md (lines
`    <layer>  -> a, b, c (remarks)` or `    core      <- nothing`). Exits 1 and prints the
differences when an arrow is missing from the doc, the doc names an arrow the code lacks, or
the graph has a cycle. Usage: python3 scripts/check_architecture.py [REPO_ROOT]
"""
import os
import re
import sys


def include_graph(src):
    graph = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith((".h", ".cc")):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src).split(os.sep)
            if len(rel) < 2:
                continue  # src/loom/pch.h: no layer
            layer = rel[0]
            deps = graph.setdefault(layer, set())
            with open(path, encoding="utf-8") as f:
                for m in re.finditer(r'^\s*#\s*include\s+"loom/([a-z_0-9]+)/', f.read(), re.M):
                    if m.group(1) != layer:
                        deps.add(m.group(1))
    return graph


def documented_arrows(doc):
    arrows = {}
    with open(doc, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^ {4}([a-z_]+)\s+(->|<-)\s+(.*)$", line.rstrip("\n"))
            if not m:
                continue
            layer, kind, rest = m.groups()
            if kind == "<-":
                arrows[layer] = set()
                continue
            rest = re.sub(r"\([^)]*\)", "", rest)  # remarks in parentheses
            arrows[layer] = {t.strip() for t in rest.split(",") if t.strip()}
            if arrows[layer] == {"everything above"} or "everything" in rest:
                arrows[layer] = None  # cli: any layer
    return arrows


def find_cycle(graph):
    state = {}

    def visit(n, stack):
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack + [n, d]
            if d not in state:
                c = visit(d, stack + [n])
                if c:
                    return c
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n, [])
            if c:
                return c
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    graph = include_graph(os.path.join(root, "src", "loom"))
    arrows = documented_arrows(os.path.join(root, "docs", "architecture.md"))
    problems = []
    for layer in sorted(set(graph) | set(arrows)):
        code = graph.get(layer, set())
        if layer not in arrows:
            problems.append(f"{layer}: has no arrow line in docs/architecture.md (code: {', '.join(sorted(code)) or 'nothing'})")
            continue
        doc = arrows[layer]
        if doc is None:
            continue
        if layer not in graph:
            problems.append(f"{layer}: in docs/architecture.md but not a folder of src/loom")
            continue
        for d in sorted(code - doc):
            problems.append(f"{layer} -> {d}: in the code, missing from docs/architecture.md")
        for d in sorted(doc - code):
            problems.append(f"{layer} -> {d}: in docs/architecture.md, not in the code")
    cycle = find_cycle(graph)
    if cycle:
        problems.append("cycle: " + " -> ".join(cycle))
    for p in problems:
        print(p)
    print(f"{len(graph)} layers, {sum(len(v) for v in graph.values())} arrows in the code; "
          f"{'OK' if not problems else str(len(problems)) + ' problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
