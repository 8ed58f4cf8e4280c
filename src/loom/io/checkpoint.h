// Hugging Face checkpoints for libtorch: safetensors tensors as torch::Tensor, a model directory
// (config.json + weights, single-file or sharded), and a safetensors writer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "loom/io/safetensors.h"

namespace loom::io {

/// Copies one tensor of `file` into a new contiguous CPU tensor of dtype `out`, with the file's
/// shape. Every safetensors dtype converts (F16/BF16/F32/F64 are the usual weights; integers and
/// BOOL convert with torch's .to() rules).
torch::Tensor to_tensor(const SafetensorsFile& file, const TensorInfo& info,
                        torch::ScalarType out = torch::kFloat32);

/// Maps a safetensors dtype to the torch scalar type with the same bytes (F16 -> kHalf, ...).
torch::ScalarType torch_dtype(DType);

/// Writes `tensors` (name, tensor) as a safetensors file at `path`, in the given order, with
/// "__metadata__" = `metadata` when it is a non-empty object of strings. The header is padded
/// with spaces to a multiple of 8 bytes (as the reference writer does). Tensors may be on any
/// device and non-contiguous; their dtype must be one of DType's. Writes `path`.tmp.<pid> and
/// renames it over `path`, so readers never see a half-written file. Throws loom::Error on an
/// empty or duplicate name, an unsupported dtype, bad metadata, or an I/O failure.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const nlohmann::json& metadata = {});

/// One tensor of a streamed safetensors file: its name, dtype and shape, known before its values.
struct TensorSpec {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
};

/// write_safetensors for files larger than memory: the header comes from `specs` (file order),
/// and `make(i)` is called once per tensor, in order, just before its bytes are written, so only
/// one tensor is in memory at a time. `make(i)` must return a tensor of specs[i]'s dtype and
/// shape (else loom::Error naming the tensor). Same format, atomicity and errors as above.
void write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                const std::function<torch::Tensor(size_t)>& make,
                                const nlohmann::json& metadata = {});

/// A Hugging Face model directory: config.json (required), generation_config.json (optional) and
/// weights, looked up in this order:
///   1. model.safetensors
///   2. model.safetensors.index.json ({"weight_map": {tensor name: shard file}}, sharded)
///   3. pytorch_model.bin (torch.save zip format, read by read_pytorch_bin; eagerly loaded)
///   4. pytorch_model.bin.index.json (sharded .bin: {"weight_map": {tensor name: shard file}})
/// Safetensors files are memory-mapped and validated at open; tensors are copied on load() and
/// aliased in place by view().
/// Matches transformers' from_pretrained file resolution (safetensors preferred over .bin).
class HfCheckpoint {
 public:
  /// Opens `dir`. Throws loom::Error naming the file at fault: dir or config.json missing,
  /// invalid JSON, no weights file, a bad shard index (tensor in a missing shard, shard lacking
  /// a tensor it is mapped to), invalid safetensors, unreadable pytorch_model.bin.
  explicit HfCheckpoint(const std::string& dir);
  HfCheckpoint(HfCheckpoint&&) noexcept;
  HfCheckpoint& operator=(HfCheckpoint&&) noexcept;
  ~HfCheckpoint();

  const std::string& dir() const { return dir_; }
  /// Parsed config.json.
  const nlohmann::json& config() const { return config_; }
  /// Parsed generation_config.json, or an empty object when the file is absent.
  const nlohmann::json& generation_config() const { return generation_config_; }
  /// The weights file(s) in use, relative to dir(): {"model.safetensors"}, the shards, or
  /// {"pytorch_model.bin"} or the .bin shards.
  const std::vector<std::string>& weight_files() const { return weight_files_; }

  /// True when the checkpoint has a tensor called `name`.
  bool has(const std::string& name) const;
  /// Every tensor name, sorted.
  std::vector<std::string> names() const;
  /// Shape of tensor `name`; throws loom::Error (dir/file + tensor) if absent.
  std::vector<int64_t> shape(const std::string& name) const;
  /// A fresh contiguous CPU copy of tensor `name` as dtype `out`; throws loom::Error naming the
  /// weights file and the tensor if it is absent.
  torch::Tensor load(const std::string& name, torch::ScalarType out = torch::kFloat32) const;
  /// Tensor `name` in its stored dtype WITHOUT a copy when possible: a read-only tensor aliasing
  /// the memory-mapped safetensors bytes (little-endian host, bytes aligned to the element size),
  /// which keeps the file mapped while any such tensor lives, also after this HfCheckpoint is
  /// gone. Writing to it crashes (the mapping is read-only). Otherwise (pytorch_model.bin,
  /// misaligned bytes, BOOL) a copy as load() makes. Throws like load().
  torch::Tensor view(const std::string& name) const;
  /// True when view(name) aliases the mapped file (no copy).
  bool is_mapped_view(const torch::Tensor& t) const;
  /// Releases the pages of tensor `name` from the resident set (SafetensorsFile::drop_pages);
  /// a no-op for pytorch_model.bin tensors. Views stay valid (pages are read back on access).
  void drop_pages(const std::string& name) const;

 private:
  struct Loc {
    size_t file;             // index into st_files_
    const TensorInfo* info;  // entry inside st_files_[file]
  };
  std::string dir_;
  nlohmann::json config_;
  nlohmann::json generation_config_ = nlohmann::json::object();
  std::vector<std::string> weight_files_;
  std::vector<std::shared_ptr<SafetensorsFile>> st_files_;  // stable addresses for Loc::info; views share them
  std::map<std::string, Loc> st_index_;
  std::map<std::string, torch::Tensor> bin_;  // pytorch_model.bin tensors
  std::string where_;  // weights path for messages
};

/// Reads a pytorch_model.bin written by Python's torch.save(state_dict) (zip format, torch >= 1.6)
/// into name -> tensor (each a view of its storage, in the storage's dtype, on the CPU). The zip
/// is read with libtorch's PyTorchStreamReader, the pickle with parse_torch_pickle (the strict
/// torch.save subset: OrderedDict with _metadata, _rebuild_tensor_v2, typed storages shared by
/// views with offsets and strides). Throws loom::Error naming `path` and what was unexpected,
/// suggesting conversion to safetensors: legacy non-zip format, a missing or short storage
/// record, pickle content outside the subset, not a dict of tensors.
std::map<std::string, torch::Tensor> read_pytorch_bin(const std::string& path);

}  // namespace loom::io
