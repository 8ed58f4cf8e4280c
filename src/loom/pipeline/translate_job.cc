#include "loom/pipeline/translate_job.h"

#include <fcntl.h>

#include <sys/file.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "loom/core/error.h"
#include "loom/core/progress.h"
#include "loom/core/utf8.h"
#include "loom/io/jsonl.h"
#include "loom/io/row_io.h"
#include "loom/text/segment.h"

namespace loom::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kStateVersion = 1;
constexpr int64_t kHeadHashBytes = 64 * 1024;
constexpr int64_t kTailHashBytes = 4 * 1024;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string extension(const std::string& path) {
  const auto slash = path.rfind('/');
  const auto dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) return "";
  return path.substr(dot);
}

/// Reads an integer environment variable; nullopt if unset or empty.
std::optional<int> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (errno != 0 || *end != '\0' || x < 0 || x > 1000000)
    fail(Where{"", 0, name}, "environment variable {}='{}' is not a non-negative integer", name, v);
  return static_cast<int>(x);
}

/// FNV-1a 64 of `n` bytes of the file at `offset` (fewer at EOF), as 16 hex digits.
std::string hash_range(const std::string& path, int64_t offset, int64_t n) {
  uint64_t h = 1469598103934665603ull;
  if (n > 0) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) fail(Where{path, 0, ""}, "cannot open input: {}", std::strerror(errno));
    ::fseeko(f, static_cast<off_t>(offset), SEEK_SET);
    std::string buf(static_cast<std::size_t>(n), '\0');
    const std::size_t got = std::fread(buf.data(), 1, buf.size(), f);
    std::fclose(f);
    for (std::size_t i = 0; i < got; ++i) {
      h ^= static_cast<uint8_t>(buf[i]);
      h *= 1099511628211ull;
    }
  }
  return fmt::format("{:016x}", h);
}

struct ResolvedOptions {
  RowFormat format;
  int shard_index = 0, shard_count = 1;
  std::string suffix;
  std::string output;  // after shard naming
  std::string state_path;
  std::string rejects_path;
};

ResolvedOptions resolve(const TranslateJobOptions& o) {
  ResolvedOptions r;
  // Format.
  r.format = o.format;
  if (r.format == RowFormat::kAuto) {
    const std::string ext = lower(extension(o.input));
    // stdin is plain text (`echo "How are you?" | loom translate`); --format jsonl for JSONL.
    r.format = (o.input != "-" && (ext == ".jsonl" || ext == ".ndjson" || ext == ".json")) ? RowFormat::kJsonl
                                                                                           : RowFormat::kTxt;
  }
  if (r.format == RowFormat::kJsonl && o.fields.empty())
    fail(Where{"", 0, "fields"}, "no fields to translate (give at least one JSONL field)");
  // Shard: explicit options, else torchrun's RANK/WORLD_SIZE, else Slurm's.
  std::optional<int> index = o.shard_index, count = o.shard_count;
  const char* index_var = "shard index";
  const char* count_var = "shard count";
  if (!index && !count) {
    if (env_int("WORLD_SIZE") || env_int("RANK")) {
      index = env_int("RANK");
      count = env_int("WORLD_SIZE");
      index_var = "RANK";
      count_var = "WORLD_SIZE";
    } else if (env_int("SLURM_NTASKS") || env_int("SLURM_PROCID")) {
      index = env_int("SLURM_PROCID");
      count = env_int("SLURM_NTASKS");
      index_var = "SLURM_PROCID";
      count_var = "SLURM_NTASKS";
    }
  }
  r.shard_index = index.value_or(0);
  r.shard_count = count.value_or(1);
  if (r.shard_count < 1)
    fail(Where{"", 0, count_var}, "shard count must be >= 1, got {}", r.shard_count);
  if (r.shard_index < 0 || r.shard_index >= r.shard_count)
    fail(Where{"", 0, index_var}, "shard index {} is out of range for {} shards (0..{})", r.shard_index,
         r.shard_count, r.shard_count - 1);
  if (o.input == "-" && r.shard_count > 1)
    fail(Where{"<stdin>", 0, ""}, "cannot shard stdin ({} shards); give the input as a file", r.shard_count);
  if (o.input == "-" && o.resume) fail(Where{"<stdin>", 0, ""}, "cannot resume reading stdin; give the input as a file");
  if (o.output == "-" && o.resume) fail(Where{"<stdout>", 0, ""}, "cannot resume output written to stdout; give an output file");
  // Target keys.
  r.suffix = o.suffix;
  if (r.format == RowFormat::kJsonl && !o.in_place && r.suffix.empty()) {
    if (o.target_lang.empty())
      fail(Where{"", 0, "suffix"}, "no target suffix: give a suffix, a target language, or in_place");
    r.suffix = "_" + o.target_lang;
  }
  // Files.
  r.output = shard_output_path(o.output, r.shard_index, r.shard_count);
  if (r.output != "-") r.state_path = r.output + ".loom-state.json";
  r.rejects_path = o.rejects;
  if (r.rejects_path.empty() && r.output != "-") r.rejects_path = r.output + ".rejects.jsonl";
  if (o.on_error == OnError::kSkip && r.rejects_path.empty())
    fail(Where{"", 0, "rejects"}, "on_error skip with output on stdout needs an explicit rejects file");
  if (r.format == RowFormat::kJsonl && !o.in_place) {
    for (const std::string& f : o.fields) {
      if (std::find(o.fields.begin(), o.fields.end(), f + r.suffix) != o.fields.end())
        fail(Where{"", 0, "fields"}, "field '{}' is both translated and the target of '{}' (its translation "
             "would replace it); choose another suffix or leave it out of the fields", f + r.suffix, f);
    }
  }
  if (o.checkpoint_rows < 1) fail(Where{"", 0, "checkpoint_rows"}, "must be >= 1, got {}", o.checkpoint_rows);
  if (!(o.checkpoint_seconds > 0) || !std::isfinite(o.checkpoint_seconds))
    fail(Where{"", 0, "checkpoint_seconds"}, "must be a positive number of seconds, got {}", o.checkpoint_seconds);
  if ((o.n_best > 1 || o.with_scores || o.meta) && r.format != RowFormat::kJsonl)
    fail(Where{"", 0, o.n_best > 1 ? "n_best" : o.with_scores ? "with_scores" : "meta"},
         "n-best lists, scores and row diagnostics are written into JSONL rows; give a JSONL input (--format jsonl)");
  if (o.n_best < 1) fail(Where{"", 0, "n_best"}, "must be >= 1, got {}", o.n_best);
  if (o.chunk_rows < 1) fail(Where{"", 0, "chunk_rows"}, "chunk_rows must be >= 1, got {}", o.chunk_rows);
  if (o.max_line_bytes < 1) fail(Where{"", 0, "max_line_bytes"}, "max_line_bytes must be >= 1");
  return r;
}

/// The options that change the output bytes: a resumed job must use the same.
nlohmann::ordered_json output_options(const TranslateJobOptions& o, const ResolvedOptions& r) {
  nlohmann::ordered_json j;
  j["format"] = r.format == RowFormat::kJsonl ? "jsonl" : "txt";
  j["fields"] = r.format == RowFormat::kJsonl ? o.fields : std::vector<std::string>{};
  j["suffix"] = o.in_place ? "" : r.suffix;
  j["in_place"] = o.in_place;
  j["missing_fields_ok"] = o.missing_fields_ok;
  j["markdown"] = o.markdown;
  j["txt_markdown"] = o.txt_markdown;
  j["segment"] = o.segment == SegmentMode::kLine ? "line" : "sentence";
  // Sentence boundaries depend on the language (and came from other rules before ICU).
  if (o.segment == SegmentMode::kSentence) j["sentences"] = "icu:" + (o.source_lang.empty() ? "en" : o.source_lang);
  j["overwrite_fields"] = o.overwrite_fields;
  j["max_line_bytes"] = o.max_line_bytes;
  j["engine_id"] = o.engine_id;
  j["model_fingerprint"] = o.model_fingerprint;
  if (o.n_best > 1) j["n_best"] = o.n_best;  // only when set: older state files stay resumable
  if (o.with_scores) j["with_scores"] = true;
  if (o.meta) j["meta"] = true;
  return j;
}

/// Identity of the input file, recorded in the state to detect a changed input on resume.
struct InputId {
  int64_t size = -1;
  int64_t mtime_ns = 0;
  std::string head_hash;
};

InputId input_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(Where{path, 0, ""}, "cannot stat input: {}", std::strerror(errno));
  InputId id;
  id.size = static_cast<int64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  id.head_hash = hash_range(path, 0, std::min(id.size, kHeadHashBytes));
  return id;
}

std::string tail_hash(const std::string& path, int64_t offset) {
  const int64_t start = std::max<int64_t>(0, offset - kTailHashBytes);
  return hash_range(path, start, offset - start);
}

/// Per-row work: a row's fields, their segments and where their translations go.
struct FieldWork {
  std::string key;     ///< source field
  std::string target;  ///< key receiving the translation
  const io::RawMember* existing = nullptr;  ///< the target's member when the row has it
  bool is_null = false;
  SegmentedText seg;      ///< its segments (pipeline/text_segments.h)
  std::size_t first = 0;  ///< index of its first translate segment in the chunk batch
};

struct RowWork {
  enum Kind { kBlank, kJsonl, kTxt } kind = kBlank;
  std::string raw;     ///< JSONL: the input line
  io::RawObject obj;   ///< JSONL: its members
  std::string terminator;  ///< TXT: the input line's terminator
  std::vector<FieldWork> fields;
  int64_t line = 0;        ///< input line number (for meta)
};

class Job {
 public:
  Job(const TranslateJobOptions& o, SegmentTranslator& t) : o_(o), t_(t), r_(resolve(o)) {}
  ~Job() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  TranslateJobStats run();

 private:
  /// A bad row: the message without location, and the location.
  struct BadRow {
    std::string message;
    Where where;
    std::string what() const { return Error(message, where).what(); }
  };

  void start_fresh();
  bool resume_from_state();
  void check_state(const nlohmann::json& s) const;
  void checkpoint(bool done);
  bool checkpoint_due() const;
  int64_t rows_since_checkpoint() const { return st_.rows + st_.rejects - rows_at_checkpoint_; }
  std::optional<BadRow> prepare(const io::RawLine& line, RowWork& work);
  void add_segments(FieldWork& f, std::string_view text);
  void reject(const io::RawLine& line, const BadRow& bad);
  void translate_and_write(std::vector<RowWork>& rows);
  /// Appends the n-best / score / loom_meta members of row w (as `,"key":value` JSON text) to
  /// `appended`; `first_member` says whether the row has no member before them.
  void add_extras(RowWork& w, const std::vector<SegmentResult>& details, std::string& appended,
                  bool& first_member) const;
  std::string counters_text() const;

  const TranslateJobOptions& o_;
  SegmentTranslator& t_;
  ResolvedOptions r_;
  TranslateJobStats st_;
  std::unique_ptr<io::LineReader> reader_;
  int lock_fd_ = -1;  // flock'ed OUTPUT.loom-lock: one writer per output at a time

  // Takes the output's lock file (kept for the process's life; the kernel drops it on exit or
  // kill -9). Throws loom::Error when another process holds it.
  void lock_output() {
    if (r_.output == "-") return;
    // Every spelling of the output's path (./out, a/../out, a symlinked directory or file)
    // reaches the same lock file: it is named after the canonical path.
    std::error_code ec;
    std::string canonical = std::filesystem::weakly_canonical(r_.output, ec).string();
    if (ec || canonical.empty()) canonical = r_.output;
    const std::string lock_path = canonical + ".loom-lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) fail(Where{lock_path, 0, ""}, "cannot create the lock file: {}", std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
      fail(Where{r_.output, 0, ""}, "another loom process is writing this output (lock {} is held)", lock_path);
  }
  io::ShardRange range_{0, -1, 1};
  InputId input_id_;
  std::unique_ptr<io::AppendFile> out_;
  std::unique_ptr<io::AppendFile> rejects_;
  int64_t rejects_bytes_ = 0;       ///< size of the rejects file (0 while not opened)
  int64_t next_offset_ = 0;         ///< input offset of the first row not yet in the output
  int64_t next_line_ = 1;           ///< its line number
  std::vector<std::string> batch_;  ///< the chunk's translate segments
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_checkpoint_ = Clock::now();
  int64_t rows_at_checkpoint_ = 0;
  int64_t tokens_at_start_ = 0;
};

std::string Job::counters_text() const {
  const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string s = fmt::format("{} rows, {} segments translated, {} copied, {} rejected", st_.rows,
                              st_.segments, st_.copied_segments, st_.rejects);
  if (st_.inline_kept + st_.inline_split > 0)
    s += fmt::format(", inline code/URLs: {} kept inside their sentence, {} translated around", st_.inline_kept,
                     st_.inline_split);
  const int64_t tokens = t_.target_tokens() - tokens_at_start_;
  if (secs > 0 && tokens > 0) s += fmt::format(", {} tok/s", core::format_count(tokens / secs));
  return s;
}

void Job::start_fresh() {
  if (o_.overwrite) {
    if (!r_.state_path.empty()) std::remove(r_.state_path.c_str());
    if (!r_.rejects_path.empty()) std::remove(r_.rejects_path.c_str());
  } else {
    if (r_.output != "-" && io::path_exists(r_.output))
      fail(Where{r_.output, 0, ""}, "output exists; use --resume or --overwrite, or delete it");
    for (const std::string& p : {r_.state_path, r_.rejects_path}) {
      if (!p.empty() && io::path_exists(p))
        fail(Where{p, 0, ""}, "exists (left by an earlier run?); use --resume or --overwrite, or delete it");
    }
  }
  if (!reader_->is_stdin() && reader_->size() >= 0) {
    reader_->seek(range_.begin, range_.first_line);
    reader_->set_end(range_.end);
  }
  next_offset_ = reader_->offset();
  next_line_ = reader_->line();
  // The state comes first: from here on, resume always finds one (an output it records as empty
  // may be missing).
  checkpoint(false);
  out_ = std::make_unique<io::AppendFile>(
      r_.output, o_.overwrite ? io::AppendFile::Mode::kTruncate : io::AppendFile::Mode::kCreateNew);
}

bool Job::resume_from_state() {
  if (!io::path_exists(r_.state_path)) {
    if (io::path_exists(r_.output))
      fail(Where{r_.output, 0, ""}, "exists but has no state file {} to resume from; use --overwrite or delete it",
           r_.state_path);
    return false;  // nothing done yet: start fresh
  }
  nlohmann::json s;
  try {
    s = nlohmann::json::parse(io::read_whole_file(r_.state_path));
  } catch (const nlohmann::json::exception& e) {
    fail(Where{r_.state_path, 0, ""}, "state file is not valid JSON ({}); delete it and the output to start over",
         e.what());
  }
  try {
    check_state(s);
    const auto& c = s.at("counters");
    st_.rows = c.at("rows");
    st_.blank_rows = c.at("blank_rows");
    st_.rejects = c.at("rejects");
    st_.segments = c.at("segments");
    st_.copied_segments = c.at("copied_segments");
    st_.translate_calls = c.at("translate_calls");
    st_.inline_kept = c.value("inline_kept", int64_t{0});
    st_.inline_split = c.value("inline_split", int64_t{0});
    next_offset_ = s.at("next").at("offset");
    next_line_ = s.at("next").at("line");
    st_.input_bytes = next_offset_ - range_.begin;
    st_.output_bytes = s.at("output_bytes");
    rejects_bytes_ = s.at("rejects_bytes");
    st_.already_done = s.at("done");
  } catch (const nlohmann::json::exception& e) {
    fail(Where{r_.state_path, 0, ""}, "state file is incomplete ({}); delete it and the output to start over",
         e.what());
  }
  if (st_.already_done) {
    // The same size check as for an unfinished job: a deleted or cut output is not "complete".
    struct stat os {};
    const int64_t have = ::stat(r_.output.c_str(), &os) == 0 ? static_cast<int64_t>(os.st_size) : -1;
    if (have != st_.output_bytes)
      fail(Where{r_.output, 0, ""}, "the job completed with {} output bytes, but the output {}; it was changed "
           "after the job finished — use --overwrite to translate it again", st_.output_bytes,
           have < 0 ? std::string("is missing") : fmt::format("now has {} bytes", have));
    if (rejects_bytes_ > 0) {
      const int64_t rej = ::stat(r_.rejects_path.c_str(), &os) == 0 ? static_cast<int64_t>(os.st_size) : -1;
      if (rej != rejects_bytes_)
        fail(Where{r_.rejects_path, 0, ""}, "the job completed with {} bytes of rejects, but the rejects file {}; "
             "use --overwrite to translate it again", rejects_bytes_,
             rej < 0 ? std::string("is missing") : fmt::format("now has {} bytes", rej));
    }
    return true;
  }
  const bool output_missing = st_.output_bytes == 0 && !io::path_exists(r_.output);
  out_ = std::make_unique<io::AppendFile>(
      r_.output, output_missing ? io::AppendFile::Mode::kCreateNew : io::AppendFile::Mode::kResume,
      st_.output_bytes);
  if (io::path_exists(r_.rejects_path)) {
    rejects_ = std::make_unique<io::AppendFile>(r_.rejects_path, io::AppendFile::Mode::kResume, rejects_bytes_);
  } else if (rejects_bytes_ > 0) {
    fail(Where{r_.rejects_path, 0, ""}, "rejects file is missing but the checkpoint recorded {} bytes in it",
         rejects_bytes_);
  }
  reader_->seek(next_offset_, next_line_);
  reader_->set_end(range_.end);
  return true;
}

void Job::check_state(const nlohmann::json& s) const {
  const Where at{r_.state_path, 0, ""};
  if (s.value("loom_state", 0) != kStateVersion)
    fail(at, "not a loom translate state file (version {} expected)", kStateVersion);
  const auto& in = s.at("input");
  if (in.at("size").get<int64_t>() != input_id_.size || in.at("head_hash").get<std::string>() != input_id_.head_hash)
    fail(at, "the input {} changed since the checkpoint (size {} bytes, was {}; or different content); "
         "cannot resume — use --overwrite to start over", o_.input, input_id_.size, in.at("size").get<int64_t>());
  if (in.at("mtime_ns").get<int64_t>() != input_id_.mtime_ns)
    spdlog::warn("{}: input modification time differs from the checkpoint's; size and content hash match, resuming",
                 o_.input);
  const auto& sh = s.at("shard");
  if (sh.at("index").get<int>() != r_.shard_index || sh.at("count").get<int>() != r_.shard_count)
    fail(at, "checkpoint is of shard {}/{}, this run is shard {}/{}", sh.at("index").get<int>(),
         sh.at("count").get<int>(), r_.shard_index, r_.shard_count);
  const nlohmann::json now = output_options(o_, r_);
  const auto& was = s.at("options");
  if (was.value("model_fingerprint", std::string()) != o_.model_fingerprint)
    fail(at, "the model's files changed since the checkpoint (fingerprint {}, was {}); resuming would mix two "
         "models in one output — restore the model or use --overwrite to start over", o_.model_fingerprint,
         was.value("model_fingerprint", std::string("none")));
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (!was.contains(it.key()) || was.at(it.key()) != it.value())
      fail(at, "option '{}' is {} but the checkpoint was made with {}; resume with the same options or use "
           "--overwrite", it.key(), it.value().dump(), was.contains(it.key()) ? was.at(it.key()).dump() : "nothing");
  }
  const int64_t offset = s.at("next").at("offset");
  if (offset < range_.begin || offset > input_id_.size ||
      s.at("next").at("tail_hash").get<std::string>() != tail_hash(o_.input, offset))
    fail(at, "the input {} changed before byte {} since the checkpoint; cannot resume", o_.input, offset);
}

void Job::checkpoint(bool done) {
  st_.output_bytes = out_ ? out_->size() : 0;
  st_.input_bytes = next_offset_ - range_.begin;
  rows_at_checkpoint_ = st_.rows + st_.rejects;
  last_checkpoint_ = Clock::now();
  if (r_.state_path.empty()) return;  // stdout: nothing durable to record
  if (out_) out_->sync();
  if (rejects_) rejects_->sync();
  nlohmann::ordered_json s;
  s["loom_state"] = kStateVersion;
  s["done"] = done;
  s["input"] = {{"path", o_.input}, {"size", input_id_.size}, {"mtime_ns", input_id_.mtime_ns},
                {"head_hash", input_id_.head_hash}};
  s["shard"] = {{"index", r_.shard_index}, {"count", r_.shard_count}, {"begin", range_.begin},
                {"end", range_.end}};
  s["options"] = output_options(o_, r_);
  s["next"] = {{"offset", next_offset_}, {"line", next_line_},
               {"tail_hash", reader_->size() >= 0 ? tail_hash(o_.input, next_offset_) : ""}};
  s["output_bytes"] = st_.output_bytes;
  s["rejects_bytes"] = rejects_bytes_;
  s["counters"] = {{"rows", st_.rows},
                   {"blank_rows", st_.blank_rows},
                   {"rejects", st_.rejects},
                   {"segments", st_.segments},
                   {"copied_segments", st_.copied_segments},
                   {"translate_calls", st_.translate_calls},
                   {"inline_kept", st_.inline_kept},
                   {"inline_split", st_.inline_split}};
  io::write_file_atomic(r_.state_path, s.dump(2) + "\n");
}

bool Job::checkpoint_due() const {
  if (rows_since_checkpoint() >= o_.checkpoint_rows) return true;
  return std::chrono::duration<double>(Clock::now() - last_checkpoint_).count() >= o_.checkpoint_seconds;
}

void Job::add_segments(FieldWork& f, std::string_view text) {
  SegmentingOptions opts;
  opts.mode = o_.segment;
  opts.markdown = r_.format == RowFormat::kTxt ? o_.txt_markdown : o_.markdown;
  opts.source_lang = o_.source_lang;
  opts.language_codes = o_.language_codes;
  f.seg = segment_for_translation(text, opts);
  f.first = batch_.size();
  f.seg.append_inputs(batch_);
}

std::optional<Job::BadRow> Job::prepare(const io::RawLine& line, RowWork& work) {
  const Where where{reader_->path(), line.line, ""};
  if (line.too_long)
    return BadRow{fmt::format("line is {} bytes, over the limit of {} bytes (max_line_bytes)", line.length,
                              o_.max_line_bytes), where};
  if (r_.format == RowFormat::kTxt) {
    const std::size_t bad = core::utf8_error_offset(line.text);
    if (bad != std::string_view::npos)
      return BadRow{fmt::format("not valid UTF-8 at byte {} of the line (byte 0x{:02X})", bad,
                                static_cast<unsigned>(static_cast<unsigned char>(line.text[bad]))), where};
    if (const auto nul = line.text.find('\0'); nul != std::string::npos)
      return BadRow{fmt::format("contains a NUL byte at byte {} (not supported by the tokenizers)", nul), where};
    work.kind = RowWork::kTxt;
    work.terminator = line.terminator;
    work.fields.emplace_back();
    add_segments(work.fields.back(), line.text);
    return std::nullopt;
  }
  if (io::is_blank_line(line.text)) {
    work.kind = RowWork::kBlank;
    return std::nullopt;
  }
  try {
    work.obj = io::scan_jsonl_object(line.text, where);
  } catch (const Error& e) {
    return BadRow{e.message(), e.where()};
  }
  work.raw = line.text;
  work.terminator = line.terminator.empty() ? "\n" : line.terminator;
  work.kind = RowWork::kJsonl;
  work.line = line.line;
  const std::size_t batch_start = batch_.size();
  // Members that --n-best / --with-scores / --meta add must not exist already (a JSON object
  // with a key twice loses one of them in most readers).
  const auto extra_taken = [&](const std::string& key, const char* option) -> std::optional<BadRow> {
    if (work.obj.find(key) == nullptr) return std::nullopt;
    batch_.resize(batch_start);
    return BadRow{fmt::format("the row already has the key '{}' that {} adds; remove it, or use another --suffix",
                              key, option), Where{where.file, where.line, key}};
  };
  if (o_.meta)
    if (auto bad = extra_taken("loom_meta", "--meta")) return bad;
  for (const std::string& key : o_.fields) {
    const std::string target = o_.in_place ? key : key + r_.suffix;
    if (o_.n_best > 1)
      if (auto bad = extra_taken(target + "_nbest", "--n-best")) return bad;
    if (o_.n_best > 1 && o_.with_scores)
      if (auto bad = extra_taken(target + "_nbest_scores", "--n-best with --with-scores")) return bad;
    if (o_.with_scores)
      if (auto bad = extra_taken(target + "_score", "--with-scores")) return bad;
  }
  for (const std::string& key : o_.fields) {
    const io::RawMember* m = work.obj.find(key);
    const Where at{where.file, where.line, key};
    if (m == nullptr) {
      if (o_.missing_fields_ok) continue;
      batch_.resize(batch_start);
      return BadRow{"field is missing", at};
    }
    FieldWork f;
    f.key = key;
    f.target = o_.in_place ? key : key + r_.suffix;
    f.existing = o_.in_place ? m : work.obj.find(f.target);
    if (f.existing != nullptr && !o_.in_place && !o_.overwrite_fields) {
      batch_.resize(batch_start);
      return BadRow{fmt::format("the row already has the target key '{}' (translated before?); use "
                                "--overwrite-fields to replace it, or another --suffix", f.target), at};
    }
    if (m->kind == io::JsonKind::kNull) {
      f.is_null = true;
    } else if (m->kind == io::JsonKind::kString) {
      std::string value;
      try {
        value = io::decode_json_string(std::string_view(line.text).substr(m->value_begin, m->value_end - m->value_begin), at);
      } catch (const Error& e) {
        batch_.resize(batch_start);
        return BadRow{e.message(), e.where()};
      }
      if (const auto nul = value.find('\0'); nul != std::string::npos) {
        batch_.resize(batch_start);
        return BadRow{fmt::format("contains a NUL byte at byte {} (not supported by the tokenizers)", nul), at};
      }
      add_segments(f, value);
    } else {
      static const char* names[] = {"a string", "a number", "an object", "an array", "a boolean", "a boolean", "null"};
      batch_.resize(batch_start);
      return BadRow{fmt::format("field is {}, expected a string (or null)", names[static_cast<int>(m->kind)]), at};
    }
    work.fields.push_back(std::move(f));
  }
  return std::nullopt;
}

void Job::reject(const io::RawLine& line, const BadRow& bad) {
  nlohmann::ordered_json rec;
  rec["line"] = line.line;
  rec["error"] = bad.what();
  if (core::is_valid_utf8(line.text)) {
    rec["raw"] = line.text;
  } else {
    rec["raw"] = core::utf8_replace_invalid(line.text);
    rec["raw_base64"] = io::base64_encode(line.text);
  }
  if (line.too_long) rec["raw_truncated"] = true;
  if (!rejects_) rejects_ = std::make_unique<io::AppendFile>(r_.rejects_path, io::AppendFile::Mode::kCreateNew);
  rejects_->write(io::dump_jsonl(rec) + "\n");
  rejects_bytes_ = rejects_->size();
  ++st_.rejects;
}

void Job::add_extras(RowWork& w, const std::vector<SegmentResult>& details, std::string& appended,
                     bool& first_member) const {
  const auto add = [&](const std::string& key, const nlohmann::ordered_json& value) {
    appended += first_member ? "" : ",";
    appended += io::encode_json_string(key) + ":" + value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    first_member = false;
  };
  nlohmann::ordered_json meta = {{"line", w.line}, {"segments", 0}, {"copied", 0}, {"split", 0},
                                 {"capped", 0}, {"source_tokens", 0}, {"target_tokens", 0}};
  const auto number = [](double x) { return std::isnan(x) ? nlohmann::ordered_json() : nlohmann::ordered_json(x); };
  for (const FieldWork& f : w.fields) {
    const SegmentResult* mine = details.data() + f.first;
    if (o_.n_best > 1) {
      nlohmann::ordered_json list = nlohmann::ordered_json::array(), scores = nlohmann::ordered_json::array();
      for (int64_t k = 0; !f.is_null && k < o_.n_best; ++k) {
        double score = 0;
        list.push_back(reassemble_kth(f.seg.segments, mine, f.seg.count, static_cast<std::size_t>(k), &score));
        scores.push_back(number(score));
      }
      add(f.target + "_nbest", f.is_null ? nlohmann::ordered_json() : list);
      if (o_.with_scores) add(f.target + "_nbest_scores", f.is_null ? nlohmann::ordered_json() : scores);
    }
    if (o_.with_scores) {
      double score = 0;
      if (!f.is_null) reassemble_kth(f.seg.segments, mine, f.seg.count, 0, &score);
      add(f.target + "_score", f.is_null ? nlohmann::ordered_json() : number(score));
    }
    meta["segments"] = meta["segments"].get<int64_t>() + static_cast<int64_t>(f.seg.count);
    meta["copied"] = meta["copied"].get<int64_t>() + static_cast<int64_t>(f.seg.segments.size() - f.seg.count);
    for (std::size_t i = 0; i < f.seg.count; ++i) {
      meta["split"] = meta["split"].get<int64_t>() + (mine[i].split ? 1 : 0);
      meta["capped"] = meta["capped"].get<int64_t>() + (mine[i].capped ? 1 : 0);
      meta["source_tokens"] = meta["source_tokens"].get<int64_t>() + mine[i].source_tokens;
      meta["target_tokens"] = meta["target_tokens"].get<int64_t>() + mine[i].target_tokens;
    }
  }
  if (o_.meta) add("loom_meta", meta);
}

void Job::translate_and_write(std::vector<RowWork>& rows) {
  std::vector<std::string> translations;
  std::vector<SegmentResult> details;
  const bool detailed = o_.n_best > 1 || o_.with_scores || o_.meta;
  if (!batch_.empty()) {
    if (detailed) {
      details = t_.translate_detailed(batch_);
      for (SegmentResult& d : details) {
        if (d.hypotheses.empty()) fail("translator returned a segment without a translation");
        translations.push_back(d.hypotheses.front());
      }
    } else {
      translations = t_.translate(batch_);
    }
    ++st_.translate_calls;
    if (translations.size() != batch_.size())
      fail("translator returned {} translations for {} segments", translations.size(), batch_.size());
  }
  // A joined sentence whose translation lost one of its code spans / URLs is translated again
  // in the parts the segmenter cut it into (one more engine call for all of them).
  std::vector<PlacedText> placed;
  for (RowWork& w : rows) {
    for (FieldWork& f : w.fields) placed.push_back({&f.seg, f.first});
  }
  const InlineRejoinStats inline_stats =
      retranslate_lost_spans(placed, translations, [this](const std::vector<std::string>& b) { return t_.translate(b); });
  st_.inline_kept += inline_stats.kept;
  st_.inline_split += inline_stats.split;
  st_.translate_calls += inline_stats.calls;
  st_.segments += inline_stats.segments;
  const auto reassembled = [&](const FieldWork& f) {
    st_.segments += static_cast<int64_t>(f.seg.count);
    st_.copied_segments += static_cast<int64_t>(f.seg.segments.size() - f.seg.count);
    return reassemble_text(f.seg, translations, f.first);
  };
  std::string buf;
  for (RowWork& w : rows) {
    switch (w.kind) {
      case RowWork::kBlank:
        buf += '\n';
        ++st_.blank_rows;
        break;
      case RowWork::kTxt: {
        std::string s = core::utf8_replace_invalid(reassembled(w.fields.front()));
        for (char& c : s) {
          if (c == '\n' || c == '\r') c = ' ';  // keep the output line-aligned
        }
        buf += s;
        buf += w.terminator;
        break;
      }
      case RowWork::kJsonl: {
        // Splice: replaced values where they stand, new keys before the closing '}'; every
        // other byte of the input line is copied.
        std::vector<std::pair<const io::RawMember*, std::string>> replace;
        std::string appended;
        bool first_member = w.obj.members.empty();
        for (const FieldWork& f : w.fields) {
          std::string value = f.is_null ? std::string("null") : io::encode_json_string(reassembled(f));
          if (f.existing != nullptr) {
            replace.emplace_back(f.existing, std::move(value));
          } else {
            appended += first_member ? "" : ",";
            appended += io::encode_json_string(f.target) + ":" + value;
            first_member = false;
          }
        }
        if (detailed) add_extras(w, details, appended, first_member);
        std::sort(replace.begin(), replace.end(),
                  [](const auto& a, const auto& b) { return a.first->value_begin < b.first->value_begin; });
        std::size_t pos = 0;
        for (const auto& [m, value] : replace) {
          buf.append(w.raw, pos, m->value_begin - pos);
          buf += value;
          pos = m->value_end;
        }
        buf.append(w.raw, pos, w.obj.close - pos);
        buf += appended;
        buf.append(w.raw, w.obj.close, std::string::npos);
        buf += w.terminator;
        break;
      }
    }
    ++st_.rows;
  }
  out_->write(buf);
}

TranslateJobStats Job::run() {
  st_.shard_index = r_.shard_index;
  st_.shard_count = r_.shard_count;
  st_.output_path = r_.output;
  if (o_.resume && o_.overwrite) fail("resume and overwrite exclude each other");
  reader_ = std::make_unique<io::LineReader>(o_.input, o_.max_line_bytes);
  if (reader_->size() >= 0) {
    input_id_ = input_id(o_.input);
    // A resumed shard takes its line numbers from the state: no need to count the lines before it.
    const bool from_state = o_.resume && io::path_exists(r_.state_path);
    range_ = io::shard_range(o_.input, input_id_.size, r_.shard_index, r_.shard_count, !from_state);
    struct stat a {}, b {};
    if (r_.output != "-" && ::stat(o_.input.c_str(), &a) == 0 && ::stat(r_.output.c_str(), &b) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      fail(Where{r_.output, 0, ""}, "output is the input file");
    if (!r_.rejects_path.empty() && ::stat(r_.rejects_path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
      fail(Where{r_.rejects_path, 0, "rejects"}, "rejects file is the input file");
  } else if (!reader_->is_stdin() && (r_.shard_count > 1 || o_.resume)) {
    fail(Where{o_.input, 0, ""}, "input is not a regular file: cannot shard or resume it");
  }

  if (!r_.rejects_path.empty() && (r_.rejects_path == r_.output || r_.rejects_path == r_.state_path))
    fail(Where{r_.rejects_path, 0, "rejects"}, "rejects file must differ from the output and its state file");
  lock_output();
  if (!(o_.resume && resume_from_state())) start_fresh();
  if (st_.already_done) {
    if (o_.log) std::fprintf(o_.log, "loom translate: %s already complete: %s\n", r_.output.c_str(),
                             counters_text().c_str());
    return st_;
  }
  tokens_at_start_ = t_.target_tokens();
  std::unique_ptr<core::Progress> progress;
  if (o_.log != nullptr) {
    core::Progress::Options po;
    po.live = o_.progress && core::is_terminal(o_.log);
    po.total_bytes = range_.end >= 0 ? std::max<int64_t>(0, range_.end - range_.begin) : -1;
    po.start_bytes = next_offset_ - range_.begin;
    progress = std::make_unique<core::Progress>(o_.log, po);
  }

  std::vector<RowWork> chunk;
  io::RawLine line;
  bool eof = false;
  while (!eof) {
    chunk.clear();
    batch_.clear();
    std::optional<BadRow> abort_row;
    int64_t abort_offset = 0, abort_line = 0;
    // A chunk ends at the next checkpoint_rows boundary, so checkpoints land exactly there.
    const int64_t chunk_limit = std::min<int64_t>(o_.chunk_rows, std::max<int64_t>(1, o_.checkpoint_rows - rows_since_checkpoint()));
    int64_t chunk_rows_read = 0;
    while (chunk_rows_read < chunk_limit) {
      if (!reader_->next(line)) {
        eof = true;
        break;
      }
      ++chunk_rows_read;
      RowWork work;
      if (auto bad = prepare(line, work)) {
        if (o_.on_error == OnError::kSkip) {
          reject(line, *bad);
          if (r_.format == RowFormat::kTxt) {  // TXT stays line-aligned: an empty line for the reject
            RowWork blank;
            blank.kind = RowWork::kTxt;
            blank.terminator = line.terminator;
            blank.fields.emplace_back();
            chunk.push_back(std::move(blank));
          }
          continue;
        }
        abort_row = std::move(bad);
        abort_offset = line.offset;
        abort_line = line.line;
        break;
      }
      chunk.push_back(std::move(work));
    }
    translate_and_write(chunk);
    next_offset_ = abort_row ? abort_offset : reader_->offset();
    next_line_ = abort_row ? abort_line : reader_->line();
    if (abort_row) {
      checkpoint(false);  // the rows before the bad one are kept; resume starts at the bad row
      throw Error(abort_row->message, abort_row->where);
    }
    if (!eof && o_.stop != nullptr && *o_.stop != 0) {
      checkpoint(false);
      st_.stopped = true;
      st_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
      if (progress) {
        progress->finish(fmt::format("loom translate: stopped; {} rows of {} are checkpointed (input up to line "
                                     "{}). To continue, run the same command with --resume", st_.rows,
                                     r_.output, next_line_ - 1));
      }
      return st_;
    }
    if (!eof && checkpoint_due()) checkpoint(false);
    if (progress) {
      progress->update(reader_->offset() - range_.begin, counters_text());
    }
  }
  checkpoint(true);
  st_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  if (progress) {
    std::string line_text = fmt::format("loom translate: {} shard {}/{}: {} in {} ({} rows/s)", r_.output,
                                        r_.shard_index, r_.shard_count, counters_text(),
                                        core::format_duration(st_.seconds),
                                        core::format_count(st_.seconds > 0 ? st_.rows / st_.seconds : 0));
    const std::string engine = t_.summary();
    if (!engine.empty()) line_text += " | " + engine;
    progress->finish(line_text);
  }
  return st_;
}

}  // namespace

std::string reassemble_kth(const std::vector<text::Segment>& segments, const SegmentResult* r, std::size_t count,
                           std::size_t k, double* score) {
  std::vector<std::string> mine;
  double sum = 0;
  bool scored = count > 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (r[i].hypotheses.empty()) fail("translator returned a segment without a translation");
    const std::size_t kk = std::min(k, r[i].hypotheses.size() - 1);
    mine.push_back(r[i].hypotheses[kk]);
    if (kk < r[i].scores.size()) sum += r[i].scores[kk];
    else scored = false;
  }
  if (score != nullptr) *score = scored ? sum / static_cast<double>(count) : std::nan("");
  return text::reassemble(segments, mine);
}

std::vector<SegmentResult> SegmentTranslator::translate_detailed(const std::vector<std::string>& segments) {
  std::vector<std::string> t = translate(segments);
  std::vector<SegmentResult> out(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) out[i].hypotheses.push_back(std::move(t[i]));
  return out;
}

RowFormat parse_row_format(const std::string& s) {
  const std::string l = lower(s);
  if (l == "auto") return RowFormat::kAuto;
  if (l == "jsonl" || l == "ndjson") return RowFormat::kJsonl;
  if (l == "txt" || l == "text") return RowFormat::kTxt;
  fail(Where{"", 0, "format"}, "unknown format '{}' (expected jsonl, txt or auto)", s);
}

OnError parse_on_error(const std::string& s) {
  const std::string l = lower(s);
  if (l == "abort") return OnError::kAbort;
  if (l == "skip") return OnError::kSkip;
  fail(Where{"", 0, "on_error"}, "unknown on-error policy '{}' (expected abort or skip)", s);
}

std::vector<std::string> parse_field_list(const std::string& s) {
  std::vector<std::string> fields;
  for (size_t b = 0; b <= s.size();) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    if (e > b) {
      std::string field = s.substr(b, e - b);
      if (std::find(fields.begin(), fields.end(), field) != fields.end())
        fail(Where{"", 0, "--fields"}, "field '{}' is listed twice", field);
      fields.push_back(std::move(field));
    }
    b = e + 1;
  }
  if (fields.empty()) fail(Where{"", 0, "--fields"}, "no field names given");
  return fields;
}

std::pair<int, int> parse_shard_spec(const std::string& s) {
  int i = -1, n = -1;
  char extra = 0;
  if (std::sscanf(s.c_str(), "%d/%d%c", &i, &n, &extra) != 2 || n < 1 || i < 0 || i >= n)
    fail(Where{"", 0, "--shard"}, "'{}' is not I/N with 0 <= I < N", s);
  return {i, n};
}

std::string shard_output_path(const std::string& path, int index, int count) {
  if (path == "-" || count <= 1) return path;
  const auto pos = path.find("{shard}");
  if (pos != std::string::npos) {
    std::string p = path;
    p.replace(pos, 7, std::to_string(index));
    return p;
  }
  const std::string tag = fmt::format(".{:05}-of-{:05}", index, count);
  const std::string ext = extension(path);
  return path.substr(0, path.size() - ext.size()) + tag + ext;
}

TranslateJobStats run_translate_job(const TranslateJobOptions& options, SegmentTranslator& translator) {
  Job job(options, translator);
  return job.run();
}

}  // namespace loom::pipeline
