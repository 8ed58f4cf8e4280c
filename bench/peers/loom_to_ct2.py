"""Converts an HF Marian checkpoint directory (model.safetensors + config.json + vocab.json, e.g.
one written by `loom init-model --like opus-mt-en-zh`) to a CTranslate2 model directory with
CTranslate2's own MarianMTLoader, without torch or transformers: the loader is handed numpy
arrays shaped like the HF modules it reads. Speed measurement only.

Needs numpy and the ctranslate2 Python package (built from its public source, outside loom):
  /usr/bin/python3 bench/peers/loom_to_ct2.py HF_DIR OUT_DIR [float32|int8|bfloat16]
(quantization at conversion is optional: CTranslate2 also converts at load with compute_type).
"""
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import ctranslate2.converters.transformers as ct2_hf
from ctranslate2.converters.converter import Converter
from safetensors_f32 import read_f32

# The loader checks isinstance(module, transformers.Conv1D); no module here is one.
ct2_hf.transformers = types.SimpleNamespace(Conv1D=type("Conv1D", (), {}))


def sinusoidal(n_pos, dim):
    """transformers' MarianSinusoidalPositionalEmbedding table (sin in the first half, cos in the second)."""
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    j = np.arange(dim, dtype=np.float64)[None, :]
    enc = pos / np.power(10000, 2 * (j // 2) / dim)
    out = np.zeros((n_pos, dim), dtype=np.float32)
    out[:, : dim // 2] = np.sin(enc[:, 0::2])
    out[:, dim // 2:] = np.cos(enc[:, 1::2])
    return out


def module_tree(weights, prefix):
    """Nested SimpleNamespace from dotted weight names under prefix (layers.N become a list)."""
    root = {}
    for name, arr in weights.items():
        if not name.startswith(prefix):
            continue
        node = root
        parts = name[len(prefix):].split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = arr

    def build(d):
        if all(k.isdigit() for k in d):
            return [build(d[k]) for k in sorted(d, key=int)]
        ns = types.SimpleNamespace()
        for k, v in d.items():
            setattr(ns, k, build(v) if isinstance(v, dict) else v)
        if hasattr(ns, "weight") and not hasattr(ns, "bias"):
            ns.bias = None
        return ns

    return build(root)


class MarianFromArrays(Converter):
    def __init__(self, model_dir):
        self.dir = Path(model_dir)

    def _load(self):
        cfg = json.loads((self.dir / "config.json").read_text())
        w = read_f32(self.dir / "model.safetensors", copy=True)
        config = types.SimpleNamespace(**cfg)
        model = types.SimpleNamespace(config=config, model=types.SimpleNamespace())
        for side in ("encoder", "decoder"):
            m = module_tree(w, f"model.{side}.")
            m.config = config
            m.embed_tokens = types.SimpleNamespace(weight=w["model.shared.weight"])
            if not hasattr(m, "embed_positions"):
                m.embed_positions = types.SimpleNamespace(
                    weight=sinusoidal(cfg["max_position_embeddings"], cfg["d_model"]))
            setattr(model.model, side, m)
        model.lm_head = types.SimpleNamespace(weight=w.get("lm_head.weight", w["model.shared.weight"]), bias=None)
        if "final_logits_bias" in w:
            model.final_logits_bias = types.SimpleNamespace(
                nonzero=lambda: types.SimpleNamespace(numel=lambda: int(np.count_nonzero(w["final_logits_bias"]))),
                squeeze=lambda: w["final_logits_bias"].reshape(-1))
        vocab = json.loads((self.dir / "vocab.json").read_text(encoding="utf-8"))
        tokenizer = types.SimpleNamespace(eos_token="</s>", unk_token="<unk>", get_vocab=lambda: vocab)
        return ct2_hf.MarianMTLoader()(model, tokenizer)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    q = sys.argv[3] if len(sys.argv) == 4 else None
    print(MarianFromArrays(sys.argv[1]).convert(sys.argv[2], quantization=q, force=True))
