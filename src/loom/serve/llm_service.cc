#include "loom/serve/llm_service.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "loom/core/error.h"
#include "loom/generate/causal_generate.h"
#include "loom/models/causal_lm.h"
#include "loom/nn/packed_linear.h"
#include "loom/serve/metrics.h"
#include "loom/text/causal_tokenizer.h"
#include "loom/text/chat_template.h"

namespace loom::serve {

using Clock = std::chrono::steady_clock;

struct Generation {
  enum State { kQueued, kRunning, kDone, kFailed, kCancelled };
  // Set before enqueueing, then read-only.
  std::vector<int64_t> prompt;
  generate::CausalGenerateOptions options;
  std::vector<std::string> stop_strings;
  Clock::time_point deadline;
  // Scheduler thread only.
  std::unique_ptr<generate::Sequence> seq;
  std::unique_ptr<text::StreamDecoder> decoder;
  std::unique_ptr<generate::StopStrings> stops;
  // Shared, under the service queue's mutex.
  State state = kQueued;
  std::string text;       // shown text so far
  size_t taken = 0;       // bytes of text next() has handed out
  int64_t completion_tokens = 0;
  std::string finish_reason, error;
};

LlmService::LlmService(std::string name, const std::string& model_dir, Metrics& metrics, ServiceLimits limits,
                       const std::string& compute_type)
    : name_(std::move(name)), metrics_(metrics), limits_(limits), queue_(name_, metrics, limits.max_queued) {
  model_ = models::CausalLM::load(model_dir, nn::parse_compute_type(compute_type, "--compute-type"));
  tokenizer_ = std::make_unique<text::CausalTokenizer>(text::CausalTokenizer::load(model_dir));
  try {
    text::chat_template_of(*tokenizer_);
    has_chat_template_ = true;
  } catch (const Error&) {
    has_chat_template_ = false;  // completions still work; chat answers 400
  }
  completion_stops_ = generate::default_stop_ids(*model_);
  chat_stops_ = generate::chat_stop_ids(*model_, *tokenizer_);
  queue_.start([this] { scheduler_loop(); });
}

LlmService::~LlmService() { queue_.stop(); }

int64_t LlmService::context_length() const { return model_->config().max_position; }

size_t LlmService::queue_length() const { return queue_.size(); }

std::shared_ptr<Generation> LlmService::start_chat(const ChatRequest& request) {
  if (!has_chat_template_)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("model '{}' has no chat template; use /v1/completions", name_), "model",
                   "no_chat_template");
  std::string prompt;
  try {
    prompt = text::apply_chat_template(*tokenizer_, request.messages, /*add_generation_prompt=*/true);
  } catch (const Error& e) {
    throw ApiError(400, "invalid_request_error", std::string("the chat template refused the messages: ") + e.what(),
                   "messages", "invalid_messages");
  }
  std::vector<int64_t> ids;
  try {
    ids = tokenizer_->encode(prompt, /*add_special_tokens=*/false);  // the template wrote the BOS
  } catch (const Error& e) {
    throw ApiError(400, "invalid_request_error", e.what(), "messages", "invalid_value");
  }
  return start(request.gen, std::move(ids), chat_stops_, limits_.max_tokens);
}

std::shared_ptr<Generation> LlmService::start_completion(const CompletionRequest& request) {
  std::vector<int64_t> ids;
  try {
    ids = tokenizer_->encode(request.prompt, /*add_special_tokens=*/true);
  } catch (const Error& e) {
    throw ApiError(400, "invalid_request_error", e.what(), "prompt", "invalid_value");
  }
  return start(request.gen, std::move(ids), completion_stops_, 16);
}

std::shared_ptr<Generation> LlmService::start(const GenerationRequest& request, std::vector<int64_t> prompt,
                                              std::vector<int64_t> stop_ids, int64_t default_max_tokens) {
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n == 0) throw ApiError(400, "invalid_request_error", "the prompt has no tokens", "", "empty_input");
  if (n > limits_.max_input_tokens)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("the prompt has {} tokens, over the limit of {} (max input tokens)", n,
                               limits_.max_input_tokens),
                   "", "context_length_exceeded");
  if (n >= context_length())
    throw ApiError(400, "invalid_request_error",
                   fmt::format("the prompt has {} tokens but the model's context window is {} tokens", n,
                               context_length()),
                   "", "context_length_exceeded");
  if (request.max_tokens > limits_.max_tokens)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("'max_tokens' is {}, over the server's limit of {}", request.max_tokens, limits_.max_tokens),
                   "max_tokens", "invalid_value");
  auto g = std::make_shared<Generation>();
  g->prompt = std::move(prompt);
  g->options.max_new_tokens = request.max_tokens > 0 ? request.max_tokens : std::min(default_max_tokens, limits_.max_tokens);
  g->options.sampling.temperature = request.temperature;
  g->options.sampling.top_p = request.top_p;
  g->options.sampling.seed = request.seed ? *request.seed : std::random_device{}();
  g->options.stop_ids = std::move(stop_ids);
  g->stop_strings = request.stop;
  g->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(limits_.timeout_seconds));
  queue_.push(g);
  return g;
}

void LlmService::cancel(Generation& g) {
  std::lock_guard<std::mutex> lock(queue_.mutex());
  if (g.state == Generation::kQueued || g.state == Generation::kRunning) g.state = Generation::kCancelled;
  queue_.work().notify_one();
}

GenerationUpdate LlmService::next(Generation& g, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(queue_.mutex());
  auto news = [&] {
    return queue_.stopping() || g.taken < g.text.size() || g.state == Generation::kDone || g.state == Generation::kFailed ||
           g.state == Generation::kCancelled;
  };
  queue_.news().wait_for(lock, std::min<Clock::duration>(wait, std::max<Clock::duration>(g.deadline - Clock::now(),
                                                                                     Clock::duration::zero())),
                    news);
  if (g.state == Generation::kFailed)
    throw ApiError(500, "server_error", "generation failed: " + g.error, "", "engine_error");
  if (g.state != Generation::kDone) {
    if (queue_.stopping()) throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
    if (g.state == Generation::kCancelled)
      throw ApiError(499, "invalid_request_error", "the request was cancelled", "", "cancelled");
    if (Clock::now() >= g.deadline) {
      g.state = Generation::kCancelled;
      queue_.work().notify_one();
      throw timeout_error(limits_.timeout_seconds);
    }
  }
  GenerationUpdate u;
  u.text = g.text.substr(g.taken);
  g.taken = g.text.size();
  u.finished = g.state == Generation::kDone;
  u.finish_reason = g.finish_reason;
  u.prompt_tokens = static_cast<int64_t>(g.prompt.size());
  u.completion_tokens = g.completion_tokens;
  return u;
}

GenerationUpdate LlmService::wait(Generation& g, const std::function<bool()>& cancelled) {
  GenerationUpdate all;
  for (;;) {
    GenerationUpdate u = next(g, std::chrono::milliseconds(20));
    all.text += u.text;
    all.finished = u.finished;
    all.finish_reason = u.finish_reason;
    all.prompt_tokens = u.prompt_tokens;
    all.completion_tokens = u.completion_tokens;
    if (u.finished) return all;
    if (cancelled && cancelled()) {
      cancel(g);
      throw client_gone_error();
    }
  }
}

void LlmService::scheduler_loop() {
  torch::InferenceMode guard;
  std::vector<std::shared_ptr<Generation>> running;
  for (;;) {
    std::vector<std::shared_ptr<Generation>> admitted;
    {
      std::unique_lock<std::mutex> lock(queue_.mutex());
      auto& queue = queue_.items();
      queue_.work().wait(lock, [&] { return queue_.stopping() || !queue.empty() || !running.empty(); });
      if (queue_.stopping()) return;
      // Retire what was cancelled (client gone, timeout) since the last step: frees its cache.
      retire(running);
      // Admit queued generations into the running batch.
      while (!queue.empty() && running.size() + admitted.size() < static_cast<size_t>(limits_.max_running)) {
        auto g = std::move(queue.front());
        queue.pop_front();
        if (g->state != Generation::kQueued) continue;
        g->state = Generation::kRunning;
        admitted.push_back(std::move(g));
      }
      queue_.queue_changed();
      queue_.set_running(static_cast<int64_t>(running.size() + admitted.size()));
    }
    for (auto& g : admitted) {
      try {
        g->seq = std::make_unique<generate::Sequence>(model_, g->prompt, g->options);
        g->decoder = std::make_unique<text::StreamDecoder>(*tokenizer_, /*skip_special_tokens=*/true);
        g->stops = std::make_unique<generate::StopStrings>(g->stop_strings);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(queue_.mutex());
        g->error = e.what();
        g->state = Generation::kFailed;
      }
    }
    admitted.erase(std::remove_if(admitted.begin(), admitted.end(), [](const auto& g) { return !g->seq; }),
                   admitted.end());
    // Prefill the newcomers together, then one decode step for everyone already running.
    if (!admitted.empty()) step_group(admitted);
    if (!running.empty()) step_group(running);
    running.insert(running.end(), admitted.begin(), admitted.end());
    queue_.news().notify_all();
    if (limits_.step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(limits_.step_delay_ms));
    {
      std::lock_guard<std::mutex> lock(queue_.mutex());
      retire(running);
    }
  }
}

void LlmService::retire(std::vector<std::shared_ptr<Generation>>& running) {
  auto done = [](const std::shared_ptr<Generation>& g) {
    return g->state != Generation::kRunning || !g->seq || g->seq->finished();
  };
  for (auto& g : running) {
    if (!done(g)) continue;
    if (g->state == Generation::kCancelled && g->seq) metrics_.record_cancelled_sequences(1);
    // The HTTP thread may still hold g (to read its text): free the KV cache and decoder now.
    g->seq.reset();
    g->decoder.reset();
    g->stops.reset();
  }
  running.erase(std::remove_if(running.begin(), running.end(), [](const auto& g) { return !g->seq; }), running.end());
  queue_.set_running(static_cast<int64_t>(running.size()));
}

void LlmService::step_group(const std::vector<std::shared_ptr<Generation>>& group) {
  const auto t0 = Clock::now();
  std::vector<generate::Sequence*> seqs;
  for (const auto& g : group) seqs.push_back(g->seq.get());
  std::vector<std::optional<int64_t>> next;
  std::string error;
  try {
    next = generate::Sequence::step_batch(seqs);
  } catch (const std::exception& e) {
    error = e.what();
  }
  int64_t generated = 0;
  std::lock_guard<std::mutex> lock(queue_.mutex());
  for (size_t i = 0; i < group.size(); ++i) {
    Generation& g = *group[i];
    generate::Sequence& seq = *g.seq;
    if (!error.empty()) {
      g.error = error;
      g.state = Generation::kFailed;
      seq.stop();
      continue;
    }
    if (g.state != Generation::kRunning) {  // cancelled while the step ran
      seq.stop();
      continue;
    }
    std::string shown;
    bool end = !next[i].has_value();
    if (next[i]) {
      ++generated;
      g.completion_tokens = static_cast<int64_t>(seq.generated().size());
      if (seq.finish_reason() != generate::FinishReason::kStopToken) {  // a stop token is not shown
        shown += g.stops->push(g.decoder->push(*next[i]));
        if (g.stops->stopped()) seq.stop();
      }
      if (static_cast<int64_t>(seq.generated().size()) >= g.options.max_new_tokens ||
          static_cast<int64_t>(seq.tokens().size()) >= model_->config().max_position)
        seq.stop();  // finished by length: retire now rather than after one more empty step
      end = seq.finished();
    }
    if (end) {
      shown += g.stops->push(g.decoder->finish());
      shown += g.stops->finish();
      const bool by_stop = seq.finish_reason() == generate::FinishReason::kStopToken || g.stops->stopped();
      g.finish_reason = by_stop ? "stop" : "length";
      g.state = Generation::kDone;
      if (!seq.finished()) seq.stop();
    }
    g.text += shown;
  }
  metrics_.record_batch(static_cast<int64_t>(group.size()), static_cast<int64_t>(group.size()), generated,
                        std::chrono::duration<double>(Clock::now() - t0).count());
}

}  // namespace loom::serve
