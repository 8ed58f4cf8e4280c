// loom::data — parallel text for training translation models: reading (TSV or two aligned
// files), cleaning with a report of everything dropped, and a deterministic train/valid/test
// split that guarantees no valid/test pair or source sentence is also in train.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::data {

/// One sentence pair and where it came from (for error messages and reports).
struct SentencePair {
  std::string src;     ///< source sentence (UTF-8, as read, without the line ending)
  std::string tgt;     ///< target sentence
  std::string file;    ///< file the pair was read from (the source file for two-file input)
  int64_t line = 0;    ///< 1-based line number in that file
};

/// Reads a TSV file of `src<TAB>tgt[<TAB>anything...]` lines (columns after the second are
/// ignored, e.g. Tatoeba's ids or attribution). A UTF-8 byte-order mark at the start of the
/// file and a '\r' before '\n' are tolerated; blank lines are skipped. Lines that are not valid
/// UTF-8 are kept as read: clean_pairs() counts and drops them, so nothing is dropped silently.
/// Throws loom::Error naming file:line when the file cannot be opened, a non-blank line has no
/// TAB (field 'tgt' missing), or a line contains a NUL byte.
std::vector<SentencePair> read_parallel_tsv(const std::string& path);

/// Reads two line-aligned files (line i of `src_path` translates line i of `tgt_path`). A BOM
/// on either file and CRLF line endings are tolerated. Pairs where both lines are blank are
/// skipped; a pair with one empty side is kept for clean_pairs() to count. Throws loom::Error
/// when a file cannot be opened, a line contains a NUL byte (file:line), or the line counts
/// differ (the message names both files and both counts).
std::vector<SentencePair> read_parallel_files(const std::string& src_path,
                                              const std::string& tgt_path);

/// Writes pairs as `src<TAB>tgt` lines (TAB and newlines inside a sentence are replaced by a
/// space, so the file reads back as the same pairs). Written to `path`.tmp then renamed.
/// Throws loom::Error on an I/O failure.
void write_parallel_tsv(const std::string& path, const std::vector<SentencePair>& pairs);

/// Length of a sentence for cleaning; the default (nullptr) counts Unicode code points.
using LengthFn = std::function<int64_t(std::string_view)>;

/// Number of Unicode code points of valid UTF-8 `s` (bytes that are not continuation bytes).
int64_t count_code_points(std::string_view s);

/// What clean_pairs() removes. Lengths are in the units of the LengthFn (code points by
/// default). Rules apply in this order; a pair is counted under the first rule it fails.
struct CleanOptions {
  bool drop_invalid_utf8 = true;  ///< drop pairs with a side that is not well-formed UTF-8
  bool drop_empty = true;         ///< drop pairs with a side that is empty after trimming spaces
  int64_t max_len = 0;            ///< drop pairs with a side longer than this; 0 = no limit
  double max_ratio = 0.0;         ///< drop when max(len)/min(len) > this (min len >= 1); 0 = off
  bool dedupe = true;             ///< keep only the first of identical (src, tgt) pairs
};

/// Counts of clean_pairs(), with up to 5 example locations ("file:line") per rule.
struct CleanReport {
  int64_t input = 0;         ///< pairs in
  int64_t kept = 0;          ///< pairs out
  int64_t invalid_utf8 = 0;  ///< dropped: a side is not valid UTF-8
  int64_t empty = 0;         ///< dropped: a side is empty
  int64_t too_long = 0;      ///< dropped: a side longer than max_len
  int64_t bad_ratio = 0;     ///< dropped: length ratio above max_ratio
  int64_t duplicate = 0;     ///< dropped: exact duplicate of an earlier pair
  std::vector<std::string> examples;  ///< "file:line: reason" for the first few drops per rule

  /// One line: "kept 380 of 416 pairs (dropped: 2 invalid UTF-8, 1 empty, ...)".
  std::string summary() const;
};

/// Removes pairs per `options` (input order kept) and returns the report. Leading/trailing
/// ASCII spaces and tabs of each side are trimmed in the output.
std::vector<SentencePair> clean_pairs(const std::vector<SentencePair>& pairs,
                                      const CleanOptions& options, CleanReport* report,
                                      const LengthFn& src_len = nullptr,
                                      const LengthFn& tgt_len = nullptr);

/// Sizes of a split: valid/test are taken first (counts of pairs), the rest is train.
struct SplitOptions {
  int64_t valid = 0;   ///< pairs for validation
  int64_t test = 0;    ///< pairs for the test set
  uint64_t seed = 1;   ///< shuffle seed; the same seed and input always give the same split
};

/// The three parts of a split, plus how many train pairs were removed because their source
/// sentence also occurs in valid or test.
struct Split {
  std::vector<SentencePair> train, valid, test;
  int64_t removed_overlap = 0;  ///< train pairs dropped: same source as a valid/test pair
};

/// Deterministic split: shuffles pair indices with a seeded 64-bit Mersenne Twister (own
/// Fisher-Yates, so the result does not depend on the standard library), takes `valid` then
/// `test` pairs, and keeps the rest (in input order) as train minus every pair whose source
/// sentence or whole pair occurs in valid or test. Valid and test keep input order too.
/// Checks the guarantee before returning (no valid/test pair or source in train). Throws
/// loom::Error when valid + test >= the number of pairs (nothing would be left to train on).
Split split_pairs(const std::vector<SentencePair>& pairs, const SplitOptions& options);

/// Throws loom::Error ("valid/test pair <file:line> also in train") if any pair or source
/// sentence of `held_out` occurs in `train`.
void check_no_overlap(const std::vector<SentencePair>& train,
                      const std::vector<SentencePair>& held_out, const std::string& name);

}  // namespace loom::data
