#pragma once
// Freed tensor memory stays in the process.
//
// LibTorch's CPU allocator hands every tensor to malloc and frees it as soon as its last use is
// over. glibc's malloc gives large freed blocks back to the kernel: blocks above its mmap
// threshold are unmapped, and free memory at the top of the heap beyond its trim threshold is
// trimmed. A training or evaluation step allocates the same activations again in the next step,
// so the kernel maps them back in, one zeroed 4 KiB page at a time. Without autograd (evaluation,
// the frozen query pass) activations die earliest and this costs most: the embedded default's
// ViT at batch 256, 1 thread, runs 243 images/s under no_grad against 277 with autograd on, with
// 1.2 M vs 0.7 M page faults; with the thresholds below, 324 and 320 images/s and 85 k faults
// (docs/benchmarks.md, "Where the time goes"). The same holds for Python programs on the same
// LibTorch; they can set MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ in the environment.
//
// keep_freed_memory() raises both thresholds for this process (glibc only; elsewhere it does
// nothing). The process then keeps up to its peak footprint mapped instead of returning it
// between steps. Where the user set either MALLOC_*_THRESHOLD_ variable, their choice stands;
// CLPROMPT_KEEP_FREED_MEMORY=0 leaves glibc's defaults (for comparisons).
#include <climits>
#include <cstdlib>
#include <string_view>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace clprompt {

/// The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX):
/// blocks up to 32 MiB come from the heap and are reused; larger ones are still mapped per use.
inline constexpr int kMallocMmapThreshold = 32 * 1024 * 1024;

/// Keeps freed memory in the process (see the file comment). Returns whether the allocator's
/// settings were changed (false: not glibc, the user's environment already sets them, or
/// CLPROMPT_KEEP_FREED_MEMORY=0).
inline bool keep_freed_memory() {
#if defined(__GLIBC__)
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) return false;
  if (const char* off = std::getenv("CLPROMPT_KEEP_FREED_MEMORY"); off != nullptr && std::string_view(off) == "0")
    return false;
  // Both, or neither: a fixed trim threshold alone disables glibc's adaptive mmap threshold, so
  // every block above 128 KiB would be mapped per use (measured: 3.4 M faults, 162 images/s).
  return mallopt(M_MMAP_THRESHOLD, kMallocMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

}  // namespace clprompt
