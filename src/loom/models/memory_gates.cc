#include "loom/models/memory_gates.h"

#include <fmt/format.h>

namespace loom::models {

std::string format_memory_gates(const DecoderLMImpl& model) {
  std::string out = "memory gate g = sigmoid(beta) per layer and query head (A = g*A_mem + (1 - g)*A_dot)\n";
  const std::vector<torch::Tensor> gates = model.memory_gates();
  for (size_t i = 0; i < gates.size(); ++i) {
    out += fmt::format("layer {} {}:", i, nn::attention_kind_name(model.config().kind(static_cast<int64_t>(i))));
    if (!gates[i].defined()) {
      out += " -\n";
      continue;
    }
    torch::Tensor g = gates[i].to(torch::kFloat64).contiguous();  // [n_q]
    for (int64_t h = 0; h < g.numel(); ++h) out += fmt::format(" {:.4f}", g.data_ptr<double>()[h]);
    out += "\n";
  }
  return out;
}

}  // namespace loom::models
