// `loom eval mt` end to end: sacreBLEU's text lines and JSON, multi-reference input, --lang zh,
// and the input errors (misaligned files, invalid UTF-8) named by file and line.
//
// How the numbers were checked against sacreBLEU: the README example values are published by
// sacreBLEU (README "Using SacreBLEU from Python": BLEU 48.53 ..., chrF2 59.73). The Tatoeba
// values were computed with sacreBLEU's own source (github mjpost/sacrebleu, v2.6.0, Python
// 3.11) on the same perturbed corpus this test builds:
//   hyp[i] = ref[i] (i % 3 == 0), ref[i][:-1] (i % 3 == 1), ref[i][1:] + ref[i][:1] (i % 3 == 2)
//   BLEU(tokenize=...).corpus_score(hyp, [ref]).score, CHRF().corpus_score(...).score,
//   CHRF(word_order=2).corpus_score(...).score
#include <gtest/gtest.h>
#include "support/paths.h"
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "loom/core/utf8.h"
#include "loom/eval/mt_tokenize.h"
#include "support/support.h"

namespace {
namespace fs = std::filesystem;

class EvalCli : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return (dir_ / name).string();
  }

  // Runs `loom args...`; returns the exit code, stdout in out_, stderr in err_.
  int run(const std::vector<std::string>& args) {
    const auto r = loom_test::run_loom(args, dir_);
    out_ = r.out;
    err_ = r.err;
    return r.code;
  }

  loom_test::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::string out_, err_;
};

TEST_F(EvalCli, SacreBleuReadmeExampleTextAndJson) {
  const auto hyp = write("hyp.txt", "The dog bit the man.\nIt wasn't surprising.\nThe man had just bitten him.\n");
  const auto r1 = write("r1.txt", "The dog bit the man.\nIt was not unexpected.\nThe man bit him first.\n");
  // No final newline: the last line still counts.
  const auto r2 = write("r2.txt", "The dog had bit the man.\nNo one was surprised.\nThe man had bitten the dog.");
  ASSERT_EQ(run({"eval", "mt", "--ref", r1, "--ref", r2, "--hyp", hyp}), 0) << err_;
  EXPECT_EQ(out_,
            "BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:loom-0.1.0 = 48.53 82.4/50.0/45.5/37.5 "
            "(BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)\n"
            "chrF2|nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:loom-0.1.0 = 59.73\n");

  ASSERT_EQ(run({"eval", "mt", "-r", r1, "-r", r2, "-i", hyp, "--json"}), 0) << err_;
  auto j = nlohmann::json::parse(out_);
  EXPECT_EQ(j["segments"], 3);
  EXPECT_EQ(j["nrefs"], 2);
  EXPECT_DOUBLE_EQ(j["bleu"]["score"].get<double>(), 48.53);
  EXPECT_NEAR(j["bleu"]["score_exact"].get<double>(), 48.530827, 1e-6);
  EXPECT_EQ(j["bleu"]["hyp_len"], 17);
  EXPECT_EQ(j["bleu"]["ref_len"], 18);
  EXPECT_EQ(j["bleu"]["tokenize"], "13a");
  EXPECT_DOUBLE_EQ(j["chrf"]["score"].get<double>(), 59.73);
  EXPECT_EQ(j["chrf"]["name"], "chrF2");

  ASSERT_EQ(run({"eval", "mt", "-r", r1, "-r", r2, "-i", hyp, "--no-signature", "-w", "1", "-m", "bleu"}), 0) << err_;
  EXPECT_EQ(out_, "BLEU = 48.5 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)\n");
}

TEST_F(EvalCli, SentenceLevel) {
  // Line 1: identical -> BLEU 100, chrF 100. Line 2: "the cat" vs 6 tokens -> sentence BLEU
  // with effective order = 100 * exp(1 - 6/2) = 13.53 (see tests/eval/bleu_test.cc).
  const auto hyp = write("hyp.txt", "a b c d\nthe cat\n");
  const auto ref = write("ref.txt", "a b c d\nthe cat sat on the mat\n");
  ASSERT_EQ(run({"eval", "mt", "--ref", ref, "--hyp", hyp, "--sentence-level", "--tokenize", "none", "-m", "bleu"}), 0)
      << err_;
  std::istringstream lines(out_);
  std::string l1, l2, l3;
  std::getline(lines, l1);
  std::getline(lines, l2);
  std::getline(lines, l3);
  EXPECT_EQ(l1.rfind("1: BLEU = 100.00 ", 0), 0u) << l1;
  EXPECT_EQ(l2.rfind("2: BLEU = 13.53 ", 0), 0u) << l2;
  EXPECT_EQ(l3.rfind("BLEU|nrefs:1|case:mixed|eff:no|tok:none|", 0), 0u) << l3;
}

// Tatoeba (tests/data/mt/tatoeba-400.tsv) references with a deterministic perturbation.
struct Corpus {
  std::string ref, hyp;
};
Corpus tatoeba_side(int column) {
  std::ifstream in(std::string(LOOM_TEST_DATA) + "/mt/tatoeba-400.tsv");
  std::string line;
  Corpus c;
  int i = 0;
  while (std::getline(in, line)) {
    std::string field = line.substr(column == 0 ? 0 : line.find('\t') + 1);
    if (column == 0) field = field.substr(0, field.find('\t'));
    auto cps = loom::core::utf8_to_code_points(field);
    std::u32string h = cps;
    if (i % 3 == 1 && !cps.empty()) h = cps.substr(0, cps.size() - 1);
    if (i % 3 == 2 && !cps.empty()) h = cps.substr(1) + cps.substr(0, 1);
    c.ref += field + "\n";
    c.hyp += loom::core::code_points_to_utf8(h) + "\n";
    ++i;
  }
  EXPECT_EQ(i, 416);
  return c;
}

TEST_F(EvalCli, TatoebaChineseMatchesSacreBleu) {
  const Corpus c = tatoeba_side(1);
  const auto ref = write("ref.zh", c.ref), hyp = write("hyp.zh", c.hyp);
  // --lang zh selects the zh tokenizer.
  ASSERT_EQ(run({"eval", "mt", "--ref", ref, "--hyp", hyp, "--lang", "zh", "--json"}), 0) << err_;
  auto j = nlohmann::json::parse(out_);
  EXPECT_EQ(j["bleu"]["tokenize"], "zh");
  EXPECT_NEAR(j["bleu"]["score_exact"].get<double>(), 93.16472529219264, 1e-9);
  EXPECT_EQ(j["bleu"]["hyp_len"], 3891);
  EXPECT_EQ(j["bleu"]["ref_len"], 4030);
  EXPECT_NEAR(j["chrf"]["score_exact"].get<double>(), 91.81848932504597, 1e-9);
  ASSERT_EQ(run({"eval", "mt", "--ref", ref, "--hyp", hyp, "--tokenize", "intl", "--chrf-word-order", "2", "--json"}), 0);
  j = nlohmann::json::parse(out_);
  EXPECT_NEAR(j["bleu"]["score_exact"].get<double>(), 43.12420859819549, 1e-9);
  EXPECT_EQ(j["chrf"]["name"], "chrF2++");
  EXPECT_NEAR(j["chrf"]["score_exact"].get<double>(), 80.4571226835281, 1e-9);
  ASSERT_EQ(run({"eval", "mt", "--ref", ref, "--hyp", hyp, "--json"}), 0);  // 13a on Chinese
  EXPECT_NEAR(nlohmann::json::parse(out_)["bleu"]["score_exact"].get<double>(), 53.730905778753105, 1e-9);
}

TEST_F(EvalCli, TatoebaEnglishMatchesSacreBleu) {
  const Corpus c = tatoeba_side(0);
  const auto ref = write("ref.en", c.ref), hyp = write("hyp.en", c.hyp);
  ASSERT_EQ(run({"eval", "mt", "--ref", ref, "--hyp", hyp, "--json"}), 0) << err_;
  auto j = nlohmann::json::parse(out_);
  EXPECT_NEAR(j["bleu"]["score_exact"].get<double>(), 88.53477630797849, 1e-9);
  EXPECT_EQ(j["bleu"]["hyp_len"], 3012);
  EXPECT_EQ(j["bleu"]["ref_len"], 3040);
  EXPECT_NEAR(j["chrf"]["score_exact"].get<double>(), 97.59889866378954, 1e-9);
  ASSERT_EQ(run({"eval", "mt", "--ref", ref, "--hyp", hyp, "-t", "intl", "--chrf-word-order", "2", "--json"}), 0);
  j = nlohmann::json::parse(out_);
  EXPECT_NEAR(j["bleu"]["score_exact"].get<double>(), 89.82325614468455, 1e-9);
  EXPECT_NEAR(j["chrf"]["score_exact"].get<double>(), 93.7529795010754, 1e-9);
}

TEST_F(EvalCli, InputErrorsNameFileAndLine) {
  const auto hyp = write("hyp.txt", "a\nb\n");
  const auto short_ref = write("short.txt", "a\n");
  EXPECT_EQ(run({"eval", "mt", "--ref", short_ref, "--hyp", hyp}), 1);
  EXPECT_NE(err_.find("short.txt"), std::string::npos) << err_;
  EXPECT_NE(err_.find("has 1 lines but the hypotheses"), std::string::npos) << err_;

  const auto bad = write("bad.txt", "fine\nbroken \xC3\x28 here\n");
  EXPECT_EQ(run({"eval", "mt", "--ref", hyp, "--hyp", bad}), 1);
  EXPECT_NE(err_.find("bad.txt:2"), std::string::npos) << err_;
  EXPECT_NE(err_.find("UTF-8"), std::string::npos) << err_;

  EXPECT_EQ(run({"eval", "mt", "--ref", (dir_ / "missing.txt").string(), "--hyp", hyp}), 1);
  EXPECT_NE(err_.find("missing.txt"), std::string::npos) << err_;

  const auto empty = write("empty.txt", "");
  EXPECT_EQ(run({"eval", "mt", "--ref", empty, "--hyp", empty}), 1);
  EXPECT_NE(err_.find("empty"), std::string::npos) << err_;

  EXPECT_NE(run({"eval", "mt", "--ref", hyp, "--hyp", hyp, "--tokenize", "ja-mecab"}), 0);
  EXPECT_EQ(run({"eval", "mt", "--ref", hyp, "--hyp", hyp, "--lang", "ja"}), 1);
  EXPECT_NE(err_.find("MeCab"), std::string::npos) << err_;
  EXPECT_NE(run({"eval"}), 0);  // a sub-command is required
}

}  // namespace
