// Encoder-decoder translation models with the Hugging Face layouts of Marian (opus-mt-*) and
// M2M100/NLLB-200, loaded 1:1 from a checkpoint directory (config.json + safetensors).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "loom/nn/attention.h"
#include "loom/nn/layers.h"
#include "loom/nn/linear.h"
#include "loom/models/encoder_decoder.h"

namespace loom::io {
class HfCheckpoint;
}

namespace loom::models {

/// Architecture hyper-parameters of a Marian or M2M100 model, from config.json.
struct Seq2SeqConfig {
  enum class Kind { kMarian, kM2M100 };
  Kind kind = Kind::kMarian;
  std::string model_type;              ///< "marian" or "m2m_100"
  int64_t d_model = 0;
  int64_t encoder_layers = 0, decoder_layers = 0;
  int64_t encoder_attention_heads = 0, decoder_attention_heads = 0;
  int64_t encoder_ffn_dim = 0, decoder_ffn_dim = 0;
  std::string activation_function;     ///< ACT2FN name
  nn::Activation activation = nn::Activation::kRelu;
  bool scale_embedding = false;        ///< embeddings × sqrt(d_model)
  int64_t vocab_size = 0;              ///< source (and shared) vocabulary, V_src
  int64_t decoder_vocab_size = 0;      ///< target vocabulary V (Marian decoder_vocab_size, else vocab_size)
  int64_t pad_token_id = 0, eos_token_id = 0, decoder_start_token_id = 0;
  int64_t max_position_embeddings = 0;
  /// Pre-LN layers with a final LayerNorm per stack (M2M100) vs post-LN (Marian). Derived from
  /// model_type, as transformers does; a legacy "normalize_before" key in config.json is ignored.
  bool normalize_before = false;
  bool share_encoder_decoder_embeddings = true;  ///< Marian only; M2M100 always shares
  bool tie_word_embeddings = true;     ///< lm_head.weight = decoder embedding
  double layer_norm_eps = 1e-5;        ///< torch.nn.LayerNorm default used by both models

  /// Parses and validates config.json (`path` is used in error messages). Missing or invalid
  /// fields (wrong type, non-positive sizes, d_model not divisible by the heads, unknown
  /// model_type or activation, token ids outside the vocabulary) throw loom::Error naming
  /// config.json and the field. Defaults follow transformers' MarianConfig / M2M100Config.
  static Seq2SeqConfig from_json(const nlohmann::json& config, const std::string& path = "config.json");

  /// Multiplier of the token embeddings: sqrt(d_model) if scale_embedding else 1.
  double embed_scale() const;
};

/// Marian / M2M100 encoder-decoder for inference (float32, CPU). The module tree mirrors the
/// Hugging Face parameter names ("model.encoder.layers.0.self_attn.q_proj.weight", ...), so
/// named_parameters() is the name table: loading is a 1:1 lookup of every parameter in the
/// checkpoint. Matches transformers 4.46.3 MarianMTModel / M2M100ForConditionalGeneration (eval).
/// encode/decode switch gradients off themselves. One model may serve several threads only if
/// they do not call encode/decode concurrently (the M2M100 position table grows lazily).
class Seq2SeqModel : public torch::nn::Module, public EncoderDecoder {
 public:
  /// A model with random parameters (normal, std 0.02), for tests and benchmarks. Under
  /// nn::SkipRandomInit the parameters are uninitialised and not fused (load() then fills them).
  explicit Seq2SeqModel(Seq2SeqConfig config);

  /// Builds the model from config.json and loads every parameter from `checkpoint`. Throws
  /// loom::Error naming the checkpoint and the tensor when a required tensor is missing, has the
  /// wrong shape, or the checkpoint holds a tensor the model does not use. Tolerated extras
  /// (tied or derived, ignored): lm_head.weight when tied, model.{encoder,decoder}.embed_tokens
  /// .weight when shared, model.{encoder,decoder}.embed_positions.* (static tables, recomputed:
  /// the stored copies are the same sinusoids).
  /// Memory: float32 tensors of a safetensors checkpoint are used in place (the parameters alias
  /// the read-only file mapping, which stays open while the model lives, also after
  /// `checkpoint` is gone); other dtypes and pytorch_model.bin are converted into float32
  /// copies. Parameters that alias the mapping must not be written (the process would crash);
  /// this model is inference-only, nothing in loom writes them.
  /// With `compute_type` other than float32 the layers are packed as set_compute_type() packs them,
  /// without first building the float32 inference copies (fused attention weights, the [d, V]
  /// vocabulary projection) that packing would drop again: an int8 load of opus-mt-en-zh then
  /// peaks ~140 MiB lower.
  static std::shared_ptr<Seq2SeqModel> load(const io::HfCheckpoint& checkpoint,
                                            nn::WeightType compute_type = nn::WeightType::kFloat32);

  /// Replaces every parameter with the checkpoint's tensor (see load(): aliases of the mapped
  /// float32 bytes, or float32 copies), then, when `prepare_float32`, fuses the attention
  /// projections and builds the [d, V] vocabulary projection (float32 inference's layouts).
  void load_weights(const io::HfCheckpoint& checkpoint, bool prepare_float32 = true);

  const Seq2SeqConfig& config() const { return config_; }

  /// Encoder. input_ids [B, S] int64; attention_mask [B, S] bool (true = token) or undefined for
  /// no padding. Throws loom::Error if S exceeds Marian's max_position_embeddings.
  EncoderOutput encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {}) override;

  /// Decoder + LM head: logits [B, T, V] (+ final_logits_bias when the model has one) for
  /// decoder_input_ids [B, T]. Without a cache the T tokens are the whole decoder input (causal
  /// teacher forcing). With a cache they are the next T tokens after cache->length() already fed
  /// ones; on the first call the cache takes the cross-attention keys/values and mask from
  /// `encoder` (later calls use the cache's own, so reorder() it rather than `encoder`).
  torch::Tensor decode(const torch::Tensor& decoder_input_ids, const EncoderOutput& encoder,
                       DecoderState* cache = nullptr) override;

  /// Fills a fresh state from `encoder`, repeating each source row `repeat` times (beams:
  /// rows b·repeat .. b·repeat+repeat-1 belong to source b).
  void init_state(DecoderState& state, const EncoderOutput& encoder, int64_t repeat = 1) override;

  /// EncoderDecoder properties from config.json: model_type, decoder_vocab_size, pad/eos/
  /// decoder_start ids, max_position_embeddings (source limit; also the decoder limit of Marian,
  /// whose position table is fixed; M2M100's table grows, so its decoder has no limit).
  std::string model_type() const override { return config_.model_type; }
  int64_t target_vocab_size() const override { return config_.decoder_vocab_size; }
  int64_t pad_token_id() const override { return config_.pad_token_id; }
  int64_t eos_token_id() const override { return config_.eos_token_id; }
  int64_t decoder_start_token_id() const override { return config_.decoder_start_token_id; }
  int64_t max_source_positions() const override { return config_.max_position_embeddings; }
  int64_t max_decoder_positions() const override {
    return config_.kind == Seq2SeqConfig::Kind::kMarian ? config_.max_position_embeddings : 0;
  }

  /// See EncoderDecoder::set_compute_type; the vocabulary projection (lm_head + bias) included.
  /// Memory: int8 / bf16 keep no float32 copy of the projections resident — the packed weights
  /// replace the fused attention copies, and the pages of mapped float32 parameters (load())
  /// are released after packing (float32 reads them back from the file when chosen again,
  /// bit for bit). Embedding lookups keep using the float32 table (tied with lm_head), of which
  /// only the looked-up rows become resident again. Parameters that are float32 copies (not
  /// mapped) stay resident.
  void set_compute_type(nn::WeightType type) override;
  nn::WeightType compute_type() const override { return compute_; }

  /// Decoder hidden states -> logits. hidden [B, T, d_model] -> [B, T, V]. With `buffer`, float32
  /// logits are written into it (nn::linear_kn) and the result is a view of it.
  torch::Tensor lm_logits(const torch::Tensor& hidden, torch::Tensor* buffer = nullptr) const;

 private:
  struct EncoderLayer;
  struct DecoderLayer;
  void build();
  void fuse();
  // row_pos [B, T] int64: per-row positions (DecoderState::row_positions), undefined = past + t
  torch::Tensor embed(const torch::Tensor& ids, const torch::Tensor& table, int64_t past, bool decoder,
                      const torch::Tensor& row_pos = {});
  torch::Tensor position_rows(const torch::Tensor& ids, int64_t past, const torch::Tensor& row_pos);  // [B|1, T, d]

  Seq2SeqConfig config_;
  torch::Tensor shared_;                    // model.shared.weight [V, d] (when shared)
  torch::Tensor enc_embed_, dec_embed_;     // embedding tables in use [V_src, d], [V, d]
  torch::Tensor lm_head_;                   // [V, d]
  torch::Tensor final_logits_bias_;         // [1, V] (Marian) or undefined
  std::vector<std::shared_ptr<torch::nn::Module>> enc_layers_, dec_layers_;
  nn::LayerNorm enc_final_ln_{nullptr}, dec_final_ln_{nullptr};  // M2M100 only
  torch::Tensor positions_;                 // [P, d] static sinusoidal table
  std::vector<std::string> tolerated_extra_;
  nn::WeightType compute_ = nn::WeightType::kFloat32;
  nn::PackedLinear lm_head_packed_;         // [V, d] + final_logits_bias, when compute_ is not float32
  torch::Tensor lm_head_kn_;                // [d, V] float32: lm_head_ transposed (faster sgemm layout), see transpose_lm_head
  torch::Tensor lm_bias_kn_;                // [V] final_logits_bias for lm_head_kn_, undefined when all zeros (published Marian)
  // Parameters that alias the mapped checkpoint (load()): data pointer -> bytes. Only these
  // may have their pages released (madvise on anonymous memory would zero it).
  std::unordered_map<const void*, size_t> mapped_;
  // Releases the resident pages of the mapped parameters below `root` (read back on use).
  void transpose_lm_head();  // builds lm_head_kn_ from a memory-mapped float32 lm_head_ (else leaves it undefined)
  void release_pages(const torch::nn::Module& root) const;
};

}  // namespace loom::models
