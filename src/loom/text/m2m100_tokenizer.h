// loom::text::M2M100Tokenizer — Hugging Face M2M100Tokenizer (transformers 4.46.3, slow) for
// facebook/m2m100_* checkpoints: SentencePiece segmentation (sentencepiece.bpe.model) with the
// ids of a fairseq dictionary (vocab.json), and "__en__"-style language tokens.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "loom/text/sentencepiece.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {

/// M2M100Tokenizer of a model directory holding vocab.json, sentencepiece.bpe.model and
/// (optionally) tokenizer_config.json. Ids: a piece's id is vocab.json[piece] (absent ->
/// vocab.json["<unk>"]); the language tokens "__xx__" of tokenizer_config.json
/// "language_codes" ("m2m100": the 100 codes af ... zu; "wmt21": en ha is ja cs ru zh de) follow
/// at len(vocab.json) + i; then num_madeup_words (default 8) ids that only the model has.
/// Source = [__src__] pieces </s>; labels = [__tgt__] pieces </s>; forced_bos_token_id =
/// __tgt__'s id. Special tokens (<s> <pad> </s> <unk> and the language tokens) in the text are
/// split off as single tokens. Decoding drops the special ids and joins runs of pieces with
/// SentencePiece decode; a madeup id decodes to the literal "<unk>" (transformers'
/// convert_ids_to_tokens falls back to unk_token for it and does not skip it); the result is
/// stripped, then clean_up_tokenization_spaces (tokenizer_config.json, default false).
/// Language codes are given as "en" or "__en__".
class M2M100Tokenizer : public Seq2SeqTokenizer {
 public:
  /// Loads the tokenizer files of model_dir. Throws loom::Error naming the missing/bad file
  /// (vocab.json without <unk>/<pad>/</s>, unknown language_codes, ...). The initial languages
  /// are tokenizer_config.json's src_lang (default "en") and tgt_lang (default none).
  explicit M2M100Tokenizer(const std::string& model_dir);

  std::string name() const override { return "M2M100Tokenizer"; }
  /// Both codes are required and must be in languages(); loom::Error lists the valid codes.
  void set_languages(const std::string& src, const std::string& tgt) override;
  /// The language codes without underscores ("af", ..., "zu").
  std::vector<std::string> languages() const override { return codes_; }
  std::string source_language() const override { return src_; }
  std::string target_language() const override { return tgt_; }

  std::vector<int64_t> encode_source(std::string_view text) const override;
  std::vector<std::string> source_pieces(std::string_view text) const override;
  std::string source_text(const std::vector<std::string>& pieces) const override;
  /// Throws loom::Error if no target language is selected.
  std::vector<int64_t> encode_target(std::string_view text) const override;
  std::string decode_target(const std::vector<int64_t>& ids) const override;
  std::optional<int64_t> forced_bos_token_id() const override;
  std::string id_to_token(int64_t id, bool target_side = false) const override;

  int64_t pad_id() const override { return pad_; }
  int64_t eos_id() const override { return eos_; }
  int64_t unk_id() const override { return unk_; }
  /// len(vocab.json) + language tokens + num_madeup_words (the model's vocab_size).
  int64_t vocab_size() const override { return vocab_size_; }
  /// Id of a language code ("en" or "__en__"); throws loom::Error listing the valid codes.
  int64_t language_id(const std::string& code) const;

 private:
  std::vector<std::string> tokenize(std::string_view text, std::vector<int64_t>* ids) const;
  std::vector<int64_t> encode_with_language(std::string_view text, const std::string& code, const char* side) const;
  std::string canonical_code(const std::string& code) const;  // "" when unknown
  std::string valid_codes_message() const;

  std::string dir_;
  std::unique_ptr<SentencePiece> sp_;
  std::unordered_map<std::string, int64_t> encoder_;
  std::vector<std::string> decoder_;
  std::vector<bool> decoder_has_;
  int64_t encoder_size_ = 0;
  std::vector<std::string> codes_;  // "en", in id order
  std::unordered_map<std::string, int64_t> code_ids_;
  std::vector<bool> special_;       // by id: skipped by decode_target
  int64_t pad_ = 1, eos_ = 2, unk_ = 3, vocab_size_ = 0;
  std::string unk_token_ = "<unk>";
  bool clean_up_ = false;
  AddedTokenSplitter splitter_;
  std::string src_, tgt_;
};

}  // namespace loom::text
