// Dense projections (y = x·Wᵀ + b) and batched matrix products with a fast float32 GEMM path
// (oneDNN sgemm) for inference and training.
#pragma once

#include <torch/torch.h>

namespace loom::nn {

/// y = x·Wᵀ + b, the same function as torch::nn::functional::linear.
/// x [..., in] float32, weight [out, in], bias [out] or undefined -> [..., out].
/// For contiguous-able float32 CPU tensors this calls oneDNN's row-major sgemm (dnnl_sgemm, looked
/// up in the libdnnl that libtorch already loads), because Debian's libtorch otherwise routes
/// matrix products to the system BLAS, which is the slow reference BLAS unless OpenBLAS is
/// installed. Anything else (other dtypes, devices, autograd) falls back to torch::linear.
/// Under autograd (training) the product runs through dense(), whose backward uses the same
/// sgemm. Set LOOM_GEMM=torch in the environment to force the torch::linear fallback.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

/// y = x·W + b with the weight stored as its transpose, weight_kn [in, out] (the same numbers as
/// linear(x, weight_kn.t(), bias), up to summation order). Inference only (no autograd), float32
/// CPU tensors (else torch::matmul). For a vocabulary projection (out ≫ in) oneDNN's sgemm
/// streams this layout faster than [out, in]: 24.7 vs 29.0 ms for M = 64, N = 65001, K = 512 on
/// two AVX2 cores (docs/benchmarks.md). x [..., in], bias [out] or undefined -> [..., out]. With
/// `buffer` (float32 fast path only), the result is a view of *buffer, which is reallocated
/// when it holds fewer than M·out floats: a caller that reuses one buffer per step avoids a
/// fresh allocation (and, above glibc's mmap threshold, fresh zeroed pages) per call.
torch::Tensor linear_kn(const torch::Tensor& x, const torch::Tensor& weight_kn, const torch::Tensor& bias,
                        torch::Tensor* buffer = nullptr);

/// Batched C = A·Bᵀ: a [N, M, K], b [N, P, K] -> [N, M, P], differentiable (first order).
/// Float32 CPU tensors run oneDNN's sgemm (dnnl_sgemm, the library libtorch already loads) in
/// the forward AND the backward pass; Debian's libtorch would otherwise send every matrix
/// product (torch::matmul, bmm, linear, and their gradients) to the slow reference BLAS. Other
/// dtypes (float64 gradient checks), or LOOM_GEMM=torch in the environment, use torch::matmul.
torch::Tensor bmm_nt(const torch::Tensor& a, const torch::Tensor& b);

/// Batched C = A·B: a [N, M, K], b [N, K, P] -> [N, M, P]; same fast path as bmm_nt.
torch::Tensor bmm_nn(const torch::Tensor& a, const torch::Tensor& b);

/// Bias-free dense layer x·wᵀ: x [..., in], w [out, in] -> [..., out]; differentiable, fast
/// float32 path as bmm_nt (one GEMM over all leading positions).
torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w);

/// True when linear() uses the oneDNN sgemm path.
bool fast_gemm_available();

/// A linear layer whose parameters are named like torch.nn.Linear ("weight" [out, in], "bias"
/// [out]), so a module tree of these has the parameter names of the Hugging Face checkpoint.
/// Parameters are created uninitialised-but-random (normal, std 0.02); load real values with
/// copy_ under NoGradGuard.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias = true);
  /// x [..., in] -> [..., out]
  torch::Tensor forward(const torch::Tensor& x) const { return linear(x, weight, bias); }
  torch::Tensor weight;  ///< [out, in]
  torch::Tensor bias;    ///< [out], undefined without bias
};
TORCH_MODULE(Linear);

}  // namespace loom::nn
