// loom::serve API shapes: the OpenAI-style error object and the request parsers of the HTTP
// routes. Torch-free and socket-free so the parsers can be fuzzed (fuzz/fuzz_serve_request.cc).
// Shapes follow the OpenAI API reference ("error" objects, "object", "created", "usage"); the
// /v1/translations route is loom's own in the same style (docs in README "Server").
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::serve {

/// A request the server refuses: HTTP status plus the OpenAI error fields. Thrown by the
/// parsers and the services; the server turns it into the response
/// {"error": {"message", "type", "param", "code"}} with this status.
class ApiError : public std::runtime_error {
 public:
  /// status: 4xx/5xx; type: "invalid_request_error", "authentication_error", "not_found_error",
  /// "rate_limit_error", "timeout_error", "server_error"; param: the offending request field or
  /// ""; code: a short machine-readable code ("invalid_json", "model_not_found", ...) or "".
  ApiError(int status, std::string type, std::string message, std::string param = {}, std::string code = {});
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  /// {"error": {"message", "type", "param" (null when empty), "code" (null when empty)}}.
  nlohmann::json to_json() const;

 private:
  int status_;
  std::string type_, param_, code_;
};

/// 400 invalid_request_error naming param.
[[noreturn]] void bad_request(const std::string& param, const std::string& message,
                              const std::string& code = "invalid_value");

/// Parses a request body as a JSON object. Throws ApiError 400 ("invalid_json") for malformed
/// JSON or invalid UTF-8 and for a top-level value that is not an object.
nlohmann::json parse_json_object(std::string_view body);

/// POST /v1/translations request: {"model", "input": string | [string], "source_lang"?,
/// "target_lang"?, "beam_size"?, "format"?: "text"|"markdown", "stream"?: false}.
struct TranslationRequest {
  std::string model;
  std::vector<std::string> inputs;  ///< one entry per input text (a string input gives one)
  std::string source_lang, target_lang;  ///< "" = the model's default
  int64_t beam_size = 0;                 ///< 0 = the model's generation_config num_beams
  bool markdown = true;                  ///< "format": "markdown" (default, as `loom translate`) or "text"
};

/// Limits the parsers enforce (the server's configuration).
struct RequestLimits {
  size_t max_inputs = 256;         ///< entries of an "input" array
  size_t max_input_bytes = 1 << 20;  ///< bytes of all input texts together
  int64_t max_beam_size = 16;
};

/// Parses and validates a /v1/translations body. Throws ApiError 400 naming the field for
/// malformed JSON, a missing/non-string "model", "input" missing, not a string or array of
/// strings, empty (no text, or an empty string), over the limits, not valid UTF-8; a
/// non-string language; beam_size not an integer in [1, max_beam_size]; format not "text" or
/// "markdown"; "stream": true (this route does not stream; code "stream_not_supported");
/// unknown fields are ignored (as OpenAI does for extra fields).
TranslationRequest parse_translation_request(std::string_view body, const RequestLimits& limits);

/// A unique id with a prefix ("tr-" + 24 hex digits), as OpenAI's "chatcmpl-..." ids.
std::string new_id(const std::string& prefix);

/// Seconds since the Unix epoch (the "created" field).
int64_t unix_time();

}  // namespace loom::serve
