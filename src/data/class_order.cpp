// Compiled part of include/clprompt/data/class_order.hpp: numpy-identical class orders.
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "clprompt/core/error.hpp"
#include "clprompt/data/class_order.hpp"

namespace clprompt {

namespace {

// numpy's random_interval: a uniform value in [0, max] by masked rejection sampling.
uint64_t numpy_random_interval(std::mt19937& mt, uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  for (int shift = 1; shift <= 32; shift *= 2) mask |= mask >> shift;
  uint64_t value = 0;
  if (max <= 0xffffffffULL) {
    do value = mt() & mask;
    while (value > max);
  } else {
    do {
      const uint64_t high = mt();
      value = ((high << 32) | mt()) & mask;
    } while (value > max);
  }
  return value;
}

}  // namespace

std::vector<int64_t> numpy_permutation(int64_t n, uint32_t seed) {
  if (n < 0) throw Error(fmt::format("numpy_permutation: expected n >= 0, got {}", n));
  // RandomState(int) seeds MT19937 with init_genrand(seed), exactly what std::mt19937(seed) does,
  // and both return the same tempered 32-bit outputs.
  std::mt19937 mt(seed);
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  for (int64_t i = n - 1; i >= 1; --i) {
    const auto j = static_cast<int64_t>(numpy_random_interval(mt, static_cast<uint64_t>(i)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}


}  // namespace clprompt
