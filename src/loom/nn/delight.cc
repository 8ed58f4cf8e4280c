#include "loom/nn/delight.h"
#include "loom/nn/linear.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

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

void init_linear(Linear& l) {
  torch::NoGradGuard ng;
  torch::nn::init::xavier_uniform_(l->weight);
  if (l->bias.defined()) l->bias.zero_();
}


// ---- fused DExTra layer epilogue (delight_layer_epilogue) -----------------------------------

uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename T, Activation A>
inline T act_f(T a) {
  if constexpr (A == Activation::kRelu) return a > T(0) ? a : T(0);
  else if constexpr (A == Activation::kSilu) return a / (T(1) + std::exp(-a));
  else if constexpr (A == Activation::kGelu) return T(0.5) * a * (T(1) + std::erf(a * T(0.70710678118654752440)));
  else if constexpr (A == Activation::kGeluTanh) {
    return T(0.5) * a * (T(1) + std::tanh(T(0.79788456080286535588) * (a + T(0.044715) * a * a * a)));
  } else if constexpr (A == Activation::kTanh) return std::tanh(a);
  else return T(1) / (T(1) + std::exp(-a));
}

// d act / d a, as torch's *_backward kernels define it (relu: 0 at a = 0)
template <typename T, Activation A>
inline T act_df(T a) {
  if constexpr (A == Activation::kRelu) return a > T(0) ? T(1) : T(0);
  else if constexpr (A == Activation::kSilu) {
    const T s = T(1) / (T(1) + std::exp(-a));
    return s * (T(1) + a * (T(1) - s));
  } else if constexpr (A == Activation::kGelu) {
    const T cdf = T(0.5) * (T(1) + std::erf(a * T(0.70710678118654752440)));
    const T pdf = std::exp(T(-0.5) * a * a) * T(0.39894228040143267794);
    return cdf + a * pdf;
  } else if constexpr (A == Activation::kGeluTanh) {
    const T k = T(0.79788456080286535588), c = T(0.044715);
    const T t = std::tanh(k * (a + c * a * a * a));
    return T(0.5) * (T(1) + t) + T(0.5) * a * (T(1) - t * t) * k * (T(1) + T(3) * c * a * a);
  } else if constexpr (A == Activation::kTanh) {
    const T t = std::tanh(a);
    return T(1) - t * t;
  } else {
    const T s = T(1) / (T(1) + std::exp(-a));
    return s * (T(1) - s);
  }
}

struct EpilogueShape {
  int64_t groups, rows, width;  // G, M, C
  bool shuffle;                 // channel j of group k sits at j·G + k of the output row (else k·C + j)
};

// y [M, G·C]; xhat [M, G·C] and rstd [M, G] saved for backward when non-null; keep [M, G·C]
// (1 = kept) when dropout is on.
template <typename T, Activation A>
void epilogue_forward(const EpilogueShape& sh, const T* h, const T* bias, const T* gw, const T* gb, T eps, double p,
                      uint64_t seed, T* y, T* xhat, T* rstd, uint8_t* keep) {
  const int64_t g = sh.groups, m_rows = sh.rows, c = sh.width, out = g * c;
  const uint32_t threshold = static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0));
  const T scale = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
  at::parallel_for(0, m_rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(out, 1)), [&](int64_t begin, int64_t end) {
    std::vector<T> u(static_cast<size_t>(out));
    for (int64_t m = begin; m < end; ++m) {
      for (int64_t k = 0; k < g; ++k) {  // gather (+ bias), shuffled: channel j of group k -> j·G + k
        const T* hk = h + (k * m_rows + m) * c;
        const T* bk = bias + k * c;
        if (sh.shuffle) {
          for (int64_t j = 0; j < c; ++j) u[j * g + k] = hk[j] + bk[j];
        } else {
          for (int64_t j = 0; j < c; ++j) u[k * c + j] = hk[j] + bk[j];
        }
      }
      T* yr = y + m * out;
      for (int64_t ch = 0; ch < g; ++ch) {  // LayerNorm per chunk of C, shared affine, activation
        const T* uc = u.data() + ch * c;
        T mean = 0, var = 0;
        for (int64_t e = 0; e < c; ++e) mean += uc[e];
        mean /= static_cast<T>(c);
        for (int64_t e = 0; e < c; ++e) var += (uc[e] - mean) * (uc[e] - mean);
        const T rs = T(1) / std::sqrt(var / static_cast<T>(c) + eps);
        if (rstd != nullptr) rstd[m * g + ch] = rs;
        T* yc = yr + ch * c;
        T* xc = xhat != nullptr ? xhat + m * out + ch * c : nullptr;
        for (int64_t e = 0; e < c; ++e) {
          const T xh = (uc[e] - mean) * rs;
          if (xc != nullptr) xc[e] = xh;
          yc[e] = act_f<T, A>(xh * gw[e] + gb[e]);
        }
      }
      if (keep != nullptr) {  // dropout: two 32-bit uniforms per counter value
        uint8_t* kr = keep + m * out;
        const uint64_t base = seed + static_cast<uint64_t>(m) * static_cast<uint64_t>((out + 1) / 2);
        for (int64_t i = 0; i < out; i += 2) {
          const uint64_t r = splitmix64(base + static_cast<uint64_t>(i / 2));
          kr[i] = static_cast<uint32_t>(r) >= threshold;
          if (i + 1 < out) kr[i + 1] = static_cast<uint32_t>(r >> 32) >= threshold;
        }
        for (int64_t i = 0; i < out; ++i) yr[i] = kr[i] ? yr[i] * scale : T(0);
      }
    }
  });
}

// dy [M, G·C] -> dh [G, M, C], dbias [G·C], dgw, dgb [C]
template <typename T, Activation A>
void epilogue_backward(const EpilogueShape& sh, const T* dy, const T* xhat, const T* rstd, const uint8_t* keep, T scale,
                       const T* gw, const T* gb, T* dh, T* dbias, T* dgw, T* dgb) {
  const int64_t g = sh.groups, m_rows = sh.rows, c = sh.width, out = g * c;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(m_rows, at::get_num_threads()));
  const int64_t stride = out + 2 * c;
  std::vector<T> acc(static_cast<size_t>(blocks * stride), T(0));  // per block: dbias [G·C], dgw [C], dgb [C]
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> dxh(static_cast<size_t>(c)), dxrow(static_cast<size_t>(out));
    for (int64_t blk = b0; blk < b1; ++blk) {
      T* db = acc.data() + blk * stride;
      T* dw = db + out;
      T* dbeta = dw + c;
      for (int64_t m = blk * m_rows / blocks; m < (blk + 1) * m_rows / blocks; ++m) {
        for (int64_t ch = 0; ch < g; ++ch) {
          const int64_t off = m * out + ch * c;
          const T* xr = xhat + off;
          const T* dyr = dy + off;
          const uint8_t* kr = keep != nullptr ? keep + off : nullptr;
          T s1 = 0, s2 = 0;
          for (int64_t e = 0; e < c; ++e) {
            T gr = dyr[e];
            if (kr != nullptr) gr = kr[e] ? gr * scale : T(0);
            const T xh = xr[e];
            const T da = gr * act_df<T, A>(xh * gw[e] + gb[e]);
            dw[e] += da * xh;
            dbeta[e] += da;
            const T d = da * gw[e];
            dxh[e] = d;
            s1 += d;
            s2 += d * xh;
          }
          s1 /= static_cast<T>(c);
          s2 /= static_cast<T>(c);
          const T rs = rstd[m * g + ch];
          T* dxc = dxrow.data() + ch * c;
          for (int64_t e = 0; e < c; ++e) dxc[e] = rs * (dxh[e] - s1 - xr[e] * s2);
        }
        for (int64_t k = 0; k < g; ++k) {  // scatter back to the groups (undo the shuffle)
          T* dhk = dh + (k * m_rows + m) * c;
          T* dbk = db + k * c;
          if (sh.shuffle) {
            for (int64_t j = 0; j < c; ++j) dhk[j] = dxrow[j * g + k];
          } else {
            for (int64_t j = 0; j < c; ++j) dhk[j] = dxrow[k * c + j];
          }
          for (int64_t j = 0; j < c; ++j) dbk[j] += dhk[j];
        }
      }
    }
  });
  std::fill(dbias, dbias + out, T(0));
  std::fill(dgw, dgw + c, T(0));
  std::fill(dgb, dgb + c, T(0));
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const T* db = acc.data() + blk * stride;
    for (int64_t i = 0; i < out; ++i) dbias[i] += db[i];
    for (int64_t e = 0; e < c; ++e) {
      dgw[e] += db[out + e];
      dgb[e] += db[out + c + e];
    }
  }
}

template <typename T, typename F>
void with_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::kRelu: f(std::integral_constant<Activation, Activation::kRelu>{}); return;
    case Activation::kGelu: f(std::integral_constant<Activation, Activation::kGelu>{}); return;
    case Activation::kGeluTanh: f(std::integral_constant<Activation, Activation::kGeluTanh>{}); return;
    case Activation::kSilu: f(std::integral_constant<Activation, Activation::kSilu>{}); return;
    case Activation::kTanh: f(std::integral_constant<Activation, Activation::kTanh>{}); return;
    case Activation::kSigmoid: f(std::integral_constant<Activation, Activation::kSigmoid>{}); return;
  }
}

struct EpilogueOut {
  torch::Tensor y, xhat, rstd, keep;
};

EpilogueOut run_epilogue_forward(const torch::Tensor& h_in, const torch::Tensor& bias_in, const torch::Tensor& gw_in,
                                 const torch::Tensor& gb_in, double eps, bool shuffle, Activation act, double p,
                                 bool training, bool save) {
  const torch::Tensor h = h_in.contiguous(), bias = bias_in.contiguous(), gw = gw_in.contiguous(), gb = gb_in.contiguous();
  const EpilogueShape sh{h.size(0), h.size(1), h.size(2), shuffle && h.size(0) > 1};
  const int64_t out = sh.groups * sh.width;
  EpilogueOut r;
  r.y = torch::empty({sh.rows, out}, h.options());  // [M, G·C]
  if (save) {
    r.xhat = torch::empty({sh.rows, out}, h.options());       // [M, G·C]
    r.rstd = torch::empty({sh.rows, sh.groups}, h.options());  // [M, G]
  }
  const bool dropout = training && p > 0.0;
  uint64_t seed = 0;
  if (dropout) {
    r.keep = torch::empty({sh.rows, out}, h.options().dtype(torch::kUInt8));  // [M, G·C]
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "delight_layer_epilogue", [&] {
    with_activation<scalar_t>(act, [&](auto a) {
      epilogue_forward<scalar_t, decltype(a)::value>(
          sh, h.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(),
          static_cast<scalar_t>(eps), p, seed, r.y.data_ptr<scalar_t>(), save ? r.xhat.data_ptr<scalar_t>() : nullptr,
          save ? r.rstd.data_ptr<scalar_t>() : nullptr, dropout ? r.keep.data_ptr<uint8_t>() : nullptr);
    });
  });
  return r;
}

struct EpilogueFn : public torch::autograd::Function<EpilogueFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& bias,
                               const torch::Tensor& gw, const torch::Tensor& gb, double eps, bool shuffle, int64_t act,
                               double p, bool training) {
    EpilogueOut r = run_epilogue_forward(h, bias, gw, gb, eps, shuffle, static_cast<Activation>(act), p, training, true);
    ctx->save_for_backward({r.xhat, r.rstd, r.keep, gw, gb});
    ctx->saved_data["shuffle"] = shuffle && h.size(0) > 1;
    ctx->saved_data["act"] = act;
    ctx->saved_data["scale"] = training && p > 0.0 && p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
    ctx->saved_data["groups"] = h.size(0);
    ctx->saved_data["width"] = h.size(2);
    ctx->saved_data["bias_sizes"] = bias.sizes().vec();
    return r.y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& xhat = saved[0];
    const torch::Tensor& rstd = saved[1];
    const torch::Tensor& keep = saved[2];
    const torch::Tensor gw = saved[3].contiguous(), gb = saved[4].contiguous();
    const torch::Tensor dy = grads[0].contiguous();
    const EpilogueShape sh{ctx->saved_data["groups"].toInt(), xhat.size(0), ctx->saved_data["width"].toInt(),
                           ctx->saved_data["shuffle"].toBool()};
    const auto act = static_cast<Activation>(ctx->saved_data["act"].toInt());
    torch::Tensor dh = torch::empty({sh.groups, sh.rows, sh.width}, xhat.options());  // [G, M, C]
    torch::Tensor dbias = torch::empty({sh.groups * sh.width}, xhat.options());        // [G·C]
    torch::Tensor dgw = torch::empty({sh.width}, xhat.options());                      // [C]
    torch::Tensor dgb = torch::empty({sh.width}, xhat.options());                      // [C]
    AT_DISPATCH_FLOATING_TYPES(xhat.scalar_type(), "delight_layer_epilogue_backward", [&] {
      with_activation<scalar_t>(act, [&](auto a) {
        epilogue_backward<scalar_t, decltype(a)::value>(
            sh, dy.data_ptr<scalar_t>(), xhat.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(),
            keep.defined() ? keep.data_ptr<uint8_t>() : nullptr, static_cast<scalar_t>(ctx->saved_data["scale"].toDouble()),
            gw.data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), dbias.data_ptr<scalar_t>(),
            dgw.data_ptr<scalar_t>(), dgb.data_ptr<scalar_t>());
      });
    });
    return {dh, dbias.view(ctx->saved_data["bias_sizes"].toIntVector()), dgw, dgb,
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor delight_layer_epilogue(const torch::Tensor& h, const torch::Tensor& bias, const torch::Tensor& ln_weight,
                                     const torch::Tensor& ln_bias, double eps, bool shuffle, Activation act, double p,
                                     bool training) {
  TORCH_CHECK(h.dim() == 3, "delight_layer_epilogue: h must be [G, M, C], got ", h.sizes());
  const int64_t g = h.size(0), c = h.size(2);
  TORCH_CHECK(bias.numel() == g * c && ln_weight.numel() == c && ln_bias.numel() == c,
              "delight_layer_epilogue: bias must hold G·C values and the LayerNorm affine C");
  const auto type = h.scalar_type();
  TORCH_CHECK((type == torch::kFloat32 || type == torch::kFloat64) && h.device().is_cpu() &&
                  bias.scalar_type() == type && ln_weight.scalar_type() == type && ln_bias.scalar_type() == type,
              "delight_layer_epilogue: float32 or float64 CPU tensors of one dtype expected");
  TORCH_CHECK(p >= 0.0 && p < 1.0, "delight_layer_epilogue: dropout probability must be in [0, 1), got ", p);
  const bool grad = torch::GradMode::is_enabled() &&
                    (h.requires_grad() || bias.requires_grad() || ln_weight.requires_grad() || ln_bias.requires_grad());
  if (grad) return EpilogueFn::apply(h, bias, ln_weight, ln_bias, eps, shuffle, static_cast<int64_t>(act), p, training);
  return run_epilogue_forward(h, bias, ln_weight, ln_bias, eps, shuffle, act, p, training, false).y;  // [M, G·C]
}

namespace {
}  // namespace

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
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  const int64_t m = x.numel() / in;
  torch::Tensor h = x.reshape({m, groups, in / groups}).transpose(0, 1);  // [g, M, in/g]
  h = bmm_nn(h, weight);                                                   // [g, M, out/g] (oneDNN sgemm)
  // + bias, shuffle, per-group LN (shared affine), activation, dropout in one pass
  h = delight_layer_epilogue(h, bias, layer_norm->weight, layer_norm->bias, layer_norm->eps, shuffle, act, dropout,
                             is_training());  // [M, out]
  shape.back() = out;
  return h.reshape(shape);                    // [..., out]
}

DenseNormActImpl::DenseNormActImpl(int64_t in, int64_t out, Activation act_, double dropout_, double eps)
    : act(act_), dropout(dropout_) {
  linear = register_module("linear", Linear(in, out));
  layer_norm = register_module("layer_norm", LayerNorm(out, eps));
  init_linear(linear);
}

torch::Tensor DenseNormActImpl::forward(const torch::Tensor& x) {
  const int64_t out = linear->weight.size(0);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  torch::Tensor h = dense(x, linear->weight).reshape({1, -1, out});  // [1, M, out]
  // + bias, LN, activation, dropout in one pass (one group, no shuffle)
  h = delight_layer_epilogue(h, linear->bias, layer_norm->weight, layer_norm->bias, layer_norm->eps, false, act,
                             dropout, is_training());  // [M, out]
  return h.reshape(shape);                             // [..., out]
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
  torch::Tensor x0 = input_layer->forward(x);  // [..., in_proj]
  torch::Tensor z = x0;                        // [..., in_proj]
  for (size_t l = 0; l < glt.size(); ++l) {
    torch::Tensor y = glt[l]->forward(z);                                          // [..., o_l]
    const int64_t g_next = l + 1 < glt.size() ? spec_.glt[l + 1].groups : 1;
    z = delight_mix(x0, y, g_next);                                                // [..., in_proj + o_l]
  }
  return output_layer->forward(z);  // [..., out_features]
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
                                                 const torch::Tensor& mask) {
  torch::Tensor q = q_proj->forward(x).unsqueeze(1) * (1.0 / std::sqrt(static_cast<double>(d_o)));  // [B, 1, T, d_o]
  torch::Tensor ctx = attention_with_dropout(q, k, v, mask, dropout, is_training());              // [B, 1, T, d_o]
  return out_proj->forward(ctx.squeeze(1));                                                      // [B, T, d_m]
}

}  // namespace loom::nn
