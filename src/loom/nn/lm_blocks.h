// Building blocks of decoder-only language models (LLaMA/OpenELM style): RMSNorm, rotary
// position embeddings, gated feed-forward networks (SwiGLU/GeGLU), grouped-query attention with
// absolute-position masks. Unlike the inference-only seq2seq layers (layers.h), every parameter
// here requires grad, so the same modules serve training and streaming inference.
// Sources: OpenELM (papers.md §2.3, apple/corenet general_gpt.py, rms_norm.py), RoFormer (RoPE).
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/nn/linear.h"  // bmm_nt, bmm_nn, dense

namespace loom::nn {

/// RMSNorm over the last dimension: y = x / sqrt(mean(x²) + eps) · weight, computed in float32
/// (float64 for double inputs) and cast back to x's dtype (corenet rms_norm.py). Parameter
/// "weight" [d], initialised to 1. x [..., d] -> [..., d].
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t d, double eps = 1e-6);
  /// x [..., d] -> [..., d] in x's dtype.
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor weight;  ///< [d]
  double eps;            ///< added to mean(x²)
};
TORCH_MODULE(RMSNorm);

/// Rotary position embedding (RoFormer; the rotate-half layout of GPT-NeoX/LLaMA/corenet) with
/// base `base` (10000 in OpenELM): the pair (x_i, x_{i+d/2}) of head dimension i < d/2 at absolute
/// position p is rotated by the angle p·base^(-2i/d). x [B, H, T, d_head] (d_head even); token t
/// sits at position `offset` + t. Angles are computed in float64, so positions far beyond the
/// training length (1M tokens) keep full precision. Returns [B, H, T, d_head] in x's dtype.
/// Throws loom::Error when d_head is odd.
torch::Tensor apply_rope(const torch::Tensor& x, int64_t offset, double base = 10000.0);

/// The activation of a gated FFN.
enum class GatedActivation {
  kSwiGLU,  ///< "swiglu": SiLU(x W_a) ⊙ (x W_b) (OpenELM, LLaMA)
  kGeGLU,   ///< "geglu": GELU(x W_a) ⊙ (x W_b), exact erf GELU (Shazeer 2020)
};

/// Parses "swiglu" / "geglu"; throws loom::Error at `where` otherwise.
GatedActivation parse_gated_activation(const std::string& name, const Where& where);

/// Gated feed-forward network without biases, as corenet's GLU FFN: h = x·proj_1ᵀ [.., 2·ffn_dim]
/// is split in halves (a, b); out = (act(a) ⊙ b)·proj_2ᵀ. Parameters "proj_1"
/// [2·ffn_dim, d_model] and "proj_2" [d_model, ffn_dim]. x [..., d_model] -> [..., d_model].
class GatedFeedForwardImpl : public torch::nn::Module {
 public:
  /// Weights ~ N(0, fan_in^-1/2) (DecoderLM re-initialises them as OpenELM does).
  GatedFeedForwardImpl(int64_t d_model, int64_t ffn_dim, GatedActivation act);
  /// x [..., d_model] -> [..., d_model].
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor proj_1;  ///< [2·ffn_dim, d_model]: rows [0, ffn_dim) activated, the rest the gate
  torch::Tensor proj_2;  ///< [d_model, ffn_dim]
  int64_t ffn_dim;       ///< hidden width
  GatedActivation act;   ///< SwiGLU or GeGLU
};
TORCH_MODULE(GatedFeedForward);

/// Additive mask [B, 1, T, S] for T queries at absolute positions q_pos0 .. q_pos0+T-1 over S
/// keys at absolute positions k_pos [S] (int64): key j is visible to query i when
/// k_pos[j] <= q_pos(i) (causal), k_pos[j] >= q_pos(i) - window when window > 0 (sliding window:
/// the query sees itself and at most `window` earlier tokens), and k_pos[j] >= doc_start[b]
/// (document boundary of batch row b; doc_start [B] int64). Masked entries hold -1e9 (finite, so
/// float64 gradient checks stay finite); the query's own key is always visible when
/// doc_start[b] <= q_pos(i), so no row is fully masked. dtype: `dtype`.
torch::Tensor position_mask(int64_t q_pos0, int64_t t, const torch::Tensor& k_pos,
                            const torch::Tensor& doc_start, int64_t window, torch::ScalarType dtype);

/// Grouped-query scaled dot-product attention: softmax(scale · q kᵀ + mask) v, where query head h
/// reads kv head h / (H_q / H_kv) (corenet's repeat_interleave order). q [B, H_q, T, d],
/// k [B, H_kv, S, d], v [B, H_kv, S, d_v]; scale a double or a per-query-head tensor [H_q]
/// (pass an undefined tensor to use `scale`); mask additive, broadcastable to [B, 1, T, S].
/// Returns [B, H_q, T, d_v]. H_q must be a multiple of H_kv.
torch::Tensor gqa_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask, double scale,
                            const torch::Tensor& head_scale = {});

/// [B, H_q, T, d] -> [B, H_kv, r·T, d] with r = H_q / H_kv: the r query heads that share kv head
/// j are stacked along the time axis (heads j·r .. j·r+r-1 in order). Inverse: ungroup_heads.
torch::Tensor group_heads(const torch::Tensor& q, int64_t n_kv);

/// Inverse of group_heads: [B, H_kv, r·T, d] -> [B, H_kv·r, T, d].
torch::Tensor ungroup_heads(const torch::Tensor& x, int64_t n_q);

}  // namespace loom::nn
