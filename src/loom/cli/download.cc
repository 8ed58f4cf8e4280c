#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "loom/cli/commands.h"
#include "loom/io/hub.h"

namespace loom::cli {

void add_download(CLI::App& app) {
  struct Args {
    std::string id;
    io::DownloadOptions opts;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "download",
      "Download a Hugging Face model (config, safetensors weights, tokenizer files) into the "
      "local hub cache and print its directory");
  cmd->add_option("id", args->id, "Model id, e.g. Helsinki-NLP/opus-mt-en-zh")->required();
  cmd->add_option("--revision", args->opts.revision, "Branch, tag or commit")
      ->capture_default_str();
  cmd->add_option("--endpoint", args->opts.endpoint,
                  "Hub URL (default: $HF_ENDPOINT, else https://huggingface.co)");
  cmd->add_option("--cache-dir", args->opts.cache_dir,
                  "Cache directory (default: $HF_HUB_CACHE, else $HF_HOME/hub, else "
                  "~/.cache/huggingface/hub)");
  cmd->callback([args] {
    std::string dir = io::download_model(args->id, args->opts);
    std::printf("%s\n", dir.c_str());
  });
}

}  // namespace loom::cli
