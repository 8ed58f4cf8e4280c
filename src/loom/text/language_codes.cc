#include "loom/text/language_codes.h"

#include <unicode/locid.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "loom/core/error.h"

namespace loom::text {
namespace {

/// Subtags of a code: "__en__" -> {en}, ">>cmn_Hans<<" -> {cmn, Hans}, "zh-Hant-TW" -> {zh, Hant, TW}.
std::vector<std::string> subtags(std::string_view code) {
  auto strip = [&](std::string_view a, std::string_view b) {
    if (code.size() > a.size() + b.size() && code.substr(0, a.size()) == a && code.substr(code.size() - b.size()) == b)
      code = code.substr(a.size(), code.size() - a.size() - b.size());
  };
  strip("__", "__");
  strip(">>", "<<");
  std::vector<std::string> out;
  std::string cur;
  for (char c : code) {
    if (c == '_' || c == '-') {
      out.push_back(cur);
      cur.clear();
    } else if (std::isalnum(static_cast<unsigned char>(c))) {
      cur.push_back(c);
    } else {
      return {};
    }
  }
  out.push_back(cur);
  for (const auto& s : out)
    if (s.empty() || s.size() > 8) return {};
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

LanguageTag normalize_language(std::string_view code) {
  const std::vector<std::string> tags = subtags(code);
  LanguageTag out;
  if (tags.empty()) return out;
  const std::string lang = lower(tags[0]);
  if (lang.size() < 2 || lang.size() > 3 ||
      !std::all_of(lang.begin(), lang.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
    return out;
  std::string name = lang;
  for (std::size_t i = 1; i < tags.size(); ++i) {
    std::string t = lower(tags[i]);
    if (t.size() == 4 && std::isalpha(static_cast<unsigned char>(t[0]))) {
      t[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(t[0])));
    } else if (t.size() == 2 || (t.size() == 3 && std::isdigit(static_cast<unsigned char>(t[0])))) {
      for (char& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    } else {
      continue;  // variants and extensions do not pick a model code
    }
    name += "_" + t;
  }
  icu::Locale loc = icu::Locale::createCanonical(name.c_str());
  if (loc.isBogus() || loc.getLanguage()[0] == '\0') return out;
  UErrorCode status = U_ZERO_ERROR;
  icu::Locale full(loc);
  full.addLikelySubtags(status);
  if (U_FAILURE(status)) full = loc;
  out.language = full.getLanguage();
  out.script = full.getScript();
  out.region = full.getCountry();
  out.iso3 = full.getISO3Language();
  return out;
}

bool same_language(std::string_view a, std::string_view b) {
  const LanguageTag x = normalize_language(a), y = normalize_language(b);
  return !x.language.empty() && x.language == y.language && x.script == y.script;
}

std::optional<std::string> match_language_code(std::string_view code, const std::vector<std::string>& model_codes,
                                               const std::string& field) {
  if (std::find(model_codes.begin(), model_codes.end(), code) != model_codes.end()) return std::string(code);
  const LanguageTag want = normalize_language(code);
  if (want.language.empty()) return std::nullopt;
  std::vector<std::string> same, same_region;
  for (const std::string& m : model_codes) {
    const LanguageTag t = normalize_language(m);
    if (t.language != want.language || t.script != want.script) continue;
    same.push_back(m);
    if (t.region == want.region) same_region.push_back(m);
  }
  if (same.size() == 1) return same[0];
  if (same_region.size() == 1) return same_region[0];
  std::vector<std::string>& pool = same_region.empty() ? same : same_region;
  if (pool.empty()) return std::nullopt;
  // The model code written with the user's language subtag (or its ISO 639-3 form).
  const std::string raw = lower(subtags(code)[0]);
  for (const std::string& iso : {raw, want.iso3}) {
    std::vector<std::string> own;
    for (const std::string& m : pool)
      if (lower(subtags(m)[0]) == iso) own.push_back(m);
    if (own.size() == 1) return own[0];
  }
  // The code that writes the script out (opus-mt has both ">>cmn<<" and ">>cmn_Hans<<"; its
  // model card documents the latter).
  std::vector<std::string> scripted;
  for (const std::string& m : pool) {
    const auto tags = subtags(m);
    if (std::any_of(tags.begin() + 1, tags.end(), [&](const std::string& t) { return lower(t) == lower(want.script); }))
      scripted.push_back(m);
  }
  if (scripted.size() == 1) return scripted[0];
  fail(Where{"", 0, field}, "language '{}' is ambiguous for this model: it may mean {}; pass one of them", code,
       fmt::join(pool, ", "));
}

}  // namespace loom::text
