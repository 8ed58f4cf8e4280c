#include "loom/text/wordpiece.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/locid.h>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"

namespace loom::text {
namespace {

using U32 = std::u32string;

U32 to_u32(std::string_view s) {
  const icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  U32 out;
  out.reserve(static_cast<size_t>(u.length()));
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

icu::UnicodeString to_icu(const U32& s) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(s.data()), static_cast<int32_t>(s.size()));
}

U32 from_icu(const icu::UnicodeString& u) {
  U32 out;
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

std::string utf8(const U32& s) {
  std::string out;
  to_icu(s).toUTF8String(out);
  return out;
}

// BasicTokenizer._is_whitespace: space, \t, \n, \r, or category Zs.
bool is_bert_whitespace(char32_t c) {
  if (c == U' ' || c == U'\t' || c == U'\n' || c == U'\r') return true;
  return u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
}

// BasicTokenizer._is_control: category C* except \t \n \r.
bool is_bert_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR: case U_FORMAT_CHAR: case U_UNASSIGNED: case U_PRIVATE_USE_CHAR:
    case U_SURROGATE:
      return true;
    default:
      return false;
  }
}

// BasicTokenizer._is_punctuation: ASCII non-alphanumeric printable, or category P*.
bool is_bert_punct(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_DASH_PUNCTUATION: case U_START_PUNCTUATION: case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION: case U_OTHER_PUNCTUATION: case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
      return true;
    default:
      return false;
  }
}


std::vector<U32> split_ws(const U32& s) {
  std::vector<U32> out;
  U32 cur;
  for (char32_t c : s) {
    if (core::is_unicode_space(c)) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

U32 normalize(const U32& s, bool nfd) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nfd ? icu::Normalizer2::getNFDInstance(status) : icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) fail("ICU normalizer unavailable: {}", u_errorName(status));
  icu::UnicodeString out = n->normalize(to_icu(s), status);
  if (U_FAILURE(status)) fail("ICU normalization failed: {}", u_errorName(status));
  return from_icu(out);
}

U32 strip_accents(const U32& s) {
  U32 out;
  for (char32_t c : normalize(s, true))
    if (u_charType(static_cast<UChar32>(c)) != U_NON_SPACING_MARK) out.push_back(c);
  return out;
}

}  // namespace

bool is_cjk_ideograph(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

WordPieceTokenizer WordPieceTokenizer::load(const std::string& dir) {
  WordPieceTokenizer t;
  const std::string vocab_path = dir + "/vocab.txt";
  const std::string cfg_path = dir + "/tokenizer_config.json";
  nlohmann::json cfg = nlohmann::json::object();
  if (core::file_exists(cfg_path)) cfg = core::read_json(cfg_path);
  auto get_bool = [&](const char* key, bool def) {
    if (!cfg.contains(key) || cfg[key].is_null()) return def;
    if (!cfg[key].is_boolean()) fail(Where{cfg_path, 0, key}, "expected true or false");
    return cfg[key].get<bool>();
  };
  auto get_token = [&](const char* key, const char* def) -> std::string {
    if (!cfg.contains(key) || cfg[key].is_null()) return def;
    if (cfg[key].is_string()) return cfg[key].get<std::string>();
    if (cfg[key].is_object() && cfg[key].contains("content") && cfg[key]["content"].is_string())
      return cfg[key]["content"].get<std::string>();
    fail(Where{cfg_path, 0, key}, "expected a token string");
  };
  t.do_lower_case_ = get_bool("do_lower_case", true);
  if (cfg.contains("strip_accents") && !cfg["strip_accents"].is_null())
    t.strip_accents_ = get_bool("strip_accents", false) ? 1 : 0;
  t.tokenize_chinese_chars_ = get_bool("tokenize_chinese_chars", true);

  const std::string bytes = core::read_file(vocab_path);
  if (!core::is_valid_utf8(bytes)) fail(Where{vocab_path}, "not valid UTF-8");
  size_t pos = 0;
  int64_t line = 0;
  while (pos < bytes.size()) {
    size_t end = bytes.find('\n', pos);
    if (end == std::string::npos) end = bytes.size();
    std::string tok = bytes.substr(pos, end - pos);
    if (!tok.empty() && tok.back() == '\r') tok.pop_back();
    // load_vocab: token.rstrip("\n"); later duplicates overwrite the id.
    t.ids_[tok] = line;
    t.vocab_.push_back(std::move(tok));
    ++line;
    pos = end + 1;
  }
  if (t.vocab_.empty()) fail(Where{vocab_path}, "empty vocabulary");
  auto need = [&](const std::string& tok, const char* field) {
    auto it = t.ids_.find(tok);
    if (it == t.ids_.end()) fail(Where{vocab_path, 0, field}, "special token '{}' is not in the vocabulary", tok);
    t.never_split_.push_back(tok);
    return it->second;
  };
  t.unk_token_ = get_token("unk_token", "[UNK]");
  t.unk_id_ = need(t.unk_token_, "unk_token");
  t.cls_id_ = need(get_token("cls_token", "[CLS]"), "cls_token");
  t.sep_id_ = need(get_token("sep_token", "[SEP]"), "sep_token");
  t.pad_id_ = need(get_token("pad_token", "[PAD]"), "pad_token");
  const std::string mask = get_token("mask_token", "[MASK]");
  if (t.ids_.count(mask)) t.never_split_.push_back(mask);
  return t;
}

int64_t WordPieceTokenizer::id_of(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? unk_id_ : it->second;
}

std::vector<std::string> WordPieceTokenizer::basic_tokenize(std::string_view text) const {
  // _clean_text
  U32 cleaned;
  for (char32_t c : to_u32(text)) {
    if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
    cleaned.push_back(is_bert_whitespace(c) ? U' ' : c);
  }
  // _tokenize_chinese_chars
  U32 spaced;
  if (tokenize_chinese_chars_) {
    for (char32_t c : cleaned) {
      if (is_cjk_ideograph(c)) {
        spaced.push_back(U' ');
        spaced.push_back(c);
        spaced.push_back(U' ');
      } else {
        spaced.push_back(c);
      }
    }
  } else {
    spaced = std::move(cleaned);
  }
  const U32 nfc = normalize(spaced, false);
  std::vector<U32> split_tokens;
  for (U32 tok : split_ws(nfc)) {
    const std::string tok8 = utf8(tok);
    bool special = false;
    for (const auto& s : never_split_) special = special || s == tok8;
    if (special) {
      split_tokens.push_back(tok);
      continue;
    }
    if (do_lower_case_) {
      icu::UnicodeString u = to_icu(tok);
      u.toLower(icu::Locale::getRoot());
      tok = from_icu(u);
      if (strip_accents_ != 0) tok = strip_accents(tok);
    } else if (strip_accents_ == 1) {
      tok = strip_accents(tok);
    }
    // _run_split_on_punc
    U32 cur;
    for (char32_t c : tok) {
      if (is_bert_punct(c)) {
        if (!cur.empty()) split_tokens.push_back(std::move(cur));
        cur.clear();
        split_tokens.push_back(U32(1, c));
      } else {
        cur.push_back(c);
      }
    }
    if (!cur.empty()) split_tokens.push_back(std::move(cur));
  }
  std::vector<std::string> out;
  for (const U32& t : split_tokens)
    for (const U32& w : split_ws(t)) out.push_back(utf8(w));
  return out;
}

void WordPieceTokenizer::wordpiece(const std::string& word, std::vector<std::string>& out) const {
  const U32 chars = to_u32(word);
  if (static_cast<int64_t>(chars.size()) > max_input_chars_per_word_) {
    out.push_back(unk_token_);
    return;
  }
  std::vector<std::string> pieces;
  size_t start = 0;
  while (start < chars.size()) {
    size_t end = chars.size();
    std::string found;
    while (start < end) {
      std::string sub = utf8(chars.substr(start, end - start));
      if (start > 0) sub = "##" + sub;
      if (ids_.count(sub)) {
        found = std::move(sub);
        break;
      }
      --end;
    }
    if (found.empty()) {
      out.push_back(unk_token_);
      return;
    }
    pieces.push_back(std::move(found));
    start = end;
  }
  for (auto& p : pieces) out.push_back(std::move(p));
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  // PreTrainedTokenizer.tokenize: special tokens in the raw text are kept whole (tokens_trie).
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t best = std::string_view::npos;
    const std::string* which = nullptr;
    for (const auto& s : never_split_) {
      const size_t f = text.find(s, pos);
      if (f != std::string_view::npos && (best == std::string_view::npos || f < best)) {
        best = f;
        which = &s;
      }
    }
    const std::string_view piece = text.substr(pos, best == std::string_view::npos ? std::string_view::npos : best - pos);
    for (const auto& w : basic_tokenize(piece)) {
      bool special = false;
      for (const auto& s : never_split_) special = special || s == w;
      if (special) out.push_back(w);
      else wordpiece(w, out);
    }
    if (!which) break;
    out.push_back(*which);
    pos = best + which->size();
  }
  return out;
}

std::vector<int64_t> WordPieceTokenizer::encode(std::string_view text, int64_t max_length) const {
  std::vector<int64_t> ids{cls_id_};
  for (const auto& t : tokenize(text)) ids.push_back(id_of(t));
  if (max_length > 1 && static_cast<int64_t>(ids.size()) + 1 > max_length) ids.resize(static_cast<size_t>(max_length - 1));
  ids.push_back(sep_id_);
  return ids;
}

int64_t WordPieceTokenizer::count_tokens(std::string_view text) const {
  return static_cast<int64_t>(tokenize(text).size());
}

}  // namespace loom::text
