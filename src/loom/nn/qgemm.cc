#include "loom/nn/qgemm.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "loom/core/error.h"
#include "loom/nn/gemv.h"
#include "loom/nn/int8_rows.h"

#define LOOM_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace loom::nn {
namespace {

constexpr int kMr = 4;  // rows per tile: 4 × 2 int32 accumulators + 2 weight + 1 activation registers. 6 rows
                        // need all 16 vector registers (GCC 12 then keeps some on the stack) and were
                        // slower with small groups in a standalone copy of the loop (measured while a
                        // build shared the cores, so only as a direction)

// xq[m, 0..pairs·2) = round(x[m, k] · (32767 / amax_m)) (zero past K), a[m] = amax_m / 32767 with
// amax_m = max_k |x[m, k]|. A row with a NaN or infinity gets a[m] = NaN (its outputs are NaN, as
// a float32 product's would be); a row whose amax is zero or so small that 32767 / amax overflows
// (below ~1e-34) is all zeros with a[m] = 0.
LOOM_TARGET_AVX2 void quantize_rows(const float* x, int64_t M, int64_t K, int64_t Kp, int16_t* xq, float* a) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lo = _mm256_set1_epi32(-32767), hi = _mm256_set1_epi32(32767);
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * K;
    int16_t* out = xq + m * Kp;
    __m256 vmax = _mm256_setzero_ps(), vbad = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      const __m256 v = _mm256_and_ps(_mm256_loadu_ps(row + k), abs_mask);
      vbad = _mm256_or_ps(vbad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));  // NaN (max_ps would drop it)
      vmax = _mm256_max_ps(vmax, v);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float amax = 0.0f;
    for (float v : lanes) amax = std::max(amax, v);
    bool finite = _mm256_movemask_ps(vbad) == 0;
    for (; k < K; ++k) {
      finite = finite && std::isfinite(row[k]);
      amax = std::max(amax, std::fabs(row[k]));
    }
    finite = finite && std::isfinite(amax);
    const float inv = finite && amax > 0.0f ? 32767.0f / amax : 0.0f;
    if (!finite || !std::isfinite(inv)) {
      a[m] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
      std::fill(out, out + Kp, int16_t{0});
      continue;
    }
    a[m] = amax > 0.0f ? amax / 32767.0f : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    k = 0;
    for (; k + 16 <= K; k += 16) {
      // cvtps rounds to nearest even (the default MXCSR mode), as std::nearbyint below.
      __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row + k), vinv));
      __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row + k + 8), vinv));
      v0 = _mm256_min_epi32(_mm256_max_epi32(v0, lo), hi);
      v1 = _mm256_min_epi32(_mm256_max_epi32(v1, lo), hi);
      // packs works within 128-bit lanes: [v0.lo v1.lo v0.hi v1.hi] -> reorder the 64-bit quarters.
      const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), p);
    }
    for (; k < K; ++k) {
      const float q = std::nearbyint(row[k] * inv);
      out[k] = static_cast<int16_t>(std::min(32767.0f, std::max(-32767.0f, q)));
    }
    for (; k < Kp; ++k) out[k] = 0;
  }
}

// One tile: rows [0, MR) of xq (row stride ldx int16) times one panel (pairs × 32 bytes), group
// sums scaled by the panel's group scales S[g·ld_s + 0..15] and summed into out[MR][16] (float32).
// The 2·MR int32 accumulators are named variables (GCC keeps arrays of them on the stack);
// the float32 sums live in `out` (L1), touched once per group.
#define LOOM_QGEMM_ROW(m)                                                    \
  if constexpr (MR > m) {                                                   \
    int32_t pair;                                                           \
    std::memcpy(&pair, xq + m * ldx + 2 * t, 4);                            \
    const __m256i av = _mm256_set1_epi32(pair);                             \
    c##m##0 = _mm256_add_epi32(c##m##0, _mm256_madd_epi16(av, b0));         \
    c##m##1 = _mm256_add_epi32(c##m##1, _mm256_madd_epi16(av, b1));         \
  }
#define LOOM_QGEMM_FOLD(m)                                                                               \
  if constexpr (MR > m) {                                                                               \
    float* o = out + m * 16;                                                                            \
    _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_cvtepi32_ps(c##m##0), s0, _mm256_loadu_ps(o)));          \
    _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(c##m##1), s1, _mm256_loadu_ps(o + 8)));  \
  }
// An empty asm that takes the accumulators in vector registers: without it GCC 12 keeps some of
// them on the stack inside the loop.
#define LOOM_QGEMM_PIN(m) \
  if constexpr (MR > m) asm("" : "+x"(c##m##0), "+x"(c##m##1));
template <int MR>
LOOM_TARGET_AVX2 void tile(const int16_t* xq, int64_t ldx, const int8_t* panel, int64_t pairs, int64_t group_pairs,
                           const float* S, int64_t ld_s, float* out) {
  for (int i = 0; i < MR * 16; i += 8) _mm256_storeu_ps(out + i, _mm256_setzero_ps());
  for (int64_t t0 = 0, g = 0; t0 < pairs; t0 += group_pairs, ++g) {
    const int64_t t1 = std::min(pairs, t0 + group_pairs);
    const __m256i z = _mm256_setzero_si256();
    [[maybe_unused]] __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
    const int8_t* p = panel + t0 * 32;
    for (int64_t t = t0; t < t1; ++t, p += 32) {
      const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
      LOOM_QGEMM_ROW(0)
      LOOM_QGEMM_ROW(1)
      LOOM_QGEMM_ROW(2)
      LOOM_QGEMM_ROW(3)
      LOOM_QGEMM_PIN(0)
      LOOM_QGEMM_PIN(1)
      LOOM_QGEMM_PIN(2)
      LOOM_QGEMM_PIN(3)
    }
    const __m256 s0 = _mm256_loadu_ps(S + g * ld_s), s1 = _mm256_loadu_ps(S + g * ld_s + 8);
    LOOM_QGEMM_FOLD(0)
    LOOM_QGEMM_FOLD(1)
    LOOM_QGEMM_FOLD(2)
    LOOM_QGEMM_FOLD(3)
  }
}
#undef LOOM_QGEMM_ROW
#undef LOOM_QGEMM_FOLD
#undef LOOM_QGEMM_PIN
static_assert(kMr == 4, "tile() names 4 rows of accumulators");

// y rows [0, mr) (row stride ldy), columns [0, nb): out · a_m (+ bias), 16 columns as two vectors.
LOOM_TARGET_AVX2 void store_tile(const float* out, int mr, int64_t nb, const float* a, const float* bias, float* y,
                                 int64_t ldy) {
  for (int r = 0; r < mr; ++r) {
    const float* o = out + r * 16;
    float* yr = y + r * ldy;
    if (nb == 16) {
      const __m256 am = _mm256_set1_ps(a[r]);
      __m256 y0 = _mm256_mul_ps(_mm256_loadu_ps(o), am), y1 = _mm256_mul_ps(_mm256_loadu_ps(o + 8), am);
      if (bias != nullptr) {
        y0 = _mm256_add_ps(y0, _mm256_loadu_ps(bias));
        y1 = _mm256_add_ps(y1, _mm256_loadu_ps(bias + 8));
      }
      _mm256_storeu_ps(yr, y0);
      _mm256_storeu_ps(yr + 8, y1);
    } else {  // the last panel: the same operations (a multiply, then an add; no FMA), column by column
      const __m128 am = _mm_set_ss(a[r]);
      for (int64_t j = 0; j < nb; ++j) {
        __m128 v = _mm_mul_ss(_mm_set_ss(o[j]), am);
        if (bias != nullptr) v = _mm_add_ss(v, _mm_set_ss(bias[j]));
        yr[j] = _mm_cvtss_f32(v);
      }
    }
  }
}

using TileFn = void (*)(const int16_t*, int64_t, const int8_t*, int64_t, int64_t, const float*, int64_t, float*);
constexpr TileFn kTiles[kMr + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> quantize_int8_rows(const torch::Tensor& w) {
  torch::Tensor amax = std::get<0>(w.abs().max(1));                                        // [R]
  torch::Tensor div = torch::where(amax > 0, amax / 127.0f, torch::ones_like(amax));      // all-zero row: q = 0
  torch::Tensor q = torch::round(w / div.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8);  // [R, C]
  return {q, torch::where(amax > 0, div, torch::zeros_like(div))};
}

bool Int8PanelWeight::supported() { return gemv_default_isa() != GemvIsa::kPortable; }

Int8PanelWeight::Int8PanelWeight(const torch::Tensor& weight, int64_t group,
                                 const std::function<void(int64_t, int64_t)>& rows_read) {
  torch::NoGradGuard no_grad;
  if (!weight.defined() || weight.dim() != 2) fail("Int8PanelWeight: weight must be a 2-D tensor [out, in]");
  if (group < 2 || group > kMaxGroup || group % 2 != 0)
    fail("Int8PanelWeight: group size {} must be even and in [2, {}]", group, kMaxGroup);
  N_ = weight.size(0);
  K_ = weight.size(1);
  G_ = group;
  pairs_ = (K_ + 1) / 2;
  n_panels_ = (N_ + kPanel - 1) / kPanel;
  groups_ = (K_ + G_ - 1) / G_;
  panels_ = torch::zeros({n_panels_, pairs_, 2 * kPanel}, torch::kInt8);
  scale_ = torch::zeros({groups_, n_panels_ * kPanel}, torch::kFloat32);
  int8_t* P = panels_.data_ptr<int8_t>();
  float* S = scale_.data_ptr<float>();
  const int64_t ld_s = n_panels_ * kPanel;
  // Blocks of whole panels (~4 MB of float32 each).
  const int64_t rows = std::max<int64_t>(kPanel, ((int64_t{1} << 20) / std::max<int64_t>(1, K_)) / kPanel * kPanel);
  for (int64_t n0 = 0; n0 < N_; n0 += rows) {
    const int64_t nb = std::min(rows, N_ - n0);
    torch::Tensor w = weight.narrow(0, n0, nb).to(torch::kFloat32).contiguous();  // [nb, K]
    if (!torch::isfinite(w).all().item<bool>()) {
      const int64_t row = torch::nonzero(~torch::isfinite(w).all(1))[0][0].item<int64_t>();
      fail("Int8PanelWeight: row {} of the weight has a NaN or infinite value (cannot be quantized)", n0 + row);
    }
    torch::Tensor q = torch::empty({nb, K_}, torch::kInt8);
    for (int64_t g = 0; g < groups_; ++g) {
      const int64_t k0 = g * G_, kb = std::min(G_, K_ - k0);
      auto [qg, s] = quantize_int8_rows(w.narrow(1, k0, kb));  // [nb, kb], [nb]
      q.narrow(1, k0, kb).copy_(qg);
      std::memcpy(S + g * ld_s + n0, s.data_ptr<float>(), static_cast<size_t>(nb) * sizeof(float));
    }
    w = torch::Tensor();  // the float32 rows (a view of `weight` when it is float32) are done
    if (rows_read) rows_read(n0, nb);
    const int8_t* Q = q.data_ptr<int8_t>();
    for (int64_t r = 0; r < nb; ++r) {
      const int64_t n = n0 + r, p = n / kPanel, j = n % kPanel;
      int8_t* dst = P + p * pairs_ * 2 * kPanel + j * 2;
      for (int64_t k = 0; k < K_; ++k) dst[(k / 2) * 2 * kPanel + (k % 2)] = Q[r * K_ + k];
    }
  }
}

int64_t Int8PanelWeight::bytes() const {
  return panels_.defined() ? panels_.numel() + scale_.numel() * 4 : 0;
}

torch::Tensor Int8PanelWeight::dequantized() const {
  torch::Tensor w = torch::empty({N_, K_}, torch::kFloat32);
  const int8_t* P = panels_.data_ptr<int8_t>();
  const float* S = scale_.data_ptr<float>();
  float* W = w.data_ptr<float>();
  const int64_t ld_s = n_panels_ * kPanel;
  for (int64_t n = 0; n < N_; ++n) {
    const int8_t* src = P + (n / kPanel) * pairs_ * 2 * kPanel + (n % kPanel) * 2;
    for (int64_t k = 0; k < K_; ++k)
      W[n * K_ + k] = static_cast<float>(src[(k / 2) * 2 * kPanel + (k % 2)]) * S[(k / G_) * ld_s + n];
  }
  return w;
}

void Int8PanelWeight::forward(const float* x, int64_t M, float* y, int64_t ldy, const float* bias) const {
  if (!supported()) fail("Int8PanelWeight: this CPU has no AVX2");
  if (M <= 0 || N_ == 0) return;
  if (K_ == 0) {  // empty sums
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N_; ++n) y[m * ldy + n] = bias != nullptr ? bias[n] : 0.0f;
    return;
  }
  const int64_t Kp = 2 * pairs_;
  std::unique_ptr<int16_t[]> xq_buf(new int16_t[static_cast<size_t>(M * Kp)]);  // every element written below
  std::unique_ptr<float[]> a_buf(new float[static_cast<size_t>(M)]);
  int16_t* xq = xq_buf.get();
  float* a = a_buf.get();
  at::parallel_for(0, M, 16, [&](int64_t m0, int64_t m1) { quantize_rows(x + m0 * K_, m1 - m0, K_, Kp, xq + m0 * Kp, a + m0); });
  // Rows go in chunks whose int16 activations (~256 KB) stay in L2 while a thread's panels stream
  // past them; each thread owns a contiguous range of panels for all chunks.
  const int64_t chunk = std::max<int64_t>(kMr, ((int64_t{256} << 10) / (2 * Kp)) / kMr * kMr);
  const int64_t ld_s = n_panels_ * kPanel;
  const int64_t group_pairs = G_ / 2;
  const int64_t block = std::max<int64_t>(1, (int64_t{64} << 10) / (pairs_ * 2 * kPanel));  // panels per block
  const int8_t* P = panels_.data_ptr<int8_t>();
  const float* S = scale_.data_ptr<float>();
  at::parallel_for(0, n_panels_, 1, [&](int64_t p0, int64_t p1) {
    alignas(32) float out[kMr * kPanel];
    for (int64_t c0 = 0; c0 < M; c0 += chunk) {
      const int64_t c1 = std::min(M, c0 + chunk);
      // Panels in blocks (~64 KB of weights, in L2) with the rows inside: each row of y then gets
      // block-wide contiguous stores instead of 64 bytes per row of a large y per panel.
      for (int64_t q0 = p0; q0 < p1; q0 += block) {
        const int64_t q1 = std::min(p1, q0 + block);
        for (int64_t m0 = c0; m0 < c1; m0 += kMr) {
          const int mr = static_cast<int>(std::min<int64_t>(kMr, c1 - m0));
          for (int64_t p = q0; p < q1; ++p) {
            const int64_t n0 = p * kPanel, nb = std::min(kPanel, N_ - n0);
            kTiles[mr](xq + m0 * Kp, Kp, P + p * pairs_ * 2 * kPanel, pairs_, group_pairs, S + n0, ld_s, out);
            store_tile(out, mr, nb, a + m0, bias != nullptr ? bias + n0 : nullptr, y + m0 * ldy + n0, ldy);
          }
        }
      }
    }
  });
}

}  // namespace loom::nn
