// Concurrency benchmark of `loom serve`: C clients (default 1, 4, 16, 64) each send R requests
// back to back to a running server; prints one Markdown table row per client count:
// requests/s, generated tokens/s (usage.completion_tokens), p50/p99 latency, time to first token
// and the throughput ratio to 1 client. Errors are counted and shown.
//   --route translations (default): POST /v1/translations; the route does not stream, so the
//     first token arrives with the whole answer (TTFT = latency).
//   --route completions: POST /v1/completions with "stream": true (stream_options.include_usage),
//     greedy, --max-tokens new tokens; TTFT = time to the first non-empty text chunk. Concurrent
//     requests share decode steps through the continuous-batching scheduler.
// Driven by bench/serve_bench.sh (starts the server); see docs/benchmarks.md.
//
// Usage: loom_serve_bench --port P [--host 127.0.0.1] [--route translations|completions]
//        [--model mt] [--clients 1,4,16,64] [--requests 20] [--beam 1] [--max-tokens 32]
//        [--input FILE (one request text per line)]
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
  std::string host = "127.0.0.1", model = "mt", input, route = "translations";
  int port = 0, requests = 20, beam = 1, max_tokens = 32;
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
    else if (k == "--route") a.route = v;
    else if (k == "--max-tokens") a.max_tokens = std::stoi(v);
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
  if (a.port <= 0 || (a.route != "translations" && a.route != "completions")) {
    std::fprintf(stderr, "usage: loom_serve_bench --port P [--route translations|completions] [--clients 1,4,16,64] "
                         "[--requests R] [--max-tokens N] [--input FILE]\n");
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

  std::printf("| clients | requests | errors | req/s | gen tok/s | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms | req/s vs 1 client |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  double base = 0;
  for (int c : a.clients) {
    std::vector<std::vector<double>> lat(static_cast<size_t>(c)), ttft(static_cast<size_t>(c));
    std::atomic<int64_t> tokens{0}, errors{0};
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < c; ++t) {
      threads.emplace_back([&, t] {
        httplib::Client client(a.host, a.port);
        client.set_read_timeout(600, 0);
        auto fail = [&](const std::string& why) {
          if (errors++ < 5) std::fprintf(stderr, "request failed: %s\n", why.c_str());
        };
        for (int r = 0; r < a.requests; ++r) {
          const std::string& text = texts[static_cast<size_t>(t * a.requests + r) % texts.size()];
          const auto s = std::chrono::steady_clock::now();
          auto since = [&s] {
            return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count();
          };
          if (a.route == "translations") {
            const nlohmann::json body = {{"model", a.model}, {"input", text}, {"beam_size", a.beam}};
            auto res = client.Post("/v1/translations", body.dump(), "application/json");
            const double ms = since();
            if (!res || res->status != 200) {
              fail(res ? "HTTP " + std::to_string(res->status) + " " + res->body : httplib::to_string(res.error()));
              continue;
            }
            lat[static_cast<size_t>(t)].push_back(ms);
            ttft[static_cast<size_t>(t)].push_back(ms);
            tokens += nlohmann::json::parse(res->body)["usage"]["completion_tokens"].get<int64_t>();
            continue;
          }
          // Streamed completion: TTFT at the first chunk with text; usage from the last chunk.
          const nlohmann::json body = {{"model", a.model},         {"prompt", text},
                                       {"max_tokens", a.max_tokens}, {"temperature", 0},
                                       {"stream", true},           {"stream_options", {{"include_usage", true}}}};
          std::string buffer;
          double first = -1;
          int64_t completion = -1;
          httplib::Request req;
          req.method = "POST";
          req.path = "/v1/completions";
          req.body = body.dump();
          req.set_header("Content-Type", "application/json");
          req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
            buffer.append(data, n);
            for (size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
              const std::string ev = buffer.substr(0, end);
              if (ev.rfind("data: {", 0) != 0) continue;
              const auto j = nlohmann::json::parse(ev.substr(6));
              if (j.contains("usage")) completion = j["usage"]["completion_tokens"].get<int64_t>();
              if (first < 0 && !j["choices"].empty() && !j["choices"][0]["text"].get<std::string>().empty()) first = since();
            }
            return true;
          };
          auto res = client.send(req);
          const double ms = since();
          if (!res || res->status != 200 || completion < 0) {
            fail(res ? "HTTP " + std::to_string(res->status) : httplib::to_string(res.error()));
            continue;
          }
          lat[static_cast<size_t>(t)].push_back(ms);
          ttft[static_cast<size_t>(t)].push_back(first < 0 ? ms : first);
          tokens += completion;
        }
      });
    }
    for (auto& th : threads) th.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> all, first;
    for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
    for (auto& v : ttft) first.insert(first.end(), v.begin(), v.end());
    const double rps = static_cast<double>(all.size()) / secs;
    if (base == 0) base = rps;
    std::printf("| %d | %zu | %lld | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2fx |\n", c, all.size(),
                static_cast<long long>(errors.load()), rps, static_cast<double>(tokens.load()) / secs,
                percentile(all, 0.5), percentile(all, 0.99), percentile(first, 0.5), percentile(first, 0.99),
                rps / base);
    std::fflush(stdout);
  }
  return 0;
}
