// loom::text::NllbTokenizer — Hugging Face NllbTokenizer (transformers 4.46.3, slow) for
// NLLB-200 checkpoints: one SentencePiece BPE model (sentencepiece.bpe.model) with fairseq ids.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "loom/text/sentencepiece.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {

/// NllbTokenizer of a model directory holding sentencepiece.bpe.model and tokenizer_config.json
/// (language codes from its added_tokens_decoder, else added_tokens.json, else
/// additional_special_tokens of special_tokens_map.json / tokenizer_config.json).
/// Ids (fairseq): <s> <pad> </s> <unk> = 0..3; piece with SentencePiece id i -> i + 1 (spm
/// <unk> -> 3); language codes after the SentencePiece vocabulary; <mask> last.
/// Source = [src_lang] pieces </s>, or pieces </s> [src_lang] when tokenizer_config.json sets
/// legacy_behaviour; labels likewise with tgt_lang; forced_bos_token_id = tgt_lang's id.
/// Decoding drops every special id (specials, language codes, <mask>), joins the pieces,
/// "▁" -> " ", strips, then clean_up_tokenization_spaces (tokenizer_config.json, default false).
class NllbTokenizer : public Seq2SeqTokenizer {
 public:
  /// Loads the tokenizer files of model_dir. Throws loom::Error naming the missing/bad file.
  /// The initial languages are tokenizer_config.json's src_lang / tgt_lang when valid.
  explicit NllbTokenizer(const std::string& model_dir);

  std::string name() const override { return "NllbTokenizer"; }
  /// Both codes are required and must be in languages(); loom::Error lists the valid codes.
  void set_languages(const std::string& src, const std::string& tgt) override;
  std::vector<std::string> languages() const override { return codes_; }
  std::string source_language() const override { return src_; }
  std::string target_language() const override { return tgt_; }

  /// Throws loom::Error if no source language is selected.
  std::vector<int64_t> encode_source(std::string_view text) const override;
  std::vector<std::string> source_pieces(std::string_view text) const override;
  std::string source_text(const std::vector<std::string>& pieces) const override;
  /// Throws loom::Error if no target language is selected.
  std::vector<int64_t> encode_target(std::string_view text) const override;
  std::string decode_target(const std::vector<int64_t>& ids) const override;
  std::optional<int64_t> forced_bos_token_id() const override;
  std::string id_to_token(int64_t id, bool target_side = false) const override;

  int64_t pad_id() const override { return 1; }
  int64_t eos_id() const override { return 2; }
  int64_t unk_id() const override { return 3; }
  int64_t vocab_size() const override { return vocab_size_; }
  /// Id of a language code; throws loom::Error listing the valid codes if unknown.
  int64_t language_id(const std::string& code) const;

 private:
  std::vector<std::string> tokenize(std::string_view text, std::vector<int64_t>* ids) const;
  /// [lang] tokens </s> (legacy_behaviour: tokens </s> [lang]) for the language code `code`
  /// selected as `side` ("src" or "tgt"); throws loom::Error when none is selected.
  std::vector<int64_t> encode_with_language(std::string_view text, const std::string& code, const char* side) const;
  std::string valid_codes_message() const;

  std::string dir_;
  std::unique_ptr<SentencePiece> sp_;
  int64_t sp_size_ = 0;
  std::vector<std::string> codes_;  // by id
  std::unordered_map<std::string, int64_t> code_ids_;
  std::unordered_map<int64_t, std::string> added_by_id_;  // every added/special token
  std::unordered_set<int64_t> special_ids_;
  int64_t vocab_size_ = 0;
  bool legacy_ = false;
  bool clean_up_ = false;
  AddedTokenSplitter splitter_;
  std::string src_, tgt_;
};

}  // namespace loom::text
