#include "loom/nn/delight.h"
#include "loom/nn/dextra_layer.h"
#include "loom/nn/linear.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "loom/core/error.h"

namespace loom::nn {
namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// numpy.linspace(start, stop, num) in float64 as numpy computes it: start + i·step, last = stop.
std::vector<double> linspace(double start, double stop, int64_t num) {
  std::vector<double> y(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num == 1) {
    y[0] = start;
    return y;
  }
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) y[i] = static_cast<double>(i) * step + start;
  if (num > 1) y[num - 1] = stop;
  return y;
}

torch::Tensor drop(const torch::Tensor& x, double p, bool training) {
  return p > 0.0 && training ? delight_dropout(x, p) : x;
}

void init_linear(Linear& l) {
  torch::NoGradGuard ng;
  torch::nn::init::xavier_uniform_(l->weight);
  if (l->bias.defined()) l->bias.zero_();
}

}  // namespace

torch::Tensor delight_dropout(const torch::Tensor& x, double p) {
  if (p <= 0.0) return x;
  if (!(p < 1.0) || x.scalar_type() != torch::kFloat32 || !x.device().is_cpu()) return torch::dropout(x, p, true);
  const uint64_t seed = delight_dropout_seed();
  torch::Tensor mask = torch::empty(x.sizes(), x.options().requires_grad(false));  // [...] 0 or 1/(1-p)
  float* m = mask.data_ptr<float>();
  const uint32_t threshold = delight_drop_threshold(p);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  at::parallel_for(0, mask.numel(), 8192, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> keep(static_cast<size_t>(end - begin));
    delight_keep_flags(seed, threshold, begin, end - begin, keep.data());
    for (int64_t i = begin; i < end; ++i) m[i] = keep[i - begin] != 0 ? scale : 0.0f;
  });
  return x * mask;  // [...]
}

int64_t delight_max_groups(int64_t d_m) {
  const int64_t r = d_m / 32;
  if (r <= 1) return 1;
  return int64_t{1} << static_cast<int64_t>(std::ceil(std::log2(static_cast<double>(r))));
}

BlockScaling delight_block_scaling(int64_t n_min, int64_t n_max, int64_t blocks, double width_mult) {
  if (n_min < 1 || blocks < 1 || !(width_mult > 0)) fail("DeLighT block scaling needs N_min, B >= 1 and w_m > 0");
  if (n_min > n_max) fail("DeLighT block scaling: N_min {} is larger than N_max {}", n_min, n_max);
  BlockScaling s;
  for (double v : linspace(static_cast<double>(n_min), static_cast<double>(n_max), blocks)) {
    s.depth.push_back(static_cast<int64_t>(v));  // numpy dtype=int truncates
  }
  const double top = width_mult + static_cast<double>(n_max - n_min) / static_cast<double>(n_min);
  for (double v : linspace(width_mult, top, blocks)) s.width_mult.push_back(std::round(v * 1000.0) / 1000.0);
  return s;
}

int64_t DExTraSpec::parameter_count() const {
  int64_t n = in_features * in_proj + in_proj + 2 * in_proj;                       // input layer + LN
  for (const GltSpec& l : glt) n += l.in * l.out / l.groups + l.out + 2 * (l.out / l.groups);  // GLT + per-group LN
  n += out_proj_in() * out_features + out_features + 2 * out_features;             // output layer + LN
  return n;
}

DExTraSpec dextra_spec(int64_t in_features, int64_t in_proj, int64_t out_features, double width_mult, int64_t depth,
                       int64_t max_groups) {
  if (in_features < 1 || in_proj < 1 || out_features < 1 || depth < 1 || max_groups < 1) {
    fail("DExTra unit: widths, depth and max groups must be >= 1");
  }
  DExTraSpec s;
  s.in_features = in_features;
  s.in_proj = in_proj;
  s.out_features = out_features;
  const int64_t mid = (depth + 1) / 2;  // ceil(N/2)
  std::vector<int64_t> groups, widths;
  for (int64_t i = 0; i < mid; ++i) groups.push_back(std::min<int64_t>(int64_t{1} << (i + 1), max_groups));
  for (double v : linspace(static_cast<double>(in_proj), width_mult * static_cast<double>(in_features), mid)) {
    widths.push_back(static_cast<int64_t>(v));  // int cast truncates, as the code
  }
  // mirror: the middle entry is not repeated for odd N
  for (int64_t i = (depth % 2 == 0 ? mid : mid - 1) - 1; i >= 0; --i) {
    groups.push_back(groups[i]);
    widths.push_back(widths[i]);
  }
  int64_t in = in_proj;
  for (int64_t l = 0; l < depth; ++l) {
    const int64_t g = groups[l];
    const int64_t g_next = l + 1 < depth ? groups[l + 1] : 1;
    const int64_t out = l + 1 == depth ? out_features : round_up(widths[l], std::max<int64_t>({g, g_next, 8}));
    if (in % g != 0 || out % g != 0 || in_proj % g_next != 0 || out % g_next != 0) {
      fail("DExTra unit: widths {} -> {} (in_proj {}) do not split into {} / {} groups; choose d_m divisible by 16·max_groups",
           in, out, in_proj, g, g_next);
    }
    s.glt.push_back(GltSpec{in, out, g});
    in = out + in_proj;  // input mixer
  }
  return s;
}

torch::Tensor recurrent_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  torch::Tensor keep = torch::empty({x.size(0), 1, x.size(2)}, x.options()).bernoulli_(1.0 - p).div_(1.0 - p);  // [B, 1, C]
  return x * keep;                                                                                              // [B, T, C]
}

torch::Tensor delight_mix(const torch::Tensor& x0, const torch::Tensor& y, int64_t groups) {
  if (groups == 1) return torch::cat({x0, y}, -1);  // [..., c0 + o]
  std::vector<int64_t> lead(x0.sizes().begin(), x0.sizes().end() - 1);
  std::vector<int64_t> xs = lead, ys = lead, zs = lead;
  xs.insert(xs.end(), {groups, x0.size(-1) / groups});
  ys.insert(ys.end(), {groups, y.size(-1) / groups});
  zs.push_back(x0.size(-1) + y.size(-1));
  return torch::cat({x0.reshape(xs), y.reshape(ys)}, -1).reshape(zs);  // [..., g, (c0+o)/g] -> [..., c0 + o]
}

// ---------------------------------------------------------------------------------------------

GroupLinearImpl::GroupLinearImpl(int64_t in_, int64_t out_, int64_t groups_, bool shuffle_, Activation act_,
                                 double dropout_, double eps)
    : in(in_), out(out_), groups(groups_), shuffle(shuffle_), act(act_), dropout(dropout_) {
  if (groups < 1 || in % groups != 0 || out % groups != 0) {
    fail("GroupLinear: {} -> {} features do not split into {} groups", in, out, groups);
  }
  torch::NoGradGuard ng;
  weight = register_parameter("weight", torch::empty({groups, in / groups, out / groups}));  // [g, in/g, out/g]
  torch::nn::init::xavier_uniform_(weight);  // 3-D fan rule, as the code
  bias = register_parameter("bias", torch::zeros({groups, 1, out / groups}));  // [g, 1, out/g]
  layer_norm = register_module("layer_norm", LayerNorm(out / groups, eps));
}

torch::Tensor GroupLinearImpl::forward(const torch::Tensor& x) {
  const double p = is_training() ? dropout : 0.0;
  if (dextra_layer_supported(x, weight, act, p)) {  // one fused node (float32 CPU, silu/relu)
    return dextra_layer(x, weight, bias, layer_norm->weight, layer_norm->bias, groups, shuffle, act, layer_norm->eps, p);
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  const int64_t m = x.numel() / in;
  torch::Tensor h = x.reshape({m, groups, in / groups}).transpose(0, 1);  // [g, M, in/g]
  h = bmm_nn(h, weight) + bias;                                            // [g, M, out/g] (oneDNN sgemm)
  if (shuffle && groups > 1) {
    h = h.permute({1, 2, 0}).contiguous().view({m, groups, out / groups});  // [M, out/g, g] -> [M, g, out/g]
  } else {
    h = h.transpose(0, 1);                                                   // [M, g, out/g]
  }
  h = layer_norm->forward(h);                     // [M, g, out/g] per-group LN, shared affine
  h = activate(std::move(h), act);                // [M, g, out/g]
  h = drop(h, dropout, is_training());            // [M, g, out/g]
  shape.back() = out;
  return h.reshape(shape);                        // [..., out]
}

torch::Tensor GroupLinearImpl::forward_mixed(const torch::Tensor& x0, const torch::Tensor& y) {
  const double p = is_training() ? dropout : 0.0;
  if (dextra_layer_supported(x0, weight, act, p) && y.scalar_type() == torch::kFloat32 && y.device().is_cpu()) {
    return dextra_layer_mixed(x0, y, weight, bias, layer_norm->weight, layer_norm->bias, groups, shuffle, act,
                              layer_norm->eps, p);  // [..., out]
  }
  return forward(delight_mix(x0, y, groups));  // [..., out]
}

DenseNormActImpl::DenseNormActImpl(int64_t in, int64_t out, Activation act_, double dropout_, double eps)
    : act(act_), dropout(dropout_) {
  linear = register_module("linear", Linear(in, out));
  layer_norm = register_module("layer_norm", LayerNorm(out, eps));
  init_linear(linear);
}

torch::Tensor DenseNormActImpl::forward(const torch::Tensor& x) {
  const double p = is_training() ? dropout : 0.0;
  if (linear->bias.defined() && dextra_layer_supported(x, linear->weight, act, p)) {  // one fused node
    return dextra_layer(x, linear->weight, linear->bias, layer_norm->weight, layer_norm->bias, 1, false, act,
                        layer_norm->eps, p);
  }
  torch::Tensor h = layer_norm->forward(linear->forward(x));  // [..., out]
  h = activate(std::move(h), act);                            // [..., out]
  return drop(h, dropout, is_training());                     // [..., out]
}

torch::Tensor DenseNormActImpl::forward_mixed(const torch::Tensor& x0, const torch::Tensor& y) {
  const double p = is_training() ? dropout : 0.0;
  if (linear->bias.defined() && dextra_layer_supported(x0, linear->weight, act, p) && y.scalar_type() == torch::kFloat32 &&
      y.device().is_cpu()) {
    return dextra_layer_mixed(x0, y, linear->weight, linear->bias, layer_norm->weight, layer_norm->bias, 1, false, act,
                              layer_norm->eps, p);  // [..., out]
  }
  return forward(torch::cat({x0, y}, -1));  // [..., out]
}

DExTraUnitImpl::DExTraUnitImpl(DExTraSpec spec, Activation act, double dropout, double eps) : spec_(std::move(spec)) {
  input_layer = register_module("input_layer", DenseNormAct(spec_.in_features, spec_.in_proj, act, dropout, eps));
  auto& layers = *register_module("glt", std::make_shared<torch::nn::Module>());
  for (size_t l = 0; l < spec_.glt.size(); ++l) {
    const GltSpec& g = spec_.glt[l];
    glt.push_back(layers.register_module(std::to_string(l), GroupLinear(g.in, g.out, g.groups, /*shuffle=*/true, act, dropout, eps)));
  }
  output_layer = register_module("output_layer", DenseNormAct(spec_.out_proj_in(), spec_.out_features, act, dropout, eps));
}

torch::Tensor DExTraUnitImpl::forward(const torch::Tensor& x) {
  // Z_{l+1} = mix(X0, Y_l; g_{l+1}) is never built: each layer reads X0 and Y_l group by group.
  torch::Tensor x0 = input_layer->forward(x);  // [..., in_proj]
  torch::Tensor y;                             // [..., o_l]
  for (size_t l = 0; l < glt.size(); ++l) y = l == 0 ? glt[0]->forward(x0) : glt[l]->forward_mixed(x0, y);
  return y.defined() ? output_layer->forward_mixed(x0, y) : output_layer->forward(x0);  // [..., out_features]
}

// ---------------------------------------------------------------------------------------------

DelightSelfAttentionImpl::DelightSelfAttentionImpl(int64_t d_o_, int64_t d_m_, double attention_dropout)
    : d_o(d_o_), d_m(d_m_), dropout(attention_dropout) {
  qkv_proj = register_module("qkv_proj", Linear(d_o, 3 * d_o));
  out_proj = register_module("out_proj", Linear(d_o, d_m));
  init_linear(qkv_proj);
  init_linear(out_proj);
}

torch::Tensor DelightSelfAttentionImpl::forward(const torch::Tensor& y, const torch::Tensor& mask, KVCache* cache,
                                                int64_t capacity_hint) {
  const int64_t b = y.size(0), t = y.size(1);
  torch::Tensor qkv = qkv_proj->forward(y).view({b, t, 3, d_o});                                 // [B, T, 3, d_o]
  torch::Tensor q = qkv.select(2, 0).unsqueeze(1) * (1.0 / std::sqrt(static_cast<double>(d_o)));  // [B, 1, T, d_o]
  torch::Tensor k = qkv.select(2, 1).unsqueeze(1);                                               // [B, 1, T, d_o]
  torch::Tensor v = qkv.select(2, 2).unsqueeze(1);                                               // [B, 1, T, d_o]
  if (cache != nullptr) {
    cache->append(k, v, capacity_hint);
    k = cache->keys();    // [B, 1, past+T, d_o]
    v = cache->values();  // [B, 1, past+T, d_o]
  }
  torch::Tensor ctx = attention_with_dropout(q, k, v, mask, dropout, is_training());  // [B, 1, T, d_o]
  return out_proj->forward(ctx.squeeze(1));                                          // [B, T, d_m]
}

DelightCrossAttentionImpl::DelightCrossAttentionImpl(int64_t d_m_, int64_t d_o_, double attention_dropout)
    : d_m(d_m_), d_o(d_o_), dropout(attention_dropout) {
  q_proj = register_module("q_proj", Linear(d_m, d_o));
  kv_proj = register_module("kv_proj", Linear(d_m, 2 * d_o));
  out_proj = register_module("out_proj", Linear(d_o, d_m));
  init_linear(q_proj);
  init_linear(kv_proj);
  init_linear(out_proj);
}

std::pair<torch::Tensor, torch::Tensor> DelightCrossAttentionImpl::memory_kv(const torch::Tensor& memory) {
  const int64_t b = memory.size(0), s = memory.size(1);
  torch::Tensor kv = kv_proj->forward(memory).view({b, s, 2, d_o});  // [B, S, 2, d_o]
  return {kv.select(2, 0).unsqueeze(1).contiguous(),                 // [B, 1, S, d_o]
          kv.select(2, 1).unsqueeze(1).contiguous()};                // [B, 1, S, d_o]
}

torch::Tensor DelightCrossAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& k, const torch::Tensor& v,
                                                 const torch::Tensor& mask, const torch::Tensor& kv_rows) {
  torch::Tensor q = q_proj->forward(x).unsqueeze(1) * (1.0 / std::sqrt(static_cast<double>(d_o)));  // [B, 1, T, d_o]
  torch::Tensor ctx = attention_with_dropout(q, k, v, mask, dropout, is_training(), kv_rows);     // [B, 1, T, d_o]
  return out_proj->forward(ctx.squeeze(1));                                                      // [B, T, d_m]
}

}  // namespace loom::nn
