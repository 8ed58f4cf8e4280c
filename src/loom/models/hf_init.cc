#include "loom/models/hf_init.h"

#include <torch/torch.h>

#include <cmath>

#include "loom/core/error.h"
#include "loom/models/causal_lm.h"

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
  torch::Tensor shared = normal({vocab, d_model});  // [V, d]
  // The pad row is zero, as in real Marian (and M2M100/NLLB) checkpoints (transformers' _init_weights
  // zeroes the nn.Embedding padding_idx row); Marian's decoder starts from pad, and CTranslate2's
  // Marian converter assumes that row is zero.
  const int64_t pad = config.value("pad_token_id", int64_t{-1});
  if (pad >= 0 && pad < vocab) shared[pad].zero_();
  out.emplace_back("model.shared.weight", shared);
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

RandomCheckpoint random_causal_lm_weights(const nlohmann::json& config, uint64_t seed, torch::ScalarType dtype) {
  const CausalLmConfig c = parse_causal_lm_config(config, "config.json");
  auto it = config.find("initializer_range");
  const double std_dev = it != config.end() && it->is_number() ? it->get<double>() : 0.02;
  if (!(std_dev > 0) || !std::isfinite(std_dev))
    fail(Where{"config.json", 0, "initializer_range"}, "must be a positive number");
  RandomCheckpoint out;
  out.specs = CausalLM::expected_tensors(c);
  const bool plus_one = c.norm_plus_one;
  auto specs = out.specs;
  out.make = [specs, seed, std_dev, plus_one, dtype](size_t i) {
    const auto& [name, shape] = specs.at(i);
    torch::Generator gen = at::detail::createCPUGenerator(seed * 1000003ull + i);
    torch::Tensor t = at::normal(0.0, std_dev, shape, gen);
    const bool is_norm = name.find("norm.weight") != std::string::npos;
    if (is_norm && !plus_one) t.add_(1.0);
    return t.to(dtype);
  };
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
    // google/gemma-2b config.json and generation_config.json as published (weights random).
    v.push_back({"gemma-2b", "google/gemma-2b", nlohmann::json::parse(R"({
  "architectures": ["GemmaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 2, "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 16384,
  "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
  "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 10000.0, "torch_dtype": "float32", "use_cache": true,
  "vocab_size": 256000})"),
                 nlohmann::json::parse(R"({"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0})"),
                 "gemma-tiny"});
    // meta-llama/Llama-3.2-1B config.json and generation_config.json as published.
    v.push_back({"llama-3.2-1b", "meta-llama/Llama-3.2-1B", nlohmann::json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "float32",
  "use_cache": true, "vocab_size": 128256})"),
                 nlohmann::json::parse(R"({"bos_token_id": 128000, "do_sample": true,
  "eos_token_id": 128001, "temperature": 0.6, "top_p": 0.9})"),
                 "llama3-tiny"});
    // Tiny test architectures (not published models). initializer_range 0.3 keeps logits and
    // attention scores O(1) at these widths, so every weight moves the outputs measurably.
    v.push_back({"llama-tiny", "loom/llama-tiny", nlohmann::json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 561,
  "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
  "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 128, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "hidden_act": "silu", "initializer_range": 0.3,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
  "tie_word_embeddings": false, "bos_token_id": 556, "eos_token_id": 557,
  "torch_dtype": "float32"})"),
                 nlohmann::json::parse(R"({"bos_token_id": 556, "eos_token_id": [557, 560]})"),
                 "llama3-tiny"});
    v.push_back({"qwen2-tiny", "loom/qwen2-tiny", nlohmann::json::parse(R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 559,
  "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
  "num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "hidden_act": "silu", "initializer_range": 0.3,
  "tie_word_embeddings": true, "use_sliding_window": false, "bos_token_id": null,
  "eos_token_id": 558, "torch_dtype": "float32"})"),
                 nlohmann::json::parse(R"({"eos_token_id": [558, 556], "pad_token_id": 556})"),
                 "qwen2-tiny"});
    v.push_back({"gemma3-tiny", "loom/gemma3-tiny", nlohmann::json::parse(R"({
  "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 800,
  "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4,
  "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 128, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
  "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "sliding_window": 3,
  "sliding_window_pattern": 2, "query_pre_attn_scalar": 20,
  "final_logit_softcapping": null, "attn_logit_softcapping": null,
  "hidden_activation": "gelu_pytorch_tanh", "initializer_range": 0.3,
  "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "torch_dtype": "float32"})"),
                 nlohmann::json::parse(R"({"bos_token_id": 2, "eos_token_id": [1, 6], "pad_token_id": 0})"),
                 "gemma-tiny"});
    return v;
  }();
  return presets;
}

}  // namespace loom::models
