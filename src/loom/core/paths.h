// Where loom finds the files it ships (data/, models/) at run time.
#pragma once

#include <filesystem>

namespace loom::core {

/// Directory of the running executable (from /proc/self/exe; "." if unknown).
std::filesystem::path executable_dir();

/// loom's shipped data directory (tokenizer files, example data): $LOOM_DATA_DIR if set, else
/// <exe>/../share/loom/data when installed, else the source tree's data/ (the build's
/// LOOM_SOURCE_DIR). Returns the first that exists, or the last candidate.
std::filesystem::path data_dir();

/// Directory of loom's shipped models (models/): $LOOM_MODELS_DIR, <exe>/../share/loom/models,
/// or the source tree's models/.
std::filesystem::path models_dir();

}  // namespace loom::core
