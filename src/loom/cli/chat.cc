// `loom chat --model DIR|ID [--system TEXT]`: interactive multi-turn chat with an HF decoder-only
// checkpoint in the terminal. Each turn renders the whole conversation with the model's chat
// template and streams the answer; only what follows the KV-cached prefix it shares with the
// previous turns is prefilled. When the rendered conversation plus the answer budget does
// not fit the context window, the oldest turns are dropped (and the user is told). /reset
// forgets the conversation, /exit (or end of input) leaves, Ctrl-C stops the current answer
// and returns to the prompt.
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "loom/cli/causal_session.h"
#include "loom/core/utf8.h"
#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/io/hub.h"

namespace loom::cli {
namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

struct ChatOptions {
  std::string model, system;
  int64_t max_new_tokens = 256, threads = 0;
  int delay_ms = 0;
  std::string compute_type = "float32";
  generate::SamplingOptions sampling;
};

void run_chat(const ChatOptions& o) {
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  generate::validate(o.sampling);
  const std::string dir = io::resolve_model(o.model);
  const auto config = core::read_json(dir + "/config.json");
  if (!models::is_hf_causal_lm(config))
    fail(Where{dir + "/config.json", 0, "model_type"}, "loom chat needs a Hugging Face chat model (gemma, llama, ...)");
  auto m = load_causal_model(dir, nn::parse_weight_type(o.compute_type, "--compute-type"));
  const int64_t ctx = m.model->config().max_position;
  generate::CausalGenerateOptions go;
  go.max_new_tokens = o.max_new_tokens;
  go.sampling = o.sampling;
  go.stop_ids = chat_stop_ids(m);
  // Check the template once, up front (an unsupported one is an error before the first turn).
  nlohmann::json history = nlohmann::json::array();
  if (!o.system.empty()) history.push_back({{"role", "system"}, {"content", o.system}});
  {
    auto probe = history;
    probe.push_back({{"role", "user"}, {"content", "hi"}});
    encode_chat(m, probe);
  }
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  std::printf("loom chat: %s (%s, context window %lld tokens). /reset forgets, /exit leaves, Ctrl-C stops an answer.\n",
              dir.c_str(), models::family_name(m.model->config().family), static_cast<long long>(ctx));
  std::string line;
  // The whole conversation with its KV cache: a turn prefills only what follows the cached
  // common prefix of the newly rendered conversation (the template may re-tokenize an answer).
  std::unique_ptr<generate::Sequence> conversation;
  for (;;) {
    std::printf("> ");
    std::fflush(stdout);
    g_interrupted.store(false);
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history = nlohmann::json::array();
      if (!o.system.empty()) history.push_back({{"role", "system"}, {"content", o.system}});
      conversation.reset();
      std::printf("(conversation reset)\n");
      continue;
    }
    if (line.empty()) continue;
    // A line the tokenizer cannot take is refused on its own; the conversation goes on.
    if (const size_t bad = core::utf8_error_offset(line); bad != std::string::npos) {
      std::printf("(this message is not valid UTF-8 (bad byte 0x%02X at byte %zu of the line): not sent)\n",
                  static_cast<unsigned>(static_cast<unsigned char>(line[bad])), bad);
      continue;
    }
    if (const size_t nul = line.find('\0'); nul != std::string::npos) {
      std::printf("(this message contains a NUL byte at byte %zu of the line: not sent)\n", nul);
      continue;
    }
    history.push_back({{"role", "user"}, {"content", line}});
    // Fit the context window: drop the oldest turns (keeping the system prompt and this turn).
    const size_t first = o.system.empty() ? 0 : 1;
    std::vector<int64_t> ids;
    int dropped = 0;
    bool fits = false;
    for (;;) {
      ids = encode_chat(m, history);
      if (static_cast<int64_t>(ids.size()) + std::min<int64_t>(go.max_new_tokens, ctx / 4) <= ctx) {
        fits = true;
        break;
      }
      if (history.size() <= first + 1) break;
      // Drop one user turn and the answer that followed it.
      history.erase(history.begin() + first);
      ++dropped;
      if (history.size() > first + 1 && history[first]["role"] == "assistant") history.erase(history.begin() + first);
    }
    if (dropped > 0) std::printf("(dropped the %d oldest message(s) to fit the context window of %lld tokens)\n",
                                 dropped, static_cast<long long>(ctx));
    if (!fits) {
      std::printf("(this message has %zu tokens with the template; the context window is %lld tokens: not sent)\n",
                  ids.size(), static_cast<long long>(ctx));
      history.erase(history.end() - 1);
      continue;
    }
    // The answer is bounded by --max-new-tokens and by the context window (Sequence stops there).
    continue_conversation(m, conversation, ids, go);
    std::string answer = stream_answer(m, *conversation, {}, stdout, &g_interrupted, o.delay_ms);
    if (g_interrupted.load()) std::printf(" [stopped]");
    std::printf("\n");
    history.push_back({{"role", "assistant"}, {"content", answer}});
  }
  std::printf("\n");
}

}  // namespace

void add_chat(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  auto* cmd = app.add_subcommand("chat", "Interactive chat with a Hugging Face chat model (streams the answers)");
  cmd->add_option("--model", o->model, "Model directory or hub id (config.json, weights, tokenizer with chat template)")
      ->required();
  cmd->add_option("--system", o->system, "System prompt (if the model's template supports one)");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "Most tokens per answer")->capture_default_str();
  cmd->add_option("--temperature", o->sampling.temperature, "Softmax temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Drop tokens below min_p x the top probability (0 = off)")
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", o->sampling.repetition_penalty, "HF/CTRL repetition penalty (1 = off)")
      ->capture_default_str();
  cmd->add_option("--seed", o->sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--threads", o->threads, "torch intra-op threads (0 = default)");
  cmd->add_option("--compute-type", o->compute_type, kComputeTypeHelp)->capture_default_str();
  cmd->add_option("--delay-ms", o->delay_ms, "Pause between streamed tokens (demos and interactive tests)");
  cmd->callback([o] { run_chat(*o); });
}

}  // namespace loom::cli
