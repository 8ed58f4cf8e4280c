#include "loom/nn/packed_linear.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
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

// oneDNN C API (dnnl.h), row-major, looked up in the libdnnl that libtorch already loads (as
// nn::linear's dnnl_sgemm). C = alpha·(op(A) - ao)·(op(B) - bo) + beta·C + co.
using GemmU8S8S32Fn = int (*)(char transa, char transb, char offsetc, int64_t M, int64_t N, int64_t K, float alpha,
                              const uint8_t* A, int64_t lda, uint8_t ao, const int8_t* B, int64_t ldb, int8_t bo,
                              float beta, int32_t* C, int64_t ldc, const int32_t* co);
// C = alpha·op(A)·op(B) + beta·C with A, B bfloat16 (uint16 bit patterns), C float32.
using GemmBf16Fn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                           int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

template <typename Fn>
Fn find_dnnl(const char* name) {
  const char* env = std::getenv("LOOM_GEMM");
  if (env != nullptr && std::strcmp(env, "torch") == 0) return nullptr;
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

GemmU8S8S32Fn gemm_u8s8s32() {
  static const GemmU8S8S32Fn fn = find_dnnl<GemmU8S8S32Fn>("dnnl_gemm_u8s8s32");
  return fn;
}

GemmBf16Fn gemm_bf16() {
  static const GemmBf16Fn fn = find_dnnl<GemmBf16Fn>("dnnl_gemm_bf16bf16f32");
  return fn;
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

static bool cpu_has_vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
}

// Largest |q| of the int8 weights of a PackedLinear with low-precision activations: 127 with VNNI;
// else 63, so that oneDNN's u8·s8 pair sums (vpmaddubsw, saturating int16) stay exact with
// 8-bit activations: 2·255·63 < 2^15. (7-bit weights keep more of the greedy outputs equal to
// float32 than 7-bit activations: 88.1 % vs 86.6 % on models/en-zh's held-out Tatoeba, AVX2.)
static float int8_weight_max() {
  static const bool vnni = cpu_has_vnni();
  return vnni ? 127.0f : 63.0f;
}

WeightType auto_weight_type() {
  __builtin_cpu_init();
  if (cpu_has_vnni()) return WeightType::kInt8;
  if (__builtin_cpu_supports("avx512bf16")) return WeightType::kBFloat16;
  return WeightType::kFloat32;
}

WeightType parse_compute_type(const std::string& s, const std::string& field) {
  if (s == "auto") return auto_weight_type();
  if (s == "float32" || s == "f32" || s == "fp32" || s == "bfloat16" || s == "bf16" || s == "int8")
    return parse_weight_type(s, field);
  fail(Where{"", 0, field}, "unknown compute type '{}' (expected float32, int8, bf16 or auto)", s);
}

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

PackedLinear::PackedLinear(const torch::Tensor& weight, const torch::Tensor& bias, WeightType type,
                           Activations activations)
    : type_(type), act_(type == WeightType::kFloat32 ? Activations::kFloat32 : activations) {
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
        const float wmax = act_ == Activations::kLowPrecision ? int8_weight_max() : 127.0f;
        auto s = std::get<0>(w.abs().max(1)) / wmax;             // [nb]
        s = torch::where(s > 0, s, torch::ones_like(s));            // an all-zero row: q = 0
        auto q = torch::round(w / s.unsqueeze(1)).clamp(-wmax, wmax);  // [nb, K]
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
  if (act_ == Activations::kLowPrecision) return forward_low_precision(x2).view(out_shape);
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

torch::Tensor PackedLinear::forward_low_precision(const torch::Tensor& x2) const {
  const int64_t M = x2.size(0), N = w_.size(0), K = w_.size(1);
  torch::Tensor y = torch::empty({M, N}, torch::kFloat32);  // [M, N]
  if (M == 0 || N == 0) return y;
  const float* B = bias_.defined() ? bias_.data_ptr<float>() : nullptr;
  if (type_ == WeightType::kBFloat16) {
    torch::Tensor xb = x2.to(torch::kBFloat16);  // [M, K], round to nearest even
    if (gemm_bf16() != nullptr) {
      const int status = gemm_bf16()('N', 'T', M, N, K, 1.0f, reinterpret_cast<const uint16_t*>(xb.data_ptr()), K,
                                     reinterpret_cast<const uint16_t*>(w_.data_ptr()), K, 0.0f, y.data_ptr<float>(), N);
      if (status != 0) fail("PackedLinear: dnnl_gemm_bf16bf16f32 failed with status {}", status);
      if (bias_.defined()) y.add_(bias_);
      return y;
    }
    return linear(xb.to(torch::kFloat32), w_.to(torch::kFloat32), bias_);  // same products, float32 sums
  }
  // int8: per-row symmetric quantization of x, stored as u8 = q + 128 (oneDNN's u8·s8 product).
  // Without VNNI the weights have 7 bits (int8_weight_max), so no int16 pair sum saturates.
  const float* X = x2.data_ptr<float>();
  torch::Tensor xq = torch::empty({M, K}, torch::kUInt8);  // [M, K]
  torch::Tensor xs = torch::empty({M}, torch::kFloat32);    // [M] activation scales s_m
  uint8_t* XQ = xq.data_ptr<uint8_t>();
  float* XS = xs.data_ptr<float>();
  at::parallel_for(0, M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* row = X + m * K;
      float amax = 0.0f;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
      const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
      const float inv = 1.0f / s;
      for (int64_t k = 0; k < K; ++k) {
        const float q = std::nearbyint(row[k] * inv);
        XQ[m * K + k] = static_cast<uint8_t>(static_cast<int>(std::min(127.0f, std::max(-127.0f, q))) + 128);
      }
      XS[m] = s;
    }
  });
  // The exact int32 sums [M, N] go into y's own buffer (4-byte elements both), converted to
  // float32 in place below: no second [M, N] buffer (for the vocabulary projection of a beam
  // batch that is tens of MB).
  static_assert(sizeof(int32_t) == sizeof(float), "int32 sums share the float32 output buffer");
  int32_t* C = reinterpret_cast<int32_t*>(y.data_ptr<float>());
  const int8_t* W = w_.data_ptr<int8_t>();
  if (gemm_u8s8s32() != nullptr) {
    const int32_t zero = 0;
    const int status = gemm_u8s8s32()('N', 'T', 'F', M, N, K, 1.0f, XQ, K, 128, W, K, 0, 0.0f, C, N, &zero);
    if (status != 0) fail("PackedLinear: dnnl_gemm_u8s8s32 failed with status {}", status);
  } else {
    at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = n0; n < n1; ++n) {
          int32_t sum = 0;
          for (int64_t k = 0; k < K; ++k) sum += (static_cast<int32_t>(XQ[m * K + k]) - 128) * W[n * K + k];
          C[m * N + n] = sum;
        }
    });
  }
  const float* S = scale_.data_ptr<float>();
  unsigned char* YC = reinterpret_cast<unsigned char*>(y.data_ptr<float>());  // C, then Y, element by element
  at::parallel_for(0, M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = 0; n < N; ++n) {
        int32_t c;
        std::memcpy(&c, YC + 4 * (m * N + n), 4);  // (memcpy: the buffer is read as int32, written as float)
        float v = static_cast<float>(c) * XS[m] * S[n];
        if (B != nullptr) v += B[n];
        std::memcpy(YC + 4 * (m * N + n), &v, 4);
      }
  });
  return y;
}

}  // namespace loom::nn
