#include "loom/io/checkpoint.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include <caffe2/serialize/inline_container.h>
#include <torch/version.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/io/torch_pickle.h"

namespace loom::io {

namespace {

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

DType to_dtype(torch::ScalarType t, const std::string& path, const std::string& name) {
  switch (t) {
    case torch::kFloat64: return DType::F64;
    case torch::kFloat32: return DType::F32;
    case torch::kFloat16: return DType::F16;
    case torch::kBFloat16: return DType::BF16;
    case torch::kInt64: return DType::I64;
    case torch::kInt32: return DType::I32;
    case torch::kInt16: return DType::I16;
    case torch::kInt8: return DType::I8;
    case torch::kUInt8: return DType::U8;
    case torch::kBool: return DType::BOOL;
    default:
      fail(Where{path, 0, name}, "cannot write dtype {} to safetensors", c10::toString(t));
  }
}

// The weight_map of a shard index ({"weight_map": {tensor: shard file}}), in the file's order,
// with every shard file checked to be a relative name of an existing file in `dir`.
std::vector<std::pair<std::string, std::string>> read_weight_map(const std::string& dir,
                                                                 const std::string& index_path) {
  nlohmann::json index = core::read_json(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail(Where{index_path, 0, "weight_map"}, "expected {{\"weight_map\": {{name: file}}}}");
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string())
      fail(Where{index_path, 0, name}, "weight_map value must be a file name, got {}",
           file.type_name());
    const std::string f = file.get<std::string>();
    if (f.empty() || f.front() == '/' || f.find("..") != std::string::npos)
      fail(Where{index_path, 0, name}, "shard file name '{}' must be relative to the model "
           "directory", f);
    const std::string p = join(dir, f);
    if (!core::file_exists(p)) fail(Where{index_path, 0, name}, "shard '{}' not found (expected {})", f, p);
    out.emplace_back(name, f);
  }
  return out;
}

}  // namespace

torch::ScalarType torch_dtype(DType d) {
  switch (d) {
    case DType::F64: return torch::kFloat64;
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::I64: return torch::kInt64;
    case DType::I32: return torch::kInt32;
    case DType::I16: return torch::kInt16;
    case DType::I8: return torch::kInt8;
    case DType::U8: return torch::kUInt8;
    case DType::BOOL: return torch::kBool;
  }
  fail("invalid loom::io::DType value {}", static_cast<int>(d));
}

torch::Tensor to_tensor(const SafetensorsFile& file, const TensorInfo& info,
                        torch::ScalarType out) {
  std::string_view bytes = file.data(info);
  // BOOL bytes other than 0/1 are not valid torch bools: read as bytes, then compare.
  const torch::ScalarType src = info.dtype == DType::BOOL ? torch::kUInt8 : torch_dtype(info.dtype);
  torch::Tensor t = torch::empty(info.shape, torch::TensorOptions().dtype(src));
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  if (info.dtype == DType::BOOL) t = t.ne(0);
  return t.to(out);
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const nlohmann::json& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) fail(Where{path, 0, name}, "undefined tensor");
    specs.push_back({name, tensor.scalar_type(), tensor.sizes().vec()});
  }
  write_safetensors_streamed(path, specs, [&](size_t i) { return tensors[i].second; }, metadata);
}

void write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                const std::function<torch::Tensor(size_t)>& make,
                                const nlohmann::json& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.is_null() && !(metadata.is_object() && metadata.empty())) {
    if (!metadata.is_object())
      fail(Where{path, 0, "__metadata__"}, "metadata must be a JSON object of strings");
    for (auto& [k, v] : metadata.items())
      if (!v.is_string())
        fail(Where{path, 0, "__metadata__"}, "metadata value of '{}' must be a string", k);
    header["__metadata__"] = metadata;
  }
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const auto& spec : specs) {
    const std::string& name = spec.name;
    if (name.empty()) fail(Where{path, 0, ""}, "tensor with an empty name");
    if (name == "__metadata__" || header.contains(name))
      fail(Where{path, 0, name}, "duplicate or reserved tensor name");
    DType dt = to_dtype(spec.dtype, path, name);
    uint64_t numel = 1;
    for (int64_t d : spec.shape) numel *= static_cast<uint64_t>(d);
    uint64_t nbytes = numel * dtype_size(dt);
    header[name] = {{"dtype", std::string(dtype_name(dt))},
                    {"shape", spec.shape},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    sizes.push_back(nbytes);
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(Where{path, 0, ""}, "cannot encode safetensors header (tensor names must be UTF-8): {}",
         e.what());
  }
  json.append((8 - json.size() % 8) % 8, ' ');
  const uint64_t n = json.size();

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) fail(Where{tmp, 0, ""}, "cannot create: {}", std::strerror(errno));
  bool ok = std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(json.data(), 1, n, f) == n;
  for (size_t i = 0; i < specs.size() && ok; ++i) {
    torch::Tensor c;
    try {
      c = make(i);
      if (!c.defined() || c.scalar_type() != specs[i].dtype || c.sizes().vec() != specs[i].shape)
        fail(Where{path, 0, specs[i].name}, "tensor does not match its declared dtype and shape");
      c = c.detach().to(torch::kCPU).contiguous();
    } catch (...) {
      std::fclose(f);
      std::remove(tmp.c_str());
      throw;
    }
    if (sizes[i] > 0) ok = std::fwrite(c.data_ptr(), 1, sizes[i], f) == sizes[i];
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(Where{tmp, 0, ""}, "write failed: {}", std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    fail(Where{path, 0, ""}, "cannot rename {} into place: {}", tmp, std::strerror(err));
  }
}

std::map<std::string, torch::Tensor> read_pytorch_bin(const std::string& path) {
  const char* advice =
      "convert it to safetensors (python: from safetensors.torch import save_file; "
      "save_file(torch.load(path), 'model.safetensors')) or download the model's safetensors";
  {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    if (!in) fail(Where{path, 0, ""}, "cannot open: {}", std::strerror(errno));
    in.read(magic, 4);
    if (in.gcount() != 4 || std::memcmp(magic, "PK\x03\x04", 4) != 0)
      fail(Where{path, 0, ""},
           "not a zip-format torch.save file (the legacy pickle format is not supported); {}",
           advice);
  }
  // The zip container (archive/data.pkl, archive/data/<key>) is read with libtorch's own reader;
  // the pickle with loom's strict reader of the torch.save subset (io/torch_pickle.h).
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  auto record = [&](const std::string& name) {
    try {
      if (!zip->hasRecord(name)) fail(Where{path, 0, name}, "zip record missing; {}", advice);
      auto [ptr, size] = zip->getRecord(name);
      return std::string(static_cast<const char*>(ptr.get()), size);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
      fail(Where{path, 0, name}, "cannot read this zip record ({}); {}", what, advice);
    }
  };
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    fail(Where{path, 0, ""}, "cannot read this zip archive ({}); {}", what, advice);
  }
  const PickledStateDict sd = parse_torch_pickle(record("data.pkl"), path);
  std::map<std::string, torch::Tensor> storages;  // shared by the views of one storage
  std::map<std::string, torch::Tensor> out;
  for (const PickledTensor& t : sd.tensors) {
    auto it = storages.find(t.storage_key);
    if (it == storages.end()) {
      std::string bytes = record("data/" + t.storage_key);
      const uint64_t want = t.storage_numel * dtype_size(t.dtype);
      if (bytes.size() != want)
        fail(Where{path, 0, t.name}, "storage data/{} has {} bytes, the pickle says {} elements of {} bytes",
             t.storage_key, bytes.size(), t.storage_numel, dtype_size(t.dtype));
      torch::Tensor flat = torch::empty({static_cast<int64_t>(t.storage_numel)},
                                        torch::TensorOptions().dtype(torch_dtype(t.dtype)));
      if (!bytes.empty()) std::memcpy(flat.data_ptr(), bytes.data(), bytes.size());
      it = storages.emplace(t.storage_key, flat).first;
    }
    // Bounds were checked by parse_torch_pickle (the view lies inside the storage).
    out.emplace(t.name, it->second.as_strided(t.sizes, t.strides, t.offset));
  }
  return out;
}

HfCheckpoint::HfCheckpoint(const std::string& dir) : dir_(dir) {
  if (!core::dir_exists(dir)) fail(Where{dir, 0, ""}, "model directory not found");
  const std::string config_path = join(dir, "config.json");
  if (!core::file_exists(config_path))
    fail(Where{config_path, 0, ""}, "missing: a Hugging Face model directory needs config.json");
  config_ = core::read_json(config_path);
  if (!config_.is_object()) fail(Where{config_path, 0, ""}, "expected a JSON object");
  const std::string gen_path = join(dir, "generation_config.json");
  if (core::file_exists(gen_path)) {
    generation_config_ = core::read_json(gen_path);
    if (!generation_config_.is_object()) fail(Where{gen_path, 0, ""}, "expected a JSON object");
  }

  const std::string single = join(dir, "model.safetensors");
  const std::string index_path = join(dir, "model.safetensors.index.json");
  const std::string bin = join(dir, "pytorch_model.bin");
  const std::string bin_index = join(dir, "pytorch_model.bin.index.json");
  if (core::file_exists(single)) {
    where_ = single;
    weight_files_ = {"model.safetensors"};
    st_files_.push_back(std::make_shared<SafetensorsFile>(single));
    for (const auto& t : st_files_[0]->tensors()) st_index_.emplace(t.name, Loc{0, &t});
  } else if (core::file_exists(index_path)) {
    where_ = index_path;
    const auto wm = read_weight_map(dir, index_path);
    for (const auto& [name, f] : wm) {
      if (std::find(weight_files_.begin(), weight_files_.end(), f) != weight_files_.end()) continue;
      weight_files_.push_back(f);
      st_files_.push_back(std::make_shared<SafetensorsFile>(join(dir, f)));
    }
    for (size_t i = 0; i < st_files_.size(); ++i)
      for (const auto& t : st_files_[i]->tensors()) {
        auto [it, fresh] = st_index_.emplace(t.name, Loc{i, &t});
        if (!fresh)
          fail(Where{index_path, 0, t.name}, "tensor is in two shards: {} and {}",
               weight_files_[it->second.file], weight_files_[i]);
      }
    for (const auto& [name, f] : wm) {
      auto it = st_index_.find(name);
      if (it == st_index_.end() || weight_files_[it->second.file] != f)
        fail(Where{index_path, 0, name}, "weight_map says the tensor is in '{}', but it is not",
             f);
    }
  } else if (core::file_exists(bin)) {
    where_ = bin;
    weight_files_ = {"pytorch_model.bin"};
    bin_ = read_pytorch_bin(bin);
  } else if (core::file_exists(bin_index)) {
    where_ = bin_index;
    const auto wm = read_weight_map(dir, bin_index);
    std::map<std::string, std::string> shard_of;  // tensor -> shard it was found in
    for (const auto& [name, f] : wm) {
      if (std::find(weight_files_.begin(), weight_files_.end(), f) != weight_files_.end()) continue;
      weight_files_.push_back(f);
      for (auto& [tname, tensor] : read_pytorch_bin(join(dir, f))) {
        auto [it, fresh] = shard_of.emplace(tname, f);
        if (!fresh)
          fail(Where{bin_index, 0, tname}, "tensor is in two shards: {} and {}", it->second, f);
        bin_.emplace(tname, std::move(tensor));
      }
    }
    for (const auto& [name, f] : wm) {
      auto it = shard_of.find(name);
      if (it == shard_of.end() || it->second != f)
        fail(Where{bin_index, 0, name}, "weight_map says the tensor is in '{}', but it is not", f);
    }
  } else {
    fail(Where{dir, 0, ""},
         "no weights: expected model.safetensors, model.safetensors.index.json, "
         "pytorch_model.bin or pytorch_model.bin.index.json");
  }
}

HfCheckpoint::HfCheckpoint(HfCheckpoint&&) noexcept = default;
HfCheckpoint& HfCheckpoint::operator=(HfCheckpoint&&) noexcept = default;
HfCheckpoint::~HfCheckpoint() = default;

bool HfCheckpoint::has(const std::string& name) const {
  return st_index_.count(name) > 0 || bin_.count(name) > 0;
}

std::vector<std::string> HfCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(st_index_.size() + bin_.size());
  for (const auto& kv : st_index_) out.push_back(kv.first);
  for (const auto& kv : bin_) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int64_t> HfCheckpoint::shape(const std::string& name) const {
  if (auto it = st_index_.find(name); it != st_index_.end()) return it->second.info->shape;
  if (auto it = bin_.find(name); it != bin_.end()) return it->second.sizes().vec();
  fail(Where{where_, 0, name}, "tensor not found in checkpoint ({} tensors)",
       st_index_.size() + bin_.size());
}

torch::Tensor HfCheckpoint::load(const std::string& name, torch::ScalarType out) const {
  if (auto it = st_index_.find(name); it != st_index_.end())
    return to_tensor(*st_files_[it->second.file], *it->second.info, out);
  if (auto it = bin_.find(name); it != bin_.end())
    return it->second.to(torch::kCPU, out, /*non_blocking=*/false, /*copy=*/true).contiguous();
  fail(Where{where_, 0, name}, "tensor not found in checkpoint ({} tensors)",
       st_index_.size() + bin_.size());
}

torch::Tensor HfCheckpoint::view(const std::string& name) const {
  auto it = st_index_.find(name);
  if (it == st_index_.end()) return load(name, has(name) ? bin_.at(name).scalar_type() : torch::kFloat32);
  const TensorInfo& info = *it->second.info;
  const auto& file = st_files_[it->second.file];
  std::string_view bytes = file->data(info);
  const size_t esize = dtype_size(info.dtype);
  const bool little_endian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
  if (!little_endian || info.dtype == DType::BOOL || bytes.empty() ||
      reinterpret_cast<uintptr_t>(bytes.data()) % esize != 0)
    return to_tensor(*file, info, info.dtype == DType::BOOL ? torch::kBool : torch_dtype(info.dtype));
  std::shared_ptr<SafetensorsFile> keep = file;  // the deleter keeps the mapping alive
  return torch::from_blob(const_cast<char*>(bytes.data()), info.shape, [keep](void*) mutable { keep.reset(); },
                          torch::TensorOptions().dtype(torch_dtype(info.dtype)));
}

bool HfCheckpoint::is_mapped_view(const torch::Tensor& t) const {
  if (!t.defined()) return false;
  const auto* p = static_cast<const char*>(t.data_ptr());
  for (const auto& f : st_files_) {
    for (const auto& info : f->tensors()) {
      std::string_view b = f->data(info);
      if (!b.empty() && p == b.data()) return true;
    }
  }
  return false;
}

void HfCheckpoint::drop_pages(const std::string& name) const {
  if (auto it = st_index_.find(name); it != st_index_.end()) st_files_[it->second.file]->drop_pages(*it->second.info);
}

}  // namespace loom::io
