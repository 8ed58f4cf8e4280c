// BERT encoders and sentence-transformers embedding models.
//
// BertModel follows Hugging Face transformers 4.46.3 (models/bert/modeling_bert.py, eager
// attention, eval mode): embeddings = LayerNorm(word + absolute position (from 0) + token_type),
// then post-LN layers x = LN(x + Attn(x)); x = LN(x + FFN(x)). XLMRobertaModel is the same
// network with RoBERTa position ids (padding_idx + 1 + cumsum of non-pad tokens) — loaded by the
// same code when config.json says model_type "xlm-roberta"/"roberta" (its SentencePiece
// tokenizer is not supported yet: SentenceEmbedder::load refuses such a directory).
// SentenceEmbedder reproduces sentence-transformers (modules.json: Transformer -> Pooling ->
// Normalize), parity-tested on tests/data/hf-tiny/bert-minilm/reference.json.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "loom/nn/layers.h"
#include "loom/text/wordpiece.h"

namespace loom::models {

/// config.json of a BertModel / XLMRobertaModel (HF field names).
struct BertConfig {
  int64_t vocab_size = 0;               ///< V
  int64_t hidden_size = 0;              ///< d_model
  int64_t num_hidden_layers = 0;        ///< L
  int64_t num_attention_heads = 0;      ///< H (d_model % H == 0)
  int64_t intermediate_size = 0;        ///< d_ff
  int64_t max_position_embeddings = 0;  ///< largest T (+ padding_idx + 1 for RoBERTa)
  int64_t type_vocab_size = 2;
  int64_t pad_token_id = 0;
  double layer_norm_eps = 1e-12;
  nn::Activation hidden_act = nn::Activation::kGelu;
  bool roberta_positions = false;       ///< model_type roberta / xlm-roberta
  std::string model_type = "bert";

  /// Parses config.json's fields; throws loom::Error naming `file` and the field when one is
  /// missing, mistyped or out of range (non-positive sizes, d_model % H != 0, "relative_key"
  /// position embeddings, which loom does not implement).
  static BertConfig from_json(const nlohmann::json& j, const std::string& file);
};

/// Weights of one encoder layer (checkpoint names under encoder.layer.<i>.).
struct BertLayerWeights {
  torch::Tensor q_w, q_b, k_w, k_b, v_w, v_b;   ///< attention.self.{query,key,value} [d_model, d_model] / [d_model]
  torch::Tensor o_w, o_b, ln1_w, ln1_b;          ///< attention.output.dense / .LayerNorm
  torch::Tensor ff1_w, ff1_b;                    ///< intermediate.dense [d_ff, d_model] / [d_ff]
  torch::Tensor ff2_w, ff2_b, ln2_w, ln2_b;      ///< output.dense [d_model, d_ff] / output.LayerNorm
};

/// An HF BertModel (or XLMRobertaModel) encoder, inference only (float32, CPU).
class BertModel {
 public:
  /// Loads an HF model directory (config.json + model.safetensors / shards / pytorch_model.bin).
  /// Checkpoint names may carry a "bert." / "roberta." prefix (as *ForMaskedLM and
  /// *ForSequenceClassification save them). Throws loom::Error naming the file and tensor when a
  /// weight is missing or has the wrong shape.
  static BertModel load(const std::string& dir);

  /// Last hidden state. input_ids [B, T] int64, attention_mask [B, T] (1 = token, 0 = pad)
  /// -> [B, T, d_model] float32. Padded positions attend nowhere (additive -inf-like mask
  /// torch.finfo(float32).min as HF), so a row's values do not depend on its padding.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) const;
  /// Hidden states after the embeddings (entry 0) and after each layer (entries 1..L), each
  /// [B, T, d_model] — for parity tests against HF output_hidden_states.
  std::vector<torch::Tensor> hidden_states(const torch::Tensor& input_ids,
                                           const torch::Tensor& attention_mask) const;

  const BertConfig& config() const { return config_; }

 private:
  BertConfig config_;
  torch::Tensor word_emb_, pos_emb_, type_emb_, emb_ln_w_, emb_ln_b_;
  std::vector<BertLayerWeights> layers_;
};

/// How token vectors become one sentence vector (sentence-transformers 1_Pooling/config.json).
enum class Pooling { kMean, kCls, kMax };

/// A sentence-transformers model directory: modules.json (Transformer, Pooling, optional
/// Normalize), 1_Pooling/config.json, sentence_bert_config.json (max_seq_length), a BERT
/// checkpoint and its WordPiece tokenizer (vocab.txt + tokenizer_config.json). A plain HF
/// BertModel directory without modules.json is used with mean pooling and normalisation.
class SentenceEmbedder {
 public:
  /// Loads `dir`. Throws loom::Error naming the file and field for a malformed modules.json or
  /// pooling config, an unsupported module or pooling mode, or a missing vocab.txt.
  static std::shared_ptr<SentenceEmbedder> load(const std::string& dir);

  /// Sentence embeddings of `texts`: [N, d_model] float32, row i for texts[i] (N = 0 gives
  /// [0, d_model]). Texts are tokenized (truncated to max_seq_length), sorted by length and run
  /// in batches of at most `batch_size` texts so that padding stays small; each row equals
  /// embedding the text alone (the attention mask hides padding). Rows are L2-normalised when
  /// the model has a Normalize module (sentence-transformers semantics, eps 1e-12).
  torch::Tensor embed(const std::vector<std::string>& texts, int64_t batch_size = 32) const;

  /// The tokenizer (for counting tokens in the model's own vocabulary).
  const text::WordPieceTokenizer& tokenizer() const { return tokenizer_; }
  /// d_model of the output vectors.
  int64_t dim() const { return model_.config().hidden_size; }
  /// Longest input in tokens including [CLS]/[SEP].
  int64_t max_seq_length() const { return max_seq_length_; }
  bool normalize() const { return normalize_; }
  Pooling pooling() const { return pooling_; }
  /// A stable identity of the model, "<dir name>@<16 hex digits>": 64-bit FNV-1a of config.json,
  /// vocab.txt, the pooling config and each weight file's size and first 4 MiB. An index stores
  /// it and refuses to be searched or extended with a different model.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  BertModel model_;
  text::WordPieceTokenizer tokenizer_;
  Pooling pooling_ = Pooling::kMean;
  bool normalize_ = true;
  int64_t max_seq_length_ = 512;
  std::string fingerprint_;
};

}  // namespace loom::models
