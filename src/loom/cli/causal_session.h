// Shared by `loom generate` and `loom chat` for HF decoder-only checkpoints: loading model +
// tokenizer once, the stop ids of chat mode, and streaming one answer to a FILE* with the UTF-8
// safe detokenizer and stop strings.
#pragma once

#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loom/generate/causal_generate.h"
#include "loom/models/causal_lm.h"
#include "loom/text/causal_tokenizer.h"

namespace loom::cli {

/// A loaded HF causal LM with its tokenizer.
struct CausalModel {
  std::shared_ptr<const models::CausalLM> model;
  text::CausalTokenizer tokenizer;
};

/// Loads model and tokenizer of an HF checkpoint directory, the projection weights held as
/// `compute` (float32, bfloat16 or int8 weight-only; models::CausalLM::load). Throws loom::Error
/// naming the file.
CausalModel load_causal_model(const std::string& dir, nn::WeightType compute = nn::WeightType::kFloat32);

/// Help text of `--compute-type` (generate, chat).
inline constexpr const char* kComputeTypeHelp =
    "Weights of the projections: float32, bfloat16 or int8 (weight-only, per-channel); HF models";

/// Stop ids for chat-formatted prompts: generate::chat_stop_ids of the model and tokenizer (the
/// one definition, shared with `loom serve`'s chat route).
std::vector<int64_t> chat_stop_ids(const CausalModel& m);

/// Token ids of a conversation rendered with the tokenizer's chat template (generation prompt
/// added; the template writes the BOS, so no special tokens are added on top).
std::vector<int64_t> encode_chat(const CausalModel& m, const nlohmann::json& messages);

/// Generates from `prompt` and writes the continuation's text to `out` as tokens arrive (stop
/// tokens and special tokens not shown, stop strings cut), flushing after each piece. Returns
/// the shown text. `interrupted` (may be null) is polled before each step: when it becomes true
/// the answer ends there. `delay_ms` > 0 sleeps between tokens (demos, interactive tests).
std::string stream_answer(const CausalModel& m, const std::vector<int64_t>& prompt,
                          const generate::CausalGenerateOptions& options, const std::vector<std::string>& stop_strings,
                          std::FILE* out, const std::atomic<bool>* interrupted = nullptr, int delay_ms = 0);
/// The same for a sequence the caller owns and has prepared (loom chat keeps one Sequence for the
/// whole conversation, so each turn only prefills what the cache does not hold yet).
std::string stream_answer(const CausalModel& m, generate::Sequence& seq, const std::vector<std::string>& stop_strings,
                          std::FILE* out, const std::atomic<bool>* interrupted = nullptr, int delay_ms = 0);

/// Prepares `seq` for the conversation `ids` (a new turn): keeps the cached common prefix of
/// seq->tokens() and ids and appends the rest, or starts a new Sequence when nothing is shared or
/// seq is null.
void continue_conversation(const CausalModel& m, std::unique_ptr<generate::Sequence>& seq,
                           const std::vector<int64_t>& ids, const generate::CausalGenerateOptions& options);

}  // namespace loom::cli
