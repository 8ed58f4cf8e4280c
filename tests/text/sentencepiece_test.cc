#include "loom/text/sentencepiece.h"
#include "support/paths.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"

namespace loom::text {
namespace {

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

TEST(SentencePiece, EncodesAndDecodesRoundTrip) {
  SentencePiece sp(kMarian + "/source.spm");
  EXPECT_GT(sp.size(), 100);
  auto pieces = sp.encode_pieces("All human beings are born free.");
  ASSERT_FALSE(pieces.empty());
  EXPECT_EQ(pieces.front().rfind("\xE2\x96\x81", 0), 0u) << pieces.front();  // starts with ▁
  EXPECT_EQ(sp.decode_pieces(pieces), "All human beings are born free.");
  auto ids = sp.encode_ids("All human beings are born free.");
  ASSERT_EQ(ids.size(), pieces.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(sp.id_to_piece(ids[i]), pieces[i]);
}

TEST(SentencePiece, BadFilesAreErrorsNamingTheFile) {
  EXPECT_THROW(SentencePiece("/nonexistent/x.spm"), Error);
  try {
    SentencePiece sp(kMarian + "/vocab.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom::text
