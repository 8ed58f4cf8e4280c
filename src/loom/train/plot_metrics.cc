#include "loom/train/plot_metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "loom/core/error.h"

namespace fs = std::filesystem;

namespace loom::train {
namespace {

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

}  // namespace

void write_svg_line_chart(const std::string& path, const std::string& title,
                          const std::string& x_label, const std::string& y_label,
                          const std::vector<PlotSeries>& series) {
  const double W = 720, H = 440, L = 80, R = 160, T = 40, B = 60;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (auto& s : series)
    for (auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + std::max(1e-12, std::abs(y0) * 0.1 + 1e-12), y0 -= (y1 - y0);
  const double pw = W - L - R, ph = H - T - B;
  auto sx = [&](double x) { return L + (x - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return T + ph - (y - y0) / (y1 - y0) * ph; };
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H, W, H);
  svg += fmt::format("<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
                     L + pw / 2, escape(title));
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", L, T, pw, ph);
  for (int i = 0; i <= 4; ++i) {
    double fx = x0 + (x1 - x0) * i / 4, fy = y0 + (y1 - y0) * i / 4;
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:.4g}</text>\n",
                       sx(fx), T, T + ph, T + ph + 16, fx);
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.4g}</text>\n",
                       L, sy(fy), L + pw, L - 6, sy(fy) + 4, fy);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", L + pw / 2, H - 16, escape(x_label));
  svg += fmt::format("<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">{1}</text>\n",
                     T + ph / 2, escape(y_label));
  int k = 0;
  for (auto& s : series) {
    if (s.points.empty()) continue;
    const char* c = colors[k % 6];
    std::string pts;
    for (auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", sx(x), sy(y));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>\n", c, pts);
    if (s.points.size() == 1)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", sx(s.points[0].first), sy(s.points[0].second), c);
    double ly = T + 10 + 18 * k;
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\"/>"
                       "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
                       L + pw + 10, ly, L + pw + 30, c, L + pw + 36, ly + 4, escape(s.name));
    ++k;
  }
  svg += "</svg>\n";
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(Where{tmp, 0, ""}, "cannot create file");
    out << svg;
    if (!out) fail(Where{tmp, 0, ""}, "write failed");
  }
  fs::rename(tmp, path);
}

void plot_metrics(const std::string& run_dir, const std::vector<nlohmann::json>& records) {
  PlotSeries train_loss{"train loss", {}}, valid_loss{"valid loss", {}}, lr{"learning rate", {}},
      bleu{"BLEU", {}}, chrf{"chrF", {}};
  for (const auto& r : records) {
    if (!r.is_object() || !r.contains("step")) continue;
    double step = r["step"].get<double>();
    auto get = [&](const char* k, PlotSeries& s) {
      if (r.contains(k) && r[k].is_number()) s.points.emplace_back(step, r[k].get<double>());
    };
    get("train_loss", train_loss);
    get("valid_loss", valid_loss);
    get("lr", lr);
    get("bleu", bleu);
    get("chrf", chrf);
  }
  fs::path dir = fs::path(run_dir) / "plots";
  fs::create_directories(dir);
  write_svg_line_chart((dir / "loss.svg").string(), "Loss", "update", "loss (nats/token)", {train_loss, valid_loss});
  write_svg_line_chart((dir / "lr.svg").string(), "Learning rate", "update", "learning rate", {lr});
  if (!bleu.points.empty() || !chrf.points.empty())
    write_svg_line_chart((dir / "bleu.svg").string(), "Validation BLEU / chrF", "update", "score", {bleu, chrf});
}

}  // namespace loom::train
