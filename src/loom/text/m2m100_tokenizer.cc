#include "loom/text/m2m100_tokenizer.h"

#include <algorithm>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"

namespace loom::text {
namespace {

// transformers' FAIRSEQ_LANGUAGE_CODES of tokenization_m2m_100.py (the language tokens' order
// fixes their ids).
const std::vector<std::string>& language_code_list(const std::string& name, const std::string& where) {
  static const std::vector<std::string> m2m100 = {
      "af", "am", "ar", "ast", "az", "ba", "be", "bg", "bn", "br", "bs", "ca", "ceb", "cs", "cy", "da", "de",
      "el", "en", "es", "et", "fa", "ff", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi", "hr",
      "ht", "hu", "hy", "id", "ig", "ilo", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "lb", "lg",
      "ln", "lo", "lt", "lv", "mg", "mk", "ml", "mn", "mr", "ms", "my", "ne", "nl", "no", "ns", "oc", "or",
      "pa", "pl", "ps", "pt", "ro", "ru", "sd", "si", "sk", "sl", "so", "sq", "sr", "ss", "su", "sv", "sw",
      "ta", "th", "tl", "tn", "tr", "uk", "ur", "uz", "vi", "wo", "xh", "yi", "yo", "zh", "zu"};
  static const std::vector<std::string> wmt21 = {"en", "ha", "is", "ja", "cs", "ru", "zh", "de"};
  if (name == "m2m100") return m2m100;
  if (name == "wmt21") return wmt21;
  fail(Where{where, 0, "language_codes"}, "unknown M2M100 language_codes '{}' (m2m100 or wmt21)", name);
}

}  // namespace

M2M100Tokenizer::M2M100Tokenizer(const std::string& model_dir)
    : MultilingualSpmTokenizer(model_dir, "M2M100", "--src en --tgt zh") {
  const std::string cfg_path = dir_ + "/tokenizer_config.json";
  const nlohmann::json cfg = read_tokenizer_config(dir_);
  clean_up_ = config_bool(cfg, "clean_up_tokenization_spaces", false, cfg_path);

  const std::string vocab_path = dir_ + "/vocab.json";
  const std::string spm_path = dir_ + "/sentencepiece.bpe.model";
  for (const std::string& f : {vocab_path, spm_path})
    if (!core::file_exists(f)) fail(Where{f}, "M2M100Tokenizer file missing (it needs vocab.json and sentencepiece.bpe.model)");
  load_vocab_json(vocab_path, encoder_, decoder_, decoder_has_);
  sp_ = std::make_unique<SentencePiece>(spm_path);
  encoder_size_ = static_cast<int64_t>(encoder_.size());

  unk_token_ = special_token_string(cfg, "unk_token", "<unk>", cfg_path);
  auto unk = encoder_.find(unk_token_);
  if (unk == encoder_.end()) fail(Where{vocab_path, 0, unk_token_}, "the unknown token is not in the vocabulary");
  unk_ = unk->second;
  // HF _convert_token_to_id: encoder.get(token, encoder[unk_token]).
  auto id_of = [&](const char* key, const char* fallback) {
    std::string token = special_token_string(cfg, key, fallback, cfg_path);
    auto it = encoder_.find(token);
    return std::make_pair(token, it == encoder_.end() ? unk_ : it->second);
  };
  const auto bos = id_of("bos_token", "<s>");
  const auto pad = id_of("pad_token", "<pad>");
  const auto eos = id_of("eos_token", "</s>");
  pad_ = pad.second;
  eos_ = eos.second;

  std::string list_name = "m2m100";
  if (auto it = cfg.find("language_codes"); it != cfg.end() && !it->is_null()) {
    if (!it->is_string()) fail(Where{cfg_path, 0, "language_codes"}, "expected a string (m2m100 or wmt21)");
    list_name = it->get<std::string>();
  }
  codes_ = language_code_list(list_name, cfg_path);
  int64_t madeup = 8;
  if (auto it = cfg.find("num_madeup_words"); it != cfg.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 1'000'000)
      fail(Where{cfg_path, 0, "num_madeup_words"}, "expected a small non-negative integer");
    madeup = it->get<int64_t>();
  }
  vocab_size_ = encoder_size_ + static_cast<int64_t>(codes_.size()) + madeup;
  special_.assign(static_cast<size_t>(vocab_size_), false);
  std::vector<AddedToken> added;
  for (const auto& [token, id] : {std::make_pair(bos.first, bos.second), pad, eos, std::make_pair(unk_token_, unk_)}) {
    added.push_back(AddedToken{token, id});
    if (id < vocab_size_) special_[static_cast<size_t>(id)] = true;
  }
  for (size_t i = 0; i < codes_.size(); ++i) {
    const int64_t id = encoder_size_ + static_cast<int64_t>(i);
    code_ids_[codes_[i]] = id;
    special_[static_cast<size_t>(id)] = true;
    added.push_back(AddedToken{"__" + codes_[i] + "__", id});
  }
  splitter_ = AddedTokenSplitter(std::move(added));

  auto cfg_lang = [&](const char* key, const std::string& fallback) {
    auto it = cfg.find(key);
    std::string v = it != cfg.end() && it->is_string() ? it->get<std::string>() : fallback;
    return v.empty() ? v : model_code(v, key);
  };
  src_ = cfg_lang("src_lang", "en");
  tgt_ = cfg_lang("tgt_lang", "");
}

int64_t M2M100Tokenizer::piece_id(const std::string& piece) const {
  auto it = encoder_.find(piece);
  return it == encoder_.end() ? unk_ : it->second;
}

std::string M2M100Tokenizer::id_to_token(int64_t id, bool /*target_side*/) const {
  if (id < 0 || id >= vocab_size_) fail(Where{dir_}, "token id {} out of range [0, {})", id, vocab_size_);
  if (id >= encoder_size_ && id < encoder_size_ + static_cast<int64_t>(codes_.size()))
    return "__" + codes_[static_cast<size_t>(id - encoder_size_)] + "__";
  if (id < static_cast<int64_t>(decoder_.size()) && decoder_has_[static_cast<size_t>(id)])
    return decoder_[static_cast<size_t>(id)];
  return unk_token_;  // HF: decoder.get(index, unk_token)
}

std::string M2M100Tokenizer::decode_target(const std::vector<int64_t>& ids) const {
  std::string out;
  std::vector<std::string> run;
  for (int64_t id : ids) {
    std::string token = id_to_token(id);  // range check first
    if (special_[static_cast<size_t>(id)]) continue;  // skip_special_tokens=True
    if (token == unk_token_) {  // a special token's text: not decoded by SentencePiece
      out += sp_->decode_pieces(run) + token;
      run.clear();
    } else {
      run.push_back(std::move(token));
    }
  }
  out += sp_->decode_pieces(run);
  std::string stripped(core::strip_unicode_space(out));
  return clean_up_ ? clean_up_tokenization(std::move(stripped)) : stripped;
}

}  // namespace loom::text
