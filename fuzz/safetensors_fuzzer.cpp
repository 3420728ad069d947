// libFuzzer target: the safetensors reader (io/safetensors.hpp). The input is a .safetensors file.
// Beyond "no crash": the header-only reader must agree with the full reader, and what was read
// must write and read back unchanged.
#include <cstddef>
#include <cstdint>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"
#include "clprompt/io/safetensors.hpp"
#include "fuzz_input.hpp"

namespace {

void check_round_trip(const clprompt::SafetensorsContents& contents) {
  const auto path = clprompt::fuzz::scratch().path() / "round-trip.safetensors";
  clprompt::write_safetensors(path.string(), contents.tensors, contents.metadata);
  const auto again = clprompt::read_safetensors(path.string());
  if (again.metadata != contents.metadata) clprompt::fuzz::finding("metadata changed in a write/read round trip");
  if (again.tensors.size() != contents.tensors.size()) clprompt::fuzz::finding("tensors lost in a write/read round trip");
  for (const auto& [name, tensor] : contents.tensors) {
    const auto it = again.tensors.find(name);
    if (it == again.tensors.end() || it->second.scalar_type() != tensor.scalar_type() ||
        it->second.sizes() != tensor.sizes())
      clprompt::fuzz::finding("tensor '" + name + "' changed in a write/read round trip");
    // Bytes, not values: NaN payloads and non-0/1 BOOL bytes must survive as they are.
    const auto written = it->second.contiguous(), read = tensor.contiguous();
    if (written.nbytes() != read.nbytes() ||
        clprompt::fuzz::touch_bytes(written.data_ptr(), written.nbytes()) !=
            clprompt::fuzz::touch_bytes(read.data_ptr(), read.nbytes()))
      clprompt::fuzz::finding("tensor '" + name + "' bytes changed in a write/read round trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto path = clprompt::fuzz::scratch().write("input.safetensors", data, size);
  bool header_ok = false;
  clprompt::SafetensorsHeader header;
  try {
    header = clprompt::read_safetensors_header(path);
    header_ok = true;
  } catch (const clprompt::Error&) {
    // Bad input ends in a documented error: the expected outcome.
  }
  try {
    const auto contents = clprompt::read_safetensors(path);
    // The full reader checks everything the header reader does, and the data besides.
    if (!header_ok) clprompt::fuzz::finding("read_safetensors accepted a header read_safetensors_header refused");
    if (header.metadata != contents.metadata || header.shapes.size() != contents.tensors.size())
      clprompt::fuzz::finding("read_safetensors and read_safetensors_header disagree");
    for (const auto& [name, tensor] : contents.tensors) {
      const auto it = header.shapes.find(name);
      if (it == header.shapes.end() || at::IntArrayRef(it->second) != tensor.sizes())
        clprompt::fuzz::finding("read_safetensors and read_safetensors_header disagree on '" + name + "'");
      (void)clprompt::fuzz::touch_bytes(tensor.data_ptr(), tensor.nbytes());
    }
    check_round_trip(contents);
  } catch (const clprompt::Error&) {
  }
  return 0;
}
