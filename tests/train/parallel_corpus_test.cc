// loom::data parallel corpus: reading TSV / aligned files, cleaning with counts, splitting
// without overlap.
#include <gtest/gtest.h>
#include "support/paths.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "loom/core/error.h"
#include "loom/data/parallel_corpus.h"
#include "support/support.h"

namespace {
namespace fs = std::filesystem;
using loom::data::SentencePair;

fs::path tmp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("loom_pc_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

using loom_test::error_of;

TEST(ParallelCorpus, ReadsTsvWithBomCrlfAndExtraColumns) {
  auto d = tmp_dir("tsv");
  write(d / "a.tsv", "\xEF\xBB\xBFHi.\t\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82\t123\tCC-BY\r\n\nBye.\tx\n");
  auto pairs = loom::data::read_parallel_tsv((d / "a.tsv").string());
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].src, "Hi.");
  EXPECT_EQ(pairs[0].tgt, "\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82");
  EXPECT_EQ(pairs[0].line, 1);
  EXPECT_EQ(pairs[1].src, "Bye.");
  EXPECT_EQ(pairs[1].tgt, "x");
  EXPECT_EQ(pairs[1].line, 3);
}

TEST(ParallelCorpus, TsvLineWithoutTabNamesFileLineAndField) {
  auto d = tmp_dir("notab");
  write(d / "b.tsv", "a\tb\nno tab here\n");
  std::string msg = error_of([&] { loom::data::read_parallel_tsv((d / "b.tsv").string()); });
  EXPECT_NE(msg.find("b.tsv:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'tgt'"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { loom::data::read_parallel_tsv((d / "missing.tsv").string()); }).find("missing.tsv"),
            std::string::npos);
}

TEST(ParallelCorpus, TwoFilesMustHaveTheSameLineCount) {
  auto d = tmp_dir("two");
  write(d / "s.txt", "one\ntwo\nthree\n");
  write(d / "t.txt", "eins\nzwei\n");
  std::string msg = error_of([&] {
    loom::data::read_parallel_files((d / "s.txt").string(), (d / "t.txt").string());
  });
  EXPECT_NE(msg.find("s.txt has 3 lines"), std::string::npos) << msg;
  EXPECT_NE(msg.find("t.txt has 2 lines"), std::string::npos) << msg;
  write(d / "t.txt", "eins\n\ndrei\n");
  auto pairs = loom::data::read_parallel_files((d / "s.txt").string(), (d / "t.txt").string());
  ASSERT_EQ(pairs.size(), 3u);  // the empty target is kept for clean_pairs to count
  EXPECT_EQ(pairs[1].tgt, "");
  EXPECT_EQ(pairs[2].line, 3);
}

TEST(ParallelCorpus, CleanCountsEveryDropByRule) {
  std::vector<SentencePair> in = {
      {"a b", "x", "f", 1},
      {"bad \xC3", "x", "f", 2},          // invalid UTF-8 (truncated sequence)
      {"  ", "x", "f", 3},                // empty after trimming
      {"a b", "x", "f", 4},               // duplicate of line 1
      {"0123456789ab", "y", "f", 5},      // 12 code points > max_len 10
      {"abcdefg", "y", "f", 6},           // ratio 7/1 > 4
      {" ok ", "\xE5\xA5\xBD", "f", 7},   // kept, trimmed
  };
  loom::data::CleanOptions o;
  o.max_len = 10;
  o.max_ratio = 4.0;
  loom::data::CleanReport r;
  auto out = loom::data::clean_pairs(in, o, &r);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].src, "ok");
  EXPECT_EQ(out[1].line, 7);
  EXPECT_EQ(r.input, 7);
  EXPECT_EQ(r.kept, 2);
  EXPECT_EQ(r.invalid_utf8, 1);
  EXPECT_EQ(r.empty, 1);
  EXPECT_EQ(r.duplicate, 1);
  EXPECT_EQ(r.too_long, 1);
  EXPECT_EQ(r.bad_ratio, 1);
  EXPECT_EQ(r.input, r.kept + r.invalid_utf8 + r.empty + r.duplicate + r.too_long + r.bad_ratio);
  EXPECT_NE(r.summary().find("kept 2 of 7"), std::string::npos) << r.summary();
  ASSERT_EQ(r.examples.size(), 5u);
  EXPECT_NE(r.examples[0].find("f:2"), std::string::npos) << r.examples[0];
  EXPECT_EQ(loom::data::count_code_points("\xE5\xA5\xBD" "a"), 2);
}

TEST(ParallelCorpus, SplitIsDeterministicAndHasNoOverlap) {
  auto pairs = loom::data::read_parallel_tsv(std::string(LOOM_TEST_DATA) + "/mt/tatoeba-400.tsv");
  ASSERT_GT(pairs.size(), 400u);
  loom::data::CleanReport r;
  auto clean = loom::data::clean_pairs(pairs, {}, &r);
  // Make a source sentence occur twice with different targets, so the overlap rule matters.
  clean.push_back({clean[0].src, clean[0].tgt + "!", "extra", 1});
  loom::data::SplitOptions so;
  so.valid = 40;
  so.test = 40;
  so.seed = 7;
  auto s = loom::data::split_pairs(clean, so);
  EXPECT_EQ(s.valid.size(), 40u);
  EXPECT_EQ(s.test.size(), 40u);
  EXPECT_EQ(s.train.size() + s.valid.size() + s.test.size() + s.removed_overlap, clean.size());
  std::set<std::string> train_src;
  for (auto& p : s.train) train_src.insert(p.src);
  for (auto* held : {&s.valid, &s.test})
    for (auto& p : *held) EXPECT_EQ(train_src.count(p.src), 0u) << p.src;
  auto s2 = loom::data::split_pairs(clean, so);
  ASSERT_EQ(s2.valid.size(), s.valid.size());
  for (size_t i = 0; i < s.valid.size(); ++i) EXPECT_EQ(s2.valid[i].src, s.valid[i].src);
  so.seed = 8;
  auto s3 = loom::data::split_pairs(clean, so);
  int same = 0;
  for (size_t i = 0; i < s.valid.size(); ++i) same += s3.valid[i].src == s.valid[i].src;
  EXPECT_LT(same, 40);
  so.valid = static_cast<int64_t>(clean.size());
  EXPECT_NE(error_of([&] { loom::data::split_pairs(clean, so); }).find("cannot split"), std::string::npos);
  // check_no_overlap itself names the offending pair.
  std::string msg = error_of([&] { loom::data::check_no_overlap(s.train, {s.train[3]}, "valid"); });
  EXPECT_NE(msg.find("tatoeba-400.tsv:"), std::string::npos) << msg;
}

TEST(ParallelCorpus, WriteTsvRoundTrips) {
  auto d = tmp_dir("rt");
  std::vector<SentencePair> p = {{"a\tb", "c", "", 0}, {"d", "e\nf", "", 0}};
  loom::data::write_parallel_tsv((d / "o.tsv").string(), p);
  auto back = loom::data::read_parallel_tsv((d / "o.tsv").string());
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].src, "a b");
  EXPECT_EQ(back[1].tgt, "e f");
}

}  // namespace
