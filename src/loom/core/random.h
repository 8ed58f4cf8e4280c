// Small deterministic integer hashing shared by layers that derive random streams from counters
// (DeLighT dropout masks, generated passkey samples).
#pragma once

#include <cstdint>

namespace loom::core {

/// splitmix64 (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number generators") of z:
/// a bijective 64-bit mix, used as a counter-based generator (splitmix64(seed + i)) and to hash
/// several integers into one seed (splitmix64(splitmix64(a) ^ b)).
inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace loom::core
