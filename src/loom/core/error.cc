#include "loom/core/error.h"

namespace loom {

std::string Where::str() const {
  std::string s = file;
  if (line > 0) s += (s.empty() ? "line " : ":") + std::to_string(line);
  if (!field.empty()) s += (s.empty() ? "" : ": ") + std::string("'") + field + "'";
  return s;
}

static std::string compose(const std::string& message, const Where& where) {
  std::string loc = where.str();
  return loc.empty() ? message : loc + ": " + message;
}

Error::Error(const std::string& message, Where where)
    : std::runtime_error(compose(message, where)), where_(std::move(where)), message_(message) {}

}  // namespace loom
