#include "loom/core/paths.h"

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace loom::core {
namespace fs = std::filesystem;

fs::path executable_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  return fs::path(std::string(buf, static_cast<size_t>(n))).parent_path();
}

static fs::path first_existing(const char* env, const char* name) {
  std::vector<fs::path> candidates;
  if (const char* e = std::getenv(env); e && *e) candidates.emplace_back(e);
  candidates.push_back(executable_dir() / ".." / "share" / "loom" / name);
  candidates.push_back(fs::path(LOOM_SOURCE_DIR) / name);
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fs::is_directory(c, ec)) return c;
  }
  return candidates.back();
}

fs::path data_dir() { return first_existing("LOOM_DATA_DIR", "data"); }
fs::path models_dir() { return first_existing("LOOM_MODELS_DIR", "models"); }

}  // namespace loom::core
