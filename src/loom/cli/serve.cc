// `loom serve`: the OpenAI-compatible HTTP server (loom::serve::Server). Wiring only: flags ->
// ServerOptions, SIGINT/SIGTERM -> a clean stop.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <pthread.h>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/io/hub.h"
#include "loom/serve/server.h"

namespace loom::cli {
namespace {

struct ServeArgs {
  std::vector<std::string> models;
  std::string host = "127.0.0.1", api_key, compute_type = "float32";
  int port = 8080, threads = 0, http_threads = 64;
  size_t max_body_bytes = 4 << 20, max_queued = 64, max_inputs = 256;
  int64_t max_input_tokens = 16384, max_beam_size = 16, max_tokens = 2048, max_running = 32;
  int step_delay_ms = 0;
  double timeout = 120;
};

void run_serve(const ServeArgs& a) {
  serve::ServerOptions o;
  for (const std::string& m : a.models) {
    const size_t eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
      fail(Where{"", 0, "--model"}, "'{}' is not NAME=DIR or NAME=HUB_ID", m);
    o.models.emplace_back(m.substr(0, eq), io::resolve_model(m.substr(eq + 1)));
  }
  o.host = a.host;
  o.port = a.port;
  o.api_key = a.api_key;
  if (o.api_key.empty()) {
    if (const char* k = std::getenv("LOOM_API_KEY")) o.api_key = k;
  }
  o.max_body_bytes = a.max_body_bytes;
  o.request_limits.max_inputs = a.max_inputs;
  o.request_limits.max_input_bytes = a.max_body_bytes;
  o.request_limits.max_beam_size = a.max_beam_size;
  o.service_limits.max_input_tokens = a.max_input_tokens;
  o.service_limits.max_queued = a.max_queued;
  o.service_limits.timeout_seconds = a.timeout;
  o.service_limits.max_tokens = a.max_tokens;
  o.service_limits.max_running = a.max_running;
  o.service_limits.step_delay_ms = a.step_delay_ms;
  o.http_threads = a.http_threads;
  o.compute_type = a.compute_type;
  if (a.threads > 0) torch::set_num_threads(a.threads);

  // SIGINT/SIGTERM are handled by a watcher thread (sigwait), so every other thread has them
  // blocked: block before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  serve::Server server(o);
  server.bind();
  std::fprintf(stderr, "loom serve: listening on http://%s:%d (%zu model%s)%s\n", o.host.c_str(), server.port(),
               o.models.size(), o.models.size() == 1 ? "" : "s", o.api_key.empty() ? "" : ", API key required");
  std::fflush(stderr);
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    server.stop();
  });
  server.listen();
  // listen() also returns on a bind/accept failure: wake the watcher so it can be joined.
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  std::fprintf(stderr, "loom serve: stopped\n");
}

}  // namespace

void add_serve(CLI::App& app) {
  static ServeArgs a;
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (translation, chat/completions, embeddings; web page at /)");
  cmd->add_option("--model,-m", a.models, "NAME=DIR or NAME=HUB_ID; repeat for several models")->required();
  cmd->add_option("--host", a.host, "Address to bind (default 127.0.0.1: this machine only)")->capture_default_str();
  cmd->add_option("--port", a.port, "Port (0 = any free port, printed at start)")->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", a.api_key, "Require 'Authorization: Bearer KEY' on /v1/ (default $LOOM_API_KEY)");
  cmd->add_option("--max-body-bytes", a.max_body_bytes, "Largest request body (413 above)")->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 30));
  cmd->add_option("--max-inputs", a.max_inputs, "Most texts in one request's input array")->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  cmd->add_option("--max-input-tokens", a.max_input_tokens, "Most input tokens (source / prompt) in one request")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--max-beam-size", a.max_beam_size, "Largest beam_size a request may ask for")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{256}));
  cmd->add_option("--max-tokens", a.max_tokens, "Largest max_tokens a chat/completions request may ask for")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--max-running", a.max_running, "Sequences in an LLM's running decode batch (continuous batching)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option("--step-delay-ms", a.step_delay_ms, "Pause after each decode step (LLM and translation; demos, UI tests)")
      ->capture_default_str()->check(CLI::Range(0, 10000));
  cmd->add_option("--max-queued", a.max_queued, "Queued requests per model before 429 + Retry-After")
      ->capture_default_str()->check(CLI::Range(size_t{1}, size_t{1} << 20));
  cmd->add_option("--timeout", a.timeout, "Per-request timeout in seconds (504 after)")->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  cmd->add_option("--http-threads", a.http_threads, "Connections served at once")->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--compute-type", a.compute_type,
                  "Weights of translation and LLM models' linear layers: float32, int8, bf16 or auto "
                  "(as loom translate/chat; embedding models stay float32)")
      ->capture_default_str();
  cmd->add_option("--threads", a.threads, "Intra-op threads of the model (default: all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->callback([] { run_serve(a); });
}

}  // namespace loom::cli
