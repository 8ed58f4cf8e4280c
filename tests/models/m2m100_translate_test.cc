// M2M100 (facebook/m2m100_418M layout) end to end: tests/data/hf-tiny/m2m100 is the NLLB
// fixture's model with its vocabulary renamed (scripts/make-m2m100-fixture.py), so its greedy
// translations are transformers' NLLB reference sequences renamed, and decode to the texts in
// its reference.json.
#include <gtest/gtest.h>

#include "loom/core/files.h"
#include "loom/pipeline/translation_engine.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "loom/text/tokenizer_files.h"
#include "support/paths.h"
#include "support/support.h"

namespace loom::pipeline {
namespace {

const std::string kDir = std::string(LOOM_TEST_DATA) + "/hf-tiny/m2m100";

EngineOptions greedy20() {
  EngineOptions o;
  o.src = "en";
  o.tgt = "zh";
  o.beam = 1;
  o.max_new_tokens = 20;
  return o;
}

TEST(M2M100Translate, GreedyMatchesTheRenamedTransformersReference) {
  torch::InferenceMode guard;
  const nlohmann::json ref = core::read_json(kDir + "/reference.json");
  TranslationEngine engine(kDir, greedy20());
  EXPECT_EQ(engine.tokenizer().name(), "M2M100Tokenizer");
  std::vector<std::string> sources, want;
  for (const auto& c : ref["cases"]) {
    sources.push_back(c["source"].get<std::string>());
    want.push_back(c["greedy_text"].get<std::string>());
  }
  EXPECT_EQ(engine.translate(sources), want);
}

TEST(M2M100Translate, CliTranslatesWithTwoLetterCodes) {
  const nlohmann::json ref = core::read_json(kDir + "/reference.json");
  loom_test::TempDir dir;
  const auto& c = ref["cases"][0];  // one sentence: the TXT row is one segment
  loom_test::write_file(dir.path() / "in.txt", c["source"].get<std::string>() + "\n");
  const auto r = loom_test::run_loom({"translate", "--model", kDir, "--src", "en", "--tgt", "zh", "--beam", "1",
                                      "--max-new-tokens", "20", "--no-progress", dir / "in.txt", dir / "out.txt"},
                                     dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(loom_test::slurp(dir.path() / "out.txt"), c["greedy_text"].get<std::string>() + "\n");
  const auto bad = loom_test::run_loom({"translate", "--model", kDir, "--src", "en", "--tgt", "tlh",
                                        "--no-progress", dir / "in.txt", dir / "bad.txt"},
                                       dir.path());
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("unknown M2M100 tgt language 'tlh'"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace loom::pipeline
