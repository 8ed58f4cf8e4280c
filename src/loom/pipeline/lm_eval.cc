#include "loom/pipeline/lm_eval.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "loom/core/error.h"
#include "loom/data/passkey.h"
#include "loom/generate/lm_generate.h"

namespace loom::pipeline {

double PerplexityResult::ppl() const { return std::exp(loss()); }

PerplexityResult document_perplexity(models::DecoderLMImpl& model, const std::vector<int64_t>& doc, int64_t chunk,
                                     int64_t max_tokens) {
  PerplexityResult r;
  int64_t n = static_cast<int64_t>(doc.size());
  if (max_tokens > 0) n = std::min(n, max_tokens + 1);
  if (n < 2) return r;
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  if (chunk <= 0) chunk = std::max<int64_t>(1, model.config().segment_len);
  auto all = torch::tensor(std::vector<int64_t>(doc.begin(), doc.begin() + n), torch::kLong).unsqueeze(0);
  auto state = model.initial_state(1);
  const auto t_start = std::chrono::steady_clock::now();
  for (int64_t t0 = 0; t0 < n - 1; t0 += chunk) {
    const int64_t t1 = std::min(n - 1, t0 + chunk);
    auto logits = model.forward(all.slice(1, t0, t1), state);  // [1, c, V]
    auto lp = torch::log_softmax(logits.to(torch::kFloat), -1);
    auto tgt = all.slice(1, t0 + 1, t1 + 1).unsqueeze(-1);
    r.nll -= lp.gather(-1, tgt).to(torch::kDouble).sum().item<double>();
    r.tokens += t1 - t0;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  if (was_training) model.train();
  return r;
}

nlohmann::json PasskeyGrid::to_json() const {
  return {{"lengths", lengths}, {"depths", depths}, {"trials", trials}, {"exact", exact},
          {"digit", digit}, {"prompt_tokens", prompt_tokens}, {"seconds", seconds}};
}

std::string passkey_answer(const std::string& text) {
  size_t a = text.find_first_not_of(' ');
  if (a == std::string::npos) return "";
  return text.substr(a, 5);
}

PasskeyGrid passkey_grid(models::DecoderLMImpl& model, const text::LmTokenizer& tok, const PasskeyEvalOptions& o,
                         bool progress) {
  if (o.lengths.empty()) fail(Where{"", 0, "--lengths"}, "no lengths given");
  if (o.depths.empty()) fail(Where{"", 0, "--depths"}, "no depths given");
  if (o.trials < 1) fail(Where{"", 0, "--trials"}, "must be >= 1, got {}", o.trials);
  for (double d : o.depths)
    if (!(d >= 0 && d <= 100)) fail(Where{"", 0, "--depths"}, "depth {} is outside [0, 100]", d);
  PasskeyGrid g;
  g.lengths = o.lengths;
  g.depths = o.depths;
  g.trials = o.trials;
  const auto t_start = std::chrono::steady_clock::now();
  data::EncodeFn enc = [&](std::string_view s) { return tok.encode(s); };
  for (size_t i = 0; i < o.lengths.size(); ++i) {
    std::vector<double> ex_row, dg_row;
    std::vector<int64_t> len_row;
    for (size_t j = 0; j < o.depths.size(); ++j) {
      int64_t exact = 0, digits = 0, plen = 0;
      for (int64_t t = 0; t < o.trials; ++t) {
        // Keys depend on (seed, length, depth, trial), not on the cell's index, so grids with
        // different length lists draw different keys for different lengths.
        const uint64_t s = o.seed * 1000003ULL + static_cast<uint64_t>(o.lengths[i]) * 7919ULL +
                           static_cast<uint64_t>(std::llround(o.depths[j] * 1000.0)) * 104729ULL +
                           static_cast<uint64_t>(t) * 15485863ULL;
        auto sample = data::make_passkey_sample(enc, o.lengths[i], o.depths[j] / 100.0, data::random_passkey(s));
        if (t == 0) plen = static_cast<int64_t>(sample.prompt.size());
        generate::LmGenerateOptions go;
        go.max_new_tokens = static_cast<int64_t>(sample.answer.size()) + 3;
        go.prompt_chunk = o.chunk;
        go.sampling.temperature = 0;
        auto out = generate::generate_lm(model, sample.prompt, go);
        const std::string ans = passkey_answer(tok.decode(out));
        int64_t ok = 0;
        for (size_t k = 0; k < 5; ++k) ok += k < ans.size() && ans[k] == sample.key[k];
        digits += ok;
        exact += ok == 5;
      }
      ex_row.push_back(static_cast<double>(exact) / static_cast<double>(o.trials));
      dg_row.push_back(static_cast<double>(digits) / static_cast<double>(5 * o.trials));
      len_row.push_back(plen);
      if (progress)
        std::fprintf(stderr, "passkey: length %lld depth %g%%: exact %.2f digit %.2f\n",
                     static_cast<long long>(o.lengths[i]), o.depths[j], ex_row.back(), dg_row.back());
    }
    g.exact.push_back(ex_row);
    g.digit.push_back(dg_row);
    g.prompt_tokens.push_back(len_row);
  }
  g.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return g;
}

}  // namespace loom::pipeline
