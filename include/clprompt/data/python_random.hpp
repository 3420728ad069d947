#pragma once
// Python's `random` module (CPython's Mersenne Twister), bit-exact for what the reference
// implementations use: `random.seed(n)` with a non-negative int and `random.shuffle(list)`.
// CODA-Prompt draws its class order this way (GT-RIPL/CODA-Prompt trainer.py:59-68: for trial
// seed > 0 with rand_split, `random.seed(seed); random.shuffle(class_order)`; run.py:126-127 makes
// the trial seed the repeat index, so the published REPEAT=1 runs use the natural order).
//
//   PythonRandom rng(3);                       // random.seed(3)
//   std::vector<int64_t> order = iota(100);
//   rng.shuffle(order);                        // random.shuffle(order)
//
// Definitions (CPython 3.11, Lib/random.py and Modules/_randommodule.c):
// - seed(n), n an int: |n| is split into 32-bit words, least significant first, at least one
//   word (random_seed(): keyused = bits == 0 ? 1 : (bits - 1) / 32 + 1), and the state is set by
//   the reference init_by_array(key, keyused) of MT19937 (init_genrand(19650218) first).
// - getrandbits(k): k <= 32 -> genrand_uint32() >> (32 - k); k > 32 -> 32-bit words from the
//   least significant up, the last one shifted right by 32 - (k mod 32) (getrandbits_impl()).
// - _randbelow(n) = _randbelow_with_getrandbits (random.py:235-243): k = n.bit_length(),
//   r = getrandbits(k) until r < n.
// - shuffle(x) (random.py:376-383): for i = len-1 down to 1: j = _randbelow(i + 1), swap x[i], x[j].
// - random() (_random_Random_random_impl): (a * 2^26 + b) / 2^53 with a = u32 >> 5, b = u32 >> 6.
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace clprompt {

/// One `random.Random` instance. Not thread-safe (like the Python object without the GIL).
class PythonRandom {
 public:
  /// random.seed(seed) (an int seed of at most 64 bits; negative Python ints seed like their
  /// absolute value, so only non-negative values are offered).
  explicit PythonRandom(uint64_t seed);
  /// random.seed(n) for an int of any size: `words` is |n| in 32-bit words, least significant
  /// first (an empty vector means n = 0). Leading zero words are ignored, as Python's bit count
  /// ignores them.
  static PythonRandom from_words(std::vector<uint32_t> words);

  /// Re-seeds as random.seed(seed).
  void seed(uint64_t seed);

  /// One tempered 32-bit output of the generator (genrand_uint32).
  uint32_t next_u32();
  /// random.getrandbits(k) for k in [0, 64]; throws Error outside that range.
  uint64_t getrandbits(int k);
  /// random._randbelow(n): uniform in [0, n) by rejection; throws Error for n == 0.
  uint64_t randbelow(uint64_t n);
  /// random.random(): a double in [0, 1) with 53 random bits.
  double random();

  /// random.shuffle(values).
  template <class T>
  void shuffle(std::vector<T>& values) {
    for (std::size_t i = values.size(); i-- > 1;) {
      const auto j = static_cast<std::size_t>(randbelow(static_cast<uint64_t>(i) + 1));
      std::swap(values[i], values[j]);
    }
  }

 private:
  PythonRandom() = default;
  void init_genrand(uint32_t s);
  void init_by_array(const std::vector<uint32_t>& key);

  std::array<uint32_t, 624> state_{};
  int index_ = 625;
};

/// `random.seed(seed); l = list(range(n)); random.shuffle(l)`; throws Error for n < 0.
std::vector<int64_t> python_shuffled_range(int64_t n, uint64_t seed);

/// CODA-Prompt's class order for trial `trial` (the repeat index, which its run.py uses as the
/// seed) with the `rand_split: True` of all its configs: 0, 1, ..., n-1 for trial 0, else
/// python_shuffled_range(n, trial) (trainer.py:59-68).
std::vector<int64_t> coda_prompt_class_order(int64_t n, uint64_t trial);

}  // namespace clprompt
