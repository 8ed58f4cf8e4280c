// loom::text language codes: the one place where a user's spelling of a language ("zh",
// "zh-TW", "zho_Hans", "cmn_Hans", "deu", "de_DE", "pt_br") is matched to a model's own codes
// (NLLB "zho_Hans", Marian opus-mt ">>cmn_Hans<<" tokens, M2M100 "__zh__"). The table is ICU's
// (CLDR): language aliases (ISO 639-3 -> 639-1 where one exists, deprecated codes, macrolanguage
// members such as cmn/arb/pes/zsm -> their macrolanguage zh/ar/fa/ms) and likely subtags (the
// script and region a bare language implies: zh -> Hans/CN, zh-TW -> Hant, sr -> Cyrl).
// Used by the tokenizers' set_languages, so `loom translate`, `loom serve` and the Python module
// accept the same spellings. Also gives the ICU locale of a code (sentence splitting).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

/// A language code after CLDR canonicalisation and likely-subtag expansion.
struct LanguageTag {
  std::string language;  ///< ICU canonical language subtag ("zh", "ar", "yue"); "" if not a code
  std::string script;    ///< ISO 15924 script ("Hans", "Latn"), from the code or its likely subtags
  std::string region;    ///< region ("CN", "TW"), from the code or its likely subtags
  std::string iso3;      ///< ISO 639-3 (or -2/T) code of language ("zho", "ara"); "" if unknown
};

/// Normalises a code written as BCP 47 ("zh-Hant-TW"), ICU/POSIX ("zh_TW"), NLLB ("zho_Hans"),
/// Marian ("cmn_Hans", "pt_br") or M2M100 ("__en__"). Case and '-'/'_' are free. Returns a tag with
/// empty language for strings that are not language codes. Never throws.
LanguageTag normalize_language(std::string_view code);

/// Which of the model's codes `code` means: the code itself if the model has it (exact match);
/// else the model codes whose normalised language and script equal code's, narrowed by region,
/// then to the one whose language subtag is the one written, then its ISO 639-3 form (NLLB
/// "aka_Latn" for "ak", "twi_Latn" for "twi", although both normalise to "ak"), then to the one
/// that writes the script out (opus-mt "cmn_Hans" rather than "cmn" for "zh"). Returns nullopt when nothing matches; throws
/// loom::Error (field `field`) when several codes match equally, naming them.
std::optional<std::string> match_language_code(std::string_view code, const std::vector<std::string>& model_codes,
                                               const std::string& field = "language");

/// True if a and b name the same language and script after normalisation ("zh" and "zho_Hans").
bool same_language(std::string_view a, std::string_view b);

/// Sentence for error messages: which other spellings are accepted.
inline constexpr const char* kLanguageSpellings =
    "ISO 639-1/639-3 codes and BCP 47 tags are matched to these (e.g. 'zh', 'zh-TW', 'zho_Hans', 'cmn_Hans')";

}  // namespace loom::text
