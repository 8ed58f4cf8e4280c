#!/usr/bin/python3
"""Writes tests/data/hub-cache/models--loom-test--tiny-hub: a tiny model cached in
huggingface_hub's layout (huggingface_hub/file_download.py, hf_hub_download), without loom:
  refs/main                          the commit sha (no newline, as huggingface_hub writes it)
  blobs/<git blob sha1>              config.json's bytes (a regular git file: ETag = git sha1)
  blobs/<sha256>                     model.safetensors' bytes (an LFS file: ETag = sha256)
  snapshots/<sha>/config.json        -> ../../blobs/<git blob sha1>
  snapshots/<sha>/model.safetensors  -> ../../blobs/<sha256>
  .no_exist/<sha>/generation_config.json   (empty: huggingface_hub's "not in the repo" marker)
The model: config.json {"model_type": "loom_hub_sample"} and one float32 tensor "w" = [[1, 2],
[3, 4]]. Run from the repository root: /usr/bin/python3 tests/data/hub-cache/make_sample.py
"""
import hashlib, json, os, shutil, struct

ROOT = "tests/data/hub-cache/models--loom-test--tiny-hub"
SHA = "4f1c2b7e9d0a35c8e6b1f2a4d7c9e0b3a5f6d8c1"


def safetensors(tensors):
    hdr, data = {}, b""
    for k, (shape, values) in tensors.items():
        b = struct.pack(f"<{len(values)}f", *values)
        hdr[k] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


files = {
    "config.json": (json.dumps({"model_type": "loom_hub_sample", "hidden_size": 2}, indent=2) + "\n").encode(),
    "model.safetensors": safetensors({"w": ([2, 2], [1.0, 2.0, 3.0, 4.0])}),
}
lfs = {"model.safetensors"}

shutil.rmtree(ROOT, ignore_errors=True)
for d in ["refs", "blobs", f"snapshots/{SHA}", f".no_exist/{SHA}"]:
    os.makedirs(f"{ROOT}/{d}")
open(f"{ROOT}/refs/main", "w").write(SHA)
open(f"{ROOT}/.no_exist/{SHA}/generation_config.json", "w").close()
for name, data in files.items():
    if name in lfs:
        etag = hashlib.sha256(data).hexdigest()
    else:
        etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    open(f"{ROOT}/blobs/{etag}", "wb").write(data)
    os.symlink(f"../../blobs/{etag}", f"{ROOT}/snapshots/{SHA}/{name}")
    print(name, etag)
