#include "loom/nn/gemv.h"

#include <immintrin.h>

#include <atomic>

#include <cstdlib>
#include <cstring>

#include "loom/core/error.h"

// GCC 12 warns inside its own AVX-512 intrinsics (_mm512_undefined_* self-initialisation).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define LOOM_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define LOOM_TARGET_AVX512 __attribute__((target("avx512f,avx512bw")))

namespace loom::nn {
namespace {

// Scalar widening of one stored weight.
inline float to_f32(float v) { return v; }
inline float to_f32(int8_t v) { return static_cast<float>(v); }
inline float to_f32(uint16_t v) {  // bfloat16 bit pattern: the high half of a float32
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Rows [n, n + R) after the vector part: the K tail k in [k0, K), then scale and store.
template <int M, int R, typename E>
inline void finish_rows(const float (&sum)[M][R], int64_t k0, int64_t K, int64_t N, const E* W, const float* X,
                        float* Y, int64_t n, const float* scale) {
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) {
      float s = sum[m][r];
      for (int64_t k = k0; k < K; ++k) s += to_f32(W[(n + r) * K + k]) * X[m * K + k];
      Y[m * N + n + r] = scale != nullptr ? s * scale[n + r] : s;
    }
}

// ---- portable ----

template <typename E>
void portable_rows(int64_t M, int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n0, int64_t n1,
                   const float* scale) {
  float acc[kGemvMaxRows];
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t m = 0; m < M; ++m) acc[m] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      const float w = to_f32(W[n * K + k]);
      for (int64_t m = 0; m < M; ++m) acc[m] += w * X[m * K + k];
    }
    const float s = scale != nullptr ? scale[n] : 1.0f;
    for (int64_t m = 0; m < M; ++m) Y[m * N + n] = acc[m] * s;
  }
}

// ---- AVX2 + FMA: 8 lanes ----

LOOM_TARGET_AVX2 inline __m256 avx2_load8(const float* p) { return _mm256_loadu_ps(p); }
LOOM_TARGET_AVX2 inline __m256 avx2_load8(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
LOOM_TARGET_AVX2 inline __m256 avx2_load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
LOOM_TARGET_AVX2 inline float avx2_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Output rows [n, n + R).
template <int M, int R, typename E>
LOOM_TARGET_AVX2 void avx2_block(int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n,
                                 const float* scale) {
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  const int64_t K8 = K / 8 * 8;
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 w[R];
    for (int r = 0; r < R; ++r) w[r] = avx2_load8(W + (n + r) * K + k);
    for (int m = 0; m < M; ++m) {
      const __m256 x = _mm256_loadu_ps(X + m * K + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm256_fmadd_ps(w[r], x, acc[m][r]);
    }
  }
  float sum[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) sum[m][r] = avx2_sum(acc[m][r]);
  finish_rows<M, R>(sum, K8, K, N, W, X, Y, n, scale);
}

template <int M, int R, typename E>
LOOM_TARGET_AVX2 void avx2_rows(int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n0, int64_t n1,
                                const float* scale) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) avx2_block<M, R>(K, N, W, X, Y, n, scale);
  for (; n < n1; ++n) avx2_block<M, 1>(K, N, W, X, Y, n, scale);
}

template <typename E>
void avx2_dispatch(int64_t M, int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n0, int64_t n1,
                   const float* scale) {
  // 16 ymm registers: M·R accumulators + R weights + 1 activation.
  switch (M) {
    case 1: return avx2_rows<1, 4>(K, N, W, X, Y, n0, n1, scale);
    case 2: return avx2_rows<2, 4>(K, N, W, X, Y, n0, n1, scale);
    case 3: return avx2_rows<3, 2>(K, N, W, X, Y, n0, n1, scale);
    case 4: return avx2_rows<4, 2>(K, N, W, X, Y, n0, n1, scale);
    case 5: return avx2_rows<5, 1>(K, N, W, X, Y, n0, n1, scale);
    case 6: return avx2_rows<6, 1>(K, N, W, X, Y, n0, n1, scale);
    case 7: return avx2_rows<7, 1>(K, N, W, X, Y, n0, n1, scale);
    default: return avx2_rows<8, 1>(K, N, W, X, Y, n0, n1, scale);
  }
}

// ---- AVX-512 F + BW: 16 lanes ----

LOOM_TARGET_AVX512 inline __m512 avx512_load16(const float* p) { return _mm512_loadu_ps(p); }
LOOM_TARGET_AVX512 inline __m512 avx512_load16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
LOOM_TARGET_AVX512 inline __m512 avx512_load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <int M, int R, typename E>
LOOM_TARGET_AVX512 void avx512_block(int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n,
                                     const float* scale) {
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  const int64_t K16 = K / 16 * 16;
  for (int64_t k = 0; k < K16; k += 16) {
    __m512 w[R];
    for (int r = 0; r < R; ++r) w[r] = avx512_load16(W + (n + r) * K + k);
    for (int m = 0; m < M; ++m) {
      const __m512 x = _mm512_loadu_ps(X + m * K + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(w[r], x, acc[m][r]);
    }
  }
  float sum[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) sum[m][r] = _mm512_reduce_add_ps(acc[m][r]);
  finish_rows<M, R>(sum, K16, K, N, W, X, Y, n, scale);
}

template <int M, int R, typename E>
LOOM_TARGET_AVX512 void avx512_rows(int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n0,
                                    int64_t n1, const float* scale) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) avx512_block<M, R>(K, N, W, X, Y, n, scale);
  for (; n < n1; ++n) avx512_block<M, 1>(K, N, W, X, Y, n, scale);
}

template <typename E>
void avx512_dispatch(int64_t M, int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n0, int64_t n1,
                     const float* scale) {
  // 32 zmm registers: M·R accumulators + R weights + 1 activation.
  switch (M) {
    case 1: return avx512_rows<1, 4>(K, N, W, X, Y, n0, n1, scale);
    case 2: return avx512_rows<2, 4>(K, N, W, X, Y, n0, n1, scale);
    case 3: return avx512_rows<3, 4>(K, N, W, X, Y, n0, n1, scale);
    case 4: return avx512_rows<4, 4>(K, N, W, X, Y, n0, n1, scale);
    case 5: return avx512_rows<5, 2>(K, N, W, X, Y, n0, n1, scale);
    case 6: return avx512_rows<6, 2>(K, N, W, X, Y, n0, n1, scale);
    case 7: return avx512_rows<7, 2>(K, N, W, X, Y, n0, n1, scale);
    default: return avx512_rows<8, 2>(K, N, W, X, Y, n0, n1, scale);
  }
}

template <typename E>
void run(GemvIsa isa, int64_t M, int64_t K, int64_t N, const E* W, const float* X, float* Y, int64_t n0, int64_t n1,
         const float* scale) {
  switch (isa) {
    case GemvIsa::kAvx512: return avx512_dispatch(M, K, N, W, X, Y, n0, n1, scale);
    case GemvIsa::kAvx2: return avx2_dispatch(M, K, N, W, X, Y, n0, n1, scale);
    case GemvIsa::kPortable: return portable_rows(M, K, N, W, X, Y, n0, n1, scale);
  }
}

GemvIsa detect_default_isa() {
  GemvIsa best = GemvIsa::kPortable;
  if (gemv_isa_supported(GemvIsa::kAvx512)) best = GemvIsa::kAvx512;
  else if (gemv_isa_supported(GemvIsa::kAvx2)) best = GemvIsa::kAvx2;
  const char* env = std::getenv("LOOM_KERNELS");
  if (env != nullptr && std::strcmp(env, "portable") == 0) return GemvIsa::kPortable;
  if (env != nullptr && std::strcmp(env, "avx2") == 0 && best == GemvIsa::kAvx512) return GemvIsa::kAvx2;
  return best;
}

std::atomic<bool> g_force_portable{false};

}  // namespace

const char* gemv_isa_name(GemvIsa isa) {
  switch (isa) {
    case GemvIsa::kPortable: return "portable";
    case GemvIsa::kAvx2: return "avx2";
    case GemvIsa::kAvx512: return "avx512";
  }
  return "?";
}

bool gemv_isa_supported(GemvIsa isa) {
  static const bool avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  static const bool avx512 =
      (__builtin_cpu_init(), __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"));
  switch (isa) {
    case GemvIsa::kPortable: return true;
    case GemvIsa::kAvx2: return avx2;
    case GemvIsa::kAvx512: return avx512;
  }
  return false;
}

GemvIsa gemv_default_isa() {
  static const GemvIsa isa = detect_default_isa();
  return isa;
}

GemvIsa gemv_active_isa() { return g_force_portable.load() ? GemvIsa::kPortable : gemv_default_isa(); }

// Declared in packed_linear.h; the kernel choice is owned here.
bool packed_avx512_enabled() { return gemv_active_isa() == GemvIsa::kAvx512; }

void set_portable_kernels(bool portable) { g_force_portable.store(portable); }

void gemv_rows(GemvIsa isa, WeightType type, int64_t M, int64_t K, int64_t N, const void* W, const float* X,
               float* Y, int64_t n0, int64_t n1, const float* scale) {
  if (M < 1 || M > kGemvMaxRows) fail("gemv_rows: {} rows (expected 1 to {})", M, kGemvMaxRows);
  if (n0 < 0 || n0 > n1 || n1 > N) fail("gemv_rows: output range [{}, {}) outside [0, {})", n0, n1, N);
  if (!gemv_isa_supported(isa)) fail("gemv_rows: this CPU cannot run the {} kernels", gemv_isa_name(isa));
  switch (type) {
    case WeightType::kFloat32: return run(isa, M, K, N, static_cast<const float*>(W), X, Y, n0, n1, scale);
    case WeightType::kBFloat16: return run(isa, M, K, N, static_cast<const uint16_t*>(W), X, Y, n0, n1, scale);
    case WeightType::kInt8: return run(isa, M, K, N, static_cast<const int8_t*>(W), X, Y, n0, n1, scale);
  }
}

}  // namespace loom::nn
