// loom::serve::RequestQueue — the bounded request queue and scheduler thread that every model
// service of the server (LlmService, TranslationService) is built around: HTTP threads push()
// work items (503 once stopping, 429 "queue_full" when max_queued are waiting), one scheduler
// thread takes them, and HTTP threads wait on news() for their results. Keeps the model's
// loom_queue_length / loom_running gauges (Metrics) up to date.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "loom/serve/api.h"
#include "loom/serve/metrics.h"

namespace loom::serve {

/// ApiError 504 "timeout": the request took longer than `seconds` and its work was dropped.
inline ApiError timeout_error(double seconds) {
  return ApiError(504, "timeout_error", fmt::format("the request took longer than {} s and was cancelled", seconds), "",
                  "timeout");
}

/// ApiError 499 "cancelled": the client closed its connection (the status nginx logs for it).
inline ApiError client_gone_error() {
  return ApiError(499, "invalid_request_error", "the client closed the connection", "", "cancelled");
}

/// A bounded FIFO of shared work items with its scheduler thread. Item is the service's
/// (opaque) job type. Every member documented "under mutex()" needs that lock held.
template <class Item>
class RequestQueue {
 public:
  /// model: the service's name (metric label, 429 message); max_queued: queued items beyond
  /// which push() answers 429. Sets the model's gauges to 0.
  RequestQueue(std::string model, Metrics& metrics, size_t max_queued)
      : model_(std::move(model)), metrics_(metrics), max_queued_(max_queued) {
    metrics_.set_queue_length(model_, 0);
    metrics_.set_running(model_, 0);
  }
  ~RequestQueue() { stop(); }
  RequestQueue(const RequestQueue&) = delete;
  RequestQueue& operator=(const RequestQueue&) = delete;

  /// Starts the scheduler thread running loop (once; the loop returns when stopping()).
  void start(std::function<void()> loop) { thread_ = std::thread(std::move(loop)); }

  /// Marks the queue stopping, wakes the scheduler and every waiter, joins the thread.
  /// Idempotent. A service calls it first in its destructor (the loop uses the service).
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    work_.notify_all();
    news_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  /// Enqueues item and wakes the scheduler. Throws ApiError 503 "shutting_down" once stopping,
  /// 429 "queue_full" (counted in loom_rejected_total) when max_queued items wait.
  void push(std::shared_ptr<Item> item) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
    if (items_.size() >= max_queued_) {
      metrics_.record_rejected();
      throw ApiError(429, "rate_limit_error",
                     fmt::format("{} requests are queued for model '{}'; retry later", items_.size(), model_), "",
                     "queue_full");
    }
    items_.push_back(std::move(item));
    queue_changed();
    work_.notify_one();
  }

  /// Removes item if it is still queued (a cancelled request). Under mutex().
  void remove(const std::shared_ptr<Item>& item) {
    for (auto it = items_.begin(); it != items_.end(); ++it) {
      if (*it == item) {
        items_.erase(it);
        break;
      }
    }
    queue_changed();
  }

  /// Items waiting now.
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }

  std::mutex& mutex() const { return mu_; }
  /// The scheduler waits on it for work (push, cancellations, stop).
  std::condition_variable& work() { return work_; }
  /// HTTP threads wait on it for results (the scheduler notifies after each step / round).
  std::condition_variable& news() { return news_; }
  /// Under mutex().
  bool stopping() const { return stopping_; }
  /// The queued items, oldest first. Under mutex(); call queue_changed() after taking some.
  std::deque<std::shared_ptr<Item>>& items() { return items_; }
  /// Publishes the queue length (loom_queue_length{model}). Under mutex().
  void queue_changed() { metrics_.set_queue_length(model_, static_cast<int64_t>(items_.size())); }
  /// Publishes how many sequences hold a slot in the running batch (loom_running{model}).
  void set_running(int64_t n) { metrics_.set_running(model_, n); }

 private:
  std::string model_;
  Metrics& metrics_;
  size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable work_, news_;
  std::deque<std::shared_ptr<Item>> items_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace loom::serve
