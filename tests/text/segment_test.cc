#include "loom/text/segment.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/core/error.h"

namespace loom::text {
namespace {

using Segs = std::vector<std::pair<std::string, bool>>;

Segs segs(std::string_view text, bool markdown = true) {
  Segs out;
  for (const Segment& s : segment_text(text, SegmentOptions{markdown})) out.emplace_back(s.text, s.translate);
  return out;
}

constexpr bool T = true;
constexpr bool C = false;

TEST(Segment, SplitsSentencesAndCopiesWhitespace) {
  EXPECT_EQ(segs("Hello world. How are you? Fine!"),
            (Segs{{"Hello world.", T}, {" ", C}, {"How are you?", T}, {" ", C}, {"Fine!", T}}));
}

}  // namespace
}  // namespace loom::text
