#include "loom/generate/lm_generate.h"

#include <algorithm>

#include "loom/core/error.h"

namespace loom::generate {

std::vector<int64_t> generate_lm(models::DecoderLMImpl& model, const std::vector<int64_t>& prompt,
                                 const LmGenerateOptions& o, const TokenCallback& on_token) {
  if (prompt.empty()) fail(Where{"", 0, "prompt"}, "the prompt is empty (at least one token is needed)");
  if (o.max_new_tokens < 0) fail(Where{"", 0, "--max-new-tokens"}, "must be >= 0, got {}", o.max_new_tokens);
  validate(o.sampling);
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  std::mt19937_64 rng(o.sampling.seed);
  auto state = model.initial_state(1);
  const int64_t chunk = o.prompt_chunk > 0 ? o.prompt_chunk : std::max<int64_t>(1, model.config().segment_len);
  const int64_t P = static_cast<int64_t>(prompt.size());
  auto ids = torch::tensor(prompt, torch::kLong).unsqueeze(0);
  torch::Tensor last;
  for (int64_t t0 = 0; t0 < P; t0 += chunk) {
    auto logits = model.forward(ids.slice(1, t0, std::min(P, t0 + chunk)), state);
    last = logits.index({0, -1});
  }
  std::vector<int64_t> context = prompt, out;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const int64_t next = sample_next(last, context, o.sampling, rng);
    out.push_back(next);
    context.push_back(next);
    const bool go_on = on_token ? on_token(next) : true;
    if (!go_on || std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end()) break;
    if (i + 1 == o.max_new_tokens) break;
    last = model.forward(torch::full({1, 1}, next, torch::kLong), state).index({0, -1});
  }
  if (was_training) model.train();
  return out;
}

}  // namespace loom::generate
