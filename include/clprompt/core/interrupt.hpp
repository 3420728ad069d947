#pragma once
// Interruption by SIGINT / SIGTERM at a safe point instead of mid-write:
//
//   InterruptHandler handler;            // while it lives, SIGINT and SIGTERM only raise a flag
//   ... if (interrupt_requested()) { save a checkpoint; throw Interrupted(interrupt_requested()); }
//
// The Learner polls the flag at every training step, evaluation batch and feature batch; a
// second signal while the first is being handled ends the process at once (the default action),
// so a stuck run can still be stopped. Exit codes follow the shell's 128 + signal (130, 143).
#include <atomic>
#include <csignal>
#include <string>

#include "clprompt/core/error.hpp"

namespace clprompt {

namespace detail {
inline std::atomic<int>& pending_signal() {
  static std::atomic<int> signal{0};
  return signal;
}
inline void record_interrupt(int signal) {
  if (detail::pending_signal().exchange(signal) != 0) {
    std::signal(signal, SIG_DFL);  // the second signal: stop now
    std::raise(signal);
  }
}
}  // namespace detail

/// The signal received since the handler was installed (SIGINT, SIGTERM), 0 when none.
inline int interrupt_requested() { return detail::pending_signal().load(std::memory_order_relaxed); }

/// Thrown at the safe point after a signal: the run stopped after saving what it could.
struct Interrupted : Error {
  explicit Interrupted(int signal, const std::string& what)
      : Error(what), signal_number(signal) {}
  int signal_number;
  /// The conventional exit status, 128 + signal.
  int exit_code() const { return 128 + signal_number; }
};

/// Throws Interrupted when a signal came: for loops that cannot save their own progress (the
/// run continues from its last checkpoint). `phase` names the loop ("evaluation").
inline void throw_if_interrupted(const std::string& phase) {
  if (const int signal = interrupt_requested())
    throw Interrupted(signal, "stopped by signal " + std::to_string(signal) + " during " + phase +
                                  "; a resumed run continues from the last checkpoint");
}

/// Installs the flag-raising handlers for SIGINT and SIGTERM; restores the previous ones when
/// destroyed. One at a time per process.
class InterruptHandler {
 public:
  InterruptHandler() {
    detail::pending_signal().store(0);
    previous_int_ = std::signal(SIGINT, detail::record_interrupt);
    previous_term_ = std::signal(SIGTERM, detail::record_interrupt);
  }
  ~InterruptHandler() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
    detail::pending_signal().store(0);
  }
  InterruptHandler(const InterruptHandler&) = delete;
  InterruptHandler& operator=(const InterruptHandler&) = delete;

 private:
  void (*previous_int_)(int) = SIG_DFL;
  void (*previous_term_)(int) = SIG_DFL;
};

}  // namespace clprompt
