"""Writes a float32 HF Llama / Gemma checkpoint (e.g. one made by `loom init-model --like
llama-3.2-1b|gemma-2b`) as a float32 GGUF file that llama.cpp's llama-bench can load, so both
engines run the same architecture and weights. Speed measurement only: no tokenizer is written
(tokenizer.ggml.model = "no_vocab" with the vocabulary size), the llama3 RoPE frequency factors
are not written, and the Q/K row permutation of llama.cpp's converter is not applied (random
weights: it changes the numbers, not the work).

Needs numpy and llama.cpp's own gguf-py package (from your llama.cpp checkout):
  PYTHONPATH=$LLAMA_CPP/gguf-py /usr/bin/python3 bench/peers/loom_to_gguf.py CKPT_DIR OUT.gguf
Then `llama-quantize OUT.gguf OUT-bf16.gguf BF16` / `... Q8_0` for the other precisions.
"""
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from safetensors_f32 import read_f32


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ckpt, out_path = Path(sys.argv[1]), sys.argv[2]
    cfg = json.loads((ckpt / "config.json").read_text())
    arch = {"llama": "llama", "gemma": "gemma"}.get(cfg["model_type"])
    if arch is None:
        sys.exit(f"{ckpt}/config.json: model_type {cfg['model_type']!r} not handled (llama, gemma)")
    tensors = read_f32(ckpt / "model.safetensors")
    head_dim = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])

    w = gguf.GGUFWriter(out_path, arch)
    w.add_name(f"loom random {cfg['model_type']} (speed only)")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("no_vocab")

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                 "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    plan = []
    for name, arr in tensors.items():
        if name in names:
            plan.append((names[name], arr))
            continue
        parts = name.split(".")  # model.layers.N.<module...>.weight
        if parts[:2] != ["model", "layers"] or parts[-1] != "weight":
            sys.exit(f"unexpected tensor {name}")
        module = ".".join(parts[3:-1])
        if module not in per_layer:
            sys.exit(f"unexpected tensor {name}")
        plan.append((f"blk.{parts[2]}.{per_layer[module]}.weight", arr))
    for gname, arr in plan:
        w.add_tensor_info(gname, arr.shape, arr.dtype, arr.nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for gname, arr in plan:
        w.write_tensor_data(np.ascontiguousarray(arr))
    w.close()
    print(f"wrote {out_path}: {len(plan)} tensors, {sum(a.nbytes for _, a in plan) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
