// loom::text::M2M100Tokenizer — Hugging Face M2M100Tokenizer (transformers 4.46.3, slow) for
// facebook/m2m100_* checkpoints: SentencePiece segmentation (sentencepiece.bpe.model) with the
// ids of a fairseq dictionary (vocab.json), and "__en__"-style language tokens.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "loom/text/multilingual_tokenizer.h"

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
/// Language codes are given as "en", "__en__" or any spelling match_language_code accepts ("eng_Latn").
class M2M100Tokenizer : public MultilingualSpmTokenizer {
 public:
  /// Loads the tokenizer files of model_dir. Throws loom::Error naming the missing/bad file
  /// (vocab.json without <unk>/<pad>/</s>, unknown language_codes, ...). The initial languages
  /// are tokenizer_config.json's src_lang (default "en") and tgt_lang (default none).
  explicit M2M100Tokenizer(const std::string& model_dir);

  std::string name() const override { return "M2M100Tokenizer"; }
  std::string decode_target(const std::vector<int64_t>& ids) const override;
  std::string id_to_token(int64_t id, bool target_side = false) const override;

  int64_t pad_id() const override { return pad_; }
  int64_t eos_id() const override { return eos_; }
  int64_t unk_id() const override { return unk_; }
  /// len(vocab.json) + language tokens + num_madeup_words (the model's vocab_size).
  int64_t vocab_size() const override { return vocab_size_; }

 private:
  int64_t piece_id(const std::string& piece) const override;

  std::unordered_map<std::string, int64_t> encoder_;
  std::vector<std::string> decoder_;
  std::vector<bool> decoder_has_;
  int64_t encoder_size_ = 0;
  std::vector<bool> special_;  // by id: skipped by decode_target
  int64_t pad_ = 1, eos_ = 2, unk_ = 3, vocab_size_ = 0;
  std::string unk_token_ = "<unk>";
};

}  // namespace loom::text
