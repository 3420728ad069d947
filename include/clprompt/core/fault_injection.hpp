#pragma once
// Fault injection for the resume tests: with CLPROMPT_FAULT="<point>:<n>" in the environment, the
// process kills itself (SIGKILL: no handler, no flush, as a preemption or the OOM killer would) the
// n-th time it reaches fault_point("<point>"). Points: train-step, alignment-step,
// evaluation-batch, feature-batch, atomic-write (a file half written, before its rename).
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
  static FaultPlan& get() {
    static FaultPlan plan = [] {
      FaultPlan p;
      if (const char* spec = std::getenv("CLPROMPT_FAULT")) {
        const std::string s(spec);
        const auto colon = s.rfind(':');
        p.point = s.substr(0, colon);
        p.remaining = colon == std::string::npos ? 1 : std::strtol(s.c_str() + colon + 1, nullptr, 10);
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
  if (reached.fetch_add(1) + 1 >= plan.remaining) std::raise(SIGKILL);
}

}  // namespace clprompt
