#include "loom/models/causal_lm.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "loom/core/config_fields.h"
#include "loom/core/error.h"
#include "loom/io/checkpoint.h"
#include "loom/nn/linear.h"

namespace loom::models {
namespace {

using Json = nlohmann::json;

// eos_token_id may be a list (Llama 3): the first entry is the model's eos.
int64_t get_token_id(const Json& c, const std::string& file, const char* key, int64_t fallback) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return fallback;
  if (it->is_array()) {
    if (it->empty()) return fallback;
    if (!(*it)[0].is_number_integer()) fail(Where{file, 0, key}, "expected integers, got {}", it->dump());
    return (*it)[0].get<int64_t>();
  }
  return core::get_int(c, file, key, fallback);
}

RopeScaling parse_rope_scaling(const Json& c, const std::string& file) {
  RopeScaling r;
  auto it = c.find("rope_scaling");
  if (it == c.end() || it->is_null()) return r;
  if (!it->is_object()) fail(Where{file, 0, "rope_scaling"}, "expected an object or null, got {}", it->dump());
  std::string type = core::get_string(*it, file, "rope_type", core::get_string(*it, file, "type", "default"));
  if (type == "default") return r;
  r.factor = core::get_double(*it, file, "factor", 1.0);
  if (!(r.factor > 0)) fail(Where{file, 0, "rope_scaling.factor"}, "must be > 0, got {}", r.factor);
  if (type == "linear") {
    r.kind = RopeScaling::Kind::kLinear;
  } else if (type == "llama3") {
    r.kind = RopeScaling::Kind::kLlama3;
    r.low_freq_factor = core::get_double(*it, file, "low_freq_factor", 1.0);
    r.high_freq_factor = core::get_double(*it, file, "high_freq_factor", 4.0);
    r.original_max_position = core::get_int(*it, file, "original_max_position_embeddings", 8192);
    if (!(r.high_freq_factor > r.low_freq_factor))
      fail(Where{file, 0, "rope_scaling.high_freq_factor"}, "must exceed low_freq_factor");
  } else {
    fail(Where{file, 0, "rope_scaling.rope_type"}, "unsupported rope scaling '{}' (supported: default, linear, llama3)",
         type);
  }
  return r;
}

std::string check_activation(const std::string& act, const std::string& file, const char* key) {
  if (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "silu" || act == "gelu") return act;
  fail(Where{file, 0, key}, "unsupported activation '{}' (supported: gelu_pytorch_tanh, gelu_new, gelu, silu)", act);
}

// True when every element is finite; checked in chunks of 4M elements, so the temporaries stay
// small next to a multi-GB mapped tensor.
bool all_finite(const torch::Tensor& t) {
  auto flat = t.reshape({-1});
  const int64_t n = flat.numel(), chunk = int64_t{1} << 22;
  for (int64_t i = 0; i < n; i += chunk)
    if (!torch::isfinite(flat.narrow(0, i, std::min(chunk, n - i))).all().item<bool>()) return false;
  return true;
}

torch::Tensor act_fn(const std::string& act, const torch::Tensor& x) {
  if (act == "silu") return torch::silu(x);
  if (act == "gelu") return torch::gelu(x);
  return torch::gelu(x, "tanh");
}

}  // namespace

const char* family_name(CausalFamily f) {
  switch (f) {
    case CausalFamily::kGemma: return "gemma";
    case CausalFamily::kGemma2: return "gemma2";
    case CausalFamily::kGemma3: return "gemma3_text";
    case CausalFamily::kLlama: return "llama";
    case CausalFamily::kQwen2: return "qwen2";
    case CausalFamily::kMistral: return "mistral";
  }
  return "?";
}

bool is_hf_causal_lm(const nlohmann::json& config) {
  auto it = config.find("model_type");
  if (it == config.end() || !it->is_string()) return false;
  const auto t = it->get<std::string>();
  return t == "gemma" || t == "gemma2" || t == "gemma3_text" || t == "llama" || t == "qwen2" || t == "mistral";
}

CausalLmConfig parse_causal_lm_config(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) fail(Where{file}, "config.json must be a JSON object");
  const std::string type = core::get_string(j, file, "model_type", "");
  CausalLmConfig c;
  if (type == "gemma") c.family = CausalFamily::kGemma;
  else if (type == "gemma2") c.family = CausalFamily::kGemma2;
  else if (type == "gemma3_text") c.family = CausalFamily::kGemma3;
  else if (type == "llama") c.family = CausalFamily::kLlama;
  else if (type == "qwen2") c.family = CausalFamily::kQwen2;
  else if (type == "mistral") c.family = CausalFamily::kMistral;
  else if (type.empty()) fail(Where{file, 0, "model_type"}, "missing; cannot tell the model family");
  else if (type == "gemma3")
    fail(Where{file, 0, "model_type"},
         "'gemma3' is the multimodal Gemma3ForConditionalGeneration; only the text model (gemma3_text) is supported");
  else
    fail(Where{file, 0, "model_type"},
         "unsupported model_type '{}' (supported: gemma, gemma2, gemma3_text, llama, qwen2, mistral)", type);
  const bool gemma = c.family == CausalFamily::kGemma || c.family == CausalFamily::kGemma2 ||
                     c.family == CausalFamily::kGemma3;

  c.vocab_size = core::get_int(j, file, "vocab_size", std::nullopt);
  c.hidden_size = core::get_int(j, file, "hidden_size", std::nullopt);
  c.intermediate_size = core::get_int(j, file, "intermediate_size", std::nullopt);
  c.num_layers = core::get_int(j, file, "num_hidden_layers", std::nullopt);
  c.num_heads = core::get_int(j, file, "num_attention_heads", std::nullopt);
  for (auto [key, v] : {std::pair<const char*, int64_t>{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                        {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_layers},
                        {"num_attention_heads", c.num_heads}}) {
    if (v <= 0) fail(Where{file, 0, key}, "must be > 0, got {}", v);
  }
  c.num_kv_heads = core::get_int(j, file, "num_key_value_heads", c.num_heads);
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    fail(Where{file, 0, "num_key_value_heads"}, "{} does not divide num_attention_heads {}", c.num_kv_heads,
         c.num_heads);
  // HF class defaults: Gemma* head_dim 256; the Llama family hidden_size / heads.
  c.head_dim = core::get_int(j, file, "head_dim", gemma ? 256 : c.hidden_size / c.num_heads);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) fail(Where{file, 0, "head_dim"}, "must be even and > 0, got {}", c.head_dim);
  int64_t default_max = 2048;
  if (gemma) default_max = c.family == CausalFamily::kGemma3 ? 131072 : 8192;
  if (c.family == CausalFamily::kQwen2) default_max = 32768;
  if (c.family == CausalFamily::kMistral) default_max = 4096 * 32;
  c.max_position = core::get_int(j, file, "max_position_embeddings", default_max);
  if (c.max_position <= 0) fail(Where{file, 0, "max_position_embeddings"}, "must be > 0, got {}", c.max_position);
  c.rms_norm_eps = core::get_double(j, file, "rms_norm_eps", 1e-6);
  c.rope_theta = core::get_double(j, file, "rope_theta", c.family == CausalFamily::kGemma3 ? 1e6 : 10000.0);
  c.rope_scaling = parse_rope_scaling(j, file);
  c.bos_token_id = get_token_id(j, file, "bos_token_id", -1);
  c.eos_token_id = get_token_id(j, file, "eos_token_id", -1);
  c.pad_token_id = get_token_id(j, file, "pad_token_id", -1);
  c.attn_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  c.layer_sliding.assign(c.num_layers, false);

  if (gemma) {
    c.norm_plus_one = true;
    c.scale_embeddings = true;
    c.tie_word_embeddings = core::get_bool(j, file, "tie_word_embeddings", true);
    // HF 4.46 Gemma ignores hidden_act; hidden_activation (default gelu_pytorch_tanh) decides.
    c.activation = check_activation(core::get_string(j, file, "hidden_activation", "gelu_pytorch_tanh"), file,
                                    "hidden_activation");
    if (core::get_bool(j, file, "attention_bias", false))
      fail(Where{file, 0, "attention_bias"}, "true is not supported for {}", type);
  } else {
    c.tie_word_embeddings = core::get_bool(j, file, "tie_word_embeddings", false);
    c.activation = check_activation(core::get_string(j, file, "hidden_act", "silu"), file, "hidden_act");
  }
  if (c.family == CausalFamily::kGemma2 || c.family == CausalFamily::kGemma3) {
    c.sandwich_norms = true;
    c.attn_scale = 1.0 / std::sqrt(core::get_double(j, file, "query_pre_attn_scalar", 256));
    c.sliding_window = core::get_int(j, file, "sliding_window", 4096);
    if (c.sliding_window <= 0) fail(Where{file, 0, "sliding_window"}, "must be > 0, got {}", c.sliding_window);
  }
  if (c.family == CausalFamily::kGemma2) {
    c.attn_softcap = core::get_double(j, file, "attn_logit_softcapping", 50.0);
    c.final_softcap = core::get_double(j, file, "final_logit_softcapping", 30.0);
    for (int64_t l = 0; l < c.num_layers; ++l) c.layer_sliding[l] = l % 2 == 0;  // even layers local
  }
  if (c.family == CausalFamily::kGemma3) {
    c.qk_norm = true;
    c.attn_softcap = core::get_double(j, file, "attn_logit_softcapping", 0.0);
    c.final_softcap = core::get_double(j, file, "final_logit_softcapping", 0.0);
    c.rope_local_theta = core::get_double(j, file, "rope_local_base_freq", 10000.0);
    auto lt = j.find("layer_types");
    if (lt != j.end() && !lt->is_null()) {
      if (!lt->is_array() || static_cast<int64_t>(lt->size()) != c.num_layers)
        fail(Where{file, 0, "layer_types"}, "expected a list of {} layer types", c.num_layers);
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const auto& t = (*lt)[l];
        if (t == "sliding_attention") c.layer_sliding[l] = true;
        else if (t != "full_attention")
          fail(Where{file, 0, "layer_types"}, "unsupported layer type {} at layer {}", t.dump(), l);
      }
    } else {
      const int64_t pattern = core::get_int(j, file, "sliding_window_pattern", 6);
      if (pattern <= 0) fail(Where{file, 0, "sliding_window_pattern"}, "must be > 0, got {}", pattern);
      for (int64_t l = 0; l < c.num_layers; ++l) c.layer_sliding[l] = (l + 1) % pattern != 0;
    }
  }
  if (c.family == CausalFamily::kLlama || c.family == CausalFamily::kMistral) {
    c.qkv_bias = c.o_bias = core::get_bool(j, file, "attention_bias", false);
    if (core::get_bool(j, file, "mlp_bias", false)) fail(Where{file, 0, "mlp_bias"}, "true is not supported");
  }
  if (c.family == CausalFamily::kQwen2) {
    c.qkv_bias = true;
    if (core::get_bool(j, file, "use_sliding_window", false))
      fail(Where{file, 0, "use_sliding_window"}, "true is not supported for qwen2");
  }
  if (c.family == CausalFamily::kMistral) {
    c.sliding_window = core::get_int(j, file, "sliding_window", 0);
    if (c.sliding_window < 0) fail(Where{file, 0, "sliding_window"}, "must be >= 0 or null, got {}", c.sliding_window);
    if (c.sliding_window > 0) c.layer_sliding.assign(c.num_layers, true);
  }
  if (c.attn_softcap < 0) fail(Where{file, 0, "attn_logit_softcapping"}, "must be >= 0 or null");
  if (c.final_softcap < 0) fail(Where{file, 0, "final_logit_softcapping"}, "must be >= 0 or null");
  return c;
}

torch::Tensor rope_inv_freq(int64_t head_dim, double base, const RopeScaling& s) {
  // HF: 1 / base ** (arange(0, d, 2).float() / d), all in float32.
  auto exponent = torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<float>(head_dim);
  auto inv = 1.0f / torch::pow(static_cast<float>(base), exponent);
  if (s.kind == RopeScaling::Kind::kLinear) return inv / static_cast<float>(s.factor);
  if (s.kind == RopeScaling::Kind::kLlama3) {
    const double old_len = static_cast<double>(s.original_max_position);
    const double low_wavelen = old_len / s.low_freq_factor, high_wavelen = old_len / s.high_freq_factor;
    auto wavelen = 2 * M_PI / inv;
    auto scaled = torch::where(wavelen > low_wavelen, inv / s.factor, inv);
    auto smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    return torch::where(medium, smoothed, scaled).to(torch::kFloat32);
  }
  return inv;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> CausalLM::expected_tensors(const CausalLmConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const int64_t D = c.hidden_size, F = c.intermediate_size, d = c.head_dim, H = c.num_heads, Hkv = c.num_kv_heads;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, D}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({p + "input_layernorm.weight", {D}});
    out.push_back({p + "post_attention_layernorm.weight", {D}});
    if (c.sandwich_norms) {
      out.push_back({p + "pre_feedforward_layernorm.weight", {D}});
      out.push_back({p + "post_feedforward_layernorm.weight", {D}});
    }
    out.push_back({p + "self_attn.q_proj.weight", {H * d, D}});
    out.push_back({p + "self_attn.k_proj.weight", {Hkv * d, D}});
    out.push_back({p + "self_attn.v_proj.weight", {Hkv * d, D}});
    out.push_back({p + "self_attn.o_proj.weight", {D, H * d}});
    if (c.qkv_bias) {
      out.push_back({p + "self_attn.q_proj.bias", {H * d}});
      out.push_back({p + "self_attn.k_proj.bias", {Hkv * d}});
      out.push_back({p + "self_attn.v_proj.bias", {Hkv * d}});
    }
    if (c.o_bias) out.push_back({p + "self_attn.o_proj.bias", {D}});
    if (c.qk_norm) {
      out.push_back({p + "self_attn.q_norm.weight", {d}});
      out.push_back({p + "self_attn.k_norm.weight", {d}});
    }
    out.push_back({p + "mlp.gate_proj.weight", {F, D}});
    out.push_back({p + "mlp.up_proj.weight", {F, D}});
    out.push_back({p + "mlp.down_proj.weight", {D, F}});
  }
  out.push_back({"model.norm.weight", {D}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, D}});
  return out;
}

std::shared_ptr<CausalLM> CausalLM::load(const std::string& dir, nn::WeightType compute) {
  io::HfCheckpoint ckpt(dir);
  return load(ckpt, compute);
}

std::shared_ptr<CausalLM> CausalLM::load(const io::HfCheckpoint& ckpt, nn::WeightType compute) {
  torch::NoGradGuard no_grad;
  const std::string cfg_file = ckpt.dir() + "/config.json";
  auto m = std::make_shared<CausalLM>();
  m->config_ = parse_causal_lm_config(ckpt.config(), cfg_file);
  m->generation_config_ = ckpt.generation_config();
  m->dir_ = ckpt.dir();
  m->compute_ = compute;
  const auto& c = m->config_;
  const std::string wfile = ckpt.dir() + "/" + (ckpt.weight_files().empty() ? "" : ckpt.weight_files()[0]);

  // Checkpoint-name map: every expected tensor present, with its shape; nothing unexpected.
  // Tensors are memory-mapped views in their stored dtype (no copy) until packed below.
  std::map<std::string, torch::Tensor> w;
  std::set<std::string> expected;
  for (const auto& [name, shape] : expected_tensors(c)) {
    expected.insert(name);
    if (!ckpt.has(name)) fail(Where{wfile, 0, name}, "missing tensor (expected shape {})", fmt::join(shape, "x"));
    auto got = ckpt.shape(name);
    if (got != shape)
      fail(Where{wfile, 0, name}, "wrong shape {} (config.json implies {})", fmt::join(got, "x"), fmt::join(shape, "x"));
    auto t = ckpt.view(name);
    if (!t.is_floating_point()) fail(Where{wfile, 0, name}, "has an integer dtype; expected F32, F16 or BF16");
    if (!all_finite(t)) fail(Where{wfile, 0, name}, "holds NaN or Inf values");
    // Bytes that will be converted (or, for the embedding, looked up row by row) need not stay
    // resident between this check and their conversion: peak RSS stays near the packed size.
    const bool kept = (compute == nn::WeightType::kFloat32 && t.scalar_type() == torch::kFloat32) ||
                      (compute == nn::WeightType::kBFloat16 && t.scalar_type() == torch::kBFloat16);
    if (!kept) ckpt.drop_pages(name);
    w[name] = t;
  }
  for (const auto& name : ckpt.names()) {
    if (expected.count(name)) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // old HF buffers, recomputed
    if (name == "lm_head.weight" && c.tie_word_embeddings) continue;      // HF re-ties it to the embedding
    fail(Where{wfile, 0, name}, "unexpected tensor for a {} checkpoint with this config.json", family_name(c.family));
  }

  // Small tensors (norms) as float32; projections packed as `compute` (a view stays a view when
  // its dtype is already the packed one; otherwise the mapped source pages are released).
  auto f32 = [&](const std::string& n) -> torch::Tensor {
    auto it = w.find(n);
    return it == w.end() ? torch::Tensor() : it->second.to(torch::kFloat32).contiguous();
  };
  auto packed = [&](const std::string& n, const std::string& bias = "") {
    nn::PackedLinear p(w.at(n), f32(bias), compute);
    if (p.weight().data_ptr() != w.at(n).data_ptr()) ckpt.drop_pages(n);
    else if (ckpt.is_mapped_view(p.weight())) m->mapped_bytes_ += p.weight().numel() * p.weight().element_size();
    return p;
  };
  const std::string embed_name = "model.embed_tokens.weight";
  const auto& embed = w.at(embed_name);
  m->embed_ = compute == nn::WeightType::kFloat32 ? embed.to(torch::kFloat32).contiguous() : embed;
  m->final_norm_ = f32("model.norm.weight");
  // A tied float32 head shares the embedding's storage (the mapped view, or its one float32 copy).
  const torch::Tensor& head = c.tie_word_embeddings ? (compute == nn::WeightType::kFloat32 ? m->embed_ : embed)
                                                    : w.at("lm_head.weight");
  m->lm_head_ = nn::PackedLinear(head, {}, compute);
  if (compute != nn::WeightType::kFloat32) ckpt.drop_pages(embed_name);  // rows are paged back in on lookup
  if (!c.tie_word_embeddings && m->lm_head_.weight().data_ptr() != w.at("lm_head.weight").data_ptr())
    ckpt.drop_pages("lm_head.weight");
  auto nbytes = [](const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); };
  if (ckpt.is_mapped_view(m->embed_)) m->mapped_bytes_ += nbytes(m->embed_);
  if (m->lm_head_.weight().data_ptr() != m->embed_.data_ptr() && ckpt.is_mapped_view(m->lm_head_.weight()))
    m->mapped_bytes_ += nbytes(m->lm_head_.weight());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    L.in_norm = f32(p + "input_layernorm.weight");
    if (c.sandwich_norms) {
      L.post_attn_norm = f32(p + "post_attention_layernorm.weight");
      L.pre_ffn_norm = f32(p + "pre_feedforward_layernorm.weight");
      L.post_ffn_norm = f32(p + "post_feedforward_layernorm.weight");
    } else {
      L.pre_ffn_norm = f32(p + "post_attention_layernorm.weight");  // Llama's name for the pre-FFN norm
    }
    const std::string a = p + "self_attn.";
    L.q = packed(a + "q_proj.weight", a + "q_proj.bias");
    L.k = packed(a + "k_proj.weight", a + "k_proj.bias");
    L.v = packed(a + "v_proj.weight", a + "v_proj.bias");
    L.o = packed(a + "o_proj.weight", a + "o_proj.bias");
    L.q_norm = f32(a + "q_norm.weight");
    L.k_norm = f32(a + "k_norm.weight");
    L.gate = packed(p + "mlp.gate_proj.weight");
    L.up = packed(p + "mlp.up_proj.weight");
    L.down = packed(p + "mlp.down_proj.weight");
    // Gemma3: sliding layers use rope_local_base_freq without scaling; global ones rope_theta + scaling.
    if (c.family == CausalFamily::kGemma3 && c.layer_sliding[l]) {
      L.inv_freq = rope_inv_freq(c.head_dim, c.rope_local_theta, RopeScaling{});
    } else {
      L.inv_freq = rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling);
    }
    m->layers_.push_back(std::move(L));
  }
  return m;
}

int64_t CausalLM::num_parameters() const {
  int64_t n = embed_.numel() + final_norm_.numel();
  if (!config_.tie_word_embeddings) n += lm_head_.out_features() * lm_head_.in_features();
  for (const auto& L : layers_) {
    for (const auto* t : {&L.in_norm, &L.post_attn_norm, &L.pre_ffn_norm, &L.post_ffn_norm, &L.q_norm, &L.k_norm})
      if (t->defined()) n += t->numel();
    for (const auto* p : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
      n += p->out_features() * p->in_features();
      if (p == &L.o ? config_.o_bias : (p == &L.q || p == &L.k || p == &L.v) && config_.qkv_bias) n += p->out_features();
    }
  }
  return n;
}

int64_t CausalLM::weight_bytes() const {
  auto tb = [](const torch::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; };
  int64_t n = tb(embed_) + tb(final_norm_);
  // A tied head in the embedding's own storage is counted once.
  if (lm_head_.weight().data_ptr() != embed_.data_ptr()) n += lm_head_.bytes();
  for (const auto& L : layers_) {
    for (const auto* t : {&L.in_norm, &L.post_attn_norm, &L.pre_ffn_norm, &L.post_ffn_norm, &L.q_norm, &L.k_norm})
      n += tb(*t);
    for (const auto* p : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) n += p->bytes();
  }
  return n;
}

torch::Tensor CausalLM::rms_norm(const torch::Tensor& x, const torch::Tensor& w) const {
  // HF: x·rsqrt(mean(x²) + eps) in float32, then · w (Llama) or · (1 + w) (Gemma).
  auto y = x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + config_.rms_norm_eps);
  return config_.norm_plus_one ? y * (1.0f + w) : y * w;
}

namespace {
// rotate_half(x) = cat(-x2, x1) over the last dim.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}
}  // namespace

torch::Tensor CausalLM::forward(const torch::Tensor& ids, const torch::Tensor& positions, const torch::Tensor& valid,
                                KvCache& cache, bool last_only) const {
  torch::NoGradGuard no_grad;
  const auto& c = config_;
  if (ids.dim() != 2 || positions.sizes() != ids.sizes() || valid.sizes() != ids.sizes())
    fail("CausalLM::forward: ids, positions and valid must all be [B, T]");
  const int64_t B = ids.size(0), T = ids.size(1), H = c.num_heads, Hkv = c.num_kv_heads, d = c.head_dim;
  if (T == 0) fail("CausalLM::forward: no tokens");
  if (ids.numel() && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab_size))
    fail("CausalLM::forward: token id outside the vocabulary [0, {})", c.vocab_size);
  const int64_t max_pos = positions.masked_select(valid).numel() ? positions.masked_select(valid).max().item<int64_t>() : 0;
  if (max_pos >= c.max_position)
    fail("position {} is beyond the model's context window of {} tokens (max_position_embeddings)", max_pos,
         c.max_position);
  if (cache.length() > 0 && cache.key_pos.size(0) != B) fail("CausalLM::forward: cache holds another batch size");
  if (cache.k.empty()) {
    cache.k.assign(c.num_layers, torch::Tensor());
    cache.v.assign(c.num_layers, torch::Tensor());
  }

  auto ids_c = ids.to(torch::kInt64);
  auto pos = positions.to(torch::kInt64);
  auto valid_b = valid.to(torch::kBool);
  // Key bookkeeping: [B, S] with S = past + T.
  auto key_pos = cache.length() ? torch::cat({cache.key_pos, pos}, 1) : pos;
  auto key_valid = cache.length() ? torch::cat({cache.key_valid, valid_b}, 1) : valid_b;
  // Masks [B, 1, T, S]: causal by position over valid keys, and the sliding-window variant.
  auto qp = pos.unsqueeze(2);      // [B, T, 1]
  auto kp = key_pos.unsqueeze(1);  // [B, 1, S]
  auto allowed = (kp <= qp).logical_and(key_valid.unsqueeze(1));
  torch::Tensor allowed_sliding;
  if (c.sliding_window > 0) allowed_sliding = allowed.logical_and(kp > qp - c.sliding_window).unsqueeze(1);
  allowed = allowed.unsqueeze(1);
  const float lowest = std::numeric_limits<float>::lowest();  // HF's min_dtype: finite, pads stay NaN-free

  // x [B, T, D]
  auto x = torch::embedding(embed_, ids_c).to(torch::kFloat32);
  if (c.scale_embeddings) x = x * static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));

  for (int64_t l = 0; l < c.num_layers; ++l) {
    const auto& L = layers_[l];
    // RoPE tables cos/sin [B, 1, T, d] (HF: float32 product inv_freq · position).
    auto angles = pos.to(torch::kFloat32).unsqueeze(-1) * L.inv_freq;  // [B, T, d/2]
    auto emb = torch::cat({angles, angles}, -1).unsqueeze(1);
    auto cos = emb.cos(), sin = emb.sin();

    auto h = rms_norm(x, L.in_norm);
    auto q = L.q.forward(h).view({B, T, H, d}).transpose(1, 2);    // [B, H, T, d]
    auto k = L.k.forward(h).view({B, T, Hkv, d}).transpose(1, 2);  // [B, H_kv, T, d]
    auto v = L.v.forward(h).view({B, T, Hkv, d}).transpose(1, 2);  // [B, H_kv, T, d]
    if (c.qk_norm) {
      q = rms_norm(q, L.q_norm);
      k = rms_norm(k, L.k_norm);
    }
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    if (cache.k[l].defined()) {
      k = torch::cat({cache.k[l], k}, 2);  // [B, H_kv, S, d]
      v = torch::cat({cache.v[l], v}, 2);
    }
    cache.k[l] = k;
    cache.v[l] = v;
    // GQA without copying K/V per query head: query head h uses kv head h / G (G = H / H_kv),
    // so the G query heads of one kv head are stacked as G·T rows of one product.
    const int64_t G = H / Hkv, S = k.size(2);
    auto qg = q.reshape({B * Hkv, G * T, d});                                    // [B·H_kv, G·T, d]
    auto scores = nn::bmm_nt(qg, k.reshape({B * Hkv, S, d})).view({B, H, T, S});  // [B, H, T, S]
    scores = scores * static_cast<float>(c.attn_scale);
    if (c.attn_softcap > 0) scores = torch::tanh(scores / static_cast<float>(c.attn_softcap)) * static_cast<float>(c.attn_softcap);
    const auto& mask = c.layer_sliding[l] ? allowed_sliding : allowed;
    scores = scores.masked_fill(mask.logical_not(), lowest);
    auto probs = torch::softmax(scores, -1);
    auto o = nn::bmm_nn(probs.reshape({B * Hkv, G * T, S}), v.reshape({B * Hkv, S, d}))  // [B·H_kv, G·T, d]
                 .view({B, H, T, d})
                 .transpose(1, 2)
                 .reshape({B, T, H * d});  // [B, T, H·d]
    o = L.o.forward(o);                    // [B, T, D]
    if (c.sandwich_norms) o = rms_norm(o, L.post_attn_norm);
    x = x + o;
    h = rms_norm(x, L.pre_ffn_norm);
    auto f = L.down.forward(act_fn(c.activation, L.gate.forward(h)) * L.up.forward(h));  // [B, T, D]
    if (c.sandwich_norms) f = rms_norm(f, L.post_ffn_norm);
    x = x + f;
  }
  cache.key_pos = key_pos;
  cache.key_valid = key_valid;
  if (last_only) x = x.narrow(1, T - 1, 1);
  x = rms_norm(x, final_norm_);
  auto logits = lm_head_.forward(x);  // [B, T, V]
  if (c.final_softcap > 0)
    logits = torch::tanh(logits / static_cast<float>(c.final_softcap)) * static_cast<float>(c.final_softcap);
  return logits;
}

torch::Tensor CausalLM::logits(const std::vector<int64_t>& ids) const {
  KvCache cache;
  auto t = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto pos = torch::arange(static_cast<int64_t>(ids.size()), torch::kInt64).unsqueeze(0);
  auto valid = torch::ones_like(t, torch::kBool);
  return forward(t, pos, valid, cache).squeeze(0);
}

}  // namespace loom::models
