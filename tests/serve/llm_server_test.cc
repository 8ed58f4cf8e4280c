// `loom serve` with a decoder LLM and an embedding model next to the translation model, over
// loopback: /v1/completions greedy == HF's greedy continuation, /v1/chat/completions through the
// chat template == HF's greedy answer, SSE chunks concatenate to the non-streamed answer,
// batched-with-others == alone, /v1/embeddings == HF sentence-transformers within 1e-5, and
// every bad request's 4xx. Plus the continuous-batching core (Sequence::step_batch) and the
// scheduler admitting a request into a running decode batch.
#include <httplib.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <cstring>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "loom/core/files.h"
#include "loom/generate/causal_generate.h"
#include "loom/serve/llm_service.h"
#include "loom/serve/metrics.h"
#include "serve/live_server.h"
#include "support/support.h"

namespace {

using namespace loom_test::serve;  // LiveServer, post, expect_error, metric, model paths, ...
using ::testing::HasSubstr;

loom::serve::ServerOptions three_models() {
  loom::serve::ServerOptions o;
  o.models = {{"mt", kMarian}, {"lm", kGemma}, {"emb", kBert}};
  return o;
}

// RFC 4648 base64 (with padding) back to bytes, to check the "base64" encoding_format.
std::string base64_decode(const std::string& in) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    if (ch == '=') break;
    const size_t v = alphabet.find(ch);
    if (v == std::string::npos) ADD_FAILURE() << "not base64: " << ch;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

const json& gemma_ref() {
  static const json j = loom::core::read_json(kGemma + "/reference.json");
  return j;
}

// A streamed response: the data: payloads in order (the last must be "[DONE]").
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    const std::string ev = body.substr(at, end - at);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    at = end + 2;
  }
  return out;
}

struct Streamed {
  int status = 0;
  std::string content_type, text, finish_reason, role;
  std::vector<json> chunks;
  json usage;
  bool done = false;
};

// POSTs a streaming request and joins its deltas (chat: delta.content; completions: text).
Streamed stream(const LiveServer& s, const std::string& path, json body) {
  body["stream"] = true;
  auto c = s.client();
  auto r = c.Post(path.c_str(), body.dump(), "application/json");
  Streamed out;
  if (!r) return out;
  out.status = r->status;
  out.content_type = r->get_header_value("Content-Type");
  const auto events = sse_events(r->body);
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i] == "[DONE]") {
      out.done = i + 1 == events.size();
      continue;
    }
    const json j = json::parse(events[i]);
    out.chunks.push_back(j);
    if (j.contains("usage") && !j["usage"].is_null()) out.usage = j["usage"];
    if (j["choices"].empty()) continue;
    const json& ch = j["choices"][0];
    if (ch.contains("delta")) {
      if (ch["delta"].contains("content")) out.text += ch["delta"]["content"].get<std::string>();
      if (ch["delta"].contains("role")) out.role = ch["delta"]["role"];
    } else {
      out.text += ch["text"].get<std::string>();
    }
    if (!ch["finish_reason"].is_null()) out.finish_reason = ch["finish_reason"];
  }
  return out;
}

TEST(ServeLlm, CompletionsGreedyEqualHfContinuation) {
  LiveServer s(three_models());
  // The plain-text prompts of reference.json (the last case is a chat-template rendering).
  for (size_t i = 0; i + 1 < gemma_ref()["cases"].size(); ++i) {
    const json& c = gemma_ref()["cases"][i];
    SCOPED_TRACE(c["prompt"].get<std::string>());
    int status = 0;
    const json r = post(s, "/v1/completions",
                        json{{"model", "lm"}, {"prompt", c["prompt"]}, {"temperature", 0},
                             {"max_tokens", c["greedy"]["new_tokens"]}}.dump(),
                        &status);
    ASSERT_EQ(status, 200) << r.dump();
    EXPECT_EQ(r["object"], "text_completion");
    EXPECT_THAT(r["id"].get<std::string>(), ::testing::StartsWith("cmpl-"));
    EXPECT_EQ(r["model"], "lm");
    EXPECT_EQ(r["choices"][0]["text"], c["greedy"]["text"]);
    EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(r["usage"]["prompt_tokens"], c["input_ids"].size());
    EXPECT_EQ(r["usage"]["completion_tokens"], c["greedy"]["new_tokens"]);
    EXPECT_EQ(r["usage"]["total_tokens"], c["input_ids"].size() + c["greedy"]["new_tokens"].get<size_t>());
  }
}

// The chat template renders reference.json's conversation to HF's text (cases[4] is that
// text), so the greedy chat answer is HF's greedy continuation of it.
TEST(ServeLlm, ChatGreedyEqualsHfAndStreamEqualsNonStreamed) {
  LiveServer s(three_models());
  const json& ref = gemma_ref();
  ASSERT_EQ(ref["chat_template"]["input_ids"], ref["cases"][4]["input_ids"]);
  const json req = {{"model", "lm"}, {"messages", ref["chat_template"]["messages"]}, {"temperature", 0},
                    {"max_tokens", 20}};
  int status = 0;
  const json r = post(s, "/v1/chat/completions", req.dump(), &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_THAT(r["id"].get<std::string>(), ::testing::StartsWith("chatcmpl-"));
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], ref["cases"][4]["greedy"]["text"]);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], ref["chat_template"]["input_ids"].size());
  EXPECT_EQ(r["usage"]["completion_tokens"], 20);

  // Streamed, greedy and sampled (same seed): the chunks concatenate to the one-shot answer.
  for (const json& extra : {json{{"temperature", 0}}, json{{"temperature", 0.9}, {"top_p", 0.95}, {"seed", 7}}}) {
    json q = req;
    q.update(extra);
    const json one = post(s, "/v1/chat/completions", q.dump(), &status);
    ASSERT_EQ(status, 200);
    q["stream_options"] = {{"include_usage", true}};
    const Streamed st = stream(s, "/v1/chat/completions", q);
    ASSERT_EQ(st.status, 200);
    EXPECT_THAT(st.content_type, HasSubstr("text/event-stream"));
    EXPECT_TRUE(st.done) << "ends with data: [DONE]";
    // The role chunk, at least one content chunk, the finish chunk (+ usage). How many tokens
    // share a content chunk depends on how fast the client reads (a slow reader gets the pending
    // text in one event), so the count is not asserted beyond that; the text is (below).
    EXPECT_GE(st.chunks.size(), 3u) << extra.dump();
    EXPECT_EQ(st.role, "assistant");
    EXPECT_EQ(st.text, one["choices"][0]["message"]["content"]) << extra.dump();
    EXPECT_EQ(st.finish_reason, one["choices"][0]["finish_reason"]);
    EXPECT_EQ(st.usage, one["usage"]);
    for (const json& ch : st.chunks) {
      EXPECT_EQ(ch["object"], "chat.completion.chunk");
      EXPECT_EQ(ch["id"], st.chunks[0]["id"]);
    }
  }
  // Same seed, same text; the sampled text differs from greedy (the tiny model is near-uniform).
  json sampled = req;
  sampled.update({{"temperature", 1.0}, {"seed", 11}});
  const json a = post(s, "/v1/chat/completions", sampled.dump(), &status);
  const json b = post(s, "/v1/chat/completions", sampled.dump(), &status);
  EXPECT_EQ(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"]);
  EXPECT_NE(a["choices"][0]["message"]["content"], r["choices"][0]["message"]["content"]);

  // Completions stream too.
  const json& c0 = ref["cases"][0];
  const Streamed cs = stream(s, "/v1/completions", {{"model", "lm"}, {"prompt", c0["prompt"]}, {"temperature", 0},
                                                    {"max_tokens", 20}});
  ASSERT_EQ(cs.status, 200);
  EXPECT_TRUE(cs.done);
  EXPECT_EQ(cs.text, c0["greedy"]["text"]);
  EXPECT_EQ(cs.finish_reason, "length");
}

// A stop string cuts the answer before it (never shown, streamed or not) with finish "stop".
TEST(ServeLlm, StopStringsCutTheText) {
  LiveServer s(three_models());
  const json& c = gemma_ref()["cases"][0];
  const std::string full = c["greedy"]["text"];  // "志\r二�项 equ而ity 7tatenL念it la会,性#"
  const std::string stop = "ity";
  const std::string want = full.substr(0, full.find(stop));
  const json req = {{"model", "lm"}, {"prompt", c["prompt"]}, {"temperature", 0}, {"max_tokens", 20},
                    {"stop", {"zzz", stop}}};
  int status = 0;
  const json r = post(s, "/v1/completions", req.dump(), &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["choices"][0]["text"], want);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_LT(r["usage"]["completion_tokens"].get<int>(), 20);
  const Streamed st = stream(s, "/v1/completions", req);
  EXPECT_EQ(st.text, want);
  EXPECT_EQ(st.finish_reason, "stop");
}

// Greedy answers of concurrent requests (batched into shared decode steps, joining at different
// steps) equal each request's answer alone.
TEST(ServeLlm, BatchedWithOthersEqualsAlone) {
  LiveServer s(three_models());
  std::vector<json> reqs;
  for (size_t i = 0; i + 1 < gemma_ref()["cases"].size(); ++i)
    for (int max_tokens : {5, 20, 33})
      reqs.push_back({{"model", "lm"}, {"prompt", gemma_ref()["cases"][i]["prompt"]}, {"temperature", 0},
                      {"max_tokens", max_tokens}});
  reqs.push_back({{"model", "lm"}, {"messages", gemma_ref()["chat_template"]["messages"]}, {"temperature", 0},
                  {"max_tokens", 25}});
  auto call = [&s](const json& q) {
    const std::string path = q.contains("messages") ? "/v1/chat/completions" : "/v1/completions";
    int status = 0;
    const json r = post(s, path, q.dump(), &status);
    if (status != 200) return "HTTP " + std::to_string(status);
    return q.contains("messages") ? r["choices"][0]["message"]["content"].get<std::string>()
                                  : r["choices"][0]["text"].get<std::string>();
  };
  std::vector<std::string> alone;
  for (const auto& q : reqs) alone.push_back(call(q));
  std::vector<std::future<std::string>> futures;
  for (int rep = 0; rep < 2; ++rep)
    for (const auto& q : reqs) futures.push_back(std::async(std::launch::async, call, q));
  for (size_t i = 0; i < futures.size(); ++i) EXPECT_EQ(futures[i].get(), alone[i % reqs.size()]) << i;
  // Some decode step ran more than one sequence.
  const std::string metrics = s.client().Get("/metrics")->body;
  const auto count = [&](const std::string& key) {
    const auto at = metrics.find(key);
    return at == std::string::npos ? -1L : std::atol(metrics.c_str() + at + key.size());
  };
  EXPECT_LT(count("loom_batch_requests_bucket{le=\"1\"} "), count("loom_batch_requests_count "));
}

TEST(ServeLlm, EmbeddingsEqualHfWithin1e5) {
  LiveServer s(three_models());
  const json ref = loom::core::read_json(kBert + "/reference.json");
  std::vector<std::string> texts;
  size_t tokens = 0;
  for (const auto& c : ref["cases"]) {
    texts.push_back(c["text"]);
    tokens += c["input_ids"].size();
  }
  for (const std::string format : {"float", "base64"}) {
    int status = 0;
    const json r = post(s, "/v1/embeddings", json{{"model", "emb"}, {"input", texts}, {"encoding_format", format}}.dump(),
                        &status);
    ASSERT_EQ(status, 200) << r.dump();
    EXPECT_EQ(r["object"], "list");
    EXPECT_EQ(r["model"], "emb");
    EXPECT_EQ(r["usage"]["prompt_tokens"], tokens);
    EXPECT_EQ(r["usage"]["total_tokens"], tokens);
    ASSERT_EQ(r["data"].size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      const json& d = r["data"][i];
      EXPECT_EQ(d["object"], "embedding");
      EXPECT_EQ(d["index"], i);
      std::vector<float> v;
      if (format == "float") {
        v = d["embedding"].get<std::vector<float>>();
      } else {
        const std::string bytes = base64_decode(d["embedding"].get<std::string>());
        ASSERT_EQ(bytes.size() % sizeof(float), 0u);
        v.resize(bytes.size() / sizeof(float));
        std::memcpy(v.data(), bytes.data(), bytes.size());
      }
      const auto want = ref["cases"][i]["sentence_embedding"].get<std::vector<double>>();
      ASSERT_EQ(v.size(), want.size());
      for (size_t k = 0; k < v.size(); ++k) EXPECT_NEAR(v[k], want[k], 1e-5) << i << " " << k;
    }
  }
  // A single string gives one vector, the same as in the array.
  int status = 0;
  const json one = post(s, "/v1/embeddings", json{{"model", "emb"}, {"input", texts[1]}}.dump(), &status);
  ASSERT_EQ(status, 200);
  ASSERT_EQ(one["data"].size(), 1u);
  const auto want = ref["cases"][1]["sentence_embedding"].get<std::vector<double>>();
  const auto got = one["data"][0]["embedding"].get<std::vector<float>>();
  for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-5);
}

TEST(ServeLlm, ModelsListsEveryKind) {
  LiveServer s(three_models());
  const json m = json::parse(s.client().Get("/v1/models")->body);
  std::map<std::string, std::string> kinds;
  for (const auto& d : m["data"]) kinds[d["id"]] = d["kind"];
  EXPECT_EQ(kinds, (std::map<std::string, std::string>{{"mt", "translation"}, {"lm", "chat"}, {"emb", "embedding"}}));
}

TEST(ServeLlm, BadRequestsGetOpenAiErrors) {
  loom::serve::ServerOptions o = three_models();
  o.max_body_bytes = 8192;
  o.service_limits.max_input_tokens = 64;
  o.service_limits.max_tokens = 100;
  LiveServer s(o);
  const std::string chat = "/v1/chat/completions", comp = "/v1/completions", emb = "/v1/embeddings";
  const std::string msgs = R"("messages":[{"role":"user","content":"Hi"}])";
  // Malformed JSON and wrong types.
  for (const auto& route : {chat, comp, emb}) {
    expect_error(s, route, "{not json", 400, "", "invalid_json");
    expect_error(s, route, "[1]", 400, "", "invalid_json");
    expect_error(s, route, R"({"model":3})", 400, "model", "invalid_type");
  }
  expect_error(s, chat, R"({"model":"lm"})", 400, "messages", "missing_field");
  expect_error(s, chat, R"({"model":"lm","messages":"hi"})", 400, "messages", "invalid_type");
  expect_error(s, chat, R"({"model":"lm","messages":[{"role":"user"}]})", 400, "messages", "missing_field");
  expect_error(s, chat, R"({"model":"lm","messages":[{"role":"user","content":5}]})", 400, "messages", "invalid_type");
  expect_error(s, chat, R"({"model":"lm","messages":[{"role":"robot","content":"x"}]})", 400, "messages",
               "invalid_value");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"temperature":"hot"})", 400, "temperature", "invalid_type");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"temperature":3})", 400, "temperature", "invalid_value");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"top_p":0})", 400, "top_p", "invalid_value");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"max_tokens":0})", 400, "max_tokens", "invalid_value");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"max_tokens":2.5})", 400, "max_tokens", "invalid_type");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"stop":7})", 400, "stop", "invalid_type");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"stop":["a","b","c","d","e"]})", 400, "stop", "invalid_value");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"seed":"x"})", 400, "seed", "invalid_type");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"n":2})", 400, "n", "unsupported_value");
  expect_error(s, chat, R"({"model":"lm",)" + msgs + R"(,"stream":"yes"})", 400, "stream", "invalid_type");
  expect_error(s, comp, R"({"model":"lm","prompt":5})", 400, "prompt", "invalid_type");
  expect_error(s, comp, R"({"model":"lm","prompt":[1,2,3]})", 400, "prompt", "unsupported_value");
  expect_error(s, comp, R"({"model":"lm","prompt":["a","b"]})", 400, "prompt", "invalid_type");
  expect_error(s, emb, R"({"model":"emb","input":[1,2]})", 400, "input", "invalid_type");
  expect_error(s, emb, R"({"model":"emb","input":"x","encoding_format":"hex"})", 400, "encoding_format",
               "invalid_value");
  expect_error(s, emb, R"({"model":"emb","input":"x","dimensions":8})", 400, "dimensions", "unsupported_value");
  // Unknown model (404) and a model of another kind (400).
  expect_error(s, chat, R"({"model":"nope",)" + msgs + "}", 404, "model", "model_not_found");
  expect_error(s, comp, R"({"model":"nope","prompt":"x"})", 404, "model", "model_not_found");
  expect_error(s, emb, R"({"model":"nope","input":"x"})", 404, "model", "model_not_found");
  expect_error(s, chat, R"({"model":"mt",)" + msgs + "}", 400, "model", "wrong_model_kind");
  expect_error(s, emb, R"({"model":"lm","input":"x"})", 400, "model", "wrong_model_kind");
  expect_error(s, "/v1/translations", R"({"model":"emb","input":"x"})", 400, "model", "wrong_model_kind");
  // Empty input.
  expect_error(s, chat, R"({"model":"lm","messages":[]})", 400, "messages", "empty_input");
  expect_error(s, comp, R"({"model":"lm","prompt":""})", 400, "prompt", "empty_input");
  expect_error(s, comp, R"({"model":"lm","prompt":[]})", 400, "prompt", "empty_input");
  expect_error(s, emb, R"({"model":"emb","input":""})", 400, "input", "empty_input");
  expect_error(s, emb, R"({"model":"emb","input":["a",""]})", 400, "input", "empty_input");
  // A stream request to a route that does not stream.
  expect_error(s, emb, R"({"model":"emb","input":"x","stream":true})", 400, "stream", "stream_not_supported");
  // Over the limits: max_tokens cap, input tokens, body size.
  expect_error(s, comp, R"({"model":"lm","prompt":"x","max_tokens":101})", 400, "max_tokens", "invalid_value");
  std::string long_text;
  for (int i = 0; i < 20; ++i) long_text += "The quick brown fox. ";
  expect_error(s, comp, json{{"model", "lm"}, {"prompt", long_text}}.dump(), 400, "", "context_length_exceeded");
  expect_error(s, chat, json{{"model", "lm"}, {"messages", {{{"role", "user"}, {"content", long_text}}}}}.dump(), 400, "",
               "context_length_exceeded");
  expect_error(s, emb, json{{"model", "emb"}, {"input", {long_text, long_text}}}.dump(), 400, "input",
               "context_length_exceeded");
  expect_error(s, comp, json{{"model", "lm"}, {"prompt", std::string(9000, 'a')}}.dump(), 413, "", "body_too_large");
  // The chat template's own refusal (Gemma's raises on a system role) is a 400 too.
  expect_error(s, chat, R"({"model":"lm","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]})",
               400, "messages", "invalid_messages");
  // Still serving.
  int status = 0;
  post(s, comp, R"({"model":"lm","prompt":"Hello","max_tokens":3})", &status);
  EXPECT_EQ(status, 200);
}

// A full LLM queue answers 429 + Retry-After; a request past its timeout 504.
TEST(ServeLlm, QueueFullAndTimeout) {
  loom::serve::ServerOptions o = three_models();
  o.models = {{"lm", kGemma}};
  o.service_limits.max_queued = 1;
  o.service_limits.max_running = 1;
  LiveServer s(o);
  const std::string body = json{{"model", "lm"}, {"prompt", "The quick brown fox"}, {"max_tokens", 200}}.dump();
  expect_some_refused_with_429(s, "/v1/completions", body);

  loom::serve::ServerOptions t = o;
  t.service_limits.timeout_seconds = 0.001;
  // 20 ms per decoder step: the generation cannot finish before the handler looks at the
  // deadline, even when the parallel suite delays the handler thread (a finished generation
  // is answered 200 however late; seen once without the delay).
  t.service_limits.step_delay_ms = 20;
  LiveServer slow(t);
  expect_error(slow, "/v1/completions", body, 504, "", "timeout");
}

// A client that hangs up mid-stream cancels its generation: the scheduler retires the sequence
// (its slot in the running batch freed) long before max_tokens. (The test this replaces read
// loom_generated_tokens_total from the metric's # HELP line, hence its 0.) Steps are slowed to
// 20 ms so that 240 tokens would take ~5 s; the hang-up is seen within a step or two.
TEST(ServeLlm, ClientDisconnectCancelsTheStreamedGeneration) {
  loom::serve::ServerOptions o;
  o.models = {{"lm", kGemma}};
  o.service_limits.step_delay_ms = 20;
  LiveServer s(o);
  const json body = {{"model", "lm"}, {"prompt", "The"}, {"max_tokens", 240}, {"stream", true}, {"temperature", 1.0},
                     {"seed", 1}, {"stop", json::array()}};
  EXPECT_EQ(metric(s, "loom_running{model=\"lm\"}"), 0);
  {
    httplib::Client c("127.0.0.1", s.server().port());
    int chunks = 0;
    double running_while_streaming = -1;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      if (++chunks == 2) running_while_streaming = metric(s, "loom_running{model=\"lm\"}");
      return chunks < 3;
    };
    auto r = c.send(req);
    EXPECT_FALSE(r);  // we hung up
    EXPECT_EQ(running_while_streaming, 1);
  }
  const double generated = settled_metric(s, "loom_generated_tokens_total");
  EXPECT_GE(generated, 2);
  EXPECT_LT(generated, 60);  // not 240: the sequence left the batch
  EXPECT_EQ(metric(s, "loom_running{model=\"lm\"}"), 0);
  EXPECT_EQ(metric(s, "loom_queue_length{model=\"lm\"}"), 0);
  // The server goes on serving.
  int status = 0;
  const json j = post(s, "/v1/completions", R"({"model":"lm","prompt":"Hello","max_tokens":3})", &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(settled_metric(s, "loom_generated_tokens_total"), generated + j["usage"]["completion_tokens"].get<double>());
}

// The same for a non-streamed request: the client gives up after 300 ms, the server sees the
// closed connection, cancels the generation (status 499 in the metrics) and frees its slot.
TEST(ServeLlm, ClientDisconnectCancelsTheNonStreamedGeneration) {
  loom::serve::ServerOptions o;
  o.models = {{"lm", kGemma}};
  o.service_limits.step_delay_ms = 20;
  LiveServer s(o);
  const json body = {{"model", "lm"}, {"prompt", "The"}, {"max_tokens", 240}, {"temperature", 1.0}, {"seed", 1}};
  {
    httplib::Client impatient("127.0.0.1", s.server().port());
    impatient.set_read_timeout(0, 300000);
    auto r = impatient.Post("/v1/completions", body.dump(), "application/json");
    EXPECT_FALSE(r);
  }
  const double generated = settled_metric(s, "loom_generated_tokens_total");
  EXPECT_GE(generated, 1);
  EXPECT_LT(generated, 120);
  EXPECT_EQ(metric(s, "loom_requests_total{route=\"/v1/completions\",status=\"499\"}"), 1);
  EXPECT_EQ(metric(s, "loom_running{model=\"lm\"}"), 0);
}

// The continuous-batching core: a sequence that joins a running one mid-generation and is
// stepped in the same batched forward gives the same greedy tokens as each alone.
TEST(ServeLlm, StepBatchJoiningMidwayEqualsAlone) {
  torch::InferenceMode guard;
  auto model = loom::models::CausalLM::load(kGemma);
  const json& ref = gemma_ref();
  loom::generate::CausalGenerateOptions o;
  o.max_new_tokens = 20;
  o.sampling.temperature = 0;
  auto ids = [](const json& j) { return j.get<std::vector<int64_t>>(); };
  loom::generate::Sequence a(model, ids(ref["cases"][0]["input_ids"]), o);
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(a.step());  // a runs alone for 7 steps
  loom::generate::Sequence b(model, ids(ref["cases"][1]["input_ids"]), o);
  loom::generate::Sequence c(model, ids(ref["cases"][3]["input_ids"]), o);
  // b and c prefill together, then all three decode together.
  auto first = loom::generate::Sequence::step_batch({&b, &c});
  ASSERT_TRUE(first[0] && first[1]);
  for (int i = 0; i < 30; ++i) loom::generate::Sequence::step_batch({&a, &b, &c});
  EXPECT_EQ(a.generated(), ids(ref["cases"][0]["greedy"]["new_ids"]));
  EXPECT_EQ(b.generated(), ids(ref["cases"][1]["greedy"]["new_ids"]));
  EXPECT_EQ(c.generated(), ids(ref["cases"][3]["greedy"]["new_ids"]));
  EXPECT_EQ(a.finish_reason(), loom::generate::FinishReason::kLength);
  // Each keeps its own compact cache: exactly its tokens so far, all valid.
  EXPECT_EQ(b.cache().length() + 1, static_cast<int64_t>(b.tokens().size()));
  EXPECT_TRUE(b.cache().key_valid.all().item<bool>());
}

// The scheduler admits a request into a decode batch that is already running: a short request
// sent while a long generation streams finishes first.
TEST(ServeLlm, SchedulerAdmitsIntoTheRunningBatch) {
  loom::serve::Metrics metrics;
  loom::serve::LlmService service("lm", kGemma, metrics, loom::serve::ServiceLimits{});
  loom::serve::CompletionRequest lng, shrt;
  lng.gen.model = shrt.gen.model = "lm";
  lng.gen.temperature = shrt.gen.temperature = 0;
  lng.prompt = "The";
  lng.gen.max_tokens = 240;
  shrt.prompt = gemma_ref()["cases"][0]["prompt"];
  shrt.gen.max_tokens = 3;
  auto g_long = service.start_completion(lng);
  // Wait until the long one has produced a token (it is in the running batch).
  while (service.next(*g_long, std::chrono::milliseconds(50)).completion_tokens == 0) {
  }
  auto g_short = service.start_completion(shrt);
  const auto done = service.wait(*g_short);
  const auto long_now = service.next(*g_long, std::chrono::milliseconds(0));
  EXPECT_EQ(done.completion_tokens, 3);
  EXPECT_FALSE(long_now.finished) << "the long generation was still running when the short one finished";
  EXPECT_LT(long_now.completion_tokens, 240);
  service.cancel(*g_long);
}

}  // namespace
