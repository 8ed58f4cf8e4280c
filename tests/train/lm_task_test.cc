// LM tasks on the shared Trainer: the window loss equals a hand computation from whole-input
// logits and does not depend on chunking; batches depend only on (epoch, index); passkey labels
// sit on the answer only; the real `loom train lm` killed with SIGKILL at random moments and
// resumed ends bitwise identical to an uninterrupted run.
#include <gtest/gtest.h>
#include "support/paths.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "loom/text/lm_tokenizer.h"
#include "loom/train/lm_task.h"
#include "support/support.h"

namespace loom::train {
namespace {
namespace fs = std::filesystem;

models::DecoderLMConfig tiny(const char* attention) {
  return models::DecoderLMConfig::from_json({{"vocab_size", 256}, {"n_layers", 2}, {"d_model", 32}, {"d_head", 8},
                                             {"ffn_divisor", 16}, {"ffn_multipliers", 2.0},
                                             {"attention", attention}, {"segment_len", 8}, {"knn_memory_size", 64},
                                             {"knn_top_k", 4}, {"knn_layers", attention == std::string("knn") ? nlohmann::json{1} : nlohmann::json::array()}});
}

TEST(LmTask, LossMatchesHandComputationAndIsChunkInvariant) {
  for (const char* kind : {"infini", "standard"}) {
    auto cfg = tiny(kind);
    if (std::string(kind) == "standard") cfg.layer_attention.clear();
    models::DecoderLM model(cfg, 3);
    auto ids = torch::randint(0, 256, {2, 29}, torch::TensorOptions().dtype(torch::kLong));
    auto labels = torch::randint(0, 256, {2, 29}, torch::TensorOptions().dtype(torch::kLong));
    labels.index_put_({1, torch::indexing::Slice(20)}, -1);  // padding of a short row
    auto r = lm_loss(*model, ids, labels, 0);
    EXPECT_EQ(r.n_tokens, 29 + 20);
    auto logits = model->forward(ids);
    double expect = 0;
    auto lp = torch::log_softmax(logits, -1);
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < 29; ++t) {
        int64_t y = labels[b][t].item<int64_t>();
        if (y >= 0) expect -= lp[b][t][y].item<double>();
      }
    EXPECT_NEAR(r.loss.item<double>(), expect, 1e-3 * std::abs(expect)) << kind;
    for (int64_t chunk : {1, 5, 8, 13}) EXPECT_NEAR(lm_loss(*model, ids, labels, chunk).loss.item<double>(), expect, 1e-3 * expect) << kind << chunk;
  }
}

TEST(LmTask, BatchesDependOnlyOnPositionAndCoverTheEpoch) {
  std::vector<std::vector<int64_t>> docs(2);
  for (int i = 0; i < 100; ++i) docs[0].push_back(i % 256);
  for (int i = 0; i < 50; ++i) docs[1].push_back((7 * i) % 256);
  auto windows = make_lm_windows(docs, 16, 4);
  models::DecoderLM model(tiny("infini"), 1);
  LmTaskOptions o;
  o.batch_windows = 3;
  LmTask task(model, docs, windows, {}, o);
  EXPECT_EQ(task.num_batches(), static_cast<int64_t>((windows.size() + 2) / 3));
  auto a = task.batch_loss(1, 2, 0, 1), b = task.batch_loss(1, 2, 0, 1);
  EXPECT_EQ(a.loss.item<double>(), b.loss.item<double>());
  // Two ranks' slices add up to the whole batch.
  auto r0 = task.batch_loss(0, 0, 0, 2), r1 = task.batch_loss(0, 0, 1, 2), all = task.batch_loss(0, 0, 0, 1);
  EXPECT_EQ(r0.n_tokens + r1.n_tokens, all.n_tokens);
  EXPECT_NEAR(r0.loss.item<double>() + r1.loss.item<double>(), all.loss.item<double>(), 1e-3);
  // Every label in a window is counted exactly once per epoch: 99 + 49 labels minus the tails
  // shorter than min_tokens = 4 (3 of doc 0 after 6 windows of 16, 1 of doc 1 after 3).
  int64_t n = 0;
  for (int64_t i = 0; i < task.num_batches(); ++i) n += task.batch_loss(3, i, 0, 1).n_tokens;
  EXPECT_EQ(n, 99 + 49 - 3 - 1);
  EXPECT_THROW(LmTask(model, docs, {}, {}, o), loom::Error);
  EXPECT_THROW(LmTask(model, docs, {LmWindow{0, 95, 10}}, {}, o), loom::Error);
}

TEST(PasskeyTask, LabelsOnlyOnTheAnswerAndDeterministicSamples) {
  auto tok = text::LmTokenizer::bytes();
  data::EncodeFn enc = [&](std::string_view s) { return tok.encode(s); };
  models::DecoderLM model(tiny("infini"), 1);
  PasskeyTaskOptions o;
  o.min_tokens = 100;
  o.max_tokens = 200;
  o.batch_size = 3;
  o.valid_samples = 4;
  PasskeyTask task(model, enc, o);
  auto s = task.sample(0, 5, 1);
  EXPECT_EQ(s.key, task.sample(0, 5, 1).key);
  EXPECT_EQ(s.prompt, task.sample(0, 5, 1).prompt);
  EXPECT_NE(s.prompt, task.sample(0, 5, 2).prompt);
  EXPECT_GE(static_cast<int64_t>(s.prompt.size()), 100 - 45);
  auto [ids, labels] = PasskeyTask::make_batch({s});
  const int64_t P = static_cast<int64_t>(s.prompt.size());
  ASSERT_EQ(ids.size(1), P + 5);  // prompt + " 71432" − 1
  EXPECT_EQ((labels >= 0).sum().item<int64_t>(), 6);
  for (int k = 0; k < 6; ++k) EXPECT_EQ(labels[0][P - 1 + k].item<int64_t>(), s.answer[static_cast<size_t>(k)]);
  auto r = task.batch_loss(0, 0, 0, 1);
  EXPECT_EQ(r.n_tokens, 3 * 6);
  torch::NoGradGuard ng;
  auto v = task.validate();
  EXPECT_GE(v.at("passkey_acc"), 0.0);
  EXPECT_LE(v.at("token_acc"), 1.0);
  EXPECT_GT(v.at("valid_loss"), 0.0);
}

TEST(PasskeyTask, CurriculumPicksTheStageLengthsAndLossOnPromptLabelsEveryNextToken) {
  auto tok = text::LmTokenizer::bytes();
  data::EncodeFn enc = [&](std::string_view s) { return tok.encode(s); };
  models::DecoderLM model(tiny("infini"), 1);
  PasskeyTaskOptions o;
  o.min_tokens = 600;
  o.max_tokens = 700;
  o.batches_per_epoch = 10;
  o.curriculum = {{5, 90, 100}, {15, 300, 320}};
  PasskeyTask task(model, enc, o);
  EXPECT_EQ(task.length_range(0), (std::pair<int64_t, int64_t>{90, 100}));
  EXPECT_EQ(task.length_range(4), (std::pair<int64_t, int64_t>{90, 100}));
  EXPECT_EQ(task.length_range(5), (std::pair<int64_t, int64_t>{300, 320}));
  EXPECT_EQ(task.length_range(15), (std::pair<int64_t, int64_t>{600, 700}));
  // Global batch = epoch * batches_per_epoch + index: (0, 3) is stage 0, (1, 2) = 12 stage 1,
  // (2, 0) = 20 past the curriculum; validation (epoch -1) always uses the final range.
  // Lengths are exact up to one filler unit (92 bytes).
  auto len = [&](int64_t e, int64_t i) { return static_cast<int64_t>(task.sample(e, i, 0).prompt.size()); };
  EXPECT_LE(len(0, 3), 100 + 92);
  EXPECT_GE(len(1, 2), 300 - 92);
  EXPECT_LE(len(1, 2), 320 + 92);
  EXPECT_GE(len(2, 0), 600 - 92);
  EXPECT_GE(len(-1, 0), 600 - 92);

  auto s = task.sample(0, 1, 0);
  auto [ids, labels] = PasskeyTask::make_batch({s}, /*loss_on_prompt=*/true);
  const int64_t T = ids.size(1);
  ASSERT_EQ(T, static_cast<int64_t>(s.prompt.size() + s.answer.size()) - 1);
  EXPECT_EQ((labels >= 0).sum().item<int64_t>(), T);  // every position predicts its next token
  for (int64_t t = 0; t + 1 < T; ++t) EXPECT_EQ(labels[0][t].item<int64_t>(), ids[0][t + 1].item<int64_t>());

  PasskeyTaskOptions bad = o;
  bad.curriculum = {{5, 90, 100}, {5, 300, 320}};
  EXPECT_THROW(PasskeyTask(model, enc, bad), loom::Error);
  bad.curriculum = {{5, 100, 90}};
  EXPECT_THROW(PasskeyTask(model, enc, bad), loom::Error);
}

// ---- the real binary, killed and resumed ----

using loom_test::run_loom;
using loom_test::run_loom_killed_after;
using loom_test::slurp;

// A bad passkey curriculum is one error naming the config file and the stage.
TEST(TrainLmCli, BadPasskeyCurriculumNamesFileAndStage) {
  loom_test::TempDir tmp;
  const fs::path& dir = tmp.path();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("x")", "'passkey.curriculum'"},
      {R"([{"until_step": 10, "min_tokens": 5}])", "'passkey.curriculum[0]': need 1 <= min_tokens <= max_tokens"},
      {R"([{"until_step": 10, "min_tokens": 5, "max_tokens": 9}, {"until_step": 10, "min_tokens": 5, "max_tokens": 9}])",
       "'passkey.curriculum[1]': until_step must increase"},
      {R"([{"until_step": 10, "min_tokens": 5, "max_tokens": 9, "max_token": 9}])", "'passkey.curriculum[0].max_token'"}};
  for (const auto& [curriculum, want] : cases) {
    const fs::path cfg = dir / "config.json";
    std::ofstream(cfg) << R"({"n_layers": 1, "d_model": 32, "d_head": 8, "attention": "infini", "segment_len": 16,
      "task": "passkey", "passkey": {"min_tokens": 64, "max_tokens": 96, "curriculum": )"
                       << curriculum << R"(}, "train": {"steps": 2, "warmup_steps": 0, "batch_size": 2}})";
    fs::remove_all(dir / "run");
    auto r = run_loom({"train", "lm", "--config", cfg.string(), "--out", (dir / "run").string(), "--quiet"}, dir);
    EXPECT_EQ(r.code, 1) << curriculum;
    EXPECT_NE(r.err.find(cfg.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
  }
}

TEST(TrainLmCli, KilledAtRandomMomentsAndResumedEqualsUninterrupted) {
  loom_test::TempDir tmp;
  const fs::path& dir = tmp.path();
  const fs::path cfg = dir / "config.json";
  std::ofstream(cfg) << R"({"n_layers": 2, "d_model": 32, "d_head": 8, "ffn_divisor": 16, "ffn_multipliers": 2.0,
    "attention": "infini", "segment_len": 16,
    "data": {"window_segments": 4, "valid_windows": 4},
    "train": {"steps": 40, "batch_size": 4, "lr": 0.003, "warmup_steps": 5, "log_every": 5,
              "valid_every": 10, "save_every": 3, "keep_last": 2}})";
  const fs::path text = dir / "text.txt";
  {
    std::string all = slurp(std::string(LOOM_SOURCE_DIR) + "/data/lm-text/tinyshakespeare/input.txt");
    std::ofstream(text) << all.substr(0, 12000);
  }
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"train", "lm", "--config", cfg.string(), "--data", text.string(), "--out",
                                    out.string(), "--quiet"};
  };
  auto r = run_loom(args(dir / "ref"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  std::mt19937 rng(20261129);
  std::uniform_int_distribution<int> delay_ms(100, 900);
  int kills = 0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto a = args(dir / "run");
    a.push_back("--resume");
    const int code = run_loom_killed_after(a, dir, delay_ms(rng));
    if (code == 128 + SIGKILL) {
      ++kills;
    } else {
      ASSERT_EQ(code, 0) << slurp(dir / "killed.stderr");
      break;
    }
  }
  auto a = args(dir / "run");
  a.push_back("--resume");
  r = run_loom(a, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(kills, 0);
  const std::string ref = slurp(dir / "ref" / "model" / "model.safetensors");
  ASSERT_FALSE(ref.empty());
  EXPECT_TRUE(ref == slurp(dir / "run" / "model" / "model.safetensors")) << "after " << kills << " kills";
  // Metrics: each train record step appears once and the values match.
  auto lines = [](const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string l;
    while (std::getline(ss, l)) out.push_back(l);
    return out;
  };
  auto m_ref = lines(slurp(dir / "ref" / "metrics.jsonl")), m_run = lines(slurp(dir / "run" / "metrics.jsonl"));
  EXPECT_EQ(m_ref.size(), m_run.size());
  EXPECT_TRUE(fs::exists(dir / "run" / "plots" / "loss.svg"));
  EXPECT_EQ(slurp(dir / "ref" / "model" / "tokenizer.json"), slurp(dir / "run" / "model" / "tokenizer.json"));
}

}  // namespace
}  // namespace loom::train
