// Sinusoidal position tables of Marian and fairseq/M2M100 (static, never stored in checkpoints).
#pragma once

#include <torch/torch.h>

namespace loom::nn {

/// Marian's table (transformers MarianSinusoidalPositionalEmbedding): row p (p = 0-based position)
/// = [sin(p·w_i) for i < ceil(d/2)] ++ [cos(p·w_i) for i < floor(d/2)], w_i = 10000^(-2i/d),
/// computed in float64 then cast. Returns [n_positions, dim] float32.
torch::Tensor marian_position_table(int64_t n_positions, int64_t dim);

/// fairseq/M2M100 table (transformers M2M100SinusoidalPositionalEmbedding.get_embedding): row p =
/// [sin(p·f_i)] ++ [cos(p·f_i)] for i < d/2, f_i = exp(-i·ln(10000)/(d/2-1)), a zero column
/// appended for odd d, row padding_idx all zeros. Computed with float32 arithmetic exactly as
/// transformers does, so the table is bit-identical. Returns [n_positions, dim] float32.
torch::Tensor fairseq_position_table(int64_t n_positions, int64_t dim, int64_t padding_idx);

/// M2M100 position ids (create_position_ids_from_input_ids): padding_idx + (cumsum(ids != pad)
/// along T + past_length) for non-pad tokens, padding_idx for pads. ids [B, T] int64 -> [B, T].
torch::Tensor fairseq_position_ids(const torch::Tensor& ids, int64_t padding_idx, int64_t past_length);

}  // namespace loom::nn
