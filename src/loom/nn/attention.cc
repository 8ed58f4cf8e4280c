#include "loom/nn/attention.h"
#include "loom/nn/linear.h"  // bmm_nt, bmm_nn (oneDNN sgemm, also under autograd)
#include "loom/nn/simd_exp.h"

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace loom::nn {

float masked_score() { return std::numeric_limits<float>::lowest(); }

torch::Tensor additive_key_mask(const torch::Tensor& keep) {
  torch::Tensor m = torch::zeros(keep.sizes(), torch::kFloat32);  // [B, S]
  m.masked_fill_(keep.logical_not(), masked_score());
  return m.view({keep.size(0), 1, 1, keep.size(1)});              // [B, 1, 1, S]
}

torch::Tensor additive_causal_mask(int64_t t, int64_t past) {
  torch::Tensor q = torch::arange(t, torch::kInt64).unsqueeze(1) + past;  // [T, 1]
  torch::Tensor k = torch::arange(past + t, torch::kInt64).unsqueeze(0);  // [1, past+T]
  torch::Tensor m = torch::zeros({t, past + t}, torch::kFloat32);         // [T, past+T]
  m.masked_fill_(k > q, masked_score());
  return m;
}

namespace {

#define LOOM_ATTN_AVX2 __attribute__((target("avx2,fma")))

// One query row over S keys: out[0, dh) = Σ_s softmax_s(q·k_s + mask_s) · v_s, float32 throughout
// (scores, max-subtracted exp, sum, weighted sum; the order of at::_softmax + sum over S).
// k_s = k + s·ks, v_s = v + s·vs (rows of dh contiguous floats); mask: S floats or nullptr;
// scores: S floats of scratch.
// scores[0, n) <- exp(scores - mx); returns their sum (float32).
inline float exp_and_sum_portable(float* scores, int64_t n, float mx) {
  float sum = 0.0f;
  for (int64_t s = 0; s < n; ++s) {
    scores[s] = std::exp(scores[s] - mx);
    sum += scores[s];
  }
  return sum;
}

// exp_and_sum_portable with a vectorised exp. The sum stays sequential in position order (as
// the portable one): a row whose keys sit at other positions — leading masked positions of a row
// that joined a running batch (DecoderState::append) — then sums exactly the same numbers in the
// same order, so results do not depend on batching.
LOOM_ATTN_AVX2 inline float exp_and_sum_avx2(float* scores, int64_t n, float mx) {
  const __m256 m = _mm256_set1_ps(mx);
  int64_t s = 0;
  for (; s + 8 <= n; s += 8) _mm256_storeu_ps(scores + s, exp_nonpositive_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + s), m)));
  if (s < n) {
    // the tail through the same vector exp (a score's exp does not depend on where it falls)
    alignas(32) float tail[8];
    for (int64_t j = 0; j < 8; ++j) tail[j] = s + j < n ? scores[s + j] : -std::numeric_limits<float>::infinity();
    _mm256_store_ps(tail, exp_nonpositive_avx2(_mm256_sub_ps(_mm256_load_ps(tail), m)));
    for (int64_t j = 0; s + j < n; ++j) scores[s + j] = tail[j];
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum += scores[j];
  return sum;
}

template <float (*ExpAndSum)(float*, int64_t, float)>
inline void one_query_impl(const float* q, const float* k, int64_t ks, const float* v, int64_t vs, const float* mask,
                           int64_t s_len, int64_t dh, float* scores, float* out) {
  constexpr int Lanes = 8;  // partial sums of the dot product (one AVX2 vector)
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < s_len; ++s) {
    const float* kr = k + s * ks;
    float acc[Lanes] = {};
    int64_t i = 0;
    for (; i + Lanes <= dh; i += Lanes) {
      for (int j = 0; j < Lanes; ++j) acc[j] += q[i + j] * kr[i + j];
    }
    float dot = 0.0f;
    for (; i < dh; ++i) dot += q[i] * kr[i];
    for (int j = 0; j < Lanes; ++j) dot += acc[j];
    if (mask != nullptr) dot += mask[s];
    scores[s] = dot;
    mx = std::max(mx, dot);
  }
  const float inv = 1.0f / ExpAndSum(scores, s_len, mx);
  for (int64_t i = 0; i < dh; ++i) out[i] = 0.0f;
  for (int64_t s = 0; s < s_len; ++s) {
    const float p = scores[s] * inv;
    const float* vr = v + s * vs;
    for (int64_t i = 0; i < dh; ++i) out[i] += p * vr[i];
  }
}

LOOM_ATTN_AVX2 void one_query_avx2(const float* q, const float* k, int64_t ks, const float* v, int64_t vs,
                                   const float* mask, int64_t s_len, int64_t dh, float* scores, float* out) {
  one_query_impl<exp_and_sum_avx2>(q, k, ks, v, vs, mask, s_len, dh, scores, out);
}

void one_query_portable(const float* q, const float* k, int64_t ks, const float* v, int64_t vs, const float* mask,
                        int64_t s_len, int64_t dh, float* scores, float* out) {
  one_query_impl<exp_and_sum_portable>(q, k, ks, v, vs, mask, s_len, dh, scores, out);
}

using OneQueryFn = void (*)(const float*, const float*, int64_t, const float*, int64_t, const float*, int64_t, int64_t,
                            float*, float*);

OneQueryFn one_query_kernel() {
  static const OneQueryFn fn = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &one_query_avx2 : &one_query_portable;
  }();
  return fn;
}

// True when attention() can take the fused one-query kernel: float32, last dims contiguous, the
// mask undefined or contiguous [M, 1, 1, S] (M = 1 or the rows it is indexed by).
bool one_query_ok(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& mask,
                  int64_t mask_rows) {
  auto f32 = [](const torch::Tensor& t) { return t.scalar_type() == torch::kFloat32 && t.device().is_cpu(); };
  if (!f32(q) || !f32(k) || !f32(v) || q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1) return false;
  if (k.sizes() != v.sizes()) return false;
  if (!mask.defined()) return true;
  return f32(mask) && mask.dim() == 4 && mask.is_contiguous() && (mask.size(0) == 1 || mask.size(0) == mask_rows) &&
         mask.size(1) == 1 && mask.size(2) == 1 && mask.size(3) == k.size(2);
}

// attention() for T = 1: q [B, H, 1, dh], k/v [B_kv, H, S, dh] (strided rows), rows [B] int64 or
// undefined (= b), mask [1|B_kv, 1, 1, S] contiguous or undefined -> [B, H, 1, dh].
torch::Tensor attention_one_query(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& mask, const torch::Tensor& rows) {
  const int64_t b = q.size(0), h = q.size(1), dh = q.size(3), s_len = k.size(2), b_kv = k.size(0);
  torch::Tensor out = torch::empty({b, h, 1, dh}, q.options());  // [B, H, 1, dh]
  torch::Tensor idx = rows.defined() ? rows.to(torch::kInt64).contiguous() : torch::Tensor();
  const int64_t* row_of = idx.defined() ? idx.data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; row_of != nullptr && i < b; ++i) {
    TORCH_CHECK(row_of[i] >= 0 && row_of[i] < b_kv, "attention: kv row ", row_of[i], " outside ", b_kv, " rows");
  }
  const float* pq = q.data_ptr<float>();
  const float* pk = k.data_ptr<float>();
  const float* pv = v.data_ptr<float>();
  const float* pm = mask.defined() ? mask.data_ptr<float>() : nullptr;
  const bool mask_per_row = mask.defined() && mask.size(0) > 1;
  float* po = out.data_ptr<float>();
  const OneQueryFn fn = one_query_kernel();
  at::parallel_for(0, b * h, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(s_len));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t r = bh / h, hd = bh % h;
      const int64_t kr = row_of != nullptr ? row_of[r] : r;
      fn(pq + r * q.stride(0) + hd * q.stride(1), pk + kr * k.stride(0) + hd * k.stride(1), k.stride(2),
         pv + kr * v.stride(0) + hd * v.stride(1), v.stride(2), pm == nullptr ? nullptr : pm + (mask_per_row ? kr * s_len : 0),
         s_len, dh, scores.data(), po + bh * dh);
    }
  });
  return out;
}

// Keys, values and mask of each query row when rows read kv rows (kv_rows [B] int64): the
// gathered k, v [B, H, S, dh] and mask (a per-kv-row mask gathered too, a broadcast one as is).
struct GatheredKv {
  torch::Tensor k, v, mask;
};
GatheredKv gather_kv_rows(const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& mask,
                          const torch::Tensor& kv_rows) {
  return {k.index_select(0, kv_rows), v.index_select(0, kv_rows),
          mask.defined() && mask.size(0) > 1 ? mask.index_select(0, kv_rows) : mask};
}

}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, const torch::Tensor& kv_rows) {
  const int64_t t = q.size(2);
  if (t == 1 && one_query_ok(q, k, v, mask, k.size(0))) return attention_one_query(q, k, v, mask, kv_rows);  // [B, H, 1, dh]
  if (kv_rows.defined()) {
    // General shapes: gather each query row's keys, values and mask row.
    GatheredKv g = gather_kv_rows(k, v, mask, kv_rows);
    return attention(q, g.k, g.v, g.mask);  // [B, H, T, dh]
  }
  // Explicit 3-D bmm: torch::matmul on 4-D strided views (the KV buffers) gave wrong results for
  // B = 1 in libtorch 1.13. The reshapes below are views for the cache layout [B, H, cap, d_head].
  const int64_t b = q.size(0), h = q.size(1), dh = q.size(3), s = k.size(2);
  torch::Tensor q3 = q.reshape({b * h, t, dh});                               // [B·H, T, dh]
  torch::Tensor k3 = k.reshape({b * h, s, dh});                               // [B·H, S, dh]
  torch::Tensor v3 = v.reshape({b * h, s, dh});                               // [B·H, S, dh]
  // oneDNN sgemm per (row, head) (bmm_nt/bmm_nn); libtorch's bmm would send these to the
  // system's reference BLAS, which made attention most of the encoder's time.
  torch::Tensor scores = bmm_nt(q3, k3).view({b, h, t, s});                   // [B, H, T, S]
  if (mask.defined()) scores.add_(mask);                                      // [B, H, T, S]
  scores = at::_softmax(scores, -1, false);                                   // [B, H, T, S]
  return bmm_nn(scores.view({b * h, t, s}), v3).view({b, h, t, dh});          // [B, H, T, dh]
}

torch::Tensor attention_with_dropout(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const torch::Tensor& mask, double dropout_p, bool training,
                                     const torch::Tensor& kv_rows) {
  const bool drop = training && dropout_p > 0.0;
  const bool grad = torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (!drop && !grad) return attention(q, k, v, mask, kv_rows);          // [B, H, T, dh]
  if (kv_rows.defined()) {
    GatheredKv g = gather_kv_rows(k, v, mask, kv_rows);
    return attention_with_dropout(q, g.k, g.v, g.mask, dropout_p, training);
  }
  // 3-D bmm on reshaped copies, as attention() does (4-D matmul on strided views is unsafe in 1.13)
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), dh = q.size(3), s = k.size(2);
  torch::Tensor scores = bmm_nt(q.reshape({b * h, t, dh}), k.reshape({b * h, s, dh}))
                             .view({b, h, t, s});                         // [B, H, T, S]
  if (mask.defined()) scores = scores + mask;                            // [B, H, T, S]
  torch::Tensor probs = torch::softmax(scores, -1);                      // [B, H, T, S]
  if (drop) probs = torch::dropout(probs, dropout_p, true);              // [B, H, T, S]
  return bmm_nn(probs.reshape({b * h, t, s}), v.reshape({b * h, s, dh})).view({b, h, t, dh});  // [B, H, T, dh]
}

void KVCache::append(const torch::Tensor& k_new, const torch::Tensor& v_new, int64_t capacity_hint) {
  const int64_t t_new = k_new.size(2);
  const int64_t needed = length_ + t_new;
  if (!k_.defined() || needed > k_.size(2)) {
    int64_t cap = std::max<int64_t>(needed, capacity_hint);
    if (k_.defined()) cap = std::max<int64_t>(cap, 2 * k_.size(2));
    torch::Tensor k = torch::empty({k_new.size(0), k_new.size(1), cap, k_new.size(3)}, k_new.options());  // [B, H, cap, dh]
    torch::Tensor v = torch::empty_like(k);                                                               // [B, H, cap, dh]
    if (length_ > 0) {
      k.narrow(2, 0, length_).copy_(keys());
      v.narrow(2, 0, length_).copy_(values());
    }
    k_ = k_base_ = k;
    v_ = v_base_ = v;
    k_spare_ = v_spare_ = torch::Tensor();  // other capacity
  }
  k_.narrow(2, length_, t_new).copy_(k_new);  // [B, H, T_new, dh]
  v_.narrow(2, length_, t_new).copy_(v_new);  // [B, H, T_new, dh]
  length_ = needed;
}

torch::Tensor KVCache::keys() const { return k_.narrow(2, 0, length_); }
torch::Tensor KVCache::values() const { return v_.narrow(2, 0, length_); }

void KVCache::reorder(const torch::Tensor& index) {
  if (!k_.defined()) return;
  const int64_t rows = index.size(0);
  if (!k_spare_.defined() || k_spare_.size(0) < rows || k_spare_.size(2) != k_.size(2) ||
      k_spare_.size(1) != k_.size(1) || k_spare_.size(3) != k_.size(3)) {
    k_spare_ = torch::empty({rows, k_.size(1), k_.size(2), k_.size(3)}, k_.options());  // [B', H, cap, dh]
    v_spare_ = torch::empty_like(k_spare_);
  }
  torch::Tensor k = k_spare_.narrow(0, 0, rows);  // [B', H, cap, dh]
  torch::Tensor v = v_spare_.narrow(0, 0, rows);
  if (length_ > 0) {
    torch::Tensor k_used = k.narrow(2, 0, length_);  // [B', H, len, dh] view of the destination
    torch::Tensor v_used = v.narrow(2, 0, length_);
    at::index_select_out(k_used, keys(), 0, index);  // gathers straight into the buffer
    at::index_select_out(v_used, values(), 0, index);
  }
  std::swap(k_base_, k_spare_);
  std::swap(v_base_, v_spare_);
  k_ = k;
  v_ = v;
}

void KVCache::take_spare(KVCache& other) {
  if (&other == this || k_spare_.defined() || !other.k_spare_.defined()) return;
  k_spare_ = std::exchange(other.k_spare_, torch::Tensor());
  v_spare_ = std::exchange(other.v_spare_, torch::Tensor());
}

MultiHeadAttentionImpl::MultiHeadAttentionImpl(int64_t d_model_, int64_t n_heads_)
    : d_model(d_model_), n_heads(n_heads_), d_head(d_model_ / n_heads_),
      scaling(1.0 / std::sqrt(static_cast<double>(d_model_ / n_heads_))) {
  TORCH_CHECK(n_heads > 0 && d_model % n_heads == 0, "d_model ", d_model, " is not divisible by ", n_heads, " heads");
  k_proj = register_module("k_proj", Linear(d_model, d_model));
  v_proj = register_module("v_proj", Linear(d_model, d_model));
  q_proj = register_module("q_proj", Linear(d_model, d_model));
  out_proj = register_module("out_proj", Linear(d_model, d_model));
}

void MultiHeadAttentionImpl::fuse() {
  qkv_weight_ = torch::cat({q_proj->weight, k_proj->weight, v_proj->weight}, 0).contiguous();  // [3d, d]
  qkv_bias_ = torch::cat({q_proj->bias, k_proj->bias, v_proj->bias}, 0).contiguous();          // [3d]
  // Rows d..3d of the fused QKV are K then V: the fused KV is a view, not a second copy.
  kv_weight_ = qkv_weight_.narrow(0, d_model, 2 * d_model);  // [2d, d]
  kv_bias_ = qkv_bias_.narrow(0, d_model, 2 * d_model);      // [2d]
  qkv_packed_ = kv_packed_ = q_packed_ = out_packed_ = PackedLinear();  // stale: pack() again
}

void MultiHeadAttentionImpl::unfuse() {
  qkv_weight_ = qkv_bias_ = kv_weight_ = kv_bias_ = torch::Tensor();
  qkv_packed_ = kv_packed_ = q_packed_ = out_packed_ = PackedLinear();
}

void MultiHeadAttentionImpl::pack(WeightType type) {
  torch::NoGradGuard no_grad;
  const bool was_packed = qkv_packed_.defined();
  qkv_packed_ = kv_packed_ = q_packed_ = out_packed_ = PackedLinear();
  if (type == WeightType::kFloat32) {
    if (was_packed) fuse();  // pack() dropped the fused float32 weights
    return;
  }
  if (!qkv_weight_.defined()) fuse();
  qkv_packed_ = PackedLinear(qkv_weight_, qkv_bias_, type, translation_activations(type));
  kv_packed_ = PackedLinear(kv_weight_, kv_bias_, type, translation_activations(type));
  q_packed_ = PackedLinear(qkv_weight_.narrow(0, 0, d_model), qkv_bias_.narrow(0, 0, d_model), type,
                          translation_activations(type));  // q_proj's numbers
  out_packed_ = PackedLinear(out_proj->weight, out_proj->bias, type, translation_activations(type));
  // The packed copies replace the fused float32 ones, which would otherwise stay resident.
  qkv_weight_ = qkv_bias_ = kv_weight_ = kv_bias_ = torch::Tensor();
}

torch::Tensor MultiHeadAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& memory,
                                              const torch::Tensor& mask) {
  if (query.is_same(memory)) return self_attention(query, mask, nullptr);  // [B, T, d]
  auto kv = memory_kv(memory);                                            // 2 × [B, H, S, dh]
  return cross_attention(query, kv.first, kv.second, mask);               // [B, T, d]
}

torch::Tensor MultiHeadAttentionImpl::split_heads(const torch::Tensor& x) const {
  return x.view({x.size(0), x.size(1), n_heads, d_head}).transpose(1, 2);  // [B, H, T, dh]
}

torch::Tensor MultiHeadAttentionImpl::merge_heads(const torch::Tensor& x) const {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), d_model});  // [B, T, d]
}

torch::Tensor MultiHeadAttentionImpl::self_attention(const torch::Tensor& x, const torch::Tensor& mask,
                                                     KVCache* cache, int64_t capacity_hint) {
  const int64_t b = x.size(0), t = x.size(1);
  torch::Tensor q, k, v;
  if (qkv_packed_.defined() || qkv_weight_.defined()) {
    torch::Tensor qkv = (qkv_packed_.defined() ? qkv_packed_.forward(x) : linear(x, qkv_weight_, qkv_bias_))
                            .view({b, t, 3, n_heads, d_head});  // [B, T, 3, H, dh]
    q = qkv.select(2, 0).transpose(1, 2).mul(scaling);                                        // [B, H, T, dh]
    k = qkv.select(2, 1).transpose(1, 2);                                                     // [B, H, T, dh]
    v = qkv.select(2, 2).transpose(1, 2);                                                     // [B, H, T, dh]
  } else {
    q = split_heads(q_proj->forward(x).mul_(scaling));  // [B, H, T, dh]
    k = split_heads(k_proj->forward(x));                // [B, H, T, dh]
    v = split_heads(v_proj->forward(x));                // [B, H, T, dh]
  }
  if (cache != nullptr) {
    cache->append(k, v, capacity_hint);
    k = cache->keys();    // [B, H, past+T, dh]
    v = cache->values();  // [B, H, past+T, dh]
  }
  torch::Tensor ctx = attention_with_dropout(q, k, v, mask, dropout, is_training());  // [B, H, T, dh]
  return out_packed_.defined() ? out_packed_.forward(merge_heads(ctx)) : out_proj->forward(merge_heads(ctx));  // [B, T, d]
}

std::pair<torch::Tensor, torch::Tensor> MultiHeadAttentionImpl::memory_kv(const torch::Tensor& memory) {
  const int64_t b = memory.size(0), s = memory.size(1);
  if (kv_packed_.defined() || kv_weight_.defined()) {
    torch::Tensor kv = (kv_packed_.defined() ? kv_packed_.forward(memory) : linear(memory, kv_weight_, kv_bias_))
                           .view({b, s, 2, n_heads, d_head});  // [B, S, 2, H, dh]
    return {kv.select(2, 0).transpose(1, 2).contiguous(),                                       // [B, H, S, dh]
            kv.select(2, 1).transpose(1, 2).contiguous()};                                      // [B, H, S, dh]
  }
  return {split_heads(k_proj->forward(memory)).contiguous(),   // [B, H, S, dh]
          split_heads(v_proj->forward(memory)).contiguous()};  // [B, H, S, dh]
}

torch::Tensor MultiHeadAttentionImpl::cross_attention(const torch::Tensor& x, const torch::Tensor& k,
                                                      const torch::Tensor& v, const torch::Tensor& mask,
                                                      const torch::Tensor& kv_rows) {
  // Fused: q_proj's rows of the fused QKV (the same numbers), so q_proj's own weight need not be read.
  torch::Tensor q = q_packed_.defined()    ? q_packed_.forward(x)
                    : qkv_weight_.defined() ? linear(x, qkv_weight_.narrow(0, 0, d_model), qkv_bias_.narrow(0, 0, d_model))
                                            : q_proj->forward(x);  // [B, T, d]
  q = split_heads(q.mul_(scaling));                                // [B, H, T, dh]
  torch::Tensor ctx = attention_with_dropout(q, k, v, mask, dropout, is_training(), kv_rows);  // [B, H, T, dh]
  return out_packed_.defined() ? out_packed_.forward(merge_heads(ctx)) : out_proj->forward(merge_heads(ctx));  // [B, T, d]
}

}  // namespace loom::nn
