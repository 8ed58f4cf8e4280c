#include "loom/nn/lm_blocks.h"

#include <cmath>

namespace loom::nn {

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
