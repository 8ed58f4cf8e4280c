// loom::text::NllbTokenizer — Hugging Face NllbTokenizer (transformers 4.46.3, slow) for
// NLLB-200 checkpoints: one SentencePiece BPE model (sentencepiece.bpe.model) with fairseq ids.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "loom/text/multilingual_tokenizer.h"

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
class NllbTokenizer : public MultilingualSpmTokenizer {
 public:
  /// Loads the tokenizer files of model_dir. Throws loom::Error naming the missing/bad file.
  /// The initial languages are tokenizer_config.json's src_lang / tgt_lang when valid.
  explicit NllbTokenizer(const std::string& model_dir);

  std::string name() const override { return "NllbTokenizer"; }
  std::string decode_target(const std::vector<int64_t>& ids) const override;
  std::string id_to_token(int64_t id, bool target_side = false) const override;

  int64_t pad_id() const override { return 1; }
  int64_t eos_id() const override { return 2; }
  int64_t unk_id() const override { return 3; }
  int64_t vocab_size() const override { return vocab_size_; }

 private:
  int64_t piece_id(const std::string& piece) const override;

  int64_t sp_size_ = 0;
  std::unordered_map<int64_t, std::string> added_by_id_;  // every added/special token
  std::unordered_set<int64_t> special_ids_;
  int64_t vocab_size_ = 0;
};

}  // namespace loom::text
