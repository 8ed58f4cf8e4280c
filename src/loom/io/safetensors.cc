#include "loom/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "loom/core/error.h"
#include "loom/io/mapped_pages.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "loom's safetensors reader assumes a little-endian host"
#endif

namespace loom::io {

namespace {

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& entry(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e;
  fail("invalid loom::io::DType value {}", static_cast<int>(d));
}

// A JSON value for error messages, shortened so a hostile header cannot flood the terminal.
std::string brief(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads a non-negative JSON integer into u64; false if `j` is not one.
bool as_u64(const nlohmann::json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

size_t dtype_size(DType d) { return entry(d).size; }
std::string_view dtype_name(DType d) { return entry(d).name; }

SafetensorsFile::SafetensorsFile(const std::string& path) {
  path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(Where{path, 0, ""}, "cannot open safetensors file: {}", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(Where{path, 0, ""}, "cannot stat safetensors file: {}", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(Where{path, 0, ""}, "not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {  // mmap of length 0 is an error; parse() reports the empty file
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(Where{path, 0, ""}, "cannot mmap safetensors file ({} bytes): {}", size_,
           std::strerror(err));
    }
    map_ = p;
    base_ = static_cast<const char*>(p);
  }
  ::close(fd);  // the mapping stays valid
  try {
    parse();
  } catch (...) {
    release();
    throw;
  }
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, std::string name) {
  SafetensorsFile f;
  f.path_ = std::move(name);
  f.owned_ = std::make_unique<std::string>(std::move(bytes));
  f.base_ = f.owned_->data();
  f.size_ = f.owned_->size();
  f.parse();
  return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    map_ = std::exchange(o.map_, nullptr);
    owned_ = std::move(o.owned_);
    data_begin_ = std::exchange(o.data_begin_, 0);
    // index_ holds string_views into tensors_[i].name; moving the vector keeps the elements
    // (and so the heap buffers of long names) but SSO names live inside the elements, which the
    // vector move also keeps in place. Rebuild anyway: cheap, and obviously correct.
    tensors_ = std::move(o.tensors_);
    o.tensors_.clear();
    o.index_.clear();
    index_.clear();
    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
    metadata_ = std::move(o.metadata_);
    o.metadata_ = nlohmann::json::object();
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { release(); }

void SafetensorsFile::release() noexcept {
  if (map_ != nullptr) ::munmap(map_, size_);
  map_ = nullptr;
  base_ = nullptr;
  size_ = 0;
  owned_.reset();
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::string_view SafetensorsFile::data(const TensorInfo& info) const {
  const TensorInfo* mine = find(info.name);
  if (mine == nullptr || mine->offset != info.offset || mine->nbytes != info.nbytes)
    fail(Where{path_, 0, info.name}, "tensor does not belong to this safetensors file");
  return std::string_view(base_ + data_begin_ + info.offset, info.nbytes);
}

void SafetensorsFile::parse() {
  const Where file{path_, 0, ""};
  if (size_ < 8)
    fail(file,
         "not a safetensors file: {} bytes long, but the format starts with an 8-byte header "
         "length",
         size_);
  uint64_t n = 0;
  std::memcpy(&n, base_, 8);  // little-endian host (checked above)
  const uint64_t avail = size_ - 8;
  if (n > kMaxHeaderBytes)
    fail(file, "corrupt safetensors file: header length {} exceeds the {} byte limit", n,
         kMaxHeaderBytes);
  if (n > avail)
    fail(file,
         "truncated or corrupt safetensors file: header length {} but only {} bytes follow the "
         "8-byte length",
         n, avail);
  if (n < 2) fail(file, "corrupt safetensors file: header length {} is too short for JSON", n);
  data_begin_ = 8 + n;
  const uint64_t data_size = size_ - data_begin_;

  // Parse the header, detecting duplicate keys (nlohmann::json would silently keep the last).
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  auto cb = [&](int /*depth*/, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) {
      keys.emplace_back();
    } else if (ev == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == E::key && !keys.empty() && parsed.is_string()) {
      if (!keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base_ + 8, base_ + 8 + n, cb);
  } catch (const nlohmann::json::exception& e) {
    fail(file, "corrupt safetensors header (invalid JSON): {}", e.what());
  }
  if (!header.is_object())
    fail(file, "corrupt safetensors header: expected a JSON object, got {}", header.type_name());
  if (!duplicate.empty())
    fail(Where{path_, 0, duplicate}, "corrupt safetensors header: duplicate key");

  tensors_.clear();
  index_.clear();
  metadata_ = nlohmann::json::object();
  tensors_.reserve(header.size());
  for (auto& [name, value] : header.items()) {
    const Where at{path_, 0, name};
    if (name == "__metadata__") {
      if (!value.is_object())
        fail(at, "safetensors metadata must be an object of strings, got {}", value.type_name());
      for (auto& [k, v] : value.items())
        if (!v.is_string())
          fail(at, "safetensors metadata value of '{}' must be a string, got {}", k,
               v.type_name());
      metadata_ = value;
      continue;
    }
    if (!value.is_object())
      fail(at, "tensor entry must be an object {{\"dtype\", \"shape\", \"data_offsets\"}}, got {}",
           brief(value));
    TensorInfo t;
    t.name = name;

    auto dt = value.find("dtype");
    if (dt == value.end() || !dt->is_string())
      fail(at, "tensor entry needs a string \"dtype\"");
    const std::string dname = dt->get<std::string>();
    const DTypeEntry* de = nullptr;
    for (const auto& e : kDTypes)
      if (e.name == dname) de = &e;
    if (de == nullptr)
      fail(at, "unsupported dtype {} (loom reads F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)",
           brief(*dt));
    t.dtype = de->dtype;

    auto sh = value.find("shape");
    if (sh == value.end() || !sh->is_array()) fail(at, "tensor entry needs an array \"shape\"");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : *sh) {
      uint64_t v = 0;
      if (!as_u64(d, v)) fail(at, "shape {} has a dim that is not a non-negative integer", brief(*sh));
      if (v > static_cast<uint64_t>(INT64_MAX)) fail(at, "shape {} has a dim that is too large", brief(*sh));
      t.shape.push_back(static_cast<int64_t>(v));
      if (__builtin_mul_overflow(numel, v, &numel)) overflow = true;
    }
    if (overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(de->size), &t.nbytes))
      fail(at, "shape {} of {} is too large (byte size overflows 64 bits)", brief(*sh), dname);

    auto off = value.find("data_offsets");
    uint64_t begin = 0, end = 0;
    if (off == value.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], begin) ||
        !as_u64((*off)[1], end))
      fail(at, "tensor entry needs \"data_offsets\": [begin, end] with non-negative integers");
    if (end < begin) fail(at, "data_offsets [{}, {}] end before begin", begin, end);
    if (end > data_size)
      fail(at, "data_offsets [{}, {}] run past the data section ({} bytes); file truncated?",
           begin, end, data_size);
    if (end - begin != t.nbytes)
      fail(at, "data_offsets [{}, {}] span {} bytes but shape {} of {} needs {}", begin, end,
           end - begin, brief(*sh), dname, t.nbytes);
    t.offset = begin;
    tensors_.push_back(std::move(t));
  }

  // The byte ranges must tile the data section: sorted by begin, each starts where the last ended.
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->nbytes < b->nbytes;
  });
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo* t : by_offset) {
    if (t->offset < pos)
      fail(Where{path_, 0, t->name},
           "data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", t->offset,
           t->offset + t->nbytes, prev->name, prev->offset, prev->offset + prev->nbytes);
    if (t->offset > pos)
      fail(Where{path_, 0, t->name},
           "data_offsets [{}, {}] leave a gap: bytes [{}, {}) of the data section belong to no "
           "tensor",
           t->offset, t->offset + t->nbytes, pos, t->offset);
    pos = t->offset + t->nbytes;
    prev = t;
  }
  if (pos != data_size)
    fail(file,
         "corrupt safetensors file: data section has {} bytes but the tensors cover {} (header "
         "lies about offsets, or trailing garbage)",
         data_size, pos);

  // nlohmann::json objects iterate in key order, so tensors_ is sorted by name already.
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

void SafetensorsFile::drop_pages(const TensorInfo& info) const {
  if (map_ == nullptr || info.nbytes == 0) return;
  release_mapped_pages(static_cast<const char*>(base_) + data_begin_ + info.offset, info.nbytes);
}

}  // namespace loom::io
