// loom::text::LoomSpmTokenizer — the tokenizer of loom's own translation models (trained with
// `loom train`, model_type "loom_seq2seq"): plain SentencePiece models with fixed special ids,
// no Hugging Face vocabulary remapping.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "loom/text/sentencepiece.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace loom::text {

/// Fixed special ids of loom's SentencePiece models (train_sentencepiece() produces them).
inline constexpr int64_t kLoomPadId = 0;  ///< <pad>
inline constexpr int64_t kLoomUnkId = 1;  ///< <unk>
inline constexpr int64_t kLoomBosId = 2;  ///< <s>: the decoder start token
inline constexpr int64_t kLoomEosId = 3;  ///< </s>

/// Tokenizer of a loom model directory:
///  - source.spm and target.spm: SentencePiece models (byte-identical for a joint vocabulary)
///    whose ids are the model's token ids, with <pad> 0, <unk> 1, <s> 2, </s> 3;
///  - config.json: "model_type": "loom_seq2seq", "pad_token_id": 0, "bos_token_id": 2 (the
///    decoder start), "eos_token_id": 3, optional "unk_token_id": 1, optional "source_lang" /
///    "target_lang" (the single language pair the model translates).
/// encode_source / encode_target: SentencePiece ids of the text followed by </s> (3).
/// decode_target: drops the special ids (pad, unk, bos, eos) and decodes the rest with
/// target.spm. Throws loom::Error naming the file when a file is missing, a special id is not
/// where it must be, or config.json disagrees with the fixed ids.
class LoomSpmTokenizer : public Seq2SeqTokenizer {
 public:
  /// Loads the tokenizer of model_dir (source.spm, target.spm, config.json).
  explicit LoomSpmTokenizer(const std::string& model_dir);

  std::string name() const override { return "LoomSpmTokenizer"; }
  /// A loom model translates one language pair: src must be "" or config.json source_lang and
  /// tgt "" or target_lang (when config.json names them; without them any code is accepted and
  /// only recorded). Throws loom::Error naming the model's pair otherwise.
  void set_languages(const std::string& src, const std::string& tgt) override;
  /// {target_lang} when config.json names it, else {}.
  std::vector<std::string> languages() const override;
  /// Selected language, or config.json's when none was selected ("" if neither).
  std::string source_language() const override;
  std::string target_language() const override;

  std::vector<int64_t> encode_source(std::string_view text) const override;
  std::vector<std::string> source_pieces(std::string_view text) const override;
  std::string source_text(const std::vector<std::string>& pieces) const override;
  std::vector<int64_t> encode_target(std::string_view text) const override;
  std::string decode_target(const std::vector<int64_t>& ids) const override;
  /// None: the decoder starts with <s> (bos_token_id) and no language token is forced.
  std::optional<int64_t> forced_bos_token_id() const override { return std::nullopt; }
  std::string id_to_token(int64_t id, bool target_side = false) const override;

  int64_t pad_id() const override { return kLoomPadId; }
  int64_t eos_id() const override { return kLoomEosId; }
  int64_t unk_id() const override { return kLoomUnkId; }
  /// Decoder start token (<s>, 2).
  int64_t bos_id() const { return kLoomBosId; }
  /// Pieces of source.spm (equal to target_vocab_size() for a joint vocabulary).
  int64_t vocab_size() const override { return source_->size(); }
  /// Pieces of target.spm (decode_target accepts ids in [0, target_vocab_size())).
  int64_t target_vocab_size() const { return target_->size(); }
  /// True when source.spm and target.spm are the same model (byte-identical files).
  bool joint_vocabulary() const { return joint_; }

 private:
  std::string dir_;
  std::unique_ptr<SentencePiece> source_, target_;
  bool joint_ = false;
  std::string source_lang_cfg_, target_lang_cfg_;
  std::string src_, tgt_;
};

}  // namespace loom::text
