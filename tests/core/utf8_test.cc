#include "loom/core/utf8.h"

#include <gtest/gtest.h>

namespace loom::core {
namespace {

constexpr auto npos = std::string_view::npos;

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_EQ(utf8_error_offset(""), npos);
  EXPECT_EQ(utf8_error_offset("plain ascii"), npos);
  EXPECT_EQ(utf8_error_offset("h\xC3\xA9llo \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80"), npos);  // é 中文 😀
  EXPECT_EQ(utf8_error_offset("\xEF\xBF\xBF\xF4\x8F\xBF\xBF"), npos);  // U+FFFF, U+10FFFF
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF"));                          // U+D7FF, just below surrogates
}

TEST(Utf8, FindsFirstBadByte) {
  EXPECT_EQ(utf8_error_offset("ab\xFFz"), 2u);           // never valid
  EXPECT_EQ(utf8_error_offset("abc\x80"), 3u);           // lone continuation
  EXPECT_EQ(utf8_error_offset("x\xC0\xAF"), 1u);         // overlong '/'
  EXPECT_EQ(utf8_error_offset("\xE0\x80\xAF"), 0u);      // overlong 3-byte
  EXPECT_EQ(utf8_error_offset("ok\xED\xA0\x80"), 2u);    // surrogate U+D800
  EXPECT_EQ(utf8_error_offset("\xF4\x90\x80\x80"), 0u);  // U+110000
  EXPECT_EQ(utf8_error_offset("\xF0\x8F\xBF\xBF"), 0u);  // overlong 4-byte
  EXPECT_EQ(utf8_error_offset("\xC3\xA9\xE4\xB8"), 2u);  // truncated at the end
  EXPECT_EQ(utf8_error_offset("\xE4\x41\x41"), 0u);      // continuation missing
}

TEST(Utf8, ReplacesMaximalSubpartsWithReplacementChar) {
  EXPECT_EQ(utf8_replace_invalid("fine \xC3\xA9"), "fine \xC3\xA9");
  EXPECT_EQ(utf8_replace_invalid("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  // E4 B8 is a truncated 3-byte sequence: one U+FFFD for the maximal subpart (Unicode §3.9).
  EXPECT_EQ(utf8_replace_invalid("\xE4\xB8!"), "\xEF\xBF\xBD!");
  // ED A0 80: A0 is outside ED's second-byte range, so each byte is its own ill-formed part.
  EXPECT_EQ(utf8_replace_invalid("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(is_valid_utf8(utf8_replace_invalid("\xC0\xAF\xF5\x80\xE0\x80")));
}

}  // namespace
}  // namespace loom::core
