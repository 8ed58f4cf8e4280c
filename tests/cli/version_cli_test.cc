// `loom version` through the binary: versions and which float32 GEMM the build found.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <torch/version.h>

#include "support/support.h"

namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(VersionCli, PrintsVersionsAndGemm) {
  loom_test::TempDir dir;
  const auto r = loom_test::run_loom({"version"}, dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith(std::string("loom 0.1.0 (libtorch ") + TORCH_VERSION + "; float32 GEMM: "));
  EXPECT_THAT(r.out, AnyOf(HasSubstr("GEMM: oneDNN sgemm)\n"), HasSubstr("GEMM: libtorch matmul (oneDNN not found))\n")));
}

}  // namespace
