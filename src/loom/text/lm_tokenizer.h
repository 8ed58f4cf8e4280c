// Tokenizers of loom's decoder-only language models (models::DecoderLM): byte level (id = byte
// value, V = 256: any UTF-8 text, no unknown tokens) or a SentencePiece model trained on the LM
// text (text::train_sentencepiece). A model directory records which one in tokenizer.json:
//   {"type": "byte"}                        or
//   {"type": "spm", "model": "tokenizer.spm"}   (the model file sits beside it)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

class SentencePiece;

/// A language-model tokenizer: text <-> ids in [0, vocab_size()). Thread-safe after construction.
class LmTokenizer {
 public:
  /// Byte level: id = byte value, vocab 256.
  static LmTokenizer bytes();
  /// SentencePiece model file (*.spm); its piece ids are the token ids. Throws loom::Error when
  /// the file cannot be read or parsed.
  static LmTokenizer sentencepiece(const std::string& spm_path);
  /// Reads dir/tokenizer.json (see the file comment). Throws loom::Error naming the file for a
  /// missing file, bad JSON or an unknown "type".
  static LmTokenizer load(const std::string& dir);
  /// Writes dir/tokenizer.json (and copies the SentencePiece model to dir/tokenizer.spm).
  /// Throws loom::Error on I/O failure.
  void save(const std::string& dir) const;

  /// "byte" or "spm".
  const std::string& type() const { return type_; }
  /// V: number of ids.
  int64_t vocab_size() const;
  /// Token ids of text (byte level: its bytes; spm: sentencepiece Encode, normalisation
  /// included, no bos/eos added).
  std::vector<int64_t> encode(std::string_view text) const;
  /// Text of ids (byte level: the bytes, possibly an incomplete UTF-8 sequence at the end; spm:
  /// sentencepiece Decode). Throws loom::Error for an id outside [0, V).
  std::string decode(const std::vector<int64_t>& ids) const;

 private:
  std::string type_ = "byte";
  std::string spm_path_;
  std::shared_ptr<SentencePiece> spm_;
};

}  // namespace loom::text
