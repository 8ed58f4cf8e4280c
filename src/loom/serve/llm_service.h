// loom::serve::LlmService — one decoder LLM (models/causal_lm.h) behind /v1/chat/completions
// and /v1/completions, with continuous batching.
//
// Scheduling: HTTP threads validate, tokenize (chat template for chat) and enqueue a Generation
// into a bounded queue; one scheduler thread owns the decode loop. At EVERY step it admits
// queued generations into the running batch (up to max_running sequences), prefills the newly
// admitted ones together in one left-padded forward, runs one batched decode forward for all
// the others (generate::Sequence::step_batch: each sequence keeps its own KV cache), and retires
// the ones that finished (stop token, stop string, max_tokens, context full) or were cancelled
// (client gone, timeout). A request arriving mid-generation therefore joins the running decode
// batch at the next step instead of waiting for the batch to drain (vLLM / Orca-style
// iteration-level scheduling).
//
// Text: tokens become text with text::StreamDecoder (UTF-8 safe; stop/special tokens not shown)
// and generate::StopStrings (stop strings cut, never shown), so streamed deltas concatenate to
// exactly the non-streamed text.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/serve/api.h"
#include "loom/serve/request_queue.h"

namespace loom::models {
class CausalLM;
}
namespace loom::text {
class CausalTokenizer;
}

namespace loom::serve {

class Metrics;

/// One generation in flight (opaque; shared by the HTTP thread and the scheduler).
struct Generation;

/// What a generation produced since the last look (LlmService::next) or in all (wait).
struct GenerationUpdate {
  std::string text;               ///< new text (next) / the whole text (wait)
  bool finished = false;
  std::string finish_reason;      ///< "stop" (stop token or stop string) or "length"; "" while running
  int64_t prompt_tokens = 0;      ///< tokens of the prompt (specials included)
  int64_t completion_tokens = 0;  ///< tokens generated so far (a stop token included)
};

/// A decoder LLM with its scheduler thread. Thread-safe.
class LlmService {
 public:
  /// Loads an HF causal-LM directory (model + tokenizer; throws loom::Error naming the file)
  /// and starts the scheduler.
  /// compute_type: weight type of the model's linear layers ("float32", "int8", "bf16", "auto";
  /// nn::parse_compute_type; loom::Error naming --compute-type for another value).
  LlmService(std::string name, const std::string& model_dir, Metrics& metrics, ServiceLimits limits,
             const std::string& compute_type = "float32");
  ~LlmService();  ///< stops the scheduler; waiting requests fail with 503
  LlmService(const LlmService&) = delete;
  LlmService& operator=(const LlmService&) = delete;

  /// Renders the messages with the model's chat template (generation prompt added), tokenizes
  /// and enqueues them; stop ids = generate::chat_stop_ids; max_tokens defaults to the
  /// max_tokens limit. Throws ApiError: 400 when the model has no chat template or the template
  /// refuses the conversation (param "messages", code "invalid_messages"), and as start().
  std::shared_ptr<Generation> start_chat(const ChatRequest& request);
  /// Tokenizes the prompt (BOS as the tokenizer adds it) and enqueues it; stop ids = the
  /// model's eos; max_tokens defaults to 16 (as OpenAI's completions). Throws as start().
  std::shared_ptr<Generation> start_completion(const CompletionRequest& request);

  /// Waits up to `wait` for news of g and returns the text produced since the last call.
  /// Throws ApiError 504 (past the timeout; the generation is cancelled), 500 (engine
  /// failure), 503 (shutting down).
  GenerationUpdate next(Generation& g, std::chrono::milliseconds wait);
  /// Blocks until g finishes and returns all of it. `cancelled` is polled every 20 ms; when
  /// it turns true the generation is cancelled and ApiError 499 is thrown. Throws as next().
  GenerationUpdate wait(Generation& g, const std::function<bool()>& cancelled = {});
  /// Cancels g: it leaves the queue or the running batch at the next step (its KV cache freed).
  void cancel(Generation& g);

  const std::string& name() const { return name_; }
  /// The model's context window in tokens.
  int64_t context_length() const;
  /// True when the tokenizer has a chat template (chat.completions works).
  bool has_chat_template() const { return has_chat_template_; }
  /// Requests queued now (not yet in the running batch).
  size_t queue_length() const;

 private:
  // Validates the prompt and options, enqueues. Throws ApiError 400 "context_length_exceeded"
  // (prompt over max_input_tokens or not leaving room for one new token in the context
  // window), 400 max_tokens over the limit (param "max_tokens"), 429 queue full ("queue_full"),
  // 503 shutting down.
  std::shared_ptr<Generation> start(const GenerationRequest& request, std::vector<int64_t> prompt,
                                    std::vector<int64_t> stop_ids, int64_t default_max_tokens);
  void scheduler_loop();
  // Drops from `running` the generations that finished, failed or were cancelled (client gone,
  // timeout), freeing their KV cache, decoder and stop-string state; updates the running gauge.
  // Scheduler thread, under queue_.mutex().
  void retire(std::vector<std::shared_ptr<Generation>>& running);
  // One forward over `group` (all prefilling or all decoding), then their text and retirement.
  void step_group(const std::vector<std::shared_ptr<Generation>>& group);

  std::string name_;
  Metrics& metrics_;
  ServiceLimits limits_;
  std::shared_ptr<const models::CausalLM> model_;
  std::unique_ptr<text::CausalTokenizer> tokenizer_;
  bool has_chat_template_ = false;
  std::vector<int64_t> completion_stops_, chat_stops_;

  // Last: destroyed first, so the scheduler stops before the model goes. Its mutex guards
  // the shared fields of every Generation.
  RequestQueue<Generation> queue_;
};

}  // namespace loom::serve
