// libFuzzer target: the bytes are an HTTP request body for POST /v1/translations, parsed by
// loom::serve::parse_translation_request and then segmented as the server does. Every
// rejection must be a loom::serve::ApiError with a 4xx status and an OpenAI-style error object;
// an accepted request must satisfy the limits. Anything else (crash, hang, other exception) is
// a bug. Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DLOOM_FUZZ=ON; run: build/fuzz_serve_request
#include <cstddef>
#include <cstdint>
#include <string>

#include "loom/serve/api.h"
#include "loom/text/segment.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  loom::serve::RequestLimits limits;
  limits.max_inputs = 16;
  limits.max_input_bytes = 2048;
  try {
    const auto r = loom::serve::parse_translation_request(body, limits);
    if (r.inputs.empty() || r.inputs.size() > limits.max_inputs) __builtin_trap();
    size_t bytes = 0;
    for (const auto& in : r.inputs) {
      if (in.empty()) __builtin_trap();
      bytes += in.size();
      loom::text::SegmentOptions o;
      o.markdown = r.markdown;
      const auto segments = loom::text::segment_text(in, o);
      std::string joined;
      for (const auto& s : segments) joined += s.text;
      if (joined != in) __builtin_trap();  // segmentation loses nothing
    }
    if (bytes > limits.max_input_bytes) __builtin_trap();
    if (r.beam_size < 0 || r.beam_size > limits.max_beam_size) __builtin_trap();
  } catch (const loom::serve::ApiError& e) {
    if (e.status() < 400 || e.status() >= 500) __builtin_trap();
    const auto j = e.to_json();  // must serialise (the message may quote the input)
    if (!j.contains("error") || j["error"]["message"].get<std::string>().empty()) __builtin_trap();
    (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return 0;
}
