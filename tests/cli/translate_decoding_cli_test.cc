// `loom translate` decoding options and JSONL extras, end to end through the binary on the tiny
// Marian fixture (random weights: the assertions are invariants, not translation quality):
// n-best lists and scores, per-row diagnostics (--meta) against the job's summary, sampling
// (seeded, batch-independent, top-k 1 == greedy), penalties, and bad option combinations.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/support.h"

namespace {

using loom_test::lines_of;
using loom_test::run_loom;
using loom_test::slurp;
using loom_test::TempDir;
using loom_test::write_file;
using json = nlohmann::ordered_json;

const std::string kModel = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

const char* kRows =
    "{\"id\":1,\"text\":\"Hello world.\"}\n"
    "{\"id\":2,\"text\":\"The cat sat on the mat. It was happy.\"}\n"
    "\n"
    "{\"id\":3,\"text\":\"\"}\n"
    "{\"id\":4,\"text\":\"# Title\\n\\nEveryone has the right to life, liberty and security of person.\"}\n";

class TranslateDecodingCli : public ::testing::Test {
 protected:
  void SetUp() override { write_file(dir_.path() / "in.jsonl", kRows); }
  // Runs translate on in.jsonl with extra args; returns the output rows (blank lines skipped).
  std::vector<json> translate(const std::vector<std::string>& extra, const std::string& name) {
    std::vector<std::string> args = {"translate", "--model", kModel, "--fields", "text", "--no-progress",
                                     (dir_.path() / "in.jsonl").string(), (dir_.path() / name).string()};
    args.insert(args.end(), extra.begin(), extra.end());
    last_ = run_loom(args, dir_.path());
    EXPECT_EQ(last_.code, 0) << last_.err;
    std::vector<json> rows;
    for (const auto& l : lines_of(slurp(dir_.path() / name))) {
      if (!l.empty()) rows.push_back(json::parse(l));
    }
    return rows;
  }
  std::vector<std::string> texts(const std::vector<json>& rows) {
    std::vector<std::string> t;
    for (const auto& r : rows) t.push_back(r.at("text_zh").get<std::string>());
    return t;
  }
  TempDir dir_;
  loom_test::RunResult last_;
};

TEST_F(TranslateDecodingCli, NBestListsAndScoresKeepTheBestTranslation) {
  const auto plain = translate({"--beam", "4"}, "plain.jsonl");
  const auto rows = translate({"--beam", "4", "--n-best", "3", "--with-scores"}, "nbest.jsonl");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(texts(rows), texts(plain));  // the extras do not change the best translation
  for (const auto& r : rows) {
    SCOPED_TRACE(r.dump());
    const auto& list = r.at("text_zh_nbest");
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0], r.at("text_zh"));
    const auto& scores = r.at("text_zh_nbest_scores");
    ASSERT_EQ(scores.size(), 3u);
    if (r.at("text").get<std::string>().empty()) {  // nothing to translate: no score
      EXPECT_TRUE(r.at("text_zh_score").is_null());
      continue;
    }
    EXPECT_DOUBLE_EQ(scores[0].get<double>(), r.at("text_zh_score").get<double>());
    EXPECT_LT(r.at("text_zh_score").get<double>(), 0.0);  // a log-probability
    EXPECT_GE(scores[0].get<double>(), scores[1].get<double>());  // best first
    EXPECT_GE(scores[1].get<double>(), scores[2].get<double>());
    EXPECT_NE(list[0], list[1]);  // beam search returns distinct hypotheses
  }
}

TEST_F(TranslateDecodingCli, MetaCountsMatchTheSummaryAndFindCappedRows) {
  const auto rows = translate({"--beam", "1", "--max-new-tokens", "3", "--meta"}, "meta.jsonl");
  ASSERT_EQ(rows.size(), 4u);
  const std::vector<int64_t> lines = {1, 2, 4, 5};  // input line numbers (line 3 is blank)
  int64_t capped = 0, segments = 0, target = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& m = rows[i].at("loom_meta");
    EXPECT_EQ(m.at("line"), lines[i]);
    EXPECT_LE(m.at("target_tokens").get<int64_t>(), 3 * m.at("segments").get<int64_t>());
    EXPECT_GE(m.at("source_tokens").get<int64_t>(), 2 * m.at("segments").get<int64_t>());
    capped += m.at("capped").get<int64_t>();
    segments += m.at("segments").get<int64_t>();
    target += m.at("target_tokens").get<int64_t>();
    EXPECT_EQ(m.at("split"), 0);
  }
  EXPECT_EQ(rows[0].at("loom_meta").at("segments"), 1);
  EXPECT_EQ(rows[1].at("loom_meta").at("segments"), 2);  // two sentences
  EXPECT_EQ(rows[2].at("loom_meta").at("segments"), 0);  // empty text
  EXPECT_GE(rows[3].at("loom_meta").at("copied").get<int64_t>(), 1);  // "# " and the blank line
  EXPECT_GT(capped, 0);
  // The per-row counts add up to the job's summary line.
  EXPECT_NE(last_.err.find(fmt::format("capped {},", capped)), std::string::npos) << last_.err;
  EXPECT_NE(last_.err.find(fmt::format("sentences {},", segments)), std::string::npos) << last_.err;
  EXPECT_NE(last_.err.find(fmt::format("target tokens {}", target)), std::string::npos) << last_.err;
}

TEST_F(TranslateDecodingCli, SamplingIsSeededAndIndependentOfBatching) {
  const auto greedy = texts(translate({"--beam", "1"}, "greedy.jsonl"));
  const auto s1 = texts(translate({"--sample", "--seed", "1"}, "s1.jsonl"));
  const auto s1_again = texts(translate({"--sample", "--seed", "1", "--max-batch-size", "1"}, "s1b.jsonl"));
  const auto s2 = texts(translate({"--sample", "--seed", "2"}, "s2.jsonl"));
  const auto top1 = texts(translate({"--sample", "--seed", "5", "--top-k", "1"}, "top1.jsonl"));
  const auto cold = texts(translate({"--sample", "--seed", "5", "--temperature", "0.0001"}, "cold.jsonl"));
  EXPECT_EQ(s1, s1_again);
  EXPECT_NE(s1, s2);
  EXPECT_NE(s1, greedy);
  EXPECT_EQ(top1, greedy);  // only the most likely token is left to draw
  EXPECT_EQ(cold, greedy);
}

TEST_F(TranslateDecodingCli, PenaltiesChangeTheSearchAndNeutralValuesDoNot) {
  const auto greedy = texts(translate({"--beam", "1"}, "greedy.jsonl"));
  EXPECT_EQ(texts(translate({"--beam", "1", "--repetition-penalty", "1", "--no-repeat-ngram-size", "0"}, "n.jsonl")),
            greedy);
  EXPECT_NE(texts(translate({"--beam", "1", "--no-repeat-ngram-size", "1"}, "nr.jsonl")), greedy);
  EXPECT_NE(texts(translate({"--beam", "1", "--repetition-penalty", "5"}, "rp.jsonl")), greedy);
  const auto beam = texts(translate({"--beam", "4"}, "b.jsonl"));
  EXPECT_EQ(texts(translate({"--beam", "4", "--length-penalty", "1"}, "lp1.jsonl")), beam);  // the fixture's value
}

TEST_F(TranslateDecodingCli, BadCombinationsAreOneClearError) {
  write_file(dir_.path() / "in.txt", "Hello world.\n");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--n-best", "2", (dir_.path() / "in.txt").string()}, "give a JSONL input"},
      {{"--meta", (dir_.path() / "in.txt").string()}, "give a JSONL input"},
      {{"--sample", "--beam", "4", (dir_.path() / "in.jsonl").string()}, "sampling draws one translation"},
      {{"--sample", "--top-p", "0", (dir_.path() / "in.jsonl").string()}, "'top_p': must be in (0, 1]"},
      {{"--sample", "--temperature", "-1", (dir_.path() / "in.jsonl").string()}, "'temperature': must be > 0"},
      {{"--repetition-penalty", "0", (dir_.path() / "in.jsonl").string()}, "'repetition_penalty': must be > 0"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"translate", "--model", kModel, "--no-progress"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.push_back((dir_.path() / "out.x").string());
    const auto r = run_loom(args, dir_.path());
    EXPECT_NE(r.code, 0) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  }
}

}  // namespace
