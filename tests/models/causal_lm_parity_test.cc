// HF parity of models::CausalLM and generate::Sequence / generate_batch on the tiny Gemma and
// Gemma2 checkpoints of tests/data/hf-tiny (reference.json written by transformers 4.46.3).
#include <gtest/gtest.h>
#include "support/paths.h"

#include <cmath>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/generate/causal_generate.h"
#include "loom/models/causal_lm.h"

namespace {

using loom::generate::CausalGenerateOptions;
using loom::generate::Sequence;
using loom::models::CausalLM;
using Json = nlohmann::json;

std::string dir_of(const std::string& name) { return std::string(LOOM_TEST_DATA) + "/hf-tiny/" + name; }

class CausalParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model = CausalLM::load(dir_of(GetParam()));
    ref = loom::core::read_json(dir_of(GetParam()) + "/reference.json");
  }
  std::shared_ptr<CausalLM> model;
  Json ref;
};

std::vector<int64_t> ids_of(const Json& j) { return j.get<std::vector<int64_t>>(); }

// Logits of every case vs HF: per-position row sum / l2 / argmax, first and last 8 values.
TEST_P(CausalParity, LogitsPerPosition) {
  for (const auto& c : ref["cases"]) {
    auto ids = ids_of(c["input_ids"]);
    auto logits = model->logits(ids).to(torch::kDouble);  // [T, V]
    ASSERT_EQ(logits.size(0), static_cast<int64_t>(ids.size()));
    const auto& pp = c["logits_per_position"];
    for (size_t t = 0; t < ids.size(); ++t) {
      auto row = logits[t];
      const double l2 = row.norm().item<double>();
      EXPECT_NEAR(l2, pp["row_l2"][t].get<double>(), 1e-4 * l2) << "position " << t;
      EXPECT_NEAR(row.sum().item<double>(), pp["row_sum"][t].get<double>(), 1e-4 * l2) << "position " << t;
      EXPECT_EQ(row.argmax().item<int64_t>(), pp["row_argmax"][t].get<int64_t>()) << "position " << t;
    }
    auto flat = logits.reshape({-1});
    const auto& first = c["logits"]["first"];
    const auto& last = c["logits"]["last"];
    for (size_t i = 0; i < first.size(); ++i) {
      EXPECT_NEAR(flat[i].item<double>(), first[i].get<double>(), 1e-4);
      EXPECT_NEAR(flat[flat.size(0) - 8 + i].item<double>(), last[i].get<double>(), 1e-4);
    }
    EXPECT_NEAR(flat.abs().max().item<double>(), c["logits"]["abs_max"].get<double>(), 1e-4);
  }
}

// Greedy 20 new tokens with the KV cache (Sequence): ids exactly HF's.
TEST_P(CausalParity, GreedyIdsExact) {
  for (const auto& c : ref["cases"]) {
    CausalGenerateOptions o;
    o.max_new_tokens = c["greedy"]["new_tokens"].get<int64_t>();
    o.sampling.temperature = 0;
    o.stop_ids = loom::generate::default_stop_ids(*model);
    Sequence seq(model, ids_of(c["input_ids"]), o);
    while (seq.step()) {
    }
    EXPECT_EQ(seq.generated(), ids_of(c["greedy"]["new_ids"])) << c["prompt"];
  }
}

// KV-cache decode == full recompute: the logits of each incremental step equal the full
// sequence's logits at that position (HF's own difference is ~1e-5).
TEST_P(CausalParity, KvCacheEqualsFullRecompute) {
  const auto& c = ref["cases"][1];
  CausalGenerateOptions o;
  o.max_new_tokens = 12;
  o.sampling.temperature = 0;
  Sequence seq(model, ids_of(c["input_ids"]), o);
  std::vector<torch::Tensor> step_logits;
  while (seq.step()) step_logits.push_back(seq.last_logits().clone());
  auto full = model->logits(seq.tokens());  // [T_all, V]
  const int64_t P = static_cast<int64_t>(c["input_ids"].size());
  ASSERT_EQ(static_cast<int64_t>(step_logits.size()), o.max_new_tokens);
  for (size_t i = 0; i < step_logits.size(); ++i) {
    const double diff = (step_logits[i] - full[P - 1 + static_cast<int64_t>(i)]).abs().max().item<double>();
    EXPECT_LT(diff, 1e-4) << "step " << i;
  }
}

// truncate() + extend() (a chat's next turn on the cached prefix) == a new Sequence over the same
// tokens: same greedy ids, logits within 1e-4; keeping every token re-runs only the last one.
TEST_P(CausalParity, TruncateAndExtendEqualsFreshSequence) {
  const auto prompt = ids_of(ref["cases"][1]["input_ids"]);
  CausalGenerateOptions o;
  o.max_new_tokens = 6;
  o.sampling.temperature = 0;
  Sequence seq(model, prompt, o);
  while (seq.step()) {
  }
  const std::vector<int64_t> turn = {prompt[1], prompt[0], prompt[2]};  // the next "turn": any ids
  for (std::size_t keep : {prompt.size() + 2, prompt.size() - 1, std::size_t{1}}) {
    std::vector<int64_t> all(seq.tokens().begin(), seq.tokens().begin() + static_cast<std::ptrdiff_t>(keep));
    seq.truncate(keep);
    EXPECT_LE(seq.cache().length(), static_cast<int64_t>(keep) - 1);
    EXPECT_EQ(seq.cache().length() > 0, keep > 1);
    seq.extend(turn);
    all.insert(all.end(), turn.begin(), turn.end());
    Sequence fresh(model, all, o);
    for (int i = 0; i < 4; ++i) {
      auto a = seq.step(), b = fresh.step();
      ASSERT_EQ(a, b) << "keep " << keep << " step " << i;
      EXPECT_LT((seq.last_logits() - fresh.last_logits()).abs().max().item<double>(), 1e-4);
    }
    EXPECT_EQ(seq.tokens(), fresh.tokens());
  }
  // Keeping all tokens: the last one is run again and gives the same next token.
  std::vector<int64_t> all = seq.tokens();
  seq.truncate(all.size());
  Sequence fresh(model, all, o);
  EXPECT_EQ(seq.step(), fresh.step());
  EXPECT_THROW(seq.truncate(0), loom::Error);
  EXPECT_THROW(seq.truncate(seq.tokens().size() + 1), loom::Error);
}

// HF's left-padded batch (same padding as reference.json) gives HF's sequences, and each row
// equals generating that prompt alone.
TEST_P(CausalParity, LeftPaddedBatchEqualsHfAndSingle) {
  const auto& b = ref["batch_left_padded"];
  std::vector<std::vector<int64_t>> prompts;
  for (size_t r = 0; r < b["input_ids"].size(); ++r) {
    std::vector<int64_t> p;
    for (size_t t = 0; t < b["input_ids"][r].size(); ++t)
      if (b["attention_mask"][r][t].get<int>() == 1) p.push_back(b["input_ids"][r][t].get<int64_t>());
    prompts.push_back(p);
  }
  const int64_t S0 = static_cast<int64_t>(b["input_ids"][0].size());
  const int64_t new_tokens = static_cast<int64_t>(b["sequences"][0].size()) - S0;
  CausalGenerateOptions o;
  o.max_new_tokens = new_tokens;
  o.sampling.temperature = 0;
  o.stop_ids = loom::generate::default_stop_ids(*model);
  auto rows = loom::generate::generate_batch(*model, prompts, o);
  const int64_t pad = model->config().pad_token_id;
  for (size_t r = 0; r < prompts.size(); ++r) {
    std::vector<int64_t> expect;
    for (int64_t t = S0; t < static_cast<int64_t>(b["sequences"][r].size()); ++t) expect.push_back(b["sequences"][r][t]);
    auto got = rows[r];
    while (static_cast<int64_t>(got.size()) < new_tokens) got.push_back(pad);  // HF pads finished rows
    // Gemma2: transformers 4.46's batch is not row-independent (its rows differ from its own
    // single-prompt greedy ids in cases[]); our reading of modeling_gemma2.py is that decode
    // steps on sliding layers slice the first sliding_window columns of the padded mask
    // (all padding for these rows). loom keeps rows independent, so only gemma is compared
    // with HF's batch here; the row == single check below covers both.
    if (GetParam() == "gemma") EXPECT_EQ(got, expect) << "row " << r;
    Sequence single(model, prompts[r], o);
    while (single.step()) {
    }
    EXPECT_EQ(single.generated(), rows[r]) << "row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(HfTiny, CausalParity, ::testing::Values("gemma", "gemma2"));

}  // namespace
