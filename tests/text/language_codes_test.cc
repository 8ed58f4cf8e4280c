// Issue 9 item 9: a language code in another standard spelling (ISO 639-1, 639-3, macrolanguage
// member, BCP 47 with region) is matched to the model's own code (NLLB "zho_Hans", Marian
// ">>cmn_Hans<<") by the one table in text/language_codes.h, or refused with the valid list.
#include "loom/text/language_codes.h"
#include "support/paths.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "support/support.h"

namespace loom::text {
namespace {

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";
const std::string kNllb = std::string(LOOM_TEST_DATA) + "/hf-tiny/nllb-m2m100";

TEST(LanguageCodes, NormalisesEverySpelling) {
  for (const char* zh : {"zh", "ZH", "zh-CN", "zh_Hans", "zho", "zho_Hans", "cmn_Hans", "cmn", "__zh__", ">>cmn_Hans<<"}) {
    const LanguageTag t = normalize_language(zh);
    EXPECT_EQ(t.language, "zh") << zh;
    EXPECT_EQ(t.script, "Hans") << zh;
    EXPECT_EQ(t.iso3, "zho") << zh;
  }
  EXPECT_EQ(normalize_language("zh-TW").script, "Hant");
  EXPECT_EQ(normalize_language("arb_Arab").language, "ar");
  EXPECT_EQ(normalize_language("deu").language, "de");
  EXPECT_EQ(normalize_language("pt_br").region, "BR");
  for (const char* bad : {"", "x", "12", "zh Hans", "toolongcode", "z!"}) EXPECT_TRUE(normalize_language(bad).language.empty()) << bad;
}

TEST(LanguageCodes, MatchesMarianCodes) {
  const std::vector<std::string> codes = {"cmn_Hans", "cmn_Hant", "yue_Hant"};
  EXPECT_EQ(match_language_code("zh", codes), "cmn_Hans");
  EXPECT_EQ(match_language_code("zho_Hans", codes), "cmn_Hans");
  EXPECT_EQ(match_language_code("zh-TW", codes), "cmn_Hant");
  EXPECT_EQ(match_language_code("zh_Hant", codes), "cmn_Hant");
  EXPECT_EQ(match_language_code("yue", codes), "yue_Hant");
  EXPECT_EQ(match_language_code("cmn_Hant", codes), "cmn_Hant");  // exact
  EXPECT_FALSE(match_language_code("fr", codes));
  EXPECT_FALSE(match_language_code("klingon", codes));
  // opus-mt-en-zh has both >>cmn<< and >>cmn_Hans<<: the one that writes the script out.
  const std::vector<std::string> opus = {"cmn", "cmn_Hans", "cmn_Hant", "yue", "yue_Hans", "yue_Hant"};
  EXPECT_EQ(match_language_code("zho", opus), "cmn_Hans");
  EXPECT_EQ(match_language_code("zh-TW", opus), "cmn_Hant");
  EXPECT_EQ(match_language_code("cmn", opus), "cmn");  // exact
}

TEST(LanguageCodes, MatchesNllbCodes) {
  const auto codes = load_seq2seq_tokenizer(kNllb)->languages();
  ASSERT_EQ(codes.size(), 202u);
  EXPECT_EQ(match_language_code("zh", codes), "zho_Hans");
  EXPECT_EQ(match_language_code("cmn_Hans", codes), "zho_Hans");
  EXPECT_EQ(match_language_code("zh-TW", codes), "zho_Hant");
  EXPECT_EQ(match_language_code("en", codes), "eng_Latn");
  EXPECT_EQ(match_language_code("de-DE", codes), "deu_Latn");
  EXPECT_EQ(match_language_code("ar", codes), "arb_Arab");     // macrolanguage -> standard Arabic
  EXPECT_EQ(match_language_code("fa", codes), "pes_Arab");     // Iranian Persian, not Dari (prs, AF)
  EXPECT_EQ(match_language_code("fa-AF", codes), "prs_Arab");
  EXPECT_EQ(match_language_code("ak", codes), "aka_Latn");     // aka_Latn and twi_Latn both mean "ak"
  EXPECT_EQ(match_language_code("twi", codes), "twi_Latn");
  EXPECT_EQ(match_language_code("sr", codes), "srp_Cyrl");
  EXPECT_FALSE(match_language_code("xx", codes));
}

TEST(LanguageCodes, TokenizersAcceptOtherSpellingsOrListTheValidCodes) {
  auto marian = load_seq2seq_tokenizer(kMarian);
  marian->set_languages("", "cmn_Hans");
  const auto want = marian->encode_source("Hello.");
  for (const char* tgt : {"zh", "zho_Hans", "zh-CN"}) {
    marian->set_languages("", tgt);
    EXPECT_EQ(marian->target_language(), "cmn_Hans") << tgt;
    EXPECT_EQ(marian->encode_source("Hello."), want) << tgt;  // the >>cmn_Hans<< token is sent
  }
  marian->set_languages("eng", "zh-TW");  // source_lang "en" in another spelling
  EXPECT_EQ(marian->target_language(), "cmn_Hant");
  std::string err = loom_test::error_of([&] { marian->set_languages("", "fr"); });
  EXPECT_NE(err.find("valid codes (3): cmn_Hans, cmn_Hant, yue_Hant"), std::string::npos) << err;
  EXPECT_NE(err.find("'zh-TW'"), std::string::npos) << err;  // names the other accepted spellings

  auto nllb = load_seq2seq_tokenizer(kNllb);
  nllb->set_languages("eng_Latn", "zho_Hans");
  const auto src_ids = nllb->encode_source("Hello.");
  const auto bos = nllb->forced_bos_token_id();
  nllb->set_languages("en", "cmn_Hans");
  EXPECT_EQ(nllb->source_language(), "eng_Latn");
  EXPECT_EQ(nllb->target_language(), "zho_Hans");
  EXPECT_EQ(nllb->encode_source("Hello."), src_ids);
  EXPECT_EQ(nllb->forced_bos_token_id(), bos);
  err = loom_test::error_of([&] { nllb->set_languages("en", "tlh"); });
  EXPECT_NE(err.find("unknown NLLB tgt language 'tlh'"), std::string::npos) << err;
  EXPECT_NE(err.find("valid codes (202)"), std::string::npos) << err;

  // loom's own models (the shipped default models/en-zh: config.json en -> zh) too.
  auto native = load_seq2seq_tokenizer(std::string(LOOM_SOURCE_DIR) + "/models/en-zh");
  for (const char* tgt : {"zh", "zho_Hans", "cmn_Hans", "zh-CN", "zh-Hans"}) {
    native->set_languages("eng_Latn", tgt);
    EXPECT_EQ(native->source_language(), "en") << tgt;
    EXPECT_EQ(native->target_language(), "zh") << tgt;
  }
  err = loom_test::error_of([&] { native->set_languages("en", "de"); });
  EXPECT_NE(err.find("this loom model translates en->zh only; target language 'de' is not supported (valid: 'zh'"),
            std::string::npos) << err;
}

}  // namespace
}  // namespace loom::text
