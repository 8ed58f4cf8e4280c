// Concurrency benchmark of `loom serve`: C clients (default 1, 4, 16, 64) each send R requests
// back to back to POST /v1/translations of a running server; prints one Markdown table row per
// client count: requests/s, generated tokens/s (usage.completion_tokens), p50/p99 latency and
// time to first token (the route does not stream, so the first token arrives with the whole
// answer: TTFT = latency), and the throughput ratio to 1 client. Errors are counted and shown.
// Driven by bench/serve_bench.sh (starts the server); see docs/benchmarks.md.
//
// Usage: loom_serve_bench --port P [--host 127.0.0.1] [--model mt] [--clients 1,4,16,64]
//        [--requests 20] [--beam 1] [--input FILE (one request text per line)]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

struct Args {
  std::string host = "127.0.0.1", model = "mt", input;
  int port = 0, requests = 20, beam = 1;
  std::vector<int> clients = {1, 4, 16, 64};
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--host") a.host = v;
    else if (k == "--port") a.port = std::stoi(v);
    else if (k == "--model") a.model = v;
    else if (k == "--requests") a.requests = std::stoi(v);
    else if (k == "--beam") a.beam = std::stoi(v);
    else if (k == "--input") a.input = v;
    else if (k == "--clients") {
      a.clients.clear();
      for (size_t b = 0; b < v.size();) {
        size_t e = v.find(',', b);
        if (e == std::string::npos) e = v.size();
        a.clients.push_back(std::stoi(v.substr(b, e - b)));
        b = e + 1;
      }
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (a.port <= 0) {
    std::fprintf(stderr, "usage: loom_serve_bench --port P [--clients 1,4,16,64] [--requests R] [--input FILE]\n");
    return 2;
  }
  std::vector<std::string> texts;
  if (!a.input.empty()) {
    std::ifstream in(a.input);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) texts.push_back(line);
  }
  if (texts.empty()) texts = {"The weather is nice today.", "Where is the nearest train station?",
                              "I would like a cup of green tea, please.", "The meeting starts at ten."};

  std::printf("| clients | requests | errors | req/s | gen tok/s | p50 ms | p99 ms | TTFT p50 ms | req/s vs 1 client |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  double base = 0;
  for (int c : a.clients) {
    std::vector<std::vector<double>> lat(static_cast<size_t>(c));
    std::atomic<int64_t> tokens{0}, errors{0};
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < c; ++t) {
      threads.emplace_back([&, t] {
        httplib::Client client(a.host, a.port);
        client.set_read_timeout(600, 0);
        for (int r = 0; r < a.requests; ++r) {
          const std::string& text = texts[static_cast<size_t>(t * a.requests + r) % texts.size()];
          const nlohmann::json body = {{"model", a.model}, {"input", text}, {"beam_size", a.beam}};
          const auto s = std::chrono::steady_clock::now();
          auto res = client.Post("/v1/translations", body.dump(), "application/json");
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count();
          if (!res || res->status != 200) {
            if (errors++ < 5)
              std::fprintf(stderr, "request failed: %s\n",
                           res ? ("HTTP " + std::to_string(res->status) + " " + res->body).c_str()
                               : httplib::to_string(res.error()).c_str());
            continue;
          }
          lat[static_cast<size_t>(t)].push_back(ms);
          tokens += nlohmann::json::parse(res->body)["usage"]["completion_tokens"].get<int64_t>();
        }
      });
    }
    for (auto& th : threads) th.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> all;
    for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
    const double rps = static_cast<double>(all.size()) / secs;
    if (base == 0) base = rps;
    std::printf("| %d | %zu | %lld | %.1f | %.0f | %.0f | %.0f | %.0f | %.2fx |\n", c, all.size(),
                static_cast<long long>(errors.load()), rps, static_cast<double>(tokens.load()) / secs,
                percentile(all, 0.5), percentile(all, 0.99), percentile(all, 0.5), rps / base);
    std::fflush(stdout);
  }
  return 0;
}
