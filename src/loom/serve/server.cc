#include "loom/serve/server.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <httplib.h>

#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::serve {

using Clock = std::chrono::steady_clock;

ModelKind detect_model_kind(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  const nlohmann::json config = core::read_json(path);
  auto it = config.find("model_type");
  if (it == config.end() || !it->is_string()) fail(Where{path, 0, "model_type"}, "required string field is missing");
  const std::string type = it->get<std::string>();
  static const std::set<std::string> translation = {"marian", "m2m_100", "nllb", "loom_seq2seq"};
  static const std::set<std::string> embedding = {"bert"};
  static const std::set<std::string> decoder = {"gemma", "gemma2", "gemma3_text", "llama", "mistral", "qwen2",
                                                "qwen3", "phi3", "loom_decoder_lm"};
  if (translation.count(type)) return ModelKind::kTranslation;
  if (embedding.count(type)) return ModelKind::kEmbedding;
  if (decoder.count(type)) return ModelKind::kDecoderLm;
  fail(Where{path, 0, "model_type"}, "unsupported model_type \"{}\" (translation: marian, m2m_100, loom_seq2seq; "
       "embeddings: bert; decoder LLMs: gemma, gemma2, llama, ...)", type);
}

Server::Server(ServerOptions options) : options_(std::move(options)), created_(unix_time()) {
  if (options_.models.empty()) fail(Where{"", 0, "--model"}, "no model given; pass --model NAME=DIR");
  for (const auto& [name, dir] : options_.models) {
    if (name.empty()) fail(Where{"", 0, "--model"}, "empty model name in NAME=DIR");
    if (translation_.count(name) || llm_.count(name) || embedding_.count(name))
      fail(Where{"", 0, "--model"}, "model name '{}' is given twice", name);
    switch (detect_model_kind(dir)) {
      case ModelKind::kTranslation:
        translation_[name] = std::make_unique<TranslationService>(name, dir, metrics_, options_.service_limits,
                                                                  options_.compute_type);
        break;
      case ModelKind::kEmbedding:
        embedding_[name] = std::make_unique<EmbeddingService>(name, dir, metrics_, options_.service_limits);
        break;
      case ModelKind::kDecoderLm:
        llm_[name] = std::make_unique<LlmService>(name, dir, metrics_, options_.service_limits, options_.compute_type);
        break;
    }
  }
  http_ = std::make_unique<httplib::Server>();
  const int threads = std::max(1, options_.http_threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  // A stalled client (headers sent, body never) frees its worker thread after 10 s.
  http_->set_read_timeout(10, 0);
  http_->set_write_timeout(30, 0);
  // One server per address: httplib's default socket options add SO_REUSEPORT, with which a
  // second `loom serve` binds the same port and takes part of the connections. SO_REUSEADDR
  // only (a restart may rebind while old connections sit in TIME_WAIT).
  http_->set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd_ = sock;  // the last socket tried is the one that bound
  });
  register_routes();
}

Server::~Server() { stop(); }

void Server::bind() {
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
    if (port_ < 0) fail(Where{"", 0, "--host"}, "cannot bind {} (any port)", options_.host);
  } else {
    if (!http_->bind_to_port(options_.host, options_.port))
      fail(Where{"", 0, "--port"}, "cannot bind {}:{} (address in use or not permitted)", options_.host, options_.port);
    port_ = options_.port;
  }
  // Debian's compiled cpp-httplib 0.11.4 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG):
  // a burst of new connections (64 clients at once) overflows the accept queue. Linux lets a
  // second listen() on the bound socket raise it.
  if (listen_fd_ >= 0 && ::listen(listen_fd_, SOMAXCONN) != 0)
    fail(Where{"", 0, "--port"}, "cannot raise the listen backlog: {}", std::strerror(errno));
}

void Server::listen() { http_->listen_after_bind(); }

void Server::stop() {
  if (http_) http_->stop();
}

bool Server::authorized(const std::string& authorization) const {
  if (options_.api_key.empty()) return true;
  const std::string expected = "Bearer " + options_.api_key;
  if (authorization.size() != expected.size()) return false;
  unsigned char diff = 0;  // constant-time compare
  for (size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(authorization[i] ^ expected[i]);
  return diff == 0;
}

namespace {

// The accepted socket of req: httplib 0.11 does not expose it, so find the descriptor of this
// process whose peer is req's remote address and port and whose local port is the server's.
// -1 when not found. The socket stays open (and ours) while the handler runs.
int request_socket(const httplib::Request& req, int server_port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != 0 || fd < 0) continue;
    sockaddr_storage peer{}, local{};
    socklen_t plen = sizeof(peer), llen = sizeof(local);
    if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &plen) != 0) continue;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &llen) != 0) continue;
    char host[INET6_ADDRSTRLEN] = {0};
    int peer_port = -1, local_port = -1;
    if (peer.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
      ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      peer_port = ntohs(a->sin_port);
      local_port = ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
      ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      peer_port = ntohs(a->sin6_port);
      local_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
    } else {
      continue;
    }
    if (peer_port == req.remote_port && local_port == server_port && req.remote_addr == host) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// True once the client has closed (or reset) the connection of socket fd: a non-blocking peek
// reads end-of-stream or fails with a connection error. A pipelined next request (data
// waiting) is not a close.
bool peer_closed(int fd) {
  char c = 0;
  const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  return false;
}

void send_json(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e, int retry_after) {
  if (e.status() == 429) res.set_header("Retry-After", std::to_string(retry_after));
  send_json(res, e.status(), e.to_json());
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// The socket of req and a poll telling whether its client has gone (empty when not found).
std::function<bool()> client_gone(const httplib::Request& req, int port) {
  const int fd = request_socket(req, port);
  if (fd < 0) return {};
  return [fd] { return peer_closed(fd); };
}

// The shapes of /v1/chat/completions and /v1/completions (OpenAI API reference).
struct GenerationShape {
  bool chat;
  std::string id, model;
  int64_t created;
  nlohmann::json usage(const GenerationUpdate& u) const {
    return {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens}};
  }
  nlohmann::json finish(const GenerationUpdate& u) const {
    return u.finish_reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(u.finish_reason);
  }
  // The non-streamed response.
  nlohmann::json response(const GenerationUpdate& u) const {
    nlohmann::json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish(u)}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", u.text}};
    else
      choice["text"] = u.text;
    return {{"id", id},
            {"object", chat ? "chat.completion" : "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", nlohmann::json::array({choice})},
            {"usage", usage(u)}};
  }
  // One streamed chunk: a text delta (first: with the role), or the last one with finish_reason.
  nlohmann::json chunk(const std::string& text, bool first, const nlohmann::json& finish_reason) const {
    nlohmann::json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
    if (chat) {
      nlohmann::json delta = nlohmann::json::object();
      if (first) delta["role"] = "assistant";
      if (!text.empty() || (first && finish_reason.is_null())) delta["content"] = text;
      choice["delta"] = delta;
    } else {
      choice["text"] = text;
    }
    return {{"id", id},
            {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", nlohmann::json::array({choice})}};
  }
};

std::string sse(const nlohmann::json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace

void Server::unknown_model(const std::string& model, const char* kind) const {
  const bool other = translation_.count(model) || llm_.count(model) || embedding_.count(model);
  if (other)
    throw ApiError(400, "invalid_request_error", fmt::format("the model '{}' is not {}", model, kind), "model",
                   "wrong_model_kind");
  throw ApiError(404, "not_found_error", fmt::format("the model '{}' does not exist", model), "model",
                 "model_not_found");
}

LlmService& Server::llm(const std::string& model) {
  auto it = llm_.find(model);
  if (it == llm_.end()) unknown_model(model, "a decoder LLM (chat/completions)");
  return *it->second;
}

EmbeddingService& Server::embedding(const std::string& model) {
  auto it = embedding_.find(model);
  if (it == embedding_.end()) unknown_model(model, "an embedding model");
  return *it->second;
}

void Server::register_routes() {
  // The announced body size is checked before any body byte is read: httplib itself would first
  // read (and drop) an oversized body, so a client that announces one and sends nothing held a
  // worker thread with no answer.
  http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!req.has_header("Content-Length")) return httplib::Server::HandlerResponse::Unhandled;
    const std::string v = req.get_header_value("Content-Length");
    const bool digits = !v.empty() && v.size() <= 18 && v.find_first_not_of("0123456789") == std::string::npos;
    if (digits && std::stoull(v) <= static_cast<unsigned long long>(options_.max_body_bytes))
      return httplib::Server::HandlerResponse::Unhandled;
    const int status = digits ? 413 : 400;
    const std::string message =
        digits ? fmt::format("the request body ({} bytes) is over the limit of {} bytes", v, options_.max_body_bytes)
               : fmt::format("Content-Length '{}' is not a byte count", v.substr(0, 40));
    send_json(res, status,
              ApiError(status, "invalid_request_error", message, "", digits ? "body_too_large" : "bad_request").to_json());
    res.set_header("Connection", "close");  // the unread body must not be parsed as a next request
    metrics_.record_request("other", status, 0);
    return httplib::Server::HandlerResponse::Handled;
  });
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  // Every route: authentication for /v1/, ApiError and unexpected exceptions -> error objects,
  // metrics by route and status.
  auto wrap = [this](std::string route, bool needs_auth, Handler handler) {
    return [this, route, needs_auth, handler](const httplib::Request& req, httplib::Response& res) {
      const auto start = Clock::now();
      try {
        if (needs_auth && !authorized(req.get_header_value("Authorization")))
          throw ApiError(401, "authentication_error", "missing or wrong API key (send 'Authorization: Bearer KEY')", "",
                         "invalid_api_key");
        handler(req, res);
      } catch (const ApiError& e) {
        send_error(res, e, options_.retry_after_seconds);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, "server_error", std::string("internal error: ") + e.what(), "", "internal_error"),
                   options_.retry_after_seconds);
      }
      metrics_.record_request(route, res.status, std::chrono::duration<double>(Clock::now() - start).count());
    };
  };

  http_->Get("/", wrap("/", false, [](const httplib::Request&, httplib::Response& res) {
    res.set_content(web_page(), "text/html; charset=utf-8");
  }));
  http_->Get("/health", wrap("/health", false, [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}});
  }));
  http_->Get("/metrics", wrap("/metrics", false, [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  }));
  http_->Get("/v1/models", wrap("/v1/models", true, [this](const httplib::Request&, httplib::Response& res) {
    nlohmann::json data = nlohmann::json::array();
    // OpenAI's model object plus loom's "kind" and the kind's own fields.
    auto add = [&](const std::string& name, const char* kind, nlohmann::json fields) {
      nlohmann::json m = {{"id", name}, {"object", "model"}, {"created", created_}, {"owned_by", "loom"}, {"kind", kind}};
      m.update(fields);
      data.push_back(std::move(m));
    };
    for (const auto& [name, service] : translation_)
      add(name, "translation",
          {{"languages", service->languages()},
           {"default_source_lang", service->default_source_lang()},
           {"default_target_lang", service->default_target_lang()}});
    for (const auto& [name, service] : llm_)
      add(name, service->has_chat_template() ? "chat" : "completion", {{"context_length", service->context_length()}});
    for (const auto& [name, service] : embedding_) add(name, "embedding", {{"dimensions", service->dim()}});
    send_json(res, 200, {{"object", "list"}, {"data", data}});
  }));
  http_->Post("/v1/translations",
              wrap("/v1/translations", true, [this](const httplib::Request& req, httplib::Response& res) {
                const TranslationRequest r = parse_translation_request(req.body, options_.request_limits);
                auto it = translation_.find(r.model);
                if (it == translation_.end()) unknown_model(r.model, "a translation model");
                send_json(res, 200, it->second->translate(r, client_gone(req, port_)));
              }));
  http_->Post("/v1/embeddings", wrap("/v1/embeddings", true, [this](const httplib::Request& req, httplib::Response& res) {
    const EmbeddingRequest r = parse_embedding_request(req.body, options_.request_limits);
    send_json(res, 200, embedding(r.model).embed(r));
  }));
  // Chat and completions: the same generation, two request/response shapes.
  auto generation_route = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      GenerationRequest gen;
      std::shared_ptr<Generation> g;
      LlmService* service = nullptr;
      if (chat) {
        const ChatRequest r = parse_chat_request(req.body, options_.request_limits);
        service = &llm(r.gen.model);
        gen = r.gen;
        g = service->start_chat(r);
      } else {
        const CompletionRequest r = parse_completion_request(req.body, options_.request_limits);
        service = &llm(r.gen.model);
        gen = r.gen;
        g = service->start_completion(r);
      }
      const auto shape = std::make_shared<GenerationShape>(
          GenerationShape{chat, new_id(chat ? "chatcmpl-" : "cmpl-"), gen.model, unix_time()});
      auto gone = client_gone(req, port_);
      if (!gen.stream) {
        try {
          send_json(res, 200, shape->response(service->wait(*g, gone)));
        } catch (...) {
          service->cancel(*g);
          throw;
        }
        return;
      }
      // Server-sent events: one chunk per text delta, a last chunk with finish_reason, usage
      // when stream_options.include_usage, then "data: [DONE]". An error after the headers went
      // out is sent as an event {"error": {...}}.
      res.status = 200;
      res.set_header("Cache-Control", "no-cache");
      auto first = std::make_shared<bool>(true);
      const bool include_usage = gen.include_usage;
      res.set_chunked_content_provider(
          "text/event-stream",
          [service, g, shape, first, gone, include_usage](size_t, httplib::DataSink& sink) {
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            if (gone && gone()) {
              service->cancel(*g);
              return false;
            }
            GenerationUpdate u;
            try {
              u = service->next(*g, std::chrono::milliseconds(50));
            } catch (const std::exception& e) {
              const auto* api = dynamic_cast<const ApiError*>(&e);
              const ApiError error = api ? *api : ApiError(500, "server_error", e.what(), "", "internal_error");
              write("data: " + dump(error.to_json()) + "\n\n");
              write("data: [DONE]\n\n");
              sink.done();
              return true;
            }
            if (*first || !u.text.empty()) {
              if (!write(sse(shape->chunk(u.text, *first, nullptr)))) {
                service->cancel(*g);
                return false;
              }
              *first = false;
            }
            if (u.finished) {
              bool ok = write(sse(shape->chunk("", false, shape->finish(u))));
              if (ok && include_usage) {
                nlohmann::json last = shape->chunk("", false, nullptr);
                last["choices"] = nlohmann::json::array();
                last["usage"] = shape->usage(u);
                ok = write(sse(last));
              }
              ok = ok && write("data: [DONE]\n\n");
              sink.done();
              return ok;
            }
            return true;
          },
          [service, g](bool success) {
            if (!success) service->cancel(*g);
          });
    };
  };
  http_->Post("/v1/chat/completions", wrap("/v1/chat/completions", true, generation_route(true)));
  http_->Post("/v1/completions", wrap("/v1/completions", true, generation_route(false)));
  // httplib's own errors (unknown route 404, 413 body too large, 400 bad request line) as
  // OpenAI-style objects.
  http_->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message;
    std::string code;
    switch (res.status) {
      case 404:
        message = fmt::format("no route {} {}", req.method, req.path);
        code = "unknown_route";
        break;
      case 413:
        message = fmt::format("the request body is over the limit of {} bytes", options_.max_body_bytes);
        code = "body_too_large";
        break;
      case 405:
        message = fmt::format("method {} is not allowed on {}", req.method, req.path);
        code = "method_not_allowed";
        break;
      default:
        message = fmt::format("bad request ({})", res.status);
        code = "bad_request";
    }
    const std::string type = res.status == 404 ? "not_found_error" : "invalid_request_error";
    send_json(res, res.status, ApiError(res.status, type, message, "", code).to_json());
    metrics_.record_request("other", res.status, 0);
  });
}

}  // namespace loom::serve
