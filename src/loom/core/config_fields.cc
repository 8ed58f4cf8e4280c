#include "loom/core/config_fields.h"

#include <nlohmann/json.hpp>

#include "loom/core/error.h"

namespace loom::core {
namespace {

// The value of `key`, or nullptr when it is absent or null.
const nlohmann::json* find_value(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

template <typename T>
T defaulted(const std::optional<T>& def, const std::string& file, const char* key) {
  if (!def) fail(Where{file, 0, key}, "required field is missing");
  return *def;
}

}  // namespace

int64_t get_int(const nlohmann::json& j, const std::string& file, const char* key, std::optional<int64_t> def,
                int64_t min_value) {
  const nlohmann::json* v = find_value(j, key);
  if (v == nullptr) return defaulted(def, file, key);
  if (!v->is_number_integer()) fail(Where{file, 0, key}, "expected an integer, got {}", v->dump());
  const int64_t x = v->get<int64_t>();
  if (x < min_value) fail(Where{file, 0, key}, "must be >= {}, got {}", min_value, x);
  return x;
}

double get_double(const nlohmann::json& j, const std::string& file, const char* key, std::optional<double> def,
                  double lo, double hi, bool hi_open) {
  const nlohmann::json* v = find_value(j, key);
  if (v == nullptr) return defaulted(def, file, key);
  if (!v->is_number()) fail(Where{file, 0, key}, "expected a number, got {}", v->dump());
  const double x = v->get<double>();
  if (!(x >= lo) || (hi_open ? !(x < hi) : !(x <= hi)))
    fail(Where{file, 0, key}, "must be in [{}, {}{}, got {}", lo, hi, hi_open ? ")" : "]", x);
  return x;
}

bool get_bool(const nlohmann::json& j, const std::string& file, const char* key, std::optional<bool> def) {
  const nlohmann::json* v = find_value(j, key);
  if (v == nullptr) return defaulted(def, file, key);
  if (!v->is_boolean()) fail(Where{file, 0, key}, "expected true or false, got {}", v->dump());
  return v->get<bool>();
}

std::string get_string(const nlohmann::json& j, const std::string& file, const char* key,
                       std::optional<std::string> def) {
  const nlohmann::json* v = find_value(j, key);
  if (v == nullptr) return defaulted(def, file, key);
  if (!v->is_string()) fail(Where{file, 0, key}, "expected a string, got {}", v->dump());
  return v->get<std::string>();
}

}  // namespace loom::core
