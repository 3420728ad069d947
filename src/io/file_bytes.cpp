// Compiled part of include/clprompt/io/file_bytes.hpp: whole files, gzip in and out (zlib).
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <zlib.h>

#include "clprompt/core/error.hpp"
#include "clprompt/io/file_bytes.hpp"

namespace fs = std::filesystem;

namespace clprompt {

namespace detail {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw FileError(path, "not found");
  if (fs::is_directory(path, ec)) throw FileError(path, "is a directory; expected a file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw FileError(path, "cannot be opened for reading");
  const std::streamoff size = in.tellg();
  std::vector<uint8_t> bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)));
  in.seekg(0);
  if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw FileError(path, fmt::format("read failed after {} of {} bytes", in.gcount(), size));
  return bytes;
}

namespace {

struct InflateGuard {
  z_stream* stream;
  ~InflateGuard() { inflateEnd(stream); }
};

bool has_gzip_magic(const uint8_t* data, size_t size) { return size >= 2 && data[0] == 0x1f && data[1] == 0x8b; }

}  // namespace

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& path) {
  if (compressed.size() > std::numeric_limits<uInt>::max())
    throw FileError(path, "gzip files over 4 GiB are not supported");
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw FileError(path, "zlib could not start decompression");
  InflateGuard guard{&zs};
  std::vector<uint8_t> out;
  // The gzip trailer stores the uncompressed size modulo 2^32: a good first guess, capped by
  // deflate's best ratio (about 1032:1) so a corrupt trailer cannot reserve gigabytes. It also
  // bounds the output: more than it claims (or 256 MiB when it claims less) is a corrupt file or
  // a decompression bomb, refused before it fills memory. Outputs of 4 GiB and more are refused
  // (the trailer could not describe them). The trailer describes the file's last gzip member
  // only: once a second member begins the bound becomes 4 GiB, but a first member larger than
  // both 256 MiB and the last member is refused (`cat big.gz small.gz`; recompress such a file).
  const size_t hard_limit = (size_t{1} << 32) - 1;
  size_t claimed = 0, limit = hard_limit;
  if (compressed.size() >= 18) {
    const uint8_t* t = compressed.data() + compressed.size() - 4;
    claimed = static_cast<size_t>(t[0]) | static_cast<size_t>(t[1]) << 8 | static_cast<size_t>(t[2]) << 16 |
              static_cast<size_t>(t[3]) << 24;
    limit = std::max<size_t>(claimed, size_t{256} << 20);
    out.reserve(std::min(claimed, compressed.size() * 1032) + (1u << 16));
  }
  zs.next_in = const_cast<Bytef*>(compressed.data());
  zs.avail_in = static_cast<uInt>(compressed.size());
  size_t produced = 0;
  for (;;) {
    if (out.size() - produced < (1u << 16))
      out.resize(std::min(std::max<size_t>(out.capacity(), produced + (1u << 20)), limit + (1u << 16)));
    const size_t room = std::min<size_t>(out.size() - produced, std::numeric_limits<uInt>::max());
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(room);
    const int ret = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (produced > limit)
      throw FileError(path, fmt::format("inflates to more than {} bytes although its gzip trailer claims {} (the "
                                        "last member's size): corrupt, or a decompression bomb",
                                        limit, claimed));
    if (ret == Z_STREAM_END) {
      // Concatenated members (as `cat a.gz b.gz` makes) decompress to the concatenation.
      if (zs.avail_in >= 2 && has_gzip_magic(zs.next_in, zs.avail_in)) {
        inflateReset(&zs);
        limit = hard_limit;
        continue;
      }
      break;
    }
    if (ret == Z_OK || ret == Z_BUF_ERROR) {
      if (zs.avail_in == 0 && zs.avail_out != 0)
        throw FileError(path, fmt::format("truncated gzip data: the stream ends after {} compressed bytes "
                                          "({} decompressed) without its end marker",
                                          compressed.size(), produced));
      continue;
    }
    throw FileError(path, fmt::format("corrupt gzip data ({})", zs.msg != nullptr ? zs.msg : zError(ret)));
  }
  out.resize(produced);
  return out;
}

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, bool* was_gzip) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  const bool gz = has_gzip_magic(bytes.data(), bytes.size());
  if (was_gzip != nullptr) *was_gzip = gz;
  return gz ? gunzip(bytes, path) : bytes;
}

std::vector<uint8_t> gzip_compress(const std::vector<uint8_t>& bytes) {
  if (bytes.size() > std::numeric_limits<uInt>::max()) throw Error("gzip_compress: inputs over 4 GiB are not supported");
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error("gzip_compress: zlib could not start compression");
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(bytes.size())) + 64);
  zs.next_in = const_cast<Bytef*>(bytes.data());
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int ret = deflate(&zs, Z_FINISH);
  const size_t produced = zs.total_out;
  deflateEnd(&zs);
  if (ret != Z_STREAM_END) throw Error(fmt::format("gzip_compress: zlib failed ({})", zError(ret)));
  out.resize(produced);
  return out;
}

}  // namespace detail

}  // namespace clprompt
