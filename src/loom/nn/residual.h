// The residual sub-layer of every Transformer block (the HF Marian/M2M100 layers in
// models/seq2seq.cc and loom's own Transformer / DeLighT blocks in models/native_seq2seq.cc):
// one place that decides where the LayerNorm and the dropout go.
#pragma once

#include <utility>

#include <torch/torch.h>

#include "loom/nn/layers.h"

namespace loom::nn {

/// One residual sub-layer around `sublayer` (attention or FFN), x [B, L, d] -> [B, L, d], with
/// the dropout done by `drop` (a map [B, L, d] -> [B, L, d], called only in training):
///   pre_norm:  x + drop(sublayer(norm(x)))   (fairseq normalize_before, M2M100/NLLB;
///              Xiong et al. 2020)
///   post-norm: norm(x + drop(sublayer(x)))   (Vaswani et al. 2017 §3.1, Marian)
template <typename F, typename D>
torch::Tensor residual_with(const torch::Tensor& x, const LayerNorm& norm, bool pre_norm, bool training, D&& drop,
                            F&& sublayer) {
  auto maybe_drop = [&](torch::Tensor y) { return training ? drop(std::move(y)) : y; };
  if (pre_norm) return x + maybe_drop(std::forward<F>(sublayer)(norm->forward(x)));  // [B, L, d]
  return norm->forward(x + maybe_drop(std::forward<F>(sublayer)(x)));               // [B, L, d]
}

/// residual_with() with torch::dropout of probability `dropout` (applies only when `training`);
/// sublayer maps [B, L, d] -> [B, L, d]. Matches transformers' MarianEncoderLayer /
/// M2M100EncoderLayer and fairseq's TransformerEncoderLayer op for op, so outputs are bitwise
/// those of the inline code.
template <typename F>
torch::Tensor residual(const torch::Tensor& x, const LayerNorm& norm, bool pre_norm, double dropout, bool training,
                       F&& sublayer) {
  auto drop = [&](torch::Tensor y) { return dropout > 0.0 ? torch::dropout(y, dropout, true) : y; };
  return residual_with(x, norm, pre_norm, training, drop, std::forward<F>(sublayer));
}

}  // namespace loom::nn
