#include "loom/io/row_io.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/io/jsonl.h"

namespace loom::io {
namespace {

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::path(testing::TempDir()) / "loom_row_io";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void write(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

std::vector<RawLine> all_lines(LineReader& r) {
  std::vector<RawLine> out;
  RawLine l;
  while (r.next(l)) out.push_back(l);
  return out;
}

TEST(LineReader, SplitsLinesWithTerminatorsOffsetsAndLineNumbers) {
  auto r = LineReader::from_memory("a\r\n\nbc\nlast", "m.txt");
  const auto lines = all_lines(r);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].text, "a");
  EXPECT_EQ(lines[0].terminator, "\r\n");
  EXPECT_EQ(lines[1].text, "");
  EXPECT_EQ(lines[1].terminator, "\n");
  EXPECT_EQ(lines[1].offset, 3);
  EXPECT_EQ(lines[2].text, "bc");
  EXPECT_EQ(lines[2].line, 3);
  EXPECT_EQ(lines[3].text, "last");
  EXPECT_EQ(lines[3].terminator, "");
  EXPECT_EQ(lines[3].offset, 7);
  EXPECT_EQ(lines[3].end_offset, 11);
  EXPECT_EQ(lines[3].line, 4);
}

TEST(LineReader, FileAcrossBufferBoundariesAndSeek) {
  const std::string path = temp_path("big.txt");
  std::string data;
  for (int i = 0; i < 300000; ++i) data += "line " + std::to_string(i) + "\n";  // > 1 MiB buffer
  write(path, data);
  LineReader r(path);
  EXPECT_EQ(r.size(), static_cast<int64_t>(data.size()));
  RawLine l;
  int64_t n = 0, mid_offset = 0;
  while (r.next(l)) {
    ASSERT_EQ(l.text, "line " + std::to_string(n)) << n;
    if (n == 200000) mid_offset = l.offset;
    ++n;
  }
  EXPECT_EQ(n, 300000);
  r.seek(mid_offset, 200001);
  ASSERT_TRUE(r.next(l));
  EXPECT_EQ(l.text, "line 200000");
  EXPECT_EQ(l.line, 200001);
}

TEST(LineReader, TooLongLineIsFlaggedAndSkippedWithBoundedMemory) {
  const std::string longline(5000, 'x');
  auto r = LineReader::from_memory("ok\n" + longline + "\nafter", "m.txt", 100);
  const auto lines = all_lines(r);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_FALSE(lines[0].too_long);
  EXPECT_TRUE(lines[1].too_long);
  EXPECT_EQ(lines[1].length, 5000);
  EXPECT_EQ(lines[1].text, std::string(LineReader::kTooLongPrefix, 'x'));
  EXPECT_EQ(lines[2].text, "after");
  EXPECT_EQ(lines[2].line, 3);
}

TEST(LineReader, EndOffsetStopsAtRowsStartingThere) {
  auto r = LineReader::from_memory("aa\nbb\ncc\n", "m.txt");
  r.set_end(4);  // "bb" starts at 3 < 4: included; "cc" at 6: not
  const auto lines = all_lines(r);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].text, "bb");
}

TEST(ShardRange, ShardsCoverEveryRowOnceInOrder) {
  const std::string path = temp_path("shards.txt");
  std::string data;
  for (int i = 0; i < 37; ++i) data += std::string(static_cast<std::size_t>(i * 7 % 23), 'a' + i % 26) + "\n";
  write(path, data);
  for (int count : {1, 2, 3, 5, 40}) {
    std::vector<std::pair<int64_t, std::string>> seen;
    for (int i = 0; i < count; ++i) {
      const ShardRange s = shard_range(path, static_cast<int64_t>(data.size()), i, count);
      const ShardRange fast = shard_range(path, static_cast<int64_t>(data.size()), i, count, false);
      EXPECT_EQ(fast.begin, s.begin);
      EXPECT_EQ(fast.end, s.end);
      LineReader r(path);
      r.seek(s.begin, s.first_line);
      r.set_end(s.end);
      RawLine l;
      while (r.next(l)) seen.emplace_back(l.line, l.text);
    }
    ASSERT_EQ(seen.size(), 37u) << count;
    for (int i = 0; i < 37; ++i) {
      EXPECT_EQ(seen[i].first, i + 1) << count;
      EXPECT_EQ(seen[i].second, std::string(static_cast<std::size_t>(i * 7 % 23), 'a' + i % 26));
    }
  }
  EXPECT_THROW(shard_range(path, 10, 3, 3), Error);
}

TEST(ShardRange, LineNumbersAcrossBufferBoundaries) {
  const std::string path = temp_path("shards_big.txt");
  std::string data;
  for (int i = 1; i <= 400000; ++i) data += std::to_string(i) + (i % 3 ? "\n" : " some longer text\n");
  write(path, data);
  for (int i = 0; i < 3; ++i) {
    const ShardRange s = shard_range(path, static_cast<int64_t>(data.size()), i, 3);
    auto r = LineReader::from_memory(data, "m");
    r.seek(s.begin, s.first_line);
    RawLine l;
    ASSERT_TRUE(r.next(l));
    // Each line starts with its own 1-based number.
    EXPECT_EQ(l.text.substr(0, l.text.find(' ')), std::to_string(l.line));
    if (i > 0) EXPECT_GT(s.begin, 1 << 20);  // the line count spans more than one read buffer
    EXPECT_EQ(data[static_cast<std::size_t>(s.begin) - (i > 0 ? 1 : 0)], i > 0 ? '\n' : '1');
  }
}

TEST(AppendFile, CreateNewRefusesExistingAndResumeTruncates) {
  const std::string path = temp_path("out.txt");
  std::filesystem::remove(path);
  {
    AppendFile f(path, AppendFile::Mode::kCreateNew);
    f.write("row1\nrow2\nhalf");
    f.sync();
    EXPECT_EQ(f.size(), 14);
  }
  EXPECT_THROW(AppendFile(path, AppendFile::Mode::kCreateNew), Error);
  EXPECT_THROW(AppendFile(path, AppendFile::Mode::kResume, 100), Error);  // shorter than recorded
  {
    AppendFile f(path, AppendFile::Mode::kResume, 10);
    f.write("row3\n");
  }
  EXPECT_EQ(read_whole_file(path), "row1\nrow2\nrow3\n");
  write_file_atomic(path, "new");
  EXPECT_EQ(read_whole_file(path), "new");
  EXPECT_FALSE(path_exists(path + ".tmp"));
}

TEST(Jsonl, ParsesObjectsAndNamesProblems) {
  const Where at{"d.jsonl", 7, ""};
  const JsonRow row = parse_jsonl_object(R"({"b":1,"a":"x","c":[true,null]})", at);
  EXPECT_EQ(dump_jsonl(row), R"({"b":1,"a":"x","c":[true,null]})");  // key order kept
  try {
    parse_jsonl_object("{\"a\":\"\xC3\x28\"}", at);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "d.jsonl:7: not valid UTF-8 at byte 6 of the line (byte 0xC3)");
  }
  try {
    parse_jsonl_object("{\"a\": tru}", at);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("d.jsonl:7: invalid JSON at byte ", 0), 0u) << e.what();
  }
  try {
    parse_jsonl_object("[1,2]", at);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "d.jsonl:7: row is a JSON array, expected an object");
  }
  EXPECT_TRUE(is_blank_line(" \t\r"));
  EXPECT_FALSE(is_blank_line(" {}"));
}

TEST(Jsonl, Base64MatchesRfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("\xFF\xFE"), "//4=");
}

}  // namespace
}  // namespace loom::io
