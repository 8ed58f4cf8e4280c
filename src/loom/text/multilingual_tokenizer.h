// loom::text::MultilingualSpmTokenizer — what Hugging Face's NllbTokenizer and M2M100Tokenizer
// (transformers 4.46.3, slow; both fairseq multilingual models) have in common: SentencePiece
// pieces with added special/language tokens split off first, one language token per side, the
// selected source/target language, and the layout [lang] pieces </s> (NLLB legacy_behaviour:
// pieces </s> [lang]) with the target language as forced_bos_token_id.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loom/text/sentencepiece.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {

/// Base of NllbTokenizer and M2M100Tokenizer; a subclass's constructor fills sp_, codes_,
/// code_ids_, splitter_ and the initial src_/tgt_, and maps pieces to ids (piece_id).
/// Language codes are matched with text::match_language_code, so every spelling it knows
/// ("zh", "zh-CN", "zho_Hans", "__zh__") selects the model's own code.
class MultilingualSpmTokenizer : public Seq2SeqTokenizer {
 public:
  /// Both codes are required and must name one of languages(); loom::Error (field "src" or
  /// "tgt") lists the valid codes otherwise.
  void set_languages(const std::string& src, const std::string& tgt) override;
  /// The model's language codes in id order ("eng_Latn", ... for NLLB; "af", ... for M2M100).
  std::vector<std::string> languages() const override { return codes_; }
  std::string source_language() const override { return src_; }
  std::string target_language() const override { return tgt_; }

  /// Throws loom::Error if no source language is selected.
  std::vector<int64_t> encode_source(std::string_view text) const override;
  std::vector<std::string> source_pieces(std::string_view text) const override;
  std::string source_text(const std::vector<std::string>& pieces) const override;
  /// Throws loom::Error if no target language is selected.
  std::vector<int64_t> encode_target(std::string_view text) const override;
  std::optional<int64_t> forced_bos_token_id() const override;

  /// Id of the language token for `code` (any spelling match_language_code accepts); throws
  /// loom::Error listing the valid codes if unknown.
  int64_t language_id(const std::string& code) const;

 protected:
  /// family: "NLLB" or "M2M100" (error messages); example: a valid flag pair for messages.
  MultilingualSpmTokenizer(std::string dir, std::string family, std::string example);

  /// Model id of a SentencePiece piece (the family's fairseq id mapping, unknown -> unk).
  virtual int64_t piece_id(const std::string& piece) const = 0;
  /// Pieces of text with the added tokens split off first (HF tokenize); appends their ids to
  /// *ids when ids is not null. Throws loom::Error on invalid UTF-8 or NUL.
  std::vector<std::string> tokenize(std::string_view text, std::vector<int64_t>* ids) const;
  /// The model code `code` means, or "" when none (config.json defaults that do not fit).
  std::string model_code(const std::string& code, const std::string& field) const;
  /// "valid codes (N): a, b, ..." for error messages.
  std::string valid_codes_message() const;

  std::string dir_;
  std::string family_, example_;
  std::unique_ptr<SentencePiece> sp_;
  std::vector<std::string> codes_;  // in id order
  std::unordered_map<std::string, int64_t> code_ids_;
  AddedTokenSplitter splitter_;
  bool language_after_eos_ = false;  // NLLB legacy_behaviour: pieces </s> [lang]
  bool clean_up_ = false;            // clean_up_tokenization_spaces
  std::string src_, tgt_;

 private:
  std::vector<int64_t> encode_with_language(std::string_view text, const std::string& code, const char* side) const;
};

}  // namespace loom::text
