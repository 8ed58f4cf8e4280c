#include "loom/serve/translation_service.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/generate/options.h"
#include "loom/generate/search.h"
#include "loom/generate/translator.h"
#include "loom/io/checkpoint.h"
#include "loom/pipeline/text_segments.h"
#include "loom/pipeline/translation_engine.h"
#include "loom/models/encoder_decoder.h"
#include "loom/nn/packed_linear.h"
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
  // Scheduler thread only, while the job is running: its engine inputs (sentences split to the
  // model's source length), their search ids in the running batch and finished n-best lists.
  generate::PreparedSentences prepared;
  std::vector<int64_t> search_ids;
  std::vector<std::vector<generate::Hypothesis>> outputs;  // per prepared input
  size_t pending = 0;                                      // prepared inputs still decoding
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
                                       ServiceLimits limits, const std::string& compute_type)
    : name_(std::move(name)),
      model_dir_(model_dir),
      metrics_(metrics),
      limits_(limits),
      queue_(name_, metrics, limits.max_queued) {
  io::HfCheckpoint checkpoint(model_dir);
  tokenizer_ = text::load_seq2seq_tokenizer(model_dir);
  validator_ = text::load_seq2seq_tokenizer(model_dir);
  model_ = models::load_encoder_decoder(checkpoint, nn::parse_compute_type(compute_type, "--compute-type"));
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

// The scheduler's continuous batching: one generate::StepwiseSearch holds every running job's
// sentences; each loop retires cancelled jobs, admits queued ones and runs one decoder step.
struct TranslationService::Batch {
  std::unique_ptr<generate::StepwiseSearch> search;
  std::vector<std::shared_ptr<Job>> running;                    // admitted, not finished
  std::map<int64_t, std::pair<std::shared_ptr<Job>, size_t>> owner;  // search id -> (job, prepared input)
  int64_t segments = 0;                                         // engine inputs (texts) of the running jobs
  // Generation options per (source_lang, target_lang, beam_size): one object per key, so the
  // search advances jobs with the same options in the same tensor calls.
  std::map<std::tuple<std::string, std::string, int64_t>, std::shared_ptr<const generate::GenerationOptions>> options;
};

std::shared_ptr<const generate::GenerationOptions> TranslationService::options_for(Batch& batch, const Job& job) {
  auto key = std::make_tuple(job.src, job.tgt, job.beam);
  auto it = batch.options.find(key);
  if (it != batch.options.end()) return it->second;
  auto gen = std::make_shared<generate::GenerationOptions>(*generation_);
  if (job.beam > 0) gen->num_beams = job.beam;
  // tokenizer_ is set to the job's languages
  if (auto bos = tokenizer_->forced_bos_token_id()) gen->forced_bos_token_id = *bos;  // as `loom translate`
  batch.options.emplace(key, gen);
  return gen;
}

void TranslationService::scheduler_loop() {
  torch::InferenceMode guard;
  Batch batch;
  batch.search = std::make_unique<generate::StepwiseSearch>(*model_);
  for (;;) {
    std::vector<std::shared_ptr<Job>> admitted, cancelled;
    {
      std::unique_lock<std::mutex> lock(queue_.mutex());
      auto& queue = queue_.items();
      queue_.work().wait(lock, [&] { return queue_.stopping() || !queue.empty() || !batch.running.empty(); });
      if (queue_.stopping()) return;
      // Jobs cancelled (client gone, timeout) since the last step: their rows leave the batch.
      for (auto& j : batch.running)
        if (j->state != Job::kRunning) cancelled.push_back(j);
      // Admit queued jobs while the running ones leave room (max_batch_segments engine inputs;
      // a job larger than that runs when it would be alone).
      int64_t segments = batch.segments;
      while (!queue.empty()) {
        const auto n = static_cast<int64_t>(queue.front()->texts.size());
        if (queue.front()->state == Job::kQueued && segments > 0 && segments + n > limits_.max_batch_segments) break;
        auto j = std::move(queue.front());
        queue.pop_front();
        if (j->state != Job::kQueued) continue;
        j->state = Job::kRunning;
        segments += n;
        admitted.push_back(std::move(j));
      }
      queue_.queue_changed();
    }
    for (auto& j : cancelled) retire(batch, *j, /*cancelled=*/true);
    for (auto& j : admitted) admit(batch, j);
    queue_.set_running(batch.search->sentences());
    if (!batch.search->empty()) step(batch);
    queue_.set_running(batch.search->sentences());
    queue_.news().notify_all();
    if (limits_.step_delay_ms > 0 && !batch.running.empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(limits_.step_delay_ms));
  }
}

void TranslationService::retire(Batch& batch, Job& job, bool cancelled) {
  int64_t dropped = 0;
  for (int64_t id : job.search_ids) {
    if (batch.search->cancel(id)) ++dropped;
    batch.owner.erase(id);
  }
  if (cancelled) metrics_.record_cancelled_sequences(dropped);
  job.search_ids.clear();
  job.prepared = {};
  job.outputs.clear();
  job.pending = 0;
  batch.segments -= static_cast<int64_t>(job.texts.size());
  batch.running.erase(std::remove_if(batch.running.begin(), batch.running.end(),
                                     [&](const std::shared_ptr<Job>& j) { return j.get() == &job; }),
                      batch.running.end());
}

void TranslationService::fail_job(Batch& batch, const std::shared_ptr<Job>& job, const std::string& error) {
  retire(batch, *job, /*cancelled=*/false);
  std::lock_guard<std::mutex> lock(queue_.mutex());
  if (job->state == Job::kRunning) {
    job->error = error;
    job->state = Job::kFailed;
  }
}

void TranslationService::admit(Batch& batch, const std::shared_ptr<Job>& job) {
  batch.running.push_back(job);
  batch.segments += static_cast<int64_t>(job->texts.size());
  try {
    tokenizer_->set_languages(job->src, job->tgt);
    auto options = options_for(batch, *job);
    generate::Translator translator(*model_, *tokenizer_, *options, generate::TranslatorOptions{});
    job->prepared = translator.prepare(job->texts);
    const auto& inputs = job->prepared.inputs;
    job->outputs.assign(inputs.size(), {});
    job->pending = inputs.size();
    // The encoder runs once per admitted job, in length-bucketed batches as `loom translate`'s.
    for (const std::vector<int64_t>& members : translator.batches(inputs)) {
      std::vector<std::vector<int64_t>> sources;
      for (int64_t i : members) sources.push_back(inputs[static_cast<size_t>(i)]);
      const std::vector<int64_t> ids = batch.search->add(sources, options);
      for (size_t k = 0; k < ids.size(); ++k) {
        job->search_ids.push_back(ids[k]);
        batch.owner[ids[k]] = {job, static_cast<size_t>(members[k])};
      }
    }
  } catch (const std::exception& e) {
    fail_job(batch, job, e.what());
  }
}

void TranslationService::step(Batch& batch) {
  const auto start = Clock::now();
  const int64_t requests = static_cast<int64_t>(batch.running.size());
  const int64_t sequences = batch.search->sentences();
  std::vector<generate::FinishedSentence> finished;
  try {
    finished = batch.search->step();
  } catch (const std::exception& e) {
    // The search is unusable: every running job fails, the next admission starts a new one.
    const std::vector<std::shared_ptr<Job>> running = batch.running;
    batch.search = std::make_unique<generate::StepwiseSearch>(*model_);
    for (const auto& j : running) fail_job(batch, j, e.what());
    batch.owner.clear();
    return;
  }
  int64_t generated = 0;
  std::vector<std::shared_ptr<Job>> complete;
  for (generate::FinishedSentence& f : finished) {
    auto it = batch.owner.find(f.id);
    if (it == batch.owner.end()) continue;
    auto [job, input] = it->second;
    batch.owner.erase(it);
    if (!f.hypotheses.empty()) generated += static_cast<int64_t>(f.hypotheses.front().tokens.size());
    job->outputs[input] = std::move(f.hypotheses);
    if (--job->pending == 0) complete.push_back(job);
  }
  for (const auto& j : complete) generated += finish(batch, j);
  metrics_.record_batch(requests, sequences, generated, std::chrono::duration<double>(Clock::now() - start).count());
}

int64_t TranslationService::finish(Batch& batch, const std::shared_ptr<Job>& job) {
  std::vector<std::string> translations;
  std::vector<int64_t> completion;
  int64_t generated = 0;
  std::string error;
  try {
    tokenizer_->set_languages(job->src, job->tgt);
    auto options = options_for(batch, *job);
    generate::Translator translator(*model_, *tokenizer_, *options, generate::TranslatorOptions{});
    for (generate::TranslationResult& r : translator.assemble(job->prepared, job->outputs))
      translations.push_back(r.hypotheses.empty() ? std::string() : std::move(r.hypotheses.front()));
    // Sentences joined around inline code / URLs that lost a span: translated again in parts, as
    // `loom translate` does. This second call runs outside the running batch (one-shot search).
    std::vector<pipeline::PlacedText> placed;
    size_t first = 0;
    for (const auto& st : job->segmented) {
      placed.push_back({&st, first});
      first += st.count;
    }
    pipeline::retranslate_lost_spans(placed, translations,
                                     [&](const std::vector<std::string>& b) { return translator.translate(b); });
    generated = translator.stats().target_tokens;
    for (const auto& t : translations) completion.push_back(static_cast<int64_t>(tokenizer_->encode_target(t).size()));
  } catch (const std::exception& e) {
    error = e.what();
  }
  retire(batch, *job, /*cancelled=*/false);
  std::lock_guard<std::mutex> lock(queue_.mutex());
  if (job->state == Job::kRunning) {
    if (!error.empty()) {
      job->error = error;
      job->state = Job::kFailed;
    } else {
      job->translations = std::move(translations);
      for (int64_t c : completion) job->completion_tokens += c;
      job->state = Job::kDone;
    }
  }
  return generated;
}

}  // namespace loom::serve
