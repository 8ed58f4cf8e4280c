#include "loom/nn/dextra_layer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/random.h"
#include "loom/nn/sgemm.h"
#include "loom/nn/simd_exp.h"

#define LOOM_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace loom::nn {

uint64_t delight_dropout_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
}

namespace {

std::atomic<bool> g_allow_avx2{true};

bool has_avx2() {
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  return yes && g_allow_avx2.load(std::memory_order_relaxed);
}

// Low 64 bits of a·c in each 64-bit lane, from 32-bit halves (AVX2 has no 64-bit multiply).
LOOM_TARGET_AVX2 inline __m256i mul64(__m256i a, __m256i c) {
  const __m256i lo = _mm256_mul_epu32(a, c);
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), c),
                                         _mm256_mul_epu32(a, _mm256_srli_epi64(c, 32)));
  return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

// Keep flags of elements e0 .. e0+n-1 with e0 even, n even, 4 splitmix64 draws (8 elements) per
// step in 64-bit lanes.
LOOM_TARGET_AVX2 void keep_flags_avx2(uint64_t seed, uint32_t threshold, int64_t e0, int64_t n, uint8_t* keep) {
  static const auto spread = [] {  // 8 bits -> 8 bytes of 0/1
    std::array<uint64_t, 256> t{};
    for (int b = 0; b < 256; ++b) {
      for (int j = 0; j < 8; ++j) t[b] |= static_cast<uint64_t>((b >> j) & 1) << (8 * j);
    }
    return t;
  }();
  const __m256i c1 = _mm256_set1_epi64x(static_cast<int64_t>(0xbf58476d1ce4e5b9ULL));
  const __m256i c2 = _mm256_set1_epi64x(static_cast<int64_t>(0x94d049bb133111ebULL));
  const __m256i thr = _mm256_set1_epi32(static_cast<int32_t>(threshold));
  const __m256i step = _mm256_set1_epi64x(4);
  __m256i z0 = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(seed + static_cast<uint64_t>(e0 / 2) + 0x9e3779b97f4a7c15ULL)),
                                _mm256_set_epi64x(3, 2, 1, 0));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8, z0 = _mm256_add_epi64(z0, step)) {
    __m256i z = mul64(_mm256_xor_si256(z0, _mm256_srli_epi64(z0, 30)), c1);
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), c2);
    z = _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));  // 8 uint32 uniforms in element order (low half first)
    const __m256i ge = _mm256_cmpeq_epi32(_mm256_max_epu32(z, thr), z);  // u >= threshold
    const uint64_t bytes = spread[_mm256_movemask_ps(_mm256_castsi256_ps(ge))];
    std::memcpy(keep + i, &bytes, 8);
  }
  for (; i < n; i += 2) {
    const uint64_t r = core::splitmix64(seed + static_cast<uint64_t>((e0 + i) / 2));
    keep[i] = static_cast<uint32_t>(r) >= threshold;
    if (i + 1 < n) keep[i + 1] = static_cast<uint32_t>(r >> 32) >= threshold;
  }
}

}  // namespace

void delight_keep_flags(uint64_t seed, uint32_t threshold, int64_t e0, int64_t n, uint8_t* keep) {
  int64_t i = 0;
  if (n > 0 && (e0 & 1) != 0) {  // odd start: the high half of the pair (e0 - 1, e0)
    keep[i++] = static_cast<uint32_t>(core::splitmix64(seed + static_cast<uint64_t>(e0 / 2)) >> 32) >= threshold;
  }
  if (has_avx2() && n - i >= 8) {
    keep_flags_avx2(seed, threshold, e0 + i, n - i, keep + i);
    return;
  }
  for (; i + 1 < n; i += 2) {
    const uint64_t r = core::splitmix64(seed + static_cast<uint64_t>((e0 + i) / 2));
    keep[i] = static_cast<uint32_t>(r) >= threshold;
    keep[i + 1] = static_cast<uint32_t>(r >> 32) >= threshold;
  }
  if (i < n) keep[i] = static_cast<uint32_t>(core::splitmix64(seed + static_cast<uint64_t>((e0 + i) / 2))) >= threshold;
}

namespace {

// Everything a row kernel needs, in output order p = 0..out-1 (after the shuffle).
struct Layout {
  int64_t m = 0, in = 0, out = 0, g = 1, ci = 0, co = 0;  // rows, widths, groups, per-group widths
  int64_t in0 = 0, in1 = 0;                              // input parts x0 [M, in0], x1 [M, in1]; in = in0 + in1
  bool dense = false;                                    // weight [out, in] instead of [g, ci, co]
  bool shuffled = false;                                 // col[p] != p (shuffle with g > 1)
  Activation act = Activation::kSilu;
  float eps = 1e-5f;
  std::vector<int32_t> col;                  // [out] column of the product y (k·co + j) read by position p
  std::vector<float> bias, gamma, beta;      // [out] bias of column col[p], LN affine of p % co
  bool drop = false;                         // dropout on
  uint64_t seed = 0;
  uint32_t threshold = 0;
  float scale = 1.0f;                        // 1 / (1 - p)
};

Layout make_layout(int64_t m, int64_t in, int64_t out, int64_t g, bool shuffle, bool dense, Activation act, double eps,
                   const torch::Tensor& bias, const torch::Tensor& ln_w, const torch::Tensor& ln_b) {
  Layout L;
  L.m = m, L.in = in, L.out = out, L.g = g, L.ci = in / g, L.co = out / g, L.dense = dense, L.act = act;
  L.eps = static_cast<float>(eps);
  L.shuffled = shuffle && g > 1;
  L.col.resize(out);
  for (int64_t p = 0; p < out; ++p) {
    L.col[p] = static_cast<int32_t>(shuffle && g > 1 ? (p % g) * L.co + p / g : p);  // output j·g + k <- group k, channel j
  }
  torch::Tensor b = bias.detach().reshape({out}).contiguous(), w = ln_w.detach().contiguous(), s = ln_b.detach().contiguous();
  const float* pb = b.data_ptr<float>();
  const float* pw = w.data_ptr<float>();
  const float* ps = s.data_ptr<float>();
  L.bias.resize(out), L.gamma.resize(out), L.beta.resize(out);
  for (int64_t p = 0; p < out; ++p) {
    L.bias[p] = pb[L.col[p]];
    L.gamma[p] = pw[p % L.co];
    L.beta[p] = ps[p % L.co];
  }
  return L;
}

// ---- row kernels, portable -------------------------------------------------------------------

// One output row: z = y[col] + bias; per chunk of co: xh = (z - mean)·rstd; out = drop(act(γ·xh + β)).
// y [out] (group-major product row), xh [out] and rs [g] written, keep [out] (when L.drop).
void forward_row(const Layout& L, const float* y, float* xh, float* rs, const uint8_t* keep, float* out) {
  const int64_t n = L.out, co = L.co;
  for (int64_t p = 0; p < n; ++p) xh[p] = y[L.col[p]] + L.bias[p];
  for (int64_t q = 0; q < L.g; ++q) {
    float* c = xh + q * co;
    float sum = 0.0f;
    for (int64_t i = 0; i < co; ++i) sum += c[i];
    const float mean = sum / static_cast<float>(co);
    float ss = 0.0f;
    for (int64_t i = 0; i < co; ++i) ss += (c[i] - mean) * (c[i] - mean);
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(co) + L.eps);
    for (int64_t i = 0; i < co; ++i) c[i] = (c[i] - mean) * r;
    rs[q] = r;
  }
  for (int64_t p = 0; p < n; ++p) {
    const float a = L.gamma[p] * xh[p] + L.beta[p];
    float h = L.act == Activation::kSilu ? a / (1.0f + std::exp(-a)) : (a > 0.0f ? a : 0.0f);
    if (L.drop) h = keep[p] != 0 ? h * L.scale : 0.0f;
    out[p] = h;
  }
}

// Gradient of one row: dh [out] -> dy [out] (group-major, the product's gradient); accumulates
// dg, db (LN affine, per output position) and dbias (per output position). t [out] scratch.
void backward_row(const Layout& L, const float* dh, const float* xh, const float* rs, const uint8_t* keep, float* dy,
                  float* dg, float* db, float* dbias, float* t) {
  const int64_t n = L.out, co = L.co;
  for (int64_t p = 0; p < n; ++p) {
    float d = dh[p];
    if (L.drop) d = keep[p] != 0 ? d * L.scale : 0.0f;
    const float a = L.gamma[p] * xh[p] + L.beta[p];
    float da;
    if (L.act == Activation::kSilu) {
      const float s = 1.0f / (1.0f + std::exp(-a));
      da = d * s * (1.0f + a * (1.0f - s));
    } else {
      da = a > 0.0f ? d : 0.0f;
    }
    dg[p] += da * xh[p];
    db[p] += da;
    t[p] = da * L.gamma[p];
  }
  for (int64_t q = 0; q < L.g; ++q) {
    float* c = t + q * co;
    const float* x = xh + q * co;
    float s1 = 0.0f, s2 = 0.0f;
    for (int64_t i = 0; i < co; ++i) s1 += c[i], s2 += c[i] * x[i];
    const float m1 = s1 / static_cast<float>(co), m2 = s2 / static_cast<float>(co), r = rs[q];
    for (int64_t i = 0; i < co; ++i) {
      c[i] = r * (c[i] - m1 - x[i] * m2);
      dbias[q * co + i] += c[i];
    }
  }
  for (int64_t p = 0; p < n; ++p) dy[L.col[p]] = t[p];
}

// ---- row kernels, AVX2 + FMA -------------------------------------------------------------------

LOOM_TARGET_AVX2 inline __m256i tail_mask(int64_t n) {  // first n (0..8) lanes on
  alignas(32) static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - n));
}

LOOM_TARGET_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

// e^x: nn/simd_exp.h (Cephes expf, |x| clamped to the float range; relative error ~1e-7).
LOOM_TARGET_AVX2 inline __m256 exp256(__m256 x) { return exp_avx2(x); }

LOOM_TARGET_AVX2 inline __m256 sigmoid256(__m256 a) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), a))));
}

// 8 keep flags (only the first n read) -> 0 or scale.
LOOM_TARGET_AVX2 inline __m256 keep_scale(const uint8_t* keep, int64_t n, float scale) {
  __m128i b;
  if (n >= 8) {
    b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(keep));
  } else {
    alignas(16) uint8_t buf[16] = {0};
    std::memcpy(buf, keep, static_cast<size_t>(n));
    b = _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
  }
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), _mm256_set1_ps(scale));
}

LOOM_TARGET_AVX2 inline __m256 load(const float* p, int64_t n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(n));
}
LOOM_TARGET_AVX2 inline void store(float* p, __m256 v, int64_t n) {
  if (n >= 8) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, tail_mask(n), v);
}

// z [out] (output order) = y[col] + bias: the feature shuffle as 2x8 / 4x8 register transposes for
// g = 2 and 4 (channels j0..j0+7 of every group -> positions 8g contiguous), scalar otherwise and
// for the last co % 8 channels.
LOOM_TARGET_AVX2 void gather_row_avx2(const Layout& L, const float* y, float* z) {
  const int64_t co = L.co, g = L.g;
  const float* b = L.bias.data();
  int64_t j0 = 0;
  if (!L.shuffled) {
    for (int64_t p = 0; p < L.out; p += 8) store(z + p, _mm256_add_ps(load(y + p, L.out - p), load(b + p, L.out - p)), L.out - p);
    return;
  }
  if (g == 2) {
    for (; j0 + 8 <= co; j0 += 8) {
      const __m256 a = _mm256_loadu_ps(y + j0), c = _mm256_loadu_ps(y + co + j0);
      const __m256 lo = _mm256_unpacklo_ps(a, c), hi = _mm256_unpackhi_ps(a, c);
      const int64_t p = 2 * j0;
      _mm256_storeu_ps(z + p, _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_loadu_ps(b + p)));
      _mm256_storeu_ps(z + p + 8, _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x31), _mm256_loadu_ps(b + p + 8)));
    }
  } else if (g == 4) {
    for (; j0 + 8 <= co; j0 += 8) {
      const __m256 a = _mm256_loadu_ps(y + j0), c = _mm256_loadu_ps(y + co + j0);
      const __m256 d = _mm256_loadu_ps(y + 2 * co + j0), e = _mm256_loadu_ps(y + 3 * co + j0);
      const __m256 t0 = _mm256_unpacklo_ps(a, c), t1 = _mm256_unpackhi_ps(a, c);
      const __m256 t2 = _mm256_unpacklo_ps(d, e), t3 = _mm256_unpackhi_ps(d, e);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const int64_t p = 4 * j0;
      _mm256_storeu_ps(z + p, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_loadu_ps(b + p)));
      _mm256_storeu_ps(z + p + 8, _mm256_add_ps(_mm256_permute2f128_ps(u2, u3, 0x20), _mm256_loadu_ps(b + p + 8)));
      _mm256_storeu_ps(z + p + 16, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x31), _mm256_loadu_ps(b + p + 16)));
      _mm256_storeu_ps(z + p + 24, _mm256_add_ps(_mm256_permute2f128_ps(u2, u3, 0x31), _mm256_loadu_ps(b + p + 24)));
    }
  }
  for (int64_t p = j0 * g; p < L.out; ++p) z[p] = y[L.col[p]] + b[p];
}

// dy[col[p]] = t[p]: the inverse of gather_row_avx2's shuffle (without the bias).
LOOM_TARGET_AVX2 void scatter_row_avx2(const Layout& L, const float* t, float* dy) {
  const int64_t co = L.co, g = L.g;
  int64_t j0 = 0;
  if (!L.shuffled) {
    for (int64_t p = 0; p < L.out; p += 8) store(dy + p, load(t + p, L.out - p), L.out - p);
    return;
  }
  if (g == 2) {
    for (; j0 + 8 <= co; j0 += 8) {
      const __m256 o0 = _mm256_loadu_ps(t + 2 * j0), o1 = _mm256_loadu_ps(t + 2 * j0 + 8);
      const __m256 a = _mm256_shuffle_ps(o0, o1, 0x88), c = _mm256_shuffle_ps(o0, o1, 0xDD);  // 64-bit chunks 0 2 1 3
      _mm256_storeu_ps(dy + j0, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(a), 0xD8)));
      _mm256_storeu_ps(dy + co + j0, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(c), 0xD8)));
    }
  } else if (g == 4) {
    for (; j0 + 8 <= co; j0 += 8) {
      const float* s = t + 4 * j0;
      const __m256 o0 = _mm256_loadu_ps(s), o1 = _mm256_loadu_ps(s + 8), o2 = _mm256_loadu_ps(s + 16), o3 = _mm256_loadu_ps(s + 24);
      const __m256 u0 = _mm256_permute2f128_ps(o0, o2, 0x20), u1 = _mm256_permute2f128_ps(o0, o2, 0x31);
      const __m256 u2 = _mm256_permute2f128_ps(o1, o3, 0x20), u3 = _mm256_permute2f128_ps(o1, o3, 0x31);
      const __m256 t0 = _mm256_unpacklo_ps(u0, u1), t1 = _mm256_unpackhi_ps(u0, u1);
      const __m256 t2 = _mm256_unpacklo_ps(u2, u3), t3 = _mm256_unpackhi_ps(u2, u3);
      _mm256_storeu_ps(dy + j0, _mm256_shuffle_ps(t0, t2, 0x44));
      _mm256_storeu_ps(dy + co + j0, _mm256_shuffle_ps(t0, t2, 0xEE));
      _mm256_storeu_ps(dy + 2 * co + j0, _mm256_shuffle_ps(t1, t3, 0x44));
      _mm256_storeu_ps(dy + 3 * co + j0, _mm256_shuffle_ps(t1, t3, 0xEE));
    }
  }
  for (int64_t p = j0 * g; p < L.out; ++p) dy[L.col[p]] = t[p];
}

LOOM_TARGET_AVX2 void forward_row_avx2(const Layout& L, const float* y, float* xh, float* rs, const uint8_t* keep,
                                       float* out) {
  const int64_t n = L.out, co = L.co;
  gather_row_avx2(L, y, xh);
  const float inv = 1.0f / static_cast<float>(co);
  for (int64_t q = 0; q < L.g; ++q) {
    float* c = xh + q * co;
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < co; i += 8) s = _mm256_add_ps(s, load(c + i, co - i));
    const __m256 mean = _mm256_set1_ps(hsum(s) * inv);
    __m256 ss = _mm256_setzero_ps();
    for (int64_t i = 0; i < co; i += 8) {
      const __m256 dv = _mm256_and_ps(_mm256_sub_ps(load(c + i, co - i), mean),
                                      _mm256_castsi256_ps(tail_mask(std::min<int64_t>(co - i, 8))));
      ss = _mm256_fmadd_ps(dv, dv, ss);
    }
    const float r = 1.0f / std::sqrt(hsum(ss) * inv + L.eps);
    const __m256 rv = _mm256_set1_ps(r);
    for (int64_t i = 0; i < co; i += 8) store(c + i, _mm256_mul_ps(_mm256_sub_ps(load(c + i, co - i), mean), rv), co - i);
    rs[q] = r;
  }
  const bool silu = L.act == Activation::kSilu;
  for (int64_t p = 0; p < n; p += 8) {
    const int64_t k = n - p;
    const __m256 a = _mm256_fmadd_ps(load(L.gamma.data() + p, k), load(xh + p, k), load(L.beta.data() + p, k));
    __m256 h = silu ? _mm256_mul_ps(a, sigmoid256(a)) : _mm256_max_ps(a, _mm256_setzero_ps());
    if (L.drop) h = _mm256_mul_ps(h, keep_scale(keep + p, k, L.scale));
    store(out + p, h, k);
  }
}

LOOM_TARGET_AVX2 void backward_row_avx2(const Layout& L, const float* dh, const float* xh, const float* rs,
                                        const uint8_t* keep, float* dy, float* dg, float* db, float* dbias, float* t) {
  const int64_t n = L.out, co = L.co;
  const bool silu = L.act == Activation::kSilu;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t p = 0; p < n; p += 8) {
    const int64_t k = n - p;
    __m256 d = load(dh + p, k);
    if (L.drop) d = _mm256_mul_ps(d, keep_scale(keep + p, k, L.scale));
    const __m256 x = load(xh + p, k), gm = load(L.gamma.data() + p, k);
    const __m256 a = _mm256_fmadd_ps(gm, x, load(L.beta.data() + p, k));
    __m256 da;
    if (silu) {
      const __m256 s = sigmoid256(a);
      da = _mm256_mul_ps(_mm256_mul_ps(d, s), _mm256_fmadd_ps(a, _mm256_sub_ps(one, s), one));
    } else {
      da = _mm256_and_ps(d, _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ));
    }
    store(dg + p, _mm256_fmadd_ps(da, x, load(dg + p, k)), k);
    store(db + p, _mm256_add_ps(da, load(db + p, k)), k);
    store(t + p, _mm256_mul_ps(da, gm), k);
  }
  const float inv = 1.0f / static_cast<float>(co);
  for (int64_t q = 0; q < L.g; ++q) {
    float* c = t + q * co;
    const float* x = xh + q * co;
    float* bq = dbias + q * co;
    __m256 s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();
    for (int64_t i = 0; i < co; i += 8) {
      const __m256 cv = load(c + i, co - i);  // masked lanes load 0
      s1 = _mm256_add_ps(s1, cv);
      s2 = _mm256_fmadd_ps(cv, load(x + i, co - i), s2);
    }
    const __m256 m1 = _mm256_set1_ps(hsum(s1) * inv), m2 = _mm256_set1_ps(hsum(s2) * inv), r = _mm256_set1_ps(rs[q]);
    for (int64_t i = 0; i < co; i += 8) {
      const int64_t k = co - i;
      const __m256 dz = _mm256_mul_ps(r, _mm256_fnmadd_ps(load(x + i, k), m2, _mm256_sub_ps(load(c + i, k), m1)));
      store(c + i, dz, k);
      store(bq + i, _mm256_add_ps(dz, load(bq + i, k)), k);
    }
  }
  scatter_row_avx2(L, t, dy);
}

// ---- the layer ------------------------------------------------------------------------------------

void check_sgemm(int status) { TORCH_CHECK(status == 0, "dnnl_sgemm failed with status ", status); }

// y [M, out] (group-major columns k·co + j) = mix(x0, x1) · W per group: group k's input is
// [x0[:, k·a : (k+1)·a], x1[:, k·b : (k+1)·b]] (a = in0/g, b = in1/g), so its product is two sgemm
// calls on strided slices, the second one accumulating (dense: [x0, x1]·Wᵀ, the same split).
torch::Tensor product(const Layout& L, const torch::Tensor& x0, const torch::Tensor& x1, const torch::Tensor& w) {
  torch::Tensor y = torch::empty({L.m, L.out}, x0.options());
  const float* p0 = x0.data_ptr<float>();
  const float* p1 = L.in1 > 0 ? x1.data_ptr<float>() : nullptr;
  const float* pw = w.data_ptr<float>();
  float* py = y.data_ptr<float>();
  if (L.m == 0) return y;
  RECORD_FUNCTION(L.dense ? "loom::dextra_dense_gemm" : "loom::dextra_glt_gemm", std::vector<c10::IValue>());
  SgemmFn gemm = onednn_sgemm();
  if (L.dense) {
    check_sgemm(gemm('N', 'T', L.m, L.out, L.in0, 1.0f, p0, L.in0, pw, L.in, 0.0f, py, L.out));
    if (L.in1 > 0) check_sgemm(gemm('N', 'T', L.m, L.out, L.in1, 1.0f, p1, L.in1, pw + L.in0, L.in, 1.0f, py, L.out));
  } else {
    const int64_t a = L.in0 / L.g, b = L.in1 / L.g;
    for (int64_t k = 0; k < L.g; ++k) {
      const float* wk = pw + k * L.ci * L.co;  // [ci, co]: a rows for x0, then b rows for x1
      check_sgemm(gemm('N', 'N', L.m, L.co, a, 1.0f, p0 + k * a, L.in0, wk, L.co, 0.0f, py + k * L.co, L.out));
      if (b > 0) {
        check_sgemm(gemm('N', 'N', L.m, L.co, b, 1.0f, p1 + k * b, L.in1, wk + a * L.co, L.co, 1.0f, py + k * L.co, L.out));
      }
    }
  }
  return y;
}

// Rows per parallel task: about 32k output elements.
int64_t grain_rows(const Layout& L) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(L.out, 1)); }

// Forward of M rows. With save: xh [M, out], rs [M, g] and (dropout) keep [M, out] are returned for
// the backward pass; without, they live in per-task scratch rows.
torch::Tensor forward_rows(const Layout& L, const torch::Tensor& y, bool save, torch::Tensor* xh_out,
                           torch::Tensor* rs_out, torch::Tensor* keep_out) {
  torch::Tensor out = torch::empty({L.m, L.out}, y.options());
  torch::Tensor xh, rs, keep;
  if (save) {
    xh = torch::empty({L.m, L.out}, y.options());
    rs = torch::empty({L.m, L.g}, y.options());
    if (L.drop) keep = torch::empty({L.m, L.out}, y.options().dtype(torch::kUInt8));
  }
  const float* py = y.data_ptr<float>();
  float* po = out.data_ptr<float>();
  float* pxh = save ? xh.data_ptr<float>() : nullptr;
  float* prs = save ? rs.data_ptr<float>() : nullptr;
  uint8_t* pk = save && L.drop ? keep.data_ptr<uint8_t>() : nullptr;
  const bool avx2 = has_avx2();
  RECORD_FUNCTION("loom::dextra_rows", std::vector<c10::IValue>());
  at::parallel_for(0, L.m, grain_rows(L), [&](int64_t r0, int64_t r1) {
    std::vector<float> sx(save ? 0 : L.out), sr(save ? 0 : L.g);
    std::vector<uint8_t> sk(save || !L.drop ? 0 : L.out);
    for (int64_t r = r0; r < r1; ++r) {
      float* x = save ? pxh + r * L.out : sx.data();
      float* s = save ? prs + r * L.g : sr.data();
      uint8_t* k = L.drop ? (save ? pk + r * L.out : sk.data()) : nullptr;
      if (L.drop) delight_keep_flags(L.seed, L.threshold, r * L.out, L.out, k);
      if (avx2) forward_row_avx2(L, py + r * L.out, x, s, k, po + r * L.out);
      else forward_row(L, py + r * L.out, x, s, k, po + r * L.out);
    }
  });
  if (save) *xh_out = xh, *rs_out = rs, *keep_out = keep;
  return out;
}

Layout layout_for(const torch::Tensor& x0, const torch::Tensor& x1, const torch::Tensor& w, const torch::Tensor& bias,
                  const torch::Tensor& ln_w, const torch::Tensor& ln_b, int64_t groups, bool shuffle, Activation act,
                  double eps, double dropout) {
  const bool dense = w.dim() == 2;
  const int64_t in = x0.size(1) + x1.size(1), out = dense ? w.size(0) : groups * w.size(2);
  Layout L = make_layout(x0.size(0), in, out, groups, shuffle, dense, act, eps, bias, ln_w, ln_b);
  L.in0 = x0.size(1), L.in1 = x1.size(1);
  if (dropout > 0.0) {
    L.drop = true;
    L.seed = delight_dropout_seed();
    L.threshold = delight_drop_threshold(dropout);
    L.scale = static_cast<float>(1.0 / (1.0 - dropout));
  }
  return L;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct DExTraLayerFn : public torch::autograd::Function<DExTraLayerFn> {
  // x0 [M, in0], x1 [M, in1] (in1 may be 0) contiguous; the rest as dextra_layer_mixed().
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x0, const torch::Tensor& x1,
                               const torch::Tensor& w, const torch::Tensor& bias, const torch::Tensor& ln_w,
                               const torch::Tensor& ln_b, int64_t groups, bool shuffle, int64_t act, double eps,
                               double dropout) {
    Layout L = layout_for(x0, x1, w, bias, ln_w, ln_b, groups, shuffle, static_cast<Activation>(act), eps, dropout);
    torch::Tensor xh, rs, keep;
    torch::Tensor out = forward_rows(L, product(L, x0, x1, w), true, &xh, &rs, &keep);
    ctx->save_for_backward({x0, x1, w, bias, ln_w, ln_b, xh, rs, keep});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["shuffle"] = shuffle;
    ctx->saved_data["act"] = act;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["drop"] = L.drop;
    ctx->saved_data["dropout"] = dropout;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor &x0 = saved[0], &x1 = saved[1], &w = saved[2], &bias = saved[3], &ln_w = saved[4];
    const torch::Tensor &ln_b = saved[5], &xh = saved[6], &rs = saved[7], &keep = saved[8];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    Layout L = make_layout(x0.size(0), x0.size(1) + x1.size(1), xh.size(1), groups, ctx->saved_data["shuffle"].toBool(), w.dim() == 2,
                           static_cast<Activation>(ctx->saved_data["act"].toInt()), ctx->saved_data["eps"].toDouble(),
                           bias, ln_w, ln_b);
    L.in0 = x0.size(1), L.in1 = x1.size(1);
    L.drop = ctx->saved_data["drop"].toBool();
    if (L.drop) L.scale = static_cast<float>(1.0 / (1.0 - ctx->saved_data["dropout"].toDouble()));
    torch::Tensor dh = grads[0].contiguous();  // [M, out]
    torch::Tensor dy = torch::empty({L.m, L.out}, dh.options());
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), L.m / grain_rows(L)));
    torch::Tensor acc = torch::zeros({blocks, 3, L.out}, dh.options());  // per block: dγ, dβ, dbias (output order)
    const float* pdh = dh.data_ptr<float>();
    const float* pxh = xh.data_ptr<float>();
    const float* prs = rs.data_ptr<float>();
    const uint8_t* pk = L.drop ? keep.data_ptr<uint8_t>() : nullptr;
    float* pdy = dy.data_ptr<float>();
    float* pacc = acc.data_ptr<float>();
    const bool avx2 = has_avx2();
    RECORD_FUNCTION("loom::dextra_rows_backward", std::vector<c10::IValue>());
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> t(L.out);
      for (int64_t b = b0; b < b1; ++b) {
        float* a = pacc + b * 3 * L.out;
        for (int64_t r = L.m * b / blocks; r < L.m * (b + 1) / blocks; ++r) {
          const int64_t o = r * L.out;
          const uint8_t* k = L.drop ? pk + o : nullptr;
          if (avx2) backward_row_avx2(L, pdh + o, pxh + o, prs + r * L.g, k, pdy + o, a, a + L.out, a + 2 * L.out, t.data());
          else backward_row(L, pdh + o, pxh + o, prs + r * L.g, k, pdy + o, a, a + L.out, a + 2 * L.out, t.data());
        }
      }
    });
    torch::Tensor sums = acc.sum(0);                                          // [3, out]
    torch::Tensor d_lnw = sums[0].view({L.g, L.co}).sum(0);                   // [co]
    torch::Tensor d_lnb = sums[1].view({L.g, L.co}).sum(0);                   // [co]
    torch::Tensor d_bias_p = sums[2].contiguous();                            // [out] output order
    torch::Tensor d_bias = torch::empty({L.out}, dh.options());              // [out] group-major
    for (int64_t p = 0; p < L.out; ++p) d_bias.data_ptr<float>()[L.col[p]] = d_bias_p.data_ptr<float>()[p];
    // products: dx = dy·Wᵀ, dW = xᵀ·dy (per group and input part)
    SgemmFn gemm = onednn_sgemm();
    const float* pw = w.data_ptr<float>();
    torch::Tensor dx0 = torch::empty({L.m, L.in0}, dh.options()), dx1 = torch::empty({L.m, L.in1}, dh.options());
    torch::Tensor dw = torch::empty(w.sizes(), dh.options());
    float* pdw = dw.data_ptr<float>();
    struct Part {
      const float* x;
      float* dx;
      int64_t width, offset;  // columns of this part; its first row of W_k (GLT) or column of W (dense)
    };
    std::vector<Part> parts;
    const int64_t a = L.in0 / L.g;
    if (L.in0 > 0) parts.push_back({x0.data_ptr<float>(), dx0.data_ptr<float>(), L.in0, 0});
    if (L.in1 > 0) parts.push_back({x1.data_ptr<float>(), dx1.data_ptr<float>(), L.in1, L.dense ? L.in0 : a});
    if (L.m == 0) {
      dw.zero_();
    } else if (L.dense) {
      RECORD_FUNCTION("loom::dextra_dense_gemm_backward", std::vector<c10::IValue>());
      for (const Part& q : parts) {
        check_sgemm(gemm('N', 'N', L.m, q.width, L.out, 1.0f, pdy, L.out, pw + q.offset, L.in, 0.0f, q.dx, q.width));
        check_sgemm(gemm('T', 'N', L.out, q.width, L.m, 1.0f, pdy, L.out, q.x, q.width, 0.0f, pdw + q.offset, L.in));
      }
    } else {
      {
        RECORD_FUNCTION("loom::dextra_glt_gemm_backward_input", std::vector<c10::IValue>());
        for (int64_t k = 0; k < L.g; ++k) {
          for (const Part& q : parts) {
            const int64_t wg = q.width / L.g;
            check_sgemm(gemm('N', 'T', L.m, wg, L.co, 1.0f, pdy + k * L.co, L.out, pw + (k * L.ci + q.offset) * L.co, L.co,
                             0.0f, q.dx + k * wg, q.width));
          }
        }
      }
      RECORD_FUNCTION("loom::dextra_glt_gemm_backward_weight", std::vector<c10::IValue>());
      for (int64_t k = 0; k < L.g; ++k) {
        for (const Part& q : parts) {
          const int64_t wg = q.width / L.g;
          check_sgemm(gemm('T', 'N', wg, L.co, L.m, 1.0f, q.x + k * wg, q.width, pdy + k * L.co, L.out, 0.0f,
                           pdw + (k * L.ci + q.offset) * L.co, L.co));
        }
      }
    }
    return {dx0, dx1, dw, d_bias.view(bias.sizes()), d_lnw, d_lnb,
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

void dextra_layer_allow_avx2(bool allow) { g_allow_avx2.store(allow, std::memory_order_relaxed); }

bool dextra_layer_supported(const torch::Tensor& x, const torch::Tensor& weight, Activation act, double dropout) {
  return onednn_sgemm() != nullptr && x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32 &&
         x.device().is_cpu() && weight.device().is_cpu() && (act == Activation::kSilu || act == Activation::kRelu) &&
         dropout >= 0.0 && dropout < 1.0;
}

torch::Tensor dextra_layer_mixed(const torch::Tensor& x0, const torch::Tensor& y, const torch::Tensor& weight,
                                 const torch::Tensor& bias, const torch::Tensor& ln_weight, const torch::Tensor& ln_bias,
                                 int64_t groups, bool shuffle, Activation act, double eps, double dropout) {
  if (!dextra_layer_supported(x0, weight, act, dropout) || (y.defined() && y.scalar_type() != torch::kFloat32) ||
      (y.defined() && !y.device().is_cpu())) {
    fail("dextra_layer: needs float32 CPU tensors, silu or relu, dropout in [0, 1) and oneDNN sgemm");
  }
  const bool dense = weight.dim() == 2;
  if (!(dense || weight.dim() == 3) || groups < 1 || (dense && groups != 1) || (!dense && weight.size(0) != groups)) {
    fail("dextra_layer: weight of shape [{}] does not fit {} groups", fmt::join(weight.sizes(), ", "), groups);
  }
  const int64_t in = dense ? weight.size(1) : groups * weight.size(1);
  const int64_t out = dense ? weight.size(0) : groups * weight.size(2);
  if (x0.dim() < 1) fail("dextra_layer: the input has no feature dimension");
  const int64_t in0 = x0.size(-1), in1 = y.defined() ? y.size(-1) : 0;
  if (in0 + in1 != in) fail("dextra_layer: inputs have {} + {} features, the weight expects {}", in0, in1, in);
  if (in0 % groups != 0 || in1 % groups != 0) fail("dextra_layer: {} + {} features do not split into {} groups", in0, in1, groups);
  if (y.defined() && y.sizes().slice(0, y.dim() - 1) != x0.sizes().slice(0, x0.dim() - 1)) {
    fail("dextra_layer: the two inputs have different leading shapes");
  }
  if (!bias.defined() || bias.numel() != out || ln_weight.numel() != out / groups || ln_bias.numel() != out / groups) {
    fail("dextra_layer: bias needs {} and the LayerNorm affine {} elements", out, out / groups);
  }
  std::vector<int64_t> shape = x0.sizes().vec();
  shape.back() = out;
  torch::Tensor a = x0.reshape({-1, in0}).contiguous();                                              // [M, in0]
  torch::Tensor b = y.defined() ? y.reshape({-1, in1}).contiguous() : torch::empty({a.size(0), 0}, a.options());  // [M, in1]
  torch::Tensor w = weight.contiguous();
  const bool grad = torch::GradMode::is_enabled() &&
                    (x0.requires_grad() || (y.defined() && y.requires_grad()) || weight.requires_grad() ||
                     bias.requires_grad() || ln_weight.requires_grad() || ln_bias.requires_grad());
  torch::Tensor out_t;
  if (grad) {
    out_t = DExTraLayerFn::apply(a, b, w, bias, ln_weight, ln_bias, groups, shuffle, static_cast<int64_t>(act), eps, dropout);
  } else {
    torch::NoGradGuard ng;
    Layout L = layout_for(a, b, w, bias, ln_weight, ln_bias, groups, shuffle, act, eps, dropout);
    out_t = forward_rows(L, product(L, a, b, w), false, nullptr, nullptr, nullptr);
  }
  return out_t.view(shape);  // [..., out]
}

torch::Tensor dextra_layer(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                           const torch::Tensor& ln_weight, const torch::Tensor& ln_bias, int64_t groups, bool shuffle,
                           Activation act, double eps, double dropout) {
  return dextra_layer_mixed(x, torch::Tensor(), weight, bias, ln_weight, ln_bias, groups, shuffle, act, eps, dropout);
}

}  // namespace loom::nn
