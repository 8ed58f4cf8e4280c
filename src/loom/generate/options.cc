#include "loom/generate/options.h"

#include <cmath>

#include <spdlog/spdlog.h>

#include "loom/core/error.h"

namespace loom::generate {
namespace {

using nlohmann::json;

const json* find(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t as_int(const json& v, const std::string& file, const char* key, int64_t min_value) {
  if (!v.is_number_integer()) fail(Where{file, 0, key}, "expected an integer, got {}", v.dump());
  const int64_t x = v.get<int64_t>();
  if (x < min_value) fail(Where{file, 0, key}, "must be >= {}, got {}", min_value, x);
  return x;
}

double as_double(const json& v, const std::string& file, const char* key) {
  if (!v.is_number()) fail(Where{file, 0, key}, "expected a number, got {}", v.dump());
  return v.get<double>();
}

std::vector<int64_t> as_ids(const json& v, const std::string& file, const char* key) {
  std::vector<int64_t> ids;
  if (v.is_array()) {
    for (const auto& e : v) ids.push_back(as_int(e, file, key, 0));
  } else {
    ids.push_back(as_int(v, file, key, 0));
  }
  return ids;
}

}  // namespace

int64_t GenerationOptions::max_new_tokens_per_source(int64_t src_len) const {
  const int64_t by_length = std::max<int64_t>(1, max_length - 1);
  if (max_new_tokens) return *max_new_tokens;
  if (max_new_tokens_a < 0) return by_length;
  const double cap = std::floor(max_new_tokens_a * static_cast<double>(src_len) + max_new_tokens_b);
  return std::max<int64_t>(1, std::min<int64_t>(by_length, static_cast<int64_t>(std::max(cap, 1.0))));
}

GenerationOptions GenerationOptions::from_hf(const json& config, const json& generation_config) {
  GenerationOptions o;
  const bool use_gen = generation_config.is_object() && !generation_config.empty();
  const json& g = use_gen ? generation_config : config;
  const std::string gfile = use_gen ? "generation_config.json" : "config.json";

  // token ids: generation config first, then config.json
  auto token = [&](const char* key) -> std::optional<std::vector<int64_t>> {
    if (const json* v = find(g, key)) return as_ids(*v, gfile, key);
    if (const json* v = find(config, key)) return as_ids(*v, "config.json", key);
    return std::nullopt;
  };
  if (auto v = token("eos_token_id")) o.eos_token_ids = *v;
  if (auto v = token("pad_token_id")) o.pad_token_id = v->front();
  else if (!o.eos_token_ids.empty()) o.pad_token_id = o.eos_token_ids.front();  // HF: pad defaults to eos
  if (auto v = token("decoder_start_token_id")) o.decoder_start_token_id = v->front();
  else if (auto b = token("bos_token_id")) o.decoder_start_token_id = b->front();

  if (const json* v = find(g, "num_beams")) o.num_beams = as_int(*v, gfile, "num_beams", 1);
  if (const json* v = find(g, "length_penalty")) o.length_penalty = as_double(*v, gfile, "length_penalty");
  if (const json* v = find(g, "early_stopping")) {
    if (v->is_boolean()) o.early_stopping = v->get<bool>() ? EarlyStopping::kTrue : EarlyStopping::kHeuristic;
    else if (v->is_string() && v->get<std::string>() == "never") o.early_stopping = EarlyStopping::kNever;
    else fail(Where{gfile, 0, "early_stopping"}, "expected true, false or \"never\", got {}", v->dump());
  }
  if (const json* v = find(g, "max_length")) o.max_length = as_int(*v, gfile, "max_length", 1);
  if (const json* v = find(g, "max_new_tokens")) o.max_new_tokens = as_int(*v, gfile, "max_new_tokens", 1);
  if (const json* v = find(g, "min_length")) o.min_length = as_int(*v, gfile, "min_length", 0);
  if (const json* v = find(g, "min_new_tokens")) o.min_new_tokens = as_int(*v, gfile, "min_new_tokens", 0);
  if (const json* v = find(g, "bad_words_ids")) {
    if (!v->is_array()) fail(Where{gfile, 0, "bad_words_ids"}, "expected a list of token id lists, got {}", v->dump());
    for (const auto& seq : *v) {
      if (!seq.is_array() || seq.empty()) fail(Where{gfile, 0, "bad_words_ids"}, "expected a non-empty list of token ids, got {}", seq.dump());
      o.bad_words_ids.push_back(as_ids(seq, gfile, "bad_words_ids"));
    }
  }
  if (const json* v = find(g, "forced_bos_token_id")) o.forced_bos_token_id = as_int(*v, gfile, "forced_bos_token_id", 0);
  if (const json* v = find(g, "forced_eos_token_id")) o.forced_eos_token_id = as_ids(*v, gfile, "forced_eos_token_id").front();
  if (const json* v = find(g, "no_repeat_ngram_size")) o.no_repeat_ngram_size = as_int(*v, gfile, "no_repeat_ngram_size", 0);
  if (const json* v = find(g, "repetition_penalty")) o.repetition_penalty = as_double(*v, gfile, "repetition_penalty");
  if (const json* v = find(g, "num_return_sequences")) o.num_return_sequences = as_int(*v, gfile, "num_return_sequences", 1);
  if (const json* v = find(g, "renormalize_logits")) {
    if (!v->is_boolean()) fail(Where{gfile, 0, "renormalize_logits"}, "expected true or false, got {}", v->dump());
    o.renormalize_logits = v->get<bool>();
  }
  for (const char* key : {"forced_decoder_ids", "suppress_tokens", "begin_suppress_tokens", "sequence_bias",
                          "encoder_no_repeat_ngram_size", "encoder_repetition_penalty",
                          "exponential_decay_length_penalty", "diversity_penalty", "constraints"}) {
    if (find(g, key) != nullptr) spdlog::warn("{}: '{}' is not supported by loom and is ignored", gfile, key);
  }
  if (const json* v = find(g, "do_sample"); v != nullptr && v->is_boolean() && v->get<bool>()) {
    spdlog::warn("{}: do_sample is true; loom decodes with greedy/beam search only", gfile);
  }
  return o;
}

void GenerationOptions::validate() const {
  const Where w{"generation options", 0, ""};
  if (num_beams < 1) fail(Where{w.file, 0, "num_beams"}, "must be >= 1, got {}", num_beams);
  if (num_return_sequences < 1 || num_return_sequences > num_beams) {
    fail(Where{w.file, 0, "num_return_sequences"}, "must be between 1 and num_beams ({}), got {}", num_beams, num_return_sequences);
  }
  if (eos_token_ids.empty()) fail(Where{w.file, 0, "eos_token_id"}, "no end-of-sequence token id");
  if (max_new_tokens && *max_new_tokens < 1) fail(Where{w.file, 0, "max_new_tokens"}, "must be >= 1, got {}", *max_new_tokens);
  if (!max_new_tokens && max_length < 2) fail(Where{w.file, 0, "max_length"}, "must be >= 2 (start token + 1), got {}", max_length);
  if (repetition_penalty <= 0) fail(Where{w.file, 0, "repetition_penalty"}, "must be > 0, got {}", repetition_penalty);
  if (no_repeat_ngram_size < 0) fail(Where{w.file, 0, "no_repeat_ngram_size"}, "must be >= 0, got {}", no_repeat_ngram_size);
  if (do_sample) {
    if (num_beams != 1) fail(Where{w.file, 0, "num_beams"}, "sampling needs num_beams 1 (no beam sampling), got {}", num_beams);
    if (!(temperature > 0)) fail(Where{w.file, 0, "temperature"}, "must be > 0, got {}", temperature);
    if (top_k < 0) fail(Where{w.file, 0, "top_k"}, "must be >= 0, got {}", top_k);
    if (!(top_p > 0 && top_p <= 1)) fail(Where{w.file, 0, "top_p"}, "must be in (0, 1], got {}", top_p);
  }
}

}  // namespace loom::generate
