// --compute-type for translation models (models::EncoderDecoder::set_compute_type, nn::PackedLinear
// with low-precision activations): float32 stays the float32 path bit for bit; int8 / bf16 logits
// stay close to float32; and the quality check of `loom translate --check-quality`
// (pipeline::check_quality) on the default model models/en-zh and through the CLI.
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>

#include "loom/io/checkpoint.h"
#include "loom/models/encoder_decoder.h"
#include "loom/models/hf_init.h"
#include "loom/pipeline/quality_check.h"
#include "loom/pipeline/translation_engine.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "support/paths.h"
#include "support/support.h"

namespace loom::pipeline {
namespace {

using nn::WeightType;

std::string fixture(const std::string& name) { return std::string(LOOM_TEST_DATA) + "/hf-tiny/" + name; }

std::vector<std::string> flores(size_t n) {
  auto lines = loom_test::lines_of(loom_test::slurp(std::string(LOOM_SOURCE_DIR) + "/data/flores200/eng_Latn.devtest"));
  lines.resize(std::min(n, lines.size()));
  return lines;
}

struct ModelCase {
  std::string name, dir, src, tgt;
};

std::vector<ModelCase> cases() {
  return {{"marian", fixture("marian-en-zh"), "", ""},
          {"nllb", fixture("nllb-m2m100"), "eng_Latn", "zho_Hans"},
          {"native_en_zh", std::string(LOOM_SOURCE_DIR) + "/models/en-zh", "", ""}};
}

class TranslateCompute : public ::testing::TestWithParam<ModelCase> {};

// Teacher-forced logits of the reference's first case (or a fixed id sequence).
torch::Tensor logits_of(models::EncoderDecoder& m, const ModelCase& c) {
  torch::Tensor src = torch::tensor(std::vector<int64_t>{10, 11, 12, 13, 14, 15, m.eos_token_id()}).view({1, -1});
  torch::Tensor tgt = torch::tensor(std::vector<int64_t>{m.decoder_start_token_id(), 20, 21, 22, 23}).view({1, -1});
  auto enc = m.encode(src);
  return m.decode(tgt, enc);  // [1, 5, V]
}

TEST_P(TranslateCompute, Float32StaysExactAndReducedPrecisionIsClose) {
  torch::InferenceMode guard;
  const ModelCase& c = GetParam();
  auto f32 = models::load_encoder_decoder(c.dir);
  const torch::Tensor want = logits_of(*f32, c);
  for (WeightType t : {WeightType::kInt8, WeightType::kBFloat16}) {
    auto q = models::load_encoder_decoder(c.dir, t);
    EXPECT_EQ(q->compute_type(), t);
    const torch::Tensor got = logits_of(*q, c);
    const double scale = want.abs().max().item<double>();
    const double err = (got - want).abs().max().item<double>();
    EXPECT_GT(err, 0.0) << nn::weight_type_name(t);  // really computed differently
    // The trained model stays within 5 % of the largest logit; int8 within 1.2 % (measured 0.93 %
    // with blocks of 32 and the output projection in float32; 1.40 % with per-row scales before).
    // The random-weight fixtures are ill-conditioned (measured: int8 17.4 % Marian, 19.4 % NLLB;
    // bf16 9 % / 3 %), so they get 25 % / 15 %.
    const double tol = c.name == "native_en_zh" ? (t == WeightType::kInt8 ? 0.012 : 0.05)
                                                : (t == WeightType::kInt8 ? 0.25 : 0.15);
    EXPECT_LT(err, tol * scale) << nn::weight_type_name(t);
    // Back to float32: exactly today's float32 numbers again.
    q->set_compute_type(WeightType::kFloat32);
    EXPECT_TRUE(torch::equal(logits_of(*q, c), want)) << nn::weight_type_name(t);
  }
}

// Greedy decoding step by step, both models fed float32's tokens: wherever float32's top-1 margin
// exceeds twice the step's largest logit error, the reduced-precision argmax is the same token.
// (On the random-weight fixtures whole greedy outputs of 100+ tokens never survive intact — their
// margins are tiny — so the sentence-level >= 95 % check runs on the trained models/en-zh.)
TEST_P(TranslateCompute, GreedyStepsAgreeWhereFloat32MarginAllows) {
  torch::InferenceMode guard;
  const ModelCase& c = GetParam();
  auto tok = text::load_seq2seq_tokenizer(c.dir);
  tok->set_languages(c.src, c.tgt);
  auto f32 = models::load_encoder_decoder(c.dir);
  for (WeightType t : {WeightType::kInt8, WeightType::kBFloat16}) {
    auto q = models::load_encoder_decoder(c.dir, t);
    int compared = 0, steps = 0;
    for (const std::string& line : flores(20)) {
      std::vector<int64_t> ids = tok->encode_source(line);
      if (static_cast<int64_t>(ids.size()) > f32->max_source_positions()) continue;
      torch::Tensor src = torch::tensor(ids).view({1, -1});
      auto e32 = f32->encode(src);
      auto eq = q->encode(src);
      models::DecoderState s32, sq;
      int64_t next = f32->decoder_start_token_id();
      for (int step = 0; step < 16; ++step, ++steps) {
        torch::Tensor in = torch::full({1, 1}, next, torch::kInt64);
        torch::Tensor l32 = f32->decode(in, e32, &s32).view({-1});  // [V]
        torch::Tensor lq = q->decode(in, eq, &sq).view({-1});       // [V]
        auto top = std::get<0>(l32.topk(2));
        const double margin = (top[0] - top[1]).item<double>();
        const double err = (l32 - lq).abs().max().item<double>();
        next = l32.argmax().item<int64_t>();
        if (margin <= 2 * err) continue;
        EXPECT_EQ(lq.argmax().item<int64_t>(), next) << c.name << " " << nn::weight_type_name(t) << " step " << step;
        ++compared;
      }
    }
    // On the trained model most steps are decided by a clear margin; on the random fixtures few
    // or none are (Marian int8: 0 of 60), so only the agreement above is asserted there.
    if (c.name == "native_en_zh")
      EXPECT_GT(compared, steps / 2) << nn::weight_type_name(t) << ": margins too small to compare";
    RecordProperty(std::string(nn::weight_type_name(t)) + "_steps_compared", compared);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TranslateCompute, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// Sentence level on the trained default model (models/en-zh), the `--check-quality` code path:
// every 100th Tatoeba pair (291 sentences; training-side data, which is fine for an agreement
// check), greedy. bf16 and int8 must equal float32 on >= 95 % of sentences (measured: bf16
// 285/291, int8 279/291 — 276/291 with per-row int8 scales and an int8 output projection; on the
// held-out Tatoeba split int8 is 95.7 %, docs/benchmarks.md).
TEST(TranslateComputeQuality, DefaultModelGreedyAgreement) {
  torch::InferenceMode guard;
  EngineOptions o;
  o.beam = 1;
  TranslationEngine engine(std::string(LOOM_SOURCE_DIR) + "/models/en-zh", o);
  std::vector<std::string> texts;
  const auto lines = loom_test::lines_of(loom_test::slurp(std::string(LOOM_SOURCE_DIR) + "/data/tatoeba-cmn/cmn.txt"));
  for (size_t i = 99; i < lines.size(); i += 100) texts.push_back(lines[i].substr(0, lines[i].find('\t')));
  ASSERT_GE(texts.size(), 290u);
  const QualityReport rep = check_quality(engine, texts, {WeightType::kInt8, WeightType::kBFloat16}, false);
  ASSERT_EQ(rep.rows.size(), 2u);
  for (const QualityRow& r : rep.rows) {
    EXPECT_EQ(r.texts, static_cast<int64_t>(texts.size()));
    const double floor = 95.0;
    EXPECT_GE(r.agreement, floor) << nn::weight_type_name(r.type) << ": " << r.identical << "/" << r.texts
                                  << " identical, BLEU vs float32 " << r.bleu_vs_float32;
    EXPECT_GT(r.bleu_vs_float32, 90.0) << nn::weight_type_name(r.type);
    RecordProperty(std::string(nn::weight_type_name(r.type)) + "_identical", static_cast<int>(r.identical));
  }
  // The engine is float32 again afterwards: the same translations as the check's float32 pass.
  EXPECT_EQ(engine.options().compute_type, "float32");
  std::vector<std::string> first(texts.begin(), texts.begin() + 5);
  auto again = engine.translate_texts(first, false);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(again[i].hypotheses.front(), rep.float32_output[i]);
}


// The CLI: --compute-type int8 translates; --check-quality prints one row per compute type and its
// exit status follows the printed agreement and --check-threshold.
TEST(TranslateComputeCli, CheckQualityExitStatusFollowsTheThreshold) {
  loom_test::TempDir dir;
  std::string input;
  for (const auto& s : flores(40)) input += s + "\n";
  loom_test::write_file(dir.path() / "in.txt", input);
  const std::string model = fixture("marian-en-zh");
  auto r = loom_test::run_loom({"translate", "--model", model, "--beam", "1", "--compute-type", "int8", "--no-progress",
                                dir / "in.txt", dir / "out.txt"},
                               dir.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(loom_test::lines_of(loom_test::slurp(dir.path() / "out.txt")).size(), 40u);
  for (const char* threshold : {"0", "95", "100"}) {
    r = loom_test::run_loom({"translate", "--model", model, "--beam", "1", "--check-quality", "--check-texts", "30",
                             "--check-threshold", threshold, dir / "in.txt"},
                            dir.path());
    std::smatch m;
    double lowest = 100;
    int rows = 0;
    std::string out = r.out;
    const std::regex row(R"((int8|bfloat16)\s+(\d+)/(\d+)\s+([0-9.]+))");
    for (std::sregex_iterator it(out.begin(), out.end(), row), end; it != end; ++it) {
      ++rows;
      EXPECT_EQ((*it)[3].str(), "30");
      lowest = std::min(lowest, std::stod((*it)[4].str()));
    }
    EXPECT_EQ(rows, 2) << r.out << r.err;
    EXPECT_EQ(r.code, lowest >= std::stod(threshold) ? 0 : 1) << r.out << r.err;
  }
  r = loom_test::run_loom({"translate", "--model", model, "--compute-type", "int4", dir / "in.txt"}, dir.path());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("unknown compute type 'int4'"), std::string::npos) << r.err;
}

// `loom init-model` (random_seq2seq_weights): the pad (Marian decoder-start) row of the shared
// embedding is zero, as in real Marian / M2M100 checkpoints; the other rows are random.
TEST(TranslateComputeInit, RandomSeq2SeqWeightsHaveAZeroPadRow) {
  for (const char* type : {"marian", "m2m_100"}) {
    nlohmann::json config = {{"model_type", type}, {"d_model", 8}, {"vocab_size", 20}, {"pad_token_id", 19},
                             {"encoder_layers", 1}, {"decoder_layers", 1}, {"encoder_ffn_dim", 16},
                             {"decoder_ffn_dim", 16}};
    if (std::string(type) == "m2m_100") config["pad_token_id"] = 1;
    const int64_t pad = config["pad_token_id"].get<int64_t>();
    torch::Tensor shared;
    for (const auto& [name, t] : models::random_seq2seq_weights(config, 7))
      if (name == "model.shared.weight") shared = t;
    ASSERT_TRUE(shared.defined()) << type;
    EXPECT_EQ(shared[pad].abs().sum().item<double>(), 0.0) << type;
    for (int64_t r = 0; r < 20; ++r)
      if (r != pad) EXPECT_GT(shared[r].abs().sum().item<double>(), 0.0) << type << " row " << r;
  }
}

}  // namespace
}  // namespace loom::pipeline
