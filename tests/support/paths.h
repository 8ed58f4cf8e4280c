// Where the tests find the source tree, their data and the built `loom` binary. The paths live
// in one translation unit (tests/support/paths.cc, the only file compiled with them), so every
// other test file's command line is the same in every checkout and ccache can share objects
// between worktrees.
#pragma once

#include <string>

namespace loom::test {

/// The source tree's root (the CMake project directory), e.g. for data/ and configs/.
const std::string& source_dir();
/// tests/data of the source tree (tiny HF fixtures, tokenizers, sample rows).
const std::string& test_data_dir();
/// Absolute path of the built `loom` executable.
const std::string& loom_binary();

}  // namespace loom::test

// Spelled like the compile definitions they replace; each expands to a const std::string&.
#define LOOM_SOURCE_DIR (::loom::test::source_dir())
#define LOOM_TEST_DATA (::loom::test::test_data_dir())
#define LOOM_BINARY (::loom::test::loom_binary())
