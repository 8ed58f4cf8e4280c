// `loom translate`: translates a TXT or JSONL dataset with an HF Marian / NLLB checkpoint or a
// loom model directory (models::load_encoder_decoder dispatches on config.json model_type).
// Wiring only: io::HfCheckpoint + models::EncoderDecoder + text tokenizer -> generate::Translator,
// driven row by row by pipeline::run_translate_job.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <thread>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/paths.h"
#include "loom/generate/translator.h"
#include "loom/io/checkpoint.h"
#include "loom/io/hub.h"
#include "loom/models/encoder_decoder.h"
#include "loom/pipeline/translate_job.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "loom/text/tokenizer_files.h"

namespace loom::cli {
namespace {

struct TranslateArgs {
  std::string model, src, tgt, fields = "prompt,text", shard, on_error = "abort", rejects, format = "auto";
  std::string suffix, length_cap = "2,10";
  int beam = 0;
  int64_t max_new_tokens = 0, batch_tokens = 4096, max_batch_size = 64, checkpoint_rows = 10000;
  int threads = 0;
  bool resume = false, overwrite = false, in_place = false, no_markdown = false, no_progress = false;
  bool missing_fields_ok = false;
  std::string input = "-", output = "-";
};

// The job's view of the engine: sentences in, translations out, with counters for progress.
class EngineAdapter : public pipeline::SegmentTranslator {
 public:
  explicit EngineAdapter(generate::Translator& t) : translator_(t) {}
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    return translator_.translate(segments);
  }
  int64_t target_tokens() const override { return translator_.stats().target_tokens; }
  std::string summary() const override {
    const auto& s = translator_.stats();
    return fmt::format("sentences {}, split {}, capped {}, source tokens {}, target tokens {}", s.sentences,
                       s.split_sentences, s.capped, s.source_tokens, s.target_tokens);
  }

 private:
  generate::Translator& translator_;
};

// tokenizer_config.json's "target_lang" (Marian single-pair models: "zh", "zho"), or "".
std::string configured_target_lang(const std::string& model_dir) {
  const std::string path = model_dir + "/tokenizer_config.json";
  if (!core::file_exists(path)) return {};
  const nlohmann::json j = core::read_json(path);  // already validated by the tokenizer
  auto it = j.find("target_lang");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string default_model() {
  auto dir = core::models_dir() / "en-zh";
  if (std::filesystem::is_regular_file(dir / "config.json")) return dir.string();
  fail(Where{"", 0, "--model"},
       "no model given and no default model at {}; pass --model DIR or a hub id (see `loom download`)",
       dir.string());
}

void run_translate(const TranslateArgs& a) {
  const std::string model_dir = io::resolve_model(a.model.empty() ? default_model() : a.model);
  if (a.threads > 0) torch::set_num_threads(a.threads);
  torch::InferenceMode guard;

  io::HfCheckpoint checkpoint(model_dir);
  auto tokenizer = text::load_seq2seq_tokenizer(model_dir);
  tokenizer->set_languages(a.src, a.tgt);
  auto model = models::load_encoder_decoder(checkpoint);

  auto gen = generate::GenerationOptions::from_hf(checkpoint.config(), checkpoint.generation_config());
  if (a.beam > 0) gen.num_beams = a.beam;
  gen.num_return_sequences = 1;
  if (auto bos = tokenizer->forced_bos_token_id()) gen.forced_bos_token_id = *bos;
  if (a.max_new_tokens > 0) {
    gen.max_new_tokens = a.max_new_tokens;
  } else {
    double ca = 0, cb = 0;
    if (std::sscanf(a.length_cap.c_str(), "%lf,%lf", &ca, &cb) != 2 || ca < 0 || cb < 1) {
      fail(Where{"", 0, "--length-cap"}, "'{}' is not A,B with A >= 0 and B >= 1", a.length_cap);
    }
    gen.max_new_tokens_a = ca;
    gen.max_new_tokens_b = cb;
  }
  generate::TranslatorOptions topts;
  topts.batch_tokens = a.batch_tokens;
  topts.max_batch_size = a.max_batch_size;
  generate::Translator translator(*model, *tokenizer, gen, topts);
  EngineAdapter adapter(translator);

  pipeline::TranslateJobOptions job;
  job.input = a.input;
  job.output = a.output;
  job.format = pipeline::parse_row_format(a.format);
  job.fields.clear();
  for (size_t b = 0; b <= a.fields.size();) {
    size_t e = a.fields.find(',', b);
    if (e == std::string::npos) e = a.fields.size();
    if (e > b) {
      std::string field = a.fields.substr(b, e - b);
      if (std::find(job.fields.begin(), job.fields.end(), field) != job.fields.end())
        fail(Where{"", 0, "--fields"}, "field '{}' is listed twice", field);
      job.fields.push_back(std::move(field));
    }
    b = e + 1;
  }
  if (job.fields.empty()) fail(Where{"", 0, "--fields"}, "no field names given");
  job.missing_fields_ok = a.missing_fields_ok;
  job.target_lang = a.tgt.empty() ? tokenizer->target_language() : a.tgt;
  if (job.target_lang.empty()) job.target_lang = configured_target_lang(model_dir);
  job.suffix = a.suffix;
  job.in_place = a.in_place;
  if (!a.shard.empty()) {
    int i = -1, n = -1;
    char extra = 0;
    if (std::sscanf(a.shard.c_str(), "%d/%d%c", &i, &n, &extra) != 2 || n < 1 || i < 0 || i >= n) {
      fail(Where{"", 0, "--shard"}, "'{}' is not I/N with 0 <= I < N", a.shard);
    }
    job.shard_index = i;
    job.shard_count = n;
  }
  job.resume = a.resume;
  job.overwrite = a.overwrite;
  job.on_error = pipeline::parse_on_error(a.on_error);
  job.rejects = a.rejects;
  job.checkpoint_rows = a.checkpoint_rows;
  job.markdown = !a.no_markdown;
  job.progress = !a.no_progress;
  job.engine_id = fmt::format("model={} src={} tgt={} beam={} max_new_tokens={} length_cap={}",
                              std::filesystem::weakly_canonical(model_dir).string(), a.src, a.tgt,
                              gen.num_beams, a.max_new_tokens, a.max_new_tokens > 0 ? "-" : a.length_cap);
  if (job.output != "-") {  // like `mkdir -p`: the README's main job writes into out/
    const auto parent = std::filesystem::path(job.output).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) fail(Where{parent.string()}, "cannot create the output directory: {}", ec.message());
  }
  pipeline::run_translate_job(job, adapter);
}

}  // namespace

void add_translate(CLI::App& app) {
  static TranslateArgs a;
  auto* cmd = app.add_subcommand("translate", "Translate a TXT or JSONL dataset (resumable, shardable)");
  cmd->add_option("INPUT", a.input, "Input .txt (one sentence/paragraph per line) or .jsonl; - = stdin")
      ->capture_default_str();
  cmd->add_option("OUTPUT", a.output, "Output file; - = stdout")->capture_default_str();
  cmd->add_option("--model,-m", a.model, "HF checkpoint directory or hub id in the local HF cache (default: models/en-zh)");
  cmd->add_option("--src", a.src, "Source language code (NLLB: eng_Latn; Marian: usually implied)");
  cmd->add_option("--tgt", a.tgt, "Target language code (NLLB: zho_Hans; Marian multi-target: >>cmn_Hans<<)");
  cmd->add_option("--fields", a.fields, "JSONL fields to translate, comma-separated")->capture_default_str();
  cmd->add_option("--suffix", a.suffix, "Translation key = field + suffix (default _<tgt>)");
  cmd->add_flag("--in-place", a.in_place, "Write translations over the source fields");
  cmd->add_flag("--missing-fields-ok", a.missing_fields_ok, "Skip a listed field absent from a row instead of failing");
  cmd->add_option("--format", a.format, "auto, jsonl or txt")->capture_default_str();
  cmd->add_option("--beam", a.beam, "Beam size (default: generation_config.json num_beams; 1 = greedy)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--max-new-tokens", a.max_new_tokens, "Fixed cap on generated tokens per sentence (replaces --length-cap)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--length-cap", a.length_cap, "Stop a sentence at A*|source|+B tokens (counted as capped)")
      ->capture_default_str();
  cmd->add_option("--batch-tokens", a.batch_tokens, "Padded source tokens per batch")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--max-batch-size", a.max_batch_size, "Sentences per batch")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--threads", a.threads, "Intra-op threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("--shard", a.shard, "Translate shard I of N (0-based; default $RANK/$WORLD_SIZE)");
  cmd->add_flag("--resume", a.resume, "Continue an interrupted job from its last checkpoint");
  cmd->add_flag("--overwrite", a.overwrite, "Replace an existing output");
  cmd->add_option("--on-error", a.on_error, "Bad rows: abort (default) or skip (to the rejects file)")
      ->capture_default_str();
  cmd->add_option("--rejects", a.rejects, "Rejects file (default OUTPUT.rejects.jsonl)");
  cmd->add_option("--checkpoint-rows", a.checkpoint_rows, "Checkpoint every N rows")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_flag("--no-markdown", a.no_markdown, "Treat fields as plain text (no Markdown structure)");
  cmd->add_flag("--no-progress", a.no_progress, "No live progress line");
  cmd->callback([] { run_translate(a); });
}

}  // namespace loom::cli
