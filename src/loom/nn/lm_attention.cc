#include "loom/nn/lm_attention.h"

#include <cmath>


namespace loom::nn {
namespace {

torch::Tensor cat_time(const torch::Tensor& a, const torch::Tensor& b, int64_t dim) {
  return a.defined() && a.size(dim) > 0 ? torch::cat({a, b}, dim) : b;
}

// Memory dtype: float32 unless the model runs in float64 (gradient checks).
torch::ScalarType memory_dtype(const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// [B, T'] bool: the cached tokens at positions pos [T'] that belong to each row's document.
torch::Tensor in_document(const torch::Tensor& pos, const torch::Tensor& doc_start) {
  return pos.view({1, -1}) >= doc_start.to(torch::kInt64).view({-1, 1});
}

// a [B, H, M, K] · b [B, H, K, P] -> [B, H, M, P] through the fast batched GEMM.
torch::Tensor matmul4(const torch::Tensor& a, const torch::Tensor& b) {
  const int64_t n = a.size(0) * a.size(1);
  return bmm_nn(a.reshape({n, a.size(2), a.size(3)}), b.reshape({n, b.size(2), b.size(3)}))
      .reshape({a.size(0), a.size(1), a.size(2), b.size(3)});
}

}  // namespace

AttentionKind parse_attention_kind(const std::string& name, const Where& where) {
  if (name == "standard") return AttentionKind::kStandard;
  if (name == "infini") return AttentionKind::kInfini;
  if (name == "knn") return AttentionKind::kKnn;
  fail(where, "unknown attention kind \"{}\" (expected \"standard\", \"infini\" or \"knn\")", name);
}

std::string attention_kind_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kStandard: return "standard";
    case AttentionKind::kInfini: return "infini";
    case AttentionKind::kKnn: return "knn";
  }
  return "?";
}

void AttentionState::detach() {
  for (torch::Tensor* t : {&k, &v, &mem, &z, &sk, &pending_k, &pending_v})
    if (t->defined()) *t = t->detach();
}

int64_t AttentionState::nbytes() const {
  int64_t n = 0;
  for (const torch::Tensor* t : {&k, &v, &pos, &mem, &z, &sk, &pending_k, &pending_v, &pending_pos})
    if (t->defined()) n += t->nbytes();
  if (knn) n += knn->nbytes();
  return n;
}

void KnnAttentionStats::add(const torch::Tensor& weights, const torch::Tensor& key_pos,
                            const torch::Tensor& query_pos, const torch::Tensor& memory_lse,
                            const torch::Tensor& local_lse) {
  torch::NoGradGuard no_grad;
  if (weights.dim() != 4 || key_pos.sizes() != weights.sizes() || query_pos.dim() != 1 ||
      query_pos.size(0) != weights.size(2) || memory_lse.sizes() != weights.sizes().slice(0, 3) ||
      local_lse.sizes() != memory_lse.sizes())
    fail("kNN stats: weights {} / key_pos {} must be [B, H, Q, K], query_pos {} [Q], memory_lse {} and "
         "local_lse {} [B, H, Q]", c10::str(weights.sizes()), c10::str(key_pos.sizes()),
         c10::str(query_pos.sizes()), c10::str(memory_lse.sizes()), c10::str(local_lse.sizes()));
  for (size_t i = 0; i < distance_edges.size(); ++i)
    if (distance_edges[i] < 1 || (i > 0 && distance_edges[i] <= distance_edges[i - 1]))
      fail("kNN stats: distance edges must be ascending and >= 1");
  for (size_t i = 1; i < section_starts.size(); ++i)
    if (section_starts[i] < section_starts[i - 1]) fail("kNN stats: section starts must be ascending");
  const int64_t h = weights.size(1), nb = static_cast<int64_t>(distance_edges.size()) + 1;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  if (!queries.defined()) {
    queries = torch::zeros({h}, f64);
    with_memory = torch::zeros({h}, f64);
    joint_memory_mass = torch::zeros({h}, f64);
    distance_mass = torch::zeros({h, nb}, f64);
    distance_sum = torch::zeros({h}, f64);
    same_section_mass = torch::zeros({h}, f64);
  } else if (queries.size(0) != h || distance_mass.size(1) != nb) {
    fail("kNN stats: {} heads / {} buckets after {} / {} in earlier calls", h, nb, queries.size(0),
         distance_mass.size(1));
  }
  const std::vector<int64_t> d02{0, 2}, d023{0, 2, 3};  // sum over batch (and query, neighbour)
  torch::Tensor kp = key_pos.to(torch::kInt64), qp = query_pos.to(torch::kInt64);
  torch::Tensor valid = kp >= 0;                                                  // [B,H,Q,K]
  torch::Tensor w = weights.detach().to(torch::kFloat64) * valid;
  torch::Tensor has = valid.any(-1);                                              // [B,H,Q]
  queries += static_cast<double>(weights.size(0) * weights.size(2));
  with_memory += has.to(torch::kFloat64).sum(d02);
  joint_memory_mass += (torch::sigmoid((memory_lse.detach() - local_lse.detach()).to(torch::kFloat64)) * has)
                           .sum(d02);
  torch::Tensor dist = qp.view({1, 1, -1, 1}) - kp;                               // [B,H,Q,K] tokens
  torch::Tensor edges = torch::tensor(distance_edges, torch::kInt64);
  torch::Tensor bucket = torch::bucketize(dist, edges, /*out_int32=*/false, /*right=*/false);
  distance_mass += (torch::one_hot(bucket, nb).to(torch::kFloat64) * w.unsqueeze(-1)).sum(d023);
  distance_sum += (w * dist.to(torch::kFloat64)).sum(d023);
  if (!section_starts.empty()) {
    torch::Tensor starts = torch::tensor(section_starts, torch::kInt64);
    torch::Tensor sec_k = torch::bucketize(kp, starts, false, /*right=*/true);  // sections starting <= pos
    torch::Tensor sec_q = torch::bucketize(qp, starts, false, /*right=*/true).view({1, 1, -1, 1});
    same_section_mass += (w * (sec_k == sec_q)).sum(d023);
  }
}

torch::Tensor elu_plus_one(const torch::Tensor& x) { return torch::elu(x) + 1.0; }

torch::Tensor infini_retrieve(const torch::Tensor& sq, const torch::Tensor& mem, const torch::Tensor& z) {
  torch::Tensor q = sq.to(mem.scalar_type());
  torch::Tensor num = matmul4(q, mem);                            // [B,H,T,d_v]
  torch::Tensor den = matmul4(q, z.unsqueeze(-1));                // [B,H,T,1]
  // σ > 0, so den = 0 exactly when z = 0 (empty memory): retrieve 0 there (papers.md §3.1 (a)).
  return torch::where(den > 0, num / den.clamp_min(1e-30), torch::zeros_like(num));
}

std::pair<torch::Tensor, torch::Tensor> infini_update(const torch::Tensor& mem, const torch::Tensor& z,
                                                      const torch::Tensor& sk, const torch::Tensor& v,
                                                      InfiniUpdate rule) {
  torch::Tensor k = sk.to(mem.scalar_type()), val = v.to(mem.scalar_type());
  if (rule == InfiniUpdate::kDelta) val = val - infini_retrieve(k, mem, z);  // V − σK M/(σK z)
  torch::Tensor m2 = mem + matmul4(k.transpose(-1, -2), val);                 // [B,H,d_k,d_v]
  torch::Tensor z2 = z + k.sum(2);                                            // [B,H,d_k]
  return {m2, z2};
}

LMAttentionImpl::LMAttentionImpl(const AttentionOptions& o) : options(o) {
  if (o.d_model < 1 || o.n_q < 1 || o.n_kv < 1 || o.d_head < 1)
    fail("attention: d_model {}, n_q {}, n_kv {}, d_head {} must be >= 1", o.d_model, o.n_q, o.n_kv, o.d_head);
  if (o.n_q % o.n_kv != 0) fail("attention: n_q {} is not a multiple of n_kv {}", o.n_q, o.n_kv);
  if (o.d_head % 2 != 0) fail("attention: d_head {} must be even (RoPE)", o.d_head);
  if (o.segment_len < 1) fail("attention: segment_len {} must be >= 1", o.segment_len);
  if (o.window < 0) fail("attention: window {} must be >= 0", o.window);
  if (o.d_out < 0) fail("attention: d_out {} must be >= 0", o.d_out);
  const double std_in = 1.0 / std::sqrt(double(o.d_model));
  qkv_proj = register_parameter("qkv_proj",
                                torch::randn({(o.n_q + 2 * o.n_kv) * o.d_head, o.d_model}) * std_in);
  out_proj = register_parameter("out_proj",
                                torch::randn({o.d_out > 0 ? o.d_out : o.d_model, o.n_q * o.d_head}) / std::sqrt(double(o.n_q * o.d_head)));
  if (o.qk_norm && o.kind != AttentionKind::kKnn) {
    q_norm = register_module("q_norm", RMSNorm(o.d_head, o.norm_eps));
    k_norm = register_module("k_norm", RMSNorm(o.d_head, o.norm_eps));
  }
  if (o.kind != AttentionKind::kStandard) gate = register_parameter("gate", torch::zeros({o.n_q}));
  if (o.kind == AttentionKind::kKnn)
    temperature = register_parameter("temperature", torch::full({o.n_q}, o.knn_temperature_init));
}

torch::Tensor LMAttentionImpl::gate_values() const {
  return gate.defined() ? torch::sigmoid(gate.detach()) : torch::Tensor();
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> LMAttentionImpl::project(const torch::Tensor& x) const {
  const int64_t b = x.size(0), t = x.size(1), dh = options.d_head;
  torch::Tensor qkv = dense(x, qkv_proj);                                      // [B,T,(n_q+2n_kv)·d_h]
  torch::Tensor q = qkv.narrow(-1, 0, options.n_q * dh).view({b, t, options.n_q, dh}).transpose(1, 2);
  torch::Tensor k = qkv.narrow(-1, options.n_q * dh, options.n_kv * dh).view({b, t, options.n_kv, dh}).transpose(1, 2);
  torch::Tensor v = qkv.narrow(-1, (options.n_q + options.n_kv) * dh, options.n_kv * dh)
                        .view({b, t, options.n_kv, dh}).transpose(1, 2);            // [B,H,T,d_h]
  if (options.kind == AttentionKind::kKnn) {
    // Key/query normalisation with a learned temperature (papers.md §4.2); meliad's eps.
    namespace F = torch::nn::functional;
    q = F::normalize(q, F::NormalizeFuncOptions().p(2).dim(-1).eps(1e-6));
    k = F::normalize(k, F::NormalizeFuncOptions().p(2).dim(-1).eps(1e-6));
  } else if (q_norm) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  return {q, k, v};
}

torch::Tensor LMAttentionImpl::local_windowed(const torch::Tensor& q, const torch::Tensor& k,
                                              const torch::Tensor& v, int64_t pos0,
                                              const torch::Tensor& doc_start, AttentionState& st,
                                              const torch::Tensor& head_scale) {
  const int64_t t = q.size(2), w = options.window;
  torch::Tensor pos_new = torch::arange(pos0, pos0 + t, torch::kInt64);
  torch::Tensor k_all = cat_time(st.k, k, 2), v_all = cat_time(st.v, v, 2);
  torch::Tensor pos_all = cat_time(st.pos, pos_new, 0);                              // [S]
  torch::Tensor mask = position_mask(pos0, t, pos_all, doc_start, w, q.scalar_type()); // [B,1,T,S]
  torch::Tensor out = gqa_attention(q, k_all, v_all, mask, 1.0 / std::sqrt(double(options.d_head)), head_scale);
  if (w > 0) {  // keep the last W tokens: the next query (pos0 + T) sees positions >= pos0 + T − W
    const int64_t s = pos_all.size(0);
    const int64_t drop = std::max<int64_t>(0, s - w);
    k_all = k_all.narrow(2, drop, s - drop);
    v_all = v_all.narrow(2, drop, s - drop);
    pos_all = pos_all.narrow(0, drop, s - drop);
  }
  st.k = k_all;
  st.v = v_all;
  st.pos = pos_all;
  return out;  // [B,H_q,T,d_h]
}

torch::Tensor LMAttentionImpl::forward_infini(const torch::Tensor& q, const torch::Tensor& k,
                                              const torch::Tensor& v, int64_t pos0,
                                              const torch::Tensor& doc_start, AttentionState& st) {
  const int64_t b = q.size(0), t = q.size(2), n = options.segment_len, dh = options.d_head;
  const auto mdt = memory_dtype(q);
  if (!st.mem.defined()) {
    st.mem = torch::zeros({b, options.n_kv, dh, dh}, torch::TensorOptions().dtype(mdt));
    st.z = torch::zeros({b, options.n_kv, dh}, torch::TensorOptions().dtype(mdt));
  }
  // Memory read/write use the pre-RoPE q/k (papers.md §3.1); RoPE only on the local path.
  torch::Tensor sq = elu_plus_one(q), sk = elu_plus_one(k);
  torch::Tensor qr = apply_rope(q, pos0, options.rope_base), kr = apply_rope(k, pos0, options.rope_base);
  torch::Tensor g = torch::sigmoid(gate).view({1, options.n_q, 1, 1}).to(q.scalar_type());
  std::vector<torch::Tensor> outs;
  for (int64_t i = 0; i < t;) {
    const int64_t p = pos0 + i, off = p % n, len = std::min(n - off, t - i);
    // Unfinished segment buffer (RoPE'd keys for the local path, σ(K) for the memory update).
    st.k = cat_time(st.k, kr.narrow(2, i, len), 2);
    st.v = cat_time(st.v, v.narrow(2, i, len), 2);
    st.sk = cat_time(st.sk, sk.narrow(2, i, len), 2);
    st.pos = cat_time(st.pos, torch::arange(p, p + len, torch::kInt64), 0);
    // Local causal attention within the segment only (no XL cache), scale 1/√d_k.
    torch::Tensor mask = position_mask(p, len, st.pos, doc_start, 0, q.scalar_type());
    torch::Tensor a_dot = gqa_attention(qr.narrow(2, i, len), st.k, st.v, mask, 1.0 / std::sqrt(double(dh)));
    // Retrieval from M_{s−1}, z_{s−1}: the state BEFORE this segment's update.
    torch::Tensor a_mem = ungroup_heads(
        infini_retrieve(group_heads(sq.narrow(2, i, len), options.n_kv), st.mem, st.z), options.n_q)
        .to(q.scalar_type());                                                     // [B,H_q,len,d_h]
    torch::Tensor out = g * a_mem + (1.0 - g) * a_dot;
    if (options.infini_first_segment == InfiniFirstSegment::kSkipGate) {
      torch::Tensor has_memory = (st.z.detach().sum({1, 2}) > 0).view({b, 1, 1, 1});
      out = torch::where(has_memory, out, a_dot);
    }
    outs.push_back(out);
    if (off + len == n) {  // segment complete: fold it into (M, z), tokens of earlier documents masked
      torch::Tensor keep = in_document(st.pos, doc_start).view({b, 1, -1, 1}).to(st.sk.scalar_type());
      std::tie(st.mem, st.z) = infini_update(st.mem, st.z, st.sk * keep, st.v, options.infini_update);
      st.k = st.v = st.sk = st.pos = torch::Tensor();
      ++st.folded;
      if (options.infini_detach_every > 0 && st.folded % options.infini_detach_every == 0) {
        st.mem = st.mem.detach();
        st.z = st.z.detach();
      }
    }
    i += len;
  }
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 2);  // [B,H_q,T,d_h]
}

torch::Tensor LMAttentionImpl::forward_knn(const torch::Tensor& q, const torch::Tensor& k,
                                           const torch::Tensor& v, int64_t pos0,
                                           const torch::Tensor& doc_start, AttentionState& st) {
  const int64_t b = q.size(0), t = q.size(2), n = options.segment_len, dh = options.d_head;
  const int64_t n_q = options.n_q, n_kv = options.n_kv, r = n_q / n_kv;
  torch::Tensor tau = temperature.abs().to(q.scalar_type());                          // [H_q]
  // Local path: sliding-window attention over [XL cache; current] with scale τ_h.
  torch::Tensor ql = q, kl = k;
  if (options.knn_local_rope) {
    ql = apply_rope(q, pos0, options.rope_base);
    kl = apply_rope(k, pos0, options.rope_base);
  }
  KnnAttentionStats* stats = knn_stats.get();
  torch::Tensor local_lse;  // [B,H_q,T] (stats only): computed before local_windowed updates st
  if (stats) {
    torch::NoGradGuard no_grad;
    torch::Tensor k_all = cat_time(st.k, kl, 2);
    torch::Tensor pos_all = cat_time(st.pos, torch::arange(pos0, pos0 + t, torch::kInt64), 0);
    torch::Tensor mask = position_mask(pos0, t, pos_all, doc_start, options.window, q.scalar_type());
    torch::Tensor logits = ungroup_heads(torch::matmul(group_heads(ql, n_kv), k_all.transpose(-1, -2)), n_q);
    local_lse = torch::logsumexp(logits * tau.view({1, n_q, 1, 1}) + mask, -1);  // [B,H_q,T]
  }
  torch::Tensor v_c = local_windowed(ql, kl, v, pos0, doc_start, st, tau);
  const bool memory_on = options.knn_memory.capacity > 0;
  if (!memory_on) {  // memory off: nothing stored or read
    if (stats) {
      auto sz = std::vector<int64_t>{b, n_q, t, 0};
      stats->add(torch::zeros(sz), torch::zeros(sz, torch::kInt64), torch::arange(pos0, pos0 + t, torch::kInt64),
                 torch::full({b, n_q, t}, -1e9), local_lse);
    }
    torch::Tensor g = torch::sigmoid(gate).view({1, n_q, 1, 1}).to(q.scalar_type());
    return (1.0 - g) * v_c;
  }
  if (!st.knn)
    st.knn = std::make_shared<KnnMemory>(b, n_kv, dh, dh, options.knn_memory, q.scalar_type());
  std::vector<torch::Tensor> mems;
  for (int64_t i = 0; i < t;) {
    const int64_t p = pos0 + i, off = p % n, len = std::min(n - off, t - i);
    torch::Tensor qg = group_heads(q.narrow(2, i, len), n_kv);                      // [B,H_kv,r·len,d]
    // Retrieve first (the store holds finished subsequences only), append afterwards.
    KnnResult res = st.knn->search(qg, options.knn_top_k);
    torch::Tensor scores = (qg.unsqueeze(-2) * res.keys).sum(-1);                   // [B,H_kv,r·len,k']
    torch::Tensor tau_g = tau.view({n_kv, r, 1}).expand({n_kv, r, len}).reshape({1, n_kv, r * len, 1});
    torch::Tensor valid = res.valid.to(q.scalar_type());
    torch::Tensor w = torch::softmax(scores * tau_g + (valid - 1.0) * 1e9, -1) * valid;  // 0 if nothing stored
    torch::Tensor v_m = (w.unsqueeze(-1) * res.values).sum(-2);                     // [B,H_kv,r·len,d]
    mems.push_back(ungroup_heads(v_m, n_q));
    if (stats) {
      torch::NoGradGuard no_grad;
      torch::Tensor lse_m = torch::logsumexp(scores * tau_g + (valid - 1.0) * 1e9, -1, /*keepdim=*/true);
      stats->add(ungroup_heads(w, n_q), ungroup_heads(res.positions, n_q), torch::arange(p, p + len, torch::kInt64),
                 ungroup_heads(lse_m, n_q).squeeze(-1), local_lse.narrow(2, i, len));
    }
    st.pending_k = cat_time(st.pending_k, k.narrow(2, i, len).detach(), 2);
    st.pending_v = cat_time(st.pending_v, v.narrow(2, i, len).detach(), 2);
    st.pending_pos = cat_time(st.pending_pos, torch::arange(p, p + len, torch::kInt64), 0);
    if (off + len == n) {
      st.knn->append(st.pending_k, st.pending_v, st.pending_pos, in_document(st.pending_pos, doc_start));
      st.pending_k = st.pending_v = st.pending_pos = torch::Tensor();
    }
    i += len;
  }
  torch::Tensor v_m = mems.size() == 1 ? mems[0] : torch::cat(mems, 2);             // [B,H_q,T,d]
  torch::Tensor g = torch::sigmoid(gate).view({1, n_q, 1, 1}).to(q.scalar_type());
  return g * v_m + (1.0 - g) * v_c;
}

torch::Tensor LMAttentionImpl::forward(const torch::Tensor& x, int64_t pos0, const torch::Tensor& doc_start,
                                       AttentionState& st) {
  const int64_t b = x.size(0), t = x.size(1);
  auto [q, k, v] = project(x);
  torch::Tensor out;
  switch (options.kind) {
    case AttentionKind::kStandard:
      out = local_windowed(apply_rope(q, pos0, options.rope_base), apply_rope(k, pos0, options.rope_base),
                           v, pos0, doc_start, st, {});
      break;
    case AttentionKind::kInfini: out = forward_infini(q, k, v, pos0, doc_start, st); break;
    case AttentionKind::kKnn: out = forward_knn(q, k, v, pos0, doc_start, st); break;
  }
  out = out.transpose(1, 2).reshape({b, t, options.n_q * options.d_head});  // concat heads
  return dense(out, out_proj);                                          // [B,T,d_out or d_model]
}

void LMAttentionImpl::reset_rows(AttentionState& st, const torch::Tensor& rows) const {
  torch::Tensor r = rows.to(torch::kBool);
  if (!r.any().item<bool>()) return;
  if (st.mem.defined()) {
    torch::Tensor keep = r.logical_not().to(st.mem.scalar_type());
    st.mem = st.mem * keep.view({-1, 1, 1, 1});
    st.z = st.z * keep.view({-1, 1, 1});
  }
  if (st.knn) st.knn->clear_rows(r);
}

}  // namespace loom::nn
