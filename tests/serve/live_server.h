// The test support of the tests/serve suites: an in-process `loom serve` on a free loopback
// port, a JSON POST helper, the check of an OpenAI-style error object, metric readers, the
// queue-full check and a long test text.
#pragma once

#include <httplib.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <utility>
#include <vector>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "loom/serve/server.h"
#include "support/support.h"

namespace loom_test::serve {

using nlohmann::json;

// The tiny test models (tests/data/hf-tiny).
inline const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";
inline const std::string kNllb = std::string(LOOM_TEST_DATA) + "/hf-tiny/nllb-m2m100";
inline const std::string kGemma = std::string(LOOM_TEST_DATA) + "/hf-tiny/gemma";
inline const std::string kBert = std::string(LOOM_TEST_DATA) + "/hf-tiny/bert-minilm";

// An in-process server on a free loopback port, serving until destroyed.
class LiveServer {
 public:
  explicit LiveServer(loom::serve::ServerOptions o) {
    o.port = 0;
    if (o.models.empty()) o.models = {{"mt", kMarian}};
    server_ = std::make_unique<loom::serve::Server>(o);
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
  }
  ~LiveServer() {
    server_->stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    return c;
  }
  loom::serve::Server& server() { return *server_; }

 private:
  std::unique_ptr<loom::serve::Server> server_;
  std::thread thread_;
};

inline json post(const LiveServer& s, const std::string& path, const std::string& body, int* status,
          const httplib::Headers& headers = {}) {
  auto c = s.client();
  auto r = c.Post(path.c_str(), headers, body, "application/json");
  if (!r) {
    *status = -1;
    return {};
  }
  *status = r->status;
  return json::parse(r->body);
}

// The error object of a refused request: status, type, param, code all checked.
inline void expect_error(const LiveServer& s, const std::string& path, const std::string& body, int status,
                  const std::string& param, const std::string& code, const httplib::Headers& headers = {}) {
  SCOPED_TRACE(body.substr(0, 200));
  int got = 0;
  const json j = post(s, path, body, &got, headers);
  EXPECT_EQ(got, status);
  ASSERT_TRUE(j.contains("error")) << j.dump();
  const json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
  EXPECT_TRUE(e["type"].is_string());
  if (param.empty()) {
    EXPECT_TRUE(e["param"].is_null()) << e.dump();
  } else {
    EXPECT_EQ(e["param"], param);
  }
  EXPECT_EQ(e["code"], code);
}

// The value of the sample `series` (name with its labels as rendered, e.g.
// "loom_running{model=\"lm\"}") in the server's GET /metrics; -1 when absent. Matches whole
// sample lines only (never the # HELP text).
inline double metric(const LiveServer& s, const std::string& series) {
  auto r = s.client().Get("/metrics");
  if (!r) return -1;
  const std::string m = "\n" + r->body;
  const std::string key = "\n" + series + " ";
  const auto at = m.find(key);
  return at == std::string::npos ? -1 : std::atof(m.c_str() + at + key.size());
}

// metric(s, series) once it has not changed for 200 ms (the scheduler settled; at most ~10 s).
inline double settled_metric(const LiveServer& s, const std::string& series) {
  double last = metric(s, series);
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const double now = metric(s, series);
    if (now == last) break;
    last = now;
  }
  return last;
}

// n numbered English sentences ("The quick brown fox jumps over the lazy dog number 0. ...").
inline std::string numbered_sentences(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += "The quick brown fox jumps over the lazy dog number " + std::to_string(i) + ". ";
  return text;
}

// Sends `clients` copies of body to path at once, each on its own connection: every answer
// must be 200 or 429 with "Retry-After: 1", and both must occur (the queue filled up).
inline void expect_some_refused_with_429(const LiveServer& s, const std::string& path, const std::string& body,
                                         int clients = 8) {
  std::vector<std::future<std::pair<int, std::string>>> futures;
  for (int i = 0; i < clients; ++i) {
    futures.push_back(std::async(std::launch::async, [&] {
      auto c = s.client();
      auto r = c.Post(path.c_str(), body, "application/json");
      if (!r) return std::make_pair(-1, std::string());
      return std::make_pair(r->status, r->get_header_value("Retry-After"));
    }));
  }
  int ok = 0, limited = 0;
  for (auto& f : futures) {
    auto [status, retry] = f.get();
    if (status == 200) ++ok;
    if (status == 429) {
      ++limited;
      EXPECT_EQ(retry, "1");
    }
    EXPECT_TRUE(status == 200 || status == 429) << status;
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(limited, 1);
}

}  // namespace loom_test::serve
