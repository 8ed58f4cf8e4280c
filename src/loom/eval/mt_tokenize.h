// The tokenizers BLEU is computed on, with sacreBLEU 2.x's exact definitions (github
// mjpost/sacrebleu, sacrebleu/tokenizers/): `13a` (mteval-v13a.pl, WMT's standard), `zh`
// (CJK characters split one by one, 13a on the rest), `intl` (mteval-v14 international: split at
// Unicode punctuation and symbols) and `none`. Text is processed as Unicode code points, as in
// Python; "whitespace" is Python's str.isspace() set.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loom::eval {

/// A BLEU tokenizer, named as sacreBLEU's --tokenize values.
enum class BleuTokenizer {
  k13a,   ///< "13a": mteval-v13a (sacreBLEU's default)
  kZh,    ///< "zh": sacreBLEU's TokenizerZh (default for Chinese targets)
  kIntl,  ///< "intl": mteval-v14 international tokenization
  kNone,  ///< "none": the text as it is (whitespace-split only)
};

/// Parses "13a", "zh", "intl" or "none"; throws loom::Error naming the accepted values otherwise.
BleuTokenizer parse_bleu_tokenizer(std::string_view name);

/// The sacreBLEU name of tok ("13a", "zh", "intl", "none"), as written in signatures.
const char* bleu_tokenizer_name(BleuTokenizer tok);

/// Tokenizes one line (valid UTF-8) as sacreBLEU's tokenizer of that name does, returning the
/// tokens joined by single spaces (none: the line unchanged). Throws loom::Error on invalid UTF-8.
///
/// 13a: drops "<skipped>", joins "-\n", turns newlines into spaces, unescapes &quot; &amp; &lt;
/// &gt; (in that order), pads the line with a space on each side, then applies the regexp
/// tokenizer (sacreBLEU's TokenizerRegexp, each rule a left-to-right non-overlapping substitution):
///   1. each of  space ! " # $ % & ( ) * + / : ; < = > ? @ [ \ ] ^ _ ` { | } ~  becomes " c ";
///   2. `.` or `,` preceded by a non-digit gets spaces: "x." -> "x . ";
///   3. `.` or `,` followed by a non-digit gets spaces: ".x" -> " . x";
///   4. `-` preceded by a digit: "1-" -> "1 - ";
/// and finally splits on whitespace and joins with single spaces.
/// zh: strips surrounding whitespace, puts spaces around every code point that
/// is_sacrebleu_chinese_char() accepts, then the regexp tokenizer above (without 13a's padding,
/// unescaping or <skipped> removal).
/// intl: (\P{N})(\p{P}) -> "\1 \2 ", then (\p{P})(\P{N}) -> " \1 \2", then (\p{S}) -> " \1 ",
/// then whitespace split/join (Unicode categories from the Python `regex` module, see
/// scripts/gen_unicode_classes.py).
std::string bleu_tokenize(std::string_view line, BleuTokenizer tok);

/// True when sacreBLEU's TokenizerZh treats code point c as a Chinese character (split off as
/// its own token). This reproduces its table of ranges *as Python evaluates it*: the table
/// writes the supplementary-plane ranges as u'\u20000'..u'\u2a6d6' and u'\u2f800'..u'\u2fa1d',
/// which Python reads as two-character strings ("\u2000" + "0" ...), so for single characters
/// those entries mean U+2001..U+2A6D (general punctuation such as “ ” — …, arrows, maths symbols
/// and more) and U+2F81..U+2FA1, and no character outside the BMP (e.g. CJK Extension B
/// U+20000..) is split. The other ranges are as written: U+3400..4DB5, 4E00..9FA5, 9FA6..9FBB,
/// F900..FA2D, FA30..FA6A, FA70..FAD9, FF00..FFEF, 2E80..2EFF, 3000..303F, 31C0..31EF,
/// 2F00..2FDF, 2FF0..2FFF, 3100..312F, 31A0..31BF, FE10..FE1F, FE30..FE4F, 2600..26FF,
/// 2700..27BF, 3200..32FF, 3300..33FF.
bool is_sacrebleu_chinese_char(char32_t c);

/// Python's str.split() with no argument: the maximal runs of non-whitespace code points
/// (core::is_unicode_space). Code points come from core::utf8_to_code_points.
std::vector<std::u32string> split_python_whitespace(std::u32string_view s);

}  // namespace loom::eval
