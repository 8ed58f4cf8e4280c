#include "loom/text/loom_spm_tokenizer.h"

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {
namespace {

// The four special pieces must sit at their fixed ids as control / unknown symbols.
void check_specials(const SentencePiece& sp) {
  const std::pair<int64_t, const char*> specials[] = {
      {kLoomPadId, "<pad>"}, {kLoomUnkId, "<unk>"}, {kLoomBosId, "<s>"}, {kLoomEosId, "</s>"}};
  if (sp.size() <= 4) fail(Where{sp.path()}, "SentencePiece model has only {} pieces", sp.size());
  for (const auto& [id, piece] : specials) {
    const std::string got = sp.id_to_piece(static_cast<int>(id));
    const bool kind_ok = id == kLoomUnkId ? sp.is_unknown(static_cast<int>(id)) : sp.is_control(static_cast<int>(id));
    if (got != piece || !kind_ok)
      fail(Where{sp.path(), 0, piece},
           "loom models need {} at id {} (pad 0, unk 1, bos 2, eos 3; see text::train_sentencepiece), found '{}'",
           piece, id, got);
  }
}

void check_config_id(const nlohmann::json& cfg, const std::string& path, const char* key, int64_t expected,
                     bool required) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (required) fail(Where{path, 0, key}, "missing (loom models use {} = {})", key, expected);
    return;
  }
  if (!it->is_number_integer() || it->get<int64_t>() != expected)
    fail(Where{path, 0, key}, "is {} but loom SentencePiece models fix it to {}", it->dump(), expected);
}

}  // namespace

LoomSpmTokenizer::LoomSpmTokenizer(const std::string& model_dir) : dir_(model_dir) {
  const std::string cfg_path = model_dir + "/config.json";
  const nlohmann::json cfg = core::read_json(cfg_path);
  if (!cfg.is_object()) fail(Where{cfg_path}, "expected a JSON object");
  const std::string type = config_string(cfg, "model_type", cfg_path);
  if (type != "loom_seq2seq") fail(Where{cfg_path, 0, "model_type"}, "is '{}', expected 'loom_seq2seq'", type);
  check_config_id(cfg, cfg_path, "pad_token_id", kLoomPadId, true);
  check_config_id(cfg, cfg_path, "bos_token_id", kLoomBosId, true);
  check_config_id(cfg, cfg_path, "eos_token_id", kLoomEosId, true);
  check_config_id(cfg, cfg_path, "unk_token_id", kLoomUnkId, false);
  source_lang_cfg_ = config_string(cfg, "source_lang", cfg_path);
  target_lang_cfg_ = config_string(cfg, "target_lang", cfg_path);

  const std::string src_path = model_dir + "/source.spm", tgt_path = model_dir + "/target.spm";
  if (!core::file_exists(src_path)) fail(Where{src_path}, "missing: loom models keep their source SentencePiece model here");
  if (!core::file_exists(tgt_path)) fail(Where{tgt_path}, "missing: loom models keep their target SentencePiece model here");
  source_ = std::make_unique<SentencePiece>(src_path);
  joint_ = core::read_file(src_path) == core::read_file(tgt_path);
  target_ = std::make_unique<SentencePiece>(tgt_path);
  check_specials(*source_);
  check_specials(*target_);
}

void LoomSpmTokenizer::set_languages(const std::string& src, const std::string& tgt) {
  const std::string pair = fmt::format("{}->{}", source_lang_cfg_.empty() ? "?" : source_lang_cfg_,
                                       target_lang_cfg_.empty() ? "?" : target_lang_cfg_);
  if (!src.empty() && !source_lang_cfg_.empty() && src != source_lang_cfg_)
    fail(Where{dir_ + "/config.json", 0, "source_lang"},
         "this loom model translates {} only; source language '{}' is not supported", pair, src);
  if (!tgt.empty() && !target_lang_cfg_.empty() && tgt != target_lang_cfg_)
    fail(Where{dir_ + "/config.json", 0, "target_lang"},
         "this loom model translates {} only; target language '{}' is not supported", pair, tgt);
  src_ = src;
  tgt_ = tgt;
}

std::vector<std::string> LoomSpmTokenizer::languages() const {
  if (target_lang_cfg_.empty()) return {};
  return {target_lang_cfg_};
}

std::string LoomSpmTokenizer::source_language() const { return src_.empty() ? source_lang_cfg_ : src_; }
std::string LoomSpmTokenizer::target_language() const { return tgt_.empty() ? target_lang_cfg_ : tgt_; }

std::vector<int64_t> LoomSpmTokenizer::encode_source(std::string_view text) const {
  core::check_tokenizer_text(text);
  std::vector<int64_t> ids;
  for (int id : source_->encode_ids(text)) ids.push_back(id);
  ids.push_back(kLoomEosId);
  return ids;
}

std::vector<std::string> LoomSpmTokenizer::source_pieces(std::string_view text) const {
  core::check_tokenizer_text(text);
  return source_->encode_pieces(text);
}

std::string LoomSpmTokenizer::source_text(const std::vector<std::string>& pieces) const {
  return source_->decode_pieces(pieces);
}

std::vector<int64_t> LoomSpmTokenizer::encode_target(std::string_view text) const {
  core::check_tokenizer_text(text);
  std::vector<int64_t> ids;
  for (int id : target_->encode_ids(text)) ids.push_back(id);
  ids.push_back(kLoomEosId);
  return ids;
}

std::string LoomSpmTokenizer::decode_target(const std::vector<int64_t>& ids) const {
  std::vector<std::string> pieces;
  const int64_t n = target_->size();
  for (int64_t id : ids) {
    if (id < 0 || id >= n) fail(Where{target_->path()}, "token id {} is outside the vocabulary [0, {})", id, n);
    if (id == kLoomPadId || id == kLoomUnkId || id == kLoomBosId || id == kLoomEosId) continue;
    pieces.push_back(target_->id_to_piece(static_cast<int>(id)));
  }
  return target_->decode_pieces(pieces);
}

std::string LoomSpmTokenizer::id_to_token(int64_t id, bool target_side) const {
  const SentencePiece& sp = target_side ? *target_ : *source_;
  if (id < 0 || id >= sp.size()) fail(Where{sp.path()}, "token id {} is outside the vocabulary [0, {})", id, sp.size());
  return sp.id_to_piece(static_cast<int>(id));
}

}  // namespace loom::text
