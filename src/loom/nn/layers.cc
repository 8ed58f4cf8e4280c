#include "loom/nn/layers.h"

namespace loom::nn {

LayerNormImpl::LayerNormImpl(int64_t d, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({d}), false);
  bias = register_parameter("bias", torch::zeros({d}), false);
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) const {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);  // [..., d]
}

Activation parse_activation(const std::string& name, const Where& where) {
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::kGeluTanh;
  if (name == "swish" || name == "silu") return Activation::kSilu;
  if (name == "tanh") return Activation::kTanh;
  if (name == "sigmoid") return Activation::kSigmoid;
  fail(where, "unsupported activation function \"{}\" (supported: relu, gelu, gelu_new, "
              "gelu_pytorch_tanh, gelu_fast, swish, silu, tanh, sigmoid)", name);
}

torch::Tensor activate(torch::Tensor x, Activation act) {
  if (torch::GradMode::is_enabled() && x.requires_grad()) {
    switch (act) {
      case Activation::kRelu: return torch::relu(x);
      case Activation::kGelu: return at::gelu(x, "none");
      case Activation::kGeluTanh: return at::gelu(x, "tanh");
      case Activation::kSilu: return at::silu(x);
      case Activation::kTanh: return torch::tanh(x);
      case Activation::kSigmoid: return torch::sigmoid(x);
    }
  }
  switch (act) {
    case Activation::kRelu: return x.relu_();
    case Activation::kGelu: return at::gelu(x, "none");
    case Activation::kGeluTanh: return at::gelu(x, "tanh");
    case Activation::kSilu: return at::silu_(x);
    case Activation::kTanh: return x.tanh_();
    case Activation::kSigmoid: return x.sigmoid_();
  }
  return x;
}

FeedForwardImpl::FeedForwardImpl(int64_t d_model, int64_t ffn_dim, Activation act_) : act(act_) {
  fc1 = register_module("fc1", Linear(d_model, ffn_dim));
  fc2 = register_module("fc2", Linear(ffn_dim, d_model));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) const {
  torch::Tensor h = fc1->forward(x);  // [..., ffn_dim]
  h = activate(std::move(h), act);    // [..., ffn_dim]
  if (activation_dropout > 0.0 && is_training()) h = torch::dropout(h, activation_dropout, true);  // [..., ffn_dim]
  return fc2->forward(h);             // [..., d_model]
}

}  // namespace loom::nn
