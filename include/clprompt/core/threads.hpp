#pragma once
// One process uses all cores: LibTorch defaults to hardware_concurrency/2 intra-op threads
// (1 on a 2-core machine), so the thread count is always set explicitly.
#include <cstdlib>
#include <string>
#include <thread>

#include <ATen/Parallel.h>

#include "clprompt/core/error.hpp"

namespace clprompt {

/// More intra-op threads than this only oversubscribe any machine clprompt runs on (and a
/// mistyped 100000 would start that many threads).
inline constexpr int kMaxThreads = 1024;

/// Threads to use (at most kMaxThreads): `requested` if > 0, else $OMP_NUM_THREADS if set, else every core.
inline int resolve_thread_count(int requested = 0) {
  if (requested > kMaxThreads)
    throw ConfigError("threads", fmt::format("must be at most {}, got {}", kMaxThreads, requested));
  if (requested > 0) return requested;
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || n <= 0 || n > kMaxThreads)
      throw ConfigError("OMP_NUM_THREADS",
                        fmt::format("expected an integer in [1, {}], got '{}'", kMaxThreads, brief(env)));
    return static_cast<int>(n);
  }
  const unsigned cores = std::thread::hardware_concurrency();
  return cores > 0 ? static_cast<int>(cores) : 1;
}

/// Sets LibTorch's intra-op thread count (see resolve_thread_count) and returns it.
inline int configure_threads(int requested = 0) {
  const int n = resolve_thread_count(requested);
  at::set_num_threads(n);
  return n;
}

}  // namespace clprompt
