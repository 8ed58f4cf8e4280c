#include "loom/nn/packed_modules.h"

#include "loom/core/error.h"
#include "loom/nn/attention.h"
#include "loom/nn/linear.h"

namespace loom::nn {
namespace {

const LinearImpl& linear_child(torch::nn::Module& block, const char* name) {
  for (const auto& item : block.named_children()) {
    if (item.key() != name) continue;
    if (const auto* l = dynamic_cast<const LinearImpl*>(item.value().get())) return *l;
  }
  fail(Where{"", 0, name}, "PackedFfn: block '{}' has no Linear child of this name", block.name());
}

}  // namespace

void PackedFfn::pack(torch::nn::Module& block, WeightType type) {
  torch::NoGradGuard no_grad;
  fc1_ = fc2_ = PackedLinear();
  if (type == WeightType::kFloat32) return;
  const LinearImpl& fc1 = linear_child(block, "fc1");
  const LinearImpl& fc2 = linear_child(block, "fc2");
  fc1_ = PackedLinear(fc1.weight, fc1.bias, type, translation_activations(type));
  fc2_ = PackedLinear(fc2.weight, fc2.bias, type, translation_activations(type));
}

torch::Tensor PackedFfn::forward(const torch::Tensor& x, Activation act) const {
  return fc2_.forward(activate(fc1_.forward(x), act));  // [..., F] -> [..., d]
}

void pack_attention(torch::nn::Module& root, WeightType type) {
  torch::NoGradGuard no_grad;
  for (const auto& m : root.modules(/*include_self=*/true)) {
    if (auto* a = dynamic_cast<MultiHeadAttentionImpl*>(m.get())) a->pack(type);
  }
}

}  // namespace loom::nn
