// loom::serve API shapes: the OpenAI-style error object and the request parsers of the HTTP
// routes. Torch-free and socket-free so the parsers can be fuzzed (fuzz/fuzz_serve_request.cc).
// Shapes follow the OpenAI API reference ("error" objects, "object", "created", "usage"); the
// /v1/translations route is loom's own in the same style (docs in README "Server").
#pragma once

#include <cstdint>
#include <optional>
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

/// Sampling and stopping fields shared by /v1/chat/completions and /v1/completions (OpenAI
/// names and defaults: temperature 1, top_p 1).
struct GenerationRequest {
  std::string model;
  double temperature = 1.0;        ///< [0, 2]; 0 = greedy
  double top_p = 1.0;              ///< (0, 1]
  int64_t max_tokens = 0;          ///< 0 = not given (the route's default)
  std::vector<std::string> stop;   ///< up to 4 non-empty stop strings (cut from the text)
  std::optional<uint64_t> seed;    ///< sampler seed; absent = a random one
  bool stream = false;             ///< server-sent events
  bool include_usage = false;      ///< stream_options.include_usage: a last chunk with usage
};

/// POST /v1/chat/completions: messages [{"role": string, "content": string | [{"type":"text",
/// "text": string}]}] (content parts joined into one string) and GenerationRequest fields.
struct ChatRequest {
  GenerationRequest gen;
  nlohmann::json messages;  ///< normalised: [{"role", "content": string}]
};

/// POST /v1/completions: one prompt (a string or an array holding one string).
struct CompletionRequest {
  GenerationRequest gen;
  std::string prompt;
};

/// POST /v1/embeddings: "input" string or array of strings; "encoding_format" float | base64.
struct EmbeddingRequest {
  std::string model;
  std::vector<std::string> inputs;
  bool base64 = false;
};

/// Parses a /v1/chat/completions body. Throws ApiError 400 naming the field: malformed JSON;
/// "model" missing or not a string; "messages" missing, not an array, empty, over max_inputs,
/// an entry that is not an object with a string "role" (system/user/assistant/developer/tool)
/// and a string (or text-parts array) "content"; all messages together over max_input_bytes;
/// temperature not a number in [0, 2]; top_p not a number in (0, 1]; max_tokens /
/// max_completion_tokens not a positive integer; stop not a string or an array of at most 4
/// strings; seed not an integer; n other than 1 (code "unsupported_value"); stream not a
/// boolean; stream_options not an object.
ChatRequest parse_chat_request(std::string_view body, const RequestLimits& limits);

/// Parses a /v1/completions body: as parse_chat_request for the shared fields; "prompt"
/// missing, empty, not a string (an array must hold exactly one string; token-id prompts are
/// refused with code "unsupported_value"), or over max_input_bytes -> 400 param "prompt".
CompletionRequest parse_completion_request(std::string_view body, const RequestLimits& limits);

/// Parses a /v1/embeddings body: "model" as above; "input" a non-empty string or a non-empty
/// array of non-empty strings (at most max_inputs, max_input_bytes together; token arrays
/// refused as invalid_type); "encoding_format" "float" (default) or "base64"; "stream": true
/// refused (code "stream_not_supported"); "dimensions" refused (code "unsupported_value").
EmbeddingRequest parse_embedding_request(std::string_view body, const RequestLimits& limits);

/// Parses and validates a /v1/translations body. Throws ApiError 400 naming the field for
/// malformed JSON, a missing/non-string "model", "input" missing, not a string or array of
/// strings, empty (no text, or an empty string), over the limits, not valid UTF-8; a
/// non-string language; beam_size not an integer in [1, max_beam_size]; format not "text" or
/// "markdown"; "stream": true (this route does not stream; code "stream_not_supported");
/// unknown fields are ignored (as OpenAI does for extra fields).
TranslationRequest parse_translation_request(std::string_view body, const RequestLimits& limits);

/// Bounds of a model service (the server's flags): translation, decoder-LLM and embedding
/// services all take it.
struct ServiceLimits {
  int64_t max_input_tokens = 16384;   ///< tokens of one request's input (prompt / all segments, specials included)
  size_t max_queued = 64;             ///< queued requests; more -> 429 (code "queue_full")
  double timeout_seconds = 120;       ///< per request, from enqueue; then 504 and the work is dropped
  int64_t max_batch_segments = 1024;  ///< translation: segments of the running requests in the decode
                                      ///< batch; a queued request joins when it fits (alone: always)
  int64_t max_tokens = 2048;          ///< LLM: largest "max_tokens" a request may ask for (400 above)
  int64_t max_running = 32;           ///< LLM: sequences in the running decode batch (the rest wait)
  int step_delay_ms = 0;              ///< pause after each decode step, LLM or translation (demos, the
                                      ///< browser test's stop button, the disconnect tests)
};

/// A unique id with a prefix ("tr-" + 24 hex digits), as OpenAI's "chatcmpl-..." ids.
std::string new_id(const std::string& prefix);

/// Seconds since the Unix epoch (the "created" field).
int64_t unix_time();

}  // namespace loom::serve
