#include "loom/train/lm_task.h"

#include <cmath>
#include <random>

#include "loom/core/error.h"
#include "loom/core/random.h"
#include "loom/data/batching.h"
#include "loom/data/shuffle.h"

namespace loom::train {

LossSum lm_loss(models::DecoderLMImpl& model, const torch::Tensor& ids, const torch::Tensor& labels, int64_t chunk) {
  if (ids.dim() != 2 || labels.sizes() != ids.sizes())
    fail(Where{"", 0, "labels"}, "ids and labels must both be [B, T] of one shape, got {} and {}", c10::str(ids.sizes()), c10::str(labels.sizes()));
  const int64_t B = ids.size(0), T = ids.size(1);
  auto state = model.initial_state(B);
  std::vector<torch::Tensor> parts;
  const int64_t step = chunk > 0 ? chunk : T;
  for (int64_t t0 = 0; t0 < T; t0 += step) {
    const int64_t t1 = std::min(T, t0 + step);
    parts.push_back(model.forward(ids.slice(1, t0, t1), state));
  }
  auto logits = parts.size() == 1 ? parts[0] : torch::cat(parts, 1);  // [B, T, V]
  auto mask = labels >= 0;
  auto lp = torch::log_softmax(logits.to(torch::kFloat), -1);
  auto tgt = labels.clamp_min(0).unsqueeze(-1);
  auto nll = -lp.gather(-1, tgt).squeeze(-1) * mask.to(lp.dtype());
  LossSum r;
  r.loss = nll.sum();
  r.nll = r.loss.detach();
  r.n_tokens = mask.sum().item<int64_t>();
  return r;
}

// ---------------------------------------------------------------- LmTask

LmTask::LmTask(models::DecoderLM model, std::vector<std::vector<int64_t>> docs, std::vector<LmWindow> train,
               std::vector<LmWindow> valid, LmTaskOptions options)
    : model_(std::move(model)), docs_(std::move(docs)), train_(std::move(train)), valid_(std::move(valid)), opt_(options) {
  if (train_.empty()) fail(Where{"", 0, "data"}, "no training windows (documents too short for one window?)");
  if (opt_.batch_windows < 1) fail(Where{"", 0, "batch_windows"}, "must be >= 1, got {}", opt_.batch_windows);
  for (const auto* set : {&train_, &valid_})
    for (const auto& w : *set)
      if (w.doc < 0 || w.doc >= static_cast<int64_t>(docs_.size()) || w.begin < 0 || w.length < 2 ||
          w.begin + w.length > static_cast<int64_t>(docs_[static_cast<size_t>(w.doc)].size()))
        fail(Where{"", 0, "windows"}, "window (doc {}, begin {}, length {}) lies outside its document", w.doc, w.begin,
             w.length);
}

int64_t LmTask::num_batches() {
  const int64_t n = static_cast<int64_t>(train_.size());
  return (n + opt_.batch_windows - 1) / opt_.batch_windows;
}

std::pair<torch::Tensor, torch::Tensor> LmTask::make_batch(const std::vector<LmWindow>& windows) const {
  int64_t T = 0;
  for (auto& w : windows) T = std::max(T, w.length - 1);
  const int64_t b = static_cast<int64_t>(windows.size());
  auto ids = torch::zeros({b, T}, torch::kLong);
  auto labels = torch::full({b, T}, -1, torch::kLong);
  auto pi = ids.accessor<int64_t, 2>();
  auto pl = labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const auto& w = windows[static_cast<size_t>(r)];
    const auto& d = docs_[static_cast<size_t>(w.doc)];
    for (int64_t t = 0; t + 1 < w.length; ++t) {
      pi[r][t] = d[static_cast<size_t>(w.begin + t)];
      pl[r][t] = d[static_cast<size_t>(w.begin + t + 1)];
    }
  }
  return {ids, labels};
}

LossSum LmTask::batch_loss(int64_t epoch, int64_t index, int rank, int world) {
  const int64_t n = static_cast<int64_t>(train_.size());
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
  data::shuffle_indices(perm, opt_.seed + static_cast<uint64_t>(epoch));
  std::vector<int64_t> batch;
  for (int64_t i = index * opt_.batch_windows; i < std::min(n, (index + 1) * opt_.batch_windows); ++i)
    batch.push_back(perm[static_cast<size_t>(i)]);
  auto mine = data::rank_slice(batch, rank, world);
  if (mine.empty()) return {torch::zeros({}), torch::zeros({}), 0};
  std::vector<LmWindow> ws;
  for (auto i : mine) ws.push_back(train_[static_cast<size_t>(i)]);
  auto [ids, labels] = make_batch(ws);
  return lm_loss(*model_, ids, labels, opt_.chunk);
}

std::map<std::string, double> LmTask::validate() {
  if (valid_.empty()) return {};
  double nll = 0;
  int64_t n = 0;
  for (size_t i = 0; i < valid_.size(); i += static_cast<size_t>(opt_.batch_windows)) {
    std::vector<LmWindow> ws(valid_.begin() + static_cast<std::ptrdiff_t>(i),
                             valid_.begin() + static_cast<std::ptrdiff_t>(std::min(valid_.size(), i + static_cast<size_t>(opt_.batch_windows))));
    auto [ids, labels] = make_batch(ws);
    auto r = lm_loss(*model_, ids, labels, opt_.chunk);
    nll += r.loss.item<double>();
    n += r.n_tokens;
  }
  const double loss = nll / static_cast<double>(std::max<int64_t>(1, n));
  return {{"valid_loss", loss}, {"valid_nll", loss}, {"valid_ppl", std::exp(loss)}};
}

// ---------------------------------------------------------------- PasskeyTask

PasskeyTask::PasskeyTask(models::DecoderLM model, data::EncodeFn encode, PasskeyTaskOptions options)
    : model_(std::move(model)), encode_(std::move(encode)), opt_(options) {
  auto need = [](bool ok, const char* f, const std::string& m) {
    if (!ok) fail(Where{"", 0, f}, "{}", m);
  };
  need(opt_.batch_size >= 1, "passkey.batch_size", "must be >= 1");
  need(opt_.batches_per_epoch >= 1, "passkey.batches_per_epoch", "must be >= 1");
  need(opt_.min_tokens >= 1 && opt_.min_tokens <= opt_.max_tokens, "passkey.min_tokens",
       fmt::format("need 1 <= min_tokens <= max_tokens, got {} and {}", opt_.min_tokens, opt_.max_tokens));
  need(opt_.min_depth >= 0 && opt_.min_depth <= opt_.max_depth && opt_.max_depth <= 1, "passkey.min_depth",
       fmt::format("need 0 <= min_depth <= max_depth <= 1, got {} and {}", opt_.min_depth, opt_.max_depth));
  need(opt_.valid_samples >= 0, "passkey.valid_samples", "must be >= 0");
  int64_t prev = 0;
  for (size_t i = 0; i < opt_.curriculum.size(); ++i) {
    const auto& st = opt_.curriculum[i];
    const std::string f = fmt::format("passkey.curriculum[{}]", i);
    need(st.until_step > prev, f.c_str(),
         fmt::format("until_step must increase and be > 0, got {} after {}", st.until_step, prev));
    need(st.min_tokens >= 1 && st.min_tokens <= st.max_tokens, f.c_str(),
         fmt::format("need 1 <= min_tokens <= max_tokens, got {} and {}", st.min_tokens, st.max_tokens));
    prev = st.until_step;
  }
}

std::pair<int64_t, int64_t> PasskeyTask::length_range(int64_t global_batch) const {
  for (const auto& st : opt_.curriculum)
    if (global_batch < st.until_step) return {st.min_tokens, st.max_tokens};
  return {opt_.min_tokens, opt_.max_tokens};
}

data::PasskeySample PasskeyTask::sample(int64_t epoch, int64_t index, int64_t row) const {
  // splitmix64 mixing of (seed, epoch, index, row) into one 64-bit seed.
  const auto mix = core::splitmix64;
  uint64_t s = mix(opt_.seed);
  s = mix(s ^ static_cast<uint64_t>(epoch + 1));
  s = mix(s ^ static_cast<uint64_t>(index));
  s = mix(s ^ static_cast<uint64_t>(row));
  std::mt19937_64 rng(s);
  const auto [lo, hi] = epoch < 0 ? std::pair<int64_t, int64_t>{opt_.min_tokens, opt_.max_tokens}
                                  : length_range(epoch * opt_.batches_per_epoch + index);
  const uint64_t span = static_cast<uint64_t>(hi - lo + 1);
  const int64_t len = lo + static_cast<int64_t>(rng() % span);
  const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
  const double depth = opt_.min_depth + u * (opt_.max_depth - opt_.min_depth);
  return data::make_passkey_sample(encode_, len, depth, data::random_passkey(rng()));
}

std::pair<torch::Tensor, torch::Tensor> PasskeyTask::make_batch(const std::vector<data::PasskeySample>& samples,
                                                                bool loss_on_prompt) {
  int64_t T = 0;
  for (auto& s : samples) T = std::max<int64_t>(T, static_cast<int64_t>(s.prompt.size() + s.answer.size()) - 1);
  const int64_t b = static_cast<int64_t>(samples.size());
  auto ids = torch::zeros({b, T}, torch::kLong);
  auto labels = torch::full({b, T}, -1, torch::kLong);
  auto pi = ids.accessor<int64_t, 2>();
  auto pl = labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const auto& s = samples[static_cast<size_t>(r)];
    std::vector<int64_t> all = s.prompt;
    all.insert(all.end(), s.answer.begin(), s.answer.end());
    const int64_t P = static_cast<int64_t>(s.prompt.size());
    for (int64_t t = 0; t + 1 < static_cast<int64_t>(all.size()); ++t) {
      pi[r][t] = all[static_cast<size_t>(t)];
      if (loss_on_prompt || t + 1 >= P) pl[r][t] = all[static_cast<size_t>(t + 1)];
    }
  }
  return {ids, labels};
}

LossSum PasskeyTask::batch_loss(int64_t epoch, int64_t index, int rank, int world) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < opt_.batch_size; ++r) rows.push_back(r);
  auto mine = data::rank_slice(rows, rank, world);
  if (mine.empty()) return {torch::zeros({}), torch::zeros({}), 0};
  std::vector<data::PasskeySample> samples;
  for (auto r : mine) samples.push_back(sample(epoch, index, r));
  auto [ids, labels] = make_batch(samples, opt_.loss_on_prompt);
  return lm_loss(*model_, ids, labels, opt_.chunk);
}

std::map<std::string, double> PasskeyTask::validate() {
  if (opt_.valid_samples == 0) return {};
  double nll = 0;
  int64_t n = 0, exact = 0, tok_ok = 0, tok_n = 0;
  for (int64_t i = 0; i < opt_.valid_samples; i += opt_.batch_size) {
    std::vector<data::PasskeySample> samples;
    for (int64_t r = i; r < std::min(opt_.valid_samples, i + opt_.batch_size); ++r) samples.push_back(sample(-1, 0, r));
    auto [ids, labels] = make_batch(samples);
    const int64_t B = ids.size(0), T = ids.size(1);
    auto state = model_->initial_state(B);
    std::vector<torch::Tensor> parts;
    const int64_t step = opt_.chunk > 0 ? opt_.chunk : T;
    for (int64_t t0 = 0; t0 < T; t0 += step) parts.push_back(model_->forward(ids.slice(1, t0, std::min(T, t0 + step)), state));
    auto logits = torch::cat(parts, 1);
    auto mask = labels >= 0;
    auto lp = torch::log_softmax(logits, -1);
    nll += (-lp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask).sum().item<double>();
    auto correct = (logits.argmax(-1) == labels) & mask;
    n += mask.sum().item<int64_t>();
    tok_ok += correct.sum().item<int64_t>();
    tok_n += mask.sum().item<int64_t>();
    auto row_ok = (correct.sum(1) == mask.sum(1));
    exact += row_ok.sum().item<int64_t>();
  }
  return {{"valid_loss", nll / static_cast<double>(std::max<int64_t>(1, n))},
          {"passkey_acc", static_cast<double>(exact) / static_cast<double>(opt_.valid_samples)},
          {"token_acc", static_cast<double>(tok_ok) / static_cast<double>(std::max<int64_t>(1, tok_n))}};
}

}  // namespace loom::train
