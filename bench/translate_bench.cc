// loom_translate_bench: one row of the translation benchmark table (see translate_bench.sh).
// Loads an HF checkpoint, tokenizes the first N lines of the input, then times
// Translator::translate_ids (encoder + decoder + search; tokenization excluded) with every
// output forced to exactly --new-tokens tokens, the linear layers in --compute-type. Prints
// "| compute | threads | beam | batch | sentences | src tok/s | tgt tok/s | peak RSS MiB | output |",
// output = FNV-1a hash of every output token id (8 hex digits): equal hashes = the same
// translations (compare float32 rows between runs, and int8/bf16 with float32).
#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "loom/core/allocator.h"
#include "loom/core/error.h"
#include "loom/generate/translator.h"
#include "loom/io/checkpoint.h"
#include "loom/models/encoder_decoder.h"
#include "loom/text/seq2seq_tokenizer.h"

int main(int argc, char** argv) {
  loom::core::tune_allocator();
  CLI::App app{"loom translation benchmark (one configuration)"};
  std::string model_dir, input;
  int sentences = 64, batch = 16, beam = 1, threads = 2, new_tokens = 32, repeat = 3;
  std::string compute = "float32";
  app.add_option("--model", model_dir)->required();
  app.add_option("--input", input)->required();
  app.add_option("--sentences", sentences);
  app.add_option("--batch", batch);
  app.add_option("--beam", beam);
  app.add_option("--threads", threads);
  app.add_option("--new-tokens", new_tokens);
  app.add_option("--repeat", repeat);
  app.add_option("--compute-type", compute, "float32, int8, bf16 or auto");
  CLI11_PARSE(app, argc, argv);
  try {
    torch::set_num_threads(threads);
    torch::InferenceMode guard;
    loom::io::HfCheckpoint checkpoint(model_dir);
    const auto type = loom::nn::parse_compute_type(compute, "--compute-type");
    auto model = loom::models::load_encoder_decoder(checkpoint, type);
    auto tokenizer = loom::text::load_seq2seq_tokenizer(model_dir);
    tokenizer->set_languages("", "");
    std::vector<std::vector<int64_t>> sources;
    std::ifstream in(input);
    std::string line;
    int64_t src_tokens = 0;
    while (static_cast<int>(sources.size()) < sentences && std::getline(in, line)) {
      sources.push_back(tokenizer->encode_source(line));
      src_tokens += static_cast<int64_t>(sources.back().size());
    }
    if (sources.empty()) loom::fail(loom::Where{input}, "no input lines");
    auto options = loom::generate::GenerationOptions::from_hf(checkpoint.config(), checkpoint.generation_config());
    options.num_beams = beam;
    options.num_return_sequences = 1;
    options.max_new_tokens = new_tokens;
    options.min_new_tokens = new_tokens;
    loom::generate::TranslatorOptions topts;
    topts.max_sentences = batch;
    topts.max_tokens = int64_t{1} << 40;
    double best = 1e30;
    int64_t tgt_tokens = 0;
    uint32_t hash = 2166136261u;  // FNV-1a over the last run's output ids
    for (int r = 0; r <= repeat; ++r) {  // r == 0 is the warm-up
      loom::generate::Translator translator(*model, *tokenizer, options, topts);
      auto t0 = std::chrono::steady_clock::now();
      auto out = translator.translate_ids(sources);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      tgt_tokens = translator.stats().target_tokens;
      if (r > 0) best = std::min(best, s);
      if (r == repeat) {
        for (const auto& hyps : out)
          for (const auto& h : hyps)
            for (int64_t id : h.tokens) hash = (hash ^ static_cast<uint32_t>(id)) * 16777619u;
      }
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("| %s | %d | %d | %d | %zu | %.0f | %.0f | %.0f | %08x |\n", loom::nn::weight_type_name(type), threads,
                beam, batch, sources.size(), static_cast<double>(src_tokens) / best,
                static_cast<double>(tgt_tokens) / best, static_cast<double>(ru.ru_maxrss) / 1024.0, hash);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loom_translate_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
