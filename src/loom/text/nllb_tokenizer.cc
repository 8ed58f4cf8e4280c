#include "loom/text/nllb_tokenizer.h"

#include <algorithm>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"
#include "loom/text/language_codes.h"

namespace loom::text {
namespace {

constexpr int64_t kMaxId = 50'000'000;  // guards against hostile token ids in the config files

std::string replace_spiece_underline(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 3, "\xE2\x96\x81") == 0) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

}  // namespace

NllbTokenizer::NllbTokenizer(const std::string& model_dir)
    : MultilingualSpmTokenizer(model_dir, "NLLB", "--src eng_Latn --tgt zho_Hans") {
  const std::string cfg_path = dir_ + "/tokenizer_config.json";
  const nlohmann::json cfg = read_tokenizer_config(dir_);
  language_after_eos_ = config_bool(cfg, "legacy_behaviour", false, cfg_path);
  clean_up_ = config_bool(cfg, "clean_up_tokenization_spaces", false, cfg_path);

  const std::string spm_path = dir_ + "/sentencepiece.bpe.model";
  if (!core::file_exists(spm_path))
    fail(Where{spm_path}, "NllbTokenizer file missing (the slow NLLB tokenizer needs sentencepiece.bpe.model)");
  sp_ = std::make_unique<SentencePiece>(spm_path);
  sp_size_ = sp_->size();

  // Fixed fairseq specials.
  const std::string bos = special_token_string(cfg, "bos_token", "<s>", cfg_path);
  const std::string pad = special_token_string(cfg, "pad_token", "<pad>", cfg_path);
  const std::string eos = special_token_string(cfg, "eos_token", "</s>", cfg_path);
  const std::string unk = special_token_string(cfg, "unk_token", "<unk>", cfg_path);
  const std::string mask = special_token_string(cfg, "mask_token", "<mask>", cfg_path);
  std::vector<AddedToken> added{{bos, 0}, {pad, 1}, {eos, 2}, {unk, 3}};

  // Language codes and <mask>: ids from tokenizer_config.json added_tokens_decoder, else
  // added_tokens.json, else consecutive after the SentencePiece vocabulary in the order of
  // additional_special_tokens (HF: sp_size + i + 1; <mask> after them).
  std::vector<AddedToken> extra;
  std::string extra_source;
  auto atd = cfg.find("added_tokens_decoder");
  if (atd != cfg.end() && atd->is_object() && atd->size() > 4) {
    extra_source = cfg_path;
    for (auto it = atd->begin(); it != atd->end(); ++it) {
      const auto& v = it.value();
      const std::string field = "added_tokens_decoder." + it.key();
      if (!v.is_object() || !v.contains("content") || !v["content"].is_string())
        fail(Where{cfg_path, 0, field}, "expected {{\"content\": ...}}");
      AddedToken t;
      t.content = v["content"].get<std::string>();
      try {
        t.id = std::stoll(it.key());
      } catch (const std::exception&) {
        fail(Where{cfg_path, 0, field}, "key is not a token id");
      }
      if (t.id < 4) continue;  // the fixed specials above
      auto flag = [&](const char* k) {
        auto f = v.find(k);
        return f != v.end() && f->is_boolean() && f->get<bool>();
      };
      t.lstrip = flag("lstrip");
      t.rstrip = flag("rstrip");
      extra.push_back(std::move(t));
    }
  } else if (core::file_exists(dir_ + "/added_tokens.json")) {
    extra_source = dir_ + "/added_tokens.json";
    nlohmann::json j = core::read_json(extra_source);
    if (!j.is_object()) fail(Where{extra_source}, "expected a JSON object token -> id");
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer()) fail(Where{extra_source, 0, it.key()}, "id is not an integer");
      AddedToken t{it.key(), it.value().get<int64_t>()};
      if (t.id < 4) continue;
      t.lstrip = t.content == mask;  // HF builds <mask> with lstrip=True
      extra.push_back(std::move(t));
    }
  } else {
    nlohmann::json list;
    for (const std::string& f : {dir_ + "/special_tokens_map.json", cfg_path}) {
      if (!core::file_exists(f)) continue;
      nlohmann::json j = f == cfg_path ? cfg : core::read_json(f);
      if (j.is_object() && j.contains("additional_special_tokens")) {
        list = j["additional_special_tokens"];
        extra_source = f;
        break;
      }
    }
    if (!list.is_array())
      fail(Where{cfg_path}, "no NLLB language codes found (looked for added_tokens_decoder, added_tokens.json, "
                            "additional_special_tokens)");
    int64_t next = sp_size_ + 1;
    for (const auto& e : list) {
      std::string code = e.is_string() ? e.get<std::string>() : e.value("content", std::string());
      if (code.empty()) fail(Where{extra_source, 0, "additional_special_tokens"}, "bad entry {}", e.dump());
      extra.push_back(AddedToken{code, next++});
    }
    extra.push_back(AddedToken{mask, next, true, false});
  }

  for (auto& t : extra) {
    if (t.id < 0 || t.id > kMaxId) fail(Where{extra_source, 0, t.content}, "token id {} out of range", t.id);
    if (t.content.empty()) fail(Where{extra_source, 0, std::to_string(t.id)}, "empty added token");
  }
  std::sort(extra.begin(), extra.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  for (const auto& t : extra) {
    if (t.content == mask) continue;
    codes_.push_back(t.content);
    code_ids_[t.content] = t.id;
  }
  if (codes_.empty()) fail(Where{extra_source}, "no NLLB language codes found");
  added.insert(added.end(), extra.begin(), extra.end());
  vocab_size_ = sp_size_ + 1;
  for (const auto& t : added) {
    added_by_id_[t.id] = t.content;
    special_ids_.insert(t.id);  // specials, language codes (additional_special_tokens), <mask>
    vocab_size_ = std::max(vocab_size_, t.id + 1);
  }
  splitter_ = AddedTokenSplitter(std::move(added));

  // HF defaults: src_lang from the config (else eng_Latn), tgt_lang from the config (else none).
  auto cfg_lang = [&](const char* key, const std::string& fallback) {
    auto it = cfg.find(key);
    std::string v = it != cfg.end() && it->is_string() ? it->get<std::string>() : fallback;
    return v.empty() ? v : model_code(v, key);
  };
  src_ = cfg_lang("src_lang", "eng_Latn");
  tgt_ = cfg_lang("tgt_lang", "");
}

int64_t NllbTokenizer::piece_id(const std::string& piece) const {
  const int spm_id = sp_->piece_to_id(piece);
  // HF: spm id + fairseq offset 1; SentencePiece's <unk> (id 0) -> <unk> = 3.
  return spm_id == 0 || sp_->is_unknown(spm_id) ? 3 : spm_id + 1;
}

std::string NllbTokenizer::id_to_token(int64_t id, bool /*target_side*/) const {
  if (id < 0 || id >= vocab_size_) fail(Where{dir_}, "token id {} out of range [0, {})", id, vocab_size_);
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) return it->second;
  if (id - 1 < sp_size_) return sp_->id_to_piece(static_cast<int>(id - 1));
  return added_by_id_.at(3);  // a hole between the SentencePiece vocabulary and the codes
}

std::string NllbTokenizer::decode_target(const std::vector<int64_t>& ids) const {
  std::string joined;
  for (int64_t id : ids) {
    std::string token = id_to_token(id);  // range check first
    if (special_ids_.count(id)) continue;  // skip_special_tokens=True
    if (id - 1 >= sp_size_) continue;      // hole: decodes to <unk>, a special token
    joined += token;
  }
  // HF NllbTokenizer.convert_tokens_to_string: join, "▁" -> " ", strip.
  std::string out(core::strip_unicode_space(replace_spiece_underline(joined)));
  return clean_up_ ? clean_up_tokenization(std::move(out)) : out;
}

}  // namespace loom::text
