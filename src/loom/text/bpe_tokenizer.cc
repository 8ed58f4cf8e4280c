#include "loom/text/bpe_tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <unicode/utext.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <queue>
#include <unordered_map>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {

namespace {

using json = nlohmann::json;
constexpr int64_t kMaxId = 50'000'000;  // guards against hostile ids

// The GPT-2 regex the ByteLevel pre-tokenizer uses with use_regex=true.
const char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the code point at s[i] (s valid UTF-8), advancing i.
uint32_t next_code_point(std::string_view s, size_t& i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (i + n > s.size()) n = static_cast<int>(s.size() - i);
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the others to U+0100...
struct ByteMap {
  std::array<std::string, 256> to_char;  // byte -> UTF-8 of its symbol
  std::unordered_map<uint32_t, unsigned char> to_byte;
  ByteMap() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = keep ? static_cast<uint32_t>(b) : next++;
      append_utf8(to_char[b], cp);
      to_byte[cp] = static_cast<unsigned char>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// Oniguruma's \s is Unicode White_Space; ICU's \s leaves out U+000B and U+0085.
std::string rewrite_pattern(const std::string& p) {
  std::string out;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      if (p[i + 1] == 's') {
        out += "\\p{White_Space}";
      } else if (p[i + 1] == 'S') {
        out += "\\P{White_Space}";
      } else {
        out += p.substr(i, 2);
      }
      ++i;
    } else {
      out.push_back(p[i]);
    }
  }
  return out;
}

struct Regex {
  std::unique_ptr<icu::RegexPattern> pattern;
  bool remove = false;  // Split behaviour "Removed" (else "Isolated")
};

std::unique_ptr<icu::RegexPattern> compile_regex(const std::string& source, bool literal, const std::string& file,
                                                 const std::string& field) {
  core::check_utf8(source, Where{file, 0, field});
  UErrorCode status = U_ZERO_ERROR;
  UParseError perr{};
  const std::string rewritten = literal ? source : rewrite_pattern(source);
  std::unique_ptr<icu::RegexPattern> p(icu::RegexPattern::compile(
      icu::UnicodeString::fromUTF8(rewritten), literal ? UREGEX_LITERAL : 0, perr, status));
  if (U_FAILURE(status) || !p)
    fail(Where{file, 0, field}, "regex not accepted by ICU ({} at offset {}): {}", u_errorName(status), perr.offset,
         source);
  return p;
}

// Splits each piece on the regex's matches: matches and the text between them become pieces
// (Isolated), or only the text between them (Removed). Empty pieces are dropped.
std::vector<std::string> split_pieces(const std::vector<std::string>& pieces, const Regex& re) {
  std::vector<std::string> out;
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> m(re.pattern->matcher(status));
  if (U_FAILURE(status)) fail("ICU regex matcher: {}", u_errorName(status));
  for (const std::string& piece : pieces) {
    status = U_ZERO_ERROR;
    UText* ut = utext_openUTF8(nullptr, piece.data(), static_cast<int64_t>(piece.size()), &status);
    if (U_FAILURE(status)) fail("ICU utext_openUTF8: {}", u_errorName(status));
    m->reset(ut);
    m->setTimeLimit(5000, status);  // ~5 s per match: a hostile pattern fails instead of hanging
    int64_t last = 0;
    while (m->find(status) && U_SUCCESS(status)) {
      const int64_t s = m->start64(status), e = m->end64(status);
      if (U_FAILURE(status)) break;
      if (s > last) out.push_back(piece.substr(last, s - last));
      if (e > s && !re.remove) out.push_back(piece.substr(s, e - s));
      last = e;
      if (e == s) {
        // An empty match: tokenizers skips it; ICU advances by itself on the next find().
      }
    }
    utext_close(ut);
    if (U_FAILURE(status)) fail("ICU regex match failed: {}", u_errorName(status));
    if (last < static_cast<int64_t>(piece.size())) out.push_back(piece.substr(last));
  }
  return out;
}

}  // namespace

struct BpeTokenizer::Impl {
  std::string file;
  std::unordered_map<std::string, int64_t> vocab;
  std::vector<std::string> id_to_token;
  std::vector<std::string> id_bytes;
  std::unordered_map<uint64_t, std::pair<int64_t, int64_t>> merges;  // (left id, right id) -> (rank, merged id)
  bool ignore_merges = false;
  const icu::Normalizer2* normalizer = nullptr;
  // Pre-tokenizer steps in order; a ByteLevel step is a Split with the GPT-2 regex (when
  // use_regex) plus the prefix-space rule, the byte mapping is applied at the end.
  struct Step {
    Regex regex;
    bool has_regex = false;
    bool byte_level = false;
    bool add_prefix_space = false;
  };
  std::vector<Step> steps;
  std::vector<BpeAddedToken> added;
  AddedTokenSplitter splitter;
  std::vector<int64_t> prefix, suffix;
  bool template_post = false;
  int64_t vocab_size = 0;

  static uint64_t key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }

  void bpe(const std::string& word, std::vector<int64_t>& out) const;
};

namespace {

const json& need(const json& obj, const char* key, const std::string& file, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) fail(Where{file, 0, path.empty() ? std::string(key) : path + "." + key}, "missing");
  return *it;
}

std::string type_of(const json& obj, const std::string& file, const std::string& path) {
  if (!obj.is_object()) fail(Where{file, 0, path}, "expected an object, got {}", obj.dump().substr(0, 80));
  const json& t = need(obj, "type", file, path);
  if (!t.is_string()) fail(Where{file, 0, path + ".type"}, "expected a string");
  return t.get<std::string>();
}

bool opt_bool(const json& obj, const char* key, bool fallback, const std::string& file, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(Where{file, 0, path + "." + key}, "expected true or false, got {}", it->dump());
  return it->get<bool>();
}

int64_t token_id(const json& v, const std::string& file, const std::string& field) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxId)
    fail(Where{file, 0, field}, "expected a token id in [0, {}], got {}", kMaxId, v.dump().substr(0, 80));
  return v.get<int64_t>();
}

void parse_normalizer(BpeTokenizer::Impl& m, const json& n, const std::string& path) {
  if (n.is_null()) return;
  const std::string type = type_of(n, m.file, path);
  if (type == "Sequence") {
    const json& list = need(n, "normalizers", m.file, path);
    if (!list.is_array()) fail(Where{m.file, 0, path + ".normalizers"}, "expected a list");
    for (size_t i = 0; i < list.size(); ++i) parse_normalizer(m, list[i], path + ".normalizers[" + std::to_string(i) + "]");
    return;
  }
  if (m.normalizer) fail(Where{m.file, 0, path}, "more than one Unicode normalization form is not supported");
  UErrorCode status = U_ZERO_ERROR;
  if (type == "NFC") m.normalizer = icu::Normalizer2::getNFCInstance(status);
  else if (type == "NFD") m.normalizer = icu::Normalizer2::getNFDInstance(status);
  else if (type == "NFKC") m.normalizer = icu::Normalizer2::getNFKCInstance(status);
  else if (type == "NFKD") m.normalizer = icu::Normalizer2::getNFKDInstance(status);
  else fail(Where{m.file, 0, path + ".type"}, "normalizer '{}' is not supported (NFC, NFD, NFKC, NFKD, Sequence)", type);
  if (U_FAILURE(status)) fail(Where{m.file, 0, path}, "ICU normalizer: {}", u_errorName(status));
}

void parse_pre_tokenizer(BpeTokenizer::Impl& m, const json& p, const std::string& path) {
  if (p.is_null()) return;
  const std::string type = type_of(p, m.file, path);
  if (type == "Sequence") {
    const json& list = need(p, "pretokenizers", m.file, path);
    if (!list.is_array()) fail(Where{m.file, 0, path + ".pretokenizers"}, "expected a list");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(m, list[i], path + ".pretokenizers[" + std::to_string(i) + "]");
    return;
  }
  BpeTokenizer::Impl::Step step;
  if (type == "ByteLevel") {
    step.byte_level = true;
    step.add_prefix_space = opt_bool(p, "add_prefix_space", true, m.file, path);
    if (opt_bool(p, "use_regex", true, m.file, path)) {
      step.has_regex = true;
      step.regex.pattern = compile_regex(kGpt2Pattern, false, m.file, path);
    }
  } else if (type == "Split") {
    const json& pat = need(p, "pattern", m.file, path);
    bool literal = false;
    std::string source;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      source = pat["Regex"].get<std::string>();
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      source = pat["String"].get<std::string>();
      literal = true;
    } else {
      fail(Where{m.file, 0, path + ".pattern"}, "expected {{\"Regex\": ...}} or {{\"String\": ...}}");
    }
    if (source.empty()) fail(Where{m.file, 0, path + ".pattern"}, "empty pattern");
    const json& behavior = need(p, "behavior", m.file, path);
    if (!behavior.is_string()) fail(Where{m.file, 0, path + ".behavior"}, "expected a string");
    if (behavior == "Removed") step.regex.remove = true;
    else if (behavior != "Isolated")
      fail(Where{m.file, 0, path + ".behavior"}, "Split behavior '{}' is not supported (Isolated, Removed)",
           behavior.get<std::string>());
    if (opt_bool(p, "invert", false, m.file, path)) fail(Where{m.file, 0, path + ".invert"}, "inverted Split is not supported");
    step.has_regex = true;
    step.regex.pattern = compile_regex(source, literal, m.file, path + ".pattern");
  } else {
    fail(Where{m.file, 0, path + ".type"}, "pre-tokenizer '{}' is not supported (ByteLevel, Split, Sequence)", type);
  }
  m.steps.push_back(std::move(step));
}

bool has_byte_level_decoder(const json& d, const std::string& file, const std::string& path) {
  if (d.is_null()) return false;
  const std::string type = type_of(d, file, path);
  if (type == "ByteLevel") return true;
  if (type == "Sequence") {
    const json& list = need(d, "decoders", file, path);
    if (!list.is_array()) fail(Where{file, 0, path + ".decoders"}, "expected a list");
    bool any = false;
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string sub = path + ".decoders[" + std::to_string(i) + "]";
      if (has_byte_level_decoder(list[i], file, sub)) any = true;
      else fail(Where{file, 0, sub + ".type"}, "decoder '{}' is not supported beside ByteLevel", type_of(list[i], file, sub));
    }
    return any;
  }
  fail(Where{file, 0, path + ".type"}, "decoder '{}' is not supported (ByteLevel)", type);
}

void parse_post_processor(BpeTokenizer::Impl& m, const json& p, const std::string& path) {
  if (p.is_null()) return;
  const std::string type = type_of(p, m.file, path);
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    const json& list = need(p, "processors", m.file, path);
    if (!list.is_array()) fail(Where{m.file, 0, path + ".processors"}, "expected a list");
    for (size_t i = 0; i < list.size(); ++i) parse_post_processor(m, list[i], path + ".processors[" + std::to_string(i) + "]");
    return;
  }
  if (type != "TemplateProcessing")
    fail(Where{m.file, 0, path + ".type"}, "post_processor '{}' is not supported (TemplateProcessing, ByteLevel)", type);
  if (m.template_post) fail(Where{m.file, 0, path}, "more than one TemplateProcessing");
  m.template_post = true;
  const json& single = need(p, "single", m.file, path);
  const json& specials = need(p, "special_tokens", m.file, path);
  if (!single.is_array()) fail(Where{m.file, 0, path + ".single"}, "expected a list");
  if (!specials.is_object()) fail(Where{m.file, 0, path + ".special_tokens"}, "expected an object");
  bool seen_a = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string f = path + ".single[" + std::to_string(i) + "]";
    const json& e = single[i];
    if (e.is_object() && e.contains("Sequence")) {
      const json& s = e["Sequence"];
      if (!s.is_object() || s.value("id", json()) != "A") fail(Where{m.file, 0, f}, "expected the sequence A");
      if (seen_a) fail(Where{m.file, 0, f}, "sequence A appears twice");
      seen_a = true;
    } else if (e.is_object() && e.contains("SpecialToken") && e["SpecialToken"].is_object() &&
               e["SpecialToken"].contains("id") && e["SpecialToken"]["id"].is_string()) {
      const std::string name = e["SpecialToken"]["id"].get<std::string>();
      auto st = specials.find(name);
      if (st == specials.end() || !st->is_object() || !st->contains("ids") || !(*st)["ids"].is_array())
        fail(Where{m.file, 0, path + ".special_tokens." + name}, "missing or without \"ids\"");
      for (const json& id : (*st)["ids"]) {
        int64_t v = token_id(id, m.file, path + ".special_tokens." + name + ".ids");
        (seen_a ? m.suffix : m.prefix).push_back(v);
      }
    } else {
      fail(Where{m.file, 0, f}, "expected {{\"SpecialToken\": ...}} or {{\"Sequence\": ...}}");
    }
  }
  if (!seen_a) fail(Where{m.file, 0, path + ".single"}, "has no sequence A");
}

}  // namespace

BpeTokenizer BpeTokenizer::from_json(std::string_view json_bytes, const std::string& file) {
  auto m = std::make_shared<Impl>();
  m->file = file;
  json root;
  try {
    root = json::parse(json_bytes);
  } catch (const json::exception& e) {
    fail(Where{file}, "not valid JSON: {}", e.what());
  }
  if (!root.is_object()) fail(Where{file}, "expected a JSON object");

  const json& model = need(root, "model", file, "");
  std::string model_type = model.is_object() && !model.contains("type") ? "BPE" : type_of(model, file, "model");
  if (model_type != "BPE")
    fail(Where{file, 0, "model.type"}, "model type '{}' is not supported (byte-level BPE only)", model_type);
  if (opt_bool(model, "byte_fallback", false, file, "model"))
    fail(Where{file, 0, "model.byte_fallback"}, "byte_fallback BPE is not supported (use tokenizer.model)");
  for (const char* k : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(k);
    if (it != model.end() && !it->is_null()) fail(Where{file, 0, std::string("model.") + k}, "is not supported");
  }
  m->ignore_merges = opt_bool(model, "ignore_merges", false, file, "model");

  const json& vocab = need(model, "vocab", file, "model");
  if (!vocab.is_object()) fail(Where{file, 0, "model.vocab"}, "expected an object token -> id");
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string field = "model.vocab";
    core::check_utf8(it.key(), Where{file, 0, field});
    int64_t id = token_id(it.value(), file, field + "." + it.key());
    m->vocab[it.key()] = id;
    max_id = std::max(max_id, id);
  }

  const json& added = root.contains("added_tokens") ? root["added_tokens"] : json::array();
  if (!added.is_array() && !added.is_null()) fail(Where{file, 0, "added_tokens"}, "expected a list");
  std::vector<AddedToken> split_tokens;
  if (added.is_array()) {
    for (size_t i = 0; i < added.size(); ++i) {
      const std::string f = "added_tokens[" + std::to_string(i) + "]";
      const json& a = added[i];
      if (!a.is_object()) fail(Where{file, 0, f}, "expected an object");
      BpeAddedToken t;
      t.id = token_id(need(a, "id", file, f), file, f + ".id");
      const json& c = need(a, "content", file, f);
      if (!c.is_string() || c.get<std::string>().empty()) fail(Where{file, 0, f + ".content"}, "expected a non-empty string");
      t.content = c.get<std::string>();
      core::check_utf8(t.content, Where{file, 0, f + ".content"});
      t.special = opt_bool(a, "special", false, file, f);
      t.lstrip = opt_bool(a, "lstrip", false, file, f);
      t.rstrip = opt_bool(a, "rstrip", false, file, f);
      if (opt_bool(a, "single_word", false, file, f)) fail(Where{file, 0, f + ".single_word"}, "single_word added tokens are not supported");
      max_id = std::max(max_id, t.id);
      split_tokens.push_back(AddedToken{t.content, t.id, t.lstrip, t.rstrip});
      m->added.push_back(std::move(t));
    }
  }
  m->splitter = AddedTokenSplitter(std::move(split_tokens));

  m->vocab_size = max_id + 1;
  m->id_to_token.assign(m->vocab_size, {});
  m->id_bytes.assign(m->vocab_size, {});
  const ByteMap& bm = byte_map();
  for (const auto& [tok, id] : m->vocab) {
    if (!m->id_to_token[id].empty()) fail(Where{file, 0, "model.vocab." + tok}, "id {} is used twice", id);
    m->id_to_token[id] = tok;
    std::string bytes;
    for (size_t i = 0; i < tok.size();) {
      const size_t start = i;
      uint32_t cp = next_code_point(tok, i);
      auto b = bm.to_byte.find(cp);
      if (b != bm.to_byte.end()) bytes.push_back(static_cast<char>(b->second));
      else bytes.append(tok, start, i - start);
    }
    m->id_bytes[id] = std::move(bytes);
  }
  for (const auto& t : m->added) {
    m->id_to_token[t.id] = t.content;
    m->id_bytes[t.id] = t.content;
  }

  const json& merges = need(model, "merges", file, "model");
  if (!merges.is_array()) fail(Where{file, 0, "model.merges"}, "expected a list");
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string f = "model.merges[" + std::to_string(i) + "]";
    const json& e = merges[i];
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos)
        fail(Where{file, 0, f}, "expected \"left right\", got {}", e.dump().substr(0, 80));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail(Where{file, 0, f}, "expected \"left right\" or [left, right], got {}", e.dump().substr(0, 80));
    }
    auto ia = m->vocab.find(a), ib = m->vocab.find(b), im = m->vocab.find(a + b);
    if (ia == m->vocab.end() || ib == m->vocab.end() || im == m->vocab.end())
      fail(Where{file, 0, f}, "merge of tokens not in the vocabulary: {}", e.dump().substr(0, 80));
    m->merges.emplace(Impl::key(ia->second, ib->second), std::make_pair(static_cast<int64_t>(i), im->second));
  }

  parse_normalizer(*m, root.value("normalizer", json()), "normalizer");
  parse_pre_tokenizer(*m, root.value("pre_tokenizer", json()), "pre_tokenizer");
  if (std::none_of(m->steps.begin(), m->steps.end(), [](const Impl::Step& s) { return s.byte_level; }))
    fail(Where{file, 0, "pre_tokenizer"}, "has no ByteLevel step: only byte-level BPE is supported");
  if (!has_byte_level_decoder(root.value("decoder", json()), file, "decoder"))
    fail(Where{file, 0, "decoder"}, "expected a ByteLevel decoder (byte-level BPE)");
  parse_post_processor(*m, root.value("post_processor", json()), "post_processor");
  for (int64_t id : m->prefix)
    if (id >= m->vocab_size) fail(Where{file, 0, "post_processor"}, "token id {} is not in the vocabulary", id);
  for (int64_t id : m->suffix)
    if (id >= m->vocab_size) fail(Where{file, 0, "post_processor"}, "token id {} is not in the vocabulary", id);
  // Every byte symbol must be a token, so that no text is unknown.
  for (int b = 0; b < 256; ++b)
    if (!m->vocab.count(bm.to_char[b]))
      fail(Where{file, 0, "model.vocab"}, "byte-level vocabulary lacks the symbol of byte 0x{:02X} ('{}')", b, bm.to_char[b]);

  BpeTokenizer t;
  t.impl_ = std::move(m);
  return t;
}

BpeTokenizer BpeTokenizer::load(const std::string& path) { return from_json(core::read_file(path), path); }

// BPE of one pre-tokenized word (already byte-mapped): start from its characters, repeatedly
// apply the lowest-ranked merge (leftmost on ties), like tokenizers' Word::merge_all.
void BpeTokenizer::Impl::bpe(const std::string& word, std::vector<int64_t>& out) const {
  if (ignore_merges) {
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Sym {
    int64_t id;
    int prev, next;
  };
  std::vector<Sym> syms;
  for (size_t i = 0; i < word.size();) {
    const size_t start = i;
    next_code_point(word, i);
    auto it = vocab.find(word.substr(start, i - start));
    // Every byte symbol is in the vocabulary (checked at load), and words are byte-mapped.
    if (it == vocab.end()) fail(Where{file}, "internal: symbol not in the byte-level vocabulary");
    const int n = static_cast<int>(syms.size());
    syms.push_back({it->second, n - 1, n + 1});
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  struct Cand {
    int64_t rank;
    int pos;
    int64_t left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int pos) {
    if (pos < 0 || syms[pos].next < 0) return;
    const int nx = syms[pos].next;
    auto it = merges.find(key(syms[pos].id, syms[nx].id));
    if (it != merges.end()) heap.push({it->second.first, pos, syms[pos].id, syms[nx].id, it->second.second});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& s = syms[c.pos];
    if (s.id != c.left || s.next < 0 || syms[s.next].id != c.right) continue;  // stale
    const int nx = s.next;
    s.id = c.merged;
    s.next = syms[nx].next;
    if (s.next >= 0) syms[s.next].prev = c.pos;
    syms[nx].id = -1;  // dead
    push(s.prev);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  core::check_utf8(text, Where{"", 0, "text"});
  const Impl& m = *impl_;
  std::vector<int64_t> ids;
  const ByteMap& bm = byte_map();
  for (const TextChunk& chunk : m.splitter.split(text)) {
    if (chunk.token >= 0) {
      ids.push_back(m.splitter.tokens()[chunk.token].id);
      continue;
    }
    std::string normalized(chunk.text);
    if (m.normalizer) {
      UErrorCode status = U_ZERO_ERROR;
      icu::UnicodeString u = m.normalizer->normalize(icu::UnicodeString::fromUTF8(normalized), status);
      if (U_FAILURE(status)) fail("ICU normalization failed: {}", u_errorName(status));
      normalized.clear();
      u.toUTF8String(normalized);
    }
    std::vector<std::string> pieces{normalized};
    for (const Impl::Step& step : m.steps) {
      if (step.byte_level && step.add_prefix_space)
        for (auto& p : pieces)
          if (!p.empty() && p[0] != ' ') p.insert(p.begin(), ' ');
      if (step.has_regex) pieces = split_pieces(pieces, step.regex);
    }
    for (const std::string& p : pieces) {
      std::string mapped;
      mapped.reserve(p.size() * 2);
      for (unsigned char c : p) mapped += bm.to_char[c];
      m.bpe(mapped, ids);
    }
  }
  return ids;
}

int64_t BpeTokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int64_t> BpeTokenizer::token_to_id(std::string_view token) const {
  for (const auto& a : impl_->added)
    if (a.content == token) return a.id;
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeTokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= impl_->vocab_size)
    fail(Where{impl_->file, 0, "token id"}, "token id {} is outside the vocabulary [0, {})", id, impl_->vocab_size);
  return impl_->id_to_token[id];
}

std::string BpeTokenizer::token_bytes(int64_t id) const {
  id_to_token(id);
  return impl_->id_bytes[id];
}

const std::vector<BpeAddedToken>& BpeTokenizer::added_tokens() const { return impl_->added; }
const std::vector<int64_t>& BpeTokenizer::post_prefix() const { return impl_->prefix; }
const std::vector<int64_t>& BpeTokenizer::post_suffix() const { return impl_->suffix; }
bool BpeTokenizer::has_template_post_processor() const { return impl_->template_post; }

bool is_sentencepiece_style_tokenizer_json(std::string_view json_bytes) {
  json root = json::parse(json_bytes, nullptr, false);
  if (!root.is_object()) return false;
  const json model = root.value("model", json::object());
  if (model.is_object() && model.value("byte_fallback", json(false)) == json(true)) return true;
  auto has_type = [](const json& j, const std::string& type, const char* list_key, auto& self) -> bool {
    if (!j.is_object()) return false;
    if (j.value("type", json()) == json(type)) return true;
    auto it = j.find(list_key);
    if (it != j.end() && it->is_array())
      for (const auto& e : *it)
        if (self(e, type, list_key, self)) return true;
    return false;
  };
  return has_type(root.value("pre_tokenizer", json()), "Metaspace", "pretokenizers", has_type) ||
         has_type(root.value("decoder", json()), "Metaspace", "decoders", has_type) ||
         has_type(root.value("decoder", json()), "ByteFallback", "decoders", has_type) ||
         has_type(root.value("normalizer", json()), "Replace", "normalizers", has_type) ||
         has_type(root.value("normalizer", json()), "Prepend", "normalizers", has_type);
}

}  // namespace loom::text
