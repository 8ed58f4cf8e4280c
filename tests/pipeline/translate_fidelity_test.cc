// Issue 9: what `loom translate` promises to keep, at the job level with a fake engine —
// JSONL bytes outside the translated values (property test over random JSON rows), duplicate
// and existing target keys, completed-job resume, TXT as plain text, exact checkpoint_rows,
// a clean stop request, and --segment line.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/pipeline/translate_job.h"
#include "support/support.h"

namespace loom::pipeline {
namespace {

using loom_test::error_of;
using loom_test::slurp;
using loom_test::TempDir;
using loom_test::write_file;

/// "<" + the segment + ">": a visible, deterministic translation; records every call.
class BracketTranslator : public SegmentTranslator {
 public:
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    calls.push_back(segments);
    std::vector<std::string> out;
    for (const auto& s : segments) out.push_back("<" + s + ">");
    if (stop_after_calls > 0 && static_cast<int>(calls.size()) == stop_after_calls && stop) *stop = SIGINT;
    if (crash_at_call > 0 && static_cast<int>(calls.size()) == crash_at_call) throw std::runtime_error("crash");
    return out;
  }
  std::vector<std::vector<std::string>> calls;
  int stop_after_calls = 0;
  int crash_at_call = 0;
  volatile std::sig_atomic_t* stop = nullptr;
};

TranslateJobOptions opts(const std::string& in, const std::string& out) {
  TranslateJobOptions o;
  o.input = in;
  o.output = out;
  o.target_lang = "zh";
  o.fields = {"text"};
  o.log = nullptr;
  return o;
}

// ---- random JSON ----

class RandomJson {
 public:
  explicit RandomJson(uint32_t seed) : rng_(seed) {}
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  std::string ws() {
    static const char* kWs[] = {"", "", "", " ", "  ", "\t", " \t ", "\r"};
    return kWs[pick(8)];
  }
  std::string digits(int max_len) {
    std::string s;
    const int n = 1 + pick(max_len);
    for (int i = 0; i < n; ++i) s += static_cast<char>('0' + pick(10));
    return s;
  }
  std::string number() {
    static const char* kFixed[] = {"1180591620717411303424", "-9223372036854775809", "18446744073709551616",
                                   "3.141592653589793238", "1E2", "1e-400", "1.0e400", "-0", "0.0",
                                   "1.5E+308", "4.9e-324", "-0.000000000000000000001", "123456789012345678901234567890"};
    if (pick(3) == 0) return kFixed[pick(13)];
    std::string s = pick(2) ? "-" : "";
    s += pick(4) == 0 ? "0" : std::to_string(1 + pick(9)) + (pick(2) ? digits(30) : "");
    if (pick(2)) s += "." + digits(25);
    if (pick(2)) s += std::string(pick(2) ? "e" : "E") + (pick(3) == 0 ? "+" : pick(2) ? "-" : "") + digits(4);
    return s;
  }
  std::string string_literal() {
    static const char* kParts[] = {"a", "Z", " ", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t",
                                   "\\u00e9", "\\u4E2D", "\\ud83d\\ude00", "é", "中文", "😀", "\xE2\x80\x8B",
                                   "\\u0000", "'", "}", "{", ",", ":", "[", "]"};
    std::string s = "\"";
    const int n = pick(8);
    for (int i = 0; i < n; ++i) s += kParts[pick(26)];
    return s + "\"";
  }
  std::string value(int depth) {
    const int k = pick(depth > 3 ? 6 : 8);
    switch (k) {
      case 0: case 1: return number();
      case 2: case 3: return string_literal();
      case 4: return pick(2) ? "true" : "false";
      case 5: return "null";
      case 6: {
        std::string s = "[" + ws();
        const int n = pick(4);
        for (int i = 0; i < n; ++i) s += (i ? "," + ws() : "") + value(depth + 1) + ws();
        return s + "]";
      }
      default: {
        std::string s = "{" + ws();
        const int n = pick(4);
        for (int i = 0; i < n; ++i)
          s += (i ? "," + ws() : "") + "\"k" + std::to_string(i) + "\"" + ws() + ":" + ws() + value(depth + 1) + ws();
        return s + "}";
      }
    }
  }
  /// A row with a "text" string member somewhere among random other members.
  std::string row(std::string& text_value) {
    static const char* kTexts[] = {"Hello world.", "Caf\\u00e9 au lait.", "Line one.\\nLine two.", "中文 text",
                                   "Say \\\"hi\\\" now.", "Tab\\there."};
    const int n = pick(5);
    const int at = pick(n + 1);
    std::string s = ws() + "{" + ws();
    bool first = true;
    for (int i = 0; i <= n; ++i) {
      s += first ? "" : "," + ws();
      first = false;
      if (i == at) {
        const std::string t = kTexts[pick(6)];
        s += "\"text\"" + ws() + ":" + ws() + "\"" + t + "\"" + ws();
        text_value = nlohmann::json::parse("\"" + t + "\"").get<std::string>();
      } else {
        s += "\"f" + std::to_string(i) + "\"" + ws() + ":" + ws() + value(0) + ws();
      }
    }
    return s + "}" + ws();
  }

 private:
  std::mt19937 rng_;
};

TEST(TranslateFidelity, JsonlUntranslatedBytesAreKeptForRandomRows) {
  TempDir dir;
  RandomJson gen(20261204);
  std::string input;
  std::vector<std::string> rows;
  for (int i = 0; i < 400; ++i) {
    std::string text;
    rows.push_back(gen.row(text));
    input += rows.back() + "\n";
  }
  write_file(dir / "in.jsonl", input);
  BracketTranslator t;
  auto o = opts(dir / "in.jsonl", dir / "out.jsonl");
  o.segment = SegmentMode::kLine;  // whole lines: the expected translation is easy to state
  run_translate_job(o, t);
  const auto out = loom_test::lines_of(slurp(dir / "out.jsonl"));
  ASSERT_EQ(out.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string& in = rows[i];
    const std::size_t close = in.rfind('}');
    // Output = the input's bytes up to its closing brace, the new member, then the rest.
    ASSERT_EQ(out[i].substr(0, close), in.substr(0, close)) << "row " << i << ": " << in;
    ASSERT_EQ(out[i].substr(out[i].size() - (in.size() - close)), in.substr(close)) << "row " << i;
    const std::string added = out[i].substr(close, out[i].size() - in.size());
    ASSERT_EQ(added.rfind(",\"text_zh\":\"", 0), 0u) << added;
    // The added value is a JSON string holding the translation of the decoded text.
    const std::string value = nlohmann::json::parse(added.substr(11)).get<std::string>();
    ASSERT_NE(value.find('<'), std::string::npos) << value;
  }
}

TEST(TranslateFidelity, JsonlNumbersAndSpacingFromTheIssueAreKept) {
  TempDir dir;
  const std::string rows[] = {
      R"({"id": 1180591620717411303424, "text": "Hi."})",
      R"({"id":-9223372036854775809,"text":"Hi."})",
      R"({"a":18446744073709551616,"b":3.141592653589793238,"c":1E2,"d":1e-400,"text":"Hi."})",
      R"({"big":1.0e400,"text":"Hi."})",
      R"( { "text" : "Hi." , "n" : [ 1 , 2.50 ] , "s":"\u00e9\/" }  )",
  };
  std::string input;
  for (const auto& r : rows) input += r + "\n";
  write_file(dir / "in.jsonl", input);
  BracketTranslator t;
  run_translate_job(opts(dir / "in.jsonl", dir / "out.jsonl"), t);
  const auto out = loom_test::lines_of(slurp(dir / "out.jsonl"));
  ASSERT_EQ(out.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const std::size_t close = rows[i].rfind('}');
    EXPECT_EQ(out[i], rows[i].substr(0, close) + R"(,"text_zh":"<Hi.>")" + rows[i].substr(close));
  }
}

TEST(TranslateFidelity, JsonlDuplicateKeyIsAnErrorNamingTheLine) {
  TempDir dir;
  write_file(dir / "in.jsonl", "{\"text\":\"Fine.\"}\n{\"text\":\"First.\",\"text\":\"Second.\"}\n");
  BracketTranslator t;
  const std::string err = error_of([&] { run_translate_job(opts(dir / "in.jsonl", dir / "out.jsonl"), t); });
  EXPECT_NE(err.find("in.jsonl:2"), std::string::npos) << err;
  EXPECT_NE(err.find("duplicate key 'text'"), std::string::npos) << err;
  // Nested duplicates are data, not keys loom reads: kept as they are.
  write_file(dir / "nested.jsonl", "{\"m\":{\"a\":1,\"a\":2},\"text\":\"Hi.\"}\n");
  run_translate_job(opts(dir / "nested.jsonl", dir / "nested.out"), t);
  EXPECT_EQ(slurp(dir / "nested.out"), "{\"m\":{\"a\":1,\"a\":2},\"text\":\"Hi.\",\"text_zh\":\"<Hi.>\"}\n");
}

TEST(TranslateFidelity, ExistingTargetKeyIsRefusedUnlessOverwriteFields) {
  TempDir dir;
  write_file(dir / "in.jsonl", "{\"text\":\"Hi.\",\"text_zh\":\"keep me\"}\n");
  BracketTranslator t;
  std::string err = error_of([&] { run_translate_job(opts(dir / "in.jsonl", dir / "out.jsonl"), t); });
  EXPECT_NE(err.find("in.jsonl:1: 'text'"), std::string::npos) << err;
  EXPECT_NE(err.find("already has the target key 'text_zh'"), std::string::npos) << err;
  auto o = opts(dir / "in.jsonl", dir / "out2.jsonl");
  o.overwrite_fields = true;
  run_translate_job(o, t);
  EXPECT_EQ(slurp(dir / "out2.jsonl"), "{\"text\":\"Hi.\",\"text_zh\":\"<Hi.>\"}\n");
  // --fields text,text_zh: the translation of text would replace the source field text_zh.
  o = opts(dir / "in.jsonl", dir / "out3.jsonl");
  o.fields = {"text", "text_zh"};
  err = error_of([&] { run_translate_job(o, t); });
  EXPECT_NE(err.find("'text_zh' is both translated and the target of 'text'"), std::string::npos) << err;
}

TEST(TranslateFidelity, ResumeOfACompletedJobChecksTheOutputIsStillThere) {
  TempDir dir;
  write_file(dir / "in.txt", "One.\nTwo.\n");
  BracketTranslator t;
  run_translate_job(opts(dir / "in.txt", dir / "out.txt"), t);
  ASSERT_EQ(slurp(dir / "out.txt"), "<One.>\n<Two.>\n");
  auto o = opts(dir / "in.txt", dir / "out.txt");
  o.resume = true;
  EXPECT_TRUE(run_translate_job(o, t).already_done);
  std::filesystem::remove(dir / "out.txt");
  std::string err = error_of([&] { run_translate_job(o, t); });
  EXPECT_NE(err.find("is missing"), std::string::npos) << err;
  write_file(dir / "out.txt", "<One.>\n");
  err = error_of([&] { run_translate_job(o, t); });
  EXPECT_NE(err.find("now has 7 bytes"), std::string::npos) << err;
  o.resume = false;
  o.overwrite = true;
  run_translate_job(o, t);
  EXPECT_EQ(slurp(dir / "out.txt"), "<One.>\n<Two.>\n");
}

TEST(TranslateFidelity, TxtLinesArePlainTextNotMarkdownCode) {
  TempDir dir;
  write_file(dir / "in.txt", "    I love you.\n\tI love you.\n~~~ I love you.\n``` I love you.\n");
  BracketTranslator t;
  const auto st = run_translate_job(opts(dir / "in.txt", dir / "out.txt"), t);
  EXPECT_EQ(slurp(dir / "out.txt"), "    <I love you.>\n\t<I love you.>\n<~~~ I love you.>\n<``` I love you.>\n");
  EXPECT_EQ(st.segments, 4);
}

TEST(TranslateFidelity, CheckpointRowsIsExact) {
  TempDir dir;
  std::string input;
  for (int i = 0; i < 300; ++i) input += "Row " + std::to_string(i) + ".\n";
  write_file(dir / "in.txt", input);
  BracketTranslator t;
  t.crash_at_call = 3;
  auto o = opts(dir / "in.txt", dir / "out.txt");
  o.checkpoint_rows = 50;
  o.chunk_rows = 256;
  EXPECT_NE(error_of([&] { run_translate_job(o, t); }), "");
  const auto state = nlohmann::json::parse(slurp(dir / "out.txt.loom-state.json"));
  EXPECT_EQ(state["counters"]["rows"].get<int64_t>(), 100);  // two checkpoints of 50 before the crash
  EXPECT_EQ(loom_test::lines_of(slurp(dir / "out.txt")).size(), 100u);
}

TEST(TranslateFidelity, StopRequestCheckpointsAndResumeCompletes) {
  TempDir dir;
  std::string input, expected;
  for (int i = 0; i < 40; ++i) {
    input += "Row " + std::to_string(i) + ".\n";
    expected += "<Row " + std::to_string(i) + ".>\n";
  }
  write_file(dir / "in.txt", input);
  volatile std::sig_atomic_t stop = 0;
  BracketTranslator t;
  t.stop = &stop;
  t.stop_after_calls = 2;
  auto o = opts(dir / "in.txt", dir / "out.txt");
  o.chunk_rows = 8;
  o.stop = &stop;
  const auto st = run_translate_job(o, t);
  EXPECT_TRUE(st.stopped);
  EXPECT_EQ(st.rows, 16);
  EXPECT_EQ(slurp(dir / "out.txt"), expected.substr(0, slurp(dir / "out.txt").size()));
  const auto state = nlohmann::json::parse(slurp(dir / "out.txt.loom-state.json"));
  EXPECT_EQ(state["counters"]["rows"].get<int64_t>(), 16);
  EXPECT_FALSE(state["done"].get<bool>());
  stop = 0;
  BracketTranslator t2;
  o.resume = true;
  o.stop = nullptr;
  run_translate_job(o, t2);
  EXPECT_EQ(slurp(dir / "out.txt"), expected);
}

TEST(TranslateFidelity, SegmentLineSendsEachLineWhole) {
  TempDir dir;
  write_file(dir / "in.jsonl", R"({"text":"First one. Second one!\n  Next line.  \n\n---"})" "\n");
  BracketTranslator t;
  auto o = opts(dir / "in.jsonl", dir / "out.jsonl");
  o.segment = SegmentMode::kLine;
  run_translate_job(o, t);
  ASSERT_EQ(t.calls.size(), 1u);
  EXPECT_EQ(t.calls[0], (std::vector<std::string>{"First one. Second one!", "Next line."}));
  EXPECT_EQ(slurp(dir / "out.jsonl"),
            R"({"text":"First one. Second one!\n  Next line.  \n\n---","text_zh":"<First one. Second one!>\n  <Next line.>  \n\n---"})" "\n");
  EXPECT_EQ(parse_segment_mode("line"), SegmentMode::kLine);
  EXPECT_NE(error_of([] { parse_segment_mode("word"); }), "");
}

}  // namespace
}  // namespace loom::pipeline

namespace loom::pipeline {
namespace {

/// Blocks in translate() until released: holds a job (and its lock) open.
class GateTranslator : public SegmentTranslator {
 public:
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    entered = 1;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return segments;
  }
  std::atomic<int> entered{0};
  std::atomic<bool> release{false};
};

TEST(TranslateFidelity, TheLockHoldsForEverySpellingOfTheOutputPath) {
  TempDir dir;
  write_file(dir / "in.txt", "One.\n");
  std::filesystem::create_directories(dir.path() / "sub");
  std::filesystem::create_directory_symlink(dir.path() / "sub", dir.path() / "link");
  GateTranslator gate;
  std::thread first([&] { run_translate_job(opts(dir / "in.txt", dir / "sub/out.txt"), gate); });
  while (!gate.entered) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (const std::string& other : {dir / "sub/./out.txt", dir / "sub/../sub/out.txt", dir / "link/out.txt"}) {
    auto o = opts(dir / "in.txt", other);
    o.overwrite = true;
    BracketTranslator t;
    const std::string err = error_of([&] { run_translate_job(o, t); });
    EXPECT_NE(err.find("another loom process"), std::string::npos) << other << ": " << err;
  }
  gate.release = true;
  first.join();
  EXPECT_EQ(slurp(dir / "sub/out.txt"), "One.\n");
}

}  // namespace
}  // namespace loom::pipeline

namespace loom::pipeline {
namespace {

/// Answers "T" for every segment: loses any code span or URL.
class LossyTranslator : public SegmentTranslator {
 public:
  std::vector<std::string> translate(const std::vector<std::string>& segments) override {
    calls.push_back(segments);
    return std::vector<std::string>(segments.size(), "T");
  }
  std::vector<std::vector<std::string>> calls;
};

TEST(TranslateFidelity, InlineCodeAndUrlsStayInsideTheirSentence) {
  TempDir dir;
  write_file(dir / "in.jsonl",
             R"({"text":"Visit www.example.com today. The `print` function writes text.\n\nSee https://x.org/a."})" "\n");
  BracketTranslator t;
  const auto st = run_translate_job(opts(dir / "in.jsonl", dir / "out.jsonl"), t);
  ASSERT_EQ(t.calls.size(), 1u);
  EXPECT_EQ(t.calls[0], (std::vector<std::string>{"Visit www.example.com today.", "The `print` function writes text.",
                                                   "See https://x.org/a."}));
  EXPECT_EQ(st.inline_kept, 3);
  EXPECT_EQ(st.inline_split, 0);
  const auto row = nlohmann::json::parse(slurp(dir / "out.jsonl"));
  EXPECT_EQ(row["text_zh"], "<Visit www.example.com today.> <The `print` function writes text.>\n\n<See https://x.org/a.>");

  // An engine that loses the span: the sentence is translated around it, the span kept exactly.
  LossyTranslator lossy;
  const auto st2 = run_translate_job(opts(dir / "in.jsonl", dir / "lossy.jsonl"), lossy);
  ASSERT_EQ(lossy.calls.size(), 2u);
  EXPECT_EQ(lossy.calls[1], (std::vector<std::string>{"Visit", "today.", "The", "function writes text.", "See"}));
  EXPECT_EQ(st2.inline_split, 3);
  const auto row2 = nlohmann::json::parse(slurp(dir / "lossy.jsonl"));
  EXPECT_EQ(row2["text_zh"], "T www.example.com T T `print` T\n\nT https://x.org/a.");
}

// The shared function the server and the job use (pipeline/text_segments.h) gives the job's
// bytes, with the same engine calls, for a faithful and a span-losing engine; a Marian
// ">>xx<<" code goes before every engine input and not into the text.
TEST(TranslateFidelity, TranslateSegmentedEqualsTheJob) {
  const std::string text = "Visit www.example.com today. The `print` function writes text.\n\nSee https://x.org/a.";
  SegmentingOptions so;
  const std::vector<SegmentedText> texts = {segment_for_translation(text, so)};
  BracketTranslator bracket;
  InlineRejoinStats st;
  EXPECT_EQ(translate_segmented(texts, [&](const auto& b) { return bracket.translate(b); }, &st),
            (std::vector<std::string>{"<Visit www.example.com today.> <The `print` function writes text.>\n\n"
                                      "<See https://x.org/a.>"}));
  EXPECT_EQ(st.kept, 3);
  EXPECT_EQ(st.calls, 1);
  LossyTranslator lossy;
  std::vector<std::string> per_segment;
  EXPECT_EQ(translate_segmented(texts, [&](const auto& b) { return lossy.translate(b); }, &st, &per_segment),
            (std::vector<std::string>{"T www.example.com T T `print` T\n\nT https://x.org/a."}));
  ASSERT_EQ(lossy.calls.size(), 2u);
  EXPECT_EQ(lossy.calls[1], (std::vector<std::string>{"Visit", "today.", "The", "function writes text.", "See"}));
  EXPECT_EQ(st.split, 3);
  EXPECT_EQ(per_segment, (std::vector<std::string>{"T www.example.com T", "T `print` T", "T https://x.org/a."}));

  so.language_codes = {"cmn_Hans"};
  const SegmentedText marian = segment_for_translation(">>cmn_Hans<< One. Two.", so);
  EXPECT_EQ(marian.prefix, ">>cmn_Hans<< ");
  std::vector<std::string> inputs;
  marian.append_inputs(inputs);
  EXPECT_EQ(inputs, (std::vector<std::string>{">>cmn_Hans<< One.", ">>cmn_Hans<< Two."}));
  EXPECT_EQ(reassemble_text(marian, {"A", "B"}, 0), "A B");
}

}  // namespace
}  // namespace loom::pipeline
