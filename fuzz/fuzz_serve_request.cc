// libFuzzer target: the bytes are an HTTP request body, parsed by every request parser of
// `loom serve` (loom::serve::parse_translation_request + segmentation as the server and
// `loom translate` do: pipeline::segment_for_translation with the inline-span join, and
// pipeline::translate_segmented with an identity and a span-losing engine,
// parse_chat_request, parse_completion_request, parse_embedding_request). Every rejection must
// be a loom::serve::ApiError with a 4xx status and an OpenAI-style error object; an accepted
// request must satisfy the limits and the documented ranges. Anything else (crash, hang, other
// exception) is a bug. Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DLOOM_FUZZ=ON; run:
// build-fuzz/fuzz_serve_request (fuzz/README.md)
#include <cstddef>
#include <cstdint>
#include <string>

#include "loom/serve/api.h"
#include "loom/pipeline/text_segments.h"

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
      loom::pipeline::SegmentingOptions o;
      o.markdown = r.markdown;
      // A few languages only: the segmenter keeps one ICU iterator per language string per
      // thread, and the server only passes codes the tokenizer accepted.
      for (const char* lang : {"de", "ja", "zh", "deu_Latn"})
        if (r.source_lang == lang) o.source_lang = lang;
      o.language_codes = {"cmn_Hans", "fra"};
      const auto seg = loom::pipeline::segment_for_translation(in, o);
      std::string joined = seg.prefix;
      size_t count = 0;
      for (const auto& s : seg.segments) {
        joined += s.text;
        count += s.translate ? 1 : 0;
      }
      if (count != seg.count) __builtin_trap();
      // Segmentation loses nothing (the Marian code's following blanks aside).
      if (seg.prefix.empty() ? joined != in : in.compare(0, 2, ">>") != 0) __builtin_trap();
      for (const auto& u : seg.units)
        if (u.ordinal >= seg.count || u.spans.empty()) __builtin_trap();
      // An identity engine gives the text back; an engine that loses every span still gives a
      // text holding every span of the joined sentences, one call more.
      const auto identity = [&](const std::vector<std::string>& b) {
        std::vector<std::string> out;
        for (const auto& x : b) out.push_back(x.substr(seg.prefix.size()));
        return out;
      };
      const auto lossy = [](const std::vector<std::string>& b) { return std::vector<std::string>(b.size(), "T"); };
      loom::pipeline::InlineRejoinStats st;
      const auto same = loom::pipeline::translate_segmented({seg}, identity, &st);
      if (same.size() != 1 || same[0] != joined.substr(seg.prefix.size()) || st.split != 0) __builtin_trap();
      const auto lost = loom::pipeline::translate_segmented({seg}, lossy, &st);
      if (st.split != static_cast<int64_t>(seg.units.size())) __builtin_trap();
      for (const auto& u : seg.units)
        for (const auto& span : u.spans)
          if (lost[0].find(span) == std::string::npos) __builtin_trap();
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
