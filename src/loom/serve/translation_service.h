// loom::serve::TranslationService — one translation model behind the server: the same
// segmentation and reassembly (pipeline/text_segments.h: source-language sentence rules, Marian
// ">>xx<<" prefixes, the inline code / URL re-join and its fallback) and engine
// (generate::Translator, generation options from the checkpoint as `loom translate` builds them)
// as `loom translate`, so a text sent to /v1/translations comes back exactly as `loom translate`
// writes it for a JSONL field ("format": "markdown") or with --no-markdown ("format": "text").
//
// Scheduling (continuous batching): HTTP threads validate and enqueue requests into a bounded
// queue; one scheduler thread owns the model and a generate::StepwiseSearch, the running
// decoder batch of every admitted request's sentences (beams included). Each loop it (1)
// retires the requests cancelled since the last step (client gone, timeout: their rows leave
// the batch, counted in loom_cancelled_sequences_total), (2) admits queued requests while the
// running ones hold fewer than max_batch_segments segments (a larger request runs when the
// batch is empty): each admitted request's segments are tokenized and split as `loom
// translate` does (generate::Translator::prepare) and encoded once, in length-bucketed encoder
// batches, and their rows join the running batch, (3) runs ONE decoder step for all rows of all
// requests (any language pair and beam size: requests with the same (source_lang,
// target_lang, beam_size) share the search's tensor calls), and (4) delivers the requests whose
// last sentence finished. A request arriving mid-decoding therefore starts at the next step
// and a short one finishes before a long one that started earlier. Still outside the step
// loop: the second pass of `loom translate`'s inline-code/URL re-join
// (pipeline::retranslate_lost_spans, only for sentences whose translation lost a span) runs as
// a one-shot search inside the delivering step.
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
  /// compute_type: weight type of the model's linear layers ("float32", "int8", "bf16", "auto";
  /// nn::parse_compute_type; loom::Error naming --compute-type for another value).
  TranslationService(std::string name, const std::string& model_dir, Metrics& metrics, ServiceLimits limits,
                     const std::string& compute_type = "float32");
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
  struct Batch;  // the scheduler's running batch
  void scheduler_loop();
  void admit(Batch& batch, const std::shared_ptr<Job>& job);
  void step(Batch& batch);
  int64_t finish(Batch& batch, const std::shared_ptr<Job>& job);  // returns tokens generated by the re-join pass
  void retire(Batch& batch, Job& job, bool cancelled);
  void fail_job(Batch& batch, const std::shared_ptr<Job>& job, const std::string& error);
  std::shared_ptr<const generate::GenerationOptions> options_for(Batch& batch, const Job& job);

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
