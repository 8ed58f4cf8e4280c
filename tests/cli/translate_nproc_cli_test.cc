// `loom translate --nproc N [--merge]` through the binary: N worker processes over the shards;
// the merged output equals a single-process run byte for byte, the shard outputs are the
// sharded runs' outputs, a rerun with --resume finds every shard done, and misuse is one error.
#include <gtest/gtest.h>

#include <filesystem>

#include "support/paths.h"
#include "support/support.h"

namespace {

namespace fs = std::filesystem;
using loom_test::run_loom;
using loom_test::slurp;
using loom_test::TempDir;
using loom_test::write_file;

const std::string kModel = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

std::string rows(int n) {
  const char* texts[] = {"Hello world.", "The cat sat on the mat. It was happy.", "", "Everyone has the right to life.",
                         "# Title\n\nA list:\n- one\n- two", "Education shall be free."};
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (i % 7 == 3) {
      out += "\n";  // blank lines stay in place
      continue;
    }
    out += "{\"id\":" + std::to_string(i) + ",\"text\":" + nlohmann::json(texts[i % 6]).dump() + "}\n";
  }
  return out;
}

TEST(TranslateNprocCli, MergedWorkersEqualOneProcessByteForByte) {
  TempDir dir;
  write_file(dir.path() / "in.jsonl", rows(23));
  auto translate = [&](std::vector<std::string> extra, const std::string& out) {
    std::vector<std::string> args = {"translate", "--model", kModel, "--fields", "text", "--beam", "2",
                                     "--max-new-tokens", "8", "--threads", "1", "--no-progress",
                                     dir / "in.jsonl", dir / out};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_loom(args, dir.path());
  };
  const auto single = translate({}, "one.jsonl");
  ASSERT_EQ(single.code, 0) << single.err;
  const std::string want = slurp(dir.path() / "one.jsonl");
  ASSERT_EQ(std::count(want.begin(), want.end(), '\n'), 23);

  const auto workers = translate({"--nproc", "3", "--merge"}, "out.jsonl");
  ASSERT_EQ(workers.code, 0) << workers.err;
  EXPECT_EQ(slurp(dir.path() / "out.jsonl"), want);
  std::string shards;
  for (int i = 0; i < 3; ++i) {
    const fs::path shard = dir.path() / ("out.0000" + std::to_string(i) + "-of-00003.jsonl");
    ASSERT_TRUE(fs::is_regular_file(shard)) << shard;
    EXPECT_TRUE(fs::is_regular_file(shard.string() + ".loom-state.json"));
    EXPECT_NE(workers.err.find("worker " + std::to_string(i) + "/3 done"), std::string::npos) << workers.err;
    shards += slurp(shard);
  }
  EXPECT_EQ(shards, want);
  EXPECT_NE(workers.err.find("merged 3 shards into"), std::string::npos) << workers.err;

  // A rerun with --resume finds every shard done and merges again; without it, nothing is replaced.
  const auto again = translate({"--nproc", "3", "--merge", "--resume"}, "out.jsonl");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(slurp(dir.path() / "out.jsonl"), want);
  const auto refused = translate({"--nproc", "3"}, "out.jsonl");
  EXPECT_NE(refused.code, 0);
  EXPECT_EQ(slurp(dir.path() / "out.jsonl"), want);

  // A shard that is not complete blocks the merge.
  fs::remove(dir.path() / "out.00001-of-00003.jsonl.loom-state.json");
  fs::remove(dir.path() / "out.00001-of-00003.jsonl");
  fs::remove(dir.path() / "out.jsonl");
  const auto resumed = translate({"--nproc", "3", "--merge", "--resume"}, "out.jsonl");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(slurp(dir.path() / "out.jsonl"), want);
}

TEST(TranslateNprocCli, MisuseIsOneClearError) {
  TempDir dir;
  write_file(dir.path() / "in.txt", "Hello world.\n");
  const std::vector<std::vector<std::string>> cases = {
      {"--nproc", "2", "--shard", "0/2", dir / "in.txt", dir / "o.txt"},
      {"--merge", dir / "in.txt", dir / "o.txt"},
      {"--nproc", "2", dir / "in.txt", "-"},
      {"--nproc", "2", "-", dir / "o.txt"},
  };
  for (const auto& extra : cases) {
    std::vector<std::string> args = {"translate", "--model", kModel, "--no-progress"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_loom(args, dir.path());
    EXPECT_EQ(r.code, 1) << extra[0] << ": " << r.err;
    EXPECT_NE(r.err.find("loom: error:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--nproc"), std::string::npos) << r.err;
  }
}

}  // namespace
