// The passkey-retrieval task (Mohtashami & Jaggi 2023, used by Infini-attention; papers.md §5.3):
// a filler paragraph repeated to the wanted length, one needle sentence carrying a random
// 5-digit key inserted at a chosen depth, and a closing question whose answer is the key.
//   filler:   "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
//   needle:   "The pass key is 71432. Remember it. 71432 is the pass key. "
//   question: "What is the pass key? The pass key is"      answer: " 71432"
// Samples are built at token level from the encoded pieces, so the length is exact in tokens
// (up to one filler unit) for any tokenizer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::data {

/// The fixed texts of the task.
inline constexpr const char* kPasskeyFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
inline constexpr const char* kPasskeyQuestion = "What is the pass key? The pass key is";

/// The needle sentence for a 5-digit key ("The pass key is K. Remember it. K is the pass key. ").
std::string passkey_needle(const std::string& key);

/// A tokenizer's encode function (text -> ids).
using EncodeFn = std::function<std::vector<int64_t>(std::string_view)>;

/// One task instance.
struct PasskeySample {
  std::string key;                ///< the 5 digits
  std::vector<int64_t> prompt;    ///< filler + needle + filler + question, ending with the question
  std::vector<int64_t> answer;    ///< tokens of " " + key (what should follow the prompt)
  int64_t needle_pos = 0;         ///< token offset of the needle in prompt
};

/// Builds a sample whose prompt has about `total_tokens` tokens: n = max(0, round((total −
/// |needle| − |question|) / |filler|)) filler units, the needle after round(depth·n) of them
/// (depth in [0, 1]: 0 = first, 1 = right before the question). Throws loom::Error when key is
/// not 5 digits or depth is outside [0, 1].
PasskeySample make_passkey_sample(const EncodeFn& encode, int64_t total_tokens, double depth, const std::string& key);

/// A random 5-digit key (each digit uniform in 0–9) from a 64-bit seed (deterministic:
/// std::mt19937_64 with rejection sampling).
std::string random_passkey(uint64_t seed);

/// Parses a length list such as "1K,2K,4096,1M" (K = 1024, M = 1048576) into token counts.
/// Throws loom::Error naming `field` for an empty item, a bad number or a value < 1.
std::vector<int64_t> parse_token_lengths(const std::string& list, const std::string& field);

}  // namespace loom::data
