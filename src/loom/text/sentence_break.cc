#include "loom/text/sentence_break.h"

#include <unicode/brkiter.h>
#include <unicode/uchar.h>
#include <unicode/locid.h>
#include <unicode/udata.h>
#include <unicode/unistr.h>
#include <unicode/ures.h>
#include <unicode/utext.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_set>

#include "loom/text/language_codes.h"
#include "loom/core/utf8.h"

namespace loom::text {
namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers (never throw; an invalid byte decodes as U+FFFD of length 1)

using Cp = core::CodePoint;

Cp decode_at(std::string_view s, std::size_t i) { return core::utf8_decode_at(s, i); }

/// Start of the code point that ends right before e (e > 0).
std::size_t prev_start(std::string_view s, std::size_t e) { return core::utf8_start_before(s, 0, e); }

bool is_space_cp(char32_t c) { return core::is_separator_space(c); }

bool is_cjk_terminator(char32_t c) { return c == 0x3002 || c == 0xFF01 || c == 0xFF1F || c == 0xFF61; }

/// Closing quotes and brackets (UAX #29 Close) plus Markdown emphasis markers.
bool is_closer_cp(char32_t c) {
  if (c == '*' || c == '_') return true;
  const auto t = u_charType(static_cast<UChar32>(c));
  return t == U_END_PUNCTUATION || t == U_FINAL_PUNCTUATION || t == U_INITIAL_PUNCTUATION || c == '"' || c == '\'';
}

// ---------------------------------------------------------------------------------------------
// Abbreviations

/// loom's English abbreviations (without the final '.'), kept beside ICU's English list, which
/// lacks many of them ("Inc.", "St.", "Fig.", "Jr.", "e.g.", "etc." ...).
const char* const kEnglish[] = {
    "Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "St", "Sr", "Jr", "vs", "etc", "Inc", "Ltd", "Co", "Corp", "Fig",
    "Figs", "Vol", "Vols", "pp", "Ed", "Eds", "Gen", "Gov", "Sen", "Rep", "Rev", "Hon", "Sens", "Reps", "Govs",
    "Capt", "Col", "Lt", "Sgt", "Cpl", "Maj", "Adm", "Mt", "Ft", "Ave", "Blvd", "Rd", "approx", "Jan", "Feb",
    "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "Dept", "Univ", "Assn", "Bros", "cf",
    "al", "ca", "viz", "Messrs", "Mme", "Mlle", "Supt", "Insp", "Det", "Pres", "Esq", "Op", "Nos", "fig", "vol",
    "ed", "eq", "Eq", "sec", "Sec", "est", "incl", "dept", "gov", "Ph", "Mssrs"};

/// Entries of ICU's English list that are also words ending many sentences ("I'm OK.", "Log
/// in.", "Let's go."): not treated as abbreviations.
bool is_english_word(const std::string& a) {
  static const std::unordered_set<std::string> kWords = {
      "OK", "Ok", "Is", "In", "On", "To", "Go", "As", "By", "Up", "All", "Job", "Joe", "Long", "Hat", "Link", "Or",
      "Id", "Do", "Act", "Var", "Cont", "Card", "Jam", "Mart", "Diff", "Lib", "Pro", "Min", "Est", "Num", "Misc",
      "Exec", "exec", "Def", "Adv", "Comm", "Lev", "Fri", "Yr", "AA", "AB", "AD", "PC", "PP", "VS", "DC", "MR",
      "Ex", "Cap"};
  return kWords.count(a) > 0;
}

/// loom's German additions to ICU's German list (which has "Dr." "Nr." "vgl." "z.B." but not these).
const char* const kGerman[] = {"bzw", "usw", "ca", "sog", "etc", "Mio", "Mrd", "Tel", "inkl", "zzgl", "ebd", "Jh"};

/// Abbreviations that end no sentence only before a number ("No. 5", "Art. 3", "p. 12").
bool is_numeric_abbreviation(std::string_view t) {
  return t == "No" || t == "no" || t == "Nr" || t == "nr" || t == "Art" || t == "art" || t == "p" || t == "Ch" ||
         t == "ch";
}

/// ICU's sentence-break suppressions of a language (CLDR), without the final '.'; {} if ICU has
/// none for it (the resource lookup would fall back to the default locale's list).
std::vector<std::string> icu_suppressions(const std::string& language) {
  std::vector<std::string> out;
  UErrorCode st = U_ZERO_ERROR;
  UResourceBundle* b = ures_open(U_ICUDATA_NAME U_TREE_SEPARATOR_STRING "brkitr", language.c_str(), &st);
  if (U_FAILURE(st)) return out;
  const char* actual = ures_getLocaleByType(b, ULOC_ACTUAL_LOCALE, &st);
  if (U_SUCCESS(st) && actual != nullptr && std::string(actual).substr(0, language.size()) == language) {
    UResourceBundle* ex = ures_getByKey(b, "exceptions", nullptr, &st);
    UResourceBundle* sb = ures_getByKey(ex, "SentenceBreak", nullptr, &st);
    while (U_SUCCESS(st) && ures_hasNext(sb)) {
      int32_t len = 0;
      const UChar* s = ures_getNextString(sb, &len, nullptr, &st);
      if (U_FAILURE(st)) break;
      std::string u8;
      icu::UnicodeString(s, len).toUTF8String(u8);
      if (u8.size() > 1 && u8.back() == '.') out.push_back(u8.substr(0, u8.size() - 1));
    }
    ures_close(sb);
    ures_close(ex);
  }
  ures_close(b);
  return out;
}

/// "U.S", "e.g", "a.m", "Ph.D": letters in groups of 1-2 separated by dots (the final dot is the
/// candidate full stop, not part of t).
bool is_dotted_acronym(std::string_view t) {
  if (t.find('.') == std::string_view::npos) return false;
  std::size_t group = 0;
  for (char c : t) {
    if (c == '.') {
      if (group == 0) return false;
      group = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      if (++group > 2) return false;
    } else {
      return false;
    }
  }
  return group > 0;
}

/// A single letter of any script ("J", "z", "Ж").
bool is_single_letter(std::string_view t) {
  if (t.empty()) return false;
  const Cp c = decode_at(t, 0);
  return c.len == t.size() && u_isalpha(static_cast<UChar32>(c.cp));
}

/// Prototype iterator and abbreviations of one ICU locale, built once per process.
struct LocaleData {
  std::unique_ptr<icu::BreakIterator> prototype;
  std::unordered_set<std::string> abbreviations;
};

const LocaleData& locale_data(const std::string& locale) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<LocaleData>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[locale];
  if (!slot) {
    slot = std::make_unique<LocaleData>();
    UErrorCode st = U_ZERO_ERROR;
    slot->prototype.reset(icu::BreakIterator::createSentenceInstance(icu::Locale(locale.c_str()), st));
    if (U_FAILURE(st) || !slot->prototype) {
      st = U_ZERO_ERROR;
      slot->prototype.reset(icu::BreakIterator::createSentenceInstance(icu::Locale::getRoot(), st));
    }
    for (auto& a : icu_suppressions(locale))
      if (!(locale == "en" && is_english_word(a))) slot->abbreviations.insert(std::move(a));
    if (locale == "en")
      for (const char* a : kEnglish) slot->abbreviations.insert(a);
    if (locale == "de")
      for (const char* a : kGerman) slot->abbreviations.insert(a);
  }
  return *slot;
}

}  // namespace

struct SentenceSplitter::Impl {
  std::string locale;
  const LocaleData* data = nullptr;
  std::unique_ptr<icu::BreakIterator> it;
  UText* ut = nullptr;
  ~Impl() {
    if (ut != nullptr) utext_close(ut);
  }

  /// True if the full stop at dot (text[dot] == '.', a single one) ends no sentence: the word
  /// before it is an abbreviation, initial or dotted acronym. next: first code point after the
  /// whitespace that follows.
  bool abbreviation_before(std::string_view s, std::size_t dot, char32_t next) const {
    std::size_t t = dot;
    while (t > 0 && dot - t < 64) {
      const std::size_t p = prev_start(s, t);
      if (is_space_cp(decode_at(s, p).cp)) break;
      t = p;
    }
    std::string_view tok = s.substr(t, dot - t);
    while (!tok.empty() && std::string_view("(\"'[*_").find(tok.front()) != std::string_view::npos) tok.remove_prefix(1);
    for (const char* open : {"\xE2\x80\x9C", "\xE2\x80\x98", "\xC2\xAB", "\xE2\x80\x9E"}) {  // “ ‘ « „
      const std::string_view o(open);
      if (tok.substr(0, o.size()) == o) tok.remove_prefix(o.size());
    }
    if (tok.empty()) return false;
    if (is_numeric_abbreviation(tok)) return next >= '0' && next <= '9';
    return data->abbreviations.count(std::string(tok)) > 0 || is_single_letter(tok) || is_dotted_acronym(tok);
  }
};

SentenceSplitter::SentenceSplitter(std::string_view language) : impl_(std::make_unique<Impl>()) {
  const LanguageTag tag = normalize_language(language.empty() ? std::string_view("en") : language);
  impl_->locale = tag.language.empty() ? std::string("en") : tag.language;
  impl_->data = &locale_data(impl_->locale);
  impl_->it.reset(impl_->data->prototype->clone());
}

SentenceSplitter::~SentenceSplitter() = default;
SentenceSplitter::SentenceSplitter(SentenceSplitter&&) noexcept = default;

const std::string& SentenceSplitter::locale() const { return impl_->locale; }

std::vector<std::size_t> SentenceSplitter::boundaries(std::string_view s) {
  std::vector<std::size_t> out;
  if (s.empty()) return out;
  Impl& m = *impl_;
  UErrorCode st = U_ZERO_ERROR;
  m.ut = utext_openUTF8(m.ut, s.data(), static_cast<int64_t>(s.size()), &st);
  if (U_FAILURE(st)) return out;
  m.it->setText(m.ut, st);
  if (U_FAILURE(st)) return out;
  std::vector<std::size_t> icu;
  for (int32_t b = m.it->next(); b != icu::BreakIterator::DONE; b = m.it->next()) {
    if (b > 0 && static_cast<std::size_t>(b) < s.size()) icu.push_back(static_cast<std::size_t>(b));
  }
  // Candidates: ICU's boundaries plus '.' + whitespace + a digit or symbol (see the header).
  std::vector<std::size_t> cand = icu;
  for (std::size_t i = 0; i + 2 < s.size(); ++i) {
    if (s[i] != '.' || (i > 0 && s[i - 1] == '.')) continue;
    std::size_t k = i + 1;
    while (k < s.size() && (s[k] == ' ' || s[k] == '\t')) ++k;
    if (k == i + 1 || k >= s.size()) continue;
    // Not a letter (ICU decides those), nor what continues a sentence (", ; : ) ] } - – —").
    const char32_t nc = decode_at(s, k).cp;
    if (u_isalpha(static_cast<UChar32>(nc)) || is_space_cp(nc) || nc == 0x2013 || nc == 0x2014 ||
        (nc < 0x80 && std::string_view(",;:)]}-").find(static_cast<char>(nc)) != std::string_view::npos))
      continue;
    // The word before must hold a letter ("rained. 3", not "1. 2").
    const Cp before = i > 0 ? decode_at(s, prev_start(s, i)) : Cp{' ', 1};
    if (!u_isalpha(static_cast<UChar32>(before.cp))) continue;
    cand.push_back(k);
  }
  std::sort(cand.begin(), cand.end());
  cand.erase(std::unique(cand.begin(), cand.end()), cand.end());

  for (std::size_t p : cand) {
    // UAX #29 counts opening brackets as "Close" too: in 「你几岁？」「我十六岁。」 ICU breaks after the
    // second 「. The boundary goes before such openers; in ?"" before the second quote.
    while (p > 0 && u_charType(static_cast<UChar32>(decode_at(s, prev_start(s, p)).cp)) == U_START_PUNCTUATION)
      p = prev_start(s, p);
    if (p >= 2 && s[p - 1] == '"' && s[p - 2] == '"') --p;
    if (p == 0) continue;
    // Walk back over the whitespace and closers before p to the terminator group.
    std::size_t e = p;
    while (e > 0 && is_space_cp(decode_at(s, prev_start(s, e)).cp)) e = prev_start(s, e);
    const bool spaced = e < p;
    std::size_t g = e;
    bool closers = false;
    while (g > 0 && is_closer_cp(decode_at(s, prev_start(s, g)).cp)) {
      g = prev_start(s, g);
      closers = true;
    }
    // Emphasis closers right after p ("**Bold.** Next" - ICU breaks before the "**"): move p
    // past them and the whitespace after; no boundary if no whitespace follows.
    std::size_t q = p;
    if (!spaced && q < s.size() && (s[q] == '*' || s[q] == '_')) {
      while (q < s.size() && (s[q] == '*' || s[q] == '_')) ++q;
      const std::size_t after = q;
      while (q < s.size() && is_space_cp(decode_at(s, q).cp)) q += decode_at(s, q).len;
      if (q == after || q >= s.size()) continue;
      closers = true;
      g = e;
    }
    std::size_t dots = 0, t = g;
    bool ellipsis = false, other = false, cjk = false;
    while (t > 0) {
      const std::size_t pp = prev_start(s, t);
      const char32_t c = decode_at(s, pp).cp;
      if (c == '.') ++dots;
      else if (c == 0x2026) ellipsis = true;
      else if (is_cjk_terminator(c)) cjk = true;
      else if (c == '!' || c == '?') other = true;
      else break;
      t = pp;
    }
    if (ellipsis || dots >= 2) continue;  // "Well... Maybe" stays one segment
    // A lower-case word after ? or ! continues the sentence ("“Really?” she asked"); UAX #29
    // does this for '.' only.
    if (!cjk && q < s.size() && u_islower(static_cast<UChar32>(decode_at(s, q).cp))) continue;
    // 「こんにちは。」と言った, but 「你几岁？」「我十六岁。」 is two sentences.
    if (cjk && closers && !spaced && q == p && q < s.size() &&
        u_charType(static_cast<UChar32>(decode_at(s, q).cp)) != U_START_PUNCTUATION && s[q] != '"')
      continue;
    if (dots == 1 && !other && !closers) {
      const std::size_t dot = g - 1;
      const char32_t next = q < s.size() ? decode_at(s, q).cp : 0;
      if (m.abbreviation_before(s, dot, next)) continue;
    }
    if (out.empty() || q > out.back()) {
      if (q < s.size()) out.push_back(q);
    }
  }
  return out;
}

}  // namespace loom::text
