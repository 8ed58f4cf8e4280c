// Portable seeded shuffling: the same seed gives the same permutation with every standard
// library (std::shuffle and std::uniform_int_distribution are implementation-defined).
#pragma once

#include <cstdint>
#include <vector>

namespace loom::data {

/// Shuffles `v` in place with Fisher-Yates driven by std::mt19937_64(seed); index j for
/// position i is drawn by rejection sampling (unbiased, deterministic across platforms).
void shuffle_indices(std::vector<int64_t>& v, uint64_t seed);

}  // namespace loom::data
