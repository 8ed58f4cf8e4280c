#include "loom/nn/packed_linear.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "loom/core/error.h"
#include "loom/nn/linear.h"

// GCC 12 warns inside its own AVX-512 intrinsics (_mm512_undefined_* self-initialisation).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace loom::nn {
namespace {

// ---- fused dequantize + dot kernels: Y[m, n] = sum_k deq(W[n, k]) · X[m, k] for n in [n0, n1) ----
// W row-major [N, K], X row-major [M, K], Y row-major [M, N]; scale multiplies after the sum.

inline float bf16_to_f32(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename Deq>
void gemv_portable(int64_t M, int64_t K, int64_t N, const float* X, float* Y, int64_t n0, int64_t n1, Deq deq,
                   const float* scale) {
  float acc[kGemvMaxRows];
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t m = 0; m < M; ++m) acc[m] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      const float w = deq(n * K + k);
      for (int64_t m = 0; m < M; ++m) acc[m] += w * X[m * K + k];
    }
    const float s = scale ? scale[n] : 1.0f;
    for (int64_t m = 0; m < M; ++m) Y[m * N + n] = acc[m] * s;
  }
}

__attribute__((target("avx512f,avx512bw"))) inline __m512 load16_bf16(const uint16_t* p) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
__attribute__((target("avx512f,avx512bw"))) inline __m512 load16_int8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// M rows at a time (M a compile-time constant so the accumulators stay in registers).
template <int M, bool kInt8>
__attribute__((target("avx512f,avx512bw"))) void gemv_avx512(int64_t K, int64_t N, const void* Wv, const float* X,
                                                              float* Y, int64_t n0, int64_t n1, const float* scale) {
  const int64_t K16 = K / 16 * 16;
  for (int64_t n = n0; n < n1; ++n) {
    __m512 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K16; k += 16) {
      __m512 w = kInt8 ? load16_int8(static_cast<const int8_t*>(Wv) + n * K + k)
                       : load16_bf16(static_cast<const uint16_t*>(Wv) + n * K + k);
      for (int m = 0; m < M; ++m) acc[m] = _mm512_fmadd_ps(w, _mm512_loadu_ps(X + m * K + k), acc[m]);
    }
    for (int m = 0; m < M; ++m) {
      float s = _mm512_reduce_add_ps(acc[m]);
      for (int64_t k = K16; k < K; ++k) {
        const float w = kInt8 ? static_cast<float>(static_cast<const int8_t*>(Wv)[n * K + k])
                              : bf16_to_f32(static_cast<const uint16_t*>(Wv)[n * K + k]);
        s += w * X[m * K + k];
      }
      Y[m * N + n] = scale ? s * scale[n] : s;
    }
  }
}

template <bool kInt8>
void gemv_avx512_dispatch(int64_t M, int64_t K, int64_t N, const void* W, const float* X, float* Y, int64_t n0,
                          int64_t n1, const float* scale) {
  switch (M) {
    case 1: return gemv_avx512<1, kInt8>(K, N, W, X, Y, n0, n1, scale);
    case 2: return gemv_avx512<2, kInt8>(K, N, W, X, Y, n0, n1, scale);
    case 3: return gemv_avx512<3, kInt8>(K, N, W, X, Y, n0, n1, scale);
    case 4: return gemv_avx512<4, kInt8>(K, N, W, X, Y, n0, n1, scale);
    case 5: return gemv_avx512<5, kInt8>(K, N, W, X, Y, n0, n1, scale);
    case 6: return gemv_avx512<6, kInt8>(K, N, W, X, Y, n0, n1, scale);
    case 7: return gemv_avx512<7, kInt8>(K, N, W, X, Y, n0, n1, scale);
    default: return gemv_avx512<8, kInt8>(K, N, W, X, Y, n0, n1, scale);
  }
}

bool detect_avx512() {
  const char* env = std::getenv("LOOM_KERNELS");
  if (env != nullptr && std::strcmp(env, "portable") == 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

}  // namespace

std::atomic<bool> g_force_portable{false};

bool packed_avx512_enabled() {
  static const bool on = detect_avx512();
  return on && !g_force_portable.load();
}

void set_portable_kernels(bool portable) { g_force_portable.store(portable); }

const char* weight_type_name(WeightType t) {
  switch (t) {
    case WeightType::kFloat32: return "float32";
    case WeightType::kBFloat16: return "bfloat16";
    case WeightType::kInt8: return "int8";
  }
  return "?";
}

WeightType parse_weight_type(const std::string& s, const std::string& field) {
  if (s == "float32" || s == "f32" || s == "fp32") return WeightType::kFloat32;
  if (s == "bfloat16" || s == "bf16") return WeightType::kBFloat16;
  if (s == "int8") return WeightType::kInt8;
  fail(Where{"", 0, field}, "unknown compute type '{}' (expected float32, bfloat16 or int8)", s);
}

PackedLinear::PackedLinear(const torch::Tensor& weight, const torch::Tensor& bias, WeightType type) : type_(type) {
  torch::NoGradGuard no_grad;
  if (!weight.defined() || weight.dim() != 2) fail("PackedLinear: weight must be a 2-D tensor [out, in]");
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0)))
    fail("PackedLinear: bias has {} elements, weight has {} rows", bias.numel(), weight.size(0));
  if (bias.defined()) bias_ = bias.to(torch::kFloat32).contiguous();
  switch (type) {
    case WeightType::kFloat32:
      w_ = weight.scalar_type() == torch::kFloat32 && weight.is_contiguous() ? weight
                                                                               : weight.to(torch::kFloat32).contiguous();
      break;
    case WeightType::kBFloat16:
      w_ = weight.scalar_type() == torch::kBFloat16 && weight.is_contiguous()
               ? weight
               : weight.to(torch::kBFloat16).contiguous();
      break;
    case WeightType::kInt8: {
      // Row by row blocks, so a float32 copy of a large weight never exists at once.
      const int64_t N = weight.size(0), K = weight.size(1);
      w_ = torch::empty({N, K}, torch::kInt8);
      scale_ = torch::empty({N}, torch::kFloat32);
      const int64_t block = std::max<int64_t>(1, (int64_t{4} << 20) / std::max<int64_t>(1, K * 4));
      for (int64_t n0 = 0; n0 < N; n0 += block) {
        const int64_t nb = std::min(block, N - n0);
        auto w = weight.narrow(0, n0, nb).to(torch::kFloat32);
        auto s = std::get<0>(w.abs().max(1)) / 127.0f;             // [nb]
        s = torch::where(s > 0, s, torch::ones_like(s));            // an all-zero row: q = 0
        auto q = torch::round(w / s.unsqueeze(1)).clamp(-127, 127);  // [nb, K]
        w_.narrow(0, n0, nb).copy_(q.to(torch::kInt8));
        scale_.narrow(0, n0, nb).copy_(s);
      }
      break;
    }
  }
}

int64_t PackedLinear::bytes() const {
  int64_t n = w_.defined() ? w_.numel() * static_cast<int64_t>(w_.element_size()) : 0;
  if (scale_.defined()) n += scale_.numel() * 4;
  if (bias_.defined()) n += bias_.numel() * 4;
  return n;
}

torch::Tensor PackedLinear::dequantized() const {
  if (type_ == WeightType::kFloat32) return w_;
  if (type_ == WeightType::kBFloat16) return w_.to(torch::kFloat32);
  return w_.to(torch::kFloat32) * scale_.unsqueeze(1);
}

torch::Tensor PackedLinear::forward(const torch::Tensor& x) const {
  torch::NoGradGuard no_grad;
  if (type_ == WeightType::kFloat32) return linear(x, w_, bias_);
  const int64_t N = w_.size(0), K = w_.size(1);
  if (x.size(-1) != K) fail("PackedLinear: input has {} features, weight expects {}", x.size(-1), K);
  auto x2 = x.reshape({-1, K}).to(torch::kFloat32).contiguous();  // [M, K]
  const int64_t M = x2.size(0);
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = N;
  torch::Tensor y = torch::empty({M, N}, torch::kFloat32);  // [M, N]
  if (M == 0 || N == 0) return y.view(out_shape);
  if (M <= kGemvMaxRows) {
    const bool int8 = type_ == WeightType::kInt8;
    const void* W = w_.data_ptr();
    const float* X = x2.data_ptr<float>();
    float* Y = y.data_ptr<float>();
    const float* S = int8 ? scale_.data_ptr<float>() : nullptr;
    const bool avx = packed_avx512_enabled();
    at::parallel_for(0, N, 32, [&](int64_t n0, int64_t n1) {
      if (avx) {
        if (int8) gemv_avx512_dispatch<true>(M, K, N, W, X, Y, n0, n1, S);
        else gemv_avx512_dispatch<false>(M, K, N, W, X, Y, n0, n1, S);
      } else if (int8) {
        const int8_t* q = static_cast<const int8_t*>(W);
        gemv_portable(M, K, N, X, Y, n0, n1, [q](int64_t i) { return static_cast<float>(q[i]); }, S);
      } else {
        const uint16_t* b = static_cast<const uint16_t*>(W);
        gemv_portable(M, K, N, X, Y, n0, n1, [b](int64_t i) { return bf16_to_f32(b[i]); }, nullptr);
      }
    });
    if (bias_.defined()) y.add_(bias_);
    return y.view(out_shape);
  }
  // Prompt processing: float32 tiles of ~2 MB (in cache) through sgemm.
  const int64_t tile = std::max<int64_t>(16, (int64_t{2} << 20) / std::max<int64_t>(1, K * 4));
  for (int64_t n0 = 0; n0 < N; n0 += tile) {
    const int64_t nb = std::min(tile, N - n0);
    auto wf = w_.narrow(0, n0, nb).to(torch::kFloat32);                           // [nb, K]
    if (type_ == WeightType::kInt8) wf.mul_(scale_.narrow(0, n0, nb).unsqueeze(1));
    y.narrow(1, n0, nb).copy_(linear(x2, wf, bias_.defined() ? bias_.narrow(0, n0, nb) : torch::Tensor()));
  }
  return y.view(out_shape);
}

}  // namespace loom::nn
