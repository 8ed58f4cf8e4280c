#include "loom/io/hub.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
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
  CURL* handle = nullptr;        // set by http_get
  bool resuming = false;         // file holds a prefix and a Range was asked for
  bool started = false;          // first body byte seen
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t bytes = size * n;
  if (sink->file != nullptr) {
    if (!sink->started) {
      sink->started = true;
      long status = 0;
      curl_easy_getinfo(sink->handle, CURLINFO_RESPONSE_CODE, &status);
      // A server that ignores the Range answers 200 with the whole file: start over.
      if (sink->resuming && status == 200) {
        if (std::fflush(sink->file) != 0 || ::ftruncate(::fileno(sink->file), 0) != 0 ||
            std::fseek(sink->file, 0, SEEK_SET) != 0)
          return 0;
      }
    }
    return std::fwrite(data, 1, bytes, sink->file);
  }
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

// GET `url` into `sink` (from byte `from` on, with a Range request, when from > 0); throws
// loom::Error naming the URL on network errors and HTTP >= 400.
void http_get(const std::string& url, const std::string& token, Sink& sink, Progress* progress,
              const char* hint, int64_t from = 0) {
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
  sink.handle = h;
  const std::string range = std::to_string(from) + "-";
  if (from > 0) {
    curl_easy_setopt(h, CURLOPT_RANGE, range.c_str());
    sink.resuming = true;
  }
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

// Response headers of a HEAD request, names lower-cased (the last response's, redirects not followed).
struct HeadInfo {
  long status = 0;
  std::map<std::string, std::string> headers;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* info = static_cast<HeadInfo*>(user);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.compare(0, 5, "HTTP/") == 0) {
    info->headers.clear();
  } else if (auto colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    info->headers[name] = value;
  }
  return size * n;
}

// HEAD `url` without following redirects (huggingface_hub's get_hf_file_metadata: the Hub puts
// X-Linked-Etag / X-Linked-Size / X-Repo-Commit on its 302 to the CDN).
HeadInfo http_head(const std::string& url, const std::string& token, const char* hint) {
  curl_init_once();
  CURL* h = curl_easy_init();
  if (h == nullptr) fail(Where{url, 0, ""}, "libcurl: cannot create a handle");
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_slist* headers = curl_slist_append(nullptr, "Accept-Encoding: identity");
  std::string auth = "Authorization: Bearer " + token;
  if (!token.empty()) headers = curl_slist_append(headers, auth.c_str());
  HeadInfo info;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "loom/0.1");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &info);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &info.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK && info.status < 400)
    fail(Where{url, 0, ""}, "download failed: {}", errbuf[0] ? errbuf : curl_easy_strerror(rc));
  if (info.status >= 400)
    fail(Where{url, 0, ""}, "HTTP {}{}", info.status,
         info.status == 401 || info.status == 403 || info.status == 404 ? hint : "");
  return info;
}

// An ETag as huggingface_hub normalises it (W/ prefix and quotes dropped). It names a file in
// blobs/, so only [A-Za-z0-9._-] is accepted (a hostile server cannot escape the folder).
std::string normalize_etag(std::string e, const std::string& url) {
  if (e.compare(0, 2, "W/") == 0) e.erase(0, 2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  bool ok = !e.empty() && e.size() <= 128 && e.front() != '.' && e.find("..") == std::string::npos;
  for (char c : e)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  if (!ok) fail(Where{url, 0, "ETag"}, "the server sent no usable ETag ('{}')", e);
  return e;
}

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail(Where{path, 0, ""}, "cannot open: {}", std::strerror(errno));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx, buf.data(), n);
  const bool bad = std::ferror(f) != 0;
  std::fclose(f);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (bad) fail(Where{path, 0, ""}, "read error");
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

bool hub_offline() {
  std::string v = env("HF_HUB_OFFLINE");
  for (char& c : v) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

namespace {

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
  const std::string cache = opts.cache_dir.empty() ? hub_cache_dir() : opts.cache_dir;
  if (hub_offline()) {  // huggingface_hub: no HTTP at all, the cached snapshot or an error
    try {
      return resolve_model(id, opts.revision, cache);
    } catch (const Error& e) {
      fail(Where{id, 0, ""}, "HF_HUB_OFFLINE is set, so nothing is downloaded, and the model is not "
           "in the cache:\n{}", e.message());
    }
  }
  std::string endpoint = !opts.endpoint.empty() ? opts.endpoint : env("HF_ENDPOINT");
  if (endpoint.empty()) endpoint = "https://huggingface.co";
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const std::string token = !opts.token.empty() ? opts.token : env("HF_TOKEN");
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

  // 2. The files, in huggingface_hub's layout: each file's bytes in blobs/<etag> (downloaded to
  //    blobs/<etag>.incomplete, resumed from there, sha256-checked when the etag is one), and
  //    snapshots/<sha>/<file> a relative symlink ../../blobs/<etag>.
  const fs::path repo = fs::path(cache) / cache_folder_name(id);
  const fs::path snap = repo / "snapshots" / sha;
  const fs::path blobs = repo / "blobs";
  make_dirs(snap.string());
  make_dirs(blobs.string());
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    const fs::path dest = snap / f;
    std::error_code ec;
    if (fs::is_regular_file(dest, ec)) continue;  // complete (a symlink to a blob, or a file)
    const std::string url = endpoint + "/" + id + "/resolve/" + sha + "/" + escape(f);
    const HeadInfo head = http_head(url, token, hint);
    auto header = [&](const char* name) {
      auto it = head.headers.find(name);
      return it == head.headers.end() ? std::string() : it->second;
    };
    std::string etag = header("x-linked-etag");
    if (etag.empty()) etag = header("etag");
    etag = normalize_etag(etag, url);
    const fs::path blob = blobs / etag;
    if (!fs::is_regular_file(blob, ec)) {
      const std::string part = blob.string() + ".incomplete";
      const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) fail(Where{part, 0, ""}, "cannot create: {}", std::strerror(errno));
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd);
        fail(Where{part, 0, ""}, "another process is downloading this file");
      }
      std::FILE* out = ::fdopen(fd, "ab");
      if (out == nullptr) {
        ::close(fd);
        fail(Where{part, 0, ""}, "cannot open: {}", std::strerror(errno));
      }
      struct stat st {};
      int64_t have = ::fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
      // The file's size from the HEAD answer (X-Linked-Size on the Hub's redirect, else the
      // Content-Length of a direct answer), so that a partial file that is in fact complete
      // (killed before the rename) is not asked for past its end.
      int64_t expected = -1;
      const std::string size_text = head.status >= 300 && head.status < 400
                                        ? header("x-linked-size")
                                        : header("content-length");
      if (!size_text.empty() && size_text.size() < 19 &&
          size_text.find_first_not_of("0123456789") == std::string::npos)
        expected = std::stoll(size_text);
      if (expected >= 0 && have > expected) {  // longer than the file: start over
        if (::ftruncate(fd, 0) != 0) fail(Where{part, 0, ""}, "cannot truncate: {}", std::strerror(errno));
        have = 0;
      }
      Sink fsink;
      fsink.file = out;
      Progress progress{fmt::format("[{}/{}] {}", i + 1, files.size(), f)};
      try {
        if (!(expected > 0 && have == expected))
          http_get(url, token, fsink, show ? &progress : nullptr, hint, have);
      } catch (...) {
        std::fclose(out);  // the partial file stays: the next run resumes it
        throw;
      }
      bool ok = std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
      ok = std::fclose(out) == 0 && ok;
      if (!ok) fail(Where{part, 0, ""}, "cannot write: {}", std::strerror(errno));
      if (is_sha256_hex(etag)) {  // an LFS file: its etag is the sha256 of its bytes
        const std::string got = sha256_file(part);
        if (got != etag) {
          std::remove(part.c_str());
          fail(Where{url, 0, f}, "sha256 mismatch: the Hub says {}, the downloaded file has {} "
               "(the partial file was removed; run loom download again)", etag, got);
        }
      }
      if (std::rename(part.c_str(), blob.c_str()) != 0)
        fail(Where{blob.string(), 0, ""}, "cannot rename {} into place: {}", part, std::strerror(errno));
    }
    // The snapshot entry: a relative symlink, made under a temp name and renamed over dest.
    const std::string link_tmp = dest.string() + ".tmp." + std::to_string(::getpid());
    std::remove(link_tmp.c_str());
    if (::symlink(("../../blobs/" + etag).c_str(), link_tmp.c_str()) != 0 ||
        std::rename(link_tmp.c_str(), dest.c_str()) != 0) {
      int err = errno;
      std::remove(link_tmp.c_str());
      fail(Where{dest.string(), 0, ""}, "cannot link to blobs/{}: {}", etag, std::strerror(err));
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
