#include "loom/nn/linear.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

namespace loom::nn {
namespace {

// oneDNN C API (dnnl.h): row-major C = alpha·op(A)·op(B) + beta·C; returns dnnl_success (0).
using SgemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc);

SgemmFn find_sgemm() {
  const char* env = std::getenv("LOOM_GEMM");
  if (env != nullptr && std::strcmp(env, "torch") == 0) return nullptr;
  return reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
}

SgemmFn sgemm() {
  static const SgemmFn fn = find_sgemm();
  return fn;
}

}  // namespace

bool fast_gemm_available() { return sgemm() != nullptr; }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  SgemmFn fn = sgemm();
  const bool fast = fn != nullptr && x.scalar_type() == torch::kFloat32 &&
                    weight.scalar_type() == torch::kFloat32 && x.device().is_cpu() &&
                    weight.device().is_cpu() && weight.dim() == 2 && x.dim() >= 1 &&
                    !(torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad())) &&
                    (!bias.defined() || (bias.scalar_type() == torch::kFloat32 && bias.numel() == weight.size(0)));
  if (!fast) return torch::linear(x, weight, bias);
  const int64_t in = weight.size(1);                    // K
  const int64_t out = weight.size(0);                   // N
  TORCH_CHECK(x.size(-1) == in, "linear: input has ", x.size(-1), " features, weight expects ", in);
  torch::Tensor a = x.reshape({-1, in}).contiguous();   // [M, in]
  torch::Tensor w = weight.contiguous();                // [out, in]
  const int64_t rows = a.size(0);                       // M
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = out;
  torch::Tensor y;                                      // [M, out]
  float beta = 0.0f;
  if (bias.defined()) {
    y = torch::empty({rows, out}, x.options());         // [M, out]
    y.copy_(bias.reshape({1, out}).expand({rows, out}));  // = b (a fresh buffer: sgemm writes into it)
    beta = 1.0f;
  } else {
    y = torch::empty({rows, out}, x.options());         // [M, out]
  }
  if (rows > 0 && out > 0) {
    if (in == 0) {
      // nothing to add
    } else {
      const int status = fn('N', 'T', rows, out, in, 1.0f, a.data_ptr<float>(), in,
                            w.data_ptr<float>(), in, beta, y.data_ptr<float>(), out);
      if (status != 0) return torch::linear(x, weight, bias);
    }
  }
  return y.view(out_shape);                             // [..., out]
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", torch::randn({out_features, in_features}) * 0.02, false);
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}), false);
}

}  // namespace loom::nn
