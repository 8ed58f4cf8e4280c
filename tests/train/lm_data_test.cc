// LM data: Gutenberg stripping, document splitting, windows, and the passkey generator.
#include <gtest/gtest.h>
#include "support/paths.h"

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "loom/core/error.h"
#include "loom/data/passkey.h"
#include "loom/text/lm_tokenizer.h"
#include "loom/train/lm_data.h"

namespace loom::train {
namespace {
namespace fs = std::filesystem;

fs::path tmp_file(const std::string& name, const std::string& text) {
  fs::path p = fs::temp_directory_path() / ("loom-lmdata-" + std::to_string(getpid()) + "-" + name);
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

TEST(LmData, StripsGutenbergHeaderAndFooter) {
  const std::string book =
      "The Project Gutenberg eBook of X\r\nlicence blah\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\n"
      "Chapter 1\r\nIt was.\r\n\r\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\r\nmore licence\r\n";
  EXPECT_EQ(strip_gutenberg(book), "Chapter 1\nIt was.\n");
  EXPECT_EQ(strip_gutenberg("plain text\n"), "plain text\n");
  // The real books in data/ have both markers and lose the licence.
  auto docs = read_lm_documents({std::string(LOOM_SOURCE_DIR) + "/data/lm-text/gutenberg/84-0.txt"}, DocSplit::kFile);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].text.find("*** START OF"), std::string::npos);
  EXPECT_EQ(docs[0].text.find("*** END OF"), std::string::npos);
  EXPECT_EQ(docs[0].text.find("Project Gutenberg License"), std::string::npos);
  EXPECT_NE(docs[0].text.find("Frankenstein"), std::string::npos);
}

TEST(LmData, SplitsDocumentsAtBlankLinesAndMarkers) {
  auto p = tmp_file("a.txt", "\xEF\xBB\xBF" "one a\none b\n\n\ntwo\n  \nthree\n");
  auto docs = read_lm_documents({p.string()}, DocSplit::kBlankLines);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].text, "one a\none b\n");
  EXPECT_EQ(docs[1].text, "two\n");
  EXPECT_EQ(docs[1].name, p.string() + ":5");  // "two" is on line 5
  EXPECT_EQ(docs[2].text, "three\n");
  auto q = tmp_file("b.txt", "x\n<|endoftext|>\n<|endoftext|>\ny\nz\n");
  int64_t empty = -1;
  std::string marker;
  ASSERT_EQ(parse_doc_split("marker:<|endoftext|>", &marker), DocSplit::kMarker);
  docs = read_lm_documents({q.string()}, DocSplit::kMarker, marker, &empty);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[1].text, "y\nz\n");
  EXPECT_EQ(empty, 0);
  auto bad = tmp_file("bad.txt", "ok\n\xff\n");
  try {
    read_lm_documents({bad.string()}, DocSplit::kFile);
    FAIL();
  } catch (const loom::Error& e) {
    EXPECT_EQ(e.where().line, 2);
  }
  EXPECT_THROW(parse_doc_split("lines", &marker), loom::Error);
  EXPECT_THROW(read_lm_documents({"/nonexistent/x.txt"}, DocSplit::kFile), loom::Error);
}

TEST(LmData, WindowsCoverEveryLabelOnce) {
  std::vector<std::vector<int64_t>> docs(3);
  for (int i = 0; i < 23; ++i) docs[0].push_back(i);
  for (int i = 0; i < 3; ++i) docs[1].push_back(i);
  for (int i = 0; i < 10; ++i) docs[2].push_back(i);
  int64_t dropped = -1;
  auto w = make_lm_windows(docs, 8, 3, &dropped);
  // doc 0: labels 1..22 = 22 tokens -> windows of 8, 8, 6; doc 1: 2 labels < 3 dropped;
  // doc 2: 9 labels -> 8, then 1 dropped.
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].length, 9);
  EXPECT_EQ(w[1].begin, 8);
  EXPECT_EQ(w[2].begin, 16);
  EXPECT_EQ(w[2].length, 7);
  EXPECT_EQ(w[3].doc, 2);
  EXPECT_EQ(dropped, 2 + 1);
}

TEST(Passkey, SampleStructureLengthAndDepth) {
  auto tok = text::LmTokenizer::bytes();
  data::EncodeFn enc = [&](std::string_view s) { return tok.encode(s); };
  const std::string filler = data::kPasskeyFiller;
  for (int64_t len : {300, 1024, 4096}) {
    for (double depth : {0.0, 0.5, 1.0}) {
      auto s = data::make_passkey_sample(enc, len, depth, "71432");
      const std::string text = tok.decode(s.prompt);
      EXPECT_LE(std::abs(static_cast<int64_t>(s.prompt.size()) - len), static_cast<int64_t>(filler.size()) / 2 + 1);
      EXPECT_EQ(text.substr(static_cast<size_t>(s.needle_pos), 16), "The pass key is ");
      EXPECT_EQ(text.find("The pass key is 71432. Remember it. 71432 is the pass key. "), static_cast<size_t>(s.needle_pos));
      EXPECT_EQ(text.substr(text.size() - std::string(data::kPasskeyQuestion).size()), data::kPasskeyQuestion);
      EXPECT_EQ(tok.decode(s.answer), " 71432");
      if (depth == 0.0) EXPECT_EQ(s.needle_pos, 0);
      if (depth == 1.0)
        EXPECT_EQ(s.needle_pos + static_cast<int64_t>(data::passkey_needle("71432").size() +
                                                      std::string(data::kPasskeyQuestion).size()),
                  static_cast<int64_t>(s.prompt.size()));
      // The rest is whole filler units.
      std::string rest = text.substr(0, static_cast<size_t>(s.needle_pos));
      EXPECT_EQ(rest.size() % filler.size(), 0u);
    }
  }
  EXPECT_THROW(data::make_passkey_sample(enc, 100, 0.5, "1234"), loom::Error);
  EXPECT_THROW(data::make_passkey_sample(enc, 100, 1.5, "12345"), loom::Error);
  auto k = data::random_passkey(7);
  EXPECT_EQ(k.size(), 5u);
  EXPECT_EQ(k, data::random_passkey(7));
  EXPECT_NE(data::random_passkey(7) + data::random_passkey(8), data::random_passkey(7) + data::random_passkey(7));
  EXPECT_EQ(data::parse_token_lengths("1K,2k,3000,1M", "x"), (std::vector<int64_t>{1024, 2048, 3000, 1048576}));
  EXPECT_THROW(data::parse_token_lengths("1K,,2K", "x"), loom::Error);
  EXPECT_THROW(data::parse_token_lengths("abc", "x"), loom::Error);
}

}  // namespace
}  // namespace loom::train
