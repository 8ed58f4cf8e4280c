// Shared pieces of the Hugging Face slow-tokenizer emulation: reading the JSON files a
// tokenizer directory holds, and splitting text on "added tokens" (special tokens such as
// </s> or NLLB language codes), which HF's PreTrainedTokenizer.tokenize() does with a trie
// before the model-specific tokenizer sees the text.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <string>
#include <unordered_map>
#include <string_view>
#include <vector>

namespace loom::text {

/// A special string of tokenizer_config.json: either "…" or {"content": "…", ...}; returns
/// fallback when key is absent or null. Throws loom::Error (naming file and key) for other types.
std::string special_token_string(const nlohmann::json& config, const std::string& key,
                                 const std::string& fallback, const std::string& file);

/// The tokenizer_config.json of model_dir (an empty object when the file is absent). Throws
/// loom::Error naming the file if it is unreadable, not JSON, or not a JSON object.
nlohmann::json read_tokenizer_config(const std::string& model_dir);

/// config[key] as a bool (fallback when absent or null) or as a string ("" when absent or null).
/// Throw loom::Error naming file and key for a value of another type.
bool config_bool(const nlohmann::json& config, const char* key, bool fallback, const std::string& file);
std::string config_string(const nlohmann::json& config, const char* key, const std::string& file);

/// Reads a vocab.json (piece -> id, as HF MarianTokenizer / M2M100Tokenizer load it) into
/// encoder (piece -> id) and decoder (id -> piece, the last piece of a duplicate id as HF's
/// {v: k} keeps; has[id] false for ids no piece names). Throws loom::Error naming the file and
/// piece for invalid JSON, a non-integer id, or an id outside [0, 50M].
void load_vocab_json(const std::string& path, std::unordered_map<std::string, int64_t>& encoder,
                     std::vector<std::string>& decoder, std::vector<bool>& has);

/// clean_up_tokenization_spaces of HF PreTrainedTokenizerBase.clean_up_tokenization: removes
/// the space before . ? ! , and in front of English contractions (" n't", " 's", ...).
std::string clean_up_tokenization(std::string text);

/// One added token (HF AddedToken): its text, and whether it eats the whitespace on its left
/// (lstrip) or right (rstrip) side when matched in the input.
struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool lstrip = false;
  bool rstrip = false;
};

/// A piece of split text: plain text to hand to the sub-word model (token == -1), or the index
/// of the matched AddedToken.
struct TextChunk {
  std::string_view text;
  int token = -1;
};

/// Splits text on added tokens like HF PreTrainedTokenizer.tokenize() (transformers 4.46.3):
/// leftmost match first, longest token at that position; then lstrip/rstrip tokens strip the
/// neighbouring plain chunks, and empty plain chunks are dropped.
class AddedTokenSplitter {
 public:
  AddedTokenSplitter() = default;
  explicit AddedTokenSplitter(std::vector<AddedToken> tokens);
  /// The chunks of text in order; TextChunk::text views into text.
  std::vector<TextChunk> split(std::string_view text) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::array<std::vector<int>, 256> by_first_byte_;  // token indices, longest first
};

}  // namespace loom::text
