#include "loom/models/encoder_decoder.h"

#include "loom/core/error.h"
#include "loom/io/checkpoint.h"
#include "loom/models/native_seq2seq.h"
#include "loom/models/seq2seq.h"

namespace loom::models {

void DecoderState::reset(std::vector<std::pair<torch::Tensor, torch::Tensor>> cross_kv, const torch::Tensor& keep,
                         int64_t repeat) {
  self_.assign(cross_kv.size(), nn::KVCache());
  cross_k_.clear();
  cross_v_.clear();
  int64_t b = keep.defined() ? keep.size(0) : 0;
  for (auto& kv : cross_kv) {
    b = kv.first.size(0);
    cross_k_.push_back(kv.first);   // [B, H, S, dh]
    cross_v_.push_back(kv.second);  // [B, H, S, dh]
  }
  memory_mask_ = torch::Tensor();
  if (keep.defined() && !keep.all().item<bool>()) memory_mask_ = nn::additive_key_mask(keep);  // [B, 1, 1, S]
  cross_rows_ = repeat > 1 ? torch::arange(b, torch::kInt64).repeat_interleave(repeat) : torch::Tensor();  // [B·repeat]
  rows_ = b * repeat;
  length_ = 0;
  offsets_ = torch::Tensor();
}

namespace {
// Reorders the per-layer self-attention caches. Each layer gathers into the buffers the previous
// layer's reorder just freed (the last layer's spare goes to the first): layers + 1 buffer pairs
// instead of 2 × layers.
void reorder_caches(std::vector<nn::KVCache>& caches, const torch::Tensor& index) {
  const size_t n = caches.size();
  for (size_t i = 0; i < n; ++i) {
    caches[i].take_spare(caches[(i + n - 1) % n]);
    caches[i].reorder(index);
  }
}
}  // namespace

void DecoderState::reorder(const torch::Tensor& index) {
  reorder_caches(self_, index);
  rows_ = index.size(0);
  cross_rows_ = cross_rows_.defined() ? cross_rows_.index_select(0, index) : index.to(torch::kInt64);  // [R']
  const int64_t held = cross_k_.empty() ? 0 : cross_k_.front().size(0);
  if (held > 0) {
    // Compact the source entries when a quarter of them is no longer read (amortised: each
    // compaction at least shrinks the held entries to 3/4).
    torch::Tensor used = std::get<0>(at::_unique(cross_rows_, /*sorted=*/true));  // [U] sorted source entries
    const int64_t u = used.size(0);
    if (rows_ == 0) {
      for (auto& k : cross_k_) k = k.narrow(0, 0, 0).clone();
      for (auto& v : cross_v_) v = v.narrow(0, 0, 0).clone();
      if (memory_mask_.defined()) memory_mask_ = memory_mask_.narrow(0, 0, 0).clone();
    } else if (4 * u <= 3 * held) {
      for (auto& k : cross_k_) k = k.index_select(0, used);  // [U, H, S, dh]
      for (auto& v : cross_v_) v = v.index_select(0, used);  // [U, H, S, dh]
      if (memory_mask_.defined()) memory_mask_ = memory_mask_.index_select(0, used);  // [U, 1, 1, S]
      torch::Tensor remap = torch::full({held}, -1, torch::kInt64);                     // old entry -> new
      remap.index_put_({used}, torch::arange(u, torch::kInt64));
      cross_rows_ = remap.index_select(0, cross_rows_);  // [R']
    }
    if (cross_k_.front().size(0) == rows_ &&
        cross_rows_.equal(torch::arange(rows_, torch::kInt64))) {
      cross_rows_ = torch::Tensor();  // identity again
    }
  }
  if (!offsets_.defined()) return;
  offsets_ = offsets_.index_select(0, index);  // [R']
  // Leading positions that no remaining row uses (its rows finished) are dropped.
  const int64_t unused = rows_ > 0 ? offsets_.min().item<int64_t>() : 0;
  if (unused > 0) {
    for (auto& c : self_) {
      if (c.empty()) continue;
      nn::KVCache kept;
      kept.append(c.keys().narrow(2, unused, length_ - unused), c.values().narrow(2, unused, length_ - unused),
                  std::max<int64_t>(capacity_hint_ - unused, length_ - unused));
      c = std::move(kept);
    }
    length_ -= unused;
    capacity_hint_ = std::max<int64_t>(0, capacity_hint_ - unused);
    offsets_ -= unused;
  }
  if (rows_ == 0 || offsets_.max().item<int64_t>() == 0) offsets_ = torch::Tensor();
}

void DecoderState::reorder_self(const torch::Tensor& index) {
  TORCH_CHECK(index.size(0) == rows_, "reorder_self keeps the number of rows");
  reorder_caches(self_, index);
  if (offsets_.defined()) offsets_ = offsets_.index_select(0, index);  // [R]
}

void DecoderState::append(DecoderState&& fresh) {
  if (fresh.length_ != 0) fail("DecoderState::append: the appended state has already fed {} tokens", fresh.length_);
  if (!initialized()) {
    const int64_t hint = std::max(capacity_hint_, fresh.capacity_hint_);
    *this = std::move(fresh);
    capacity_hint_ = hint;
    return;
  }
  if (!fresh.initialized()) return;
  if (fresh.cross_k_.size() != cross_k_.size()) {
    fail("DecoderState::append: {} decoder layers appended to a state of {}", fresh.cross_k_.size(), cross_k_.size());
  }
  const int64_t r0 = rows_, r1 = fresh.rows_;
  const int64_t e0 = cross_k_.front().size(0), e1 = fresh.cross_k_.front().size(0);  // source entries
  const int64_t s0 = cross_k_.front().size(2), s1 = fresh.cross_k_.front().size(2), s = std::max(s0, s1);
  auto pad_source = [s](const torch::Tensor& t) {  // [R, H, S_i, dh] -> [R, H, S, dh], zero keys/values
    return t.size(2) == s ? t : at::constant_pad_nd(t, {0, 0, 0, s - t.size(2)}, 0.0);
  };
  for (size_t i = 0; i < cross_k_.size(); ++i) {
    cross_k_[i] = torch::cat({pad_source(cross_k_[i]), pad_source(fresh.cross_k_[i])}, 0);  // [R0+R1, H, S, dh]
    cross_v_[i] = torch::cat({pad_source(cross_v_[i]), pad_source(fresh.cross_v_[i])}, 0);  // [R0+R1, H, S, dh]
  }
  if (memory_mask_.defined() || fresh.memory_mask_.defined() || s0 != s1) {
    auto padded_mask = [s](const torch::Tensor& m, int64_t rows, int64_t len) {  // -> [R, 1, 1, S] additive
      torch::Tensor a = m.defined() ? m : torch::zeros({rows, 1, 1, len}, torch::kFloat32);
      return len == s ? a : at::constant_pad_nd(a, {0, s - len}, nn::masked_score());
    };
    memory_mask_ = torch::cat({padded_mask(memory_mask_, e0, s0), padded_mask(fresh.memory_mask_, e1, s1)}, 0);
  }
  if (cross_rows_.defined() || fresh.cross_rows_.defined()) {
    torch::Tensor a = cross_rows_.defined() ? cross_rows_ : torch::arange(r0, torch::kInt64);
    torch::Tensor b = fresh.cross_rows_.defined() ? fresh.cross_rows_ : torch::arange(r1, torch::kInt64);
    cross_rows_ = torch::cat({a, b + e0});  // [R0+R1]
  }
  if (length_ > 0) {
    // The new rows' caches: length_ positions they never attend to (their offset).
    for (auto& c : self_) {
      if (c.empty()) continue;
      torch::Tensor k = c.keys(), v = c.values();  // [R0, H, L, dh]
      nn::KVCache grown;
      grown.append(torch::cat({k, torch::zeros({r1, k.size(1), k.size(2), k.size(3)}, k.options())}, 0),
                   torch::cat({v, torch::zeros({r1, v.size(1), v.size(2), v.size(3)}, v.options())}, 0),
                   capacity_for(0));
      c = std::move(grown);
    }
    torch::Tensor old = offsets_.defined() ? offsets_ : torch::zeros({r0}, torch::kInt64);
    offsets_ = torch::cat({old, torch::full({r1}, length_, torch::kInt64)});  // [R0+R1]
  } else if (offsets_.defined()) {
    offsets_ = torch::cat({offsets_, torch::zeros({r1}, torch::kInt64)});  // [R0+R1]
  }
  rows_ = r0 + r1;
  capacity_hint_ = std::max(capacity_hint_, fresh.capacity_hint_ + length_);
}

torch::Tensor DecoderState::row_positions(int64_t t) const {
  if (!offsets_.defined()) return {};
  return (length_ - offsets_).unsqueeze(1) + torch::arange(t, torch::kInt64).unsqueeze(0);  // [R, T]
}

torch::Tensor DecoderState::self_mask(int64_t t) const {
  torch::Tensor causal;  // [T, L+T]
  if (t > 1) causal = nn::additive_causal_mask(t, length_);
  if (!offsets_.defined()) return causal;
  torch::Tensor keep = torch::arange(length_ + t, torch::kInt64).unsqueeze(0) >= offsets_.unsqueeze(1);  // [R, L+T]
  torch::Tensor mask = nn::additive_key_mask(keep);                                                      // [R, 1, 1, L+T]
  return causal.defined() ? mask + causal : mask;                                                        // [R, 1, T|1, L+T]
}

std::shared_ptr<EncoderDecoder> load_encoder_decoder(const io::HfCheckpoint& checkpoint, nn::WeightType compute_type) {
  const nlohmann::json& config = checkpoint.config();
  const std::string path = checkpoint.dir() + "/config.json";
  auto it = config.find("model_type");
  if (it == config.end() || !it->is_string()) fail(Where{path, 0, "model_type"}, "required string field is missing");
  const std::string type = it->get<std::string>();
  if (type == NativeSeq2SeqConfig::kModelType) {
    std::shared_ptr<EncoderDecoder> model = NativeSeq2Seq::load(checkpoint);
    if (compute_type != nn::WeightType::kFloat32) model->set_compute_type(compute_type);
    return model;
  }
  // Seq2SeqModel packs while it loads (see Seq2SeqModel::load).
  if (type == "marian" || type == "m2m_100") return Seq2SeqModel::load(checkpoint, compute_type);
  fail(Where{path, 0, "model_type"}, "unsupported model_type \"{}\" (expected \"marian\", \"m2m_100\" or \"{}\")", type,
       NativeSeq2SeqConfig::kModelType);
}

std::shared_ptr<EncoderDecoder> load_encoder_decoder(const std::string& dir, nn::WeightType compute_type) {
  io::HfCheckpoint checkpoint(dir);
  return load_encoder_decoder(checkpoint, compute_type);
}

}  // namespace loom::models
