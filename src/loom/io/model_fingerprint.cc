#include "loom/io/model_fingerprint.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "loom/core/error.h"

namespace loom::io {
namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

void mix(uint64_t& h, const char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(p[i]);
    h *= kFnvPrime;
  }
}

void mix_file(uint64_t& h, const std::string& path, int64_t size) {
  constexpr int64_t kWhole = int64_t{4} << 20, kHead = int64_t{1} << 20, kTail = 64 * 1024, kBlock = 4096;
  constexpr int kBlocks = 256;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail(Where{path, 0, ""}, "cannot read model file: {}", std::strerror(errno));
  std::vector<char> buf;
  const auto read_at = [&](int64_t offset, int64_t n) {
    buf.resize(static_cast<std::size_t>(n));
    if (::fseeko(f, static_cast<off_t>(offset), SEEK_SET) != 0 ||
        std::fread(buf.data(), 1, buf.size(), f) != buf.size()) {
      std::fclose(f);
      fail(Where{path, 0, ""}, "cannot read model file at byte {}", offset);
    }
    mix(h, buf.data(), buf.size());
  };
  if (size <= kWhole) {
    read_at(0, size);
  } else {
    read_at(0, kHead);
    const int64_t span = size - kHead - kTail - kBlock;
    for (int b = 0; b < kBlocks; ++b) read_at(kHead + span * b / kBlocks, kBlock);
    read_at(size - kTail, kTail);
  }
  std::fclose(f);
}

}  // namespace

std::string model_fingerprint(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(model_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] != '.' && it->is_regular_file()) files.push_back(it->path());
  }
  if (ec) fail(Where{model_dir, 0, ""}, "cannot list the model directory: {}", ec.message());
  std::sort(files.begin(), files.end());
  uint64_t h = kFnvOffset;
  for (const fs::path& p : files) {
    const std::string name = p.filename().string();
    const auto size = static_cast<int64_t>(fs::file_size(p));
    mix(h, name.c_str(), name.size() + 1);
    mix(h, reinterpret_cast<const char*>(&size), sizeof size);
    mix_file(h, p.string(), size);
  }
  return fmt::format("{:016x}", h);
}

}  // namespace loom::io
