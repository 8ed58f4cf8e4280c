#include "loom/core/plot.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::core {
namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string num(double v) { return fmt::format("{:.2f}", v); }

// Tick label: shortest of up to 6 significant digits (-0 printed as 0).
std::string tick_label(double v) {
  if (v == 0) v = 0;
  return fmt::format("{:g}", v);
}

std::string svg_header(int width, int height) {
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n",
      width, height);
}

std::string text_el(double x, double y, const std::string& s, const char* anchor, const std::string& extra = "") {
  return fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"{}\"{}>{}</text>\n", num(x), num(y), anchor, extra,
                     xml_escape(s));
}

// A "nice" step (1, 2 or 5 × 10^k) giving about `target` intervals over span.
double nice_step(double span, int target) {
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nice * mag;
}

struct Axis {
  double lo = 0, hi = 1;       // data range shown (log10 units when log)
  std::vector<double> ticks;   // tick positions (same units as lo/hi)
  std::vector<std::string> labels;
};

Axis linear_axis(double lo, double hi) {
  if (lo == hi) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double step = nice_step(hi - lo, 5);
  Axis a;
  a.lo = std::floor(lo / step) * step;
  a.hi = std::ceil(hi / step) * step;
  const long n = std::lround((a.hi - a.lo) / step);
  for (long i = 0; i <= n; ++i) {
    const double t = a.lo + static_cast<double>(i) * step;
    a.ticks.push_back(t);
    a.labels.push_back(tick_label(std::abs(t) < step * 1e-9 ? 0.0 : t));
  }
  return a;
}

Axis log_axis(double lo_value, double hi_value) {
  Axis a;
  a.lo = std::floor(std::log10(lo_value));
  a.hi = std::ceil(std::log10(hi_value));
  if (a.hi <= a.lo) a.hi = a.lo + 1;
  const bool minor = a.hi - a.lo < 2;
  for (double d = a.lo; d <= a.hi + 1e-9; d += 1) {
    const double base = std::pow(10.0, d);
    a.ticks.push_back(d);
    a.labels.push_back(tick_label(base));
    if (minor && d < a.hi) {
      for (double m : {2.0, 5.0}) {
        a.ticks.push_back(d + std::log10(m));
        a.labels.push_back(tick_label(m * base));
      }
    }
  }
  return a;
}

// Linear interpolation between anchor colours of a viridis-like scale, t in [0, 1].
void scale_colour(double t, int rgb[3]) {
  static constexpr int kAnchors[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0);
  const double pos = t * 4;
  const int i = std::min(3, static_cast<int>(std::floor(pos)));
  const double f = pos - i;
  for (int k = 0; k < 3; ++k)
    rgb[k] = static_cast<int>(std::lround(kAnchors[i][k] + f * (kAnchors[i + 1][k] - kAnchors[i][k])));
}

std::string hex_colour(const int rgb[3]) { return fmt::format("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]); }

}  // namespace

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string line_chart_svg(const LineChart& chart) {
  if (chart.series.empty()) fail(Where{"", 0, chart.title}, "line chart has no series");
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto& s : chart.series) {
    if (s.x.size() != s.y.size())
      fail(Where{"", 0, s.name}, "series has {} x values but {} y values", s.x.size(), s.y.size());
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      if (chart.log_y && s.y[i] <= 0)
        fail(Where{"", 0, s.name}, "point {} has y = {} but the y axis is logarithmic (needs y > 0)", i, s.y[i]);
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  }
  if (!std::isfinite(xmin)) fail(Where{"", 0, chart.title}, "line chart has no finite point to draw");
  if (chart.width < 200 || chart.height < 150)
    fail(Where{"", 0, chart.title}, "line chart size {}x{} is too small (at least 200x150)", chart.width, chart.height);

  const Axis ax = linear_axis(xmin, xmax);
  const Axis ay = chart.log_y ? log_axis(ymin, ymax) : linear_axis(ymin, ymax);
  const double left = 72, right = 170, top = 40, bottom = 56;
  const double pw = chart.width - left - right, ph = chart.height - top - bottom;
  auto px = [&](double x) { return left + (x - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto py = [&](double y) {
    const double v = chart.log_y ? std::log10(y) : y;
    return top + ph - (v - ay.lo) / (ay.hi - ay.lo) * ph;
  };
  auto py_axis = [&](double t) { return top + ph - (t - ay.lo) / (ay.hi - ay.lo) * ph; };

  std::string svg = svg_header(chart.width, chart.height);
  svg += text_el(chart.width / 2.0, 24, chart.title, "middle", " font-size=\"15\" font-weight=\"bold\"");
  // Grid lines and tick labels.
  svg += "<g class=\"grid\" stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (double t : ax.ticks)
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\"/>\n", num(px(t)), num(top), num(top + ph));
  for (double t : ay.ticks)
    svg += fmt::format("<line x1=\"{1}\" y1=\"{0}\" x2=\"{2}\" y2=\"{0}\"/>\n", num(py_axis(t)), num(left), num(left + pw));
  svg += "</g>\n<g class=\"ticks\" fill=\"#333333\">\n";
  for (size_t i = 0; i < ax.ticks.size(); ++i) svg += text_el(px(ax.ticks[i]), top + ph + 16, ax.labels[i], "middle");
  for (size_t i = 0; i < ay.ticks.size(); ++i) svg += text_el(left - 6, py_axis(ay.ticks[i]) + 4, ay.labels[i], "end");
  svg += "</g>\n";
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333333\"/>\n", num(left),
                     num(top), num(pw), num(ph));
  svg += text_el(left + pw / 2, chart.height - 12, chart.x_label, "middle", " class=\"x-label\"");
  svg += fmt::format("<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" class=\"y-label\" transform=\"rotate(-90 16 {0})\">{1}</text>\n",
                     num(top + ph / 2), xml_escape(chart.y_label + (chart.log_y ? " (log scale)" : "")));

  // Series: one polyline per run of finite points.
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const auto& s = chart.series[k];
    const char* colour = kPalette[k % (sizeof(kPalette) / sizeof(kPalette[0]))];
    svg += fmt::format("<g class=\"series\" data-name=\"{}\" stroke=\"{}\" fill=\"none\" stroke-width=\"2\">\n",
                       xml_escape(s.name), colour);
    std::vector<std::pair<double, double>> run;
    auto flush = [&] {
      if (run.size() == 1) {
        svg += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"/>\n", num(run[0].first), num(run[0].second), colour);
      } else if (run.size() > 1) {
        svg += "<polyline points=\"";
        for (size_t i = 0; i < run.size(); ++i) svg += fmt::format("{}{},{}", i ? " " : "", num(run[i].first), num(run[i].second));
        svg += "\"/>\n";
      }
      run.clear();
    };
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        run.emplace_back(px(s.x[i]), py(s.y[i]));
      } else {
        flush();
      }
    }
    flush();
    svg += "</g>\n";
  }
  // Legend.
  svg += "<g class=\"legend\">\n";
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const double y = top + 12 + 20.0 * static_cast<double>(k);
    const char* colour = kPalette[k % (sizeof(kPalette) / sizeof(kPalette[0]))];
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"3\"/>\n",
                       num(left + pw + 12), num(y), num(left + pw + 36), colour);
    svg += text_el(left + pw + 42, y + 4, chart.series[k].name, "start");
  }
  svg += "</g>\n</svg>\n";
  return svg;
}

std::string heat_map_svg(const HeatMap& map) {
  const size_t rows = map.row_labels.size(), cols = map.col_labels.size();
  if (rows == 0 || cols == 0) fail(Where{"", 0, map.title}, "heat map needs at least one row and one column label");
  if (map.values.size() != rows)
    fail(Where{"", 0, map.title}, "heat map has {} row labels but {} rows of values", rows, map.values.size());
  for (size_t r = 0; r < rows; ++r)
    if (map.values[r].size() != cols)
      fail(Where{"", static_cast<int64_t>(r + 1), map.title}, "heat map row has {} values but there are {} column labels",
           map.values[r].size(), cols);
  if (!(map.vmax > map.vmin)) fail(Where{"", 0, map.title}, "heat map needs vmax > vmin (got {} and {})", map.vmin, map.vmax);
  if (map.cell_width < 8 || map.cell_height < 8 || map.decimals < 0 || map.decimals > 10)
    fail(Where{"", 0, map.title}, "heat map cell size or decimals out of range");

  size_t label_chars = 0;
  for (const auto& l : map.row_labels) label_chars = std::max(label_chars, l.size());
  const double left = 40 + 7.0 * static_cast<double>(label_chars), top = 44, bar_w = 16;
  const double gw = map.cell_width * static_cast<double>(cols), gh = map.cell_height * static_cast<double>(rows);
  const int width = static_cast<int>(std::ceil(left + gw + 24 + bar_w + 60));
  const int height = static_cast<int>(std::ceil(top + gh + 56));

  std::string svg = svg_header(width, height);
  svg += text_el(left + gw / 2, 24, map.title, "middle", " font-size=\"15\" font-weight=\"bold\"");
  svg += "<g class=\"cells\" font-size=\"11\">\n";
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      const double v = map.values[r][c];
      const double x = left + map.cell_width * static_cast<double>(c), y = top + map.cell_height * static_cast<double>(r);
      std::string fill = "#cccccc", label = "\xE2\x80\x93", ink = "#000000";  // en dash for "no value"
      if (std::isfinite(v)) {
        int rgb[3];
        const double t = (v - map.vmin) / (map.vmax - map.vmin);
        scale_colour(t, rgb);
        fill = hex_colour(rgb);
        ink = t < 0.6 ? "#ffffff" : "#000000";
        label = fmt::format("{:.{}f}", v, map.decimals);
      }
      svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#ffffff\"/>\n", num(x),
                         num(y), map.cell_width, map.cell_height, fill);
      svg += text_el(x + map.cell_width / 2.0, y + map.cell_height / 2.0 + 4, label, "middle",
                     fmt::format(" fill=\"{}\"", ink));
    }
  }
  svg += "</g>\n<g class=\"labels\" fill=\"#333333\">\n";
  for (size_t r = 0; r < rows; ++r)
    svg += text_el(left - 6, top + map.cell_height * (static_cast<double>(r) + 0.5) + 4, map.row_labels[r], "end");
  for (size_t c = 0; c < cols; ++c)
    svg += text_el(left + map.cell_width * (static_cast<double>(c) + 0.5), top + gh + 16, map.col_labels[c], "middle");
  svg += "</g>\n";
  svg += text_el(left + gw / 2, height - 12, map.x_label, "middle", " class=\"x-label\"");
  svg += fmt::format("<text x=\"14\" y=\"{0}\" text-anchor=\"middle\" class=\"y-label\" transform=\"rotate(-90 14 {0})\">{1}</text>\n",
                     num(top + gh / 2), xml_escape(map.y_label));
  // Colour bar: 20 bands from vmax (top) to vmin (bottom), labelled at both ends and the middle.
  const double bx = left + gw + 24;
  svg += "<g class=\"colour-scale\">\n";
  const int bands = 20;
  for (int i = 0; i < bands; ++i) {
    int rgb[3];
    scale_colour(1.0 - (i + 0.5) / bands, rgb);
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n", num(bx),
                       num(top + gh * i / bands), num(bar_w), num(gh / bands + 0.5), hex_colour(rgb));
  }
  for (double t : {1.0, 0.5, 0.0}) {
    const double v = map.vmin + t * (map.vmax - map.vmin);
    svg += text_el(bx + bar_w + 4, top + gh * (1 - t) + 4, tick_label(v), "start");
  }
  svg += "</g>\n</svg>\n";
  return svg;
}

void write_svg(const std::string& path, const std::string& svg) {
  write_file_atomic(path, svg);
}

}  // namespace loom::core
