#include "loom/serve/api.h"

#include <atomic>
#include <chrono>
#include <random>

#include <fmt/format.h>

#include "loom/core/utf8.h"

namespace loom::serve {

ApiError::ApiError(int status, std::string type, std::string message, std::string param, std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      type_(std::move(type)),
      param_(std::move(param)),
      code_(std::move(code)) {}

nlohmann::json ApiError::to_json() const {
  nlohmann::json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) e["param"] = param_;
  if (!code_.empty()) e["code"] = code_;
  return {{"error", e}};
}

void bad_request(const std::string& param, const std::string& message, const std::string& code) {
  throw ApiError(400, "invalid_request_error", message, param, code);
}

nlohmann::json parse_json_object(std::string_view body) {
  if (!core::is_valid_utf8(body)) bad_request("", "the request body is not valid UTF-8", "invalid_json");
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    bad_request("", "the request body is not valid JSON", "invalid_json");
  if (!j.is_object()) bad_request("", "the request body must be a JSON object", "invalid_json");
  return j;
}

namespace {

std::string optional_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) bad_request(key, fmt::format("'{}' must be a string", key), "invalid_type");
  return it->get<std::string>();
}

}  // namespace

TranslationRequest parse_translation_request(std::string_view body, const RequestLimits& limits) {
  const nlohmann::json j = parse_json_object(body);
  TranslationRequest r;
  auto model = j.find("model");
  if (model == j.end() || model->is_null()) bad_request("model", "'model' is required", "missing_field");
  if (!model->is_string()) bad_request("model", "'model' must be a string", "invalid_type");
  r.model = model->get<std::string>();

  auto stream = j.find("stream");
  if (stream != j.end() && !stream->is_null()) {
    if (!stream->is_boolean()) bad_request("stream", "'stream' must be a boolean", "invalid_type");
    if (stream->get<bool>())
      bad_request("stream", "/v1/translations does not stream; send \"stream\": false or leave it out",
                  "stream_not_supported");
  }

  auto input = j.find("input");
  if (input == j.end() || input->is_null()) bad_request("input", "'input' is required", "missing_field");
  if (input->is_string()) {
    r.inputs.push_back(input->get<std::string>());
  } else if (input->is_array()) {
    if (input->size() > limits.max_inputs)
      bad_request("input", fmt::format("'input' has {} texts, over the limit of {}", input->size(), limits.max_inputs),
                  "too_many_inputs");
    for (size_t i = 0; i < input->size(); ++i) {
      if (!(*input)[i].is_string())
        bad_request("input", fmt::format("'input[{}]' must be a string", i), "invalid_type");
      r.inputs.push_back((*input)[i].get<std::string>());
    }
  } else {
    bad_request("input", "'input' must be a string or an array of strings", "invalid_type");
  }
  if (r.inputs.empty()) bad_request("input", "'input' is empty", "empty_input");
  size_t bytes = 0;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    if (r.inputs[i].empty())
      bad_request("input", r.inputs.size() == 1 ? std::string("'input' is empty") : fmt::format("'input[{}]' is empty", i),
                  "empty_input");
    bytes += r.inputs[i].size();
  }
  if (bytes > limits.max_input_bytes)
    bad_request("input", fmt::format("'input' has {} bytes, over the limit of {}", bytes, limits.max_input_bytes),
                "input_too_large");

  r.source_lang = optional_string(j, "source_lang");
  r.target_lang = optional_string(j, "target_lang");
  auto beam = j.find("beam_size");
  if (beam != j.end() && !beam->is_null()) {
    if (!beam->is_number_integer()) bad_request("beam_size", "'beam_size' must be an integer", "invalid_type");
    const int64_t b = beam->get<int64_t>();
    if (b < 1 || b > limits.max_beam_size)
      bad_request("beam_size", fmt::format("'beam_size' must be in [1, {}], got {}", limits.max_beam_size, b));
    r.beam_size = b;
  }
  const std::string format = optional_string(j, "format");
  if (format.empty() || format == "markdown") {
    r.markdown = true;
  } else if (format == "text") {
    r.markdown = false;
  } else {
    bad_request("format", fmt::format("'format' must be \"text\" or \"markdown\", got \"{}\"", format));
  }
  return r;
}

std::string new_id(const std::string& prefix) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(counter++));
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace loom::serve
