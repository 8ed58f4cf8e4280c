#include "loom/core/progress.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace loom::core {
namespace {

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) s.append(buf, n);
  return s;
}

TEST(Progress, FormatsDurationsAndCounts) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(65), "1m05s");
  EXPECT_EQ(format_duration(3723), "1h02m03s");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_count(532), "532");
  EXPECT_EQ(format_count(12.5), "12.5");
  EXPECT_EQ(format_count(12345), "12.3k");
  EXPECT_EQ(format_count(4560000), "4.56M");
  EXPECT_EQ(format_count(999999), "1.00M");
}

TEST(Progress, DrawsInPlaceWithPercentAndIsRateLimited) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(is_terminal(f));
  Progress p(f, Progress::Options{true, 10.0, 200});
  EXPECT_TRUE(p.update(50, "rows 5"));
  EXPECT_FALSE(p.update(100, "rows 10"));       // within 10 s of the last draw
  EXPECT_TRUE(p.update(100, "rows 10", true));  // forced
  p.finish("done: 10 rows");
  const std::string s = contents(f);
  std::fclose(f);
  EXPECT_EQ(s.rfind("\rrows 5 | 25.0% | 0s elapsed | ETA ", 0), 0u) << s;
  EXPECT_NE(s.find("\rrows 10 | 50.0% | 0s elapsed | ETA "), std::string::npos) << s;
  EXPECT_EQ(s.find("rows 10 | 50.0%"), s.rfind("rows 10 | 50.0%"));  // drawn once
  EXPECT_EQ(s.substr(s.size() - 14), "done: 10 rows\n");
}

TEST(Progress, NotLiveWritesOnlyTheSummary) {
  std::FILE* f = std::tmpfile();
  Progress p(f, Progress::Options{false, 0.0, -1});
  EXPECT_FALSE(p.update(1, "x", true));
  p.finish("summary");
  EXPECT_EQ(contents(f), "summary\n");
  std::fclose(f);
}

}  // namespace
}  // namespace loom::core
