// loom::text sentence segmentation that preserves Markdown: a long field (a paragraph, a whole
// Markdown document such as Cosmopedia's `text`) is cut into segments; only sentence segments go
// to a sentence-level MT model, everything else (whitespace, line breaks, Markdown markers, code,
// URLs, numbers) is copied through, and reassemble() rebuilds the field around the translations.
//
// Markdown follows CommonMark 0.31.2 plus GFM tables / task lists (tests run the spec's examples).
// Sentence boundaries come from ICU's sentence BreakIterator (UAX #29) with loom's corrections
// (text/sentence_break.h: abbreviations from ICU's per-language lists plus loom's English list,
// initials, dotted acronyms, ellipses, 「...。」と, ". 3 cars"), in the language given by
// SegmentOptions::language (English when empty). They apply to each run of text between
// Markdown structure, code and URLs; "3.14" and "v1.2.3" never split.
// Rules:
//  - Translate segments never start or end with whitespace (Unicode spaces, zero-width space,
//    BOM included); leading , ; : ) ] } and trailing ( [ { are copied too. A run without any
//    letter (punctuation, symbols, digits; in Markdown mode also HTML entities such as &nbsp;)
//    is copied.
//  - A line break (\n, \r\n or a lone \r) always ends a segment and is copied (CRLF kept exactly).
//    A paragraph's soft line breaks therefore split a sentence that spans lines.
//  - Markdown (SegmentOptions::markdown), block level, line by line: copied whole are YAML front
//    matter at the very start (--- key: value ... --- / ...), fenced code blocks (``` and ~~~
//    with info string, up to a closing fence of the same char and at least the same length,
//    even across sloppy list indentation; a fence that is never closed ends with its
//    blockquote or list item, at top level it runs to the end), $$ display-math blocks,
//    indented code blocks (4+ columns beyond the enclosing list item's content column,
//    or after "> ", when not continuing a paragraph), raw HTML blocks whose content is not text
//    (<pre> <script> <style> <textarea> <!-- up to their end tag), thematic breaks (--- *** ___),
//    link reference definitions ("[id]: url"). Copied as prefixes: ATX heading markers (and a
//    closing # run), list markers (- * + 1. 1) with indentation, task boxes [ ] [x]),
//    blockquote markers (>), footnote labels ("[^1]: "). Tables: a row is a line starting with
//    '|', a line containing '|' followed by a delimiter row (|---|:--:|), or a line containing
//    '|' after such rows; each cell's text is segmented on its own, pipes and padding are
//    copied, the delimiter row is copied. A trailing hard-break backslash is copied.
//  - Markdown inline: code spans `x` are copied and split the sentence around them (the text
//    before and after become separate segments; no placeholders are used). Links [text](url) /
//    [text][ref]: "[" and "](url)" copied, the text segmented. Copied whole (also splitting the
//    sentence): images ![alt](src), badge links [![alt](img)](url), HTML tags and comments,
//    autolinks <...>, bare URLs (http:// https:// ftp:// www.), e-mail addresses, TeX math
//    $$...$$ and $...$ (pandoc's rule: no space inside the dollars and no digit after the
//    closing one, so "$5 and $10" stays text). Emphasis markers (**bold**, _it_), footnote
//    references [^1] and backslash escapes stay inside the sentence text.
//  - Unterminated fenced code block: the rest of the document (or of its blockquote / list
//    item) is code and is copied (CommonMark behaviour). Unterminated $$ or raw HTML blocks end
//    at the next blank line (so prose starting with "<pre>" is still translated). A backtick
//    run without a closing run of the same length is literal text.
//  - Markdown mode treats a line indented by 4+ columns after a blank line as code (CommonMark);
//    plain text with indented paragraphs should be segmented with markdown = false.
//  - Known differences from CommonMark (checked against the spec's 655 examples in the tests):
//    link destinations with nested parentheses beyond one level, reference definitions with
//    trailing text or multi-line titles, list-item columns inside nested blockquotes, HTML
//    blocks of CommonMark types 6/7 (text inside <div> etc. is translated, tags copied).
// Every step is linear in the input size (no back-tracking), so hostile input (1 MB lines, 100k
// nested markers, lone backticks) terminates quickly. Segments are never truncated.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loom::text {

/// A piece of a field: either text to translate (one sentence, no surrounding whitespace, no
/// Markdown block markers, never a line break) or bytes copied through verbatim (whitespace, line
/// breaks, Markdown markers, code, URLs, punctuation-only / number-only runs). segment_text never
/// returns an empty segment nor two adjacent copy-through segments (they are merged).
struct Segment {
  std::string text;
  bool translate = false;
};

/// Options of segment_text.
struct SegmentOptions {
  bool markdown = true;  ///< recognise Markdown structure (false: plain text, sentences + whitespace only)
  /// Language of the text, for sentence boundaries (ICU locale and abbreviations; any code
  /// text::normalize_language accepts, e.g. "de", "deu_Latn"); "" = English rules.
  std::string language;
};

/// Splits text into segments; concatenating every segment's text reproduces the input byte for
/// byte. Throws nothing for any valid UTF-8 input (the caller validates UTF-8; invalid bytes are
/// still kept, never dropped). Runs in time linear in text.size().
std::vector<Segment> segment_text(std::string_view text, const SegmentOptions& options = {});

/// Concatenates the segments, replacing the i-th translate=true segment by translations[i] and
/// copying the others. Throws loom::Error if translations.size() differs from the number of
/// translate segments.
std::string reassemble(const std::vector<Segment>& segments, const std::vector<std::string>& translations);

/// True if s has nothing worth translating: empty, whitespace only, or only punctuation, symbols
/// (incl. emoji, CJK/full-width punctuation) and digits, e.g. "", " \t", "---", "3.14", "1,000",
/// "2024-01-01", "12%", "$5", "10:30". Any letter (any script) makes it false ("5 km", "v1").
bool is_copy_through(std::string_view s);

}  // namespace loom::text
