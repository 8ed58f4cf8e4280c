#include "loom/models/bert.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "loom/core/config_fields.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/io/checkpoint.h"
#include "loom/nn/linear.h"

namespace loom::models {
namespace {

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

BertConfig BertConfig::from_json(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) fail(Where{file}, "config is not a JSON object");
  BertConfig c;
  c.vocab_size = core::get_int(j, file, "vocab_size", std::nullopt);
  c.hidden_size = core::get_int(j, file, "hidden_size", std::nullopt);
  c.num_hidden_layers = core::get_int(j, file, "num_hidden_layers", std::nullopt);
  c.num_attention_heads = core::get_int(j, file, "num_attention_heads", std::nullopt);
  c.intermediate_size = core::get_int(j, file, "intermediate_size", std::nullopt);
  c.max_position_embeddings = core::get_int(j, file, "max_position_embeddings", 512);
  c.type_vocab_size = core::get_int(j, file, "type_vocab_size", 2);
  c.pad_token_id = core::get_int(j, file, "pad_token_id", 0);
  for (auto [v, name] : {std::pair{c.vocab_size, "vocab_size"}, {c.hidden_size, "hidden_size"},
                         {c.num_hidden_layers, "num_hidden_layers"}, {c.num_attention_heads, "num_attention_heads"},
                         {c.intermediate_size, "intermediate_size"}, {c.max_position_embeddings, "max_position_embeddings"},
                         {c.type_vocab_size, "type_vocab_size"}})
    if (v <= 0) fail(Where{file, 0, name}, "must be positive, got {}", v);
  if (c.hidden_size % c.num_attention_heads != 0)
    fail(Where{file, 0, "num_attention_heads"}, "hidden_size {} is not a multiple of num_attention_heads {}",
         c.hidden_size, c.num_attention_heads);
  if (j.contains("layer_norm_eps")) {
    if (!j["layer_norm_eps"].is_number()) fail(Where{file, 0, "layer_norm_eps"}, "expected a number");
    c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  if (j.contains("hidden_act")) {
    if (!j["hidden_act"].is_string()) fail(Where{file, 0, "hidden_act"}, "expected a string");
    c.hidden_act = nn::parse_activation(j["hidden_act"].get<std::string>(), Where{file, 0, "hidden_act"});
  }
  if (j.contains("position_embedding_type") && j["position_embedding_type"] != "absolute")
    fail(Where{file, 0, "position_embedding_type"}, "only \"absolute\" position embeddings are supported, got {}",
         j["position_embedding_type"].dump());
  if (j.contains("model_type") && j["model_type"].is_string()) c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "bert" && c.model_type != "roberta" && c.model_type != "xlm-roberta")
    fail(Where{file, 0, "model_type"}, "expected bert, roberta or xlm-roberta, got \"{}\"", c.model_type);
  c.roberta_positions = c.model_type != "bert";
  return c;
}

BertModel BertModel::load(const std::string& dir) {
  io::HfCheckpoint ckpt(dir);
  BertModel m;
  m.config_ = BertConfig::from_json(ckpt.config(), dir + "/config.json");
  const BertConfig& c = m.config_;
  std::string prefix;
  for (const char* p : {"", "bert.", "roberta."})
    if (ckpt.has(std::string(p) + "embeddings.word_embeddings.weight")) prefix = p;
  const std::string where = dir + "/" + (ckpt.weight_files().empty() ? "" : ckpt.weight_files()[0]);
  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    const std::string full = prefix + name;
    if (!ckpt.has(full)) fail(Where{where, 0, full}, "tensor missing from the checkpoint");
    torch::Tensor t = ckpt.load(full);
    if (t.sizes().vec() != shape)
      fail(Where{where, 0, full}, "shape {} but config.json implies {}", fmt::join(t.sizes().vec(), "x"),
           fmt::join(shape, "x"));
    return t;
  };
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  m.word_emb_ = load("embeddings.word_embeddings.weight", {c.vocab_size, d});
  m.pos_emb_ = load("embeddings.position_embeddings.weight", {c.max_position_embeddings, d});
  m.type_emb_ = load("embeddings.token_type_embeddings.weight", {c.type_vocab_size, d});
  m.emb_ln_w_ = load("embeddings.LayerNorm.weight", {d});
  m.emb_ln_b_ = load("embeddings.LayerNorm.bias", {d});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("encoder.layer.{}.", i);
    BertLayerWeights w;
    w.q_w = load(p + "attention.self.query.weight", {d, d});
    w.q_b = load(p + "attention.self.query.bias", {d});
    w.k_w = load(p + "attention.self.key.weight", {d, d});
    w.k_b = load(p + "attention.self.key.bias", {d});
    w.v_w = load(p + "attention.self.value.weight", {d, d});
    w.v_b = load(p + "attention.self.value.bias", {d});
    w.o_w = load(p + "attention.output.dense.weight", {d, d});
    w.o_b = load(p + "attention.output.dense.bias", {d});
    w.ln1_w = load(p + "attention.output.LayerNorm.weight", {d});
    w.ln1_b = load(p + "attention.output.LayerNorm.bias", {d});
    w.ff1_w = load(p + "intermediate.dense.weight", {f, d});
    w.ff1_b = load(p + "intermediate.dense.bias", {f});
    w.ff2_w = load(p + "output.dense.weight", {d, f});
    w.ff2_b = load(p + "output.dense.bias", {d});
    w.ln2_w = load(p + "output.LayerNorm.weight", {d});
    w.ln2_b = load(p + "output.LayerNorm.bias", {d});
    m.layers_.push_back(std::move(w));
  }
  return m;
}

std::vector<torch::Tensor> BertModel::hidden_states(const torch::Tensor& input_ids,
                                                    const torch::Tensor& attention_mask) const {
  torch::NoGradGuard no_grad;
  const BertConfig& c = config_;
  TORCH_CHECK(input_ids.dim() == 2 && attention_mask.sizes() == input_ids.sizes(), "input_ids/attention_mask must be [B, T]");
  const int64_t B = input_ids.size(0), T = input_ids.size(1), d = c.hidden_size, H = c.num_attention_heads;
  const int64_t dh = d / H;
  const torch::Tensor mask = attention_mask.to(torch::kLong);
  torch::Tensor pos;  // [B, T]
  if (c.roberta_positions) {
    // create_position_ids_from_input_ids: padding_idx + cumsum(non-pad) on tokens, padding_idx on pads.
    const torch::Tensor nonpad = input_ids.ne(c.pad_token_id).to(torch::kLong);
    pos = torch::cumsum(nonpad, 1) * nonpad + c.pad_token_id;
  } else {
    pos = torch::arange(T, torch::kLong).unsqueeze(0).expand({B, T});
  }
  if (T > 0 && pos.max().item<int64_t>() >= c.max_position_embeddings)
    fail("input of {} tokens is longer than max_position_embeddings {}", T, c.max_position_embeddings);
  if (input_ids.numel() > 0 && (input_ids.min().item<int64_t>() < 0 || input_ids.max().item<int64_t>() >= c.vocab_size))
    fail("token id outside the vocabulary of {} entries", c.vocab_size);
  // Embeddings: [B, T, d_model]
  torch::Tensor x = word_emb_.index_select(0, input_ids.reshape(-1)).view({B, T, d}) +
                    pos_emb_.index_select(0, pos.reshape(-1)).view({B, T, d}) + type_emb_[0];
  x = torch::layer_norm(x, {d}, emb_ln_w_, emb_ln_b_, c.layer_norm_eps);
  std::vector<torch::Tensor> states{x};
  // Additive mask [B, 1, 1, T]: 0 for tokens, finfo(float32).min for padding (HF get_extended_attention_mask).
  const torch::Tensor add_mask =
      ((1 - mask).to(torch::kFloat32) * std::numeric_limits<float>::lowest()).view({B, 1, 1, T});
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  for (const auto& w : layers_) {
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, H, dh}).transpose(1, 2); };  // [B, H, T, dh]
    const torch::Tensor q = heads(nn::linear(x, w.q_w, w.q_b));
    const torch::Tensor k = heads(nn::linear(x, w.k_w, w.k_b));
    const torch::Tensor v = heads(nn::linear(x, w.v_w, w.v_b));
    torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2)) * scale + add_mask;  // [B, H, T, T]
    const torch::Tensor probs = torch::softmax(scores, -1);
    const torch::Tensor ctx = torch::matmul(probs, v).transpose(1, 2).reshape({B, T, d});  // [B, T, d_model]
    x = torch::layer_norm(nn::linear(ctx, w.o_w, w.o_b) + x, {d}, w.ln1_w, w.ln1_b, c.layer_norm_eps);
    torch::Tensor h = nn::activate(nn::linear(x, w.ff1_w, w.ff1_b), c.hidden_act);  // [B, T, d_ff]
    x = torch::layer_norm(nn::linear(h, w.ff2_w, w.ff2_b) + x, {d}, w.ln2_w, w.ln2_b, c.layer_norm_eps);
    states.push_back(x);
  }
  return states;
}

torch::Tensor BertModel::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) const {
  return hidden_states(input_ids, attention_mask).back();
}

std::shared_ptr<SentenceEmbedder> SentenceEmbedder::load(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!core::dir_exists(dir)) fail(Where{dir}, "embedding model directory not found");
  auto e = std::make_shared<SentenceEmbedder>();
  std::string transformer_dir = dir;
  std::string pooling_dir;
  bool saw_pooling = false;
  e->normalize_ = false;
  const std::string modules_path = dir + "/modules.json";
  if (core::file_exists(modules_path)) {
    const nlohmann::json mods = core::read_json(modules_path);
    if (!mods.is_array()) fail(Where{modules_path}, "expected a JSON array of modules");
    int64_t idx = 0;
    for (const auto& m : mods) {
      ++idx;
      if (!m.is_object() || !m.contains("type") || !m["type"].is_string())
        fail(Where{modules_path, idx, "type"}, "module without a \"type\" string");
      const std::string type = m["type"].get<std::string>();
      const std::string path = m.value("path", std::string());
      if (type == "sentence_transformers.models.Transformer") {
        if (!path.empty()) transformer_dir = dir + "/" + path;
      } else if (type == "sentence_transformers.models.Pooling") {
        pooling_dir = dir + "/" + path;
        saw_pooling = true;
      } else if (type == "sentence_transformers.models.Normalize") {
        e->normalize_ = true;
      } else {
        fail(Where{modules_path, idx, "type"}, "unsupported sentence-transformers module {}", type);
      }
    }
  } else {
    e->normalize_ = true;  // a bare BertModel: mean pooling + normalisation
  }
  if (saw_pooling) {
    const std::string pc = pooling_dir + "/config.json";
    const nlohmann::json p = core::read_json(pc);
    int modes = 0;
    auto flag = [&](const char* key) { return p.contains(key) && p[key].is_boolean() && p[key].get<bool>(); };
    if (flag("pooling_mode_mean_tokens")) { e->pooling_ = Pooling::kMean; ++modes; }
    if (flag("pooling_mode_cls_token")) { e->pooling_ = Pooling::kCls; ++modes; }
    if (flag("pooling_mode_max_tokens")) { e->pooling_ = Pooling::kMax; ++modes; }
    for (const char* unsupported : {"pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                                    "pooling_mode_lasttoken"})
      if (flag(unsupported)) fail(Where{pc, 0, unsupported}, "pooling mode not supported by loom");
    if (modes != 1) fail(Where{pc}, "expected exactly one of pooling_mode_mean_tokens / cls_token / max_tokens, got {}", modes);
  }
  const std::string cfg_path = transformer_dir + "/config.json";
  if (core::file_exists(cfg_path)) {
    const nlohmann::json cfg = core::read_json(cfg_path);
    const std::string mt = cfg.value("model_type", std::string("bert"));
    if (mt != "bert")
      fail(Where{cfg_path, 0, "model_type"}, "sentence embeddings need a WordPiece (bert) model; \"{}\" uses a tokenizer loom cannot load yet", mt);
  }
  e->model_ = BertModel::load(transformer_dir);
  e->tokenizer_ = text::WordPieceTokenizer::load(transformer_dir);
  e->max_seq_length_ = e->model_.config().max_position_embeddings;
  const std::string sbc = transformer_dir + "/sentence_bert_config.json";
  if (core::file_exists(sbc)) {
    const nlohmann::json s = core::read_json(sbc);
    if (s.contains("max_seq_length")) {
      if (!s["max_seq_length"].is_number_integer() || s["max_seq_length"].get<int64_t>() < 2)
        fail(Where{sbc, 0, "max_seq_length"}, "expected an integer >= 2");
      e->max_seq_length_ = std::min(e->max_seq_length_, s["max_seq_length"].get<int64_t>());
    }
  }
  // Fingerprint.
  uint64_t h = 1469598103934665603ull;
  h = fnv1a(h, core::read_file(cfg_path));
  h = fnv1a(h, core::read_file(transformer_dir + "/vocab.txt"));
  if (saw_pooling) h = fnv1a(h, core::read_file(pooling_dir + "/config.json"));
  for (const char* wf : {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"}) {
    const std::string p = transformer_dir + "/" + wf;
    if (!core::file_exists(p)) continue;
    std::FILE* fp = std::fopen(p.c_str(), "rb");
    if (!fp) fail(Where{p}, "cannot open");
    std::string buf(4u << 20, '\0');
    const size_t n = std::fread(buf.data(), 1, buf.size(), fp);
    std::fclose(fp);
    buf.resize(n);
    h = fnv1a(h, buf);
    h = fnv1a(h, std::to_string(fs::file_size(p)));
  }
  std::string name = fs::path(dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(dir).lexically_normal().parent_path().filename().string();
  e->fingerprint_ = fmt::format("{}@{:016x}", name, h);
  return e;
}

torch::Tensor SentenceEmbedder::embed(const std::vector<std::string>& texts, int64_t batch_size) const {
  torch::NoGradGuard no_grad;
  const int64_t N = static_cast<int64_t>(texts.size()), d = dim();
  torch::Tensor out = torch::zeros({N, d}, torch::kFloat32);
  if (N == 0) return out;
  batch_size = std::max<int64_t>(1, batch_size);
  std::vector<std::vector<int64_t>> ids(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) ids[i] = tokenizer_.encode(texts[i], max_seq_length_);
  std::vector<size_t> order(texts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a].size() > ids[b].size(); });
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch_size));
    const int64_t B = static_cast<int64_t>(end - start);
    const int64_t T = static_cast<int64_t>(ids[order[start]].size());
    torch::Tensor input = torch::full({B, T}, tokenizer_.pad_id(), torch::kLong);
    torch::Tensor mask = torch::zeros({B, T}, torch::kLong);
    for (int64_t b = 0; b < B; ++b) {
      const auto& row = ids[order[start + static_cast<size_t>(b)]];
      const int64_t n = static_cast<int64_t>(row.size());
      input[b].narrow(0, 0, n).copy_(torch::tensor(row, torch::kLong));
      mask[b].narrow(0, 0, n).fill_(1);
    }
    const torch::Tensor hidden = model_.forward(input, mask);  // [B, T, d_model]
    const torch::Tensor m = mask.unsqueeze(-1).to(torch::kFloat32);  // [B, T, 1]
    torch::Tensor pooled;  // [B, d_model]
    switch (pooling_) {
      case Pooling::kMean:
        pooled = (hidden * m).sum(1) / torch::clamp_min(m.sum(1), 1e-9);
        break;
      case Pooling::kCls:
        pooled = hidden.select(1, 0);
        break;
      case Pooling::kMax:
        pooled = std::get<0>(hidden.masked_fill(m.eq(0), -1e9).max(1));
        break;
    }
    if (normalize_) pooled = pooled / torch::clamp_min(pooled.norm(2, 1, true), 1e-12);
    for (int64_t b = 0; b < B; ++b) out[static_cast<int64_t>(order[start + static_cast<size_t>(b)])].copy_(pooled[b]);
  }
  return out;
}

}  // namespace loom::models
