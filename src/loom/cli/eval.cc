// `loom eval`: the command group for evaluations. Each sub-command is registered on the group
// by one add_eval_<name>(CLI::App& eval) function (declared in commands.h); add new ones (e.g.
// `eval lm`, `eval passkey`) to the list in add_eval() below. `eval mt` lives in this file.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/eval/mt_eval.h"

namespace loom::cli {
namespace {

struct EvalMtOptions {
  std::vector<std::string> refs;
  std::string hyp;
  std::string tokenize;  // empty: 13a, or zh for --lang zh
  std::string lang;
  std::string metrics = "bleu,chrf";
  int chrf_word_order = 0;
  int width = 2;
  bool json = false;
  bool sentence_level = false;
  bool no_signature = false;
};

void run_eval_mt(const EvalMtOptions& o) {
  eval::MtEvalOptions opts;
  // Tokenizer: explicit, else by target language as sacreBLEU (zh -> zh; ja/ko need MeCab).
  if (!o.tokenize.empty()) {
    opts.bleu.tokenize = eval::parse_bleu_tokenizer(o.tokenize);
    if (o.lang == "zh" && opts.bleu.tokenize != eval::BleuTokenizer::kZh)
      std::fprintf(stderr, "loom: warning: consider --tokenize zh for Chinese (sacreBLEU's default for zh)\n");
  } else if (o.lang == "zh") {
    opts.bleu.tokenize = eval::BleuTokenizer::kZh;
  } else if (o.lang == "ja" || o.lang == "ko") {
    fail(Where{"", 0, "--lang"},
         "sacreBLEU tokenizes {} with MeCab ({}-mecab), which loom does not implement; pass --tokenize "
         "13a|zh|intl|none explicitly",
         o.lang, o.lang);
  }
  opts.compute_bleu = opts.compute_chrf = false;
  for (size_t pos = 0; pos <= o.metrics.size();) {
    size_t end = o.metrics.find(',', pos);
    if (end == std::string::npos) end = o.metrics.size();
    const std::string m = o.metrics.substr(pos, end - pos);
    if (m == "bleu") {
      opts.compute_bleu = true;
    } else if (m == "chrf") {
      opts.compute_chrf = true;
    } else {
      fail(Where{"", 0, "--metrics"}, "unknown metric '{}' (expected bleu, chrf)", m);
    }
    pos = end + 1;
  }
  opts.chrf.word_order = o.chrf_word_order;
  opts.sentence_level = o.sentence_level;

  const auto hyp = eval::read_segments(o.hyp);
  std::vector<std::vector<std::string>> refs;
  for (const auto& r : o.refs) refs.push_back(eval::read_segments(r));
  const auto result = eval::evaluate_mt(hyp, refs, opts, o.hyp, o.refs);

  if (o.json) {
    std::printf("%s\n", eval::mt_eval_json(result, opts, o.width).dump(1).c_str());
    return;
  }
  const std::string bleu_sig = eval::bleu_signature(opts.bleu, result.nrefs, eval::kSignatureVersion);
  eval::ChrfOptions chrf_opts = opts.chrf;
  const std::string chrf_sig = eval::chrf_signature(chrf_opts, result.nrefs, eval::kSignatureVersion);
  if (o.sentence_level) {
    for (int64_t i = 0; i < result.segments; ++i) {
      const size_t k = static_cast<size_t>(i);
      std::string line = fmt::format("{}:", i + 1);
      if (opts.compute_bleu) {
        const auto& b = result.sentence_bleu[k];
        line += fmt::format(" BLEU = {:.{}f} {}", b.score, o.width, b.verbose());
      }
      if (opts.compute_chrf) line += fmt::format(" {} = {:.{}f}", result.sentence_chrf[k].name,
                                                 result.sentence_chrf[k].score, o.width);
      std::printf("%s\n", line.c_str());
    }
  }
  // The signature of sentence-level BLEU has eff:yes; the corpus lines below keep eff:no.
  if (opts.compute_bleu)
    std::printf("%s\n", o.no_signature
                            ? fmt::format("BLEU = {:.{}f} {}", result.bleu.score, o.width, result.bleu.verbose()).c_str()
                            : eval::format_bleu_line(result.bleu, bleu_sig, o.width).c_str());
  if (opts.compute_chrf)
    std::printf("%s\n", o.no_signature
                            ? fmt::format("{} = {:.{}f}", result.chrf.name, result.chrf.score, o.width).c_str()
                            : eval::format_chrf_line(result.chrf, chrf_sig, o.width).c_str());
}

}  // namespace

void add_eval_mt(CLI::App& eval) {
  auto o = std::make_shared<EvalMtOptions>();
  auto* cmd = eval.add_subcommand(
      "mt", "Score translations with corpus BLEU and chrF (sacreBLEU 2.x definitions and signatures)");
  cmd->add_option("--ref,-r", o->refs, "Reference file, one segment per line (repeat for more references)")
      ->required();
  cmd->add_option("--hyp,-i", o->hyp, "Hypothesis (system output) file, line-aligned with the references")
      ->required();
  cmd->add_option("--tokenize,-t", o->tokenize, "BLEU tokenizer: 13a (default), zh (default for --lang zh), intl, none")
      ->check(CLI::IsMember({"13a", "zh", "intl", "none"}));
  cmd->add_option("--lang,-l", o->lang, "Target language code (zh selects the zh tokenizer)");
  cmd->add_option("--metrics,-m", o->metrics, "Comma-separated metrics: bleu, chrf")->capture_default_str();
  cmd->add_option("--chrf-word-order", o->chrf_word_order, "chrF word n-gram order (2 = chrF++)")
      ->check(CLI::Range(0, 9))
      ->capture_default_str();
  cmd->add_option("--width,-w", o->width, "Decimals of the printed scores")->check(CLI::Range(0, 10))->capture_default_str();
  cmd->add_flag("--json", o->json, "Print one JSON object (scores, signatures, n-gram counts)");
  cmd->add_flag("--sentence-level", o->sentence_level,
                "Also score every line (BLEU with effective order, as sacreBLEU --sentence-level)");
  cmd->add_flag("--no-signature", o->no_signature, "Print 'BLEU = ...' without the signature");
  cmd->callback([o] { run_eval_mt(*o); });
}

void add_eval(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "Evaluate models and outputs (sub-commands: mt, lm, passkey)");
  eval->require_subcommand(1);
  // ---- `loom eval` sub-commands: one line each (declared in commands.h) ----
  add_eval_mt(*eval);
  add_eval_lm(*eval);
  add_eval_passkey(*eval);
}

}  // namespace loom::cli
