#include "loom/pipeline/translate_job.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <pty.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/io/row_io.h"
#include "loom/text/segment.h"

namespace loom::pipeline {
namespace {

namespace fs = std::filesystem;

// ---- fakes ----

/// "<" + the words in reverse order + ">": deterministic, and visibly a translation.
std::string reverse_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> words;
  std::string w;
  while (in >> w) words.push_back(w);
  std::string out = "<";
  for (auto it = words.rbegin(); it != words.rend(); ++it) out += (it == words.rbegin() ? "" : " ") + *it;
  return out + ">";
}

class ReverseTranslator : public SegmentTranslator {
 public:
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    std::vector<std::string> out;
    for (const auto& s : segments) out.push_back(reverse_words(s));
    tokens_ += static_cast<int64_t>(segments.size());
    batch_sizes.push_back(segments.size());
    return out;
  }
  int64_t target_tokens() const override { return tokens_; }
  std::vector<std::size_t> batch_sizes;

 private:
  int64_t tokens_ = 0;
};

/// Reverse, after sleeping: gives a kill -9 time to land mid-job.
class SlowTranslator : public ReverseTranslator {
 public:
  explicit SlowTranslator(int ms) : ms_(ms) {}
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms_));
    return ReverseTranslator::translate(segments);
  }

 private:
  int ms_;
};

/// Reverse, but throws on call number `fail_at` (a crash that leaves the output as it is).
class CrashingTranslator : public ReverseTranslator {
 public:
  explicit CrashingTranslator(int fail_at) : fail_at_(fail_at) {}
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    if (++calls_ == fail_at_) throw std::runtime_error("engine crashed");
    return ReverseTranslator::translate(segments);
  }

 private:
  int fail_at_, calls_ = 0;
};

class WrongCountTranslator : public SegmentTranslator {
 public:
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    return std::vector<std::string>(segments.size() + 1, "x");
  }
};

// ---- helpers ----

class TranslateJobTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/loom-pipe-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* v : {"RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"}) unsetenv(v);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string write(const std::string& name, const std::string& data) const {
    std::ofstream(path(name), std::ios::binary) << data;
    return path(name);
  }
  static std::string read(const std::string& p) { return io::read_whole_file(p); }

  TranslateJobOptions options(const std::string& in, const std::string& out) const {
    TranslateJobOptions o;
    o.input = in;
    o.output = out;
    o.target_lang = "zh";
    o.log = nullptr;
    o.chunk_rows = 4;
    return o;
  }

  std::string dir_;
};

/// Expected translation of text by the job + ReverseTranslator: the segmenter's segments with
/// each translate segment reversed (for texts with several sentences, whose split is the
/// segmenter's business).
std::string expected_translation(const std::string& text, bool markdown = true) {
  text::SegmentOptions so;
  so.markdown = markdown;
  const auto segs = text::segment_text(text, so);
  std::vector<std::string> tr;
  for (const auto& s : segs) {
    if (s.translate) tr.push_back(reverse_words(s.text));
  }
  return text::reassemble(segs, tr);
}

// ---- JSONL ----

TEST_F(TranslateJobTest, JsonlAddsTargetFieldsAndKeepsEverythingElse) {
  const auto in = write("in.jsonl",
                        R"({"id":1,"prompt":"Hello world","meta":{"k":[1,2.5,null]},"text":"Good morning"})" "\n"
                        R"({"text":"Nice day","prompt":"Say it","id":"2"})" "\n");
  ReverseTranslator t;
  const auto st = run_translate_job(options(in, path("out.jsonl")), t);
  EXPECT_EQ(read(path("out.jsonl")),
            R"({"id":1,"prompt":"Hello world","meta":{"k":[1,2.5,null]},"text":"Good morning",)"
            R"("prompt_zh":"<world Hello>","text_zh":"<morning Good>"})" "\n"
            R"({"text":"Nice day","prompt":"Say it","id":"2","prompt_zh":"<it Say>","text_zh":"<day Nice>"})" "\n");
  EXPECT_EQ(st.rows, 2);
  EXPECT_EQ(st.segments, 4);
  EXPECT_EQ(st.rejects, 0);
  EXPECT_EQ(st.output_bytes, static_cast<int64_t>(read(path("out.jsonl")).size()));
  EXPECT_EQ(st.input_bytes, static_cast<int64_t>(read(in).size()));
}

TEST_F(TranslateJobTest, JsonlInPlaceNullExistingTargetAndCustomSuffix) {
  const auto in = write("in.jsonl", R"({"text":"a b c","n":null})" "\n"
                                    R"({"text":null,"n":"x y"})" "\n"
                                    R"({"text_de":"old","text":"one two"})" "\n");
  {
    auto o = options(in, path("inplace.jsonl"));
    o.fields = {"text"};
    o.in_place = true;
    ReverseTranslator t;
    run_translate_job(o, t);
    EXPECT_EQ(read(path("inplace.jsonl")), R"({"text":"<c b a>","n":null})" "\n"
                                           R"({"text":null,"n":"x y"})" "\n"
                                           R"({"text_de":"old","text":"<two one>"})" "\n");
  }
  {
    auto o = options(in, path("suffix.jsonl"));
    o.fields = {"text"};
    o.suffix = "_de";
    o.overwrite_fields = true;
    ReverseTranslator t;
    run_translate_job(o, t);
    // null -> target null; an existing target key is overwritten where it stands (asked for).
    EXPECT_EQ(read(path("suffix.jsonl")), R"({"text":"a b c","n":null,"text_de":"<c b a>"})" "\n"
                                          R"({"text":null,"n":"x y","text_de":null})" "\n"
                                          R"({"text_de":"<two one>","text":"one two"})" "\n");
  }
}

TEST_F(TranslateJobTest, JsonlBlankLinesStayBlankAndMultiSentenceTextIsSegmented) {
  const std::string para = "First sentence here. Second one follows!\n\nA new paragraph.";
  nlohmann::ordered_json row;
  row["text"] = para;
  const auto in = write("in.jsonl", "\n" + row.dump() + "\n   \r\n" + row.dump());
  auto o = options(in, path("out.jsonl"));
  o.fields = {"text"};
  ReverseTranslator t;
  const auto st = run_translate_job(o, t);
  nlohmann::ordered_json expected = row;
  expected["text_zh"] = expected_translation(para);
  EXPECT_EQ(read(path("out.jsonl")), "\n" + expected.dump() + "\n\n" + expected.dump() + "\n");
  EXPECT_EQ(st.rows, 4);
  EXPECT_EQ(st.blank_rows, 2);
  const auto segs = text::segment_text(para);
  int64_t tr = 0;
  for (const auto& s : segs) tr += s.translate;
  EXPECT_GE(tr, 2);  // two sentences at least
  EXPECT_EQ(st.segments, 2 * tr);
  EXPECT_EQ(st.copied_segments, 2 * (static_cast<int64_t>(segs.size()) - tr));
}

TEST_F(TranslateJobTest, EmptyFileAndBlankOnlyFileComplete) {
  {
    const auto in = write("empty.jsonl", "");
    ReverseTranslator t;
    const auto st = run_translate_job(options(in, path("empty.out.jsonl")), t);
    EXPECT_EQ(st.rows, 0);
    EXPECT_EQ(read(path("empty.out.jsonl")), "");
    EXPECT_TRUE(t.batch_sizes.empty());
  }
  {
    const auto in = write("blank.jsonl", "\n\n \n");
    ReverseTranslator t;
    const auto st = run_translate_job(options(in, path("blank.out.jsonl")), t);
    EXPECT_EQ(st.rows, 3);
    EXPECT_EQ(st.blank_rows, 3);
    EXPECT_EQ(read(path("blank.out.jsonl")), "\n\n\n");
    EXPECT_TRUE(t.batch_sizes.empty());  // nothing to translate, no engine call
  }
}

// ---- TXT ----

TEST_F(TranslateJobTest, TxtIsLineAlignedWithEmptyLinesCrlfAndNoFinalNewline) {
  const auto in = write("in.txt", "Hello world\n\nfoo bar baz\r\n\r\nlast line");
  ReverseTranslator t;
  const auto st = run_translate_job(options(in, path("out.txt")), t);
  EXPECT_EQ(read(path("out.txt")), "<world Hello>\n\n<baz bar foo>\r\n\r\n<line last>");
  EXPECT_EQ(st.rows, 5);
  EXPECT_EQ(st.segments, 3);
}

TEST_F(TranslateJobTest, OneMegabyteLineWorks) {
  std::string line;
  std::mt19937 rng(7);
  while (line.size() < (1u << 20)) line += "w" + std::to_string(rng() % 1000) + (rng() % 9 == 0 ? ". " : " ");
  line += "end";
  const auto in = write("big.txt", line + "\nsmall one\n");
  ReverseTranslator t;
  const auto st = run_translate_job(options(in, path("big.out.txt")), t);
  EXPECT_EQ(st.rows, 2);
  EXPECT_EQ(read(path("big.out.txt")), expected_translation(line) + "\n<one small>\n");
}

// ---- chunks ----

TEST_F(TranslateJobTest, SegmentsOfAChunkGoToOneTranslateCall) {
  std::string data;
  for (int i = 0; i < 10; ++i) data += "row " + std::to_string(i) + "\n";
  const auto in = write("in.txt", data);
  auto o = options(in, path("out.txt"));
  o.chunk_rows = 4;
  ReverseTranslator t;
  const auto st = run_translate_job(o, t);
  EXPECT_EQ(t.batch_sizes, (std::vector<std::size_t>{4, 4, 2}));
  EXPECT_EQ(st.translate_calls, 3);
  std::string expected;
  for (int i = 0; i < 10; ++i) expected += "<" + std::to_string(i) + " row>\n";
  EXPECT_EQ(read(path("out.txt")), expected);
}

TEST_F(TranslateJobTest, TranslatorReturningWrongCountIsAnError) {
  const auto in = write("in.txt", "a b\n");
  WrongCountTranslator t;
  try {
    run_translate_job(options(in, path("out.txt")), t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "translator returned 2 translations for 1 segments");
  }
}

// ---- bad rows ----

struct BadCase {
  std::string name, line, error;  ///< error: expected message after "file:2: "
};

std::vector<BadCase> bad_cases() {
  return {
      {"invalid_json", R"({"text": "unterminated)", "invalid JSON at byte "},
      {"not_utf8", "{\"text\":\"caf\xE9 au lait\"}", "not valid UTF-8 at byte 12 of the line (byte 0xE9)"},
      {"missing_field", R"({"title":"no text here"})", "'text': field is missing"},
      {"number_field", R"({"text":42})", "'text': field is a number, expected a string (or null)"},
      {"array_field", R"({"text":["a"]})", "'text': field is an array, expected a string (or null)"},
      {"not_object", R"("just a string")", "row is a JSON string, expected an object"},
      {"too_long", "{\"text\":\"" + std::string(300, 'x') + "\"}", "line is 311 bytes, over the limit of 200 bytes"},
  };
}

TEST_F(TranslateJobTest, BadRowAbortsNamingFileLineAndFieldAndKeepsRowsBefore) {
  for (const BadCase& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    const auto in = write(c.name + ".jsonl", "{\"text\":\"good row\"}\n" + c.line + "\n{\"text\":\"after it\"}\n");
    const auto out = path(c.name + ".out.jsonl");
    auto o = options(in, out);
    o.fields = {"text"};
    o.max_line_bytes = 200;
    ReverseTranslator t;
    try {
      run_translate_job(o, t);
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(in + ":2: " + c.error, 0), 0u) << e.what();
      EXPECT_EQ(e.where().line, 2);
    }
    EXPECT_EQ(read(out), "{\"text\":\"good row\",\"text_zh\":\"<row good>\"}\n");
    // Fix the policy and resume: continues at the bad row, which now goes to the rejects.
    o.resume = true;
    o.on_error = OnError::kSkip;
    const auto st = run_translate_job(o, t);
    EXPECT_EQ(st.rows, 2);
    EXPECT_EQ(st.rejects, 1);
    EXPECT_EQ(read(out), "{\"text\":\"good row\",\"text_zh\":\"<row good>\"}\n"
                         "{\"text\":\"after it\",\"text_zh\":\"<it after>\"}\n");
    const auto rej = nlohmann::json::parse(read(out + ".rejects.jsonl"));
    EXPECT_EQ(rej.at("line"), 2);
  }
}

TEST_F(TranslateJobTest, SkipWritesRejectsWithRawRowAndContinues) {
  std::string data = "{\"text\":\"row one\"}\n";
  for (const BadCase& c : bad_cases()) data += c.line + "\n";
  data += "{\"text\":\"last row\"}";
  const auto in = write("in.jsonl", data);
  auto o = options(in, path("out.jsonl"));
  o.fields = {"text"};
  o.on_error = OnError::kSkip;
  o.max_line_bytes = 200;
  ReverseTranslator t;
  const auto st = run_translate_job(o, t);
  EXPECT_EQ(st.rows, 2);
  EXPECT_EQ(st.rejects, static_cast<int64_t>(bad_cases().size()));
  EXPECT_EQ(read(path("out.jsonl")), "{\"text\":\"row one\",\"text_zh\":\"<one row>\"}\n"
                                     "{\"text\":\"last row\",\"text_zh\":\"<row last>\"}\n");
  std::istringstream rejects(read(path("out.jsonl.rejects.jsonl")));
  std::string rl;
  int i = 0;
  for (const BadCase& c : bad_cases()) {
    ASSERT_TRUE(std::getline(rejects, rl)) << c.name;
    const auto r = nlohmann::ordered_json::parse(rl);
    EXPECT_EQ(r.at("line"), i + 2) << c.name;
    EXPECT_EQ(r.at("error").get<std::string>().rfind(in + ":" + std::to_string(i + 2) + ": " + c.error, 0), 0u)
        << r.at("error");
    if (c.name == "not_utf8") {
      EXPECT_EQ(r.at("raw"), "{\"text\":\"caf\xEF\xBF\xBD au lait\"}");
      EXPECT_EQ(r.at("raw_base64"), "eyJ0ZXh0IjoiY2Fm6SBhdSBsYWl0In0=");
    } else if (c.name == "too_long") {
      EXPECT_EQ(r.at("raw"), c.line);  // under the 1 KiB kept prefix
      EXPECT_EQ(r.at("raw_truncated"), true);
    } else {
      EXPECT_EQ(r.at("raw"), c.line);
      EXPECT_FALSE(r.contains("raw_base64"));
    }
    ++i;
  }
  EXPECT_FALSE(std::getline(rejects, rl));
}

TEST_F(TranslateJobTest, TxtNonUtf8LineIsABadRow) {
  const auto in = write("in.txt", "fine line\nbad \xFF line\n");
  ReverseTranslator t;
  try {
    run_translate_job(options(in, path("out.txt")), t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), in + ":2: not valid UTF-8 at byte 4 of the line (byte 0xFF)");
  }
}

TEST_F(TranslateJobTest, MissingFieldsOkLeavesThemOut) {
  const auto in = write("in.jsonl", R"({"prompt":"p q"})" "\n" R"({"text":"t u"})" "\n");
  auto o = options(in, path("out.jsonl"));
  o.missing_fields_ok = true;
  ReverseTranslator t;
  run_translate_job(o, t);
  EXPECT_EQ(read(path("out.jsonl")), R"({"prompt":"p q","prompt_zh":"<q p>"})" "\n"
                                     R"({"text":"t u","text_zh":"<u t>"})" "\n");
}

// ---- existing output, resume, checks ----

TEST_F(TranslateJobTest, ExistingOutputNeedsResumeOrOverwriteAndDoneJobIsNotRedone) {
  const auto in = write("in.txt", "a b\nc d\n");
  const auto out = path("out.txt");
  ReverseTranslator t;
  run_translate_job(options(in, out), t);
  try {
    run_translate_job(options(in, out), t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exists; use --resume or --overwrite"), std::string::npos) << e.what();
  }
  auto o = options(in, out);
  o.resume = true;
  ReverseTranslator t2;
  const auto st = run_translate_job(o, t2);
  EXPECT_TRUE(st.already_done);
  EXPECT_EQ(st.rows, 2);
  EXPECT_TRUE(t2.batch_sizes.empty());
  o.resume = false;
  o.overwrite = true;
  EXPECT_EQ(run_translate_job(o, t2).rows, 2);
  EXPECT_EQ(read(out), "<b a>\n<d c>\n");
  // stdout cannot resume, stdin cannot shard.
  auto bad = options(in, "-");
  bad.resume = true;
  EXPECT_THROW(run_translate_job(bad, t2), Error);
  bad = options("-", path("x.txt"));
  bad.shard_count = 2;
  EXPECT_THROW(run_translate_job(bad, t2), Error);
}

TEST_F(TranslateJobTest, ResumeRefusesChangedOptionsOrInput) {
  std::string data;
  for (int i = 0; i < 20; ++i) data += "{\"text\":\"row " + std::to_string(i) + "\"}\n";
  const auto in = write("in.jsonl", data);
  const auto out = path("out.jsonl");
  auto o = options(in, out);
  o.fields = {"text"};
  o.checkpoint_rows = 4;
  CrashingTranslator crash(3);
  EXPECT_THROW(run_translate_job(o, crash), std::runtime_error);
  o.resume = true;
  auto changed = o;
  changed.suffix = "_de";
  ReverseTranslator t;
  try {
    run_translate_job(changed, t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("option 'suffix' is \"_de\" but the checkpoint was made with \"_zh\""),
              std::string::npos) << e.what();
  }
  write("in.jsonl", data + "{\"text\":\"more\"}\n");
  try {
    run_translate_job(o, t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("changed since the checkpoint"), std::string::npos) << e.what();
  }
}

TEST_F(TranslateJobTest, CrashThenTornLineThenResumeIsByteIdentical) {
  std::string data;
  for (int i = 0; i < 50; ++i) data += "{\"id\":" + std::to_string(i) + ",\"text\":\"word" + std::to_string(i) + " x\"}\n";
  const auto in = write("in.jsonl", data);
  auto o = options(in, path("ref.jsonl"));
  o.fields = {"text"};
  o.checkpoint_rows = 6;
  ReverseTranslator ref_t;
  run_translate_job(o, ref_t);
  const std::string ref = read(path("ref.jsonl"));

  o.output = path("out.jsonl");
  CrashingTranslator crash(7);  // chunk 7 of 4 rows: rows 0..23 written, checkpoint at row 18
  EXPECT_THROW(run_translate_job(o, crash), std::runtime_error);
  const std::string partial = read(o.output);
  EXPECT_EQ(partial, ref.substr(0, partial.size()));
  EXPECT_GT(partial.size(), 0u);
  {
    std::ofstream(o.output, std::ios::app | std::ios::binary) << "{\"id\":99,\"te";  // torn row
  }
  o.resume = true;
  ReverseTranslator t;
  const auto st = run_translate_job(o, t);
  EXPECT_EQ(read(o.output), ref);
  EXPECT_EQ(st.rows, 50);
  EXPECT_LT(t.batch_sizes.size(), ref_t.batch_sizes.size());  // did not start over
}

TEST_F(TranslateJobTest, KillNineAtRandomMomentsThenResumeIsByteIdentical) {
  std::string data;
  std::mt19937 rng(12345);
  for (int i = 0; i < 240; ++i) {
    if (i % 37 == 5) {
      data += "{\"oops\":" + std::to_string(i) + "}\n";  // bad row -> rejects
    } else {
      data += "{\"id\":" + std::to_string(i) + ",\"text\":\"sentence " + std::to_string(rng() % 1000) + " here\"}\n";
    }
  }
  const auto in = write("in.jsonl", data);
  auto o = options(in, path("ref.jsonl"));
  o.fields = {"text"};
  o.on_error = OnError::kSkip;
  o.chunk_rows = 3;
  ReverseTranslator ref_t;
  run_translate_job(o, ref_t);  // one checkpoint at the end: the interval must not change the bytes
  o.checkpoint_rows = 2;
  const std::string ref = read(path("ref.jsonl"));
  const std::string ref_rejects = read(path("ref.jsonl.rejects.jsonl"));

  o.output = path("out.jsonl");
  o.resume = true;  // a first run with resume and no output starts fresh
  const unsigned seed = static_cast<unsigned>(std::random_device{}());
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 kill_rng(seed);
  int killed_mid_run = 0;
  for (int round = 0; round < 6; ++round) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      try {
        SlowTranslator slow(2);
        run_translate_job(o, slow);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        rc = 3;
      }
      _exit(rc);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + kill_rng() % 60));
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      ++killed_mid_run;
    } else {
      ASSERT_EQ(WEXITSTATUS(status), 0) << "child failed in round " << round;
    }
    // Whatever the moment, the output so far is a prefix of the reference up to a torn tail.
    if (io::path_exists(o.output)) {
      const std::string partial = read(o.output);
      const std::size_t cut = partial.rfind('\n') == std::string::npos ? 0 : partial.rfind('\n') + 1;
      EXPECT_EQ(partial.substr(0, cut), ref.substr(0, cut)) << "round " << round;
    }
  }
  EXPECT_GE(killed_mid_run, 1);
  ReverseTranslator t;
  const auto st = run_translate_job(o, t);
  EXPECT_EQ(read(o.output), ref);
  EXPECT_EQ(read(path("out.jsonl.rejects.jsonl")), ref_rejects);
  EXPECT_EQ(st.rows + st.rejects, 240);
}

// ---- stdin / stdout, summary ----

/// Runs f with file descriptor fd redirected to the file at path.
template <typename F>
void with_fd_redirected(int fd, const std::string& path, int flags, F f) {
  const int saved = dup(fd);
  const int file = open(path.c_str(), flags, 0644);
  ASSERT_GE(file, 0);
  dup2(file, fd);
  close(file);
  try {
    f();
  } catch (...) {
    dup2(saved, fd);
    close(saved);
    throw;
  }
  dup2(saved, fd);
  close(saved);
}

TEST_F(TranslateJobTest, StdinIsPlainTextByDefault) {
  // `echo "How are you?" | loom translate`: stdin lines are TXT rows unless --format jsonl.
  const auto in = write("in.txt", "a b\n{\"text\":\"x\"}\n");
  const auto out = path("stdout.txt");
  auto o = options("-", "-");
  TranslateJobStats st;
  with_fd_redirected(0, in, O_RDONLY, [&] {
    with_fd_redirected(1, out, O_WRONLY | O_CREAT | O_TRUNC, [&] {
      ReverseTranslator t;
      st = run_translate_job(o, t);
    });
  });
  EXPECT_EQ(st.rows, 2);
  const std::string got = read(out);
  EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), 2);
  EXPECT_EQ(got.find("text_zh"), std::string::npos);  // not parsed as JSON
}

TEST_F(TranslateJobTest, StdinToStdoutIsJsonlWithFormatJsonl) {
  const auto in = write("in.jsonl", R"({"text":"from stdin"})" "\n\n");
  const auto out = path("stdout.jsonl");
  auto o = options("-", "-");
  o.fields = {"text"};
  o.format = RowFormat::kJsonl;
  TranslateJobStats st;
  with_fd_redirected(0, in, O_RDONLY, [&] {
    with_fd_redirected(1, out, O_WRONLY | O_CREAT | O_TRUNC, [&] {
      ReverseTranslator t;
      st = run_translate_job(o, t);
    });
  });
  EXPECT_EQ(read(out), R"({"text":"from stdin","text_zh":"<stdin from>"})" "\n\n");
  EXPECT_EQ(st.rows, 2);
  EXPECT_FALSE(io::path_exists(path("-.loom-state.json")));
  o.on_error = OnError::kSkip;  // stdout has no default rejects file beside it
  ReverseTranslator t;
  EXPECT_THROW(run_translate_job(o, t), Error);
}

TEST_F(TranslateJobTest, SummaryLineGoesToTheLogStream) {
  const auto in = write("in.txt", "a b\n\nc\n");
  auto o = options(in, path("out.txt"));
  std::FILE* log = std::tmpfile();
  o.log = log;
  ReverseTranslator t;
  run_translate_job(o, t);
  std::rewind(log);
  char buf[4096] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, log);
  std::fclose(log);
  const std::string s(buf, n);
  // Not a terminal: no live line, only the summary. The empty line has no segments at all.
  EXPECT_EQ(s.find('\r'), std::string::npos) << s;
  EXPECT_EQ(s.rfind("loom translate: " + path("out.txt") +
                    " shard 0/1: 3 rows, 2 segments translated, 0 copied, 0 rejected, ", 0), 0u) << s;
  EXPECT_EQ(s.back(), '\n');
}

TEST_F(TranslateJobTest, LiveProgressLineOnATerminalIsRateLimited) {
  int master = -1, slave = -1;
  ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  std::string data;
  for (int i = 0; i < 24; ++i) data += "row " + std::to_string(i) + "\n";
  const auto in = write("in.txt", data);
  auto o = options(in, path("out.txt"));
  o.chunk_rows = 2;  // 12 chunks of 40 ms: ~0.5 s
  std::FILE* log = fdopen(slave, "w");
  o.log = log;
  SlowTranslator t(40);
  const auto start = std::chrono::steady_clock::now();
  run_translate_job(o, t);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fclose(log);
  std::string s;
  char buf[4096];
  fcntl(master, F_SETFL, O_NONBLOCK);
  for (ssize_t n; (n = ::read(master, buf, sizeof buf)) > 0;) s.append(buf, static_cast<std::size_t>(n));
  close(master);
  std::size_t draws = 0;
  for (std::size_t p = 0; (p = s.find(" elapsed", p)) != std::string::npos; ++p) ++draws;
  EXPECT_GE(draws, 2u) << s;                                            // it is live ...
  EXPECT_LE(draws, static_cast<std::size_t>(secs / 0.25) + 2) << s;     // ... at most ~4 times/s
  EXPECT_NE(s.find("\r2 rows, 2 segments translated, 0 copied, 0 rejected"), std::string::npos) << s;
  EXPECT_NE(s.find("% | "), std::string::npos) << s;
  EXPECT_NE(s.find("| ETA "), std::string::npos) << s;
  EXPECT_NE(s.find("loom translate: " + path("out.txt") + " shard 0/1: 24 rows"), std::string::npos) << s;
}

// ---- shards ----

/// Runs shards 0..n-1 of base and checks that their outputs (and rejects) concatenated equal the
/// unsharded run's, and that together they hold every row once.
void expect_shards_concatenate(const std::string& tag, int n, const TranslateJobOptions& base,
                               const std::string& ref, const std::string& ref_rejects, int64_t ref_rows) {
  SCOPED_TRACE(tag + " in " + std::to_string(n) + " shards");
  std::string cat, cat_rejects;
  int64_t rows = 0, rejects = 0;
  for (int i = 0; i < n; ++i) {
    auto o = base;
    o.output = base.output + "." + std::to_string(n) + ".{shard}";
    o.shard_index = i;
    o.shard_count = n;
    ReverseTranslator t;
    const auto st = run_translate_job(o, t);
    EXPECT_EQ(st.output_path, base.output + "." + std::to_string(n) + "." + std::to_string(i));
    cat += io::read_whole_file(st.output_path);
    if (io::path_exists(st.output_path + ".rejects.jsonl")) {
      const std::string r = io::read_whole_file(st.output_path + ".rejects.jsonl");
      cat_rejects += r;
    }
    rows += st.rows;
    rejects += st.rejects;
  }
  EXPECT_EQ(cat, ref);
  EXPECT_EQ(rows, ref_rows);
  // The rejects' "line" numbers are of the whole file, so they concatenate too.
  EXPECT_EQ(cat_rejects, ref_rejects);
  EXPECT_EQ(rejects, static_cast<int64_t>(std::count(ref_rejects.begin(), ref_rejects.end(), '\n')));
}

TEST_F(TranslateJobTest, ShardsConcatenateToTheUnshardedOutput) {
  std::mt19937 rng(99);
  std::vector<std::pair<std::string, std::string>> files;
  {
    std::string ten, mixed, jsonl;
    for (int i = 0; i < 10; ++i) ten += "line number " + std::to_string(i) + "\n";
    for (int i = 0; i < 25; ++i) {  // lines of very different length: 1-3 words, 900 and 4000 words
      const std::size_t words = (i == 3) ? 4000 : (i == 17 ? 900 : 1 + rng() % 3);
      for (std::size_t w = 0; w < words; ++w) mixed += (w ? " w" : "w") + std::to_string(rng() % 100);
      mixed += (i == 10 ? "\n\n" : "\n");
    }
    for (int i = 0; i < 23; ++i) {  // JSONL with bad rows and blank lines between
      if (i % 7 == 3) jsonl += "{\"no_text\":1}\n";
      else if (i % 5 == 4) jsonl += "\n";
      else jsonl += "{\"i\":" + std::to_string(i) + ",\"text\":\"" + std::string(1 + rng() % 300, 'a') + " b\"}\n";
    }
    files = {{"ten.txt", ten}, {"one.txt", "only row\n"}, {"two_nonl.txt", "first row\nsecond row"},
             {"mixed.txt", mixed}, {"rows.jsonl", jsonl}};
  }
  for (const auto& [name, data] : files) {
    const auto in = write(name, data);
    auto o = options(in, path(name + ".out"));
    o.fields = {"text"};
    o.on_error = OnError::kSkip;
    ReverseTranslator t;
    const auto st = run_translate_job(o, t);
    const std::string ref = read(path(name + ".out"));
    const std::string rejects_path = path(name + ".out.rejects.jsonl");
    const std::string ref_rejects = io::path_exists(rejects_path) ? read(rejects_path) : "";
    if (name == "rows.jsonl") EXPECT_EQ(st.rejects, 3);
    for (int n : {2, 3, 4}) expect_shards_concatenate(name, n, o, ref, ref_rejects, st.rows);
  }
}

TEST_F(TranslateJobTest, ShardErrorsNameTheLineInTheWholeFile) {
  std::string data;
  for (int i = 1; i <= 30; ++i) data += (i == 26 ? std::string("{bad") : "{\"text\":\"r" + std::to_string(i) + "\"}") + "\n";
  const auto in = write("in.jsonl", data);
  auto o = options(in, path("out.jsonl"));
  o.fields = {"text"};
  o.shard_index = 2;
  o.shard_count = 3;
  ReverseTranslator t;
  try {
    run_translate_job(o, t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(in + ":26: invalid JSON", 0), 0u) << e.what();
  }
}

TEST_F(TranslateJobTest, ShardFromEnvironmentAndOutputNaming) {
  EXPECT_EQ(shard_output_path("out.jsonl", 1, 3), "out.00001-of-00003.jsonl");
  EXPECT_EQ(shard_output_path("dir.v2/out", 0, 2), "dir.v2/out.00000-of-00002");
  EXPECT_EQ(shard_output_path("out-{shard}.txt", 4, 8), "out-4.txt");
  EXPECT_EQ(shard_output_path("out.jsonl", 0, 1), "out.jsonl");
  EXPECT_EQ(shard_output_path("-", 1, 2), "-");

  const auto in = write("in.txt", "a\nb\nc\nd\n");
  setenv("RANK", "1", 1);
  setenv("WORLD_SIZE", "2", 1);
  ReverseTranslator t;
  const auto st = run_translate_job(options(in, path("out.txt")), t);
  EXPECT_EQ(st.shard_index, 1);
  EXPECT_EQ(st.shard_count, 2);
  EXPECT_EQ(read(path("out.00001-of-00002.txt")), "<c>\n<d>\n");
  setenv("RANK", "2", 1);
  try {
    run_translate_job(options(in, path("out2.txt")), t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "'RANK': shard index 2 is out of range for 2 shards (0..1)");
  }
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
  setenv("SLURM_PROCID", "x", 1);
  setenv("SLURM_NTASKS", "2", 1);
  EXPECT_THROW(run_translate_job(options(in, path("out3.txt")), t), Error);
  unsetenv("SLURM_PROCID");
  unsetenv("SLURM_NTASKS");
}

}  // namespace
}  // namespace loom::pipeline
