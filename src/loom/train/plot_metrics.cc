#include "loom/train/plot_metrics.h"

#include <filesystem>

#include "loom/core/plot.h"

namespace fs = std::filesystem;

namespace loom::train {

void plot_metrics(const std::string& run_dir, const std::vector<nlohmann::json>& records) {
  core::PlotSeries train_loss{"train loss", {}, {}}, valid_loss{"valid loss", {}, {}},
      lr{"learning rate", {}, {}}, bleu{"BLEU", {}, {}}, chrf{"chrF", {}, {}};
  for (const auto& r : records) {
    if (!r.is_object() || !r.contains("step") || !r["step"].is_number()) continue;
    const double step = r["step"].get<double>();
    auto add = [&](const char* key, core::PlotSeries& s) {
      if (r.contains(key) && r[key].is_number()) {
        s.x.push_back(step);
        s.y.push_back(r[key].get<double>());
      }
    };
    add("train_loss", train_loss);
    add("valid_loss", valid_loss);
    add("lr", lr);
    add("bleu", bleu);
    add("chrf", chrf);
  }
  const fs::path dir = fs::path(run_dir) / "plots";
  fs::create_directories(dir);
  auto chart = [&](const char* file, const char* title, const char* y_label,
                   std::vector<core::PlotSeries> series) {
    std::vector<core::PlotSeries> nonempty;
    for (auto& s : series)
      if (!s.x.empty()) nonempty.push_back(std::move(s));
    if (nonempty.empty()) return;
    core::LineChart c;
    c.title = title;
    c.x_label = "update";
    c.y_label = y_label;
    c.series = std::move(nonempty);
    core::write_svg((dir / file).string(), core::line_chart_svg(c));
  };
  chart("loss.svg", "Loss", "loss (nats/token)", {train_loss, valid_loss});
  chart("lr.svg", "Learning rate", "learning rate", {lr});
  chart("bleu.svg", "Validation BLEU / chrF", "score", {bleu, chrf});
}

}  // namespace loom::train
