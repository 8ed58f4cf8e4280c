// loom::text::SentencePiece — a SentencePiece model (unigram or BPE) loaded through the
// libloom_spm.so plugin (see CMakeLists.txt for why sentencepiece is isolated in a plugin).
// Thread-safe for concurrent encode/decode calls after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

/// One SentencePiece model file (*.spm, *.model). Ids are the model's own piece ids; callers
/// that use another id space (Marian's vocab.json, NLLB's fairseq offset) map pieces themselves.
class SentencePiece {
 public:
  /// Loads the model at path. Throws loom::Error naming the file if it cannot be read or parsed,
  /// or if the plugin cannot be found (search: $LOOM_SPM_PLUGIN, the executable's directory,
  /// <exe>/../lib/loom/, the build tree).
  explicit SentencePiece(const std::string& path);
  ~SentencePiece();
  SentencePiece(const SentencePiece&) = delete;
  SentencePiece& operator=(const SentencePiece&) = delete;

  /// Segments text into pieces (normalisation included, as sentencepiece's Encode).
  std::vector<std::string> encode_pieces(std::string_view text) const;
  /// Segments text and returns the pieces' ids in this model's id space.
  std::vector<int> encode_ids(std::string_view text) const;
  /// Joins pieces back into text (sentencepiece's Decode: "▁" -> space, byte pieces merged).
  std::string decode_pieces(const std::vector<std::string>& pieces) const;

  /// Vocabulary size of the model.
  int size() const;
  /// Piece of id; throws loom::Error if id is out of [0, size()).
  std::string id_to_piece(int id) const;
  /// Id of piece, or the model's unk id when absent.
  int piece_to_id(std::string_view piece) const;
  /// Piece score (log probability for unigram, negative merge rank for BPE).
  float score(int id) const;
  /// True for control symbols (<s>, </s>, <pad> defined as control), unknown, unused pieces.
  bool is_control(int id) const;
  bool is_unknown(int id) const;
  /// Path the model was loaded from.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* handle_ = nullptr;
};

/// Options of train_sentencepiece(); each is the sentencepiece trainer flag of the same name.
/// The special ids are fixed: <pad> 0, <unk> 1, <s> 2 (bos), </s> 3 (eos).
struct SpmTrainOptions {
  std::vector<std::string> input_files;  ///< UTF-8 text files, one sentence per line (>= 1)
  std::string model_type = "unigram";    ///< "unigram" or "bpe"
  int vocab_size = 8000;                 ///< pieces in the model, the 4 specials included
  /// Share of characters the model must cover (the rarest rest become <unk>); 0.9995 suits
  /// Chinese/Japanese, 1.0 alphabetic languages.
  double character_coverage = 0.9995;
  /// Longer sentences (in bytes) are skipped by the trainer (their count is logged as a warning).
  int max_sentence_length = 4192;
  /// Sentences to sample for training: 0 = all of them (deterministic); > 0 samples that many
  /// (with shuffle_input_sentence, seeded by seed).
  int64_t input_sentence_size = 0;
  bool shuffle_input_sentence = false;   ///< shuffle before sampling (only with sampling)
  uint32_t seed = 0;                     ///< seed of sentencepiece's random generator
  /// Trainer threads. The result depends on the thread count (floating-point sums are split
  /// per thread), so the default 1 gives the same model on every machine.
  int num_threads = 1;
  bool byte_fallback = false;            ///< add <0x00>..<0xFF> pieces so nothing becomes <unk>
  bool split_digits = false;             ///< split numbers into single digits
  std::string normalization_rule_name = "nmt_nfkc";  ///< sentencepiece normalizer
  bool verbose = false;                  ///< show sentencepiece's training log on stderr
};

/// Trains a SentencePiece model (sentencepiece::SentencePieceTrainer::Train, via the plugin)
/// and returns the serialized model (the bytes of a .model / .spm file). Deterministic: the
/// same options and input give the same bytes. Throws loom::Error naming the input file (and
/// line) when a file is missing, not valid UTF-8 or when the input has no non-empty line, and
/// with sentencepiece's message when training fails (e.g. vocab_size larger than the data
/// supports: "Vocabulary size too high (N). Please set it to a value <= M", or smaller than the
/// characters to cover).
std::string train_sentencepiece(const SpmTrainOptions& options);

/// train_sentencepiece(), writing the model to path (replaced atomically: path.tmp + rename).
/// Throws loom::Error naming path when it cannot be written.
void train_sentencepiece(const SpmTrainOptions& options, const std::string& path);

}  // namespace loom::text
