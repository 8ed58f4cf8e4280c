#include "loom/text/seq2seq_tokenizer.h"

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/text/loom_spm_tokenizer.h"
#include "loom/text/m2m100_tokenizer.h"
#include "loom/text/marian_tokenizer.h"
#include "loom/text/nllb_tokenizer.h"
#include "loom/text/tokenizer_files.h"

namespace loom::text {
namespace {

enum class Kind { kMarian, kNllb, kM2M100, kLoom };

std::optional<std::string> string_field(const std::string& path, const char* key) {
  if (!core::file_exists(path)) return std::nullopt;
  nlohmann::json j = core::read_json(path);
  if (!j.is_object()) fail(Where{path}, "expected a JSON object");
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

Kind detect(const std::string& dir) {
  const std::string tok_cfg = dir + "/tokenizer_config.json";
  if (auto cls = string_field(tok_cfg, "tokenizer_class")) {
    if (*cls == "MarianTokenizer") return Kind::kMarian;
    if (*cls == "NllbTokenizer" || *cls == "NllbTokenizerFast") return Kind::kNllb;
    if (*cls == "M2M100Tokenizer") return Kind::kM2M100;
    fail(Where{tok_cfg, 0, "tokenizer_class"},
         "unsupported tokenizer_class '{}' (supported: MarianTokenizer, NllbTokenizer, M2M100Tokenizer)", *cls);
  }
  const std::string model_cfg = dir + "/config.json";
  if (auto type = string_field(model_cfg, "model_type")) {
    if (*type == "marian") return Kind::kMarian;
    if (*type == "loom_seq2seq") return Kind::kLoom;
    if (*type == "m2m_100") {
      // M2M100 has vocab.json + sentencepiece.bpe.model; NLLB only sentencepiece.bpe.model.
      return core::file_exists(dir + "/vocab.json") ? Kind::kM2M100 : Kind::kNllb;
    }
    fail(Where{model_cfg, 0, "model_type"}, "model_type '{}' is not a supported translation model (marian, m2m_100, loom_seq2seq)",
         *type);
  }
  if (core::file_exists(dir + "/source.spm")) return Kind::kMarian;
  if (core::file_exists(dir + "/sentencepiece.bpe.model")) return Kind::kNllb;
  fail(Where{dir}, "no translation tokenizer found (looked for tokenizer_config.json tokenizer_class, config.json "
                   "model_type, source.spm, sentencepiece.bpe.model)");
}

}  // namespace

std::unique_ptr<Seq2SeqTokenizer> load_seq2seq_tokenizer(const std::string& model_dir) {
  switch (detect(model_dir)) {
    case Kind::kMarian:
      return std::make_unique<MarianTokenizer>(model_dir);
    case Kind::kNllb:
      return std::make_unique<NllbTokenizer>(model_dir);
    case Kind::kM2M100:
      return std::make_unique<M2M100Tokenizer>(model_dir);
    case Kind::kLoom:
      return std::make_unique<LoomSpmTokenizer>(model_dir);
  }
  fail(Where{model_dir}, "unreachable tokenizer kind");
}

}  // namespace loom::text
