// loom::core::tune_allocator — keeps glibc malloc from returning every freed large block to the
// operating system, so the tensors a decoder step frees are reused by the next step instead of
// being unmapped and faulted in again (13 % of a beam-4 translation profile was the kernel
// zeroing fresh pages; docs/benchmarks.md).
#pragma once

namespace loom::core {

/// Raises glibc's mmap threshold to its maximum (32 MiB on 64-bit) and the heap trim threshold to
/// 1 GiB, unless the user set them (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ or
/// GLIBC_TUNABLES). Call once at program start. Effect measured with loom_translate_bench
/// (opus-mt-en-zh size, beam 4, batch 16, 2 threads, AVX2 EPYC): 148–150 → 184–191 target tok/s,
/// peak RSS 747 → 757 MiB, identical outputs. No-op on other C libraries.
void tune_allocator();

}  // namespace loom::core
