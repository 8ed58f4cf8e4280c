#include "loom/serve/metrics.h"

#include <algorithm>

#include <fmt/format.h>

namespace loom::serve {

namespace {
const std::vector<double> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
const std::vector<double> kBatchBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
}  // namespace

void Metrics::Histogram::observe(double v) {
  if (counts.empty()) counts.assign(bounds.size() + 1, 0);
  const size_t i = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
  ++counts[i];
  sum += v;
  ++count;
}

Metrics::Metrics() {
  batch_requests_.bounds = kBatchBounds;
  batch_sequences_.bounds = kBatchBounds;
}

void Metrics::record_request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
  auto& h = latency_[route];
  if (h.bounds.empty()) h.bounds = kLatencyBounds;
  h.observe(seconds);
}

void Metrics::record_batch(int64_t requests, int64_t sequences, int64_t generated_tokens, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  batch_requests_.observe(static_cast<double>(requests));
  batch_sequences_.observe(static_cast<double>(sequences));
  generated_tokens_ += static_cast<uint64_t>(std::max<int64_t>(0, generated_tokens));
  if (seconds > 0) tokens_per_second_ = static_cast<double>(generated_tokens) / seconds;
}

void Metrics::set_queue_length(const std::string& model, int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_length_[model] = n;
}

void Metrics::set_running(const std::string& model, int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  running_[model] = n;
}

void Metrics::record_cancelled_sequences(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_sequences_ += static_cast<uint64_t>(std::max<int64_t>(0, n));
}

void Metrics::record_rejected() {
  std::lock_guard<std::mutex> lock(mu_);
  ++rejected_;
}

void Metrics::render_histogram(std::string& out, const std::string& name, const std::string& labels,
                               const Histogram& h) {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    cumulative += h.counts.empty() ? 0 : h.counts[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, h.bounds[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, h.count);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, h.sum, name, braces, h.count);
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  out += "# HELP loom_requests_total HTTP requests by route and status code.\n# TYPE loom_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("loom_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  out += "# HELP loom_request_duration_seconds Request latency by route.\n"
         "# TYPE loom_request_duration_seconds histogram\n";
  for (const auto& [route, h] : latency_)
    render_histogram(out, "loom_request_duration_seconds", fmt::format("route=\"{}\"", route), h);
  out += "# HELP loom_queue_length Requests waiting for the model's scheduler.\n# TYPE loom_queue_length gauge\n";
  for (const auto& [model, n] : queue_length_) out += fmt::format("loom_queue_length{{model=\"{}\"}} {}\n", model, n);
  out += "# HELP loom_running Sequences holding a slot in the model's running batch.\n# TYPE loom_running gauge\n";
  for (const auto& [model, n] : running_) out += fmt::format("loom_running{{model=\"{}\"}} {}\n", model, n);
  out += fmt::format("# HELP loom_rejected_total Requests refused with 429 (queue full).\n"
                     "# TYPE loom_rejected_total counter\nloom_rejected_total {}\n", rejected_);
  out += fmt::format("# HELP loom_cancelled_sequences_total Sequences dropped from a running batch because their "
                     "request was cancelled.\n# TYPE loom_cancelled_sequences_total counter\n"
                     "loom_cancelled_sequences_total {}\n", cancelled_sequences_);
  out += "# HELP loom_batch_requests Requests sharing one scheduler step (decoder step / translation step).\n"
         "# TYPE loom_batch_requests histogram\n";
  render_histogram(out, "loom_batch_requests", "", batch_requests_);
  out += "# HELP loom_batch_sequences Sequences (segments) in one scheduler batch.\n"
         "# TYPE loom_batch_sequences histogram\n";
  render_histogram(out, "loom_batch_sequences", "", batch_sequences_);
  out += fmt::format("# HELP loom_generated_tokens_total Tokens generated.\n# TYPE loom_generated_tokens_total counter\n"
                     "loom_generated_tokens_total {}\n", generated_tokens_);
  out += fmt::format("# HELP loom_tokens_per_second Generated tokens per second of the last batch.\n"
                     "# TYPE loom_tokens_per_second gauge\nloom_tokens_per_second {}\n", tokens_per_second_);
  return out;
}

}  // namespace loom::serve
