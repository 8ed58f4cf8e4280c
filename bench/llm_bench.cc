// Decoder-LLM throughput the way llama-bench reports it: pp (prompt processing: one forward pass
// over N random tokens from an empty KV cache) and tg (text generation: N single-token forward
// passes from an empty cache, each appending to the KV cache), tokens per second, batch 1.
// Random token ids (uniform over the vocabulary); only the last position's logits are computed,
// as in generation. One model configuration per process, so the peak resident set (VmHWM) is
// that configuration's. Prints one JSON object.
//
// Usage: loom_llm_bench --model DIR [--compute-type float32|bfloat16|int8] [--threads N]
//                       [--pp 512] [--tg 128] [--reps 1]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "loom/core/allocator.h"
#include "loom/core/error.h"
#include "loom/models/causal_lm.h"
#include "loom/nn/gemv.h"
#include "loom/nn/packed_linear.h"

namespace {

double status_mib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(in, line))
    if (line.rfind(k, 0) == 0) return std::stod(line.substr(k.size())) / 1024.0;  // kB
  return -1;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  loom::core::tune_allocator();
  std::string model_dir, compute = "float32";
  int threads = 1, pp = 512, tg = 128, reps = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model_dir = v;
    else if (a == "--compute-type") compute = v;
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--pp") pp = std::stoi(v);
    else if (a == "--tg") tg = std::stoi(v);
    else if (a == "--reps") reps = std::stoi(v);
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  if (model_dir.empty()) {
    std::cerr << "usage: loom_llm_bench --model DIR [--compute-type T] [--threads N] [--pp N] [--tg N] [--reps N]\n";
    return 2;
  }
  try {
    torch::set_num_threads(threads);
    torch::NoGradGuard no_grad;
    auto t0 = std::chrono::steady_clock::now();
    auto model = loom::models::CausalLM::load(model_dir, loom::nn::parse_weight_type(compute, "--compute-type"));
    const double load_s = seconds_since(t0);
    const auto& c = model->config();
    torch::manual_seed(0);
    double best_pp = 0, best_tg = 0;
    for (int r = 0; r < reps; ++r) {
      if (pp > 0) {
        loom::models::KvCache cache;
        auto ids = torch::randint(c.vocab_size, {1, pp}, torch::kInt64);
        auto pos = torch::arange(pp, torch::kInt64).unsqueeze(0);
        auto valid = torch::ones({1, pp}, torch::kBool);
        auto t = std::chrono::steady_clock::now();
        auto logits = model->forward(ids, pos, valid, cache, /*last_only=*/true);
        best_pp = std::max(best_pp, pp / seconds_since(t));
        if (!torch::isfinite(logits).all().item<bool>()) throw std::runtime_error("non-finite logits");
      }
      if (tg > 0) {
        loom::models::KvCache cache;
        auto ids = torch::randint(c.vocab_size, {1, tg}, torch::kInt64);
        auto valid = torch::ones({1, 1}, torch::kBool);
        auto t = std::chrono::steady_clock::now();
        for (int i = 0; i < tg; ++i) {
          auto pos = torch::full({1, 1}, i, torch::kInt64);
          auto logits = model->forward(ids.narrow(1, i, 1), pos, valid, cache, /*last_only=*/true);
          (void)logits.argmax(-1).item<int64_t>();  // what a sampler needs before the next step
        }
        best_tg = std::max(best_tg, tg / seconds_since(t));
      }
    }
    nlohmann::json out = {{"model", model_dir},
                          {"model_type", loom::models::family_name(c.family)},
                          {"compute_type", compute},
                          {"threads", threads},
                          {"params", model->num_parameters()},
                          {"weight_bytes", model->weight_bytes()},
                          {"mapped_weight_bytes", model->mapped_weight_bytes()},
                          {"load_s", load_s},
                          {"pp", pp},
                          {"pp_tok_s", best_pp},
                          {"tg", tg},
                          {"tg_tok_s", best_tg},
                          {"avx512_kernels", loom::nn::packed_avx512_enabled()},
                          {"gemv_kernels", loom::nn::gemv_isa_name(loom::nn::gemv_active_isa())},
                          {"peak_rss_mib", status_mib("VmHWM")}};
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "loom_llm_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
