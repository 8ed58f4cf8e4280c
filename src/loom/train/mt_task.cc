#include "loom/train/mt_task.h"

#include <cmath>

#include "loom/core/error.h"

namespace loom::train {
namespace {

std::vector<std::pair<int64_t, int64_t>> lengths_of(const std::vector<EncodedPair>& pairs, const char* name) {
  std::vector<std::pair<int64_t, int64_t>> l;
  l.reserve(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pairs[i].src.empty() || pairs[i].tgt.empty())
      fail(Where{"", static_cast<int64_t>(i + 1), name}, "encoded pair has an empty side (eos expected)");
    l.emplace_back(static_cast<int64_t>(pairs[i].src.size()), static_cast<int64_t>(pairs[i].tgt.size()));
  }
  return l;
}

}  // namespace

MtTask::MtTask(torch::nn::Module& model, Seq2SeqForward forward, std::vector<EncodedPair> train,
               std::vector<EncodedPair> valid, std::vector<std::string> valid_src,
               std::vector<std::string> valid_ref, TranslateFn translate, ScoreFn score,
               MtTaskOptions options)
    : model_(model), forward_(std::move(forward)), train_(std::move(train)), valid_(std::move(valid)),
      valid_src_(std::move(valid_src)), valid_ref_(std::move(valid_ref)),
      translate_(std::move(translate)), score_(std::move(score)), opt_(options) {
  if (train_.empty()) fail("no training pairs");
  if (valid_src_.size() != valid_.size() || valid_ref_.size() != valid_.size())
    fail("validation text ({} sources, {} references) does not match {} encoded pairs",
         valid_src_.size(), valid_ref_.size(), valid_.size());
  data::BatchingOptions bo;
  bo.max_tokens = opt_.max_tokens;
  bo.seed = opt_.seed;
  train_batches_ = std::make_unique<data::TokenBatcher>(lengths_of(train_, "train"), bo);
  if (!valid_.empty()) {
    data::BatchingOptions vo;
    vo.max_tokens = opt_.valid_max_tokens;
    vo.shuffle = false;
    valid_batches_ = std::make_unique<data::TokenBatcher>(lengths_of(valid_, "valid"), vo);
  }
}

MtTask::Tensors MtTask::make_batch(const std::vector<EncodedPair>& pairs,
                                   const std::vector<int64_t>& ids) const {
  const int64_t B = static_cast<int64_t>(ids.size());
  int64_t S = 0, T = 0;
  for (int64_t i : ids) {
    S = std::max<int64_t>(S, pairs[i].src.size());
    T = std::max<int64_t>(T, pairs[i].tgt.size());
  }
  auto src = torch::full({B, S}, opt_.pad_id, torch::kLong);
  auto mask = torch::zeros({B, S}, torch::kBool);
  auto tgt_in = torch::full({B, T}, opt_.pad_id, torch::kLong);
  auto labels = torch::full({B, T}, opt_.pad_id, torch::kLong);
  auto s = src.accessor<int64_t, 2>();
  auto m = mask.accessor<bool, 2>();
  auto ti = tgt_in.accessor<int64_t, 2>();
  auto la = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const EncodedPair& p = pairs[ids[b]];
    for (size_t k = 0; k < p.src.size(); ++k) {
      s[b][k] = p.src[k];
      m[b][k] = true;
    }
    for (size_t k = 0; k < p.tgt.size(); ++k) {
      la[b][k] = p.tgt[k];
      ti[b][k] = k == 0 ? opt_.bos_id : p.tgt[k - 1];
    }
  }
  return {src, mask, tgt_in, labels};
}

LossSum MtTask::batch_loss(int64_t epoch, int64_t index, int rank, int world) {
  auto ids = data::rank_slice(train_batches_->batch(epoch, index), rank, world);
  if (ids.empty()) return {torch::zeros({}), torch::zeros({}), 0};
  Tensors t = make_batch(train_, ids);
  auto logits = forward_(t.src, t.src_mask, t.tgt_in);
  return label_smoothed_nll_loss(logits, t.labels, opt_.label_smoothing, opt_.pad_id);
}

std::map<std::string, double> MtTask::validate() {
  std::map<std::string, double> out;
  if (!valid_batches_) return out;
  double loss = 0, nll = 0, tokens = 0;
  for (int64_t i = 0; i < valid_batches_->num_batches(); ++i) {
    Tensors t = make_batch(valid_, valid_batches_->batch(0, i));
    auto r = label_smoothed_nll_loss(forward_(t.src, t.src_mask, t.tgt_in), t.labels,
                                     opt_.label_smoothing, opt_.pad_id);
    loss += r.loss.item<double>();
    nll += r.nll.item<double>();
    tokens += static_cast<double>(r.n_tokens);
  }
  if (tokens <= 0) return out;
  out["valid_loss"] = loss / tokens;
  out["valid_nll"] = nll / tokens;
  out["valid_ppl"] = std::exp(nll / tokens);
  if (translate_ && score_ && opt_.bleu_sentences > 0) {
    size_t n = std::min<size_t>(valid_src_.size(), static_cast<size_t>(opt_.bleu_sentences));
    std::vector<std::string> src(valid_src_.begin(), valid_src_.begin() + n);
    std::vector<std::string> ref(valid_ref_.begin(), valid_ref_.begin() + n);
    for (auto& [k, v] : score_(translate_(src), ref)) out[k] = v;
  }
  return out;
}

}  // namespace loom::train
