// loom::text::WordPieceTokenizer — Hugging Face's slow BertTokenizer (transformers 4.46.3,
// models/bert/tokenization_bert.py): BasicTokenizer (clean text, CJK characters split, lower-case
// and accent stripping, punctuation split) + greedy longest-match WordPiece with "##"
// continuations, "[CLS] x [SEP]". Unicode properties, case mapping and NFD come from ICU.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace loom::text {

/// A BERT WordPiece tokenizer read from a model directory's vocab.txt (one token per line, id =
/// line number) and tokenizer_config.json (do_lower_case, strip_accents, tokenize_chinese_chars,
/// special tokens; all optional with BertTokenizer's defaults).
class WordPieceTokenizer {
 public:
  /// Loads `dir`/vocab.txt and, if present, `dir`/tokenizer_config.json. Throws loom::Error
  /// naming the file when vocab.txt is missing, empty, not UTF-8, or lacks [UNK]/[CLS]/[SEP]/
  /// [PAD] (or the tokens tokenizer_config.json names instead).
  static WordPieceTokenizer load(const std::string& dir);

  /// The WordPiece tokens of `text` without [CLS]/[SEP] (BertTokenizer.tokenize). Invalid
  /// UTF-8 bytes are replaced by U+FFFD first (which clean_text then drops).
  std::vector<std::string> tokenize(std::string_view text) const;
  /// Token ids of `text`: [CLS] tokens... [SEP], truncated to at most `max_length` ids in all
  /// (the last one stays [SEP]) when max_length > 0 (HF truncation=True, longest_first).
  std::vector<int64_t> encode(std::string_view text, int64_t max_length = 0) const;
  /// Number of WordPiece tokens of `text` without [CLS]/[SEP] (= tokenize(text).size()).
  int64_t count_tokens(std::string_view text) const;

  /// Id of `token`, or unk_id() when it is not in the vocabulary.
  int64_t id_of(const std::string& token) const;
  /// Vocabulary size V.
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  bool do_lower_case() const { return do_lower_case_; }

 private:
  std::vector<std::string> basic_tokenize(std::string_view text) const;
  void wordpiece(const std::string& word, std::vector<std::string>& out) const;

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int64_t> ids_;
  int64_t cls_id_ = 0, sep_id_ = 0, pad_id_ = 0, unk_id_ = 0;
  std::string unk_token_ = "[UNK]";
  bool do_lower_case_ = true;
  int strip_accents_ = -1;  // -1 = null (follow do_lower_case), 0 = false, 1 = true
  bool tokenize_chinese_chars_ = true;
  std::vector<std::string> never_split_;  // special tokens kept whole
  int64_t max_input_chars_per_word_ = 100;
};

/// True for a code point BERT treats as a CJK ideograph (CJK Unified Ideographs and their
/// extensions A-E, compatibility ideographs; BasicTokenizer._is_chinese_char).
bool is_cjk_ideograph(uint32_t cp);

}  // namespace loom::text
