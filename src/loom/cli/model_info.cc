// `loom model-info DIR|CONFIG.json`: prints the architecture of a loom model (see
// models::format_model_info). Wiring only.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "loom/cli/commands.h"
#include "loom/models/model_info.h"

namespace loom::cli {

void add_model_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("model-info", "Print the blocks, DeLighT widths/groups and parameter counts of a loom model");
  auto path = std::make_shared<std::string>();
  cmd->add_option("model", *path, "loom model directory or its config.json")->required();
  cmd->callback([path] {
    const auto info = models::native_model_info(models::read_native_config(*path));
    std::fputs(models::format_model_info(info).c_str(), stdout);
  });
}

}  // namespace loom::cli
