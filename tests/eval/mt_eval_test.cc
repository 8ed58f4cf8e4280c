// loom::eval::read_segments / evaluate_mt / mt_eval_json: how files become segments (as
// sacreBLEU's CLI reads them: line break and trailing whitespace removed), alignment errors, and
// the JSON report.
#include "loom/eval/mt_eval.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "loom/core/error.h"

namespace loom::eval {
namespace {
namespace fs = std::filesystem;

std::string write_tmp(const std::string& name, const std::string& text) {
  const auto p = fs::temp_directory_path() / ("loom-mteval-" + std::to_string(getpid()) + "-" + name);
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

TEST(MtEval, ReadSegmentsStripsLineEndsAndTrailingSpace) {
  const auto p = write_tmp("a.txt", "one \r\n\ttwo\t\n\nlast\xC2\xA0");  // U+00A0 is whitespace
  EXPECT_EQ(read_segments(p), (std::vector<std::string>{"one", "\ttwo", "", "last"}));
  fs::remove(p);
  const auto e = write_tmp("e.txt", "");
  EXPECT_TRUE(read_segments(e).empty());
  fs::remove(e);
  const auto bad = write_tmp("bad.txt", "ok\nok\n\xE4\xB8\n");  // truncated 3-byte sequence
  try {
    read_segments(bad);
    FAIL();
  } catch (const Error& err) {
    EXPECT_EQ(err.where().line, 3);
    EXPECT_NE(err.where().file.find("bad.txt"), std::string::npos);
  }
  fs::remove(bad);
  EXPECT_THROW(read_segments("/nonexistent/x.txt"), Error);
}

TEST(MtEval, EvaluateAlignsAndReports) {
  MtEvalOptions o;
  o.bleu.tokenize = BleuTokenizer::kNone;
  o.sentence_level = true;
  // Hand-computed in bleu_test.cc: 100 * (1/48)^(1/4) for the first pair alone.
  auto r = evaluate_mt({"the cat sat on the mat"}, {{"the cat is on the mat"}}, o, "hyp", {"ref"});
  EXPECT_EQ(r.segments, 1);
  EXPECT_EQ(r.nrefs, 1);
  EXPECT_NEAR(r.bleu.score, 100 * std::pow(1.0 / 48, 0.25), 1e-9);
  ASSERT_EQ(r.sentence_bleu.size(), 1u);
  EXPECT_NEAR(r.sentence_bleu[0].score, r.bleu.score, 1e-12);  // every order has n-grams
  auto j = mt_eval_json(r, o, 2);
  EXPECT_EQ(j["bleu"]["signature"], std::string("nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|version:") + kSignatureVersion);
  EXPECT_DOUBLE_EQ(j["bleu"]["score"].get<double>(), 37.99);
  EXPECT_EQ(j["bleu"]["counts"], (std::vector<int64_t>{5, 3, 1, 0}));
  EXPECT_EQ(j["sentences"].size(), 1u);
  EXPECT_EQ(j["sentences"][0]["line"], 1);
  EXPECT_EQ(format_bleu_line(r.bleu, "sig", 1),
            "BLEU|sig = 38.0 83.3/60.0/25.0/16.7 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)");

  try {
    evaluate_mt({"a", "b"}, {{"a", "b"}, {"a"}}, o, "hyp.txt", {"r1.txt", "r2.txt"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.where().file, "r2.txt");
    EXPECT_NE(std::string(e.what()).find("has 1 lines but the hypotheses (hyp.txt) have 2"), std::string::npos);
  }
  EXPECT_THROW(evaluate_mt({}, {{}}, o), Error);       // nothing to score
  EXPECT_THROW(evaluate_mt({"a"}, {}, o), Error);      // no references
  try {
    evaluate_mt({"a", "b \xFF"}, {{"a", "b"}}, o, "hyp.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.where().line, 2);
    EXPECT_EQ(e.where().file, "hyp.txt");
  }
}

}  // namespace
}  // namespace loom::eval
