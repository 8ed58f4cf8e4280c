#include "loom/nn/positions.h"

#include <cmath>

namespace loom::nn {

torch::Tensor marian_position_table(int64_t n_positions, int64_t dim) {
  torch::Tensor table = torch::empty({n_positions, dim}, torch::kFloat64);  // [n, d]
  auto t = table.accessor<double, 2>();
  const int64_t sentinel = (dim + 1) / 2;  // number of sin columns
  for (int64_t p = 0; p < n_positions; ++p) {
    for (int64_t j = 0; j < dim; ++j) {
      // position_enc[p, j] = p / 10000^(2·(j//2)/dim); sin of the even columns, cos of the odd ones
      const double angle = static_cast<double>(p) / std::pow(10000.0, 2.0 * static_cast<double>(j / 2) / static_cast<double>(dim));
      if (j % 2 == 0) t[p][j / 2] = std::sin(angle);
      else t[p][sentinel + j / 2] = std::cos(angle);
    }
  }
  return table.to(torch::kFloat32);
}

torch::Tensor fairseq_position_table(int64_t n_positions, int64_t dim, int64_t padding_idx) {
  const int64_t half = dim / 2;
  const double step = std::log(10000.0) / static_cast<double>(half - 1);
  torch::Tensor freq = torch::exp(torch::arange(half, torch::kInt64).to(torch::kFloat32) * -step);  // [half]
  torch::Tensor angle = torch::arange(n_positions, torch::kInt64).to(torch::kFloat32).unsqueeze(1) *
                        freq.unsqueeze(0);                                       // [n, half]
  torch::Tensor table = torch::cat({torch::sin(angle), torch::cos(angle)}, 1);  // [n, 2·half]
  if (dim % 2 == 1) table = torch::cat({table, torch::zeros({n_positions, 1})}, 1);  // [n, d]
  if (padding_idx >= 0 && padding_idx < n_positions) table[padding_idx].zero_();
  return table.contiguous();
}

torch::Tensor fairseq_position_ids(const torch::Tensor& ids, int64_t padding_idx, int64_t past_length) {
  torch::Tensor mask = ids.ne(padding_idx).to(torch::kInt64);                      // [B, T]
  return (mask.cumsum(1) + past_length) * mask + padding_idx;                      // [B, T]
}

}  // namespace loom::nn
