// loom::pipeline — `loom translate --nproc N`: N local worker processes, each an ordinary
// `loom translate ... --shard i/N` (so each is resumable on its own, exactly like a Slurm array
// task), and an optional merge of the shard outputs once every shard is complete.
#pragma once

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

namespace loom::pipeline {

/// What run_translate_workers needs.
struct WorkerPoolOptions {
  int nproc = 1;                  ///< worker processes = shards (>= 1)
  std::string exe;                ///< the loom executable ("" = /proc/self/exe)
  std::vector<std::string> args;  ///< the translate command line without argv[0] (e.g. {"translate",
                                  ///< "--model", "m", "--nproc", "4", "in", "out"}); --nproc N,
                                  ///< --nproc=N and --merge are dropped from the workers' copies
  std::string output;             ///< OUTPUT as given (shard i writes shard_output_path(output, i, N))
  bool merge = false;             ///< concatenate the shards into `output` when all are complete
  bool replace_merged = false;    ///< an existing merged output may be replaced (--overwrite/--resume)
  int threads_per_worker = 0;     ///< > 0: --threads for each worker unless args has --threads
  std::FILE* log = stderr;        ///< one line per worker start/end and for the merge
  /// Checked while waiting: non-zero forwards SIGTERM to the workers (they checkpoint and stop).
  const volatile std::sig_atomic_t* stop = nullptr;
};

/// Starts the N workers (each: exe args... --shard i/N --no-progress [--threads T]), waits for
/// all, and returns 0 when every worker exited 0. A worker that fails is reported by shard index
/// and exit status (the others keep running; rerun with --resume to finish); the result is then
/// the first failing worker's status (128 + signal for a signal). With merge, once all workers
/// succeeded and every shard's OUTPUT.loom-state.json says "done", the shard outputs are copied
/// in shard order into `output` (temp file + fsync + rename), so `output` equals a
/// single-process run byte for byte (shards are contiguous line ranges of the input; rejects
/// files stay per shard). Throws loom::Error for nproc < 1, stdin/stdout as input/output, a
/// shard not complete at merge time, an existing merged output without replace_merged, or an
/// I/O error.
int run_translate_workers(const WorkerPoolOptions& options, const std::string& input);

/// The command line of this process (/proc/self/cmdline) without argv[0]; empty if unreadable.
std::vector<std::string> own_command_line();

}  // namespace loom::pipeline
