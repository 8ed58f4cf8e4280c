// `loom translate --model DIR` on loom model directories (random Transformer and DeLighT weights
// written by save_native_model): the same CLI path as an HF checkpoint, one output line per
// input line, greedy and beam. The directory borrows the Marian fixture's tokenizer files
// (tokenizer_config.json names MarianTokenizer) because only the text I/O needs them.
#include <sys/wait.h>
#include "support/paths.h"
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "loom/models/native_seq2seq.h"
#include "loom/text/sentencepiece.h"
#include "support/support.h"

namespace loom::models {
namespace {

namespace fs = std::filesystem;

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

using loom_test::run_loom;
using loom_test::slurp;

TEST(NativeTranslateCli, LoomModelDirectoryTranslatesLikeAnHfCheckpoint) {
  loom_test::TempDir tmp;
  const fs::path& dir = tmp.path();
  const fs::path input = dir / "in.txt";
  std::ofstream(input) << "All human beings are born free.\n\nEveryone has the right to life.\n";
  for (const char* arch : {"transformer", "delight"}) {
    SCOPED_TRACE(arch);
    NativeSeq2SeqConfig c;
    c.architecture = arch;
    c.activation_function = std::string(arch) == "delight" ? "swish" : "relu";
    c.d_model = std::string(arch) == "delight" ? 64 : 32;
    c.encoder_layers = c.decoder_layers = 2;
    c.encoder_attention_heads = c.decoder_attention_heads = 4;
    c.encoder_ffn_dim = c.decoder_ffn_dim = 64;
    c.delight.emb_map_dim = 32;
    c.delight.emb_depth = 2;
    c.delight.enc_min_depth = c.delight.dec_min_depth = 2;
    c.delight.enc_max_depth = c.delight.dec_max_depth = 3;
    c.delight.enc_blocks = c.delight.dec_blocks = 2;
    c.vocab_size = c.target_vocab_size = 734;  // the Marian fixture's vocabulary
    c.max_target_positions = 16;
    torch::manual_seed(7);
    NativeSeq2Seq model(c);
    model.eval();
    const fs::path mdir = dir / arch;
    SaveOptions opts;
    opts.source_spm = kMarian + "/source.spm";
    opts.target_spm = kMarian + "/target.spm";
    opts.float16 = true;
    save_native_model(model, mdir.string(), opts);
    for (const char* f : {"vocab.json", "tokenizer_config.json", "special_tokens_map.json"}) {
      fs::copy_file(fs::path(kMarian) / f, mdir / f);
    }
    for (const char* beam : {"1", "3"}) {
      const fs::path out = dir / (std::string(arch) + "-" + beam + ".txt");
      const auto r = run_loom({"translate", "--model", mdir.string(), "--beam", beam, "--no-progress",
                               input.string(), out.string()}, dir);
      ASSERT_EQ(r.code, 0) << r.err;
      const std::string text = slurp(out);
      EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;  // line-aligned, empty line kept
    }
  }
}

// A loom model with its own SentencePiece models (LoomSpmTokenizer, chosen from config.json
// model_type) and the language pair kept in config.json: the layout `loom train` exports.
TEST(NativeTranslateCli, OwnSentencePieceModelsAndLanguagePair) {
  loom_test::TempDir tmp;
  const fs::path& dir = tmp.path();
  {
    std::ifstream in(std::string(LOOM_TEST_DATA) + "/mt/tatoeba-400.tsv");
    std::ofstream both(dir / "both.txt");
    std::string line;
    while (std::getline(in, line)) {
      const size_t tab = line.find('\t');
      both << line.substr(0, tab) << "\n" << line.substr(tab + 1) << "\n";
    }
  }
  text::SpmTrainOptions o;
  o.input_files = {(dir / "both.txt").string()};
  o.vocab_size = 1500;  // the Chinese side alone has ~850 characters
  text::train_sentencepiece(o, (dir / "joint.spm").string());
  NativeSeq2SeqConfig c;
  c.d_model = 32;
  c.encoder_layers = c.decoder_layers = 1;
  c.encoder_attention_heads = c.decoder_attention_heads = 2;
  c.encoder_ffn_dim = c.decoder_ffn_dim = 64;
  c.vocab_size = c.target_vocab_size = 1500;
  c.max_target_positions = 12;
  c.extra = {{"source_lang", "en"}, {"target_lang", "zh"}};
  torch::manual_seed(8);
  NativeSeq2Seq model(c);
  model.eval();
  SaveOptions opts;
  opts.source_spm = (dir / "joint.spm").string();  // shared: copied as target.spm too
  save_native_model(model, (dir / "model").string(), opts);
  EXPECT_EQ(slurp(dir / "model" / "source.spm"), slurp(dir / "model" / "target.spm"));
  const fs::path input = dir / "in.txt", out = dir / "out.txt";
  std::ofstream(input) << "Tom is here.\nI like tea.\n";
  const auto r = run_loom({"translate", "--model", (dir / "model").string(), "--src", "en", "--tgt", "zh",
                           "--no-progress", input.string(), out.string()}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string text = slurp(out);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  // a pair the model was not trained for is refused, naming the model's pair
  const auto bad = run_loom({"translate", "--model", (dir / "model").string(), "--src", "en", "--tgt", "de",
                             "--no-progress", input.string(), (dir / "de.txt").string()}, dir);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("en->zh"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace loom::models
