// loom::rag text analysis shared by indexing and querying: search terms for BM25 and sentence
// boundaries, both from ICU (word / sentence break iterators, Unicode scripts, case folding).
//
// Search terms: non-CJK words (ICU word boundaries, rule status "letter" or "number") are case
// folded and stripped of combining marks (NFD, drop Mn): "Café" -> "cafe". Runs of Han, Hiragana,
// Katakana and Hangul characters become overlapping character bigrams ("自由平等" -> "自由",
// "由平", "平等"; a single character stays a unigram), as Lucene's CJKAnalyzer does. Bigrams
// rather than ICU's dictionary word breaks: they need no dictionary, and a query is cut exactly
// as the same characters in a document are (dictionary segmentation depends on the context, so
// a query word can fail to match the same word segmented differently in a document).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::rag {

/// Search terms of `text` in order (duplicates kept). Invalid UTF-8 is replaced first.
std::vector<std::string> search_terms(std::string_view text);

/// Sentence boundaries of `text` as [begin, end) byte ranges covering all of it in order (ICU
/// sentence break iterator, root locale: . ! ? and 。！？ end sentences; a line break alone does
/// not). `text` must be valid UTF-8.
std::vector<std::pair<size_t, size_t>> sentence_spans(std::string_view text);

/// Word boundaries of `text` as [begin, end) byte ranges covering all of it (ICU word break
/// iterator; spaces and punctuation are their own spans). `text` must be valid UTF-8.
std::vector<std::pair<size_t, size_t>> word_spans(std::string_view text);

/// Byte offsets where each code point of `text` starts, plus text.size() at the end.
std::vector<size_t> code_point_starts(std::string_view text);

/// True when `text` contains a Han / Hiragana / Katakana / Hangul character.
bool has_cjk(std::string_view text);

}  // namespace loom::rag
