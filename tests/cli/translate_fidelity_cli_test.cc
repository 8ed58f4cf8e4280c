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

namespace {

const std::string kNllb = std::string(LOOM_TEST_DATA) + "/hf-tiny/nllb-m2m100";

TEST(TranslateFidelityCli, TxtFenceLikeLinesAreTranslated) {
  TempDir dir;
  write_file(dir / "in.txt", "~~~ I love you.\n``` I love you.\n");
  const auto r = run_loom(translate_args({dir / "in.txt", dir / "out.txt"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  for (const std::string& line : lines_of(slurp(dir / "out.txt"))) EXPECT_EQ(line.find("love"), std::string::npos) << line;
  EXPECT_NE(r.err.find("2 segments translated"), std::string::npos) << r.err;
}

TEST(TranslateFidelityCli, LanguageCodesInOtherSpellingsAreMatchedOrListed) {
  TempDir dir;
  write_file(dir / "in.txt", "How are you? I am fine.\n");
  // Marian opus-mt: "zh" / "zho_Hans" mean the model's >>cmn_Hans<< token (before, "zh" was
  // accepted and no language token was sent).
  auto r = run_loom(translate_args({"--tgt", "cmn_Hans", dir / "in.txt", dir / "cmn.txt"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  for (const std::string& tgt : {"zh", "zho_Hans", "zh-CN"}) {
    r = run_loom(translate_args({"--tgt", tgt, dir / "in.txt", dir / ("o_" + tgt + ".txt")}), dir.path());
    ASSERT_EQ(r.code, 0) << tgt << ": " << r.err;
    EXPECT_EQ(slurp(dir / ("o_" + tgt + ".txt")), slurp(dir / "cmn.txt")) << tgt;
  }
  r = run_loom(translate_args({"--tgt", "fr", dir / "in.txt", dir / "fr.txt"}), dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("valid codes (3): cmn_Hans, cmn_Hant, yue_Hant"), std::string::npos) << r.err;
  // The JSONL key keeps the user's spelling.
  write_file(dir / "in.jsonl", R"({"text":"How are you? I am fine."})" "\n");
  r = run_loom(translate_args({"--tgt", "zh", dir / "in.jsonl", dir / "out.jsonl"}), dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  std::string cmn = slurp(dir / "cmn.txt");
  cmn.pop_back();
  EXPECT_EQ(nlohmann::json::parse(slurp(dir / "out.jsonl"))["text_zh"], cmn);

  // NLLB: "en" / "zh" / "cmn_Hans" for eng_Latn / zho_Hans.
  const auto nllb = [&](const std::string& src, const std::string& tgt, const std::string& out) {
    return run_loom({"translate", "--model", kNllb, "--beam", "1", "--no-progress", "--src", src, "--tgt", tgt,
                     dir / "in.txt", dir / out}, dir.path());
  };
  r = nllb("eng_Latn", "zho_Hans", "n1.txt");
  ASSERT_EQ(r.code, 0) << r.err;
  r = nllb("en", "zh", "n2.txt");
  ASSERT_EQ(r.code, 0) << r.err;
  r = nllb("eng", "cmn_Hans", "n3.txt");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir / "n2.txt"), slurp(dir / "n1.txt"));
  EXPECT_EQ(slurp(dir / "n3.txt"), slurp(dir / "n1.txt"));
  r = nllb("en", "tlh", "n4.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("valid codes (202)"), std::string::npos) << r.err;
}

TEST(TranslateFidelityCli, ExtraMembersBesideAnExistingKeyAreRefused) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {R"({"text":"Hello.","text_zh_score":1})", {"--with-scores"}},
      {R"({"text":"Hello.","text_zh_nbest":[]})", {"--n-best", "2"}},
      {R"({"text":"Hello.","text_zh_nbest_scores":[]})", {"--n-best", "2", "--with-scores"}},
      {R"({"text":"Hello.","loom_meta":{}})", {"--meta"}},
  };
  int n = 0;
  for (const auto& [row, flags] : cases) {
    const std::string in = dir / ("in" + std::to_string(n) + ".jsonl"), out = dir / ("out" + std::to_string(n++) + ".jsonl");
    write_file(in, row + "\n");
    auto args = translate_args(flags);
    args.push_back(in);
    args.push_back(out);
    const auto r = run_loom(args, dir.path());
    EXPECT_NE(r.code, 0) << row;
    EXPECT_NE(r.err.find("already has the key"), std::string::npos) << row << ": " << r.err;
  }
  // Without a clash every member appears once.
  write_file(dir / "ok.jsonl", R"({"text":"Hello.","id":1})" "\n");
  const auto r = run_loom(translate_args({"--n-best", "2", "--with-scores", "--meta", dir / "ok.jsonl", dir / "ok.out.jsonl"}),
                          dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string line = slurp(dir / "ok.out.jsonl");
  for (const char* key : {"\"text_zh\":", "\"text_zh_nbest\":", "\"text_zh_nbest_scores\":", "\"text_zh_score\":", "\"loom_meta\":"}) {
    const auto first = line.find(key);
    EXPECT_NE(first, std::string::npos) << key;
    EXPECT_EQ(line.find(key, first + 1), std::string::npos) << key << " twice: " << line;
  }
}

TEST(TranslateFidelityCli, LockHoldsForARelativeAndAnAbsoluteSpellingOfTheOutput) {
  TempDir dir;
  write_file(dir / "in.txt", slurp(std::string(LOOM_SOURCE_DIR) + "/data/flores200/eng_Latn.devtest"));
  const pid_t pid = loom_test::spawn_loom(translate_args({dir / "in.txt", dir / "out.txt"}), dir / "a.stdout", dir / "a.stderr");
  for (int i = 0; i < 600 && !std::filesystem::exists(dir / "out.txt.loom-lock"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::filesystem::create_directory_symlink(dir.path(), dir / "alias");
  for (const std::string& other : {std::string("out.txt"), std::string("./alias/out.txt"), std::string("../") +
                                       dir.path().filename().string() + "/out.txt"}) {
    // Run from inside the job's directory, so "out.txt" and the other spellings are relative.
    const int code = loom_test::wait_exit_code(loom_test::spawn_loom(
        translate_args({"--overwrite", dir / "in.txt", other}), dir / "b.stdout", dir / "b.stderr", {}, dir.path()));
    const std::string err = slurp(dir / "b.stderr");
    EXPECT_NE(code, 0) << other;
    EXPECT_NE(err.find("another loom process"), std::string::npos) << other << ": " << err;
  }
  ::kill(pid, SIGINT);
  loom_test::wait_exit_code(pid);
}

TEST(TranslateFidelityCli, EveryCommandExitsNonZeroWhenItsOutputCannotBeWritten) {
  TempDir dir;
  write_file(dir / "hyp.txt", "a b c\n");
  write_file(dir / "ref.txt", "a b c\n");
  write_file(dir / "doc.txt", "The cat sat on the mat. Dogs bark loudly.\n");
  ASSERT_EQ(run_loom({"rag", "ingest", "--index", dir / "idx", dir / "doc.txt"}, dir.path()).code, 0);
  const std::string gemma = std::string(LOOM_TEST_DATA) + "/hf-tiny/gemma";
  for (const auto& args : {std::vector<std::string>{"eval", "mt", "--ref", dir / "ref.txt", "--hyp", dir / "hyp.txt"},
                           std::vector<std::string>{"generate", "--model", gemma, "--prompt", "Hi", "--max-new-tokens", "3"},
                           std::vector<std::string>{"rag", "search", "--index", dir / "idx", "cat"},
                           std::vector<std::string>{"tokenize", "--model", kModel, dir / "hyp.txt"},
                           translate_args({"--format", "txt", dir / "hyp.txt", "-"})}) {
    const pid_t pid = loom_test::spawn_loom(args, "/dev/full", dir / "full.stderr");
    EXPECT_NE(loom_test::wait_exit_code(pid), 0) << args[0] << ": " << slurp(dir / "full.stderr");
    EXPECT_NE(slurp(dir / "full.stderr").find("error"), std::string::npos) << args[0];
  }
}

}  // namespace
