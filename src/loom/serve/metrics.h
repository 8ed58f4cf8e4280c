// loom::serve::Metrics — the server's counters, rendered in the Prometheus text exposition
// format (version 0.0.4) for GET /metrics. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace loom::serve {

/// Request counts, latency and batch-size histograms, queue length and generated tokens.
class Metrics {
 public:
  Metrics();
  /// One finished HTTP request: route ("/v1/translations"), status code, wall time (seconds).
  void record_request(const std::string& route, int status, double seconds);
  /// One shared forward run of the scheduler (one decode step of the running batch): requests
  /// and sequences it batched, tokens generated and its wall time (seconds). Translation counts
  /// a sentence's tokens (its best hypothesis) in the step where it finishes.
  void record_batch(int64_t requests, int64_t sequences, int64_t generated_tokens, double seconds);
  /// Current number of requests of model `model` waiting for its scheduler.
  void set_queue_length(const std::string& model, int64_t n);
  /// Current number of sequences (LLM generations; translation: sentences, each with its beams)
  /// that hold a slot in model `model`'s running batch.
  void set_running(const std::string& model, int64_t n);
  /// Sequences dropped from a running batch because their request was cancelled (client gone,
  /// timeout) before they finished.
  void record_cancelled_sequences(int64_t n);
  /// Requests refused with 429 because the queue was full.
  void record_rejected();
  /// Prometheus text: loom_requests_total{route,status}, loom_request_duration_seconds
  /// (histogram per route), loom_queue_length{model}, loom_running{model}, loom_batch_requests / loom_batch_sequences
  /// (histograms), loom_generated_tokens_total, loom_tokens_per_second (of the last batch),
  /// loom_rejected_total, loom_cancelled_sequences_total.
  std::string render() const;

 private:
  struct Histogram {
    std::vector<double> bounds;    // upper bounds (le), ascending; +Inf implied
    std::vector<uint64_t> counts;  // per bound (not cumulative); last = +Inf bucket
    double sum = 0;
    uint64_t count = 0;
    void observe(double v);
  };
  static void render_histogram(std::string& out, const std::string& name, const std::string& labels,
                               const Histogram& h);

  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram batch_requests_, batch_sequences_;
  uint64_t generated_tokens_ = 0, rejected_ = 0, cancelled_sequences_ = 0;
  double tokens_per_second_ = 0;
  std::map<std::string, int64_t> queue_length_, running_;  // by model
};

}  // namespace loom::serve
