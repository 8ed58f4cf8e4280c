#include "loom/text/multilingual_tokenizer.h"

#include <algorithm>

#include "loom/core/error.h"
#include "loom/core/utf8.h"
#include "loom/text/language_codes.h"

namespace loom::text {
namespace {

constexpr size_t kCodesInMessage = 40;  // language codes listed in an error message

}  // namespace

MultilingualSpmTokenizer::MultilingualSpmTokenizer(std::string dir, std::string family, std::string example)
    : dir_(std::move(dir)), family_(std::move(family)), example_(std::move(example)) {}

std::string MultilingualSpmTokenizer::valid_codes_message() const {
  std::vector<std::string> shown(codes_.begin(), codes_.begin() + std::min(codes_.size(), kCodesInMessage));
  return fmt::format("valid codes ({}): {}{}", codes_.size(), fmt::join(shown, ", "),
                     codes_.size() > shown.size() ? ", ..." : "");
}

std::string MultilingualSpmTokenizer::model_code(const std::string& code, const std::string& field) const {
  if (code_ids_.count(code)) return code;
  return match_language_code(code, codes_, field).value_or(std::string());
}

int64_t MultilingualSpmTokenizer::language_id(const std::string& code) const {
  const std::string c = model_code(code, "language");
  if (c.empty())
    fail(Where{dir_, 0, "language"}, "unknown {} language code '{}'; {} ({})", family_, code, valid_codes_message(),
         kLanguageSpellings);
  return code_ids_.at(c);
}

void MultilingualSpmTokenizer::set_languages(const std::string& src, const std::string& tgt) {
  if (src.empty() || tgt.empty())
    fail(Where{dir_, 0, src.empty() ? "src" : "tgt"}, "{} needs both a source and a target language (e.g. {}); {}",
         family_, example_, valid_codes_message());
  auto check = [&](const std::string& code, const char* what) {
    std::string c = model_code(code, what);
    if (c.empty())
      fail(Where{dir_, 0, what}, "unknown {} {} language '{}'; {} ({})", family_, what, code, valid_codes_message(),
           kLanguageSpellings);
    return c;
  };
  src_ = check(src, "src");
  tgt_ = check(tgt, "tgt");
}

std::vector<std::string> MultilingualSpmTokenizer::tokenize(std::string_view text, std::vector<int64_t>* ids) const {
  core::check_tokenizer_text(text);
  std::vector<std::string> tokens;
  for (const TextChunk& chunk : splitter_.split(text)) {
    if (chunk.token >= 0) {
      const AddedToken& t = splitter_.tokens()[chunk.token];
      tokens.push_back(t.content);
      if (ids) ids->push_back(t.id);
      continue;
    }
    for (auto& p : sp_->encode_pieces(chunk.text)) {
      if (ids) ids->push_back(piece_id(p));
      tokens.push_back(std::move(p));
    }
  }
  return tokens;
}

std::vector<int64_t> MultilingualSpmTokenizer::encode_with_language(std::string_view text, const std::string& code,
                                                                    const char* side) const {
  if (code.empty())
    fail(Where{dir_, 0, side}, "no {} {} language selected; {}", family_,
         std::string(side) == "src" ? "source" : "target", valid_codes_message());
  const int64_t lang = code_ids_.at(code);
  std::vector<int64_t> ids;
  if (!language_after_eos_) ids.push_back(lang);
  tokenize(text, &ids);
  ids.push_back(eos_id());
  if (language_after_eos_) ids.push_back(lang);
  return ids;
}

std::vector<int64_t> MultilingualSpmTokenizer::encode_source(std::string_view text) const {
  return encode_with_language(text, src_, "src");
}

std::vector<std::string> MultilingualSpmTokenizer::source_pieces(std::string_view text) const {
  return tokenize(text, nullptr);
}

std::string MultilingualSpmTokenizer::source_text(const std::vector<std::string>& pieces) const {
  return sp_->decode_pieces(pieces);
}

std::vector<int64_t> MultilingualSpmTokenizer::encode_target(std::string_view text) const {
  return encode_with_language(text, tgt_, "tgt");
}

std::optional<int64_t> MultilingualSpmTokenizer::forced_bos_token_id() const {
  if (tgt_.empty()) return std::nullopt;
  return code_ids_.at(tgt_);
}

}  // namespace loom::text
