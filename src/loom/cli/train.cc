// `loom train`: the training command group. Each sub-command is registered on the group by one
// add_train_<name>(CLI::App& train) function (declared in commands.h) listed in add_train().
#include <CLI/CLI.hpp>

#include "loom/cli/commands.h"

namespace loom::cli {

void add_train(CLI::App& app) {
  auto* train = app.add_subcommand("train", "Train models (loom train lm ...)");
  train->require_subcommand(1);
  add_train_lm(*train);
}

}  // namespace loom::cli
