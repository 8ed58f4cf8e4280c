#include "loom/pipeline/translation_engine.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/io/checkpoint.h"
#include "loom/models/encoder_decoder.h"
#include "loom/text/segment.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace loom::pipeline {

TranslationEngine::TranslationEngine(const std::string& model_dir, const EngineOptions& a) : model_dir_(model_dir) {
  checkpoint_ = std::make_unique<io::HfCheckpoint>(model_dir);
  tokenizer_ = text::load_seq2seq_tokenizer(model_dir);
  model_ = models::load_encoder_decoder(*checkpoint_);
  configure(a);
}

void TranslationEngine::configure(const EngineOptions& a) {
  if (a.n_best < 1) fail(Where{"", 0, "n_best"}, "must be >= 1, got {}", a.n_best);
  if (a.beam < 0) fail(Where{"", 0, "beam"}, "must be >= 1, got {}", a.beam);
  if (a.sample && (a.beam > 1 || a.n_best > 1))
    fail(Where{"", 0, a.beam > 1 ? "beam" : "n_best"}, "sampling draws one translation per sentence; use beam 1 and n_best 1");
  tokenizer_->set_languages(a.src, a.tgt);
  const nn::WeightType compute = nn::parse_compute_type(a.compute_type, "compute_type");
  if (compute != model_->compute_type()) model_->set_compute_type(compute);

  auto gen = generate::GenerationOptions::from_hf(checkpoint_->config(), checkpoint_->generation_config());
  if (a.beam > 0) gen.num_beams = a.beam;
  if (a.sample) gen.num_beams = 1;
  if (gen.num_beams < a.n_best) gen.num_beams = a.n_best;
  gen.num_return_sequences = a.n_best;
  if (a.length_penalty) gen.length_penalty = *a.length_penalty;
  if (a.repetition_penalty) gen.repetition_penalty = *a.repetition_penalty;
  if (a.no_repeat_ngram_size) gen.no_repeat_ngram_size = *a.no_repeat_ngram_size;
  gen.do_sample = a.sample;
  gen.temperature = a.temperature;
  gen.top_k = a.top_k;
  gen.top_p = a.top_p;
  gen.seed = a.seed;
  if (auto bos = tokenizer_->forced_bos_token_id()) gen.forced_bos_token_id = *bos;
  if (a.max_new_tokens > 0) {
    gen.max_new_tokens = a.max_new_tokens;
  } else {
    double ca = 0, cb = 0;
    char extra = 0;
    if (std::sscanf(a.length_cap.c_str(), "%lf,%lf%c", &ca, &cb, &extra) != 2 || !std::isfinite(ca) || !std::isfinite(cb) || ca < 0 || cb < 1) {
      fail(Where{"", 0, "length_cap"}, "'{}' is not A,B with A >= 0 and B >= 1", a.length_cap);
    }
    gen.max_new_tokens_a = ca;
    gen.max_new_tokens_b = cb;
  }
  gen.validate();
  generate::TranslatorOptions topts;
  topts.max_tokens = a.max_tokens;
  topts.max_sentences = a.max_sentences;
  translator_ = std::make_unique<generate::Translator>(*model_, *tokenizer_, gen, topts);
  options_ = a;

  engine_id_ = fmt::format("model={} src={} tgt={} beam={} max_new_tokens={} length_cap={}",
                           std::filesystem::weakly_canonical(model_dir_).string(), a.src, a.tgt, gen.num_beams,
                           a.max_new_tokens, a.max_new_tokens > 0 ? "-" : a.length_cap);
  // Options beyond today's defaults join the id only when set, so older checkpoints still resume.
  if (a.n_best > 1) engine_id_ += fmt::format(" n_best={}", a.n_best);
  if (compute != nn::WeightType::kFloat32) engine_id_ += fmt::format(" compute_type={}", nn::weight_type_name(compute));
  if (a.length_penalty) engine_id_ += fmt::format(" length_penalty={}", *a.length_penalty);
  if (a.repetition_penalty) engine_id_ += fmt::format(" repetition_penalty={}", *a.repetition_penalty);
  if (a.no_repeat_ngram_size) engine_id_ += fmt::format(" no_repeat_ngram_size={}", *a.no_repeat_ngram_size);
  if (a.sample)
    engine_id_ += fmt::format(" sample temperature={} top_k={} top_p={} seed={}", a.temperature, a.top_k, a.top_p, a.seed);
}

TranslationEngine::~TranslationEngine() = default;

std::vector<std::string> TranslationEngine::translate(const std::vector<std::string>& segments) {
  return translator_->translate(segments);
}

std::vector<SegmentResult> TranslationEngine::translate_detailed(const std::vector<std::string>& segments) {
  std::vector<generate::TranslationResult> full = translator_->translate_full(segments);
  std::vector<SegmentResult> out(full.size());
  for (size_t i = 0; i < full.size(); ++i) {
    out[i].hypotheses = std::move(full[i].hypotheses);
    if (out[i].hypotheses.empty()) out[i].hypotheses.emplace_back();
    out[i].scores = std::move(full[i].scores);
    out[i].split = full[i].split;
    out[i].capped = full[i].capped;
    out[i].source_tokens = full[i].source_tokens;
    out[i].target_tokens = full[i].target_tokens;
  }
  return out;
}

int64_t TranslationEngine::target_tokens() const { return translator_->stats().target_tokens; }

std::string TranslationEngine::summary() const {
  const auto& s = translator_->stats();
  return fmt::format("sentences {}, split {}, capped {}, source tokens {}, target tokens {}", s.sentences,
                     s.split_sentences, s.capped, s.source_tokens, s.target_tokens);
}

std::vector<SegmentResult> TranslationEngine::translate_texts(const std::vector<std::string>& texts, bool markdown) {
  text::SegmentOptions so;
  so.markdown = markdown;
  so.language = source_lang();
  std::vector<std::vector<text::Segment>> segmented(texts.size());
  std::vector<std::size_t> first(texts.size());
  std::vector<std::string> batch;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    segmented[i] = text::segment_text(texts[i], so);
    first[i] = batch.size();
    for (const auto& seg : segmented[i]) {
      if (seg.translate) batch.push_back(seg.text);
    }
  }
  const std::vector<SegmentResult> details = batch.empty() ? std::vector<SegmentResult>() : translate_detailed(batch);
  std::vector<SegmentResult> out(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::size_t count = (i + 1 < texts.size() ? first[i + 1] : batch.size()) - first[i];
    SegmentResult& r = out[i];
    for (int64_t k = 0; k < options_.n_best; ++k) {
      double score = 0;
      r.hypotheses.push_back(reassemble_kth(segmented[i], details.data() + first[i], count,
                                            static_cast<std::size_t>(k), &score));
      r.scores.push_back(static_cast<float>(score));
    }
    for (std::size_t s = 0; s < count; ++s) {
      const SegmentResult& d = details[first[i] + s];
      r.split = r.split || d.split;
      r.capped = r.capped || d.capped;
      r.source_tokens += d.source_tokens;
      r.target_tokens += d.target_tokens;
    }
  }
  return out;
}

namespace {

/// tokenizer_config.json's string `key` in model_dir, or "".
std::string config_lang(const std::string& model_dir, const char* key) {
  const std::string path = model_dir + "/tokenizer_config.json";
  if (!core::file_exists(path)) return {};
  const nlohmann::json j = core::read_json(path);
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string TranslationEngine::target_lang() const {
  if (!options_.tgt.empty()) return options_.tgt;
  std::string t = tokenizer_->target_language();
  if (!t.empty()) return t;
  return config_lang(model_dir_, "target_lang");
}

std::string resolve_source_lang(const text::Seq2SeqTokenizer& tokenizer, const std::string& model_dir,
                                const std::string& src) {
  if (!src.empty()) return src;
  std::string s = tokenizer.source_language();
  if (!s.empty()) return s;
  return config_lang(model_dir, "source_lang");
}

std::vector<std::string> leading_language_codes(const text::Seq2SeqTokenizer& tokenizer) {
  if (tokenizer.name() == "MarianTokenizer") return tokenizer.languages();
  return {};
}

std::string TranslationEngine::source_lang() const { return resolve_source_lang(*tokenizer_, model_dir_, options_.src); }

}  // namespace loom::pipeline
