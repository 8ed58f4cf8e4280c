// Safetensors reader: a memory-mapped, fully validated view of a .safetensors file.
//
// Format (https://huggingface.co/docs/safetensors, reference implementation
// huggingface/safetensors): an 8-byte little-endian u64 header length N, then N bytes of UTF-8
// JSON {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"<key>": "<string>"}}, then the data section. Offsets are relative to the
// data section. Like the reference implementation, loom requires the tensors' byte ranges to
// tile the data section exactly (sorted by begin: no overlap, no gap, nothing left over).
//
// This header and its .cc are torch-free (only nlohmann::json and loom::Error), so the parser can
// be fuzzed without libtorch (fuzz/fuzz_safetensors.cc). Converting to torch::Tensor lives in
// loom/io/checkpoint.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::io {

/// Element types a safetensors file may declare (the header's "dtype" strings, same spelling).
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// Bytes per element: 8 for F64/I64, 4 for F32/I32, 2 for F16/BF16/I16, 1 for I8/U8/BOOL.
size_t dtype_size(DType);

/// The header spelling of a dtype ("F32", "BF16", "BOOL", ...).
std::string_view dtype_name(DType);

/// One tensor entry of a safetensors header.
struct TensorInfo {
  std::string name;            ///< key in the header, e.g. "model.shared.weight"
  DType dtype;                 ///< element type
  std::vector<int64_t> shape;  ///< dims, each >= 0; {} for a scalar
  uint64_t offset;             ///< first byte, relative to the start of the data section
  uint64_t nbytes;             ///< product(shape) * dtype_size(dtype)
};

/// A safetensors file, memory-mapped read-only and validated at open. Movable, not copyable;
/// unmaps in the destructor. Tensor bytes are little-endian and not necessarily aligned.
class SafetensorsFile {
 public:
  /// Maps and validates `path`. Throws loom::Error naming the file (and the tensor, where one is
  /// at fault) when it cannot be opened or is not a valid safetensors file: shorter than 8 bytes,
  /// header length beyond the file or above 100 MB, invalid JSON, an entry that is not an object,
  /// unknown dtype, bad shape (negative dim, size overflow), shape x dtype size != end - begin,
  /// data_offsets outside the data section, overlapping or gapped ranges, duplicate keys,
  /// "__metadata__" that is not an object of strings.
  explicit SafetensorsFile(const std::string& path);

  /// Same validation on an in-memory copy of a file's bytes; `name` stands for the path in
  /// error messages (tests, fuzzing).
  static SafetensorsFile from_bytes(std::string bytes, std::string name);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  /// Every tensor, sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// The entry called `name`, or nullptr if the file has none.
  const TensorInfo* find(std::string_view name) const;
  /// The tensor's raw bytes (a view into the mapping; valid while this object lives).
  std::string_view data(const TensorInfo& info) const;
  /// Hint that the tensor's bytes will not be read again soon: the whole pages inside its range
  /// are released from this process's resident set (madvise MADV_DONTNEED; the mapping stays
  /// valid and reads page the bytes back in from the file). No-op for from_bytes files.
  void drop_pages(const TensorInfo& info) const;
  /// The header's "__metadata__" object, or an empty object when absent.
  const nlohmann::json& metadata() const { return metadata_; }
  /// The path given at open (or the name given to from_bytes).
  const std::string& path() const { return path_; }

  /// Largest header accepted (bytes); larger ones are rejected as corrupt.
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

 private:
  SafetensorsFile() = default;
  void parse();   // validates base_/size_, fills tensors_, index_, metadata_
  void release() noexcept;

  std::string path_;
  const char* base_ = nullptr;  // whole file
  size_t size_ = 0;
  void* map_ = nullptr;  // owned mmap (nullptr for from_bytes)
  std::unique_ptr<std::string> owned_;  // from_bytes storage (stable address across moves)
  uint64_t data_begin_ = 0;  // 8 + header length
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> index_;  // views into tensors_[i].name
  nlohmann::json metadata_ = nlohmann::json::object();
};

}  // namespace loom::io
