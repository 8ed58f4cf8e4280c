// core/files: whole-file reads, JSON files and atomic replacement, with errors naming the file.
#include "loom/core/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "support/support.h"

namespace {
using ::testing::HasSubstr;
using loom_test::error_of;
using loom_test::slurp;
using loom_test::TempDir;

TEST(Files, ReadsBytesExactly) {
  TempDir dir;
  const std::string bytes("a\0b\xff\n", 5);
  loom_test::write_file(dir / "f.bin", bytes);
  EXPECT_EQ(loom::core::read_file(dir / "f.bin"), bytes);
  loom_test::write_file(dir / "empty", "");
  EXPECT_EQ(loom::core::read_file(dir / "empty"), "");
}

TEST(Files, ErrorsNameTheFile) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { loom::core::read_file(dir / "missing.txt"); }),
              HasSubstr("missing.txt"));
  EXPECT_THAT(error_of([&] { loom::core::read_file(dir.path().string()); }),
              HasSubstr("directory"));
  loom_test::write_file(dir / "bad.json", "{\"a\": 1,}");
  const std::string e = error_of([&] { loom::core::read_json(dir / "bad.json"); });
  EXPECT_THAT(e, HasSubstr("bad.json"));
  EXPECT_THAT(e, HasSubstr("invalid JSON"));
}

TEST(Files, ReadJson) {
  TempDir dir;
  loom_test::write_file(dir / "c.json", R"({"d_model": 512, "name": "x"})");
  const auto j = loom::core::read_json(dir / "c.json");
  EXPECT_EQ(j.at("d_model").get<int>(), 512);
  EXPECT_EQ(j.at("name").get<std::string>(), "x");
}

TEST(Files, WriteAtomicReplacesAndLeavesNoTemp) {
  TempDir dir;
  const std::string p = dir / "out.json";
  loom::core::write_file_atomic(p, "old");
  loom::core::write_file_atomic(p, "new contents\n");
  EXPECT_EQ(slurp(p), "new contents\n");
  EXPECT_FALSE(loom::core::file_exists(p + ".tmp"));
  EXPECT_TRUE(loom::core::file_exists(p));
  EXPECT_FALSE(loom::core::file_exists(dir.path().string()));
  EXPECT_TRUE(loom::core::dir_exists(dir.path().string()));
  EXPECT_THAT(error_of([&] { loom::core::write_file_atomic(dir / "no/such/dir/x", "y"); }),
              HasSubstr("no/such/dir/x"));
}

}  // namespace
