// loom::serve::EmbeddingService — one sentence-transformers model (models::SentenceEmbedder,
// HF parity on tests/data/hf-tiny/bert-minilm) behind POST /v1/embeddings.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "loom/serve/api.h"

namespace loom::models {
class SentenceEmbedder;
}

namespace loom::serve {

class Metrics;

/// An embedding model. Thread-safe: requests run one at a time (each batched over its inputs by
/// SentenceEmbedder::embed); at most max_queued wait, more get 429.
class EmbeddingService {
 public:
  /// Loads a sentence-transformers (or plain BertModel) directory; throws loom::Error naming
  /// the file.
  EmbeddingService(std::string name, const std::string& model_dir, Metrics& metrics, ServiceLimits limits);
  ~EmbeddingService();

  /// The /v1/embeddings response: {"object":"list","data":[{"object":"embedding","index",
  /// "embedding": [d_model floats] | base64 of little-endian float32}],"model","usage":
  /// {"prompt_tokens","total_tokens"}}. Inputs longer than the model's max_seq_length are
  /// truncated as sentence-transformers does; prompt_tokens counts the tokens embedded
  /// ([CLS]/[SEP] included). Throws ApiError 400 "context_length_exceeded" (all inputs over
  /// max_input_tokens), 429 "queue_full", 504 "timeout" (waited past the timeout).
  nlohmann::json embed(const EmbeddingRequest& request);

  const std::string& name() const { return name_; }
  /// d_model of the vectors.
  int64_t dim() const;

 private:
  std::string name_;
  Metrics& metrics_;
  ServiceLimits limits_;
  std::shared_ptr<models::SentenceEmbedder> embedder_;
  std::timed_mutex run_mu_;    // one embed() computes at a time
  std::mutex count_mu_;  // guards waiting_
  size_t waiting_ = 0;
};

}  // namespace loom::serve
