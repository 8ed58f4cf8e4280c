// Row-oriented file I/O for dataset jobs: a line reader that serves byte ranges of a file (for
// sharding and resuming) with exact line numbers and a line-size limit, and the durable-output
// primitives (append + fsync, atomic replace) that make long jobs resumable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace loom::io {

/// One line of an input file.
struct RawLine {
  std::string text;        ///< the line's bytes without its terminator (prefix only if too_long)
  std::string terminator;  ///< "\n", "\r\n", or "" for a last line without newline
  int64_t line = 0;        ///< 1-based line number in the whole file
  int64_t offset = 0;      ///< byte offset of the line's first byte in the file
  int64_t end_offset = 0;  ///< byte offset just past the terminator (where the next line starts)
  int64_t length = 0;      ///< full length of the line in bytes, without terminator
  bool too_long = false;   ///< length > max_line_bytes: text holds only the first kTooLongPrefix bytes
};

/// Reads a file (or stdin, path "-") line by line from a byte offset, with memchr over a 1 MiB
/// buffer. Memory use is bounded by max_line_bytes: a longer line is skipped to its end and
/// returned with too_long set, never held whole.
class LineReader {
 public:
  static constexpr int64_t kDefaultMaxLineBytes = int64_t{64} << 20;  ///< 64 MiB
  static constexpr std::size_t kTooLongPrefix = 1024;                 ///< bytes kept of a too-long line

  /// Opens path ("-" = stdin). Throws loom::Error naming the file if it cannot be opened.
  LineReader(const std::string& path, int64_t max_line_bytes = kDefaultMaxLineBytes);
  /// Reads from an in-memory copy of data, reported as `name` (tests, fuzzing).
  static LineReader from_memory(std::string data, std::string name,
                                int64_t max_line_bytes = kDefaultMaxLineBytes);
  ~LineReader();
  LineReader(LineReader&& other) noexcept;
  LineReader& operator=(LineReader&&) = delete;
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  /// Continues reading at byte offset `offset`, which must be the start of line number `line`.
  /// Throws loom::Error for stdin (not seekable).
  void seek(int64_t offset, int64_t line);
  /// Lines whose first byte is at or after `end` are not returned (-1 = read to EOF).
  void set_end(int64_t end) { end_ = end; }

  /// Reads the next line into out; false at EOF / the end offset. Throws loom::Error on read errors.
  bool next(RawLine& out);

  const std::string& path() const { return path_; }
  bool is_stdin() const { return fd_ == 0; }
  /// Size of the file in bytes at open time, -1 for stdin.
  int64_t size() const { return size_; }
  /// Byte offset of the next line to be read.
  int64_t offset() const { return offset_; }
  /// Line number of the next line to be read.
  int64_t line() const { return line_; }

 private:
  LineReader() = default;
  bool refill();

  std::string path_;
  int fd_ = -1;  ///< -1 = in-memory source (all data already in buf_)
  int64_t size_ = -1;
  int64_t max_line_bytes_ = kDefaultMaxLineBytes;
  std::string buf_;
  std::size_t pos_ = 0, len_ = 0;
  int64_t offset_ = 0;
  int64_t line_ = 1;
  int64_t end_ = -1;
  bool eof_ = false;
};

/// The rows a shard owns: those whose first byte lies in [begin, end) of the file.
struct ShardRange {
  int64_t begin = 0;       ///< offset of the shard's first row (a line start, may be >= end)
  int64_t end = 0;         ///< rows starting at or after end belong to later shards
  int64_t first_line = 1;  ///< 1-based line number of the row at begin
};

/// Shard `index` of `count` of the file at path of `size` bytes: the byte range
/// [index*size/count, (index+1)*size/count), with its start moved forward to the next line
/// start, so that the shards together hold every row exactly once, in file order (concatenating
/// their outputs gives the unsharded output). Reads the file up to the range's start to count
/// newlines (count_lines = false: only from the range's start, first_line is then 0 = unknown).
/// Throws loom::Error if index/count are out of range or the file cannot be read.
ShardRange shard_range(const std::string& path, int64_t size, int index, int count, bool count_lines = true);

/// An output file written by appending, made durable with sync(). Path "-" = stdout (sync()
/// then only flushes, and truncation is impossible).
class AppendFile {
 public:
  enum class Mode {
    kCreateNew,  ///< the file must not exist
    kTruncate,   ///< create or empty it
    kResume,     ///< it must exist with at least `resume_size` bytes; cut to exactly that size
  };
  /// Opens path. Throws loom::Error naming the file on failure (exists for kCreateNew, shorter
  /// than resume_size for kResume, I/O errors).
  AppendFile(const std::string& path, Mode mode, int64_t resume_size = 0);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  /// Appends data (a loop over write(2); throws loom::Error on failure, e.g. disk full).
  void write(std::string_view data);
  /// fsync(2)s the file (no-op for stdout/pipes).
  void sync();
  /// Bytes in the file (the resumed size plus everything written since).
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

/// Replaces the file at path with content atomically: writes path + ".tmp", fsyncs it, renames
/// it over path and fsyncs the directory, so a crash leaves either the old or the new content.
/// Throws loom::Error naming the file on failure.
void write_file_atomic(const std::string& path, std::string_view content);

/// Whole content of a file. Throws loom::Error naming the file if it cannot be read.
std::string read_whole_file(const std::string& path);

/// True if something exists at path.
bool path_exists(const std::string& path);

}  // namespace loom::io
