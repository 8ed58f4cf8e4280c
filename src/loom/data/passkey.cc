#include "loom/data/passkey.h"

#include <cmath>
#include <random>

#include "loom/core/error.h"

namespace loom::data {

std::string passkey_needle(const std::string& key) {
  return "The pass key is " + key + ". Remember it. " + key + " is the pass key. ";
}

PasskeySample make_passkey_sample(const EncodeFn& encode, int64_t total_tokens, double depth, const std::string& key) {
  if (key.size() != 5 || key.find_first_not_of("0123456789") != std::string::npos)
    fail(Where{"", 0, "key"}, "passkey must be 5 digits, got \"{}\"", key);
  if (!(depth >= 0.0 && depth <= 1.0)) fail(Where{"", 0, "depth"}, "must be in [0, 1], got {}", depth);
  const auto filler = encode(kPasskeyFiller);
  const auto needle = encode(passkey_needle(key));
  const auto question = encode(kPasskeyQuestion);
  if (filler.empty()) fail(Where{"", 0, "filler"}, "the tokenizer encodes the filler to no tokens");
  const int64_t rest = total_tokens - static_cast<int64_t>(needle.size() + question.size());
  const int64_t n = std::max<int64_t>(0, std::llround(static_cast<double>(rest) / static_cast<double>(filler.size())));
  const int64_t before = std::llround(depth * static_cast<double>(n));
  PasskeySample s;
  s.key = key;
  s.prompt.reserve(static_cast<size_t>(n) * filler.size() + needle.size() + question.size());
  for (int64_t i = 0; i < before; ++i) s.prompt.insert(s.prompt.end(), filler.begin(), filler.end());
  s.needle_pos = static_cast<int64_t>(s.prompt.size());
  s.prompt.insert(s.prompt.end(), needle.begin(), needle.end());
  for (int64_t i = before; i < n; ++i) s.prompt.insert(s.prompt.end(), filler.begin(), filler.end());
  s.prompt.insert(s.prompt.end(), question.begin(), question.end());
  s.answer = encode(" " + key);
  return s;
}

std::string random_passkey(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string key;
  for (int i = 0; i < 5; ++i) {
    uint64_t x;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % 10;
    do x = rng();
    while (x >= limit);
    key.push_back(static_cast<char>('0' + x % 10));
  }
  return key;
}

std::vector<int64_t> parse_token_lengths(const std::string& list, const std::string& field) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(pos, end - pos);
    if (item.empty()) fail(Where{"", 0, field}, "empty item in \"{}\"", list);
    int64_t mult = 1;
    const char last = item.back();
    if (last == 'K' || last == 'k') mult = 1024;
    if (last == 'M' || last == 'm') mult = 1024 * 1024;
    if (mult != 1) item.pop_back();
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos)
      fail(Where{"", 0, field}, "bad length \"{}\" (expected e.g. 4096, 4K or 1M)", list.substr(pos, end - pos));
    const int64_t v = std::stoll(item) * mult;
    if (v < 1) fail(Where{"", 0, field}, "length must be >= 1, got {}", v);
    out.push_back(v);
    pos = end + 1;
  }
  return out;
}

}  // namespace loom::data
