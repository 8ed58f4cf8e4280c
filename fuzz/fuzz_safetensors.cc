// libFuzzer target for the safetensors parser (loom::io::SafetensorsFile::from_bytes).
// Every input must either parse into a self-consistent file or throw loom::Error; anything else
// (crash, sanitizer report, other exception, hang) is a bug. See fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loom/core/error.h"
#include "loom/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    auto file = loom::io::SafetensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
    // Invariants of an accepted file: every tensor's bytes lie inside the input, sizes agree,
    // lookups find it, and the ranges tile the data section without overlap.
    uint64_t total = 0;
    for (const auto& t : file.tensors()) {
      std::string_view d = file.data(t);
      if (d.size() != t.nbytes) std::abort();
      if (file.find(t.name) != &t) std::abort();
      uint64_t numel = 1;
      for (int64_t dim : t.shape) numel *= static_cast<uint64_t>(dim);
      if (numel * loom::io::dtype_size(t.dtype) != t.nbytes) std::abort();
      volatile char sink = 0;
      for (char c : d) sink = sink ^ c;  // touch every byte: ASan checks the range
      total += t.nbytes;
    }
    if (total > size) std::abort();
    if (!file.metadata().is_object()) std::abort();
  } catch (const loom::Error&) {
    // rejected with a message: fine
  }
  return 0;
}
