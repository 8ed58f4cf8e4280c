// loom::text::MarianTokenizer — Hugging Face MarianTokenizer (transformers 4.46.3, slow) for
// opus-mt-* models: source.spm / target.spm SentencePiece models whose pieces are looked up in
// vocab.json (ids are vocab.json's, not the SentencePiece ids).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "loom/text/sentencepiece.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {

/// MarianTokenizer of a model directory holding source.spm, target.spm, vocab.json (and
/// target_vocab.json when tokenizer_config.json sets separate_vocabs), tokenizer_config.json.
///  - encode: text is split on the special tokens (</s> <unk> <pad>); in each plain chunk a
///    leading ">>xx<<" (HF regex `>>.+<<`, greedy, one line) is kept as one token and every
///    such match is removed before SentencePiece; pieces map through vocab.json (absent ->
///    <unk>); </s> is appended. Targets use target.spm (and target_vocab.json if separate).
///  - decode: drops pad/eos/unk ids, maps ids to pieces, target.spm DecodePieces, "▁" -> " ",
///    strip, then clean_up_tokenization_spaces (tokenizer_config.json, default false).
///  - languages: the vocabulary's >>xx<< tokens (none when separate_vocabs, as in HF).
class MarianTokenizer : public Seq2SeqTokenizer {
 public:
  /// Loads the tokenizer files of model_dir. Throws loom::Error naming the missing/bad file.
  explicit MarianTokenizer(const std::string& model_dir);

  std::string name() const override { return "MarianTokenizer"; }
  /// src: "" or tokenizer_config.json source_lang. tgt: "" (no language token), one of
  /// languages() with or without the >> << brackets (its token is prepended to every source),
  /// or tokenizer_config.json target_lang (no token). Anything else throws loom::Error.
  void set_languages(const std::string& src, const std::string& tgt) override;
  std::vector<std::string> languages() const override;
  std::string source_language() const override { return src_; }
  std::string target_language() const override { return tgt_; }

  /// HF tokenizer(text)["input_ids"]; with a selected target code, ">>tgt<<" id first unless
  /// the text already starts with a >>xx<< code.
  std::vector<int64_t> encode_source(std::string_view text) const override;
  std::vector<std::string> source_pieces(std::string_view text) const override;
  std::string source_text(const std::vector<std::string>& pieces) const override;
  std::vector<int64_t> encode_target(std::string_view text) const override;
  std::string decode_target(const std::vector<int64_t>& ids) const override;
  std::optional<int64_t> forced_bos_token_id() const override { return std::nullopt; }
  std::string id_to_token(int64_t id, bool target_side = false) const override;

  int64_t pad_id() const override { return pad_; }
  int64_t eos_id() const override { return eos_; }
  int64_t unk_id() const override { return unk_; }
  /// Size of the source vocabulary (max vocab.json id + 1).
  int64_t vocab_size() const override { return static_cast<int64_t>(decoder_.size()); }

 private:
  // HF _tokenize over the special-token split: tokens (pieces, kept >>xx<< codes, specials).
  // leading_code is set when the text itself starts with a >>xx<< code.
  std::vector<std::string> tokenize(std::string_view text, bool target, bool* leading_code) const;
  int64_t token_to_id(const std::string& token, bool target) const;

  std::string dir_;
  std::unique_ptr<SentencePiece> spm_source_, spm_target_;
  std::unordered_map<std::string, int64_t> encoder_, target_encoder_;
  std::vector<std::string> decoder_, target_decoder_;  // id -> token ("" = hole)
  std::vector<bool> decoder_has_, target_decoder_has_;
  bool separate_vocabs_ = false;
  bool clean_up_ = false;
  std::string source_lang_cfg_, target_lang_cfg_;
  std::vector<std::string> codes_;  // bare codes of the >>xx<< tokens, by id
  std::string eos_token_, unk_token_, pad_token_;
  int64_t eos_ = 0, unk_ = 0, pad_ = 0;
  AddedTokenSplitter splitter_;
  std::string src_, tgt_;
  std::optional<int64_t> tgt_code_id_;
};

}  // namespace loom::text
