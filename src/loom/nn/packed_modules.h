// Reduced-precision inference copies of the feed-forward and attention projections of the
// encoder-decoder blocks (translation `--compute-type`): nn::PackedLinear with low-precision
// activations, built from the loaded float32 parameters, which stay the source of truth.
#pragma once

#include <torch/torch.h>

#include "loom/nn/layers.h"
#include "loom/nn/packed_linear.h"

namespace loom::nn {

/// The feed-forward sublayer fc2(act(fc1(x))) with packed fc1 / fc2 (inference, no dropout).
class PackedFfn {
 public:
  /// Packs the children "fc1" and "fc2" (nn::Linear, weight [F, d] / [d, F] + biases) of `block`
  /// as `type` with the activations translation_activations(type) picks for this CPU. float32
  /// drops the packed copies (defined() false).
  /// Throws loom::Error when `block` has no Linear children of those names.
  void pack(torch::nn::Module& block, WeightType type);
  bool defined() const { return fc1_.defined(); }
  /// x [..., d] -> [..., d].
  torch::Tensor forward(const torch::Tensor& x, Activation act) const;

 private:
  PackedLinear fc1_, fc2_;
};

/// Calls MultiHeadAttentionImpl::pack(type) on every MultiHeadAttention below `root` (fused
/// QKV / KV and q_proj / out_proj in `type`; float32 restores the float32 path).
void pack_attention(torch::nn::Module& root, WeightType type);

}  // namespace loom::nn
