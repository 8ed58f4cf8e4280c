// Sampling for decoder-only language models: the logits processors of Hugging Face
// transformers (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
// TopPLogitsWarper, applied in that order as HF's generate() does) and a seeded sampler whose
// draws depend only on the seed and the logits (std::mt19937_64, inverse-CDF in float64), so
// the same seed gives the same text on every machine and thread count.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <torch/torch.h>

namespace loom::generate {

/// Sampling settings (HF generate() names).
struct SamplingOptions {
  double temperature = 1.0;         ///< > 0 divides the logits; 0 = greedy (argmax)
  int64_t top_k = 0;                ///< keep the k most likely tokens; 0 = off
  double top_p = 1.0;               ///< nucleus: keep the smallest set with mass >= top_p; 1 = off
  double repetition_penalty = 1.0;  ///< CTRL penalty on tokens already in the context; 1 = off
  uint64_t seed = 0;                ///< seed of the sampler's generator
  double min_p = 0.0;               ///< drop tokens with prob < min_p · max prob (after top-p); 0 = off
};

/// Throws loom::Error naming the field for temperature < 0, top_k < 0, top_p outside (0, 1],
/// min_p outside [0, 1] or repetition_penalty <= 0.
void validate(const SamplingOptions& options);

/// HF RepetitionPenaltyLogitsProcessor on logits [V] (float) in place: for each distinct id in
/// `context`, score = score < 0 ? score·penalty : score / penalty. penalty = 1 is a no-op.
void apply_repetition_penalty(torch::Tensor& logits, const std::vector<int64_t>& context, double penalty);

/// HF TopKLogitsWarper on logits [V] in place: every score below the k-th largest becomes
/// -inf (ties with the k-th are kept). k <= 0 or k >= V is a no-op.
void apply_top_k(torch::Tensor& logits, int64_t k);

/// HF TopPLogitsWarper on logits [V] in place: sorts ascending, removes the tokens whose
/// cumulative softmax probability is <= 1 − top_p (so the kept set has mass >= top_p, and the
/// most likely token is always kept). top_p >= 1 is a no-op.
void apply_top_p(torch::Tensor& logits, double top_p);

/// HF MinPLogitsWarper on logits [V] in place: tokens whose softmax probability is below
/// min_p times the largest probability become -inf (the most likely token is always kept).
/// min_p <= 0 is a no-op.
void apply_min_p(torch::Tensor& logits, double min_p);

/// Draws a token id from softmax(logits) for filtered logits [V] (-inf = excluded) by inverse
/// CDF in float64 with exactly one rng() call (53 random bits); tokens of probability 0 are never
/// drawn. Shared by LM sampling (sample_next) and translation sampling (generate/search).
int64_t draw_from_logits(const torch::Tensor& logits, std::mt19937_64& rng);

/// Picks the next token from logits [V]: repetition penalty (over `context`), then greedy
/// argmax (temperature 0) or temperature, top-k, top-p, min-p and a draw from softmax with `rng`
/// (one rng() call per draw). Does not modify the caller's tensor.
int64_t sample_next(const torch::Tensor& logits, const std::vector<int64_t>& context, const SamplingOptions& options,
                    std::mt19937_64& rng);

}  // namespace loom::generate
