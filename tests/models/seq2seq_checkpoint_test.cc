// Seq2SeqConfig validation and Seq2SeqModel loading errors: every bad checkpoint names the tensor
// or config field at fault.
#include <filesystem>
#include "support/paths.h"
#include <fstream>

#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/io/checkpoint.h"
#include "loom/models/seq2seq.h"
#include "support/support.h"

namespace loom::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using loom_test::TempDir;

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

// Copies the Marian fixture's config.json and tensors to `dir`, after `edit` changed the list.
void write_variant(const std::string& dir, const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  io::HfCheckpoint src(kMarian);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : src.names()) tensors.emplace_back(name, src.load(name));
  edit(tensors);
  io::write_safetensors(dir + "/model.safetensors", tensors);
  fs::copy_file(kMarian + "/config.json", dir + "/config.json");
}

std::string load_error(const std::string& dir) {
  try {
    Seq2SeqModel::load(io::HfCheckpoint(dir));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Seq2SeqCheckpoint, LoadsEveryTensorOfTheFixture) {
  io::HfCheckpoint ckpt(kMarian);
  auto model = Seq2SeqModel::load(ckpt);
  torch::NoGradGuard no_grad;
  // every parameter equals the stored tensor (the name table is 1:1)
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), ckpt.load(p.key()))) << p.key();
    ++n;
  }
  // 2+2 layers: shared, final_logits_bias, 16 per encoder layer, 26 per decoder layer
  EXPECT_EQ(n, 2 + 2 * 16 + 2 * 26);
  EXPECT_EQ(static_cast<int64_t>(ckpt.names().size()), n);
}

// Memory (issue 13): the float32 tensors of a safetensors checkpoint are used in place — every
// parameter aliases the read-only file mapping, so no second float32 copy is made — and they
// stay valid after the HfCheckpoint is gone. int8 packing and the way back to float32 (which
// reads the released pages again from the file) reproduce float32's logits bit for bit.
TEST(Seq2SeqCheckpoint, ParametersAliasTheMappedCheckpointAndSurviveRepacking) {
  torch::InferenceMode guard;
  std::shared_ptr<Seq2SeqModel> model;
  {
    io::HfCheckpoint ckpt(kMarian);
    model = Seq2SeqModel::load(ckpt);
    int64_t n = 0;
    for (const auto& p : model->named_parameters()) {
      EXPECT_TRUE(ckpt.is_mapped_view(p.value())) << p.key();
      ++n;
    }
    EXPECT_EQ(n, 2 + 2 * 16 + 2 * 26);
  }
  torch::Tensor src = torch::tensor(std::vector<int64_t>{10, 11, 12, 13, model->eos_token_id()}).view({1, -1});
  torch::Tensor tgt = torch::tensor(std::vector<int64_t>{model->decoder_start_token_id(), 20, 21}).view({1, -1});
  const torch::Tensor want = model->decode(tgt, model->encode(src));  // [1, 3, V]
  model->set_compute_type(nn::WeightType::kInt8);
  const torch::Tensor q = model->decode(tgt, model->encode(src));
  EXPECT_FALSE(torch::equal(q, want));  // really int8 (closeness: seq2seq_compute_test)
  model->set_compute_type(nn::WeightType::kFloat32);
  EXPECT_TRUE(torch::equal(model->decode(tgt, model->encode(src)), want));
  // the parameters still equal the file's tensors
  io::HfCheckpoint again(kMarian);
  for (const auto& p : model->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), again.load(p.key()))) << p.key();
}

TEST(Seq2SeqCheckpoint, MissingTensorIsNamed) {
  TempDir dir;
  write_variant(dir.path().string(), [](auto& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](const auto& p) { return p.first == "model.decoder.layers.1.fc2.bias"; }), t.end());
  });
  const std::string msg = load_error(dir.path().string());
  EXPECT_NE(msg.find("model.decoder.layers.1.fc2.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(Seq2SeqCheckpoint, WrongShapeIsNamed) {
  TempDir dir;
  write_variant(dir.path().string(), [](auto& t) {
    for (auto& p : t) {
      if (p.first == "model.encoder.layers.0.self_attn.k_proj.weight") p.second = torch::zeros({32, 16});
    }
  });
  const std::string msg = load_error(dir.path().string());
  EXPECT_NE(msg.find("model.encoder.layers.0.self_attn.k_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[32, 16]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[32, 32]"), std::string::npos) << msg;
}

TEST(Seq2SeqCheckpoint, UnexpectedTensorIsNamedButTiedCopiesAreTolerated) {
  {
    TempDir dir;
    write_variant(dir.path().string(), [](auto& t) { t.emplace_back("model.encoder.layers.2.fc1.weight", torch::zeros({64, 32})); });
    const std::string msg = load_error(dir.path().string());
    EXPECT_NE(msg.find("model.encoder.layers.2.fc1.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected"), std::string::npos) << msg;
  }
  {
    // what older transformers versions saved: tied copies and the static position tables
    TempDir dir;
    write_variant(dir.path().string(), [](auto& t) {
      torch::Tensor shared;
      for (auto& p : t) if (p.first == "model.shared.weight") shared = p.second;
      t.emplace_back("lm_head.weight", shared);
      t.emplace_back("model.encoder.embed_tokens.weight", shared);
      t.emplace_back("model.decoder.embed_positions.weight", torch::zeros({128, 32}));
    });
    EXPECT_EQ(load_error(dir.path().string()), "");
  }
  {
    TempDir dir;
    write_variant(dir.path().string(), [](auto& t) { t.emplace_back("lm_head.weight", torch::zeros({10, 32})); });
    const std::string msg = load_error(dir.path().string());
    EXPECT_NE(msg.find("lm_head.weight"), std::string::npos) << msg;
  }
}

json marian_config() {
  std::ifstream in(kMarian + "/config.json");
  return json::parse(in);
}

std::string config_error(const json& j) {
  try {
    Seq2SeqConfig::from_json(j, "dir/config.json");
  } catch (const Error& e) {
    EXPECT_EQ(e.where().file, "dir/config.json");
    return e.where().field + ": " + e.message();
  }
  return "";
}

TEST(Seq2SeqConfigTest, ParsesMarianAndM2M100) {
  Seq2SeqConfig m = Seq2SeqConfig::from_json(marian_config());
  EXPECT_EQ(m.kind, Seq2SeqConfig::Kind::kMarian);
  EXPECT_FALSE(m.normalize_before);
  EXPECT_EQ(m.activation, nn::Activation::kSilu);
  EXPECT_EQ(m.decoder_start_token_id, 733);
  EXPECT_EQ(m.decoder_vocab_size, 734);
  EXPECT_DOUBLE_EQ(m.embed_scale(), std::sqrt(32.0));
  std::ifstream in(std::string(LOOM_TEST_DATA) + "/hf-tiny/nllb-m2m100/config.json");
  Seq2SeqConfig n = Seq2SeqConfig::from_json(json::parse(in));
  EXPECT_EQ(n.kind, Seq2SeqConfig::Kind::kM2M100);
  EXPECT_TRUE(n.normalize_before);
  EXPECT_EQ(n.activation, nn::Activation::kRelu);
  EXPECT_EQ(n.pad_token_id, 1);
  EXPECT_EQ(n.eos_token_id, 2);
}

TEST(Seq2SeqConfigTest, BadValuesNameTheField) {
  json j = marian_config();
  j.erase("d_model");
  EXPECT_EQ(config_error(j), "d_model: required field is missing");
  j = marian_config();
  j["encoder_layers"] = "two";
  EXPECT_EQ(config_error(j).rfind("encoder_layers: expected an integer", 0), 0u);
  j = marian_config();
  j["decoder_attention_heads"] = 5;
  EXPECT_EQ(config_error(j).rfind("decoder_attention_heads: d_model 32 is not divisible", 0), 0u);
  j = marian_config();
  j["activation_function"] = "gelu_10";
  EXPECT_EQ(config_error(j).rfind("activation_function: unsupported activation", 0), 0u);
  j = marian_config();
  j["model_type"] = "bart";
  EXPECT_EQ(config_error(j).rfind("model_type: unsupported model_type", 0), 0u);
  j = marian_config();
  j["pad_token_id"] = 734;
  EXPECT_EQ(config_error(j).rfind("pad_token_id: token id 734 is outside", 0), 0u);
  j = marian_config();
  j["vocab_size"] = 0;
  EXPECT_EQ(config_error(j), "vocab_size: must be >= 1, got 0");
}

TEST(Seq2SeqModelTest, RejectsOutOfVocabularyIdsAndOverlongMarianInput) {
  auto model = Seq2SeqModel::load(io::HfCheckpoint(kMarian));
  c10::InferenceMode guard;
  EXPECT_THROW(model->encode(torch::tensor(std::vector<int64_t>{5, 734}).unsqueeze(0)), Error);
  EXPECT_THROW(model->encode(torch::full({1, 129}, 5, torch::kInt64)), Error);  // 128 positions
  EXPECT_NO_THROW(model->encode(torch::full({1, 128}, 5, torch::kInt64)));
}

}  // namespace
}  // namespace loom::models
