#include "loom/nn/linear.h"
#include "loom/nn/param_init.h"
#include "loom/nn/sgemm.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace loom::nn {
namespace {

// A oneDNN C function of libdnnl (loaded with libtorch), or nullptr (absent, or LOOM_GEMM=torch).
template <typename Fn>
Fn find_dnnl(const char* name) {
  const char* env = std::getenv("LOOM_GEMM");
  if (env != nullptr && std::strcmp(env, "torch") == 0) return nullptr;
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

SgemmFn sgemm() { return onednn_sgemm(); }

bool fast_bmm(const torch::Tensor& a, const torch::Tensor& b) {
  return sgemm() != nullptr && a.scalar_type() == torch::kFloat32 && b.scalar_type() == torch::kFloat32 &&
         a.device().is_cpu() && b.device().is_cpu() && a.dim() == 3 && b.dim() == 3;
}

// Batched op(A)·op(B) without autograd. a [N, M, K] (or [N, K, M] when ta), b [N, K, P] (or
// [N, P, K] when tb); a batch of 1 broadcasts. Returns [N, M, P].
torch::Tensor gemm(const torch::Tensor& a_in, bool ta, const torch::Tensor& b_in, bool tb) {
  torch::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t n = std::max(a.size(0), b.size(0));
  const int64_t m = ta ? a.size(2) : a.size(1), k = ta ? a.size(1) : a.size(2);
  const int64_t p = tb ? b.size(1) : b.size(2);
  TORCH_CHECK((tb ? b.size(2) : b.size(1)) == k, "gemm: inner sizes differ");
  torch::Tensor c = torch::empty({n, m, p}, a.options());
  if (m == 0 || p == 0) return c;
  if (k == 0) return c.zero_();
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  const int64_t sa = a.size(0) == 1 ? 0 : a.size(1) * a.size(2), sb = b.size(0) == 1 ? 0 : b.size(1) * b.size(2);
  auto one = [&](int64_t i) {
    return sgemm()(ta ? 'T' : 'N', tb ? 'T' : 'N', m, p, k, 1.0f, pa + i * sa, ta ? m : k, pb + i * sb, tb ? k : p, 0.0f,
                   pc + i * m * p, p);
  };
  // Many small products (attention over B·H heads): the threads take whole products, each
  // sgemm then runs on one thread (oneDNN does not nest parallel regions). Large ones keep
  // oneDNN's own threading.
  constexpr int64_t kSmallProduct = 1 << 21;  // m·p·k multiply-adds
  if (n > 1 && m * p * k <= kSmallProduct && at::get_num_threads() > 1) {
    std::atomic<int> failed{0};
    at::parallel_for(0, n, std::max<int64_t>(1, kSmallProduct / (m * p * k + 1) / 8), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int status = one(i);
        if (status != 0) failed = status;
      }
    });
    TORCH_CHECK(failed.load() == 0, "dnnl_sgemm failed with status ", failed.load());
    return c;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int status = one(i);
    TORCH_CHECK(status == 0, "dnnl_sgemm failed with status ", status);
  }
  return c;
}

// Sums a gradient over the broadcast batch dimension when the input had batch 1.
torch::Tensor unbroadcast(const torch::Tensor& g, const torch::Tensor& like) {
  return like.size(0) == 1 && g.size(0) != 1 ? g.sum(0, true) : g;
}

struct BmmNT : public torch::autograd::Function<BmmNT> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return gemm(a, false, b, true);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& a = saved[0];
    const torch::Tensor& b = saved[1];
    torch::Tensor g = grads[0];
    return {unbroadcast(gemm(g, false, b, false), a),   // dA = dC·B
            unbroadcast(gemm(g, true, a, false), b)};   // dB = dCᵀ·A
  }
};

struct BmmNN : public torch::autograd::Function<BmmNN> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return gemm(a, false, b, false);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& a = saved[0];
    const torch::Tensor& b = saved[1];
    torch::Tensor g = grads[0];
    return {unbroadcast(gemm(g, false, b, true), a),   // dA = dC·Bᵀ
            unbroadcast(gemm(a, true, g, false), b)};  // dB = Aᵀ·dC
  }
};

}  // namespace

SgemmFn onednn_sgemm() {
  static const SgemmFn fn = find_dnnl<SgemmFn>("dnnl_sgemm");
  return fn;
}

GemmU8S8S32Fn onednn_gemm_u8s8s32() {
  static const GemmU8S8S32Fn fn = find_dnnl<GemmU8S8S32Fn>("dnnl_gemm_u8s8s32");
  return fn;
}

GemmBf16Fn onednn_gemm_bf16() {
  static const GemmBf16Fn fn = find_dnnl<GemmBf16Fn>("dnnl_gemm_bf16bf16f32");
  return fn;
}

torch::Tensor bmm_nt(const torch::Tensor& a, const torch::Tensor& b) {
  if (!fast_bmm(a, b)) return torch::matmul(a, b.transpose(-1, -2));
  if (torch::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad())) return BmmNT::apply(a, b);
  return gemm(a, false, b, true);
}

torch::Tensor bmm_nn(const torch::Tensor& a, const torch::Tensor& b) {
  if (!fast_bmm(a, b)) return torch::matmul(a, b);
  if (torch::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad())) return BmmNN::apply(a, b);
  return gemm(a, false, b, false);
}

torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.size(0);
  torch::Tensor y = bmm_nt(x.reshape({1, -1, x.size(-1)}), w.unsqueeze(0));  // [1, M, out]
  return y.reshape(shape);                                                    // [..., out]
}

bool fast_gemm_available() { return sgemm() != nullptr; }

namespace {
// y [M, N] = a [M, K] · op(w) + bias by sgemm, into a fresh tensor or a view of *buffer (grown
// when it holds fewer than M·N floats): op(w) = wᵀ for w [N, K] (w_kn false, nn::linear's layout)
// or w for w [K, N] (w_kn true, nn::linear_kn). a, w contiguous float32; bias [N] or undefined.
// *status: the sgemm's return value (0 = success).
torch::Tensor sgemm_dense(SgemmFn fn, const torch::Tensor& a, const torch::Tensor& w, bool w_kn, const torch::Tensor& bias,
                          torch::Tensor* buffer, int* status) {
  const int64_t rows = a.size(0), in = a.size(1), out = w_kn ? w.size(1) : w.size(0);
  torch::Tensor y;  // [M, out]
  if (buffer != nullptr) {
    if (!buffer->defined() || buffer->scalar_type() != torch::kFloat32 || buffer->numel() < rows * out) {
      *buffer = torch::empty({rows * out}, a.options());
    }
    y = buffer->view({-1}).narrow(0, 0, rows * out).view({rows, out});
  } else {
    y = torch::empty({rows, out}, a.options());
  }
  float beta = 0.0f;
  if (bias.defined()) {
    y.copy_(bias.reshape({1, out}).expand({rows, out}));  // = b (sgemm adds into it)
    beta = 1.0f;
  }
  *status = 0;
  if (rows > 0 && out > 0 && in > 0) {
    *status = fn('N', w_kn ? 'N' : 'T', rows, out, in, 1.0f, a.data_ptr<float>(), in, w.data_ptr<float>(), w_kn ? out : in,
                 beta, y.data_ptr<float>(), out);
  } else if (!bias.defined()) {
    y.zero_();  // empty sums
  }
  return y;
}
}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  SgemmFn fn = sgemm();
  const bool fast = fn != nullptr && x.scalar_type() == torch::kFloat32 &&
                    weight.scalar_type() == torch::kFloat32 && x.device().is_cpu() &&
                    weight.device().is_cpu() && weight.dim() == 2 && x.dim() >= 1 &&
                    !(torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad())) &&
                    (!bias.defined() || (bias.scalar_type() == torch::kFloat32 && bias.numel() == weight.size(0)));
  if (!fast) {
    // Autograd (training): the same sgemm forward and backward through dense().
    const bool grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                                        (bias.defined() && bias.requires_grad()));
    if (grad && fn != nullptr && x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32 &&
        x.device().is_cpu() && weight.device().is_cpu() && weight.dim() == 2 && x.dim() >= 1) {
      torch::Tensor y = dense(x, weight);                  // [..., out]
      return bias.defined() ? y + bias : y;                // [..., out]
    }
    return torch::linear(x, weight, bias);
  }
  const int64_t in = weight.size(1);                    // K
  const int64_t out = weight.size(0);                   // N
  TORCH_CHECK(x.size(-1) == in, "linear: input has ", x.size(-1), " features, weight expects ", in);
  torch::Tensor a = x.reshape({-1, in}).contiguous();   // [M, in]
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = out;
  int status = 0;
  torch::Tensor y = sgemm_dense(fn, a, weight.contiguous(), /*w_kn=*/false, bias, nullptr, &status);  // [M, out]
  if (status != 0) return torch::linear(x, weight, bias);
  return y.view(out_shape);                             // [..., out]
}

torch::Tensor linear_kn(const torch::Tensor& x, const torch::Tensor& weight_kn, const torch::Tensor& bias,
                        torch::Tensor* buffer) {
  SgemmFn fn = sgemm();
  TORCH_CHECK(weight_kn.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight_kn.size(0), "linear_kn: input has ",
              x.size(-1), " features, weight expects ", weight_kn.size(0));
  const int64_t in = weight_kn.size(0), out = weight_kn.size(1);  // K, N
  const bool fast = fn != nullptr && x.scalar_type() == torch::kFloat32 && weight_kn.scalar_type() == torch::kFloat32 &&
                    x.device().is_cpu() && weight_kn.device().is_cpu() &&
                    (!bias.defined() || (bias.scalar_type() == torch::kFloat32 && bias.numel() == out));
  if (!fast) {
    torch::Tensor y = torch::matmul(x, weight_kn);  // [..., out]
    return bias.defined() ? y + bias.reshape({out}) : y;
  }
  torch::Tensor a = x.reshape({-1, in}).contiguous();  // [M, in]
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = out;
  int status = 0;
  torch::Tensor y = sgemm_dense(fn, a, weight_kn.contiguous(), /*w_kn=*/true, bias, buffer, &status);  // [M, out]
  TORCH_CHECK(status == 0, "dnnl_sgemm failed with status ", status);
  return y.view(out_shape);  // [..., out]
}

namespace {
thread_local int t_skip_random_init = 0;  // SkipRandomInit instances alive on this thread
}  // namespace

SkipRandomInit::SkipRandomInit() { ++t_skip_random_init; }
SkipRandomInit::~SkipRandomInit() { --t_skip_random_init; }
bool random_init_skipped() { return t_skip_random_init > 0; }

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight",
                              random_init_skipped() ? torch::empty({out_features, in_features})
                                                    : torch::randn({out_features, in_features}) * 0.02,
                              false);
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}), false);
}

}  // namespace loom::nn
