// `loom translate`: translates a TXT or JSONL dataset with an HF Marian / NLLB checkpoint or a
// loom model directory (models::load_encoder_decoder dispatches on config.json model_type).
// Wiring only: pipeline::TranslationEngine (checkpoint + model + tokenizer -> generate::Translator)
// driven row by row by pipeline::run_translate_job.
#include <CLI/CLI.hpp>

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <tuple>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/core/paths.h"
#include "loom/io/hub.h"
#include "loom/io/model_fingerprint.h"
#include "loom/core/files.h"
#include "loom/pipeline/quality_check.h"
#include "loom/pipeline/translate_job.h"
#include "loom/pipeline/translate_workers.h"
#include "loom/pipeline/translation_engine.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace loom::cli {
namespace {

// Set by the first SIGINT/SIGTERM (the signal number); the job stops after its current chunk.
volatile std::sig_atomic_t g_stop = 0;

void on_stop_signal(int sig) {
  g_stop = sig;
  static const char kMsg[] =
      "\nloom translate: stopping after the current batch and checkpointing (press Ctrl-C again to quit "
      "at once; the last checkpoint is kept)\n";
  const ssize_t ignored = ::write(2, kMsg, sizeof(kMsg) - 1);
  (void)ignored;
}

// SIGINT/SIGTERM: a clean stop; the handler resets itself, so a second signal ends the process.
void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

struct TranslateArgs {
  std::string model, fields = "prompt,text", shard, on_error = "abort", rejects, format = "auto";
  std::string suffix;
  pipeline::EngineOptions engine;
  int64_t checkpoint_rows = 10000;
  std::string segment = "sentence";
  double checkpoint_seconds = 60;
  bool overwrite_fields = false, txt_markdown = false;
  int threads = 0;
  bool resume = false, overwrite = false, in_place = false, no_markdown = false, no_progress = false;
  bool missing_fields_ok = false, with_scores = false, meta = false, merge = false;
  int nproc = 0;
  std::string input = "-", output = "-";
  bool check_quality = false;
  int64_t check_texts = 200;
  double check_threshold = 95.0;
};

std::string default_model() {
  auto dir = core::models_dir() / "en-zh";
  if (std::filesystem::is_regular_file(dir / "config.json")) return dir.string();
  fail(Where{"", 0, "--model"},
       "no model given and no default model at {}; pass --model DIR or a hub id (see `loom download`)",
       dir.string());
}

void run_translate(const TranslateArgs& a) {
  if (a.nproc > 0 || a.merge) {  // N local workers over the shards (pipeline/translate_workers.h)
    if (a.nproc < 1 || !a.shard.empty()) fail(Where{"", 0, "--nproc"}, "--merge needs --nproc N, and --nproc runs the shards itself (no --shard)");
    install_stop_handlers();
    const int per = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / a.nproc);
    std::exit(pipeline::run_translate_workers({a.nproc, "", pipeline::own_command_line(), a.output, a.merge,
                                               a.overwrite || a.resume, per, stderr, &g_stop}, a.input));
  }
  const std::string model_dir = io::resolve_model(a.model.empty() ? default_model() : a.model);
  if (a.threads > 0) torch::set_num_threads(a.threads);
  torch::InferenceMode guard;
  pipeline::TranslationEngine engine(model_dir, a.engine);
  if (a.check_quality)
    std::exit(pipeline::run_quality_check(engine, {a.input, a.format, a.fields, a.check_texts, a.check_threshold,
                                                   a.engine.compute_type, !a.no_markdown}, stdout));

  pipeline::TranslateJobOptions job;
  job.input = a.input;
  job.output = a.output;
  job.format = pipeline::parse_row_format(a.format);
  job.fields = pipeline::parse_field_list(a.fields);
  job.missing_fields_ok = a.missing_fields_ok;
  job.target_lang = engine.target_lang();
  job.source_lang = engine.source_lang();
  job.suffix = a.suffix;
  job.in_place = a.in_place;
  if (!a.shard.empty()) std::tie(job.shard_index, job.shard_count) = pipeline::parse_shard_spec(a.shard);
  job.resume = a.resume;
  job.overwrite = a.overwrite;
  job.on_error = pipeline::parse_on_error(a.on_error);
  job.rejects = a.rejects;
  job.checkpoint_rows = a.checkpoint_rows;
  job.checkpoint_seconds = a.checkpoint_seconds;
  job.overwrite_fields = a.overwrite_fields;
  job.segment = pipeline::parse_segment_mode(a.segment);
  job.txt_markdown = a.txt_markdown && !a.no_markdown;
  job.markdown = !a.no_markdown;
  job.progress = !a.no_progress;
  job.engine_id = engine.engine_id();
  job.n_best = a.engine.n_best;
  job.with_scores = a.with_scores;
  job.meta = a.meta;
  if (job.output != "-") {  // like `mkdir -p`: the README's main job writes into out/
    const auto parent = std::filesystem::path(job.output).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) fail(Where{parent.string()}, "cannot create the output directory: {}", ec.message());
  }
  job.model_fingerprint = io::model_fingerprint(model_dir);
  job.language_codes = pipeline::leading_language_codes(engine.tokenizer());
  job.stop = &g_stop;
  install_stop_handlers();
  const pipeline::TranslateJobStats st = pipeline::run_translate_job(job, engine);
  if (st.stopped) {
    std::fflush(stdout);
    std::exit(128 + static_cast<int>(g_stop));  // 130 for SIGINT, 143 for SIGTERM, like a shell
  }
}

}  // namespace

void add_translate(CLI::App& app) {
  static TranslateArgs a;
  auto* cmd = app.add_subcommand("translate", "Translate a TXT or JSONL dataset (resumable, shardable)");
  cmd->add_option("INPUT", a.input, "Input .txt (one sentence/paragraph per line) or .jsonl; - = stdin")
      ->capture_default_str();
  cmd->add_option("OUTPUT", a.output, "Output file; - = stdout")->capture_default_str();
  cmd->add_option("--model,-m", a.model, "HF checkpoint directory or hub id in the local HF cache (default: models/en-zh)");
  cmd->add_option("--src", a.engine.src, "Source language code (NLLB: eng_Latn; Marian: usually implied)");
  cmd->add_option("--tgt", a.engine.tgt, "Target language code (NLLB: zho_Hans; Marian multi-target: >>cmn_Hans<<)");
  cmd->add_option("--fields", a.fields, "JSONL fields to translate, comma-separated")->capture_default_str();
  cmd->add_option("--suffix", a.suffix, "Translation key = field + suffix (default _<tgt>)");
  cmd->add_flag("--in-place", a.in_place, "Write translations over the source fields");
  cmd->add_flag("--missing-fields-ok", a.missing_fields_ok, "Skip a listed field absent from a row instead of failing");
  cmd->add_option("--format", a.format, "auto, jsonl or txt")->capture_default_str();
  cmd->add_option("--beam", a.engine.beam, "Beam size (default: generation_config.json num_beams; 1 = greedy)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--max-new-tokens", a.engine.max_new_tokens, "Fixed cap on generated tokens per sentence (replaces --length-cap)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--length-cap", a.engine.length_cap, "Stop a sentence at A*|source|+B tokens (counted as capped)")
      ->capture_default_str();
  cmd->add_option("--batch-tokens", a.engine.max_tokens, "Padded source tokens per batch")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--max-batch-size", a.engine.max_sentences, "Sentences per batch")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--n-best", a.engine.n_best, "JSONL: also write T_nbest, the N best translations (beam >= N)")
      ->check(CLI::Range(int64_t{1}, int64_t{256}));
  cmd->add_option("--length-penalty", a.engine.length_penalty, "Beam score = log-prob / length^P (default: the model's)");
  cmd->add_option("--repetition-penalty", a.engine.repetition_penalty, "CTRL penalty on repeated tokens (> 0; 1 = off)");
  cmd->add_option("--no-repeat-ngram-size", a.engine.no_repeat_ngram_size, "Never repeat an n-gram of this size (0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_flag("--sample", a.engine.sample, "Sample translations instead of searching (back-translation data)");
  cmd->add_option("--temperature", a.engine.temperature, "Sampling temperature (> 0)")->capture_default_str();
  cmd->add_option("--top-k", a.engine.top_k, "Sample from the K most likely tokens (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--top-p", a.engine.top_p, "Nucleus sampling mass in (0, 1]")->capture_default_str();
  cmd->add_option("--seed", a.engine.seed, "Sampling seed (a sentence's sample depends only on it and the sentence)")
      ->capture_default_str();
  cmd->add_flag("--with-scores", a.with_scores, "JSONL: also write T_score (length-normalised log-probability)");
  cmd->add_flag("--meta", a.meta, "JSONL: add loom_meta per row (line, segments, copied, split, capped, tokens)");
  cmd->add_option("--compute-type", a.engine.compute_type,
                  "Linear layers in float32, int8 (weights and activations quantized in blocks of 32) or bf16; "
                  "auto = int8 on CPUs with VNNI, else bf16 with AVX512-BF16, else float32")
      ->capture_default_str();
  cmd->add_flag("--check-quality", a.check_quality,
                "Only compare int8 and bf16 (or --compute-type) with float32 on the first --check-texts texts of "
                "INPUT: prints agreement % and BLEU vs float32, exits 1 below --check-threshold");
  cmd->add_option("--check-texts", a.check_texts, "Texts compared by --check-quality")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--check-threshold", a.check_threshold, "Minimum identical-output percentage for --check-quality")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--threads", a.threads, "Intra-op threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("--shard", a.shard, "Translate shard I of N (0-based; default $RANK/$WORLD_SIZE)");
  cmd->add_option("--nproc", a.nproc, "Run N local worker processes, one per shard (each resumable)")->check(CLI::Range(1, 1024));
  cmd->add_flag("--merge", a.merge, "With --nproc: concatenate the shard outputs into OUTPUT once all are complete");
  cmd->add_flag("--resume", a.resume, "Continue an interrupted job from its last checkpoint");
  cmd->add_flag("--overwrite", a.overwrite, "Replace an existing output");
  cmd->add_option("--on-error", a.on_error, "Bad rows: abort (default) or skip (to the rejects file)")
      ->capture_default_str();
  cmd->add_option("--rejects", a.rejects, "Rejects file (default OUTPUT.rejects.jsonl)");
  cmd->add_option("--checkpoint-rows", a.checkpoint_rows, "Checkpoint every N rows (exactly)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--checkpoint-seconds", a.checkpoint_seconds,
                  "Also checkpoint after the batch that passes S seconds since the last one")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1e9));
  cmd->add_flag("--overwrite-fields", a.overwrite_fields,
                "Replace a row's existing <field><suffix> key (default: such a row is an error)");
  cmd->add_option("--segment", a.segment,
                  "sentence: split fields into sentences (Markdown kept); line: each line is one model input")
      ->capture_default_str();
  cmd->add_flag("--txt-markdown", a.txt_markdown,
                "Read each TXT line as Markdown (headings, lists, inline code); default: plain sentences");
  cmd->add_flag("--no-markdown", a.no_markdown, "Treat fields as plain text (no Markdown structure)");
  cmd->add_flag("--no-progress", a.no_progress, "No live progress line");
  cmd->callback([] { run_translate(a); });
}

}  // namespace loom::cli
