// loom::pipeline text segments — the ONE place that turns a text (a TXT line, a JSONL field, a
// /v1/translations input) into engine inputs and puts the translations back together, so
// `loom translate`, the Python module and `loom serve` give the same bytes for the same text:
//  1. segment_for_translation: an optional leading Marian ">>xx<<" code is taken off (sent
//     before every segment instead), the text is cut by text::segment_text (sentence mode, in
//     the source language's rules, Markdown structure kept when markdown) or by lines (line
//     mode), and in Markdown mode sentences that the segmenter cut at an inline code span or a
//     URL are joined again (InlineUnit) so the model sees the whole sentence with the span in it;
//  2. the caller translates every text's engine inputs (SegmentedText::append_inputs) in one
//     engine call;
//  3. retranslate_lost_spans: a joined sentence whose translation lost one of its spans is
//     translated again in the parts the segmenter cut it into (one more engine call for all);
//  4. reassemble_text: segments and translations back into one text (text::reassemble).
// translate_segmented runs 2-4 for a list of texts with a translate function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "loom/text/segment.h"

namespace loom::pipeline {

/// What one engine input is.
enum class SegmentMode {
  kSentence,  ///< sentences found by text::segment_text (Markdown structure kept)
  kLine,      ///< each line of a field / TXT row as one input (surrounding whitespace copied)
};

/// Parses "sentence"/"line"; throws loom::Error (field "segment") otherwise.
SegmentMode parse_segment_mode(const std::string& s);

/// How texts are cut: everything of `loom translate`'s options that changes the engine inputs.
struct SegmentingOptions {
  SegmentMode mode = SegmentMode::kSentence;
  bool markdown = true;     ///< Markdown structure (sentence mode); also enables the inline-span join
  std::string source_lang;  ///< language for sentence boundaries ("" = English rules)
  /// Marian target-language codes of the model's ">>xx<<" tokens: a text starting with one of
  /// them has it taken off and sent before each of its segments. Empty: no such handling.
  std::vector<std::string> language_codes;
};

/// A sentence that the segmenter cut at inline code or a URL, joined again so that the model
/// sees the whole sentence with the span inside it.
struct InlineUnit {
  std::size_t ordinal = 0;           ///< index of the joined segment among the translate segments
  std::vector<text::Segment> parts;  ///< the segments it was joined from (the fallback)
  std::vector<std::string> spans;    ///< code spans / URLs that must come back verbatim
};

/// One text cut for translation.
struct SegmentedText {
  std::vector<text::Segment> segments;  ///< after the inline-span join
  std::vector<InlineUnit> units;        ///< the joined sentences (Markdown mode)
  std::string prefix;                   ///< Marian ">>xx<< " sent before each segment ("" = none)
  std::size_t count = 0;                ///< translate segments among `segments`
  /// Appends the engine inputs (prefix + text of every translate segment, in order) to batch.
  void append_inputs(std::vector<std::string>& batch) const;
};

/// Cuts text as `loom translate` does (see the file comment). Throws nothing for valid UTF-8.
SegmentedText segment_for_translation(std::string_view text, const SegmentingOptions& options);

/// What retranslate_lost_spans did.
struct InlineRejoinStats {
  int64_t kept = 0;      ///< joined sentences whose translation kept every span
  int64_t split = 0;     ///< joined sentences translated again in parts
  int64_t segments = 0;  ///< engine inputs of the second call
  int64_t calls = 0;     ///< engine calls made (0 or 1)
};

/// Engine: translations[i] of inputs[i] (same size). Throws what the engine throws.
using TranslateFn = std::function<std::vector<std::string>(const std::vector<std::string>&)>;

/// A text with where its first-pass translations start in the shared translations vector.
struct PlacedText {
  const SegmentedText* text = nullptr;
  std::size_t first = 0;
};

/// Step 3: for every joined sentence of `texts` whose translation (translations[first +
/// ordinal]) lost one of its spans, translates its parts again (one `translate` call for all)
/// and writes the parts' reassembled translation over it. Throws loom::Error when the engine
/// returns a wrong number of translations.
InlineRejoinStats retranslate_lost_spans(const std::vector<PlacedText>& texts, std::vector<std::string>& translations,
                                         const TranslateFn& translate);

/// Step 4: the text with translations[first .. first + text.count) in its translate segments.
std::string reassemble_text(const SegmentedText& text, const std::vector<std::string>& translations,
                            std::size_t first);

/// Steps 2-4 for `texts`: one engine call for all first-pass inputs (none when there is
/// nothing to translate), at most one more for lost spans; result[i] is texts[i] translated.
/// *per_segment (when given) receives the final translation of every translate segment, all
/// texts in order. Throws loom::Error for a wrong number of translations from the engine.
std::vector<std::string> translate_segmented(const std::vector<SegmentedText>& texts, const TranslateFn& translate,
                                             InlineRejoinStats* stats = nullptr,
                                             std::vector<std::string>* per_segment = nullptr);

}  // namespace loom::pipeline
