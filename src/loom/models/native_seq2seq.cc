#include "loom/models/native_seq2seq.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "loom/core/config_fields.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/io/checkpoint.h"
#include "loom/nn/attention.h"
#include "loom/nn/delight.h"
#include "loom/nn/linear.h"
#include "loom/nn/packed_modules.h"
#include "loom/nn/positions.h"
#include "loom/nn/residual.h"

namespace loom::models {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// config.json helpers

using core::get_bool;
using core::get_double;
using core::get_int;
using core::get_string;

double get_prob(const json& j, const std::string& path, const char* key, double def) {
  return get_double(j, path, key, def, 0.0, 1.0, true);
}

std::string shape_str(c10::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s.begin(), s.end(), ", ")); }

torch::nn::Module& child(torch::nn::Module& parent, const std::string& name) {
  return *parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::Tensor drop(const torch::Tensor& x, double p, bool training) {
  return p > 0.0 && training ? torch::dropout(x, p, true) : x;
}

// The position-wise FFN of every block (Transformer and DeLighT's light FFN):
// fc2(dropout(activation(fc1(x)))), x [B, L, d] -> [B, L, d] (hidden width = fc1's out); the
// packed int8/bf16 form of fc1/fc2 when set_compute_type() made one (inference only).
torch::Tensor feed_forward(const nn::PackedFfn& packed, nn::Linear& fc1, nn::Linear& fc2, const torch::Tensor& x,
                           const NativeSeq2SeqConfig& c, bool training) {
  if (packed.defined()) return packed.forward(x, c.activation);  // [B, L, d]
  torch::Tensor h = nn::activate(fc1->forward(x), c.activation);  // [B, L, hidden]
  h = drop(h, c.activation_dropout, training);                     // [B, L, hidden]
  return fc2->forward(h);                                          // [B, L, d]
}

// fairseq's init for a token table: N(0, d^-1/2), padding row zero.
void init_table(torch::Tensor& t, int64_t pad) {
  torch::nn::init::normal_(t, 0.0, std::pow(static_cast<double>(t.size(1)), -0.5));
  if (pad >= 0 && pad < t.size(0)) t[pad].zero_();
}

// fairseq's init of a linear layer: xavier_uniform_ weight (gain), zero bias.
void init_linear(nn::Linear& l, double gain = 1.0) {
  torch::nn::init::xavier_uniform_(l->weight, gain);
  if (l->bias.defined()) l->bias.zero_();
}

// fairseq MultiheadAttention.reset_parameters (qkv_same_dim): q/k/v gain 1/sqrt(2).
void init_attention(nn::MultiHeadAttention& a) {
  const double g = 1.0 / std::sqrt(2.0);
  init_linear(a->q_proj, g);
  init_linear(a->k_proj, g);
  init_linear(a->v_proj, g);
  init_linear(a->out_proj);
}

// ---------------------------------------------------------------------------------------------
// Blocks shared by both architectures: the model code sees only these two interfaces.

struct EncoderBlock : torch::nn::Module {
  nn::PackedFfn packed_ffn;  // set_compute_type(): fc1/fc2 in int8 / bf16 (ffn() uses them when set)
  // x [B, S, d], mask additive [B, 1, 1, S] or undefined -> [B, S, d]
  virtual torch::Tensor run(const torch::Tensor& x, const torch::Tensor& mask) = 0;
};

struct DecoderBlock : torch::nn::Module {
  nn::PackedFfn packed_ffn;  // as EncoderBlock's
  // Cross-attention keys/values of the encoder output memory [B, S, d] -> 2 × [B, H, S, d_head]
  virtual std::pair<torch::Tensor, torch::Tensor> memory_kv(const torch::Tensor& memory) = 0;
  // x [B, T, d]; self_mask additive broadcastable to [B, 1, T, past+T] or undefined; cache
  // (nullptr = no cache: training / teacher forcing); ck, cv [B_kv, H, S, dh]; cross_mask
  // [B_kv, 1, 1, S] or undefined; cross_rows [B] int64 (row b reads kv row cross_rows[b]) or
  // undefined (B_kv = B) -> [B, T, d]
  virtual torch::Tensor run(const torch::Tensor& x, const torch::Tensor& self_mask, nn::KVCache* cache,
                            int64_t capacity, const torch::Tensor& ck, const torch::Tensor& cv,
                            const torch::Tensor& cross_mask, const torch::Tensor& cross_rows = {}) = 0;
};

// Vaswani et al. encoder layer with fairseq's names and dropout placement.
struct TransformerEncoderBlock : EncoderBlock {
  TransformerEncoderBlock(const NativeSeq2SeqConfig& c) : c_(c) {
    const int64_t d = c.d_model;
    self_attn = register_module("self_attn", nn::MultiHeadAttention(d, c.encoder_attention_heads));
    self_attn->dropout = c.attention_dropout;
    self_attn_layer_norm = register_module("self_attn_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    fc1 = register_module("fc1", nn::Linear(d, c.encoder_ffn_dim));
    fc2 = register_module("fc2", nn::Linear(c.encoder_ffn_dim, d));
    final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    init_attention(self_attn);
    init_linear(fc1);
    init_linear(fc2);
  }
  torch::Tensor ffn(const torch::Tensor& x) { return feed_forward(packed_ffn, fc1, fc2, x, c_, is_training()); }  // [B, S, d]
  torch::Tensor run(const torch::Tensor& x0, const torch::Tensor& mask) override {
    const bool tr = is_training(), pre = c_.normalize_before;
    torch::Tensor x = nn::residual(x0, self_attn_layer_norm, pre, c_.dropout, tr,
                                   [&](const torch::Tensor& h) { return self_attn->forward(h, h, mask); });  // [B, S, d]
    return nn::residual(x, final_layer_norm, pre, c_.dropout, tr, [&](const torch::Tensor& h) { return ffn(h); });
  }
  const NativeSeq2SeqConfig& c_;
  nn::MultiHeadAttention self_attn{nullptr};
  nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
};

struct TransformerDecoderBlock : DecoderBlock {
  TransformerDecoderBlock(const NativeSeq2SeqConfig& c) : c_(c) {
    const int64_t d = c.d_model;
    self_attn = register_module("self_attn", nn::MultiHeadAttention(d, c.decoder_attention_heads));
    self_attn->dropout = c.attention_dropout;
    self_attn_layer_norm = register_module("self_attn_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    encoder_attn = register_module("encoder_attn", nn::MultiHeadAttention(d, c.decoder_attention_heads));
    encoder_attn->dropout = c.attention_dropout;
    encoder_attn_layer_norm = register_module("encoder_attn_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    fc1 = register_module("fc1", nn::Linear(d, c.decoder_ffn_dim));
    fc2 = register_module("fc2", nn::Linear(c.decoder_ffn_dim, d));
    final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    init_attention(self_attn);
    init_attention(encoder_attn);
    init_linear(fc1);
    init_linear(fc2);
  }
  torch::Tensor ffn(const torch::Tensor& x) { return feed_forward(packed_ffn, fc1, fc2, x, c_, is_training()); }  // [B, T, d]
  std::pair<torch::Tensor, torch::Tensor> memory_kv(const torch::Tensor& memory) override {
    return encoder_attn->memory_kv(memory);  // 2 × [B, H, S, dh]
  }
  torch::Tensor run(const torch::Tensor& x0, const torch::Tensor& self_mask, nn::KVCache* cache, int64_t capacity,
                    const torch::Tensor& ck, const torch::Tensor& cv, const torch::Tensor& cross_mask,
                    const torch::Tensor& cross_rows) override {
    const bool tr = is_training(), pre = c_.normalize_before;
    torch::Tensor x = nn::residual(x0, self_attn_layer_norm, pre, c_.dropout, tr, [&](const torch::Tensor& h) {
      return self_attn->self_attention(h, self_mask, cache, capacity);
    });  // [B, T, d]
    x = nn::residual(x, encoder_attn_layer_norm, pre, c_.dropout, tr, [&](const torch::Tensor& h) {
      return encoder_attn->cross_attention(h, ck, cv, cross_mask, cross_rows);
    });  // [B, T, d]
    return nn::residual(x, final_layer_norm, pre, c_.dropout, tr, [&](const torch::Tensor& h) { return ffn(h); });
  }
  const NativeSeq2SeqConfig& c_;
  nn::MultiHeadAttention self_attn{nullptr}, encoder_attn{nullptr};
  nn::LayerNorm self_attn_layer_norm{nullptr}, encoder_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
};

// Residual dropout of the DeLighT blocks: nn::delight_dropout, the DExTra layers' counter-based
// masks (the same distribution as torch::dropout, without one mt19937 draw per element).
auto delight_drop(double p) {
  return [p](torch::Tensor y) { return nn::delight_dropout(y, p); };  // [B, L, d]
}

// DeLighT encoder block (papers.md §1.7, delight_transformer_layer.py): DExTra d_m -> d_o = d_m/2,
// single-head attention on d_o projected back to d_m, light FFN d_m -> d_m/r -> d_m.
struct DelightEncoderBlock : EncoderBlock {
  DelightEncoderBlock(const NativeSeq2SeqConfig& c, int64_t depth, double width_mult, int64_t max_groups) : c_(c) {
    const int64_t d = c.d_model, d_o = d / 2, hidden = d / c.delight.enc_ffn_red;
    dextra_layer = register_module("dextra_layer", nn::DExTraUnit(nn::dextra_spec(d, d / 2, d_o, width_mult, depth, max_groups),
                                                                  c.activation, c.delight.delight_dropout, c.layer_norm_eps));
    self_attn = register_module("self_attn", nn::DelightSelfAttention(d_o, d, c.attention_dropout));
    self_attn_layer_norm = register_module("self_attn_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    fc1 = register_module("fc1", nn::Linear(d, hidden));
    fc2 = register_module("fc2", nn::Linear(hidden, d));
    final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    init_linear(fc1);
    init_linear(fc2);
  }
  torch::Tensor ffn(const torch::Tensor& x) { return feed_forward(packed_ffn, fc1, fc2, x, c_, is_training()); }  // [B, S, d]
  torch::Tensor run(const torch::Tensor& x0, const torch::Tensor& mask) override {
    const bool tr = is_training(), pre = c_.normalize_before;
    torch::Tensor x = nn::residual_with(x0, self_attn_layer_norm, pre, tr, delight_drop(c_.dropout), [&](const torch::Tensor& h) {
      return self_attn->forward(dextra_layer->forward(h), mask);
    });  // [B, S, d_m]
    return nn::residual_with(x, final_layer_norm, pre, tr, delight_drop(c_.delight.ffn_dropout),
                             [&](const torch::Tensor& h) { return ffn(h); });  // [B, S, d_m]
  }
  const NativeSeq2SeqConfig& c_;
  nn::DExTraUnit dextra_layer{nullptr};
  nn::DelightSelfAttention self_attn{nullptr};
  nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
};

// DeLighT decoder block: DExTra + causal single-head self-attention, cross-attention without
// DExTra (queries d_m -> d_o, keys/values of the encoder output d_m -> 2·d_o), light FFN.
struct DelightDecoderBlock : DecoderBlock {
  DelightDecoderBlock(const NativeSeq2SeqConfig& c, int64_t depth, double width_mult, int64_t max_groups) : c_(c) {
    const int64_t d = c.d_model, d_o = d / 2, hidden = d / c.delight.dec_ffn_red;
    dextra_layer = register_module("dextra_layer", nn::DExTraUnit(nn::dextra_spec(d, d / 2, d_o, width_mult, depth, max_groups),
                                                                  c.activation, c.delight.delight_dropout, c.layer_norm_eps));
    self_attn = register_module("self_attn", nn::DelightSelfAttention(d_o, d, c.attention_dropout));
    self_attn_layer_norm = register_module("self_attn_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    encoder_attn = register_module("encoder_attn", nn::DelightCrossAttention(d, d_o, c.attention_dropout));
    encoder_attn_layer_norm = register_module("encoder_attn_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    fc1 = register_module("fc1", nn::Linear(d, hidden));
    fc2 = register_module("fc2", nn::Linear(hidden, d));
    final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(d, c.layer_norm_eps));
    init_linear(fc1);
    init_linear(fc2);
  }
  torch::Tensor ffn(const torch::Tensor& x) { return feed_forward(packed_ffn, fc1, fc2, x, c_, is_training()); }  // [B, T, d]
  std::pair<torch::Tensor, torch::Tensor> memory_kv(const torch::Tensor& memory) override {
    return encoder_attn->memory_kv(memory);  // 2 × [B, 1, S, d_o]
  }
  torch::Tensor run(const torch::Tensor& x0, const torch::Tensor& self_mask, nn::KVCache* cache, int64_t capacity,
                    const torch::Tensor& ck, const torch::Tensor& cv, const torch::Tensor& cross_mask,
                    const torch::Tensor& cross_rows) override {
    const bool tr = is_training(), pre = c_.normalize_before;
    torch::Tensor x = nn::residual_with(x0, self_attn_layer_norm, pre, tr, delight_drop(c_.dropout), [&](const torch::Tensor& h) {
      return self_attn->forward(dextra_layer->forward(h), self_mask, cache, capacity);
    });  // [B, T, d_m]
    x = nn::residual_with(x, encoder_attn_layer_norm, pre, tr, delight_drop(c_.dropout), [&](const torch::Tensor& h) {
      return encoder_attn->forward(h, ck, cv, cross_mask, cross_rows);
    });  // [B, T, d_m]
    return nn::residual_with(x, final_layer_norm, pre, tr, delight_drop(c_.delight.ffn_dropout),
                             [&](const torch::Tensor& h) { return ffn(h); });  // [B, T, d_m]
  }
  const NativeSeq2SeqConfig& c_;
  nn::DExTraUnit dextra_layer{nullptr};
  nn::DelightSelfAttention self_attn{nullptr};
  nn::DelightCrossAttention encoder_attn{nullptr};
  nn::LayerNorm self_attn_layer_norm{nullptr}, encoder_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
};

void check_ids(const torch::Tensor& ids, int64_t vocab, const char* name) {
  if (ids.dim() != 2 || ids.scalar_type() != torch::kInt64) {
    fail(Where{"", 0, name}, "token ids must be a [B, T] int64 tensor, got {} of {}", shape_str(ids.sizes()),
         c10::toString(ids.scalar_type()));
  }
  if (ids.numel() == 0) return;
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= vocab) fail(Where{"", 0, name}, "token id {} is outside the vocabulary of {} tokens", lo < 0 ? lo : hi, vocab);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config

NativeSeq2SeqConfig NativeSeq2SeqConfig::from_json(const json& j, const std::string& path) {
  if (!j.is_object()) fail(Where{path, 0, ""}, "expected a JSON object");
  NativeSeq2SeqConfig c;
  const std::string type = get_string(j, path, "model_type", "");
  if (type != kModelType) fail(Where{path, 0, "model_type"}, "expected \"{}\", got \"{}\"", kModelType, type);
  c.architecture = get_string(j, path, "architecture", c.architecture);
  if (c.architecture != "transformer" && c.architecture != "delight") {
    fail(Where{path, 0, "architecture"}, "unknown architecture \"{}\" (expected \"transformer\" or \"delight\")", c.architecture);
  }
  const bool dl = c.is_delight();
  c.d_model = get_int(j, path, "d_model", c.d_model, 1);
  c.encoder_layers = get_int(j, path, "encoder_layers", c.encoder_layers, 1);
  c.decoder_layers = get_int(j, path, "decoder_layers", c.decoder_layers, 1);
  c.encoder_attention_heads = get_int(j, path, "encoder_attention_heads", c.encoder_attention_heads, 1);
  c.decoder_attention_heads = get_int(j, path, "decoder_attention_heads", c.decoder_attention_heads, 1);
  c.encoder_ffn_dim = get_int(j, path, "encoder_ffn_dim", c.encoder_ffn_dim, 1);
  c.decoder_ffn_dim = get_int(j, path, "decoder_ffn_dim", c.decoder_ffn_dim, 1);
  if (!dl) {
    for (auto [key, heads] : {std::pair{"encoder_attention_heads", c.encoder_attention_heads},
                              std::pair{"decoder_attention_heads", c.decoder_attention_heads}}) {
      if (c.d_model % heads != 0) fail(Where{path, 0, key}, "d_model {} is not divisible by {} heads", c.d_model, heads);
    }
    if (c.d_model < 4 || c.d_model % 2 != 0) fail(Where{path, 0, "d_model"}, "must be even and >= 4 (sinusoidal positions), got {}", c.d_model);
  }
  c.activation_function = get_string(j, path, "activation_function", dl ? "swish" : "relu");
  c.activation = nn::parse_activation(c.activation_function, Where{path, 0, "activation_function"});
  c.normalize_before = get_bool(j, path, "normalize_before", false);
  c.dropout = get_prob(j, path, "dropout", c.dropout);
  c.attention_dropout = get_prob(j, path, "attention_dropout", c.attention_dropout);
  c.activation_dropout = get_prob(j, path, "activation_dropout", c.activation_dropout);
  c.shared_vocab = get_bool(j, path, "shared_vocab", true);
  c.vocab_size = get_int(j, path, "vocab_size", std::nullopt, 4);
  c.target_vocab_size = c.shared_vocab ? c.vocab_size : get_int(j, path, "target_vocab_size", std::nullopt, 4);
  if (c.shared_vocab && j.contains("target_vocab_size") && !j["target_vocab_size"].is_null() &&
      get_int(j, path, "target_vocab_size", 0, 1) != c.vocab_size) {
    fail(Where{path, 0, "target_vocab_size"}, "differs from vocab_size {} although shared_vocab is true", c.vocab_size);
  }
  c.tie_word_embeddings = get_bool(j, path, "tie_word_embeddings", true);
  c.scale_embedding = get_bool(j, path, "scale_embedding", true);
  c.max_source_positions = get_int(j, path, "max_source_positions", c.max_source_positions, 2);
  c.max_target_positions = get_int(j, path, "max_target_positions", c.max_target_positions, 2);
  c.pad_token_id = get_int(j, path, "pad_token_id", 0, 0);
  c.unk_token_id = get_int(j, path, "unk_token_id", 1, 0);
  c.bos_token_id = get_int(j, path, "bos_token_id", 2, 0);
  c.eos_token_id = get_int(j, path, "eos_token_id", 3, 0);
  c.decoder_start_token_id = get_int(j, path, "decoder_start_token_id", c.bos_token_id, 0);
  for (auto [key, id] : {std::pair{"pad_token_id", c.pad_token_id}, std::pair{"unk_token_id", c.unk_token_id},
                         std::pair{"bos_token_id", c.bos_token_id}, std::pair{"eos_token_id", c.eos_token_id},
                         std::pair{"decoder_start_token_id", c.decoder_start_token_id}}) {
    if (id >= std::min(c.vocab_size, c.target_vocab_size)) {
      fail(Where{path, 0, key}, "token id {} is outside the vocabulary of {} tokens", id, std::min(c.vocab_size, c.target_vocab_size));
    }
  }
  c.layer_norm_eps = get_double(j, path, "layer_norm_eps", c.layer_norm_eps, 0.0, 1.0, true);
  if (dl) {
    DelightSettings& d = c.delight;
    d.emb_map_dim = get_int(j, path, "delight_emb_map_dim", d.emb_map_dim, 1);
    d.emb_depth = get_int(j, path, "delight_emb_depth", d.emb_depth, 1);
    d.emb_width_mult = get_double(j, path, "delight_emb_width_mult", d.emb_width_mult, 0.5, 64.0, false);
    d.emb_max_groups = get_int(j, path, "delight_emb_max_groups", d.emb_max_groups, 0);
    d.emb_dropout = get_prob(j, path, "delight_emb_dropout", d.emb_dropout);
    d.pe_dropout = get_prob(j, path, "pe_dropout", d.pe_dropout);
    d.enc_min_depth = get_int(j, path, "delight_enc_min_depth", d.enc_min_depth, 1);
    d.enc_max_depth = get_int(j, path, "delight_enc_max_depth", d.enc_max_depth, 1);
    d.enc_blocks = get_int(j, path, "delight_enc_layers", d.enc_max_depth, 1);
    d.enc_width_mult = get_double(j, path, "delight_enc_width_mult", d.enc_width_mult, 0.5, 64.0, false);
    d.enc_max_groups = get_int(j, path, "delight_enc_max_groups", d.enc_max_groups, 0);
    d.enc_ffn_red = get_int(j, path, "delight_enc_ffn_red", d.enc_ffn_red, 1);
    d.dec_min_depth = get_int(j, path, "delight_dec_min_depth", d.dec_min_depth, 1);
    d.dec_max_depth = get_int(j, path, "delight_dec_max_depth", d.dec_max_depth, 1);
    d.dec_blocks = get_int(j, path, "delight_dec_layers", d.dec_max_depth, 1);
    d.dec_width_mult = get_double(j, path, "delight_dec_width_mult", d.dec_width_mult, 0.5, 64.0, false);
    d.dec_max_groups = get_int(j, path, "delight_dec_max_groups", d.dec_max_groups, 0);
    d.dec_ffn_red = get_int(j, path, "delight_dec_ffn_red", d.dec_ffn_red, 1);
    d.delight_dropout = get_prob(j, path, "delight_dropout", d.delight_dropout);
    d.ffn_dropout = get_prob(j, path, "ffn_dropout", c.dropout);
    if (d.enc_min_depth > d.enc_max_depth) fail(Where{path, 0, "delight_enc_min_depth"}, "{} is larger than delight_enc_max_depth {}", d.enc_min_depth, d.enc_max_depth);
    if (d.dec_min_depth > d.dec_max_depth) fail(Where{path, 0, "delight_dec_min_depth"}, "{} is larger than delight_dec_max_depth {}", d.dec_min_depth, d.dec_max_depth);
    if (c.d_model % 16 != 0) fail(Where{path, 0, "d_model"}, "DeLighT needs d_model divisible by 16 (d_m/2 split into groups), got {}", c.d_model);
    if (c.d_model % (2 * d.enc_ffn_red) != 0 || c.d_model % (2 * d.dec_ffn_red) != 0) {
      fail(Where{path, 0, "delight_enc_ffn_red"}, "d_model {} must be divisible by the FFN reduction factors", c.d_model);
    }
    if (d.emb_map_dim % 2 != 0) fail(Where{path, 0, "delight_emb_map_dim"}, "must be even, got {}", d.emb_map_dim);
  }
  // keep what loom does not interpret; drop the other architecture's keys
  const json known_transformer = NativeSeq2SeqConfig{}.to_json();
  NativeSeq2SeqConfig dl_probe;
  dl_probe.architecture = "delight";
  const json known_delight = dl_probe.to_json();
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!known_transformer.contains(it.key()) && !known_delight.contains(it.key()) && it.key() != "target_vocab_size") {
      c.extra[it.key()] = it.value();
    }
  }
  return c;
}

json NativeSeq2SeqConfig::to_json() const {
  json j = {
      {"model_type", kModelType},
      {"architecture", architecture},
      {"d_model", d_model},
      {"activation_function", activation_function},
      {"normalize_before", normalize_before},
      {"dropout", dropout},
      {"attention_dropout", attention_dropout},
      {"activation_dropout", activation_dropout},
      {"shared_vocab", shared_vocab},
      {"vocab_size", vocab_size},
      {"tie_word_embeddings", tie_word_embeddings},
      {"max_source_positions", max_source_positions},
      {"max_target_positions", max_target_positions},
      {"pad_token_id", pad_token_id},
      {"unk_token_id", unk_token_id},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"decoder_start_token_id", decoder_start_token_id},
      {"layer_norm_eps", layer_norm_eps},
  };
  for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  if (!shared_vocab) j["target_vocab_size"] = target_vocab_size;
  if (!is_delight()) {
    j["encoder_layers"] = encoder_layers;
    j["decoder_layers"] = decoder_layers;
    j["encoder_attention_heads"] = encoder_attention_heads;
    j["decoder_attention_heads"] = decoder_attention_heads;
    j["encoder_ffn_dim"] = encoder_ffn_dim;
    j["decoder_ffn_dim"] = decoder_ffn_dim;
    j["scale_embedding"] = scale_embedding;
  } else {
    const DelightSettings& d = delight;
    j["delight_emb_map_dim"] = d.emb_map_dim;
    j["delight_emb_depth"] = d.emb_depth;
    j["delight_emb_width_mult"] = d.emb_width_mult;
    j["delight_emb_max_groups"] = d.emb_max_groups;
    j["delight_emb_dropout"] = d.emb_dropout;
    j["pe_dropout"] = d.pe_dropout;
    j["delight_enc_min_depth"] = d.enc_min_depth;
    j["delight_enc_max_depth"] = d.enc_max_depth;
    j["delight_enc_layers"] = d.enc_blocks;
    j["delight_enc_width_mult"] = d.enc_width_mult;
    j["delight_enc_max_groups"] = d.enc_max_groups;
    j["delight_enc_ffn_red"] = d.enc_ffn_red;
    j["delight_dec_min_depth"] = d.dec_min_depth;
    j["delight_dec_max_depth"] = d.dec_max_depth;
    j["delight_dec_layers"] = d.dec_blocks;
    j["delight_dec_width_mult"] = d.dec_width_mult;
    j["delight_dec_max_groups"] = d.dec_max_groups;
    j["delight_dec_ffn_red"] = d.dec_ffn_red;
    j["delight_dropout"] = d.delight_dropout;
    j["ffn_dropout"] = d.ffn_dropout;
  }
  return j;
}

// ---------------------------------------------------------------------------------------------
// Model

struct NativeSeq2Seq::Impl {
  torch::Tensor enc_embed, dec_embed;  // look-up tables [V_src, e], [V, e] (e = d_model, DeLighT: map_dim)
  torch::Tensor output;                // output projection [V, e] (tied: = dec_embed)
  std::vector<std::shared_ptr<EncoderBlock>> enc;
  std::vector<std::shared_ptr<DecoderBlock>> dec;
  nn::LayerNorm enc_ln{nullptr}, dec_ln{nullptr};  // pre-norm final LayerNorms
  // DeLighT only (papers.md §1.9)
  nn::DExTraUnit enc_emb_unit{nullptr}, dec_emb_unit{nullptr};  // map_dim -> d_m, one per side
  nn::Linear out_map{nullptr};                                   // d_m -> map_dim, no bias
};

NativeSeq2Seq::NativeSeq2Seq(NativeSeq2SeqConfig config) : config_(std::move(config)) {
  config_ = NativeSeq2SeqConfig::from_json(config_.to_json(), "config.json");  // validates
  torch::NoGradGuard no_grad;
  impl_ = std::make_shared<Impl>();
  Impl& m = *impl_;
  const NativeSeq2SeqConfig& c = config_;
  const bool dl = c.is_delight();
  const int64_t e = dl ? c.delight.emb_map_dim : c.d_model;  // table width
  torch::nn::Module& encoder = child(*this, "encoder");
  torch::nn::Module& decoder = child(*this, "decoder");
  m.enc_embed = child(encoder, "embed_tokens").register_parameter("weight", torch::empty({c.vocab_size, e}));  // [V_src, e]
  init_table(m.enc_embed, c.pad_token_id);
  if (c.shared_vocab) {
    m.dec_embed = m.enc_embed;
  } else {
    m.dec_embed = child(decoder, "embed_tokens").register_parameter("weight", torch::empty({c.target_vocab_size, e}));  // [V, e]
    init_table(m.dec_embed, c.pad_token_id);
  }
  if (c.tie_word_embeddings) {
    m.output = m.dec_embed;
  } else {
    m.output = child(decoder, "output_projection").register_parameter("weight", torch::empty({c.target_vocab_size, e}));  // [V, e]
    torch::nn::init::normal_(m.output, 0.0, std::pow(static_cast<double>(e), -0.5));
  }
  torch::nn::Module& enc_layers = child(encoder, "layers");
  torch::nn::Module& dec_layers = child(decoder, "layers");
  if (!dl) {
    for (int64_t i = 0; i < c.encoder_layers; ++i) {
      m.enc.push_back(enc_layers.register_module(std::to_string(i), std::make_shared<TransformerEncoderBlock>(config_)));
    }
    for (int64_t i = 0; i < c.decoder_layers; ++i) {
      m.dec.push_back(dec_layers.register_module(std::to_string(i), std::make_shared<TransformerDecoderBlock>(config_)));
    }
  } else {
    // DeLighT (papers.md §1.8, §1.9). With a shared vocabulary only the look-up table is shared:
    // delight_transformer.py builds one DExTraEmb per side and ties just map_layer.weight.
    const DelightSettings& ds = c.delight;
    const int64_t d = c.d_model;
    auto gmax = [&](int64_t g) { return g > 0 ? g : nn::delight_max_groups(d); };
    const nn::DExTraSpec emb = nn::dextra_spec(ds.emb_map_dim, d / 2, d, ds.emb_width_mult, ds.emb_depth, gmax(ds.emb_max_groups));
    m.enc_emb_unit = encoder.register_module("embed_dextra", nn::DExTraUnit(emb, c.activation, ds.delight_dropout, c.layer_norm_eps));
    m.dec_emb_unit = decoder.register_module("embed_dextra", nn::DExTraUnit(emb, c.activation, ds.delight_dropout, c.layer_norm_eps));
    const nn::BlockScaling enc_s = nn::delight_block_scaling(ds.enc_min_depth, ds.enc_max_depth, ds.enc_blocks, ds.enc_width_mult);
    const nn::BlockScaling dec_s = nn::delight_block_scaling(ds.dec_min_depth, ds.dec_max_depth, ds.dec_blocks, ds.dec_width_mult);
    for (int64_t i = 0; i < ds.enc_blocks; ++i) {
      m.enc.push_back(enc_layers.register_module(std::to_string(i), std::make_shared<DelightEncoderBlock>(
          config_, enc_s.depth[i], enc_s.width_mult[i], gmax(ds.enc_max_groups))));
    }
    for (int64_t i = 0; i < ds.dec_blocks; ++i) {
      m.dec.push_back(dec_layers.register_module(std::to_string(i), std::make_shared<DelightDecoderBlock>(
          config_, dec_s.depth[i], dec_s.width_mult[i], gmax(ds.dec_max_groups))));
    }
    if (d != ds.emb_map_dim) {  // the code's project_out_dim exists only when d_m != map_dim
      m.out_map = decoder.register_module("output_map", nn::Linear(d, ds.emb_map_dim, /*with_bias=*/false));
      torch::nn::init::xavier_uniform_(m.out_map->weight);
    }
  }
  if (c.normalize_before) {
    m.enc_ln = encoder.register_module("layer_norm", nn::LayerNorm(c.d_model, c.layer_norm_eps));
    m.dec_ln = decoder.register_module("layer_norm", nn::LayerNorm(c.d_model, c.layer_norm_eps));
  }
  for (auto& p : parameters()) p.set_requires_grad(true);
}

std::shared_ptr<NativeSeq2Seq> NativeSeq2Seq::load(const std::string& dir) {
  io::HfCheckpoint checkpoint(dir);
  return load(checkpoint);
}

std::shared_ptr<NativeSeq2Seq> NativeSeq2Seq::load(const io::HfCheckpoint& checkpoint) {
  const std::string& dir = checkpoint.dir();
  auto model = std::make_shared<NativeSeq2Seq>(NativeSeq2SeqConfig::from_json(checkpoint.config(), dir + "/config.json"));
  {
    torch::NoGradGuard no_grad;
    std::set<std::string> known;
    for (const auto& item : model->named_parameters(/*recurse=*/true)) {
      const std::string& name = item.key();
      torch::Tensor param = item.value();
      known.insert(name);
      if (!checkpoint.has(name)) fail(Where{dir, 0, name}, "tensor missing from model.safetensors (config.json implies it)");
      const std::vector<int64_t> shape = checkpoint.shape(name);
      if (c10::IntArrayRef(shape) != param.sizes()) {
        fail(Where{dir, 0, name}, "tensor has shape {} but config.json implies {}", shape_str(shape), shape_str(param.sizes()));
      }
      param.copy_(checkpoint.load(name, torch::kFloat32));
    }
    for (const std::string& name : checkpoint.names()) {
      if (!known.count(name)) fail(Where{dir, 0, name}, "unexpected tensor: the {} model has no parameter of that name", model->config_.architecture);
    }
  }
  model->eval();
  model->fuse();
  return model;
}

void NativeSeq2Seq::train(bool on) {
  torch::nn::Module::train(on);
  if (on && compute_ != nn::WeightType::kFloat32) set_compute_type(nn::WeightType::kFloat32);  // packed = no gradients
  if (on) {
    for (auto& mod : modules(/*include_self=*/false)) {
      if (auto* a = dynamic_cast<nn::MultiHeadAttentionImpl*>(mod.get())) a->unfuse();
    }
  }
}

void NativeSeq2Seq::fuse() {
  torch::NoGradGuard no_grad;
  for (auto& mod : modules(/*include_self=*/false)) {
    if (auto* a = dynamic_cast<nn::MultiHeadAttentionImpl*>(mod.get())) a->fuse();
  }
}

torch::Tensor NativeSeq2Seq::positions(int64_t past, int64_t t, int64_t dim) {
  if (!position_table_.defined() || past + t > position_table_.size(0)) {
    const int64_t n = std::max<int64_t>({past + t, config_.max_source_positions, config_.max_target_positions});
    // fairseq/tensor2tensor sinusoids ([sin | cos] halves), row p = position p (0-based; fairseq's
    // SinusoidalPositionalEmbedding starts at padding_idx + 1 — a shift that only matters for
    // weights trained by fairseq, which loom models are not)
    position_table_ = nn::fairseq_position_table(n, dim, -1);  // [P, d]
  }
  return position_table_.narrow(0, past, t);  // [T, d]
}

torch::Tensor NativeSeq2Seq::embed(const torch::Tensor& ids, bool decoder, int64_t past, const torch::Tensor& row_pos) {
  const NativeSeq2SeqConfig& c = config_;
  Impl& m = *impl_;
  auto position_rows = [&]() -> torch::Tensor {  // [1|B, T, d_model]
    const int64_t t = ids.size(1);
    if (!row_pos.defined()) return positions(past, t, c.d_model).unsqueeze(0);
    positions(0, row_pos.max().item<int64_t>() + 1, c.d_model);  // grows the table when needed
    return position_table_.index_select(0, row_pos.reshape({-1})).view({ids.size(0), t, c.d_model});
  };
  const torch::Tensor& table = decoder ? m.dec_embed : m.enc_embed;
  check_ids(ids, table.size(0), decoder ? "decoder_input_ids" : "input_ids");
  const bool tr = is_training();
  if (c.is_delight()) {
    // DeLighT embedding (papers.md §1.9): map_dim look-up × sqrt(map_dim), recurrent dropout,
    // DExTra unit map_dim -> d_m, + sinusoidal positions, recurrent dropout (pe_dropout).
    const int64_t map = c.delight.emb_map_dim;
    torch::Tensor x = torch::embedding(table, ids, c.pad_token_id) * std::sqrt(static_cast<double>(map));  // [B, T, map_dim]
    x = nn::recurrent_dropout(x, c.delight.emb_dropout, tr);                                             // [B, T, map_dim]
    x = (decoder ? m.dec_emb_unit : m.enc_emb_unit)->forward(x);                                         // [B, T, d_m]
    x = x + position_rows();                                                                             // [B, T, d_m]
    return nn::recurrent_dropout(x, c.delight.pe_dropout, tr);                                           // [B, T, d_m]
  }
  const double scale = c.scale_embedding ? std::sqrt(static_cast<double>(c.d_model)) : 1.0;
  torch::Tensor x = torch::embedding(table, ids, c.pad_token_id) * scale;  // [B, T, d]
  x = x + position_rows();                                                 // [B, T, d]
  return drop(x, c.dropout, tr);                                           // [B, T, d]
}

torch::Tensor NativeSeq2Seq::run_encoder(const torch::Tensor& ids, const torch::Tensor& keep) {
  torch::Tensor mask;  // [B, 1, 1, S] additive
  if (keep.defined() && !keep.all().item<bool>()) mask = nn::additive_key_mask(keep);
  torch::Tensor x = embed(ids, false, 0);                            // [B, S, d]
  for (auto& block : impl_->enc) x = block->run(x, mask);            // [B, S, d]
  if (config_.normalize_before) x = impl_->enc_ln->forward(x);       // [B, S, d]
  return x;
}

torch::Tensor NativeSeq2Seq::encode_hidden(const torch::Tensor& src_ids, const torch::Tensor& src_mask) {
  torch::Tensor keep = src_mask.defined() ? src_mask.to(torch::kBool) : torch::Tensor();  // [B, S]
  if (keep.defined() && keep.sizes() != src_ids.sizes()) {
    fail(Where{"", 0, "src_mask"}, "has shape {} but src_ids has {}", shape_str(keep.sizes()), shape_str(src_ids.sizes()));
  }
  return run_encoder(src_ids, keep);  // [B, S, d]
}

torch::Tensor NativeSeq2Seq::run_decoder(const torch::Tensor& ids, const torch::Tensor& memory,
                                         const torch::Tensor& memory_keep, DecoderState* state) {
  const int64_t t = ids.size(1);
  Impl& m = *impl_;
  torch::Tensor x;
  if (state == nullptr) {
    // teacher forcing: causal mask, target pads masked as keys (fairseq's transformer does this;
    // the DeLighT decoder passes no self_attn_padding_mask, which changes only pad positions)
    torch::Tensor keep = torch::ones({t, t}, torch::kBool).tril().unsqueeze(0) & ids.ne(config_.pad_token_id).unsqueeze(1);  // [B, T, T]
    torch::Tensor self_mask = torch::zeros(keep.sizes(), torch::kFloat32).masked_fill(keep.logical_not(), nn::masked_score())
                                  .unsqueeze(1);  // [B, 1, T, T]
    torch::Tensor cross_mask;  // [B, 1, 1, S]
    if (memory_keep.defined() && !memory_keep.all().item<bool>()) cross_mask = nn::additive_key_mask(memory_keep);
    x = embed(ids, true, 0);  // [B, T, d]
    for (auto& block : m.dec) {
      auto kv = block->memory_kv(memory);                                                  // 2 × [B, H, S, dh]
      x = block->run(x, self_mask, nullptr, 0, kv.first, kv.second, cross_mask);           // [B, T, d]
    }
  } else {
    TORCH_CHECK(ids.size(0) == state->rows(), "decode: ", ids.size(0), " rows of decoder input for a state of ", state->rows());
    const int64_t past = state->length();
    torch::Tensor self_mask = state->self_mask(t);  // [T, past+T] or [B, 1, T, past+T] or undefined
    x = embed(ids, true, past, state->row_positions(t));  // [B, T, d]
    const int64_t capacity = state->capacity_for(t);
    for (size_t i = 0; i < m.dec.size(); ++i) {
      x = m.dec[i]->run(x, self_mask, &state->self_cache(i), capacity, state->cross_k(i), state->cross_v(i),
                        state->memory_mask(), state->cross_rows());  // [B, T, d]
    }
    state->advance(t);
  }
  if (config_.normalize_before) x = m.dec_ln->forward(x);  // [B, T, d]
  if (!m.out_map.is_empty()) x = m.out_map->forward(x);    // [B, T, map_dim] (DeLighT: softmax in the map space)
  if (output_packed_.defined()) return output_packed_.forward(x);  // [B, T, V]
  return nn::linear(x, m.output, torch::Tensor());         // [B, T, V]
}

void NativeSeq2Seq::set_compute_type(nn::WeightType type) {
  torch::NoGradGuard no_grad;
  nn::pack_attention(*this, type);
  for (auto& b : impl_->enc) b->packed_ffn.pack(*b, type);
  for (auto& b : impl_->dec) b->packed_ffn.pack(*b, type);
  // int8 leaves the output projection in float32 (see native_seq2seq.h): no packed copy.
  output_packed_ = type == nn::WeightType::kBFloat16
                       ? nn::PackedLinear(impl_->output, torch::Tensor(), type, nn::translation_activations(type))
                       : nn::PackedLinear();
  compute_ = type;
}

torch::Tensor NativeSeq2Seq::forward(const torch::Tensor& src_ids, const torch::Tensor& src_mask, const torch::Tensor& tgt_in) {
  torch::Tensor keep = src_mask.defined() ? src_mask.to(torch::kBool) : torch::Tensor();  // [B, S]
  torch::Tensor memory = encode_hidden(src_ids, keep);                                     // [B, S, d]
  check_ids(tgt_in, impl_->dec_embed.size(0), "tgt_in");
  if (tgt_in.size(0) != src_ids.size(0)) {
    fail(Where{"", 0, "tgt_in"}, "has {} rows but src_ids has {}", tgt_in.size(0), src_ids.size(0));
  }
  return run_decoder(tgt_in, memory, keep, nullptr);  // [B, T, V]
}

EncoderOutput NativeSeq2Seq::encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  torch::NoGradGuard no_grad;
  EncoderOutput out;
  out.mask = attention_mask.defined() ? attention_mask.to(torch::kBool) : torch::ones(input_ids.sizes(), torch::kBool);  // [B, S]
  out.hidden = encode_hidden(input_ids, out.mask);  // [B, S, d]
  return out;
}

void NativeSeq2Seq::init_state(DecoderState& state, const EncoderOutput& encoder, int64_t repeat) {
  torch::NoGradGuard no_grad;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> kv;
  for (auto& block : impl_->dec) kv.push_back(block->memory_kv(encoder.hidden));  // 2 × [B, H, S, dh]
  state.reset(std::move(kv), encoder.mask, repeat);
}

torch::Tensor NativeSeq2Seq::decode(const torch::Tensor& ids, const EncoderOutput& encoder, DecoderState* state) {
  torch::NoGradGuard no_grad;
  DecoderState local;
  DecoderState* s = state != nullptr ? state : &local;
  if (!s->initialized()) init_state(*s, encoder, 1);
  return run_decoder(ids, encoder.hidden, encoder.mask, s);  // [B, T, V]
}

NativeSeq2Seq::ParameterCounts NativeSeq2Seq::parameter_counts() const {
  ParameterCounts pc;
  const int64_t n_enc = static_cast<int64_t>(impl_->enc.size()), n_dec = static_cast<int64_t>(impl_->dec.size());
  pc.encoder_blocks.assign(n_enc, 0);
  pc.decoder_blocks.assign(n_dec, 0);
  for (const auto& item : named_parameters(true)) {
    const std::string& name = item.key();
    const int64_t n = item.value().numel();
    pc.total += n;
    if (name.find("embed_tokens.") != std::string::npos) {
      pc.embeddings += n;
    } else if (name.rfind("decoder.output_projection.", 0) == 0) {
      pc.output += n;
    } else if (name.rfind("encoder.layers.", 0) == 0 || name.rfind("decoder.layers.", 0) == 0) {
      const bool enc = name[0] == 'e';
      const size_t start = enc ? 15 : 15;
      const int64_t i = std::stoll(name.substr(start, name.find('.', start) - start));
      (enc ? pc.encoder_blocks : pc.decoder_blocks)[i] += n;
    } else {
      pc.other += n;
    }
  }
  return pc;
}

// ---------------------------------------------------------------------------------------------
// Saving

void save_native_model(const NativeSeq2Seq& model, const std::string& dir, const SaveOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) fail(Where{dir, 0, ""}, "cannot create the model directory");
  const NativeSeq2SeqConfig& c = model.config();
  // tokenizer files first: a missing one must fail before anything is replaced
  std::string src_spm, tgt_spm;
  if (!options.source_spm.empty()) src_spm = core::read_file(options.source_spm);
  if (!options.target_spm.empty()) tgt_spm = core::read_file(options.target_spm);
  else if (!options.source_spm.empty() && c.shared_vocab) tgt_spm = src_spm;
  if (!options.source_spm.empty() && options.target_spm.empty() && !c.shared_vocab) {
    fail(Where{"", 0, "target_spm"}, "separate vocabularies need a target SentencePiece model");
  }

  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& item : model.named_parameters(true)) {
    torch::Tensor t = item.value().detach();
    tensors.emplace_back(item.key(), options.float16 ? t.to(torch::kHalf) : t.to(torch::kFloat32));
  }
  json meta = {{"format", "pt"}, {"loom_model_type", NativeSeq2SeqConfig::kModelType}, {"architecture", c.architecture}};
  if (options.metadata.is_object()) {
    for (auto& [k, v] : options.metadata.items()) meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  io::write_safetensors(dir + "/model.safetensors", tensors, meta);

  json gen = {{"bos_token_id", c.bos_token_id},   {"decoder_start_token_id", c.decoder_start_token_id},
              {"eos_token_id", c.eos_token_id},   {"pad_token_id", c.pad_token_id},
              {"num_beams", 4},                   {"max_length", c.max_target_positions}};
  if (options.generation.is_object()) {
    for (auto& [k, v] : options.generation.items()) gen[k] = v;
  }
  core::write_file_atomic(dir + "/generation_config.json", gen.dump(2) + "\n");
  core::write_file_atomic(dir + "/config.json", c.to_json().dump(2) + "\n");
  if (!src_spm.empty()) core::write_file_atomic(dir + "/source.spm", src_spm);
  if (!tgt_spm.empty()) core::write_file_atomic(dir + "/target.spm", tgt_spm);

  std::string readme = options.readme;
  if (readme.empty()) {
    const auto pc = model.parameter_counts();
    readme = fmt::format(
        "# loom {} translation model\n\n"
        "- format: loom model directory (`model_type` \"{}\"), load with `loom translate --model DIR`\n"
        "- architecture: {} (d_model {}, {})\n"
        "- vocabulary: {} ({} source / {} target tokens); tokenizer: source.spm / target.spm (SentencePiece)\n"
        "- parameters: {} ({} in embedding tables)\n"
        "- weights: model.safetensors ({})\n",
        c.architecture, NativeSeq2SeqConfig::kModelType, c.architecture, c.d_model,
        c.is_delight() ? fmt::format("{}+{} blocks, depth {}..{}", c.delight.enc_blocks, c.delight.dec_blocks,
                                     c.delight.enc_min_depth, c.delight.enc_max_depth)
                       : fmt::format("{}+{} layers, {} heads, FFN {}", c.encoder_layers, c.decoder_layers,
                                     c.encoder_attention_heads, c.encoder_ffn_dim),
        c.shared_vocab ? "shared" : "separate", c.vocab_size, c.target_vocab_size, pc.total, pc.embeddings,
        options.float16 ? "float16" : "float32");
  }
  core::write_file_atomic(dir + "/README.md", readme);
}

}  // namespace loom::models
