// The only test source compiled with the checkout's paths (see paths.h and CMakeLists.txt).
#include "support/paths.h"

namespace loom::test {

const std::string& source_dir() {
  static const std::string dir = LOOM_TEST_SOURCE_DIR_VALUE;
  return dir;
}

const std::string& test_data_dir() {
  static const std::string dir = LOOM_TEST_DATA_VALUE;
  return dir;
}

const std::string& loom_binary() {
  static const std::string bin = LOOM_BINARY_VALUE;
  return bin;
}

}  // namespace loom::test
