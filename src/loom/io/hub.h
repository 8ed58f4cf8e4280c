// Hugging Face Hub: model ids ("org/name"), the local hub cache, and downloading a model's
// snapshot into it (libcurl). The cache layout is huggingface_hub's (file_download.py):
//   <cache>/models--org--name/refs/<revision>        text file holding the commit sha
//   <cache>/models--org--name/blobs/<etag>           a file's bytes, named by its ETag (the
//                                                    sha256 for LFS files, the git blob sha1
//                                                    for others); <etag>.incomplete while loading
//   <cache>/models--org--name/snapshots/<sha>/<file>  relative symlink ../../blobs/<etag>
// loom writes this layout and reads any snapshot directory (symlinks or plain files), so a model
// huggingface_hub downloaded is used as is.
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
/// list; for each needed_files() entry not yet in snapshots/<sha>/: HEAD
/// {endpoint}/{id}/resolve/{sha}/{file} (redirects not followed) for its ETag (X-Linked-Etag,
/// else ETag), then unless blobs/<etag> exists GET it (following redirects) into
/// blobs/<etag>.incomplete — continuing a partial file with a Range request (a 200 answer
/// restarts it) — checks an LFS file's sha256 against its 64-hex etag (a mismatch removes the
/// partial file and throws), renames it to blobs/<etag> and links snapshots/<sha>/<file> to it;
/// finally writes refs/<revision>. With $HF_HUB_OFFLINE set (1/ON/YES/TRUE) nothing is fetched:
/// the cached snapshot (resolve_model) is returned, or loom::Error says it is not cached.
/// Throws loom::Error with the URL and HTTP status on HTTP errors, and on network errors, a bad
/// id, an unexpected API answer, an unusable ETag, a sha256 mismatch, another process holding
/// the same .incomplete file, or an I/O failure. Connections time out after 30 s; a transfer
/// stalled for 60 s is aborted (the partial file is kept for the next run).
std::string download_model(const std::string& id, const DownloadOptions& opts = {});

/// Lower-case hex sha256 of the file at path (OpenSSL). Throws loom::Error naming the file if it
/// cannot be read.
std::string sha256_file(const std::string& path);

/// True when $HF_HUB_OFFLINE is 1, ON, YES or TRUE (any case), as huggingface_hub reads it.
bool hub_offline();

}  // namespace loom::io
