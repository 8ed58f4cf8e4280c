// Architecture summary of a loom model (`loom model-info`): per-block DeLighT depths, width
// multipliers, GLT widths and groups, and parameter counts computed from the config alone (no
// weights are allocated, so the WMT-size configurations are cheap to inspect).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loom/models/native_seq2seq.h"
#include "loom/nn/delight.h"

namespace loom::models {

/// One encoder or decoder block.
struct BlockInfo {
  int64_t depth = 0;         ///< DeLighT N^b (GLT layers); 0 for transformer layers
  double width_mult = 0.0;   ///< DeLighT w_m^b; 0 for transformer layers
  nn::DExTraSpec dextra;     ///< DeLighT transformation of the block (empty for transformer)
  int64_t parameters = 0;    ///< parameters of the block (named "encoder.layers.<i>." / "decoder.layers.<i>.")
};

/// Everything `loom model-info` prints.
struct NativeModelInfo {
  NativeSeq2SeqConfig config;
  std::vector<BlockInfo> encoder, decoder;
  nn::DExTraSpec embedding;  ///< DeLighT embedding unit (map_dim -> d_m), one per side
  NativeSeq2Seq::ParameterCounts params;  ///< same grouping as NativeSeq2Seq::parameter_counts()
};

/// Computes the architecture summary and parameter counts of `config` analytically; equals
/// NativeSeq2Seq(config).parameter_counts() (tested). Block scaling and DExTra widths follow
/// nn::delight_block_scaling / nn::dextra_spec (papers.md §1.6, §1.8).
NativeModelInfo native_model_info(const NativeSeq2SeqConfig& config);

/// Human-readable report: header, per-block lines (N^b, w_m^b, GLT in/out widths, groups,
/// parameters) and the parameter totals (exact and in millions).
std::string format_model_info(const NativeModelInfo& info);

/// Reads a loom config: `path` is a model directory (its config.json) or a JSON file. Throws
/// loom::Error naming the file for a missing/invalid file or config (NativeSeq2SeqConfig::from_json).
NativeSeq2SeqConfig read_native_config(const std::string& path);

}  // namespace loom::models
