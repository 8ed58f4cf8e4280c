// Multi-head attention (Bart/Marian/M2M100 layout) with a self-attention KV cache and
// cross-attention keys/values that are computed once per source.
#pragma once

#include <torch/torch.h>

#include "loom/nn/linear.h"
#include "loom/nn/packed_linear.h"

namespace loom::nn {

/// Additive attention mask value for masked keys: the lowest float32, as transformers uses
/// torch.finfo(float32).min (a fully masked row then becomes uniform instead of NaN).
float masked_score();

/// Converts a boolean keep-mask [B, S] (true = attend) into the additive mask [B, 1, 1, S]
/// (0 = keep, masked_score() = drop) that attention() adds to the scores.
torch::Tensor additive_key_mask(const torch::Tensor& keep);

/// Additive causal mask [T, past + T] for T new queries after `past` cached positions: query i
/// sees keys j <= past + i.
torch::Tensor additive_causal_mask(int64_t t, int64_t past);

/// softmax(q·kᵀ + mask)·v. q [B, H, T, d_head] (already scaled), k and v [B, H, S, d_head],
/// mask additive, broadcastable to [B, H, T, S], or undefined. Returns [B, H, T, d_head].
/// kv_rows (optional, [B] int64): query row b attends to k[kv_rows[b]], v[kv_rows[b]], and the
/// mask's first dim then indexes those kv rows too — k, v [B_kv, H, S, d_head], mask [B_kv|1, 1,
/// 1|T, S] — so the beams of a sentence share one copy of its source keys/values. For T = 1
/// (incremental decoding) one fused kernel per (row, head) computes the scores, the softmax and
/// the weighted sum without [B, H, S, d_head] temporaries.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, const torch::Tensor& kv_rows = {});

/// Training-capable attention: softmax(q·kᵀ + mask), dropout with probability `dropout_p` on the
/// attention probabilities when `training` (inverted dropout, torch::dropout), then ·v. Built
/// from out-of-place ops so autograd works; without dropout and gradients it calls attention().
/// Shapes as attention(): q [B, H, T, d_head] (already scaled), k and v [B, H, S, d_head], mask
/// additive broadcastable to [B, H, T, S] or undefined; returns [B, H, T, d_head]. Source:
/// fairseq MultiheadAttention (attn_probs = dropout(softmax(attn_weights))).
/// kv_rows as in attention().
torch::Tensor attention_with_dropout(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const torch::Tensor& mask, double dropout_p, bool training,
                                     const torch::Tensor& kv_rows = {});

/// Self-attention keys and values of the positions decoded so far, in preallocated buffers that
/// grow geometrically (no torch::cat per step). Rows = batch entries (sentences or beams).
class KVCache {
 public:
  /// Appends k_new, v_new [B, H, T_new, d_head]; the first append fixes B, H, d_head and
  /// allocates room for max(capacity_hint, T_new) positions.
  void append(const torch::Tensor& k_new, const torch::Tensor& v_new, int64_t capacity_hint);
  /// Cached keys / values [B, H, length, d_head] (views into the buffers).
  torch::Tensor keys() const;
  torch::Tensor values() const;
  int64_t length() const { return length_; }
  bool empty() const { return length_ == 0; }
  /// New row r = old row index[r] (index [B'] int64; B' may differ from B: beams reordered,
  /// finished rows dropped). Gathers into a second pair of buffers kept from the previous
  /// reorder and swaps, so a beam search step allocates nothing.
  void reorder(const torch::Tensor& index);
  /// Takes `other`'s spare pair of buffers (the ones its last reorder() left free) when this
  /// cache has none, so caches of equal shape reordered one after another (the decoder layers
  /// of a beam search) share one spare pair instead of holding one each. Values are unchanged.
  void take_spare(KVCache& other);

 private:
  torch::Tensor k_, v_;              // [B, H, capacity, d_head] (rows 0..B-1 of k_base_, v_base_)
  torch::Tensor k_base_, v_base_;    // the buffers k_, v_ live in [B0, H, capacity, d_head], B0 >= B
  torch::Tensor k_spare_, v_spare_;  // the other pair (reorder's destination), or undefined
  int64_t length_ = 0;
};

/// Multi-head attention with q_proj/k_proj/v_proj/out_proj (weight [d_model, d_model] and bias
/// [d_model] each), queries scaled by d_head^-0.5 after q_proj, as transformers' BartAttention
/// (Marian, M2M100). Call fuse() once after loading weights: it builds the concatenated QKV
/// weight [3d, d] so that each call runs one GEMM instead of three (the parameters stay the
/// source); the fused KV is a view of its last 2d rows and cross_attention reads q_proj's
/// numbers from its first d rows, so q/k/v_proj themselves are not read while fused.
class MultiHeadAttentionImpl : public torch::nn::Module {
 public:
  MultiHeadAttentionImpl(int64_t d_model, int64_t n_heads);

  /// Rebuilds the fused projection weights from the current parameters.
  void fuse();
  /// Packs the fused QKV / KV projections, q_proj and out_proj as PackedLinear `type`
  /// (low-precision activations) for inference: self_attention (fused), memory_kv and
  /// cross_attention then use them, and the fused float32 weights are dropped (memory).
  /// float32 drops the packed copies and rebuilds the fused weights if packing had dropped them.
  /// fuse() and unfuse() drop the packed copies too.
  void pack(WeightType type);
  /// Drops the fused weights, so every path reads the parameters themselves (call before the
  /// parameters change, e.g. when training starts).
  void unfuse();

  /// Attention of `query` [B, T, d_model] over `memory` [B, S, d_model] without a cache (pass
  /// the same tensor for self-attention: self_attention(), else memory_kv() + cross_attention()),
  /// mask additive broadcastable to [B, 1, T, S] or undefined. Returns [B, T, d_model].
  /// Every path is autograd-capable (call unfuse() before training) and applies the attention
  /// dropout `dropout` to the attention probabilities when is_training() (fairseq behaviour).
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& memory, const torch::Tensor& mask);

  /// Self-attention. x [B, T, d_model]; mask additive [B|1, 1, T|1, past+T] or undefined; with a
  /// cache, the new keys/values are appended and attention covers past + T positions (the caller
  /// passes a causal mask when T > 1). Returns [B, T, d_model].
  torch::Tensor self_attention(const torch::Tensor& x, const torch::Tensor& mask, KVCache* cache,
                               int64_t capacity_hint = 0);

  /// Keys and values of a memory (encoder output) [B, S, d_model] -> {k, v}, each
  /// [B, H, S, d_head]; compute once per source and pass to cross_attention every step.
  std::pair<torch::Tensor, torch::Tensor> memory_kv(const torch::Tensor& memory);

  /// Cross-attention of x [B, T, d_model] to precomputed k, v [B, H, S, d_head] with the
  /// additive key mask [B, 1, 1, S] (or undefined). Returns [B, T, d_model]. With kv_rows [B]
  /// int64, row b reads k, v and mask row kv_rows[b] (k, v [B_kv, H, S, d_head]; see attention()).
  torch::Tensor cross_attention(const torch::Tensor& x, const torch::Tensor& k,
                                const torch::Tensor& v, const torch::Tensor& mask,
                                const torch::Tensor& kv_rows = {});

  int64_t d_model, n_heads, d_head;
  double scaling;  ///< d_head^-0.5
  double dropout = 0.0;  ///< attention-probability dropout, used by forward() in training mode
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};

 private:
  torch::Tensor split_heads(const torch::Tensor& x) const;  // [B, T, d] -> [B, H, T, d_head]
  torch::Tensor merge_heads(const torch::Tensor& x) const;  // [B, H, T, d_head] -> [B, T, d]
  torch::Tensor qkv_weight_, qkv_bias_;  // [3d, d], [3d]
  torch::Tensor kv_weight_, kv_bias_;    // [2d, d], [2d]
  PackedLinear qkv_packed_, kv_packed_;  // pack(): [3d, d], [2d, d] in reduced precision
  PackedLinear q_packed_, out_packed_;   // pack(): [d, d] each
};
TORCH_MODULE(MultiHeadAttention);

}  // namespace loom::nn
