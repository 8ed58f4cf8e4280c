// Dependency-free SVG charts for reports: line charts (training curves: loss / BLEU against
// steps, several named series, optional log-scale y axis) and heat maps (a passkey-retrieval
// accuracy grid: context length × needle depth, values printed in the cells). The output is
// deterministic (same input, same bytes): fixed colours, fixed number formatting, no clocks.
#pragma once

#include <string>
#include <vector>

namespace loom::core {

/// One named curve of a line chart: points (x[i], y[i]), drawn in order.
struct PlotSeries {
  std::string name;       ///< legend entry
  std::vector<double> x;  ///< x values (same length as y)
  std::vector<double> y;  ///< y values; a non-finite value (NaN, inf) breaks the line there
};

/// A line chart: several series on shared axes, a title, axis labels and a legend.
struct LineChart {
  std::string title;                ///< drawn above the plot area
  std::string x_label;              ///< x axis label (e.g. "step")
  std::string y_label;              ///< y axis label (e.g. "loss")
  bool log_y = false;               ///< logarithmic (base 10) y axis; needs every finite y > 0
  std::vector<PlotSeries> series;   ///< at least one series with at least one finite point
  int width = 720;                  ///< image width in pixels
  int height = 440;                 ///< image height in pixels
};

/// A heat map: a rows × cols grid of values with row and column labels, a colour scale
/// (viridis-like, dark = low, yellow = high) with its legend, and each value printed in its cell.
struct HeatMap {
  std::string title;                         ///< drawn above the grid
  std::string x_label;                       ///< label under the column labels (e.g. "depth %")
  std::string y_label;                       ///< label beside the row labels (e.g. "context tokens")
  std::vector<std::string> row_labels;       ///< [rows] labels, top to bottom
  std::vector<std::string> col_labels;       ///< [cols] labels, left to right
  std::vector<std::vector<double>> values;   ///< [rows][cols]; NaN = no value (grey cell, "–")
  double vmin = 0;                           ///< value mapped to the low end of the colour scale
  double vmax = 1;                           ///< value mapped to the high end (> vmin)
  int decimals = 2;                          ///< decimals of the printed values
  int cell_width = 64;                       ///< pixels per column
  int cell_height = 32;                      ///< pixels per row
};

/// The SVG document (UTF-8 text) of a line chart. Axes get "nice" ticks (1, 2, 5 × 10^k; for
/// log_y the powers of ten, with 2× and 5× when the range spans under two decades). Throws
/// loom::Error when there is no series, a series' x and y lengths differ, no point is finite,
/// or log_y is set and a finite y is <= 0.
std::string line_chart_svg(const LineChart& chart);

/// The SVG document of a heat map. Throws loom::Error when values is not rows × cols as the
/// labels say, or vmax <= vmin. Values outside [vmin, vmax] get the end colours.
std::string heat_map_svg(const HeatMap& map);

/// Writes svg to path (replacing it); throws loom::Error naming the path on failure.
void write_svg(const std::string& path, const std::string& svg);

/// text with &, <, >, " and ' escaped for XML character data and attribute values.
std::string xml_escape(const std::string& text);

}  // namespace loom::core
