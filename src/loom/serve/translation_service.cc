#include "loom/serve/translation_service.h"

#include <chrono>

#include <fmt/format.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/generate/options.h"
#include "loom/generate/translator.h"
#include "loom/io/checkpoint.h"
#include "loom/pipeline/text_segments.h"
#include "loom/pipeline/translation_engine.h"
#include "loom/models/encoder_decoder.h"
#include "loom/serve/metrics.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace loom::serve {

using Clock = std::chrono::steady_clock;

struct TranslationService::Job {
  enum State { kQueued, kRunning, kDone, kFailed, kCancelled };
  // Inputs (set by the HTTP thread before enqueueing, then read-only).
  std::string src, tgt;
  int64_t beam = 0;
  std::vector<pipeline::SegmentedText> segmented;  // per input, as `loom translate` cuts it
  std::vector<std::string> texts;                  // engine inputs, all inputs in order
  // Results (written by the scheduler under queue_.mutex() before state changes to kDone/kFailed).
  State state = kQueued;
  std::vector<std::string> translations;  // per translate segment (inline spans re-joined)
  int64_t completion_tokens = 0;
  std::string error;
};

namespace {

std::string config_string(const std::string& model_dir, std::initializer_list<const char*> keys) {
  const std::string path = model_dir + "/tokenizer_config.json";
  if (!core::file_exists(path)) return {};
  const nlohmann::json j = core::read_json(path);
  for (const char* k : keys) {
    auto it = j.find(k);
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return {};
}

}  // namespace

TranslationService::TranslationService(std::string name, const std::string& model_dir, Metrics& metrics,
                                       ServiceLimits limits)
    : name_(std::move(name)),
      model_dir_(model_dir),
      metrics_(metrics),
      limits_(limits),
      queue_(name_, metrics, limits.max_queued) {
  io::HfCheckpoint checkpoint(model_dir);
  tokenizer_ = text::load_seq2seq_tokenizer(model_dir);
  validator_ = text::load_seq2seq_tokenizer(model_dir);
  model_ = models::load_encoder_decoder(checkpoint);
  generation_ = std::make_unique<generate::GenerationOptions>(
      generate::GenerationOptions::from_hf(checkpoint.config(), checkpoint.generation_config()));
  generation_->num_return_sequences = 1;  // as `loom translate` (its default --length-cap 2,10 is the options' default)
  default_src_ = config_string(model_dir, {"source_lang", "src_lang"});
  default_tgt_ = config_string(model_dir, {"target_lang", "tgt_lang"});
  queue_.start([this] { scheduler_loop(); });
}

TranslationService::~TranslationService() {
  queue_.stop();
}

std::vector<std::string> TranslationService::languages() const { return validator_->languages(); }

size_t TranslationService::queue_length() const { return queue_.size(); }

nlohmann::json TranslationService::translate(const TranslationRequest& request,
                                             const std::function<bool()>& cancelled) {
  auto job = std::make_shared<Job>();
  job->src = request.source_lang;
  job->tgt = request.target_lang;
  job->beam = request.beam_size;
  // Validate the languages and count source tokens with the HTTP threads' own tokenizer (the
  // scheduler's tokenizer switches language pairs between groups).
  int64_t prompt_tokens = 0;
  {
    std::lock_guard<std::mutex> lock(validator_mu_);
    try {
      validator_->set_languages(request.source_lang, request.target_lang);
    } catch (const Error& e) {
      const std::string msg = e.what();
      const bool src_bad = !request.source_lang.empty() && msg.find(request.source_lang) != std::string::npos &&
                           (request.target_lang.empty() || msg.find(request.target_lang) == std::string::npos);
      throw ApiError(400, "invalid_request_error", msg, src_bad ? "source_lang" : "target_lang",
                     "unknown_language");
    }
    // Cut the inputs exactly as `loom translate` does (pipeline/text_segments.h), in the
    // request's source language (or the model's).
    pipeline::SegmentingOptions seg_options;
    seg_options.markdown = request.markdown;
    seg_options.source_lang = pipeline::resolve_source_lang(*validator_, model_dir_, request.source_lang);
    seg_options.language_codes = pipeline::leading_language_codes(*validator_);
    for (const std::string& input : request.inputs) {
      job->segmented.push_back(pipeline::segment_for_translation(input, seg_options));
      job->segmented.back().append_inputs(job->texts);
    }
    for (const std::string& t : job->texts) {
      prompt_tokens += static_cast<int64_t>(validator_->encode_source(t).size());
      if (prompt_tokens > limits_.max_input_tokens)
        throw ApiError(400, "invalid_request_error",
                       fmt::format("the input has more than {} source tokens (max input tokens)", limits_.max_input_tokens),
                       "input", "context_length_exceeded");
    }
  }

  const auto start = Clock::now();
  if (!job->texts.empty()) {
    queue_.push(job);
    std::unique_lock<std::mutex> lock(queue_.mutex());
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(limits_.timeout_seconds));
    while (job->state == Job::kQueued || job->state == Job::kRunning) {
      if (queue_.stopping()) throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
      const auto now = Clock::now();
      if (now >= deadline || (cancelled && cancelled())) {
        const bool timed_out = now >= deadline;
        job->state = Job::kCancelled;  // the scheduler drops it (or discards its result)
        queue_.remove(job);
        if (timed_out) throw timeout_error(limits_.timeout_seconds);
        throw client_gone_error();
      }
      queue_.news().wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(20)));
    }
    if (job->state == Job::kFailed)
      throw ApiError(500, "server_error", "translation failed: " + job->error, "", "engine_error");
  }

  nlohmann::json data = nlohmann::json::array();
  size_t first = 0;
  for (size_t i = 0; i < job->segmented.size(); ++i) {
    const pipeline::SegmentedText& st = job->segmented[i];
    nlohmann::json seg_json = nlohmann::json::array();
    size_t next = first;
    for (const auto& s : st.segments) {
      if (s.translate)
        seg_json.push_back({{"source", s.text}, {"translation", job->translations.at(next++)}, {"translate", true}});
      else
        seg_json.push_back({{"source", s.text}, {"translation", s.text}, {"translate", false}});
    }
    data.push_back({{"object", "translation"},
                    {"index", i},
                    {"translation", pipeline::reassemble_text(st, job->translations, first)},
                    {"segments", std::move(seg_json)},
                    {"truncated", false}});
    first += st.count;
  }
  return {{"id", new_id("tr-")},
          {"object", "translation.list"},
          {"created", unix_time()},
          {"model", name_},
          {"data", std::move(data)},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", job->completion_tokens},
            {"total_tokens", prompt_tokens + job->completion_tokens}}}};
}

void TranslationService::scheduler_loop() {
  torch::InferenceMode guard;
  for (;;) {
    std::vector<std::shared_ptr<Job>> round;
    {
      std::unique_lock<std::mutex> lock(queue_.mutex());
      auto& queue = queue_.items();
      queue_.work().wait(lock, [&] { return queue_.stopping() || !queue.empty(); });
      if (queue_.stopping()) return;
      int64_t segments = 0;
      while (!queue.empty() &&
             (round.empty() || segments + static_cast<int64_t>(queue.front()->texts.size()) <= limits_.max_batch_segments)) {
        segments += static_cast<int64_t>(queue.front()->texts.size());
        queue.front()->state = Job::kRunning;
        round.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      queue_.queue_changed();
    }
    // Group by what fixes the decoding: language pair and beam size (stable: arrival order).
    while (!round.empty()) {
      std::vector<std::shared_ptr<Job>> group, rest;
      for (auto& j : round) {
        if (group.empty() || (j->src == group[0]->src && j->tgt == group[0]->tgt && j->beam == group[0]->beam))
          group.push_back(std::move(j));
        else
          rest.push_back(std::move(j));
      }
      run_group(group);
      round = std::move(rest);
    }
    queue_.set_running(0);
    if (limits_.step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(limits_.step_delay_ms));
  }
}

void TranslationService::run_group(std::vector<std::shared_ptr<Job>>& group) {
  const auto start = Clock::now();
  std::vector<std::string> texts;
  std::vector<std::shared_ptr<Job>> live;
  {
    std::lock_guard<std::mutex> lock(queue_.mutex());
    for (auto& j : group) {
      if (j->state != Job::kRunning) continue;  // cancelled while queued
      texts.insert(texts.end(), j->texts.begin(), j->texts.end());
      live.push_back(j);
    }
  }
  if (live.empty()) return;
  queue_.set_running(static_cast<int64_t>(live.size()));
  std::vector<std::string> translations;
  std::vector<int64_t> completion;
  std::string error;
  int64_t generated = 0;
  try {
    tokenizer_->set_languages(live[0]->src, live[0]->tgt);
    generate::GenerationOptions gen = *generation_;
    if (live[0]->beam > 0) gen.num_beams = live[0]->beam;
    if (auto bos = tokenizer_->forced_bos_token_id()) gen.forced_bos_token_id = *bos;  // as `loom translate`
    generate::Translator translator(*model_, *tokenizer_, gen, generate::TranslatorOptions{});
    translations = translator.translate(texts);
    // Sentences joined around inline code / URLs that lost a span: translated again in parts,
    // as `loom translate` does (one more call for the whole group).
    std::vector<pipeline::PlacedText> placed;
    size_t first = 0;
    for (auto& j : live) {
      for (const auto& st : j->segmented) {
        placed.push_back({&st, first});
        first += st.count;
      }
    }
    pipeline::retranslate_lost_spans(placed, translations,
                                     [&](const std::vector<std::string>& b) { return translator.translate(b); });
    generated = translator.stats().target_tokens;
    for (const auto& t : translations) completion.push_back(static_cast<int64_t>(tokenizer_->encode_target(t).size()));
  } catch (const std::exception& e) {
    error = e.what();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  metrics_.record_batch(static_cast<int64_t>(live.size()), static_cast<int64_t>(texts.size()), generated, seconds);
  {
    std::lock_guard<std::mutex> lock(queue_.mutex());
    size_t next = 0;
    for (auto& j : live) {
      const size_t n = j->texts.size();
      if (j->state == Job::kRunning) {
        if (!error.empty()) {
          j->error = error;
          j->state = Job::kFailed;
        } else {
          j->translations.assign(translations.begin() + static_cast<std::ptrdiff_t>(next),
                                 translations.begin() + static_cast<std::ptrdiff_t>(next + n));
          for (size_t k = next; k < next + n; ++k) j->completion_tokens += completion[k];
          j->state = Job::kDone;
        }
      }
      next += n;
    }
  }
  queue_.news().notify_all();
}

}  // namespace loom::serve
