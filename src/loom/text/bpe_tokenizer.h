// loom::text::BpeTokenizer — Hugging Face tokenizer.json (the `tokenizers` library's format)
// for byte-level BPE models: GPT-2, Llama 3, Qwen2. Reproduces tokenizers' encode pipeline:
// added tokens split off the raw text (leftmost-longest), normalizer (NFC/NFD/NFKC/NFKD or
// none), pre-tokenizer (Split with a regex, ByteLevel with or without the GPT-2 regex, in a
// Sequence), byte-to-unicode mapping (GPT-2 bytes_to_unicode), BPE merges by rank (lowest rank
// first, leftmost on ties, as tokenizers' Word::merge_all), ignore_merges. Torch-free (the fuzz
// build compiles it); regexes and normalization use ICU.
// Unicode classes: \p{L}, \p{N} are ICU's (the same Unicode properties oniguruma uses); \s and
// \S are rewritten to \p{White_Space} / \P{White_Space} (oniguruma's \s, wider than ICU's).
// Not supported (a loom::Error naming the field): other model types (WordPiece, Unigram,
// WordLevel), byte_fallback, dropout, continuing_subword_prefix / end_of_word_suffix,
// Metaspace/Replace/Prepend steps, Split behaviours other than Isolated/Removed, inverted
// splits, single_word added tokens, post-processors other than TemplateProcessing / ByteLevel.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

/// One entry of tokenizer.json's "added_tokens".
struct BpeAddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;  ///< dropped by decode(skip_special_tokens=True)
  bool lstrip = false;   ///< eats whitespace on its left when matched
  bool rstrip = false;   ///< eats whitespace on its right when matched
};

/// A parsed tokenizer.json (byte-level BPE). Thread-safe after construction.
class BpeTokenizer {
 public:
  /// Parses the bytes of a tokenizer.json; `file` names it in errors. Throws loom::Error naming
  /// the file and JSON field for invalid JSON, a missing or mistyped field, an unsupported
  /// component (see the file comment), an id out of range, a merge of unknown tokens, an
  /// invalid regex, or a byte-level vocabulary missing one of the 256 byte symbols.
  static BpeTokenizer from_json(std::string_view json_bytes, const std::string& file);
  /// Reads and parses the tokenizer.json at path (errors as from_json).
  static BpeTokenizer load(const std::string& path);

  /// Token ids of text (tokenizers' encode with add_special_tokens=False: no post-processor).
  /// text must be valid UTF-8 (throws loom::Error otherwise).
  std::vector<int64_t> encode(std::string_view text) const;

  /// V: largest id (vocabulary or added token) + 1.
  int64_t vocab_size() const;
  /// Id of a token string (vocabulary or added token), or nullopt.
  std::optional<int64_t> token_to_id(std::string_view token) const;
  /// Token string of id ("Ġthe"); "" for an id no token has. Throws loom::Error out of range.
  const std::string& id_to_token(int64_t id) const;
  /// The bytes id decodes to: the ByteLevel decoder's inverse byte mapping for vocabulary
  /// tokens, the content for added tokens ("" for an id no token has).
  std::string token_bytes(int64_t id) const;
  const std::vector<BpeAddedToken>& added_tokens() const;
  /// Ids the post_processor puts before / after a single sequence (TemplateProcessing
  /// "single"; empty for none / ByteLevel).
  const std::vector<int64_t>& post_prefix() const;
  const std::vector<int64_t>& post_suffix() const;
  /// True when the post_processor was present and understood (TemplateProcessing).
  bool has_template_post_processor() const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

/// True when the parsed tokenizer.json describes a SentencePiece-style pipeline (BPE with
/// byte_fallback, or Metaspace pre-tokenizer/decoder, as Gemma's and Llama 2's tokenizer.json)
/// rather than byte-level BPE; CausalTokenizer then uses tokenizer.model, which it was
/// converted from. Never throws (false for anything it cannot tell).
bool is_sentencepiece_style_tokenizer_json(std::string_view json_bytes);

}  // namespace loom::text
