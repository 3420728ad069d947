#pragma once
// Named ranges around the phases of a step (query pass, selection, backbone, head, backward,
// optimiser step, alignment, evaluation):
//   - NVTX ranges, so that an Nsight Systems or PyTorch-profiler timeline of a GPU run reads by
//     name. Compiled in when the build has CUDA (CLPROMPT_WITH_NVTX, set by CMake with a CUDA
//     LibTorch; NVTX 3 is header-only and costs nothing without a profiler attached).
//   - CPU wall time per phase while a PhaseProfile is alive (benchmarks: where a CPU step's time
//     goes; on a GPU the times are launch times unless the caller synchronises). Otherwise the
//     cost is one pointer test per range.
//
//   { clprompt::NvtxRange range("query"); q = backbone.query(images); }
#if defined(CLPROMPT_WITH_NVTX) && CLPROMPT_WITH_NVTX && __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define CLPROMPT_NVTX_ENABLED 1
#else
#define CLPROMPT_NVTX_ENABLED 0
#endif

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace clprompt {

/// Seconds and calls per range name, collected while this object is alive (one at a time, on the
/// thread that runs the steps).
class PhaseProfile {
 public:
  struct Phase {
    double seconds = 0;
    int64_t calls = 0;
  };
  PhaseProfile() { active() = this; }
  ~PhaseProfile() { active() = nullptr; }
  PhaseProfile(const PhaseProfile&) = delete;
  PhaseProfile& operator=(const PhaseProfile&) = delete;

  std::map<std::string, Phase> phases;

  static PhaseProfile*& active() {
    static PhaseProfile* current = nullptr;
    return current;
  }
};

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) : profile_(PhaseProfile::active()) {
#if CLPROMPT_NVTX_ENABLED
    nvtxRangePushA(name);
#endif
    if (profile_ != nullptr) {
      name_ = name;
      start_ = std::chrono::steady_clock::now();
    }
  }
  ~NvtxRange() {
#if CLPROMPT_NVTX_ENABLED
    nvtxRangePop();
#endif
    if (profile_ != nullptr) {
      auto& phase = profile_->phases[name_];
      phase.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      ++phase.calls;
    }
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;

 private:
  PhaseProfile* profile_;
  const char* name_ = nullptr;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace clprompt
