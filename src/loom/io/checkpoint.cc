#include "loom/io/checkpoint.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include <torch/version.h>

#include "loom/core/error.h"
#include "loom/core/files.h"

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
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.is_null() && !(metadata.is_object() && metadata.empty())) {
    if (!metadata.is_object())
      fail(Where{path, 0, "__metadata__"}, "metadata must be a JSON object of strings");
    for (auto& [k, v] : metadata.items())
      if (!v.is_string())
        fail(Where{path, 0, "__metadata__"}, "metadata value of '{}' must be a string", k);
    header["__metadata__"] = metadata;
  }
  std::vector<torch::Tensor> data;
  data.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty()) fail(Where{path, 0, ""}, "tensor with an empty name");
    if (name == "__metadata__" || header.contains(name))
      fail(Where{path, 0, name}, "duplicate or reserved tensor name");
    if (!tensor.defined()) fail(Where{path, 0, name}, "undefined tensor");
    DType dt = to_dtype(tensor.scalar_type(), path, name);
    torch::Tensor c = tensor.detach().to(torch::kCPU).contiguous();
    uint64_t nbytes = static_cast<uint64_t>(c.numel()) * dtype_size(dt);
    header[name] = {{"dtype", std::string(dtype_name(dt))},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(std::move(c));
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
  for (const auto& c : data) {
    if (!ok) break;
    size_t nbytes = c.numel() * c.element_size();
    if (nbytes > 0) ok = std::fwrite(c.data_ptr(), 1, nbytes, f) == nbytes;
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
  torch::IValue v;
  try {
    caffe2::serialize::PyTorchStreamReader zip{path};
    auto [ptr, size] = zip.getRecord("data.pkl");
    std::string pkl(static_cast<const char*>(ptr.get()), size);
    // Python's torch.save(state_dict) pickles a collections.OrderedDict, which libtorch 1.13's
    // unpickler turns into None (it only expects OrderedDict as a tensor's empty hook dict), so
    // the state dict is lost. Rewrite the fixed protocol-2 prologue
    //   PROTO 2, GLOBAL collections.OrderedDict, BINPUT 0, EMPTY_TUPLE, REDUCE, <items>, STOP
    // into
    //   PROTO 2, MARK, GLOBAL collections.OrderedDict, BINPUT 0, EMPTY_DICT, <items>, TUPLE, STOP
    // which keeps memo slot 0 (BINGET 0 builds the tensors' hook dicts) and yields
    // (global, {name: tensor}).
    static const std::string kOrderedDict("\x80\x02" "ccollections\nOrderedDict\nq\x00)R", 31);
    static const std::string kPatched("\x80\x02(ccollections\nOrderedDict\nq\x00}", 31);
    bool patched = false;
    if (pkl.size() > kOrderedDict.size() && pkl.compare(0, kOrderedDict.size(), kOrderedDict) == 0 &&
        pkl.back() == '.') {
      pkl = kPatched + pkl.substr(kOrderedDict.size(), pkl.size() - kOrderedDict.size() - 1) + "t.";
      patched = true;
    }
    size_t pos = 0;
    auto read = [&](char* buf, size_t n) {
      n = std::min(n, pkl.size() - pos);
      std::memcpy(buf, pkl.data() + pos, n);
      pos += n;
      return n;
    };
    auto record = [&](const std::string& name) {
      return std::get<0>(zip.getRecord("data/" + name));
    };
    torch::jit::Unpickler unpickler(read, torch::jit::TypeResolver(), torch::jit::ObjLoader(),
                                    record, c10::optional<at::Device>(at::Device(at::kCPU)));
    unpickler.set_version(zip.version());
    v = unpickler.parse_ivalue();
    if (patched) {
      if (!v.isTuple() || v.toTupleRef().elements().size() != 2)
        fail(Where{path, 0, ""}, "unexpected pickle structure; {}", advice);
      v = v.toTupleRef().elements()[1];
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    fail(Where{path, 0, ""}, "libtorch {} cannot read this checkpoint ({}); {}", TORCH_VERSION,
         what, advice);
  }
  if (!v.isGenericDict())
    fail(Where{path, 0, ""}, "expected a state dict (name -> tensor), got {}; {}",
         v.tagKind(), advice);
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : v.toGenericDict()) {
    if (!kv.key().isString())
      fail(Where{path, 0, ""}, "state dict key is a {}, not a string", kv.key().tagKind());
    std::string name = kv.key().toStringRef();
    if (!kv.value().isTensor())
      fail(Where{path, 0, name}, "state dict value is a {}, not a tensor", kv.value().tagKind());
    out.emplace(std::move(name), kv.value().toTensor());
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
  if (core::file_exists(single)) {
    where_ = single;
    weight_files_ = {"model.safetensors"};
    st_files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& t : st_files_[0]->tensors()) st_index_.emplace(t.name, Loc{0, &t});
  } else if (core::file_exists(index_path)) {
    where_ = index_path;
    nlohmann::json index = core::read_json(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail(Where{index_path, 0, "weight_map"}, "expected {{\"weight_map\": {{name: file}}}}");
    const auto& wm = index["weight_map"];
    std::map<std::string, size_t> shard_of_file;
    for (auto& [name, file] : wm.items()) {
      if (!file.is_string())
        fail(Where{index_path, 0, name}, "weight_map value must be a file name, got {}",
             file.type_name());
      const std::string f = file.get<std::string>();
      if (f.empty() || f.front() == '/' || f.find("..") != std::string::npos)
        fail(Where{index_path, 0, name}, "shard file name '{}' must be relative to the model "
             "directory", f);
      if (shard_of_file.count(f)) continue;
      const std::string p = join(dir, f);
      if (!core::file_exists(p))
        fail(Where{index_path, 0, name}, "shard '{}' not found (expected {})", f, p);
      shard_of_file.emplace(f, st_files_.size());
      weight_files_.push_back(f);
      st_files_.push_back(std::make_unique<SafetensorsFile>(p));
    }
    for (size_t i = 0; i < st_files_.size(); ++i)
      for (const auto& t : st_files_[i]->tensors()) {
        auto [it, fresh] = st_index_.emplace(t.name, Loc{i, &t});
        if (!fresh)
          fail(Where{index_path, 0, t.name}, "tensor is in two shards: {} and {}",
               weight_files_[it->second.file], weight_files_[i]);
      }
    for (auto& [name, file] : wm.items()) {
      auto it = st_index_.find(name);
      const std::string f = file.get<std::string>();
      if (it == st_index_.end() || weight_files_[it->second.file] != f)
        fail(Where{index_path, 0, name}, "weight_map says the tensor is in '{}', but it is not",
             f);
    }
  } else if (core::file_exists(bin)) {
    where_ = bin;
    weight_files_ = {"pytorch_model.bin"};
    bin_ = read_pytorch_bin(bin);
  } else {
    fail(Where{dir, 0, ""},
         "no weights: expected model.safetensors, model.safetensors.index.json or "
         "pytorch_model.bin");
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

}  // namespace loom::io
