// Hugging Face Hub: model ids ("org/name"), the local hub cache, and downloading a model's
// snapshot into it (libcurl). The cache layout is huggingface_hub's:
//   <cache>/models--org--name/refs/<revision>        text file holding the commit sha
//   <cache>/models--org--name/snapshots/<sha>/<file>  the files of that commit
// (huggingface_hub stores blobs/ and symlinks snapshot files to them; loom writes the snapshot
// files directly, which huggingface_hub also reads, as it does on systems without symlinks).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loom::io {

/// True for a valid Hub model id: "name" or "org/name", each part 1-96 characters of
/// [A-Za-z0-9._-], not starting or ending with '.' or '-', without "--" or "..".
bool is_valid_model_id(std::string_view id);

/// The hub cache directory: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
/// (matches huggingface_hub's constants).
std::string hub_cache_dir();

/// "models--org--name": the cache folder of model `id`.
std::string cache_folder_name(std::string_view id);

/// Resolves a model argument to a directory. An existing directory is returned as is;
/// otherwise `dir_or_id` must be a valid model id, looked up in hub_cache_dir() (or `cache_dir`
/// when non-empty) at refs/<revision> -> snapshots/<sha>/ (a 40-hex `revision` may also name a
/// snapshot directly). Throws loom::Error naming the places searched and suggesting
/// `loom download ID` when nothing is found, or saying the argument is neither a directory nor
/// a valid model id.
std::string resolve_model(const std::string& dir_or_id, const std::string& revision = "main",
                          const std::string& cache_dir = "");

/// Options of download_model.
struct DownloadOptions {
  std::string revision = "main";  ///< branch, tag or commit sha
  std::string endpoint;           ///< "" = $HF_ENDPOINT, else https://huggingface.co
  std::string token;              ///< "" = $HF_TOKEN (sent as "Authorization: Bearer <token>")
  std::string cache_dir;          ///< "" = hub_cache_dir()
  bool progress = true;           ///< progress line on stderr, only when stderr is a terminal
};

/// The files of a repository listing (top-level `rfilename`s) that loom needs: config.json,
/// generation_config.json, *.safetensors, model.safetensors.index.json, tokenizer files (*.spm,
/// *.model, vocab.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json,
/// sentencepiece.bpe.model), and pytorch_model.bin only when there is no *.safetensors. Files in
/// sub-folders are never needed. Keeps the listing's order.
std::vector<std::string> needed_files(const std::vector<std::string>& siblings);

/// Downloads model `id` at opts.revision from the Hub into the cache and returns the snapshot
/// directory. Asks GET {endpoint}/api/models/{id}/revision/{revision} for the commit sha and file
/// list, fetches each needed_files() entry from {endpoint}/{id}/resolve/{sha}/{file} (following
/// redirects) into snapshots/<sha>/ (temp file + rename; files already present are kept), then
/// writes refs/<revision>. Throws loom::Error with the URL and HTTP status on HTTP errors, and
/// on network errors, a bad id, an unexpected API answer or an I/O failure. Connections time
/// out after 30 s; a transfer stalled for 60 s is aborted.
std::string download_model(const std::string& id, const DownloadOptions& opts = {});

}  // namespace loom::io
