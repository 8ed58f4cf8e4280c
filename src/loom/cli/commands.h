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

/// `loom tokenize --model DIR [FILE] [--target] [--src L --tgt L] [--pieces] [--decode]`: reads
/// lines from FILE (or stdin) and prints, per line, the space-separated token ids of the model's
/// translation tokenizer (source side; --target: labels; --pieces: token strings; --decode:
/// input lines are ids, printed as decoded target text). Languages are validated as in
/// loom::text::Seq2SeqTokenizer::set_languages; without --src/--tgt the tokenizer's defaults
/// (tokenizer_config.json) apply. Errors name the input line.
void add_tokenize(CLI::App& app);

/// `loom download ID [--revision main] [--endpoint URL] [--cache-dir DIR]`: fetches a model's
/// config, weights and tokenizer files from the Hugging Face Hub into the hub cache
/// (loom::io::download_model; token from $HF_TOKEN) and prints the snapshot directory, which
/// loom::io::resolve_model then finds by id.
void add_download(CLI::App& app);

}  // namespace loom::cli
