// libFuzzer target for the pickle reader of pytorch_model.bin (loom::io::parse_torch_pickle,
// the data.pkl of a torch.save'd state dict). Every input must parse into views that lie inside
// their storages, or throw loom::Error; anything else (crash, sanitizer report, leak, other
// exception, hang) is a bug. See fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "loom/core/error.h"
#include "loom/io/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto sd = loom::io::parse_torch_pickle(bytes, "fuzz.bin");
    for (const auto& t : sd.tensors) {
      if (t.sizes.size() != t.strides.size() || t.offset < 0 || t.storage_key.empty()) std::abort();
      bool empty = false;
      uint64_t last = static_cast<uint64_t>(t.offset);
      for (size_t d = 0; d < t.sizes.size(); ++d) {
        if (t.sizes[d] < 0 || t.strides[d] < 0) std::abort();
        empty = empty || t.sizes[d] == 0;
        if (t.sizes[d] > 0) last += static_cast<uint64_t>(t.sizes[d] - 1) * static_cast<uint64_t>(t.strides[d]);
      }
      if (!empty && last >= t.storage_numel) std::abort();
    }
  } catch (const loom::Error&) {
    // rejected with a message: fine
  }
  return 0;
}
