// Llama / Qwen2 / Mistral / Gemma3-text (and Gemma2's features again) on tiny random checkpoints,
// checked against an independent re-derivation: a plain double-precision implementation written
// here with explicit loops over positions, heads and rotary pairs, from the HF modeling files'
// formulas (RMSNorm, rotate-half RoPE with linear / llama3 frequency scaling, GQA, sliding
// windows, soft-capping, q/k norms, per-layer rope base, tied or untied head). It shares no code
// with models::CausalLM. Weights are written as F32, BF16 (rounded values used by both sides)
// and sharded safetensors, so loading is covered too.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "loom/core/files.h"
#include "loom/generate/causal_generate.h"
#include "loom/io/checkpoint.h"
#include "loom/models/causal_lm.h"
#include "support/support.h"

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using W = std::map<std::string, torch::Tensor>;  // float64 copies of the weights as stored
using Vec = std::vector<double>;

// ---- the independent reference (double, loops) -------------------------------------------

struct Ref {
  Json cfg;
  W w;
  bool gemma() const {
    auto t = cfg["model_type"].get<std::string>();
    return t.rfind("gemma", 0) == 0;
  }
  double at(const std::string& n, int64_t i) const { return w.at(n).data_ptr<double>()[i]; }
  double at2(const std::string& n, int64_t r, int64_t c) const { return w.at(n).data_ptr<double>()[r * w.at(n).size(1) + c]; }
  bool has(const std::string& n) const { return w.count(n) > 0; }

  Vec matvec(const std::string& n, const Vec& x, const std::string& bias = "") const {
    const int64_t rows = w.at(n).size(0), cols = w.at(n).size(1);
    Vec y(rows, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      double s = has(bias) ? at(bias, r) : 0.0;
      for (int64_t c = 0; c < cols; ++c) s += at2(n, r, c) * x[c];
      y[r] = s;
    }
    return y;
  }
  Vec norm(const Vec& x, const std::string& n, int64_t off = 0, int64_t len = -1) const {
    if (len < 0) len = static_cast<int64_t>(x.size());
    double ms = 0;
    for (int64_t i = 0; i < len; ++i) ms += x[off + i] * x[off + i];
    ms /= static_cast<double>(len);
    const double inv = 1.0 / std::sqrt(ms + cfg.value("rms_norm_eps", 1e-6));
    Vec y(x);
    for (int64_t i = 0; i < len; ++i) {
      const double g = gemma() ? 1.0 + at(n, i) : at(n, i);
      y[off + i] = x[off + i] * inv * g;
    }
    return y;
  }
  // HF inverse frequencies, llama3 / linear scaling (modeling_rope_utils.py).
  double inv_freq(int64_t i, int64_t d, double base, bool scaled) const {
    double f = 1.0 / std::pow(base, 2.0 * i / d);
    const Json rs = cfg.value("rope_scaling", Json(nullptr));
    if (!scaled || rs.is_null()) return f;
    const std::string type = rs.contains("rope_type") ? rs["rope_type"] : rs["type"];
    const double factor = rs["factor"];
    if (type == "linear") return f / factor;
    const double lo = rs["low_freq_factor"], hi = rs["high_freq_factor"];
    const double old = rs["original_max_position_embeddings"];
    const double wavelen = 2 * M_PI / f;
    if (wavelen < old / hi) return f;
    if (wavelen > old / lo) return f / factor;
    const double smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * f / factor + smooth * f;
  }
  void rope(Vec& x, int64_t off, int64_t d, int64_t pos, double base, bool scaled) const {
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = pos * inv_freq(i, d, base, scaled);
      const double x1 = x[off + i], x2 = x[off + i + d / 2];
      x[off + i] = x1 * std::cos(a) - x2 * std::sin(a);
      x[off + i + d / 2] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  }
  static double act(const std::string& a, double x) {
    if (a == "silu") return x / (1 + std::exp(-x));
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  }

  // Logits [T][V] of ids at positions 0..T-1.
  std::vector<Vec> forward(const std::vector<int64_t>& ids) const {
    const std::string type = cfg["model_type"];
    const int64_t D = cfg["hidden_size"], H = cfg["num_attention_heads"], Hkv = cfg["num_key_value_heads"];
    const int64_t L = cfg["num_hidden_layers"], d = cfg.value("head_dim", D / H), V = cfg["vocab_size"];
    const int64_t T = static_cast<int64_t>(ids.size());
    const bool g2 = type == "gemma2", g3 = type == "gemma3_text";
    const std::string act_name = gemma() ? "gelu_pytorch_tanh" : "silu";
    double scale = 1.0 / std::sqrt(static_cast<double>(d));
    if (g2 || g3) scale = 1.0 / std::sqrt(cfg["query_pre_attn_scalar"].get<double>());
    const double cap = g2 ? cfg["attn_logit_softcapping"].get<double>() : 0.0;
    std::vector<Vec> x(T, Vec(D));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < D; ++i)
        x[t][i] = at2("model.embed_tokens.weight", ids[t], i) * (gemma() ? std::sqrt(static_cast<double>(D)) : 1.0);
    for (int64_t l = 0; l < L; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      bool sliding = false;
      int64_t window = 0;
      if (g2) sliding = l % 2 == 0;
      if (g3) sliding = (l + 1) % cfg["sliding_window_pattern"].get<int64_t>() != 0;
      if (type == "mistral" && !cfg["sliding_window"].is_null()) sliding = true;
      if (sliding) window = cfg["sliding_window"];
      double base = cfg.value("rope_theta", 10000.0);
      bool scaled = true;
      if (g3 && sliding) base = cfg["rope_local_base_freq"], scaled = false;
      std::vector<Vec> q(T), k(T), v(T);
      for (int64_t t = 0; t < T; ++t) {
        Vec h = norm(x[t], p + "input_layernorm.weight");
        q[t] = matvec(p + "self_attn.q_proj.weight", h, p + "self_attn.q_proj.bias");
        k[t] = matvec(p + "self_attn.k_proj.weight", h, p + "self_attn.k_proj.bias");
        v[t] = matvec(p + "self_attn.v_proj.weight", h, p + "self_attn.v_proj.bias");
        for (int64_t hh = 0; hh < H; ++hh) {
          if (g3) q[t] = norm(q[t], p + "self_attn.q_norm.weight", hh * d, d);
          rope(q[t], hh * d, d, t, base, scaled);
        }
        for (int64_t hh = 0; hh < Hkv; ++hh) {
          if (g3) k[t] = norm(k[t], p + "self_attn.k_norm.weight", hh * d, d);
          rope(k[t], hh * d, d, t, base, scaled);
        }
      }
      std::vector<Vec> nx(T);
      for (int64_t t = 0; t < T; ++t) {
        Vec o(H * d, 0.0);
        for (int64_t hh = 0; hh < H; ++hh) {
          const int64_t kvh = hh / (H / Hkv);
          std::vector<double> s;
          std::vector<int64_t> js;
          for (int64_t j = 0; j <= t; ++j) {
            if (sliding && j <= t - window) continue;
            double dot = 0;
            for (int64_t i = 0; i < d; ++i) dot += q[t][hh * d + i] * k[j][kvh * d + i];
            dot *= scale;
            if (cap > 0) dot = std::tanh(dot / cap) * cap;
            s.push_back(dot);
            js.push_back(j);
          }
          double mx = -1e300, z = 0;
          for (double e : s) mx = std::max(mx, e);
          for (double& e : s) z += (e = std::exp(e - mx));
          for (size_t n = 0; n < s.size(); ++n)
            for (int64_t i = 0; i < d; ++i) o[hh * d + i] += s[n] / z * v[js[n]][kvh * d + i];
        }
        Vec a = matvec(p + "self_attn.o_proj.weight", o, p + "self_attn.o_proj.bias");
        if (g2 || g3) a = norm(a, p + "post_attention_layernorm.weight");
        Vec r(D);
        for (int64_t i = 0; i < D; ++i) r[i] = x[t][i] + a[i];
        Vec h = norm(r, (g2 || g3) ? p + "pre_feedforward_layernorm.weight" : p + "post_attention_layernorm.weight");
        Vec gt = matvec(p + "mlp.gate_proj.weight", h), up = matvec(p + "mlp.up_proj.weight", h);
        for (size_t i = 0; i < gt.size(); ++i) gt[i] = act(act_name, gt[i]) * up[i];
        Vec f = matvec(p + "mlp.down_proj.weight", gt);
        if (g2 || g3) f = norm(f, p + "post_feedforward_layernorm.weight");
        nx[t] = Vec(D);
        for (int64_t i = 0; i < D; ++i) nx[t][i] = r[i] + f[i];
      }
      x = nx;
    }
    const std::string head = has("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
    const double fcap = cfg.value("final_logit_softcapping", Json(nullptr)).is_null()
                            ? 0.0
                            : cfg["final_logit_softcapping"].get<double>();
    std::vector<Vec> out(T);
    for (int64_t t = 0; t < T; ++t) {
      out[t] = matvec(head, norm(x[t], "model.norm.weight"));
      if (fcap > 0)
        for (auto& e : out[t]) e = std::tanh(e / fcap) * fcap;
      EXPECT_EQ(static_cast<int64_t>(out[t].size()), V);
    }
    return out;
  }
};

// ---- fixtures: random checkpoints ------------------------------------------------------------

Json base_config(const std::string& type) {
  Json c = {{"model_type", type}, {"vocab_size", 50}, {"hidden_size", 32}, {"intermediate_size", 48},
            {"num_hidden_layers", 3}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
            {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
            {"bos_token_id", 1}, {"eos_token_id", 2}, {"pad_token_id", 0}};
  return c;
}

// Random weights for the tensors CausalLM expects; norms around 0 (gemma) / 1 (llama).
W random_weights(const Json& cfg, uint64_t seed) {
  auto c = loom::models::parse_causal_lm_config(cfg, "config.json");
  torch::manual_seed(seed);
  W w;
  for (const auto& [name, shape] : loom::models::CausalLM::expected_tensors(c)) {
    torch::Tensor t;
    const bool is_norm = name.find("norm") != std::string::npos;
    if (is_norm) {
      t = 0.2 * torch::randn(shape);
      if (!c.norm_plus_one) t = t + 1.0;
    } else if (name.find("bias") != std::string::npos) {
      t = 0.3 * torch::randn(shape);
    } else {
      t = torch::randn(shape) / std::sqrt(static_cast<double>(shape.back())) * (name.find("embed") != std::string::npos ? 3.0 : 1.2);
    }
    w[name] = t.to(torch::kFloat32);
  }
  return w;
}

// Writes config.json + weights (dtype, shards) and returns the float64 view of the stored values.
W write_checkpoint(const fs::path& dir, const Json& cfg, const W& w, torch::ScalarType dtype, int shards) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << cfg.dump(2);
  std::vector<std::pair<std::string, torch::Tensor>> all;
  W stored;
  for (const auto& [n, t] : w) {
    auto s = t.to(dtype);
    all.emplace_back(n, s);
    stored[n] = s.to(torch::kFloat64).contiguous();
  }
  if (shards == 1) {
    loom::io::write_safetensors((dir / "model.safetensors").string(), all);
  } else {
    Json index = {{"metadata", Json::object()}, {"weight_map", Json::object()}};
    for (int s = 0; s < shards; ++s) {
      std::vector<std::pair<std::string, torch::Tensor>> part;
      const std::string file = "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(shards) + ".safetensors";
      for (size_t i = s; i < all.size(); i += shards) {
        part.push_back(all[i]);
        index["weight_map"][all[i].first] = file;
      }
      loom::io::write_safetensors((dir / file).string(), part);
    }
    std::ofstream(dir / "model.safetensors.index.json") << index.dump(2);
  }
  return stored;
}

struct FamilyCase {
  std::string name;
  Json cfg;
  torch::ScalarType dtype;
  int shards;
};

std::vector<FamilyCase> family_cases() {
  std::vector<FamilyCase> out;
  Json llama3 = base_config("llama");
  llama3["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  llama3["tie_word_embeddings"] = false;
  out.push_back({"llama_rope_llama3_untied", llama3, torch::kFloat32, 1});
  Json linear = base_config("llama");
  linear["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  linear["tie_word_embeddings"] = true;
  linear["num_key_value_heads"] = 4;
  out.push_back({"llama_rope_linear_tied", linear, torch::kFloat32, 1});
  Json qwen = base_config("qwen2");
  qwen["rope_theta"] = 1000000.0;
  qwen["tie_word_embeddings"] = true;
  out.push_back({"qwen2_bias_bf16_sharded", qwen, torch::kBFloat16, 3});
  Json mistral = base_config("mistral");
  mistral["sliding_window"] = 3;
  out.push_back({"mistral_sliding_f16", mistral, torch::kFloat16, 1});
  Json g3 = base_config("gemma3_text");
  g3["head_dim"] = 16;
  g3["num_hidden_layers"] = 4;
  g3["sliding_window"] = 3;
  g3["sliding_window_pattern"] = 2;
  g3["rope_theta"] = 1000000.0;
  g3["rope_local_base_freq"] = 10000.0;
  g3["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  g3["query_pre_attn_scalar"] = 20;
  g3["final_logit_softcapping"] = nullptr;
  g3["attn_logit_softcapping"] = nullptr;
  g3["hidden_activation"] = "gelu_pytorch_tanh";
  out.push_back({"gemma3_text_local_global", g3, torch::kFloat32, 1});
  Json g2 = base_config("gemma2");
  g2["head_dim"] = 12;
  g2["sliding_window"] = 4;
  g2["query_pre_attn_scalar"] = 10;
  g2["attn_logit_softcapping"] = 3.0;
  g2["final_logit_softcapping"] = 5.0;
  out.push_back({"gemma2_softcaps", g2, torch::kFloat32, 1});
  return out;
}

class CausalFamilies : public ::testing::TestWithParam<FamilyCase> {};

TEST_P(CausalFamilies, LogitsEqualIndependentDoubleImplementation) {
  const auto& fc = GetParam();
  loom_test::TempDir tmp;
  const fs::path dir = tmp.path() / fc.name;
  W stored = write_checkpoint(dir, fc.cfg, random_weights(fc.cfg, 7), fc.dtype, fc.shards);
  auto model = loom::models::CausalLM::load(dir.string());
  std::vector<int64_t> ids = {1, 7, 33, 2, 19, 45, 8, 8, 21, 3, 40, 11};
  auto got = model->logits(ids).to(torch::kDouble);
  Ref ref{fc.cfg, stored};
  auto want = ref.forward(ids);
  double max_diff = 0, max_abs = 0;
  for (size_t t = 0; t < ids.size(); ++t)
    for (size_t i = 0; i < want[t].size(); ++i) {
      max_diff = std::max(max_diff, std::abs(got[t][i].item<double>() - want[t][i]));
      max_abs = std::max(max_abs, std::abs(want[t][i]));
    }
  EXPECT_GT(max_abs, 0.5);  // logits are not trivially small
  EXPECT_LT(max_diff, 1e-4 * std::max(1.0, max_abs)) << fc.name;

  // KV-cache decode == full recompute, and a left-padded batch row == the row alone.
  loom::generate::CausalGenerateOptions o;
  o.max_new_tokens = 8;
  o.sampling.temperature = 0;
  loom::generate::Sequence seq(model, {1, 7, 33, 2}, o);
  std::vector<torch::Tensor> steps;
  while (seq.step()) steps.push_back(seq.last_logits().clone());
  auto full = model->logits(seq.tokens());
  for (size_t i = 0; i < steps.size(); ++i)
    EXPECT_LT((steps[i] - full[3 + static_cast<int64_t>(i)]).abs().max().item<double>(), 1e-4) << "step " << i;
  auto rows = loom::generate::generate_batch(*model, {{1, 7, 33, 2}, {5, 6, 7, 8, 9, 10, 11, 12, 13}}, o);
  EXPECT_EQ(rows[0], seq.generated());
}

INSTANTIATE_TEST_SUITE_P(Tiny, CausalFamilies, ::testing::ValuesIn(family_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(CausalLmConfig, UnknownOrUnsupportedValuesNameTheField) {
  auto err = [](Json c) { return loom_test::error_of([&] { loom::models::parse_causal_lm_config(c, "x/config.json"); }); };
  auto c = base_config("falcon");
  EXPECT_NE(err(c).find("unsupported model_type 'falcon'"), std::string::npos) << err(c);
  c = base_config("llama");
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(err(c).find("rope_scaling.rope_type"), std::string::npos) << err(c);
  c = base_config("llama");
  c["hidden_act"] = "relu2";
  EXPECT_NE(err(c).find("hidden_act"), std::string::npos) << err(c);
  c = base_config("llama");
  c["num_key_value_heads"] = 3;
  EXPECT_NE(err(c).find("num_key_value_heads"), std::string::npos) << err(c);
  c = base_config("llama");
  c.erase("hidden_size");
  EXPECT_NE(err(c).find("hidden_size"), std::string::npos) << err(c);
  c = base_config("gemma3");
  EXPECT_NE(err(c).find("gemma3_text"), std::string::npos) << err(c);
}

}  // namespace
