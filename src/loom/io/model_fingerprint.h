// A content fingerprint of a model directory, recorded by resumable jobs (`loom translate`) so
// that resuming with different weights, tokenizer or config at the same path is refused
// instead of mixing two models in one output.
#pragma once

#include <string>

namespace loom::io {

/// Fingerprint of the regular files directly in model_dir (names not starting with '.'),
/// sorted by name: each file's name and size, and a 64-bit FNV-1a hash of its content — whole
/// for files up to 4 MiB; for larger ones (weights) the first 1 MiB (the safetensors header
/// and the first tensors), the last 64 KiB and 256 blocks of 4 KiB evenly spaced in between,
/// so a 2 GB checkpoint costs ~2 MiB of reads. Other weights of the same architecture differ
/// in every sampled block; an edit confined to unsampled bytes would go unnoticed.
/// Returns 16 hex digits. Throws loom::Error naming the directory or file if it cannot be read.
std::string model_fingerprint(const std::string& model_dir);

}  // namespace loom::io
