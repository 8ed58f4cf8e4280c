// Row operations on logits [R, V] for decoding: the log-softmax normaliser and the top
// candidates of each row, computed by reading the row (no [R, V] log-probability tensor is
// written). Beam search and greedy search score only the few tokens they keep, so
// log_softmax(x)[r, v] = (x[r, v] - max_r) - logsum_r is evaluated for those alone.
#pragma once

#include <cstdint>

namespace loom::nn {

/// log Σ_v exp(x[v] - max) over one row of n floats, where `max` is the row's maximum (the
/// max-subtracted form of torch.log_softmax, so log_softmax(x)[v] = (x[v] - max) - result).
/// -inf entries contribute nothing (up to float32 underflow, at most n · 1e-38). AVX2+FMA
/// vectorised exp (Cephes expf polynomial, within 2 ulp) where the CPU has it, std::exp
/// otherwise. A row whose max is -inf (every entry masked) gives -inf.
float row_logsum_exp(const float* x, int64_t n, float max);

/// The largest of x[0, n) (n >= 1); NaN entries are skipped (all NaN gives -inf).
float row_max(const float* x, int64_t n);

/// The `k` largest of row[0, n) (k <= n), ranked by value and, for equal values, by lower index
/// (torch.topk's order for a sorted result): values[0..k) and indices[0..k) best first. One
/// scan with a k-item heap; NaN entries after the first k never enter. Requires k <= n.
void row_top_k(const float* row, int64_t n, int64_t k, float* values, int64_t* indices);

}  // namespace loom::nn
