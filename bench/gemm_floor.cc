// loom_gemm_floor: the time one decoder step of opus-mt-en-zh spends in its matrix products
// alone, when they run at oneDNN sgemm speed — the floor under any engine that uses that sgemm
// (loom and CTranslate2 built with oneDNN both do). Per step and row count M (sentences × beams)
// the products are, for each of the 6 decoder layers, self-attention QKV [M,512]·[512,1536] and
// output [512,512], cross-attention query and output [512,512] each, FFN [512,2048] and
// [2048,512]; then the vocabulary projection [M,512]·[512,65001] (loom's [d, V] layout). The
// encoder and the cross-attention keys/values (once per batch) are not included. Every layer has
// its own weights, so the weights stream from memory as in a real step.
// With --compute-type int8 the same products run through loom's int8 kernel (nn/qgemm.h: int8
// weights in groups of --group input features, int16 activations, the path of `--compute-type
// int8` on AVX2 CPUs without VNNI), its weights packed once as a translation model's are.
// Prints "| threads | rows M | GEMM ms / step | of it vocabulary projection | tgt tok/s ceiling,
// beam 1 | beam 4 |" where the ceilings are M (beam 1) or M / 4 (beam 4) tokens per step time.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "loom/nn/packed_linear.h"
#include "loom/nn/qgemm.h"
#include "loom/nn/sgemm.h"

namespace {

struct Product {
  int64_t n, k;       // weight [K, N] (row-major, 'N' layout)
  torch::Tensor w;    // [K, N]
  loom::nn::Int8PanelWeight q;  // int8 copy (--compute-type int8)
  torch::Tensor w8;             // [N, K] int8 (--compute-type u8s8-onednn)
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GEMM floor of one opus-mt-en-zh decoder step (oneDNN sgemm)"};
  std::vector<int> rows = {16, 64, 256};
  int threads = 2, repeat = 5, layers = 6, d = 512, ffn = 2048, vocab = 65001;
  app.add_option("--rows", rows, "row counts M (sentences × beams)");
  app.add_option("--threads", threads);
  app.add_option("--repeat", repeat, "timed steps per row count (best kept)");
  std::string compute_type = "float32";
  int64_t group = loom::nn::kInt16PathGroup;
  app.add_option("--compute-type", compute_type,
                 "float32 (oneDNN sgemm), int8 (loom's int16·int8 panel kernel) or u8s8-onednn (oneDNN's "
                 "dnnl_gemm_u8s8s32 alone, as CTranslate2's int8 calls it, without its quantization)")
      ->check(CLI::IsMember({"float32", "int8", "u8s8-onednn"}));
  app.add_option("--group", group, "int8: input features per weight scale");
  CLI11_PARSE(app, argc, argv);
  const bool int8 = compute_type == "int8";
  if (int8 && (group < 2 || group > loom::nn::Int8PanelWeight::kMaxGroup || group % 2 != 0)) {
    std::fprintf(stderr, "loom_gemm_floor: --group %lld must be even and in [2, %lld]\n", static_cast<long long>(group),
                 static_cast<long long>(loom::nn::Int8PanelWeight::kMaxGroup));
    return 1;
  }
  const bool u8s8 = compute_type == "u8s8-onednn";
  const loom::nn::GemmU8S8S32Fn gemm_u8s8 = loom::nn::onednn_gemm_u8s8s32();
  if (u8s8 && gemm_u8s8 == nullptr) {
    std::fprintf(stderr, "loom_gemm_floor: dnnl_gemm_u8s8s32 not found\n");
    return 1;
  }
  if (int8 && !loom::nn::Int8PanelWeight::supported()) {
    std::fprintf(stderr, "loom_gemm_floor: the int8 kernel needs AVX2\n");
    return 1;
  }
  loom::nn::SgemmFn gemm = loom::nn::onednn_sgemm();
  if (gemm == nullptr) {
    std::fprintf(stderr, "loom_gemm_floor: oneDNN sgemm not found\n");
    return 1;
  }
  torch::set_num_threads(threads);
  torch::manual_seed(1);
  std::vector<Product> layer_products;
  auto make = [&](int64_t n, int64_t k) {
    Product p{n, k, torch::randn({k, n}) * 0.02, {}};
    if (int8) {
      p.q = loom::nn::Int8PanelWeight(p.w.t(), group);
      p.w = torch::Tensor();  // only the int8 copy streams from memory
    }
    if (u8s8) {
      p.w8 = torch::randint(-127, 128, {n, k}, torch::kInt8);  // [N, K], as CTranslate2 stores weights
      p.w = torch::Tensor();
    }
    return p;
  };
  for (int l = 0; l < layers; ++l) {
    for (auto nk : std::vector<std::pair<int64_t, int64_t>>{{3 * d, d}, {d, d}, {d, d}, {d, d}, {ffn, d}, {d, ffn}}) {
      layer_products.push_back(make(nk.first, nk.second));
    }
  }
  Product head = make(vocab, d);
  std::printf("compute type %s%s\n", compute_type.c_str(), int8 ? (", group " + std::to_string(group)).c_str() : "");
  const int32_t zero = 0;
  std::printf("| threads | rows M | GEMM ms / step | of it vocabulary projection | tgt tok/s ceiling, beam 1 | beam 4 |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  for (int m : rows) {
    torch::Tensor x = torch::randn({m, ffn});                        // [M, max K]
    torch::Tensor y = torch::empty({static_cast<int64_t>(m) * vocab});  // [M, max N]
    torch::Tensor x8, y32;  // u8s8-onednn only: [M, max K] u8, [M, max N] int32
    if (u8s8) {
      x8 = torch::randint(0, 256, {m, ffn}, torch::kUInt8);
      y32 = torch::empty({static_cast<int64_t>(m) * vocab}, torch::kInt32);
    }
    auto run = [&](const Product& p) {
      if (int8) {
        p.q.forward(x.data_ptr<float>(), m, y.data_ptr<float>(), p.n, nullptr);  // x read with row stride K
        return;
      }
      if (u8s8) {
        const int status = gemm_u8s8('N', 'T', 'F', m, p.n, p.k, 1.0f, x8.data_ptr<uint8_t>(), p.k, 0,
                                     p.w8.data_ptr<int8_t>(), p.k, 0, 0.0f, y32.data_ptr<int32_t>(), p.n, &zero);
        if (status != 0) std::fprintf(stderr, "dnnl_gemm_u8s8s32 failed (%d)\n", status);
        return;
      }
      const int status = gemm('N', 'N', m, p.n, p.k, 1.0f, x.data_ptr<float>(), p.k, p.w.data_ptr<float>(), p.n, 0.0f,
                              y.data_ptr<float>(), p.n);
      if (status != 0) std::fprintf(stderr, "sgemm failed (%d)\n", status);
    };
    double best = 1e30, best_head = 1e30;
    for (int r = 0; r <= repeat; ++r) {  // r = 0 warms up
      auto t0 = std::chrono::steady_clock::now();
      for (const Product& p : layer_products) run(p);
      const double layers_s = seconds_since(t0);
      auto t1 = std::chrono::steady_clock::now();
      run(head);
      const double head_s = seconds_since(t1);
      if (r > 0 && layers_s + head_s < best) {
        best = layers_s + head_s;
        best_head = head_s;
      }
    }
    std::printf("| %d | %d | %.1f | %.1f | %.0f | %.0f |\n", threads, m, best * 1e3, best_head * 1e3, m / best,
                m / 4.0 / best);
  }
  return 0;
}
