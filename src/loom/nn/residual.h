// The residual sub-layer of every Transformer block (the HF Marian/M2M100 layers in
// models/seq2seq.cc and loom's own Transformer / DeLighT blocks in models/native_seq2seq.cc):
// one place that decides where the LayerNorm and the dropout go.
#pragma once

#include <utility>

#include <torch/torch.h>

#include "loom/nn/layers.h"

namespace loom::nn {

/// One residual sub-layer around `sublayer` (attention or FFN), x [B, L, d] -> [B, L, d]:
///   pre_norm:  x + dropout(sublayer(norm(x)))   (fairseq normalize_before, M2M100/NLLB;
///              Xiong et al. 2020)
///   post-norm: norm(x + dropout(sublayer(x)))   (Vaswani et al. 2017 §3.1, Marian)
/// Dropout (probability `dropout`) applies only when `training`; sublayer maps [B, L, d] ->
/// [B, L, d]. Matches transformers' MarianEncoderLayer / M2M100EncoderLayer and fairseq's
/// TransformerEncoderLayer op for op, so outputs are bitwise those of the inline code.
template <typename F>
torch::Tensor residual(const torch::Tensor& x, const LayerNorm& norm, bool pre_norm, double dropout, bool training,
                       F&& sublayer) {
  auto drop = [&](torch::Tensor y) { return dropout > 0.0 && training ? torch::dropout(y, dropout, true) : y; };
  if (pre_norm) return x + drop(std::forward<F>(sublayer)(norm->forward(x)));  // [B, L, d]
  return norm->forward(x + drop(std::forward<F>(sublayer)(x)));               // [B, L, d]
}

}  // namespace loom::nn
