// Decoder-only language model for long-context experiments: pre-norm blocks with RMSNorm, RoPE,
// GQA, QK-norm and a gated FFN (SwiGLU/GeGLU), tied input/output embeddings, OpenELM layer-wise
// scaling (papers.md §2), DeLighT blocks with block-wise scaling (block "delight", papers.md
// §1.7–1.8; Mehta et al., ICLR 2021), and per-layer attention kinds "standard", "infini" (Infini-attention,
// §3) and "knn" (Memorizing Transformer, §4). A long input is streamed chunk by chunk through an
// explicit DecoderLMState; with Infini-attention (or windowed attention) the state has a
// constant size, so memory does not grow with the input length (except a kNN store, which is
// bounded by its FIFO capacity).
//
// Model directory: config.json ({"model_type": "loom_decoder_lm", ...} = DecoderLMConfig::to_json)
// and model.safetensors (float32 parameters under the names of named_parameters()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "loom/nn/delight.h"
#include "loom/nn/lm_attention.h"
#include "loom/nn/lm_blocks.h"

namespace loom::models {

/// OpenELM's rounding (corenet make_divisible): max(divisor, floor((v + divisor/2) / divisor)·
/// divisor), plus divisor if that is below 0.9·v (papers.md §2.2).
int64_t make_divisible(double v, int64_t divisor);

/// n values linearly spaced from lo to hi, each rounded to 2 decimals (numpy.round: half to even
/// on the binary value), as corenet computes α_i and β_i. n = 1 gives {lo}.
std::vector<double> layerwise_multipliers(double lo, double hi, int64_t n);

/// Derived per-layer shape (papers.md §2.2).
struct LayerShape {
  int64_t n_q;   ///< query heads = make_divisible(α_i·d_model, d_head·gqa_ratio) / d_head
  int64_t n_kv;  ///< key/value heads = n_q / gqa_ratio
  int64_t ffn_dim;  ///< make_divisible(β_i·d_model, ffn_divisor); DeLighT: d_model / delight_ffn_red
  nn::AttentionKind attention;  ///< the layer's attention kind
  int64_t dextra_depth = 0;          ///< DeLighT: GLT layers N^b of the block's DExTra unit (0 otherwise)
  double dextra_width_mult = 0.0;    ///< DeLighT: width multiplier w_m^b
};

/// Configuration of a DecoderLM (the config.json of a model directory). JSON fields (defaults in
/// brackets):
///   vocab_size, n_layers, d_model, d_head            required, >= 1 (d_head even)
///   qkv_multipliers  [1.0]  α: a number (isotropic) or [α_min, α_max] (layer-wise scaling)
///   ffn_multipliers  [4.0]  β: a number or [β_min, β_max]
///   gqa_ratio        [1]    query heads per kv head (corenet num_gqa_groups)
///   ffn_divisor      [256]  FFN widths are rounded to multiples of this
///   ffn_activation   ["swiglu"] or "geglu"
///   qk_norm [true], norm_eps [1e-6], rope_base [10000]
///   attention        ["standard"] kind of every layer: "standard", "infini" or "knn"
///   knn_layers       [[]]   layer indices (negative = from the end, meliad style) made "knn"
///   layer_attention  optional explicit list of n_layers kinds (overrides the two above)
///   local_window     [0]    window of "standard" layers (0 = full causal attention) and of
///                           the kNN local path (0 = one segment, the XL cache of §4.1)
///   segment_len      [2048] Infini segment / kNN subsequence length
///   infini_update ["linear"|"delta"], infini_first_segment ["skip_gate"|"zero_memory"],
///   infini_detach_every [0]
///   knn_memory_size [65536] (0 = memory off), knn_top_k [32], knn_search ["exact"|"faiss_ivf"],
///   knn_faiss_nlist [64], knn_faiss_nprobe [8], knn_temperature_init [1.0], knn_local_rope [false]
///   tie_word_embeddings [true] (only true is supported)
///   block ["standard"] or "delight": DeLighT blocks (papers.md §1.7, pre-norm as the authors' LM):
///     x + attn(DExTra(norm(x))) with one head of width d_o = d_model/2 (n_q = n_kv = 1,
///     d_head = d_o, RoPE and qk_norm as the other blocks; out_proj d_o -> d_model), then
///     x + fc2(silu(fc1(norm(x)))) with fc1 d_model -> d_model / delight_ffn_red (biases). Block i's
///     DExTra depth and width come from block-wise scaling (§1.8) over the n_layers blocks:
///     delight_min_depth [4], delight_max_depth [8], delight_width_mult [2.0],
///     delight_max_groups [0 = 2^ceil(log2(d_model/32)) as the code], delight_ffn_red [4],
///     delight_heads [1] (loom's extension: d_o split into H heads of d_o/H; 1 = the paper).
///     qkv_multipliers, ffn_multipliers, gqa_ratio, ffn_divisor and ffn_activation do not apply;
///     d_head is optional (d_model/2/delight_heads, any other value is an error).
/// Unknown fields are rejected (typos must not pass silently).
struct DecoderLMConfig {
  int64_t vocab_size = 0;   ///< V
  int64_t n_layers = 0;     ///< N
  int64_t d_model = 0;      ///< residual width
  int64_t d_head = 0;       ///< head width (even)
  double qkv_min = 1.0, qkv_max = 1.0;  ///< α range
  double ffn_min = 4.0, ffn_max = 4.0;  ///< β range
  int64_t gqa_ratio = 1;    ///< query heads per kv head
  int64_t ffn_divisor = 256;  ///< FFN width rounding
  nn::GatedActivation ffn_activation = nn::GatedActivation::kSwiGLU;  ///< SwiGLU / GeGLU
  bool qk_norm = true;      ///< per-head RMSNorm of q and k
  double norm_eps = 1e-6;   ///< RMSNorm epsilon
  double rope_base = 10000.0;  ///< RoPE base
  std::vector<nn::AttentionKind> layer_attention;  ///< one per layer (empty = all "standard")
  int64_t local_window = 0;    ///< see AttentionOptions::window
  int64_t segment_len = 2048;  ///< see AttentionOptions::segment_len
  nn::InfiniUpdate infini_update = nn::InfiniUpdate::kLinear;  ///< Infini memory update rule
  nn::InfiniFirstSegment infini_first_segment = nn::InfiniFirstSegment::kSkipGate;  ///< empty-memory rule
  int64_t infini_detach_every = 0;  ///< truncated BPTT period in segments (0 = never)
  nn::KnnMemoryOptions knn_memory;  ///< kNN store size and search
  int64_t knn_top_k = 32;           ///< neighbours per query
  double knn_temperature_init = 1.0;  ///< initial τ
  bool knn_local_rope = false;       ///< RoPE on the kNN layer's local path
  std::string block = "standard";    ///< "standard" (OpenELM/LLaMA block) or "delight"
  int64_t delight_min_depth = 4, delight_max_depth = 8;  ///< N_min, N_max of block-wise scaling
  double delight_width_mult = 2.0;   ///< w_m
  int64_t delight_max_groups = 0;    ///< largest GLT group count (0 = nn::delight_max_groups(d_model))
  int64_t delight_ffn_red = 4;       ///< light FFN reduction r: hidden = d_model / r
  int64_t delight_heads = 1;         ///< attention heads over d_o (1 = the paper's single head)
  bool is_delight() const { return block == "delight"; }
  /// DeLighT: the DExTra unit of block i (d_model -> d_model/2, in_proj d_model/2).
  nn::DExTraSpec dextra_spec(int64_t layer) const;

  /// Parses and validates a config object; `file` names the source in errors. Throws loom::Error
  /// naming the file and the field for a missing required field, a wrong type, an out-of-range
  /// value, an unknown field, or a model_type other than "loom_decoder_lm" (when present).
  static DecoderLMConfig from_json(const nlohmann::json& j, const std::string& file = "config.json");
  /// The config as JSON (with "model_type": "loom_decoder_lm" and an explicit layer_attention).
  nlohmann::json to_json() const;
  /// Checks every value; throws loom::Error naming `file` and the field.
  void validate(const std::string& file = "config.json") const;
  /// Per-layer heads and FFN widths (papers.md §2.2).
  std::vector<LayerShape> layer_shapes() const;
  /// Attention options of layer i (shape from layer_shapes()).
  nn::AttentionOptions attention_options(int64_t layer) const;
  /// Number of parameters of the model this config builds (tied embedding counted once),
  /// computed without building it.
  int64_t parameter_count() const;
  /// The attention kind of layer i ("standard" when layer_attention is empty).
  nn::AttentionKind kind(int64_t layer) const;
};

/// Streaming state of a DecoderLM over B rows: the absolute position of the next token, each
/// row's document start, and one nn::AttentionState per layer (KV/XL caches, Infini (M, z), kNN
/// memory). A fresh state (DecoderLMImpl::initial_state) starts every row at a new document.
/// Copying a state is cheap; the copy shares the kNN stores (shared_ptr, appended to in place
/// when a segment ends) but nothing else (forward() replaces tensors, never writes into them).
struct DecoderLMState {
  int64_t position = 0;        ///< absolute position of the next token (shared by all rows)
  torch::Tensor doc_start;     ///< [B] int64 first position of each row's current document
  std::vector<nn::AttentionState> layers;
  /// Cuts autograd history (truncated BPTT between training chunks).
  void detach();
  /// Bytes held by all layer states.
  int64_t nbytes() const;
  int64_t batch() const { return doc_start.size(0); }
};

/// One pre-norm block: x + attn(RMSNorm(x)), then + ffn(RMSNorm(·)) (papers.md §2.3).
/// Parameters: attn_norm.weight, attn.*, ffn_norm.weight, ffn.proj_1, ffn.proj_2.
/// DeLighT block (papers.md §1.7, pre-norm): x + attn(dextra(RMSNorm(x))), then
/// + fc2(silu(fc1(RMSNorm(·)))). Parameters: attn_norm.weight, dextra.*, attn.*,
/// ffn_norm.weight, fc1.{weight,bias} [h, d_model]/[h], fc2.{weight,bias} [d_model, h]/[d_model].
class DecoderBlockImpl : public torch::nn::Module {
 public:
  /// One block with the given attention, FFN width, activation and RMSNorm epsilon.
  DecoderBlockImpl(const nn::AttentionOptions& attn, int64_t ffn_dim, nn::GatedActivation act, double eps);
  /// A DeLighT block: DExTra unit `dextra` (d_model -> d_o), attention `attn` with d_model = d_o
  /// and d_out = the residual width, light FFN with `ffn_hidden` units, RMSNorm epsilon `eps`.
  DecoderBlockImpl(const nn::AttentionOptions& attn, const nn::DExTraSpec& dextra, int64_t ffn_hidden, double eps);
  /// x [B, T, d_model] -> [B, T, d_model]; see nn::LMAttentionImpl::forward.
  torch::Tensor forward(const torch::Tensor& x, int64_t pos0, const torch::Tensor& doc_start,
                        nn::AttentionState& state);
  nn::RMSNorm attn_norm{nullptr}, ffn_norm{nullptr};  ///< pre-norms
  nn::LMAttention attn{nullptr};                      ///< standard / infini / knn
  nn::GatedFeedForward ffn{nullptr};                  ///< SwiGLU / GeGLU (standard blocks)
  nn::DExTraUnit dextra{nullptr};                     ///< DeLighT blocks: d_model -> d_o
  nn::Linear fc1{nullptr}, fc2{nullptr};              ///< DeLighT blocks: light FFN
};
TORCH_MODULE(DecoderBlock);

/// The language model. Parameters: "embed" [V, d_model] (tied output projection),
/// "layers.<i>.*" (DecoderBlock), "norm.weight" [d_model] (final RMSNorm).
class DecoderLMImpl : public torch::nn::Module {
 public:
  /// Builds the model with OpenELM's initialisation (papers.md §2.3): every projection and the
  /// embedding ~ N(0, fan_in^-1/2), out_proj and ffn.proj_2 ~ N(0, d_model^-1/2·(2N)^-1/2),
  /// norms 1, gates 0, temperatures knn_temperature_init; DeLighT blocks: fc1 like proj_1, fc2
  /// like proj_2, biases 0, DExTra weights xavier-uniform as dextra_unit.py (torch's fans of the
  /// 2-D/3-D weight); deterministic in `seed` (torch's global generator is not touched).
  /// Validates the config first (loom::Error).
  explicit DecoderLMImpl(const DecoderLMConfig& config, uint64_t seed = 0);

  /// A fresh state for `batch` rows (position 0, every row at a new document).
  DecoderLMState initial_state(int64_t batch) const;

  /// Logits [B, T, V] for ids [B, T] (int64) processed as one whole input from position 0.
  torch::Tensor forward(const torch::Tensor& ids);

  /// Logits [B, T, V] for the next T tokens ids [B, T] of the stream held in `state` (created by
  /// initial_state(B)), which is updated in place (position += T). new_document [B] bool
  /// (optional): rows that start a new document with this chunk; their memories are cleared and
  /// earlier tokens become invisible to them (the other rows are untouched). Feeding a long input
  /// in chunks of any size gives the same logits as one call (up to float rounding). Throws
  /// loom::Error when ids is not [B, T] int64 with B = state.batch(), or holds an id outside
  /// [0, V).
  torch::Tensor forward(const torch::Tensor& ids, DecoderLMState& state,
                        const torch::Tensor& new_document = {});

  /// Final hidden states [B, T, d_model] (after the last RMSNorm) instead of logits; same
  /// arguments and state handling as forward().
  torch::Tensor hidden(const torch::Tensor& ids, DecoderLMState& state,
                       const torch::Tensor& new_document = {});

  /// Number of parameters (tied embedding once); equals config.parameter_count().
  int64_t parameter_count() const;

  /// sigmoid(gate) per layer for "infini"/"knn" layers ([n_q] each; undefined for "standard").
  std::vector<torch::Tensor> memory_gates() const;

  /// Writes dir/config.json and dir/model.safetensors (float32; creates dir). Throws loom::Error
  /// on I/O failure.
  void save(const std::string& dir) const;

  /// The configuration (layer_attention filled in).
  const DecoderLMConfig& config() const { return config_; }

  torch::Tensor embed;                    ///< [V, d_model], also the output projection
  torch::nn::ModuleList layers{nullptr};  ///< N DecoderBlocks
  nn::RMSNorm norm{nullptr};              ///< final RMSNorm

 private:
  DecoderLMConfig config_;
  std::vector<DecoderBlock> blocks_;
};
TORCH_MODULE(DecoderLM);

/// Loads a model directory written by DecoderLMImpl::save. Throws loom::Error naming the file and
/// field/tensor for a bad config, a missing or extra tensor, or a shape mismatch.
DecoderLM load_decoder_lm(const std::string& dir);

/// Copies into `model` the weights of a model directory (written by DecoderLMImpl::save) or of a
/// `loom train lm` run directory (its model/ subdirectory), by parameter name: every parameter
/// of `model` must be there with the same shape and the source may hold no other tensor. Only
/// the weights are read, so a run can start from another run's weights with a changed config
/// (kNN memory size, windows, ...; `loom train lm --init-from`, the Memorizing Transformer's
/// small-memory pre-training then large-memory fine-tuning, papers.md §4.3). Returns the model
/// directory read. Throws loom::Error naming the weights file and the tensor for a missing,
/// extra or differently shaped tensor, or naming `dir` when it is neither kind of directory.
std::string init_decoder_lm_from(DecoderLMImpl& model, const std::string& dir);

/// OpenELM's released configurations (papers.md §2.2) by name: "openelm-270m", "openelm-450m",
/// "openelm-1.1b", "openelm-3b" (32,128-token vocabulary, GQA ratio 4, α 0.5→1.0, β 0.5→4.0,
/// SwiGLU, QK-norm). Throws loom::Error for another name.
DecoderLMConfig openelm_config(const std::string& name);

}  // namespace loom::models
