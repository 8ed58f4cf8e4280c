#!/usr/bin/python3
"""Writes tests/data/io/torch-bin/ with real torch.save (Debian python3-torch 1.13.1; needs
python3-numpy), the way transformers' save_pretrained(safe_serialization=False) writes
checkpoints:
- m2m100/pytorch_model.bin: torch.save(module.state_dict()) of a torch.nn.Module tree holding
  the weights of tests/data/hf-tiny/m2m100/model.safetensors, with the embeddings tied as in
  M2M100ForConditionalGeneration (model.shared.weight, model.encoder.embed_tokens.weight,
  model.decoder.embed_tokens.weight and lm_head.weight are one Parameter, so one storage). The
  state dict is nn.Module's OrderedDict with its _metadata attribute.
- m2m100-sharded/pytorch_model-0000{1,2}-of-00002.bin + pytorch_model.bin.index.json: the same
  tensors (model.shared.weight only) split in two shards, index as transformers writes it
  ({"metadata": {"total_size": bytes}, "weight_map": {name: shard}}).
- views.bin + views.json: dtypes (f32, f16, bf16, f64, i64, i32, i8, u8, bool), a transposed
  view, slices with storage offsets sharing one storage, an empty tensor and a 0-dim tensor;
  views.json holds each tensor's dtype, shape and values (flattened, as float) for the test.
Run from the repository root: /usr/bin/python3 tests/data/io/make_torch_bin_fixtures.py
"""
import collections, json, os, struct
import numpy as np
import torch

OUT = "tests/data/io/torch-bin"
SRC = "tests/data/hf-tiny/m2m100/model.safetensors"
TIED = ["model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"]


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = collections.OrderedDict()
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(v["shape"]).copy())
    return out


def module_tree(tensors, tied):
    """An nn.Module whose state_dict() has exactly these names (parameters at the leaves)."""
    root = torch.nn.Module()
    params = {}
    for name, t in tensors.items():
        *path, leaf = name.split(".")
        m = root
        for p in path:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        params[name] = torch.nn.Parameter(t, requires_grad=False)
        m.register_parameter(leaf, params[name])
    for name in tied:
        *path, leaf = name.split(".")
        m = root
        for p in path:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        m.register_parameter(leaf, params["model.shared.weight"])
    return root


def main():
    os.makedirs(f"{OUT}/m2m100", exist_ok=True)
    os.makedirs(f"{OUT}/m2m100-sharded", exist_ok=True)
    w = read_safetensors(SRC)
    sd = module_tree(w, TIED).state_dict(keep_vars=False)
    assert hasattr(sd, "_metadata") and all(sd[n].data_ptr() == sd["model.shared.weight"].data_ptr() for n in TIED)
    torch.save(sd, f"{OUT}/m2m100/pytorch_model.bin")

    names = list(w)
    half = len(names) // 2
    index = {"metadata": {"total_size": sum(t.numel() * 4 for t in w.values())}, "weight_map": {}}
    for i, part in enumerate([names[:half], names[half:]]):
        fname = f"pytorch_model-0000{i + 1}-of-00002.bin"
        shard = module_tree(collections.OrderedDict((n, w[n]) for n in part), []).state_dict()
        torch.save(shard, f"{OUT}/m2m100-sharded/{fname}")
        for n in part:
            index["weight_map"][n] = fname
    json.dump(index, open(f"{OUT}/m2m100-sharded/pytorch_model.bin.index.json", "w"), indent=2, sort_keys=True)

    base = torch.arange(24, dtype=torch.float32) * 0.5 - 3
    t = collections.OrderedDict()
    t["f32.base"] = base
    t["f32.transposed"] = base[:12].view(3, 4).t()         # strides (1, 4), offset 0
    t["f32.slice"] = base[5:11].view(2, 3)                 # offset 5, same storage
    t["f32.column"] = base.view(4, 6)[1:, 2]               # offset 8, stride 6
    t["f16"] = torch.tensor([[0.5, -1.25], [2.0, 65504.0]], dtype=torch.float16)
    t["bf16"] = torch.tensor([1.0, -0.0078125, 3.5], dtype=torch.bfloat16)
    t["f64"] = torch.tensor([1e-300, -2.5], dtype=torch.float64)
    t["i64"] = torch.tensor([-(2 ** 40), 7], dtype=torch.int64)
    t["i32"] = torch.tensor([[-5], [6]], dtype=torch.int32)
    t["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    t["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    t["bool"] = torch.tensor([True, False, True])
    t["empty"] = torch.zeros(0, 3)
    t["scalar"] = torch.tensor(42.0)
    sd = module_tree(t, []).state_dict()
    torch.save(sd, f"{OUT}/views.bin")
    expect = collections.OrderedDict(
        (k, {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
             "values": [float(x) for x in v.reshape(-1).to(torch.float64).tolist()]}) for k, v in t.items())
    json.dump(expect, open(f"{OUT}/views.json", "w"), indent=1)
    for root, _, files in os.walk(OUT):
        for f in sorted(files):
            print(os.path.join(root, f), os.path.getsize(os.path.join(root, f)))


main()
