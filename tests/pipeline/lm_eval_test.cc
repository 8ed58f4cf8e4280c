// Streaming perplexity, greedy/sampled generation with carried state, the passkey grid, and the
// LM tokenizer on tiny random-weight DecoderLMs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "loom/core/error.h"
#include "loom/pipeline/lm_eval.h"
#include "loom/generate/lm_generate.h"

namespace loom::pipeline {
namespace {
namespace fs = std::filesystem;

models::DecoderLM tiny(const char* attention, uint64_t seed = 2) {
  auto cfg = models::DecoderLMConfig::from_json({{"vocab_size", 256}, {"n_layers", 2}, {"d_model", 32}, {"d_head", 8},
                                                 {"ffn_divisor", 16}, {"ffn_multipliers", 2.0},
                                                 {"attention", attention}, {"segment_len", 8}});
  return models::DecoderLM(cfg, seed);
}

TEST(LmEval, StreamingPerplexityEqualsWholeInputAndAnyChunking) {
  for (const char* kind : {"infini", "standard"}) {
    auto model = tiny(kind);
    model->eval();
    std::vector<int64_t> doc;
    for (int i = 0; i < 45; ++i) doc.push_back((i * 37 + 11) % 256);
    torch::NoGradGuard ng;
    auto ids = torch::tensor(doc, torch::kLong).unsqueeze(0);
    auto lp = torch::log_softmax(model->forward(ids.slice(1, 0, 44)), -1);
    double expect = 0;
    for (int t = 0; t < 44; ++t) expect -= lp[0][t][doc[static_cast<size_t>(t + 1)]].item<double>();
    for (int64_t chunk : {0, 1, 7, 8, 100}) {
      auto r = document_perplexity(*model, doc, chunk);
      EXPECT_EQ(r.tokens, 44);
      EXPECT_NEAR(r.nll, expect, 1e-3 * expect) << kind << " chunk " << chunk;
      EXPECT_NEAR(r.ppl(), std::exp(expect / 44), 1e-2 * std::exp(expect / 44));
    }
    auto part = document_perplexity(*model, doc, 8, 10);
    EXPECT_EQ(part.tokens, 10);
    EXPECT_EQ(document_perplexity(*model, {5}, 8).tokens, 0);
  }
}

TEST(LmGenerate, GreedyMatchesFullRecomputationAndSeedsAreDeterministic) {
  auto model = tiny("infini");
  std::vector<int64_t> prompt;
  for (int i = 0; i < 19; ++i) prompt.push_back((i * 13 + 3) % 256);
  generate::LmGenerateOptions o;
  o.max_new_tokens = 12;
  o.prompt_chunk = 5;
  o.sampling.temperature = 0;
  std::vector<int64_t> streamed;
  auto out = generate::generate_lm(*model, prompt, o, [&](int64_t id) {
    streamed.push_back(id);
    return true;
  });
  ASSERT_EQ(out.size(), 12u);
  EXPECT_EQ(streamed, out);
  // Each greedy token is the argmax of a full forward over prompt + previous tokens.
  torch::NoGradGuard ng;
  std::vector<int64_t> all = prompt;
  for (size_t i = 0; i < out.size(); ++i) {
    auto logits = model->forward(torch::tensor(all, torch::kLong).unsqueeze(0));
    EXPECT_EQ(logits[0][-1].argmax().item<int64_t>(), out[i]) << i;
    all.push_back(out[i]);
  }
  // Sampling: same seed, same tokens; another seed differs (12 draws from a near-uniform model).
  o.sampling.temperature = 1.0;
  o.sampling.top_p = 0.95;
  o.sampling.seed = 7;
  auto s1 = generate::generate_lm(*model, prompt, o), s2 = generate::generate_lm(*model, prompt, o);
  EXPECT_EQ(s1, s2);
  o.sampling.seed = 8;
  EXPECT_NE(generate::generate_lm(*model, prompt, o), s1);
  // Early stop from the callback; empty prompt is an error.
  int n = 0;
  out = generate::generate_lm(*model, prompt, o, [&](int64_t) { return ++n < 3; });
  EXPECT_EQ(out.size(), 3u);
  EXPECT_THROW(generate::generate_lm(*model, {}, o), loom::Error);
}

TEST(LmEval, PasskeyGridShapeAndAnswerParsing) {
  EXPECT_EQ(passkey_answer("  71432. Remember"), "71432");
  EXPECT_EQ(passkey_answer(" 7a"), "7a");
  EXPECT_EQ(passkey_answer("   "), "");
  auto model = tiny("infini");
  auto tok = text::LmTokenizer::bytes();
  PasskeyEvalOptions o;
  o.lengths = {200, 300};
  o.depths = {0, 100};
  o.trials = 2;
  auto g = passkey_grid(*model, tok, o);
  ASSERT_EQ(g.exact.size(), 2u);
  ASSERT_EQ(g.digit[1].size(), 2u);
  for (auto& row : g.digit)
    for (double v : row) EXPECT_TRUE(v >= 0 && v <= 1);
  EXPECT_NEAR(static_cast<double>(g.prompt_tokens[1][0]), 300, 45);
  auto j = g.to_json();
  EXPECT_EQ(j["lengths"][1], 300);
  o.depths = {150};
  EXPECT_THROW(passkey_grid(*model, tok, o), loom::Error);
}

TEST(LmTokenizer, BytesRoundTripAndSaveLoad) {
  auto tok = text::LmTokenizer::bytes();
  const std::string s = "héllo 世界\n";
  auto ids = tok.encode(s);
  EXPECT_EQ(ids.size(), s.size());
  EXPECT_EQ(tok.decode(ids), s);
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_THROW(tok.decode({256}), loom::Error);
  fs::path dir = fs::temp_directory_path() / ("loom-lmtok-" + std::to_string(getpid()));
  tok.save(dir.string());
  EXPECT_EQ(text::LmTokenizer::load(dir.string()).type(), "byte");
  std::ofstream(dir / "tokenizer.json") << R"({"type": "wordpiece"})";
  EXPECT_THROW(text::LmTokenizer::load(dir.string()), loom::Error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::pipeline
