#include "loom/nn/packed_linear.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "loom/core/error.h"
#include "loom/nn/gemv.h"
#include "loom/nn/int8_rows.h"
#include "loom/nn/sgemm.h"
#include "loom/nn/linear.h"

namespace loom::nn {
namespace {

// Without VNNI, oneDNN's u8·s8 GEMM sums pairs of products in int16 with saturation
// (vpmaddubsw), which the exact sums must not have: forward_low_precision then splits the
// activations into two saturation-free GEMMs.
bool has_vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
}

}  // namespace

Activations translation_activations(WeightType type) {
  if (type != WeightType::kInt8 || has_vnni()) return Activations::kLowPrecision;
  return Int8PanelWeight::supported() ? Activations::kInt16 : Activations::kFloat32;
}

WeightType auto_weight_type() {
  if (has_vnni()) return WeightType::kInt8;
  __builtin_cpu_init();
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
                           Activations activations, const std::function<void(int64_t, int64_t)>& rows_read)
    : type_(type),
      act_(type == WeightType::kFloat32                                             ? Activations::kFloat32
           : type == WeightType::kBFloat16 && activations == Activations::kInt16 ? Activations::kLowPrecision
                                                                                   : activations) {
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
      if (act_ == Activations::kInt16) {
        if (!Int8PanelWeight::supported()) act_ = Activations::kFloat32;  // no AVX2: weight-only below
        else {
          panels_ = Int8PanelWeight(weight, kInt16PathGroup, rows_read);
          break;
        }
      }
      // Row by row blocks, so a float32 copy of a large weight never exists at once. One scale
      // per row (weight-only) or per row and block of kInt8BlockSize columns (kLowPrecision).
      const int64_t N = weight.size(0), K = weight.size(1);
      const int64_t G = act_ == Activations::kLowPrecision ? kInt8BlockSize : std::max<int64_t>(1, K);
      const int64_t nblocks = (K + G - 1) / G;
      w_ = torch::empty({N, K}, torch::kInt8);
      scale_ = act_ == Activations::kLowPrecision ? torch::empty({nblocks, N}, torch::kFloat32)
                                                  : torch::empty({N}, torch::kFloat32);
      const int64_t rows = std::max<int64_t>(1, (int64_t{4} << 20) / std::max<int64_t>(1, K * 4));
      for (int64_t n0 = 0; n0 < N; n0 += rows) {
        const int64_t nb = std::min(rows, N - n0);
        auto w = weight.narrow(0, n0, nb).to(torch::kFloat32);  // [nb, K]
        for (int64_t j = 0; j < nblocks; ++j) {
          const int64_t k0 = j * G, kb = std::min(G, K - k0);
          auto [q, s] = quantize_int8_rows(w.narrow(1, k0, kb));  // [nb, kb], [nb]
          w_.narrow(0, n0, nb).narrow(1, k0, kb).copy_(q);
          if (scale_.dim() == 2) scale_[j].narrow(0, n0, nb).copy_(s);
          else scale_.narrow(0, n0, nb).copy_(s);
        }
      }
      break;
    }
  }
}

int64_t PackedLinear::bytes() const {
  int64_t n = w_.defined() ? w_.numel() * static_cast<int64_t>(w_.element_size()) : panels_.bytes();
  if (scale_.defined()) n += scale_.numel() * 4;
  if (bias_.defined()) n += bias_.numel() * 4;
  return n;
}

torch::Tensor PackedLinear::dequantized() const {
  if (panels_.defined()) return panels_.dequantized();
  if (type_ == WeightType::kFloat32) return w_;
  if (type_ == WeightType::kBFloat16) return w_.to(torch::kFloat32);
  if (scale_.dim() == 1) return w_.to(torch::kFloat32) * scale_.unsqueeze(1);
  // Block scales [nblocks, N]: column k of W has the scales of block k / kInt8BlockSize.
  const int64_t K = w_.size(1);
  return w_.to(torch::kFloat32) * scale_.t().repeat_interleave(kInt8BlockSize, 1).narrow(1, 0, K);
}

torch::Tensor PackedLinear::forward(const torch::Tensor& x) const {
  torch::NoGradGuard no_grad;
  const int64_t N = out_features(), K = in_features();
  if (x.size(-1) != K) fail("PackedLinear: input has {} features, weight expects {}", x.size(-1), K);
  // float32 weights: the gemv kernels for decoding steps, oneDNN's sgemm otherwise.
  if (type_ == WeightType::kFloat32 && (x.scalar_type() != torch::kFloat32 || x.numel() > kGemvMaxRows * K))
    return linear(x, w_, bias_);
  auto x2 = x.reshape({-1, K}).to(torch::kFloat32).contiguous();  // [M, K]
  const int64_t M = x2.size(0);
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = N;
  if (act_ == Activations::kLowPrecision) return forward_low_precision(x2).view(out_shape);
  torch::Tensor y = torch::empty({M, N}, torch::kFloat32);  // [M, N]
  if (M == 0 || N == 0) return y.view(out_shape);
  if (act_ == Activations::kInt16) {
    panels_.forward(x2.data_ptr<float>(), M, y.data_ptr<float>(), N, bias_.defined() ? bias_.data_ptr<float>() : nullptr);
    return y.view(out_shape);
  }
  if (M <= kGemvMaxRows) {
    const GemvIsa isa = gemv_active_isa();
    const void* W = w_.data_ptr();
    const float* X = x2.data_ptr<float>();
    float* Y = y.data_ptr<float>();
    const float* S = type_ == WeightType::kInt8 ? scale_.data_ptr<float>() : nullptr;
    at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) { gemv_rows(isa, type_, M, K, N, W, X, Y, n0, n1, S); });
    if (bias_.defined()) y.add_(bias_);
    return y.view(out_shape);
  }
  // Many rows (prompts, batched translation): float32 tiles of at most ~2 MB (in cache) through sgemm,
  // each thread dequantizing its own tiles and multiplying them single-threaded straight into
  // y's columns (sgemm with ldc = N onto the bias), so conversion and products both run in
  // parallel and no tile is allocated or copied per call.
  SgemmFn fn = onednn_sgemm();
  const int64_t by_cache = (int64_t{2} << 20) / std::max<int64_t>(1, K * 4);             // ~2 MB of float32
  const int64_t by_threads = (N + 2 * at::get_num_threads() - 1) / (2 * at::get_num_threads());  // >= 2 tiles a thread
  const int64_t tile = std::max<int64_t>(16, std::min(by_cache, by_threads));
  if (bias_.defined()) y.copy_(bias_.reshape({1, N}).expand({M, N}));
  const float beta = bias_.defined() ? 1.0f : 0.0f;
  if (fn == nullptr) {
    // libtorch's products (threaded themselves), tile by tile on this thread: tensor operations
    // must not run inside at::parallel_for (its workers lack this thread's InferenceMode).
    std::vector<float> wf(static_cast<size_t>(tile * K));
    for (int64_t n0 = 0; n0 < N; n0 += tile) {
      const int64_t nb = std::min(tile, N - n0);
      dequantize_rows(n0, nb, wf.data());  // [nb, K] float32
      torch::Tensor w = torch::from_blob(wf.data(), {nb, K}, torch::kFloat32);
      torch::Tensor part = torch::matmul(x2, w.t());  // [M, nb]
      if (beta == 0.0f) y.narrow(1, n0, nb).copy_(part);  // y is uninitialised without a bias
      else y.narrow(1, n0, nb).add_(part);
    }
    return y.view(out_shape);
  }
  const int64_t tiles = (N + tile - 1) / tile;
  std::atomic<int> failed{0};
  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> wf(static_cast<size_t>(tile * K));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * tile, nb = std::min(tile, N - n0);
      dequantize_rows(n0, nb, wf.data());  // [nb, K] float32
      const int status = fn('N', 'T', M, nb, K, 1.0f, x2.data_ptr<float>(), K, wf.data(), K, beta,
                            y.data_ptr<float>() + n0, N);
      if (status != 0) failed = status;
    }
  });
  TORCH_CHECK(failed.load() == 0, "dnnl_sgemm failed with status ", failed.load());
  return y.view(out_shape);
}

namespace {

// out[r, k] = q[r, k] · scale[r] for nb rows of K int8 values.
void dequantize_int8_portable(const int8_t* q, const float* scale, int64_t nb, int64_t K, float* out) {
  for (int64_t r = 0; r < nb; ++r) {
    const float s = scale[r];
    for (int64_t k = 0; k < K; ++k) out[r * K + k] = static_cast<float>(q[r * K + k]) * s;
  }
}

__attribute__((target("avx2,fma"))) void dequantize_int8_avx2(const int8_t* q, const float* scale, int64_t nb, int64_t K,
                                                               float* out) {
  for (int64_t r = 0; r < nb; ++r) {
    const __m256 s = _mm256_set1_ps(scale[r]);
    const int8_t* qr = q + r * K;
    float* o = out + r * K;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qr + k)));
      _mm256_storeu_ps(o + k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
    }
    for (; k < K; ++k) o[k] = static_cast<float>(qr[k]) * scale[r];
  }
}

}  // namespace

void PackedLinear::dequantize_rows(int64_t n0, int64_t nb, float* out) const {
  const int64_t K = w_.size(1);
  if (type_ == WeightType::kInt8) {
    static const bool avx2 = gemv_isa_supported(GemvIsa::kAvx2);
    const int8_t* q = w_.data_ptr<int8_t>() + n0 * K;
    const float* sc = scale_.data_ptr<float>() + n0;  // per-row scales (weight-only layout)
    if (avx2) dequantize_int8_avx2(q, sc, nb, K, out);
    else dequantize_int8_portable(q, sc, nb, K, out);
    return;
  }
  // bfloat16 -> float32 (exact: the bf16 bits are the float's high half). Plain loops, as this runs
  // inside at::parallel_for, where tensor operations must not.
  const uint16_t* src = reinterpret_cast<const uint16_t*>(w_.data_ptr()) + n0 * K;
  for (int64_t i = 0; i < nb * K; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(out + i, &bits, 4);
  }
}

torch::Tensor PackedLinear::forward_low_precision(const torch::Tensor& x2) const {
  const int64_t M = x2.size(0), N = w_.size(0), K = w_.size(1);
  torch::Tensor y = torch::empty({M, N}, torch::kFloat32);  // [M, N]
  if (M == 0 || N == 0) return y;
  const float* B = bias_.defined() ? bias_.data_ptr<float>() : nullptr;
  if (type_ == WeightType::kBFloat16) {
    torch::Tensor xb = x2.to(torch::kBFloat16);  // [M, K], round to nearest even
    // oneDNN implements it only on AVX-512 CPUs (dnnl_unimplemented elsewhere): then the float path.
    if (onednn_gemm_bf16() != nullptr &&
        onednn_gemm_bf16()('N', 'T', M, N, K, 1.0f, reinterpret_cast<const uint16_t*>(xb.data_ptr()), K,
                    reinterpret_cast<const uint16_t*>(w_.data_ptr()), K, 0.0f, y.data_ptr<float>(), N) == 0) {
      if (bias_.defined()) y.add_(bias_);
      return y;
    }
    return linear(xb.to(torch::kFloat32), w_.to(torch::kFloat32), bias_);  // same products, float32 sums
  }
  // int8: x quantized symmetrically per row and block of kInt8BlockSize columns (as the weight),
  // stored as u8 = q + 128 (oneDNN's u8·s8 product); per block the exact int32 sums, scaled by
  // both block scales and added up in float32.
  const int64_t G = kInt8BlockSize, nblocks = (K + G - 1) / G;
  if (nblocks == 0) return bias_.defined() ? y.zero_().add_(bias_) : y.zero_();  // K = 0: empty sums
  const float* X = x2.data_ptr<float>();
  torch::Tensor xq = torch::empty({M, K}, torch::kUInt8);       // [M, K]
  torch::Tensor xs = torch::empty({M, nblocks}, torch::kFloat32);  // [M, nblocks] activation scales
  uint8_t* XQ = xq.data_ptr<uint8_t>();
  float* XS = xs.data_ptr<float>();
  at::parallel_for(0, M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t j = 0; j < nblocks; ++j) {
        const int64_t k0 = j * G, k1 = std::min(K, k0 + G);
        const float* row = X + m * K;
        float amax = 0.0f;
        for (int64_t k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(row[k]));
        const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
        const float inv = 1.0f / s;
        for (int64_t k = k0; k < k1; ++k) {
          const float q = std::nearbyint(row[k] * inv);
          XQ[m * K + k] = static_cast<uint8_t>(static_cast<int>(std::min(127.0f, std::max(-127.0f, q))) + 128);
        }
        XS[m * nblocks + j] = s;
      }
  });
  const bool vnni = onednn_gemm_u8s8s32() != nullptr && has_vnni();
  // Without VNNI, oneDNN adds pairs of u8·s8 products in int16 with saturation (vpmaddubsw):
  // 255·127·2 overflows, 127·127·2 does not. So split u = q + 128 = 2h + l with h = u >> 1 in
  // [0, 127] and l = u & 1: q·w = 2·(h − 64)·w + l·w, two saturation-free integer GEMMs whose
  // combination equals the exact sums (of the VNNI path and of the portable loop).
  torch::Tensor xl;  // [M, K] l = u & 1 (XQ then holds h)
  if (!vnni && onednn_gemm_u8s8s32() != nullptr) {
    xl = torch::empty({M, K}, torch::kUInt8);
    uint8_t* XL = xl.data_ptr<uint8_t>();
    at::parallel_for(0, M * K, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        XL[i] = XQ[i] & 1u;
        XQ[i] = static_cast<uint8_t>(XQ[i] >> 1);  // h
      }
    });
  }
  // Columns go in chunks, so the int32 sums of one block need only [M, chunk] buffers (<= 4 MB
  // each, e.g. for the vocabulary projection of a beam batch).
  const int64_t chunk = std::min<int64_t>(N, std::max<int64_t>(256, (int64_t{1} << 20) / M));
  torch::Tensor sums = torch::empty({M, chunk}, torch::kInt32);  // [M, chunk] one block's sums
  torch::Tensor low = xl.defined() ? torch::empty({M, chunk}, torch::kInt32) : torch::Tensor();  // l·w sums
  int32_t* C = sums.data_ptr<int32_t>();
  const int8_t* W = w_.data_ptr<int8_t>();
  const float* S = scale_.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  const int32_t zero = 0;
  for (int64_t n0 = 0; n0 < N; n0 += chunk) {
    const int64_t nb = std::min(chunk, N - n0);
    for (int64_t j = 0; j < nblocks; ++j) {
      const int64_t k0 = j * G, kb = std::min(G, K - k0);
      const int8_t* Wj = W + n0 * K + k0;
      if (vnni) {
        const int status = onednn_gemm_u8s8s32()('N', 'T', 'F', M, nb, kb, 1.0f, XQ + k0, K, 128, Wj, K, 0, 0.0f, C, nb, &zero);
        if (status != 0) fail("PackedLinear: dnnl_gemm_u8s8s32 failed with status {}", status);
      } else if (xl.defined()) {
        int32_t* L = low.data_ptr<int32_t>();
        int status = onednn_gemm_u8s8s32()('N', 'T', 'F', M, nb, kb, 1.0f, XQ + k0, K, 64, Wj, K, 0, 0.0f, C, nb, &zero);
        if (status == 0)
          status = onednn_gemm_u8s8s32()('N', 'T', 'F', M, nb, kb, 1.0f, xl.data_ptr<uint8_t>() + k0, K, 0, Wj, K, 0, 0.0f, L,
                                  nb, &zero);
        if (status != 0) fail("PackedLinear: dnnl_gemm_u8s8s32 failed with status {}", status);
      } else {
        at::parallel_for(0, nb, 16, [&](int64_t a, int64_t b) {
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = a; n < b; ++n) {
              int32_t sum = 0;
              for (int64_t k = 0; k < kb; ++k) sum += (static_cast<int32_t>(XQ[m * K + k0 + k]) - 128) * Wj[n * K + k];
              C[m * nb + n] = sum;
            }
        });
      }
      // y[m, n] (+)= sums · xs[m, j] · scale[j, n], with sums = 2·C + L on the split path. The
      // first block writes y and the bias follows the last, so every row gets the same float32
      // operations whatever the batch.
      const float* Sj = S + j * N + n0;
      const int32_t* L = xl.defined() ? low.data_ptr<int32_t>() : nullptr;
      at::parallel_for(0, M, 1, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
          const float a = XS[m * nblocks + j];
          float* yr = Y + m * N + n0;
          int32_t* cr = C + m * nb;
          if (L != nullptr) {
            const int32_t* lr = L + m * nb;
            for (int64_t n = 0; n < nb; ++n) cr[n] = 2 * cr[n] + lr[n];
          }
          if (j == 0) {
            for (int64_t n = 0; n < nb; ++n) yr[n] = static_cast<float>(cr[n]) * a * Sj[n];
          } else {
            for (int64_t n = 0; n < nb; ++n) yr[n] += static_cast<float>(cr[n]) * a * Sj[n];
          }
          if (j == nblocks - 1 && B != nullptr)
            for (int64_t n = 0; n < nb; ++n) yr[n] += B[n0 + n];
        }
      });
    }
  }
  return y;
}

}  // namespace loom::nn
