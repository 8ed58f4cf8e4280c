#include <CLI/CLI.hpp>
#include <torch/version.h>

#include <cstdio>

#include "loom/cli/commands.h"
#include "loom/nn/linear.h"

namespace loom::cli {

void add_version(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the loom and libtorch versions and the float32 GEMM in use");
  cmd->callback([] {
    std::printf("loom 0.1.0 (libtorch %s; float32 GEMM: %s)\n", TORCH_VERSION,
                nn::fast_gemm_available() ? "oneDNN sgemm" : "libtorch matmul (oneDNN not found)");
  });
}

}  // namespace loom::cli
