// Decoder-only language models from Hugging Face checkpoints: GemmaForCausalLM,
// Gemma2ForCausalLM, Gemma3ForCausalLM (text), LlamaForCausalLM, Qwen2ForCausalLM,
// MistralForCausalLM. One forward pass serves them all; the families differ only in the
// config fields parsed from config.json (one parse function per family, below) and the
// checkpoint names they require.
//
// Reference implementation whose numbers this matches: transformers 4.46.3 modeling_gemma.py,
// modeling_gemma2.py, modeling_llama.py, modeling_qwen2.py, modeling_mistral.py (eager
// attention, float32); Gemma3 text follows transformers 4.50 modeling_gemma3.py.
// Parity with HF is tested on tests/data/hf-tiny/gemma and gemma2 (reference.json).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace loom::io {
class HfCheckpoint;
}

namespace loom::models {

/// The supported HF model families (config.json "model_type").
enum class CausalFamily { kGemma, kGemma2, kGemma3, kLlama, kQwen2, kMistral };

/// The config.json model_type spelling of a family ("gemma", "gemma2", "gemma3_text", "llama",
/// "qwen2", "mistral").
const char* family_name(CausalFamily f);

/// RoPE frequency scaling (config.json "rope_scaling"; HF modeling_rope_utils.py).
struct RopeScaling {
  enum class Kind { kNone, kLinear, kLlama3 } kind = Kind::kNone;
  double factor = 1.0;                    ///< linear: positions / factor; llama3: low-freq divisor
  double low_freq_factor = 1.0;           ///< llama3 only
  double high_freq_factor = 4.0;          ///< llama3 only
  int64_t original_max_position = 8192;   ///< llama3 only ("original_max_position_embeddings")
};

/// Everything the forward pass needs, normalised across families. Filled by
/// parse_causal_lm_config from config.json; each field names its config.json source.
struct CausalLmConfig {
  CausalFamily family = CausalFamily::kLlama;
  int64_t vocab_size = 0;           ///< "vocab_size" (V)
  int64_t hidden_size = 0;          ///< "hidden_size" (d_model)
  int64_t intermediate_size = 0;    ///< "intermediate_size" (FFN width)
  int64_t num_layers = 0;           ///< "num_hidden_layers"
  int64_t num_heads = 0;            ///< "num_attention_heads" (H)
  int64_t num_kv_heads = 0;         ///< "num_key_value_heads" (H_kv; default H)
  int64_t head_dim = 0;             ///< "head_dim" (default d_model / H)
  int64_t max_position = 0;         ///< "max_position_embeddings": the context window
  double rms_norm_eps = 1e-6;       ///< "rms_norm_eps"
  double rope_theta = 10000.0;      ///< "rope_theta" (global layers)
  double rope_local_theta = 10000.0;  ///< Gemma3 "rope_local_base_freq" (sliding layers)
  RopeScaling rope_scaling;         ///< "rope_scaling" (Gemma3: global layers only)
  /// FFN activation: "gelu_pytorch_tanh" (Gemma: "hidden_activation", hidden_act ignored as HF
  /// 4.46 does) or "silu" (Llama family: "hidden_act").
  std::string activation = "silu";
  bool norm_plus_one = false;       ///< Gemma RMSNorm scales by (1 + w) instead of w
  bool scale_embeddings = false;    ///< Gemma: embeddings × sqrt(d_model)
  bool sandwich_norms = false;      ///< Gemma2/3: post-attention, pre/post-FFN norms
  bool qk_norm = false;             ///< Gemma3: RMSNorm on q and k per head
  bool qkv_bias = false;            ///< Qwen2 (always), Llama "attention_bias" (also o_proj)
  bool o_bias = false;              ///< Llama "attention_bias"
  double attn_scale = 0.0;          ///< score scale: head_dim^-0.5, or query_pre_attn_scalar^-0.5
  double attn_softcap = 0.0;        ///< Gemma2 "attn_logit_softcapping" (0 = off)
  double final_softcap = 0.0;       ///< "final_logit_softcapping" (0 = off)
  int64_t sliding_window = 0;       ///< "sliding_window" for the layers marked sliding
  std::vector<bool> layer_sliding;  ///< per layer: sliding-window attention
  bool tie_word_embeddings = true;  ///< "tie_word_embeddings" (family default as in HF)
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;  ///< -1 = absent
};

/// Parses config.json of one of the families (dispatch on "model_type"). `file` names the file
/// in errors. Throws loom::Error naming file and field for an unknown or missing model_type
/// (the multimodal "gemma3" included), a missing required field, a value of the wrong type or
/// an unsupported value (rope_scaling type other than linear/llama3, an activation other than
/// gelu_pytorch_tanh/gelu_new/silu, heads not divisible by kv heads, ...).
CausalLmConfig parse_causal_lm_config(const nlohmann::json& config, const std::string& file);

/// True when config.json's model_type is one of the families above (not loom's own DecoderLM).
bool is_hf_causal_lm(const nlohmann::json& config);

/// Key/value cache of one batch of sequences, owned by the caller (one per Sequence or batch).
/// Per layer k, v [B, H_kv, S, head_dim]; key_pos [B, S] int64 (absolute positions),
/// key_valid [B, S] bool (false for left padding). S grows by T on every forward call.
struct KvCache {
  std::vector<torch::Tensor> k, v;  ///< per layer, undefined until the first forward
  torch::Tensor key_pos, key_valid; ///< [B, S]
  /// Cached length S (0 when empty).
  int64_t length() const { return key_pos.defined() ? key_pos.size(1) : 0; }
  /// Drops everything.
  void clear() { k.clear(); v.clear(); key_pos = torch::Tensor(); key_valid = torch::Tensor(); }
};

/// A decoder-only LM with weights in memory (float32), loaded once and then read-only: forward
/// is const and may run concurrently on different KvCaches.
class CausalLM {
 public:
  /// Loads config.json and the weights of an HF checkpoint directory (model.safetensors or
  /// sharded, F32/F16/BF16; converted to float32). Checks once at load: every expected tensor
  /// present with its expected shape, no unexpected tensor (except rotary inv_freq buffers and,
  /// for a tied head, lm_head.weight, which HF ignores), every weight finite. Throws loom::Error
  /// naming the directory/file and the tensor or config field at fault.
  static std::shared_ptr<CausalLM> load(const std::string& dir);
  /// Same from an open checkpoint.
  static std::shared_ptr<CausalLM> load(const io::HfCheckpoint& ckpt);

  const CausalLmConfig& config() const { return config_; }
  /// The checkpoint directory.
  const std::string& dir() const { return dir_; }
  /// Parsed generation_config.json (empty object when absent).
  const nlohmann::json& generation_config() const { return generation_config_; }

  /// Runs T new tokens of B rows after what `cache` holds and appends their keys/values to it.
  /// ids [B, T] int64, positions [B, T] int64 (absolute; HF's cumsum(mask) - 1 for left padding),
  /// valid [B, T] bool (false = padding: never attended to). Query i of row b attends to cached
  /// or new key j when valid, key_pos <= pos_i and, on sliding layers, key_pos > pos_i - window.
  /// Returns logits [B, T, V] float32 (after final soft-capping), or only the last position's
  /// [B, 1, V] when last_only. Throws loom::Error for ids outside [0, V) or positions beyond
  /// the context window.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& positions, const torch::Tensor& valid,
                        KvCache& cache, bool last_only = false) const;

  /// Convenience: logits [T, V] of one unpadded sequence from position 0, without a cache.
  torch::Tensor logits(const std::vector<int64_t>& ids) const;

  /// Number of weight elements.
  int64_t num_parameters() const;

  /// The checkpoint tensor names (and shapes) this config expects: the checkpoint-name map.
  static std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensors(const CausalLmConfig& c);

 private:
  struct Layer {
    torch::Tensor in_norm, post_attn_norm, pre_ffn_norm, post_ffn_norm;  // [D]
    torch::Tensor wq, wk, wv, wo;   // [H·d, D], [H_kv·d, D], [H_kv·d, D], [D, H·d]
    torch::Tensor bq, bk, bv, bo;   // biases or undefined
    torch::Tensor q_norm, k_norm;   // [d] (Gemma3)
    torch::Tensor w_gate, w_up, w_down;  // [F, D], [F, D], [D, F]
    torch::Tensor inv_freq;         // [d/2] float32 (with rope scaling applied)
  };
  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) const;
  CausalLmConfig config_;
  nlohmann::json generation_config_;
  std::string dir_;
  torch::Tensor embed_, final_norm_, lm_head_;  // [V, D], [D], [V, D]
  std::vector<Layer> layers_;
};

/// RoPE inverse frequencies [head_dim/2] float32 as HF computes them: base^(-2i/d) in float32,
/// then rope_scaling (linear: / factor; llama3: smoothed per-band division, HF
/// _compute_llama3_parameters).
torch::Tensor rope_inv_freq(int64_t head_dim, double base, const RopeScaling& scaling);

}  // namespace loom::models
