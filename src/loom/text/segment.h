// loom::text sentence segmentation that preserves Markdown: a long field (a paragraph, a whole
// Markdown document such as Cosmopedia's `text`) is cut into segments; only sentence segments go
// to a sentence-level MT model, everything else (whitespace, line breaks, Markdown markers, code,
// URLs, numbers) is copied through, and reassemble() rebuilds the field around the translations.
//
// Rules (hand-written, English first; CJK 。！？ also end sentences):
//  - A sentence ends after . ! ? (plus closing quotes/brackets/emphasis) when whitespace and a
//    likely sentence start (not a lower-case letter, not , ; : ) ] }) follow; never after a known
//    abbreviation (Mr. Dr. St. vs. etc. Inc. Fig. ...; "No." only before a digit), a single
//    letter (initials: "J. K. Rowling"), a dotted acronym ("U.S.", "e.g.", "a.m.", "Ph.D."), or an
//    ellipsis ("..." / "…"). "3.14" and "v1.2.3" never split (no whitespace after the dot).
//    After 。！？｡ (and closers) a sentence always ends, no whitespace needed.
//  - A line break (\n, \r\n or a lone \r) always ends a segment and is copied (CRLF kept exactly).
//    A paragraph's soft line breaks therefore split a sentence that spans lines.
//  - Markdown (SegmentOptions::markdown): ATX heading markers (and a closing # run), list markers
//    (- * + 1. 1) with indentation, task boxes [ ] [x]), blockquote prefixes (>), thematic breaks
//    (--- *** ___), fenced code blocks (``` and ~~~, info string, up to the closing fence),
//    $$ display-math blocks, indented code blocks (4+ columns after a blank line, outside lists),
//    link reference definitions ("[id]: url") are copied whole. Tables: a row is a line starting
//    with '|', or a line containing '|' followed by a delimiter row (|---|:--:|), or a line
//    containing '|' that follows such rows; each cell's text is segmented on its own, pipes and
//    padding are copied, the delimiter row is copied.
//  - Inline (Markdown only): code spans `x` are copied and split the sentence around them (the
//    text before and after become separate segments; no placeholders are used). Links
//    [text](url) / [text][ref]: "[" and "](url)" copied, the text segmented. Images ![alt](src),
//    badge links [![alt](img)](url), HTML tags <...>, autolinks, bare URLs (http:// https:// ftp://
//    www.) and e-mail addresses are copied (they also split the sentence). Emphasis markers
//    (**bold**, _it_) and backslash escapes stay inside the sentence text.
//  - Unterminated fenced code (or $$) block: the rest of the document is code and is copied
//    (CommonMark behaviour). A lone backtick run without a closing run of the same length is
//    literal text.
//  - Markdown mode treats a line indented by 4+ columns after a blank line as code (CommonMark);
//    plain text with indented paragraphs should be segmented with markdown = false.
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
