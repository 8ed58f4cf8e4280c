// libFuzzer target: the bytes are a tokenizer.json (HF tokenizers format), optionally followed
// by a NUL byte and a text to encode. Parsing must either succeed or throw loom::Error; a parsed
// tokenizer must encode valid UTF-8 text to ids inside [0, V), each of which decodes, and a
// decoded byte-level text must be the text again when the tokenizer has no normalizer-like
// changes (checked on the fixture-like inputs by tests, here only the invariants).
// Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DLOOM_FUZZ=ON; run: see fuzz/README.md
#include <cstddef>
#include <cstdint>
#include <string>

#include "loom/core/error.h"
#include "loom/core/utf8.h"
#include "loom/text/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const size_t nul = bytes.find('\0');
  const std::string json = bytes.substr(0, nul);
  const std::string text = nul == std::string::npos ? "Hello, world! 12345 🙂 <|x|>" : bytes.substr(nul + 1);
  (void)loom::text::is_sentencepiece_style_tokenizer_json(json);  // must never throw
  try {
    const auto tok = loom::text::BpeTokenizer::from_json(json, "fuzz/tokenizer.json");
    const int64_t v = tok.vocab_size();
    if (v <= 0) __builtin_trap();
    for (int64_t id : tok.post_prefix())
      if (id < 0 || id >= v) __builtin_trap();
    if (!loom::core::is_valid_utf8(text)) {
      try {
        tok.encode(text);
      } catch (const loom::Error&) {
        return 0;  // rejected, as it must be
      }
      __builtin_trap();
    }
    std::string decoded;
    for (int64_t id : tok.encode(text)) {
      if (id < 0 || id >= v) __builtin_trap();
      decoded += tok.token_bytes(id);
    }
  } catch (const loom::Error&) {
  }
  return 0;
}
