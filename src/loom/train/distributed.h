// Data-parallel communication for training: a Communicator (sum all-reduce, broadcast,
// barrier) backed by libtorch's c10d ProcessGroupGloo + TCPStore, the torchrun/Slurm
// environment that describes a process group, and a local launcher (`--nproc N`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace loom::train {

/// A group of `world_size()` training processes; this one is `rank()`. Every collective must be
/// called by all ranks in the same order with tensors of the same shape and dtype.
class Communicator {
 public:
  virtual ~Communicator() = default;
  /// 0-based rank of this process (0 = the one that writes checkpoints and metrics).
  virtual int rank() const = 0;
  /// Number of processes in the group.
  virtual int world_size() const = 0;
  /// Replaces `t` (contiguous CPU tensor) by its elementwise sum over all ranks.
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
  /// Replaces `t` (contiguous CPU tensor) on every rank by rank `root`'s value.
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  /// Returns when all ranks have called it.
  virtual void barrier() = 0;
};

/// The single-process group (rank 0 of 1): collectives leave tensors unchanged.
class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(torch::Tensor&) override {}
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
};

/// Where a process sits in a data-parallel job (torchrun / Slurm conventions).
struct DistributedEnv {
  int rank = 0;                          ///< RANK (or SLURM_PROCID)
  int world_size = 1;                    ///< WORLD_SIZE (or SLURM_NTASKS)
  std::string master_addr = "127.0.0.1"; ///< MASTER_ADDR: host of rank 0's TCPStore
  int master_port = 29500;               ///< MASTER_PORT: its TCP port
};

/// Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (falling back to SLURM_PROCID,
/// SLURM_NTASKS). Under Slurm (srun) without MASTER_ADDR, the master is the first host of
/// SLURM_JOB_NODELIST (or SLURM_NODELIST), expanded by expand_slurm_nodelist, and without
/// MASTER_PORT the port is 20000 + SLURM_JOB_ID % 20000, the same on every rank of the job.
/// Unset variables keep the defaults above (a single process). Throws
/// loom::Error naming the variable when a value is not an integer or out of range
/// (rank >= world_size, port outside 1..65535).
DistributedEnv distributed_env_from_environment();

/// Host names of a Slurm node list in order, as `scontrol show hostnames` prints them:
/// "node[01-03,07],gpu5" -> node01 node02 node03 node07 gpu5 (zero padding kept: width of the
/// range's first bound); several bracket groups in one name expand as a product
/// ("r[1-2]n[1-2]" -> r1n1 r1n2 r2n1 r2n2). Throws loom::Error naming SLURM_JOB_NODELIST for
/// unbalanced brackets, an empty or reversed range, or more than 1,000,000 hosts.
std::vector<std::string> expand_slurm_nodelist(const std::string& nodelist);

/// Joins the process group described by `env` over TCP: rank 0 hosts a c10d::TCPStore at
/// master_addr:master_port, every rank connects to it, and a c10d::ProcessGroupGloo is built
/// on top (network interface from $GLOO_SOCKET_IFNAME if set, else loopback when master_addr is
/// a loopback address, else this host's name). Returns a LocalCommunicator when world_size is
/// 1. Blocks until all ranks joined or `timeout_s` passed; throws loom::Error on failure
/// (naming the address and port).
std::unique_ptr<Communicator> make_communicator(const DistributedEnv& env, double timeout_s = 300);

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
int find_free_port();

/// Runs `argv` (argv[0] is replaced by this executable, /proc/self/exe) as `nproc` local worker
/// processes with RANK=0..nproc-1, WORLD_SIZE=nproc, MASTER_ADDR=127.0.0.1 and a free
/// MASTER_PORT added to the environment; workers die with the parent (PR_SET_PDEATHSIG). Waits
/// for all; when one fails, the others are sent SIGTERM. Returns 0 when all exit 0, else the
/// first failing worker's exit status (128 + signal number when killed). Throws loom::Error if
/// a worker cannot be started.
int run_local_workers(const std::vector<std::string>& argv, int nproc);

/// This process's command line (/proc/self/cmdline) without `--nproc N` / `--nproc=N`: the argv
/// that `--nproc` re-runs as each worker (run_local_workers). Empty if /proc is unreadable.
std::vector<std::string> worker_command_line();

/// Flattens the gradients of `params` (undefined gradients count as zeros) into one float
/// tensor, all-reduces it with `comm`, and writes the sums back into each parameter's .grad()
/// (created when undefined). One collective per call, whatever the number of parameters.
void all_reduce_gradients(Communicator& comm, const std::vector<torch::Tensor>& params);

/// Copies rank `root`'s parameters and buffers (`tensors`) to every rank (one flat broadcast).
void broadcast_tensors(Communicator& comm, const std::vector<torch::Tensor>& tensors, int root = 0);

}  // namespace loom::train
