// `loom generate` / `loom chat` on HF decoder-only checkpoints, through the binary: HF's greedy
// continuation printed exactly, bad checkpoints and prompts rejected with one clear error, and
// the interactive chat driven under tmux (send keys, read the pane).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "loom/core/files.h"
#include "loom/io/checkpoint.h"
#include "support/support.h"

namespace {

namespace fs = std::filesystem;
using loom_test::run_loom;
using loom_test::TempDir;

const std::string kGemma = std::string(LOOM_TEST_DATA) + "/hf-tiny/gemma";
const std::string kGemma2 = std::string(LOOM_TEST_DATA) + "/hf-tiny/gemma2";

// The done-when command: echo "The quick brown fox" | loom generate ... --temperature 0.
TEST(HfGenerateCli, GreedyContinuationEqualsHf) {
  TempDir tmp;
  for (const auto& dir : {kGemma, kGemma2}) {
    auto ref = loom::core::read_json(dir + "/reference.json");
    const auto& c = ref["cases"][0];
    ASSERT_EQ(c["prompt"], "The quick brown fox");
    auto r = run_loom({"generate", "--model", dir, "--max-new-tokens", "20", "--temperature", "0"}, tmp.path(),
                      "The quick brown fox\n");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, c["greedy"]["text"].get<std::string>() + "\n") << dir;
    // --prompt gives the same.
    auto r2 = run_loom({"generate", "--model", dir, "--max-new-tokens", "20", "--temperature", "0", "--prompt",
                        "The quick brown fox"},
                       tmp.path());
    EXPECT_EQ(r2.out, r.out);
  }
}

// A stop string ends the output before it.
TEST(HfGenerateCli, StopStringCutsOutput) {
  TempDir tmp;
  auto ref = loom::core::read_json(kGemma + "/reference.json");
  const std::string full = ref["cases"][0]["greedy"]["text"];
  const std::string stop = "equ";
  ASSERT_NE(full.find(stop), std::string::npos);
  auto r = run_loom({"generate", "--model", kGemma, "--max-new-tokens", "20", "--temperature", "0", "--stop", stop},
                    tmp.path(), "The quick brown fox");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, full.substr(0, full.find(stop)) + "\n");
}

// Copies a checkpoint dir, then lets `edit` change its tensors before they are written back.
fs::path edited_copy(const TempDir& tmp, const std::string& name,
                     const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  fs::path out = tmp.path() / name;
  fs::create_directories(out);
  for (const auto& e : fs::directory_iterator(kGemma)) fs::copy_file(e.path(), out / e.path().filename());
  loom::io::HfCheckpoint ck(kGemma);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& n : ck.names()) tensors.emplace_back(n, ck.load(n));
  edit(tensors);
  loom::io::write_safetensors((out / "model.safetensors").string(), tensors);
  return out;
}

TEST(HfGenerateCli, BadCheckpointsAreOneClearError) {
  TempDir tmp;
  struct Case {
    std::string name, expect;
    std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)> edit;
  };
  std::vector<Case> cases = {
      {"missing", "'model.layers.1.mlp.up_proj.weight': missing tensor",
       [](auto& t) {
         t.erase(std::remove_if(t.begin(), t.end(), [](auto& p) { return p.first == "model.layers.1.mlp.up_proj.weight"; }),
                 t.end());
       }},
      {"extra", "'model.layers.9.mlp.up_proj.weight': unexpected tensor",
       [](auto& t) { t.emplace_back("model.layers.9.mlp.up_proj.weight", torch::zeros({2})); }},
      {"shape", "'model.norm.weight': wrong shape 65",
       [](auto& t) {
         for (auto& p : t)
           if (p.first == "model.norm.weight") p.second = torch::zeros({65});
       }},
      {"nan", "'model.layers.0.self_attn.q_proj.weight': holds NaN or Inf",
       [](auto& t) {
         for (auto& p : t)
           if (p.first == "model.layers.0.self_attn.q_proj.weight") p.second[3][5] = std::nanf("");
       }},
  };
  for (const auto& c : cases) {
    auto dir = edited_copy(tmp, c.name, c.edit);
    auto r = run_loom({"generate", "--model", dir.string(), "--prompt", "hi"}, tmp.path());
    EXPECT_NE(r.code, 0) << c.name;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    EXPECT_EQ(r.out, "") << c.name;
  }
  // A truncated weights file.
  auto dir = edited_copy(tmp, "truncated", [](auto&) {});
  fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") - 100);
  auto r = run_loom({"generate", "--model", dir.string(), "--prompt", "hi"}, tmp.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
  // An unknown model_type names it.
  auto cfg = loom::core::read_json(dir.string() + "/config.json");
  cfg["model_type"] = "falcon";
  std::ofstream(dir / "config.json") << cfg.dump();
  r = run_loom({"generate", "--model", dir.string(), "--prompt", "hi"}, tmp.path());
  EXPECT_NE(r.code, 0);
}

TEST(HfGenerateCli, PromptLongerThanContextNamesBothLengths) {
  TempDir tmp;
  std::string prompt;
  for (int i = 0; i < 400; ++i) prompt += "x ";  // > 256 tokens (max_position_embeddings of the fixture)
  auto r = run_loom({"generate", "--model", kGemma, "--max-new-tokens", "5"}, tmp.path(), prompt);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("context window is 256 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the prompt has "), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(HfGenerateCli, BadCountsRefusedAndTheContextWindowStopIsSaid) {
  TempDir tmp;
  for (const char* n : {"-5", "0"}) {
    auto r = run_loom({"generate", "--model", kGemma, "--prompt", "hi", "--max-new-tokens", n}, tmp.path());
    EXPECT_EQ(r.code, 1) << n;
    EXPECT_NE(r.err.find("'--max-new-tokens': must be >= 1, got " + std::string(n)), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  auto r = run_loom({"generate", "--model", kGemma, "--prompt", "hi", "--threads", "-4"}, tmp.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("'--threads': must be >= 0, got -4"), std::string::npos) << r.err;
  // More new tokens than the window of 256 holds: generation ends there and says so.
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt += "x ";  // 201 tokens; greedy reaches 256 without an eos
  r = run_loom({"generate", "--model", kGemma, "--max-new-tokens", "1000", "--temperature", "0"},
               tmp.path(), prompt);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("stopped at the model's context window of 256 tokens (prompt 201 tokens, 55 generated)"),
            std::string::npos) << r.err;
}

// A line that is not UTF-8 is refused on its own; the conversation goes on (no tmux needed).
TEST(HfChatCli, InvalidUtf8LineIsRefusedAndTheChatContinues) {
  TempDir tmp;
  auto r = run_loom({"chat", "--model", kGemma, "--max-new-tokens", "5", "--temperature", "0"}, tmp.path(),
                    "hi\n\xff\xfe\nmore\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(this message is not valid UTF-8 (bad byte 0xFF at byte 0 of the line): not sent)"),
            std::string::npos) << r.out;
  // Three prompts were shown after the banner line ("> " before each input line), two answered.
  size_t prompts = 0;
  for (size_t p = r.out.find("> "); p != std::string::npos; p = r.out.find("> ", p + 2)) ++prompts;
  EXPECT_GE(prompts, 4u) << r.out;  // hi, the bad line, more, end of input
}

// --- loom chat under tmux -------------------------------------------------------------------

std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

class Tmux {
 public:
  explicit Tmux(const std::string& command) : name_("loomchat" + std::to_string(::getpid())) {
    sh("tmux kill-session -t " + name_ + " 2>/dev/null");
    sh("tmux new-session -d -x 200 -y 50 -s " + name_ + " '" + command + "; sleep 30'");
  }
  ~Tmux() { sh("tmux kill-session -t " + name_ + " 2>/dev/null"); }
  void keys(const std::string& k) { sh("tmux send-keys -t " + name_ + " " + k); }
  std::string pane() { return sh("tmux capture-pane -p -J -S -200 -t " + name_); }
  // Waits until the pane holds `text` `count` times (or gives up after `seconds`).
  bool wait_for(const std::string& text, int count = 1, int seconds = 60) {
    for (int i = 0; i < seconds * 10; ++i) {
      auto p = pane();
      int n = 0;
      for (size_t at = p.find(text); at != std::string::npos; at = p.find(text, at + 1)) ++n;
      if (n >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string name_;
};

TEST(HfChatCli, TwoTurnsCtrlCAndResetUnderTmux) {
  if (sh("command -v tmux").empty()) GTEST_SKIP() << "tmux is not installed (scripts/install-deps.sh installs it)";
  // Slow streaming (--delay-ms) so that Ctrl-C lands mid-answer.
  Tmux t(std::string(LOOM_BINARY) + " chat --model " + kGemma + " --temperature 0 --max-new-tokens 40 --delay-ms 60");
  ASSERT_TRUE(t.wait_for("> ")) << t.pane();
  t.keys("'Hello there' Enter");
  ASSERT_TRUE(t.wait_for("> ", 2)) << t.pane();  // first answer done, prompt again
  t.keys("'And again?' Enter");
  ASSERT_TRUE(t.wait_for("> ", 3)) << t.pane();
  const auto after_two = t.pane();
  // Long answer interrupted with Ctrl-C: "[stopped]", and the chat is still running.
  t.keys("'Tell me a long story' Enter");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  t.keys("C-c");
  ASSERT_TRUE(t.wait_for("[stopped]")) << t.pane();
  ASSERT_TRUE(t.wait_for("> ", 4)) << t.pane();
  t.keys("/reset Enter");
  ASSERT_TRUE(t.wait_for("(conversation reset)")) << t.pane();
  // After /reset the first question gets the same answer as at the start (greedy, empty history).
  t.keys("'Hello there' Enter");
  ASSERT_TRUE(t.wait_for("> ", 6)) << t.pane();
  t.keys("/exit Enter");
  const auto p = t.pane();
  // The answer lines after each "> Hello there" prompt are identical.
  auto answer_after = [&](size_t from) {
    auto at = p.find("> Hello there\n", from);
    if (at == std::string::npos) return std::string("<none>");
    at += 14;
    return p.substr(at, p.find("\n> ", at) - at);
  };
  const auto first = p.find("> Hello there\n");
  ASSERT_NE(first, std::string::npos) << p;
  const auto second = p.find("> Hello there\n", first + 1);
  ASSERT_NE(second, std::string::npos) << p;
  EXPECT_EQ(answer_after(first), answer_after(second)) << p;
  EXPECT_NE(after_two.find("> And again?"), std::string::npos) << after_two;
}

}  // namespace
