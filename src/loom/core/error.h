// loom::Error — the one exception type loom throws for bad input, bad configuration and I/O
// failures. It carries *where* the problem is (file, line/record, field or tensor name) so the
// CLI can print one clear message and exit non-zero.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace loom {

/// Location of a problem in the user's input. Every member is optional (empty / 0 = unknown).
struct Where {
  std::string file;    ///< path of the file being read
  int64_t line = 0;    ///< 1-based line number (text, JSONL) or record number
  std::string field;   ///< JSON field, tensor name, config key or CLI option

  /// "file:line: field 'x'" with the unknown parts left out; empty if nothing is known.
  std::string str() const;
};

/// Base class of every error loom reports to the user. what() is the full message, including
/// the location when one is known ("data.jsonl:17: field 'text': not valid UTF-8").
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, Where where = {});
  const Where& where() const { return where_; }
  const std::string& message() const { return message_; }

 private:
  Where where_;
  std::string message_;
};

/// Throws loom::Error(fmt::format(f, args...), where).
template <typename... Args>
[[noreturn]] void fail(Where where, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...), std::move(where));
}

/// Throws loom::Error(fmt::format(f, args...)) with no location.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace loom
