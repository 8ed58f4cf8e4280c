// libFuzzer target: the bytes are a chat template (Jinja2 source) rendered over a fixed
// two-turn conversation. Rendering must either produce valid UTF-8 text or throw loom::Error
// (syntax errors, unsupported constructs, undefined values, raise_exception, size/step limits);
// a crash, hang or other exception is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/utf8.h"
#include "loom/text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json messages = nlohmann::json::parse(
      R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi 🙂 "},
          {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}])");
  static const nlohmann::json extra = {{"bos_token", "<bos>"}, {"eos_token", "<eos>"}};
  const std::string source(reinterpret_cast<const char*>(data), size);
  try {
    const std::string out = loom::text::render_chat_template(source, messages, true, extra, "fuzz.jinja");
    if (!loom::core::is_valid_utf8(out)) __builtin_trap();
  } catch (const loom::Error&) {
  }
  return 0;
}
