// Releasing the resident pages of a read-only file mapping (memory-mapped checkpoints).
#pragma once

#include <cstddef>

namespace loom::io {

/// Releases the whole pages inside [data, data + nbytes) from this process's resident set
/// (madvise MADV_DONTNEED); partial pages at either end are kept. Only for bytes of a file
/// mapping (e.g. io::HfCheckpoint::view tensors): reads afterwards page the bytes back in from
/// the file, whereas on anonymous memory (malloc, torch::empty) the call would ZERO the bytes.
/// A no-op when nbytes is 0.
void release_mapped_pages(const void* data, std::size_t nbytes);

}  // namespace loom::io
