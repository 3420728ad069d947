// Python's random.seed / getrandbits / shuffle, from the definitions cited in
// include/clprompt/data/python_random.hpp.
#include "clprompt/data/python_random.hpp"

#include <algorithm>
#include <numeric>

#include "clprompt/core/error.hpp"

namespace clprompt {

namespace {

constexpr int kN = 624;
constexpr int kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfU;
constexpr uint32_t kUpperMask = 0x80000000U;
constexpr uint32_t kLowerMask = 0x7fffffffU;

}  // namespace

PythonRandom::PythonRandom(uint64_t seed) { this->seed(seed); }

PythonRandom PythonRandom::from_words(std::vector<uint32_t> words) {
  // Python counts the bits of |n|, so high zero words do not become key words; n = 0 is one
  // zero word (random_seed(): keyused = bits == 0 ? 1 : (bits - 1) / 32 + 1).
  while (words.size() > 1 && words.back() == 0) words.pop_back();
  if (words.empty()) words.push_back(0);
  PythonRandom r;
  r.init_by_array(words);
  return r;
}

void PythonRandom::seed(uint64_t seed) {
  std::vector<uint32_t> words{static_cast<uint32_t>(seed & 0xffffffffU)};
  if ((seed >> 32) != 0) words.push_back(static_cast<uint32_t>(seed >> 32));
  init_by_array(words);
}

void PythonRandom::init_genrand(uint32_t s) {
  state_[0] = s;
  for (int i = 1; i < kN; ++i)
    state_[i] = 1812433253U * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  index_ = kN;
}

// The reference MT19937 init_by_array (Matsumoto & Nishimura, 2002), as in
// CPython Modules/_randommodule.c init_by_array().
void PythonRandom::init_by_array(const std::vector<uint32_t>& key) {
  init_genrand(19650218U);
  size_t i = 1, j = 0;
  const size_t length = key.size();
  for (size_t k = std::max<size_t>(kN, length); k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1664525U)) + key[j] +
                static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= kN) {
      state_[0] = state_[kN - 1];
      i = 1;
    }
    if (j >= length) j = 0;
  }
  for (size_t k = kN - 1; k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) {
      state_[0] = state_[kN - 1];
      i = 1;
    }
  }
  state_[0] = 0x80000000U;
  index_ = kN;
}

uint32_t PythonRandom::next_u32() {
  if (index_ >= kN) {
    int k = 0;
    for (; k < kN - kM; ++k) {
      const uint32_t y = (state_[k] & kUpperMask) | (state_[k + 1] & kLowerMask);
      state_[k] = state_[k + kM] ^ (y >> 1) ^ ((y & 1U) != 0 ? kMatrixA : 0U);
    }
    for (; k < kN - 1; ++k) {
      const uint32_t y = (state_[k] & kUpperMask) | (state_[k + 1] & kLowerMask);
      state_[k] = state_[k + (kM - kN)] ^ (y >> 1) ^ ((y & 1U) != 0 ? kMatrixA : 0U);
    }
    const uint32_t y = (state_[kN - 1] & kUpperMask) | (state_[0] & kLowerMask);
    state_[kN - 1] = state_[kM - 1] ^ (y >> 1) ^ ((y & 1U) != 0 ? kMatrixA : 0U);
    index_ = 0;
  }
  uint32_t y = state_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= y >> 18;
  return y;
}

uint64_t PythonRandom::getrandbits(int k) {
  if (k < 0 || k > 64) throw Error(fmt::format("PythonRandom::getrandbits: k must be in [0, 64], got {}", k));
  if (k == 0) return 0;
  if (k <= 32) return next_u32() >> (32 - k);
  // Words fill the result from the least significant end; the last word keeps its high bits.
  const uint64_t low = next_u32();
  const uint64_t high = next_u32() >> (64 - k);
  return (high << 32) | low;
}

uint64_t PythonRandom::randbelow(uint64_t n) {
  if (n == 0) throw Error("PythonRandom::randbelow: n must be positive");
  const int k = 64 - __builtin_clzll(n);  // n.bit_length()
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

double PythonRandom::random() {
  const uint32_t a = next_u32() >> 5, b = next_u32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

std::vector<int64_t> python_shuffled_range(int64_t n, uint64_t seed) {
  if (n < 0) throw Error(fmt::format("python_shuffled_range: expected n >= 0, got {}", n));
  std::vector<int64_t> values(static_cast<size_t>(n));
  std::iota(values.begin(), values.end(), int64_t{0});
  PythonRandom rng(seed);
  rng.shuffle(values);
  return values;
}

std::vector<int64_t> coda_prompt_class_order(int64_t n, uint64_t trial) {
  if (n < 0) throw Error(fmt::format("coda_prompt_class_order: expected n >= 0, got {}", n));
  if (trial == 0) {
    std::vector<int64_t> values(static_cast<size_t>(n));
    std::iota(values.begin(), values.end(), int64_t{0});
    return values;
  }
  return python_shuffled_range(n, trial);
}

}  // namespace clprompt
