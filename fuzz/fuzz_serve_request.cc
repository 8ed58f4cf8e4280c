// libFuzzer target: the bytes are an HTTP request body, parsed by every request parser of
// `loom serve` (loom::serve::parse_translation_request + segmentation as the server does,
// parse_chat_request, parse_completion_request, parse_embedding_request). Every rejection must
// be a loom::serve::ApiError with a 4xx status and an OpenAI-style error object; an accepted
// request must satisfy the limits and the documented ranges. Anything else (crash, hang, other
// exception) is a bug. Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DLOOM_FUZZ=ON; run:
// build-fuzz/fuzz_serve_request (fuzz/README.md)
#include <cstddef>
#include <cstdint>
#include <string>

#include "loom/serve/api.h"
#include "loom/text/segment.h"

namespace {

void check_error(const loom::serve::ApiError& e) {
  if (e.status() < 400 || e.status() >= 500) __builtin_trap();
  const auto j = e.to_json();  // must serialise (the message may quote the input)
  if (!j.contains("error") || j["error"]["message"].get<std::string>().empty()) __builtin_trap();
  (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void check_generation(const loom::serve::GenerationRequest& g) {
  if (!(g.temperature >= 0 && g.temperature <= 2)) __builtin_trap();
  if (!(g.top_p > 0 && g.top_p <= 1)) __builtin_trap();
  if (g.max_tokens < 0 || g.stop.size() > 4) __builtin_trap();
  for (const auto& s : g.stop)
    if (s.empty()) __builtin_trap();
}

}  // namespace

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
    check_error(e);
  }
  try {
    const auto r = loom::serve::parse_chat_request(body, limits);
    check_generation(r.gen);
    if (!r.messages.is_array() || r.messages.empty() || r.messages.size() > limits.max_inputs) __builtin_trap();
    size_t bytes = 0;
    for (const auto& m : r.messages) {
      if (!m["role"].is_string() || !m["content"].is_string()) __builtin_trap();
      bytes += m["content"].get<std::string>().size();
    }
    if (bytes > limits.max_input_bytes) __builtin_trap();
  } catch (const loom::serve::ApiError& e) {
    check_error(e);
  }
  try {
    const auto r = loom::serve::parse_completion_request(body, limits);
    check_generation(r.gen);
    if (r.prompt.empty() || r.prompt.size() > limits.max_input_bytes) __builtin_trap();
  } catch (const loom::serve::ApiError& e) {
    check_error(e);
  }
  try {
    const auto r = loom::serve::parse_embedding_request(body, limits);
    if (r.inputs.empty() || r.inputs.size() > limits.max_inputs) __builtin_trap();
    for (const auto& in : r.inputs)
      if (in.empty()) __builtin_trap();
  } catch (const loom::serve::ApiError& e) {
    check_error(e);
  }
  return 0;
}
