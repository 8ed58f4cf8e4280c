// loom::serve::Server over loopback: routes, response shapes, `loom translate` parity through
// the binary, batching invariants (concurrent == sequential), and every bad request's 4xx with
// an OpenAI-style error object.
#include <httplib.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "loom/serve/api.h"
#include "loom/serve/server.h"
#include "serve/live_server.h"
#include "support/support.h"

namespace {

using loom_test::TempDir;
using namespace loom_test::serve;  // LiveServer, post, expect_error, metric, model paths, ...
using ::testing::HasSubstr;

TEST(ServeServer, ModelsHealthMetricsAndPage) {
  LiveServer s({});
  auto c = s.client();
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  const json m = json::parse(models->body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "mt");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(m["data"][0]["kind"], "translation");
  EXPECT_EQ(m["data"][0]["default_target_lang"], "zh");
  EXPECT_TRUE(m["data"][0]["created"].is_number_integer());

  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");

  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(page->body, HasSubstr("id=\"tab-translate\""));
  EXPECT_THAT(page->body, ::testing::Not(HasSubstr("http://")));  // nothing from the internet
  EXPECT_THAT(page->body, ::testing::Not(HasSubstr("https://")));

  int status = 0;
  post(s, "/v1/translations", R"({"model":"mt","input":"Hello world."})", &status);
  EXPECT_EQ(status, 200);
  post(s, "/v1/translations", R"({"model":"nope","input":"x"})", &status);
  EXPECT_EQ(status, 404);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("loom_requests_total{route=\"/v1/translations\",status=\"200\"} 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("loom_requests_total{route=\"/v1/translations\",status=\"404\"} 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("loom_request_duration_seconds_count{route=\"/v1/translations\"} 2\n"));
  // One request: every decoder step of the running batch held it alone.
  EXPECT_GT(metric(s, "loom_batch_requests_count"), 0);
  EXPECT_EQ(metric(s, "loom_batch_requests_bucket{le=\"1\"}"), metric(s, "loom_batch_requests_count"));
  EXPECT_EQ(metric(s, "loom_cancelled_sequences_total"), 0);
  EXPECT_THAT(metrics->body, HasSubstr("loom_queue_length{model=\"mt\"} 0\n"));
  EXPECT_THAT(metrics->body, HasSubstr("# TYPE loom_tokens_per_second gauge\n"));
}

TEST(ServeServer, TranslationShapeSegmentsAndUsage) {
  LiveServer s({});
  int status = 0;
  const std::string text = "Hello world. How are you today?\n\n- a list item\n";
  const json r = post(s, "/v1/translations", json{{"model", "mt"}, {"input", {text, "Good morning."}}}.dump(), &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["object"], "translation.list");
  EXPECT_EQ(r["model"], "mt");
  EXPECT_THAT(r["id"].get<std::string>(), ::testing::StartsWith("tr-"));
  ASSERT_EQ(r["data"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const json& d = r["data"][i];
    EXPECT_EQ(d["index"], i);
    EXPECT_EQ(d["truncated"], false);
    // The segments rebuild both sides exactly: sources concatenate to the input, translations
    // to the translation.
    std::string src, tgt;
    int translated = 0;
    for (const json& seg : d["segments"]) {
      src += seg["source"].get<std::string>();
      tgt += seg["translation"].get<std::string>();
      if (seg["translate"].get<bool>()) ++translated;
      else EXPECT_EQ(seg["source"], seg["translation"]);
    }
    EXPECT_EQ(src, i == 0 ? text : std::string("Good morning."));
    EXPECT_EQ(tgt, d["translation"].get<std::string>());
    EXPECT_EQ(translated, i == 0 ? 3 : 1);
  }
  const json& u = r["usage"];
  EXPECT_GT(u["prompt_tokens"].get<int>(), 0);
  EXPECT_GT(u["completion_tokens"].get<int>(), 0);
  EXPECT_EQ(u["total_tokens"].get<int>(), u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
}

// Concurrent requests are batched together by the scheduler; every answer must equal the one
// the same request gets alone.
TEST(ServeServer, ConcurrentEqualsSequential) {
  LiveServer s({});
  const std::vector<std::string> inputs = {"Hello world.", "The cat sat on the mat. It was happy.",
                                           "Where is the station?", "I like green tea and short stories.",
                                           "One.", "Two sentences here. And another one!"};
  std::vector<std::string> alone;
  for (const auto& in : inputs) {
    int status = 0;
    const json r = post(s, "/v1/translations", json{{"model", "mt"}, {"input", in}, {"beam_size", 2}}.dump(), &status);
    ASSERT_EQ(status, 200);
    alone.push_back(r["data"][0]["translation"]);
  }
  std::vector<std::future<std::string>> futures;
  for (int rep = 0; rep < 3; ++rep) {
    for (const auto& in : inputs) {
      futures.push_back(std::async(std::launch::async, [&s, in] {
        int status = 0;
        const json r = post(s, "/v1/translations", json{{"model", "mt"}, {"input", in}, {"beam_size", 2}}.dump(), &status);
        return status == 200 ? r["data"][0]["translation"].get<std::string>() : "HTTP " + std::to_string(status);
      }));
    }
  }
  for (size_t i = 0; i < futures.size(); ++i) EXPECT_EQ(futures[i].get(), alone[i % inputs.size()]) << i;
  // Some decoder step batched more than one request (18 concurrent requests, one scheduler thread).
  EXPECT_LT(metric(s, "loom_batch_requests_bucket{le=\"1\"}"), metric(s, "loom_batch_requests_count"));
}

// Continuous batching: a request sent while another one decodes joins the running batch at the
// next step and, being short, is answered while the long one is still decoding (the long one
// has 12 sentences of up to 2·15+10 tokens, the short one 1 of up to 2·5+10), with the
// translation it gets alone. Steps are followed by a 20 ms pause so the long one runs long
// enough for the short one to be sent.
TEST(ServeServer, ShortRequestJoinsTheRunningBatchAndFinishesFirst) {
  loom::serve::ServerOptions o;
  o.service_limits.step_delay_ms = 20;
  LiveServer s(o);
  const std::string short_body = json{{"model", "mt"}, {"input", "Hello world."}, {"beam_size", 4}}.dump();
  int status = 0;
  const json alone = post(s, "/v1/translations", short_body, &status);
  ASSERT_EQ(status, 200);
  const double steps_alone = metric(s, "loom_batch_requests_count");
  auto long_request = std::async(std::launch::async, [&] {
    int st = 0;
    post(s, "/v1/translations", json{{"model", "mt"}, {"input", numbered_sentences(12)}, {"beam_size", 4}}.dump(), &st);
    return st;
  });
  for (int i = 0; i < 2000 && metric(s, "loom_running{model=\"mt\"}") <= 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // until it decodes
  const json joined = post(s, "/v1/translations", short_body, &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(long_request.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the long request finished before the short one that joined it";
  EXPECT_EQ(joined["data"][0]["translation"], alone["data"][0]["translation"]);
  EXPECT_EQ(long_request.get(), 200);
  // Some step decoded both requests; the short one's steps alone were single-request steps.
  EXPECT_LT(metric(s, "loom_batch_requests_bucket{le=\"1\"}"), metric(s, "loom_batch_requests_count"));
  EXPECT_GE(metric(s, "loom_batch_requests_bucket{le=\"1\"}"), steps_alone);
  EXPECT_EQ(metric(s, "loom_cancelled_sequences_total"), 0);
}

// A client that gives up while its request decodes cancels it: the scheduler drops its
// sentences' rows from the running batch (loom_cancelled_sequences_total), nothing more is
// generated for it, and the server goes on serving.
TEST(ServeServer, CancelledRequestLeavesTheRunningBatch) {
  loom::serve::ServerOptions o;
  o.service_limits.step_delay_ms = 20;
  LiveServer s(o);
  const std::string body = json{{"model", "mt"}, {"input", numbered_sentences(12)}, {"beam_size", 4}}.dump();
  {
    httplib::Client impatient("127.0.0.1", s.server().port());
    impatient.set_read_timeout(0, 300000);  // 300 ms (about 15 steps), then the client closes the connection
    auto r = impatient.Post("/v1/translations", body, "application/json");
    EXPECT_FALSE(r);
  }
  EXPECT_EQ(settled_metric(s, "loom_running{model=\"mt\"}"), 0);
  EXPECT_EQ(metric(s, "loom_requests_total{route=\"/v1/translations\",status=\"499\"}"), 1);
  const double dropped = metric(s, "loom_cancelled_sequences_total");
  EXPECT_GT(dropped, 0);   // sentences still decoding when the client left
  EXPECT_LE(dropped, 12);  // at most its 12 sentences
  const double generated = settled_metric(s, "loom_generated_tokens_total");
  const double steps = metric(s, "loom_batch_requests_count");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(metric(s, "loom_batch_requests_count"), steps);  // no step runs for nobody
  EXPECT_EQ(metric(s, "loom_generated_tokens_total"), generated);
  int status = 0;
  post(s, "/v1/translations", json{{"model", "mt"}, {"input", "Hello world."}}.dump(), &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(metric(s, "loom_running{model=\"mt\"}"), 0);
}

TEST(ServeServer, BadRequestsGetOpenAiErrors) {
  loom::serve::ServerOptions o;
  o.max_body_bytes = 4096;
  o.service_limits.max_input_tokens = 64;
  LiveServer s(o);
  const std::string tr = "/v1/translations";
  expect_error(s, tr, "{not json", 400, "", "invalid_json");
  expect_error(s, tr, "[1,2]", 400, "", "invalid_json");
  expect_error(s, tr, "\"\xff\xfe\"", 400, "", "invalid_json");
  expect_error(s, tr, R"({"input":"x"})", 400, "model", "missing_field");
  expect_error(s, tr, R"({"model":7,"input":"x"})", 400, "model", "invalid_type");
  expect_error(s, tr, R"({"model":"mt"})", 400, "input", "missing_field");
  expect_error(s, tr, R"({"model":"mt","input":42})", 400, "input", "invalid_type");
  expect_error(s, tr, R"({"model":"mt","input":["ok",3]})", 400, "input", "invalid_type");
  expect_error(s, tr, R"({"model":"mt","input":""})", 400, "input", "empty_input");
  expect_error(s, tr, R"({"model":"mt","input":[]})", 400, "input", "empty_input");
  expect_error(s, tr, R"({"model":"mt","input":["a",""]})", 400, "input", "empty_input");
  expect_error(s, tr, R"({"model":"mt","input":"x","beam_size":"4"})", 400, "beam_size", "invalid_type");
  expect_error(s, tr, R"({"model":"mt","input":"x","beam_size":0})", 400, "beam_size", "invalid_value");
  expect_error(s, tr, R"({"model":"mt","input":"x","beam_size":1000})", 400, "beam_size", "invalid_value");
  expect_error(s, tr, R"({"model":"mt","input":"x","format":"html"})", 400, "format", "invalid_value");
  expect_error(s, tr, R"({"model":"mt","input":"x","target_lang":5})", 400, "target_lang", "invalid_type");
  expect_error(s, tr, R"({"model":"mt","input":"x","stream":true})", 400, "stream", "stream_not_supported");
  expect_error(s, tr, R"({"model":"mt","input":"x","stream":"yes"})", 400, "stream", "invalid_type");
  expect_error(s, tr, R"({"model":"nope","input":"x"})", 404, "model", "model_not_found");
  expect_error(s, tr, R"({"model":"mt","input":"x","target_lang":"klingon"})", 400, "target_lang", "unknown_language");
  expect_error(s, tr, R"({"model":"mt","input":"x","source_lang":"fr"})", 400, "source_lang", "unknown_language");
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += "This is a sentence. ";
  expect_error(s, tr, json{{"model", "mt"}, {"input", long_text}}.dump(), 400, "input", "context_length_exceeded");
  expect_error(s, tr, json{{"model", "mt"}, {"input", std::string(5000, 'a')}}.dump(), 413, "", "body_too_large");
  expect_error(s, "/v1/nothing", "{}", 404, "", "unknown_route");
  expect_error(s, "/v1/chat/completions", "{oops", 400, "", "invalid_json");
  // The server still answers after all of that.
  int status = 0;
  post(s, tr, R"({"model":"mt","input":"Hello."})", &status);
  EXPECT_EQ(status, 200);
}

// Raw HTTP over loopback: the response's first bytes (status line, headers, body start), or ""
// when nothing came within 20 s (a guard against a hang, not a timing assertion).
std::string raw_exchange(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// An announced oversized or malformed Content-Length is answered at once (no body byte is
// read); a second server cannot take the same port (no SO_REUSEPORT).
TEST(ServeServer, ContentLengthCheckedFirstAndPortNotShared) {
  loom::serve::ServerOptions o;
  o.max_body_bytes = 4096;
  LiveServer s(o);
  const int port = s.server().port();
  const std::string head = "POST /v1/translations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  std::string r = raw_exchange(port, head + "Content-Length: 5000000\r\n\r\n");  // body never sent
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 413")) << r;
  EXPECT_THAT(r, HasSubstr("\"code\":\"body_too_large\""));
  EXPECT_THAT(r, HasSubstr("(5000000 bytes) is over the limit of 4096 bytes"));
  for (const char* bad : {"-5", "99999999999999999999", "12abc"}) {
    r = raw_exchange(port, head + "Content-Length: " + bad + "\r\n\r\n");
    EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 400")) << bad << ": " << r;
    EXPECT_THAT(r, HasSubstr("is not a byte count")) << bad;
  }
  loom::serve::ServerOptions same;
  same.port = port;
  same.models = {{"mt", kMarian}};
  loom::serve::Server second(same);
  EXPECT_THAT(loom_test::error_of([&] { second.bind(); }), HasSubstr("cannot bind 127.0.0.1:"));
  int status = 0;
  post(s, "/v1/translations", R"({"model":"mt","input":"Hello."})", &status);
  EXPECT_EQ(status, 200);
}

TEST(ServeServer, ApiKeyRequiredOnV1) {
  loom::serve::ServerOptions o;
  o.api_key = "sekret";
  LiveServer s(o);
  const std::string body = R"({"model":"mt","input":"Hello."})";
  expect_error(s, "/v1/translations", body, 401, "", "invalid_api_key");
  expect_error(s, "/v1/translations", body, 401, "", "invalid_api_key", {{"Authorization", "Bearer wrong!"}});
  int status = 0;
  post(s, "/v1/translations", body, &status, {{"Authorization", "Bearer sekret"}});
  EXPECT_EQ(status, 200);
  auto c = s.client();
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 401);
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// A full queue answers 429 with Retry-After; a request over the timeout answers 504; both leave
// the server serving.
TEST(ServeServer, QueueFullAndTimeout) {
  loom::serve::ServerOptions o;
  o.service_limits.max_queued = 1;
  o.service_limits.max_batch_segments = 1;
  LiveServer s(o);
  const std::string body = json{{"model", "mt"}, {"input", numbered_sentences(12)}, {"beam_size", 4}}.dump();
  expect_some_refused_with_429(s, "/v1/translations", body);

  loom::serve::ServerOptions t;
  t.service_limits.timeout_seconds = 0.001;
  LiveServer slow(t);
  expect_error(slow, "/v1/translations", body, 504, "", "timeout");
}

// A client that gives up (closes its connection) while its request waits cancels it: the job
// leaves the queue, its segments are never translated (it never gets rows in the running batch)
// and the request is counted with status 499. The busy request holds the whole batch budget
// (max_batch_segments 1) and its decoder steps are followed by a 50 ms pause, so the impatient
// request is still queued when its client leaves.
TEST(ServeServer, ClientDisconnectCancelsTheRequest) {
  loom::serve::ServerOptions o;
  o.service_limits.max_batch_segments = 1;
  o.service_limits.step_delay_ms = 50;
  LiveServer s(o);
  const std::string body = json{{"model", "mt"}, {"input", numbered_sentences(16)}, {"beam_size", 4}}.dump();
  auto busy = std::async(std::launch::async, [&] {
    auto c = s.client();
    auto r = c.Post("/v1/translations", body, "application/json");
    return r ? r->status : -1;
  });
  for (int i = 0; i < 2000 && metric(s, "loom_running{model=\"mt\"}") <= 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // until it decodes
  {
    httplib::Client impatient("127.0.0.1", s.server().port());
    impatient.set_read_timeout(0, 200000);  // 200 ms, then the client closes the connection
    auto r = impatient.Post("/v1/translations", body, "application/json");
    EXPECT_FALSE(r);
  }
  EXPECT_EQ(busy.get(), 200);
  const double generated = metric(s, "loom_generated_tokens_total");
  EXPECT_GT(generated, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a step would have run by now
  EXPECT_EQ(metric(s, "loom_requests_total{route=\"/v1/translations\",status=\"499\"}"), 1);
  // Every step held the busy request alone; the cancelled one never had rows.
  EXPECT_EQ(metric(s, "loom_batch_requests_bucket{le=\"1\"}"), metric(s, "loom_batch_requests_count"));
  EXPECT_EQ(metric(s, "loom_cancelled_sequences_total"), 0);
  EXPECT_EQ(metric(s, "loom_generated_tokens_total"), generated);
  EXPECT_EQ(metric(s, "loom_queue_length{model=\"mt\"}"), 0);
  EXPECT_EQ(metric(s, "loom_running{model=\"mt\"}"), 0);
}

// Parity with `loom translate` through both binaries: the server's translation of each line
// ("format": "text") equals the line `loom translate` writes for it from a TXT file, which is
// plain text by default (default beam and with beam 1). Markdown and long inputs: see
// MarkdownAndLongInputsMatchLoomTranslate.
// `loom serve --compute-type T` answers /v1/translations with the bytes of `loom translate
// --compute-type T` (greedy and the checkpoint's beam), through the binary.
void expect_serve_matches_translate(const std::string& compute_type) {
  TempDir dir;
  const std::vector<std::string> lines = {"Hello world.", "The weather is nice today. Let us go for a walk!",
                                          "**Bold** text with `code` and a [link](http://example.com).",
                                          "Dr. Smith arrived at 10 a.m. and left early."};
  std::string input;
  for (const auto& l : lines) input += l + "\n";
  loom_test::write_file(dir.path() / "in.txt", input);

  const auto err_path = dir.path() / "serve.err";
  const pid_t pid = loom_test::spawn_loom(
      {"serve", "--model", "mt=" + kMarian, "--port", "0", "--compute-type", compute_type}, dir.path() / "serve.out",
      err_path);
  int port = 0;
  for (int i = 0; i < 600 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::string err = loom_test::slurp(err_path);
    const auto at = err.find("listening on http://127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(err.c_str() + at + std::strlen("listening on http://127.0.0.1:"));
  }
  ASSERT_GT(port, 0) << loom_test::slurp(err_path);
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  for (const std::string beam : {"", "1"}) {
    std::vector<std::string> args = {"translate", "--model", kMarian, "--no-progress", "--compute-type", compute_type};
    if (!beam.empty()) args.insert(args.end(), {"--beam", beam});
    args.insert(args.end(), {(dir.path() / "in.txt").string(), (dir.path() / ("out" + beam + ".txt")).string()});
    const auto r = loom_test::run_loom(args, dir.path());
    ASSERT_EQ(r.code, 0) << r.err;
    const auto expected = loom_test::lines_of(loom_test::slurp(dir.path() / ("out" + beam + ".txt")));
    ASSERT_EQ(expected.size(), lines.size());
    json req = {{"model", "mt"}, {"input", lines}, {"format", "text"}};
    if (!beam.empty()) req["beam_size"] = std::stoi(beam);
    auto res = c.Post("/v1/translations", req.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    const json j = json::parse(res->body);
    for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(j["data"][i]["translation"], expected[i]) << lines[i];
  }
  ::kill(pid, SIGTERM);
  EXPECT_EQ(loom_test::wait_exit_code(pid), 0) << loom_test::slurp(err_path);
  EXPECT_THAT(loom_test::slurp(err_path), HasSubstr("loom serve: stopped"));
}

TEST(ServeServer, BinaryMatchesLoomTranslate) { expect_serve_matches_translate("float32"); }

TEST(ServeServer, ComputeTypeInt8MatchesLoomTranslateInt8) { expect_serve_matches_translate("int8"); }

TEST(ServeServer, UnknownComputeTypeIsOneClearError) {
  TempDir dir;
  const auto r = loom_test::run_loom({"serve", "--model", "mt=" + kMarian, "--port", "0", "--compute-type", "fp8"}, dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("--compute-type"));
  EXPECT_THAT(r.err, HasSubstr("fp8"));
}

// /v1/translations returns byte-identical text to `loom translate` (a JSONL field, which is
// Markdown by default; "format": "text" against --no-markdown) for Markdown documents and long
// multi-sentence paragraphs with inline code spans and URLs in mid-sentence, on Marian and on
// NLLB with an explicit source language (German sentence rules) and a non-default target.
// Both go through pipeline::segment_for_translation / retranslate_lost_spans; the joined
// sentences (a translate segment holding a `code` span) are checked to be there.
TEST(ServeServer, MarkdownAndLongInputsMatchLoomTranslate) {
  loom::serve::ServerOptions o;
  o.models = {{"mt", kMarian}, {"nllb", kNllb}};
  LiveServer s(o);
  std::string long_paragraph;
  for (int i = 0; i < 14; ++i)
    long_paragraph += "Sentence number " + std::to_string(i) + " says that the weather is fine. ";
  long_paragraph += "Run `make test` before you push, then open https://example.com/docs for more.";
  const std::vector<std::string> english = {
      "# Getting started\n\nInstall the package with `pip install loom` and then run it. "
      "It reads the file from https://example.com/data.txt every hour. Dr. Smith wrote it in 2021.\n\n"
      "- First item with `code` inside it.\n- Second item, see [the guide](http://example.com/guide).\n\n"
      "```\nint main() { return 0; }\n```\n\nThe end. Thanks for reading!\n",
      long_paragraph,
      "Call `translate()` and check the result.",
  };
  const std::vector<std::string> german = {
      "# Anleitung\n\nDas ist z. B. ein Test mit `make` im Satz. Wir trafen Prof. Müller am 3. Mai. "
      "Er wohnt in der Hauptstr. 5 in Berlin.\n\n- Punkt eins mit `code` darin.\n",
      "Rufen Sie `run()` auf und lesen Sie dann https://example.com/info bitte genau. Danach ist alles gut.",
  };
  struct Case {
    std::string model, dir, src, tgt;
    const std::vector<std::string>* inputs;
  };
  const std::vector<Case> cases = {{"mt", kMarian, "", "", &english}, {"nllb", kNllb, "deu_Latn", "fra_Latn", &german}};
  for (const Case& c : cases) {
    for (const bool markdown : {true, false}) {
      SCOPED_TRACE(c.model + (markdown ? " markdown" : " text"));
      TempDir dir;
      std::string jsonl;
      for (const auto& t : *c.inputs) jsonl += json{{"text", t}}.dump() + "\n";
      loom_test::write_file(dir.path() / "in.jsonl", jsonl);
      std::vector<std::string> args = {"translate", "--model", c.dir, "--no-progress", "--fields", "text",
                                        "--suffix", "_out"};
      if (!c.src.empty()) args.insert(args.end(), {"--src", c.src, "--tgt", c.tgt});
      if (!markdown) args.push_back("--no-markdown");
      args.insert(args.end(), {(dir.path() / "in.jsonl").string(), (dir.path() / "out.jsonl").string()});
      const auto r = loom_test::run_loom(args, dir.path());
      ASSERT_EQ(r.code, 0) << r.err;
      const auto rows = loom_test::lines_of(loom_test::slurp(dir.path() / "out.jsonl"));
      ASSERT_EQ(rows.size(), c.inputs->size());

      json req = {{"model", c.model}, {"input", *c.inputs}, {"format", markdown ? "markdown" : "text"}};
      if (!c.src.empty()) {
        req["source_lang"] = c.src;
        req["target_lang"] = c.tgt;
      }
      int status = 0;
      const json res = post(s, "/v1/translations", req.dump(), &status);
      ASSERT_EQ(status, 200) << res.dump();
      bool joined = false;
      for (size_t i = 0; i < rows.size(); ++i) {
        const std::string expected = json::parse(rows[i])["text_out"];
        EXPECT_EQ(res["data"][i]["translation"].get<std::string>(), expected) << (*c.inputs)[i];
        for (const auto& seg : res["data"][i]["segments"])
          joined = joined || (seg["translate"] == true && seg["source"].get<std::string>().find('`') != std::string::npos);
      }
      if (markdown) EXPECT_TRUE(joined);  // sentences re-joined around their code spans
    }
  }
}

TEST(ServeServer, StartupErrorsNameTheProblem) {
  TempDir dir;
  auto r = loom_test::run_loom({"serve", "--model", "mt"}, dir.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NAME=DIR"));
  r = loom_test::run_loom({"serve", "--model", "a=" + kMarian, "--model", "a=" + kMarian, "--port", "0"}, dir.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("given twice"));
  EXPECT_THAT(loom_test::error_of([] { loom::serve::detect_model_kind(std::string(LOOM_TEST_DATA) + "/nowhere"); }),
              HasSubstr("config.json"));
  EXPECT_EQ(loom::serve::detect_model_kind(kMarian), loom::serve::ModelKind::kTranslation);
  EXPECT_EQ(loom::serve::detect_model_kind(std::string(LOOM_TEST_DATA) + "/hf-tiny/bert-minilm"),
            loom::serve::ModelKind::kEmbedding);
  EXPECT_EQ(loom::serve::detect_model_kind(std::string(LOOM_TEST_DATA) + "/hf-tiny/gemma"),
            loom::serve::ModelKind::kDecoderLm);
}

TEST(ServeApi, ParserAcceptsAndRejects) {
  loom::serve::RequestLimits limits;
  auto r = loom::serve::parse_translation_request(
      R"({"model":"m","input":["a","b"],"source_lang":"en","target_lang":"zh","beam_size":3,"format":"text","extra":1})",
      limits);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.inputs, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.source_lang, "en");
  EXPECT_EQ(r.target_lang, "zh");
  EXPECT_EQ(r.beam_size, 3);
  EXPECT_FALSE(r.markdown);
  limits.max_inputs = 1;
  try {
    loom::serve::parse_translation_request(R"({"model":"m","input":["a","b"]})", limits);
    FAIL() << "no error";
  } catch (const loom::serve::ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.code(), "too_many_inputs");
  }
}

}  // namespace
