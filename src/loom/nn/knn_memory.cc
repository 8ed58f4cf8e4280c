#include "loom/nn/knn_memory.h"

#include <algorithm>
#include <limits>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/IDSelector.h>

namespace loom::nn {

KnnSearch parse_knn_search(const std::string& name, const Where& where) {
  if (name == "exact") return KnnSearch::kExact;
  if (name == "faiss_ivf") return KnnSearch::kFaissIvf;
  fail(where, "unknown kNN search \"{}\" (expected \"exact\" or \"faiss_ivf\")", name);
}

// One IVF-Flat index per (row, head), ids = ring-buffer slots. IVF (unlike HNSW) supports
// remove_ids, which FIFO eviction needs.
struct KnnMemory::Faiss {
  std::vector<std::unique_ptr<faiss::IndexIVFFlat>> index;  // [B·H]
  std::vector<bool> trained;                                 // [B]
};

KnnMemory::KnnMemory(int64_t batch, int64_t heads, int64_t d_key, int64_t d_value,
                     KnnMemoryOptions options, torch::ScalarType dtype)
    : batch_(batch), heads_(heads), d_key_(d_key), d_value_(d_value), options_(options), dtype_(dtype),
      head_(batch, 0), count_(batch, 0) {
  if (batch < 1 || heads < 1 || d_key < 1 || d_value < 1 || options.capacity < 1)
    fail("kNN memory: batch {}, heads {}, d_key {}, d_value {}, capacity {} must all be >= 1", batch,
         heads, d_key, d_value, options.capacity);
  if (options.search == KnnSearch::kFaissIvf) {
    if (options.faiss_nlist < 1 || options.faiss_nprobe < 1)
      fail("kNN memory: faiss_nlist {} and faiss_nprobe {} must be >= 1", options.faiss_nlist,
           options.faiss_nprobe);
    if (options_.faiss_train_size <= 0) options_.faiss_train_size = 39 * options.faiss_nlist;
    options_.faiss_train_size = std::max(options_.faiss_train_size, options.faiss_nlist);
    faiss_ = std::make_unique<Faiss>();
    faiss_->trained.assign(batch, false);
    for (int64_t i = 0; i < batch * heads; ++i) {
      auto* quantizer = new faiss::IndexFlatIP(d_key);
      auto index = std::make_unique<faiss::IndexIVFFlat>(quantizer, d_key, options.faiss_nlist,
                                                         faiss::METRIC_INNER_PRODUCT);
      index->own_fields = true;  // deletes the quantiser
      index->nprobe = std::min(options.faiss_nprobe, options.faiss_nlist);
      faiss_->index.push_back(std::move(index));
    }
  }
}

KnnMemory::~KnnMemory() = default;
KnnMemory::KnnMemory(KnnMemory&&) noexcept = default;
KnnMemory& KnnMemory::operator=(KnnMemory&&) noexcept = default;

void KnnMemory::ensure_storage() {
  if (keys_.defined()) return;
  auto opt = torch::TensorOptions().dtype(dtype_);
  keys_ = torch::zeros({batch_, heads_, options_.capacity, d_key_}, opt);
  values_ = torch::zeros({batch_, heads_, options_.capacity, d_value_}, opt);
  pos_ = torch::full({batch_, options_.capacity}, -1, torch::kInt64);
}

int64_t KnnMemory::nbytes() const {
  if (!keys_.defined()) return 0;
  return keys_.nbytes() + values_.nbytes() + pos_.nbytes();
}

bool KnnMemory::faiss_ready(int64_t row) const { return faiss_ && faiss_->trained[row]; }

torch::Tensor KnnMemory::valid_slots() const {
  const int64_t c = options_.capacity;
  torch::Tensor slot = torch::arange(c, torch::kInt64).unsqueeze(0);                 // [1, C]
  torch::Tensor head = torch::tensor(head_, torch::kInt64).unsqueeze(1);             // [B, 1]
  torch::Tensor count = torch::tensor(count_, torch::kInt64).unsqueeze(1);           // [B, 1]
  return torch::remainder(slot - head + c, c) < count;                               // [B, C]
}

void KnnMemory::append(const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& positions,
                       const torch::Tensor& keep) {
  torch::NoGradGuard no_grad;
  ensure_storage();
  const int64_t c = options_.capacity, t = k.size(2);
  torch::Tensor kd = k.detach().to(dtype_), vd = v.detach().to(dtype_);
  torch::Tensor pos = positions.to(torch::kInt64);
  for (int64_t b = 0; b < batch_; ++b) {
    torch::Tensor idx = torch::arange(t, torch::kInt64);                              // [T]
    if (keep.defined()) idx = idx.masked_select(keep[b].to(torch::kBool));
    int64_t n = idx.numel();
    if (n == 0) continue;
    if (n > c) { idx = idx.narrow(0, n - c, c); n = c; }
    // Slots right after the newest entry, wrapping; evict the oldest beyond capacity.
    torch::Tensor slots = torch::remainder(torch::arange(n, torch::kInt64) + head_[b] + count_[b], c);
    keys_[b].index_copy_(1, slots, kd[b].index_select(1, idx));
    values_[b].index_copy_(1, slots, vd[b].index_select(1, idx));
    pos_[b].index_copy_(0, slots, pos.index_select(0, idx));
    const int64_t total = count_[b] + n;
    if (total > c) { head_[b] = (head_[b] + total - c) % c; count_[b] = c; }
    else count_[b] = total;
    if (faiss_) {
      if (faiss_->trained[b]) {
        std::vector<int64_t> ids(slots.data_ptr<int64_t>(), slots.data_ptr<int64_t>() + n);
        for (int64_t h = 0; h < heads_; ++h) {
          auto& index = *faiss_->index[b * heads_ + h];
          faiss::IDSelectorBatch sel(n, ids.data());
          index.remove_ids(sel);
          torch::Tensor x = keys_[b][h].index_select(0, slots).to(torch::kFloat32).contiguous();
          index.add_with_ids(n, x.data_ptr<float>(), ids.data());
        }
      } else if (count_[b] >= options_.faiss_train_size) {
        faiss_rebuild_row(b);
      }
    }
  }
}

void KnnMemory::faiss_rebuild_row(int64_t b) {
  torch::Tensor valid = valid_slots()[b];                                   // [C]
  torch::Tensor slots = torch::arange(options_.capacity, torch::kInt64).masked_select(valid);
  std::vector<int64_t> ids(slots.data_ptr<int64_t>(), slots.data_ptr<int64_t>() + slots.numel());
  for (int64_t h = 0; h < heads_; ++h) {
    auto& index = *faiss_->index[b * heads_ + h];
    index.reset();
    torch::Tensor x = keys_[b][h].index_select(0, slots).to(torch::kFloat32).contiguous();  // [n, d]
    if (!index.is_trained) index.train(slots.numel(), x.data_ptr<float>());
    index.add_with_ids(slots.numel(), x.data_ptr<float>(), ids.data());
  }
  faiss_->trained[b] = true;
}

void KnnMemory::clear_rows(const torch::Tensor& rows) {
  torch::Tensor r = rows.to(torch::kBool).contiguous();
  for (int64_t b = 0; b < batch_; ++b) {
    if (!r[b].item<bool>()) continue;
    head_[b] = 0;
    count_[b] = 0;
    if (pos_.defined()) pos_[b].fill_(-1);
    if (faiss_) {
      // The quantiser stays trained, but the row must refill before FAISS serves it again.
      for (int64_t h = 0; h < heads_; ++h) faiss_->index[b * heads_ + h]->reset();
      faiss_->trained[b] = false;
    }
  }
}

KnnResult KnnMemory::exact(const torch::Tensor& q, int64_t k, const torch::Tensor& valid) const {
  const int64_t kk = std::min(k, options_.capacity);
  torch::Tensor scores = torch::matmul(q.to(dtype_), keys_.transpose(-1, -2));  // [B,H,Q,C]
  scores = scores.masked_fill(valid.view({batch_, 1, 1, -1}).logical_not(),
                              -std::numeric_limits<double>::infinity());
  auto [top, slots] = torch::topk(scores, kk, -1);                               // [B,H,Q,k']
  KnnResult r;
  r.slots = slots;
  r.valid = torch::isfinite(top);
  return r;
}

KnnResult KnnMemory::search(const torch::Tensor& q, int64_t k) const {
  torch::NoGradGuard no_grad;
  if (k < 1) fail("kNN memory: k must be >= 1, got {}", k);
  const int64_t kk = std::min(k, options_.capacity), nq = q.size(2);
  auto opt = torch::TensorOptions().dtype(dtype_);
  KnnResult r;
  if (!keys_.defined()) {  // nothing stored yet
    r.keys = torch::zeros({batch_, heads_, nq, kk, d_key_}, opt);
    r.values = torch::zeros({batch_, heads_, nq, kk, d_value_}, opt);
    r.slots = torch::zeros({batch_, heads_, nq, kk}, torch::kInt64);
    r.positions = torch::full({batch_, heads_, nq, kk}, -1, torch::kInt64);
    r.valid = torch::zeros({batch_, heads_, nq, kk}, torch::kBool);
    return r;
  }
  bool all_faiss = faiss_ != nullptr;
  for (int64_t b = 0; b < batch_ && all_faiss; ++b) all_faiss = faiss_->trained[b];
  if (all_faiss) {  // FAISS serves every row: skip the O(Q·C) exact scores
    r.slots = torch::zeros({batch_, heads_, nq, kk}, torch::kInt64);
    r.valid = torch::zeros({batch_, heads_, nq, kk}, torch::kBool);
  } else {
    r = exact(q, k, valid_slots());
  }
  if (faiss_) {
    for (int64_t b = 0; b < batch_; ++b) {
      if (!faiss_->trained[b]) continue;  // exact until the row's quantiser is trained
      for (int64_t h = 0; h < heads_; ++h) {
        torch::Tensor x = q[b][h].to(torch::kFloat32).contiguous();  // [Q, d]
        std::vector<float> dist(nq * kk);
        std::vector<int64_t> labels(nq * kk);
        faiss_->index[b * heads_ + h]->search(nq, x.data_ptr<float>(), kk, dist.data(), labels.data());
        torch::Tensor lab = torch::from_blob(labels.data(), {nq, kk}, torch::kInt64).clone();
        r.valid[b][h].copy_(lab >= 0);
        r.slots[b][h].copy_(lab.clamp_min(0));
      }
    }
  }
  r.slots = r.slots.masked_fill(r.valid.logical_not(), 0);
  // Gather the neighbours' keys, values and positions.
  torch::Tensor flat = r.slots.reshape({batch_, heads_, nq * kk});                      // [B,H,Q·k']
  r.keys = keys_.gather(2, flat.unsqueeze(-1).expand({batch_, heads_, nq * kk, d_key_}))
               .view({batch_, heads_, nq, kk, d_key_});
  r.values = values_.gather(2, flat.unsqueeze(-1).expand({batch_, heads_, nq * kk, d_value_}))
                 .view({batch_, heads_, nq, kk, d_value_});
  r.positions = pos_.view({batch_, 1, -1}).expand({batch_, heads_, options_.capacity})
                    .gather(2, flat).view({batch_, heads_, nq, kk})
                    .masked_fill(r.valid.logical_not(), -1);
  return r;
}

}  // namespace loom::nn
