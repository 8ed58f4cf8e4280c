// Training curves as SVG: turns metrics.jsonl records into line charts under RUN/plots/
// (drawn with loom::core::line_chart_svg).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::train {

/// Writes RUN/plots/loss.svg (train_loss of "train" records and valid_loss of "valid" records
/// vs update, nats/token), RUN/plots/lr.svg (lr vs update) and, when any record has "bleu" or
/// "chrf", RUN/plots/bleu.svg. Records are metrics.jsonl objects with at least "step"; a chart
/// whose series have no point yet is not written. Throws loom::Error when a file cannot be
/// written.
void plot_metrics(const std::string& run_dir, const std::vector<nlohmann::json>& records);

}  // namespace loom::train
