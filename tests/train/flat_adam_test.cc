// loom::train::FlatAdam against torch::optim::Adam / AdamW (+ grad scaling and clip_grad_norm_):
// equal parameters after several steps (Adam, AdamW with weight decay, with and without
// clipping, float32 and float64, tensors larger than one parallel chunk and widths that leave
// vector tails), skipped parameters without gradients, and state files interchangeable with
// torch::optim's in both directions.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <memory>
#include <sstream>

#include "loom/core/error.h"
#include "loom/train/flat_adam.h"

namespace {

using loom::train::FlatAdam;
using loom::train::FlatAdamOptions;

// Shapes: one tensor above the 65536-element parallel chunk, odd widths, a scalar-like one.
std::vector<torch::Tensor> make_params(torch::ScalarType dt) {
  torch::manual_seed(7);
  std::vector<torch::Tensor> out;
  for (auto shape : std::vector<std::vector<int64_t>>{{300, 251}, {13}, {5, 7}, {1}, {64, 9}, {1000}})
    out.push_back(torch::randn(shape, torch::TensorOptions().dtype(dt)));
  return out;
}

std::vector<torch::Tensor> clone_all(const std::vector<torch::Tensor>& v) {
  std::vector<torch::Tensor> out;
  for (auto& t : v) out.push_back(t.clone());
  return out;
}

// Gradient of step s for parameter i (deterministic); `skip` leaves parameter 2 without one
// on odd steps.
void set_grads(std::vector<torch::Tensor>& ps, int s, bool skip) {
  for (size_t i = 0; i < ps.size(); ++i) {
    if (skip && i == 2 && s % 2 == 1) {
      ps[i].mutable_grad() = torch::Tensor();
      continue;
    }
    torch::manual_seed(1000 * s + static_cast<int>(i));
    ps[i].mutable_grad() = torch::randn(ps[i].sizes(), ps[i].options()) * 3.0;
  }
}

std::unique_ptr<torch::optim::Optimizer> torch_opt(std::vector<torch::Tensor> ps, const FlatAdamOptions& o) {
  if (o.decoupled) {
    torch::optim::AdamWOptions ao(o.lr);
    ao.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
    return std::make_unique<torch::optim::AdamW>(ps, ao);
  }
  torch::optim::AdamOptions ao(o.lr);
  ao.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  return std::make_unique<torch::optim::Adam>(ps, ao);
}

// The trainer's former sequence: grad *= scale, clip_grad_norm_, lr, step.
void torch_step(torch::optim::Optimizer& opt, std::vector<torch::Tensor>& ps, double lr, double scale, double clip) {
  {
    torch::NoGradGuard ng;
    for (auto& p : ps)
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
  }
  if (clip > 0) torch::nn::utils::clip_grad_norm_(ps, clip);
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
  opt.step();
}

double max_rel_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i)
    d = std::max(d, ((a[i] - b[i]).abs() / b[i].abs().clamp_min(1.0)).max().item<double>());
  return d;
}

struct Case {
  bool adamw;
  double wd, clip;
  torch::ScalarType dt;
};

void run_case(const Case& c) {
  FlatAdamOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.98;
  o.eps = 1e-8;
  o.weight_decay = c.wd;
  o.decoupled = c.adamw;
  auto ref = make_params(c.dt), mine = clone_all(ref);
  auto topt = torch_opt(ref, o);
  FlatAdam fopt(mine, o);
  const int steps = 12;
  for (int s = 0; s < steps; ++s) {
    const double lr = 1e-2 * (s + 1) / steps, scale = 1.0 / (50 + s);
    set_grads(ref, s, true);
    set_grads(mine, s, true);
    torch_step(*topt, ref, lr, scale, c.clip);
    const double norm = fopt.step(lr, scale, c.clip);
    if (c.clip > 0) EXPECT_GT(norm, 0.0);
  }
  const double tol = c.dt == torch::kFloat32 ? 2e-5 : 1e-12;
  EXPECT_LT(max_rel_diff(mine, ref), tol) << "adamw " << c.adamw << " wd " << c.wd << " clip " << c.clip;
  // The parameters moved (the comparison is not between two untouched copies).
  EXPECT_GT(max_rel_diff(mine, make_params(c.dt)), 1e-3);
  EXPECT_EQ(fopt.step_count(0), steps);
  EXPECT_EQ(fopt.step_count(2), steps / 2);  // its gradient was missing on odd steps
}

TEST(FlatAdam, MatchesTorchAdamAndAdamW) {
  // clip 0.5 clips every step (gradient norms ~2-6 after scaling), 1e6 never does.
  for (bool adamw : {false, true})
    for (double wd : {0.0, 0.01})
      for (double clip : {0.0, 0.5, 1e6}) run_case({adamw, wd, clip, torch::kFloat32});
  run_case({false, 0.01, 0.5, torch::kFloat64});
  run_case({true, 0.01, 0.5, torch::kFloat64});
}

TEST(FlatAdam, ReturnsTheGlobalNormOfTheScaledGradients) {
  auto ps = make_params(torch::kFloat32);
  FlatAdam f(ps, FlatAdamOptions{});
  set_grads(ps, 0, false);
  double sq = 0;
  for (auto& p : ps) sq += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  EXPECT_NEAR(f.step(1e-3, 0.5, 1.0), 0.5 * std::sqrt(sq), 1e-9 * std::sqrt(sq));
  EXPECT_EQ(f.step(1e-3, 0.5, 0.0), 0.0);  // not computed without clipping
}

// Saves after 5 steps, loads into a fresh optimizer of the other kind (torch <-> flat), and
// continues both: the parameters stay equal to an uninterrupted torch run.
void save_load_case(bool adamw, bool flat_saves) {
  FlatAdamOptions o;
  o.weight_decay = 0.01;
  o.decoupled = adamw;
  auto ref = make_params(torch::kFloat32), mine = clone_all(ref);
  auto topt = torch_opt(ref, o);
  std::unique_ptr<torch::optim::Optimizer> t2;
  std::unique_ptr<FlatAdam> f2;
  auto first = torch_opt(mine, o);
  FlatAdam ffirst(mine, o);
  for (int s = 0; s < 5; ++s) {
    set_grads(ref, s, true);
    set_grads(mine, s, true);
    torch_step(*topt, ref, 1e-2, 0.02, 1.0);
    if (flat_saves)
      ffirst.step(1e-2, 0.02, 1.0);
    else
      torch_step(*first, mine, 1e-2, 0.02, 1.0);
  }
  std::stringstream buf;
  {
    torch::serialize::OutputArchive ar;
    if (flat_saves)
      ffirst.save(ar);
    else
      first->save(ar);
    ar.save_to(buf);
  }
  torch::serialize::InputArchive ar;
  ar.load_from(buf);
  if (flat_saves) {
    t2 = torch_opt(mine, o);
    t2->load(ar);
  } else {
    f2 = std::make_unique<FlatAdam>(mine, o);
    f2->load(ar);
    EXPECT_EQ(f2->step_count(0), 5);
    EXPECT_EQ(f2->step_count(2), 3);
  }
  for (int s = 5; s < 10; ++s) {
    set_grads(ref, s, true);
    set_grads(mine, s, true);
    torch_step(*topt, ref, 1e-2, 0.02, 1.0);
    if (flat_saves)
      torch_step(*t2, mine, 1e-2, 0.02, 1.0);
    else
      f2->step(1e-2, 0.02, 1.0);
  }
  EXPECT_LT(max_rel_diff(mine, ref), 2e-5) << "adamw " << adamw << " flat_saves " << flat_saves;
}

TEST(FlatAdam, StateIsInterchangeableWithTorchOptim) {
  for (bool adamw : {false, true})
    for (bool flat_saves : {false, true}) save_load_case(adamw, flat_saves);
}

TEST(FlatAdam, RejectsBadInput) {
  EXPECT_THROW(FlatAdam({}, FlatAdamOptions{}), loom::Error);
  EXPECT_THROW(FlatAdam({torch::zeros({2}, torch::kInt64)}, FlatAdamOptions{}), loom::Error);
  EXPECT_THROW(FlatAdam({torch::zeros({4, 4}).t()}, FlatAdamOptions{}), loom::Error);
  FlatAdamOptions bad;
  bad.beta1 = 1.0;
  EXPECT_THROW(FlatAdam({torch::zeros({2})}, bad), loom::Error);
  torch::Tensor p = torch::zeros({3});
  FlatAdam f({p}, FlatAdamOptions{});
  p.mutable_grad() = torch::zeros({4});
  EXPECT_THROW(f.step(1e-3), loom::Error);
  // A state saved for other shapes is refused.
  torch::Tensor q = torch::zeros({5});
  FlatAdam g({q}, FlatAdamOptions{});
  q.mutable_grad() = torch::ones({5});
  g.step(1e-3);
  std::stringstream buf;
  {
    torch::serialize::OutputArchive ar;
    g.save(ar);
    ar.save_to(buf);
  }
  torch::serialize::InputArchive ar;
  ar.load_from(buf);
  EXPECT_ANY_THROW(f.load(ar));
}

}  // namespace
