// Helpers for tests that run the real `loom` executable (LOOM_BINARY) as a child process: start
// it with stderr to a log file, wait for it, kill it with SIGKILL at a random moment, read files.
// Shared by the kill -9 + resume tests of the training commands.
#pragma once

#include <signal.h>
#include "support/paths.h"
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace loom_test {

/// Whole file as bytes ("" when missing).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Starts `loom args...` (no shell) with stderr redirected to `log`; returns the child's pid.
inline pid_t spawn_loom(const std::vector<std::string>& args, const std::filesystem::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!std::freopen(log.c_str(), "w", stderr)) _exit(126);
    static std::string bin = LOOM_BINARY;
    std::vector<std::string> copy = args;
    std::vector<char*> argv{bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

/// Runs `loom args...` to the end; returns its exit code (128 + signal when killed).
inline int run_loom_to_end(const std::vector<std::string>& args, const std::filesystem::path& log) {
  int status = 0;
  waitpid(spawn_loom(args, log), &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace loom_test
