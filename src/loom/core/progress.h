// loom::core::Progress — one self-updating status line for long jobs (translate, train), in the
// style of tqdm / pv: rewritten in place with '\r' at most a few times per second, and only
// when the stream is a terminal, so logs and pipes never fill with progress noise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace loom::core {

/// "1h02m03s", "4m05s", "7s" for a duration in seconds (negative or non-finite -> "?").
std::string format_duration(double seconds);

/// "532", "12.3k", "4.56M", "7.89G" for a count (3 significant digits above 1000).
std::string format_count(double n);

/// True if the stream is an interactive terminal (isatty on its file descriptor).
bool is_terminal(std::FILE* stream);

/// A rate-limited, in-place progress line. Not thread-safe: call from the job's own thread.
class Progress {
 public:
  struct Options {
    bool live = true;                ///< draw the line at all (callers pass is_terminal(out) && !quiet)
    double min_interval_s = 0.25;    ///< at most one redraw per interval (4/s by default)
    int64_t total_bytes = -1;        ///< size of the work in bytes, -1 when unknown (stdin)
    int64_t start_bytes = 0;         ///< bytes already done before this run (a resumed job)
  };

  /// out: where the line goes (stderr for the CLI). The clock starts now.
  Progress(std::FILE* out, Options options);

  /// Redraws the line if live and at least min_interval_s passed since the last redraw (or
  /// force): "<text> | 42.0% | 1m05s elapsed | ETA 1m30s". bytes_done counts from the start of
  /// the work (so includes start_bytes); the ETA extrapolates this run's rate, (bytes_done -
  /// start_bytes) / elapsed; percentage and ETA are left out when total_bytes is unknown.
  /// Returns true if it drew.
  bool update(int64_t bytes_done, std::string_view text, bool force = false);

  /// Clears the live line (if one was drawn) and writes line + '\n' whether live or not.
  void finish(std::string_view line);

  /// Seconds since construction.
  double elapsed() const;

 private:
  std::FILE* out_;
  Options options_;
  std::chrono::steady_clock::time_point start_;
  double last_draw_ = -1.0;  ///< elapsed() at the last redraw, -1 = never
  std::size_t last_width_ = 0;
};

}  // namespace loom::core
