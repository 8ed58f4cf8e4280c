// Training curves as SVG: turns metrics.jsonl records into line charts under RUN/plots/.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::train {

/// One named line: (x, y) points in drawing order.
struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

/// Renders series as a standalone SVG line chart (axes with 5 ticks each, legend, title) to
/// `path` (written to path.tmp, then renamed). Empty series are left out; with no points at all
/// the chart shows its axes only. Throws loom::Error when the file cannot be written.
void write_svg_line_chart(const std::string& path, const std::string& title,
                          const std::string& x_label, const std::string& y_label,
                          const std::vector<PlotSeries>& series);

/// Writes RUN/plots/loss.svg (train_loss of "train" records and valid_loss of "valid" records
/// vs step, nats/token), RUN/plots/lr.svg (lr vs step) and, when any record has "bleu" or
/// "chrf", RUN/plots/bleu.svg. Records are metrics.jsonl objects with at least "step".
void plot_metrics(const std::string& run_dir, const std::vector<nlohmann::json>& records);

}  // namespace loom::train
