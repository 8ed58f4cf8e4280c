#!/usr/bin/env python3
"""Builds small byte-level BPE tokenizer.json fixtures (the HF `tokenizers` format) and the
token ids loom must produce for them, computed here by an independent Python implementation.

Three directories, one per pre-tokenizer flavour:
  llama3/  Split(Llama 3 regex, Isolated) + ByteLevel(use_regex=false), ignore_merges,
           TemplateProcessing <|begin_of_text|> $A, Llama 3 chat template
  qwen2/   NFC normalizer + Split(Qwen2 regex) + ByteLevel, ByteLevel post-processor, ChatML
  gpt2/    ByteLevel(add_prefix_space=true, use_regex=true: the GPT-2 regex), no post-processor

The merges are learned here (deterministic BPE training: most frequent adjacent pair, ties
broken by the smaller pair) from the UDHR English + Chinese text in tests/data/hf-tiny/corpus.
expected.json: for each case, the ids of `tokenizer.encode(text, add_special_tokens)` computed
with the `regex` module (Unicode \\p{L} / \\p{N} like oniguruma) and a plain BPE loop (lowest
merge rank first, leftmost on ties, as tokenizers' Word::merge_all), and the decoded text.

Usage: python3 tests/data/tokenizers/byte-bpe/make_fixture.py   (needs the `regex` module)
"""
import collections
import json
import os
import unicodedata

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "hf-tiny", "corpus")

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
N_MERGES = 300


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()
U2B = {u: b for b, u in B2U.items()}


def pre_tokenize(text, flavour):
    if flavour == "qwen2":
        text = unicodedata.normalize("NFC", text)
    if flavour == "gpt2" and not text.startswith(" "):
        text = " " + text
    pattern = {"llama3": LLAMA3, "qwen2": QWEN2, "gpt2": GPT2}[flavour]
    return ["".join(B2U[b] for b in w.encode("utf-8")) for w in regex.findall(pattern, text)]


def train(words, n_merges):
    counts = collections.Counter(words)
    vocab = {w: list(w) for w in counts}
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in counts.items():
            syms = vocab[w]
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w in vocab:
            syms, out, i = vocab[w], [], 0
            while i < len(syms):
                if i + 1 < len(syms) and (syms[i], syms[i + 1]) == best:
                    out.append(syms[i] + syms[i + 1])
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            vocab[w] = out
    return merges


def bpe(word, ranks, vocab, ignore_merges):
    if ignore_merges and word in vocab:
        return [vocab[word]]
    syms = list(word)
    while len(syms) > 1:
        best = None
        for i in range(len(syms) - 1):
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        syms[i:i + 2] = [syms[i] + syms[i + 1]]
    return [vocab[s] for s in syms]


SPECIALS = {
    "llama3": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "gpt2": ["<|endoftext|>"],
}

TEXTS = [
    "The quick brown fox",
    "All human beings are born free and equal in dignity and rights.",
    "人人生而自由,在尊严和权利上一律平等。",
    "Numbers 12345 and   spaces\n\tnew line 🙂 Ünïcödé",
    "I'M sure you'LL see: don't, won't; it's 3.14159!!\r\n\r\nEnd   ",
    "Cafe\u0301 vs Café",  # NFD vs NFC e-acute
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|>user\nHi<|im_end|>\n",
    "tab\there  \u00a0nbsp\u2003emspace\u000bvt\u0085nel",
    "",
    "   ",
    "aaaaaaa bbbbbbbbb",
    "Cleanup: a , b . c ? d ! e ' f don 't I 'm it 's we 've they 're",
]


def clean_up_tokenization(text):
    # transformers PreTrainedTokenizerBase.clean_up_tokenization
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def encode(text, flavour, ranks, vocab, added):
    # added tokens split off first (leftmost, longest), the rest goes through the pipeline
    ids = []
    pos = 0
    toks = sorted(added, key=len, reverse=True)
    plain = ""
    while pos < len(text):
        hit = next((t for t in toks if text.startswith(t, pos)), None)
        if hit is None:
            plain += text[pos]
            pos += 1
            continue
        if plain:
            for w in pre_tokenize(plain, flavour):
                ids += bpe(w, ranks, vocab, flavour == "llama3")
            plain = ""
        ids.append(added[hit])
        pos += len(hit)
    if plain:
        for w in pre_tokenize(plain, flavour):
            ids += bpe(w, ranks, vocab, flavour == "llama3")
    return ids


def decode(ids, id_to_token, added_ids, skip_special):
    out = b""
    for i in ids:
        if i in added_ids:
            if not skip_special:
                out += id_to_token[i].encode("utf-8")
            continue
        out += bytes(U2B[c] for c in id_to_token[i])
    return out.decode("utf-8", errors="replace")


def build(flavour, corpus_text, chat_template):
    words = []
    for line in corpus_text.splitlines():
        words += pre_tokenize(line, flavour)
    merges = train(words, N_MERGES)
    vocab = {}
    for b in range(256):
        vocab[B2U[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    ranks = {m: i for i, m in enumerate(merges)}
    added = {}
    for t in SPECIALS[flavour]:
        added[t] = len(vocab) + len(added)
    pattern = {"llama3": LLAMA3, "qwen2": QWEN2}.get(flavour)
    if flavour == "gpt2":
        pre = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    else:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    post = None
    if flavour == "llama3":
        bos = "<|begin_of_text|>"
        post = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos: {"id": bos, "ids": [added[bos]], "tokens": [bos]}}}]}
    elif flavour == "qwen2":
        post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t, i in added.items()],
        "normalizer": {"type": "NFC"} if flavour == "qwen2" else None,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": flavour == "llama3", "vocab": vocab,
                  "merges": [a + " " + b for a, b in merges] if flavour != "qwen2" else [[a, b] for a, b in merges]},
    }
    d = os.path.join(HERE, flavour)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
        f.write("\n")
    cfg = {"llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                      "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": True,
                      "chat_template": chat_template["llama3"]},
           "qwen2": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                     "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "add_prefix_space": False,
                     "tokenizer_class": "Qwen2Tokenizer", "clean_up_tokenization_spaces": False,
                     "chat_template": chat_template["qwen2"]},
           "gpt2": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                    "tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": False}}[flavour]
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
        f.write("\n")
    id_to_token = {i: t for t, i in vocab.items()}
    id_to_token.update({i: t for t, i in added.items()})
    cleanup = cfg["clean_up_tokenization_spaces"]
    fix = clean_up_tokenization if cleanup else (lambda t: t)
    cases = []
    for text in TEXTS:
        ids = encode(text, flavour, ranks, vocab, added)
        with_special = ([added["<|begin_of_text|>"]] if flavour == "llama3" else []) + ids
        cases.append({"text": text, "ids": ids, "ids_with_special_tokens": with_special,
                      "decoded": fix(decode(ids, id_to_token, set(added.values()), False)),
                      "decoded_skip_special": fix(decode(ids, id_to_token, set(added.values()), True))})
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "make_fixture.py", "regex": regex.__version__, "vocab_size": len(vocab) + len(added),
                   "merges": len(merges), "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(flavour, len(vocab), "tokens,", len(merges), "merges")


def main():
    corpus = ""
    for name in ("udhr_eng.txt", "udhr_cmn_hans.txt"):
        with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
            corpus += f.read()
    templates_dir = os.path.join(HERE, "..", "..", "chat-templates")
    chat_template = {}
    for k, name in (("llama3", "llama3.jinja"), ("qwen2", "qwen2.jinja")):
        with open(os.path.join(templates_dir, name), encoding="utf-8") as f:
            chat_template[k] = f.read()
    for flavour in ("llama3", "qwen2", "gpt2"):
        build(flavour, corpus, chat_template)


if __name__ == "__main__":
    main()
