// loom::serve::Server — the OpenAI-compatible HTTP server behind `loom serve` (cpp-httplib).
// Routes: GET / (the embedded web page), GET /health, GET /metrics (Prometheus text),
// GET /v1/models, POST /v1/translations (translation models), POST /v1/chat/completions and
// POST /v1/completions (decoder LLMs; "stream": true answers server-sent events ending with
// "data: [DONE]"), POST /v1/embeddings (sentence-embedding models). Every error is an OpenAI-style error object
// {"error": {"message", "type", "param", "code"}} with a 4xx/5xx status; 429 carries
// Retry-After. A client that closes its connection while its request waits or runs cancels it
// (status 499 in the metrics; a translation round already running finishes, its result is
// dropped; an LLM generation leaves the running batch at the next decode step). Binds 127.0.0.1 unless told otherwise; with an API key every /v1/ route needs
// "Authorization: Bearer KEY" (401 otherwise).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/serve/api.h"
#include "loom/serve/embedding_service.h"
#include "loom/serve/llm_service.h"
#include "loom/serve/metrics.h"
#include "loom/serve/translation_service.h"

namespace httplib {
class Server;
}

namespace loom::serve {

/// What a model directory holds, from its config.json "model_type".
enum class ModelKind {
  kTranslation,  ///< marian, m2m_100 (NLLB), loom_seq2seq
  kEmbedding,    ///< bert (sentence-transformers directories)
  kDecoderLm,    ///< gemma, gemma2, llama, qwen2, mistral, loom_lm ...
};

/// Reads DIR/config.json and classifies it; throws loom::Error naming the file and
/// "model_type" for a missing or unknown type.
ModelKind detect_model_kind(const std::string& model_dir);

/// Server configuration (the `loom serve` flags).
struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 ///< 0 = any free port (see Server::port())
  std::string api_key;             ///< "" = no authentication
  std::vector<std::pair<std::string, std::string>> models;  ///< NAME -> model directory (resolved)
  size_t max_body_bytes = 4 << 20; ///< larger bodies -> 413
  RequestLimits request_limits;
  ServiceLimits service_limits;
  int http_threads = 64;           ///< connections served at once
  int retry_after_seconds = 1;     ///< Retry-After of a 429
  /// Weight type of translation and LLM models' linear layers: "float32", "int8", "bf16" or
  /// "auto" (nn::parse_compute_type; as `loom translate/chat --compute-type`). Embedding models
  /// stay float32.
  std::string compute_type = "float32";
};

/// Loads the models and serves them. Thread-safe start/stop.
class Server {
 public:
  /// Loads every model (throws loom::Error for a bad directory or a duplicate name) and
  /// registers the routes; does not listen yet.
  explicit Server(ServerOptions options);
  ~Server();
  /// Binds host:port (port 0: a free one). Throws loom::Error when the address is taken.
  void bind();
  /// Serves until stop(); call after bind().
  void listen();
  /// Stops listen() (from another thread or a signal-watching thread).
  void stop();
  /// The bound port (after bind()).
  int port() const { return port_; }
  Metrics& metrics() { return metrics_; }

 private:
  void register_routes();
  bool authorized(const std::string& authorization) const;
  // The service of `model` for a route, or ApiError 404 model_not_found (400 when the model
  // exists but is of another kind).
  LlmService& llm(const std::string& model);
  EmbeddingService& embedding(const std::string& model);
  [[noreturn]] void unknown_model(const std::string& model, const char* kind) const;

  ServerOptions options_;
  Metrics metrics_;
  std::map<std::string, std::unique_ptr<TranslationService>> translation_;
  std::map<std::string, std::unique_ptr<LlmService>> llm_;
  std::map<std::string, std::unique_ptr<EmbeddingService>> embedding_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  int listen_fd_ = -1;  // the listening socket, seen by the socket-options hook (for its backlog)
  int64_t created_ = 0;
};

/// The embedded web page (GET /): a single HTML document with inline CSS and JS.
const std::string& web_page();

}  // namespace loom::serve
