#include "loom/models/decoder_lm.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "loom/core/config_fields.h"
#include "loom/core/files.h"
#include "loom/io/checkpoint.h"

namespace loom::models {
namespace {

using nlohmann::json;

constexpr const char* kModelType = "loom_decoder_lm";

// A number (isotropic) or a [min, max] pair.
void get_range(const json& j, const char* key, double& lo, double& hi, const std::string& file) {
  if (!j.contains(key)) return;
  const json& v = j[key];
  if (v.is_number()) {
    lo = hi = v.get<double>();
  } else if (v.is_array() && v.size() == 2 && v[0].is_number() && v[1].is_number()) {
    lo = v[0].get<double>();
    hi = v[1].get<double>();
  } else {
    fail(Where{file, 0, key}, "expected a number or [min, max], got {}", v.dump());
  }
}

const char* update_name(nn::InfiniUpdate u) { return u == nn::InfiniUpdate::kLinear ? "linear" : "delta"; }
const char* first_name(nn::InfiniFirstSegment f) {
  return f == nn::InfiniFirstSegment::kSkipGate ? "skip_gate" : "zero_memory";
}

// Normal init from a private generator (OpenELM: N(0, std)).
void normal_(torch::Tensor& t, double std, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  t.copy_(at::normal(0.0, std, t.sizes(), gen, t.options()));
}

// torch.nn.init.xavier_uniform_ from a private generator: U(-a, a), a = sqrt(6 / (fan_in +
// fan_out)), fan_in = size(1)·rf, fan_out = size(0)·rf, rf = prod(size[2:]) (torch's fans, which
// dextra_unit.py's GroupLinear inherits for its [g, in/g, out/g] weight). t has >= 2 dims.
void xavier_uniform_(torch::Tensor& t, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  int64_t rf = 1;
  for (int64_t i = 2; i < t.dim(); ++i) rf *= t.size(i);
  const double a = std::sqrt(6.0 / double(t.size(1) * rf + t.size(0) * rf));
  t.copy_(at::rand(t.sizes(), gen, t.options()) * (2.0 * a) - a);
}

}  // namespace

int64_t make_divisible(double v, int64_t divisor) {
  int64_t new_v = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

std::vector<double> layerwise_multipliers(double lo, double hi, int64_t n) {
  std::vector<double> out;
  for (int64_t i = 0; i < n; ++i) {
    // numpy.linspace: i·step + lo with step = (hi − lo)/(n − 1), the last value exactly hi.
    const double step = n == 1 ? 0.0 : (hi - lo) / double(n - 1);
    double x = n == 1 ? lo : (i == n - 1 ? hi : double(i) * step + lo);
    out.push_back(std::nearbyint(x * 100.0) / 100.0);  // numpy.round(x, 2): rint(x·100)/100
  }
  return out;
}

nn::AttentionKind DecoderLMConfig::kind(int64_t layer) const {
  return layer_attention.empty() ? nn::AttentionKind::kStandard : layer_attention[layer];
}

DecoderLMConfig DecoderLMConfig::from_json(const json& j, const std::string& file) {
  if (!j.is_object()) fail(Where{file, 0, ""}, "config must be a JSON object");
  static const std::set<std::string> known = {
      "model_type", "vocab_size", "n_layers", "d_model", "d_head", "qkv_multipliers",
      "ffn_multipliers", "gqa_ratio", "ffn_divisor", "ffn_activation", "qk_norm", "norm_eps",
      "rope_base", "attention", "knn_layers", "layer_attention", "local_window", "segment_len",
      "infini_update", "infini_first_segment", "infini_detach_every", "knn_memory_size",
      "knn_top_k", "knn_search", "knn_faiss_nlist", "knn_faiss_nprobe", "knn_temperature_init",
      "knn_local_rope", "tie_word_embeddings", "block", "delight_min_depth", "delight_max_depth",
      "delight_width_mult", "delight_max_groups", "delight_ffn_red", "delight_heads"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key())) fail(Where{file, 0, it.key()}, "unknown config field");
  if (j.contains("model_type") && j["model_type"] != kModelType)
    fail(Where{file, 0, "model_type"}, "expected \"{}\", got {}", kModelType, j["model_type"].dump());
  DecoderLMConfig c;
  c.vocab_size = core::get_int(j, file, "vocab_size", std::nullopt);
  c.n_layers = core::get_int(j, file, "n_layers", std::nullopt);
  c.d_model = core::get_int(j, file, "d_model", std::nullopt);
  c.block = core::get_string(j, file, "block", "standard");
  c.delight_heads = core::get_int(j, file, "delight_heads", 1);
  // DeLighT blocks split d_o = d_model/2 into delight_heads heads, so d_head is optional for them
  // (validate() checks block, delight_heads and that a given d_head agrees).
  const int64_t delight_d_head = c.delight_heads >= 1 ? c.d_model / 2 / c.delight_heads : 0;
  c.d_head = core::get_int(j, file, "d_head", c.block == "standard" ? std::nullopt : std::optional<int64_t>(delight_d_head));
  get_range(j, "qkv_multipliers", c.qkv_min, c.qkv_max, file);
  get_range(j, "ffn_multipliers", c.ffn_min, c.ffn_max, file);
  c.gqa_ratio = core::get_int(j, file, "gqa_ratio", 1);
  c.ffn_divisor = core::get_int(j, file, "ffn_divisor", 256);
  c.ffn_activation = nn::parse_gated_activation(core::get_string(j, file, "ffn_activation", "swiglu"),
                                                Where{file, 0, "ffn_activation"});
  c.qk_norm = core::get_bool(j, file, "qk_norm", true);
  c.norm_eps = core::get_double(j, file, "norm_eps", 1e-6);
  c.rope_base = core::get_double(j, file, "rope_base", 10000.0);
  if (!core::get_bool(j, file, "tie_word_embeddings", true))
    fail(Where{file, 0, "tie_word_embeddings"}, "only tied input/output embeddings are supported");
  if (c.n_layers < 1) fail(Where{file, 0, "n_layers"}, "must be >= 1, got {}", c.n_layers);
  if (j.contains("layer_attention")) {
    const json& la = j["layer_attention"];
    if (!la.is_array() || int64_t(la.size()) != c.n_layers)
      fail(Where{file, 0, "layer_attention"}, "expected a list of {} attention kinds (one per layer)", c.n_layers);
    for (size_t i = 0; i < la.size(); ++i) {
      if (!la[i].is_string()) fail(Where{file, 0, "layer_attention"}, "entry {} is not a string", i);
      c.layer_attention.push_back(nn::parse_attention_kind(la[i].get<std::string>(), Where{file, 0, "layer_attention"}));
    }
  } else {
    nn::AttentionKind all = nn::parse_attention_kind(core::get_string(j, file, "attention", "standard"),
                                                     Where{file, 0, "attention"});
    c.layer_attention.assign(c.n_layers, all);
    if (j.contains("knn_layers")) {
      const json& kl = j["knn_layers"];
      if (!kl.is_array()) fail(Where{file, 0, "knn_layers"}, "expected a list of layer indices");
      for (const json& e : kl) {
        if (!e.is_number_integer()) fail(Where{file, 0, "knn_layers"}, "expected integers, got {}", e.dump());
        int64_t i = e.get<int64_t>();
        if (i < -c.n_layers || i >= c.n_layers)
          fail(Where{file, 0, "knn_layers"}, "layer index {} outside [-{}, {})", i, c.n_layers, c.n_layers);
        c.layer_attention[i < 0 ? i + c.n_layers : i] = nn::AttentionKind::kKnn;
      }
    }
  }
  c.local_window = core::get_int(j, file, "local_window", 0);
  c.segment_len = core::get_int(j, file, "segment_len", 2048);
  std::string upd = core::get_string(j, file, "infini_update", "linear");
  if (upd == "linear") c.infini_update = nn::InfiniUpdate::kLinear;
  else if (upd == "delta") c.infini_update = nn::InfiniUpdate::kDelta;
  else fail(Where{file, 0, "infini_update"}, "expected \"linear\" or \"delta\", got \"{}\"", upd);
  std::string first = core::get_string(j, file, "infini_first_segment", "skip_gate");
  if (first == "skip_gate") c.infini_first_segment = nn::InfiniFirstSegment::kSkipGate;
  else if (first == "zero_memory") c.infini_first_segment = nn::InfiniFirstSegment::kZeroMemory;
  else fail(Where{file, 0, "infini_first_segment"}, "expected \"skip_gate\" or \"zero_memory\", got \"{}\"", first);
  c.infini_detach_every = core::get_int(j, file, "infini_detach_every", 0);
  c.knn_memory.capacity = core::get_int(j, file, "knn_memory_size", 65536);
  c.knn_top_k = core::get_int(j, file, "knn_top_k", 32);
  c.knn_memory.search = nn::parse_knn_search(core::get_string(j, file, "knn_search", "exact"), Where{file, 0, "knn_search"});
  c.knn_memory.faiss_nlist = core::get_int(j, file, "knn_faiss_nlist", 64);
  c.knn_memory.faiss_nprobe = core::get_int(j, file, "knn_faiss_nprobe", 8);
  c.knn_temperature_init = core::get_double(j, file, "knn_temperature_init", 1.0);
  c.knn_local_rope = core::get_bool(j, file, "knn_local_rope", false);
  c.delight_min_depth = core::get_int(j, file, "delight_min_depth", 4);
  c.delight_max_depth = core::get_int(j, file, "delight_max_depth", 8);
  c.delight_width_mult = core::get_double(j, file, "delight_width_mult", 2.0);
  c.delight_max_groups = core::get_int(j, file, "delight_max_groups", 0);
  c.delight_ffn_red = core::get_int(j, file, "delight_ffn_red", 4);
  c.validate(file);
  return c;
}

void DecoderLMConfig::validate(const std::string& file) const {
  auto positive = [&](const char* field, int64_t v) {
    if (v < 1) fail(Where{file, 0, field}, "must be >= 1, got {}", v);
  };
  // The block kind and the DeLighT head split first: they decide what d_head must be.
  if (block != "standard" && block != "delight")
    fail(Where{file, 0, "block"}, "expected \"standard\" or \"delight\", got \"{}\"", block);
  if (is_delight()) {
    if (d_model < 4 || d_model % 4 != 0)
      fail(Where{file, 0, "d_model"}, "DeLighT blocks need d_model divisible by 4 (d_o = d_model/2 is an even head width), got {}", d_model);
    positive("delight_heads", delight_heads);
    if ((d_model / 2) % delight_heads != 0 || (d_model / 2 / delight_heads) % 2 != 0)
      fail(Where{file, 0, "delight_heads"}, "d_model/2 = {} must split into {} heads of even width", d_model / 2, delight_heads);
    if (d_head != d_model / 2 / delight_heads)
      fail(Where{file, 0, "d_head"}, "DeLighT blocks have heads of width d_model/2/delight_heads = {}, got {}",
           d_model / 2 / delight_heads, d_head);
  }
  positive("vocab_size", vocab_size);
  positive("n_layers", n_layers);
  positive("d_model", d_model);
  positive("d_head", d_head);
  if (d_head % 2 != 0) fail(Where{file, 0, "d_head"}, "must be even (RoPE), got {}", d_head);
  if (!(qkv_min > 0 && qkv_max > 0 && std::isfinite(qkv_min) && std::isfinite(qkv_max)))
    fail(Where{file, 0, "qkv_multipliers"}, "must be > 0, got [{}, {}]", qkv_min, qkv_max);
  if (!(ffn_min > 0 && ffn_max > 0 && std::isfinite(ffn_min) && std::isfinite(ffn_max)))
    fail(Where{file, 0, "ffn_multipliers"}, "must be > 0, got [{}, {}]", ffn_min, ffn_max);
  positive("gqa_ratio", gqa_ratio);
  positive("ffn_divisor", ffn_divisor);
  if (!(norm_eps > 0)) fail(Where{file, 0, "norm_eps"}, "must be > 0, got {}", norm_eps);
  if (!(rope_base > 1)) fail(Where{file, 0, "rope_base"}, "must be > 1, got {}", rope_base);
  if (!layer_attention.empty() && int64_t(layer_attention.size()) != n_layers)
    fail(Where{file, 0, "layer_attention"}, "has {} entries for {} layers", layer_attention.size(), n_layers);
  if (local_window < 0) fail(Where{file, 0, "local_window"}, "must be >= 0, got {}", local_window);
  positive("segment_len", segment_len);
  if (infini_detach_every < 0)
    fail(Where{file, 0, "infini_detach_every"}, "must be >= 0, got {}", infini_detach_every);
  if (knn_memory.capacity < 0)
    fail(Where{file, 0, "knn_memory_size"}, "must be >= 0 (0 = memory off), got {}", knn_memory.capacity);
  positive("knn_top_k", knn_top_k);
  positive("knn_faiss_nlist", knn_memory.faiss_nlist);
  positive("knn_faiss_nprobe", knn_memory.faiss_nprobe);
  if (!(knn_temperature_init > 0))
    fail(Where{file, 0, "knn_temperature_init"}, "must be > 0, got {}", knn_temperature_init);
  if (is_delight()) {
    positive("delight_min_depth", delight_min_depth);
    positive("delight_max_depth", delight_max_depth);
    if (delight_min_depth > delight_max_depth)
      fail(Where{file, 0, "delight_min_depth"}, "must be <= delight_max_depth ({}), got {}", delight_max_depth, delight_min_depth);
    if (!(delight_width_mult > 0) || !std::isfinite(delight_width_mult))
      fail(Where{file, 0, "delight_width_mult"}, "must be > 0, got {}", delight_width_mult);
    if (delight_max_groups < 0) fail(Where{file, 0, "delight_max_groups"}, "must be >= 0 (0 = automatic), got {}", delight_max_groups);
    positive("delight_ffn_red", delight_ffn_red);
    if (d_model % delight_ffn_red != 0)
      fail(Where{file, 0, "delight_ffn_red"}, "d_model {} is not divisible by {}", d_model, delight_ffn_red);
    // Building every unit's spec checks that each GLT width splits into its groups.
    for (int64_t i = 0; i < n_layers; ++i) {
      try {
        (void)dextra_spec(i);
      } catch (const Error& e) {
        fail(Where{file, 0, "d_model"}, "DeLighT block {}: {}", i, e.what());
      }
    }
  }
}

nn::DExTraSpec DecoderLMConfig::dextra_spec(int64_t layer) const {
  const nn::BlockScaling bs = nn::delight_block_scaling(delight_min_depth, delight_max_depth, n_layers, delight_width_mult);
  const int64_t groups = delight_max_groups > 0 ? delight_max_groups : nn::delight_max_groups(d_model);
  return nn::dextra_spec(d_model, d_model / 2, d_model / 2, bs.width_mult[layer], bs.depth[layer], groups);
}

json DecoderLMConfig::to_json() const {
  json j;
  j["model_type"] = kModelType;
  j["vocab_size"] = vocab_size;
  j["n_layers"] = n_layers;
  j["d_model"] = d_model;
  j["d_head"] = d_head;
  j["qkv_multipliers"] = json::array({qkv_min, qkv_max});
  j["ffn_multipliers"] = json::array({ffn_min, ffn_max});
  j["gqa_ratio"] = gqa_ratio;
  j["ffn_divisor"] = ffn_divisor;
  j["ffn_activation"] = ffn_activation == nn::GatedActivation::kSwiGLU ? "swiglu" : "geglu";
  j["qk_norm"] = qk_norm;
  j["norm_eps"] = norm_eps;
  j["rope_base"] = rope_base;
  json la = json::array();
  for (int64_t i = 0; i < n_layers; ++i) la.push_back(nn::attention_kind_name(kind(i)));
  j["layer_attention"] = la;
  j["local_window"] = local_window;
  j["segment_len"] = segment_len;
  j["infini_update"] = update_name(infini_update);
  j["infini_first_segment"] = first_name(infini_first_segment);
  j["infini_detach_every"] = infini_detach_every;
  j["knn_memory_size"] = knn_memory.capacity;
  j["knn_top_k"] = knn_top_k;
  j["knn_search"] = knn_memory.search == nn::KnnSearch::kExact ? "exact" : "faiss_ivf";
  j["knn_faiss_nlist"] = knn_memory.faiss_nlist;
  j["knn_faiss_nprobe"] = knn_memory.faiss_nprobe;
  j["knn_temperature_init"] = knn_temperature_init;
  j["knn_local_rope"] = knn_local_rope;
  j["tie_word_embeddings"] = true;
  if (is_delight()) {  // written only for DeLighT models, so existing config.json files stay as they were
    j["block"] = block;
    j["delight_min_depth"] = delight_min_depth;
    j["delight_max_depth"] = delight_max_depth;
    j["delight_width_mult"] = delight_width_mult;
    j["delight_max_groups"] = delight_max_groups;
    j["delight_ffn_red"] = delight_ffn_red;
    j["delight_heads"] = delight_heads;
  }
  return j;
}

std::vector<LayerShape> DecoderLMConfig::layer_shapes() const {
  std::vector<double> alpha = layerwise_multipliers(qkv_min, qkv_max, n_layers);
  std::vector<double> beta = layerwise_multipliers(ffn_min, ffn_max, n_layers);
  std::vector<LayerShape> out;
  if (is_delight()) {
    const nn::BlockScaling bs = nn::delight_block_scaling(delight_min_depth, delight_max_depth, n_layers, delight_width_mult);
    for (int64_t i = 0; i < n_layers; ++i) {
      LayerShape s;
      s.n_q = s.n_kv = delight_heads;  // the paper: one head of width d_o = d_model/2
      s.ffn_dim = d_model / delight_ffn_red;
      s.attention = kind(i);
      s.dextra_depth = bs.depth[i];
      s.dextra_width_mult = bs.width_mult[i];
      out.push_back(s);
    }
    return out;
  }
  for (int64_t i = 0; i < n_layers; ++i) {
    LayerShape s;
    const int64_t q_dim = make_divisible(double(d_model) * alpha[i], d_head * gqa_ratio);
    s.n_q = q_dim / d_head;
    s.n_kv = s.n_q / gqa_ratio;
    s.ffn_dim = make_divisible(double(d_model) * beta[i], ffn_divisor);
    s.attention = kind(i);
    out.push_back(s);
  }
  return out;
}

nn::AttentionOptions DecoderLMConfig::attention_options(int64_t layer) const {
  const LayerShape s = layer_shapes()[layer];
  nn::AttentionOptions o;
  o.kind = s.attention;
  o.d_model = d_model;
  o.n_q = s.n_q;
  o.n_kv = s.n_kv;
  o.d_head = d_head;
  if (is_delight()) {  // heads on the DExTra output d_o, projected back to d_model
    o.d_model = d_model / 2;
    o.d_head = d_model / 2 / delight_heads;
    o.d_out = d_model;
  }
  o.qk_norm = qk_norm;
  o.norm_eps = norm_eps;
  o.rope_base = rope_base;
  // The kNN layer's local path always has a bounded XL cache (papers.md §4.1): local_window,
  // or one segment when local_window is 0.
  o.window = (s.attention == nn::AttentionKind::kKnn && local_window == 0) ? segment_len : local_window;
  o.segment_len = segment_len;
  o.infini_update = infini_update;
  o.infini_first_segment = infini_first_segment;
  o.infini_detach_every = infini_detach_every;
  o.knn_memory = knn_memory;
  o.knn_top_k = knn_top_k;
  o.knn_temperature_init = knn_temperature_init;
  o.knn_local_rope = knn_local_rope;
  return o;
}

int64_t DecoderLMConfig::parameter_count() const {
  int64_t n = vocab_size * d_model + d_model;  // tied embedding + final norm
  const std::vector<LayerShape> shapes = layer_shapes();
  for (int64_t i = 0; i < n_layers; ++i) {
    const LayerShape& s = shapes[i];
    const nn::AttentionOptions a = attention_options(i);
    n += 2 * d_model;                                        // attn_norm, ffn_norm
    n += a.d_model * (s.n_q + 2 * s.n_kv) * a.d_head;        // qkv_proj
    n += s.n_q * a.d_head * (a.d_out > 0 ? a.d_out : a.d_model);  // out_proj
    if (qk_norm && s.attention != nn::AttentionKind::kKnn) n += 2 * a.d_head;
    if (s.attention != nn::AttentionKind::kStandard) n += s.n_q;  // gate
    if (s.attention == nn::AttentionKind::kKnn) n += s.n_q;       // temperature
    if (is_delight()) {
      n += dextra_spec(i).parameter_count();                 // DExTra unit
      n += 2 * d_model * s.ffn_dim + s.ffn_dim + d_model;    // fc1, fc2 with biases
    } else {
      n += 3 * d_model * s.ffn_dim;                          // proj_1 (2·ffn), proj_2
    }
  }
  return n;
}

void DecoderLMState::detach() {
  for (auto& l : layers) l.detach();
}

int64_t DecoderLMState::nbytes() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.nbytes();
  return n;
}

DecoderBlockImpl::DecoderBlockImpl(const nn::AttentionOptions& a, int64_t ffn_dim, nn::GatedActivation act,
                                   double eps) {
  attn_norm = register_module("attn_norm", nn::RMSNorm(a.d_model, eps));
  attn = register_module("attn", nn::LMAttention(a));
  ffn_norm = register_module("ffn_norm", nn::RMSNorm(a.d_model, eps));
  ffn = register_module("ffn", nn::GatedFeedForward(a.d_model, ffn_dim, act));
}

DecoderBlockImpl::DecoderBlockImpl(const nn::AttentionOptions& a, const nn::DExTraSpec& spec, int64_t ffn_hidden,
                                   double eps) {
  const int64_t d = a.d_out > 0 ? a.d_out : a.d_model;  // residual width
  attn_norm = register_module("attn_norm", nn::RMSNorm(d, eps));
  dextra = register_module("dextra", nn::DExTraUnit(spec, nn::Activation::kSilu, 0.0));
  attn = register_module("attn", nn::LMAttention(a));
  ffn_norm = register_module("ffn_norm", nn::RMSNorm(d, eps));
  fc1 = register_module("fc1", nn::Linear(d, ffn_hidden));
  fc2 = register_module("fc2", nn::Linear(ffn_hidden, d));
}

torch::Tensor DecoderBlockImpl::forward(const torch::Tensor& x, int64_t pos0, const torch::Tensor& doc_start,
                                        nn::AttentionState& state) {
  if (dextra) {  // DeLighT block (papers.md §1.7, pre-norm)
    torch::Tensor y = x + attn->forward(dextra->forward(attn_norm->forward(x)), pos0, doc_start, state);  // [B,T,d]
    return y + fc2->forward(torch::silu(fc1->forward(ffn_norm->forward(y))));                              // [B,T,d]
  }
  torch::Tensor y = x + attn->forward(attn_norm->forward(x), pos0, doc_start, state);
  return y + ffn->forward(ffn_norm->forward(y));
}

DecoderLMImpl::DecoderLMImpl(const DecoderLMConfig& config, uint64_t seed) : config_(config) {
  config_.validate();
  if (config_.layer_attention.empty()) config_.layer_attention.assign(config_.n_layers, nn::AttentionKind::kStandard);
  const int64_t d = config_.d_model;
  embed = register_parameter("embed", torch::empty({config_.vocab_size, d}));
  layers = register_module("layers", torch::nn::ModuleList());
  const std::vector<LayerShape> shapes = config_.layer_shapes();
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    DecoderBlock block = config_.is_delight()
        ? DecoderBlock(config_.attention_options(i), config_.dextra_spec(i), shapes[i].ffn_dim, config_.norm_eps)
        : DecoderBlock(config_.attention_options(i), shapes[i].ffn_dim, config_.ffn_activation, config_.norm_eps);
    layers->push_back(block);
    blocks_.push_back(block);
  }
  norm = register_module("norm", nn::RMSNorm(d, config_.norm_eps));
  // nn::Linear / nn::LayerNorm (the DeLighT blocks' modules, shared with inference) register
  // their parameters without grad; everything here is trained.
  for (auto& p : parameters()) p.set_requires_grad(true);
  // OpenELM init (corenet general_gpt.py reset_parameters): N(0, fan_in^-1/2) for linear layers
  // and the embedding (fan_in = d_model), out_proj / proj_2 re-initialised with
  // std = d_model^-1/2 · (2N)^-1/2.
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const double std_d = 1.0 / std::sqrt(double(d));
  const double std_out = std_d / std::sqrt(2.0 * double(config_.n_layers));
  normal_(embed, std_d, gen);
  for (auto& b : blocks_) {
    normal_(b->attn->qkv_proj, 1.0 / std::sqrt(double(b->attn->options.d_model)), gen);  // fan_in
    normal_(b->attn->out_proj, std_out, gen);
    if (b->dextra) {
      for (auto& p : b->dextra->named_parameters())
        if (p.value().dim() >= 2) xavier_uniform_(p.value(), gen);  // biases 0, LayerNorms 1 (as built)
      normal_(b->fc1->weight, std_d, gen);
      normal_(b->fc2->weight, std_out, gen);
      torch::NoGradGuard no_grad;
      b->fc1->bias.zero_();
      b->fc2->bias.zero_();
    } else {
      normal_(b->ffn->proj_1, std_d, gen);
      normal_(b->ffn->proj_2, std_out, gen);
    }
  }
}

DecoderLMState DecoderLMImpl::initial_state(int64_t batch) const {
  DecoderLMState s;
  s.position = 0;
  s.doc_start = torch::zeros({batch}, torch::kInt64);
  s.layers.resize(config_.n_layers);
  return s;
}

torch::Tensor DecoderLMImpl::forward(const torch::Tensor& ids) {
  DecoderLMState st = initial_state(ids.dim() > 0 ? ids.size(0) : 0);
  return forward(ids, st);
}

torch::Tensor DecoderLMImpl::hidden(const torch::Tensor& ids, DecoderLMState& state,
                                    const torch::Tensor& new_document) {
  if (ids.dim() != 2 || ids.scalar_type() != torch::kInt64)
    fail(Where{"", 0, "ids"}, "expected int64 token ids [B, T], got {} of {} dims", std::string(c10::toString(ids.scalar_type())), ids.dim());
  const int64_t b = ids.size(0), t = ids.size(1);
  if (int64_t(state.layers.size()) != config_.n_layers || !state.doc_start.defined() || state.batch() != b)
    fail(Where{"", 0, "state"}, "state is for another model or batch size (expected {} rows, {} layers)", b, config_.n_layers);
  if (t > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      fail(Where{"", 0, "ids"}, "token id {} outside [0, {})", lo < 0 ? lo : hi, config_.vocab_size);
  }
  if (new_document.defined()) {
    torch::Tensor rows = new_document.to(torch::kBool).reshape({-1});
    if (rows.size(0) != b) fail(Where{"", 0, "new_document"}, "expected {} flags, got {}", b, rows.size(0));
    state.doc_start = torch::where(rows, torch::full({b}, state.position, torch::kInt64), state.doc_start);
    for (int64_t i = 0; i < config_.n_layers; ++i) blocks_[i]->attn->reset_rows(state.layers[i], rows);
  }
  torch::Tensor x = embed.index_select(0, ids.reshape({-1})).view({b, t, config_.d_model});  // [B,T,d]
  for (int64_t i = 0; i < config_.n_layers; ++i)
    x = blocks_[i]->forward(x, state.position, state.doc_start, state.layers[i]);
  state.position += t;
  return norm->forward(x);  // [B,T,d]
}

torch::Tensor DecoderLMImpl::forward(const torch::Tensor& ids, DecoderLMState& state,
                                     const torch::Tensor& new_document) {
  torch::Tensor h = hidden(ids, state, new_document);  // [B,T,d]
  return nn::dense(h, embed);                          // [B,T,V] (tied embedding)
}

int64_t DecoderLMImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

std::vector<torch::Tensor> DecoderLMImpl::memory_gates() const {
  std::vector<torch::Tensor> out;
  for (const auto& b : blocks_) out.push_back(b->attn->gate_values());
  return out;
}

void DecoderLMImpl::save(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(Where{dir, 0, ""}, "cannot create directory: {}", ec.message());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : named_parameters())
    tensors.emplace_back(p.key(), p.value().detach().to(torch::kFloat32).contiguous());
  io::write_safetensors(dir + "/model.safetensors", tensors, json{{"format", "pt"}});
  const std::string path = dir + "/config.json";
  core::write_file_atomic(path, config_.to_json().dump(2) + "\n");
}

namespace {

// Copies every parameter of `model` from `ck` by name (shape-checked); the checkpoint may hold no
// other tensor. `weights` names the file in errors.
void copy_weights(DecoderLMImpl& model, io::HfCheckpoint& ck, const std::string& weights) {
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    expected.insert(p.key());
    if (!ck.has(p.key())) fail(Where{weights, 0, p.key()}, "missing tensor");
    torch::Tensor t = ck.load(p.key());
    if (t.sizes() != p.value().sizes())
      fail(Where{weights, 0, p.key()}, "shape {} does not match the config's {}", c10::str(t.sizes()),
           c10::str(p.value().sizes()));
    p.value().copy_(t);
  }
  for (const std::string& name : ck.names())
    if (!expected.count(name)) fail(Where{weights, 0, name}, "unexpected tensor (not part of this config)");
}

}  // namespace

DecoderLM load_decoder_lm(const std::string& dir) {
  io::HfCheckpoint ck(dir);
  DecoderLMConfig config = DecoderLMConfig::from_json(ck.config(), dir + "/config.json");
  if (!ck.config().contains("model_type"))
    fail(Where{dir + "/config.json", 0, "model_type"}, "missing required field (expected \"{}\")", kModelType);
  DecoderLM model(config);
  copy_weights(*model, ck, dir + "/" + ck.weight_files().front());
  return model;
}

std::string init_decoder_lm_from(DecoderLMImpl& model, const std::string& dir) {
  namespace fs = std::filesystem;
  std::string src;
  if (fs::exists(fs::path(dir) / "model.safetensors")) src = dir;
  else if (fs::exists(fs::path(dir) / "model" / "model.safetensors")) src = (fs::path(dir) / "model").string();
  else
    fail(Where{dir, 0, "--init-from"},
         "neither a model directory (model.safetensors) nor a run directory with model/model.safetensors");
  io::HfCheckpoint ck(src);
  copy_weights(model, ck, src + "/" + ck.weight_files().front());
  return src;
}

DecoderLMConfig openelm_config(const std::string& name) {
  DecoderLMConfig c;
  c.vocab_size = 32128;
  c.gqa_ratio = 4;
  c.qkv_min = 0.5; c.qkv_max = 1.0;
  c.ffn_min = 0.5; c.ffn_max = 4.0;
  if (name == "openelm-270m") { c.n_layers = 16; c.d_model = 1280; c.d_head = 64; }
  else if (name == "openelm-450m") { c.n_layers = 20; c.d_model = 1536; c.d_head = 64; }
  else if (name == "openelm-1.1b") { c.n_layers = 28; c.d_model = 2048; c.d_head = 64; }
  else if (name == "openelm-3b") { c.n_layers = 36; c.d_model = 3072; c.d_head = 128; }
  else fail(Where{"", 0, "model"}, "unknown OpenELM config \"{}\" (openelm-270m, openelm-450m, openelm-1.1b, openelm-3b)", name);
  c.layer_attention.assign(c.n_layers, nn::AttentionKind::kStandard);
  return c;
}

}  // namespace loom::models
