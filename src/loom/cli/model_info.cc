// `loom model-info DIR|CONFIG.json`: prints the architecture of a loom model (see
// models::format_model_info). `loom model-info --gates DIR`: the learned memory gates of a
// decoder LM (models::format_memory_gates). Wiring only.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "loom/cli/commands.h"
#include "loom/models/memory_gates.h"
#include "loom/models/model_info.h"

namespace loom::cli {

void add_model_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("model-info", "Print the blocks, DeLighT widths/groups and parameter counts of a loom model");
  auto path = std::make_shared<std::string>();
  auto gates = std::make_shared<bool>(false);
  cmd->add_option("model", *path, "loom model directory or its config.json")->required();
  cmd->add_flag("--gates", *gates,
                "Print the learned memory gate sigmoid(beta) per layer and head of a decoder LM directory "
                "(Infini-attention / kNN layers)");
  cmd->callback([path, gates] {
    if (*gates) {
      std::fputs(models::format_memory_gates(*models::load_decoder_lm(*path)).c_str(), stdout);
      return;
    }
    const auto info = models::native_model_info(models::read_native_config(*path));
    std::fputs(models::format_model_info(info).c_str(), stdout);
  });
}

}  // namespace loom::cli
