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

std::vector<int64_t> chat_stop_ids(const models::CausalLM& model, const text::CausalTokenizer& tokenizer) {
  auto ids = default_stop_ids(model);
  auto add = [&](std::optional<int64_t> id) {
    if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  };
  add(tokenizer.eos_id());
  for (const char* t : {"<end_of_turn>", "<|eot_id|>", "<|im_end|>"}) add(tokenizer.token_to_id(t));
  return ids;
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

void Sequence::truncate(std::size_t n) {
  if (n == 0 || n > tokens_.size())
    fail(Where{"", 0, "prompt"}, "cannot keep {} of the sequence's {} tokens", n, tokens_.size());
  tokens_.resize(n);
  const int64_t keep = std::min<int64_t>(cache_.length(), static_cast<int64_t>(n) - 1);
  if (keep == 0) {
    cache_.clear();
  } else if (keep < cache_.length()) {
    for (auto* layers : {&cache_.k, &cache_.v})
      for (torch::Tensor& t : *layers)
        if (t.defined()) t = t.narrow(2, 0, keep);  // [B, H_kv, S, d] -> [B, H_kv, keep, d]
    cache_.key_pos = cache_.key_pos.narrow(1, 0, keep);      // [B, keep]
    cache_.key_valid = cache_.key_valid.narrow(1, 0, keep);  // [B, keep]
  }
  generated_.clear();
  reason_ = FinishReason::kNone;
  rng_.seed(options_.sampling.seed);
}

void Sequence::stop() {
  if (!finished()) reason_ = FinishReason::kStopped;
}

bool Sequence::ready() {
  if (finished()) return false;
  const int64_t ctx = model_->config().max_position;
  if (static_cast<int64_t>(generated_.size()) >= options_.max_new_tokens ||
      static_cast<int64_t>(tokens_.size()) >= ctx) {
    reason_ = FinishReason::kLength;
    return false;
  }
  return true;
}

int64_t Sequence::accept(torch::Tensor logits) {
  last_logits_ = std::move(logits);
  const int64_t next = sample_next(last_logits_, tokens_, options_.sampling, rng_);
  tokens_.push_back(next);
  generated_.push_back(next);
  if (is_stop(options_.stop_ids, next)) reason_ = FinishReason::kStopToken;
  // The sampled token enters the cache on the next step.
  return next;
}

std::optional<int64_t> Sequence::step() {
  if (!ready()) return std::nullopt;
  // Input: every token not in the cache yet (the prompt, the last sampled token, extend()ed ids).
  const int64_t past = cache_.length();
  std::vector<int64_t> in(tokens_.begin() + past, tokens_.end());
  const int64_t T = static_cast<int64_t>(in.size());
  auto ids = torch::tensor(in, torch::kInt64).unsqueeze(0);                 // [1, T]
  auto pos = torch::arange(past, past + T, torch::kInt64).unsqueeze(0);    // [1, T]
  auto valid = torch::ones({1, T}, torch::kBool);
  return accept(model_->forward(ids, pos, valid, cache_, /*last_only=*/true).reshape({-1}));  // [V]
}

std::vector<std::optional<int64_t>> Sequence::step_batch(const std::vector<Sequence*>& seqs) {
  std::vector<std::optional<int64_t>> next(seqs.size());
  std::vector<size_t> live;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i]->model_ != seqs[0]->model_) fail("Sequence::step_batch: the sequences belong to different models");
    if (seqs[i]->ready()) live.push_back(i);
  }
  if (live.empty()) return next;
  if (live.size() == 1) {
    next[live[0]] = seqs[live[0]]->step();
    return next;
  }
  const models::CausalLM& model = *seqs[0]->model_;
  const int64_t B = static_cast<int64_t>(live.size());
  const int64_t pad = model.config().pad_token_id >= 0 ? model.config().pad_token_id : 0;
  int64_t S = 0, T = 0;  // longest cache, longest pending input
  for (size_t i : live) {
    S = std::max(S, seqs[i]->cache_.length());
    T = std::max(T, static_cast<int64_t>(seqs[i]->tokens_.size()) - seqs[i]->cache_.length());
  }
  // Pending inputs, left-padded: ids/pos/valid [B, T].
  auto ids = torch::full({B, T}, pad, torch::kInt64);
  auto pos = torch::zeros({B, T}, torch::kInt64);
  auto valid = torch::zeros({B, T}, torch::kBool);
  // Merged cache: row b's S_b cached keys right-aligned in [B, H_kv, S, d] (padding masked).
  models::KvCache merged;
  if (S > 0) {
    const models::KvCache* filled = nullptr;  // a cache to take layer shapes from
    for (size_t i : live)
      if (!filled && seqs[i]->cache_.length() > 0) filled = &seqs[i]->cache_;
    const models::KvCache& any = *filled;
    const size_t L = any.k.size();
    for (size_t l = 0; l < L; ++l) {
      auto shape = any.k[l].sizes().vec();  // [1, H_kv, S_b, d]
      shape[0] = B;
      shape[2] = S;
      merged.k.push_back(torch::zeros(shape, any.k[l].options()));
      merged.v.push_back(torch::zeros(shape, any.v[l].options()));
    }
    merged.key_pos = torch::zeros({B, S}, torch::kInt64);
    merged.key_valid = torch::zeros({B, S}, torch::kBool);
  }
  for (int64_t b = 0; b < B; ++b) {
    Sequence& s = *seqs[live[static_cast<size_t>(b)]];
    const int64_t Sb = s.cache_.length(), Tb = static_cast<int64_t>(s.tokens_.size()) - Sb;
    std::vector<int64_t> in(s.tokens_.begin() + Sb, s.tokens_.end());
    ids[b].narrow(0, T - Tb, Tb).copy_(torch::tensor(in, torch::kInt64));
    pos[b].narrow(0, T - Tb, Tb).copy_(torch::arange(Sb, Sb + Tb, torch::kInt64));
    valid[b].narrow(0, T - Tb, Tb).fill_(true);
    if (Sb > 0) {
      for (size_t l = 0; l < merged.k.size(); ++l) {
        merged.k[l][b].narrow(1, S - Sb, Sb).copy_(s.cache_.k[l][0]);
        merged.v[l][b].narrow(1, S - Sb, Sb).copy_(s.cache_.v[l][0]);
      }
      merged.key_pos[b].narrow(0, S - Sb, Sb).copy_(s.cache_.key_pos[0]);
      merged.key_valid[b].narrow(0, S - Sb, Sb).copy_(s.cache_.key_valid[0]);
    }
  }
  auto logits = model.forward(ids, pos, valid, merged, /*last_only=*/true);  // [B, 1, V]
  // Split: row b keeps its own columns of the S + T merged ones (its cache, then its input).
  for (int64_t b = 0; b < B; ++b) {
    const size_t i = live[static_cast<size_t>(b)];
    Sequence& s = *seqs[i];
    const int64_t Sb = s.cache_.length(), Tb = static_cast<int64_t>(s.tokens_.size()) - Sb;
    auto keep = torch::cat({torch::arange(S - Sb, S, torch::kInt64), torch::arange(S + T - Tb, S + T, torch::kInt64)});
    models::KvCache own;
    for (size_t l = 0; l < merged.k.size(); ++l) {
      own.k.push_back(merged.k[l][b].index_select(1, keep).unsqueeze(0));
      own.v.push_back(merged.v[l][b].index_select(1, keep).unsqueeze(0));
    }
    own.key_pos = merged.key_pos[b].index_select(0, keep).unsqueeze(0);
    own.key_valid = merged.key_valid[b].index_select(0, keep).unsqueeze(0);
    s.cache_ = std::move(own);
    next[i] = s.accept(logits[b][0].clone());
  }
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
