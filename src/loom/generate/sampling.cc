#include "loom/generate/sampling.h"

#include <cmath>
#include <limits>
#include <unordered_set>

#include "loom/core/error.h"

namespace loom::generate {

void validate(const SamplingOptions& o) {
  if (!(o.temperature >= 0)) fail(Where{"", 0, "--temperature"}, "must be >= 0, got {}", o.temperature);
  if (o.top_k < 0) fail(Where{"", 0, "--top-k"}, "must be >= 0, got {}", o.top_k);
  if (!(o.top_p > 0 && o.top_p <= 1)) fail(Where{"", 0, "--top-p"}, "must be in (0, 1], got {}", o.top_p);
  if (!(o.repetition_penalty > 0))
    fail(Where{"", 0, "--repetition-penalty"}, "must be > 0, got {}", o.repetition_penalty);
  if (!(o.min_p >= 0 && o.min_p <= 1)) fail(Where{"", 0, "--min-p"}, "must be in [0, 1], got {}", o.min_p);
}

void apply_min_p(torch::Tensor& logits, double min_p) {
  if (min_p <= 0) return;
  auto probs = torch::softmax(logits.to(torch::kDouble), 0);
  auto remove = probs < probs.max() * min_p;
  logits.masked_fill_(remove, -std::numeric_limits<float>::infinity());
}

void apply_repetition_penalty(torch::Tensor& logits, const std::vector<int64_t>& context, double penalty) {
  if (penalty == 1.0 || context.empty()) return;
  auto acc = logits.accessor<float, 1>();
  const int64_t V = logits.size(0);
  std::unordered_set<int64_t> seen;
  for (int64_t id : context) {
    if (id < 0 || id >= V || !seen.insert(id).second) continue;
    float& s = acc[id];
    s = s < 0 ? static_cast<float>(s * penalty) : static_cast<float>(s / penalty);
  }
}

void apply_top_k(torch::Tensor& logits, int64_t k) {
  const int64_t V = logits.size(0);
  if (k <= 0 || k >= V) return;
  auto kth = std::get<0>(logits.topk(k)).index({k - 1}).item<float>();
  logits.masked_fill_(logits < kth, -std::numeric_limits<float>::infinity());
}

void apply_top_p(torch::Tensor& logits, double top_p) {
  if (top_p >= 1.0) return;
  auto [sorted, idx] = logits.sort(/*dim=*/0, /*descending=*/false);
  auto cum = torch::softmax(sorted.to(torch::kDouble), 0).cumsum(0);
  auto remove = cum <= (1.0 - top_p);
  remove.index_put_({-1}, false);  // keep at least the most likely token
  auto rm = remove.to(torch::kFloat);
  auto remove_orig = torch::zeros_like(rm).scatter(0, idx, rm) > 0.5f;
  logits.masked_fill_(remove_orig, -std::numeric_limits<float>::infinity());
}

int64_t sample_next(const torch::Tensor& logits_in, const std::vector<int64_t>& context, const SamplingOptions& o,
                    std::mt19937_64& rng) {
  torch::Tensor logits = logits_in.detach().to(torch::kFloat).reshape({-1}).clone();
  apply_repetition_penalty(logits, context, o.repetition_penalty);
  if (o.temperature == 0.0) return logits.argmax().item<int64_t>();
  logits.div_(o.temperature);
  apply_top_k(logits, o.top_k);
  apply_top_p(logits, o.top_p);
  apply_min_p(logits, o.min_p);
  return draw_from_logits(logits, rng);
}

int64_t draw_from_logits(const torch::Tensor& logits, std::mt19937_64& rng) {
  auto probs = torch::softmax(logits.to(torch::kDouble), 0);
  auto p = probs.accessor<double, 1>();
  const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  double c = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < probs.size(0); ++i) {
    if (p[i] <= 0) continue;
    last = i;
    c += p[i];
    if (u < c) return i;
  }
  return last;  // rounding: u beyond the summed mass
}

}  // namespace loom::generate
