// The generic Trainer on a toy task: it learns, checkpoints resume bit-exactly, metrics and
// plots are written, averaging is a mean, and 2 Gloo processes match 1 process.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "loom/core/error.h"
#include "loom/train/distributed.h"
#include "loom/train/trainer.h"
#include "toy_task.h"

namespace {
namespace fs = std::filesystem;
using loom_test::ToyTask;

fs::path run_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("loom_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

loom::train::TrainerOptions options(const fs::path& dir, int64_t steps) {
  loom::train::TrainerOptions o;
  o.run_dir = dir.string();
  o.max_steps = steps;
  o.schedule.lr = 0.05;
  o.schedule.warmup_steps = 4;
  o.clip_norm = 1.0;
  o.update_freq = 2;
  o.log_every = 3;
  o.valid_every = 5;
  o.save_every = 5;
  o.progress = false;
  return o;
}

std::vector<torch::Tensor> params_of(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(Trainer, LearnsAndWritesMetricsPlotsAndCheckpoints) {
  auto dir = run_dir("learn");
  ToyTask task(0.1);
  loom::train::LocalCommunicator comm;
  auto o = options(dir, 30);
  o.keep_last = 2;
  o.best_metric = "bleu";
  o.best_higher = true;
  double before = task.validate()["valid_loss"];
  loom::train::Trainer trainer(task, o, comm);
  auto st = trainer.run();
  EXPECT_EQ(st.step, 30);
  double after = task.validate()["valid_loss"];
  EXPECT_LT(after, before * 0.7) << before << " -> " << after;
  auto recs = loom::train::read_metrics(dir.string());
  int train = 0, valid = 0;
  for (auto& r : recs) {
    if (r["kind"] == "train") {
      ++train;
      EXPECT_TRUE(r.contains("lr") && r.contains("tokens_per_s") && r.contains("train_loss"));
    } else {
      ++valid;
      EXPECT_TRUE(r.contains("valid_loss") && r.contains("bleu"));
    }
  }
  EXPECT_EQ(train, 10);  // every 3 updates: 3, 6, ..., 30
  EXPECT_EQ(valid, 6);   // every 5 updates
  EXPECT_TRUE(fs::exists(dir / "plots" / "loss.svg"));
  EXPECT_TRUE(fs::exists(dir / "plots" / "lr.svg"));
  EXPECT_TRUE(fs::exists(dir / "plots" / "bleu.svg"));
  auto ck = trainer.step_checkpoints();
  ASSERT_EQ(ck.size(), 2u);  // keep_last
  EXPECT_NE(ck.back().find("step-00000030"), std::string::npos);
  EXPECT_FALSE(trainer.best_checkpoint().empty());
  // A second fresh run into the same directory is refused.
  EXPECT_THROW(loom::train::Trainer(task, options(dir, 30), comm), loom::Error);
}

TEST(Trainer, ResumeIsBitExact) {
  auto full_dir = run_dir("full"), part_dir = run_dir("part");
  loom::train::LocalCommunicator comm;
  ToyTask full(0.2);
  loom::train::Trainer(full, options(full_dir, 23), comm).run();

  {
    ToyTask part(0.2);
    loom::train::Trainer(part, options(part_dir, 12), comm).run();  // checkpoints 5, 10, 12
  }
  // Drop the step-12 checkpoint: resume from 10 (mid-interval, after a save).
  fs::remove_all(part_dir / "checkpoints" / "step-00000012");
  ToyTask resumed(0.2, /*seed=*/5);
  {
    torch::NoGradGuard ng;  // different starting weights: the checkpoint must overwrite them
    for (auto& p : resumed.model().parameters()) p.fill_(0.5);
  }
  auto o = options(part_dir, 23);
  o.resume = true;
  loom::train::Trainer t(resumed, o, comm);
  auto st = t.run();
  EXPECT_EQ(st.step, 23);
  auto a = params_of(full.model()), b = params_of(resumed.model());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  // metrics.jsonl of the resumed run has each step once.
  auto recs = loom::train::read_metrics(part_dir.string());
  std::set<std::pair<int64_t, std::string>> seen;
  for (auto& r : recs) EXPECT_TRUE(seen.insert({r["step"].get<int64_t>(), r["kind"].get<std::string>()}).second);
  EXPECT_EQ(recs.size(), loom::train::read_metrics(full_dir.string()).size());
}

TEST(Trainer, AverageCheckpointsIsTheMean) {
  auto dir = run_dir("avg");
  loom::train::LocalCommunicator comm;
  ToyTask task(0.0);
  auto o = options(dir, 15);
  loom::train::Trainer t(task, o, comm);
  t.run();
  auto ck = t.step_checkpoints();
  ASSERT_EQ(ck.size(), 3u);
  std::vector<std::vector<torch::Tensor>> each;
  for (auto& c : ck) {
    loom::train::load_model_from_checkpoint(task.model(), c);
    each.push_back(params_of(task.model()));
  }
  loom::train::average_checkpoints(task.model(), ck);
  auto avg = params_of(task.model());
  for (size_t i = 0; i < avg.size(); ++i)
    EXPECT_TRUE(torch::allclose(avg[i], (each[0][i] + each[1][i] + each[2][i]) / 3, 1e-6, 1e-7));
}

TEST(Trainer, OptionsFromJsonNameTheField) {
  auto o = loom::train::trainer_options_from_json(
      {{"steps", 7}, {"lr", 0.01}, {"adam_betas", {0.9, 0.997}}, {"schedule", "cosine"}, {"warmup_steps", 2}}, "train");
  EXPECT_EQ(o.max_steps, 7);
  EXPECT_DOUBLE_EQ(o.beta2, 0.997);
  auto field_of = [](const nlohmann::json& j) {
    try {
      loom::train::trainer_options_from_json(j, "train");
    } catch (const loom::Error& e) {
      return e.where().field;
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(field_of({{"steps", -1}}), "train.steps");
  EXPECT_EQ(field_of({{"lr", "fast"}}), "train.lr");
  EXPECT_EQ(field_of({{"adam_betas", {0.9, 1.5}}}), "train.adam_betas");
  EXPECT_EQ(field_of({{"optimizer", "sgd"}}), "train.optimizer");
  EXPECT_EQ(field_of({{"warmup", 10}}), "train.warmup");
  EXPECT_EQ(field_of({{"schedule", "cosine"}, {"steps", 10}, {"warmup_steps", 20}}), "train.total_steps");
}

// ---- data-parallel: 2 Gloo processes == 1 process with the same global batch ----

constexpr int kDdpSteps = 6;

loom::train::TrainerOptions ddp_options(const fs::path& dir) {
  auto o = options(dir, kDdpSteps);
  o.valid_every = 0;
  o.save_every = 0;
  o.plots = false;
  return o;
}

// Runs only inside the worker processes that DataParallel.TwoProcessesMatchOneProcess starts.
TEST(DataParallelWorker, Run) {
  const char* out = std::getenv("LOOM_TEST_DDP_OUT");
  if (!out) GTEST_SKIP() << "only runs as a worker of DataParallel.TwoProcessesMatchOneProcess";
  auto env = loom::train::distributed_env_from_environment();
  auto comm = loom::train::make_communicator(env, 60);
  ToyTask task(0.0, /*seed=*/5, /*init_seed=*/5 + env.rank);  // rank 0's init is broadcast
  loom::train::Trainer(task, ddp_options(out), *comm).run();
}

TEST(DataParallel, TwoProcessesMatchOneProcess) {
  auto one = run_dir("ddp1"), two = run_dir("ddp2");
  loom::train::LocalCommunicator comm;
  ToyTask task(0.0, 5);
  loom::train::Trainer(task, ddp_options(one), comm).run();

  ::setenv("LOOM_TEST_DDP_OUT", two.string().c_str(), 1);
  int rc = loom::train::run_local_workers(
      {"loom_tests", "--gtest_filter=DataParallelWorker.Run", "--gtest_brief=1"}, 2);
  ::unsetenv("LOOM_TEST_DDP_OUT");
  ASSERT_EQ(rc, 0);
  ToyTask other(0.0, 5, 99);
  auto ck = fs::path(two) / "checkpoints" / "step-00000006";
  ASSERT_TRUE(fs::exists(ck));
  loom::train::load_model_from_checkpoint(other.model(), ck.string());
  auto a = params_of(task.model()), b = params_of(other.model());
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, (a[i] - b[i]).abs().max().item<double>());
  EXPECT_LT(max_diff, 1e-5);
  // Rank 1 wrote nothing of its own: one metrics file, the same number of records.
  EXPECT_EQ(loom::train::read_metrics(two.string()).size(), loom::train::read_metrics(one.string()).size());
  // and the 2-process run really did change the weights.
  ToyTask init(0.0, 5);
  auto c = params_of(init.model());
  EXPECT_FALSE(torch::allclose(a[0], c[0]));
}

}  // namespace

namespace {

// A checkpoint written before the first validation (no best value yet) must load again.
TEST(Trainer, ResumeFromCheckpointBeforeFirstValidation) {
  auto dir = run_dir("novalid");
  loom::train::LocalCommunicator comm;
  auto o = options(dir, 10);
  o.valid_every = 0;  // validation only at the end
  {
    ToyTask task(0.0);
    loom::train::Trainer(task, o, comm).run();
  }
  std::filesystem::remove_all(dir / "checkpoints" / "step-00000010");
  ToyTask task(0.0);
  o.resume = true;
  loom::train::Trainer t(task, o, comm);
  EXPECT_EQ(t.run().step, 10);
  EXPECT_EQ(t.state().best_step, 10);
}

}  // namespace
