// Shared test support for autograd: compares a backward pass with central finite differences.
// Kept apart from support.h so tests that do not use torch do not parse its headers.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

namespace loom_test {

/// Checks d loss / d t from autograd against central finite differences (eps = 1e-6) at every
/// entry of `t`, which must be a double-precision leaf with requires_grad. `loss` recomputes the
/// scalar loss from the current value of `t`; each entry must agree within `tol` (absolute).
inline void expect_gradients_match(const std::function<torch::Tensor()>& loss, torch::Tensor t,
                                   double tol) {
  torch::Tensor l = loss();
  torch::Tensor g = torch::autograd::grad({l}, {t})[0];
  torch::NoGradGuard no_grad;
  torch::Tensor flat = t.view({-1});
  const double eps = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double old = flat[i].item<double>();
    flat[i].fill_(old + eps);
    const double lp = loss().item<double>();
    flat[i].fill_(old - eps);
    const double lm = loss().item<double>();
    flat[i].fill_(old);
    EXPECT_NEAR(g.reshape({-1})[i].item<double>(), (lp - lm) / (2 * eps), tol) << "entry " << i;
  }
}

}  // namespace loom_test
