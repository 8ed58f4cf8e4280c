// Streaming text generation with a models::DecoderLM: the prompt is fed in chunks with the
// recurrent state (KV/XL caches, Infini (M, z), kNN memory) carried between them, then one token
// at a time is sampled (generate::sample_next) and fed back, each reported through a callback
// as soon as it exists.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "loom/generate/sampling.h"
#include "loom/models/decoder_lm.h"

namespace loom::generate {

/// Called with each new token id; return false to stop early.
using TokenCallback = std::function<bool(int64_t id)>;

/// Generation settings.
struct LmGenerateOptions {
  int64_t max_new_tokens = 100;  ///< tokens to produce (>= 0)
  int64_t prompt_chunk = 0;      ///< prompt tokens per forward call (0 = the model's segment_len)
  std::vector<int64_t> stop_ids;  ///< generation stops after producing one of these
  SamplingOptions sampling;      ///< temperature / top-k / top-p / repetition penalty / seed
};

/// Generates up to max_new_tokens after `prompt` (non-empty, ids in [0, V)), in eval mode under
/// NoGradGuard, from a fresh state (the prompt starts a new document). The repetition penalty
/// sees prompt + generated tokens. Returns the generated ids. Deterministic for a given seed.
/// Throws loom::Error for an empty prompt or bad options.
std::vector<int64_t> generate_lm(models::DecoderLMImpl& model, const std::vector<int64_t>& prompt,
                                 const LmGenerateOptions& options, const TokenCallback& on_token = {});

}  // namespace loom::generate
