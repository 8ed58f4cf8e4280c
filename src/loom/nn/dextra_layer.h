// One DExTra transform layer (DeLighT, Mehta et al. 2021, papers.md §1.2–1.6) — group linear
// transformation or dense layer, bias, feature shuffle, per-group LayerNorm, activation, dropout —
// as one autograd node for float32 CPU tensors: the group products are oneDNN sgemm calls on
// strided slices (no group transposes, no shuffle copies), and everything after the product is
// one pass over each row forward and one backward (AVX2 where the CPU has it). Used by
// nn::GroupLinear and nn::DenseNormAct, which keep their per-op formulation for everything else.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "loom/nn/layers.h"

namespace loom::nn {

/// Seed of one DeLighT dropout mask: one random64() of torch's default CPU generator (so
/// torch::manual_seed makes masks reproducible).
uint64_t delight_dropout_seed();

/// Drop threshold of probability p in [0, 1): min(p·2^32, 2^32 - 1); element e of a mask is
/// dropped when its 32-bit uniform is below it.
inline uint32_t delight_drop_threshold(double p) {
  return static_cast<uint32_t>(p * 4294967296.0 < 4294967295.0 ? p * 4294967296.0 : 4294967295.0);
}

/// Keep flags of a DeLighT dropout mask for elements e0 .. e0+n-1 (flat index of the
/// row-major tensor): the uniform of element e is the low (e even) or high (e odd) 32 bits of
/// core::splitmix64(seed + e/2); keep[i] = 1 when it is >= threshold, else 0.
void delight_keep_flags(uint64_t seed, uint32_t threshold, int64_t e0, int64_t n, uint8_t* keep);

/// True when dextra_layer() runs these operands: float32 CPU x and weight, activation silu
/// ("swish") or relu, dropout p in [0, 1), and oneDNN's sgemm available (not LOOM_GEMM=torch).
bool dextra_layer_supported(const torch::Tensor& x, const torch::Tensor& weight, Activation act, double dropout);

/// Lets dextra_layer() and delight_keep_flags() use their AVX2 + FMA kernels when the CPU has them
/// (the default, true) or forces the portable ones (false), process-wide; for tests and
/// benchmarks of both paths.
void dextra_layer_allow_avx2(bool allow);

/// out = dropout(act(LN_g(shuffle(x·W + b)))) for x [..., in] -> [..., out], differentiable in
/// x, weight, bias, ln_weight and ln_bias (first order).
///  - weight [g, in/g, out/g] (GLT, nn::GroupLinear: group k multiplies x[..., k·in/g : (k+1)·in/g])
///    with bias [g, 1, out/g]; or weight [out, in] (dense, nn::Linear layout, g must be 1) with
///    bias [out].
///  - shuffle (g > 1): output channel j of group k moves to position j·g + k (dextra_unit.py).
///  - LN_g: LayerNorm over each of the g consecutive chunks of out/g features with the shared
///    affine ln_weight, ln_bias [out/g] and epsilon eps (biased variance, as torch::layer_norm).
///  - dropout p in [0, 1): the mask of nn::delight_dropout (one seed from torch's default CPU
///    generator, counter-based per element of the [M, out] output), scale 1/(1-p); 0 = none.
/// Equal to the per-op formulation within float32 rounding. Throws loom::Error when
/// dextra_layer_supported() is false or the shapes disagree.
torch::Tensor dextra_layer(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                           const torch::Tensor& ln_weight, const torch::Tensor& ln_bias, int64_t groups,
                           bool shuffle, Activation act, double eps, double dropout);

/// dextra_layer() on the DExTra input mixer's output (papers.md §1.4) without building it:
/// x0 [..., c0] (the unit's projected input), y [..., o] (the previous layer's output, same leading
/// dims), c0 and o divisible by g; group k reads [x0[..., k·c0/g : (k+1)·c0/g], y[..., k·o/g :
/// (k+1)·o/g]] (dense, g = 1: [x0, y]), so this equals dextra_layer(delight_mix(x0, y, g), ...)
/// with weight rows (GLT) or columns (dense) in that order. An undefined y means no y. Returns
/// [..., out] and gradients for x0 and y separately. Throws loom::Error as dextra_layer().
torch::Tensor dextra_layer_mixed(const torch::Tensor& x0, const torch::Tensor& y, const torch::Tensor& weight,
                                 const torch::Tensor& bias, const torch::Tensor& ln_weight, const torch::Tensor& ln_bias,
                                 int64_t groups, bool shuffle, Activation act, double eps, double dropout);

}  // namespace loom::nn
