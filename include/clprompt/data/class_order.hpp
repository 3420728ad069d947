#pragma once
// Class orders identical to the reference implementations, which shuffle the classes with
// numpy.random.seed(s); numpy.random.permutation(n), so a run with seed 1993 sees the same
// tasks as the published results.
#include <cstdint>
#include <vector>

namespace clprompt {

/// Equals numpy.random.RandomState(seed).permutation(n) (numpy's legacy generator):
/// MT19937 seeded like RandomState(int) (init_genrand), then the legacy Fisher-Yates shuffle
/// from i = n-1 down to 1 with masked rejection sampling of j in [0, i].
std::vector<int64_t> numpy_permutation(int64_t n, uint32_t seed);

}  // namespace clprompt
