#include "loom/io/hub.h"

#include <curl/curl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::io {

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

bool is_commit_sha(std::string_view s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool valid_part(std::string_view p) {
  if (p.empty() || p.size() > 96) return false;
  for (char c : p)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      return false;
  if (p.front() == '.' || p.front() == '-' || p.back() == '.' || p.back() == '-') return false;
  return p.find("--") == std::string_view::npos && p.find("..") == std::string_view::npos;
}

// A revision is used as a path below refs/: refuse anything that could leave that folder.
void check_revision(const std::string& rev) {
  if (rev.empty() || rev.front() == '/' || rev.back() == '/' || rev.find("..") != std::string::npos ||
      rev.find('\0') != std::string::npos || rev.find("//") != std::string::npos)
    fail(Where{"", 0, "--revision"}, "invalid revision '{}'", rev);
}

// A ref file's text without its trailing newline/spaces.
std::string read_text(const std::string& path) {
  std::string s = core::read_file(path);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(Where{dir, 0, ""}, "cannot create directory: {}", ec.message());
}

// ---- libcurl ----

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) fail("libcurl initialisation failed");
  });
}

struct Sink {
  std::string* text = nullptr;  // collect into memory (API answers), capped
  std::FILE* file = nullptr;    // or stream into a file
  size_t cap = 0;
  bool overflow = false;
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t bytes = size * n;
  if (sink->file != nullptr) return std::fwrite(data, 1, bytes, sink->file);
  if (sink->text->size() + bytes > sink->cap) {
    sink->overflow = true;
    return 0;  // aborts the transfer
  }
  sink->text->append(data, bytes);
  return bytes;
}

struct Progress {
  std::string label;
  std::chrono::steady_clock::time_point last{};
  bool shown = false;
};

int on_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* p = static_cast<Progress*>(user);
  auto t = std::chrono::steady_clock::now();
  if (p->shown && t - p->last < std::chrono::milliseconds(200) && now != total) return 0;
  p->last = t;
  p->shown = true;
  if (total > 0)
    std::fprintf(stderr, "\r%s: %.1f / %.1f MB (%3d%%)", p->label.c_str(), now / 1e6, total / 1e6,
                 static_cast<int>(100.0 * now / total));
  else
    std::fprintf(stderr, "\r%s: %.1f MB", p->label.c_str(), now / 1e6);
  std::fflush(stderr);
  return 0;
}

// GET `url` into `sink`; throws loom::Error naming the URL on network errors and HTTP >= 400.
void http_get(const std::string& url, const std::string& token, Sink& sink, Progress* progress,
              const char* hint) {
  curl_init_once();
  CURL* h = curl_easy_init();
  if (h == nullptr) fail(Where{url, 0, ""}, "libcurl: cannot create a handle");
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_slist* headers = nullptr;
  std::string auth = "Authorization: Bearer " + token;
  if (!token.empty()) headers = curl_slist_append(headers, auth.c_str());
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "loom/0.1");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);  // abort if < 1 byte/s ...
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);  // ... for 60 s
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  if (progress != nullptr) {
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, progress);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  }
  CURLcode rc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  if (progress != nullptr && progress->shown) std::fprintf(stderr, "\n");
  if (sink.overflow) fail(Where{url, 0, ""}, "answer larger than {} bytes", sink.cap);
  if (rc != CURLE_OK && status < 400)
    fail(Where{url, 0, ""}, "download failed: {}", errbuf[0] ? errbuf : curl_easy_strerror(rc));
  if (status >= 400)
    fail(Where{url, 0, ""}, "HTTP {}{}", status,
         status == 401 || status == 403 || status == 404 ? hint : "");
}

std::string escape(const std::string& s) {
  curl_init_once();
  char* e = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  if (e == nullptr) fail("libcurl: cannot escape '{}'", s);
  std::string out(e);
  curl_free(e);
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

bool is_valid_model_id(std::string_view id) {
  size_t slash = id.find('/');
  if (slash == std::string_view::npos) return valid_part(id);
  return valid_part(id.substr(0, slash)) && valid_part(id.substr(slash + 1));
}

std::string hub_cache_dir() {
  if (std::string v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = env("HF_HOME"); !v.empty()) return (fs::path(v) / "hub").string();
  std::string home = env("HOME");
  if (home.empty()) {
    if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_dir != nullptr)
      home = pw->pw_dir;
  }
  if (home.empty()) fail("cannot locate the Hugging Face cache: set HF_HUB_CACHE or HOME");
  return (fs::path(home) / ".cache" / "huggingface" / "hub").string();
}

std::string cache_folder_name(std::string_view id) {
  std::string out = "models--";
  for (char c : id) {
    if (c == '/')
      out += "--";
    else
      out += c;
  }
  return out;
}

std::string resolve_model(const std::string& dir_or_id, const std::string& revision,
                          const std::string& cache_dir) {
  if (core::dir_exists(dir_or_id)) return dir_or_id;
  if (!is_valid_model_id(dir_or_id))
    fail(Where{dir_or_id, 0, ""},
         "not a model directory, and not a valid Hugging Face model id (\"org/name\")");
  check_revision(revision);
  const std::string cache = cache_dir.empty() ? hub_cache_dir() : cache_dir;
  const fs::path repo = fs::path(cache) / cache_folder_name(dir_or_id);
  const fs::path ref = repo / "refs" / revision;
  std::vector<std::string> searched = {dir_or_id + " (as a directory)"};
  std::string sha;
  if (is_commit_sha(revision)) {
    sha = revision;
  } else {
    searched.push_back(ref.string());
    std::error_code ec;
    if (fs::is_regular_file(ref, ec)) sha = read_text(ref.string());
  }
  if (!sha.empty()) {
    const fs::path snap = repo / "snapshots" / sha;
    if (is_commit_sha(sha) && core::dir_exists(snap.string())) return snap.string();
    searched.push_back(snap.string());
  }
  std::string list;
  for (const auto& s : searched) list += "\n  " + s;
  fail(Where{dir_or_id, 0, ""},
       "model not found; searched:{}\nDownload it with: loom download {}{}", list, dir_or_id,
       revision == "main" ? "" : " --revision " + revision);
}

std::vector<std::string> needed_files(const std::vector<std::string>& siblings) {
  static const char* kExact[] = {
      "config.json",       "generation_config.json",  "model.safetensors.index.json",
      "vocab.json",        "vocab.txt",               "tokenizer_config.json",
      "special_tokens_map.json", "added_tokens.json", "sentencepiece.bpe.model"};
  bool has_safetensors = false;
  for (const auto& f : siblings)
    if (f.find('/') == std::string::npos && ends_with(f, ".safetensors")) has_safetensors = true;
  std::vector<std::string> out;
  for (const auto& f : siblings) {
    if (f.empty() || f.find('/') != std::string::npos || f.find('\\') != std::string::npos ||
        f == "." || f == "..")
      continue;
    bool need = ends_with(f, ".safetensors") || ends_with(f, ".spm") || ends_with(f, ".model") ||
                (f == "pytorch_model.bin" && !has_safetensors);
    for (const char* e : kExact) need = need || f == e;
    if (need && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  return out;
}

std::string download_model(const std::string& id, const DownloadOptions& opts) {
  if (!is_valid_model_id(id))
    fail(Where{id, 0, ""}, "not a valid Hugging Face model id (\"org/name\")");
  check_revision(opts.revision);
  std::string endpoint = !opts.endpoint.empty() ? opts.endpoint : env("HF_ENDPOINT");
  if (endpoint.empty()) endpoint = "https://huggingface.co";
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const std::string token = !opts.token.empty() ? opts.token : env("HF_TOKEN");
  const std::string cache = opts.cache_dir.empty() ? hub_cache_dir() : opts.cache_dir;
  const bool show = opts.progress && ::isatty(STDERR_FILENO);
  const char* hint =
      " (check the model id and revision; gated or private models need HF_TOKEN)";

  // 1. Which commit, which files.
  const std::string api = endpoint + "/api/models/" + id + "/revision/" + escape(opts.revision);
  std::string body;
  Sink sink;
  sink.text = &body;
  sink.cap = 64u << 20;
  http_get(api, token, sink, nullptr, hint);
  nlohmann::json info;
  try {
    info = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    fail(Where{api, 0, ""}, "answer is not JSON: {}", e.what());
  }
  if (!info.is_object() || !info.contains("sha") || !info["sha"].is_string() ||
      !is_commit_sha(info["sha"].get<std::string>()))
    fail(Where{api, 0, "sha"}, "answer has no 40-hex commit sha");
  if (!info.contains("siblings") || !info["siblings"].is_array())
    fail(Where{api, 0, "siblings"}, "answer has no file list");
  const std::string sha = info["sha"].get<std::string>();
  std::vector<std::string> siblings;
  for (const auto& s : info["siblings"])
    if (s.is_object() && s.contains("rfilename") && s["rfilename"].is_string())
      siblings.push_back(s["rfilename"].get<std::string>());
  std::vector<std::string> files = needed_files(siblings);
  if (std::find(files.begin(), files.end(), "config.json") == files.end())
    fail(Where{api, 0, "siblings"}, "model {} has no config.json at revision {}", id,
         opts.revision);

  // 2. The files, each to a temp name then renamed into the snapshot.
  const fs::path repo = fs::path(cache) / cache_folder_name(id);
  const fs::path snap = repo / "snapshots" / sha;
  make_dirs(snap.string());
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    const std::string dest = (snap / f).string();
    std::error_code ec;
    if (fs::is_regular_file(dest, ec)) continue;  // complete: files only appear by rename
    const std::string url = endpoint + "/" + id + "/resolve/" + sha + "/" + escape(f);
    const std::string tmp = dest + ".tmp." + std::to_string(::getpid());
    std::FILE* out = std::fopen(tmp.c_str(), "wb");
    if (out == nullptr) fail(Where{tmp, 0, ""}, "cannot create: {}", std::strerror(errno));
    Sink fsink;
    fsink.file = out;
    Progress progress{fmt::format("[{}/{}] {}", i + 1, files.size(), f)};
    try {
      http_get(url, token, fsink, show ? &progress : nullptr, hint);
    } catch (...) {
      std::fclose(out);
      std::remove(tmp.c_str());
      throw;
    }
    bool ok = std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
    ok = std::fclose(out) == 0 && ok;
    if (!ok || std::rename(tmp.c_str(), dest.c_str()) != 0) {
      int err = errno;
      std::remove(tmp.c_str());
      fail(Where{dest, 0, ""}, "cannot write: {}", std::strerror(err));
    }
  }

  // 3. The ref, so that resolve_model(id, revision) finds this snapshot.
  if (opts.revision != sha) {
    const fs::path ref = repo / "refs" / opts.revision;
    make_dirs(ref.parent_path().string());
    core::write_file_atomic(ref.string(), sha);
  }
  return snap.string();
}

}  // namespace loom::io
