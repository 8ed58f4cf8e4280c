// `loom generate`: sampling from a loom DecoderLM model directory with the text streamed to
// stdout as tokens are produced (loom::generate::generate_lm).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/generate/lm_generate.h"
#include "loom/models/decoder_lm.h"
#include "loom/text/lm_tokenizer.h"

namespace loom::cli {
namespace {

struct GenerateOptions {
  std::string model, prompt;
  bool has_prompt = false;
  int64_t max_new_tokens = 100, chunk = 0, threads = 0;
  generate::SamplingOptions sampling;
};

void run_generate(const GenerateOptions& o) {
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  generate::validate(o.sampling);
  // A translation checkpoint is named as such instead of failing on its first unknown field.
  if (core::file_exists(o.model + "/config.json")) {
    const nlohmann::json cfg = core::read_json(o.model + "/config.json");
    const std::string type = cfg.value("model_type", std::string());
    if (cfg.value("is_encoder_decoder", false) || type == "marian" || type == "m2m_100" || type == "nllb" ||
        type == "loom_seq2seq")
      fail(Where{o.model, 0, "--model"}, "is a '{}' translation model (encoder-decoder); `loom generate` runs "
           "decoder-only language models — use `loom translate --model {}`", type, o.model);
  }
  auto model = models::load_decoder_lm(o.model);
  auto tok = text::LmTokenizer::load(o.model);
  std::string prompt = o.prompt;
  if (!o.has_prompt) prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
  auto ids = tok.encode(prompt);
  if (ids.empty()) fail(Where{"", 0, "--prompt"}, "the prompt is empty (give --prompt TEXT or text on stdin)");
  generate::LmGenerateOptions go;
  go.max_new_tokens = o.max_new_tokens;
  go.prompt_chunk = o.chunk;
  go.sampling = o.sampling;
  // Print the text of the tokens so far minus what was printed (works for byte and spm
  // tokenizers: spm pieces may change the decoded text only at the end).
  std::vector<int64_t> out;
  std::string printed;
  generate::generate_lm(*model, ids, go, [&](int64_t id) {
    out.push_back(id);
    std::string text = tok.decode(out);
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
      std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
      std::fflush(stdout);
      printed = text;
    }
    return true;
  });
  std::fputc('\n', stdout);
}

}  // namespace

void add_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Sample text from a loom DecoderLM, streamed to stdout");
  cmd->add_option("--model", o->model, "Model directory (config.json, model.safetensors, tokenizer.json)")->required();
  auto* p = cmd->add_option("--prompt", o->prompt, "Prompt text (default: read stdin)");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", o->sampling.temperature, "Softmax temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--repetition-penalty", o->sampling.repetition_penalty, "HF/CTRL repetition penalty (1 = off)")
      ->capture_default_str();
  cmd->add_option("--seed", o->sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "Prompt tokens per forward call (0 = the model's segment_len)");
  cmd->add_option("--threads", o->threads, "torch intra-op threads (0 = default)");
  cmd->callback([o, p] {
    o->has_prompt = p->count() > 0;
    run_generate(*o);
  });
}

}  // namespace loom::cli
