// int8-weight GEMM with int16 activations for AVX2 CPUs without VNNI: y = x·Wᵀ (+ b).
//
// Format. W [N, K] is quantized symmetrically per output channel n and group of G consecutive
// input features (G even, at most kMaxGroup): s[g, n] = max_{k in g} |W[n, k]| / 127,
// q[n, k] = round(W[n, k] / s[g, n]) in [-127, 127] — llama.cpp's Q8_0 block format with G-sized
// blocks. Each row of x [M, K] is quantized to int16 with one scale, a_m = max_k |x[m, k]| / 32767,
// xq = round(x · (32767 / max_k |x[m, k]|)) in [-32767, 32767] (a row holding NaN or ±inf gives a
// NaN output row; an all-zero row, zeros); its relative error (about 1.5e-5 of the row's largest
// value) is far below the weights' (about 0.4 % of a group's largest weight), so the result is
// close to weight-only int8 (float32 activations).
//
// Products. y[m, n] = a_m · Σ_g s[g, n] · C[m, g, n] + b_n with the group sums
// C[m, g, n] = Σ_{k in g} xq[m, k] · q[n, k] computed exactly in int32: vpmaddwd multiplies pairs of
// int16 and adds each pair into int32 (16 products per instruction, twice the lanes of a float32
// FMA, and exact — unlike vpmaddubsw's u8·s8 pair sums, which saturate in int16 and which
// oneDNN's and CTranslate2's int8 GEMMs use on CPUs without VNNI). No group sum can overflow:
// G·32767·127 < 2³¹ for G <= 512. Group sums are scaled and added in float32, so a row's result
// depends only on that row (batch-invariant).
//
// Layout. The weight is packed once into panels of kPanel = 16 output channels: for each pair of
// input features (2t, 2t + 1) a panel holds 32 bytes, channels 0–7 then 8–15, each as the pair
// (q[n, 2t], q[n, 2t + 1]) — one 16-byte load + vpmovsxbw gives the int16 operand of vpmaddwd for
// 8 channels. The kernel computes tiles of up to 4 rows × 16 channels (8 int32 accumulators).
// Threads split the panels; each thread takes its panels in blocks of ~64 KB (in L2) and runs all
// rows of a chunk over a block before the next, so y is written in block-wide runs per row. Rows
// go in chunks whose int16 activations take ~256 KB (256 rows at K = 512, 64 at K = 2048), and
// the weight is read from memory once per chunk. The scheme is that of the register-blocked packed GEMMs of BLIS / oneDNN
// (a micro-kernel over pre-packed panels), with integer pair products instead of float FMAs.
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>

namespace loom::nn {

/// int8 weights [N, K] in group-scaled panels, multiplied with int16-quantized activations on AVX2.
class Int8PanelWeight {
 public:
  static constexpr int64_t kPanel = 16;     ///< output channels per panel
  static constexpr int64_t kMaxGroup = 512;  ///< largest group G (int32 group sums cannot overflow)

  /// True when this CPU has AVX2 (the kernel's instruction set) and LOOM_KERNELS is not "portable"
  /// (both read once, at the first call; set_portable_kernels() does not affect it).
  static bool supported();

  Int8PanelWeight() = default;
  /// Quantizes and packs weight [N, K] (float32/bfloat16/float16; read in row blocks, so no float32
  /// copy of a large weight exists at once) with groups of `group` input features. Throws
  /// loom::Error when weight is not 2-D, holds a NaN or infinity (naming the row), or group is odd,
  /// < 2 or > kMaxGroup.
  /// `rows_read`, when set, is called with (n0, nb) once rows [n0, n0 + nb) of `weight` have been
  /// read for the last time — e.g. to release their pages of a memory-mapped checkpoint, so a large
  /// float32 weight is never resident whole while it is packed.
  Int8PanelWeight(const torch::Tensor& weight, int64_t group,
                  const std::function<void(int64_t n0, int64_t nb)>& rows_read = {});

  /// y[m, n] = Σ_k x[m, k]·W[n, k] (+ bias[n]) for x [M, K] float32 row-major (row stride K) and
  /// y [M, N] row-major with row stride ldy (>= N); bias [N] or nullptr. Uses the threads of
  /// at::parallel_for. Requires supported().
  void forward(const float* x, int64_t M, float* y, int64_t ldy, const float* bias) const;

  /// The weight as float32 [N, K]: q · s.
  torch::Tensor dequantized() const;

  bool defined() const { return panels_.defined(); }
  int64_t out_features() const { return N_; }  ///< N
  int64_t in_features() const { return K_; }   ///< K
  int64_t group() const { return G_; }         ///< G
  /// Scales s [ceil(K / G), ceil(N / 16)·16] (columns past N are 0).
  const torch::Tensor& scale() const { return scale_; }
  /// Bytes held by the packed weight and its scales.
  int64_t bytes() const;

 private:
  int64_t N_ = 0, K_ = 0, G_ = 0;
  int64_t pairs_ = 0;        // ceil(K / 2)
  int64_t n_panels_ = 0;     // ceil(N / 16)
  int64_t groups_ = 0;       // ceil(K / G)
  torch::Tensor panels_;     // [n_panels, pairs, 32] int8
  torch::Tensor scale_;      // [groups, n_panels·16] float32
};

}  // namespace loom::nn
