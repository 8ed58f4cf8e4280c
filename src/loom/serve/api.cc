#include "loom/serve/api.h"

#include <atomic>
#include <chrono>
#include <random>
#include <set>

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

// j[key], or nullptr when the field is absent or null (OpenAI treats both as "not given").
const nlohmann::json* present(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string optional_string(const nlohmann::json& j, const char* key) {
  const nlohmann::json* it = present(j, key);
  if (!it) return {};
  if (!it->is_string()) bad_request(key, fmt::format("'{}' must be a string", key), "invalid_type");
  return it->get<std::string>();
}

std::string required_model(const nlohmann::json& j) {
  const nlohmann::json* model = present(j, "model");
  if (!model) bad_request("model", "'model' is required", "missing_field");
  if (!model->is_string()) bad_request("model", "'model' must be a string", "invalid_type");
  return model->get<std::string>();
}

// "stream": absent/null/false -> false; a non-boolean -> 400; true on a route that does not
// stream -> 400 stream_not_supported naming the route.
bool stream_flag(const nlohmann::json& j, const char* route_without_stream) {
  const nlohmann::json* stream = present(j, "stream");
  if (!stream) return false;
  if (!stream->is_boolean()) bad_request("stream", "'stream' must be a boolean", "invalid_type");
  const bool on = stream->get<bool>();
  if (on && route_without_stream)
    bad_request("stream", fmt::format("{} does not stream; send \"stream\": false or leave it out", route_without_stream),
                "stream_not_supported");
  return on;
}

// "input": a non-empty string or a non-empty array of non-empty strings within the limits.
std::vector<std::string> input_texts(const nlohmann::json& j, const RequestLimits& limits) {
  std::vector<std::string> inputs;
  const nlohmann::json* input = present(j, "input");
  if (!input) bad_request("input", "'input' is required", "missing_field");
  if (input->is_string()) {
    inputs.push_back(input->get<std::string>());
  } else if (input->is_array()) {
    if (input->size() > limits.max_inputs)
      bad_request("input", fmt::format("'input' has {} texts, over the limit of {}", input->size(), limits.max_inputs),
                  "too_many_inputs");
    for (size_t i = 0; i < input->size(); ++i) {
      if (!(*input)[i].is_string())
        bad_request("input", fmt::format("'input[{}]' must be a string", i), "invalid_type");
      inputs.push_back((*input)[i].get<std::string>());
    }
  } else {
    bad_request("input", "'input' must be a string or an array of strings", "invalid_type");
  }
  if (inputs.empty()) bad_request("input", "'input' is empty", "empty_input");
  size_t bytes = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].empty())
      bad_request("input", inputs.size() == 1 ? std::string("'input' is empty") : fmt::format("'input[{}]' is empty", i),
                  "empty_input");
    bytes += inputs[i].size();
  }
  if (bytes > limits.max_input_bytes)
    bad_request("input", fmt::format("'input' has {} bytes, over the limit of {}", bytes, limits.max_input_bytes),
                "input_too_large");
  return inputs;
}

// The head of the "input" routes (/v1/embeddings, /v1/translations): the body as a JSON
// object, its "model", no "stream" (the 400 names route) and its "input" texts.
struct InputHead {
  nlohmann::json j;
  std::string model;
  std::vector<std::string> inputs;
};

InputHead input_head(std::string_view body, const char* route, const RequestLimits& limits) {
  InputHead h;
  h.j = parse_json_object(body);
  h.model = required_model(h.j);
  stream_flag(h.j, route);
  h.inputs = input_texts(h.j, limits);
  return h;
}

// A number field within [lo, hi] (lo excluded when lo_open); absent/null keeps `value`.
void number_field(const nlohmann::json& j, const char* key, double lo, bool lo_open, double hi, double& value) {
  const nlohmann::json* it = present(j, key);
  if (!it) return;
  if (!it->is_number()) bad_request(key, fmt::format("'{}' must be a number", key), "invalid_type");
  const double v = it->get<double>();
  if (!(lo_open ? v > lo : v >= lo) || !(v <= hi))
    bad_request(key, fmt::format("'{}' must be in {}{}, {}], got {}", key, lo_open ? "(" : "[", lo, hi, v));
  value = v;
}

GenerationRequest generation_fields(const nlohmann::json& j) {
  GenerationRequest g;
  g.model = required_model(j);
  g.stream = stream_flag(j, nullptr);
  number_field(j, "temperature", 0.0, false, 2.0, g.temperature);
  number_field(j, "top_p", 0.0, true, 1.0, g.top_p);
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    const nlohmann::json* it = present(j, key);
    if (!it) continue;
    if (!it->is_number_integer()) bad_request(key, fmt::format("'{}' must be an integer", key), "invalid_type");
    const int64_t v = it->get<int64_t>();
    if (v < 1) bad_request(key, fmt::format("'{}' must be at least 1, got {}", key, v));
    g.max_tokens = v;
  }
  if (const nlohmann::json* stop = present(j, "stop")) {
    if (stop->is_string()) {
      g.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > 4) bad_request("stop", fmt::format("'stop' has {} strings, at most 4 are allowed", stop->size()));
      for (const auto& s : *stop) {
        if (!s.is_string()) bad_request("stop", "'stop' must be a string or an array of strings", "invalid_type");
        g.stop.push_back(s.get<std::string>());
      }
    } else {
      bad_request("stop", "'stop' must be a string or an array of strings", "invalid_type");
    }
    for (const auto& s : g.stop)
      if (s.empty()) bad_request("stop", "'stop' strings must not be empty");
  }
  if (const nlohmann::json* seed = present(j, "seed")) {
    if (!seed->is_number_integer()) bad_request("seed", "'seed' must be an integer", "invalid_type");
    g.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  }
  if (const nlohmann::json* n = present(j, "n")) {
    if (!n->is_number_integer()) bad_request("n", "'n' must be an integer", "invalid_type");
    if (n->get<int64_t>() != 1) bad_request("n", "only n = 1 is supported", "unsupported_value");
  }
  if (const nlohmann::json* options = present(j, "stream_options")) {
    if (!options->is_object()) bad_request("stream_options", "'stream_options' must be an object", "invalid_type");
    auto usage = options->find("include_usage");
    if (usage != options->end() && !usage->is_null()) {
      if (!usage->is_boolean())
        bad_request("stream_options", "'stream_options.include_usage' must be a boolean", "invalid_type");
      g.include_usage = usage->get<bool>();
    }
  }
  return g;
}

}  // namespace

ChatRequest parse_chat_request(std::string_view body, const RequestLimits& limits) {
  const nlohmann::json j = parse_json_object(body);
  ChatRequest r;
  r.gen = generation_fields(j);
  const nlohmann::json* messages = present(j, "messages");
  if (!messages) bad_request("messages", "'messages' is required", "missing_field");
  if (!messages->is_array()) bad_request("messages", "'messages' must be an array", "invalid_type");
  if (messages->empty()) bad_request("messages", "'messages' is empty", "empty_input");
  if (messages->size() > limits.max_inputs)
    bad_request("messages", fmt::format("'messages' has {} entries, over the limit of {}", messages->size(),
                                        limits.max_inputs), "too_many_inputs");
  static const std::set<std::string> roles = {"system", "user", "assistant", "developer", "tool"};
  r.messages = nlohmann::json::array();
  size_t bytes = 0;
  for (size_t i = 0; i < messages->size(); ++i) {
    const auto& m = (*messages)[i];
    const std::string at = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad_request("messages", fmt::format("'{}' must be an object", at), "invalid_type");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      bad_request("messages", fmt::format("'{}.role' must be a string", at), role == m.end() ? "missing_field" : "invalid_type");
    if (!roles.count(role->get<std::string>()))
      bad_request("messages", fmt::format("'{}.role' must be one of system, user, assistant, developer, tool; got \"{}\"",
                                          at, role->get<std::string>()));
    auto content = m.find("content");
    std::string text;
    if (content == m.end() || content->is_null()) {
      bad_request("messages", fmt::format("'{}.content' is required", at), "missing_field");
    } else if (content->is_string()) {
      text = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t k = 0; k < content->size(); ++k) {
        const auto& part = (*content)[k];
        auto type = part.is_object() ? part.find("type") : part.end();
        auto t = part.is_object() ? part.find("text") : part.end();
        if (!part.is_object() || type == part.end() || !type->is_string() || *type != "text" || t == part.end() ||
            !t->is_string())
          bad_request("messages", fmt::format("'{}.content[{}]' must be {{\"type\": \"text\", \"text\": string}}", at, k),
                      "invalid_type");
        text += t->get<std::string>();
      }
    } else {
      bad_request("messages", fmt::format("'{}.content' must be a string or an array of text parts", at), "invalid_type");
    }
    bytes += text.size();
    r.messages.push_back({{"role", role->get<std::string>()}, {"content", std::move(text)}});
  }
  if (bytes > limits.max_input_bytes)
    bad_request("messages", fmt::format("'messages' have {} bytes, over the limit of {}", bytes, limits.max_input_bytes),
                "input_too_large");
  return r;
}

CompletionRequest parse_completion_request(std::string_view body, const RequestLimits& limits) {
  const nlohmann::json j = parse_json_object(body);
  CompletionRequest r;
  r.gen = generation_fields(j);
  const nlohmann::json* prompt = present(j, "prompt");
  if (!prompt) bad_request("prompt", "'prompt' is required", "missing_field");
  if (prompt->is_array()) {
    if (prompt->size() != 1 || !(*prompt)[0].is_string()) {
      if (!prompt->empty() && (*prompt)[0].is_number_integer())
        bad_request("prompt", "token-id prompts are not supported; send the text", "unsupported_value");
      bad_request("prompt", "'prompt' must be a string or an array holding one string (n = 1 prompt per request)",
                  prompt->empty() ? "empty_input" : "invalid_type");
    }
    r.prompt = (*prompt)[0].get<std::string>();
  } else if (prompt->is_string()) {
    r.prompt = prompt->get<std::string>();
  } else {
    bad_request("prompt", "'prompt' must be a string", "invalid_type");
  }
  if (r.prompt.empty()) bad_request("prompt", "'prompt' is empty", "empty_input");
  if (r.prompt.size() > limits.max_input_bytes)
    bad_request("prompt", fmt::format("'prompt' has {} bytes, over the limit of {}", r.prompt.size(), limits.max_input_bytes),
                "input_too_large");
  return r;
}

EmbeddingRequest parse_embedding_request(std::string_view body, const RequestLimits& limits) {
  InputHead h = input_head(body, "/v1/embeddings", limits);
  const nlohmann::json& j = h.j;
  EmbeddingRequest r;
  r.model = std::move(h.model);
  r.inputs = std::move(h.inputs);
  const std::string format = optional_string(j, "encoding_format");
  if (format == "base64") {
    r.base64 = true;
  } else if (!format.empty() && format != "float") {
    bad_request("encoding_format", fmt::format("'encoding_format' must be \"float\" or \"base64\", got \"{}\"", format));
  }
  if (present(j, "dimensions"))
    bad_request("dimensions", "'dimensions' is not supported (the model's own size is returned)", "unsupported_value");
  return r;
}

TranslationRequest parse_translation_request(std::string_view body, const RequestLimits& limits) {
  InputHead h = input_head(body, "/v1/translations", limits);
  const nlohmann::json& j = h.j;
  TranslationRequest r;
  r.model = std::move(h.model);
  r.inputs = std::move(h.inputs);
  r.source_lang = optional_string(j, "source_lang");
  r.target_lang = optional_string(j, "target_lang");
  if (const nlohmann::json* beam = present(j, "beam_size")) {
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
