// Symmetric int8 quantization of rows, shared by PackedLinear's int8 formats and
// Int8PanelWeight. Kept out of packed_linear.h / qgemm.h so that their users do not depend on it.
#pragma once

#include <utility>

#include <torch/torch.h>

namespace loom::nn {

/// Quantizes each row of w [R, C] (float32) symmetrically: s_r = max_c |w[r, c]| / 127 and
/// q[r, c] = round(w[r, c] / s_r) clamped to [-127, 127], so w ≈ q · s — llama.cpp's Q8_0 rule with
/// the row as the block. An all-zero row gets q = 0 and s_r = 0. Returns {q [R, C] int8, s [R]
/// float32}. Non-finite values are not checked here (the callers that must, do).
std::pair<torch::Tensor, torch::Tensor> quantize_int8_rows(const torch::Tensor& w);

}  // namespace loom::nn
