#include "loom/io/hub.h"
#include "support/paths.h"

#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/evp.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <cstring>
#include <sstream>
#include <thread>

#include "loom/core/error.h"
#include "loom/io/checkpoint.h"
#include "support/support.h"

namespace loom::io {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

const std::string kMarianDir = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";
const std::string kSha = "0123456789abcdef0123456789abcdef01234567";

using loom_test::error_of;
using loom_test::slurp;
using loom_test::TempDir;

// Sets an environment variable for the life of the object, then restores it.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> old;
  ScopedEnv(const char* n, const char* value) : name(n) {
    if (const char* v = std::getenv(n)) old = v;
    if (value != nullptr)
      ::setenv(n, value, 1);
    else
      ::unsetenv(n);
  }
  ~ScopedEnv() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

std::string sha_hex(const std::string& bytes, const EVP_MD* md) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), out, &len, md, nullptr);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", out[i]);
  return hex;
}

// A local stand-in for huggingface.co serving one model the way the Hub does: the revision API,
// and /{id}/resolve/{sha}/{file} redirecting (302) to a CDN-like path.
class FakeHub {
 public:
  FakeHub(std::string id, std::map<std::string, std::optional<std::string>> files,
          std::string token = "")
      : id_(std::move(id)), files_(std::move(files)), token_(std::move(token)) {
    server_.Get(R"(/api/models/([^/]+/[^/]+)/revision/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  log(req);
                  if (!authorized(req, res)) return;
                  if (req.matches[1] != id_ || req.matches[2] != "main") {
                    res.status = 404;
                    return;
                  }
                  nlohmann::json siblings = nlohmann::json::array();
                  for (const auto& kv : files_) siblings.push_back({{"rfilename", kv.first}});
                  res.set_content(nlohmann::json{{"id", id_}, {"sha", kSha}, {"siblings", siblings}}
                                      .dump(),
                                  "application/json");
                });
    // Like the Hub: an LFS file (weights, SentencePiece models) answers 302 to the CDN with
    // X-Linked-Etag = its sha256; a regular git file answers 200 with ETag = its git blob sha1.
    server_.Get(R"(/([^/]+/[^/]+)/resolve/([0-9a-f]{40})/(.+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  log(req);
                  if (!authorized(req, res)) return;
                  if (req.matches[1] != id_ || req.matches[2] != kSha) {
                    res.status = 404;
                    return;
                  }
                  const std::string f = req.matches[3];
                  auto it = files_.find(f);
                  const std::string body = it != files_.end() && it->second ? *it->second : "";
                  res.set_header("X-Repo-Commit", kSha);
                  if (is_lfs(f)) {
                    res.set_header("X-Linked-Etag", "\"" + sha_hex(body, EVP_sha256()) + "\"");
                    res.set_header("X-Linked-Size", std::to_string(body.size()));
                    res.set_redirect("/cdn/" + f);
                    return;
                  }
                  if (it == files_.end() || !it->second) {
                    res.status = 404;
                    return;
                  }
                  res.set_header("ETag", "\"" + sha_hex("blob " + std::to_string(body.size()) + std::string(1, '\0') + body, EVP_sha1()) + "\"");
                  res.set_content(body, "application/octet-stream");
                });
    server_.Get(R"(/cdn/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      log(req);
      const std::string f = req.matches[1];
      auto it = files_.find(f);
      if (it == files_.end() || !it->second) {
        res.status = 404;
        return;
      }
      std::string body = *it->second;
      std::lock_guard<std::mutex> lock(mu_);
      if (req.has_header("Range")) ranges_.push_back(f + " " + req.get_header_value("Range"));
      if (corrupt_.count(f)) body[body.size() / 2] ^= 1;
      if (cut_once_.erase(f)) {  // send half of the file, then drop the connection
        const size_t half = body.size() / 2;
        res.set_content_provider(body.size(), "application/octet-stream",
                                 [body, half](size_t offset, size_t, httplib::DataSink& sink) {
                                   if (offset < half) sink.write(body.data() + offset, half - offset);
                                   return offset < half;
                                 });
        return;
      }
      res.set_content(body, "application/octet-stream");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeHub() {
    server_.stop();
    thread_.join();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.clear();
  }
  /// Range headers the CDN received ("file bytes=N-").
  std::vector<std::string> ranges() {
    std::lock_guard<std::mutex> lock(mu_);
    return ranges_;
  }
  /// The CDN sends `file` with one byte flipped (its etag stays the true sha256).
  void corrupt(const std::string& file) {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_.insert(file);
  }
  /// The CDN's next answer for `file` stops after half of it (connection dropped).
  void cut_once(const std::string& file) {
    std::lock_guard<std::mutex> lock(mu_);
    cut_once_.insert(file);
  }
  static bool is_lfs(const std::string& f) {
    for (const char* ext : {".safetensors", ".bin", ".spm", ".model"})
      if (f.size() >= std::strlen(ext) && f.compare(f.size() - std::strlen(ext), std::string::npos, ext) == 0)
        return true;
    return false;
  }

 private:
  void log(const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(req.path);
  }
  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (token_.empty() || req.get_header_value("Authorization") == "Bearer " + token_) return true;
    res.status = 401;
    return false;
  }
  std::string id_;
  std::map<std::string, std::optional<std::string>> files_;  // nullopt: listed, but 404
  std::string token_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::vector<std::string> ranges_;
  std::set<std::string> corrupt_, cut_once_;
};

// The marian fixture as the Hub would list it, plus files loom must not fetch.
std::map<std::string, std::optional<std::string>> marian_repo() {
  std::map<std::string, std::optional<std::string>> files;
  for (const auto& e : fs::directory_iterator(kMarianDir))
    if (e.path().filename() != "reference.json")
      files[e.path().filename().string()] = slurp(e.path().string());
  files["README.md"] = "# model card";
  files["tf_model.h5"] = "not needed";
  files["pytorch_model.bin"] = "not needed: safetensors exist";
  files["onnx/encoder_model.onnx"] = "in a sub-folder";
  return files;
}

TEST(Hub, ModelIdValidation) {
  for (const char* ok : {"Helsinki-NLP/opus-mt-en-zh", "gpt2", "facebook/nllb-200-distilled-600M",
                         "org/model_v1.5"})
    EXPECT_TRUE(is_valid_model_id(ok)) << ok;
  for (const char* bad : {"", "a/b/c", "../x", "org/..", "org/na me", "org/-x", "org--x/y", "/abs",
                          "org/", "org/x.", "org/a..b", "org/x\n"})
    EXPECT_FALSE(is_valid_model_id(bad)) << bad;
  EXPECT_EQ(cache_folder_name("Helsinki-NLP/opus-mt-en-zh"), "models--Helsinki-NLP--opus-mt-en-zh");
  EXPECT_EQ(cache_folder_name("gpt2"), "models--gpt2");
}

TEST(Hub, CacheDirFollowsHuggingfaceHubEnvironment) {
  {
    ScopedEnv a("HF_HUB_CACHE", "/x/cache"), b("HF_HOME", "/h");
    EXPECT_EQ(hub_cache_dir(), "/x/cache");
  }
  {
    ScopedEnv a("HF_HUB_CACHE", nullptr), b("HF_HOME", "/h");
    EXPECT_EQ(hub_cache_dir(), "/h/hub");
  }
  {
    ScopedEnv a("HF_HUB_CACHE", nullptr), b("HF_HOME", nullptr), c("HOME", "/home/u");
    EXPECT_EQ(hub_cache_dir(), "/home/u/.cache/huggingface/hub");
  }
}

TEST(Hub, NeededFiles) {
  EXPECT_EQ(needed_files({"README.md", "config.json", ".gitattributes", "model.safetensors",
                          "pytorch_model.bin", "tf_model.h5", "source.spm", "target.spm",
                          "vocab.json", "tokenizer_config.json", "special_tokens_map.json",
                          "generation_config.json", "onnx/decoder.onnx", "sub/config.json"}),
            (std::vector<std::string>{"config.json", "model.safetensors", "source.spm",
                                      "target.spm", "vocab.json", "tokenizer_config.json",
                                      "special_tokens_map.json", "generation_config.json"}));
  EXPECT_EQ(needed_files({"config.json", "pytorch_model.bin", "sentencepiece.bpe.model",
                          "added_tokens.json", "flax_model.msgpack"}),
            (std::vector<std::string>{"config.json", "pytorch_model.bin",
                                      "sentencepiece.bpe.model", "added_tokens.json"}));
  EXPECT_EQ(needed_files({"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                          "model.safetensors.index.json", "pytorch_model.bin", "tokenizer.model"}),
            (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors",
                                      "model.safetensors.index.json", "tokenizer.model"}));
}

TEST(Hub, ResolveModel) {
  TempDir cache;
  // An existing directory is returned unchanged, even if it looks like an id.
  EXPECT_EQ(resolve_model(kMarianDir), kMarianDir);

  std::string msg = error_of([&] { resolve_model("org/name", "main", cache.path().string()); });
  EXPECT_THAT(msg, AllOf(HasSubstr("org/name"), HasSubstr("model not found"),
                         HasSubstr(cache.path().string() + "/models--org--name/refs/main"),
                         HasSubstr("loom download org/name")));
  EXPECT_THAT(error_of([&] { resolve_model("./no/such/dir/", "main", cache.path().string()); }),
              HasSubstr("not a valid Hugging Face model id"));
  EXPECT_THAT(error_of([&] { resolve_model("org/name", "../../etc", cache.path().string()); }),
              HasSubstr("invalid revision"));

  const fs::path repo = cache.path() / "models--org--name";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots" / kSha);
  std::ofstream(repo / "refs" / "main") << kSha;  // huggingface_hub writes no newline
  EXPECT_EQ(resolve_model("org/name", "main", cache.path().string()), (repo / "snapshots" / kSha).string());
  EXPECT_EQ(resolve_model("org/name", kSha, cache.path().string()), (repo / "snapshots" / kSha).string());
  // A ref pointing at a snapshot that is not there.
  std::ofstream(repo / "refs" / "v2") << std::string(40, 'e') << "\n";
  EXPECT_THAT(error_of([&] { resolve_model("org/name", "v2", cache.path().string()); }),
              AllOf(HasSubstr("snapshots/" + std::string(40, 'e')),
                    HasSubstr("loom download org/name --revision v2")));
}

TEST(Hub, DownloadsFromLocalHubIntoCacheThenResolvesAndLoads) {
  TempDir cache;
  ScopedEnv env_cache("HF_HUB_CACHE", cache.path().string().c_str());
  ScopedEnv env_token("HF_TOKEN", "secret-token");
  FakeHub hub("Helsinki-NLP/opus-mt-en-zh", marian_repo(), "secret-token");
  DownloadOptions opts;
  opts.endpoint = hub.endpoint() + "/";
  std::string snap = download_model("Helsinki-NLP/opus-mt-en-zh", opts);
  const fs::path repo = cache.path() / "models--Helsinki-NLP--opus-mt-en-zh";
  EXPECT_EQ(snap, (repo / "snapshots" / kSha).string());
  EXPECT_EQ(slurp((repo / "refs" / "main").string()), kSha);

  std::vector<std::string> got;
  for (const auto& e : fs::directory_iterator(snap)) got.push_back(e.path().filename().string());
  EXPECT_THAT(got, UnorderedElementsAre("config.json", "generation_config.json", "model.safetensors",
                                        "source.spm", "target.spm", "vocab.json",
                                        "special_tokens_map.json", "tokenizer_config.json"));
  for (const auto& f : got) EXPECT_EQ(slurp(snap + "/" + f), slurp(kMarianDir + "/" + f)) << f;
  // The API call, then for each file a HEAD of its resolve URL and a GET (LFS files: of the
  // resolve URL and the CDN it redirects to).
  size_t lfs = 0;
  for (const auto& f : got) lfs += FakeHub::is_lfs(f);
  EXPECT_EQ(hub.requests().size(), 1 + 2 * got.size() + lfs);
  EXPECT_EQ(hub.requests()[0], "/api/models/Helsinki-NLP/opus-mt-en-zh/revision/main");

  EXPECT_EQ(resolve_model("Helsinki-NLP/opus-mt-en-zh"), snap);
  HfCheckpoint ck(resolve_model("Helsinki-NLP/opus-mt-en-zh"));
  EXPECT_EQ(ck.names().size(), 86u);
  EXPECT_TRUE(torch::equal(ck.load("model.shared.weight"),
                           HfCheckpoint(kMarianDir).load("model.shared.weight")));

  // A second download only asks for the revision: the files are complete already.
  hub.clear();
  EXPECT_EQ(download_model("Helsinki-NLP/opus-mt-en-zh", opts), snap);
  EXPECT_EQ(hub.requests().size(), 1u);
}

// Every snapshot entry is a relative symlink ../../blobs/<etag> to an existing blob, and an
// LFS blob's name is its sha256 (huggingface_hub's layout).
void expect_hub_layout(const fs::path& repo, const std::string& sha) {
  const fs::path snap = repo / "snapshots" / sha;
  ASSERT_TRUE(fs::is_directory(snap)) << snap;
  EXPECT_EQ(slurp((repo / "refs" / "main").string()), sha);
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(snap)) {
    SCOPED_TRACE(e.path().string());
    ++n;
    ASSERT_TRUE(fs::is_symlink(e.symlink_status()));
    const fs::path target = fs::read_symlink(e.path());
    EXPECT_EQ(target.parent_path(), fs::path("../../blobs"));
    const fs::path blob = repo / "blobs" / target.filename();
    ASSERT_TRUE(fs::is_regular_file(blob));
    if (FakeHub::is_lfs(e.path().filename().string())) EXPECT_EQ(sha256_file(blob.string()), target.filename().string());
    else EXPECT_EQ(target.filename().string().size(), 40u);  // git blob sha1
  }
  EXPECT_GT(n, 1u);
  for (const auto& e : fs::directory_iterator(repo / "blobs"))
    EXPECT_EQ(e.path().extension(), "") << "left over: " << e.path();
}

TEST(Hub, LoomWritesHuggingfaceHubLayoutReadLikeACommittedHubTree) {
  // The committed tree was written in huggingface_hub's layout by tests/data/hub-cache/make_sample.py.
  const std::string committed = std::string(LOOM_TEST_DATA) + "/hub-cache";
  const std::string sample_sha = slurp(committed + "/models--loom-test--tiny-hub/refs/main");
  expect_hub_layout(fs::path(committed) / "models--loom-test--tiny-hub", sample_sha);
  const std::string sample = resolve_model("loom-test/tiny-hub", "main", committed);
  EXPECT_EQ(sample, committed + "/models--loom-test--tiny-hub/snapshots/" + sample_sha);
  HfCheckpoint ck(sample);
  EXPECT_EQ(ck.config()["model_type"], "loom_hub_sample");
  EXPECT_TRUE(torch::equal(ck.load("w"), torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).reshape({2, 2})));
  {  // the same id through $HF_HUB_CACHE, as `loom translate --model org/name` resolves it
    ScopedEnv env_cache("HF_HUB_CACHE", committed.c_str());
    EXPECT_EQ(resolve_model("loom-test/tiny-hub"), sample);
  }

  TempDir cache;
  FakeHub hub("org/name", marian_repo());
  DownloadOptions opts;
  opts.endpoint = hub.endpoint();
  opts.cache_dir = cache.path().string();
  const std::string snap = download_model("org/name", opts);
  expect_hub_layout(cache.path() / "models--org--name", kSha);
  EXPECT_EQ(resolve_model("org/name", "main", cache.path().string()), snap);
  EXPECT_TRUE(torch::equal(HfCheckpoint(snap).load("model.shared.weight"),
                           HfCheckpoint(kMarianDir).load("model.shared.weight")));
}

TEST(Hub, ResumesAPartialFileWithARangeRequest) {
  TempDir cache;
  FakeHub hub("org/name", marian_repo());
  DownloadOptions opts;
  opts.endpoint = hub.endpoint();
  opts.cache_dir = cache.path().string();
  hub.cut_once("model.safetensors");
  EXPECT_THAT(error_of([&] { download_model("org/name", opts); }),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("download failed")));
  const std::string full = slurp(kMarianDir + "/model.safetensors");
  const std::string etag = sha_hex(full, EVP_sha256());
  const fs::path part = cache.path() / "models--org--name" / "blobs" / (etag + ".incomplete");
  ASSERT_TRUE(fs::is_regular_file(part));
  EXPECT_EQ(fs::file_size(part), full.size() / 2);
  EXPECT_FALSE(fs::exists(cache.path() / "models--org--name" / "refs" / "main"));

  const std::string snap = download_model("org/name", opts);
  EXPECT_EQ(hub.ranges(), std::vector<std::string>{"model.safetensors bytes=" + std::to_string(full.size() / 2) + "-"});
  EXPECT_EQ(slurp(snap + "/model.safetensors"), full);
  EXPECT_FALSE(fs::exists(part));
  expect_hub_layout(cache.path() / "models--org--name", kSha);

  // Killed after the last byte but before the rename: the complete .incomplete file is checked
  // and renamed without asking for bytes past its end.
  const fs::path blob = cache.path() / "models--org--name" / "blobs" / etag;
  fs::rename(blob, part);
  fs::remove(fs::path(snap) / "model.safetensors");
  hub.clear();
  EXPECT_EQ(download_model("org/name", opts), snap);
  EXPECT_EQ(slurp(snap + "/model.safetensors"), full);
  for (const auto& r : hub.requests()) EXPECT_EQ(r.find("/cdn/"), std::string::npos) << r;
  EXPECT_EQ(hub.ranges().size(), 1u);
}

TEST(Hub, Sha256MismatchIsRefusedAndNothingIsKept) {
  TempDir cache;
  FakeHub hub("org/name", marian_repo());
  DownloadOptions opts;
  opts.endpoint = hub.endpoint();
  opts.cache_dir = cache.path().string();
  hub.corrupt("model.safetensors");
  const std::string etag = sha_hex(slurp(kMarianDir + "/model.safetensors"), EVP_sha256());
  EXPECT_THAT(error_of([&] { download_model("org/name", opts); }),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("sha256 mismatch"), HasSubstr(etag)));
  const fs::path repo = cache.path() / "models--org--name";
  EXPECT_FALSE(fs::exists(repo / "blobs" / etag));
  EXPECT_FALSE(fs::exists(repo / "blobs" / (etag + ".incomplete")));
  EXPECT_FALSE(fs::exists(repo / "snapshots" / kSha / "model.safetensors"));
  EXPECT_FALSE(fs::exists(repo / "refs" / "main"));
}

TEST(Hub, OfflineModeMakesNoRequests) {
  TempDir cache;
  FakeHub hub("org/name", marian_repo());
  DownloadOptions opts;
  opts.endpoint = hub.endpoint();
  opts.cache_dir = cache.path().string();
  {
    ScopedEnv offline("HF_HUB_OFFLINE", "1");
    EXPECT_THAT(error_of([&] { download_model("org/name", opts); }),
                AllOf(HasSubstr("HF_HUB_OFFLINE"), HasSubstr("org/name"), HasSubstr("refs/main")));
    EXPECT_TRUE(hub.requests().empty());
  }
  const std::string snap = download_model("org/name", opts);
  hub.clear();
  for (const char* v : {"1", "true", "YES", "On"}) {
    ScopedEnv offline("HF_HUB_OFFLINE", v);
    EXPECT_TRUE(hub_offline()) << v;
    EXPECT_EQ(download_model("org/name", opts), snap);
  }
  EXPECT_TRUE(hub.requests().empty());
  ScopedEnv online("HF_HUB_OFFLINE", "0");
  EXPECT_FALSE(hub_offline());
}

TEST(Hub, DownloadErrorsNameUrlAndStatus) {
  TempDir cache;
  auto files = marian_repo();
  files["target.spm"] = std::nullopt;  // listed, but the CDN answers 404
  FakeHub hub("org/name", files, "secret-token");
  DownloadOptions opts;
  opts.endpoint = hub.endpoint();
  opts.cache_dir = cache.path().string();
  opts.token = "wrong";
  EXPECT_THAT(error_of([&] { download_model("org/name", opts); }),
              AllOf(HasSubstr(hub.endpoint() + "/api/models/org/name/revision/main"),
                    HasSubstr("HTTP 401"), HasSubstr("HF_TOKEN")));
  opts.token = "secret-token";
  EXPECT_THAT(error_of([&] { download_model("org/other", opts); }),
              AllOf(HasSubstr("/api/models/org/other/revision/main"), HasSubstr("HTTP 404")));
  EXPECT_THAT(error_of([&] { download_model("not a/valid id", opts); }),
              HasSubstr("not a valid Hugging Face model id"));
  std::string msg = error_of([&] { download_model("org/name", opts); });
  EXPECT_THAT(msg, AllOf(HasSubstr(hub.endpoint() + "/org/name/resolve/" + kSha + "/target.spm"),
                         HasSubstr("HTTP 404")));
  // Nothing half-written is left behind, and no ref points at the incomplete snapshot.
  const fs::path repo = cache.path() / "models--org--name";
  for (const auto& e : fs::recursive_directory_iterator(repo))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  EXPECT_FALSE(fs::exists(repo / "refs" / "main"));

  // Nobody listening: a port bound and closed again, never listened on.
  int port = 0;
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
    ::close(fd);
  }
  opts.endpoint = "http://127.0.0.1:" + std::to_string(port);
  EXPECT_THAT(error_of([&] { download_model("org/name", opts); }),
              AllOf(HasSubstr("127.0.0.1"), HasSubstr("download failed")));
}

TEST(Hub, DownloadCommandPrintsSnapshotDirectory) {
  TempDir cache;
  FakeHub hub("org/name", marian_repo());
  std::string cmd = std::string(LOOM_BINARY) + " download org/name --endpoint " + hub.endpoint() +
                    " --cache-dir " + cache.path().string() + " 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out;
  const std::string snap = (cache.path() / "models--org--name" / "snapshots" / kSha).string();
  EXPECT_EQ(out, snap + "\n");
  EXPECT_TRUE(fs::is_regular_file(snap + "/model.safetensors"));

  // The endpoint from $HF_ENDPOINT, and an HTTP error becomes "loom: error: ..." + exit 1.
  ScopedEnv endpoint("HF_ENDPOINT", hub.endpoint().c_str());
  cmd = std::string(LOOM_BINARY) + " download org/missing --cache-dir " + cache.path().string() + " 2>&1";
  p = ::popen(cmd.c_str(), "r");
  out.clear();
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(WEXITSTATUS(::pclose(p)), 1);
  EXPECT_THAT(out, AllOf(HasSubstr("loom: error: " + hub.endpoint() + "/api/models/org/missing"),
                         HasSubstr("HTTP 404")));
}

}  // namespace
}  // namespace loom::io
