// Compiled part of include/clprompt/io/safetensors.hpp: the bounds-checked reader and writer.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "clprompt/core/error.hpp"
#include "clprompt/core/json_parse.hpp"
#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/safetensors.hpp"

// safetensors stores little-endian data and tensors are built over the raw bytes.
static_assert(std::endian::native == std::endian::little, "clprompt's file formats assume a little-endian host");

namespace clprompt {
namespace detail {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }
// ---- safetensors ----------------------------------------------------------------------------

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {at::kDouble, "F64"}, {at::kFloat, "F32"}, {at::kHalf, "F16"},  {at::kBFloat16, "BF16"},
    {at::kLong, "I64"},   {at::kInt, "I32"},   {at::kShort, "I16"}, {at::kChar, "I8"},
    {at::kByte, "U8"},    {at::kBool, "BOOL"},
};

std::string supported_dtypes() {
  std::string names;
  for (const auto& d : kDtypes) names += (names.empty() ? "" : " ") + std::string(d.name);
  return names;
}

const char* dtype_name(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return d.name;
  return nullptr;
}

std::optional<at::ScalarType> dtype_from_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  return std::nullopt;
}

// Parses the header, rejecting duplicate keys at any depth (nlohmann keeps the last silently,
// which would make a file mean different things to different readers).
Json parse_header(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start: keys.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default: break;
    }
    return true;
  };
  Json header;
  // A header is {name: {dtype, shape: [...], data_offsets: [...]}, "__metadata__": {key: text}}:
  // three levels. Its size is bounded by the format (100 MB) before it is read.
  JsonLimits limits;
  limits.max_bytes = text.size();
  limits.max_depth = 8;
  try {
    header = parse_json<Json>(text, limits, callback);
  } catch (const JsonError& e) {
    throw FileError(path, fmt::format("safetensors header: {}", e.what()));
  }
  if (!duplicate.empty()) throw FileError(path, fmt::format("safetensors header has the key '{}' twice", duplicate));
  if (!header.is_object())
    throw FileError(path, fmt::format("safetensors header must be a JSON object, got {}", header.type_name()));
  return header;
}

struct Entry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& path, const std::string& name, const Json& info) {
  auto bad = [&](const std::string& what) {
    return FileError(path, fmt::format("tensor '{}': {}", name, what));
  };
  if (!info.is_object()) throw bad(fmt::format("expected an object with dtype, shape and data_offsets, got {}", info.dump()));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) throw bad(fmt::format("missing '{}'", key));
  Entry e;
  e.name = name;
  const Json& dtype = info.at("dtype");
  if (!dtype.is_string()) throw bad(fmt::format("'dtype' must be a string, got {}", dtype.dump()));
  const auto type = dtype_from_name(dtype.get<std::string>());
  if (!type)
    throw bad(fmt::format("unsupported dtype '{}'; expected one of {}", dtype.get<std::string>(), supported_dtypes()));
  e.dtype = *type;
  const Json& shape = info.at("shape");
  if (!shape.is_array()) throw bad(fmt::format("'shape' must be an array of integers, got {}", shape.dump()));
  for (const Json& d : shape) {
    if (d.is_number_integer() && !d.is_number_unsigned())
      throw bad(fmt::format("negative dimension in shape {}", shape.dump()));
    if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw bad(fmt::format("'shape' must be an array of non-negative integers, got {}", shape.dump()));
    e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }
  const Json& offsets = info.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
    throw bad(fmt::format("'data_offsets' must be [begin, end] with non-negative integers, got {}", offsets.dump()));
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.begin > e.end) throw bad(fmt::format("data_offsets begin {} > end {}", e.begin, e.end));
  // numel * element size must equal the byte range; checked without overflow.
  uint64_t bytes = c10::elementSize(e.dtype);
  bool overflow = false;
  for (int64_t d : e.shape) overflow = overflow || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes);
  if (overflow || bytes != e.end - e.begin)
    throw bad(fmt::format("shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", shape.dump(),
                          dtype.get<std::string>(), overflow ? std::string("too many") : std::to_string(bytes),
                          e.begin, e.end, e.end - e.begin));
  return e;
}

Metadata parse_metadata(const std::string& path, const Json& j) {
  Metadata metadata;
  if (j.is_null()) return metadata;  // the reference writer's Option<HashMap> may serialise as null
  if (!j.is_object()) throw FileError(path, fmt::format("'__metadata__' must be an object of strings, got {}", j.dump()));
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string())
      throw FileError(path, fmt::format("'__metadata__' value of '{}' must be a string, got {}", key, value.dump()));
    metadata.emplace(key, value.get<std::string>());
  }
  return metadata;
}

// Reads exactly `size` bytes or throws.
void read_exactly(std::istream& in, char* data, uint64_t size, const std::string& path, const char* what) {
  constexpr uint64_t kChunk = uint64_t{1} << 30;
  for (uint64_t done = 0; done < size;) {
    const auto n = static_cast<std::streamsize>(std::min(kChunk, size - done));
    in.read(data + done, n);
    if (in.gcount() != n)
      throw FileError(path, fmt::format("unexpected end of file while reading the {} ({} of {} bytes read)", what,
                                        done + static_cast<uint64_t>(in.gcount()), size));
    done += static_cast<uint64_t>(n);
  }
}


}  // namespace
}  // namespace detail

// ==== safetensors.hpp ========================================================================

namespace detail {
namespace {

/// Opens `path`, checks and parses the header; leaves `in` at the start of the data buffer.
Json open_header(const std::string& path, std::ifstream& in, uint64_t& file_size, uint64_t& header_size) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) throw FileError(path, "cannot open: no such file");
  if (ec) throw FileError(path, fmt::format("cannot open: {}", ec.message()));
  if (!fs::is_regular_file(status)) throw FileError(path, "cannot read: not a regular file");
  file_size = fs::file_size(path, ec);
  if (ec) throw FileError(path, fmt::format("cannot read the file size: {}", ec.message()));
  in.open(path, std::ios::binary);
  if (!in) throw FileError(path, fmt::format("cannot open: {}", errno_text(errno)));
  if (file_size < 8)
    throw FileError(path, fmt::format("not a safetensors file: {} bytes, shorter than the 8-byte header length", file_size));

  unsigned char length_bytes[8];
  read_exactly(in, reinterpret_cast<char*>(length_bytes), 8, path, "header length");
  header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
  if (header_size > kMaxHeaderBytes)
    throw FileError(path, fmt::format("safetensors header length {} exceeds the limit of {} bytes (not a safetensors file?)",
                                      header_size, kMaxHeaderBytes));
  if (header_size > file_size - 8)
    throw FileError(path, fmt::format("safetensors header length {} is larger than the rest of the file ({} bytes); truncated?",
                                      header_size, file_size - 8));
  std::string header_text(header_size, '\0');
  read_exactly(in, header_text.data(), header_size, path, "header");
  if (header_text.empty() || header_text.front() != '{')
    throw FileError(path, "safetensors header must start with '{' (not a safetensors file?)");
  return parse_header(path, header_text);
}

}  // namespace
}  // namespace detail

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::ifstream in;
  uint64_t file_size = 0, header_size = 0;
  const auto header = detail::open_header(path, in, file_size, header_size);
  SafetensorsHeader out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      out.metadata = detail::parse_metadata(path, info);
    } else {
      auto entry = detail::parse_entry(path, name, info);
      out.shapes[name] = entry.shape;
    }
  }
  return out;
}

SafetensorsContents read_safetensors(const std::string& path) {
  std::ifstream in;
  uint64_t file_size = 0, header_size = 0;
  const auto header = detail::open_header(path, in, file_size, header_size);

  SafetensorsContents contents;
  std::vector<detail::Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") contents.metadata = detail::parse_metadata(path, info);
    else entries.push_back(detail::parse_entry(path, name, info));
  }

  // The tensors must tile the buffer exactly: no gaps, no overlaps, nothing after the last.
  const uint64_t buffer_size = file_size - 8 - header_size;
  std::vector<const detail::Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return std::tie(a->begin, a->end) < std::tie(b->begin, b->end); });
  uint64_t expected = 0;
  for (const auto* e : by_offset) {
    if (e->end > buffer_size)
      throw FileError(path, fmt::format("tensor '{}': data_offsets [{}, {}] go beyond the {}-byte data buffer; truncated?",
                                        e->name, e->begin, e->end, buffer_size));
    if (e->begin != expected)
      throw FileError(path, fmt::format("tensor '{}': data starts at byte {} but the previous tensor ends at {} ({})",
                                        e->name, e->begin, expected, e->begin < expected ? "overlap" : "gap"));
    expected = e->end;
  }
  if (expected != buffer_size)
    throw FileError(path, fmt::format("the tensors cover {} bytes of the {}-byte data buffer (incomplete buffer)", expected,
                                      buffer_size));

  // One read of the whole buffer; tensors are views into it where alignment allows.
  auto buffer = at::empty({static_cast<int64_t>(buffer_size)}, at::TensorOptions().dtype(at::kByte));
  detail::read_exactly(in, reinterpret_cast<char*>(buffer.data_ptr<uint8_t>()), buffer_size, path, "tensor data");
  for (const auto& e : entries) {
    const auto bytes = static_cast<int64_t>(e.end - e.begin);
    const auto element = static_cast<int64_t>(c10::elementSize(e.dtype));
    at::Tensor t;
    if (e.begin % static_cast<uint64_t>(element) == 0) {
      t = buffer.narrow(0, static_cast<int64_t>(e.begin), bytes).view(e.dtype).view(e.shape);
    } else {
      t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
      if (bytes > 0) std::memcpy(t.data_ptr(), buffer.data_ptr<uint8_t>() + e.begin, static_cast<size_t>(bytes));
    }
    if (e.dtype == at::kBool && bytes > 0) {
      // Any byte other than 0 or 1 would be an invalid bool.
      const auto* raw = buffer.data_ptr<uint8_t>() + e.begin;
      if (std::any_of(raw, raw + bytes, [](uint8_t b) { return b > 1; }))
        throw FileError(path, fmt::format("tensor '{}': BOOL data contains bytes other than 0 and 1", e.name));
    }
    contents.tensors.emplace(e.name, std::move(t));
  }
  return contents;
}

void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  using Json = nlohmann::json;
  std::vector<at::Tensor> data;
  Json header = Json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw FileError(path, "the tensor name '__metadata__' is reserved for metadata");
    if (!tensor.defined()) throw FileError(path, fmt::format("tensor '{}' is undefined", name));
    const char* dtype = detail::dtype_name(tensor.scalar_type());
    if (dtype == nullptr)
      throw FileError(path, fmt::format("tensor '{}' has dtype {}, which safetensors cannot store here; expected one of {}",
                                        name, c10::toString(tensor.scalar_type()), detail::supported_dtypes()));
    auto t = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = t.nbytes();
    header[name] = {{"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(std::move(t));
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {
    throw FileError(path, fmt::format("cannot encode the safetensors header (names and metadata must be UTF-8): {}", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  write_file_atomically(path, [&](std::ostream& out) {
    char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
    out.write(length, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : data)
      if (t.nbytes() > 0) out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  });
}

}  // namespace clprompt
