// Sub-commands of the `loom` executable. Each add_* registers one sub-command (its options and
// its callback) on the top-level CLI11 app; the callback throws loom::Error on bad input, which
// main() turns into one message on stderr and exit code 1. Wiring only: the work lives in the
// library layers below.
#pragma once

namespace CLI {
class App;
}

namespace loom::cli {

/// `loom version`: prints the loom and libtorch versions.
void add_version(CLI::App& app);

/// `loom download ID [--revision main] [--endpoint URL] [--cache-dir DIR]`: fetches a model's
/// config, weights and tokenizer files from the Hugging Face Hub into the hub cache
/// (loom::io::download_model; token from $HF_TOKEN) and prints the snapshot directory, which
/// loom::io::resolve_model then finds by id.
void add_download(CLI::App& app);

}  // namespace loom::cli
