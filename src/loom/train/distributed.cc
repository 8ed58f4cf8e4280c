#include "loom/train/distributed.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <cstdlib>
#include <cstring>

// ProcessGroupGloo's declarations are compiled only with USE_C10D_GLOO (libtorch was built with
// it; the symbols are in libtorch_cpu.so). Its header needs the gloo headers (libgloo-dev).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <limits>

#include "loom/core/error.h"

extern char** environ;

namespace loom::train {
namespace {

int env_int(const char* name, const char* fallback, int def, int lo, int hi) {
  const char* v = std::getenv(name);
  const char* used = name;
  if (!v || !*v) {
    if (fallback) {
      v = std::getenv(fallback);
      used = fallback;
    }
    if (!v || !*v) return def;
  }
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v, &end, 10);
  if (errno || *end != '\0' || x < lo || x > hi)
    fail(Where{"", 0, used}, "environment variable must be an integer in [{}, {}], got '{}'", lo, hi, v);
  return static_cast<int>(x);
}

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(const DistributedEnv& env, double timeout_s) : rank_(env.rank), world_(env.world_size) {
    auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(env.master_port);
      so.isServer = env.rank == 0;
      so.numWorkers = env.world_size;
      so.waitWorkers = true;
      so.timeout = timeout;
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      bool loopback = env.master_addr == "127.0.0.1" || env.master_addr == "localhost" ||
                      env.master_addr == "::1";
      if (ifname && *ifname)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (loopback)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env.rank, env.world_size, opts);
    } catch (const loom::Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(Where{"", 0, "MASTER_ADDR"}, "rank {} of {} could not join the process group at {}:{}: {}",
           env.rank, env.world_size, env.master_addr, env.master_port, e.what());
    }
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void all_reduce_sum(torch::Tensor& t) override {
    std::vector<at::Tensor> v{t};
    run("all-reduce", [&] { pg_->allreduce(v)->wait(); });
  }
  void broadcast(torch::Tensor& t, int root) override {
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run("broadcast", [&] { pg_->broadcast(v, o)->wait(); });
  }
  void barrier() override {
    run("barrier", [&] { pg_->barrier()->wait(); });
  }

 private:
  template <typename F>
  void run(const char* what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      fail("rank {} of {}: {} failed (did another worker die?): {}", rank_, world_, what, e.what());
    }
  }
  int rank_, world_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
};

}  // namespace

DistributedEnv distributed_env_from_environment() {
  DistributedEnv env;
  env.world_size = env_int("WORLD_SIZE", "SLURM_NTASKS", 1, 1, 1 << 20);
  env.rank = env_int("RANK", "SLURM_PROCID", 0, 0, 1 << 20);
  if (env.rank >= env.world_size)
    fail(Where{"", 0, "RANK"}, "rank {} must be < WORLD_SIZE {}", env.rank, env.world_size);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) {
    env.master_addr = a;
  } else {
    const char* list = std::getenv("SLURM_JOB_NODELIST");
    if (!list || !*list) list = std::getenv("SLURM_NODELIST");
    if (list && *list && env.world_size > 1) env.master_addr = expand_slurm_nodelist(list).front();
  }
  int default_port = 29500;
  if (const char* job = std::getenv("SLURM_JOB_ID"); job && *job && !std::getenv("MASTER_PORT"))
    default_port = 20000 + env_int("SLURM_JOB_ID", nullptr, 0, 0, std::numeric_limits<int>::max()) % 20000;
  env.master_port = env_int("MASTER_PORT", nullptr, default_port, 1, 65535);
  return env;
}

std::vector<std::string> expand_slurm_nodelist(const std::string& list) {
  const Where at{"", 0, "SLURM_JOB_NODELIST"};
  constexpr size_t kMaxHosts = 1000000;
  std::vector<std::string> hosts;
  // Split at commas outside brackets.
  std::vector<std::string> names;
  std::string cur;
  int depth = 0;
  for (char c : list) {
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) fail(at, "'{}': ']' without '['", list);
    if (c == ',' && depth == 0) {
      names.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (depth != 0) fail(at, "'{}': '[' without ']'", list);
  names.push_back(cur);
  for (const std::string& name : names) {
    if (name.empty()) fail(at, "'{}': empty host name", list);
    std::vector<std::string> partial = {""};
    size_t i = 0;
    while (i < name.size()) {
      const size_t open = name.find('[', i);
      const std::string literal = name.substr(i, open == std::string::npos ? std::string::npos : open - i);
      for (auto& p : partial) p += literal;
      if (open == std::string::npos) break;
      const size_t close = name.find(']', open);
      if (name.find('[', open + 1) < close) fail(at, "'{}': nested '['", list);
      std::vector<std::string> items;
      const std::string inside = name.substr(open + 1, close - open - 1);
      size_t b = 0;
      while (b <= inside.size()) {
        size_t e = inside.find(',', b);
        if (e == std::string::npos) e = inside.size();
        const std::string r = inside.substr(b, e - b);
        const size_t dash = r.find('-');
        const std::string lo_s = r.substr(0, dash), hi_s = dash == std::string::npos ? lo_s : r.substr(dash + 1);
        const auto digits = [](const std::string& x) {
          return !x.empty() && x.size() <= 9 && x.find_first_not_of("0123456789") == std::string::npos;
        };
        if (!digits(lo_s) || !digits(hi_s)) fail(at, "'{}': '{}' is not N or N-M", list, r);
        const long lo = std::stol(lo_s), hi = std::stol(hi_s);
        if (hi < lo) fail(at, "'{}': reversed range '{}'", list, r);
        if (static_cast<size_t>(hi - lo) >= kMaxHosts) fail(at, "'{}': over {} hosts", list, kMaxHosts);
        for (long v = lo; v <= hi; ++v) {
          std::string num = std::to_string(v);
          if (num.size() < lo_s.size()) num.insert(0, lo_s.size() - num.size(), '0');
          items.push_back(num);
        }
        b = e + 1;
      }
      if (partial.size() * items.size() > kMaxHosts) fail(at, "'{}': over {} hosts", list, kMaxHosts);
      std::vector<std::string> next;
      for (const auto& p : partial) {
        for (const auto& it : items) next.push_back(p + it);
      }
      partial = std::move(next);
      i = close + 1;
    }
    if (hosts.size() + partial.size() > kMaxHosts) fail(at, "'{}': over {} hosts", list, kMaxHosts);
    hosts.insert(hosts.end(), partial.begin(), partial.end());
  }
  return hosts;
}

std::unique_ptr<Communicator> make_communicator(const DistributedEnv& env, double timeout_s) {
  if (env.world_size <= 1) return std::make_unique<LocalCommunicator>();
  return std::make_unique<GlooCommunicator>(env, timeout_s);
}

int find_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket(): {}", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    fail("cannot find a free TCP port: {}", std::strerror(err));
  }
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

int run_local_workers(const std::vector<std::string>& argv, int nproc) {
  if (nproc < 1) fail(Where{"", 0, "--nproc"}, "must be >= 1, got {}", nproc);
  const int port = find_free_port();
  std::vector<std::string> base_env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto key = kv.substr(0, kv.find('='));
    if (key == "RANK" || key == "WORLD_SIZE" || key == "MASTER_ADDR" || key == "MASTER_PORT" ||
        key == "LOCAL_RANK")
      continue;
    base_env.push_back(kv);
  }
  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> env = base_env;
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    std::vector<char*> cargv, cenv;
    std::string exe = "/proc/self/exe";
    cargv.push_back(const_cast<char*>(exe.c_str()));
    for (size_t i = 1; i < argv.size(); ++i) cargv.push_back(const_cast<char*>(argv[i].c_str()));
    cargv.push_back(nullptr);
    for (auto& s : env) cenv.push_back(const_cast<char*>(s.c_str()));
    cenv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : pids) ::kill(p, SIGTERM);
      fail("cannot start worker {}: fork: {}", r, std::strerror(errno));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::execve("/proc/self/exe", cargv.data(), cenv.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  int first_bad = 0;
  size_t left = pids.size();
  while (left > 0) {
    int status = 0;
    pid_t p = ::waitpid(-1, &status, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    bool ours = false;
    for (pid_t q : pids) ours |= q == p;
    if (!ours) continue;
    --left;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && first_bad == 0) {
      first_bad = code;
      for (pid_t q : pids)
        if (q != p) ::kill(q, SIGTERM);
    }
  }
  return first_bad;
}

void all_reduce_gradients(Communicator& comm, const std::vector<torch::Tensor>& params) {
  if (comm.world_size() == 1) return;
  std::vector<torch::Tensor> parts;
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  // Values, then one "gradient defined" flag per parameter: a parameter that no rank touched
  // keeps an undefined gradient, exactly as in a single process (Adam then skips it).
  auto flat = torch::zeros({total + static_cast<int64_t>(params.size())}, torch::kFloat32);
  int64_t off = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    const int64_t n = p.numel();
    if (p.grad().defined()) {
      flat.narrow(0, off, n).copy_(p.grad().reshape({-1}));
      flat[total + static_cast<int64_t>(i)] = 1.0f;
    }
    off += n;
  }
  comm.all_reduce_sum(flat);
  off = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    auto p = params[i];
    const int64_t n = p.numel();
    if (flat[total + static_cast<int64_t>(i)].item<float>() > 0) {
      auto g = flat.narrow(0, off, n).view(p.sizes()).to(p.scalar_type());
      if (p.grad().defined())
        p.mutable_grad().copy_(g);
      else
        p.mutable_grad() = g.clone();
    }
    off += n;
  }
}

void broadcast_tensors(Communicator& comm, const std::vector<torch::Tensor>& tensors, int root) {
  if (comm.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  int64_t total = 0;
  for (const auto& t : tensors) total += t.numel();
  auto flat = torch::empty({total}, torch::kFloat64);
  int64_t off = 0;
  for (const auto& t : tensors) {
    flat.narrow(0, off, t.numel()).copy_(t.reshape({-1}));
    off += t.numel();
  }
  comm.broadcast(flat, root);
  off = 0;
  for (auto t : tensors) {
    t.copy_(flat.narrow(0, off, t.numel()).view(t.sizes()));
    off += t.numel();
  }
}

std::vector<std::string> worker_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::string> args;  // NUL-separated arguments
  std::string cur;
  for (char c : all) {
    if (c == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) args.push_back(cur);
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

}  // namespace loom::train
