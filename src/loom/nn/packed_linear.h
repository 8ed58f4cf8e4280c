// Inference-only linear layers with float32, bfloat16 or int8 weights: weight-only quantization
// (activations and accumulation stay float32) or, with the Activations modes below, quantized
// activations too. Used by the decoder-only LMs
// (models/causal_lm) for `--compute-type`; a translation model can hold its projections as
// PackedLinear the same way (construct from the float weight, call forward).
//
// int8 (weight-only) is symmetric per output channel (row n of W): scale_n = max_k |W[n,k]| / 127,
// q[n,k] = round(W[n,k] / scale_n) in [-127, 127], W ≈ q · scale_n — the weight format of
// LLM.int8()'s vector-wise quantization (Dettmers et al. 2022, §3.1) without its outlier part, and
// of llama.cpp's Q8_0 with one block per row instead of 32-element blocks.
//
// Kernels: for few rows (M <= kGemvMaxRows, token-by-token decoding) fused dequantize-and-dot
// kernels (nn/gemv.h: AVX-512, AVX2+FMA or portable C++, chosen at run time) read the stored
// weights directly (float32 weights too, rather than oneDNN's sgemm), so bf16 / int8 generation
// moves 2× / 4× fewer weight bytes than float32. For more rows
// (prompt processing) the weights are dequantized to float32 in row tiles that stay in cache and
// multiplied with oneDNN's sgemm (nn::linear), so prefill runs at float32 GEMM speed.
//
// int16 activations (`Activations::kInt16`, the translation models' int8 on AVX2 CPUs without
// VNNI): int8 weights in groups of kInt16PathGroup input features, packed in panels, times
// int16-quantized activations with exact int32 group sums — nn/qgemm.h.
//
// Low-precision activations (`Activations::kLowPrecision`, used by the translation models'
// `--compute-type` where translation_activations() says so — int8 on VNNI CPUs, bf16): the
// activations are converted too, so the product runs on the CPU's integer
// or bf16 dot-product units for every M. int8: weights and activations are both quantized
// symmetrically in blocks of kInt8BlockSize = 32 consecutive input features (the last block of a
// row may be shorter): weight block j of row n has scale_nj = max |W[n, block j]| / 127, activation
// block j of row m has s_mj = max |x[m, block j]| / 127 (computed on the fly), and
// y[m, n] = Σ_j s_mj·scale_nj·C_mnj + b_n, where C_mnj = Σ_{k in block j} round(x/s_mj)·q is summed
// exactly in int32 by oneDNN's dnnl_gemm_u8s8s32 on u8 = round(x/s_mj) + 128 (VNNI vpdpbusd; on
// CPUs without VNNI two saturation-free u8·s8 GEMMs over the split u = 2h + l, as oneDNN's int16
// pair sums saturate there). This is the block format of llama.cpp's Q8_0 weights multiplied with
// its Q8_0-quantized activations (one int8 dot product and one pair of scales per 32 elements),
// computed here one block column of the GEMM at a time (K / 32 integer GEMMs instead of one).
// Per-row scales (one block per row, as CTranslate2's int8 and torch.ao's dynamic quantized
// Linear) left 8.2 % of the greedy translations of the held-out test of models/en-zh different
// from float32, blocks of 32 5.5 % (docs/benchmarks.md); activations and weights of that model
// have no outlier channels (largest |x| about 3× the row's RMS), so finer blocks, not outlier
// handling, are what reduces the error.
// bfloat16: x is rounded to bf16 and dnnl_gemm_bf16bf16f32 accumulates in float32 (AVX512-BF16
// vdpbf16ps where available; on CPUs without AVX-512, where oneDNN lacks it, the same products
// through sgemm). Rows are independent in both, so a row's result does not depend on the other
// rows of the batch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <torch/torch.h>

#include "loom/nn/qgemm.h"

namespace loom::nn {

/// Storage precision of PackedLinear weights.
enum class WeightType { kFloat32, kBFloat16, kInt8 };

/// "float32", "bfloat16" or "int8".
const char* weight_type_name(WeightType t);

/// Parses "float32" | "bfloat16" | "int8" (also "f32", "bf16"). Throws loom::Error naming
/// `field` (e.g. "--compute-type") for anything else.
WeightType parse_weight_type(const std::string& s, const std::string& field);

/// What PackedLinear::forward does with the float32 activations of a bfloat16/int8 weight.
enum class Activations {
  kFloat32,       ///< weight-only: products in float32 (decoder LMs)
  kLowPrecision,  ///< activations converted to the weight's type (int8 per row / bf16), see above
  kInt16,         ///< int8 only: int16 activations × group-scaled int8 panels on AVX2 (nn/qgemm.h)
};

/// The compute type `--compute-type auto` picks on this CPU: int8 when it has AVX-512 VNNI or
/// AVX-VNNI (oneDNN's u8·s8 dot products then run on vpdpbusd, without the int16 saturation of
/// the older vpmaddubsw path), else bfloat16 when it has AVX512-BF16, else float32.
WeightType auto_weight_type();

/// The activations a translation model's `--compute-type` packs its layers with on this CPU:
/// kLowPrecision (int8 or bf16 activations, see above), except int8 on CPUs without VNNI
/// (AVX-512 VNNI or AVX-VNNI): there exact int8·int8 products cost two u8·s8 GEMMs per block of
/// 32 input features (oneDNN's int16 pair sums saturate) and ran at a fifth of float32's speed,
/// so int8 runs as kInt16 (exact int16·int8 pair products, nn/qgemm.h) on AVX2 CPUs and as
/// kFloat32 (weight-only) on CPUs without AVX2.
Activations translation_activations(WeightType type);

/// Input features per weight scale of the kInt16 path (Int8PanelWeight's group G). On the held-out
/// test of the default model (docs/benchmarks.md) groups of 16 / 32 / 64 / 128 / 512 gave
/// 968 / 961 / 954 / 937 / 944 of 1,000 greedy outputs identical to float32, and the GEMMs of an
/// opus-mt decoder step ran 11 % slower with 16 than with 32, 3 % faster with 64.
constexpr int64_t kInt16PathGroup = 32;

/// Parses a `--compute-type` value: parse_weight_type() plus "auto" (auto_weight_type()).
WeightType parse_compute_type(const std::string& s, const std::string& field);

/// Input features per int8 scale block with Activations::kLowPrecision (weights and activations).
constexpr int64_t kInt8BlockSize = 32;

/// Rows up to which forward() uses the fused gemv kernel instead of tile dequantization + sgemm.
constexpr int64_t kGemvMaxRows = 8;

/// y = x·Wᵀ + b with W [N, K] stored as float32, bfloat16 or int8 (per-row scale).
class PackedLinear {
 public:
  PackedLinear() = default;
  /// Packs weight [N, K] (float32/bfloat16/float16) and bias [N] (or undefined) as `type`. A
  /// contiguous weight that already has the target dtype (float32 or bfloat16) is kept as is,
  /// without a copy — e.g. a memory-mapped checkpoint tensor. Throws loom::Error for a weight that is not
  /// 2-D or a bias of the wrong size.
  /// `rows_read` (int8 with Activations::kInt16 only): see Int8PanelWeight's constructor.
  PackedLinear(const torch::Tensor& weight, const torch::Tensor& bias, WeightType type,
               Activations activations = Activations::kFloat32,
               const std::function<void(int64_t n0, int64_t nb)>& rows_read = {});

  /// x [..., K] float32 -> [..., N] float32. Throws loom::Error when x has not K features.
  torch::Tensor forward(const torch::Tensor& x) const;

  /// The weight as float32 [N, K] (int8: q · scale), a new tensor except for float32 storage.
  torch::Tensor dequantized() const;

  WeightType type() const { return type_; }
  Activations activations() const { return act_; }
  bool defined() const { return w_.defined() || panels_.defined(); }
  int64_t out_features() const { return panels_.defined() ? panels_.out_features() : w_.size(0); }  ///< N
  int64_t in_features() const { return panels_.defined() ? panels_.in_features() : w_.size(1); }    ///< K
  /// Bytes held by the weight, its scales and bias.
  int64_t bytes() const;
  /// The stored weight: [N, K] float32, bfloat16 or int8; undefined for Activations::kInt16
  /// (the weight is in panels()).
  const torch::Tensor& weight() const { return w_; }
  /// Activations::kInt16 only: the packed int8 weight.
  const Int8PanelWeight& panels() const { return panels_; }
  /// int8 only (undefined otherwise), float32: per-row scales [N] (Activations::kFloat32),
  /// per-block-and-row scales [ceil(K / kInt8BlockSize), N] (Activations::kLowPrecision) or
  /// per-group-and-channel scales [ceil(K / kInt16PathGroup), ceil(N / 16)·16] (kInt16).
  const torch::Tensor& scale() const { return panels_.defined() ? panels_.scale() : scale_; }

 private:
  torch::Tensor forward_low_precision(const torch::Tensor& x2) const;  // [M, K] -> [M, N]
  void dequantize_rows(int64_t n0, int64_t nb, float* out) const;      // rows n0..n0+nb of W as float32 [nb, K] (weight-only int8, bf16)
  WeightType type_ = WeightType::kFloat32;
  Activations act_ = Activations::kFloat32;
  torch::Tensor w_;      // [N, K]
  torch::Tensor scale_;  // [N] float32 (int8)
  torch::Tensor bias_;   // [N] float32 or undefined
  Int8PanelWeight panels_;  // Activations::kInt16 (w_ and scale_ then undefined)
};

/// True when the AVX-512 gemv kernels are in use (CPU has avx512f+avx512bw, LOOM_KERNELS is
/// neither "portable" nor "avx2" in the environment, and set_portable_kernels(true) is not in
/// effect); nn/gemv.h's gemv_active_isa() names the kernels in use.
bool packed_avx512_enabled();

/// Forces (true) or releases (false) the portable C++ gemv kernels, for tests comparing paths.
void set_portable_kernels(bool portable);

}  // namespace loom::nn
