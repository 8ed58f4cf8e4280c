#include "loom/text/marian_tokenizer.h"

#include <algorithm>
#include <unordered_set>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"
#include "loom/text/language_codes.h"

namespace loom::text {
namespace {

bool is_language_code(const std::string& token) {
  return token.size() > 4 && token.compare(0, 2, ">>") == 0 && token.compare(token.size() - 2, 2, "<<") == 0;
}

// HF MarianTokenizer.remove_language_code: the regex `>>.+<<` ('.' = anything but '\n',
// greedy). Returns the match at position 0 (if any) and text with every match removed.
std::string remove_language_codes(std::string_view text, std::string* leading) {
  std::string out;
  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    size_t p = text.find(">>", pos);
    if (p == std::string_view::npos) break;
    size_t line_end = text.find('\n', p);
    if (line_end == std::string_view::npos) line_end = text.size();
    // Greedy: the last "<<" on this line with at least one character after ">>".
    size_t q = std::string_view::npos;
    if (line_end >= p + 5) {
      size_t cand = text.rfind("<<", line_end - 2);
      if (cand != std::string_view::npos && cand >= p + 3) q = cand;
    }
    if (q == std::string_view::npos) {
      // No match can start anywhere else on this line either (it would need a later "<<").
      out.append(text.substr(pos, line_end - pos));
      pos = line_end;
      first = false;
      continue;
    }
    if (first && p == 0 && leading) *leading = std::string(text.substr(0, q + 2));
    first = false;
    out.append(text.substr(pos, p - pos));
    pos = q + 2;
  }
  if (pos < text.size()) out.append(text.substr(pos));
  return out;
}

std::string bare_code(const std::string& code) {
  return is_language_code(code) ? code.substr(2, code.size() - 4) : code;
}

}  // namespace

MarianTokenizer::MarianTokenizer(const std::string& model_dir) : dir_(model_dir) {
  const std::string cfg_path = dir_ + "/tokenizer_config.json";
  const nlohmann::json cfg = read_tokenizer_config(dir_);
  separate_vocabs_ = config_bool(cfg, "separate_vocabs", false, cfg_path);
  clean_up_ = config_bool(cfg, "clean_up_tokenization_spaces", false, cfg_path);
  source_lang_cfg_ = config_string(cfg, "source_lang", cfg_path);
  target_lang_cfg_ = config_string(cfg, "target_lang", cfg_path);
  eos_token_ = special_token_string(cfg, "eos_token", "</s>", cfg_path);
  unk_token_ = special_token_string(cfg, "unk_token", "<unk>", cfg_path);
  pad_token_ = special_token_string(cfg, "pad_token", "<pad>", cfg_path);

  for (const char* f : {"source.spm", "target.spm", "vocab.json"})
    if (!core::file_exists(dir_ + "/" + f))
      fail(Where{dir_ + "/" + f}, "MarianTokenizer file missing (a Marian model needs source.spm, target.spm, vocab.json)");
  spm_source_ = std::make_unique<SentencePiece>(dir_ + "/source.spm");
  spm_target_ = std::make_unique<SentencePiece>(dir_ + "/target.spm");
  load_vocab_json(dir_ + "/vocab.json", encoder_, decoder_, decoder_has_);
  if (separate_vocabs_) {
    const std::string tv = dir_ + "/target_vocab.json";
    if (!core::file_exists(tv)) fail(Where{tv}, "missing: tokenizer_config.json sets separate_vocabs");
    load_vocab_json(tv, target_encoder_, target_decoder_, target_decoder_has_);
  }

  auto special_id = [&](const std::string& token, const char* what) {
    auto it = encoder_.find(token);
    if (it == encoder_.end()) fail(Where{dir_ + "/vocab.json"}, "{} '{}' is not in the vocabulary", what, token);
    return it->second;
  };
  eos_ = special_id(eos_token_, "eos_token");
  unk_ = special_id(unk_token_, "unk_token");
  pad_ = special_id(pad_token_, "pad_token");

  // Added tokens the input text is split on: tokenizer_config.json's added_tokens_decoder (with
  // their lstrip/rstrip flags), else the three specials.
  std::vector<AddedToken> added;
  auto atd = cfg.find("added_tokens_decoder");
  if (atd != cfg.end() && atd->is_object()) {
    for (auto it = atd->begin(); it != atd->end(); ++it) {
      const auto& v = it.value();
      if (!v.is_object() || !v.contains("content") || !v["content"].is_string())
        fail(Where{cfg_path, 0, "added_tokens_decoder." + it.key()}, "expected {{\"content\": ...}}");
      AddedToken t;
      t.content = v["content"].get<std::string>();
      try {
        t.id = std::stoll(it.key());
      } catch (const std::exception&) {
        fail(Where{cfg_path, 0, "added_tokens_decoder." + it.key()}, "key is not a token id");
      }
      t.lstrip = v.value("lstrip", false);
      t.rstrip = v.value("rstrip", false);
      if (!t.content.empty()) added.push_back(std::move(t));
    }
  }
  for (const auto& [tok, id] : {std::pair{eos_token_, eos_}, {unk_token_, unk_}, {pad_token_, pad_}}) {
    bool present = std::any_of(added.begin(), added.end(), [&](const AddedToken& t) { return t.content == tok; });
    if (!present) added.push_back(AddedToken{tok, id, false, false});
  }
  splitter_ = AddedTokenSplitter(std::move(added));

  if (!separate_vocabs_) {
    std::vector<std::pair<int64_t, std::string>> codes;
    for (const auto& [piece, id] : encoder_)
      if (is_language_code(piece)) codes.emplace_back(id, bare_code(piece));
    std::sort(codes.begin(), codes.end());
    for (auto& c : codes) codes_.push_back(std::move(c.second));
  }
}

std::vector<std::string> MarianTokenizer::languages() const { return codes_; }

void MarianTokenizer::set_languages(const std::string& src, const std::string& tgt) {
  if (!src.empty() && !source_lang_cfg_.empty() && src != source_lang_cfg_ && !same_language(src, source_lang_cfg_))
    fail(Where{dir_ + "/tokenizer_config.json", 0, "source_lang"},
         "this Marian model translates from '{}'; --src '{}' does not match (leave it empty or use '{}')",
         source_lang_cfg_, src, source_lang_cfg_);
  std::optional<int64_t> code_id;
  std::string bare = tgt.empty() ? tgt : bare_code(tgt);
  if (!tgt.empty()) {
    // Another spelling of one of the model's >>xx<< codes ("zh", "zho_Hans" for "cmn_Hans").
    if (auto m = match_language_code(bare, codes_, "tgt")) bare = *m;
    if (std::find(codes_.begin(), codes_.end(), bare) != codes_.end()) {
      code_id = encoder_.at(">>" + bare + "<<");
    } else if (!(tgt == target_lang_cfg_ && !target_lang_cfg_.empty()) &&
               !(codes_.empty() && !target_lang_cfg_.empty() && same_language(tgt, target_lang_cfg_))) {
      if (codes_.empty())
        fail(Where{dir_, 0, "tgt"},
             "this Marian model translates into '{}' only and has no >>xx<< language tokens; "
             "--tgt '{}' is not valid (leave it empty{})",
             target_lang_cfg_.empty() ? "its one target language" : target_lang_cfg_, tgt,
             target_lang_cfg_.empty() ? "" : " or use '" + target_lang_cfg_ + "'");
      fail(Where{dir_ + "/vocab.json", 0, "tgt"}, "unknown target language '{}'; valid codes ({}): {} ({})", tgt,
           codes_.size(), fmt::join(codes_, ", "), kLanguageSpellings);
    }
  }
  src_ = src;
  tgt_ = code_id ? bare : tgt;
  tgt_code_id_ = code_id;
}

std::vector<std::string> MarianTokenizer::tokenize(std::string_view text, bool target, bool* leading_code) const {
  core::check_tokenizer_text(text);
  const SentencePiece& spm = target ? *spm_target_ : *spm_source_;
  std::vector<std::string> tokens;
  bool first = true;
  for (const TextChunk& chunk : splitter_.split(text)) {
    if (chunk.token >= 0) {
      tokens.push_back(splitter_.tokens()[chunk.token].content);
    } else {
      std::string code;
      std::string rest = remove_language_codes(chunk.text, &code);
      if (!code.empty()) {
        tokens.push_back(code);
        if (first && leading_code) *leading_code = true;
      }
      for (auto& p : spm.encode_pieces(rest)) tokens.push_back(std::move(p));
    }
    first = false;
  }
  return tokens;
}

int64_t MarianTokenizer::token_to_id(const std::string& token, bool target) const {
  for (const auto& t : splitter_.tokens())
    if (t.content == token) return t.id;
  const auto& enc = target && separate_vocabs_ ? target_encoder_ : encoder_;
  auto it = enc.find(token);
  if (it != enc.end()) return it->second;
  auto unk = enc.find(unk_token_);
  return unk != enc.end() ? unk->second : unk_;
}

std::vector<int64_t> MarianTokenizer::encode_source(std::string_view text) const {
  bool leading_code = false;
  auto tokens = tokenize(text, false, &leading_code);
  std::vector<int64_t> ids;
  ids.reserve(tokens.size() + 2);
  if (tgt_code_id_ && !leading_code) ids.push_back(*tgt_code_id_);
  for (const auto& t : tokens) ids.push_back(token_to_id(t, false));
  ids.push_back(eos_);
  return ids;
}

std::vector<std::string> MarianTokenizer::source_pieces(std::string_view text) const {
  return tokenize(text, false, nullptr);
}

std::string MarianTokenizer::source_text(const std::vector<std::string>& pieces) const {
  return spm_source_->decode_pieces(pieces);
}

std::vector<int64_t> MarianTokenizer::encode_target(std::string_view text) const {
  auto tokens = tokenize(text, true, nullptr);
  std::vector<int64_t> ids;
  ids.reserve(tokens.size() + 1);
  for (const auto& t : tokens) ids.push_back(token_to_id(t, true));
  ids.push_back(eos_);
  return ids;
}

std::string MarianTokenizer::id_to_token(int64_t id, bool target_side) const {
  const bool tgt = target_side && separate_vocabs_;
  const auto& dec = tgt ? target_decoder_ : decoder_;
  const auto& has = tgt ? target_decoder_has_ : decoder_has_;
  if (id < 0 || id >= static_cast<int64_t>(dec.size()))
    fail(Where{dir_ + (tgt ? "/target_vocab.json" : "/vocab.json")}, "token id {} out of range [0, {})", id, dec.size());
  return has[id] ? dec[id] : unk_token_;  // HF: decoder.get(index, unk_token)
}

std::string MarianTokenizer::decode_target(const std::vector<int64_t>& ids) const {
  std::unordered_set<std::string> special_tokens{eos_token_, unk_token_, pad_token_};
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int64_t id : ids) {
    std::string token = id_to_token(id, true);  // range check first
    if (id == eos_ || id == unk_ || id == pad_) continue;  // skip_special_tokens=True
    // A hole in the vocabulary decodes to <unk> in HF (a special token): skipped as well.
    if (special_tokens.count(token)) continue;
    pieces.push_back(std::move(token));
  }
  std::string text = spm_target_->decode_pieces(pieces);
  // HF convert_tokens_to_string: "▁" -> " " (for pieces the model does not know), then strip.
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(text[i++]);
    }
  }
  out = std::string(core::strip_unicode_space(out));
  return clean_up_ ? clean_up_tokenization(std::move(out)) : out;
}

}  // namespace loom::text
