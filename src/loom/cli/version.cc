#include <CLI/CLI.hpp>
#include <torch/version.h>

#include <cstdio>

#include "loom/cli/commands.h"

namespace loom::cli {

void add_version(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the loom and libtorch versions");
  cmd->callback([] { std::printf("loom 0.1.0 (libtorch %s)\n", TORCH_VERSION); });
}

}  // namespace loom::cli
