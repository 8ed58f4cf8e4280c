#!/usr/bin/env python3
"""Builds data/ntrex/ntrex-docs.jsonl: Cosmopedia-style rows from the real NTREX-128 English
news documents (CC-BY-SA 4.0), one row per document, for trying `loom translate` on JSONL.

Each row: {"id", "prompt", "text", "format", "audience", "text_token_length"} like
HuggingFaceTB/cosmopedia. "text" is Markdown made from the document's own sentences: the first
sentence as an ATX heading, then paragraphs of three sentences, and a bulleted "In brief" list
of the first sentence of each paragraph. "text_token_length" counts whitespace-separated words.
Deterministic: the same input gives byte-identical output.
Usage: scripts/make-ntrex-jsonl.py [data/ntrex] > data/ntrex/ntrex-docs.jsonl
"""
import json
import sys
from collections import OrderedDict

root = sys.argv[1] if len(sys.argv) > 1 else "data/ntrex"
with open(f"{root}/DOCUMENT_IDS.tsv", encoding="utf-8") as f:
    ids = [line.rstrip("\n").split("\t")[0] for line in f]
with open(f"{root}/newstest2019-src.eng.txt", encoding="utf-8") as f:
    sents = [line.rstrip("\n") for line in f]
assert len(ids) == len(sents), (len(ids), len(sents))
docs = OrderedDict()
for doc_id, sent in zip(ids, sents):
    docs.setdefault(doc_id, []).append(sent)
for doc_id, lines in docs.items():
    title, body = lines[0], lines[1:]
    paras = [" ".join(body[i:i + 3]) for i in range(0, len(body), 3)]
    md = f"# {title}\n\n" + "\n\n".join(paras)
    if len(paras) >= 2:
        md += "\n\n## In brief\n\n" + "\n".join(f"- {body[i]}" for i in range(0, len(body), 3))
    md += "\n"
    row = {"id": doc_id,
           "prompt": f"Write a news article titled \"{title}\".",
           "text": md,
           "format": "news",
           "audience": "general",
           "text_token_length": len(md.split())}
    print(json.dumps(row, ensure_ascii=False))
