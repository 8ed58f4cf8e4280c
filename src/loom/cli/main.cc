// loom — the command-line entry point: parses arguments and dispatches to sub-commands.
// Errors from the library (loom::Error) become one line on stderr and exit code 1.
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>

#include "loom/cli/commands.h"
#include "loom/core/allocator.h"
#include "loom/core/error.h"

int main(int argc, char** argv) {
  loom::core::tune_allocator();
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
  loom::cli::add_chat(app);
  loom::cli::add_rag(app);
  loom::cli::add_serve(app);
  // Every floating-point option of every command must be a finite number (CLI11 would accept
  // "nan" and "inf", which pass range checks).
  const CLI::Validator finite(
      [](std::string& v) {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        return std::isfinite(x) ? std::string() : "'" + v + "' is not a finite number";
      },
      "FINITE");
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    std::vector<CLI::App*> apps{sub};
    for (std::size_t k = 0; k < apps.size(); ++k) {
      for (CLI::App* s : apps[k]->get_subcommands([](CLI::App*) { return true; })) apps.push_back(s);
      for (CLI::Option* opt : apps[k]->get_options()) {
        if (opt->get_type_name().rfind("FLOAT", 0) == 0) opt->check(finite);
      }
    }
  }
  // An unknown command is named (CLI11 would only say that an argument was not expected).
  if (argc > 1 && argv[1][0] != '-') {
    if (app.get_subcommands([&](CLI::App* s) { return s->check_name(argv[1]); }).empty()) {
      std::string names;
      for (CLI::App* s : app.get_subcommands([](CLI::App*) { return true; }))
        names += (names.empty() ? "" : ", ") + s->get_name();
      std::fprintf(stderr, "loom: error: unknown command '%s' (commands: %s)\n", argv[1], names.c_str());
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
    // Output written with printf/std::cout must have reached its destination.
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::fprintf(stderr, "loom: error: cannot write the output to stdout: %s\n", std::strerror(errno));
      return 1;
    }
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
