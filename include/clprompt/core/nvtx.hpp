#pragma once
// NVTX ranges around the phases of a step (query pass, selection, backbone, head, backward,
// optimiser, alignment, evaluation), so that an Nsight Systems or PyTorch-profiler timeline of a
// GPU run reads by name. Compiled in when the build has CUDA (CLPROMPT_WITH_NVTX, set by CMake
// with a CUDA LibTorch; NVTX 3 is header-only and costs nothing without a profiler attached);
// otherwise NvtxRange is empty.
//
//   { clprompt::NvtxRange range("query"); q = backbone.query(images); }
#if defined(CLPROMPT_WITH_NVTX) && CLPROMPT_WITH_NVTX && __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define CLPROMPT_NVTX_ENABLED 1
#else
#define CLPROMPT_NVTX_ENABLED 0
#endif

namespace clprompt {

class NvtxRange {
 public:
#if CLPROMPT_NVTX_ENABLED
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
#else
  explicit NvtxRange(const char*) {}
#endif
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace clprompt
