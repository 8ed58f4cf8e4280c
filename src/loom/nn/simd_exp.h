// e^x on 8 float32 lanes (AVX2 + FMA), Cephes expf: x = n·ln2 + r, a degree-5 polynomial in r
// (within 2 ulp of expf), 2^n from the exponent bits; x clamped to [-87.3, 88.3] (no denormals,
// no overflow). exp_nonpositive_avx2 is the softmax form for x <= 0 that gives exactly 0 below
// -87.3. Used by the DExTra activations, attention and the logits row ops. Include only from .cc
// files; call only where the CPU has AVX2 and FMA.
#pragma once

#include <immintrin.h>

namespace loom::nn {

__attribute__((target("avx2,fma"))) inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// exp(x) for x <= 0; x below -87.3 (where expf turns denormal) gives exactly 0, so masked
// scores (-inf or the lowest float) add nothing: a padded row sums the same numbers as the
// unpadded one.
__attribute__((target("avx2,fma"))) inline __m256 exp_nonpositive_avx2(__m256 x) {
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);  // false also for NaN
  return _mm256_and_ps(exp_avx2(x), keep);
}

}  // namespace loom::nn
