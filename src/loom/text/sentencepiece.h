// loom::text::SentencePiece — a SentencePiece model (unigram or BPE) loaded through the
// libloom_spm.so plugin (see CMakeLists.txt for why sentencepiece is isolated in a plugin).
// Thread-safe for concurrent encode/decode calls after construction.
#pragma once

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

}  // namespace loom::text
