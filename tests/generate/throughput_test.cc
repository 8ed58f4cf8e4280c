// Throughput of greedy and beam search on the full-size opus-mt-en-zh architecture with random
// weights. A measuring tool, not a check: disabled by default, it prints tokens/s and asserts
// nothing about speed. Run with
//   build/loom_tests --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'
// (LOOM_THREADS, LOOM_BATCH, LOOM_STEPS override 2 threads, batch 16, 32 target tokens).
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>

#include <gtest/gtest.h>

#include "loom/generate/search.h"
#include "loom/models/seq2seq.h"
#include "loom/nn/linear.h"

namespace loom::generate {
namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int64_t env_int(const char* name, int64_t def) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoll(v) : def;
}

models::Seq2SeqConfig opus_mt_en_zh() {
  // config.json of Helsinki-NLP/opus-mt-en-zh (architecture fields)
  return models::Seq2SeqConfig::from_json(nlohmann::json{
      {"model_type", "marian"}, {"d_model", 512}, {"encoder_layers", 6}, {"decoder_layers", 6},
      {"encoder_attention_heads", 8}, {"decoder_attention_heads", 8}, {"encoder_ffn_dim", 2048},
      {"decoder_ffn_dim", 2048}, {"vocab_size", 65001}, {"decoder_vocab_size", 65001},
      {"activation_function", "swish"}, {"scale_embedding", true}, {"max_position_embeddings", 512},
      {"pad_token_id", 65000}, {"eos_token_id", 0}, {"decoder_start_token_id", 65000},
      {"share_encoder_decoder_embeddings", true}});
}

TEST(Throughput, DISABLED_OpusMtEnZhRandomWeights) {
  at::set_num_threads(static_cast<int>(env_int("LOOM_THREADS", 2)));
  torch::manual_seed(0);
  models::Seq2SeqModel model(opus_mt_en_zh());
  const int64_t batch = env_int("LOOM_BATCH", 16), steps = env_int("LOOM_STEPS", 32);
  std::vector<std::vector<int64_t>> sources;
  for (int64_t i = 0; i < batch; ++i) {
    std::vector<int64_t> s;
    for (int64_t j = 0; j < 28 + i % 8; ++j) s.push_back(1 + (i * 131 + j * 977) % 64000);
    s.push_back(0);
    sources.push_back(s);
  }
  GenerationOptions o;
  o.eos_token_ids = {0};
  o.pad_token_id = 65000;
  o.decoder_start_token_id = 65000;
  o.bad_words_ids = {{65000}};
  o.max_new_tokens = steps;
  o.min_new_tokens = steps;  // exactly `steps` target tokens per sentence
  std::printf("fast gemm (oneDNN sgemm): %s, threads %d\n", nn::fast_gemm_available() ? "yes" : "no", at::get_num_threads());
  for (int64_t beams : {int64_t{1}, int64_t{4}}) {
    if (env_int("LOOM_BEAMS", 0) != 0 && env_int("LOOM_BEAMS", 0) != beams) continue;
    o.num_beams = beams;
    generate(model, {sources[0]}, o);  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    auto out = generate(model, sources, o);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = cpu_seconds() - c0;
    int64_t tokens = 0;
    for (const auto& h : out) tokens += static_cast<int64_t>(h[0].tokens.size());
    std::printf("num_beams %ld batch %ld: %ld target tokens in %.3f s = %.1f tokens/s (CPU time %.3f s = %.1f tokens per CPU-second)\n",
                static_cast<long>(beams), static_cast<long>(batch), static_cast<long>(tokens), sec, tokens / sec, cpu, tokens / cpu);
    EXPECT_EQ(tokens, batch * steps);
  }
}

}  // namespace
}  // namespace loom::generate
