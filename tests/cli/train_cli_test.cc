// End-to-end tests of `loom train mt` on a tiny Transformer and 416 Tatoeba pairs: the run
// directory's contents, kill -9 at random moments + --resume == an uninterrupted run (bitwise),
// `--nproc 2`, the exported model translates, and bad input errors.
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

#include <nlohmann/json.hpp>

#include "support/support.h"

namespace {
namespace fs = std::filesystem;
using namespace loom_test;

const std::string kData = std::string(LOOM_TEST_DATA) + "/mt/tatoeba-400.tsv";
const std::string kConfig = std::string(LOOM_TEST_DATA) + "/mt/train-tiny.json";

std::vector<std::string> train_args(const fs::path& out) {
  return {"train", "mt", "--config", kConfig, "--data", kData, "--out", out.string(), "--quiet",
          "--export", "last"};
}

class TrainCli : public ::testing::Test {
 protected:
  loom_test::TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

TEST_F(TrainCli, KillNineAndResumeEqualsUninterruptedRun) {
  const fs::path a = dir_ / "a", b = dir_ / "b";
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_loom(train_args(a), dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto full_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);

  // The run directory holds everything the run produced.
  for (const char* f : {"data/train.tsv", "data/valid.tsv", "data/test.tsv", "data/report.json",
                        "spm/source.spm", "spm/target.spm", "metrics.jsonl", "plots/loss.svg",
                        "plots/lr.svg", "plots/bleu.svg", "checkpoints/step-00000040/model.safetensors",
                        "checkpoints/best/model.safetensors", "model/config.json",
                        "model/model.safetensors", "model/source.spm", "model/target.spm"})
    EXPECT_TRUE(fs::exists(a / f)) << f;
  auto report = nlohmann::json::parse(slurp(a / "data" / "report.json"));
  EXPECT_EQ(report["valid"], 20);
  EXPECT_EQ(report["test"], 20);
  EXPECT_EQ(report["input"].get<int64_t>(), report["kept"].get<int64_t>() + report["duplicate"].get<int64_t>() +
                                                 report["empty"].get<int64_t>() + report["invalid_utf8"].get<int64_t>() +
                                                 report["too_long"].get<int64_t>() + report["bad_ratio"].get<int64_t>());
  int valid_records = 0;
  std::ifstream metrics(a / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["kind"] == "valid") {
      ++valid_records;
      EXPECT_TRUE(j.contains("bleu") && j.contains("chrf") && j.contains("valid_loss")) << line;
    }
  }
  EXPECT_EQ(valid_records, 2);  // steps 20 and 40

  // Kill -9 at random moments, then resume until done.
  std::mt19937 rng(std::random_device{}());
  int kills = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto args = train_args(b);
    if (attempt > 0) args.push_back("--resume");
    auto delay = std::chrono::milliseconds(
        static_cast<int64_t>(full_ms.count() * std::uniform_real_distribution<double>(0.3, 0.9)(rng)));
    if (run_loom_killed_after(args, dir_, static_cast<int>(delay.count())) != 128 + SIGKILL) break;
    ++kills;
  }
  auto args = train_args(b);
  args.push_back("--resume");
  r = run_loom(args, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GE(kills, 1);
  const std::string ck = "checkpoints/step-00000040/model.safetensors";
  EXPECT_TRUE(slurp(a / ck) == slurp(b / ck)) << "final parameters differ after " << kills << " kills";
  EXPECT_TRUE(slurp(a / "model" / "model.safetensors") == slurp(b / "model" / "model.safetensors"));

  // The exported model translates.
  std::ofstream(dir_ / "in.txt") << "I like tea.\nIt's me.\n";
  r = run_loom({"translate", "--model", (a / "model").string(), "--beam", "1", "--no-progress",
                (dir_ / "in.txt").string(), (dir_ / "out.txt").string()}, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  std::string out = slurp(dir_ / "out.txt");
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
}

TEST_F(TrainCli, TwoLocalWorkersTrainAndExport) {
  const fs::path run = dir_ / "ddp";
  auto args = train_args(run);
  args.insert(args.end(), {"--nproc", "2", "--steps", "10", "--valid-every", "10", "--save-every", "10"});
  auto r = run_loom(args, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "step-00000010" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(run / "model" / "model.safetensors"));
  auto state = nlohmann::json::parse(slurp(run / "checkpoints" / "step-00000010" / "state.json"));
  EXPECT_EQ(state["world_size"], 2);
}

TEST_F(TrainCli, BadInputIsNamed) {
  std::ofstream(dir_ / "bad.tsv") << "Hello.\t你好。\nno tab on this line\n";
  auto r = run_loom({"train", "mt", "--config", kConfig, "--data", (dir_ / "bad.tsv").string(), "--out",
                     (dir_ / "r1").string(), "--quiet"}, dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bad.tsv:2"), std::string::npos) << r.err;

  std::ofstream(dir_ / "s.txt") << "a\nb\nc\n";
  std::ofstream(dir_ / "t.txt") << "x\ny\n";
  r = run_loom({"train", "mt", "--config", kConfig, "--src-file", (dir_ / "s.txt").string(), "--tgt-file",
                (dir_ / "t.txt").string(), "--out", (dir_ / "r2").string(), "--quiet"}, dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("s.txt has 3 lines"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("t.txt has 2 lines"), std::string::npos) << r.err;

  auto cfg = nlohmann::json::parse(slurp(kConfig));
  cfg["train"]["warmup_steps"] = -5;
  std::ofstream(dir_ / "bad.json") << cfg.dump();
  r = run_loom({"train", "mt", "--config", (dir_ / "bad.json").string(), "--data", kData, "--out",
                (dir_ / "r3").string(), "--quiet"}, dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("train.warmup_steps"), std::string::npos) << r.err;
  cfg = nlohmann::json::parse(slurp(kConfig));
  cfg["data"]["spm_model_type"] = "wordpiece";
  std::ofstream(dir_ / "bad2.json") << cfg.dump();
  r = run_loom({"train", "mt", "--config", (dir_ / "bad2.json").string(), "--data", kData, "--out",
                (dir_ / "r4").string(), "--quiet"}, dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("data.spm_model_type"), std::string::npos) << r.err;
}

}  // namespace
