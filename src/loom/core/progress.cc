#include "loom/core/progress.h"

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

namespace loom::core {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(seconds + 0.5);
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  if (h > 0) return fmt::format("{}h{:02}m{:02}s", h, m, s);
  if (m > 0) return fmt::format("{}m{:02}s", m, s);
  return fmt::format("{}s", s);
}

std::string format_count(double n) {
  if (!std::isfinite(n)) return "?";
  const double a = std::fabs(n);
  if (a < 1000) return fmt::format("{:.{}f}", n, (n == std::floor(n)) ? 0 : 1);
  static const char* units[] = {"k", "M", "G", "T", "P"};
  double v = n / 1000;
  int u = 0;
  while (std::fabs(v) >= 999.5 && u < 4) {
    v /= 1000;
    ++u;
  }
  const int decimals = std::fabs(v) < 9.995 ? 2 : (std::fabs(v) < 99.95 ? 1 : 0);
  return fmt::format("{:.{}f}{}", v, decimals, units[u]);
}

bool is_terminal(std::FILE* stream) { return stream != nullptr && isatty(fileno(stream)) == 1; }

Progress::Progress(std::FILE* out, Options options)
    : out_(out), options_(options), start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool Progress::update(int64_t bytes_done, std::string_view text, bool force) {
  if (!options_.live || out_ == nullptr) return false;
  const double t = elapsed();
  if (!force && last_draw_ >= 0 && t - last_draw_ < options_.min_interval_s) return false;
  last_draw_ = t;
  std::string line(text);
  if (options_.total_bytes > 0) {
    const double frac = std::min(1.0, static_cast<double>(bytes_done) / options_.total_bytes);
    line += fmt::format(" | {:.1f}%", 100.0 * frac);
  }
  line += fmt::format(" | {} elapsed", format_duration(t));
  const int64_t done_now = bytes_done - options_.start_bytes;
  if (options_.total_bytes > 0 && done_now > 0) {
    const double remaining = t * static_cast<double>(options_.total_bytes - bytes_done) / done_now;
    line += fmt::format(" | ETA {}", format_duration(std::max(0.0, remaining)));
  }
  // Pad with spaces over a longer previous line (no terminal escape codes needed).
  const std::size_t width = line.size();
  if (width < last_width_) line.append(last_width_ - width, ' ');
  last_width_ = width;
  std::fputc('\r', out_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
  return true;
}

void Progress::finish(std::string_view line) {
  if (out_ == nullptr) return;
  if (options_.live && last_draw_ >= 0) {
    std::fputc('\r', out_);
    std::fwrite(std::string(last_width_, ' ').data(), 1, last_width_, out_);
    std::fputc('\r', out_);
  }
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

}  // namespace loom::core
