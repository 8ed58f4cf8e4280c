#include "loom/io/row_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::io {
namespace {

constexpr std::size_t kBufferBytes = std::size_t{1} << 20;

std::string errno_text() { return std::strerror(errno); }

/// read(2) that retries on EINTR; returns bytes read (0 at EOF).
std::size_t read_some(int fd, char* data, std::size_t n, const std::string& path) {
  while (true) {
    const ssize_t r = ::read(fd, data, n);
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno != EINTR) fail(Where{path, 0, ""}, "read failed: {}", errno_text());
  }
}

}  // namespace

// ---- LineReader ----

LineReader::LineReader(const std::string& path, int64_t max_line_bytes)
    : path_(path), max_line_bytes_(max_line_bytes) {
  if (path == "-") {
    fd_ = 0;
    path_ = "<stdin>";
  } else {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(Where{path, 0, ""}, "cannot open input: {}", errno_text());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail(Where{path, 0, ""}, "cannot stat input: {}", errno_text());
    if (S_ISDIR(st.st_mode)) {
      ::close(fd_);
      fd_ = -1;
      fail(Where{path, 0, ""}, "input is a directory, expected a JSONL or text file");
    }
    size_ = S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : -1;
  }
  buf_.resize(kBufferBytes);
}

LineReader LineReader::from_memory(std::string data, std::string name, int64_t max_line_bytes) {
  LineReader r;
  r.path_ = std::move(name);
  r.max_line_bytes_ = max_line_bytes;
  r.size_ = static_cast<int64_t>(data.size());
  r.buf_ = std::move(data);
  r.len_ = r.buf_.size();
  r.eof_ = true;
  return r;
}

LineReader::LineReader(LineReader&& o) noexcept
    : path_(std::move(o.path_)), fd_(o.fd_), size_(o.size_), max_line_bytes_(o.max_line_bytes_),
      buf_(std::move(o.buf_)), pos_(o.pos_), len_(o.len_), offset_(o.offset_), line_(o.line_),
      end_(o.end_), eof_(o.eof_) {
  o.fd_ = -1;
}

LineReader::~LineReader() {
  if (fd_ > 0) ::close(fd_);
}

void LineReader::seek(int64_t offset, int64_t line) {
  if (fd_ == 0) fail(Where{path_, 0, ""}, "cannot seek in stdin (sharding and resume need a file)");
  if (offset < 0 || (size_ >= 0 && offset > size_))
    fail(Where{path_, 0, ""}, "seek offset {} outside the file ({} bytes)", offset, size_);
  if (fd_ < 0) {  // in memory: the whole file is in buf_
    pos_ = static_cast<std::size_t>(offset);
  } else {
    if (::lseek(fd_, offset, SEEK_SET) < 0) fail(Where{path_, 0, ""}, "seek failed: {}", errno_text());
    pos_ = len_ = 0;
    eof_ = false;
  }
  offset_ = offset;
  line_ = line;
}

bool LineReader::refill() {
  if (eof_ || fd_ < 0) return false;
  pos_ = 0;
  len_ = read_some(fd_, buf_.data(), buf_.size(), path_);
  if (len_ == 0) eof_ = true;
  return len_ > 0;
}

bool LineReader::next(RawLine& out) {
  if (end_ >= 0 && offset_ >= end_) return false;
  out.text.clear();
  out.terminator.clear();
  out.too_long = false;
  out.line = line_;
  out.offset = offset_;
  int64_t length = 0;
  bool newline = false;
  while (true) {
    if (pos_ >= len_ && !refill()) break;
    const char* start = buf_.data() + pos_;
    const std::size_t avail = len_ - pos_;
    const void* nl = std::memchr(start, '\n', avail);
    const std::size_t n = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - start) : avail;
    if (!out.too_long) {
      if (length + static_cast<int64_t>(n) <= max_line_bytes_) {
        out.text.append(start, n);
      } else {
        out.too_long = true;
        const std::size_t keep = std::min<std::size_t>(kTooLongPrefix, out.text.size() + n);
        if (out.text.size() < keep) out.text.append(start, keep - out.text.size());
        out.text.resize(keep);
        out.text.shrink_to_fit();
      }
    }
    length += static_cast<int64_t>(n);
    pos_ += n;
    if (nl) {
      ++pos_;
      newline = true;
      break;
    }
  }
  if (length == 0 && !newline) return false;  // end of file
  if (newline) {
    if (!out.too_long && !out.text.empty() && out.text.back() == '\r') {
      out.text.pop_back();
      out.terminator = "\r\n";
      --length;
    } else {
      out.terminator = "\n";
    }
  }
  out.length = length;
  offset_ += length + static_cast<int64_t>(out.terminator.size());
  out.end_offset = offset_;
  ++line_;
  return true;
}

// ---- shards ----

ShardRange shard_range(const std::string& path, int64_t size, int index, int count, bool count_lines) {
  if (count < 1 || index < 0 || index >= count)
    fail(Where{path, 0, ""}, "shard {} of {} is out of range (need 0 <= index < count)", index, count);
  ShardRange r;
  using u128 = unsigned __int128;
  const auto begin = static_cast<int64_t>(static_cast<u128>(size) * index / count);
  r.end = static_cast<int64_t>(static_cast<u128>(size) * (index + 1) / count);
  if (begin == 0) return r;  // begin 0, first_line 1
  // The shard's first row starts after the first '\n' at or after begin - 1 (the byte before a
  // line start is '\n'); its line number is 2 + the newlines before that '\n'.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(Where{path, 0, ""}, "cannot open input: {}", errno_text());
  std::string buf(kBufferBytes, '\0');
  int64_t pos = count_lines ? 0 : begin - 1, newlines = 0;
  r.begin = -1;
  try {
    if (!count_lines && ::lseek(fd, pos, SEEK_SET) < 0) fail(Where{path, 0, ""}, "seek failed: {}", errno_text());
    while (r.begin < 0) {
      const std::size_t n = read_some(fd, buf.data(), buf.size(), path);
      if (n == 0) {  // no line start at/after begin: this shard owns no rows
        r.begin = std::max(pos, begin);
        break;
      }
      // Bytes before begin - 1 only count; from begin - 1 on, look for the '\n'.
      const std::size_t skip = static_cast<std::size_t>(std::clamp<int64_t>(begin - 1 - pos, 0, static_cast<int64_t>(n)));
      newlines += std::count(buf.data(), buf.data() + skip, '\n');
      if (const void* nl = std::memchr(buf.data() + skip, '\n', n - skip)) {
        const std::size_t i = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data());
        r.begin = pos + static_cast<int64_t>(i) + 1;
      }
      pos += static_cast<int64_t>(n);
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  r.first_line = count_lines ? newlines + 2 : 0;
  return r;
}

// ---- AppendFile ----

AppendFile::AppendFile(const std::string& path, Mode mode, int64_t resume_size) : path_(path) {
  if (path == "-") {
    if (mode == Mode::kResume) fail(Where{"<stdout>", 0, ""}, "cannot resume output written to stdout");
    fd_ = 1;
    path_ = "<stdout>";
    return;
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
  if (mode == Mode::kCreateNew) flags |= O_EXCL;
  if (mode == Mode::kTruncate) flags |= O_TRUNC;
  if (mode == Mode::kResume) flags &= ~O_CREAT;
  fd_ = ::open(path.c_str(), flags, 0644);
  if (fd_ < 0) {
    if (errno == EEXIST) fail(Where{path, 0, ""}, "output exists; use --resume or --overwrite (or delete it)");
    fail(Where{path, 0, ""}, "cannot open output: {}", errno_text());
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail(Where{path, 0, ""}, "cannot stat output: {}", errno_text());
  size_ = static_cast<int64_t>(st.st_size);
  if (mode == Mode::kResume) {
    if (size_ < resume_size) {
      ::close(fd_);
      fd_ = -1;
      fail(Where{path, 0, ""}, "output has {} bytes but the checkpoint recorded {}: it was truncated or "
           "replaced after the checkpoint; cannot resume", size_, resume_size);
    }
    if (::ftruncate(fd_, resume_size) != 0) fail(Where{path, 0, ""}, "cannot truncate output: {}", errno_text());
    size_ = resume_size;
  }
  if (::lseek(fd_, size_, SEEK_SET) < 0) fail(Where{path, 0, ""}, "seek failed: {}", errno_text());
}

AppendFile::~AppendFile() {
  if (fd_ > 2) ::close(fd_);
}

void AppendFile::write(std::string_view data) {
  while (!data.empty()) {
    const ssize_t w = ::write(fd_, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(Where{path_, 0, ""}, "write failed: {}", errno_text());
    }
    data.remove_prefix(static_cast<std::size_t>(w));
    size_ += w;
  }
}

void AppendFile::sync() {
  if (fd_ <= 2) return;  // stdout: nothing durable to promise
  if (::fsync(fd_) != 0) fail(Where{path_, 0, ""}, "fsync failed: {}", errno_text());
}

// ---- whole files ----

void write_file_atomic(const std::string& path, std::string_view content) {
  core::write_file_atomic(path, content);
}

std::string read_whole_file(const std::string& path) { return core::read_file(path); }

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace loom::io
