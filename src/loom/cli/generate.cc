// `loom generate`: sampling with the text streamed to stdout as tokens are produced, from a
// loom DecoderLM model directory (loom::generate::generate_lm) or a Hugging Face decoder-only
// checkpoint (Gemma 1/2/3, Llama, Qwen2, Mistral: models::CausalLM), chosen by config.json's
// model_type.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "loom/cli/commands.h"
#include "loom/cli/causal_session.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/io/hub.h"
#include "loom/generate/lm_generate.h"
#include "loom/models/decoder_lm.h"
#include "loom/text/lm_tokenizer.h"

namespace loom::cli {
namespace {

struct GenerateOptions {
  std::string model, prompt;
  bool has_prompt = false, chat = false;
  std::vector<std::string> stop;
  int64_t max_new_tokens = 100, chunk = 0, threads = 0;
  std::string compute_type = "float32";
  generate::SamplingOptions sampling;
};

// HF decoder-only checkpoint: stdin's one trailing newline (echo) is not part of the prompt.
void run_hf_generate(const GenerateOptions& o, const std::string& dir) {
  auto m = load_causal_model(dir, nn::parse_weight_type(o.compute_type, "--compute-type"));
  std::string prompt = o.prompt;
  if (!o.has_prompt) {
    prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
    if (!prompt.empty() && prompt.back() == '\n') prompt.pop_back();
    if (!prompt.empty() && prompt.back() == '\r') prompt.pop_back();
  }
  if (prompt.empty()) fail(Where{"", 0, "--prompt"}, "the prompt is empty (give --prompt TEXT or text on stdin)");
  generate::CausalGenerateOptions go;
  go.max_new_tokens = o.max_new_tokens;
  go.sampling = o.sampling;
  std::vector<int64_t> ids;
  if (o.chat) {
    ids = encode_chat(m, nlohmann::json::array({{{"role", "user"}, {"content", prompt}}}));
    go.stop_ids = chat_stop_ids(m);
  } else {
    ids = m.tokenizer.encode(prompt, /*add_special_tokens=*/true);
    go.stop_ids = generate::default_stop_ids(*m.model);
  }
  generate::Sequence seq(m.model, ids, go);
  stream_answer(m, seq, o.stop, stdout);
  std::fputc('\n', stdout);
  const int64_t ctx = m.model->config().max_position;
  if (seq.finish_reason() == generate::FinishReason::kLength && static_cast<int64_t>(seq.tokens().size()) >= ctx)
    std::fprintf(stderr, "loom generate: stopped at the model's context window of %lld tokens (prompt %zu tokens, "
                 "%zu generated)\n", static_cast<long long>(ctx), ids.size(), seq.generated().size());
}

void run_generate(const GenerateOptions& o) {
  if (o.max_new_tokens < 1) fail(Where{"", 0, "--max-new-tokens"}, "must be >= 1, got {}", o.max_new_tokens);
  if (o.chunk < 0) fail(Where{"", 0, "--chunk"}, "must be >= 0, got {}", o.chunk);
  if (o.threads < 0) fail(Where{"", 0, "--threads"}, "must be >= 0, got {}", o.threads);
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  generate::validate(o.sampling);
  const std::string dir = io::resolve_model(o.model);
  const auto config = core::read_json(dir + "/config.json");
  if (models::is_hf_causal_lm(config)) return run_hf_generate(o, dir);
  // A translation checkpoint is named as such instead of failing on its first unknown field.
  const std::string type = config.value("model_type", std::string());
  if (config.value("is_encoder_decoder", false) || type == "marian" || type == "m2m_100" || type == "nllb" ||
      type == "loom_seq2seq")
    fail(Where{o.model, 0, "--model"}, "is a '{}' translation model (encoder-decoder); `loom generate` runs "
         "decoder-only language models — use `loom translate --model {}`", type, o.model);
  if (o.chat) fail(Where{dir + "/config.json", 0, "model_type"}, "--chat needs a Hugging Face chat model");
  if (o.compute_type != "float32")
    fail(Where{"", 0, "--compute-type"}, "is only supported for Hugging Face models (loom DecoderLM runs float32)");
  if (o.sampling.min_p > 0) fail(Where{"", 0, "--min-p"}, "is only supported for Hugging Face models");
  if (!o.stop.empty()) fail(Where{"", 0, "--stop"}, "is only supported for Hugging Face models");
  auto model = models::load_decoder_lm(dir);
  auto tok = text::LmTokenizer::load(dir);
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
  auto* cmd = app.add_subcommand(
      "generate", "Continue a prompt with a decoder-only LM (HF Gemma/Llama/Qwen2/Mistral or loom DecoderLM), streamed to stdout");
  cmd->add_option("--model", o->model, "Model directory or hub id (config.json, weights, tokenizer)")->required();
  auto* p = cmd->add_option("--prompt", o->prompt, "Prompt text (default: read stdin)");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", o->sampling.temperature, "Softmax temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--repetition-penalty", o->sampling.repetition_penalty, "HF/CTRL repetition penalty (1 = off)")
      ->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Drop tokens below min_p x the top probability (0 = off; HF models)")
      ->capture_default_str();
  cmd->add_option("--stop", o->stop, "Stop string: the output ends before it (repeatable; HF models)");
  cmd->add_flag("--chat", o->chat, "Wrap the prompt as one user turn with the model's chat template (HF models)");
  cmd->add_option("--seed", o->sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "Prompt tokens per forward call (0 = the model's segment_len)");
  cmd->add_option("--threads", o->threads, "torch intra-op threads (0 = default)");
  cmd->add_option("--compute-type", o->compute_type, kComputeTypeHelp)->capture_default_str();
  cmd->callback([o, p] {
    o->has_prompt = p->count() > 0;
    run_generate(*o);
  });
}

}  // namespace loom::cli
