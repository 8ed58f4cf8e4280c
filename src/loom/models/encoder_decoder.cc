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
    if (repeat > 1) {
      kv.first = kv.first.repeat_interleave(repeat, 0);    // [B·repeat, H, S, dh]
      kv.second = kv.second.repeat_interleave(repeat, 0);  // [B·repeat, H, S, dh]
    }
    cross_k_.push_back(kv.first);
    cross_v_.push_back(kv.second);
  }
  memory_mask_ = torch::Tensor();
  if (keep.defined() && !keep.all().item<bool>()) {
    torch::Tensor k = repeat > 1 ? keep.repeat_interleave(repeat, 0) : keep;  // [R, S]
    memory_mask_ = nn::additive_key_mask(k);                                  // [R, 1, 1, S]
  }
  rows_ = b * repeat;
  length_ = 0;
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
  for (auto& k : cross_k_) k = k.index_select(0, index);  // [R', H, S, dh]
  for (auto& v : cross_v_) v = v.index_select(0, index);  // [R', H, S, dh]
  if (memory_mask_.defined()) memory_mask_ = memory_mask_.index_select(0, index);  // [R', 1, 1, S]
  rows_ = index.size(0);
}

void DecoderState::reorder_self(const torch::Tensor& index) {
  TORCH_CHECK(index.size(0) == rows_, "reorder_self keeps the number of rows");
  reorder_caches(self_, index);
}

namespace {
std::shared_ptr<EncoderDecoder> load_float32(const io::HfCheckpoint& checkpoint) {
  const nlohmann::json& config = checkpoint.config();
  const std::string path = checkpoint.dir() + "/config.json";
  auto it = config.find("model_type");
  if (it == config.end() || !it->is_string()) fail(Where{path, 0, "model_type"}, "required string field is missing");
  const std::string type = it->get<std::string>();
  if (type == NativeSeq2SeqConfig::kModelType) return NativeSeq2Seq::load(checkpoint);
  if (type == "marian" || type == "m2m_100") return Seq2SeqModel::load(checkpoint);
  fail(Where{path, 0, "model_type"}, "unsupported model_type \"{}\" (expected \"marian\", \"m2m_100\" or \"{}\")", type,
       NativeSeq2SeqConfig::kModelType);
}
}  // namespace

std::shared_ptr<EncoderDecoder> load_encoder_decoder(const io::HfCheckpoint& checkpoint, nn::WeightType compute_type) {
  auto model = load_float32(checkpoint);
  if (compute_type != nn::WeightType::kFloat32) model->set_compute_type(compute_type);
  return model;
}

std::shared_ptr<EncoderDecoder> load_encoder_decoder(const std::string& dir, nn::WeightType compute_type) {
  io::HfCheckpoint checkpoint(dir);
  return load_encoder_decoder(checkpoint, compute_type);
}

}  // namespace loom::models
