// Whole-file I/O with errors that name the file: the one place loom reads a file into memory,
// parses a JSON file, or replaces a file atomically. Every layer calls these instead of its own
// ifstream/rename code.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace loom::core {

/// Reads the whole file at `path` as bytes.
/// Throws loom::Error naming `path` when it cannot be opened or read.
std::string read_file(const std::string& path);

/// Reads and parses the JSON file at `path` (strict JSON: no comments, no trailing commas).
/// Throws loom::Error naming `path` (and nlohmann's byte position) on I/O errors or invalid JSON.
nlohmann::json read_json(const std::string& path);

/// Replaces `path` with `content` atomically: writes `path`.tmp, fsyncs it, renames it over
/// `path` and fsyncs the directory, so a reader (or a process killed with -9 mid-write) sees
/// either the old or the new file, never a torn one.
/// Throws loom::Error naming the file on any write, fsync or rename failure (e.g. a full disk).
void write_file_atomic(const std::string& path, std::string_view content);

/// True when `path` exists and is a regular file (or a symlink to one).
bool file_exists(const std::string& path);

/// True when `path` exists and is a directory (or a symlink to one).
bool dir_exists(const std::string& path);

}  // namespace loom::core
