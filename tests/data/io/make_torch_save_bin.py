"""Writes torch_save_state_dict.bin: a file laid out like Python's
torch.save(model.state_dict(), f) (zip format, pickle protocol 2, collections.OrderedDict of
tensors built with torch._utils._rebuild_tensor_v2 over persistent storages), without needing
torch installed. Tensors:
  layer.a    float32 [2, 3]  = 0..5            (storage 0)
  layer.tied float32 [3]     = 3, 4, 5         (storage 0, offset 3: shares storage with layer.a)
  layer.b    float32 [2]     = 1.5, -2.0       (storage 1)
  layer.h    float16 [2, 2]  = 0.5, 1, -1, 2   (storage 2), transposed strides (1, 2)
Usage: python3 make_torch_save_bin.py torch_save_state_dict.bin
"""
import collections, io, pickle, struct, sys, types, zipfile

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")


class FloatStorage: pass
class HalfStorage: pass


def _rebuild_tensor_v2(*args): pass


FloatStorage.__module__ = HalfStorage.__module__ = "torch"
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage, torch.HalfStorage, torch._utils = FloatStorage, HalfStorage, utils
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


class Storage:
    def __init__(self, key, kind, fmt, values):
        self.key, self.kind, self.fmt, self.values = key, kind, fmt, values


class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, shape, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.kind, obj.key, "cpu", len(obj.values))
        return None


s0 = Storage("0", FloatStorage, "f", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
s1 = Storage("1", FloatStorage, "f", [1.5, -2.0])
s2 = Storage("2", HalfStorage, "e", [0.5, -1.0, 1.0, 2.0])
state = collections.OrderedDict([
    ("layer.a", Tensor(s0, 0, (2, 3), (3, 1))),
    ("layer.tied", Tensor(s0, 3, (3,), (1,))),
    ("layer.b", Tensor(s1, 0, (2,), (1,))),
    ("layer.h", Tensor(s2, 0, (2, 2), (1, 2))),
])
buf = io.BytesIO()
Pickler(buf, protocol=2).dump(state)
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/byteorder", "little")
    for s in (s0, s1, s2):
        z.writestr("archive/data/" + s.key, struct.pack("<%d%s" % (len(s.values), s.fmt), *s.values))
    z.writestr("archive/version", "3\n")
