// Issue 9 through the real `loom` binary (tiny Marian fixture, random weights): JSONL numbers kept
// byte for byte, duplicate/existing keys refused, --resume of a completed job whose output is
// gone, TXT lines not read as Markdown code, Ctrl-C stops with a checkpoint and resume message,
// --checkpoint-rows / --segment line, and the general CLI checks (unknown command named, failed
// writes exit non-zero, non-finite numbers refused).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/support.h"

namespace {

using loom_test::lines_of;
using loom_test::run_loom;
using loom_test::slurp;
using loom_test::TempDir;
using loom_test::write_file;

const std::string kModel = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

std::vector<std::string> translate_args(const std::vector<std::string>& extra) {
  std::vector<std::string> a{"translate", "--model", kModel, "--beam", "1", "--no-progress", "--fields", "text"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(TranslateFidelityCli, JsonlNumbersOutsideTheFieldsAreByteIdentical) {
  TempDir dir;
  const std::vector<std::string> rows = {
      R"({"id": 1180591620717411303424, "text": "Hello."})",
      R"({"id":-9223372036854775809,"x":18446744073709551616,"text":"Hello."})",
      R"({"pi":3.141592653589793238,"c":1E2,"tiny":1e-400,"text":"Hello."})",
      R"({"huge":1.0e400,"text":"Hello."})",
  };
  std::string in;
  for (const auto& r : rows) in += r + "\n";
  write_file(dir / "in.jsonl", in);
  const auto r = run_loom(translate_args({dir / "in.jsonl", dir / "out.jsonl"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = lines_of(slurp(dir / "out.jsonl"));
  ASSERT_EQ(out.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string head = rows[i].substr(0, rows[i].size() - 1);
    EXPECT_EQ(out[i].substr(0, head.size()), head) << out[i];
    EXPECT_EQ(out[i].substr(head.size(), 11), R"(,"text_zh":)") << out[i];
  }
}

TEST(TranslateFidelityCli, DuplicateAndExistingKeysAreRefused) {
  TempDir dir;
  write_file(dir / "dup.jsonl", "{\"text\":\"Fine.\"}\n{\"text\":\"First.\",\"text\":\"Second.\"}\n");
  auto r = run_loom(translate_args({dir / "dup.jsonl", dir / "dup.out.jsonl"}), dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("dup.jsonl:2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("duplicate key 'text'"), std::string::npos) << r.err;

  write_file(dir / "has.jsonl", "{\"text\":\"Hello.\",\"text_zh\":\"mine\"}\n");
  r = run_loom(translate_args({dir / "has.jsonl", dir / "has.out.jsonl"}), dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("already has the target key 'text_zh'"), std::string::npos) << r.err;
  r = run_loom(translate_args({"--overwrite-fields", dir / "has.jsonl", dir / "has2.out.jsonl"}), dir.path());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir / "has2.out.jsonl").find("mine"), std::string::npos);

  r = run_loom({"translate", "--model", kModel, "--beam", "1", "--no-progress", "--fields", "text,text_zh",
                dir / "has.jsonl", dir / "f.out.jsonl"}, dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("both translated and the target"), std::string::npos) << r.err;
}

TEST(TranslateFidelityCli, ResumeOfACompletedJobWhoseOutputIsGoneIsAnError) {
  TempDir dir;
  write_file(dir / "in.txt", "Hello.\nHow are you?\n");
  auto r = run_loom(translate_args({dir / "in.txt", dir / "out.txt"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  std::filesystem::remove(dir / "out.txt");
  r = run_loom(translate_args({"--resume", dir / "in.txt", dir / "out.txt"}), dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.err.find("already complete"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is missing"), std::string::npos) << r.err;
}

TEST(TranslateFidelityCli, TxtIndentedAndFenceLikeLinesAreTranslated) {
  TempDir dir;
  write_file(dir / "in.txt", "I love you.\n    I love you.\n\tI love you.\n");
  auto r = run_loom(translate_args({dir / "in.txt", dir / "out.txt"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = lines_of(slurp(dir / "out.txt"));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1], "    " + out[0]);
  EXPECT_EQ(out[2], "\t" + out[0]);
  EXPECT_NE(r.err.find("3 segments translated, 2 copied"), std::string::npos) << r.err;  // the indentation
}

TEST(TranslateFidelityCli, SegmentLineSendsAWholeLine) {
  TempDir dir;
  write_file(dir / "in.txt", "Hello there. How are you? Fine.\n");
  auto r = run_loom(translate_args({"--segment", "line", dir / "in.txt", dir / "out.txt"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("1 rows, 1 segments translated"), std::string::npos) << r.err;
  r = run_loom(translate_args({dir / "in.txt", dir / "out2.txt"}), dir.path());
  EXPECT_NE(r.err.find("1 rows, 3 segments translated"), std::string::npos) << r.err;
}

TEST(TranslateFidelityCli, SigintStopsWithACheckpointAndResumeEqualsUninterrupted) {
  TempDir dir;
  std::string in;
  const std::string flores = slurp(std::string(LOOM_SOURCE_DIR) + "/data/flores200/eng_Latn.devtest");
  in = flores;  // 1012 rows: 4 chunks of 256, the SIGINT lands in the second
  write_file(dir / "in.txt", in);
  const auto args = translate_args({"--checkpoint-rows", "1000000", dir / "in.txt", dir / "out.txt"});
  const pid_t pid = loom_test::spawn_loom(args, dir / "int.stdout", dir / "int.stderr");
  // Wait until some rows are written, then Ctrl-C.
  for (int i = 0; i < 600 && std::filesystem::file_size(dir / "in.txt") > 0; ++i) {
    std::error_code ec;
    if (std::filesystem::file_size(dir / "out.txt", ec) > 0 && !ec) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGINT);
  const int code = loom_test::wait_exit_code(pid);
  const std::string err = slurp(dir / "int.stderr");
  ASSERT_EQ(code, 130) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  const auto state = nlohmann::json::parse(slurp(dir / "out.txt.loom-state.json"));
  const int64_t rows = state["counters"]["rows"];
  EXPECT_GT(rows, 0);  // the rows written before Ctrl-C are checkpointed, not discarded
  EXPECT_EQ(static_cast<int64_t>(lines_of(slurp(dir / "out.txt")).size()), rows);
  auto r = run_loom(translate_args({"--resume", dir / "in.txt", dir / "out.txt"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_loom(translate_args({dir / "in.txt", dir / "ref.txt"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir / "out.txt"), slurp(dir / "ref.txt"));
}

TEST(TranslateFidelityCli, UnknownCommandIsNamed) {
  TempDir dir;
  const auto r = run_loom({"translte", "x"}, dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("unknown command 'translte'"), std::string::npos) << r.err;
}

TEST(TranslateFidelityCli, FailedWriteToStdoutExitsNonZero) {
  TempDir dir;
  write_file(dir / "in.txt", "Hello.\n");
  for (const auto& args : {std::vector<std::string>{"version"},
                           translate_args({dir / "in.txt", "-"}),
                           std::vector<std::string>{"tokenize", "--model", kModel}}) {
    const pid_t pid = loom_test::spawn_loom(args, "/dev/full", dir / "full.stderr", dir / "in.txt");
    EXPECT_NE(loom_test::wait_exit_code(pid), 0) << args[0] << ": " << slurp(dir / "full.stderr");
  }
}

TEST(TranslateFidelityCli, NonFiniteNumbersAreRefused) {
  TempDir dir;
  write_file(dir / "in.txt", "Hello.\n");
  for (const std::string& v : {"nan,10", "inf,10", "2,nan"}) {
    const auto r = run_loom(translate_args({"--length-cap", v, dir / "in.txt", dir / "o.txt"}), dir.path());
    EXPECT_NE(r.code, 0) << v;
  }
  for (const std::string& v : {"nan", "inf", "-inf"}) {
    const auto r = run_loom(translate_args({"--checkpoint-seconds", v, dir / "in.txt", dir / "o2.txt"}), dir.path());
    EXPECT_NE(r.code, 0) << v << ": " << r.err;
  }
}

}  // namespace

namespace {

TEST(TranslateFidelityCli, MarianLanguagePrefixBecomesTheLanguageToken) {
  TempDir dir;
  write_file(dir / "pre.txt", ">>cmn_Hans<< How are you? I am fine.\n");
  write_file(dir / "plain.txt", "How are you? I am fine.\n");
  auto r = run_loom(translate_args({dir / "pre.txt", dir / "pre.out"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_loom(translate_args({"--tgt", "cmn_Hans", dir / "plain.txt", dir / "plain.out"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir / "pre.out"), slurp(dir / "plain.out"));
  EXPECT_EQ(slurp(dir / "pre.out").find(">>"), std::string::npos);
  // JSONL fields too.
  write_file(dir / "pre.jsonl", R"({"text":">>cmn_Hans<< How are you? I am fine."})" "\n");
  r = run_loom(translate_args({"--tgt", "cmn_Hans", dir / "pre.jsonl", dir / "pre.out.jsonl"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto row = nlohmann::json::parse(slurp(dir / "pre.out.jsonl"));
  std::string plain = slurp(dir / "plain.out");
  plain.pop_back();
  EXPECT_EQ(row["text_cmn_Hans"].get<std::string>(), plain);
}

TEST(TranslateFidelityCli, ResumeWithChangedModelWeightsIsRefused) {
  TempDir dir;
  std::filesystem::copy(kModel, dir / "model");
  // Line 3 is not UTF-8: the job stops there with a checkpoint after lines 1-2.
  write_file(dir / "in.txt", "Hello.\nHow are you?\nBad \xFF byte.\nFine.\n");
  const auto args = [&](bool resume) {
    std::vector<std::string> a{"translate", "--model", dir / "model", "--beam", "1", "--no-progress"};
    if (resume) a.push_back("--resume");
    a.push_back(dir / "in.txt");
    a.push_back(dir / "out.txt");
    return a;
  };
  auto r = run_loom(args(false), dir.path());
  ASSERT_NE(r.code, 0);
  ASSERT_NE(r.err.find("UTF-8"), std::string::npos) << r.err;
  r = run_loom(args(true), dir.path());  // same model: resumes (and meets the same bad line)
  EXPECT_NE(r.err.find("UTF-8"), std::string::npos) << r.err;
  std::string weights = slurp(dir / "model/model.safetensors");
  for (std::size_t i = weights.size() / 2; i < weights.size(); i += 97) weights[i] ^= 0x01;
  write_file(dir / "model/model.safetensors", weights);
  r = run_loom(args(true), dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("model's files changed since the checkpoint"), std::string::npos) << r.err;
}

TEST(TranslateFidelityCli, NonFiniteNumbersAreRefusedByEveryCommand) {
  TempDir dir;
  const auto r = run_loom({"generate", "--model", kModel, "--temperature", "nan", "--prompt", "x"}, dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("not a finite number"), std::string::npos) << r.err;
}

}  // namespace

namespace {

TEST(TranslateFidelityCli, GenerateOnATranslationModelSaysWhatItIs) {
  TempDir dir;
  const auto r = run_loom({"generate", "--model", kModel, "--prompt", "Hello"}, dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("'marian' translation model"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("loom translate"), std::string::npos) << r.err;
}

}  // namespace
