#include "loom/io/checkpoint.h"
#include "support/paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "loom/core/error.h"
#include "support/support.h"

namespace loom::io {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

const std::string kMarianDir = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

using loom_test::error_of;
using loom_test::TempDir;

TEST(HfCheckpoint, LoadsMarianDirectory) {
  HfCheckpoint ck(kMarianDir);
  EXPECT_EQ(ck.dir(), kMarianDir);
  EXPECT_EQ(ck.config().at("model_type"), "marian");
  EXPECT_EQ(ck.config().at("d_model"), 32);
  EXPECT_EQ(ck.generation_config().at("pad_token_id"), 733);
  EXPECT_EQ(ck.weight_files(), std::vector<std::string>{"model.safetensors"});
  std::vector<std::string> names = ck.names();
  ASSERT_EQ(names.size(), 86u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_TRUE(ck.has("model.shared.weight"));
  EXPECT_FALSE(ck.has("lm_head.weight"));
  EXPECT_EQ(ck.shape("model.shared.weight"), (std::vector<int64_t>{734, 32}));
  EXPECT_EQ(ck.shape("model.encoder.layers.1.fc1.weight"), (std::vector<int64_t>{64, 32}));

  torch::Tensor w = ck.load("model.shared.weight");
  EXPECT_EQ(w.dtype(), torch::kFloat32);
  EXPECT_FLOAT_EQ(w[0][0].item<float>(), -0.46597015857696533f);
  torch::Tensor w64 = ck.load("model.shared.weight", torch::kFloat64);
  EXPECT_NEAR(w64.sum().item<double>(), -69.62053157986657, 1e-9);
  // Each load is a fresh copy: writing to one does not change the next.
  w.zero_();
  EXPECT_FLOAT_EQ(ck.load("model.shared.weight")[0][0].item<float>(), -0.46597015857696533f);

  HfCheckpoint moved(std::move(ck));
  EXPECT_EQ(moved.load("final_logits_bias").sizes(), (std::vector<int64_t>{1, 734}));
}

TEST(HfCheckpoint, MissingTensorNamesFileAndTensor) {
  HfCheckpoint ck(kMarianDir);
  std::string msg = error_of([&] { ck.load("lm_head.weight"); });
  EXPECT_THAT(msg, AllOf(HasSubstr("marian-en-zh/model.safetensors"), HasSubstr("'lm_head.weight'"),
                         HasSubstr("not found")));
  EXPECT_THAT(error_of([&] { ck.shape("nope"); }), HasSubstr("'nope'"));
}

TEST(HfCheckpoint, DirectoryErrors) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { HfCheckpoint(dir / "absent"); }),
              AllOf(HasSubstr("absent"), HasSubstr("not found")));
  EXPECT_THAT(error_of([&] { HfCheckpoint(dir.path().string()); }), HasSubstr("config.json"));
  std::ofstream(dir / "config.json") << "{not json";
  EXPECT_THAT(error_of([&] { HfCheckpoint(dir.path().string()); }),
              AllOf(HasSubstr("config.json"), HasSubstr("invalid JSON")));
  std::ofstream(dir / "config.json") << R"({"model_type": "marian"})";
  EXPECT_THAT(error_of([&] { HfCheckpoint(dir.path().string()); }), HasSubstr("no weights"));
  std::ofstream(dir / "model.safetensors") << "garbage!garbage!";
  EXPECT_THAT(error_of([&] { HfCheckpoint(dir.path().string()); }),
              HasSubstr("model.safetensors"));
  fs::remove(dir / "model.safetensors");
  write_safetensors(dir / "model.safetensors", {{"w", torch::ones({2})}});
  HfCheckpoint ok(dir.path().string());
  EXPECT_TRUE(ok.generation_config().is_object() && ok.generation_config().empty());
  EXPECT_EQ(ok.names(), std::vector<std::string>{"w"});
}

// Writes the marian fixture as `shards` shard files plus model.safetensors.index.json.
void write_sharded_marian(const std::string& dir, int shards) {
  fs::copy_file(kMarianDir + "/config.json", dir + "/config.json");
  SafetensorsFile src(kMarianDir + "/model.safetensors");
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> parts(shards);
  nlohmann::json wm = nlohmann::json::object();
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const auto& t = src.tensors()[i];
    int s = static_cast<int>(i % shards);
    std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards);
    parts[s].emplace_back(t.name, to_tensor(src, t));
    wm[t.name] = file;
  }
  for (int s = 0; s < shards; ++s)
    write_safetensors(fmt::format("{}/model-{:05d}-of-{:05d}.safetensors", dir, s + 1, shards),
                      parts[s], {{"format", "pt"}});
  std::ofstream(dir + "/model.safetensors.index.json")
      << nlohmann::json{{"metadata", {{"total_size", 277088}}}, {"weight_map", wm}}.dump(1);
}

TEST(HfCheckpoint, LoadsShardedCheckpoint) {
  TempDir dir;
  write_sharded_marian(dir.path().string(), 3);
  HfCheckpoint sharded(dir.path().string());
  HfCheckpoint single(kMarianDir);
  EXPECT_EQ(sharded.weight_files().size(), 3u);
  EXPECT_TRUE(sharded.generation_config().empty());
  ASSERT_EQ(sharded.names(), single.names());
  for (const auto& name : single.names()) {
    EXPECT_EQ(sharded.shape(name), single.shape(name));
    EXPECT_TRUE(torch::equal(sharded.load(name), single.load(name))) << name;
  }
  EXPECT_THAT(error_of([&] { sharded.load("nope"); }),
              AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("'nope'")));
}

TEST(HfCheckpoint, RejectsBadShardIndex) {
  TempDir dir;
  const std::string d = dir.path().string();
  write_sharded_marian(d, 2);
  const std::string index = dir / "model.safetensors.index.json";
  nlohmann::json good = nlohmann::json::parse(std::ifstream(index));

  auto with_index = [&](const nlohmann::json& j) {
    std::ofstream(index) << j.dump();
    return error_of([&] { HfCheckpoint c(d); });
  };
  nlohmann::json j = good;
  j["weight_map"]["model.shared.weight"] = "model-00009-of-00009.safetensors";
  EXPECT_THAT(with_index(j), AllOf(HasSubstr("'model.shared.weight'"),
                                   HasSubstr("model-00009-of-00009.safetensors"),
                                   HasSubstr("not found")));
  j = good;
  j["weight_map"]["model.shared.weight"] = "../model-00001-of-00002.safetensors";
  EXPECT_THAT(with_index(j), HasSubstr("relative"));
  j = good;
  j["weight_map"]["extra.weight"] = "model-00001-of-00002.safetensors";
  EXPECT_THAT(with_index(j), AllOf(HasSubstr("'extra.weight'"), HasSubstr("but it is not")));
  j = good;
  std::string owner = j["weight_map"]["model.shared.weight"];
  j["weight_map"]["model.shared.weight"] =
      owner == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                  : "model-00001-of-00002.safetensors";
  EXPECT_THAT(with_index(j), HasSubstr("but it is not"));
  EXPECT_THAT(with_index(nlohmann::json{{"weights", 1}}), HasSubstr("weight_map"));
  EXPECT_EQ(with_index(good), "");
}

TEST(HfCheckpoint, ReadsPytorchBinWrittenByPickleSave) {
  TempDir dir;
  fs::copy_file(kMarianDir + "/config.json", dir / "config.json");
  c10::Dict<std::string, torch::Tensor> sd;
  torch::Tensor a = torch::arange(6, torch::kFloat32).reshape({2, 3});
  torch::Tensor b = torch::tensor({1.5, -2.0}, torch::kFloat64);
  sd.insert("layer.a", a);
  sd.insert("layer.b", b);
  std::vector<char> bytes = torch::pickle_save(sd);
  std::ofstream(dir / "pytorch_model.bin", std::ios::binary).write(bytes.data(), bytes.size());
  HfCheckpoint ck(dir.path().string());
  EXPECT_EQ(ck.weight_files(), std::vector<std::string>{"pytorch_model.bin"});
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"layer.a", "layer.b"}));
  EXPECT_EQ(ck.shape("layer.a"), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(torch::equal(ck.load("layer.a"), a));
  torch::Tensor b32 = ck.load("layer.b");
  EXPECT_EQ(b32.dtype(), torch::kFloat32);
  EXPECT_EQ(b32[1].item<float>(), -2.0f);
  ck.load("layer.a").zero_();
  EXPECT_EQ(ck.load("layer.a")[1][2].item<float>(), 5.0f);
}

TEST(HfCheckpoint, ReadsPythonTorchSaveOrderedDict) {
  // Same layout as Python's torch.save(model.state_dict()); see tests/data/io/SOURCES.md.
  std::map<std::string, torch::Tensor> sd =
      read_pytorch_bin(std::string(LOOM_TEST_DATA) + "/io/torch_save_state_dict.bin");
  ASSERT_EQ(sd.size(), 4u);
  EXPECT_TRUE(torch::equal(sd.at("layer.a"), torch::arange(6, torch::kFloat32).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(sd.at("layer.tied"), torch::tensor({3.0f, 4.0f, 5.0f})));
  EXPECT_TRUE(torch::equal(sd.at("layer.b"), torch::tensor({1.5f, -2.0f})));
  EXPECT_EQ(sd.at("layer.h").dtype(), torch::kHalf);
  EXPECT_TRUE(torch::equal(sd.at("layer.h").to(torch::kFloat32),
                           torch::tensor({0.5f, 1.0f, -1.0f, 2.0f}).reshape({2, 2})));

  TempDir dir;
  fs::copy_file(kMarianDir + "/config.json", dir / "config.json");
  fs::copy_file(std::string(LOOM_TEST_DATA) + "/io/torch_save_state_dict.bin",
                dir / "pytorch_model.bin");
  HfCheckpoint ck(dir.path().string());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"layer.a", "layer.b", "layer.h", "layer.tied"}));
  EXPECT_EQ(ck.shape("layer.h"), (std::vector<int64_t>{2, 2}));
  torch::Tensor h = ck.load("layer.h");
  EXPECT_EQ(h.dtype(), torch::kFloat32);
  EXPECT_TRUE(h.is_contiguous());
  EXPECT_EQ(h[1][0].item<float>(), -1.0f);
}

TEST(HfCheckpoint, UnreadablePytorchBinSuggestsSafetensors) {
  TempDir dir;
  fs::copy_file(kMarianDir + "/config.json", dir / "config.json");
  std::ofstream(dir / "pytorch_model.bin", std::ios::binary) << std::string("\x80\x02}q\x00.", 6);
  EXPECT_THAT(error_of([&] { HfCheckpoint c(dir.path().string()); }),
              AllOf(HasSubstr("pytorch_model.bin"), HasSubstr("legacy"),
                    HasSubstr("safetensors")));
  std::ofstream(dir / "pytorch_model.bin", std::ios::binary) << "PK\x03\x04 not really a zip";
  EXPECT_THAT(error_of([&] { HfCheckpoint c(dir.path().string()); }),
              AllOf(HasSubstr("pytorch_model.bin"), HasSubstr("cannot read"),
                    HasSubstr("safetensors")));
  // A pickle of something other than a dict.
  std::vector<char> bytes = torch::pickle_save(torch::IValue(int64_t{3}));
  std::ofstream(dir / "pytorch_model.bin", std::ios::binary).write(bytes.data(), bytes.size());
  EXPECT_THAT(error_of([&] { HfCheckpoint c(dir.path().string()); }),
              AllOf(HasSubstr("pytorch_model.bin"), HasSubstr("state dict")));
}

}  // namespace
}  // namespace loom::io
