#pragma once
// Fault injection for the resume tests: with CLPROMPT_FAULT="<point>:<n>" in the environment, the
// process kills itself (SIGKILL: no handler, no flush, as a preemption or the OOM killer would) the
// n-th time it reaches fault_point("<point>"). Points: train-step, alignment-step,
// evaluation-batch, feature-batch, atomic-write (a file half written, before its rename).
// In a data-parallel run, CLPROMPT_FAULT_RANK=<r> limits the fault to the process whose RANK is r;
// CLPROMPT_FAULT_SIGNAL=STOP stops the process instead (a peer that hangs rather than dies).
// Without the variable a fault point is one relaxed atomic load.
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>

namespace clprompt {

namespace detail {
struct FaultPlan {
  std::string point;
  long remaining = -1;  ///< < 0: no fault planned
  int signal = SIGKILL;
  static FaultPlan& get() {
    static FaultPlan plan = [] {
      FaultPlan p;
      const char* only_rank = std::getenv("CLPROMPT_FAULT_RANK");
      const char* rank = std::getenv("RANK");
      if (only_rank != nullptr && std::string(only_rank) != (rank != nullptr ? rank : "0")) return p;
      if (const char* spec = std::getenv("CLPROMPT_FAULT")) {
        const std::string s(spec);
        const auto colon = s.rfind(':');
        p.point = s.substr(0, colon);
        p.remaining = colon == std::string::npos ? 1 : std::strtol(s.c_str() + colon + 1, nullptr, 10);
        if (const char* how = std::getenv("CLPROMPT_FAULT_SIGNAL"); how != nullptr && std::string(how) == "STOP")
          p.signal = SIGSTOP;
      }
      return p;
    }();
    return plan;
  }
};
}  // namespace detail

inline void fault_point(const char* point) {
  static std::atomic<long> reached{0};
  auto& plan = detail::FaultPlan::get();
  if (plan.remaining <= 0 || plan.point != point) return;
  if (reached.fetch_add(1) + 1 >= plan.remaining) std::raise(plan.signal);
}

}  // namespace clprompt
