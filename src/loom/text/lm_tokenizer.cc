#include "loom/text/lm_tokenizer.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/text/sentencepiece.h"

namespace loom::text {
namespace fs = std::filesystem;

LmTokenizer LmTokenizer::bytes() { return LmTokenizer{}; }

LmTokenizer LmTokenizer::sentencepiece(const std::string& spm_path) {
  LmTokenizer t;
  t.type_ = "spm";
  t.spm_path_ = spm_path;
  t.spm_ = std::make_shared<SentencePiece>(spm_path);
  return t;
}

LmTokenizer LmTokenizer::load(const std::string& dir) {
  const std::string file = (fs::path(dir) / "tokenizer.json").string();
  const nlohmann::json j = core::read_json(file);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail(Where{file, 0, "type"}, "missing string field \"type\" (\"byte\" or \"spm\")");
  const std::string type = j["type"];
  if (type == "byte") return bytes();
  if (type == "spm") {
    std::string model = j.value("model", std::string("tokenizer.spm"));
    return sentencepiece((fs::path(dir) / model).string());
  }
  fail(Where{file, 0, "type"}, "unknown tokenizer type \"{}\" (expected \"byte\" or \"spm\")", type);
}

void LmTokenizer::save(const std::string& dir) const {
  fs::create_directories(dir);
  nlohmann::json j = {{"type", type_}};
  if (type_ == "spm") {
    const fs::path dst = fs::path(dir) / "tokenizer.spm";
    std::error_code ec;
    if (!fs::equivalent(spm_path_, dst, ec)) fs::copy_file(spm_path_, dst, fs::copy_options::overwrite_existing);
    j["model"] = "tokenizer.spm";
  }
  const std::string file = (fs::path(dir) / "tokenizer.json").string();
  core::write_file_atomic(file, j.dump(2) + "\n");
}

int64_t LmTokenizer::vocab_size() const { return spm_ ? spm_->size() : 256; }

std::vector<int64_t> LmTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids;
  if (!spm_) {
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  for (int id : spm_->encode_ids(text)) ids.push_back(id);
  return ids;
}

std::string LmTokenizer::decode(const std::vector<int64_t>& ids) const {
  const int64_t V = vocab_size();
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= V) fail(Where{"", 0, "ids"}, "token id {} at index {} is outside [0, {})", ids[i], i, V);
  if (!spm_) {
    std::string s;
    s.reserve(ids.size());
    for (int64_t id : ids) s.push_back(static_cast<char>(static_cast<unsigned char>(id)));
    return s;
  }
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int64_t id : ids) {
    if (spm_->is_control(static_cast<int>(id))) continue;
    pieces.push_back(spm_->id_to_piece(static_cast<int>(id)));
  }
  return spm_->decode_pieces(pieces);
}

}  // namespace loom::text
