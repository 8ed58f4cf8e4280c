#include "loom/generate/translator.h"

#include <algorithm>
#include <numeric>

#include "loom/core/error.h"
#include "loom/data/batching.h"
#include "loom/models/encoder_decoder.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace loom::generate {
namespace {

const std::string kWordStart = "\xE2\x96\x81";  // "▁", SentencePiece's word-start marker

// Decodes one UTF-8 code point at s[i] (s valid UTF-8); returns 0 at the end.
char32_t code_point_at(const std::string& s, size_t i) {
  if (i >= s.size()) return 0;
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return c;
  int n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
  char32_t cp = c & (0x3F >> n);
  for (int k = 1; k <= n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

// Index of the first byte of the last code point of s.
size_t last_code_point_start(const std::string& s) {
  size_t i = s.size();
  while (i > 0) {
    --i;
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) return i;
  }
  return 0;
}

// Scripts written without spaces between words (CJK ideographs, kana, full-width forms).
bool is_unspaced_script(char32_t cp) {
  return (cp >= 0x3000 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
         (cp >= 0xFF00 && cp <= 0xFFEF) || (cp >= 0x20000 && cp <= 0x2FA1F);
}

// Joins the translations of the parts of a split sentence: no space between parts in scripts
// written without spaces, one space otherwise.
std::string join_parts(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty() && !std::isspace(static_cast<unsigned char>(out.back())) &&
        !std::isspace(static_cast<unsigned char>(p.front())) &&
        !(is_unspaced_script(code_point_at(out, last_code_point_start(out))) ||
          is_unspaced_script(code_point_at(p, 0)))) {
      out += ' ';
    }
    out += p;
  }
  return out;
}

}  // namespace

std::vector<std::pair<size_t, size_t>> split_pieces(const std::vector<std::string>& pieces,
                                                    size_t max_pieces) {
  if (max_pieces == 0) fail("split_pieces: max_pieces must be >= 1");
  std::vector<std::pair<size_t, size_t>> runs;
  size_t begin = 0;
  while (begin < pieces.size()) {
    size_t end = std::min(pieces.size(), begin + max_pieces);
    if (end < pieces.size()) {
      // Prefer to cut before a word start in the second half of the run.
      for (size_t cut = end; cut > begin + max_pieces / 2; --cut) {
        if (pieces[cut].rfind(kWordStart, 0) == 0) {
          end = cut;
          break;
        }
      }
    }
    runs.emplace_back(begin, end);
    begin = end;
  }
  return runs;
}

Translator::Translator(models::EncoderDecoder& model, const text::Seq2SeqTokenizer& tokenizer,
                       GenerationOptions generation, TranslatorOptions options)
    : model_(model), tokenizer_(tokenizer), generation_(std::move(generation)), options_(options) {
  if (options_.max_source_tokens <= 0) options_.max_source_tokens = model_.max_source_positions();
  if (options_.max_tokens <= 0) fail(Where{"", 0, "max_tokens"}, "must be positive");
  if (options_.max_sentences <= 0) fail(Where{"", 0, "max_sentences"}, "must be positive");
}

std::vector<std::string> Translator::translate(const std::vector<std::string>& sentences) {
  std::vector<TranslationResult> full = translate_full(sentences);
  std::vector<std::string> result(full.size());
  for (size_t i = 0; i < full.size(); ++i) {
    if (!full[i].hypotheses.empty()) result[i] = std::move(full[i].hypotheses.front());
  }
  return result;
}

std::vector<TranslationResult> Translator::translate_full(const std::vector<std::string>& sentences) {
  if (sentences.empty()) return {};
  const PreparedSentences prepared = prepare(sentences);
  return assemble(prepared, translate_ids(prepared.inputs));
}

PreparedSentences Translator::prepare(const std::vector<std::string>& sentences) {
  PreparedSentences prepared;
  std::vector<std::vector<int64_t>>& inputs = prepared.inputs;
  std::vector<size_t>& first_part = prepared.first_part;
  first_part.assign(sentences.size() + 1, 0);
  if (sentences.empty()) return prepared;
  // Where the content goes between the special tokens: compare the encodings of "" and "a".
  const std::vector<int64_t> empty_ids = tokenizer_.encode_source("");
  const std::vector<int64_t> probe_ids = tokenizer_.encode_source("a");
  size_t prefix = 0;
  while (prefix < empty_ids.size() && prefix < probe_ids.size() && empty_ids[prefix] == probe_ids[prefix]) ++prefix;
  const size_t n_special = empty_ids.size();
  const auto max_src = static_cast<size_t>(options_.max_source_tokens);
  if (max_src <= n_special) fail(Where{"", 0, "max_source_tokens"}, "{} leaves no room for text", max_src);

  // Every sentence becomes one or more model inputs ("parts").
  for (size_t i = 0; i < sentences.size(); ++i) {
    first_part[i] = inputs.size();
    std::vector<int64_t> ids = tokenizer_.encode_source(sentences[i]);
    if (ids.size() <= max_src) {
      inputs.push_back(std::move(ids));
      continue;
    }
    // Too long for the model: split the content ids at piece boundaries, keep the specials.
    std::vector<std::string> pieces = tokenizer_.source_pieces(sentences[i]);
    const size_t content = ids.size() - n_special;
    if (pieces.size() != content) {
      fail("tokenizer gave {} pieces but {} content ids for a {}-byte sentence", pieces.size(), content,
           sentences[i].size());
    }
    ++stats_.split_sentences;
    for (auto [b, e] : split_pieces(pieces, max_src - n_special)) {
      std::vector<int64_t> part(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(prefix));
      part.insert(part.end(), ids.begin() + static_cast<ptrdiff_t>(prefix + b),
                  ids.begin() + static_cast<ptrdiff_t>(prefix + e));
      part.insert(part.end(), ids.begin() + static_cast<ptrdiff_t>(prefix + content), ids.end());
      inputs.push_back(std::move(part));
    }
  }
  first_part[sentences.size()] = inputs.size();
  stats_.sentences += static_cast<int64_t>(sentences.size());
  return prepared;
}

std::vector<TranslationResult> Translator::assemble(const PreparedSentences& prepared,
                                                    const std::vector<std::vector<Hypothesis>>& outputs) const {
  const std::vector<std::vector<int64_t>>& inputs = prepared.inputs;
  const std::vector<size_t>& first_part = prepared.first_part;
  if (outputs.size() != inputs.size()) fail("Translator::assemble: {} outputs for {} inputs", outputs.size(), inputs.size());
  const size_t n_sentences = first_part.empty() ? 0 : first_part.size() - 1;
  std::vector<TranslationResult> result(n_sentences);
  for (size_t i = 0; i < n_sentences; ++i) {
    TranslationResult& r = result[i];
    r.parts = static_cast<int64_t>(first_part[i + 1] - first_part[i]);
    r.split = r.parts > 1;
    size_t n = 0;
    for (size_t p = first_part[i]; p < first_part[i + 1]; ++p) {
      n = std::max(n, outputs[p].size());
      r.source_tokens += static_cast<int64_t>(inputs[p].size());
      if (!outputs[p].empty()) {
        r.target_tokens += static_cast<int64_t>(outputs[p][0].tokens.size());
        r.capped = r.capped || outputs[p][0].capped;
      }
    }
    for (size_t k = 0; k < n; ++k) {
      std::vector<std::string> parts;
      double score = 0;
      for (size_t p = first_part[i]; p < first_part[i + 1]; ++p) {
        if (outputs[p].empty()) {
          parts.emplace_back();
          continue;
        }
        const Hypothesis& h = outputs[p][std::min(k, outputs[p].size() - 1)];
        parts.push_back(tokenizer_.decode_target(h.tokens));
        score += h.score;
      }
      r.hypotheses.push_back(parts.size() == 1 ? std::move(parts[0]) : join_parts(parts));
      r.scores.push_back(static_cast<float>(score / static_cast<double>(std::max<int64_t>(r.parts, 1))));
    }
  }
  return result;
}

std::vector<std::vector<int64_t>> Translator::batches(const std::vector<std::vector<int64_t>>& sources) const {
  // Length buckets: sort by source length so a batch pads little, then fill each batch up to the
  // token budget (batch size × longest source) and the sentence limit.
  std::vector<int64_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  auto length = [&](int64_t i) { return static_cast<int64_t>(sources[static_cast<size_t>(i)].size()); };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return length(a) < length(b); });
  return data::pack_token_budget(order, length, options_.max_tokens, options_.max_sentences);
}

std::vector<std::vector<Hypothesis>> Translator::translate_ids(
    const std::vector<std::vector<int64_t>>& sources) {
  std::vector<std::vector<Hypothesis>> results(sources.size());
  auto length = [&](int64_t i) { return static_cast<int64_t>(sources[static_cast<size_t>(i)].size()); };
  for (const std::vector<int64_t>& members : batches(sources)) {
    std::vector<std::vector<int64_t>> batch;
    for (int64_t i : members) {
      batch.push_back(sources[static_cast<size_t>(i)]);
      stats_.source_tokens += length(i);
    }
    std::vector<std::vector<Hypothesis>> out = generate(model_, batch, generation_);
    for (size_t k = 0; k < members.size(); ++k) {
      auto& hyps = out[k];
      if (!hyps.empty()) {
        stats_.target_tokens += static_cast<int64_t>(hyps[0].tokens.size());
        if (hyps[0].capped) ++stats_.capped;
      }
      results[static_cast<size_t>(members[k])] = std::move(hyps);
    }
    stats_.model_inputs += static_cast<int64_t>(members.size());
  }
  return results;
}

}  // namespace loom::generate
