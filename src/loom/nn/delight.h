// DeLighT building blocks (Mehta et al., "DeLighT: Deep and Light-weight Transformer", ICLR 2021,
// arXiv 2008.00623; reference code sacmehta/delight, fairseq/delight_modules/*.py). Described in
// /work/shared/design/papers.md §1; where the authors' code differs from the paper these blocks
// follow the code, and each such place says so. Shared by the DeLighT translation model
// (models::NativeSeq2Seq, architecture "delight") and, later, a DeLighT language model.
// Layout is batch-first [B, T, d]; the fairseq code is time-first, which changes no maths.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "loom/nn/attention.h"
#include "loom/nn/layers.h"
#include "loom/nn/linear.h"

namespace loom::nn {

/// Largest GLT group count as the code computes it (papers.md §1.6): 2^ceil(log2(d_m / 32))
/// with d_m / 32 in integer division; 1 when d_m < 64. (The paper's ceil(d_m/32) differs for
/// d_m = 384 and 640.)
int64_t delight_max_groups(int64_t d_m);

/// Per-block depth N^b and width multiplier w_m^b of block-wise scaling (papers.md §1.8;
/// delight_transformer.py): N^b = int(linspace(N_min, N_max, B)) (truncating, numpy's float
/// arithmetic), w_m^b = round(linspace(w_m, w_m + (N_max - N_min) / N_min, B), 3). With
/// N_min == N_max this is uniform scaling (every block N_max, w_m) — the code's own uniform branch
/// crashes for the encoder, so loom uses the same formula. Throws loom::Error if a value is < 1
/// or N_min > N_max.
struct BlockScaling {
  std::vector<int64_t> depth;       ///< N^b, b = 0..B-1
  std::vector<double> width_mult;   ///< w_m^b
};
BlockScaling delight_block_scaling(int64_t n_min, int64_t n_max, int64_t blocks, double width_mult);

/// One group linear transformation layer of a DExTra unit.
struct GltSpec {
  int64_t in = 0;      ///< input width (after the input mixer)
  int64_t out = 0;     ///< output width
  int64_t groups = 1;  ///< g
};

/// Layer widths of a DExTra unit as dextra_unit.py's dextra_config computes them (papers.md
/// §1.6; the code, not the paper's §1.5): a dense in_features -> in_proj input layer, `depth`
/// GLT layers, and a dense (o_N + in_proj) -> out_features output layer.
/// mid = ceil(N/2); groups = [min(2^(i+1), max_groups) for i < mid] + mirror (middle entry not
/// repeated for odd N); widths = int(linspace(in_proj, width_mult·in_features, mid)) + mirror,
/// the last GLT output = out_features, every other output rounded up to a multiple of
/// max(g_l, g_{l+1}, 8); GLT l+1 input = o_l + in_proj (input mixer).
/// Code vs paper: the expansion starts from the projected in_proj = d_m/2 (the paper's text:
/// from d_m), GLT groups start at 2 (the dense in/out layers are the paper's g = 1 layers, so
/// there are N + 2 transform layers), and d_max = width_mult · in_features.
/// Throws loom::Error when a width does not split into its groups.
struct DExTraSpec {
  int64_t in_features = 0;   ///< unit input width (d_m; embedding unit: map_dim)
  int64_t in_proj = 0;       ///< dense input layer width (d_m / 2)
  int64_t out_features = 0;  ///< d_o (blocks: d_m / 2; embedding unit: d_m)
  std::vector<GltSpec> glt;  ///< the N GLT layers
  /// Input width of the dense output layer: o_N + in_proj.
  int64_t out_proj_in() const { return glt.empty() ? in_proj : glt.back().out + in_proj; }
  /// Parameters of the unit: dense layers and GLTs with biases and (shared-affine) LayerNorms.
  int64_t parameter_count() const;
};
DExTraSpec dextra_spec(int64_t in_features, int64_t in_proj, int64_t out_features, double width_mult,
                       int64_t depth, int64_t max_groups);

/// Variational ("recurrent") dropout: one keep-mask per sequence and channel shared over time,
/// x [B, T, C] -> x · mask[B, 1, C] / (1 - p) in training; identity otherwise (papers.md §1.9).
torch::Tensor recurrent_dropout(const torch::Tensor& x, double p, bool training);

/// Training-mode dropout x [...] -> x · mask / (1 - p), each element kept with probability
/// 1 - p, for the DExTra layers (papers.md §1.9, delight_dropout). The same distribution as
/// torch::dropout, but the mask comes from a counter-based generator (nn::delight_keep_flags:
/// splitmix64 of one seed drawn from torch's default CPU generator, so torch::manual_seed makes
/// it reproducible)
/// instead of one Bernoulli draw of libtorch's mt19937 per element, which was ~20% of a DeLighT
/// training step on CPU. float32 CPU only; other tensors use torch::dropout. p in [0, 1).
torch::Tensor delight_dropout(const torch::Tensor& x, double p);

/// Group linear transformation (papers.md §1.2–1.3, nn_functions.py GroupLinear): the input
/// [..., in] is split into g contiguous chunks, chunk i is multiplied by weight[i]
/// [in/g, out/g] (+ bias[i]) in one batched bmm, then — as the code does, not the paper's
/// equation — feature shuffle (g > 1: output channel j of group k moves to j·g + k), LayerNorm
/// per group over out/g features with one shared affine, activation, dropout.
/// Parameters: weight [g, in/g, out/g] (xavier_uniform_ on the 3-D tensor as the code: fan_in =
/// (in/g)(out/g), fan_out = out), bias [g, 1, out/g] (zero), layer_norm.{weight,bias} [out/g].
/// float32 CPU inputs with silu or relu run all of this as one node, nn::dextra_layer() (per-group
/// sgemm on strided slices, one fused pass after it); other inputs take the per-op form.
class GroupLinearImpl : public torch::nn::Module {
 public:
  /// Throws loom::Error if in or out is not divisible by groups.
  GroupLinearImpl(int64_t in, int64_t out, int64_t groups, bool shuffle, Activation act, double dropout,
                  double eps = 1e-5);
  /// x [..., in] -> [..., out].
  torch::Tensor forward(const torch::Tensor& x);
  /// forward(delight_mix(x0, y, groups)) for x0 [..., c0], y [..., o] with c0 + o = in, without
  /// building the mixed tensor on the fused path (nn::dextra_layer_mixed). -> [..., out].
  torch::Tensor forward_mixed(const torch::Tensor& x0, const torch::Tensor& y);
  int64_t in, out, groups;
  bool shuffle;
  Activation act;
  double dropout;
  torch::Tensor weight;  ///< [g, in/g, out/g]
  torch::Tensor bias;    ///< [g, 1, out/g]
  LayerNorm layer_norm{nullptr};  ///< over out/g, shared by the groups
};
TORCH_MODULE(GroupLinear);

/// Dense layer + LayerNorm + activation + dropout, the DExTra unit's input and output layers
/// (dextra_unit.py get_weight_layer with norm and activation). Parameters linear.{weight,bias}
/// [out, in]/[out] (xavier_uniform_, zero bias), layer_norm.{weight,bias} [out]. float32 CPU
/// inputs with silu or relu run as one node, nn::dextra_layer() with g = 1.
class DenseNormActImpl : public torch::nn::Module {
 public:
  DenseNormActImpl(int64_t in, int64_t out, Activation act, double dropout, double eps = 1e-5);
  /// x [..., in] -> [..., out].
  torch::Tensor forward(const torch::Tensor& x);
  /// forward(cat([x0, y], -1)) for x0 [..., c0], y [..., o] with c0 + o = in, without the cat
  /// on the fused path (nn::dextra_layer_mixed). -> [..., out].
  torch::Tensor forward_mixed(const torch::Tensor& x0, const torch::Tensor& y);
  Linear linear{nullptr};
  LayerNorm layer_norm{nullptr};
  Activation act;
  double dropout;
};
TORCH_MODULE(DenseNormAct);

/// The DeLighT transformation ("DExTra" unit, papers.md §1.4 and §1.6, dextra_unit.py):
///   X0 = input_layer(X)                       # dense in_features -> in_proj, LN, act, dropout
///   Z1 = X0;  Y_l = glt.<l>(Z_l);  Z_{l+1} = mix(X0, Y_l; g_{l+1}), g_{N+1} = 1
///   out = output_layer(Z_{N+1})               # dense (o_N + in_proj) -> out_features, LN, act, dropout
/// mix(): per next-layer group, the input slice first (cat([X0.view(g, c0/g), Y.view(g, o/g)],
/// -1)), a plain cat([X0, Y]) when g = 1.
class DExTraUnitImpl : public torch::nn::Module {
 public:
  DExTraUnitImpl(DExTraSpec spec, Activation act, double dropout, double eps = 1e-5);
  /// x [..., in_features] -> [..., out_features].
  torch::Tensor forward(const torch::Tensor& x);
  const DExTraSpec& spec() const { return spec_; }
  DenseNormAct input_layer{nullptr}, output_layer{nullptr};
  std::vector<GroupLinear> glt;

 private:
  DExTraSpec spec_;
};
TORCH_MODULE(DExTraUnit);

/// Input mixer of papers.md §1.4: x0 [..., c0], y [..., o] -> [..., c0 + o], per group of the
/// next layer (g): each group gets its c0/g slice of x0 followed by its o/g slice of y.
torch::Tensor delight_mix(const torch::Tensor& x0, const torch::Tensor& y, int64_t groups);

/// DeLighT single-head self-attention (single_head_attention.py, papers.md §1.7) on the DExTra
/// output y [B, T, d_o]: q, k, v = chunk(qkv_proj(y), 3) (chunk order q, k, v),
/// softmax(q·d_o^-1/2·kᵀ + mask) with attention dropout, out_proj d_o -> d_m. One head, so the
/// KV cache rows are [B, 1, T, d_o]. Parameters qkv_proj [3·d_o, d_o], out_proj [d_m, d_o]
/// (+ biases), xavier_uniform_.
class DelightSelfAttentionImpl : public torch::nn::Module {
 public:
  DelightSelfAttentionImpl(int64_t d_o, int64_t d_m, double attention_dropout);
  /// y [B, T, d_o]; mask additive broadcastable to [B, 1, T, past+T] or undefined; with a cache
  /// the new keys/values are appended first (capacity_hint as KVCache::append). -> [B, T, d_m].
  torch::Tensor forward(const torch::Tensor& y, const torch::Tensor& mask, KVCache* cache = nullptr,
                        int64_t capacity_hint = 0);
  int64_t d_o, d_m;
  double dropout;
  Linear qkv_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(DelightSelfAttention);

/// DeLighT decoder cross-attention, without a DExTra unit (papers.md §1.7 item "Decoder
/// block", §1.13.7): q = q_proj(x) (d_m -> d_o), [k|v] = kv_proj(memory) (d_m -> 2·d_o), one
/// head, out_proj d_o -> d_m. Parameters q_proj [d_o, d_m], kv_proj [2·d_o, d_m], out_proj
/// [d_m, d_o] (+ biases).
class DelightCrossAttentionImpl : public torch::nn::Module {
 public:
  DelightCrossAttentionImpl(int64_t d_m, int64_t d_o, double attention_dropout);
  /// memory [B, S, d_m] -> {k, v}, each [B, 1, S, d_o] (compute once per source).
  std::pair<torch::Tensor, torch::Tensor> memory_kv(const torch::Tensor& memory);
  /// x [B, T, d_m] over k, v [B, 1, S, d_o] with the additive key mask [B, 1, 1, S] (or
  /// undefined) -> [B, T, d_m]. kv_rows [B] int64 (optional): row b reads k, v and mask row
  /// kv_rows[b] (nn::attention()).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& mask,
                        const torch::Tensor& kv_rows = {});
  int64_t d_m, d_o;
  double dropout;
  Linear q_proj{nullptr}, kv_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(DelightCrossAttention);

}  // namespace loom::nn
