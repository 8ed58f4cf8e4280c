// pytorch_model.bin as Python's torch.save writes it (tests/data/io/torch-bin, written by real
// torch with tests/data/io/make_torch_bin_fixtures.py): dtypes, views sharing storages, the
// state dict's _metadata; sharded .bin checkpoints; and the strict pickle reader's refusals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "loom/core/files.h"
#include "loom/core/error.h"
#include "loom/io/checkpoint.h"
#include "loom/io/torch_pickle.h"
#include "loom/text/tokenizer_files.h"
#include "support/paths.h"
#include "support/support.h"

namespace loom::io {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using loom_test::error_of;
using namespace std::string_literals;

const std::string kBin = std::string(LOOM_TEST_DATA) + "/io/torch-bin";
const std::string kM2M100 = std::string(LOOM_TEST_DATA) + "/hf-tiny/m2m100";

TEST(TorchBin, DtypesViewsAndSharedStoragesMatchTorch) {
  const auto sd = read_pytorch_bin(kBin + "/views.bin");
  const nlohmann::json want = core::read_json(kBin + "/views.json");
  ASSERT_EQ(sd.size(), want.size());
  const std::map<std::string, torch::ScalarType> dtypes = {
      {"float32", torch::kFloat32}, {"float16", torch::kHalf},  {"bfloat16", torch::kBFloat16},
      {"float64", torch::kFloat64}, {"int64", torch::kInt64},   {"int32", torch::kInt32},
      {"int8", torch::kInt8},       {"uint8", torch::kUInt8},   {"bool", torch::kBool}};
  for (const auto& [name, w] : want.items()) {
    SCOPED_TRACE(name);
    const torch::Tensor& t = sd.at(name);
    EXPECT_EQ(t.scalar_type(), dtypes.at(w["dtype"].get<std::string>()));
    EXPECT_EQ(t.sizes().vec(), w["shape"].get<std::vector<int64_t>>());
    const torch::Tensor flat = t.to(torch::kFloat64).contiguous().reshape({-1});
    const auto values = w["values"].get<std::vector<double>>();
    ASSERT_EQ(flat.numel(), static_cast<int64_t>(values.size()));
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(flat[static_cast<int64_t>(i)].item<double>(), values[i]) << i;
  }
  // The views keep torch's strides and share the base tensor's storage.
  EXPECT_EQ(sd.at("f32.transposed").strides().vec(), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(sd.at("f32.slice").storage().data(), sd.at("f32.base").storage().data());
  EXPECT_EQ(sd.at("f32.column").storage_offset(), 8);
}

TEST(TorchBin, TorchSaveAndShardedBinLoadLikeSafetensors) {
  HfCheckpoint st(kM2M100);
  loom_test::TempDir one, sharded;
  for (const auto& e : fs::directory_iterator(kM2M100)) {
    if (e.path().filename() == "model.safetensors") continue;
    fs::copy_file(e.path(), one.path() / e.path().filename());
    fs::copy_file(e.path(), sharded.path() / e.path().filename());
  }
  fs::copy_file(kBin + "/m2m100/pytorch_model.bin", one.path() / "pytorch_model.bin");
  for (const auto& e : fs::directory_iterator(kBin + "/m2m100-sharded"))
    fs::copy_file(e.path(), sharded.path() / e.path().filename());
  HfCheckpoint bin(one.path().string()), shards(sharded.path().string());
  EXPECT_EQ(bin.weight_files(), std::vector<std::string>{"pytorch_model.bin"});
  EXPECT_EQ(shards.weight_files(), (std::vector<std::string>{"pytorch_model-00001-of-00002.bin",
                                                             "pytorch_model-00002-of-00002.bin"}));
  EXPECT_EQ(shards.names(), st.names());
  for (const auto& name : st.names()) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(torch::equal(bin.load(name), st.load(name)));
    EXPECT_TRUE(torch::equal(shards.load(name), st.load(name)));
  }
  // torch.save of the tied model keeps every tied name (one storage).
  EXPECT_TRUE(torch::equal(bin.load("lm_head.weight"), st.load("model.shared.weight")));

  // A shard index naming a missing shard, or a tensor in the wrong shard.
  nlohmann::json index = core::read_json(kBin + "/m2m100-sharded/pytorch_model.bin.index.json");
  index["weight_map"]["model.shared.weight"] = "pytorch_model-00003-of-00002.bin";
  loom_test::write_file(sharded.path() / "pytorch_model.bin.index.json", index.dump());
  EXPECT_THAT(error_of([&] { HfCheckpoint c(sharded.path().string()); }),
              AllOf(HasSubstr("pytorch_model.bin.index.json"), HasSubstr("not found")));
  index = core::read_json(kBin + "/m2m100-sharded/pytorch_model.bin.index.json");
  const std::string owner = index["weight_map"]["model.shared.weight"];
  index["weight_map"]["model.shared.weight"] = owner == "pytorch_model-00001-of-00002.bin"
                                                   ? "pytorch_model-00002-of-00002.bin"
                                                   : "pytorch_model-00001-of-00002.bin";
  loom_test::write_file(sharded.path() / "pytorch_model.bin.index.json", index.dump());
  EXPECT_THAT(error_of([&] { HfCheckpoint c(sharded.path().string()); }),
              AllOf(HasSubstr("'model.shared.weight'"), HasSubstr("but it is not")));
}

TEST(TorchPickle, ParsesAMinimalStateDict) {
  std::string p = "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00w"
                  "ctorch._utils\n_rebuild_tensor_v2\nq\x02("
                  "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x07tQ"
                  "K\x01K\x02K\x03\x86K\x01K\x02\x86\x89h\x00)RtRu."s;
  const PickledStateDict sd = parse_torch_pickle(p, "x.bin");
  ASSERT_EQ(sd.tensors.size(), 1u);
  const PickledTensor& t = sd.tensors[0];
  EXPECT_EQ(t.name, "w");
  EXPECT_EQ(t.storage_key, "0");
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.storage_numel, 7u);
  EXPECT_EQ(t.offset, 1);
  EXPECT_EQ(t.sizes, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.strides, (std::vector<int64_t>{1, 2}));  // last element: 1 + 1*1 + 2*2 = 6 < 7
}

TEST(TorchPickle, RefusesEverythingOutsideTheSubset) {
  const std::string ok = "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00w"
                         "ctorch._utils\n_rebuild_tensor_v2\nq\x02("
                         "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x06tQ"
                         "K\x00K\x02K\x03\x86K\x03K\x01\x86\x89h\x00)RtRu."s;
  EXPECT_EQ(parse_torch_pickle(ok, "x.bin").tensors.size(), 1u);
  auto err = [](std::string p) { return error_of([&] { parse_torch_pickle(p, "x.bin"); }); };
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string p = ok;
    const size_t at = p.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return p.replace(at, from.size(), to);
  };
  EXPECT_THAT(err(replace("ctorch._utils\n_rebuild_tensor_v2\n"s, "cos\nsystem\n"s)),
              AllOf(HasSubstr("x.bin"), HasSubstr("data.pkl"), HasSubstr("global 'os.system' is not allowed")));
  EXPECT_THAT(err(ok.substr(0, ok.size() - 1)), HasSubstr("without STOP"));
  EXPECT_THAT(err(ok.substr(0, 60)), HasSubstr("byte"));
  EXPECT_THAT(err(ok + "x"), HasSubstr("after STOP"));
  EXPECT_THAT(err(replace("K\x06tQ", "K\x05tQ")), HasSubstr("reaches element 5 of a storage of 5"));  // 2x3 view of 5
  EXPECT_THAT(err(replace("storage", "storagX")), HasSubstr("persistent id"));
  EXPECT_THAT(err(replace("FloatStorage", "FloatStorag2")), HasSubstr("not allowed"));
  EXPECT_THAT(err(replace("\x80\x02", "\x80\x09")), HasSubstr("protocol 9"));
  EXPECT_THAT(err(replace("h\x00)R"s, "h\x07)R"s)), HasSubstr("memo entry 7"));
  EXPECT_THAT(err(replace("\x89", "\x89\x8a\x09")), HasSubstr("LONG1"));
  EXPECT_THAT(err(replace("X\x01\x00\x00\x00w"s, "K\x05"s)), HasSubstr("key is a int"));
  EXPECT_THAT(err("\x80\x02]q\x00h\x00" "a."s), HasSubstr("not a state dict"));  // self-containing list
  EXPECT_THAT(err("\x80\x02}q\x00(X\x01\x00\x00\x00wK\x01u."s),
              AllOf(HasSubstr("'w'"), HasSubstr("not a tensor")));
  EXPECT_THAT(err("\x80\x02" "d."s), HasSubstr("opcode 0x64"));
  EXPECT_THAT(err(""), HasSubstr("without STOP"));
}

TEST(TorchBin, BrokenFilesNameTheFileAndTheProblem) {
  loom_test::TempDir dir;
  loom_test::write_file(dir.path() / "legacy.bin", "\x80\x02}q\x00."s);
  EXPECT_THAT(error_of([&] { read_pytorch_bin(dir / "legacy.bin"); }),
              AllOf(HasSubstr("legacy.bin"), HasSubstr("legacy"), HasSubstr("safetensors")));
  loom_test::write_file(dir.path() / "zip.bin", "PK\x03\x04 not really a zip");
  EXPECT_THAT(error_of([&] { read_pytorch_bin(dir / "zip.bin"); }),
              AllOf(HasSubstr("zip.bin"), HasSubstr("cannot read"), HasSubstr("safetensors")));
}

}  // namespace
}  // namespace loom::io
