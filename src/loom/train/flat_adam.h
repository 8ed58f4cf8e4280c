// loom::train::FlatAdam — Adam / AdamW over a whole parameter list in one fused pass: gradient
// scaling, global-norm clipping and the Adam update run as one parallel loop over all tensors
// (AVX2 for float32), instead of ~10 libtorch operators per parameter tensor. It computes the
// updates of torch::optim::Adam / AdamW 1.13 (Kingma & Ba 2015; Loshchilov & Hutter 2019) after
// grad *= scale and torch::nn::utils::clip_grad_norm_, within float rounding, and saves / loads
// its state in torch::optim::Adam / AdamW's archive format (checkpoints are interchangeable).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace loom::train {

/// Hyper-parameters of FlatAdam (the names and defaults of torch::optim::AdamOptions).
struct FlatAdamOptions {
  double lr = 1e-3;            ///< learning rate (per update; FlatAdam::step can override it)
  double beta1 = 0.9;          ///< first-moment decay, in [0, 1)
  double beta2 = 0.999;        ///< second-moment decay, in [0, 1)
  double eps = 1e-8;           ///< added to sqrt(bias-corrected second moment), >= 0
  double weight_decay = 0.0;   ///< >= 0; Adam: added to the gradient (L2); AdamW: decoupled
  bool decoupled = false;      ///< true = AdamW (p *= 1 - lr * weight_decay before the update)
};

/// Multi-tensor Adam / AdamW. Parameters must be dense CPU float32 or float64 tensors; each
/// keeps its own moments (same shape and dtype) and step count, and a parameter whose gradient
/// is undefined at a step is skipped (its step count does not advance), as in torch::optim.
class FlatAdam {
 public:
  /// Takes the parameters (shared tensors, updated in place). Throws loom::Error for an empty
  /// list, a parameter that is not a dense CPU float32/float64 tensor, or out-of-range options.
  FlatAdam(std::vector<torch::Tensor> params, FlatAdamOptions options);

  /// One update with learning rate `lr`: g = grad * grad_scale; when clip_norm > 0 the
  /// gradients are then scaled by min(1, clip_norm / (||g||_2 + 1e-6)) with ||g||_2 the norm
  /// over all gradients together (as clip_grad_norm_); then the Adam/AdamW update. Gradients
  /// are read, not modified (non-contiguous ones are copied). Returns ||g||_2 before clipping
  /// (0 when clip_norm is 0: not computed). Runs under NoGradGuard.
  double step(double lr, double grad_scale = 1.0, double clip_norm = 0.0);

  /// Writes the state as torch::optim::Adam (decoupled = false) or AdamW::save would.
  void save(torch::serialize::OutputArchive& archive) const;

  /// Reads a state written by save() or by torch::optim::Adam / AdamW::save for the same
  /// parameter list (same count and shapes). Throws c10::Error (torch's loader) or loom::Error
  /// on a mismatch.
  void load(torch::serialize::InputArchive& archive);

  /// The parameters, in the order given.
  const std::vector<torch::Tensor>& params() const { return params_; }

  /// Step count of parameter i (0 before its first update).
  int64_t step_count(size_t i) const { return steps_.at(i); }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;  // per parameter, zeros until the first step
  std::vector<int64_t> steps_;
  FlatAdamOptions opt_;
};

}  // namespace loom::train
