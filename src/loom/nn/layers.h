// Small building blocks of transformer layers: LayerNorm, activations (by their Hugging Face
// names) and the position-wise feed-forward network.
#pragma once

#include <string>

#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/nn/linear.h"

namespace loom::nn {

/// LayerNorm over the last dimension with parameters "weight" and "bias" [d] (torch.nn.LayerNorm
/// naming, default eps 1e-5 as in Marian/M2M100). x [..., d] -> [..., d].
class LayerNormImpl : public torch::nn::Module {
 public:
  explicit LayerNormImpl(int64_t d, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor weight;  ///< [d]
  torch::Tensor bias;    ///< [d]
  double eps;
};
TORCH_MODULE(LayerNorm);

/// Activation functions under the names of transformers' ACT2FN.
enum class Activation {
  kRelu,      ///< "relu"
  kGelu,      ///< "gelu": exact erf GELU
  kGeluTanh,  ///< "gelu_new", "gelu_pytorch_tanh", "gelu_fast": tanh approximation
  kSilu,      ///< "swish", "silu": x·sigmoid(x)
  kTanh,      ///< "tanh"
  kSigmoid,   ///< "sigmoid"
};

/// Parses an ACT2FN name; throws loom::Error at `where` (e.g. config.json, field
/// activation_function) for names loom does not implement.
Activation parse_activation(const std::string& name, const Where& where);

/// Applies `act` to x (any shape). May reuse x's storage: the caller must not need x afterwards.
/// When x takes part in autograd (grad mode on and x.requires_grad()) it runs out of place.
torch::Tensor activate(torch::Tensor x, Activation act);

/// Position-wise feed-forward network fc2(act(fc1(x))) with parameters fc1.{weight,bias}
/// [ffn_dim, d_model]/[ffn_dim] and fc2.{weight,bias} [d_model, ffn_dim]/[d_model] (Bart/Marian/
/// M2M100 naming). x [..., d_model] -> [..., d_model]. `activation_dropout` (fairseq's
/// activation_dropout, default 0) drops act(fc1(x)) in training mode.
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t d_model, int64_t ffn_dim, Activation act);
  torch::Tensor forward(const torch::Tensor& x) const;
  Linear fc1{nullptr};
  Linear fc2{nullptr};
  Activation act;
  double activation_dropout = 0.0;
};
TORCH_MODULE(FeedForward);

}  // namespace loom::nn
