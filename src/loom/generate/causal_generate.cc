#include "loom/generate/causal_generate.h"

#include <algorithm>

#include "loom/core/error.h"

namespace loom::generate {

std::vector<int64_t> default_stop_ids(const models::CausalLM& model) {
  std::vector<int64_t> out;
  auto add = [&](const nlohmann::json& j) {
    auto it = j.find("eos_token_id");
    if (it == j.end() || it->is_null()) return false;
    if (it->is_number_integer()) out.push_back(it->get<int64_t>());
    if (it->is_array())
      for (const auto& v : *it)
        if (v.is_number_integer()) out.push_back(v.get<int64_t>());
    return !out.empty();
  };
  if (!add(model.generation_config()) && model.config().eos_token_id >= 0) out.push_back(model.config().eos_token_id);
  return out;
}

namespace {
void check_prompt(const models::CausalLM& model, size_t n) {
  if (n == 0) fail(Where{"", 0, "prompt"}, "the prompt is empty");
  const int64_t ctx = model.config().max_position;
  if (static_cast<int64_t>(n) > ctx)
    fail(Where{"", 0, "prompt"}, "the prompt has {} tokens but the model's context window is {} tokens", n, ctx);
}
bool is_stop(const std::vector<int64_t>& stops, int64_t id) {
  return std::find(stops.begin(), stops.end(), id) != stops.end();
}
}  // namespace

Sequence::Sequence(std::shared_ptr<const models::CausalLM> model, std::vector<int64_t> prompt,
                   CausalGenerateOptions options)
    : model_(std::move(model)), options_(std::move(options)), rng_(options_.sampling.seed) {
  validate(options_.sampling);
  reset(std::move(prompt));
}

void Sequence::reset(std::vector<int64_t> prompt) {
  check_prompt(*model_, prompt.size());
  cache_.clear();
  tokens_ = std::move(prompt);
  generated_.clear();
  reason_ = FinishReason::kNone;
  rng_.seed(options_.sampling.seed);
}

void Sequence::extend(const std::vector<int64_t>& ids) {
  if (ids.empty()) fail(Where{"", 0, "prompt"}, "nothing to append");
  const size_t total = tokens_.size() + ids.size();
  if (static_cast<int64_t>(total) > model_->config().max_position)
    fail(Where{"", 0, "prompt"}, "the conversation has {} tokens but the model's context window is {} tokens", total,
         model_->config().max_position);
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  generated_.clear();
  reason_ = FinishReason::kNone;
}

void Sequence::stop() {
  if (!finished()) reason_ = FinishReason::kStopped;
}

std::optional<int64_t> Sequence::step() {
  if (finished()) return std::nullopt;
  const int64_t ctx = model_->config().max_position;
  if (static_cast<int64_t>(generated_.size()) >= options_.max_new_tokens ||
      static_cast<int64_t>(tokens_.size()) >= ctx) {
    reason_ = FinishReason::kLength;
    return std::nullopt;
  }
  // Input: every token not in the cache yet (the prompt, the last sampled token, extend()ed ids).
  const int64_t past = cache_.length();
  std::vector<int64_t> in(tokens_.begin() + past, tokens_.end());
  const int64_t T = static_cast<int64_t>(in.size());
  auto ids = torch::tensor(in, torch::kInt64).unsqueeze(0);                 // [1, T]
  auto pos = torch::arange(past, past + T, torch::kInt64).unsqueeze(0);    // [1, T]
  auto valid = torch::ones({1, T}, torch::kBool);
  last_logits_ = model_->forward(ids, pos, valid, cache_, /*last_only=*/true).reshape({-1});  // [V]
  const int64_t next = sample_next(last_logits_, tokens_, options_.sampling, rng_);
  tokens_.push_back(next);
  generated_.push_back(next);
  if (is_stop(options_.stop_ids, next)) reason_ = FinishReason::kStopToken;
  // The sampled token enters the cache on the next step.
  return next;
}

std::vector<std::vector<int64_t>> generate_batch(const models::CausalLM& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const CausalGenerateOptions& options) {
  validate(options.sampling);
  const int64_t B = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int64_t>> out(B);
  if (B == 0) return out;
  size_t longest = 0;
  for (const auto& p : prompts) {
    check_prompt(model, p.size());
    longest = std::max(longest, p.size());
  }
  const int64_t pad = model.config().pad_token_id >= 0 ? model.config().pad_token_id : 0;
  const int64_t S0 = static_cast<int64_t>(longest);
  // Left padding; positions = cumsum(mask) - 1 over real tokens (pads get position 0, unused).
  auto ids = torch::full({B, S0}, pad, torch::kInt64);
  auto pos = torch::zeros({B, S0}, torch::kInt64);
  auto valid = torch::zeros({B, S0}, torch::kBool);
  std::vector<std::vector<int64_t>> context(prompts);
  std::vector<int64_t> next_pos(B);
  std::vector<std::mt19937_64> rngs;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size()), off = S0 - n;
    ids[b].narrow(0, off, n).copy_(torch::tensor(prompts[b], torch::kInt64));
    pos[b].narrow(0, off, n).copy_(torch::arange(n, torch::kInt64));
    valid[b].narrow(0, off, n).fill_(true);
    next_pos[b] = n;
    rngs.emplace_back(options.sampling.seed + static_cast<uint64_t>(b));
  }
  models::KvCache cache;
  std::vector<bool> done(B, false);
  auto logits = model.forward(ids, pos, valid, cache, /*last_only=*/true);  // [B, 1, V]
  const int64_t ctx = model.config().max_position;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    auto step_ids = torch::full({B, 1}, pad, torch::kInt64);
    auto step_pos = torch::zeros({B, 1}, torch::kInt64);
    auto step_valid = torch::zeros({B, 1}, torch::kBool);
    bool any = false;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const int64_t id = sample_next(logits[b][0], context[b], options.sampling, rngs[b]);
      out[b].push_back(id);
      context[b].push_back(id);
      if (is_stop(options.stop_ids, id) || next_pos[b] + 1 > ctx) {
        done[b] = true;
        continue;
      }
      step_ids[b][0] = id;
      step_pos[b][0] = next_pos[b]++;
      step_valid[b][0] = true;
      any = true;
    }
    if (!any || step + 1 == options.max_new_tokens) break;
    logits = model.forward(step_ids, step_pos, step_valid, cache, /*last_only=*/true);
  }
  return out;
}

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string StopStrings::push(std::string_view text) {
  if (stopped_) return {};
  held_.append(text);
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold the longest suffix of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_) {
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopStrings::finish() {
  if (stopped_) return {};
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace loom::generate
