// loom's own encoder-decoder translation models, trainable in libtorch and served through the
// same EncoderDecoder interface as the Hugging Face models:
//   architecture "transformer": Vaswani et al. 2017 ("Attention Is All You Need"), fairseq's
//     transformer layout (post-norm or pre-norm, sinusoidal positions, tied output projection);
//   architecture "delight": DeLighT (Mehta et al., ICLR 2021), built from nn/delight.h
//     (papers.md §1, following the authors' fairseq code where it differs from the paper).
//
// loom model directory (model_type "loom_seq2seq"):
//   config.json        NativeSeq2SeqConfig::to_json() — "model_type": "loom_seq2seq",
//                      "architecture", hyper-parameters, "vocab_size" (+ "target_vocab_size"
//                      when not shared), "shared_vocab", pad_token_id 0, unk_token_id 1,
//                      bos_token_id 2 (= decoder_start_token_id), eos_token_id 3
//   generation_config.json  decoding defaults for `loom translate` (beam, max_length, ids)
//   model.safetensors  named_parameters() of NativeSeq2Seq, float32 or float16 (loaded as float32)
//   source.spm, target.spm  SentencePiece models (identical copies when shared_vocab)
//   README.md          model card
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "loom/models/encoder_decoder.h"
#include "loom/nn/layers.h"

namespace loom::io {
class HfCheckpoint;
}

namespace loom::models {

/// DeLighT hyper-parameters (config.json keys are the fairseq argument names of the authors'
/// delight_transformer.py with '_' for '-', prefixed "delight_"; papers.md §1.8, §1.9, §1.11).
struct DelightSettings {
  int64_t emb_map_dim = 128;       ///< delight_emb_map_dim: look-up table width (map space of the output too)
  int64_t emb_depth = 4;           ///< delight_emb_depth: GLT layers of the embedding DExTra unit (the code uses N_min)
  double emb_width_mult = 2.0;     ///< delight_emb_width_mult
  int64_t emb_max_groups = 0;      ///< delight_emb_max_groups; 0 = 2^ceil(log2(d_m/32)) as the code
  double emb_dropout = 0.1;        ///< delight_emb_dropout: recurrent dropout after the scaled look-up
  double pe_dropout = 0.1;         ///< pe_dropout: recurrent dropout after adding positions
  int64_t enc_min_depth = 4, enc_max_depth = 8;  ///< delight_enc_{min,max}_depth (N_min, N_max)
  int64_t enc_blocks = 8;          ///< delight_enc_layers: blocks B (shipped configs: = N_max)
  double enc_width_mult = 2.0;     ///< delight_enc_width_mult (w_m)
  int64_t enc_max_groups = 0;      ///< delight_enc_max_groups; 0 = 2^ceil(log2(d_m/32))
  int64_t enc_ffn_red = 4;         ///< delight_enc_ffn_red: light FFN hidden = d_m / r
  int64_t dec_min_depth = 4, dec_max_depth = 8;  ///< delight_dec_{min,max}_depth
  int64_t dec_blocks = 8;          ///< delight_dec_layers
  double dec_width_mult = 2.0;     ///< delight_dec_width_mult
  int64_t dec_max_groups = 0;      ///< delight_dec_max_groups
  int64_t dec_ffn_red = 4;         ///< delight_dec_ffn_red
  double delight_dropout = 0.0;    ///< delight_dropout: inside every DExTra layer
  double ffn_dropout = 0.1;        ///< ffn_dropout: on the light FFN output before the residual
};

/// Hyper-parameters of a NativeSeq2Seq (config.json of a loom model directory).
struct NativeSeq2SeqConfig {
  /// config.json "model_type" of loom models.
  static constexpr const char* kModelType = "loom_seq2seq";
  std::string architecture = "transformer";  ///< "transformer" or "delight"
  int64_t d_model = 512;                     ///< d_m
  int64_t encoder_layers = 6, decoder_layers = 6;  ///< transformer only (DeLighT: delight.enc_blocks/dec_blocks)
  int64_t encoder_attention_heads = 8, decoder_attention_heads = 8;  ///< transformer only
  int64_t encoder_ffn_dim = 2048, decoder_ffn_dim = 2048;            ///< transformer only
  std::string activation_function = "relu";  ///< ACT2FN name; DeLighT default "swish"
  nn::Activation activation = nn::Activation::kRelu;
  bool normalize_before = false;             ///< pre-norm (+ final LayerNorm per stack) vs post-norm
  double dropout = 0.1;                      ///< residual / embedding dropout (fairseq dropout)
  double attention_dropout = 0.0;            ///< on attention probabilities
  double activation_dropout = 0.0;           ///< after the FFN activation
  bool shared_vocab = true;                  ///< one vocabulary and one embedding table for both sides
  int64_t vocab_size = 0;                    ///< source (and shared) vocabulary V_src
  int64_t target_vocab_size = 0;             ///< target vocabulary V (= vocab_size when shared)
  bool tie_word_embeddings = true;           ///< output projection = decoder embedding table
  bool scale_embedding = true;               ///< transformer: embeddings × sqrt(d_model)
  int64_t max_source_positions = 1024;       ///< Translator's source length limit
  int64_t max_target_positions = 1024;       ///< generation_config max_length written by save_native_model
  int64_t pad_token_id = 0, unk_token_id = 1, bos_token_id = 2, eos_token_id = 3;
  int64_t decoder_start_token_id = 2;        ///< = bos_token_id
  double layer_norm_eps = 1e-5;
  DelightSettings delight;                   ///< architecture "delight" only
  /// Keys of config.json that loom does not interpret (e.g. "source_lang", "target_lang" written
  /// by the trainer): kept as they are and written back by to_json().
  nlohmann::json extra = nlohmann::json::object();

  /// Parses and validates a loom config.json (`path` names it in errors). Keys loom does not
  /// know go to `extra` unchanged (keys of the other architecture are dropped); missing keys take the defaults above, except vocab_size (and target_vocab_size
  /// when shared_vocab is false), which are required. Throws loom::Error naming `path` and the
  /// field for a wrong type, a non-positive size, a probability outside [0, 1), d_model not
  /// divisible by the heads, an unknown architecture or activation, model_type other than
  /// "loom_seq2seq", token ids outside the vocabulary, or DeLighT depths with min > max.
  static NativeSeq2SeqConfig from_json(const nlohmann::json& config, const std::string& path = "config.json");
  /// The config.json object (every field of the architecture, model_type and `extra` included);
  /// from_json(to_json()) == *this.
  nlohmann::json to_json() const;
  bool is_delight() const { return architecture == "delight"; }
};

/// loom's trainable encoder-decoder (Transformer or DeLighT). Parameters are created with
/// fairseq's initialisation and requires_grad = true. Training: forward() in train() mode
/// (dropout on). Inference: encode/decode/init_state (EncoderDecoder), gradients off, KV cache;
/// call eval() first (dropout follows the module mode). One model may serve several threads only
/// if they do not call encode/decode/forward concurrently (the position table grows lazily).
/// Parameter names (named_parameters(), the safetensors names), transformer:
///   encoder.embed_tokens.weight [V_src, d] (shared: also the decoder's table),
///   decoder.embed_tokens.weight [V, d] (separate vocabularies only),
///   {encoder,decoder}.layers.<i>.{self_attn,encoder_attn}.{q,k,v,out}_proj.{weight,bias},
///   ...{self_attn,encoder_attn,final}_layer_norm.{weight,bias}, ...fc1/fc2.{weight,bias},
///   {encoder,decoder}.layer_norm.{weight,bias} (pre-norm only),
///   decoder.output_projection.weight [V, d] (untied only).
/// DeLighT (nn/delight.h modules): encoder.embed_tokens.weight [V_src, map_dim] (the look-up
///   table; shared: the only embedding table), {encoder,decoder}.embed_dextra.* (DExTra
///   embedding unit map_dim -> d_m, one per side even when the table is shared, as the authors'
///   code), {encoder,decoder}.layers.<i>.dextra_layer.{input_layer,glt.<l>,output_layer}.*,
///   ...self_attn.{qkv_proj,out_proj}.*, decoder ...encoder_attn.{q_proj,kv_proj,out_proj}.*,
///   ...fc1/fc2.*, ...{self_attn,encoder_attn,final}_layer_norm.*, decoder.output_map.weight
///   [map_dim, d_m] (only when d_m != map_dim; logits = output_map(h)·tableᵀ).
class NativeSeq2Seq : public torch::nn::Module, public EncoderDecoder {
 public:
  /// A freshly initialised model. Throws loom::Error for an invalid config (same checks as
  /// from_json).
  explicit NativeSeq2Seq(NativeSeq2SeqConfig config);
  NativeSeq2Seq(const NativeSeq2Seq&) = delete;  // blocks refer to config_
  NativeSeq2Seq& operator=(const NativeSeq2Seq&) = delete;

  /// Loads a loom model directory: config.json + model.safetensors (float32 or float16). Throws
  /// loom::Error naming the file and tensor for a missing tensor, a shape that config.json does
  /// not imply, or a tensor the model does not have. The model is in eval() mode.
  static std::shared_ptr<NativeSeq2Seq> load(const io::HfCheckpoint& checkpoint);
  /// Same, opening `dir` first.
  static std::shared_ptr<NativeSeq2Seq> load(const std::string& dir);

  const NativeSeq2SeqConfig& config() const { return config_; }

  /// Training entry point (teacher forcing). src_ids [B, S] int64, src_mask [B, S] bool
  /// (true = token; undefined = no padding), tgt_in [B, T] int64 (decoder input: bos + target
  /// shifted right; pad positions are masked as keys). Returns logits [B, T, V] float32 with
  /// autograd; dropout applies when is_training(). Throws loom::Error for ids outside the
  /// vocabularies.
  torch::Tensor forward(const torch::Tensor& src_ids, const torch::Tensor& src_mask, const torch::Tensor& tgt_in);

  /// Encoder hidden states [B, S, d] with autograd (forward()'s first half).
  torch::Tensor encode_hidden(const torch::Tensor& src_ids, const torch::Tensor& src_mask);

  /// EncoderDecoder::encode: input_ids [B, S] int64, attention_mask [B, S] bool or undefined ->
  /// hidden [B, S, d_model] (no gradients, dropout only if the model is in train mode).
  EncoderOutput encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {}) override;
  /// EncoderDecoder::decode: decoder_input_ids [B, T] -> logits [B, T, V], with the KV cache in
  /// `state` (one head of d_m/2 for DeLighT). Equals forward() in eval mode (tested).
  torch::Tensor decode(const torch::Tensor& decoder_input_ids, const EncoderOutput& encoder,
                       DecoderState* state = nullptr) override;
  /// EncoderDecoder::init_state: cross-attention keys/values of every decoder block.
  void init_state(DecoderState& state, const EncoderOutput& encoder, int64_t repeat = 1) override;

  /// EncoderDecoder properties: "loom_seq2seq", V, token ids and max_source_positions from the
  /// config; the decoder has no position limit (the sinusoid table grows).
  std::string model_type() const override { return NativeSeq2SeqConfig::kModelType; }
  int64_t target_vocab_size() const override { return config_.target_vocab_size; }
  int64_t pad_token_id() const override { return config_.pad_token_id; }
  int64_t eos_token_id() const override { return config_.eos_token_id; }
  int64_t decoder_start_token_id() const override { return config_.decoder_start_token_id; }
  int64_t max_source_positions() const override { return config_.max_source_positions; }

  /// Switches train/eval mode; entering training drops the fused attention weights (they would
  /// go stale when the optimizer updates the parameters). eval() keeps the unfused path.
  void train(bool on = true) override;
  /// See EncoderDecoder::set_compute_type (inference only; DeLighT's group linear transforms stay
  /// float32). The output projection follows bfloat16 but stays float32 for int8: its int8
  /// rounding changed the greedy choice where the top two logits are close (on the held-out
  /// Tatoeba test of models/en-zh, 95.7 % identical to float32 with it in float32, 94.5 % in
  /// int8; docs/benchmarks.md), and its float32 weight (the tied embedding table or the output
  /// matrix) stays resident here anyway, so this costs no memory. Hugging Face's LLM.int8()
  /// integration (bitsandbytes) likewise leaves the output head (lm_head) unquantized.
  void set_compute_type(nn::WeightType type) override;
  nn::WeightType compute_type() const override { return compute_; }
  /// Builds fused QKV weights for faster inference; call only once the parameters are final
  /// (load() does).
  void fuse();

  /// Parameter count: total, embeddings (look-up tables; untied output projection counted
  /// separately in `output`), and per encoder / decoder block (named_parameters() grouped by
  /// "encoder.layers.<i>." / "decoder.layers.<i>."). `other` is the rest (DeLighT embedding
  /// units, output map layer, final LayerNorms).
  struct ParameterCounts {
    int64_t total = 0;       ///< every parameter (shared tensors once)
    int64_t embeddings = 0;  ///< token look-up tables ("embed_tokens.")
    int64_t output = 0;      ///< untied output projection
    int64_t other = 0;       ///< DeLighT embedding units and output map, final LayerNorms
    std::vector<int64_t> encoder_blocks, decoder_blocks;  ///< per block
  };
  /// Counts named_parameters() into ParameterCounts (models::native_model_info computes the same
  /// from the config alone).
  ParameterCounts parameter_counts() const;

 private:
  struct Impl;
  // row_pos [B, T] int64: per-row positions (DecoderState::row_positions), undefined = past + t
  torch::Tensor embed(const torch::Tensor& ids, bool decoder, int64_t past, const torch::Tensor& row_pos = {});  // [B, T, d]
  torch::Tensor run_encoder(const torch::Tensor& ids, const torch::Tensor& keep);  // [B, S, d]
  torch::Tensor run_decoder(const torch::Tensor& ids, const torch::Tensor& memory, const torch::Tensor& memory_keep,
                            DecoderState* state);  // logits [B, T, V]
  torch::Tensor positions(int64_t past, int64_t t, int64_t dim);  // [T, dim]

  NativeSeq2SeqConfig config_;
  std::shared_ptr<Impl> impl_;
  torch::Tensor position_table_;  // [P, d] sinusoids, grown on demand
  nn::WeightType compute_ = nn::WeightType::kFloat32;
  nn::PackedLinear output_packed_;  // [V, e] output projection when compute_ is not float32
};

/// How save_native_model writes a model directory.
struct SaveOptions {
  bool float16 = false;           ///< store the weights as F16 (half the size); loaded back as float32
  std::string source_spm;         ///< path of the source SentencePiece model to copy as source.spm ("" = leave)
  std::string target_spm;         ///< path of the target model to copy as target.spm ("" = source_spm when shared)
  std::string readme;             ///< README.md model card text ("" = a generated card)
  nlohmann::json generation;      ///< extra/overriding generation_config.json fields (e.g. num_beams)
  nlohmann::json metadata;        ///< extra string fields for the safetensors "__metadata__"
};

/// Writes `model` as a loom model directory `dir` (created if needed): config.json,
/// generation_config.json (num_beams 4, max_length = max_target_positions, the token ids,
/// overridden by options.generation), model.safetensors, source.spm / target.spm (copied when
/// given), README.md. Every file is written to a temporary name in `dir` and renamed, so a
/// reader never sees a half-written file. Throws loom::Error naming the file on I/O failure or
/// a missing tokenizer file.
void save_native_model(const NativeSeq2Seq& model, const std::string& dir, const SaveOptions& options = {});

}  // namespace loom::models
