#pragma once
// The Hugging Face safetensors format (https://github.com/huggingface/safetensors):
//   8-byte little-endian u64 N | N bytes of JSON header | byte buffer
// The header maps each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
// (offsets relative to the buffer) plus an optional "__metadata__" object of strings.
// Tensors are little-endian, row-major and contiguous; together they cover the buffer exactly.
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace clprompt {

using TensorMap = std::map<std::string, at::Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsContents {
  TensorMap tensors;
  Metadata metadata;
};

/// Reads a .safetensors file, checking every bound the reference implementation checks; any
/// malformed or truncated input throws FileError naming the file (and the tensor).
/// The buffer is read once; tensors whose offset is aligned to their element size are views
/// into that one buffer (clone() one to keep it without keeping the rest alive), the others
/// are copies. Supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL.
SafetensorsContents read_safetensors(const std::string& path);

/// The shapes (by name) and metadata of a .safetensors file, from its header alone (the data
/// is not read), with the same checks of the header as read_safetensors.
struct SafetensorsHeader {
  std::map<std::string, std::vector<int64_t>> shapes;
  Metadata metadata;
};
SafetensorsHeader read_safetensors_header(const std::string& path);

/// Writes `tensors` (made contiguous on the CPU) atomically, header padded with spaces to a
/// multiple of 8 bytes as the reference writer does, data laid out in name order.
/// An unsupported dtype, an undefined tensor or the reserved name "__metadata__" throws
/// FileError before anything is written.
void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

}  // namespace clprompt
