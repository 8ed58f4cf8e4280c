"""Reads a float32 safetensors file (loom's checkpoints) into numpy arrays without the
safetensors package: the 8-byte little-endian header length, the JSON header, the raw data.
Shared by loom_to_ct2.py and loom_to_gguf.py (run as scripts, so this directory is on sys.path)."""
import json
import struct
import sys

import numpy as np


def read_f32(path, copy=False):
    """name -> numpy array of every tensor in `path` (F32 only; exits naming the tensor otherwise).
    copy=False: read-only memory maps (no copy); copy=True: writable in-memory copies."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {meta['dtype']}; these scripts read F32 checkpoints only")
        begin, end = meta["data_offsets"]
        a = np.memmap(path, dtype=np.float32, mode="r", offset=base + begin, shape=tuple(meta["shape"]))
        assert a.nbytes == end - begin, f"{path}: tensor {name}: data_offsets disagree with its shape"
        out[name] = np.array(a) if copy else a
    return out
