// Few-row matrix products against a stored weight, Y = X·Wᵀ for M <= kGemvMaxRows rows of X
// (token-by-token decoding), with the weight in float32, bfloat16 or int8 read directly: no
// float32 copy of W is made, so a bfloat16 / int8 step moves 2× / 4× fewer weight bytes.
//
// Kernels, chosen at run time (loom is compiled for baseline x86-64):
//  - avx512 (avx512f + avx512bw): 16 float32 lanes, bfloat16 widened by a 16-bit shift, int8 by
//    vpmovsxbd + vcvtdq2ps, fused multiply-add;
//  - avx2 (avx2 + fma): the same with 8 lanes;
//  - portable: plain C++ (any CPU).
// The vector kernels compute R output channels at once (R = 4 for M <= 2 / M <= 4 on avx2 /
// avx512, else 2 or 1) so each X vector is loaded once per R weight vectors and R·M independent
// accumulators hide the FMA latency; sums are float32 (in another order than the portable loop).
#pragma once

#include <cstdint>

#include "loom/nn/packed_linear.h"

namespace loom::nn {

/// Instruction sets of the gemv kernels, in increasing order.
enum class GemvIsa { kPortable, kAvx2, kAvx512 };

/// "portable", "avx2" or "avx512".
const char* gemv_isa_name(GemvIsa isa);

/// True when this CPU can run `isa` (avx2: AVX2 and FMA; avx512: AVX-512 F and BW); portable: always.
bool gemv_isa_supported(GemvIsa isa);

/// The ISA PackedLinear uses: the best one the CPU supports, capped by the environment variable
/// LOOM_KERNELS=portable|avx2 (read once; any other value is ignored).
GemvIsa gemv_default_isa();

/// The ISA PackedLinear::forward uses now: gemv_default_isa(), or kPortable while
/// set_portable_kernels(true) (packed_linear.h) is in effect.
GemvIsa gemv_active_isa();

/// Y[m, n] = s_n · Σ_k W[n, k] · X[m, k] for 0 <= m < M and n0 <= n < n1, float32 sums.
/// W: row-major [N, K] of `type` (kBFloat16: uint16 bit patterns; kInt8: int8 values);
/// X: row-major [M, K] float32; Y: row-major [M, N] float32, only columns [n0, n1) written;
/// scale: [N] float32 per-row factors s_n, or nullptr for s_n = 1.
/// Throws loom::Error when M is not in [1, kGemvMaxRows], n0/n1 are not 0 <= n0 <= n1 <= N, or
/// this CPU cannot run `isa`.
void gemv_rows(GemvIsa isa, WeightType type, int64_t M, int64_t K, int64_t N, const void* W, const float* X,
               float* Y, int64_t n0, int64_t n1, const float* scale);

}  // namespace loom::nn
