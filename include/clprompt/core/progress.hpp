#pragma once
// A one-line progress bar on stderr, redrawn in place; silent when stderr is not a terminal
// (CI logs and redirected runs get the per-epoch summary lines only).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <unistd.h>

#include <fmt/format.h>

namespace clprompt {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled = ::isatty(::fileno(stderr)) == 1)
      : label_(std::move(label)), total_(total), enabled_(enabled), start_(std::chrono::steady_clock::now()) {}
  ~ProgressBar() { finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// Advances by `n` units; `status` (e.g. "loss 0.42") is shown after the bar.
  void advance(int64_t n, const std::string& status = "") {
    done_ += n;
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done_ < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;  // limit redraws
    last_draw_ = now;
    const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    constexpr int width = 30;
    const int filled = static_cast<int>(frac * width);
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0.0;
    fmt::print(stderr, "\r\033[2K{} [{}{}] {:3.0f}% {:.0f}/s {}", label_, std::string(filled, '#'),
               std::string(width - filled, '.'), 100 * frac, rate, status);
    std::fflush(stderr);
    drawn_ = true;
  }

  /// Clears the line (the caller prints the summary).
  bool enabled() const { return enabled_; }
  void finish() {
    if (enabled_ && drawn_) {
      fmt::print(stderr, "\r\033[2K");
      std::fflush(stderr);
    }
    drawn_ = false;
  }

 private:
  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_{};
};

}  // namespace clprompt
