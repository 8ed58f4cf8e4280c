#include "loom/nn/logits_ops.h"

#include "loom/nn/simd_exp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace loom::nn {
namespace {

#define LOOM_LOGITS_AVX2 __attribute__((target("avx2,fma")))

LOOM_LOGITS_AVX2 float logsum_exp_avx2(const float* x, int64_t n, float max) {
  const __m256 m = _mm256_set1_ps(max);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_add_ps(acc0, exp_nonpositive_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), m)));
    acc1 = _mm256_add_ps(acc1, exp_nonpositive_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m)));
  }
  for (; i < n; i += 8) {  // the tail through the same exp, padded with -inf (exp 0)
    alignas(32) float tail[8];
    for (int64_t j = 0; j < 8; ++j) tail[j] = i + j < n ? x[i + j] : -std::numeric_limits<float>::infinity();
    acc0 = _mm256_add_ps(acc0, exp_nonpositive_avx2(_mm256_sub_ps(_mm256_load_ps(tail), m)));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
  double sum = 0.0;
  for (float l : lanes) sum += l;
  return static_cast<float>(std::log(sum));
}

LOOM_LOGITS_AVX2 float max_avx2(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);  // a NaN load keeps m
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float best = lanes[0];
  for (int j = 1; j < 8; ++j) best = std::max(best, lanes[j]);
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

float logsum_exp_portable(const float* x, int64_t n, float max) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - max);
  return static_cast<float>(std::log(sum));
}

bool use_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

}  // namespace

float row_logsum_exp(const float* x, int64_t n, float max) {
  if (!(max > -std::numeric_limits<float>::infinity())) return -std::numeric_limits<float>::infinity();
  return use_avx2() ? logsum_exp_avx2(x, n, max) : logsum_exp_portable(x, n, max);
}

float row_max(const float* x, int64_t n) {
  if (use_avx2()) return max_avx2(x, n);
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

void row_top_k(const float* row, int64_t n, int64_t k, float* values, int64_t* indices) {
  using Item = std::pair<float, int64_t>;
  // "a before b" = a ranks higher: larger value, or equal value and smaller index
  auto better = [](const Item& a, const Item& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::vector<Item> heap;
  heap.reserve(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) heap.emplace_back(row[j], j);
  std::make_heap(heap.begin(), heap.end(), better);  // heap.front() = the worst kept item
  float worst = heap.front().first;
  for (int64_t j = k; j < n; ++j) {
    if (!(row[j] > worst)) continue;  // later indices never win ties
    std::pop_heap(heap.begin(), heap.end(), better);
    heap.back() = Item(row[j], j);
    std::push_heap(heap.begin(), heap.end(), better);
    worst = heap.front().first;
  }
  std::sort(heap.begin(), heap.end(), better);
  for (int64_t j = 0; j < k; ++j) {
    values[j] = heap[static_cast<size_t>(j)].first;
    indices[j] = heap[static_cast<size_t>(j)].second;
  }
}

}  // namespace loom::nn
