// loom::text sentence boundaries in any language: ICU's sentence BreakIterator (Unicode UAX #29
// rules, Debian libicu) proposes boundaries; a small layer on top corrects the cases where
// UAX #29 alone is wrong for translation input. segment_text (text/segment.h) calls this on
// every run of sentence text it finds between Markdown structure, code and URLs.
//
// On top of ICU (each is a test in tests/text/sentence_break_test.cc):
//  - No boundary after an abbreviation: the word before a single '.' is in ICU's suppression
//    list for the language (CLDR "exceptions/SentenceBreak": "Dr.", "Prof.", "bzw." ...) or in
//    loom's English list (titles, "Inc.", "Fig.", "U.S.", "a.m.", month names ...; used when the
//    language is English or not given) or German additions ("bzw." "usw." "ca."). Matching is whole-word and case-sensitive: ICU's own
//    FilteredBreakIterator matches suffixes in ICU 72 ("sehr." ends with German "hr."), so loom
//    does not use it. "No." "Nr." "Art." "p." "Ch." count only before a digit.
//    ICU's English entries that are also common words ("OK." "In." "Go.") are not used.
//  - Dialogue: the boundary goes before an opening bracket/quote that UAX #29 counts as closing
//    (「你几岁？」|「我十六岁。」, "几点了?"|"10点半了。").
//  - No boundary after a single letter and '.' (initials "J. K. Rowling", German "z. B."), after a
//    dotted acronym ("e.g." "Ph.D."), after an ellipsis ("..." "…"), nor after 。！？ plus a closing
//    quote when no whitespace follows (「こんにちは。」と言った).
//  - A boundary after '.' + whitespace + a digit or symbol ("It rained. 3 cars left.", ". @user
//    said"), which UAX #29 rule SB8 joins because a lower-case word follows later, unless the
//    word before is an abbreviation ("No. 5").
//  - No boundary before a lower-case letter after ? or ! ("“Really?” she asked"), as UAX #29
//    already does after '.' (after 。！？ a Latin lower-case word does start a sentence).
//  - Markdown emphasis closers ("**Bold.** Next", "_Yes._ No") stay with the sentence before.
// Linear in the text size.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

/// Finds sentence boundaries; one instance per thread (it holds an ICU iterator).
class SentenceSplitter {
 public:
  /// language: any code normalize_language accepts ("en", "de", "deu_Latn", "zho_Hans"); ""
  /// means English rules (the default of `loom translate` when the source language is unknown).
  explicit SentenceSplitter(std::string_view language = "");
  ~SentenceSplitter();
  SentenceSplitter(SentenceSplitter&&) noexcept;

  /// Byte offsets p in (0, text.size()) where a sentence starts (the whitespace between two
  /// sentences belongs to the one before). text holds no line break; invalid UTF-8 is allowed
  /// (ICU reads it as U+FFFD). Never throws for any input except std::bad_alloc.
  std::vector<std::size_t> boundaries(std::string_view text);

  /// The ICU locale used ("en", "de", "ja", "root").
  const std::string& locale() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::text
