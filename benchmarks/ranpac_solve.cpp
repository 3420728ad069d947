// RanPAC's closed-form classifier at the published size (M = 10 000): time and peak memory of
// each step of one task's consolidation, the way RanPACHead does it (stats/ridge_regression.hpp).
//
//   bench_ranpac_solve [M] [rows per task] [classes] [device]   (defaults 10000 5000 10 cpu:
//                                                      CIFAR-100's first task, 10 classes x 500 images)
// Prints one line per step: seconds (each step waits for the device) and the process's peak
// resident memory after it (host memory; on a GPU, G lives in device memory).
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
  const c10::Device device(argc > 4 ? argv[4] : "cpu");
  using Clock = std::chrono::steady_clock;
  auto step = [t = Clock::now()](const char* what, const at::Tensor& wait_for) mutable {
    (void)wait_for.sum().item<double>();  // the device has finished the step
    const auto now = Clock::now();
    fmt::print("{:<44} {:7.2f} s   peak RSS {:5.2f} GB\n", what, std::chrono::duration<double>(now - t).count(), peak_gb());
    t = now;
  };
  fmt::print("M = {}, {} rows, {} classes, {}, {} threads\n", m, n, classes, device.str(), at::get_num_threads());
  auto gen = clprompt::make_generator(1993, 1);
  // h = ReLU(f W_rand) of 768-d features, as RanPACHead projects them.
  const auto f = at::randn({n, 768}, gen).to(device), w_rand = at::randn({768, m}, gen).to(device);
  const auto labels = at::randint(classes, {n}, gen).to(device);
  const auto h = at::relu(at::matmul(f, w_rand));
  step("projection h = ReLU(f W) [N, M] float", h);
  clprompt::RidgeRegression ridge(m);
  ridge.to(device);
  ridge.grow({classes});
  step("G [M, M] and C [M, classes] allocated (double)", ridge.gram());
  ridge.accumulate(h, labels);
  step("G += hᵀh, C += hᵀy (double)", ridge.gram());
  const auto selection = clprompt::select_ridge_lambda(h, clprompt::RidgeRegression::one_hot(labels, classes), {});
  step("lambda chosen among 17 (80/20 split)", ridge.gram());
  const auto w = ridge.solve(selection.lambda);
  step(device.is_cpu() ? "W = ((G + λI)⁻¹ C)ᵀ, Cholesky in place" : "W = ((G + λI)⁻¹ C)ᵀ, cuSOLVER Cholesky", w);
  fmt::print("lambda {:g}, W {} x {}, |W| {:.4g}\n", selection.lambda, w.size(0), w.size(1), w.norm().item<double>());
  return 0;
}
