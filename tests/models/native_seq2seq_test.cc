// NativeSeq2Seq (loom's trainable Transformer): config validation, save/load round trip (F32 and
// F16), KV-cache decoding == teacher-forced forward, batch == single with padding, training
// (gradients, dropout), the EncoderDecoder loader and generation through Translator.
#include "loom/models/native_seq2seq.h"
#include "support/paths.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/generate/search.h"
#include "loom/generate/translator.h"
#include "loom/io/checkpoint.h"
#include "loom/io/safetensors.h"
#include "loom/models/seq2seq.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "support/support.h"

namespace loom::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using loom_test::TempDir;

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

NativeSeq2SeqConfig tiny_transformer(bool pre_norm = false, bool shared = true, bool tied = true) {
  NativeSeq2SeqConfig c;
  c.d_model = 16;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.encoder_attention_heads = c.decoder_attention_heads = 4;
  c.encoder_ffn_dim = c.decoder_ffn_dim = 32;
  c.normalize_before = pre_norm;
  c.shared_vocab = shared;
  c.vocab_size = 40;
  c.target_vocab_size = shared ? 40 : 30;
  c.tie_word_embeddings = tied;
  c.dropout = 0.2;
  c.attention_dropout = 0.1;
  c.activation_dropout = 0.1;
  return c;
}

// A tiny DeLighT: d_m 64 (g_max 2), map_dim 32, depths 2..4 over 3 blocks.
NativeSeq2SeqConfig tiny_delight(bool pre_norm = false, bool shared = true, bool tied = true) {
  NativeSeq2SeqConfig c = tiny_transformer(pre_norm, shared, tied);
  c.architecture = "delight";
  c.activation_function = "swish";
  c.activation = nn::Activation::kSilu;
  c.d_model = 64;
  DelightSettings& d = c.delight;
  d.emb_map_dim = 32;
  d.emb_depth = 2;
  d.enc_min_depth = d.dec_min_depth = 2;
  d.enc_max_depth = d.dec_max_depth = 4;
  d.enc_blocks = d.dec_blocks = 3;
  d.delight_dropout = 0.1;
  d.ffn_dropout = 0.2;
  return c;
}

// Generation options for the tiny models: start token 2, end token 3, pad 0.
generate::GenerationOptions tiny_options(int64_t num_beams, int64_t max_new_tokens) {
  generate::GenerationOptions o;
  o.decoder_start_token_id = 2;
  o.eos_token_ids = {3};
  o.pad_token_id = 0;
  o.num_beams = num_beams;
  o.max_new_tokens = max_new_tokens;
  return o;
}

NativeSeq2SeqConfig tiny(const std::string& arch, bool pre_norm = false, bool shared = true, bool tied = true) {
  return arch == "delight" ? tiny_delight(pre_norm, shared, tied) : tiny_transformer(pre_norm, shared, tied);
}

const std::vector<std::string> kArchs = {"transformer", "delight"};

std::string config_error(json j) {
  try {
    NativeSeq2SeqConfig::from_json(j, "dir/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(NativeSeq2SeqConfig, RoundTripsThroughJson) {
  NativeSeq2SeqConfig c = tiny_transformer(true, false, false);
  json j = c.to_json();
  EXPECT_EQ(j.at("model_type"), "loom_seq2seq");
  EXPECT_EQ(j.at("architecture"), "transformer");
  EXPECT_EQ(j.at("target_vocab_size"), 30);
  EXPECT_EQ(j.at("shared_vocab"), false);
  EXPECT_EQ(j.at("pad_token_id"), 0);
  EXPECT_EQ(j.at("unk_token_id"), 1);
  EXPECT_EQ(j.at("bos_token_id"), 2);
  EXPECT_EQ(j.at("decoder_start_token_id"), 2);
  EXPECT_EQ(j.at("eos_token_id"), 3);
  NativeSeq2SeqConfig back = NativeSeq2SeqConfig::from_json(j);
  EXPECT_EQ(back.to_json(), j);
  // keys loom does not interpret survive (the trainer writes source_lang / target_lang)
  j["source_lang"] = "en";
  j["target_lang"] = "zh";
  j["delight_enc_min_depth"] = 3;  // another architecture's key: dropped
  json again = NativeSeq2SeqConfig::from_json(j).to_json();
  EXPECT_EQ(again.at("source_lang"), "en");
  EXPECT_EQ(again.at("target_lang"), "zh");
  EXPECT_FALSE(again.contains("delight_enc_min_depth"));
  EXPECT_TRUE(back.normalize_before);
  EXPECT_EQ(back.target_vocab_size, 30);
  EXPECT_DOUBLE_EQ(back.attention_dropout, 0.1);
}

TEST(NativeSeq2SeqConfig, BadValuesNameConfigJsonAndTheField) {
  json good = tiny_transformer().to_json();
  EXPECT_EQ(config_error(good), "");
  auto with = [&](const char* key, json value) {
    json j = good;
    if (value.is_null()) j.erase(key);
    else j[key] = value;
    return config_error(j);
  };
  for (auto [key, value, phrase] : std::vector<std::tuple<const char*, json, std::string>>{
           {"dropout", 1.5, "must be in [0, 1)"},
           {"attention_dropout", "x", "expected a number"},
           {"d_model", 18, "not divisible by 4 heads"},
           {"architecture", "lstm", "unknown architecture"},
           {"model_type", "marian", "expected \"loom_seq2seq\""},
           {"vocab_size", nullptr, "required field is missing"},
           {"vocab_size", 2, "must be >= 4"},
           {"encoder_layers", 0, "must be >= 1"},
           {"eos_token_id", 40, "outside the vocabulary"},
           {"activation_function", "mish", "unsupported activation"},
           {"shared_vocab", "yes", "expected true or false"}}) {
    const std::string msg = with(key, value);
    EXPECT_NE(msg.find("dir/config.json"), std::string::npos) << key << ": " << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << key << ": " << msg;
    EXPECT_NE(msg.find(phrase), std::string::npos) << key << ": " << msg;
  }
  json sep = good;
  sep["shared_vocab"] = false;
  EXPECT_NE(config_error(sep).find("target_vocab_size"), std::string::npos);
}

// source rows of different lengths (right-padded with pad 0 where shorter)
torch::Tensor src_batch() {
  return torch::tensor({{5, 9, 12, 7, 3}, {8, 6, 3, 0, 0}}, torch::kInt64);  // [2, 5]
}

TEST(NativeSeq2Seq, KvCacheDecodingEqualsTeacherForcedForward) {
  torch::manual_seed(1);
  for (const std::string& arch : kArchs) {
  for (bool pre : {false, true}) {
    for (bool shared : {true, false}) {
      SCOPED_TRACE(arch + (pre ? " pre-norm" : " post-norm") + (shared ? " shared" : " separate"));
      NativeSeq2Seq model(tiny(arch, pre, shared, /*tied=*/shared));
      model.eval();
      torch::Tensor src = src_batch();
      torch::Tensor mask = src.ne(0);
      torch::Tensor tgt = torch::tensor({{2, 4, 11, 6, 9}, {2, 7, 5, 13, 4}}, torch::kInt64);  // [2, 5]
      torch::Tensor full;
      {
        torch::NoGradGuard ng;
        full = model.forward(src, mask, tgt);  // [2, 5, V]
      }
      ASSERT_EQ(full.sizes(), (std::vector<int64_t>{2, 5, shared ? 40 : 30}));
      EncoderOutput enc = model.encode(src, mask);
      DecoderState state;
      model.init_state(state, enc, 1);
      for (int64_t t = 0; t < 5; ++t) {
        torch::Tensor step = model.decode(tgt.narrow(1, t, 1), enc, &state);  // [2, 1, V]
        EXPECT_TRUE(torch::allclose(step.select(1, 0), full.select(1, t), 1e-5, 1e-5)) << "pre " << pre << " t " << t;
      }
      EXPECT_EQ(state.length(), 5);
      // stateless decode = teacher forcing too
      EXPECT_TRUE(torch::allclose(model.decode(tgt, enc), full, 1e-5, 1e-5));
    }
  }
  }
}

TEST(NativeSeq2Seq, BatchEqualsSingleWithPadding) {
  torch::manual_seed(2);
  for (const std::string& arch : kArchs) {
  SCOPED_TRACE(arch);
  NativeSeq2Seq model(tiny(arch));
  model.eval();
  torch::Tensor src = src_batch();
  torch::Tensor tgt = torch::tensor({{2, 4, 11}, {2, 7, 5}}, torch::kInt64);
  EncoderOutput enc = model.encode(src, src.ne(0));
  torch::Tensor batched = model.decode(tgt, enc);  // [2, 3, V]
  torch::Tensor short_src = src.narrow(0, 1, 1).narrow(1, 0, 3);  // [1, 3] without padding
  EncoderOutput one = model.encode(short_src);
  torch::Tensor single = model.decode(tgt.narrow(0, 1, 1), one);  // [1, 3, V]
  EXPECT_TRUE(torch::allclose(batched.narrow(0, 1, 1), single, 1e-5, 1e-5));
  // the padded row's encoder states at real positions equal the unpadded encoding
  EXPECT_TRUE(torch::allclose(enc.hidden.narrow(0, 1, 1).narrow(1, 0, 3), one.hidden, 1e-5, 1e-5));
  }
}

TEST(NativeSeq2Seq, TrainingModeHasGradientsAndDropout) {
  torch::manual_seed(3);
  for (const std::string& arch : kArchs) {
  SCOPED_TRACE(arch);
  NativeSeq2Seq model(tiny(arch, false, true, /*tied=*/false));  // untied: the pad row gets no output-layer gradient
  model.train();
  torch::Tensor src = src_batch();
  torch::Tensor tgt_in = torch::tensor({{2, 4, 11, 6}, {2, 7, 5, 0}}, torch::kInt64);
  torch::Tensor gold = torch::tensor({{4, 11, 6, 3}, {7, 5, 3, 0}}, torch::kInt64);
  torch::Tensor logits = model.forward(src, src.ne(0), tgt_in);  // [2, 4, V]
  ASSERT_TRUE(logits.requires_grad());
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      logits.reshape({-1, 40}), gold.reshape({-1}), torch::nn::functional::CrossEntropyFuncOptions().ignore_index(0));
  loss.backward();
  int64_t with_grad = 0, total = 0;
  for (const auto& p : model.named_parameters()) {
    // a key bias adds the same q·b to every score of a query: softmax ignores it (zero gradient)
    if (p.key().find("k_proj.bias") != std::string::npos) continue;
    ++total;
    if (p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0) ++with_grad;
    else ADD_FAILURE() << "no gradient: " << p.key();
  }
  EXPECT_EQ(with_grad, total);  // every other parameter (embedding, attention, FFN, LayerNorm) learns
  // the padding row of the embedding gets no gradient (fairseq padding_idx)
  torch::Tensor emb_grad = model.named_parameters()["encoder.embed_tokens.weight"].grad();
  EXPECT_EQ(emb_grad[0].abs().sum().item<double>(), 0.0);
  // dropout: two training passes differ, two eval passes agree
  torch::NoGradGuard ng;
  torch::Tensor a = model.forward(src, src.ne(0), tgt_in), b = model.forward(src, src.ne(0), tgt_in);
  EXPECT_FALSE(torch::allclose(a, b));
  model.eval();
  EXPECT_TRUE(torch::equal(model.forward(src, src.ne(0), tgt_in), model.forward(src, src.ne(0), tgt_in)));
  }
}

TEST(NativeSeq2Seq, SaveLoadGivesIdenticalLogitsAndF16HalvesTheFile) {
  torch::manual_seed(4);
  TempDir tmp;
  for (const std::string& arch : kArchs) {
  for (bool shared : {true, false}) {
    SCOPED_TRACE(arch + (shared ? " shared" : " separate"));
    NativeSeq2Seq model(tiny(arch, !shared, shared, shared));
    model.eval();
    const std::string dir = tmp.path().string() + "/" + arch + (shared ? "-shared" : "-separate");
    save_native_model(model, dir);
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "README.md"}) {
      EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
    }
    auto loaded = NativeSeq2Seq::load(dir);
    EXPECT_EQ(loaded->config().to_json(), model.config().to_json());
    torch::Tensor src = src_batch();
    torch::Tensor tgt = torch::tensor({{2, 4, 11}, {2, 7, 5}}, torch::kInt64);
    torch::NoGradGuard ng;
    torch::Tensor want = model.forward(src, src.ne(0), tgt);
    EXPECT_TRUE(torch::equal(loaded->forward(src, src.ne(0), tgt), want));
    // through the generic loader, as `loom translate` does
    std::shared_ptr<EncoderDecoder> generic = load_encoder_decoder(dir);
    EXPECT_EQ(generic->model_type(), "loom_seq2seq");
    EXPECT_EQ(generic->target_vocab_size(), shared ? 40 : 30);
    EXPECT_EQ(generic->decoder_start_token_id(), 2);
    EXPECT_EQ(generic->eos_token_id(), 3);
    EXPECT_TRUE(torch::allclose(generic->decode(tgt, generic->encode(src, src.ne(0))), want, 1e-5, 1e-5));

    SaveOptions half;
    half.float16 = true;
    const std::string dir16 = dir + "-f16";
    save_native_model(model, dir16, half);
    auto data_bytes = [](const std::string& path, io::DType want) {
      uint64_t n = 0;
      io::SafetensorsFile f(path);
      for (const auto& t : f.tensors()) {
        EXPECT_EQ(t.dtype, want) << t.name;
        n += t.nbytes;
      }
      return n;
    };
    EXPECT_EQ(2 * data_bytes(dir16 + "/model.safetensors", io::DType::F16), data_bytes(dir + "/model.safetensors", io::DType::F32));
    io::HfCheckpoint ck(dir16);
    EXPECT_EQ(ck.load("encoder.embed_tokens.weight", torch::kHalf).scalar_type(), torch::kHalf);
    auto loaded16 = NativeSeq2Seq::load(dir16);
    for (const auto& p : loaded16->named_parameters()) {
      EXPECT_EQ(p.value().scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::allclose(p.value(), model.named_parameters()[p.key()], 1e-3, 1e-3)) << p.key();
    }
    EXPECT_TRUE(torch::allclose(loaded16->forward(src, src.ne(0), tgt), want, 0.05, 0.05));
  }
  }
}

TEST(NativeSeq2Seq, LoadErrorsNameTheTensor) {
  torch::manual_seed(5);
  TempDir tmp;
  NativeSeq2Seq model(tiny_transformer());
  save_native_model(model, tmp.path().string());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model.named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
  auto error_with = [&](std::vector<std::pair<std::string, torch::Tensor>> t) {
    io::write_safetensors(tmp.path().string() + "/model.safetensors", t);
    try {
      NativeSeq2Seq::load(tmp.path().string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto missing = tensors;
  missing.erase(missing.begin() + 3);
  std::string msg = error_with(missing);
  EXPECT_NE(msg.find(tensors[3].first), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  auto extra = tensors;
  extra.emplace_back("decoder.extra.weight", torch::zeros({2}));
  msg = error_with(extra);
  EXPECT_NE(msg.find("decoder.extra.weight"), std::string::npos) << msg;
  auto wrong = tensors;
  wrong[0].second = torch::zeros({3, 3});
  msg = error_with(wrong);
  EXPECT_NE(msg.find(tensors[0].first), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape [3, 3]"), std::string::npos) << msg;
}

TEST(NativeSeq2Seq, RejectsOutOfVocabularyIds) {
  NativeSeq2Seq model(tiny_transformer(false, false, false));
  model.eval();
  torch::Tensor src = torch::tensor({{5, 40}}, torch::kInt64);
  EXPECT_THROW(model.encode(src), Error);
  EncoderOutput enc = model.encode(torch::tensor({{5, 39}}, torch::kInt64));
  EXPECT_THROW(model.decode(torch::tensor({{2, 30}}, torch::kInt64), enc), Error);  // target vocab is 30
}

TEST(EncoderDecoderLoader, DispatchesOnModelType) {
  auto marian = load_encoder_decoder(kMarian);
  EXPECT_EQ(marian->model_type(), "marian");
  EXPECT_NE(dynamic_cast<Seq2SeqModel*>(marian.get()), nullptr);
  EXPECT_EQ(marian->max_decoder_positions(), 128);
  EXPECT_EQ(marian->max_source_positions(), 128);
  TempDir tmp;
  fs::copy_file(kMarian + "/model.safetensors", tmp.path().string() + "/model.safetensors");
  std::ifstream in(kMarian + "/config.json");
  json config = json::parse(in);
  config["model_type"] = "t5";
  std::ofstream(tmp.path().string() + "/config.json") << config.dump();
  try {
    load_encoder_decoder(tmp.path().string());
    FAIL() << "t5 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model_type"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"t5\""), std::string::npos) << e.what();
  }
}

// Greedy search on a loom model through generate() and Translator equals a hand-written greedy
// loop over teacher-forced forward() calls.
TEST(NativeSeq2Seq, GreedyGenerationThroughTranslator) {
  torch::manual_seed(6);
  auto tokenizer = text::load_seq2seq_tokenizer(kMarian);  // ids < 734; only used for text I/O
  tokenizer->set_languages("", "");
  for (const std::string& arch : kArchs) {
  SCOPED_TRACE(arch);
  NativeSeq2SeqConfig c = tiny(arch);
  c.vocab_size = c.target_vocab_size = tokenizer->vocab_size();
  NativeSeq2Seq model(c);
  model.eval();
  generate::GenerationOptions gen = tiny_options(/*num_beams=*/1, /*max_new_tokens=*/6);
  generate::Translator translator(model, *tokenizer, gen, generate::TranslatorOptions{});
  std::vector<std::vector<int64_t>> sources = {{50, 60, 70, 3}, {80, 3}};
  auto hyps = translator.translate_ids(sources);
  ASSERT_EQ(hyps.size(), 2u);
  for (size_t i = 0; i < sources.size(); ++i) {
    torch::NoGradGuard ng;
    torch::Tensor src = torch::tensor(sources[i], torch::kInt64).unsqueeze(0);  // [1, S]
    std::vector<int64_t> seq = {2};
    while (seq.size() < 7) {
      torch::Tensor tgt = torch::tensor(seq, torch::kInt64).unsqueeze(0);
      const int64_t next = model.forward(src, {}, tgt)[0][-1].argmax().item<int64_t>();
      seq.push_back(next);
      if (next == 3) break;
    }
    EXPECT_EQ(hyps[i][0].tokens, std::vector<int64_t>(seq.begin() + 1, seq.end())) << "source " << i;
  }
  auto text = translator.translate({"Hello world.", "Everyone has rights."});
  EXPECT_EQ(text.size(), 2u);
  EXPECT_EQ(translator.stats().sentences, 2);
  }
}

}  // namespace
}  // namespace loom::models

namespace loom::models {
namespace {

// Beam search over a target vocabulary smaller than the candidates it keeps per step
// (2 · num_beams = 6 > V = 5): every row contributes all its tokens, nothing is read past a row,
// and a sentence's beams do not depend on the sentences batched with it.
TEST(NativeSeq2Seq, BeamSearchOverAVocabularySmallerThanItsCandidates) {
  torch::manual_seed(9);
  NativeSeq2SeqConfig c = tiny("transformer", false, /*shared=*/false, /*tied=*/false);
  c.target_vocab_size = 5;
  NativeSeq2Seq model(c);
  model.eval();
  generate::GenerationOptions o = tiny_options(/*num_beams=*/3, /*max_new_tokens=*/5);
  const std::vector<std::vector<int64_t>> sources = {{10, 11, 12, 3}, {20, 3}, {30, 31, 3}};
  auto batch = generate::generate(model, sources, o);
  ASSERT_EQ(batch.size(), 3u);
  for (size_t i = 0; i < sources.size(); ++i) {
    auto alone = generate::generate(model, {sources[i]}, o);
    ASSERT_EQ(batch[i].size(), 1u);
    EXPECT_EQ(batch[i][0].tokens, alone[0][0].tokens) << "source " << i;
    EXPECT_NEAR(batch[i][0].score, alone[0][0].score, 1e-5) << "source " << i;
    EXPECT_TRUE(std::isfinite(batch[i][0].score));
    for (int64_t t : batch[i][0].tokens) EXPECT_TRUE(t >= 0 && t < 5) << t;
  }
}

}  // namespace
}  // namespace loom::models
