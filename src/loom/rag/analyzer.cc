#include "loom/rag/analyzer.h"

#include <memory>

#include <unicode/brkiter.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/uscript.h>
#include <unicode/unistr.h>
#include <unicode/utext.h>

#include "loom/core/error.h"
#include "loom/core/utf8.h"

namespace loom::rag {
namespace {

bool is_cjk_cp(UChar32 c) {
  UErrorCode st = U_ZERO_ERROR;
  const UScriptCode s = uscript_getScript(c, &st);
  return s == USCRIPT_HAN || s == USCRIPT_HIRAGANA || s == USCRIPT_KATAKANA || s == USCRIPT_HANGUL;
}

// Boundaries of `text` from a fresh break iterator of the given kind over a UTF-8 UText, so the
// offsets are byte offsets. status_out (optional) gets each span's rule status.
std::vector<std::pair<size_t, size_t>> spans(std::string_view text, bool sentence,
                                             std::vector<int32_t>* status_out = nullptr) {
  std::vector<std::pair<size_t, size_t>> out;
  if (text.empty()) return out;
  UErrorCode st = U_ZERO_ERROR;
  UText* ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &st);
  if (U_FAILURE(st)) fail("ICU: cannot open text: {}", u_errorName(st));
  std::unique_ptr<icu::BreakIterator> it(
      sentence ? icu::BreakIterator::createSentenceInstance(icu::Locale::getRoot(), st)
               : icu::BreakIterator::createWordInstance(icu::Locale::getRoot(), st));
  if (U_FAILURE(st)) {
    utext_close(ut);
    fail("ICU: no break iterator: {}", u_errorName(st));
  }
  it->setText(ut, st);
  int32_t prev = it->first();
  for (int32_t b = it->next(); b != icu::BreakIterator::DONE; b = it->next()) {
    out.emplace_back(static_cast<size_t>(prev), static_cast<size_t>(b));
    if (status_out) status_out->push_back(it->getRuleStatus());
    prev = b;
  }
  utext_close(ut);
  return out;
}

std::string fold(std::string_view word) {
  UErrorCode st = U_ZERO_ERROR;
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(word.data(), static_cast<int32_t>(word.size())));
  u.foldCase();
  const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(st);
  icu::UnicodeString d = nfd->normalize(u, st);
  if (U_FAILURE(st)) d = u;
  icu::UnicodeString kept;
  for (int32_t i = 0; i < d.length();) {
    const UChar32 c = d.char32At(i);
    if (u_charType(c) != U_NON_SPACING_MARK) kept.append(c);
    i += U16_LENGTH(c);
  }
  std::string out;
  kept.toUTF8String(out);
  return out;
}

}  // namespace

std::vector<size_t> code_point_starts(std::string_view text) {
  std::vector<size_t> out;
  for (size_t i = 0; i < text.size(); ++i)
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) out.push_back(i);
  out.push_back(text.size());
  return out;
}

bool has_cjk(std::string_view text) {
  for (int32_t i = 0; i < static_cast<int32_t>(text.size());) {
    UChar32 c;
    U8_NEXT(text.data(), i, static_cast<int32_t>(text.size()), c);
    if (c >= 0 && is_cjk_cp(c)) return true;
  }
  return false;
}

std::vector<std::pair<size_t, size_t>> sentence_spans(std::string_view text) { return spans(text, true); }
std::vector<std::pair<size_t, size_t>> word_spans(std::string_view text) { return spans(text, false); }

std::vector<std::string> search_terms(std::string_view raw) {
  std::string fixed;
  if (!core::is_valid_utf8(raw)) {
    fixed = core::utf8_replace_invalid(raw);
    raw = fixed;
  }
  std::vector<std::string> terms;
  // First cut the text into CJK runs and the rest; the rest goes through the word iterator.
  std::vector<std::string> run;  // code points of the current CJK run
  auto flush_run = [&] {
    if (run.size() == 1) terms.push_back(run[0]);
    for (size_t i = 0; i + 1 < run.size(); ++i) terms.push_back(run[i] + run[i + 1]);
    run.clear();
  };
  size_t other_begin = 0;
  auto flush_other = [&](size_t end) {
    if (end <= other_begin) return;
    const std::string_view part = raw.substr(other_begin, end - other_begin);
    std::vector<int32_t> status;
    const auto sp = spans(part, false, &status);
    for (size_t k = 0; k < sp.size(); ++k) {
      // UBRK_WORD_NUMBER [100,200), LETTER [200,300), KANA [300,400), IDEO [400,500).
      if (status[k] < 100) continue;
      std::string t = fold(part.substr(sp[k].first, sp[k].second - sp[k].first));
      if (!t.empty()) terms.push_back(std::move(t));
    }
  };
  int32_t i = 0;
  const int32_t n = static_cast<int32_t>(raw.size());
  while (i < n) {
    const int32_t start = i;
    UChar32 c;
    U8_NEXT(raw.data(), i, n, c);
    if (c >= 0 && is_cjk_cp(c) && u_isalpha(c)) {
      if (run.empty()) flush_other(static_cast<size_t>(start));
      run.emplace_back(raw.substr(static_cast<size_t>(start), static_cast<size_t>(i - start)));
      other_begin = static_cast<size_t>(i);
    } else if (!run.empty()) {
      flush_run();
      other_begin = static_cast<size_t>(start);
    }
  }
  if (!run.empty()) flush_run();
  else flush_other(raw.size());
  return terms;
}

}  // namespace loom::rag
