// A tiny TrainTask for trainer tests: token-wise "translation" y = (3x + 1) mod V learned by
// an embedding -> dropout -> linear model, over synthetic sequences of varying length batched
// with the real TokenBatcher.
#pragma once

#include <random>

#include "loom/data/batching.h"
#include "loom/train/trainer.h"

namespace loom_test {

struct ToyModelImpl : torch::nn::Module {
  ToyModelImpl(int64_t vocab, int64_t dim, double dropout)
      : emb(register_module("emb", torch::nn::Embedding(vocab, dim))),
        drop(register_module("drop", torch::nn::Dropout(dropout))),
        out(register_module("out", torch::nn::Linear(dim, vocab))) {}
  torch::Tensor forward(const torch::Tensor& x) { return out(drop(emb(x))); }
  torch::nn::Embedding emb;
  torch::nn::Dropout drop;
  torch::nn::Linear out;
};
TORCH_MODULE(ToyModel);

class ToyTask : public loom::train::TrainTask {
 public:
  static constexpr int64_t kVocab = 13;
  /// seed: data and batch order; init_seed: weight initialisation (-1 = seed).
  ToyTask(double dropout, uint64_t seed = 5, int64_t init_seed = -1, int n = 200, int64_t max_tokens = 40)
      : model_((torch::manual_seed(init_seed < 0 ? seed : static_cast<uint64_t>(init_seed)),
                ToyModel(kVocab, 8, dropout))) {
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::vector<std::pair<int64_t, int64_t>> lengths;
    for (int i = 0; i < n; ++i) {
      int len = 1 + rng() % 9;
      std::vector<int64_t> s;
      for (int k = 0; k < len; ++k) s.push_back(1 + rng() % (kVocab - 1));
      data_.push_back(s);
      lengths.emplace_back(len, len);
    }
    loom::data::BatchingOptions o;
    o.max_tokens = max_tokens;
    o.seed = seed;
    batcher_ = std::make_unique<loom::data::TokenBatcher>(lengths, o);
  }
  torch::nn::Module& model() override { return *model_; }
  ToyModel& toy() { return model_; }
  int64_t num_batches() override { return batcher_->num_batches(); }
  loom::train::LossSum batch_loss(int64_t epoch, int64_t index, int rank, int world) override {
    auto ids = loom::data::rank_slice(batcher_->batch(epoch, index), rank, world);
    if (ids.empty()) return {torch::zeros({}), torch::zeros({}), 0};
    auto x = make(ids, false), y = make(ids, true);
    return loom::train::label_smoothed_nll_loss(model_->forward(x), y, 0.1, 0);
  }
  std::map<std::string, double> validate() override {
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < 20; ++i) ids.push_back(i);
    auto r = loom::train::label_smoothed_nll_loss(model_->forward(make(ids, false)), make(ids, true), 0.1, 0);
    double loss = r.loss.item<double>() / r.n_tokens;
    return {{"valid_loss", loss}, {"bleu", 100.0 / (1.0 + loss)}};
  }

 private:
  torch::Tensor make(const std::vector<int64_t>& ids, bool target) {
    size_t T = 0;
    for (auto i : ids) T = std::max(T, data_[i].size());
    auto t = torch::zeros({static_cast<int64_t>(ids.size()), static_cast<int64_t>(T)}, torch::kLong);
    for (size_t b = 0; b < ids.size(); ++b)
      for (size_t k = 0; k < data_[ids[b]].size(); ++k) {
        int64_t x = data_[ids[b]][k];
        t[b][k] = target ? 1 + (3 * x + 1) % (kVocab - 1) : x;
      }
    return t;
  }
  ToyModel model_;
  std::vector<std::vector<int64_t>> data_;
  std::unique_ptr<loom::data::TokenBatcher> batcher_;
};

}  // namespace loom_test
