#include "loom/text/tokenizer_files.h"

#include <algorithm>
#include <cstring>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"

namespace loom::text {

std::string special_token_string(const nlohmann::json& config, const std::string& key,
                                 const std::string& fallback, const std::string& file) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  fail(Where{file, 0, key}, "expected a string or {{\"content\": ...}}, got {}", it->dump());
}

std::string clean_up_tokenization(std::string text) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
      {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  // Each rule is applied to the whole string in turn, like Python's chained str.replace.
  for (const auto& [from, to] : kRules) {
    const size_t flen = std::strlen(from);
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    while (true) {
      size_t hit = text.find(from, pos);
      if (hit == std::string::npos) break;
      out.append(text, pos, hit - pos);
      out.append(to);
      pos = hit + flen;
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }
  return text;
}

AddedTokenSplitter::AddedTokenSplitter(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(static_cast<int>(i));
  }
  for (auto& v : by_first_byte_)
    std::stable_sort(v.begin(), v.end(),
                     [&](int a, int b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

std::vector<TextChunk> AddedTokenSplitter::split(std::string_view text) const {
  std::vector<TextChunk> chunks;
  size_t plain_start = 0, i = 0;
  while (i < text.size()) {
    int found = -1;
    for (int t : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const std::string& c = tokens_[t].content;
      if (text.compare(i, c.size(), c) == 0) {
        found = t;
        break;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    if (i > plain_start) chunks.push_back({text.substr(plain_start, i - plain_start), -1});
    chunks.push_back({text.substr(i, tokens_[found].content.size()), found});
    i += tokens_[found].content.size();
    plain_start = i;
  }
  if (plain_start < text.size()) chunks.push_back({text.substr(plain_start), -1});
  // Whitespace stripping around lstrip/rstrip tokens (HF: rstrip eats the right neighbour's
  // leading spaces, lstrip the left neighbour's trailing spaces).
  for (size_t k = 0; k < chunks.size(); ++k) {
    if (chunks[k].token < 0) continue;
    const AddedToken& t = tokens_[chunks[k].token];
    if (t.rstrip && k + 1 < chunks.size() && chunks[k + 1].token < 0)
      chunks[k + 1].text = core::lstrip_unicode_space(chunks[k + 1].text);
    if (t.lstrip && k > 0 && chunks[k - 1].token < 0) chunks[k - 1].text = core::rstrip_unicode_space(chunks[k - 1].text);
  }
  std::vector<TextChunk> out;
  out.reserve(chunks.size());
  for (const auto& c : chunks)
    if (c.token >= 0 || !c.text.empty()) out.push_back(c);
  return out;
}

nlohmann::json read_tokenizer_config(const std::string& model_dir) {
  const std::string path = model_dir + "/tokenizer_config.json";
  nlohmann::json cfg = core::file_exists(path) ? core::read_json(path) : nlohmann::json::object();
  if (!cfg.is_object()) fail(Where{path}, "expected a JSON object");
  return cfg;
}

bool config_bool(const nlohmann::json& config, const char* key, bool fallback, const std::string& file) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(Where{file, 0, key}, "expected true or false, got {}", it->dump());
  return it->get<bool>();
}

std::string config_string(const nlohmann::json& config, const char* key, const std::string& file) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return {};
  if (!it->is_string()) fail(Where{file, 0, key}, "expected a string, got {}", it->dump());
  return it->get<std::string>();
}

namespace {
constexpr int64_t kMaxVocabId = 50'000'000;  // guards the id -> token table against hostile files
}  // namespace

void load_vocab_json(const std::string& path, std::unordered_map<std::string, int64_t>& encoder,
                std::vector<std::string>& decoder, std::vector<bool>& has) {
  // Entries in file order (HF's id -> piece table {v: k} keeps the last piece of a duplicate id),
  // collected with a parser callback (nlohmann::ordered_json would be quadratic on 65k keys).
  std::vector<std::pair<std::string, nlohmann::json>> entries;
  std::string key;
  auto cb = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key) key = parsed.get<std::string>();
    if (depth == 1 && event == nlohmann::json::parse_event_t::value) entries.emplace_back(key, parsed);
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(core::read_file(path), cb);
  } catch (const nlohmann::json::exception& e) {
    fail(Where{path}, "not valid JSON: {}", e.what());
  }
  if (!j.is_object() || entries.empty()) fail(Where{path}, "expected a non-empty JSON object piece -> id");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!it.value().is_number_integer()) fail(Where{path, 0, it.key()}, "id is not an integer: {}", it.value().dump());
  encoder.reserve(entries.size());
  int64_t max_id = -1;
  for (const auto& [piece, value] : entries) {
    if (!value.is_number_integer()) fail(Where{path, 0, piece}, "id is not an integer: {}", value.dump());
    int64_t id = value.get<int64_t>();
    if (id < 0 || id > kMaxVocabId) fail(Where{path, 0, piece}, "id {} out of range [0, {}]", id, kMaxVocabId);
    encoder[piece] = id;
    max_id = std::max(max_id, id);
  }
  decoder.assign(static_cast<size_t>(max_id + 1), std::string());
  has.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [piece, value] : entries) {
    int64_t id = value.get<int64_t>();
    decoder[id] = piece;
    has[id] = true;
  }
}

}  // namespace loom::text
