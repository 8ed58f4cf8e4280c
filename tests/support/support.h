// Shared test support: temporary directories, whole-file helpers, running the real `loom`
// executable (LOOM_BINARY) as a child process (to the end, or killed at a chosen moment), and
// the message of an expected loom::Error. Every test file uses these instead of its own copy.
#pragma once

#include <gtest/gtest.h>
#include "support/paths.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace loom_test {

namespace fs = std::filesystem;

/// A fresh, empty directory under the system temp dir, named after the running test; removed
/// on destruction unless the test failed (so a failure leaves its files to inspect).
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "loom";
    for (char& c : name)
      if (c == '/') c = '_';
    path_ = fs::temp_directory_path() /
            ("loom-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    if (!(info && info->result() && info->result()->Failed())) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  /// path() / name as a string.
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

/// Whole file as bytes ("" when missing).
inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Writes `bytes` to `p` (creating or truncating it); fails the test when it cannot.
inline void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << "cannot write " << p;
}

/// Lines of s without their '\n' (a final line without '\n' counts).
inline std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

/// What a finished child process left: exit code (128 + signal when killed), stdout, stderr.
struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

/// Starts `loom args...` (no shell) with stdin from `stdin_path` ("" = /dev/null), stdout to
/// `out_path` and stderr to `err_path`; returns the child's pid.
inline pid_t spawn_loom(const std::vector<std::string>& args, const fs::path& out_path,
                        const fs::path& err_path, const fs::path& stdin_path = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string in = stdin_path.empty() ? std::string("/dev/null") : stdin_path.string();
    if (!std::freopen(in.c_str(), "r", stdin)) _exit(126);
    if (!std::freopen(out_path.c_str(), "w", stdout)) _exit(126);
    if (!std::freopen(err_path.c_str(), "w", stderr)) _exit(126);
    static std::string bin = LOOM_BINARY;
    std::vector<std::string> copy = args;
    std::vector<char*> argv{bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

/// Waits for `pid`; returns its exit code, or 128 + signal when it was killed.
inline int wait_exit_code(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Runs `loom args...` to the end in `dir` (for its stdout/stderr files) with optional stdin
/// text; returns exit code, stdout and stderr.
inline RunResult run_loom(const std::vector<std::string>& args, const fs::path& dir,
                          const std::string& stdin_text = {}) {
  static std::atomic<int> counter{0};
  const std::string tag = std::to_string(counter++);
  const fs::path out = dir / ("stdout." + tag), err = dir / ("stderr." + tag);
  fs::path in;
  if (!stdin_text.empty()) {
    in = dir / ("stdin." + tag);
    std::ofstream(in, std::ios::binary) << stdin_text;
  }
  RunResult r;
  r.code = wait_exit_code(spawn_loom(args, out, err, in));
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

/// Starts `loom args...` and SIGKILLs it after `delay_ms` milliseconds (if still running);
/// returns the exit code (137 when the kill landed).
inline int run_loom_killed_after(const std::vector<std::string>& args, const fs::path& dir,
                                 int delay_ms) {
  const pid_t pid = spawn_loom(args, dir / "killed.stdout", dir / "killed.stderr");
  ::usleep(static_cast<useconds_t>(delay_ms) * 1000);
  ::kill(pid, SIGKILL);
  return wait_exit_code(pid);
}

/// The what() of the exception `f` throws, or "" when it throws none (a test then fails on
/// the expected substring). Use with loom::Error: EXPECT_THAT(error_of(...), HasSubstr(...)).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace loom_test
