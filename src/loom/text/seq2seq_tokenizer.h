// loom::text::Seq2SeqTokenizer — source/target tokenization of encoder-decoder translation
// models, reproducing Hugging Face transformers 4.46.3 slow tokenizers token for token:
// MarianTokenizer (opus-mt-*), NllbTokenizer (NLLB-200) and M2M100Tokenizer (facebook/m2m100_*). load_seq2seq_tokenizer() picks the
// right one from a model directory.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

/// Tokenizer of an encoder-decoder translation model (source and target sides).
/// Every text argument must be valid UTF-8 (loom::Error otherwise); empty text gives just the
/// special tokens. Thread-safe for concurrent const calls; set_languages() must not race them.
class Seq2SeqTokenizer {
 public:
  virtual ~Seq2SeqTokenizer() = default;

  /// HF class name this tokenizer reproduces ("MarianTokenizer", "NllbTokenizer").
  virtual std::string name() const = 0;

  /// Validates and selects the language pair; throws loom::Error listing the valid codes.
  /// Empty strings = the model's defaults: Marian needs none (no >>xx<< token is prepended);
  /// NLLB requires both src and tgt (error if missing).
  virtual void set_languages(const std::string& src, const std::string& tgt) = 0;
  /// Valid target-language codes: NLLB's language codes ("eng_Latn"...), Marian's >>xx<< codes
  /// without the brackets ("cmn_Hans"...); {} for a single-pair Marian model.
  virtual std::vector<std::string> languages() const = 0;
  /// Selected source / target language ("" = none selected).
  virtual std::string source_language() const = 0;
  virtual std::string target_language() const = 0;

  /// Model input ids incl. special tokens, exactly as HF tokenizer(text)["input_ids"]
  /// (Marian: plus a leading >>tgt<< id when a target language code was selected).
  virtual std::vector<int64_t> encode_source(std::string_view text) const = 0;
  /// Source pieces (same segmentation as encode_source, without the added specials/language
  /// token) — used to split too-long sentences at token boundaries.
  virtual std::vector<std::string> source_pieces(std::string_view text) const = 0;
  /// Text of a run of source_pieces() (SentencePiece decode: "▁" -> space, leading space
  /// dropped), so a too-long sentence can be cut into pieces [a, b) and each part re-encoded.
  /// The text is SentencePiece-normalised (e.g. NFKC), not byte-identical to the input.
  virtual std::string source_text(const std::vector<std::string>& pieces) const = 0;
  /// Label ids as HF tokenizer(text_target=text)["input_ids"].
  virtual std::vector<int64_t> encode_target(std::string_view text) const = 0;
  /// Text of generated ids as HF decode(ids, skip_special_tokens=True), honouring
  /// clean_up_tokenization_spaces. Throws loom::Error for ids outside [0, vocab_size()).
  virtual std::string decode_target(const std::vector<int64_t>& ids) const = 0;
  /// Token the decoder must be forced to emit first (NLLB: the target language id, HF's
  /// forced_bos_token_id; Marian: none). std::nullopt when none (or no target selected).
  virtual std::optional<int64_t> forced_bos_token_id() const = 0;

  /// Token string of id on the source (target_side false) or target vocabulary, as HF
  /// convert_ids_to_tokens; throws loom::Error for ids outside [0, vocab_size()).
  virtual std::string id_to_token(int64_t id, bool target_side = false) const = 0;

  /// Special ids (HF pad_token_id, eos_token_id, unk_token_id) and the vocabulary size (ids
  /// are in [0, vocab_size()); HF len(tokenizer) for these tokenizers).
  virtual int64_t pad_id() const = 0;
  virtual int64_t eos_id() const = 0;
  virtual int64_t unk_id() const = 0;
  virtual int64_t vocab_size() const = 0;
};

/// Picks MarianTokenizer, NllbTokenizer, M2M100Tokenizer (model_type m2m_100 with vocab.json) or
/// LoomSpmTokenizer (config.json "model_type":
/// "loom_seq2seq") from the model directory (tokenizer_config.json "tokenizer_class", else
/// config.json "model_type", else which files exist) and loads it.
/// Throws loom::Error naming the directory/file when nothing fits or a file is unreadable.
std::unique_ptr<Seq2SeqTokenizer> load_seq2seq_tokenizer(const std::string& model_dir);

}  // namespace loom::text
