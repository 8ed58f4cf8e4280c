// loom::io — the pickle inside a `pytorch_model.bin`, read without Python or libtorch's
// unpickler. Only the subset that Python's `torch.save(model.state_dict(), f)` writes (pickle
// protocol 2, torch >= 1.6 zip format, file data.pkl) is accepted:
//   - the state dict: a `collections.OrderedDict` (or a plain dict) of name -> tensor, with its
//     `_metadata` attribute (an OrderedDict of per-module dicts, applied by BUILD; ignored);
//   - each tensor: `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
//     requires_grad, backward_hooks[, metadata])` (or `_rebuild_parameter(tensor, ...)`), its
//     storage a persistent id `('storage', torch.<T>Storage, key, location, numel)` whose bytes
//     are the zip record data/<key>; several tensors may share a storage (views with their own
//     offset and strides).
// Files written by libtorch's C++ torch::pickle_save also load (its dicts carry a
// torch.jit._pickle.restore_type_tag(dict, type) wrapper, which is dropped).
// Anything else (other globals, protocol > 5 opcodes, code execution) is refused with a
// loom::Error naming the file, the byte offset and what was unexpected. This file is torch-free
// (fuzzed by fuzz/fuzz_torch_pickle.cc); io/checkpoint.cc builds the tensors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loom/io/safetensors.h"

namespace loom::io {

/// One tensor of a torch.save'd state dict: a strided view of a storage.
struct PickledTensor {
  std::string name;             ///< state-dict key
  std::string storage_key;      ///< zip record data/<storage_key>
  DType dtype = DType::F32;     ///< element type of the storage (torch.FloatStorage -> F32, ...)
  uint64_t storage_numel = 0;   ///< elements in the storage (its record holds numel * size bytes)
  int64_t offset = 0;           ///< storage_offset, in elements
  std::vector<int64_t> sizes;   ///< shape
  std::vector<int64_t> strides; ///< in elements, one per dim
};

/// The state dict of a data.pkl: tensors in the pickle's order.
struct PickledStateDict {
  std::vector<PickledTensor> tensors;
};

/// Parses `pkl` (the bytes of data.pkl) as the torch.save subset above. Checks that every view
/// lies inside its storage (offset + sum((size_i - 1) * stride_i) < storage_numel for non-empty
/// tensors), that a storage key always has the same dtype and numel, that keys are unique strings
/// and values tensors. `where` names the file in errors. Throws loom::Error("where: data.pkl
/// byte N: ...") on anything outside the subset or malformed.
PickledStateDict parse_torch_pickle(std::string_view pkl, const std::string& where);

}  // namespace loom::io
