// loom_train_step_bench: where a training step of a NativeSeq2Seq model (Transformer or DeLighT,
// configs/mt/*.json) spends its time, without data loading or tokenization. Builds the model
// from --config with --vocab tokens, then runs --steps updates on one fixed random batch of
// --batch rows × --src-len / --tgt-len tokens (no padding): forward + label-smoothed loss,
// backward, clipping to norm 1 + Adam (the trainer's optimizer settings; --optimizer flat = the
// trainer's loom::train::FlatAdam; torch = clip_grad_norm_ + torch::optim::Adam, the trainer's
// code before FlatAdam; both set the gradients to none before each backward, as the trainer
// does). Prints the mean
// milliseconds of each phase after --warmup updates and the target tokens/s; with --profile N
// it then records N more updates with libtorch's autograd profiler and prints the N operators
// of largest self time (forward and backward ops; a parent's time excludes its children's).
#include <CLI/CLI.hpp>

#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "loom/core/allocator.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/models/native_seq2seq.h"
#include "loom/train/flat_adam.h"
#include "loom/train/loss.h"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct OpTime {
  double self_us = 0;
  int64_t calls = 0;
};

// Self time per operator name from the legacy profiler's push/pop events (per thread, nested).
std::map<std::string, OpTime> self_times(const torch::autograd::profiler::thread_event_lists& lists) {
  using torch::autograd::profiler::EventKind;
  using torch::autograd::profiler::LegacyEvent;
  std::map<std::string, OpTime> out;
  for (const auto& events : lists) {
    struct Open {
      const LegacyEvent* push;
      double child_us;
    };
    std::vector<Open> stack;
    for (const LegacyEvent& e : events) {
      if (e.kind() == EventKind::PushRange) {
        stack.push_back({&e, 0.0});
      } else if (e.kind() == EventKind::PopRange && !stack.empty()) {
        Open o = stack.back();
        stack.pop_back();
        const double total = o.push->cpuElapsedUs(e);
        OpTime& t = out[o.push->name()];
        t.self_us += total - o.child_us;
        t.calls += 1;
        if (!stack.empty()) stack.back().child_us += total;
      }
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  loom::core::tune_allocator();
  CLI::App app{"loom training-step benchmark (one model)"};
  std::string config_path;
  int64_t vocab = 4000, batch = 128, src_len = 14, tgt_len = 14, steps = 10, warmup = 3, profile = 0, top = 40;
  int threads = 2;
  std::string optimizer = "flat";
  app.add_option("--config", config_path, "configs/mt/*.json")->required();
  app.add_option("--vocab", vocab, "vocabulary size (shared)");
  app.add_option("--batch", batch, "rows per batch");
  app.add_option("--src-len", src_len, "source tokens per row");
  app.add_option("--tgt-len", tgt_len, "target tokens per row");
  app.add_option("--steps", steps, "timed updates");
  app.add_option("--warmup", warmup, "untimed updates first");
  app.add_option("--threads", threads);
  app.add_option("--profile", profile, "profiled updates after the timed ones (0 = none)");
  app.add_option("--top", top, "operators listed by the profile");
  app.add_option("--optimizer", optimizer, "flat (loom::train::FlatAdam, as the trainer) or torch (torch::optim::Adam)")
      ->check(CLI::IsMember({"flat", "torch"}));
  CLI11_PARSE(app, argc, argv);
  try {
    torch::set_num_threads(threads);
    torch::manual_seed(1);
    nlohmann::json j = nlohmann::json::parse(loom::core::read_file(config_path));
    j["vocab_size"] = vocab;
    j.erase("train");
    j.erase("data");
    auto model = std::make_shared<loom::models::NativeSeq2Seq>(loom::models::NativeSeq2SeqConfig::from_json(j, config_path));
    model->train(true);
    std::vector<torch::Tensor> params = model->parameters();
    torch::optim::Adam adam(params, torch::optim::AdamOptions(1e-4).betas({0.9, 0.98}).eps(1e-8));
    loom::train::FlatAdamOptions fo;
    fo.lr = 1e-4;
    fo.beta2 = 0.98;
    loom::train::FlatAdam flat(params, fo);
    const bool use_flat = optimizer == "flat";
    const torch::Tensor src = torch::randint(4, vocab, {batch, src_len}, torch::kInt64);    // [B, S]
    const torch::Tensor mask = torch::ones({batch, src_len}, torch::kBool);                   // [B, S]
    const torch::Tensor tgt = torch::randint(4, vocab, {batch, tgt_len + 1}, torch::kInt64);  // [B, T+1]
    const torch::Tensor tgt_in = tgt.narrow(1, 0, tgt_len), labels = tgt.narrow(1, 1, tgt_len);  // [B, T]
    double t_fwd = 0, t_bwd = 0, t_opt = 0;
    auto step = [&](bool timed) {
      auto t0 = Clock::now();
      torch::Tensor logits = model->forward(src, mask, tgt_in);  // [B, T, V]
      loom::train::LossSum ls = loom::train::label_smoothed_nll_loss(logits, labels, 0.1, 0);
      torch::Tensor loss = ls.loss / static_cast<double>(ls.n_tokens);
      auto t1 = Clock::now();
      for (auto& p : params) p.mutable_grad() = torch::Tensor();
      loss.backward();
      auto t2 = Clock::now();
      if (use_flat) {
        flat.step(1e-4, 1.0, 1.0);
      } else {
        torch::nn::utils::clip_grad_norm_(params, 1.0);
        adam.step();
      }
      if (timed) {
        t_fwd += std::chrono::duration<double, std::milli>(t1 - t0).count();
        t_bwd += std::chrono::duration<double, std::milli>(t2 - t1).count();
        t_opt += ms_since(t2);
      }
    };
    for (int64_t i = 0; i < warmup; ++i) step(false);
    for (int64_t i = 0; i < steps; ++i) step(true);
    const double n = static_cast<double>(std::max<int64_t>(steps, 1));
    const double total = (t_fwd + t_bwd + t_opt) / n;
    std::printf("%s: %lld parameters in %zu tensors; batch %lld x (%lld src, %lld tgt), %d threads, %s optimizer\n",
                config_path.c_str(), static_cast<long long>(model->parameter_counts().total), params.size(),
                static_cast<long long>(batch), static_cast<long long>(src_len), static_cast<long long>(tgt_len), threads, optimizer.c_str());
    std::printf("ms/update: forward+loss %.1f, backward %.1f, clip+adam %.1f, total %.1f; %.0f target tok/s\n",
                t_fwd / n, t_bwd / n, t_opt / n, total, static_cast<double>(batch * tgt_len) / total * 1000.0);
    if (profile > 0) {
      std::map<std::string, OpTime> ops;
      {
        torch::autograd::profiler::TLSLegacyProfilerGuard guard(
            torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU),
            [&](const torch::autograd::profiler::thread_event_lists& lists) { ops = self_times(lists); });
        for (int64_t i = 0; i < profile; ++i) step(false);
      }
      std::vector<std::pair<std::string, OpTime>> rows(ops.begin(), ops.end());
      double sum = 0;
      for (const auto& r : rows) sum += r.second.self_us;
      std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
      std::printf("| operator | self ms/update | share | calls/update |\n|---|---:|---:|---:|\n");
      for (int64_t i = 0; i < std::min<int64_t>(top, static_cast<int64_t>(rows.size())); ++i) {
        const auto& r = rows[i];
        std::printf("| %s | %.2f | %.1f%% | %.0f |\n", r.first.c_str(), r.second.self_us / 1000.0 / profile,
                    100.0 * r.second.self_us / sum, static_cast<double>(r.second.calls) / profile);
      }
      std::printf("| (all) | %.2f | 100%% | |\n", sum / 1000.0 / profile);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
