// Readers for the fields of a JSON config object (config.json, generation_config.json, training
// configs): the one place that decides what "absent", "null" and "wrong type" mean. Every config
// struct's from_json and every CLI config section read their fields through these.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace loom::core {

/// Integer field `key` of object `j`. Absent or null -> `def`; with no default, throws
/// loom::Error naming `file` and `key` ("required field is missing"). Throws when the value is not
/// an integer ("expected an integer, got ...") or is below `min_value` ("must be >= ...").
int64_t get_int(const nlohmann::json& j, const std::string& file, const char* key,
                std::optional<int64_t> def, int64_t min_value = std::numeric_limits<int64_t>::min());

/// Number field `key` (integer or float). Absent or null -> `def` (required when nullopt).
/// Throws loom::Error naming `file` and `key` when the value is not a number or lies outside
/// [lo, hi] ([lo, hi) when `hi_open`); the default range accepts every finite or infinite double.
double get_double(const nlohmann::json& j, const std::string& file, const char* key,
                  std::optional<double> def, double lo = -std::numeric_limits<double>::infinity(),
                  double hi = std::numeric_limits<double>::infinity(), bool hi_open = false);

/// Boolean field `key`. Absent or null -> `def` (required when nullopt). Throws loom::Error naming
/// `file` and `key` when the value is not true/false ("expected true or false, got ...").
bool get_bool(const nlohmann::json& j, const std::string& file, const char* key, std::optional<bool> def);

/// String field `key`. Absent or null -> `def` (required when nullopt). Throws loom::Error naming
/// `file` and `key` when the value is not a string ("expected a string, got ...").
std::string get_string(const nlohmann::json& j, const std::string& file, const char* key,
                       std::optional<std::string> def);

}  // namespace loom::core
