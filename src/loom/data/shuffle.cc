#include "loom/data/shuffle.h"

#include <random>

namespace loom::data {

void shuffle_indices(std::vector<int64_t>& v, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = v.size(); i > 1; --i) {
    const uint64_t n = i;  // draw j uniformly in [0, n)
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = rng(); while (r >= limit);
    std::swap(v[i - 1], v[r % n]);
  }
}

}  // namespace loom::data
