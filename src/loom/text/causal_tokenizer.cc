#include "loom/text/causal_tokenizer.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"
#include "loom/text/bpe_tokenizer.h"
#include "loom/text/sentencepiece.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {

namespace {

constexpr int64_t kMaxAddedId = 50'000'000;  // guards against hostile ids in tokenizer_config.json
const char kSpaceSymbol[] = "\xE2\x96\x81";   // SentencePiece's "▁"
const char kReplacement[] = "\xEF\xBF\xBD";   // U+FFFD

std::string replace_space_symbol(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 3, kSpaceSymbol) == 0) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// "<0xAB>" -> 0xAB, else -1 (SentencePiece byte-fallback pieces always have this form).
int byte_piece_value(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    char c = p[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

struct CausalTokenizer::Impl {
  std::string dir;
  std::string kind;
  nlohmann::json config = nlohmann::json::object();
  std::string config_path;
  std::shared_ptr<SentencePiece> sp;
  std::shared_ptr<BpeTokenizer> bpe;
  int64_t vocab_size = 0;
  std::vector<CausalTokenizer::Surface> surfaces;
  std::vector<std::string> tokens;  // token string per id
  std::unordered_map<std::string, int64_t> added_ids;
  AddedTokenSplitter splitter;  // SentencePiece only (BpeTokenizer matches its own)
  std::string bos, eos, pad, unk;
  std::vector<std::string> additional;
  bool add_bos = false, add_eos = false;
  bool strip_leading_space = false;
  bool per_byte = true;
  bool clean_up = false;
  std::vector<int64_t> prefix_ids, suffix_ids;  // added around the text by add_special_tokens

  std::optional<int64_t> lookup(std::string_view token) const {
    if (token.empty()) return std::nullopt;
    auto it = added_ids.find(std::string(token));
    if (it != added_ids.end()) return it->second;
    if (sp) {
      int id = sp->piece_to_id(token);
      if (sp->is_unknown(id) && sp->id_to_piece(id) != token) return std::nullopt;
      return id;
    }
    if (bpe) return bpe->token_to_id(token);
    return std::nullopt;
  }
};

namespace {

// The special-token strings of tokenizer_config.json, falling back to special_tokens_map.json.
struct SpecialStrings {
  std::string bos, eos, unk, pad, sep, cls, mask;
  std::vector<std::string> additional;
};

SpecialStrings read_special_strings(const nlohmann::json& cfg, const std::string& cfg_path,
                                    const std::string& dir) {
  const std::string map_path = dir + "/special_tokens_map.json";
  nlohmann::json map = nlohmann::json::object();
  if (core::file_exists(map_path)) {
    map = core::read_json(map_path);
    if (!map.is_object()) fail(Where{map_path}, "expected a JSON object");
  }
  auto get = [&](const char* key) {
    std::string v = special_token_string(cfg, key, "", cfg_path);
    return v.empty() ? special_token_string(map, key, "", map_path) : v;
  };
  SpecialStrings s{get("bos_token"), get("eos_token"), get("unk_token"), get("pad_token"),
                   get("sep_token"), get("cls_token"), get("mask_token"), {}};
  for (const auto& [src, path] : {std::pair<const nlohmann::json*, const std::string*>{&cfg, &cfg_path},
                                  {&map, &map_path}}) {
    auto it = src->find("additional_special_tokens");
    if (it == src->end() || it->is_null()) continue;
    if (!it->is_array()) fail(Where{*path, 0, "additional_special_tokens"}, "expected a list, got {}", it->dump());
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& e = (*it)[i];
      std::string field = "additional_special_tokens[" + std::to_string(i) + "]";
      if (e.is_string()) {
        s.additional.push_back(e.get<std::string>());
      } else if (e.is_object() && e.contains("content") && e["content"].is_string()) {
        s.additional.push_back(e["content"].get<std::string>());
      } else {
        fail(Where{*path, 0, field}, "expected a string or {{\"content\": ...}}, got {}", e.dump());
      }
    }
    break;
  }
  return s;
}

// added_tokens_decoder of tokenizer_config.json: {"<id>": {"content": ..., "lstrip": ...,
// "rstrip": ..., "special": ...}}.
std::vector<std::pair<AddedToken, bool>> read_added_tokens_decoder(const nlohmann::json& cfg,
                                                                   const std::string& cfg_path) {
  std::vector<std::pair<AddedToken, bool>> out;
  auto atd = cfg.find("added_tokens_decoder");
  if (atd == cfg.end() || atd->is_null()) return out;
  if (!atd->is_object()) fail(Where{cfg_path, 0, "added_tokens_decoder"}, "expected an object id -> token");
  for (auto it = atd->begin(); it != atd->end(); ++it) {
    const std::string field = "added_tokens_decoder." + it.key();
    const auto& v = it.value();
    if (!v.is_object()) fail(Where{cfg_path, 0, field}, "expected an object, got {}", v.dump());
    auto c = v.find("content");
    if (c == v.end() || !c->is_string() || c->get<std::string>().empty())
      fail(Where{cfg_path, 0, field + ".content"}, "expected a non-empty string");
    AddedToken t;
    t.content = c->get<std::string>();
    core::check_utf8(t.content, Where{cfg_path, 0, field + ".content"});
    size_t used = 0;
    try {
      t.id = std::stoll(it.key(), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != it.key().size() || t.id < 0 || t.id > kMaxAddedId)
      fail(Where{cfg_path, 0, field}, "key is not a token id in [0, {}]", kMaxAddedId);
    auto flag = [&](const char* k) {
      auto f = v.find(k);
      if (f == v.end() || f->is_null()) return false;
      if (!f->is_boolean()) fail(Where{cfg_path, 0, field + "." + k}, "expected true or false, got {}", f->dump());
      return f->get<bool>();
    };
    t.lstrip = flag("lstrip");
    t.rstrip = flag("rstrip");
    bool special = flag("special");
    out.emplace_back(std::move(t), special);
  }
  return out;
}

void load_sentencepiece(CausalTokenizer::Impl& m, const SpecialStrings& ss) {
  const std::string spm_path = m.dir + "/tokenizer.model";
  m.kind = "sentencepiece";
  m.sp = std::make_shared<SentencePiece>(spm_path);
  const int64_t n_sp = m.sp->size();
  m.per_byte = true;

  std::vector<std::pair<AddedToken, bool>> added = read_added_tokens_decoder(m.config, m.config_path);
  if (added.empty()) {
    // Older checkpoints: added_tokens.json, plus the special tokens that are SentencePiece pieces.
    const std::string at_path = m.dir + "/added_tokens.json";
    if (core::file_exists(at_path)) {
      nlohmann::json j = core::read_json(at_path);
      if (!j.is_object()) fail(Where{at_path}, "expected a JSON object token -> id");
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
            it.value().get<int64_t>() > kMaxAddedId)
          fail(Where{at_path, 0, it.key()}, "expected a token id in [0, {}], got {}", kMaxAddedId, it.value().dump());
        added.emplace_back(AddedToken{it.key(), it.value().get<int64_t>()}, false);
      }
    }
    std::vector<std::string> specials{ss.bos, ss.eos, ss.unk, ss.pad, ss.sep, ss.cls, ss.mask};
    specials.insert(specials.end(), ss.additional.begin(), ss.additional.end());
    for (const auto& s : specials) {
      if (s.empty()) continue;
      int id = m.sp->piece_to_id(s);
      if (m.sp->is_unknown(id) && m.sp->id_to_piece(id) != s) continue;
      added.emplace_back(AddedToken{s, id}, true);
    }
  }

  int64_t max_id = n_sp - 1;
  for (const auto& [t, special] : added) max_id = std::max(max_id, t.id);
  m.vocab_size = max_id + 1;
  m.surfaces.assign(m.vocab_size, {});
  m.tokens.assign(m.vocab_size, {});
  std::string space_piece;  // a vocabulary piece starting with "▁", to probe the decoder
  for (int64_t id = 0; id < n_sp; ++id) {
    std::string piece = m.sp->id_to_piece(static_cast<int>(id));
    auto& s = m.surfaces[id];
    int b = byte_piece_value(piece);
    if (b >= 0 && m.sp->piece_to_id(piece) == id) {
      s.bytes = std::string(1, static_cast<char>(b));
      s.byte = true;
    } else if (m.sp->is_unknown(static_cast<int>(id))) {
      s.bytes = " \xE2\x81\x87 ";  // SentencePiece's unknown surface " ⁇ "
    } else if (m.sp->is_control(static_cast<int>(id))) {
      s.bytes.clear();
    } else {
      s.bytes = replace_space_symbol(piece);
      if (space_piece.empty() && piece.size() > 3 && piece.compare(0, 3, kSpaceSymbol) == 0) space_piece = piece;
    }
    m.tokens[id] = std::move(piece);
  }
  // With add_dummy_prefix the SentencePiece decoder drops the leading space of the first piece.
  if (!space_piece.empty()) {
    std::string probe = m.sp->decode_pieces({space_piece});
    m.strip_leading_space = probe.empty() || probe[0] != ' ';
  }

  std::vector<AddedToken> split_tokens;
  for (auto& [t, special] : added) {
    auto& s = m.surfaces[t.id];
    s.bytes = t.content;
    s.added = true;
    s.byte = false;
    (void)special;  // the slow tokenizers skip all_special_ids only (set below), not every "special" entry
    m.tokens[t.id] = t.content;
    m.added_ids[t.content] = t.id;
    split_tokens.push_back(t);
  }
  m.splitter = AddedTokenSplitter(std::move(split_tokens));

  // decode(skip_special_tokens=True) of the slow tokenizers drops all_special_ids: the
  // special-token attributes (bos, eos, unk, sep, pad, cls, mask, additional).
  std::vector<std::string> specials{ss.bos, ss.eos, ss.unk, ss.pad, ss.sep, ss.cls, ss.mask};
  specials.insert(specials.end(), ss.additional.begin(), ss.additional.end());
  for (const auto& s : specials)
    if (auto id = m.lookup(s)) m.surfaces[*id].special = true;

  m.add_bos = config_bool(m.config, "add_bos_token", true, m.config_path);
  m.add_eos = config_bool(m.config, "add_eos_token", false, m.config_path);
}

// tokenizer.json (byte-level BPE). add_special_tokens follows its post_processor unless
// tokenizer_config.json sets add_bos_token / add_eos_token (LlamaTokenizerFast rebuilds the
// post-processor from them).
void load_bpe(CausalTokenizer::Impl& m, const SpecialStrings& ss, const std::string& bytes, const std::string& path) {
  m.kind = "bpe";
  m.bpe = std::make_shared<BpeTokenizer>(BpeTokenizer::from_json(bytes, path));
  m.per_byte = false;
  m.strip_leading_space = false;
  m.vocab_size = m.bpe->vocab_size();
  m.surfaces.assign(m.vocab_size, {});
  m.tokens.assign(m.vocab_size, {});
  for (int64_t id = 0; id < m.vocab_size; ++id) {
    m.tokens[id] = m.bpe->id_to_token(id);
    m.surfaces[id].bytes = m.bpe->token_bytes(id);
  }
  for (const BpeAddedToken& t : m.bpe->added_tokens()) {
    m.surfaces[t.id].added = true;
    m.surfaces[t.id].special = t.special;
    m.added_ids[t.content] = t.id;
  }
  // tokenizer_config.json's added tokens must be the ones tokenizer.json has.
  for (const auto& [t, special] : read_added_tokens_decoder(m.config, m.config_path)) {
    if (t.id >= m.vocab_size || m.tokens[t.id] != t.content)
      fail(Where{m.config_path, 0, "added_tokens_decoder." + std::to_string(t.id)},
           "token '{}' is not token {} of {}", t.content, t.id, path);
    if (special) m.surfaces[t.id].special = true;
  }
  std::vector<std::string> specials{ss.bos, ss.eos, ss.unk, ss.pad, ss.sep, ss.cls, ss.mask};
  specials.insert(specials.end(), ss.additional.begin(), ss.additional.end());
  for (const auto& s : specials)
    if (auto id = m.lookup(s)) m.surfaces[*id].special = true;
  m.prefix_ids = m.bpe->post_prefix();
  m.suffix_ids = m.bpe->post_suffix();
  m.add_bos = config_bool(m.config, "add_bos_token", !m.prefix_ids.empty(), m.config_path);
  m.add_eos = config_bool(m.config, "add_eos_token", !m.suffix_ids.empty(), m.config_path);
}

}  // namespace

CausalTokenizer CausalTokenizer::load(const std::string& model_dir) {
  auto m = std::make_shared<Impl>();
  m->dir = model_dir;
  if (!core::dir_exists(model_dir)) fail(Where{model_dir}, "model directory not found");
  m->config_path = model_dir + "/tokenizer_config.json";
  m->config = read_tokenizer_config(model_dir);
  SpecialStrings ss = read_special_strings(m->config, m->config_path, model_dir);
  m->bos = ss.bos;
  m->eos = ss.eos;
  m->pad = ss.pad;
  m->unk = ss.unk;
  m->additional = ss.additional;
  m->clean_up = config_bool(m->config, "clean_up_tokenization_spaces", false, m->config_path);

  const std::string json_path = model_dir + "/tokenizer.json";
  const std::string spm_path = model_dir + "/tokenizer.model";
  if (core::file_exists(json_path)) {
    std::string bytes = core::read_file(json_path);
    if (is_sentencepiece_style_tokenizer_json(bytes) && core::file_exists(spm_path)) load_sentencepiece(*m, ss);
    else load_bpe(*m, ss, bytes, json_path);
  } else if (core::file_exists(spm_path)) {
    load_sentencepiece(*m, ss);
  } else {
    fail(Where{model_dir}, "no tokenizer: expected tokenizer.json or tokenizer.model");
  }

  // Every named special token must exist (a bos_token the vocabulary lacks would silently
  // encode as text).
  const std::pair<const char*, const std::string*> named[] = {
      {"bos_token", &m->bos}, {"eos_token", &m->eos}, {"pad_token", &m->pad}, {"unk_token", &m->unk}};
  for (const auto& [key, value] : named)
    if (!value->empty() && !m->lookup(*value))
      fail(Where{m->config_path, 0, key}, "special token '{}' is not in the vocabulary", *value);
  // SentencePiece: add_bos_token / add_eos_token decide; tokenizer.json: its post_processor,
  // unless tokenizer_config.json sets them.
  const auto explicit_flag = [&](const char* key) {
    return m->kind == "sentencepiece" || (m->config.contains(key) && !m->config[key].is_null());
  };
  if (explicit_flag("add_bos_token")) {
    if (m->add_bos && m->bos.empty()) fail(Where{m->config_path, 0, "add_bos_token"}, "is true but there is no bos_token");
    m->prefix_ids.clear();
    if (m->add_bos) m->prefix_ids = {*m->lookup(m->bos)};
  }
  if (explicit_flag("add_eos_token")) {
    if (m->add_eos && m->eos.empty()) fail(Where{m->config_path, 0, "add_eos_token"}, "is true but there is no eos_token");
    m->suffix_ids.clear();
    if (m->add_eos) m->suffix_ids = {*m->lookup(m->eos)};
  }

  CausalTokenizer t;
  t.impl_ = std::move(m);
  return t;
}

std::vector<int64_t> CausalTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  core::check_tokenizer_text(text, Where{"", 0, "text"});
  const Impl& m = *impl_;
  std::vector<int64_t> ids;
  if (add_special_tokens) ids = m.prefix_ids;
  if (m.bpe) {
    std::vector<int64_t> body = m.bpe->encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
  } else {
    for (const TextChunk& c : m.splitter.split(text)) {
      if (c.token >= 0) {
        ids.push_back(m.splitter.tokens()[c.token].id);
      } else {
        for (int id : m.sp->encode_ids(c.text)) ids.push_back(id);
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), m.suffix_ids.begin(), m.suffix_ids.end());
  return ids;
}

void settle_utf8(std::string& pending, std::string& out, bool final, bool per_byte) {
  const size_t n = pending.size();
  size_t p = 0;
  while (p < n) {
    const unsigned char c = static_cast<unsigned char>(pending[p]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++p;
      continue;
    }
    // Unicode 15 table 3-7: lead byte -> continuation count and the first continuation's range.
    int need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c == 0xE0) {
      need = 2, lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      need = 2;
    } else if (c == 0xED) {
      need = 2, hi = 0x9F;
    } else if (c == 0xF0) {
      need = 3, lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      need = 3;
    } else if (c == 0xF4) {
      need = 3, hi = 0x8F;
    } else {
      out += kReplacement;
      ++p;
      continue;
    }
    int k = 1;
    bool ok = true;
    for (; k <= need; ++k) {
      if (p + k >= n) {
        if (!final) {
          pending.erase(0, p);
          return;
        }
        ok = false;
        break;
      }
      const unsigned char b = static_cast<unsigned char>(pending[p + k]);
      const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (b < l || b > h) {
        ok = false;
        break;
      }
    }
    if (ok) {
      out.append(pending, p, need + 1);
      p += need + 1;
    } else {
      out += kReplacement;
      p += per_byte ? 1 : k;
    }
  }
  pending.clear();
}

std::string CausalTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  StreamDecoder d(*this, skip_special_tokens);
  std::string out;
  for (int64_t id : ids) out += d.push(id);
  return out + d.finish();
}

StreamDecoder::StreamDecoder(const CausalTokenizer& tokenizer, bool skip_special_tokens)
    : tok_(&tokenizer), skip_special_(skip_special_tokens) {}

// Passes settled text on, through clean_up_tokenization when the tokenizer asks for it: the
// tail that could still begin one of its patterns waits for the next text (or finish()).
std::string StreamDecoder::emit(std::string settled, bool final) {
  if (!tok_->clean_up_tokenization_spaces()) return settled;
  held_ += settled;
  size_t keep = 0;
  if (!final) {
    static const char* kPatterns[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    for (const char* p : kPatterns) {
      const std::string_view pat(p);
      for (size_t n = std::min(pat.size() - 1, held_.size()); n > keep; --n)
        if (held_.compare(held_.size() - n, n, pat.substr(0, n)) == 0) {
          keep = n;
          break;
        }
    }
  }
  std::string out = clean_up_tokenization(held_.substr(0, held_.size() - keep));
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StreamDecoder::push(int64_t id) {
  const CausalTokenizer::Surface& s = tok_->surface(id);
  std::string out;
  if (skip_special_ && s.special) return out;
  if (s.added) {
    // An added token ends the SentencePiece segment (HF decodes the pieces between added
    // tokens separately), so held bytes are final.
    settle_utf8(pending_, out, true, tok_->replaces_per_byte());
    out += s.bytes;
    segment_start_ = true;
    return emit(std::move(out), false);
  }
  std::string_view bytes = s.bytes;
  if (segment_start_ && !s.byte && tok_->strips_segment_leading_space() && !bytes.empty() && bytes[0] == ' ')
    bytes.remove_prefix(1);
  if (!s.bytes.empty()) segment_start_ = false;
  pending_.append(bytes);
  settle_utf8(pending_, out, false, tok_->replaces_per_byte());
  return emit(std::move(out), false);
}

std::string StreamDecoder::finish() {
  std::string out;
  settle_utf8(pending_, out, true, tok_->replaces_per_byte());
  out = emit(std::move(out), true);
  reset();
  return out;
}

void StreamDecoder::reset() {
  pending_.clear();
  held_.clear();
  segment_start_ = true;
}

int64_t CausalTokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int64_t> CausalTokenizer::token_to_id(std::string_view token) const { return impl_->lookup(token); }

const CausalTokenizer::Surface& CausalTokenizer::surface(int64_t id) const {
  if (id < 0 || id >= impl_->vocab_size)
    fail(Where{impl_->dir, 0, "token id"}, "token id {} is outside the vocabulary [0, {})", id, impl_->vocab_size);
  return impl_->surfaces[id];
}

std::string CausalTokenizer::id_to_token(int64_t id) const {
  surface(id);
  return impl_->tokens[id];
}

bool CausalTokenizer::is_special(int64_t id) const { return surface(id).special; }
std::optional<int64_t> CausalTokenizer::bos_id() const { return impl_->lookup(impl_->bos); }
std::optional<int64_t> CausalTokenizer::eos_id() const { return impl_->lookup(impl_->eos); }
std::optional<int64_t> CausalTokenizer::pad_id() const { return impl_->lookup(impl_->pad); }
std::string CausalTokenizer::bos_token() const { return impl_->bos; }
std::string CausalTokenizer::eos_token() const { return impl_->eos; }
std::string CausalTokenizer::pad_token() const { return impl_->pad; }
std::string CausalTokenizer::unk_token() const { return impl_->unk; }
const std::vector<std::string>& CausalTokenizer::additional_special_tokens() const { return impl_->additional; }
bool CausalTokenizer::add_bos_token() const { return impl_->add_bos; }
bool CausalTokenizer::add_eos_token() const { return impl_->add_eos; }
const nlohmann::json& CausalTokenizer::config() const { return impl_->config; }
const std::string& CausalTokenizer::kind() const { return impl_->kind; }
const std::string& CausalTokenizer::dir() const { return impl_->dir; }
bool CausalTokenizer::strips_segment_leading_space() const { return impl_->strip_leading_space; }
bool CausalTokenizer::replaces_per_byte() const { return impl_->per_byte; }
bool CausalTokenizer::clean_up_tokenization_spaces() const { return impl_->clean_up; }

}  // namespace loom::text
