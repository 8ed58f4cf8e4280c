// Issue 14 item 5: sentence boundaries from ICU's sentence BreakIterator (text/sentence_break.h)
// in English, Chinese, Japanese, Hindi, Arabic, Thai and German, through segment_text as
// `loom translate` uses it. Expected splits are written by hand from the languages' punctuation.
#include "loom/text/sentence_break.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/text/segment.h"

namespace loom::text {
namespace {

/// The translate segments of text in language (plain text, as a TXT line).
std::vector<std::string> sentences(const std::string& text, const std::string& language) {
  SegmentOptions o;
  o.markdown = false;
  o.language = language;
  std::vector<std::string> out;
  for (const Segment& s : segment_text(text, o))
    if (s.translate) out.push_back(s.text);
  return out;
}

using V = std::vector<std::string>;

TEST(SentenceBreak, English) {
  EXPECT_EQ(sentences("Mr. Smith met Dr. Jones at 10 a.m. today. They talked. It rained. 3 cars left.", "en"),
            (V{"Mr. Smith met Dr. Jones at 10 a.m. today.", "They talked.", "It rained.", "3 cars left."}));
  // "" is English; "eng_Latn" too.
  EXPECT_EQ(sentences("J. K. Rowling wrote it. Prof. X agreed.", ""), (V{"J. K. Rowling wrote it.", "Prof. X agreed."}));
  EXPECT_EQ(sentences("See Fig. 2 and No. 5. No one came.", "eng_Latn"), (V{"See Fig. 2 and No. 5.", "No one came."}));
}

TEST(SentenceBreak, ChineseAndJapanese) {
  EXPECT_EQ(sentences("你好。今天天气很好！你呢？我很好", "zh"), (V{"你好。", "今天天气很好！", "你呢？", "我很好"}));
  EXPECT_EQ(sentences("今日は晴れです。明日は雨でしょう！本当？", "ja"), (V{"今日は晴れです。", "明日は雨でしょう！", "本当？"}));
  // A closing quote after 。 continues the sentence when no whitespace follows (ICU alone splits).
  EXPECT_EQ(sentences("「こんにちは。」と言った。次へ。", "jpn_Jpan"), (V{"「こんにちは。」と言った。", "次へ。"}));
}

TEST(SentenceBreak, HindiDanda) {
  // U+0964 DEVANAGARI DANDA ends a sentence; U+0965 (double danda) too.
  EXPECT_EQ(sentences("यह एक वाक्य है। यह दूसरा वाक्य है। क्या यह तीसरा है?", "hi"),
            (V{"यह एक वाक्य है।", "यह दूसरा वाक्य है।", "क्या यह तीसरा है?"}));
  EXPECT_EQ(sentences("श्लोक एक॥ श्लोक दो॥", "hin_Deva"), (V{"श्लोक एक॥", "श्लोक दो॥"}));
}

TEST(SentenceBreak, Arabic) {
  // Full stop, U+061F ARABIC QUESTION MARK and '!'; U+060C ARABIC COMMA does not end a sentence.
  EXPECT_EQ(sentences("هذه جملة. هل هذه جملة أخرى؟ نعم، بالتأكيد!", "ar"),
            (V{"هذه جملة.", "هل هذه جملة أخرى؟", "نعم، بالتأكيد!"}));
  EXPECT_EQ(sentences("هذه جملة. وهذه جملة ثانية.", "arb_Arab"), (V{"هذه جملة.", "وهذه جملة ثانية."}));
}

TEST(SentenceBreak, Thai) {
  // Thai writes no sentence punctuation; a space separates phrases as well as sentences, so ICU
  // (and loom) keep a line without terminators whole instead of guessing.
  EXPECT_EQ(sentences("วันนี้อากาศดีมาก เราไปเที่ยวกันเถอะ", "th"), (V{"วันนี้อากาศดีมาก เราไปเที่ยวกันเถอะ"}));
  // With '?' / '!' it splits like any script.
  EXPECT_EQ(sentences("คุณสบายดีไหม? ฉันสบายดี!", "tha_Thai"), (V{"คุณสบายดีไหม?", "ฉันสบายดี!"}));
}

TEST(SentenceBreak, GermanAbbreviations) {
  EXPECT_EQ(sentences("Dr. Müller kam um 9 Uhr. Er sagte z. B. nichts. Das ist gut.", "de"),
            (V{"Dr. Müller kam um 9 Uhr.", "Er sagte z. B. nichts.", "Das ist gut."}));
  // ICU's German list ("vgl." "Nr." "Str." "ggf.") and loom's additions ("bzw." "ca."); the
  // whole word is matched ("sehr." is not "Hr.").
  EXPECT_EQ(sentences("Vgl. Nr. 5 bzw. die Str. ist ca. 3 km lang. Das war sehr. Er ging ggf. Heim.", "deu_Latn"),
            (V{"Vgl. Nr. 5 bzw. die Str. ist ca. 3 km lang.", "Das war sehr.", "Er ging ggf. Heim."}));
  // English rules do not know German abbreviations.
  EXPECT_EQ(sentences("Es kostet ca. Zehn Euro.", "en"), (V{"Es kostet ca. Zehn Euro."}));  // "ca." is English too
  EXPECT_EQ(sentences("Das ist usw. Etwas.", "en"), (V{"Das ist usw.", "Etwas."}));
  EXPECT_EQ(sentences("Das ist usw. Etwas.", "de"), (V{"Das ist usw. Etwas."}));
}

TEST(SentenceBreak, TatoebaLinesWhereUax29AloneIsWrong) {
  // data/tatoeba-cmn/cmn.txt: "OK." is in ICU's English abbreviation list but ends sentences.
  EXPECT_EQ(sentences("I'm OK. I agree.", "en"), (V{"I'm OK.", "I agree."}));
  // Dialogue: ICU puts the boundary after the next opening bracket / quote.
  EXPECT_EQ(sentences("「你几岁？」「我十六岁。」", "zh"), (V{"「你几岁？」", "「我十六岁。」"}));
  EXPECT_EQ(sentences("\"几点了?\"\"10点半了。\"", "zh"), (V{"\"几点了?\"", "\"10点半了。\""}));
  // A lower-case Latin word after 。 starts a new sentence.
  EXPECT_EQ(sentences("你漏写了一个撇号。it's和its是有分别的。", "zh"), (V{"你漏写了一个撇号。", "it's和its是有分别的。"}));
}

TEST(SentenceBreak, LocaleOfALanguageCode) {
  EXPECT_EQ(SentenceSplitter("").locale(), "en");
  EXPECT_EQ(SentenceSplitter("deu_Latn").locale(), "de");
  EXPECT_EQ(SentenceSplitter("zho_Hans").locale(), "zh");
  EXPECT_EQ(SentenceSplitter("cmn_Hans").locale(), "zh");
  EXPECT_EQ(SentenceSplitter("not a code").locale(), "en");
}

TEST(SentenceBreak, BoundariesAreByteOffsetsAndHostileInputIsLinear) {
  SentenceSplitter sp("en");
  EXPECT_EQ(sp.boundaries("Hi there. Ünïcode here. Ok"), (std::vector<std::size_t>{10, 26}));
  EXPECT_TRUE(sp.boundaries("").empty());
  // Invalid UTF-8 and a 2 MB line of ". " pairs terminate and keep offsets inside the text.
  std::string bad = "A\xFF. B\xC3. C";
  for (std::size_t p : sp.boundaries(bad)) EXPECT_LT(p, bad.size());
  std::string big;
  for (int i = 0; i < 200000; ++i) big += "Word. ";
  const auto b = sp.boundaries(big);
  EXPECT_EQ(b.size(), 199999u);
}

}  // namespace
}  // namespace loom::text
