#include "loom/cli/causal_session.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "loom/text/chat_template.h"

namespace loom::cli {

CausalModel load_causal_model(const std::string& dir) {
  auto model = models::CausalLM::load(dir);
  return CausalModel{model, text::CausalTokenizer::load(dir)};
}

std::vector<int64_t> chat_stop_ids(const CausalModel& m) {
  auto ids = generate::default_stop_ids(*m.model);
  auto add = [&](std::optional<int64_t> id) {
    if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  };
  add(m.tokenizer.eos_id());
  for (const char* t : {"<end_of_turn>", "<|eot_id|>", "<|im_end|>"}) add(m.tokenizer.token_to_id(t));
  return ids;
}

std::vector<int64_t> encode_chat(const CausalModel& m, const nlohmann::json& messages) {
  return m.tokenizer.encode(text::apply_chat_template(m.tokenizer, messages, /*add_generation_prompt=*/true),
                            /*add_special_tokens=*/false);
}

std::string stream_answer(const CausalModel& m, const std::vector<int64_t>& prompt,
                          const generate::CausalGenerateOptions& options, const std::vector<std::string>& stop_strings,
                          std::FILE* out, const std::atomic<bool>* interrupted, int delay_ms) {
  generate::Sequence seq(m.model, prompt, options);
  text::StreamDecoder dec(m.tokenizer, /*skip_special_tokens=*/true);
  generate::StopStrings stops(stop_strings);
  std::string shown;
  auto show = [&](const std::string& s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), out);
    std::fflush(out);
    shown += s;
  };
  while (!(interrupted && interrupted->load())) {
    auto id = seq.step();
    if (!id) break;
    if (seq.finish_reason() == generate::FinishReason::kStopToken) break;  // the stop token is not shown
    show(stops.push(dec.push(*id)));
    if (stops.stopped()) break;
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  }
  show(stops.push(dec.finish()));
  show(stops.finish());
  return shown;
}

}  // namespace loom::cli
