// loom::serve::TranslationService — one translation model behind the server: the same
// segmentation and reassembly (pipeline/text_segments.h: source-language sentence rules, Marian
// ">>xx<<" prefixes, the inline code / URL re-join and its fallback) and engine
// (generate::Translator, generation options from the checkpoint as `loom translate` builds them)
// as `loom translate`, so a text sent to /v1/translations comes back exactly as `loom translate`
// writes it for a JSONL field ("format": "markdown") or with --no-markdown ("format": "text").
//
// Scheduling: HTTP threads validate and enqueue requests into a bounded queue; one scheduler
// thread owns the model and, each round, takes every queued request (up to max_batch_segments
// segments), groups them by (source_lang, target_lang, beam_size) and sends each group's
// segments to the Translator in ONE call, so concurrent requests share length-bucketed encoder
// and decoder batches. This is request-level dynamic batching: a request arriving while a round
// runs waits for the next round (it does not join running decoder steps).
#pragma once

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
class EncoderDecoder;
}
namespace loom::text {
class Seq2SeqTokenizer;
}
namespace loom::generate {
struct GenerationOptions;
}

namespace loom::serve {

class Metrics;


/// A translation model with its scheduler thread. Thread-safe: translate() is called from many
/// HTTP threads at once.
class TranslationService {
 public:
  /// Loads the model directory (HF Marian / M2M100-NLLB or a loom model directory) and starts
  /// the scheduler. Throws loom::Error for a bad directory (as `loom translate`).
  TranslationService(std::string name, const std::string& model_dir, Metrics& metrics, ServiceLimits limits);
  ~TranslationService();  ///< stops the scheduler (queued requests fail with 503)
  TranslationService(const TranslationService&) = delete;
  TranslationService& operator=(const TranslationService&) = delete;

  /// Translates a parsed /v1/translations request and returns the response object:
  /// {"id","object":"translation.list","created","model","data":[{"object":"translation",
  /// "index","translation","segments":[{"source","translation","translate"}],"truncated":false}],
  /// "usage":{"prompt_tokens","completion_tokens","total_tokens"}}. prompt_tokens are source
  /// tokens (specials included) of the translated segments; completion_tokens the target
  /// tokenizer's ids of the translations (</s> included). Blocks until done; when cancelled
  /// (polled every 20 ms) turns true (client gone) the job is dropped. Throws ApiError: 400
  /// unknown language (param source_lang/target_lang, code "unknown_language"), 400 over
  /// max_input_tokens (code "context_length_exceeded"), 429 queue full (code "queue_full"),
  /// 504 timeout, 499 cancelled, 503 shutting down, 500 engine failure.
  nlohmann::json translate(const TranslationRequest& request, const std::function<bool()>& cancelled = {});

  const std::string& name() const { return name_; }
  const std::string& model_dir() const { return model_dir_; }
  /// Valid target codes (tokenizer languages(); {} for a single-pair Marian model) and the
  /// model's default pair from tokenizer_config.json ("" when none).
  std::vector<std::string> languages() const;
  std::string default_source_lang() const { return default_src_; }
  std::string default_target_lang() const { return default_tgt_; }
  /// Requests queued now.
  size_t queue_length() const;

 private:
  struct Job;
  void scheduler_loop();
  void run_group(std::vector<std::shared_ptr<Job>>& group);

  std::string name_, model_dir_, default_src_, default_tgt_;
  Metrics& metrics_;
  ServiceLimits limits_;
  std::shared_ptr<models::EncoderDecoder> model_;
  std::unique_ptr<text::Seq2SeqTokenizer> tokenizer_;   // scheduler thread only
  std::unique_ptr<text::Seq2SeqTokenizer> validator_;   // HTTP threads, under validator_mu_
  std::unique_ptr<generate::GenerationOptions> generation_;
  std::mutex validator_mu_;

  // Last: destroyed first, so the scheduler stops before the model goes. Its mutex guards
  // every Job's state and results.
  RequestQueue<Job> queue_;
};

}  // namespace loom::serve
