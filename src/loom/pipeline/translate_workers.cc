#include "loom/pipeline/translate_workers.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/pipeline/translate_job.h"

namespace loom::pipeline {
namespace {

std::string describe(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return "stopped";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Copies the complete shard outputs, in order, into `output` (temp + fsync + rename).
void merge_shards(const WorkerPoolOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(o.output, ec) && !o.replace_merged)
    fail(Where{o.output, 0, "--merge"}, "the merged output exists; pass --overwrite or --resume to replace it");
  for (int i = 0; i < o.nproc; ++i) {
    const std::string shard = shard_output_path(o.output, i, o.nproc);
    const std::string state_path = shard + ".loom-state.json";
    std::ifstream in(state_path);
    nlohmann::json state;
    try {
      state = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(Where{state_path, 0, "--merge"}, "cannot read the shard's state ({}); is shard {} complete?", e.what(), i);
    }
    if (!state.is_object() || !state.value("done", false))
      fail(Where{state_path, 0, "--merge"}, "shard {} of {} is not complete; rerun with --resume", i, o.nproc);
    const auto want = state.value("output_bytes", int64_t{-1});
    if (want >= 0 && static_cast<int64_t>(fs::file_size(shard, ec)) != want)
      fail(Where{shard, 0, "--merge"}, "shard output has {} bytes, its state says {}", fs::file_size(shard, ec), want);
  }
  const std::string tmp = o.output + ".tmp." + std::to_string(::getpid());
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr) fail(Where{tmp, 0, ""}, "cannot create: {}", std::strerror(errno));
  std::vector<char> buf(1 << 20);
  bool ok = true;
  for (int i = 0; i < o.nproc && ok; ++i) {
    const std::string shard = shard_output_path(o.output, i, o.nproc);
    std::FILE* in = std::fopen(shard.c_str(), "rb");
    if (in == nullptr) {
      std::fclose(out);
      std::remove(tmp.c_str());
      fail(Where{shard, 0, ""}, "cannot open: {}", std::strerror(errno));
    }
    size_t n = 0;
    while (ok && (n = std::fread(buf.data(), 1, buf.size(), in)) > 0) ok = std::fwrite(buf.data(), 1, n, out) == n;
    ok = ok && !std::ferror(in);
    std::fclose(in);
  }
  ok = ok && std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
  const int err = errno;
  ok = std::fclose(out) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), o.output.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(Where{o.output, 0, "--merge"}, "cannot write the merged output: {}", std::strerror(ok ? errno : err));
  }
}

}  // namespace

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  std::vector<std::string> args;
  for (size_t b = 0; b < all.size();) {
    size_t e = all.find('\0', b);
    if (e == std::string::npos) e = all.size();
    args.push_back(all.substr(b, e - b));
    b = e + 1;
  }
  if (!args.empty()) args.erase(args.begin());
  return args;
}

int run_translate_workers(const WorkerPoolOptions& o, const std::string& input) {
  if (o.nproc < 1) fail(Where{"", 0, "--nproc"}, "must be >= 1, got {}", o.nproc);
  if (input == "-") fail(Where{"<stdin>", 0, "--nproc"}, "cannot share stdin between workers; give the input as a file");
  if (o.output == "-") fail(Where{"<stdout>", 0, "--nproc"}, "workers write one output per shard; give OUTPUT as a file");
  const std::string exe = o.exe.empty() ? std::string("/proc/self/exe") : o.exe;
  std::vector<std::string> base;  // the command line without --nproc N and --merge
  bool has_threads = false;
  for (size_t i = 0; i < o.args.size(); ++i) {
    const std::string& a = o.args[i];
    if (a == "--nproc") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0 || a == "--merge") continue;
    has_threads = has_threads || a == "--threads" || a.rfind("--threads=", 0) == 0;
    base.push_back(a);
  }

  std::vector<pid_t> pids(static_cast<size_t>(o.nproc), -1);
  for (int i = 0; i < o.nproc; ++i) {
    std::vector<std::string> args = base;
    args.push_back("--shard");
    args.push_back(fmt::format("{}/{}", i, o.nproc));
    args.push_back("--no-progress");
    if (!has_threads && o.threads_per_worker > 0) {
      args.push_back("--threads");
      args.push_back(std::to_string(o.threads_per_worker));
    }
    std::vector<char*> argv;
    std::string argv0 = "loom";
    argv.push_back(argv0.data());
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) fail(Where{"", 0, "--nproc"}, "cannot start worker {}: {}", i, std::strerror(errno));
    if (pid == 0) {
      ::execv(exe.c_str(), argv.data());
      std::fprintf(stderr, "loom translate: cannot run %s: %s\n", exe.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    pids[static_cast<size_t>(i)] = pid;
    if (o.log) std::fprintf(o.log, "loom translate: worker %d/%d (pid %d) -> %s\n", i, o.nproc, static_cast<int>(pid),
                            shard_output_path(o.output, i, o.nproc).c_str());
  }

  int result = 0, running = o.nproc;
  bool forwarded = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);  // polled: the stop flag is checked too
    if (pid < 0 && errno != EINTR) break;
    if (pid <= 0) {
      if (o.stop != nullptr && *o.stop != 0 && !forwarded) {  // let every worker checkpoint
        for (pid_t p : pids)
          if (p > 0) ::kill(p, SIGTERM);
        forwarded = true;
      }
      ::usleep(50 * 1000);
      continue;
    }
    for (int i = 0; i < o.nproc; ++i) {
      if (pids[static_cast<size_t>(i)] != pid) continue;
      pids[static_cast<size_t>(i)] = -1;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (o.log) std::fprintf(o.log, "loom translate: worker %d/%d %s\n", i, o.nproc, ok ? "done" : describe(status).c_str());
      if (!ok && result == 0) result = exit_code(status);
    }
  }
  if (result != 0) {
    if (o.log) std::fprintf(o.log, "loom translate: not every shard is complete; rerun the same command with --resume\n");
    return result;
  }
  if (o.merge) {
    merge_shards(o);
    if (o.log) std::fprintf(o.log, "loom translate: merged %d shards into %s\n", o.nproc, o.output.c_str());
  }
  return 0;
}

}  // namespace loom::pipeline
