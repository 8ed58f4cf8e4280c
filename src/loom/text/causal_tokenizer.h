// loom::text::CausalTokenizer — the tokenizer of a Hugging Face decoder-only LLM checkpoint
// directory (Gemma 1/2/3, Llama 2/3, Qwen2, Mistral), reproducing transformers' tokenizer:
//   * tokenizer.json (HF "fast" tokenizer: byte-level BPE as in Llama 3 / Qwen2, read by
//     text::BpeTokenizer) when present — HF's AutoTokenizer prefers it too;
//   * else tokenizer.model (SentencePiece, Gemma / Llama 2), run through the sentencepiece
//     plugin (text/sentencepiece.h), emulating the slow GemmaTokenizer / LlamaTokenizer
//     (transformers 4.46.3): added tokens of tokenizer_config.json are matched as single ids,
//     each text piece between them goes to SentencePiece's Encode.
// Special tokens (bos/eos/pad/unk) come from tokenizer_config.json, else special_tokens_map.json;
// add_bos_token / add_eos_token from tokenizer_config.json (for tokenizer.json: its
// post_processor unless tokenizer_config.json sets them explicitly, as LlamaTokenizerFast does).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

class SentencePiece;
class BpeTokenizer;

/// Text <-> token ids of an HF causal LM checkpoint directory. Thread-safe after load().
class CausalTokenizer {
 public:
  /// Loads the tokenizer of model_dir (see the file comment for which files are read).
  /// Throws loom::Error naming the file (and field) for a missing tokenizer (neither
  /// tokenizer.json nor tokenizer.model), invalid JSON, a field of the wrong type, an unknown
  /// token type / model type / pre-tokenizer, or a special token that is not in the vocabulary.
  static CausalTokenizer load(const std::string& model_dir);

  /// Token ids of text. Added/special tokens written in the text ("<start_of_turn>",
  /// "<|eot_id|>") become their single ids, like HF. With add_special_tokens, BOS is prepended
  /// when add_bos_token (and EOS appended when add_eos_token). Chat-template output already
  /// holds its BOS: encode it with add_special_tokens = false (exactly one BOS).
  /// Throws loom::Error for text that is not valid UTF-8 or holds a NUL byte.
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens) const;

  /// Text of ids, as HF's decode(ids, skip_special_tokens=..., clean_up_tokenization_spaces
  /// from tokenizer_config.json). Incomplete or invalid UTF-8 byte sequences become U+FFFD the
  /// way the reference does (SentencePiece: one per invalid byte; byte-level BPE: one per
  /// maximal invalid subsequence). Throws loom::Error for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;

  /// V: number of token ids (the largest id + 1, added tokens included).
  int64_t vocab_size() const;
  /// Id of a token string (a vocabulary piece or an added token), or nullopt.
  std::optional<int64_t> token_to_id(std::string_view token) const;
  /// The token string of id ("<bos>", "▁the", "Ġthe"); throws loom::Error when out of range.
  std::string id_to_token(int64_t id) const;
  /// True for special tokens (bos/eos/unk/pad/additional_special_tokens and added tokens
  /// marked special): the ones decode(skip_special_tokens=true) drops.
  bool is_special(int64_t id) const;

  std::optional<int64_t> bos_id() const;
  std::optional<int64_t> eos_id() const;
  std::optional<int64_t> pad_id() const;
  /// Token strings ("" when the tokenizer has none); templates get them as bos_token etc.
  std::string bos_token() const;
  std::string eos_token() const;
  std::string pad_token() const;
  std::string unk_token() const;
  /// additional_special_tokens of tokenizer_config.json / special_tokens_map.json.
  const std::vector<std::string>& additional_special_tokens() const;
  bool add_bos_token() const;
  bool add_eos_token() const;

  /// tokenizer_config.json (an empty object when the directory has none).
  const nlohmann::json& config() const;
  /// "sentencepiece" or "bpe".
  const std::string& kind() const;
  /// The directory it was loaded from.
  const std::string& dir() const;

  /// One id's decoded contribution, used by decode() and StreamDecoder (exposed for them).
  struct Surface {
    std::string bytes;       ///< raw bytes (not necessarily valid UTF-8 for byte tokens)
    bool added = false;      ///< added token: emitted as its content, starts a new SentencePiece segment
    bool special = false;    ///< dropped when skipping special tokens
    bool byte = false;       ///< SentencePiece <0xXX> byte piece
  };
  /// Throws loom::Error for an id outside [0, vocab_size()).
  const Surface& surface(int64_t id) const;
  /// SentencePiece models with a dummy prefix drop the leading space of each decoded segment.
  bool strips_segment_leading_space() const;
  /// Invalid UTF-8 replacement: one U+FFFD per byte (SentencePiece) or per maximal invalid
  /// subsequence (byte-level BPE, Rust's from_utf8_lossy).
  bool replaces_per_byte() const;
  bool clean_up_tokenization_spaces() const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

/// Incremental detokenizer for streaming generation: push ids one at a time, get back only
/// text that is final — a multi-byte UTF-8 character split over several byte tokens is held
/// until complete, and SentencePiece's leading-space rule is applied per segment exactly as in
/// decode(). With clean_up_tokenization_spaces (Llama 3's tokenizer_config.json sets it) the
/// last few characters are held while they could still start one of its patterns (" .",
/// " n't", ...). Invariant: the concatenation of every push() plus finish() equals
/// tokenizer.decode(all ids, skip_special_tokens) (tests/text/causal_tokenizer_test.cc,
/// bpe_tokenizer_test.cc). The tokenizer must outlive the decoder.
class StreamDecoder {
 public:
  StreamDecoder(const CausalTokenizer& tokenizer, bool skip_special_tokens);
  /// Text completed by this id (possibly empty). Throws loom::Error for an id out of range.
  std::string push(int64_t id);
  /// Flushes held bytes (an unfinished character becomes U+FFFD) and resets the decoder.
  std::string finish();
  /// Forgets held bytes and starts a new text.
  void reset();

 private:
  const CausalTokenizer* tok_;
  bool skip_special_;
  std::string emit(std::string settled, bool final);
  std::string pending_;  // bytes not yet complete UTF-8
  std::string held_;     // text held for clean_up_tokenization
  bool segment_start_ = true;
};

/// Appends to out the longest settled UTF-8 prefix of pending and removes it from pending:
/// complete valid characters as they are, invalid bytes as U+FFFD (per byte or per maximal
/// invalid subsequence); a possibly-valid incomplete character at the end is kept unless final.
void settle_utf8(std::string& pending, std::string& out, bool final, bool per_byte);

}  // namespace loom::text
