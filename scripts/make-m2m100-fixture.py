#!/usr/bin/python3
"""Writes tests/data/hf-tiny/m2m100: a tiny M2M100 checkpoint in the layout of
facebook/m2m100_418M (config.json, generation_config.json, model.safetensors, vocab.json,
sentencepiece.bpe.model, tokenizer_config.json, special_tokens_map.json) plus reference.json.

It is derived from tests/data/hf-tiny/nllb-m2m100 (the same M2M100ForConditionalGeneration
architecture) so that its expected outputs come from transformers without running it again:
- the same sentencepiece.bpe.model; vocab.json maps <s> <pad> </s> <unk> to 0..3 and the
  SentencePiece pieces to 4.. in a seeded random order (a fairseq dictionary is ordered by
  frequency, so M2M100's ids are not spm id + 1 as NLLB's are);
- the 100 M2M100 language tokens __af__ ... __zu__ follow at len(vocab.json) + i
  (transformers' M2M100Tokenizer), then 8 "madeupword" rows (num_madeup_words), as in
  facebook/m2m100_418M (vocab_size 128112 = 128004 + 100 + 8);
- model.shared.weight rows are the NLLB fixture's rows of the same token (piece -> piece,
  eng_Latn -> __en__, zho_Hans -> __zh__, every other NLLB language code used by the reference
  sequences -> some other M2M100 code), every other tensor is copied. The M2M100 model therefore
  computes the NLLB model's logits restricted to the kept tokens, and its greedy output for a
  source is the NLLB reference's greedy output with the ids renamed.
reference.json holds, per case of the NLLB reference: the source text; input_ids and labels
computed here with Python's sentencepiece + vocab.json (M2M100Tokenizer's algorithm:
[__src__] + pieces + [</s>]); greedy_sequence = the NLLB reference greedy sequence renamed;
greedy_text = its decoding (special ids dropped, SentencePiece decode, strip).
Needs Debian's python3-sentencepiece and python3-numpy. Run from the repository root:
    /usr/bin/python3 scripts/make-m2m100-fixture.py
"""
import json, os, random, re, shutil, struct
import numpy as np
import sentencepiece as spm

SRC = "tests/data/hf-tiny/nllb-m2m100"
OUT = "tests/data/hf-tiny/m2m100"
M2M100_CODES = ["af", "am", "ar", "ast", "az", "ba", "be", "bg", "bn", "br", "bs", "ca", "ceb", "cs", "cy", "da", "de",
                "el", "en", "es", "et", "fa", "ff", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi",
                "hr", "ht", "hu", "hy", "id", "ig", "ilo", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko",
                "lb", "lg", "ln", "lo", "lt", "lv", "mg", "mk", "ml", "mn", "mr", "ms", "my", "ne", "nl", "no",
                "ns", "oc", "or", "pa", "pl", "ps", "pt", "ro", "ru", "sd", "si", "sk", "sl", "so", "sq", "sr",
                "ss", "su", "sv", "sw", "ta", "th", "tl", "tn", "tr", "uk", "ur", "uz", "vi", "wo", "xh", "yi", "yo",
                "zh", "zu"]
assert len(M2M100_CODES) == 100
MADEUP = 8


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32"
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(v["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k], dtype="<f4").tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    os.makedirs(OUT, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=f"{SRC}/sentencepiece.bpe.model")
    ref = json.load(open(f"{SRC}/reference.json"))
    nllb_added = json.load(open(f"{SRC}/added_tokens.json"))  # code -> NLLB id
    nllb_cfg = json.load(open(f"{SRC}/config.json"))

    # vocab.json: specials, then the spm pieces (spm ids 3..) in a seeded random order.
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    random.Random(14).shuffle(pieces)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for p in pieces:
        vocab[p] = len(vocab)
    enc_size = len(vocab)
    lang_id = {c: enc_size + i for i, c in enumerate(M2M100_CODES)}
    vocab_size = enc_size + len(M2M100_CODES) + MADEUP

    # NLLB id -> M2M100 id.
    rename = {0: 0, 1: 1, 2: 2, 3: 3}
    for p in pieces:
        rename[sp.piece_to_id(p) + 1] = vocab[p]
    used = set()
    for c in ref["cases"]:
        used.update(c["greedy"]["sequence"])
    for seq in ref["batch"]["greedy_sequences"]:
        used.update(seq)
    nllb_codes = sorted((i, c) for c, i in nllb_added.items())  # incl. <mask>
    pinned = {"eng_Latn": "en", "zho_Hans": "zh", "fra_Latn": "fr", "deu_Latn": "de"}
    free = [c for c in M2M100_CODES if c not in pinned.values()]
    order = [t for t in nllb_codes if t[1] in pinned] + [t for t in nllb_codes if t[0] in used and t[1] not in pinned] + \
            [t for t in nllb_codes if t[0] not in used and t[1] not in pinned]
    madeup_ids = list(range(enc_size + len(M2M100_CODES), vocab_size))
    for nid, code in order:
        if code in pinned:
            rename[nid] = lang_id[pinned[code]]
        elif free:
            rename[nid] = lang_id[free.pop(0)]
        elif madeup_ids and nid not in used:
            rename[nid] = madeup_ids.pop(0)
    assert all(i in rename for i in used), "a reference token has no M2M100 id"
    assert not madeup_ids, "every madeup row gets an NLLB row"

    w = read_safetensors(f"{SRC}/model.safetensors")
    shared = w["model.shared.weight"]
    new = np.zeros((vocab_size, shared.shape[1]), dtype=np.float32)
    for nid, mid in rename.items():
        new[mid] = shared[nid]
    w["model.shared.weight"] = new
    write_safetensors(f"{OUT}/model.safetensors", w)

    cfg = dict(nllb_cfg)
    cfg.pop("tokenizer_class", None)
    cfg["vocab_size"] = vocab_size
    json.dump(cfg, open(f"{OUT}/config.json", "w"), indent=2, sort_keys=True)
    shutil.copy(f"{SRC}/generation_config.json", f"{OUT}/generation_config.json")
    shutil.copy(f"{SRC}/sentencepiece.bpe.model", f"{OUT}/sentencepiece.bpe.model")
    json.dump(vocab, open(f"{OUT}/vocab.json", "w"), ensure_ascii=False, indent=2)
    json.dump({"src_lang": None, "tgt_lang": None, "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
               "unk_token": "<unk>", "pad_token": "<pad>", "language_codes": "m2m100", "sp_model_kwargs": {},
               "num_madeup_words": MADEUP, "model_max_length": 1024, "tokenizer_class": "M2M100Tokenizer"},
              open(f"{OUT}/tokenizer_config.json", "w"), indent=2)
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "pad_token": "<pad>", "additional_special_tokens": [f"__{c}__" for c in M2M100_CODES]},
              open(f"{OUT}/special_tokens_map.json", "w"), indent=2)

    # Expected values, by M2M100Tokenizer's algorithm (independent of loom's C++).
    specials = {0, 1, 2, 3} | set(lang_id.values())
    inv = {v: k for k, v in vocab.items()}

    # Special tokens in the text are split off first and kept whole (transformers' added-token
    # trie; they are AddedTokens without lstrip/rstrip), the chunks between them go to spm.
    special_text = sorted(["<s>", "<pad>", "</s>", "<unk>"] + [f"__{c}__" for c in M2M100_CODES], key=len, reverse=True)
    special_id = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3} | {f"__{c}__": i for c, i in lang_id.items()}
    splitter = re.compile("(" + "|".join(re.escape(t) for t in special_text) + ")")

    def encode(text, code):
        ids = [lang_id[code]]
        for chunk in splitter.split(text):
            if chunk in special_id:
                ids.append(special_id[chunk])
            elif chunk:
                ids += [vocab.get(p, 3) for p in sp.encode(chunk, out_type=str)]
        return ids + [2]

    def decode(ids):
        out, cur = "", []
        for i in ids:
            if i in specials:
                continue
            tok = inv.get(i, "<unk>")
            if tok == "<unk>":  # a madeupword id: transformers writes the <unk> token itself
                out += sp.decode(cur) + tok
                cur = []
            else:
                cur.append(tok)
        return (out + sp.decode(cur)).strip()

    cases = []
    for c in ref["cases"]:
        ids = encode(c["source"], "en")
        assert ids == [rename[i] for i in c["input_ids"]], c["source"]
        labels = encode(c["target"], "zh")
        assert labels == [rename[i] for i in c["labels"]], c["target"]
        greedy = [rename[i] for i in c["greedy"]["sequence"]]
        cases.append({"source": c["source"], "target": c["target"], "src_lang": "en", "tgt_lang": "zh",
                      "input_ids": ids, "labels": labels, "greedy_sequence": greedy,
                      "greedy_text": decode(greedy)})
    extra = [{"text": t, "src_lang": s, "input_ids": encode(t, s)}
             for t, s in [("__de__ Hallo Welt", "fr"), ("", "de"), ("<unk>x</s>y __zh__", "en"), ("Café naïve ☃", "zh")]]
    json.dump({"note": "derived from ../nllb-m2m100/reference.json by scripts/make-m2m100-fixture.py",
               "generation": ref["generation"]["greedy_kwargs"] | {"forced_bos_token_id": lang_id["zh"]},
               "language_code_ids": {"en": lang_id["en"], "zh": lang_id["zh"], "de": lang_id["de"], "zu": lang_id["zu"]},
               "vocab_size": vocab_size, "cases": cases, "tokenizer_cases": extra},
              open(f"{OUT}/reference.json", "w"), ensure_ascii=False, indent=1)
    print(OUT, "vocab", vocab_size, "cases", len(cases))


main()
