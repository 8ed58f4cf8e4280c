// loom — the command-line entry point: parses arguments and dispatches to sub-commands.
// Errors from the library (loom::Error) become one line on stderr and exit code 1.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <filesystem>

#include "loom/cli/commands.h"
#include "loom/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"loom: a C++ engine for transformer sequence models"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for all sub-commands");
  loom::cli::add_version(app);
  loom::cli::add_tokenize(app);
  loom::cli::add_download(app);
  loom::cli::add_translate(app);
  loom::cli::add_init_model(app);
  loom::cli::add_model_info(app);
  loom::cli::add_eval(app);
  loom::cli::add_train(app);
  loom::cli::add_generate(app);
  loom::cli::add_rag(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "loom: error: %s\n", e.what());
    return 1;
  } catch (const loom::Error& e) {
    std::fprintf(stderr, "loom: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loom: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
