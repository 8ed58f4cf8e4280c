#include "loom/text/sentencepiece.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <spdlog/spdlog.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"

namespace loom::text {
namespace {

// The plugin's C ABI (src/loom/text/spm_plugin/spm_plugin.cpp).
struct PluginApi {
  int (*abi_version)();
  void* (*load)(const char*, long, char*, long);
  void (*free_)(void*);
  long (*size)(void*);
  long (*id_to_piece)(void*, long, char*, long);
  long (*piece_to_id)(void*, const char*, long);
  float (*score)(void*, long);
  int (*type)(void*, long);
  long (*encode)(void*, const char*, long, char*, long, long*, int*, long);
  long (*decode_pieces)(void*, const char*, long, char*, long);
  void* (*train)(const char*, long, char*, long);
  long (*bytes_size)(void*);
  void (*bytes_copy)(void*, char*, long);
  void (*bytes_free)(void*);
};

std::string exe_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

const PluginApi& api() {
  static PluginApi a{};
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("LOOM_SPM_PLUGIN")) candidates.emplace_back(env);
    candidates.push_back(exe_dir() + "/libloom_spm.so");
    candidates.push_back(exe_dir() + "/../lib/loom/libloom_spm.so");
#ifdef LOOM_SPM_PLUGIN_BUILD_PATH
    candidates.emplace_back(LOOM_SPM_PLUGIN_BUILD_PATH);
#endif
    void* lib = nullptr;
    std::string tried;
    for (const auto& c : candidates) {
      lib = dlmopen(LM_ID_NEWLM, c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
      tried += "\n  " + c + ": " + dlerror();
    }
    if (!lib) {
      error = "cannot load the sentencepiece plugin libloom_spm.so (set LOOM_SPM_PLUGIN):" + tried;
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(lib, name);
      if (!p) error = std::string("libloom_spm.so lacks symbol ") + name;
      return p;
    };
    a.abi_version = reinterpret_cast<int (*)()>(sym("loom_spm_abi_version"));
    a.load = reinterpret_cast<decltype(a.load)>(sym("loom_spm_load"));
    a.free_ = reinterpret_cast<decltype(a.free_)>(sym("loom_spm_free"));
    a.size = reinterpret_cast<decltype(a.size)>(sym("loom_spm_size"));
    a.id_to_piece = reinterpret_cast<decltype(a.id_to_piece)>(sym("loom_spm_id_to_piece"));
    a.piece_to_id = reinterpret_cast<decltype(a.piece_to_id)>(sym("loom_spm_piece_to_id"));
    a.score = reinterpret_cast<decltype(a.score)>(sym("loom_spm_score"));
    a.type = reinterpret_cast<decltype(a.type)>(sym("loom_spm_type"));
    a.encode = reinterpret_cast<decltype(a.encode)>(sym("loom_spm_encode"));
    a.decode_pieces = reinterpret_cast<decltype(a.decode_pieces)>(sym("loom_spm_decode_pieces"));
    a.train = reinterpret_cast<decltype(a.train)>(sym("loom_spm_train"));
    a.bytes_size = reinterpret_cast<decltype(a.bytes_size)>(sym("loom_spm_bytes_size"));
    a.bytes_copy = reinterpret_cast<decltype(a.bytes_copy)>(sym("loom_spm_bytes_copy"));
    a.bytes_free = reinterpret_cast<decltype(a.bytes_free)>(sym("loom_spm_bytes_free"));
    if (error.empty() && a.abi_version() != 2)
      error = "libloom_spm.so has an unexpected ABI version (a stale plugin? rebuild loom or fix $LOOM_SPM_PLUGIN)";
  });
  if (!error.empty()) throw Error(error);
  return a;
}

}  // namespace

SentencePiece::SentencePiece(const std::string& path) : path_(path) {
  const std::string bytes = core::read_file(path);
  if (bytes.empty()) fail(Where{path}, "SentencePiece model file is empty");
  char err[512] = {0};
  handle_ = api().load(bytes.data(), static_cast<long>(bytes.size()), err, sizeof(err));
  if (!handle_) fail(Where{path}, "not a valid SentencePiece model: {}", err[0] ? err : "parse error");
}

SentencePiece::~SentencePiece() {
  if (handle_) api().free_(handle_);
}

std::vector<std::string> SentencePiece::encode_pieces(std::string_view text) const {
  std::vector<std::string> pieces;
  std::vector<int> ids;
  std::string buf(text.size() * 4 + 64, '\0');
  std::vector<int> idbuf(text.size() * 2 + 16);
  long bytes = 0;
  long n = api().encode(handle_, text.data(), static_cast<long>(text.size()), buf.data(),
                        static_cast<long>(buf.size()), &bytes, idbuf.data(), static_cast<long>(idbuf.size()));
  if (n == -2) {  // buffers too small: grow to the reported size and retry once
    buf.assign(static_cast<size_t>(bytes) + 1, '\0');
    idbuf.assign(static_cast<size_t>(bytes) + 1, 0);
    n = api().encode(handle_, text.data(), static_cast<long>(text.size()), buf.data(),
                     static_cast<long>(buf.size()), &bytes, idbuf.data(), static_cast<long>(idbuf.size()));
  }
  if (n < 0) fail(Where{path_}, "SentencePiece failed to encode a {}-byte text", text.size());
  const char* p = buf.data();
  for (long i = 0; i < n; ++i) {
    pieces.emplace_back(p);
    p += pieces.back().size() + 1;
  }
  return pieces;
}

std::vector<int> SentencePiece::encode_ids(std::string_view text) const {
  std::vector<int> ids;
  for (const auto& p : encode_pieces(text)) ids.push_back(piece_to_id(p));
  return ids;
}

std::string SentencePiece::decode_pieces(const std::vector<std::string>& pieces) const {
  std::string joined;
  size_t total = 0;
  for (const auto& p : pieces) {
    joined.append(p.data(), p.size());
    joined.push_back('\0');
    total += p.size();
  }
  std::string out(total * 2 + 16, '\0');
  long n = api().decode_pieces(handle_, joined.data(), static_cast<long>(pieces.size()), out.data(),
                               static_cast<long>(out.size()));
  if (n > static_cast<long>(out.size())) {
    out.assign(static_cast<size_t>(n), '\0');
    n = api().decode_pieces(handle_, joined.data(), static_cast<long>(pieces.size()), out.data(),
                            static_cast<long>(out.size()));
  }
  if (n < 0) fail(Where{path_}, "SentencePiece failed to decode {} pieces", pieces.size());
  out.resize(static_cast<size_t>(n));
  return out;
}

int SentencePiece::size() const { return static_cast<int>(api().size(handle_)); }

std::string SentencePiece::id_to_piece(int id) const {
  char buf[256];
  long n = api().id_to_piece(handle_, id, buf, sizeof(buf));
  if (n < 0) fail(Where{path_}, "piece id {} out of range [0, {})", id, size());
  if (n <= static_cast<long>(sizeof(buf))) return std::string(buf, static_cast<size_t>(n));
  std::string big(static_cast<size_t>(n), '\0');
  api().id_to_piece(handle_, id, big.data(), n);
  return big;
}

int SentencePiece::piece_to_id(std::string_view piece) const {
  return static_cast<int>(api().piece_to_id(handle_, piece.data(), static_cast<long>(piece.size())));
}

float SentencePiece::score(int id) const { return api().score(handle_, id); }
bool SentencePiece::is_control(int id) const { return api().type(handle_, id) == 1; }
bool SentencePiece::is_unknown(int id) const { return api().type(handle_, id) == 2; }

std::string train_sentencepiece(const SpmTrainOptions& o) {
  if (o.input_files.empty()) fail(Where{"", 0, "input_files"}, "SentencePiece training needs at least one input file");
  if (o.model_type != "unigram" && o.model_type != "bpe")
    fail(Where{"", 0, "model_type"}, "model_type must be unigram or bpe, got '{}'", o.model_type);
  if (o.vocab_size <= 4) fail(Where{"", 0, "vocab_size"}, "vocab_size must exceed the 4 special pieces, got {}", o.vocab_size);
  if (!(o.character_coverage > 0 && o.character_coverage <= 1))
    fail(Where{"", 0, "character_coverage"}, "character_coverage must be in (0, 1], got {}", o.character_coverage);
  if (o.max_sentence_length <= 0 || o.input_sentence_size < 0 || o.num_threads < 1 || o.num_threads > 128)
    fail(Where{"", 0, "max_sentence_length"}, "max_sentence_length must be > 0, input_sentence_size >= 0, "
                                              "num_threads in [1, 128]");
  // Check the input here, so that bad data is reported by file and line (sentencepiece would
  // skip invalid UTF-8 silently and reports an empty corpus without naming anything).
  int64_t sentences = 0, too_long = 0;
  std::string joined;
  for (const auto& path : o.input_files) {
    if (path.find(',') != std::string::npos)
      fail(Where{path}, "input file names may not contain ',' (sentencepiece's list separator)");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(Where{path}, "cannot open SentencePiece training input");
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      size_t bad = core::utf8_error_offset(line);
      if (bad != std::string::npos) fail(Where{path, line_no}, "not valid UTF-8 at byte {} of the line", bad);
      if (line.find('\0') != std::string::npos) fail(Where{path, line_no}, "contains a NUL byte");
      if (!line.empty() && line != "\r") ++sentences;
      if (line.size() > static_cast<size_t>(o.max_sentence_length)) ++too_long;
    }
    if (!joined.empty()) joined += ',';
    joined += path;
  }
  if (sentences == 0) fail(Where{joined}, "SentencePiece training input has no non-empty line");
  if (too_long >= sentences)
    fail(Where{joined, 0, "max_sentence_length"}, "every line is longer than max_sentence_length ({} bytes): nothing to train on",
         o.max_sentence_length);
  if (too_long > 0)
    spdlog::warn("{}: {} of {} lines are longer than max_sentence_length ({} bytes); SentencePiece training skips them",
                 joined, too_long, sentences, o.max_sentence_length);

  const std::pair<std::string, std::string> kv[] = {
      {"input", joined},
      {"model_type", o.model_type},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", fmt::format("{}", o.character_coverage)},
      {"max_sentence_length", std::to_string(o.max_sentence_length)},
      {"input_sentence_size", std::to_string(o.input_sentence_size)},
      {"shuffle_input_sentence", o.shuffle_input_sentence ? "true" : "false"},
      {"random_seed", std::to_string(o.seed)},
      {"num_threads", std::to_string(o.num_threads)},
      {"byte_fallback", o.byte_fallback ? "true" : "false"},
      {"split_digits", o.split_digits ? "true" : "false"},
      {"normalization_rule_name", o.normalization_rule_name},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"pad_piece", "<pad>"},
      {"unk_piece", "<unk>"},
      {"bos_piece", "<s>"},
      {"eos_piece", "</s>"},
      {"minloglevel", o.verbose ? "0" : "2"},
  };
  std::string packed;
  for (const auto& [k, v] : kv) {
    packed.append(k).push_back('\0');
    packed.append(v).push_back('\0');
  }
  char err[2048] = {0};
  void* buf = api().train(packed.data(), static_cast<long>(packed.size()), err, sizeof(err));
  if (!buf) fail(Where{joined}, "SentencePiece training failed: {}", err[0] ? err : "unknown error");
  std::string model(static_cast<size_t>(api().bytes_size(buf)), '\0');
  api().bytes_copy(buf, model.data(), static_cast<long>(model.size()));
  api().bytes_free(buf);
  return model;
}

void train_sentencepiece(const SpmTrainOptions& options, const std::string& path) {
  const std::string model = train_sentencepiece(options);
  core::write_file_atomic(path, model);
}

}  // namespace loom::text
