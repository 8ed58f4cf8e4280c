// `loom translate --model DIR` on loom model directories (random Transformer and DeLighT weights
// written by save_native_model): the same CLI path as an HF checkpoint, one output line per
// input line, greedy and beam. The directory borrows the Marian fixture's tokenizer files
// (tokenizer_config.json names MarianTokenizer) because only the text I/O needs them.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "loom/models/native_seq2seq.h"

namespace loom::models {
namespace {

namespace fs = std::filesystem;

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(NativeTranslateCli, LoomModelDirectoryTranslatesLikeAnHfCheckpoint) {
  const fs::path dir = fs::temp_directory_path() / ("loom-native-cli-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
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
      const std::string cmd = std::string("'") + LOOM_BINARY + "' translate --model '" + mdir.string() + "' --beam " + beam +
                              " --no-progress '" + input.string() + "' '" + out.string() + "' 2>'" + (dir / "err.txt").string() + "'";
      const int status = std::system(cmd.c_str());
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir / "err.txt");
      const std::string text = slurp(out);
      EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;  // line-aligned, empty line kept
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::models
