// The test binary's main. CLPROMPT_TEST_DEVICE=cuda runs the device-aware tests ([device]) on the
// GPU; without one the run exits with 77, which CTest reports as skipped (never as passed).
#define CATCH_CONFIG_RUNNER
#include <cstdio>
#include <cstdlib>
#include <string>

#include <torch/cuda.h>

#include <catch2/catch.hpp>

int main(int argc, char** argv) {
  const char* device = std::getenv("CLPROMPT_TEST_DEVICE");
  if (device != nullptr && std::string(device).rfind("cuda", 0) == 0 && !torch::cuda::is_available()) {
    std::printf("CLPROMPT_TEST_DEVICE=%s but this LibTorch sees no CUDA device: skipped\n", device);
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
