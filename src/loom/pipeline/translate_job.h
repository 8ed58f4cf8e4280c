// loom::pipeline — the dataset-translation job (`loom translate`) around a translation engine:
// read rows (JSONL or TXT) from a shard of the input, segment the text fields, translate all
// segments of a chunk of rows in one engine call, reassemble, and append the rows in input
// order to an output that is checkpointed (fsync + atomic state file) so a killed job resumes
// without losing or duplicating a row.
//
// Output format, row by row (input line N -> output line N of the shard's output):
// - JSONL: the input line's bytes, unchanged except where a translation goes: each listed
//   field's translation is appended as "<field><suffix>": "..." just before the row's closing
//   '}' (or written over the field's value with in_place, or over an existing target key's
//   value with overwrite_fields). Every other byte of the row (numbers of any size or precision
//   as written, string escapes, key order, whitespace) is kept. A row that already has the
//   target key is a bad row unless overwrite_fields; a row with a duplicate key is a bad row.
//   A null field stays null (the target is set to null). A blank line (empty or only
//   whitespace) is written as an empty line, so output line numbers match the input's.
//   A row keeps its line terminator ("\n" or "\r\n"; "\n" for a last line without one).
// - TXT: one line = one row; the translation is written with the input line's own terminator
//   ("\n", "\r\n", or none for a last line without newline), so the output is line-aligned; an
//   empty input line gives an empty output line; CR/LF inside a translation become spaces.
//   A TXT line is plain text (sentences and whitespace; leading indentation, tabs, ``` or ~~~
//   are not Markdown code) unless txt_markdown.
// Bad rows (invalid UTF-8, invalid JSON, not an object, missing or non-string field, line over
// max_line_bytes) abort the job with a loom::Error naming file:line and field (on_error abort),
// or go to the rejects file as {"line": N, "error": "...", "raw": "..."} (on_error skip; raw
// has invalid bytes replaced by U+FFFD and then also "raw_base64" with the exact bytes, and
// a line over the limit keeps only its first 1 KiB with "raw_truncated": true).
//
// Files beside OUTPUT: OUTPUT.loom-state.json (checkpoint state, see run_translate_job; kept
// after the job completes so a later --resume can tell it is done), OUTPUT.loom-lock (the
// lock taken by the writing process; an empty file, harmless to delete when no job runs) and,
// with on_error skip, the rejects file (default OUTPUT.rejects.jsonl).
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "loom/pipeline/text_segments.h"
#include "loom/text/segment.h"

namespace loom::pipeline {

/// One segment's translation with the extras that n_best, with_scores and meta ask for.
struct SegmentResult {
  std::vector<std::string> hypotheses;  ///< best first; at least one
  std::vector<float> scores;            ///< scores[k] of hypotheses[k] (empty if the engine has none)
  bool split = false;                   ///< too long for the model: translated in parts
  bool capped = false;                  ///< stopped by the length limit, not by end-of-sentence
  int64_t source_tokens = 0, target_tokens = 0;
};

/// What the job needs from the translation engine. Implemented by the real model translator
/// (and by fakes in tests).
class SegmentTranslator {
 public:
  virtual ~SegmentTranslator() = default;
  /// Translates sentences; result[i] is the translation of segments[i]. Called with batches of
  /// segments gathered from many rows (so the engine can batch by length). A result of another
  /// size is a loom::Error; exceptions propagate and stop the job (resumable from the last
  /// checkpoint).
  virtual std::vector<std::string> translate(const std::vector<std::string>& segments) = 0;
  /// The same with n-best lists, scores and diagnostics (used when the job's n_best > 1,
  /// with_scores or meta is set). Default: translate() with one hypothesis and no scores.
  virtual std::vector<SegmentResult> translate_detailed(const std::vector<std::string>& segments);
  /// Target tokens produced so far (for tokens/s in progress).
  virtual int64_t target_tokens() const { return 0; }
  /// A one-line stats summary, appended to the job's summary line when not empty.
  virtual std::string summary() const { return {}; }
};

/// Input/output row format.
enum class RowFormat {
  kAuto,   ///< by the input's extension: .jsonl/.ndjson/.json -> kJsonl, else kTxt (stdin: kTxt)
  kJsonl,  ///< one JSON object per line, fields translated
  kTxt,    ///< one line = one row = one text
};

/// What to do with a bad row.
enum class OnError {
  kAbort,  ///< throw loom::Error (the CLI exits non-zero); output stays resumable
  kSkip,   ///< write the row to the rejects file and continue (the row is not in the output)
};

/// Parses "jsonl"/"txt"/"auto" and "abort"/"skip" (CLI helpers); throws loom::Error otherwise.
RowFormat parse_row_format(const std::string& s);
OnError parse_on_error(const std::string& s);

/// Parses --fields "a,b" into {"a", "b"} (empty items skipped); throws loom::Error (field
/// --fields) for a name listed twice or no name at all.
std::vector<std::string> parse_field_list(const std::string& s);

/// Parses --shard "I/N" into {I, N}; throws loom::Error unless 0 <= I < N.
std::pair<int, int> parse_shard_spec(const std::string& s);

/// Everything `loom translate` passes to the job. Options that change the output bytes are
/// stored in the state file and must match on resume.
struct TranslateJobOptions {
  std::string input = "-";   ///< input path, "-" = stdin (no sharding beyond 1/1, no resume)
  std::string output = "-";  ///< output path, "-" = stdout (no resume). With count > 1 shards,
                             ///< "{shard}" in the path is replaced by the index, else the path
                             ///< gets ".SSSSS-of-NNNNN" before its extension (shard_output_path)
  RowFormat format = RowFormat::kAuto;
  std::vector<std::string> fields = {"prompt", "text"};  ///< JSONL fields to translate
  bool missing_fields_ok = false;  ///< a listed field absent from a row is skipped, not an error
  std::string target_lang;   ///< target language code, for the default suffix ("zh", "deu_Latn")
  std::string source_lang;   ///< source language code for sentence boundaries ("" = English rules)
  std::string suffix;        ///< target key = field + suffix; empty: "_" + target_lang
  bool in_place = false;     ///< write translations over the source fields instead
  bool overwrite_fields = false;  ///< a row's existing target key is replaced (else a bad row)

  std::optional<int> shard_index;  ///< this worker's shard; unset: $RANK, $SLURM_PROCID, else 0
  std::optional<int> shard_count;  ///< number of shards; unset: $WORLD_SIZE, $SLURM_NTASKS, else 1

  bool resume = false;     ///< continue from OUTPUT.loom-state.json (fresh start if no output yet)
  bool overwrite = false;  ///< replace an existing output (and its state/rejects files)
  OnError on_error = OnError::kAbort;
  std::string rejects;     ///< rejects path; empty: OUTPUT.rejects.jsonl (required for stdout)
  int64_t max_line_bytes = int64_t{64} << 20;  ///< longer lines are bad rows (64 MiB)

  int64_t checkpoint_rows = 10000;    ///< checkpoint after at least this many rows ...
  double checkpoint_seconds = 60.0;   ///< ... or this many seconds (whichever first; and at the end)
  int64_t chunk_rows = 256;           ///< rows per translate() call batch
  bool markdown = true;               ///< JSONL fields are Markdown (text::SegmentOptions)
  bool txt_markdown = false;          ///< TXT lines are Markdown too (default: plain text)
  SegmentMode segment = SegmentMode::kSentence;  ///< what one engine input is

  /// JSONL extras (need JSONL rows; each listed field's target key T gets):
  int64_t n_best = 1;        ///< > 1: "T_nbest": [n_best strings, best first] (hypothesis k of every segment)
  bool with_scores = false;  ///< "T_score": mean score of its segments' best hypotheses (null if none);
                             ///< with n_best > 1 also "T_nbest_scores"
  bool meta = false;         ///< "loom_meta": {"line", "segments", "copied", "split", "capped",
                             ///< "source_tokens", "target_tokens"} summed over the row's fields

  std::string engine_id;  ///< what else fixes the output (model, beam size, ...); checked on resume
  std::string model_fingerprint;  ///< the model files' content (io::model_fingerprint); a resume
                                  ///< with other content is refused
  /// Marian target-language codes of the model's ">>xx<<" tokens ("cmn_Hans"): a field or TXT
  /// line starting with ">>xx<<" (xx listed) has it taken off, sent before each of its
  /// segments (so the model gets its language token, as HF MarianTokenizer does) and not
  /// written to the output.
  std::vector<std::string> language_codes;
  bool progress = true;   ///< live progress line when the log stream is a terminal
  std::FILE* log = stderr;  ///< progress line and final summary (nullptr = silent)
  /// When set, the job checks *stop after every chunk (and checkpoint): non-zero stops it
  /// cleanly with a checkpoint (stats.stopped), e.g. set by a SIGINT/SIGTERM handler.
  const volatile std::sig_atomic_t* stop = nullptr;
};

/// Counters of one job (for a resumed job: of the whole shard, including earlier runs).
struct TranslateJobStats {
  int64_t rows = 0;             ///< rows written to the output (translated rows + blank lines)
  int64_t blank_rows = 0;       ///< blank JSONL lines copied as empty lines
  int64_t rejects = 0;          ///< bad rows sent to the rejects file (on_error skip)
  int64_t segments = 0;         ///< segments sent to the translator
  int64_t copied_segments = 0;  ///< segments copied unchanged (whitespace, code, markup)
  int64_t input_bytes = 0;      ///< input bytes consumed (of this shard)
  int64_t output_bytes = 0;     ///< size of the output file at the end
  int64_t translate_calls = 0;  ///< translator.translate() calls
  int64_t inline_kept = 0;      ///< sentences sent whole with their inline code / URLs, which came back verbatim
  int64_t inline_split = 0;     ///< such sentences whose translation lost a span: translated around it instead
  double seconds = 0;           ///< wall time of this run (not of earlier runs)
  int shard_index = 0, shard_count = 1;
  bool already_done = false;    ///< resume found a completed job and did nothing
  bool stopped = false;         ///< *options.stop ended the job early (checkpointed, resumable)
  std::string output_path;      ///< the output file actually written (after shard naming)
};

/// Text of hypothesis k of a field whose translate segments have the results r[0..count): the
/// segments reassembled (text::reassemble) with each segment's k-th hypothesis (its last when it
/// has fewer). *score (if not null) = mean of those hypotheses' scores, NaN when count is 0 or
/// the engine gave no scores.
std::string reassemble_kth(const std::vector<text::Segment>& segments, const SegmentResult* r, std::size_t count,
                           std::size_t k, double* score);

/// Output path of shard index of count: "-" stays "-"; count 1 keeps path; "{shard}" in path
/// is replaced by index; otherwise ".{index:05}-of-{count:05}" goes before the extension
/// ("out.jsonl" -> "out.00001-of-00003.jsonl"), so `cat out.*-of-00003.jsonl` is in shard order.
std::string shard_output_path(const std::string& path, int index, int count);

/// Runs the job: see the file comment for the row formats. Checkpoints (after every
/// checkpoint_rows rows exactly — a chunk never spans a checkpoint — or after the chunk that
/// passes checkpoint_seconds, at a stop request, and at the end) fsync the output and rejects files, then
/// atomically replace OUTPUT.loom-state.json with the input's identity (path, size, mtime,
/// hashes of its first 64 KiB and of the 4 KiB before the resume offset), the shard, the
/// output-affecting options, the input offset and line of the next row, the output and rejects
/// sizes, and the counters. With resume the state must match (else loom::Error saying what
/// differs); output and rejects are cut back to the recorded sizes (dropping a torn last line
/// and rows after the checkpoint) and reading continues at the recorded offset, so the final
/// output is byte-identical to an uninterrupted run (given a deterministic translator). A
/// completed job is marked done; resuming it only reports the summary, after checking that the
/// output (and rejects file) still has the size recorded (else loom::Error: it was deleted or
/// changed after the job completed; use overwrite to redo it).
/// Throws loom::Error for bad options (unknown format, shard out of range, stdin with shards or
/// resume, stdout with resume, an existing output without resume/overwrite), for I/O errors,
/// and for bad rows with on_error abort.
TranslateJobStats run_translate_job(const TranslateJobOptions& options, SegmentTranslator& translator);

}  // namespace loom::pipeline
