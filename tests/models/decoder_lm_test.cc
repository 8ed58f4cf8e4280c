// DecoderLM: OpenELM layer-wise scaling (papers.md §2.2 golden values), DeLighT blocks with
// block-wise scaling (papers.md §1.7–1.8), config validation, save/load, streaming equivalence
// and per-row document resets.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <cmath>

#include "loom/models/decoder_lm.h"

namespace loom::models {
namespace {

using nlohmann::json;

// "12×5, 16×7, 20×4" -> run-length list of q heads
std::vector<int64_t> runs(std::initializer_list<std::pair<int64_t, int64_t>> r) {
  std::vector<int64_t> out;
  for (auto [v, n] : r) out.insert(out.end(), n, v);
  return out;
}

TEST(OpenELM, MakeDivisibleAndMultipliers) {
  EXPECT_EQ(make_divisible(640, 256), 768);
  EXPECT_EQ(make_divisible(100, 256), 256);  // at least the divisor
  EXPECT_EQ(make_divisible(1300, 256), 1280);
  EXPECT_EQ(make_divisible(127.9, 128), 128);
  auto a = layerwise_multipliers(0.5, 4.0, 16);
  EXPECT_DOUBLE_EQ(a[0], 0.5);
  EXPECT_DOUBLE_EQ(a[1], 0.73);  // 0.7333..
  EXPECT_DOUBLE_EQ(a[15], 4.0);
  EXPECT_EQ(layerwise_multipliers(0.75, 0.75, 1), std::vector<double>{0.75});
}

TEST(OpenELM, PerLayerShapesOfTheReleasedConfigs) {
  struct Case {
    const char* name;
    std::vector<int64_t> q_heads;
    int64_t ffn_first, ffn_last;
    double params_m;
  };
  std::vector<Case> cases = {
      {"openelm-270m", runs({{12, 5}, {16, 7}, {20, 4}}), 768, 5120, 271.7},
      {"openelm-450m", runs({{12, 3}, {16, 7}, {20, 6}, {24, 4}}), 768, 6144, 457.4},
      {"openelm-1.1b", runs({{16, 3}, {20, 7}, {24, 8}, {28, 6}, {32, 4}}), 1024, 8192, 1080.2},
      {"openelm-3b", runs({{12, 4}, {16, 14}, {20, 12}, {24, 6}}), 1536, 12288, 3037.0},
  };
  for (const Case& c : cases) {
    DecoderLMConfig cfg = openelm_config(c.name);
    std::vector<LayerShape> s = cfg.layer_shapes();
    ASSERT_EQ(s.size(), c.q_heads.size()) << c.name;
    for (size_t i = 0; i < s.size(); ++i) {
      EXPECT_EQ(s[i].n_q, c.q_heads[i]) << c.name << " layer " << i;
      EXPECT_EQ(s[i].n_kv, c.q_heads[i] / 4) << c.name << " layer " << i;
    }
    EXPECT_EQ(s.front().ffn_dim, c.ffn_first) << c.name;
    EXPECT_EQ(s.back().ffn_dim, c.ffn_last) << c.name;
    const double params = double(cfg.parameter_count()) / 1e6;
    EXPECT_NEAR(params, c.params_m, c.params_m * 1e-3) << c.name;
  }
  std::vector<int64_t> ffn;
  for (const LayerShape& s : openelm_config("openelm-270m").layer_shapes()) ffn.push_back(s.ffn_dim);
  EXPECT_EQ(ffn, (std::vector<int64_t>{768, 1024, 1280, 1536, 1792, 2048, 2560, 2816, 3072, 3328, 3584,
                                       3840, 4352, 4608, 4864, 5120}));
  std::vector<int64_t> kv;
  for (const LayerShape& s : openelm_config("openelm-270m").layer_shapes()) kv.push_back(s.n_kv);
  EXPECT_EQ(kv, runs({{3, 5}, {4, 7}, {5, 4}}));
  EXPECT_THROW(openelm_config("openelm-7b"), Error);
}

// from_json(j, file) must throw loom::Error naming `file` and `field`.
void expect_bad_field(const json& j, const std::string& file, const std::string& field) {
  try {
    DecoderLMConfig::from_json(j, file);
    ADD_FAILURE() << "accepted bad " << field << ": " << j.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.where().field, field) << e.what();
    EXPECT_EQ(e.where().file, file);
  }
}

json tiny_config() {
  return json{{"vocab_size", 50}, {"n_layers", 3}, {"d_model", 32}, {"d_head", 8},
              {"qkv_multipliers", {0.5, 1.0}}, {"ffn_multipliers", {0.5, 2.0}}, {"gqa_ratio", 2},
              {"ffn_divisor", 16}, {"segment_len", 4}, {"local_window", 4},
              {"layer_attention", {"standard", "infini", "knn"}}, {"knn_memory_size", 32},
              {"knn_top_k", 4}};
}

TEST(DecoderLMConfig, ValidationNamesTheField) {
  auto expect_field = [](const json& j, const std::string& field) { expect_bad_field(j, "cfg.json", field); };
  json j = tiny_config();
  j["d_head"] = 7;
  expect_field(j, "d_head");
  j = tiny_config();
  j.erase("vocab_size");
  expect_field(j, "vocab_size");
  j = tiny_config();
  j["qkv_multipliers"] = "big";
  expect_field(j, "qkv_multipliers");
  j = tiny_config();
  j["layer_attention"] = {"standard", "infini"};
  expect_field(j, "layer_attention");
  j = tiny_config();
  j["layer_attention"] = {"standard", "infini", "ring"};
  expect_field(j, "layer_attention");
  j = tiny_config();
  j["segmnt_len"] = 4;
  expect_field(j, "segmnt_len");
  j = tiny_config();
  j["knn_search"] = "annoy";
  expect_field(j, "knn_search");
  j = tiny_config();
  j["infini_update"] = "gated";
  expect_field(j, "infini_update");
  j = tiny_config();
  j["model_type"] = "llama";
  expect_field(j, "model_type");
  j = tiny_config();
  j["segment_len"] = 0;
  expect_field(j, "segment_len");
  j = tiny_config();
  j.erase("layer_attention");
  j["attention"] = "infini";
  j["knn_layers"] = {-1};
  DecoderLMConfig c = DecoderLMConfig::from_json(j);
  EXPECT_EQ(c.kind(0), nn::AttentionKind::kInfini);
  EXPECT_EQ(c.kind(2), nn::AttentionKind::kKnn);
  j["knn_layers"] = {3};
  expect_field(j, "knn_layers");
  // round trip
  DecoderLMConfig d = DecoderLMConfig::from_json(tiny_config());
  EXPECT_EQ(DecoderLMConfig::from_json(d.to_json()).to_json(), d.to_json());
}

TEST(DecoderLM, ParameterCountMatchesTheModuleTree) {
  DecoderLMConfig c = DecoderLMConfig::from_json(tiny_config());
  DecoderLM m(c, 1);
  EXPECT_EQ(m->parameter_count(), c.parameter_count());
  // layer-wise scaling: layer 0 has 2 q heads (α 0.5), layer 2 has 4 (α 1.0)
  EXPECT_EQ(c.layer_shapes()[0].n_q, 2);
  EXPECT_EQ(c.layer_shapes()[2].n_q, 4);
  EXPECT_EQ(c.layer_shapes()[2].n_kv, 2);
  torch::Tensor logits = m->forward(torch::randint(0, 50, {2, 9}, torch::kInt64));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 9, 50}));
}

// Streams ids [B, T] in chunks of `chunk` and returns the concatenated logits.
torch::Tensor stream(DecoderLM& m, const torch::Tensor& ids, int64_t chunk, DecoderLMState* keep = nullptr) {
  DecoderLMState st = m->initial_state(ids.size(0));
  std::vector<torch::Tensor> out;
  for (int64_t t = 0; t < ids.size(1); t += chunk)
    out.push_back(m->forward(ids.narrow(1, t, std::min(chunk, ids.size(1) - t)), st));
  if (keep) *keep = std::move(st);
  return torch::cat(out, 1);
}

TEST(DecoderLM, StreamingInChunksOfAnySizeEqualsOneShot) {
  for (const char* kinds : {"mixed", "infini-delta", "full"}) {
    json j = tiny_config();
    if (std::string(kinds) == "infini-delta") {
      j["layer_attention"] = {"infini", "infini", "infini"};
      j["infini_update"] = "delta";
    } else if (std::string(kinds) == "full") {
      j["layer_attention"] = {"standard", "standard", "standard"};
      j["local_window"] = 0;
    }
    DecoderLM m(DecoderLMConfig::from_json(j), 2);
    torch::NoGradGuard g;
    torch::Tensor ids = torch::randint(0, 50, {2, 21}, torch::kInt64);
    torch::Tensor ref = m->forward(ids);
    for (int64_t chunk : {1, 7, 4, 21}) {
      EXPECT_TRUE(torch::allclose(stream(m, ids, chunk), ref, 1e-4, 1e-5)) << kinds << " chunk " << chunk;
    }
  }
}

TEST(DecoderLM, FaissSearchMatchesExactSearchEndToEnd) {
  // nprobe = nlist makes IVF exact; the index is trained after 39·nlist = 78 stored keys, so the
  // later segments of this 120-token stream are served by FAISS.
  json j = tiny_config();
  j["knn_faiss_nlist"] = 2;
  j["knn_faiss_nprobe"] = 2;
  j["knn_memory_size"] = 96;
  DecoderLM exact(DecoderLMConfig::from_json(j), 7);
  j["knn_search"] = "faiss_ivf";
  DecoderLM faiss(DecoderLMConfig::from_json(j), 7);
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(0, 50, {2, 120}, torch::kInt64);
  DecoderLMState st = faiss->initial_state(2);
  torch::Tensor a = stream(faiss, ids, 8, &st);
  EXPECT_TRUE(st.layers[2].knn->faiss_ready(0));
  EXPECT_TRUE(st.layers[2].knn->faiss_ready(1));
  EXPECT_TRUE(torch::allclose(a, stream(exact, ids, 8), 1e-4, 1e-5));
}

TEST(DecoderLM, DocumentBoundaryResetsOnlyThatRow) {
  DecoderLM m(DecoderLMConfig::from_json(tiny_config()), 3);
  torch::NoGradGuard g;
  torch::Tensor a = torch::randint(0, 50, {2, 12}, torch::kInt64);
  torch::Tensor b = torch::randint(0, 50, {2, 8}, torch::kInt64);
  // continue both rows with b, but row 0 starts a new document (at a segment boundary)
  DecoderLMState st = m->initial_state(2);
  m->forward(a, st);
  EXPECT_EQ(st.layers[2].knn->size(0), 12);
  torch::Tensor y = m->forward(b, st, torch::tensor({true, false}));
  EXPECT_EQ(st.layers[2].knn->size(0), 8);   // row 0: only the new document's two segments
  EXPECT_EQ(st.layers[2].knn->size(1), 20);  // row 1: 12 + 8 tokens, untouched
  // row 0 = the new document processed from scratch
  torch::Tensor fresh = m->forward(b.narrow(0, 0, 1));
  EXPECT_TRUE(torch::allclose(y.narrow(0, 0, 1), fresh, 1e-4, 1e-5));
  // row 1 = the uninterrupted stream
  torch::Tensor whole = m->forward(torch::cat({a, b}, 1).narrow(0, 1, 1));
  EXPECT_TRUE(torch::allclose(y.narrow(0, 1, 1), whole.narrow(1, 12, 8), 1e-4, 1e-5));
  EXPECT_EQ(st.doc_start[0].item<int64_t>(), 12);
  EXPECT_EQ(st.doc_start[1].item<int64_t>(), 0);
}

TEST(DecoderLM, RejectsBadInputs) {
  DecoderLM m(DecoderLMConfig::from_json(tiny_config()), 4);
  DecoderLMState st = m->initial_state(2);
  EXPECT_THROW(m->forward(torch::full({2, 3}, 50, torch::kInt64), st), Error);
  EXPECT_THROW(m->forward(torch::zeros({3, 3}, torch::kInt64), st), Error);
  EXPECT_THROW(m->forward(torch::zeros({2, 3}, torch::kInt32), st), Error);
}

TEST(DecoderLM, SaveLoadRoundTrip) {
  const std::string dir = (std::filesystem::temp_directory_path() / "loom_decoder_lm_test").string();
  std::filesystem::remove_all(dir);
  DecoderLM m(DecoderLMConfig::from_json(tiny_config()), 5);
  m->save(dir);
  std::ifstream cfg(dir + "/config.json");
  json j = json::parse(cfg);
  EXPECT_EQ(j["model_type"], "loom_decoder_lm");
  DecoderLM back = load_decoder_lm(dir);
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(0, 50, {1, 10}, torch::kInt64);
  EXPECT_TRUE(torch::equal(back->forward(ids), m->forward(ids)));
  // a config that does not match the weights names the tensor
  j["d_model"] = 48;
  j["d_head"] = 8;
  std::ofstream(dir + "/config.json") << j.dump();
  try {
    load_decoder_lm(dir);
    ADD_FAILURE() << "loaded mismatching weights";
  } catch (const Error& e) {
    EXPECT_EQ(e.where().field, "embed") << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(DecoderLM, InitFromCopiesWeightsIntoAChangedConfig) {
  namespace fs = std::filesystem;
  const fs::path run = fs::temp_directory_path() / "loom_decoder_lm_init_test";
  fs::remove_all(run);
  DecoderLM src(DecoderLMConfig::from_json(tiny_config()), 7);
  src->save((run / "model").string());
  // the fine-tuning config differs in memory size and window (not in any tensor shape)
  json j = tiny_config();
  j["knn_memory_size"] = 1024;
  j["local_window"] = 8;
  DecoderLM dst(DecoderLMConfig::from_json(j), 8);
  ASSERT_FALSE(torch::equal(dst->embed, src->embed));  // different seeds: different weights before
  // a run directory resolves to its model/ subdirectory; a model directory is used as it is
  EXPECT_EQ(init_decoder_lm_from(*dst, run.string()), (run / "model").string());
  EXPECT_EQ(init_decoder_lm_from(*dst, (run / "model").string()), (run / "model").string());
  auto sp = src->named_parameters(), dp = dst->named_parameters();
  ASSERT_EQ(sp.size(), dp.size());
  for (const auto& p : dp) EXPECT_TRUE(torch::equal(p.value(), sp[p.key()])) << p.key();
  EXPECT_EQ(dst->config().knn_memory.capacity, 1024);  // the new config stays

  // a shape mismatch names the tensor (the first layer's q/k/v projection: 2 vs 4 heads)
  json wide = tiny_config();
  wide["qkv_multipliers"] = 1.0;
  DecoderLM other(DecoderLMConfig::from_json(wide), 9);
  try {
    init_decoder_lm_from(*other, run.string());
    ADD_FAILURE() << "loaded mismatching weights";
  } catch (const Error& e) {
    EXPECT_EQ(e.where().field, "layers.0.attn.qkv_proj") << e.what();
    EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
  }
  // a model with a tensor the source lacks (layer 2 standard instead of kNN: q_norm) names it
  json std_cfg = tiny_config();
  std_cfg["layer_attention"] = {"standard", "infini", "standard"};
  DecoderLM plain(DecoderLMConfig::from_json(std_cfg), 9);
  try {
    init_decoder_lm_from(*plain, run.string());
    ADD_FAILURE() << "loaded a source without q_norm";
  } catch (const Error& e) {
    EXPECT_EQ(e.where().field, "layers.2.attn.q_norm.weight") << e.what();
  }
  // neither a model nor a run directory
  try {
    init_decoder_lm_from(*dst, (run / "nothing").string());
    ADD_FAILURE() << "accepted a missing directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.where().field, "--init-from") << e.what();
  }
  fs::remove_all(run);
}

TEST(DecoderLM, GradientsReachEveryParameter) {
  DecoderLM m(DecoderLMConfig::from_json(tiny_config()), 6);
  torch::Tensor ids = torch::randint(0, 50, {2, 13}, torch::kInt64);
  torch::Tensor logits = m->forward(ids);
  torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, 50}).narrow(0, 0, 24),
                                                            ids.narrow(1, 1, 12).reshape({-1}));
  loss.backward();
  for (const auto& p : m->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

// A 3-block DeLighT LM: d_model 64 (d_o = 32, one head), DExTra depth 2 -> 4, FFN 64 -> 16 -> 64.
json delight_config() {
  return json{{"vocab_size", 50}, {"n_layers", 3}, {"d_model", 64}, {"block", "delight"},
              {"delight_min_depth", 2}, {"delight_max_depth", 4}, {"delight_width_mult", 2.0},
              {"delight_ffn_red", 4}, {"segment_len", 4}, {"local_window", 0}};
}

TEST(DelightLM, BlockWiseScalingShapesAndParameterNames) {
  DecoderLMConfig c = DecoderLMConfig::from_json(delight_config(), "dl.json");
  EXPECT_EQ(c.d_head, 32);  // d_model / 2, filled in
  std::vector<int64_t> depth;
  std::vector<double> width;
  for (const LayerShape& s : c.layer_shapes()) {
    depth.push_back(s.dextra_depth);
    width.push_back(s.dextra_width_mult);
    EXPECT_EQ(s.n_q, 1);
    EXPECT_EQ(s.n_kv, 1);
    EXPECT_EQ(s.ffn_dim, 16);
  }
  // papers.md §1.8: N^b = int(linspace(2, 4, 3)), w^b = linspace(2, 2 + (4 - 2)/2, 3)
  EXPECT_EQ(depth, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(width, (std::vector<double>{2.0, 2.5, 3.0}));
  DecoderLM m(c, 1);
  EXPECT_EQ(m->parameter_count(), c.parameter_count());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : m->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  EXPECT_EQ(shapes.at("layers.0.attn.qkv_proj"), (std::vector<int64_t>{96, 32}));  // 3·d_o x d_o
  EXPECT_EQ(shapes.at("layers.0.attn.out_proj"), (std::vector<int64_t>{64, 32}));  // d_model x d_o
  EXPECT_EQ(shapes.at("layers.2.fc1.weight"), (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(shapes.at("layers.2.fc2.bias"), (std::vector<int64_t>{64}));
  EXPECT_EQ(shapes.at("layers.1.dextra.input_layer.linear.weight"), (std::vector<int64_t>{32, 64}));  // d -> d/2
  EXPECT_EQ(shapes.count("layers.0.ffn.proj_1"), 0u);
  // Per block, everything but the DExTra unit by hand: norms 2·64, qkv 96·32, out 64·32,
  // q/k norms 2·32, fc1 16·64 + 16, fc2 64·16 + 64; plus embedding 50·64 and the final norm 64.
  int64_t n = 50 * 64 + 64;
  for (int64_t i = 0; i < 3; ++i) n += 128 + 3072 + 2048 + 64 + 1040 + 1088 + c.dextra_spec(i).parameter_count();
  EXPECT_EQ(c.parameter_count(), n);
  // the block's DExTra unit is the MT model's (dextra_spec of d -> d/2 with in_proj d/2, max groups 2 at d 64)
  EXPECT_EQ(c.dextra_spec(2).glt.size(), 4u);
  EXPECT_EQ(c.dextra_spec(2).out_features, 32);
  torch::Tensor logits = m->forward(torch::randint(0, 50, {2, 9}, torch::kInt64));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 9, 50}));
}

TEST(DelightLM, ValidationNamesTheField) {
  auto expect_field = [](const json& j, const std::string& field) { expect_bad_field(j, "dl.json", field); };
  json j = delight_config();
  j["block"] = "deep";
  expect_field(j, "block");
  j = delight_config();
  j["d_head"] = 16;  // DeLighT has one head of width d_model/2
  expect_field(j, "d_head");
  j = delight_config();
  j["delight_min_depth"] = 5;
  expect_field(j, "delight_min_depth");
  j = delight_config();
  j["delight_ffn_red"] = 3;
  expect_field(j, "delight_ffn_red");
  j = delight_config();
  j["delight_width_mult"] = 0.0;
  expect_field(j, "delight_width_mult");
  j = delight_config();
  j["d_model"] = 66;
  expect_field(j, "d_model");
  j = delight_config();
  j["delight_depth"] = 3;  // a typo is not silently ignored
  expect_field(j, "delight_depth");
  DecoderLMConfig d = DecoderLMConfig::from_json(delight_config());
  EXPECT_EQ(d.to_json()["block"], "delight");
  EXPECT_EQ(DecoderLMConfig::from_json(d.to_json()).to_json(), d.to_json());
  // standard configs do not grow DeLighT fields
  EXPECT_FALSE(DecoderLMConfig::from_json(tiny_config()).to_json().contains("block"));
}

TEST(DelightLM, StreamingEqualsOneShotAndAttentionKindsCompose) {
  for (const char* kinds : {"full", "window", "infini"}) {
    json j = delight_config();
    if (std::string(kinds) == "window") j["local_window"] = 5;
    if (std::string(kinds) == "infini") j["layer_attention"] = {"standard", "infini", "standard"};
    DecoderLM m(DecoderLMConfig::from_json(j), 3);
    m->eval();
    torch::NoGradGuard g;
    torch::Tensor ids = torch::randint(0, 50, {2, 19}, torch::kInt64);
    torch::Tensor ref = m->forward(ids);
    for (int64_t chunk : {1, 6, 19}) {
      EXPECT_TRUE(torch::allclose(stream(m, ids, chunk), ref, 1e-4, 1e-5)) << kinds << " chunk " << chunk;
    }
  }
}

TEST(DelightLM, InitIsDeterministicInTheSeedAndGradientsReachEveryParameter) {
  DecoderLMConfig c = DecoderLMConfig::from_json(delight_config());
  DecoderLM a(c, 7), b(c, 7), other(c, 8);
  auto pa = a->named_parameters(), pb = b->named_parameters(), po = other->named_parameters();
  for (const auto& p : pa) {
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
    if (p.key().find("glt.1.weight") != std::string::npos) {
      EXPECT_FALSE(torch::equal(p.value(), po[p.key()])) << p.key();
      // xavier_uniform_ with torch's fans of the [g, in/g, out/g] weight
      const auto s = p.value().sizes();
      const double bound = std::sqrt(6.0 / double(s[1] * s[2] + s[0] * s[2]));
      EXPECT_LE(p.value().abs().max().item<double>(), bound) << p.key();
      EXPECT_GT(p.value().abs().max().item<double>(), 0.8 * bound) << p.key();
    }
  }
  torch::Tensor ids = torch::randint(0, 50, {2, 13}, torch::kInt64);
  torch::Tensor logits = a->forward(ids);
  torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, 50}).narrow(0, 0, 24),
                                                            ids.narrow(1, 1, 12).reshape({-1}));
  loss.backward();
  for (const auto& p : a->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

TEST(DelightLM, SeveralHeadsSplitTheDExTraOutput) {
  json j = delight_config();
  j["delight_heads"] = 2;  // d_o = 32 -> 2 heads of 16
  DecoderLMConfig c = DecoderLMConfig::from_json(j, "dl.json");
  EXPECT_EQ(c.d_head, 16);
  EXPECT_EQ(c.layer_shapes()[1].n_q, 2);
  DecoderLM m(c, 4);
  EXPECT_EQ(m->parameter_count(), c.parameter_count());
  // the same projections as one head; only the q/k norms shrink to d_head
  EXPECT_EQ(c.parameter_count(), DecoderLMConfig::from_json(delight_config()).parameter_count() - 3 * 2 * 16);
  m->eval();
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(0, 50, {2, 11}, torch::kInt64);
  EXPECT_TRUE(torch::allclose(stream(m, ids, 3), m->forward(ids), 1e-4, 1e-5));
  EXPECT_EQ(DecoderLMConfig::from_json(c.to_json()).to_json(), c.to_json());
  DecoderLMConfig wrong = c;  // a config built in code is held to the same rule
  wrong.d_head = 32;
  EXPECT_THROW(wrong.validate(), Error);
  for (auto [field, value] : {std::pair<const char*, int64_t>{"delight_heads", 3}, {"delight_heads", 0}, {"d_head", 32}}) {
    json bad = j;
    bad[field] = value;
    expect_bad_field(bad, "dl.json", field);
  }
}

TEST(DelightLM, SaveLoadRoundTrip) {
  const std::string dir = (std::filesystem::temp_directory_path() / "loom_delight_lm_test").string();
  std::filesystem::remove_all(dir);
  DecoderLM m(DecoderLMConfig::from_json(delight_config()), 5);
  m->eval();
  m->save(dir);
  DecoderLM back = load_decoder_lm(dir);
  back->eval();
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(0, 50, {1, 10}, torch::kInt64);
  EXPECT_TRUE(torch::equal(back->forward(ids), m->forward(ids)));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace loom::models
