// `loom eval lm` (streaming perplexity of documents) and `loom eval passkey` (the passkey-retrieval
// accuracy grid with JSON + heat-map output) for loom DecoderLM model directories.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/core/plot.h"
#include "loom/data/passkey.h"
#include "loom/pipeline/knn_stats.h"
#include "loom/pipeline/lm_eval.h"
#include "loom/models/decoder_lm.h"
#include "loom/text/lm_tokenizer.h"
#include "loom/train/lm_data.h"

namespace loom::cli {
namespace {

struct EvalLmOptions {
  std::string model;
  std::vector<std::string> files;
  std::string doc_split = "file";
  int64_t chunk = 0, max_tokens = 0, knn_memory_size = -1, threads = 0;
  bool json = false;
  std::string memory_stats;                  // JSON file of kNN diagnostics ("" = off)
  std::vector<std::string> section_markers;  // line prefixes that start a section
};

/// Loads a model directory, optionally with a different kNN memory capacity (< 0: the config's;
/// 0: memory off).
models::DecoderLM load_lm(const std::string& dir, int64_t knn_memory_size) {
  if (knn_memory_size < 0) return models::load_decoder_lm(dir);
  auto model = models::load_decoder_lm(dir);
  auto cfg = model->config();
  cfg.knn_memory.capacity = knn_memory_size;
  models::DecoderLM m2(cfg, 0);
  torch::NoGradGuard ng;
  auto src = model->named_parameters(), dst = m2->named_parameters();
  for (auto& p : dst) p.value().copy_(src[p.key()]);
  return m2;
}

void run_eval_lm(const EvalLmOptions& o) {
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  auto model = load_lm(o.model, o.knn_memory_size);
  auto tok = text::LmTokenizer::load(o.model);
  std::string marker;
  auto split = train::parse_doc_split(o.doc_split, &marker);
  auto docs = train::read_lm_documents(o.files, split, marker);
  if (!o.section_markers.empty() && o.memory_stats.empty())
    fail(Where{"", 0, "--section-marker"}, "only used with --memory-stats");
  if (!o.memory_stats.empty()) pipeline::attach_knn_stats(*model, {128, 512, 2048, 8192, 32768});
  pipeline::PerplexityResult total;
  nlohmann::json per_doc = nlohmann::json::array();
  for (auto& d : docs) {
    auto ids = tok.encode(d.text);
    if (!o.memory_stats.empty())
      pipeline::set_knn_stat_sections(*model, pipeline::section_starts(d.text, o.section_markers, tok));
    auto r = pipeline::document_perplexity(*model, ids, o.chunk, o.max_tokens);
    total.nll += r.nll;
    total.tokens += r.tokens;
    total.seconds += r.seconds;
    per_doc.push_back({{"document", d.name}, {"tokens", r.tokens}, {"loss", r.loss()}, {"ppl", r.ppl()},
                       {"tokens_per_s", r.tokens_per_s()}});
    if (!o.json)
      std::printf("%s\ttokens %lld\tloss %.4f nats/token\tppl %.3f\t%.0f tokens/s\n", d.name.c_str(),
                  static_cast<long long>(r.tokens), r.loss(), r.ppl(), r.tokens_per_s());
  }
  if (!o.memory_stats.empty()) {
    nlohmann::json st = pipeline::knn_stats_json(*model);
    st["model"] = o.model;
    st["knn_memory_size"] = model->config().knn_memory.capacity;
    st["tokens"] = total.tokens;
    st["section_markers"] = o.section_markers;
    std::ofstream out(o.memory_stats, std::ios::trunc);
    out << st.dump(1) << "\n";
    if (!out) fail(Where{o.memory_stats, 0, ""}, "cannot write");
    std::fprintf(stderr, "kNN memory statistics (memory %lld tokens; shares of memory attention mass):\n%s",
                 static_cast<long long>(model->config().knn_memory.capacity),
                 pipeline::format_knn_stats(st).c_str());
  }
  if (o.json) {
    nlohmann::json j = {{"model", o.model}, {"documents", per_doc}, {"tokens", total.tokens},
                        {"loss", total.loss()}, {"ppl", total.ppl()}, {"tokens_per_s", total.tokens_per_s()},
                        {"knn_memory_size", model->config().knn_memory.capacity}};
    std::printf("%s\n", j.dump(1).c_str());
  } else {
    std::printf("total\ttokens %lld\tloss %.4f nats/token\tppl %.3f\t%.0f tokens/s\n",
                static_cast<long long>(total.tokens), total.loss(), total.ppl(), total.tokens_per_s());
  }
}

struct EvalPasskeyOptions {
  std::string model, lengths = "1K,2K,4K", depths = "0,25,50,75,100", json_out, svg_out;
  int64_t trials = 5, chunk = 0, threads = 0;
  uint64_t seed = 1;
  bool quiet = false;
};

std::vector<double> parse_depths(const std::string& list) {
  std::vector<double> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      double v = std::stod(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      fail(Where{"", 0, "--depths"}, "bad depth \"{}\" (expected percentages like 0,25,50,75,100)", item);
    }
  }
  return out;
}

std::string length_label(int64_t n) {
  if (n % (1024 * 1024) == 0) return std::to_string(n / (1024 * 1024)) + "M";
  if (n % 1024 == 0) return std::to_string(n / 1024) + "K";
  return std::to_string(n);
}

void run_eval_passkey(const EvalPasskeyOptions& o) {
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  auto model = models::load_decoder_lm(o.model);
  auto tok = text::LmTokenizer::load(o.model);
  pipeline::PasskeyEvalOptions po;
  po.lengths = data::parse_token_lengths(o.lengths, "--lengths");
  po.depths = parse_depths(o.depths);
  po.trials = o.trials;
  po.seed = o.seed;
  po.chunk = o.chunk;
  auto g = pipeline::passkey_grid(*model, tok, po, !o.quiet);
  std::printf("passkey retrieval, %lld trials per cell: exact 5-digit match / per-digit accuracy\n",
              static_cast<long long>(g.trials));
  std::printf("%-8s", "length");
  for (double d : g.depths) std::printf("  depth %-8g", d);
  std::printf("\n");
  for (size_t i = 0; i < g.lengths.size(); ++i) {
    std::printf("%-8s", length_label(g.lengths[i]).c_str());
    for (size_t j = 0; j < g.depths.size(); ++j) std::printf("  %.2f / %.2f  ", g.exact[i][j], g.digit[i][j]);
    std::printf("\n");
  }
  if (!o.json_out.empty()) {
    nlohmann::json j = g.to_json();
    j["model"] = o.model;
    std::ofstream out(o.json_out, std::ios::trunc);
    out << j.dump(1) << "\n";
    if (!out) fail(Where{o.json_out, 0, ""}, "cannot write");
  }
  if (!o.svg_out.empty()) {
    core::HeatMap h;
    h.title = fmt::format("passkey retrieval: per-digit accuracy ({} trials per cell)", g.trials);
    h.x_label = "needle depth %";
    h.y_label = "context tokens";
    for (auto n : g.lengths) h.row_labels.push_back(length_label(n));
    for (auto d : g.depths) h.col_labels.push_back(fmt::format("{:g}", d));
    h.values = g.digit;
    core::write_svg(o.svg_out, core::heat_map_svg(h));
  }
}

}  // namespace

void add_eval_lm(CLI::App& eval) {
  auto o = std::make_shared<EvalLmOptions>();
  auto* cmd = eval.add_subcommand("lm", "Streaming perplexity of a loom DecoderLM on documents");
  cmd->add_option("--model", o->model, "Model directory (config.json, model.safetensors, tokenizer.json)")->required();
  cmd->add_option("files", o->files, "Text files (one file = one document unless --doc-split)")->required();
  cmd->add_option("--doc-split", o->doc_split, "file, blank_lines or marker:TEXT")->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "Tokens per forward call (0 = the model's segment_len)");
  cmd->add_option("--max-tokens", o->max_tokens, "Evaluate only the first N predicted tokens of each document");
  cmd->add_option("--knn-memory-size", o->knn_memory_size,
                  "Override the kNN memory capacity (tokens per head; 0 = memory off; default: the model's)");
  cmd->add_option("--memory-stats", o->memory_stats,
                  "Write kNN-layer diagnostics as JSON to this file and print a table to stderr: per layer and head "
                  "the gate sigmoid(b), attention mass on memory vs local keys, retrieval distances in tokens, "
                  "same-section share");
  cmd->add_option("--section-marker", o->section_markers,
                  "With --memory-stats: lines starting with one of these prefixes start a section "
                  "(comma-separated, e.g. 'Chapter ,Letter ')")
      ->delimiter(',');
  cmd->add_option("--threads", o->threads, "torch intra-op threads (0 = default)");
  cmd->add_flag("--json", o->json, "Print one JSON object");
  cmd->callback([o] { run_eval_lm(*o); });
}

void add_eval_passkey(CLI::App& eval) {
  auto o = std::make_shared<EvalPasskeyOptions>();
  auto* cmd = eval.add_subcommand("passkey", "Passkey-retrieval accuracy grid (length x depth) of a loom DecoderLM");
  cmd->add_option("--model", o->model, "Model directory")->required();
  cmd->add_option("--lengths", o->lengths, "Prompt lengths in tokens, e.g. 1K,2K,4K,64K")->capture_default_str();
  cmd->add_option("--depths", o->depths, "Needle depths in percent")->capture_default_str();
  cmd->add_option("--trials", o->trials, "Random keys per cell")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Key seed")->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "Prompt tokens per forward call (0 = segment_len)");
  cmd->add_option("--threads", o->threads, "torch intra-op threads (0 = default)");
  cmd->add_option("--json", o->json_out, "Write the grid as JSON to this file");
  cmd->add_option("--svg", o->svg_out, "Write a heat map (per-digit accuracy) to this SVG file");
  cmd->add_flag("--quiet", o->quiet, "No per-cell progress on stderr");
  cmd->callback([o] { run_eval_passkey(*o); });
}

}  // namespace loom::cli
