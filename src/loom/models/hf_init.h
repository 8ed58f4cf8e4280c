// Random-weight Hugging Face checkpoints with a real architecture, for benchmarks and tests:
// what `loom init-model --like opus-mt-en-zh OUT` writes. The tensors carry exactly the names
// and shapes that transformers' save_pretrained stores for MarianMTModel and
// M2M100ForConditionalGeneration (tied embeddings stored once as model.shared.weight, static
// sinusoidal position tables not stored).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace loom::models {

/// Named tensors in checkpoint order.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// Random weights for config (config.json of model_type "marian" or "m2m_100"): linear and
/// embedding weights ~ N(0, init_std²) (init_std from config, default 0.02), biases 0,
/// LayerNorm weight 1 / bias 0, Marian's final_logits_bias 0. Deterministic in seed.
/// Throws loom::Error naming the config field when a needed field is missing or invalid.
NamedTensors random_seq2seq_weights(const nlohmann::json& config, uint64_t seed);

/// A preset that `loom init-model --like NAME` knows: the real config.json and
/// generation_config.json of a published model, and which tokenizer files go with it.
struct ModelPreset {
  std::string name;                ///< e.g. "opus-mt-en-zh"
  std::string hub_id;              ///< e.g. "Helsinki-NLP/opus-mt-en-zh"
  nlohmann::json config;           ///< config.json
  nlohmann::json generation_config;///< generation_config.json
  std::string tokenizer;           ///< folder under data/tokenizers/ whose files are copied
};

/// The presets: "opus-mt-en-zh" (MarianMTModel, 77M parameters) and
/// "nllb-200-distilled-600M" (M2M100ForConditionalGeneration, 615M parameters).
const std::vector<ModelPreset>& model_presets();

}  // namespace loom::models
