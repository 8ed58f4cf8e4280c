// BLEU tokenizers against sacreBLEU 2.x. The expected strings were produced by sacreBLEU's own
// tokenizer classes (Tokenizer13a, TokenizerZh, TokenizerV14International; sacreBLEU source at
// github mjpost/sacrebleu, run locally with Python 3.11 and regex 2026.5.9) and checked by hand
// against the rules documented in loom/eval/mt_tokenize.h.
#include "loom/eval/mt_tokenize.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"

namespace loom::eval {
namespace {

struct Case {
  const char* input;
  const char* t13a;
  const char* zh;
  const char* intl;
};

const Case kCases[] = {
    // 13a: ',' '!' '(' ')' split; "It's" keeps the apostrophe; "3.5" and "1,000" stay (digit
    // on both sides); "km-long" stays (no digit before '-'); "approx.)" -> "approx . )".
    {"Hello, world! It's 3.5 km-long (approx.), 1,000 people.",
     "Hello , world ! It's 3.5 km-long ( approx . ) , 1,000 people .",
     "Hello , world ! It's 3.5 km-long ( approx . ) , 1,000 people .",
     "Hello , world ! It ' s 3.5 km - long ( approx . ) , 1,000 people ."},
    // 13a unescapes in order &quot; &amp; &lt; &gt; ("&amp;lt;" -> "&lt;" -> "<") and drops
    // <skipped>; zh and intl do neither.
    {"a &amp;lt; b &quot;c&quot; <skipped> x", "a < b \" c \" x",
     "a & amp ; lt ; b & quot ; c & quot ; < skipped > x", "a & amp ; lt ; b & quot ; c & quot ; < skipped > x"},
    // "1. ": '.' after a digit, but followed by a space (rule 3); the final '.' follows 'o'
    // (rule 2).
    {"1. Go.", "1 . Go .", "1 . Go .", "1 . Go ."},
    {"我爱北京天安门。", "我爱北京天安门。", "我 爱 北 京 天 安 门 。", "我爱北京天安门 。"},
    // U+201C/U+201D quotes and U+2014 dashes fall in zh's U+2001..U+2A6D range.
    {"\xE2\x80\x9C你好\xE2\x80\x9D\xE2\x80\x94\xE2\x80\x94Hello, 2023年!",
     "\xE2\x80\x9C你好\xE2\x80\x9D\xE2\x80\x94\xE2\x80\x94Hello , 2023年 !",
     "\xE2\x80\x9C 你 好 \xE2\x80\x9D \xE2\x80\x94 \xE2\x80\x94 Hello , 2023 年 !",
     "\xE2\x80\x9C 你好 \xE2\x80\x9D \xE2\x80\x94 \xE2\x80\x94 Hello , 2023年 !"},
    // U+20000 (CJK Extension B) is not split by zh: Python compares it with "\u2000" "0".
    {"\xF0\xA0\x80\x80\xF0\xA0\x80\x80中", "\xF0\xA0\x80\x80\xF0\xA0\x80\x80中",
     "\xF0\xA0\x80\x80\xF0\xA0\x80\x80 中", "\xF0\xA0\x80\x80\xF0\xA0\x80\x80中"},
    // Kana is not in zh's table; 円 and 価 are.
    {"価格は1,000円です。", "価格は1,000円です。", "価 格 は1,000 円 です 。", "価格は1,000円です 。"},
    {"e.g. U.S.A. 5-4 $10 (x)[y]", "e . g . U . S . A . 5 - 4 $ 10 ( x ) [ y ]",
     "e . g . U . S . A . 5 - 4 $ 10 ( x ) [ y ]", "e . g . U . S . A . 5-4 $ 10 ( x ) [ y ]"},
    // U+2026 (…) is in zh's range and is punctuation for intl.
    {"Ünïcödé wörds… ok", "Ünïcödé wörds… ok", "Ünïcödé wörds … ok", "Ünïcödé wörds … ok"},
    // Tab and U+00A0 are Python whitespace.
    {"tab\there\xC2\xA0nbsp", "tab here nbsp", "tab here nbsp", "tab here nbsp"},
    // € (U+20AC) is in zh's range and a symbol for intl; "2%": '%' after a digit stays (intl).
    {"Price: €5.00, 3×4 ± 2%", "Price : €5.00 , 3×4 ± 2 %", "Price : € 5.00 , 3×4 ± 2 %",
     "Price : € 5.00 , 3 × 4 ± 2%"},
};

TEST(BleuTokenize, MatchesSacreBleuOnMixedText) {
  for (const auto& c : kCases) {
    EXPECT_EQ(bleu_tokenize(c.input, BleuTokenizer::k13a), c.t13a) << c.input;
    EXPECT_EQ(bleu_tokenize(c.input, BleuTokenizer::kZh), c.zh) << c.input;
    EXPECT_EQ(bleu_tokenize(c.input, BleuTokenizer::kIntl), c.intl) << c.input;
    EXPECT_EQ(bleu_tokenize(c.input, BleuTokenizer::kNone), c.input);
  }
}

TEST(BleuTokenize, RegexpRulesAreNonOverlappingLeftToRight) {
  // "a..." : rule 2 matches "a." then ".." (the second '.' is the non-digit), leaving the last
  // '.'; rule 3 then splits the remaining ".": tokens a . . .
  EXPECT_EQ(bleu_tokenize("a...", BleuTokenizer::k13a), "a . . .");
  // Digits on both sides keep '.' and ','; "1-" splits only after a digit.
  EXPECT_EQ(bleu_tokenize("3.14,2 x-1 1-x", BleuTokenizer::k13a), "3.14,2 x-1 1 - x");
  EXPECT_EQ(bleu_tokenize("  ", BleuTokenizer::k13a), "");
  EXPECT_EQ(bleu_tokenize("", BleuTokenizer::kZh), "");
}

TEST(BleuTokenize, ChineseCharacterRangesAsPythonEvaluatesThem) {
  EXPECT_TRUE(is_sacrebleu_chinese_char(U'中'));
  EXPECT_TRUE(is_sacrebleu_chinese_char(0x3400));
  EXPECT_TRUE(is_sacrebleu_chinese_char(0x9FBB));
  EXPECT_FALSE(is_sacrebleu_chinese_char(0x9FBC));  // after the release-4.1 block
  EXPECT_TRUE(is_sacrebleu_chinese_char(0xFF0C));   // full-width comma
  EXPECT_TRUE(is_sacrebleu_chinese_char(0x3002));   // ideographic full stop
  // u'\u20000'..u'\u2a6d6' is "\u2000" "0" .. "\u2a6d" "6": U+2001..U+2A6D for one character.
  EXPECT_FALSE(is_sacrebleu_chinese_char(0x2000));
  EXPECT_TRUE(is_sacrebleu_chinese_char(0x2001));
  EXPECT_TRUE(is_sacrebleu_chinese_char(0x2014));
  EXPECT_TRUE(is_sacrebleu_chinese_char(0x2A6D));
  EXPECT_FALSE(is_sacrebleu_chinese_char(0x2A6E));
  EXPECT_FALSE(is_sacrebleu_chinese_char(0x20000));  // Extension B itself is never split
  EXPECT_FALSE(is_sacrebleu_chinese_char(0x2F800));
  EXPECT_TRUE(is_sacrebleu_chinese_char(0x2F81));
  EXPECT_FALSE(is_sacrebleu_chinese_char(U'a'));
  EXPECT_FALSE(is_sacrebleu_chinese_char(0x3041));  // hiragana
}

TEST(BleuTokenize, NamesAndErrors) {
  EXPECT_EQ(parse_bleu_tokenizer("zh"), BleuTokenizer::kZh);
  EXPECT_STREQ(bleu_tokenizer_name(BleuTokenizer::kIntl), "intl");
  EXPECT_THROW(parse_bleu_tokenizer("ja-mecab"), Error);
  EXPECT_THROW(bleu_tokenize("bad \xFF byte", BleuTokenizer::k13a), Error);
  EXPECT_THROW(bleu_tokenize("bad \xC0\xAF", BleuTokenizer::kNone), Error);
}

}  // namespace
}  // namespace loom::eval
