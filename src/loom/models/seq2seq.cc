#include "loom/models/seq2seq.h"

#include <cmath>
#include <set>

#include "loom/core/config_fields.h"
#include "loom/core/error.h"
#include "loom/io/checkpoint.h"
#include "loom/io/mapped_pages.h"
#include "loom/nn/packed_modules.h"
#include "loom/nn/param_init.h"
#include "loom/nn/positions.h"
#include "loom/nn/residual.h"

namespace loom::models {
namespace {

using nlohmann::json;

using core::get_bool;
using core::get_int;
using core::get_string;

// eos_token_id may be an int or a list of ints (the first one is the model's </s>).
int64_t get_token(const json& j, const std::string& path, const char* key, int64_t def) {
  auto it = j.find(key);
  if (it != j.end() && it->is_array()) {
    if (it->empty() || !(*it)[0].is_number_integer()) fail(Where{path, 0, key}, "expected an integer token id, got {}", it->dump());
    return (*it)[0].get<int64_t>();
  }
  return get_int(j, path, key, def, 0);
}

std::string shape_str(c10::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s.begin(), s.end(), ", ")); }

torch::nn::Module& child(torch::nn::Module& parent, const std::string& name) {
  return *parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::Tensor table_param(torch::nn::Module& owner, int64_t rows, int64_t d) {
  return owner.register_parameter("weight", nn::random_init_skipped() ? torch::empty({rows, d}) : torch::randn({rows, d}) * 0.02,
                                  false);  // [rows, d]
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config

double Seq2SeqConfig::embed_scale() const { return scale_embedding ? std::sqrt(static_cast<double>(d_model)) : 1.0; }

Seq2SeqConfig Seq2SeqConfig::from_json(const json& j, const std::string& path) {
  if (!j.is_object()) fail(Where{path, 0, ""}, "expected a JSON object");
  Seq2SeqConfig c;
  c.model_type = get_string(j, path, "model_type", std::nullopt);
  const bool marian = c.model_type == "marian";
  if (marian) c.kind = Kind::kMarian;
  else if (c.model_type == "m2m_100") c.kind = Kind::kM2M100;
  else fail(Where{path, 0, "model_type"}, "unsupported model_type \"{}\" (expected \"marian\" or \"m2m_100\")", c.model_type);

  c.d_model = get_int(j, path, "d_model", std::nullopt, 1);
  c.encoder_layers = get_int(j, path, "encoder_layers", std::nullopt, 1);
  c.decoder_layers = get_int(j, path, "decoder_layers", std::nullopt, 1);
  c.encoder_attention_heads = get_int(j, path, "encoder_attention_heads", std::nullopt, 1);
  c.decoder_attention_heads = get_int(j, path, "decoder_attention_heads", std::nullopt, 1);
  c.encoder_ffn_dim = get_int(j, path, "encoder_ffn_dim", std::nullopt, 1);
  c.decoder_ffn_dim = get_int(j, path, "decoder_ffn_dim", std::nullopt, 1);
  c.vocab_size = get_int(j, path, "vocab_size", std::nullopt, 1);
  for (auto [key, heads] : {std::pair{"encoder_attention_heads", c.encoder_attention_heads},
                            std::pair{"decoder_attention_heads", c.decoder_attention_heads}}) {
    if (c.d_model % heads != 0) fail(Where{path, 0, key}, "d_model {} is not divisible by {} heads", c.d_model, heads);
  }
  c.activation_function = get_string(j, path, "activation_function", marian ? "gelu" : "relu");
  c.activation = nn::parse_activation(c.activation_function, Where{path, 0, "activation_function"});
  c.scale_embedding = get_bool(j, path, "scale_embedding", !marian);
  c.max_position_embeddings = get_int(j, path, "max_position_embeddings", 1024, 1);
  c.share_encoder_decoder_embeddings = marian ? get_bool(j, path, "share_encoder_decoder_embeddings", true) : true;
  c.decoder_vocab_size = marian && !c.share_encoder_decoder_embeddings
                             ? get_int(j, path, "decoder_vocab_size", c.vocab_size, 1)
                             : c.vocab_size;
  if (marian && c.share_encoder_decoder_embeddings && j.contains("decoder_vocab_size") &&
      !j["decoder_vocab_size"].is_null() && get_int(j, path, "decoder_vocab_size", 0, 1) != c.vocab_size) {
    fail(Where{path, 0, "decoder_vocab_size"}, "differs from vocab_size {} although share_encoder_decoder_embeddings is true", c.vocab_size);
  }
  c.tie_word_embeddings = get_bool(j, path, "tie_word_embeddings", true);
  c.normalize_before = !marian;
  c.pad_token_id = get_token(j, path, "pad_token_id", marian ? c.vocab_size - 1 : 1);
  c.eos_token_id = get_token(j, path, "eos_token_id", marian ? 0 : 2);
  c.decoder_start_token_id = get_token(j, path, "decoder_start_token_id", marian ? c.pad_token_id : 2);
  for (auto [key, id] : {std::pair{"pad_token_id", c.pad_token_id}, std::pair{"eos_token_id", c.eos_token_id},
                         std::pair{"decoder_start_token_id", c.decoder_start_token_id}}) {
    if (id >= c.decoder_vocab_size) fail(Where{path, 0, key}, "token id {} is outside the vocabulary of {} tokens", id, c.decoder_vocab_size);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Layers (parameter names as in transformers' MarianEncoderLayer / M2M100DecoderLayer)

struct Seq2SeqModel::EncoderLayer : torch::nn::Module {
  EncoderLayer(int64_t d, int64_t heads, int64_t ffn, nn::Activation act, double eps) : ffn_impl(d, ffn, act) {
    self_attn = register_module("self_attn", nn::MultiHeadAttention(d, heads));
    self_attn_layer_norm = register_module("self_attn_layer_norm", nn::LayerNorm(d, eps));
    register_module("fc1", ffn_impl.fc1);
    register_module("fc2", ffn_impl.fc2);
    final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(d, eps));
  }
  // x [B, S, d], mask additive [B, 1, 1, S] or undefined -> [B, S, d]
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask, bool pre_ln) {
    x = nn::residual(x, self_attn_layer_norm, pre_ln, 0.0, false,
                     [&](const torch::Tensor& h) { return self_attn->self_attention(h, mask, nullptr); });  // [B, S, d]
    return nn::residual(x, final_layer_norm, pre_ln, 0.0, false,
                        [&](const torch::Tensor& h) { return ffn(h); });  // [B, S, d]
  }
  nn::MultiHeadAttention self_attn{nullptr};
  nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  nn::FeedForwardImpl ffn_impl;
  nn::PackedFfn packed_ffn;  // set_compute_type(): fc1/fc2 in int8 / bf16
  // [..., d] -> [..., d]
  torch::Tensor ffn(const torch::Tensor& x) { return packed_ffn.defined() ? packed_ffn.forward(x, ffn_impl.act) : ffn_impl.forward(x); }
};

struct Seq2SeqModel::DecoderLayer : torch::nn::Module {
  DecoderLayer(int64_t d, int64_t heads, int64_t ffn, nn::Activation act, double eps) : ffn_impl(d, ffn, act) {
    self_attn = register_module("self_attn", nn::MultiHeadAttention(d, heads));
    self_attn_layer_norm = register_module("self_attn_layer_norm", nn::LayerNorm(d, eps));
    encoder_attn = register_module("encoder_attn", nn::MultiHeadAttention(d, heads));
    encoder_attn_layer_norm = register_module("encoder_attn_layer_norm", nn::LayerNorm(d, eps));
    register_module("fc1", ffn_impl.fc1);
    register_module("fc2", ffn_impl.fc2);
    final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(d, eps));
  }
  // x [B, T, d]; self_mask additive [T, past+T] or undefined; cross k/v [B_kv, H, S, dh];
  // cross_mask [B_kv, 1, 1, S] or undefined; cross_rows [B] int64 (row b reads kv row
  // cross_rows[b]) or undefined (B_kv = B) -> [B, T, d]
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& self_mask, nn::KVCache* cache, int64_t capacity,
                        const torch::Tensor& ck, const torch::Tensor& cv, const torch::Tensor& cross_mask,
                        const torch::Tensor& cross_rows, bool pre_ln) {
    x = nn::residual(x, self_attn_layer_norm, pre_ln, 0.0, false, [&](const torch::Tensor& h) {
      return self_attn->self_attention(h, self_mask, cache, capacity);
    });  // [B, T, d]
    x = nn::residual(x, encoder_attn_layer_norm, pre_ln, 0.0, false, [&](const torch::Tensor& h) {
      return encoder_attn->cross_attention(h, ck, cv, cross_mask, cross_rows);
    });  // [B, T, d]
    return nn::residual(x, final_layer_norm, pre_ln, 0.0, false,
                        [&](const torch::Tensor& h) { return ffn(h); });  // [B, T, d]
  }
  nn::MultiHeadAttention self_attn{nullptr}, encoder_attn{nullptr};
  nn::LayerNorm self_attn_layer_norm{nullptr}, encoder_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  nn::FeedForwardImpl ffn_impl;
  nn::PackedFfn packed_ffn;  // set_compute_type(): fc1/fc2 in int8 / bf16
  // [..., d] -> [..., d]
  torch::Tensor ffn(const torch::Tensor& x) { return packed_ffn.defined() ? packed_ffn.forward(x, ffn_impl.act) : ffn_impl.forward(x); }
};

// ---------------------------------------------------------------------------------------------
// Model

Seq2SeqModel::Seq2SeqModel(Seq2SeqConfig config) : config_(std::move(config)) {
  torch::NoGradGuard no_grad;
  build();
  if (!nn::random_init_skipped()) fuse();  // else load_weights() fuses the loaded values
}

void Seq2SeqModel::build() {
  const Seq2SeqConfig& c = config_;
  const int64_t d = c.d_model;
  torch::nn::Module& model = child(*this, "model");
  if (c.share_encoder_decoder_embeddings) {
    shared_ = table_param(child(model, "shared"), c.vocab_size, d);  // [V, d]
    enc_embed_ = dec_embed_ = shared_;
  }
  torch::nn::Module& encoder = child(model, "encoder");
  torch::nn::Module& decoder = child(model, "decoder");
  if (!c.share_encoder_decoder_embeddings) {
    enc_embed_ = table_param(child(encoder, "embed_tokens"), c.vocab_size, d);          // [V_src, d]
    dec_embed_ = table_param(child(decoder, "embed_tokens"), c.decoder_vocab_size, d);  // [V, d]
  }
  torch::nn::Module& enc_layers = child(encoder, "layers");
  for (int64_t i = 0; i < c.encoder_layers; ++i) {
    enc_layers_.push_back(enc_layers.register_module(std::to_string(i),
        std::make_shared<EncoderLayer>(d, c.encoder_attention_heads, c.encoder_ffn_dim, c.activation, c.layer_norm_eps)));
  }
  torch::nn::Module& dec_layers = child(decoder, "layers");
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    dec_layers_.push_back(dec_layers.register_module(std::to_string(i),
        std::make_shared<DecoderLayer>(d, c.decoder_attention_heads, c.decoder_ffn_dim, c.activation, c.layer_norm_eps)));
  }
  if (c.normalize_before) {
    enc_final_ln_ = encoder.register_module("layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    dec_final_ln_ = decoder.register_module("layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
  }
  if (c.tie_word_embeddings) {
    lm_head_ = dec_embed_;
    tolerated_extra_.push_back("lm_head.weight");
  } else {
    lm_head_ = table_param(child(*this, "lm_head"), c.decoder_vocab_size, d);  // [V, d]
  }
  if (c.kind == Seq2SeqConfig::Kind::kMarian) {
    final_logits_bias_ = register_parameter("final_logits_bias", torch::zeros({1, c.decoder_vocab_size}), false);  // [1, V]
    positions_ = nn::marian_position_table(c.max_position_embeddings, d);  // [P, d]
  } else {
    positions_ = nn::fairseq_position_table(c.max_position_embeddings + 2, d, c.pad_token_id);  // [P+2, d]
  }
  if (c.share_encoder_decoder_embeddings) {
    tolerated_extra_.push_back("model.encoder.embed_tokens.weight");
    tolerated_extra_.push_back("model.decoder.embed_tokens.weight");
  }
}

void Seq2SeqModel::fuse() {
  for (auto& l : enc_layers_) static_cast<EncoderLayer&>(*l).self_attn->fuse();
  for (auto& l : dec_layers_) {
    auto& layer = static_cast<DecoderLayer&>(*l);
    layer.self_attn->fuse();
    layer.encoder_attn->fuse();
  }
}

std::shared_ptr<Seq2SeqModel> Seq2SeqModel::load(const io::HfCheckpoint& checkpoint, nn::WeightType compute_type) {
  std::shared_ptr<Seq2SeqModel> model;
  {
    nn::SkipRandomInit skip;  // every parameter is replaced below
    model = std::make_shared<Seq2SeqModel>(Seq2SeqConfig::from_json(checkpoint.config(), checkpoint.dir() + "/config.json"));
  }
  const bool float32 = compute_type == nn::WeightType::kFloat32;
  model->load_weights(checkpoint, float32);
  if (!float32) model->set_compute_type(compute_type);  // fuses and packs layer by layer
  return model;
}

void Seq2SeqModel::load_weights(const io::HfCheckpoint& checkpoint, bool prepare_float32) {
  torch::NoGradGuard no_grad;
  const std::string& dir = checkpoint.dir();
  auto params = named_parameters(/*recurse=*/true);
  mapped_.clear();
  std::set<std::string> known;
  for (const auto& item : params) {
    const std::string& name = item.key();
    torch::Tensor param = item.value();
    known.insert(name);
    if (!checkpoint.has(name)) {
      fail(Where{dir, 0, name}, "tensor missing from the checkpoint ({} with {} encoder / {} decoder layers needs it)",
           config_.model_type, config_.encoder_layers, config_.decoder_layers);
    }
    const std::vector<int64_t> shape = checkpoint.shape(name);
    if (c10::IntArrayRef(shape) != param.sizes()) {
      fail(Where{dir, 0, name}, "tensor has shape {} but config.json implies {}", shape_str(shape), shape_str(param.sizes()));
    }
    // The mapped checkpoint bytes themselves when they are float32 (read-only, no copy), else a
    // float32 copy; set_ (not copy_) so the parameter never holds a second float32 copy.
    torch::Tensor t = checkpoint.view(name);
    const bool mapped = t.scalar_type() == torch::kFloat32 && checkpoint.is_mapped_view(t);
    if (t.scalar_type() != torch::kFloat32) t = t.to(torch::kFloat32);
    param.set_(t);
    if (mapped) mapped_[t.data_ptr()] = static_cast<size_t>(t.numel()) * sizeof(float);
  }
  for (const std::string& name : checkpoint.names()) {
    if (known.count(name)) continue;
    const bool static_positions = name.rfind("model.encoder.embed_positions.", 0) == 0 ||
                                  name.rfind("model.decoder.embed_positions.", 0) == 0;  // .weight, fairseq's ._float_tensor
    if (!static_positions && std::find(tolerated_extra_.begin(), tolerated_extra_.end(), name) == tolerated_extra_.end()) {
      fail(Where{dir, 0, name}, "unexpected tensor in the checkpoint: {} has no parameter of that name", config_.model_type);
    }
    if (name.find("embed_positions") == std::string::npos) {  // tied copies must at least have the right shape
      const std::vector<int64_t> shape = checkpoint.shape(name);
      const torch::Tensor& tied = name == "model.encoder.embed_tokens.weight" ? enc_embed_ : dec_embed_;
      if (c10::IntArrayRef(shape) != tied.sizes()) {
        fail(Where{dir, 0, name}, "tied tensor has shape {} but config.json implies {}", shape_str(shape), shape_str(tied.sizes()));
      }
    }
  }
  if (!prepare_float32) return;
  fuse();
  release_pages(*this);  // fuse() read q/k/v_proj, which the fused copy now stands in for
  transpose_lm_head();
}

void Seq2SeqModel::release_pages(const torch::nn::Module& root) const {
  for (const torch::Tensor& p : root.parameters(/*recurse=*/true)) {
    auto it = mapped_.find(p.data_ptr());
    if (it != mapped_.end()) io::release_mapped_pages(it->first, it->second);
  }
}

torch::Tensor Seq2SeqModel::position_rows(const torch::Tensor& ids, int64_t past, const torch::Tensor& row_pos) {
  const int64_t b = ids.size(0), t = ids.size(1), d = config_.d_model;
  if (config_.kind == Seq2SeqConfig::Kind::kMarian) {
    const int64_t last = row_pos.defined() ? row_pos.max().item<int64_t>() + 1 : past + t;
    if (last > positions_.size(0)) {
      fail(Where{"config.json", 0, "max_position_embeddings"},
           "sequence of {} tokens is longer than the model's {} positions", last, positions_.size(0));
    }
    if (row_pos.defined()) return positions_.index_select(0, row_pos.reshape({-1})).view({b, t, d});  // [B, T, d]
    return positions_.narrow(0, past, t).unsqueeze(0);  // [1, T, d]
  }
  torch::Tensor pos;  // [B, T]
  if (row_pos.defined()) {
    // per-row past length (rows that joined a running batch): row_pos[:, 0] = that row's past
    pos = nn::fairseq_position_ids(ids, config_.pad_token_id, 0) +
          row_pos.narrow(1, 0, 1) * ids.ne(config_.pad_token_id).to(torch::kInt64);  // [B, T]
  } else {
    pos = nn::fairseq_position_ids(ids, config_.pad_token_id, past);  // [B, T]
  }
  const int64_t needed = pos.max().item<int64_t>() + 1;
  if (needed > positions_.size(0)) {
    // transformers rebuilds the table when a sequence outgrows it; rows are independent of its size
    positions_ = nn::fairseq_position_table(needed, d, config_.pad_token_id);  // [P', d]
  }
  return positions_.index_select(0, pos.reshape({-1})).view({b, t, d});  // [B, T, d]
}

torch::Tensor Seq2SeqModel::embed(const torch::Tensor& ids, const torch::Tensor& table, int64_t past, bool decoder,
                                  const torch::Tensor& row_pos) {
  TORCH_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kInt64, "token ids must be [B, T] int64");
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= table.size(0)) {
      fail(Where{"", 0, decoder ? "decoder_input_ids" : "input_ids"}, "token id {} is outside the vocabulary of {} tokens",
           lo < 0 ? lo : hi, table.size(0));
    }
  }
  torch::Tensor x = torch::embedding(table, ids).mul_(config_.embed_scale());  // [B, T, d]
  return x.add_(position_rows(ids, past, row_pos));                            // [B, T, d]
}

EncoderOutput Seq2SeqModel::encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  torch::NoGradGuard no_grad;
  EncoderOutput out;
  out.mask = attention_mask.defined() ? attention_mask.to(torch::kBool)
                                      : torch::ones(input_ids.sizes(), torch::kBool);  // [B, S]
  TORCH_CHECK(out.mask.sizes() == input_ids.sizes(), "attention_mask must have the shape of input_ids");
  torch::Tensor mask;  // [B, 1, 1, S] additive
  if (!out.mask.all().item<bool>()) mask = nn::additive_key_mask(out.mask);
  torch::Tensor x = embed(input_ids, enc_embed_, 0, false);  // [B, S, d]
  for (auto& l : enc_layers_) x = static_cast<EncoderLayer&>(*l).forward(x, mask, config_.normalize_before);  // [B, S, d]
  if (config_.normalize_before) x = enc_final_ln_->forward(x);  // [B, S, d]
  out.hidden = x;
  return out;
}

void Seq2SeqModel::init_state(DecoderState& state, const EncoderOutput& encoder, int64_t repeat) {
  torch::NoGradGuard no_grad;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> kv;
  for (auto& l : dec_layers_) kv.push_back(static_cast<DecoderLayer&>(*l).encoder_attn->memory_kv(encoder.hidden));  // 2 × [B, H, S, dh]
  state.reset(std::move(kv), encoder.mask, repeat);
}

void Seq2SeqModel::transpose_lm_head() {
  torch::NoGradGuard no_grad;
  lm_head_kn_ = lm_bias_kn_ = torch::Tensor();
  if (mapped_.count(lm_head_.data_ptr()) == 0) return;  // only where it costs no memory (see below)
  // An all-zero bias adds nothing: without it the sgemm writes the logits once instead of
  // copying the bias into [R, V] first and accumulating onto it.
  if (final_logits_bias_.defined() && !final_logits_bias_.eq(0).all().item<bool>()) lm_bias_kn_ = final_logits_bias_.view({-1});
  // The vocabulary projection as [d, V], the layout oneDNN's sgemm streams faster for V ≫ d
  // (nn::linear_kn). Built block by block, each block's mapped [V, d] pages released as soon as
  // it is copied, so the model never holds both copies: the [V, d] checkpoint tensor is then
  // read only row by row by embedding lookups.
  const int64_t v = lm_head_.size(0), d = lm_head_.size(1);
  lm_head_kn_ = torch::empty({d, v}, torch::kFloat32);  // [d, V]
  constexpr int64_t kBlock = 4096;                      // vocabulary rows per block
  for (int64_t v0 = 0; v0 < v; v0 += kBlock) {
    const int64_t n = std::min(kBlock, v - v0);
    torch::Tensor rows = lm_head_.narrow(0, v0, n);  // [n, d]
    lm_head_kn_.narrow(1, v0, n).copy_(rows.t());
    io::release_mapped_pages(rows.data_ptr(), static_cast<size_t>(n * d) * sizeof(float));
  }
}

void Seq2SeqModel::set_compute_type(nn::WeightType type) {
  torch::NoGradGuard no_grad;
  // Layer by layer, releasing each layer's mapped float32 pages once it is packed (or fused
  // again, for float32), so the whole float32 model is never resident at once while packing.
  for (auto& l : enc_layers_) {
    nn::pack_attention(*l, type);
    static_cast<EncoderLayer&>(*l).packed_ffn.pack(*l, type);
    release_pages(*l);
  }
  for (auto& l : dec_layers_) {
    nn::pack_attention(*l, type);
    static_cast<DecoderLayer&>(*l).packed_ffn.pack(*l, type);
    release_pages(*l);
  }
  if (type == nn::WeightType::kFloat32) transpose_lm_head();
  else lm_head_kn_ = lm_bias_kn_ = torch::Tensor();
  // A mapped float32 head's pages are released as its rows are packed (int8 panels): the
  // [V, d] float32 projection is then never resident whole next to its packed copy.
  const bool head_mapped = mapped_.count(lm_head_.data_ptr()) > 0 && lm_head_.is_contiguous();
  const int64_t d = lm_head_.size(1);
  auto release_rows = [&](int64_t n0, int64_t nb) {
    if (head_mapped)
      io::release_mapped_pages(lm_head_.data_ptr<float>() + n0 * d, static_cast<size_t>(nb * d) * sizeof(float));
  };
  lm_head_packed_ = type == nn::WeightType::kFloat32
                        ? nn::PackedLinear()
                        : nn::PackedLinear(lm_head_, final_logits_bias_.defined() ? final_logits_bias_.view({-1}) : torch::Tensor(),
                                           type, nn::translation_activations(type), release_rows);
  // The float32 vocabulary projection (the tied embedding) is read again only row by row for
  // embedding lookups when packed: only the rows looked up come back into memory.
  release_pages(*this);
  compute_ = type;
}

torch::Tensor Seq2SeqModel::lm_logits(const torch::Tensor& hidden, torch::Tensor* buffer) const {
  if (lm_head_packed_.defined()) return lm_head_packed_.forward(hidden);  // [B, T, V]
  if (lm_head_kn_.defined() && !torch::GradMode::is_enabled()) return nn::linear_kn(hidden, lm_head_kn_, lm_bias_kn_, buffer);  // [B, T, V]
  return nn::linear(hidden, lm_head_, final_logits_bias_.defined() ? final_logits_bias_.view({-1}) : torch::Tensor());  // [B, T, V]
}

torch::Tensor Seq2SeqModel::decode(const torch::Tensor& ids, const EncoderOutput& encoder, DecoderState* cache) {
  torch::NoGradGuard no_grad;
  const int64_t t = ids.size(1);
  DecoderState local;
  DecoderState* state = cache;
  if (state == nullptr) state = &local;
  if (!state->initialized()) init_state(*state, encoder, 1);
  TORCH_CHECK(ids.size(0) == state->rows(), "decode: ", ids.size(0), " rows of decoder input for a state of ", state->rows());
  const int64_t past = state->length();
  torch::Tensor self_mask = state->self_mask(t);  // [T, past+T] or [B, 1, T, past+T] or undefined
  torch::Tensor x = embed(ids, dec_embed_, past, true, state->row_positions(t));  // [B, T, d]
  const int64_t capacity = state->capacity_for(t);
  for (size_t i = 0; i < dec_layers_.size(); ++i) {
    x = static_cast<DecoderLayer&>(*dec_layers_[i]).forward(x, self_mask, &state->self_cache(i), capacity, state->cross_k(i),
                                                            state->cross_v(i), state->memory_mask(), state->cross_rows(),
                                                            config_.normalize_before);  // [B, T, d]
  }
  if (config_.normalize_before) x = dec_final_ln_->forward(x);  // [B, T, d]
  state->advance(t);
  return lm_logits(x, state->logits_buffer());  // [B, T, V]
}

}  // namespace loom::models
