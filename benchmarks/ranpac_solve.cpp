// RanPAC's closed-form classifier at the published size (M = 10 000): time and peak memory of
// each step of one task's consolidation, the way RanPACHead does it (stats/ridge_regression.hpp).
//
//   bench_ranpac_solve [M] [rows per task] [classes]      (defaults 10000 5000 10, CIFAR-100's
//                                                           first task: 10 classes x 500 images)
// Prints one line per step: seconds and the process's peak resident memory after it.
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>

#include <fmt/format.h>

#include "clprompt/core/seed.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/stats/ridge_regression.hpp"

namespace {
double peak_gb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}
}  // namespace

int main(int argc, char** argv) {
  clprompt::configure_threads();
  const int64_t m = argc > 1 ? std::atoll(argv[1]) : 10000;
  const int64_t n = argc > 2 ? std::atoll(argv[2]) : 5000;
  const int64_t classes = argc > 3 ? std::atoll(argv[3]) : 10;
  using Clock = std::chrono::steady_clock;
  auto step = [t = Clock::now()](const char* what) mutable {
    const auto now = Clock::now();
    fmt::print("{:<44} {:7.2f} s   peak RSS {:5.2f} GB\n", what, std::chrono::duration<double>(now - t).count(), peak_gb());
    t = now;
  };
  fmt::print("M = {}, {} rows, {} classes, {} threads\n", m, n, classes, at::get_num_threads());
  auto gen = clprompt::make_generator(1993, 1);
  // h = ReLU(f W_rand) of 768-d features, as RanPACHead projects them.
  const auto h = at::relu(at::matmul(at::randn({n, 768}, gen), at::randn({768, m}, gen)));
  const auto labels = at::randint(classes, {n}, gen);
  step("projection h = ReLU(f W) [N, M] float");
  clprompt::RidgeRegression ridge(m);
  ridge.grow({classes});
  step("G [M, M] and C [M, classes] allocated (double)");
  ridge.accumulate(h, labels);
  step("G += hᵀh, C += hᵀy (double)");
  const auto selection = clprompt::select_ridge_lambda(h, clprompt::RidgeRegression::one_hot(labels, classes), {});
  step("lambda chosen among 17 (80/20 split)");
  const auto w = ridge.solve(selection.lambda);
  step("W = ((G + λI)⁻¹ C)ᵀ solved in place");
  fmt::print("lambda {:g}, W {} x {}, |W| {:.4g}\n", selection.lambda, w.size(0), w.size(1), w.norm().item<double>());
  return 0;
}
