// Training losses.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace loom::train {

/// Summed losses of one batch and the number of target tokens they cover.
struct LossSum {
  torch::Tensor loss;     ///< scalar, summed over tokens (what backward() runs on)
  torch::Tensor nll;      ///< scalar, summed negative log-likelihood (no smoothing), detached
  int64_t n_tokens = 0;   ///< target tokens counted (ignore_index excluded)
};

/// Label-smoothed cross-entropy, summed over non-ignored tokens, as fairseq's
/// label_smoothed_nll_loss (fairseq/criterions/label_smoothed_cross_entropy.py):
///   lprobs = log_softmax(logits), nll_i = -lprobs[i, target_i], smooth_i = -sum_v lprobs[i, v],
///   eps_i = epsilon / (V - 1),
///   loss = sum_i (1 - epsilon - eps_i) * nll_i + eps_i * smooth_i.
/// logits: [N, V] or [B, T, V] (float); target: [N] or [B, T] int64 with the same leading
/// shape. Positions where target == ignore_index (the pad id) count neither in loss, nll nor
/// n_tokens. epsilon = 0 gives plain summed cross-entropy. Throws loom::Error on mismatched
/// shapes, V < 2, or epsilon outside [0, 1).
LossSum label_smoothed_nll_loss(const torch::Tensor& logits, const torch::Tensor& target,
                                double epsilon, int64_t ignore_index = 0);

}  // namespace loom::train
