#include "loom/nn/lm_blocks.h"

#include <cmath>

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

namespace loom::nn {
namespace {

// oneDNN C API (dnnl.h): row-major C = alpha·op(A)·op(B) + beta·C; returns dnnl_success (0).
using SgemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc);

SgemmFn sgemm() {
  static const SgemmFn fn = []() -> SgemmFn {
    const char* env = std::getenv("LOOM_GEMM");
    if (env != nullptr && std::strcmp(env, "torch") == 0) return nullptr;
    return reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  }();
  return fn;
}

bool fast(const torch::Tensor& a, const torch::Tensor& b) {
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
  for (int64_t i = 0; i < n; ++i) {
    const int status = sgemm()(ta ? 'T' : 'N', tb ? 'T' : 'N', m, p, k, 1.0f, pa + i * sa, ta ? m : k,
                               pb + i * sb, tb ? k : p, 0.0f, pc + i * m * p, p);
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

torch::Tensor bmm_nt(const torch::Tensor& a, const torch::Tensor& b) {
  if (!fast(a, b)) return torch::matmul(a, b.transpose(-1, -2));
  if (torch::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad())) return BmmNT::apply(a, b);
  return gemm(a, false, b, true);
}

torch::Tensor bmm_nn(const torch::Tensor& a, const torch::Tensor& b) {
  if (!fast(a, b)) return torch::matmul(a, b);
  if (torch::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad())) return BmmNN::apply(a, b);
  return gemm(a, false, b, false);
}

torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.size(0);
  torch::Tensor y = bmm_nt(x.reshape({1, -1, x.size(-1)}), w.unsqueeze(0));  // [1, M, out]
  return y.reshape(shape);                                                    // [..., out]
}

RMSNormImpl::RMSNormImpl(int64_t d, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({d}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) const {
  // corenet computes the statistics in float32 whatever the activation dtype.
  const auto compute = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  torch::Tensor xf = x.to(compute);                                   // [..., d]
  torch::Tensor inv = torch::rsqrt(xf.pow(2).mean(-1, true) + eps);   // [..., 1]
  return (xf * inv).to(x.scalar_type()) * weight.to(x.scalar_type()); // [..., d]
}

torch::Tensor apply_rope(const torch::Tensor& x, int64_t offset, double base) {
  const int64_t d = x.size(-1), t = x.size(-2), half = d / 2;
  if (d % 2 != 0) fail("apply_rope: d_head must be even, got {}", d);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor inv_freq = torch::pow(base, -torch::arange(0, half, f64) * 2.0 / double(d));  // [d/2]
  torch::Tensor pos = torch::arange(offset, offset + t, f64);                                 // [T]
  torch::Tensor ang = pos.unsqueeze(1) * inv_freq.unsqueeze(0);                               // [T, d/2]
  torch::Tensor cos = ang.cos().to(x.scalar_type()), sin = ang.sin().to(x.scalar_type());
  torch::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);                    // [B,H,T,d/2]
  return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);                          // [B,H,T,d]
}

GatedActivation parse_gated_activation(const std::string& name, const Where& where) {
  if (name == "swiglu") return GatedActivation::kSwiGLU;
  if (name == "geglu") return GatedActivation::kGeGLU;
  fail(where, "unknown gated FFN activation \"{}\" (expected \"swiglu\" or \"geglu\")", name);
}

GatedFeedForwardImpl::GatedFeedForwardImpl(int64_t d_model, int64_t ffn_dim_, GatedActivation act_)
    : ffn_dim(ffn_dim_), act(act_) {
  proj_1 = register_parameter("proj_1", torch::randn({2 * ffn_dim, d_model}) / std::sqrt(double(d_model)));
  proj_2 = register_parameter("proj_2", torch::randn({d_model, ffn_dim}) / std::sqrt(double(ffn_dim)));
}

torch::Tensor GatedFeedForwardImpl::forward(const torch::Tensor& x) const {
  torch::Tensor h = dense(x, proj_1);                            // [..., 2·ffn]
  torch::Tensor a = h.narrow(-1, 0, ffn_dim), b = h.narrow(-1, ffn_dim, ffn_dim);
  torch::Tensor g = act == GatedActivation::kSwiGLU ? torch::silu(a) : torch::gelu(a);
  return dense(g * b, proj_2);                                   // [..., d_model]
}

torch::Tensor position_mask(int64_t q_pos0, int64_t t, const torch::Tensor& k_pos,
                            const torch::Tensor& doc_start, int64_t window, torch::ScalarType dtype) {
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor qp = torch::arange(q_pos0, q_pos0 + t, i64).view({1, t, 1});  // [1,T,1]
  torch::Tensor kp = k_pos.to(torch::kInt64).view({1, 1, -1});                // [1,1,S]
  torch::Tensor keep = kp <= qp;                                               // [1,T,S]
  if (window > 0) keep = keep & (kp >= qp - window);
  keep = keep & (kp >= doc_start.to(torch::kInt64).view({-1, 1, 1}));          // [B,T,S]
  torch::Tensor mask = torch::zeros(keep.sizes(), torch::TensorOptions().dtype(dtype));
  mask.masked_fill_(keep.logical_not(), -1e9);
  return mask.unsqueeze(1);                                                    // [B,1,T,S]
}

torch::Tensor group_heads(const torch::Tensor& q, int64_t n_kv) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  return q.reshape({b, n_kv, (h / n_kv) * t, d});  // heads j·r..j·r+r-1 are contiguous
}

torch::Tensor ungroup_heads(const torch::Tensor& x, int64_t n_q) {
  const int64_t b = x.size(0), n_kv = x.size(1), rt = x.size(2), d = x.size(3);
  return x.reshape({b, n_q, rt / (n_q / n_kv), d});
}

torch::Tensor gqa_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask, double scale, const torch::Tensor& head_scale) {
  const int64_t n_q = q.size(1), n_kv = k.size(1), t = q.size(2);
  TORCH_CHECK(n_q % n_kv == 0, "gqa_attention: ", n_q, " query heads, ", n_kv, " kv heads");
  const int64_t r = n_q / n_kv;
  torch::Tensor qs = head_scale.defined() ? q * head_scale.view({1, n_q, 1, 1}).to(q.scalar_type())
                                          : q * scale;
  torch::Tensor qg = group_heads(qs, n_kv);                     // [B,H_kv,r·T,d]
  const int64_t b = q.size(0), s = k.size(2), rt = qg.size(2);
  torch::Tensor scores = bmm_nt(qg.reshape({b * n_kv, rt, q.size(3)}), k.reshape({b * n_kv, s, k.size(3)}))
                             .reshape({b, n_kv, rt, s});        // [B,H_kv,r·T,S]
  if (mask.defined()) {
    torch::Tensor m = mask;                                     // [B|1,1,T,S]
    if (r > 1) m = m.repeat({1, 1, r, 1});                      // [B|1,1,r·T,S]
    scores = scores + m;
  }
  torch::Tensor p = torch::softmax(scores, -1);                 // [B,H_kv,r·T,S]
  torch::Tensor out = bmm_nn(p.reshape({b * n_kv, rt, s}), v.reshape({b * n_kv, s, v.size(3)}))
                          .reshape({b, n_kv, rt, v.size(3)});   // [B,H_kv,r·T,d_v]
  (void)t;
  return ungroup_heads(out, n_q);                               // [B,H_q,T,d_v]
}

}  // namespace loom::nn
