// Shared by the tests/serve suites: an in-process `loom serve` on a free loopback port, a JSON
// POST helper and the check of an OpenAI-style error object.
#pragma once

#include <httplib.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "loom/serve/server.h"
#include "support/support.h"

namespace loom_test::serve {

using nlohmann::json;

inline const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

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

}  // namespace loom_test::serve
