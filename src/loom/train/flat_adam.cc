#include "loom/train/flat_adam.h"

#include <ATen/Parallel.h>
#include <c10/util/string_utils.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "loom/core/error.h"

namespace loom::train {
namespace {

#define LOOM_TARGET_AVX2 __attribute__((target("avx2,fma")))

bool has_avx2() {
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  return yes;
}

// One parameter tensor of this step: raw pointers and its per-tensor coefficients.
struct Segment {
  void* p;
  const void* g;
  void* m;
  void* v;
  int64_t n;      // elements
  int64_t start;  // offset in the concatenation of all segments
  bool f32;
  double sbc2;     // sqrt(1 - beta2^step)
  double neg_step;  // -lr / (1 - beta1^step)
};

// Coefficients shared by all segments of a step.
struct Coef {
  double scale;   // gradient multiplier (grad_scale * clip coefficient)
  double b1, omb1, b2, omb2, eps;
  double wd;      // Adam: L2 term added to the gradient (0 for AdamW)
  double decay;   // AdamW: p *= decay first (1 for Adam)
};

// The update of torch::optim::Adam / AdamW 1.13 in the order of its tensor operators:
// p *= decay; g = grad*scale + wd*p; m = m*b1 + (1-b1)*g; v = v*b2 + (1-b2)*g*g;
// p += neg_step * m / (sqrt(v) / sbc2 + eps).
template <typename T>
void update_scalar(const Coef& c, const Segment& s, int64_t i0, int64_t i1) {
  T* p = static_cast<T*>(s.p);
  const T* g = static_cast<const T*>(s.g);
  T* m = static_cast<T*>(s.m);
  T* v = static_cast<T*>(s.v);
  const T scale = static_cast<T>(c.scale), b1 = static_cast<T>(c.b1), omb1 = static_cast<T>(c.omb1),
          b2 = static_cast<T>(c.b2), omb2 = static_cast<T>(c.omb2), eps = static_cast<T>(c.eps),
          wd = static_cast<T>(c.wd), decay = static_cast<T>(c.decay), sbc2 = static_cast<T>(s.sbc2),
          ns = static_cast<T>(s.neg_step);
  for (int64_t i = i0; i < i1; ++i) {
    T pi = p[i];
    if (c.decay != 1.0) pi = pi * decay;
    T gi = g[i] * scale;
    if (c.wd != 0.0) gi = gi + wd * pi;
    const T mi = m[i] * b1 + omb1 * gi;
    const T vi = v[i] * b2 + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + ns * mi / (std::sqrt(vi) / sbc2 + eps);
  }
}

LOOM_TARGET_AVX2 void update_avx2(const Coef& c, const Segment& s, int64_t i0, int64_t i1) {
  float* p = static_cast<float*>(s.p);
  const float* g = static_cast<const float*>(s.g);
  float* m = static_cast<float*>(s.m);
  float* v = static_cast<float*>(s.v);
  const __m256 scale = _mm256_set1_ps(static_cast<float>(c.scale)), b1 = _mm256_set1_ps(static_cast<float>(c.b1)),
               omb1 = _mm256_set1_ps(static_cast<float>(c.omb1)), b2 = _mm256_set1_ps(static_cast<float>(c.b2)),
               omb2 = _mm256_set1_ps(static_cast<float>(c.omb2)), eps = _mm256_set1_ps(static_cast<float>(c.eps)),
               wd = _mm256_set1_ps(static_cast<float>(c.wd)), decay = _mm256_set1_ps(static_cast<float>(c.decay)),
               sbc2 = _mm256_set1_ps(static_cast<float>(s.sbc2)), ns = _mm256_set1_ps(static_cast<float>(s.neg_step));
  const bool do_decay = c.decay != 1.0, do_wd = c.wd != 0.0;
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    __m256 pi = _mm256_loadu_ps(p + i);
    if (do_decay) pi = _mm256_mul_ps(pi, decay);
    __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), scale);
    if (do_wd) gi = _mm256_add_ps(gi, _mm256_mul_ps(wd, pi));
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(omb1, gi));
    const __m256 vi =
        _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2), _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    const __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sbc2), eps);
    _mm256_storeu_ps(p + i, _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(ns, mi), den)));
  }
  if (i < i1) update_scalar<float>(c, s, i, i1);
}

template <typename T>
double sumsq_scalar(const T* g, int64_t i0, int64_t i1) {
  double a = 0;
  for (int64_t i = i0; i < i1; ++i) a += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  return a;
}

LOOM_TARGET_AVX2 double sumsq_avx2(const float* g, int64_t i0, int64_t i1) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256 x = _mm256_loadu_ps(g + i);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    a0 = _mm256_fmadd_pd(lo, lo, a0);
    a1 = _mm256_fmadd_pd(hi, hi, a1);
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, _mm256_add_pd(a0, a1));
  return (t[0] + t[1]) + (t[2] + t[3]) + sumsq_scalar(g, i, i1);
}

// Calls fn(segment, i0, i1) for the parts of the segments inside the global range [b, e).
template <typename Fn>
void for_range(const std::vector<Segment>& segs, int64_t b, int64_t e, Fn&& fn) {
  auto it = std::upper_bound(segs.begin(), segs.end(), b, [](int64_t x, const Segment& s) { return x < s.start; });
  for (size_t k = static_cast<size_t>(it - segs.begin()) - 1; k < segs.size() && segs[k].start < e; ++k) {
    const Segment& s = segs[k];
    const int64_t i0 = std::max<int64_t>(b - s.start, 0), i1 = std::min<int64_t>(e - s.start, s.n);
    if (i1 > i0) fn(s, i0, i1);
  }
}

// Elements per parallel chunk: a fork/join is worth it only for ~64k elements of work.
constexpr int64_t kGrain = 1 << 16;

std::string state_key(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

template <typename Opt, typename Options, typename State>
void save_as(const std::vector<torch::Tensor>& params, const FlatAdamOptions& o, const std::vector<torch::Tensor>& m,
             const std::vector<torch::Tensor>& v, const std::vector<int64_t>& steps,
             torch::serialize::OutputArchive& ar) {
  Options ao(o.lr);
  ao.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  Opt opt(params, ao);
  for (size_t i = 0; i < params.size(); ++i) {
    if (steps[i] == 0) continue;  // torch creates a parameter's state at its first update
    auto st = std::make_unique<State>();
    st->step(steps[i]);
    st->exp_avg(m[i]);
    st->exp_avg_sq(v[i]);
    opt.state()[state_key(params[i])] = std::move(st);
  }
  opt.save(ar);
}

template <typename Opt, typename Options, typename State>
void load_as(const std::vector<torch::Tensor>& params, FlatAdamOptions& o, std::vector<torch::Tensor>& m,
             std::vector<torch::Tensor>& v, std::vector<int64_t>& steps, torch::serialize::InputArchive& ar) {
  Options ao(o.lr);
  ao.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  Opt opt(params, ao);
  opt.load(ar);
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = opt.state().find(state_key(params[i]));
    if (it == opt.state().end()) {
      steps[i] = 0;
      m[i].zero_();
      v[i].zero_();
      continue;
    }
    const auto& st = static_cast<const State&>(*it->second);
    if (!st.exp_avg().defined() || !st.exp_avg_sq().defined() || !st.exp_avg().sizes().equals(params[i].sizes()) ||
        !st.exp_avg_sq().sizes().equals(params[i].sizes()))
      fail("optimizer state of parameter {} does not match its shape {}", i, c10::str(params[i].sizes()));
    if (st.max_exp_avg_sq().defined()) fail("optimizer state of parameter {} is AMSGrad's (not supported)", i);
    steps[i] = st.step();
    m[i].copy_(st.exp_avg());
    v[i].copy_(st.exp_avg_sq());
  }
  if (!opt.param_groups().empty()) o.lr = static_cast<const Options&>(opt.param_groups()[0].options()).lr();
}

}  // namespace

FlatAdam::FlatAdam(std::vector<torch::Tensor> params, FlatAdamOptions options)
    : params_(std::move(params)), opt_(options) {
  if (params_.empty()) fail("FlatAdam: no parameters");
  auto in01 = [](double b) { return b >= 0.0 && b < 1.0; };
  if (!in01(opt_.beta1) || !in01(opt_.beta2))
    fail("FlatAdam: betas must be in [0, 1), got ({}, {})", opt_.beta1, opt_.beta2);
  if (!(opt_.eps >= 0) || !(opt_.weight_decay >= 0) || !(opt_.lr >= 0))
    fail("FlatAdam: lr, eps and weight_decay must be >= 0, got {}, {}, {}", opt_.lr, opt_.eps, opt_.weight_decay);
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i];
    if (!p.defined() || p.is_sparse() || !p.device().is_cpu() ||
        (p.scalar_type() != torch::kFloat32 && p.scalar_type() != torch::kFloat64) || !p.is_contiguous())
      fail("FlatAdam: parameter {} must be a contiguous dense CPU float32/float64 tensor", i);
    exp_avg_.push_back(torch::zeros_like(p));
    exp_avg_sq_.push_back(torch::zeros_like(p));
  }
  steps_.assign(params_.size(), 0);
}

double FlatAdam::step(double lr, double grad_scale, double clip_norm) {
  torch::NoGradGuard ng;
  opt_.lr = lr;
  std::vector<torch::Tensor> grads;  // keeps contiguous copies alive
  std::vector<Segment> segs;
  std::vector<size_t> which;
  int64_t total = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i];
    torch::Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.is_sparse() || !g.sizes().equals(p.sizes()) || g.scalar_type() != p.scalar_type())
      fail("FlatAdam: the gradient of parameter {} is not a dense tensor of its shape and dtype", i);
    if (!p.is_contiguous()) fail("FlatAdam: parameter {} is no longer contiguous", i);
    g = g.contiguous();
    grads.push_back(g);
    Segment s{};
    s.p = p.data_ptr();
    s.g = g.data_ptr();
    s.m = exp_avg_[i].data_ptr();
    s.v = exp_avg_sq_[i].data_ptr();
    s.n = p.numel();
    s.start = total;
    s.f32 = p.scalar_type() == torch::kFloat32;
    total += s.n;
    segs.push_back(s);
    which.push_back(i);
  }
  if (segs.empty()) return 0.0;
  const bool avx2 = has_avx2();

  double norm = 0.0, coef = 1.0;
  if (clip_norm > 0) {
    const double sumsq = at::parallel_reduce(
        int64_t{0}, total, kGrain, 0.0,
        [&](int64_t b, int64_t e, double acc) {
          for_range(segs, b, e, [&](const Segment& s, int64_t i0, int64_t i1) {
            if (s.f32)
              acc += avx2 ? sumsq_avx2(static_cast<const float*>(s.g), i0, i1)
                          : sumsq_scalar(static_cast<const float*>(s.g), i0, i1);
            else
              acc += sumsq_scalar(static_cast<const double*>(s.g), i0, i1);
          });
          return acc;
        },
        [](double a, double b) { return a + b; });
    norm = std::sqrt(sumsq) * std::abs(grad_scale);
    const double c = clip_norm / (norm + 1e-6);
    coef = (c < 1.0 || std::isnan(c)) ? c : 1.0;  // torch::clamp(max = 1) keeps NaN
  }

  for (size_t k = 0; k < segs.size(); ++k) {
    const int64_t st = ++steps_[which[k]];
    const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(st));
    const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(st));
    segs[k].sbc2 = std::sqrt(bc2);
    segs[k].neg_step = -lr / bc1;
  }
  Coef c{};
  c.scale = grad_scale * coef;
  c.b1 = opt_.beta1;
  c.omb1 = 1.0 - opt_.beta1;
  c.b2 = opt_.beta2;
  c.omb2 = 1.0 - opt_.beta2;
  c.eps = opt_.eps;
  c.wd = opt_.decoupled ? 0.0 : opt_.weight_decay;
  c.decay = opt_.decoupled && opt_.weight_decay != 0.0 ? 1.0 - lr * opt_.weight_decay : 1.0;
  at::parallel_for(int64_t{0}, total, kGrain, [&](int64_t b, int64_t e) {
    for_range(segs, b, e, [&](const Segment& s, int64_t i0, int64_t i1) {
      if (!s.f32)
        update_scalar<double>(c, s, i0, i1);
      else if (avx2)
        update_avx2(c, s, i0, i1);
      else
        update_scalar<float>(c, s, i0, i1);
    });
  });
  return norm;
}

void FlatAdam::save(torch::serialize::OutputArchive& archive) const {
  if (opt_.decoupled)
    save_as<torch::optim::AdamW, torch::optim::AdamWOptions, torch::optim::AdamWParamState>(
        params_, opt_, exp_avg_, exp_avg_sq_, steps_, archive);
  else
    save_as<torch::optim::Adam, torch::optim::AdamOptions, torch::optim::AdamParamState>(
        params_, opt_, exp_avg_, exp_avg_sq_, steps_, archive);
}

void FlatAdam::load(torch::serialize::InputArchive& archive) {
  if (opt_.decoupled)
    load_as<torch::optim::AdamW, torch::optim::AdamWOptions, torch::optim::AdamWParamState>(
        params_, opt_, exp_avg_, exp_avg_sq_, steps_, archive);
  else
    load_as<torch::optim::Adam, torch::optim::AdamOptions, torch::optim::AdamParamState>(
        params_, opt_, exp_avg_, exp_avg_sq_, steps_, archive);
}

}  // namespace loom::train
