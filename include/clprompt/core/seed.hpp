#pragma once
// Reproducibility: one seed fixes class order (data/class_order.hpp), initialisation
// (torch's default generator) and data order (a Generator handed to the loaders).
#include <cstdint>

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

namespace clprompt {

/// Seeds LibTorch's global CPU generator (parameter initialisation, dropout).
inline void seed_everything(uint64_t seed) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

/// A private generator for one purpose (data order, augmentation), derived from the run seed
/// and a stream id so that adding a new random consumer does not shift the others.
inline at::Generator make_generator(uint64_t seed, uint64_t stream) {
  // SplitMix64 finaliser decorrelates neighbouring (seed, stream) pairs.
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return at::make_generator<at::CPUGeneratorImpl>(z);
}

}  // namespace clprompt
