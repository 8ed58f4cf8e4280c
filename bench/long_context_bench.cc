// Streams a long random token sequence through a small DecoderLM and reports throughput and
// peak resident memory at checkpoints (papers.md §3.2: Infini-attention streams any length in
// constant memory). Usage:
//   loom_long_context_bench [--attention infini|standard|knn] [--tokens N] [--segment N]
//       [--chunk N] [--report N,N,...] [--layers N] [--d-model N] [--d-head N] [--vocab N]
//       [--window N] [--knn-memory N] [--threads N]
// Prints one line per checkpoint:
//   tokens=<n> seconds=<s> tok_per_s=<r> peak_rss_mib=<m> state_mib=<s>
// tok_per_s is the rate over the whole run so far; peak_rss_mib is the process high-water mark
// (VmHWM); state_mib is the size of the streaming state (caches, Infini (M, z), kNN store).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "loom/models/decoder_lm.h"

namespace {

double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return -1;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string attention = "infini";
  int64_t tokens = 1 << 20, segment = 512, chunk = 0, layers = 4, d_model = 128, d_head = 32,
          vocab = 256, window = 0, knn_memory = 65536, threads = 0;
  std::vector<int64_t> report = {65536, 262144, 1048576};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--attention") attention = v;
    else if (k == "--tokens") tokens = std::stoll(v);
    else if (k == "--segment") segment = std::stoll(v);
    else if (k == "--chunk") chunk = std::stoll(v);
    else if (k == "--report") report = parse_list(v);
    else if (k == "--layers") layers = std::stoll(v);
    else if (k == "--d-model") d_model = std::stoll(v);
    else if (k == "--d-head") d_head = std::stoll(v);
    else if (k == "--vocab") vocab = std::stoll(v);
    else if (k == "--window") window = std::stoll(v);
    else if (k == "--knn-memory") knn_memory = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else { std::cerr << "unknown option " << k << "\n"; return 2; }
  }
  if (chunk <= 0) chunk = segment;
  if (threads > 0) torch::set_num_threads(threads);
  try {
    nlohmann::json j = {{"vocab_size", vocab}, {"n_layers", layers}, {"d_model", d_model},
                        {"d_head", d_head}, {"qkv_multipliers", 1.0}, {"ffn_multipliers", 4.0},
                        {"ffn_divisor", 64}, {"segment_len", segment}, {"local_window", window},
                        {"knn_memory_size", knn_memory}};
    if (attention == "knn") {
      j["attention"] = "standard";
      j["knn_layers"] = {-2};
      if (window == 0) j["local_window"] = segment;
    } else {
      j["attention"] = attention;
    }
    loom::models::DecoderLM model(loom::models::DecoderLMConfig::from_json(j, "bench"), 0);
    torch::NoGradGuard no_grad;
    model->eval();
    loom::models::DecoderLMState state = model->initial_state(1);
    std::printf("# attention=%s layers=%lld d_model=%lld d_head=%lld segment=%lld chunk=%lld window=%lld threads=%d params=%lld\n",
                attention.c_str(), (long long)layers, (long long)d_model, (long long)d_head, (long long)segment,
                (long long)chunk, (long long)window, torch::get_num_threads(), (long long)model->parameter_count());
    std::fflush(stdout);
    auto gen = at::detail::createCPUGenerator(1);
    const auto start = std::chrono::steady_clock::now();
    size_t next = 0;
    int64_t done = 0;
    while (done < tokens && next < report.size()) {
      const int64_t n = std::min(chunk, tokens - done);
      torch::Tensor ids = at::randint(vocab, {1, n}, gen, torch::kInt64);
      torch::Tensor logits = model->forward(ids, state);  // [1, n, V]
      (void)logits;
      done += n;
      if (done >= report[next]) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("tokens=%lld seconds=%.2f tok_per_s=%.0f peak_rss_mib=%.1f state_mib=%.2f\n", (long long)done, s,
                    done / s, peak_rss_mib(), state.nbytes() / 1048576.0);
        std::fflush(stdout);
        ++next;
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
