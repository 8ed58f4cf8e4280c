// Random-weight Hugging Face checkpoints with a real architecture, for benchmarks and tests:
// what `loom init-model --like opus-mt-en-zh OUT` writes. The tensors carry exactly the names
// and shapes that transformers' save_pretrained stores for MarianMTModel and
// M2M100ForConditionalGeneration (tied embeddings stored once as model.shared.weight, static
// sinusoidal position tables not stored), and for the decoder-only families of
// models/causal_lm.h (GemmaForCausalLM, LlamaForCausalLM, ...: CausalLM::expected_tensors).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace loom::models {

/// Named tensors in checkpoint order.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// Random weights for config (config.json of model_type "marian" or "m2m_100"): linear and
/// embedding weights ~ N(0, init_std²) (init_std from config, default 0.02) except the
/// pad_token_id row of model.shared.weight, which is 0 as in real checkpoints (Marian's
/// decoder-start embedding), biases 0, LayerNorm weight 1 / bias 0, Marian's final_logits_bias 0.
/// Deterministic in seed.
/// Throws loom::Error naming the config field when a needed field is missing or invalid.
NamedTensors random_seq2seq_weights(const nlohmann::json& config, uint64_t seed);

/// Random weights for a decoder-only config.json (models::is_hf_causal_lm), one tensor at a
/// time in checkpoint order (CausalLM::expected_tensors), as `dtype` (float32 / bfloat16 /
/// float16): linear, embedding weights and biases ~ N(0, initializer_range²) (config
/// "initializer_range", default 0.02); RMSNorm weights = their HF initial value (1, or 0 for
/// Gemma's (1 + w) norms) + N(0, initializer_range²), so that every norm weight matters in
/// tests. Tensor i depends only on (seed, i). `make(i)` gives tensor i of `specs`.
struct RandomCheckpoint {
  std::vector<std::pair<std::string, std::vector<int64_t>>> specs;  ///< name, shape
  std::function<torch::Tensor(size_t)> make;
};
/// Throws loom::Error naming the config field for an invalid config (parse_causal_lm_config).
RandomCheckpoint random_causal_lm_weights(const nlohmann::json& config, uint64_t seed, torch::ScalarType dtype);

/// A preset that `loom init-model --like NAME` knows: the real config.json and
/// generation_config.json of a published model, and which tokenizer files go with it.
struct ModelPreset {
  std::string name;                ///< e.g. "opus-mt-en-zh"
  std::string hub_id;              ///< e.g. "Helsinki-NLP/opus-mt-en-zh"
  nlohmann::json config;           ///< config.json
  nlohmann::json generation_config;///< generation_config.json
  std::string tokenizer;           ///< folder under data/tokenizers/ whose files are copied
};

/// The presets: "opus-mt-en-zh" (MarianMTModel, 77M parameters),
/// "nllb-200-distilled-600M" (M2M100ForConditionalGeneration, 615M parameters), "gemma-2b"
/// (GemmaForCausalLM, 2.5B), "llama-3.2-1b" (LlamaForCausalLM, 1.2B), and tiny decoder-only
/// test architectures "llama-tiny" (llama3 rope scaling, GQA, untied head), "qwen2-tiny" (qkv
/// bias, tied head) and "gemma3-tiny" (local/global layers, q/k norms, per-layer rope base).
/// The full-size decoder presets ship small stand-in tokenizers (ids cover only the start of
/// the model's vocabulary); see docs/llm.md.
const std::vector<ModelPreset>& model_presets();

}  // namespace loom::models
