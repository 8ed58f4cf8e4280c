// SVG charts: well-formed markup (every element closed in order, entities escaped), the data
// and labels present, coordinates where the axes put them, deterministic bytes, and errors.
#include "loom/core/plot.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "loom/core/error.h"

namespace loom::core {
namespace {

// Minimal XML well-formedness check: tags nest and close in order, attribute quotes balance,
// and every '&' starts one of the five predefined entities. Returns "" or the first problem.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> stack;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '&') {
      static const char* kEntities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
      bool ok = false;
      for (const char* e : kEntities) ok |= s.compare(i, std::strlen(e), e) == 0;
      if (!ok) return "bare & at " + std::to_string(i);
      ++i;
      continue;
    }
    if (s[i] == '>') return "stray > at " + std::to_string(i);
    if (s[i] != '<') {
      ++i;
      continue;
    }
    size_t end = i + 1;
    bool in_quote = false;
    while (end < s.size() && (in_quote || s[end] != '>')) {
      if (s[end] == '"') in_quote = !in_quote;
      if (!in_quote && s[end] == '<') return "< inside a tag at " + std::to_string(end);
      ++end;
    }
    if (end >= s.size()) return "unterminated tag at " + std::to_string(i);
    const std::string tag = s.substr(i + 1, end - i - 1);
    if (tag.empty()) return "empty tag";
    if (tag[0] == '?') {
      // declaration
    } else if (tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1)) return "mismatched </" + tag.substr(1) + ">";
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
    i = end + 1;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  return "";
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

LineChart training_curves() {
  LineChart c;
  c.title = "Training <en-zh> & loss";
  c.x_label = "step";
  c.y_label = "cross-entropy";
  c.series.push_back({"train", {0, 100, 200, 300}, {8.0, 4.0, 2.0, 1.0}});
  c.series.push_back({"valid \"dev\"", {0, 150, 300}, {8.5, 3.0, 1.5}});
  return c;
}

TEST(Plot, LineChartIsWellFormedAndHasSeriesAndLabels) {
  const std::string svg = line_chart_svg(training_curves());
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_NE(svg.find("Training &lt;en-zh&gt; &amp; loss"), std::string::npos);
  EXPECT_NE(svg.find(">step</text>"), std::string::npos);
  EXPECT_NE(svg.find(">cross-entropy</text>"), std::string::npos);
  EXPECT_NE(svg.find(">train</text>"), std::string::npos);               // legend
  EXPECT_NE(svg.find("valid &quot;dev&quot;"), std::string::npos);
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_EQ(count(svg, "class=\"series\""), 2u);
  // Linear ticks: x 0..300 in steps of 100 (nice step for span 300 / 5 = 60 -> 100), y 0..10.
  for (const char* t : {">0</text>", ">100</text>", ">200</text>", ">300</text>", ">10</text>"})
    EXPECT_NE(svg.find(t), std::string::npos) << t;
  EXPECT_EQ(svg, line_chart_svg(training_curves()));  // deterministic
}

TEST(Plot, LineChartMapsPointsOntoThePlotArea) {
  // Plot area: left 72, top 40, width 720 - 72 - 170 = 478, height 440 - 40 - 56 = 344.
  // x axis 0..300, y axis 0..10 (nice bounds of 1..8.5 with step 2): the train point (0, 8)
  // is at (72, 40 + 344 * (1 - 8/10)) = (72.00, 108.80), (300, 1) at (550.00, 349.60).
  const std::string svg = line_chart_svg(training_curves());
  EXPECT_NE(svg.find("<polyline points=\"72.00,108.80 "), std::string::npos) << svg;
  EXPECT_NE(svg.find(" 550.00,349.60\"/>"), std::string::npos);
}

TEST(Plot, LogScaleUsesDecadesAndRejectsNonPositive) {
  LineChart c = training_curves();
  c.log_y = true;
  c.series[0].y = {1000, 100, 10, 1};
  const std::string svg = line_chart_svg(c);
  EXPECT_EQ(xml_problem(svg), "");
  // Axis 10^0..10^3 (three decades, no minor ticks): y = 1 at the bottom (40 + 344 = 384),
  // y = 1000 at the top (40).
  for (const char* t : {">1</text>", ">10</text>", ">100</text>", ">1000</text>"})
    EXPECT_NE(svg.find(t), std::string::npos) << t;
  EXPECT_NE(svg.find("<polyline points=\"72.00,40.00 "), std::string::npos);
  EXPECT_NE(svg.find(" 550.00,384.00"), std::string::npos);
  EXPECT_NE(svg.find("(log scale)"), std::string::npos);
  c.series[1].y[2] = 0;
  EXPECT_THROW(line_chart_svg(c), Error);
}

TEST(Plot, NonFiniteValuesBreakTheLine) {
  LineChart c;
  c.series.push_back({"loss", {1, 2, 3, 4, 5}, {5, 4, NAN, 2, 1}});
  const std::string svg = line_chart_svg(c);
  EXPECT_EQ(count(svg, "<polyline"), 2u);  // points 1-2 and 4-5
  c.series[0].y = {NAN, NAN, NAN, NAN, NAN};
  EXPECT_THROW(line_chart_svg(c), Error);
  c.series[0].y = {1, 2};
  EXPECT_THROW(line_chart_svg(c), Error);  // x and y lengths differ
  EXPECT_THROW(line_chart_svg(LineChart{}), Error);
}

TEST(Plot, HeatMapHasEveryCellValueAndLabel) {
  HeatMap m;
  m.title = "Passkey accuracy";
  m.x_label = "needle depth %";
  m.y_label = "context tokens";
  m.row_labels = {"1024", "2048", "4096"};
  m.col_labels = {"0", "50", "100"};
  m.values = {{1.0, 1.0, 0.9}, {1.0, 0.75, 0.5}, {0.25, 0.0, NAN}};
  const std::string svg = heat_map_svg(m);
  EXPECT_EQ(xml_problem(svg), "");
  for (const char* t : {">1.00</text>", ">0.90</text>", ">0.75</text>", ">0.50</text>", ">0.25</text>", ">0.00</text>",
                        ">1024</text>", ">4096</text>", ">needle depth %</text>", ">context tokens</text>",
                        ">Passkey accuracy</text>"})
    EXPECT_NE(svg.find(t), std::string::npos) << t;
  EXPECT_EQ(count(svg, ">1.00</text>"), 3u);
  EXPECT_EQ(count(svg, "\xE2\x80\x93</text>"), 1u);  // the NaN cell
  // Colour scale ends: vmin = 0 is the dark end (#440154), vmax = 1 the yellow end (#fde725).
  EXPECT_NE(svg.find("fill=\"#440154\" stroke"), std::string::npos);
  EXPECT_NE(svg.find("fill=\"#fde725\" stroke"), std::string::npos);
  // 9 cells + 20 colour-bar bands + background.
  EXPECT_EQ(count(svg, "<rect"), 9u + 20u + 1u);
  EXPECT_EQ(svg, heat_map_svg(m));
  m.decimals = 0;
  EXPECT_EQ(heat_map_svg(m).find(".00</text>"), std::string::npos);
  EXPECT_EQ(heat_map_svg(m).find(">0.90</text>"), std::string::npos);
}

TEST(Plot, HeatMapErrorsAndWriting) {
  HeatMap m;
  m.row_labels = {"a"};
  m.col_labels = {"x", "y"};
  m.values = {{1.0}};
  EXPECT_THROW(heat_map_svg(m), Error);
  m.values = {{1.0, 2.0}};
  m.vmax = m.vmin;
  EXPECT_THROW(heat_map_svg(m), Error);
  m.vmax = 2;
  const auto path = std::filesystem::temp_directory_path() / ("loom-plot-" + std::to_string(::getpid()) + ".svg");
  write_svg(path.string(), heat_map_svg(m));
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), heat_map_svg(m));
  std::filesystem::remove(path);
  EXPECT_THROW(write_svg("/nonexistent-dir/x.svg", "<svg/>"), Error);
}

}  // namespace
}  // namespace loom::core
