#include "loom/models/hf_init.h"

#include <torch/torch.h>

#include "loom/core/error.h"

namespace loom::models {
namespace {

int64_t int_field(const nlohmann::json& config, const char* name) {
  auto it = config.find(name);
  if (it == config.end() || !it->is_number_integer() || it->get<int64_t>() <= 0) {
    fail(Where{"config.json", 0, name}, "missing or not a positive integer");
  }
  return it->get<int64_t>();
}

}  // namespace

NamedTensors random_seq2seq_weights(const nlohmann::json& config, uint64_t seed) {
  const std::string type = config.value("model_type", "");
  if (type != "marian" && type != "m2m_100") {
    fail(Where{"config.json", 0, "model_type"}, "'{}' is not marian or m2m_100", type);
  }
  const bool marian = type == "marian";
  const int64_t d_model = int_field(config, "d_model");
  const int64_t vocab = int_field(config, "vocab_size");
  const double init_std = config.value("init_std", 0.02);
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  NamedTensors out;
  auto normal = [&](std::vector<int64_t> shape) {
    return at::normal(0.0, init_std, shape, gen);
  };
  auto linear = [&](const std::string& name, int64_t out_dim, int64_t in_dim) {
    out.emplace_back(name + ".weight", normal({out_dim, in_dim}));
    out.emplace_back(name + ".bias", torch::zeros({out_dim}));
  };
  auto layer_norm = [&](const std::string& name) {
    out.emplace_back(name + ".weight", torch::ones({d_model}));
    out.emplace_back(name + ".bias", torch::zeros({d_model}));
  };
  auto attention = [&](const std::string& name) {
    for (const char* proj : {"k_proj", "v_proj", "q_proj", "out_proj"}) linear(name + "." + proj, d_model, d_model);
  };
  out.emplace_back("model.shared.weight", normal({vocab, d_model}));
  if (marian) out.emplace_back("final_logits_bias", torch::zeros({1, vocab}));
  for (const std::string side : {"encoder", "decoder"}) {
    const int64_t layers = int_field(config, (side + "_layers").c_str());
    const int64_t ffn = int_field(config, (side + "_ffn_dim").c_str());
    for (int64_t l = 0; l < layers; ++l) {
      const std::string p = "model." + side + ".layers." + std::to_string(l) + ".";
      attention(p + "self_attn");
      layer_norm(p + "self_attn_layer_norm");
      if (side == "decoder") {
        attention(p + "encoder_attn");
        layer_norm(p + "encoder_attn_layer_norm");
      }
      linear(p + "fc1", ffn, d_model);
      linear(p + "fc2", d_model, ffn);
      layer_norm(p + "final_layer_norm");
    }
    if (!marian) layer_norm("model." + side + ".layer_norm");
  }
  return out;
}

const std::vector<ModelPreset>& model_presets() {
  static const std::vector<ModelPreset> presets = [] {
    std::vector<ModelPreset> v;
    // Helsinki-NLP/opus-mt-en-zh: config.json and generation_config.json as published (the
    // fields that transformers reads; legacy fields dropped).
    v.push_back({"opus-mt-en-zh", "Helsinki-NLP/opus-mt-en-zh",
                 nlohmann::json::parse(R"({
  "activation_dropout": 0.0, "activation_function": "swish", "architectures": ["MarianMTModel"],
  "attention_dropout": 0.0, "bad_words_ids": [[65000]], "bos_token_id": 0, "d_model": 512,
  "decoder_attention_heads": 8, "decoder_ffn_dim": 2048, "decoder_layerdrop": 0.0,
  "decoder_layers": 6, "decoder_start_token_id": 65000, "decoder_vocab_size": 65001, "dropout": 0.1,
  "encoder_attention_heads": 8, "encoder_ffn_dim": 2048, "encoder_layerdrop": 0.0,
  "encoder_layers": 6, "eos_token_id": 0, "forced_eos_token_id": 0, "init_std": 0.02,
  "is_encoder_decoder": true, "max_length": 512, "max_position_embeddings": 512,
  "model_type": "marian", "normalize_before": false, "normalize_embedding": false, "num_beams": 4,
  "num_hidden_layers": 6, "pad_token_id": 65000, "scale_embedding": true,
  "share_encoder_decoder_embeddings": true, "static_position_embeddings": true,
  "torch_dtype": "float32", "use_cache": true, "vocab_size": 65001})"),
                 nlohmann::json::parse(R"({
  "bad_words_ids": [[65000]], "bos_token_id": 0, "decoder_start_token_id": 65000,
  "eos_token_id": 0, "forced_eos_token_id": 0, "max_length": 512, "num_beams": 4,
  "pad_token_id": 65000, "renormalize_logits": true})"),
                 "opus-mt-en-zh"});
    // facebook/nllb-200-distilled-600M (M2M100ForConditionalGeneration). Its 256k-piece
    // tokenizer is not shipped with loom; the preset uses the small NLLB test tokenizer, whose
    // ids are a subset of the model's vocabulary, so the workload has the real shapes.
    v.push_back({"nllb-200-distilled-600M", "facebook/nllb-200-distilled-600M",
                 nlohmann::json::parse(R"({
  "activation_dropout": 0.0, "activation_function": "relu",
  "architectures": ["M2M100ForConditionalGeneration"], "attention_dropout": 0.1,
  "bos_token_id": 0, "d_model": 1024, "decoder_attention_heads": 16, "decoder_ffn_dim": 4096,
  "decoder_layerdrop": 0, "decoder_layers": 12, "decoder_start_token_id": 2, "dropout": 0.1,
  "encoder_attention_heads": 16, "encoder_ffn_dim": 4096, "encoder_layerdrop": 0,
  "encoder_layers": 12, "eos_token_id": 2, "init_std": 0.02, "is_encoder_decoder": true,
  "max_length": 200, "max_position_embeddings": 1024, "model_type": "m2m_100",
  "num_hidden_layers": 12, "pad_token_id": 1, "scale_embedding": true,
  "tokenizer_class": "NllbTokenizer", "torch_dtype": "float32", "use_cache": true,
  "vocab_size": 256206})"),
                 nlohmann::json::parse(R"({
  "bos_token_id": 0, "decoder_start_token_id": 2, "eos_token_id": 2, "max_length": 200,
  "pad_token_id": 1})"),
                 "nllb-tiny"});
    return v;
  }();
  return presets;
}

}  // namespace loom::models
