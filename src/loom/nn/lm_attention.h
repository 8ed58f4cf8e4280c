// Causal self-attention layers of a decoder-only LM, with an explicit recurrent state so that an
// input of any length can be streamed chunk by chunk:
//   - "standard": causal GQA attention with RoPE and optional QK-norm (OpenELM, papers.md §2.3);
//     optional sliding window (Transformer-XL style cache of the last `window` tokens);
//   - "infini": Infini-attention (Munkhdalai et al. 2024, papers.md §3.1): causal attention
//     within fixed segments plus a compressive linear-attention memory (M, z) of all earlier
//     segments, mixed by a learned per-head gate;
//   - "knn": Memorizing Transformer attention (Wu et al. 2022, papers.md §4.2–4.3): local
//     sliding-window attention plus top-k attention over an external FIFO memory of earlier
//     segments' (key, value) pairs, mixed by a learned per-head gate.
// Positions are absolute token indices since the start of the stream (shared by all batch rows);
// a row that starts a new document keeps counting but masks everything before doc_start[b].
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/nn/knn_memory.h"
#include "loom/nn/lm_blocks.h"

namespace loom::nn {

/// Which attention a layer runs.
enum class AttentionKind {
  kStandard,  ///< "standard"
  kInfini,    ///< "infini"
  kKnn,       ///< "knn" (Memorizing Transformer layer)
};

/// Parses "standard" / "infini" / "knn"; throws loom::Error at `where` otherwise.
AttentionKind parse_attention_kind(const std::string& name, const Where& where);
/// The config spelling of `kind`.
std::string attention_kind_name(AttentionKind kind);

/// Infini-attention memory update rule (papers.md §3.1).
enum class InfiniUpdate {
  kLinear,  ///< "linear": M += σ(K)ᵀ V
  kDelta,   ///< "delta": M += σ(K)ᵀ (V − σ(K) M / (σ(K) z))
};

/// What Infini-attention does while a row's memory is still empty (first segment of a document,
/// M = 0, z = 0, where the paper's retrieval is 0/0; papers.md §3.1).
enum class InfiniFirstSegment {
  kSkipGate,    ///< "skip_gate": output = A_dot (no gate) until the first segment has been folded
                ///< into memory (lucidrains / Beomi behaviour). Default.
  kZeroMemory,  ///< "zero_memory": A_mem = 0, output = (1 − sigmoid(β))·A_dot (the literal reading)
};

/// Shape and behaviour of one attention layer.
struct AttentionOptions {
  AttentionKind kind = AttentionKind::kStandard;
  int64_t d_model = 0;   ///< input width (and output width unless d_out is set)
  /// Output width of out_proj (0 = d_model). DeLighT's single-head attention reads the DExTra
  /// output (d_model = d_o = d_m/2) and writes the residual width d_out = d_m (papers.md §1.7).
  int64_t d_out = 0;
  int64_t n_q = 0;       ///< query heads
  int64_t n_kv = 0;      ///< key/value heads (n_q % n_kv == 0; GQA ratio r = n_q / n_kv)
  int64_t d_head = 0;    ///< head width (even: RoPE)
  bool qk_norm = true;   ///< per-head RMSNorm of q and k over d_head (OpenELM); not used by "knn",
                         ///< which L2-normalises q and k instead
  double norm_eps = 1e-6;
  double rope_base = 10000.0;
  /// "standard" and the local path of "knn": 0 = attend to every earlier token (full causal
  /// attention; the cache grows without bound), W > 0 = each query sees itself and the W tokens
  /// before it; the cache keeps W tokens (the Memorizing Transformer's XL cache, W = segment).
  int64_t window = 0;
  /// "infini": segment length N; "knn": subsequence length (memory is read per subsequence and
  /// the subsequence is appended after it ends). Segments are aligned to absolute positions
  /// (segment s = positions [s·N, (s+1)·N)), so any chunking of the input gives the same result.
  int64_t segment_len = 2048;
  InfiniUpdate infini_update = InfiniUpdate::kLinear;
  InfiniFirstSegment infini_first_segment = InfiniFirstSegment::kSkipGate;
  /// Truncated BPTT through the Infini memory: detach (M, z) after every K folded segments
  /// (0 = never: full back-propagation through all segments, as the paper trains).
  int64_t infini_detach_every = 0;
  KnnMemoryOptions knn_memory;      ///< "knn": store size and search method; capacity 0 =
                                    ///< memory off (nothing stored or read: the layer outputs
                                    ///< (1 − g)·local, as on a document's first subsequence)
  int64_t knn_top_k = 32;           ///< "knn": neighbours per query (paper k = 32; meliad 128)
  double knn_temperature_init = 1.0;///< "knn": initial per-head τ (meliad 1.0; papers.md §5.4
                                    ///< suggests 10–20 for small models)
  /// "knn": apply RoPE on the local path. meliad disables position encoding in the whole memory
  /// layer (disable_position_encoding_for_memory_layers), the paper keeps it on the local path
  /// only; default false follows the code.
  bool knn_local_rope = false;
};

/// Recurrent state of one attention layer for one stream of B rows. Create it empty; the layer
/// allocates what it needs on the first forward(). Tensors keep their autograd history (so
/// gradients flow across chunks) until detach().
struct AttentionState {
  /// Local keys/values kept for later queries: "standard"/"knn": the last `window` tokens (all
  /// tokens when window = 0; keys after RoPE); "infini": the current, unfinished segment.
  torch::Tensor k;    ///< [B, H_kv, S, d_head]
  torch::Tensor v;    ///< [B, H_kv, S, d_head]
  torch::Tensor pos;  ///< [S] int64 absolute positions of the cached tokens
  /// "infini": compressive memory of all finished segments, float32 (float64 for double models).
  torch::Tensor mem;  ///< M [B, H_kv, d_head, d_head]
  torch::Tensor z;    ///< z [B, H_kv, d_head] (sum of σ(K) over the stored tokens)
  torch::Tensor sk;   ///< "infini": σ(K) (pre-RoPE) of the unfinished segment [B, H_kv, S, d_head]
  int64_t folded = 0; ///< "infini": segments folded into (M, z) so far
  /// "knn": normalised keys / values of the unfinished subsequence, appended to `knn` when it ends.
  torch::Tensor pending_k, pending_v, pending_pos;
  std::shared_ptr<KnnMemory> knn;  ///< "knn": the external memory (no autograd)

  /// Cuts the autograd history of every tensor (truncated BPTT between chunks).
  void detach();
  /// Bytes held by this state's tensors (kNN store included).
  int64_t nbytes() const;
};

/// σ(x) = ELU(x) + 1, elementwise (strictly positive; Infini-attention's kernel).
torch::Tensor elu_plus_one(const torch::Tensor& x);

/// Infini-attention memory retrieval A_mem = (σQ M) / (σQ z) (papers.md §3.1, eq. 3).
/// sq = σ(Q) [B, H, T, d_k], mem [B, H, d_k, d_v], z [B, H, d_k]. Where the denominator is 0
/// (empty memory) the result is 0. Returns [B, H, T, d_v] in mem's dtype.
torch::Tensor infini_retrieve(const torch::Tensor& sq, const torch::Tensor& mem, const torch::Tensor& z);

/// Infini-attention memory update after a segment (papers.md §3.1, eq. 4–5): sk = σ(K)
/// [B, H, N, d_k] (pre-RoPE), v [B, H, N, d_v]. Linear: M + σKᵀV; Delta: M + σKᵀ(V − σK M/(σK z))
/// with the retrieved term 0 while the memory is empty; z + Σ_t σK_t for both. Returns {M', z'}.
std::pair<torch::Tensor, torch::Tensor> infini_update(const torch::Tensor& mem, const torch::Tensor& z,
                                                      const torch::Tensor& sk, const torch::Tensor& v,
                                                      InfiniUpdate rule);

/// Diagnostics of one "knn" layer accumulated over the queries it serves (`loom eval lm
/// --memory-stats`): how often memory is available, where the memory attention mass goes in
/// token distance, how strongly the retrieved keys compete with the local ones. Attach one to a
/// layer through LMAttentionImpl::knn_stats; every forward() then calls add(). All
/// accumulators are float64 per query head [H] (allocated on the first add()); "mass" sums are
/// in units of queries (each query's memory weights sum to 1 when its memory is non-empty).
struct KnnAttentionStats {
  /// Distance buckets: bucket i holds distances d (query position − key position, tokens) with
  /// edges[i−1] < d <= edges[i]; a last bucket holds d > edges.back(). Ascending, >= 1.
  std::vector<int64_t> distance_edges = {128, 512, 2048, 8192, 32768};
  /// Optional first positions of the sections of the stream (ascending; e.g. chapter starts):
  /// a position belongs to the last section starting at or before it (positions before the
  /// first start form section −1). Empty: same_section is not computed.
  std::vector<int64_t> section_starts;

  torch::Tensor queries;            ///< [H] queries seen
  torch::Tensor with_memory;        ///< [H] queries whose memory held at least one key
  torch::Tensor joint_memory_mass;  ///< [H] Σ over queries with memory of the share the
                                    ///< retrieved keys would get in one softmax over local and
                                    ///< retrieved keys together (same τ-scaled logits)
  torch::Tensor distance_mass;      ///< [H, distance_edges.size() + 1] Σ of memory attention
                                    ///< weight per distance bucket
  torch::Tensor distance_sum;       ///< [H] Σ of memory attention weight × distance (tokens)
  torch::Tensor same_section_mass;  ///< [H] Σ of memory attention weight on keys of the
                                    ///< query's own section (0 when section_starts is empty)

  /// Adds the queries of one call. weights [B, H, Q, K]: the memory attention weights (0 on
  /// invalid neighbours); key_pos [B, H, Q, K] int64: the neighbours' positions (−1 = invalid);
  /// query_pos [Q] int64; memory_lse / local_lse [B, H, Q]: logsumexp of the τ-scaled logits
  /// of the retrieved keys and of the visible local keys. Throws loom::Error on inconsistent
  /// shapes or a change of H between calls.
  void add(const torch::Tensor& weights, const torch::Tensor& key_pos, const torch::Tensor& query_pos,
           const torch::Tensor& memory_lse, const torch::Tensor& local_lse);
};

/// One attention layer. Parameters: "qkv_proj.weight" [(n_q + 2·n_kv)·d_head, d_model] (rows: q
/// heads, then k heads, then v heads; no bias), "out_proj" [d_out or d_model, n_q·d_head],
/// "q_norm.weight"/"k_norm.weight" [d_head] (qk_norm, not "knn"), "gate" [n_q] ("infini": β,
/// "knn": b_h; init 0 = a 0.5 mix), "temperature" [n_q] ("knn": τ, used as |τ|).
class LMAttentionImpl : public torch::nn::Module {
 public:
  /// Throws loom::Error on inconsistent sizes (n_q % n_kv, odd d_head, segment_len < 1, ...).
  explicit LMAttentionImpl(const AttentionOptions& options);

  /// Processes the next T tokens of the stream. x [B, T, d_model]; the tokens sit at absolute
  /// positions pos0 .. pos0+T−1; doc_start [B] int64: first position of each row's current
  /// document (keys before it are invisible, and Infini/kNN memories hold nothing older).
  /// Updates `state` in place. Returns [B, T, d_out] (d_out = d_model when unset).
  torch::Tensor forward(const torch::Tensor& x, int64_t pos0, const torch::Tensor& doc_start,
                        AttentionState& state);

  /// Clears the memories of rows [B] (bool) that start a new document: Infini (M, z) rows and
  /// kNN store rows, and the unfinished-segment buffers are masked via doc_start by the caller.
  void reset_rows(AttentionState& state, const torch::Tensor& rows) const;

  /// Per-head memory gate sigmoid(gate) [n_q] ("infini"/"knn"; undefined otherwise).
  torch::Tensor gate_values() const;

  AttentionOptions options;   ///< shape and behaviour (may be changed between calls, e.g.
                              ///< infini_detach_every; not the sizes)
  torch::Tensor qkv_proj;     ///< [(n_q + 2·n_kv)·d_head, d_model]
  torch::Tensor out_proj;     ///< [d_out or d_model, n_q·d_head]
  torch::Tensor gate;         ///< [n_q]
  torch::Tensor temperature;  ///< [n_q]
  /// "knn": when set, forward() accumulates retrieval diagnostics here (costs one extra local
  /// logit pass per call; off by default).
  std::shared_ptr<KnnAttentionStats> knn_stats;
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  ///< QK-norm over d_head (null when off or "knn")

 private:
  // q, k, v [B, H, T, d_head] after QK-norm (or L2 normalisation for "knn"), before RoPE.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> project(const torch::Tensor& x) const;
  torch::Tensor local_windowed(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t pos0, const torch::Tensor& doc_start, AttentionState& st,
                               const torch::Tensor& head_scale);
  torch::Tensor forward_infini(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t pos0, const torch::Tensor& doc_start, AttentionState& st);
  torch::Tensor forward_knn(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            int64_t pos0, const torch::Tensor& doc_start, AttentionState& st);
};
TORCH_MODULE(LMAttention);

}  // namespace loom::nn
