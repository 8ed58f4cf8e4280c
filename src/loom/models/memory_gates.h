// Learned memory gates of a decoder LM as text (for `loom model-info --gates`).
#pragma once

#include <string>

#include "loom/models/decoder_lm.h"

namespace loom::models {

/// The learned memory gates of `model` as text, one line per layer: "layer <i> <kind>:" then
/// g_h = sigmoid(β_h) for every query head h (4 decimals; "-" for a "standard" layer, which has
/// no gate), after a header line. g_h weighs the memory read against local attention:
/// A = g_h·A_mem + (1 − g_h)·A_dot (Infini-attention, papers.md §3.1, eq. 10; the kNN layers of
/// the Memorizing Transformer use the same per-head gate, §4.2).
std::string format_memory_gates(const DecoderLMImpl& model);

}  // namespace loom::models
