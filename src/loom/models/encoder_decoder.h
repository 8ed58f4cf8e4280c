// The abstract encoder-decoder translation model used by generate/ and the translate pipeline:
// encode once, then decode step by step with a KV cache. Implemented by the Hugging Face models
// (models::Seq2SeqModel: Marian, M2M100/NLLB) and loom's own models (models::NativeSeq2Seq:
// Transformer, DeLighT). load_encoder_decoder() picks the implementation from config.json.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "loom/nn/attention.h"
#include "loom/nn/packed_linear.h"

namespace loom::io {
class HfCheckpoint;
}

namespace loom::models {

/// Encoder result: hidden states and the source keep-mask.
struct EncoderOutput {
  torch::Tensor hidden;  ///< [B, S, d_model] float32 (last layer, after a final LayerNorm if the model has one)
  torch::Tensor mask;    ///< [B, S] bool, true = real token
};

/// Incremental decoding state: the self-attention KV cache of every decoder layer, the
/// cross-attention keys/values of the source (computed once) and the source mask, one row per
/// hypothesis being decoded. Created empty; EncoderDecoder::init_state (or the first decode)
/// fills it. The layer accessors are for EncoderDecoder implementations.
class DecoderState {
 public:
  /// Rows (sentences × beams) currently held; 0 before the first decode.
  int64_t rows() const { return rows_; }
  /// Decoder positions already fed (the "past length").
  int64_t length() const { return length_; }
  bool initialized() const { return rows_ > 0; }
  /// Expected final decoder length, so the KV buffers are allocated once (growth still works).
  void reserve(int64_t capacity) { capacity_hint_ = capacity; }
  /// General row selection: new row r = old row index[r] for the self-attention caches and the
  /// rows' source entries. index [R'] int64 (R' may be smaller: finished rows are dropped). The
  /// source keys/values are compacted once a quarter of them is no longer read by any row, so
  /// finished sentences' memory is released without copying on every finish.
  void reorder(const torch::Tensor& index);
  /// Beam reordering inside sentences: like reorder() but leaves the cross-attention memory as
  /// is, which is valid only when old row index[r] and row r attend to the same source.
  void reorder_self(const torch::Tensor& index);
  /// Continuous batching: appends the rows of `fresh` (a state just filled by init_state, so
  /// fresh.length() == 0) after this state's rows, while this state may already be decoding.
  /// The new rows' self-attention caches are length() masked positions (their row offset, see
  /// row_offsets()), their first token takes decoder position 0; the cross-attention
  /// keys/values of both are padded to the longer source and the padding masked. An
  /// uninitialised state simply becomes `fresh`. Throws loom::Error when fresh has fed tokens
  /// or its layers differ.
  void append(DecoderState&& fresh);
  /// Per-row count of leading cache positions that are not the row's own (rows appended after
  /// decoding started): [R] int64, or undefined when every row started at position 0 (the
  /// one-shot path, bit for bit the state without append). reorder() drops the leading
  /// positions no remaining row uses.
  const torch::Tensor& row_offsets() const { return offsets_; }
  /// (Implementations) Decoder positions of the next T tokens per row, [R, T] int64:
  /// length() - row offset + 0..T-1. Undefined when row_offsets() is (position = length() + t).
  torch::Tensor row_positions(int64_t t) const;
  /// (Implementations) Additive self-attention mask for T new tokens: undefined (T = 1, no row
  /// offsets), causal [T, length()+T], or [R, 1, T, length()+T] masking each row's leading
  /// offset positions as well.
  torch::Tensor self_mask(int64_t t) const;

  /// (Implementations) Starts a fresh state: `cross_kv` holds per decoder layer the source keys
  /// and values {k, v}, each [B, H, S, d_head]; `keep` [B, S] bool is the source keep-mask (or
  /// undefined). Every source is decoded by `repeat` rows (rows b·repeat .. b·repeat+repeat-1
  /// belong to source b and share its keys/values), so rows() becomes B·repeat and length() 0.
  void reset(std::vector<std::pair<torch::Tensor, torch::Tensor>> cross_kv, const torch::Tensor& keep,
             int64_t repeat);
  /// (Implementations) Self-attention cache of decoder layer i.
  nn::KVCache& self_cache(size_t i) { return self_.at(i); }
  /// (Implementations) Cross-attention keys / values of layer i, one entry per source (not per
  /// row: the beams of a sentence share them), [B_src, H, S, d_head]; row r reads entry
  /// cross_rows()[r].
  const torch::Tensor& cross_k(size_t i) const { return cross_k_.at(i); }
  const torch::Tensor& cross_v(size_t i) const { return cross_v_.at(i); }
  /// (Implementations) Additive source mask [B_src, 1, 1, S] (indexed like cross_k), undefined
  /// when no source is padded.
  const torch::Tensor& memory_mask() const { return memory_mask_; }
  /// (Implementations) Source entry of each row, [R] int64 (pass as nn::attention's kv_rows), or
  /// undefined when row r reads entry r.
  const torch::Tensor& cross_rows() const { return cross_rows_; }
  /// (Implementations) Capacity to allocate for T new positions: max(reserve(), length() + T).
  int64_t capacity_for(int64_t t) const { return std::max<int64_t>(capacity_hint_, length_ + t); }
  /// (Implementations) Records that T more positions were fed.
  void advance(int64_t t) { length_ += t; }
  /// Lets decode() with this state return logits that live in a buffer the state keeps, which
  /// the next decode with this state overwrites (generate/StepwiseSearch consumes each step's
  /// logits before the next step). Saves a fresh [R, V] tensor per step: above glibc's 32 MiB
  /// mmap threshold (e.g. 256 rows × 65,001 × 4 bytes = 66 MB at beam 4, batch 64) every step's
  /// logits would be new pages faulted in and zeroed by the kernel. Off by default.
  void set_reuse_logits(bool on) { reuse_logits_ = on; }
  /// (Implementations) The buffer to write logits into, or nullptr when reuse is off.
  torch::Tensor* logits_buffer() { return reuse_logits_ ? &logits_buffer_ : nullptr; }

 private:
  std::vector<nn::KVCache> self_;                    // per decoder layer
  std::vector<torch::Tensor> cross_k_, cross_v_;     // per layer [B_src, H, S, dh]
  torch::Tensor memory_mask_;                        // [B_src, 1, 1, S] additive, undefined = no padding
  torch::Tensor cross_rows_;                         // [R] int64 source entry per row, undefined = identity
  torch::Tensor offsets_;                            // [R] int64, undefined = all 0
  int64_t rows_ = 0;
  int64_t length_ = 0;
  int64_t capacity_hint_ = 0;
  bool reuse_logits_ = false;
  torch::Tensor logits_buffer_;  // decode()'s logits when reuse_logits_ (any shape; grown as needed)
};

/// An encoder-decoder model as generate() and Translator see it (inference; float32 unless
/// set_compute_type() chose int8 / bfloat16). encode and decode switch gradients off themselves.
class EncoderDecoder {
 public:
  virtual ~EncoderDecoder() = default;

  /// Encoder. input_ids [B, S] int64; attention_mask [B, S] bool (true = token) or undefined for
  /// no padding. Throws loom::Error for token ids outside the source vocabulary or a source
  /// longer than the model's positions (where the model has a limit).
  virtual EncoderOutput encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {}) = 0;

  /// Decoder + output layer: logits [B, T, V] for decoder_input_ids [B, T]. Without a state the
  /// T tokens are the whole decoder input (causal teacher forcing). With a state they are the
  /// next T tokens after state->length() already fed ones; an uninitialised state is first
  /// filled from `encoder` (later calls use the state's own memory, so reorder() the state).
  virtual torch::Tensor decode(const torch::Tensor& decoder_input_ids, const EncoderOutput& encoder,
                               DecoderState* state = nullptr) = 0;

  /// Fills a fresh state from `encoder`, repeating each source row `repeat` times (beams:
  /// rows b·repeat .. b·repeat+repeat-1 belong to source b).
  virtual void init_state(DecoderState& state, const EncoderOutput& encoder, int64_t repeat = 1) = 0;

  /// Precision of the linear layers (attention projections, feed-forward, vocabulary
  /// projection) for inference: float32 (the default, exactly the float32 path), int8 (weights
  /// and activations quantized in blocks of 32 input features, activations on the fly, exact
  /// integer block sums by oneDNN's u8·s8 GEMM; NativeSeq2Seq keeps its output projection in
  /// float32) or
  /// bfloat16 (bf16 weights and activations, float32 accumulation) — nn::PackedLinear with
  /// Activations::kLowPrecision. Weights are converted now; embeddings, LayerNorms and attention
  /// scores stay float32. Not for training (packed layers have no gradients).
  virtual void set_compute_type(nn::WeightType type) = 0;
  virtual nn::WeightType compute_type() const = 0;

  /// config.json "model_type" ("marian", "m2m_100", "loom_seq2seq").
  virtual std::string model_type() const = 0;
  /// Target vocabulary size V (the logits' last dim).
  virtual int64_t target_vocab_size() const = 0;
  virtual int64_t pad_token_id() const = 0;
  virtual int64_t eos_token_id() const = 0;
  virtual int64_t decoder_start_token_id() const = 0;
  /// Longest source (tokens, specials included) the model is meant to encode; Translator splits
  /// longer sentences.
  virtual int64_t max_source_positions() const = 0;
  /// Most decoder positions the model can feed (Marian's fixed table), or 0 for no limit.
  virtual int64_t max_decoder_positions() const { return 0; }
};

/// Loads the model in `dir` (config.json + weights), dispatching on config.json "model_type":
/// "loom_seq2seq" -> NativeSeq2Seq (loom model directory, see native_seq2seq.h), "marian" /
/// "m2m_100" -> Seq2SeqModel. Throws loom::Error naming the file/tensor when the directory,
/// config or weights are invalid, or the model_type is unknown. `compute_type`: see
/// EncoderDecoder::set_compute_type.
std::shared_ptr<EncoderDecoder> load_encoder_decoder(const std::string& dir,
                                                     nn::WeightType compute_type = nn::WeightType::kFloat32);

/// The same on an already opened checkpoint directory.
std::shared_ptr<EncoderDecoder> load_encoder_decoder(const io::HfCheckpoint& checkpoint,
                                                     nn::WeightType compute_type = nn::WeightType::kFloat32);

}  // namespace loom::models
