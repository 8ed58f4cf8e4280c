#include "loom/serve/embedding_service.h"

#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "loom/io/jsonl.h"
#include "loom/models/bert.h"
#include "loom/serve/metrics.h"

namespace loom::serve {

using Clock = std::chrono::steady_clock;

EmbeddingService::EmbeddingService(std::string name, const std::string& model_dir, Metrics& metrics,
                                   ServiceLimits limits)
    : name_(std::move(name)), metrics_(metrics), limits_(limits), embedder_(models::SentenceEmbedder::load(model_dir)) {}

EmbeddingService::~EmbeddingService() = default;

int64_t EmbeddingService::dim() const { return embedder_->dim(); }

nlohmann::json EmbeddingService::embed(const EmbeddingRequest& request) {
  int64_t tokens = 0;
  for (const std::string& text : request.inputs) {
    tokens += static_cast<int64_t>(embedder_->tokenizer().encode(text, embedder_->max_seq_length()).size());
    if (tokens > limits_.max_input_tokens)
      throw ApiError(400, "invalid_request_error",
                     fmt::format("the input has more than {} tokens (max input tokens)", limits_.max_input_tokens),
                     "input", "context_length_exceeded");
  }
  {
    std::lock_guard<std::mutex> lock(count_mu_);
    if (waiting_ >= limits_.max_queued) {
      metrics_.record_rejected();
      throw ApiError(429, "rate_limit_error",
                     fmt::format("{} requests are queued for model '{}'; retry later", waiting_, name_), "",
                     "queue_full");
    }
    ++waiting_;
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(limits_.timeout_seconds));
  std::unique_lock<std::timed_mutex> run(run_mu_, std::defer_lock);
  run.try_lock_until(deadline);
  {
    std::lock_guard<std::mutex> lock(count_mu_);
    --waiting_;
  }
  if (!run.owns_lock())
    throw ApiError(504, "timeout_error",
                   fmt::format("the request waited longer than {} s and was cancelled", limits_.timeout_seconds), "",
                   "timeout");
  const auto t0 = Clock::now();
  torch::Tensor vectors;
  {
    torch::InferenceMode guard;
    vectors = embedder_->embed(request.inputs).contiguous();  // [N, d_model] float32
  }
  metrics_.record_batch(1, static_cast<int64_t>(request.inputs.size()), 0,
                        std::chrono::duration<double>(Clock::now() - t0).count());
  run.unlock();
  const int64_t d = vectors.size(1);
  const float* p = vectors.data_ptr<float>();
  nlohmann::json data = nlohmann::json::array();
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const float* row = p + static_cast<int64_t>(i) * d;
    nlohmann::json item = {{"object", "embedding"}, {"index", i}};
    if (request.base64) {
      // OpenAI's base64 format: the float32 values' little-endian bytes (x86/ARM are little-endian).
      item["embedding"] = io::base64_encode(std::string_view(reinterpret_cast<const char*>(row), sizeof(float) * d));
    } else {
      item["embedding"] = std::vector<float>(row, row + d);
    }
    data.push_back(std::move(item));
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", name_},
          {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
}

}  // namespace loom::serve
