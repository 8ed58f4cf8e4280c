"""Writes the seed corpus fuzz/corpus/safetensors/ (small valid and invalid files)."""
import json, os, struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
os.makedirs(out, exist_ok=True)


def st(header, data=b"", pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


seeds = {
    "valid_two_tensors": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [8, 12]},
                             "__metadata__": {"format": "pt"}}, bytes(range(12))),
    "valid_all_dtypes": st({d: {"dtype": d, "shape": [1], "data_offsets": [o, o + s]}
                            for d, s, o in [("F64", 8, 0), ("I64", 8, 8), ("F32", 4, 16),
                                            ("I32", 4, 20), ("F16", 2, 24), ("I16", 2, 26),
                                            ("I8", 1, 28), ("U8", 1, 29), ("BOOL", 1, 30)]},
                           bytes(31)),
    "valid_scalar_and_empty": st({"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
                                  "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]}},
                                 bytes(4)),
    "valid_empty_header": st({}),
    "bad_overlap": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                       "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, bytes(8)),
    "bad_size": st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}}, bytes(4)),
    "bad_dtype": st({"a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, bytes(4)),
    "bad_header_length": struct.pack("<Q", 1 << 40) + b"{}",
    "bad_duplicate": st(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2)),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


# ---- tokenizer_json/: small byte-level BPE tokenizer.json files (the three fixture flavours
# with only their first 12 merges), alone and followed by NUL + a text to encode.
import shutil

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tok_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "tokenizer_json")
os.makedirs(tok_out, exist_ok=True)
for flavour in ("llama3", "qwen2", "gpt2"):
    with open(os.path.join(root, "tests", "data", "tokenizers", "byte-bpe", flavour, "tokenizer.json"), encoding="utf-8") as f:
        t = json.load(f)
    merges = t["model"]["merges"][:12]
    keep = {(m.replace(" ", "", 1) if isinstance(m, str) else m[0] + m[1]) for m in merges}
    t["model"]["vocab"] = {k: v for k, v in t["model"]["vocab"].items() if v < 256 or k in keep}
    t["model"]["merges"] = merges
    s = json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode()
    with open(os.path.join(tok_out, flavour), "wb") as f:
        f.write(s)
    with open(os.path.join(tok_out, flavour + "_with_text"), "wb") as f:
        f.write(s + b"\0" + "The quick  brown\n\n fox 12345 don't 🙂 <|eot_id|>".encode())

# ---- chat_template/: the templates of tests/data/chat-templates.
ct_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "chat_template")
os.makedirs(ct_out, exist_ok=True)
ct_src = os.path.join(root, "tests", "data", "chat-templates")
for name in sorted(os.listdir(ct_src)):
    if name.endswith(".jinja"):
        shutil.copyfile(os.path.join(ct_src, name), os.path.join(ct_out, name))
