#include "loom/core/error.h"

#include <gtest/gtest.h>

namespace loom {
namespace {

TEST(Error, MessageNamesFileLineAndField) {
  try {
    fail(Where{"data.jsonl", 17, "text"}, "not valid UTF-8 at byte {}", 5);
    FAIL() << "fail() returned";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "data.jsonl:17: 'text': not valid UTF-8 at byte 5");
    EXPECT_EQ(e.where().line, 17);
    EXPECT_EQ(e.message(), "not valid UTF-8 at byte 5");
  }
}

TEST(Error, NoLocationGivesBareMessage) {
  Error e("boom");
  EXPECT_STREQ(e.what(), "boom");
  EXPECT_EQ(Where{}.str(), "");
  EXPECT_EQ((Where{"", 3, ""}.str()), "line 3");
}

}  // namespace
}  // namespace loom
