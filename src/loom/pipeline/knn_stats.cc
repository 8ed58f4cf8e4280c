#include "loom/pipeline/knn_stats.h"

#include <algorithm>

#include <fmt/format.h>

#include "loom/core/error.h"

namespace loom::pipeline {
namespace {

const nn::LMAttentionImpl& attention(const models::DecoderLMImpl& model, size_t i) {
  return *model.layers->at<models::DecoderBlockImpl>(i).attn;
}
nn::LMAttentionImpl& attention(models::DecoderLMImpl& model, size_t i) {
  return *model.layers->at<models::DecoderBlockImpl>(i).attn;
}

double at(const torch::Tensor& t, int64_t i) { return t[i].item<double>(); }

// The per-head report fields from the accumulators of head h (gate g).
nlohmann::json head_json(const nn::KnnAttentionStats& s, int64_t h, double g) {
  const double q = at(s.queries, h), m = at(s.with_memory, h);
  const double with_memory = q > 0 ? m / q : 0.0;
  auto share = [&](double x) -> nlohmann::json { return m > 0 ? nlohmann::json(x / m) : nlohmann::json(nullptr); };
  nlohmann::json buckets = nlohmann::json::array(), within = nlohmann::json::object();
  double cum = 0;
  const int64_t nb = s.distance_mass.size(1);
  for (int64_t b = 0; b < nb; ++b) {
    const double x = s.distance_mass[h][b].item<double>();
    cum += x;
    const bool last = b == nb - 1;
    buckets.push_back({{"max", last ? nlohmann::json(nullptr) : nlohmann::json(s.distance_edges[b])},
                       {"share", share(x)}});
    if (!last) within[std::to_string(s.distance_edges[b])] = share(cum);
  }
  return {{"gate", g},
          {"queries", q},
          {"with_memory", with_memory},
          {"memory_mass", g * with_memory},
          {"local_mass", 1.0 - g * with_memory},
          {"joint_softmax_memory_share", share(at(s.joint_memory_mass, h))},
          {"mean_distance", share(at(s.distance_sum, h))},
          {"distance_buckets", buckets},
          {"share_within", within},
          {"same_section_share", s.section_starts.empty() ? nlohmann::json(nullptr)
                                                          : share(at(s.same_section_mass, h))}};
}

// Head average of numeric fields (recursively for objects/arrays of the same shape); null if any is.
nlohmann::json mean_of(const std::vector<nlohmann::json>& xs) {
  const nlohmann::json& first = xs.front();
  if (first.is_number()) {
    double sum = 0;
    for (auto& x : xs) {
      if (!x.is_number()) return nullptr;
      sum += x.get<double>();
    }
    return sum / static_cast<double>(xs.size());
  }
  if (first.is_object() || first.is_array()) {
    nlohmann::json out = first;
    for (auto it = first.begin(); it != first.end(); ++it) {
      std::vector<nlohmann::json> parts;
      for (auto& x : xs) {
        if (first.is_object()) parts.push_back(x.at(it.key()));
        else parts.push_back(x.at(static_cast<size_t>(std::distance(first.begin(), it))));
      }
      if (first.is_object()) out[it.key()] = mean_of(parts);
      else out[static_cast<size_t>(std::distance(first.begin(), it))] = mean_of(parts);
    }
    return out;
  }
  return first;  // null / strings: kept as they are
}

}  // namespace

int64_t attach_knn_stats(models::DecoderLMImpl& model, const std::vector<int64_t>& distance_edges) {
  for (size_t i = 0; i < distance_edges.size(); ++i)
    if (distance_edges[i] < 1 || (i > 0 && distance_edges[i] <= distance_edges[i - 1]))
      fail(Where{"", 0, "distance edges"}, "must be ascending token distances >= 1");
  int64_t n = 0;
  for (size_t i = 0; i < model.layers->size(); ++i) {
    auto& a = attention(model, i);
    if (a.options.kind != nn::AttentionKind::kKnn) continue;
    a.knn_stats = std::make_shared<nn::KnnAttentionStats>();
    a.knn_stats->distance_edges = distance_edges;
    ++n;
  }
  if (n == 0) fail(Where{"", 0, "--memory-stats"}, "the model has no kNN layer (config knn_layers / layer_attention)");
  return n;
}

void set_knn_stat_sections(models::DecoderLMImpl& model, const std::vector<int64_t>& section_starts) {
  for (size_t i = 0; i < model.layers->size(); ++i)
    if (auto& s = attention(model, i).knn_stats) s->section_starts = section_starts;
}

void detach_knn_stats(models::DecoderLMImpl& model) {
  for (size_t i = 0; i < model.layers->size(); ++i) attention(model, i).knn_stats.reset();
}

std::vector<int64_t> section_starts(const std::string& text, const std::vector<std::string>& prefixes,
                                    const text::LmTokenizer& tok) {
  std::vector<int64_t> out;
  size_t line = 0;
  while (line < text.size()) {
    for (const auto& p : prefixes) {
      if (!p.empty() && text.compare(line, p.size(), p) == 0) {
        out.push_back(static_cast<int64_t>(tok.encode(std::string_view(text).substr(0, line)).size()));
        break;
      }
    }
    size_t nl = text.find('\n', line);
    if (nl == std::string::npos) break;
    line = nl + 1;
  }
  std::sort(out.begin(), out.end());  // SentencePiece prefix lengths need not be monotone
  return out;
}

nlohmann::json knn_stats_json(const models::DecoderLMImpl& model) {
  nlohmann::json layers = nlohmann::json::array();
  std::vector<int64_t> edges;
  for (size_t i = 0; i < model.layers->size(); ++i) {
    const auto& a = attention(model, i);
    if (!a.knn_stats) continue;
    const nn::KnnAttentionStats& s = *a.knn_stats;
    edges = s.distance_edges;
    nlohmann::json heads = nlohmann::json::array();
    std::vector<nlohmann::json> per_head;
    if (s.queries.defined()) {
      torch::Tensor g = a.gate_values();
      for (int64_t h = 0; h < s.queries.size(0); ++h) {
        nlohmann::json hj = head_json(s, h, g[h].item<double>());
        per_head.push_back(hj);
        hj["head"] = h;
        heads.push_back(hj);
      }
    }
    layers.push_back({{"layer", i}, {"heads", heads},
                      {"mean", per_head.empty() ? nlohmann::json(nullptr) : mean_of(per_head)}});
  }
  if (layers.empty()) fail("kNN stats: none attached (attach_knn_stats)");
  return {{"distance_edges", edges}, {"layers", layers}};
}

std::string format_knn_stats(const nlohmann::json& stats) {
  auto num = [](const nlohmann::json& x, const char* f) {
    return x.is_number() ? fmt::format(f, x.get<double>()) : std::string("-");
  };
  std::string out = "layer head   gate  w/mem  mem-mass  joint-share  mean-dist";
  for (auto& e : stats.at("distance_edges")) out += fmt::format("  <={:<6}", e.get<int64_t>());
  out += "  same-sect\n";
  for (auto& l : stats.at("layers")) {
    std::vector<std::pair<std::string, nlohmann::json>> rows;
    for (auto& h : l.at("heads")) rows.emplace_back(std::to_string(h.at("head").get<int64_t>()), h);
    if (!l.at("mean").is_null()) rows.emplace_back("mean", l.at("mean"));
    for (auto& [name, h] : rows) {
      out += fmt::format("{:>5} {:>4} {:>6} {:>6} {:>9} {:>12} {:>10}", l.at("layer").get<int64_t>(), name,
                         num(h.at("gate"), "{:.4f}"), num(h.at("with_memory"), "{:.3f}"),
                         num(h.at("memory_mass"), "{:.4f}"), num(h.at("joint_softmax_memory_share"), "{:.4f}"),
                         num(h.at("mean_distance"), "{:.0f}"));
      for (auto& e : stats.at("distance_edges"))
        out += fmt::format("  {:>8}", num(h.at("share_within").at(std::to_string(e.get<int64_t>())), "{:.4f}"));
      out += fmt::format("  {:>9}\n", num(h.at("same_section_share"), "{:.4f}"));
    }
  }
  return out;
}

}  // namespace loom::pipeline
