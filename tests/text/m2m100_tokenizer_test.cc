// M2M100Tokenizer on tests/data/hf-tiny/m2m100 (facebook/m2m100_418M layout; made by
// scripts/make-m2m100-fixture.py, whose expected ids come from Python's sentencepiece +
// vocab.json with transformers' M2M100Tokenizer algorithm, and were checked there against the
// NLLB fixture's transformers ids renamed through vocab.json).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "loom/core/files.h"
#include "loom/core/error.h"
#include "loom/text/m2m100_tokenizer.h"
#include "loom/text/tokenizer_files.h"
#include "support/paths.h"
#include "support/support.h"

namespace loom::text {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using loom_test::error_of;

const std::string kDir = std::string(LOOM_TEST_DATA) + "/hf-tiny/m2m100";

TEST(M2M100Tokenizer, LoadsThroughTheSeq2SeqFactory) {
  auto tok = load_seq2seq_tokenizer(kDir);
  EXPECT_EQ(tok->name(), "M2M100Tokenizer");
  const nlohmann::json ref = core::read_json(kDir + "/reference.json");
  EXPECT_EQ(tok->vocab_size(), ref["vocab_size"].get<int64_t>());
  EXPECT_EQ(tok->languages().size(), 100u);
  EXPECT_EQ(tok->source_language(), "en");  // transformers' default src_lang
  EXPECT_EQ(tok->target_language(), "");
  EXPECT_EQ(tok->pad_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->unk_id(), 3);
}

TEST(M2M100Tokenizer, IdsMatchTheIndependentReference) {
  M2M100Tokenizer tok(kDir);
  const nlohmann::json ref = core::read_json(kDir + "/reference.json");
  for (const auto& [code, id] : ref["language_code_ids"].items()) {
    EXPECT_EQ(tok.language_id(code), id.get<int64_t>()) << code;
    EXPECT_EQ(tok.language_id("__" + code + "__"), id.get<int64_t>()) << code;
    EXPECT_EQ(tok.id_to_token(id.get<int64_t>()), "__" + code + "__");
  }
  for (const auto& c : ref["cases"]) {
    SCOPED_TRACE(c["source"].get<std::string>());
    tok.set_languages(c["src_lang"], c["tgt_lang"]);
    EXPECT_EQ(tok.encode_source(c["source"].get<std::string>()), c["input_ids"].get<std::vector<int64_t>>());
    EXPECT_EQ(tok.encode_target(c["target"].get<std::string>()), c["labels"].get<std::vector<int64_t>>());
    EXPECT_EQ(tok.forced_bos_token_id(), std::optional<int64_t>(ref["language_code_ids"]["zh"].get<int64_t>()));
    EXPECT_EQ(tok.decode_target(c["greedy_sequence"].get<std::vector<int64_t>>()), c["greedy_text"].get<std::string>());
  }
  // Special tokens and language tokens inside the text are single tokens; unknown pieces -> <unk>.
  for (const auto& c : ref["tokenizer_cases"]) {
    SCOPED_TRACE(c["text"].get<std::string>());
    tok.set_languages(c["src_lang"], "zh");
    EXPECT_EQ(tok.encode_source(c["text"].get<std::string>()), c["input_ids"].get<std::vector<int64_t>>());
  }
}

TEST(M2M100Tokenizer, DecodingDropsSpecialsAndWritesMadeupWordsAsUnk) {
  M2M100Tokenizer tok(kDir);
  tok.set_languages("en", "de");
  const std::vector<int64_t> ids = tok.encode_target("Hello world");
  std::vector<int64_t> body(ids.begin() + 1, ids.end() - 1);
  const std::string plain = tok.decode_target(body);
  EXPECT_FALSE(plain.empty());
  EXPECT_EQ(tok.decode_target(ids), plain);  // __de__ and </s> dropped
  std::vector<int64_t> with_madeup = body;
  with_madeup.push_back(tok.vocab_size() - 1);  // madeupword0007: only the model has it
  EXPECT_EQ(tok.decode_target(with_madeup), plain + "<unk>");
  EXPECT_EQ(tok.id_to_token(tok.vocab_size() - 1), "<unk>");
  EXPECT_THAT(error_of([&] { tok.decode_target({tok.vocab_size()}); }), HasSubstr("out of range"));
}

TEST(M2M100Tokenizer, BadLanguagesAndFilesAreClearErrors) {
  M2M100Tokenizer tok(kDir);
  EXPECT_THAT(error_of([&] { tok.set_languages("en", "tlh"); }),
              AllOf(HasSubstr("unknown M2M100 tgt language 'tlh'"), HasSubstr("af, am")));
  EXPECT_THAT(error_of([&] { tok.set_languages("", "de"); }), HasSubstr("--src en --tgt zh"));
  EXPECT_THAT(error_of([&] { tok.encode_target("x"); }), HasSubstr("no M2M100 target language"));
  // Other spellings of the model's codes select them (text/language_codes, as for NLLB/Marian).
  tok.set_languages("eng_Latn", "zh-CN");
  EXPECT_EQ(tok.source_language(), "en");
  EXPECT_EQ(tok.target_language(), "zh");
  tok.set_languages("__de__", "zho_Hans");
  EXPECT_EQ(tok.source_language(), "de");
  EXPECT_EQ(tok.target_language(), "zh");
  EXPECT_EQ(tok.language_id("__zh__"), tok.language_id("zh"));
  loom_test::TempDir dir;
  for (const char* f : {"sentencepiece.bpe.model", "config.json"})
    std::filesystem::copy_file(kDir + "/" + f, dir / f);
  EXPECT_THAT(error_of([&] { M2M100Tokenizer t(dir.path().string()); }), HasSubstr("vocab.json"));
  loom_test::write_file(dir.path() / "vocab.json", "{\"a\": 0}");
  EXPECT_THAT(error_of([&] { M2M100Tokenizer t(dir.path().string()); }),
              AllOf(HasSubstr("vocab.json"), HasSubstr("unknown token")));
  loom_test::write_file(dir.path() / "vocab.json", "{\"<unk>\": 0}");
  loom_test::write_file(dir.path() / "tokenizer_config.json", "{\"language_codes\": \"klingon\"}");
  EXPECT_THAT(error_of([&] { M2M100Tokenizer t(dir.path().string()); }),
              AllOf(HasSubstr("tokenizer_config.json"), HasSubstr("klingon")));
  loom_test::write_file(dir.path() / "tokenizer_config.json", "{\"language_codes\": \"wmt21\"}");
  M2M100Tokenizer wmt(dir.path().string());
  EXPECT_EQ(wmt.languages(), (std::vector<std::string>{"en", "ha", "is", "ja", "cs", "ru", "zh", "de"}));
  EXPECT_EQ(wmt.language_id("de"), 1 + 7);
}

}  // namespace
}  // namespace loom::text
