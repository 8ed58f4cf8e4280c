// Diagnostics of the kNN memory of a Memorizing-Transformer DecoderLM during `loom eval lm
// --memory-stats` (papers.md §4.2–4.3): per kNN layer and head, the learned gate sigmoid(b_h),
// how much attention mass goes to the memory, how well the retrieved keys compete with the local
// ones, and how far back (in tokens, and across section boundaries) the retrieved keys lie.
// The numbers are accumulated by nn::KnnAttentionStats inside the layers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/models/decoder_lm.h"
#include "loom/text/lm_tokenizer.h"

namespace loom::pipeline {

/// Attaches a fresh nn::KnnAttentionStats with the given distance bucket edges (ascending token
/// distances, >= 1) to every "knn" layer of `model`. Returns the number of kNN layers. Throws
/// loom::Error when the model has none or the edges are not ascending and >= 1.
int64_t attach_knn_stats(models::DecoderLMImpl& model, const std::vector<int64_t>& distance_edges);

/// Sets the section starts (token positions, ascending) used by the same-section statistic of
/// every attached stats object (call before each document; empty = statistic off).
void set_knn_stat_sections(models::DecoderLMImpl& model, const std::vector<int64_t>& section_starts);

/// Removes the stats objects from the layers (they stop costing time).
void detach_knn_stats(models::DecoderLMImpl& model);

/// Token positions where a section of `text` starts: every line (the text's start or the
/// character after a '\n') that begins with one of `prefixes` (e.g. "Chapter ", "Letter "),
/// mapped to tokens by encoding the text before it (exact for byte tokenizers; the prefix's
/// own tokenisation for SentencePiece, which may differ from the whole text's by a token at
/// the boundary). Ascending. Empty prefixes are ignored.
std::vector<int64_t> section_starts(const std::string& text, const std::vector<std::string>& prefixes,
                                    const text::LmTokenizer& tokenizer);

/// The accumulated statistics as JSON: {"distance_edges", "layers": [{"layer", "heads": [{"head",
/// "gate" = sigmoid(b_h), "queries", "with_memory" (share of queries whose memory held a key),
/// "memory_mass" = gate × with_memory (the mixing weight of the memory read, averaged over all
/// queries), "local_mass" = 1 − memory_mass, "joint_softmax_memory_share" (mean over queries
/// with memory of the share the retrieved keys would take in one softmax over local and
/// retrieved keys), "mean_distance" (tokens, attention-weighted), "distance_buckets" [{"max"
/// (null for the open last bucket), "share"}], "share_within" {"<edge>": share of memory mass at
/// distance <= edge}, "same_section_share" (null without sections)}], "mean": the head average
/// of the same fields}]}. Shares of memory mass are over queries with memory. Throws
/// loom::Error when no stats are attached.
nlohmann::json knn_stats_json(const models::DecoderLMImpl& model);

/// A short text table of knn_stats_json's output (one line per layer and head).
std::string format_knn_stats(const nlohmann::json& stats);

}  // namespace loom::pipeline
