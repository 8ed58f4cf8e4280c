#include "loom/train/loss.h"

#include "loom/core/error.h"

namespace loom::train {

LossSum label_smoothed_nll_loss(const torch::Tensor& logits, const torch::Tensor& target,
                                double epsilon, int64_t ignore_index) {
  if (epsilon < 0.0 || epsilon >= 1.0) fail(Where{"", 0, "label_smoothing"}, "must be in [0, 1), got {}", epsilon);
  if (logits.dim() != target.dim() + 1)
    fail("logits must have one more dim than target (logits {}, target {})", c10::str(logits.sizes()), c10::str(target.sizes()));
  for (int64_t d = 0; d < target.dim(); ++d)
    if (logits.size(d) != target.size(d))
      fail("logits {} and target {} differ in dim {}", c10::str(logits.sizes()), c10::str(target.sizes()), d);
  const int64_t V = logits.size(-1);
  if (V < 2) fail("label smoothing needs a vocabulary of at least 2, got {}", V);
  auto lprobs = torch::log_softmax(logits.reshape({-1, V}).to(torch::kFloat32), -1);
  auto tgt = target.reshape({-1}).to(torch::kLong);
  auto keep = tgt.ne(ignore_index);
  auto safe_tgt = tgt.masked_fill(~keep, 0);
  auto nll = -lprobs.gather(1, safe_tgt.unsqueeze(1)).squeeze(1);
  auto smooth = -lprobs.sum(-1);
  auto keepf = keep.to(lprobs.scalar_type());
  nll = (nll * keepf).sum();
  smooth = (smooth * keepf).sum();
  const double eps_i = epsilon / static_cast<double>(V - 1);
  LossSum out;
  out.loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth;
  out.nll = nll.detach();
  out.n_tokens = keep.sum().item<int64_t>();
  return out;
}

}  // namespace loom::train
