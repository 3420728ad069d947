// Compiled part of include/clprompt/io: file formats.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clprompt/core/error.hpp"
#include "clprompt/backbone/builtin_weights.hpp"
#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/sha256.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/io/svg_plot.hpp"
#include "clprompt_paths.hpp"

// safetensors stores little-endian data and tensors are built over the raw bytes.
static_assert(std::endian::native == std::endian::little, "clprompt's file formats assume a little-endian host");

namespace clprompt {
namespace detail {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// ---- atomic files -------------------------------------------------------------------------

std::string temp_path_for(const std::string& path) {
  std::random_device device;
  const uint64_t random = (static_cast<uint64_t>(device()) << 32) ^ device();
  return fmt::format("{}.tmp-{}-{:016x}", path, ::getpid(), random);
}

// Removes the temporary file unless released (i.e. renamed into place).
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

void fsync_path(const std::string& path, int flags, const std::string& target, const char* what) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw FileError(target, fmt::format("cannot open {} to sync it: {}", what, errno_text(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // EINVAL: the file system does not support fsync on this kind of file (e.g. a directory).
  if (rc != 0 && err != EINVAL) throw FileError(target, fmt::format("cannot sync {}: {}", what, errno_text(err)));
}

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
  try {
    header = Json::parse(text, callback);
  } catch (const Json::exception& e) {
    throw FileError(path, fmt::format("safetensors header is not valid JSON: {}", e.what()));
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

// ---- state dicts ----------------------------------------------------------------------------

std::string shape_text(at::IntArrayRef shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

bool starts_with_any(const std::string& name, const std::vector<std::string>& prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& p) { return !p.empty() && name.starts_with(p); });
}

std::string join_names(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ", ")); }

// A prefix that, stripped from unexpected names, would turn them into missing ones.
std::string guess_strip_prefix(const LoadReport& report) {
  for (const auto& u : report.unexpected)
    for (const auto& m : report.missing)
      if (u.size() > m.size() && u.ends_with(m) && u[u.size() - m.size() - 1] == '.')
        return u.substr(0, u.size() - m.size());
  return {};
}

// ---- SVG --------------------------------------------------------------------------------------

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters other than tab and newlines are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') out += ' ';
        else out += c;
    }
  }
  return out;
}

// Rough text width for layout (no font metrics without a font): ~0.6 em per character.
double text_width(std::string_view text, double font_size) {
  size_t chars = 0;
  for (char c : text) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // count UTF-8 code points
  return 0.6 * font_size * static_cast<double>(chars);
}

// White (0 %) to dark blue (100 %), clamped.
std::string heat_color(double value) {
  const double t = std::clamp(value / 100.0, 0.0, 1.0);
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * t)); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(247, 8), mix(251, 48), mix(255, 107));
}

constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string task_label(const AccuracyPlot& plot, size_t i) {
  return i < plot.task_labels.size() && !plot.task_labels[i].empty() ? plot.task_labels[i] : fmt::format("T{}", i + 1);
}

struct Panel {
  std::string body;
  double width = 0, height = 0;
};

Panel heatmap_panel(const AccuracyPlot& plot) {
  const size_t n = plot.matrix.size();
  Panel p;
  const double cell = n == 0 ? 40.0 : std::clamp(440.0 / static_cast<double>(n), 16.0, 56.0);
  const double font = std::clamp(cell * 0.3, 6.0, 12.0);
  const double label_font = 11;
  double row_label_width = 0, col_label_height = 0;
  for (size_t i = 0; i < n; ++i) {
    row_label_width = std::max(row_label_width, text_width("after " + task_label(plot, i), label_font));
    col_label_height = std::max(col_label_height, text_width(task_label(plot, i), label_font));
  }
  // Column labels are turned 45 degrees so long ones do not overlap.
  const double left = 10 + row_label_width + 8, top = 44 + col_label_height * 0.71 + 8;
  const std::string title = "Accuracy on task j after task t (%)";
  // Room for the last column label, which leans to the right, and for the panel title.
  p.width = std::max(left + cell * static_cast<double>(n) + std::max(20.0, col_label_height * 0.71 - cell / 2 + 10),
                     10 + text_width(title, 13) + 10);
  p.height = top + cell * static_cast<double>(n) + 30;
  std::string& s = p.body;
  s += fmt::format("<text x=\"10\" y=\"22\" font-size=\"13\" font-weight=\"bold\">{}</text>\n", title);
  if (n == 0) {
    s += "<text x=\"10\" y=\"60\" font-size=\"11\">no accuracy matrix</text>\n";
    p.height = 80;
    p.width = 300;
    return p;
  }
  for (size_t t = 0; t < n; ++t) {
    const double y = top + cell * static_cast<double>(t);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                     left - 6, y + cell / 2, label_font, xml_escape("after " + task_label(plot, t)));
    for (size_t j = 0; j <= t; ++j) {
      const double x = left + cell * static_cast<double>(j);
      const double v = j < plot.matrix[t].size() ? plot.matrix[t][j] : std::nan("");
      if (!std::isfinite(v)) {
        s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#cccccc\"/>\n",
                         x, y, cell, cell);
        continue;
      }
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\" stroke=\"#ffffff\"/>\n",
                       x, y, cell, cell, heat_color(v));
      const std::string text = cell >= 36 ? fmt::format("{:.1f}", v) : fmt::format("{:.0f}", v);
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{:.1f}\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"{}\">{}</text>\n",
                       x + cell / 2, y + cell / 2, font, v > 55 ? "#ffffff" : "#000000", text);
    }
  }
  for (size_t j = 0; j < n; ++j) {
    const double x = left + cell * (static_cast<double>(j) + 0.5), y = top - 6;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" transform=\"rotate(-45 {:.1f} {:.1f})\">{}</text>\n",
                     x, y, label_font, x, y, xml_escape(task_label(plot, j)));
  }
  return p;
}

Panel curves_panel(const AccuracyPlot& plot) {
  Panel p;
  size_t tasks = 0;
  double legend_width = 0;
  for (const auto& c : plot.curves) {
    tasks = std::max(tasks, c.values.size());
    legend_width = std::max(legend_width, text_width(c.label, 11));
  }
  const double left = 50, top = 40, plot_w = 360, plot_h = 260;
  const double legend_x = left + plot_w + 20;
  p.width = legend_x + 30 + legend_width + 10;
  p.height = top + plot_h + 50;
  std::string& s = p.body;
  s += "<text x=\"10\" y=\"22\" font-size=\"13\" font-weight=\"bold\">Accuracy after each task (%)</text>\n";
  if (plot.curves.empty() || tasks == 0) {
    s += "<text x=\"10\" y=\"60\" font-size=\"11\">no curves</text>\n";
    p.height = 80;
    p.width = 300;
    return p;
  }
  auto x_of = [&](size_t i) {
    return tasks == 1 ? left + plot_w / 2 : left + plot_w * static_cast<double>(i) / static_cast<double>(tasks - 1);
  };
  auto y_of = [&](double v) { return top + plot_h * (1.0 - std::clamp(v, 0.0, 100.0) / 100.0); };
  // Grid, y ticks every 20 %, axes.
  for (int v = 0; v <= 100; v += 20) {
    const double y = y_of(v);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n", left, y,
                     left + plot_w, y);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#000000\"/>\n", left - 5, y,
                     left, y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                     left - 8, y, v);
  }
  // Label every task when they fit, else about ten of them.
  const size_t step = std::max<size_t>(1, (tasks + 9) / 10);
  for (size_t i = 0; i < tasks; ++i) {
    if (i % step != 0 && i + 1 != tasks) continue;
    const double x = x_of(i), y = top + plot_h;
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#000000\"/>\n", x, y, x, y + 5);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\n", x, y + 18, i + 1);
  }
  s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#000000\"/>\n", left, top,
                   top + plot_h);
  s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#000000\"/>\n", left,
                   top + plot_h, left + plot_w);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\">task</text>\n",
                   left + plot_w / 2, top + plot_h + 38);
  s += fmt::format("<text x=\"14\" y=\"{0:.1f}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 14 {0:.1f})\">accuracy (%)</text>\n",
                   top + plot_h / 2);
  // Curves: one polyline per unbroken run of finite values, and a marker on every point.
  for (size_t c = 0; c < plot.curves.size(); ++c) {
    const auto& curve = plot.curves[c];
    const char* color = kPalette[c % std::size(kPalette)];
    s += fmt::format("<g class=\"curve\" stroke=\"{0}\" fill=\"{0}\">\n", color);
    std::string points;
    size_t run = 0;
    auto flush = [&] {
      if (run > 0) s += fmt::format("<polyline fill=\"none\" stroke-width=\"2\" points=\"{}\"/>\n", points);
      points.clear();
      run = 0;
    };
    for (size_t i = 0; i < curve.values.size(); ++i) {
      const double v = curve.values[i];
      if (!std::isfinite(v)) {
        flush();
        continue;
      }
      points += fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ", x_of(i), y_of(v));
      ++run;
    }
    flush();
    for (size_t i = 0; i < curve.values.size(); ++i)
      if (std::isfinite(curve.values[i]))
        s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>\n", x_of(i), y_of(curve.values[i]));
    s += "</g>\n";
    const double ly = top + 10 + 18 * static_cast<double>(c);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                     legend_x, ly, legend_x + 22, ly, color);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" dominant-baseline=\"middle\">{}</text>\n",
                     legend_x + 28, ly, xml_escape(curve.label));
  }
  return p;
}

}  // namespace
}  // namespace detail

// ==== atomic_file.hpp ========================================================================

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const std::string temp = detail::temp_path_for(path);
  // O_EXCL: never truncate a file someone else created under the same name.
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int err = errno;
    const fs::path dir = fs::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty() && !fs::is_directory(dir, ec))
      throw FileError(path, fmt::format("cannot write: the directory '{}' does not exist", dir.string()));
    throw FileError(path, fmt::format("cannot create the temporary file '{}': {}", temp, detail::errno_text(err)));
  }
  ::close(fd);
  detail::TempFileGuard guard(temp);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw FileError(path, fmt::format("cannot open the temporary file '{}': {}", temp, detail::errno_text(errno)));
    try {
      write(out);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw FileError(path, fmt::format("not written (any previous content is kept): {}", e.what()));
    }
    out.flush();
    if (!out) throw FileError(path, fmt::format("writing '{}' failed: {}", temp, detail::errno_text(errno)));
    out.close();
    if (!out) throw FileError(path, fmt::format("closing '{}' failed: {}", temp, detail::errno_text(errno)));
  }
  detail::fsync_path(temp, O_RDONLY, path, "the temporary file");
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) throw FileError(path, fmt::format("cannot rename '{}' over it: {}", temp, ec.message()));
  guard.release();
  // Persist the rename itself; the content is already safe, so a failure here is not fatal.
  const fs::path dir = fs::path(path).parent_path();
  try {
    detail::fsync_path(dir.empty() ? "." : dir.string(), O_RDONLY | O_DIRECTORY, path, "the directory");
  } catch (const FileError&) {
  }
}

void write_text_file_atomically(const std::string& path, std::string_view text) {
  write_file_atomically(path, [&](std::ostream& out) { out.write(text.data(), static_cast<std::streamsize>(text.size())); });
}

// ==== safetensors.hpp ========================================================================

SafetensorsContents read_safetensors(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) throw FileError(path, "cannot open: no such file");
  if (ec) throw FileError(path, fmt::format("cannot open: {}", ec.message()));
  if (!fs::is_regular_file(status)) throw FileError(path, "cannot read: not a regular file");
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec) throw FileError(path, fmt::format("cannot read the file size: {}", ec.message()));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, fmt::format("cannot open: {}", detail::errno_text(errno)));
  if (file_size < 8)
    throw FileError(path, fmt::format("not a safetensors file: {} bytes, shorter than the 8-byte header length", file_size));

  unsigned char length_bytes[8];
  detail::read_exactly(in, reinterpret_cast<char*>(length_bytes), 8, path, "header length");
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
  if (header_size > detail::kMaxHeaderBytes)
    throw FileError(path, fmt::format("safetensors header length {} exceeds the limit of {} bytes (not a safetensors file?)",
                                      header_size, detail::kMaxHeaderBytes));
  if (header_size > file_size - 8)
    throw FileError(path, fmt::format("safetensors header length {} is larger than the rest of the file ({} bytes); truncated?",
                                      header_size, file_size - 8));
  std::string header_text(header_size, '\0');
  detail::read_exactly(in, header_text.data(), header_size, path, "header");
  if (header_text.empty() || header_text.front() != '{')
    throw FileError(path, "safetensors header must start with '{' (not a safetensors file?)");
  const auto header = detail::parse_header(path, header_text);

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

// ==== state_dict.hpp =========================================================================

TensorMap state_dict(const torch::nn::Module& module, const std::string& prefix) {
  TensorMap result;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (item.value().defined()) result.emplace(prefix + item.key(), item.value().detach());
  for (const auto& item : module.named_buffers(/*recurse=*/true))
    if (item.value().defined()) result.emplace(prefix + item.key(), item.value().detach());
  return result;
}

bool LoadReport::ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }

namespace detail {
namespace {
// `loaded_word` is "matching" in a strict-load error, where nothing was copied.
std::string describe(const LoadReport& r, const char* loaded_word) {
  std::string s = fmt::format("{} {}, missing {}, unexpected {}, mis-shaped {}, ignored {}", loaded_word, r.loaded.size(),
                              r.missing.size(), r.unexpected.size(), r.mismatched.size(), r.ignored.size());
  auto list = [&](const char* what, const std::vector<std::string>& names) {
    if (!names.empty()) s += fmt::format("\n  {} ({}): {}", what, names.size(), join_names(names));
  };
  list("missing from the checkpoint", r.missing);
  list("unexpected in the checkpoint", r.unexpected);
  list("shape mismatch", r.mismatched);
  return s;
}
}  // namespace
}  // namespace detail

std::string LoadReport::summary() const { return detail::describe(*this, "loaded"); }

LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const LoadOptions& options) {
  const TensorMap model = state_dict(module);
  LoadReport report;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (model tensor, checkpoint tensor)
  std::map<std::string, std::string> used;                // model name -> checkpoint name
  for (const auto& [raw_name, value] : tensors) {
    std::string name = raw_name;
    if (!options.strip_prefix.empty() && name.starts_with(options.strip_prefix))
      name.erase(0, options.strip_prefix.size());
    if (detail::starts_with_any(raw_name, options.ignore_prefixes) ||
        detail::starts_with_any(name, options.ignore_prefixes)) {
      report.ignored.push_back(raw_name);
      continue;
    }
    const auto it = model.find(name);
    if (it == model.end() || !value.defined()) {
      report.unexpected.push_back(raw_name);
      continue;
    }
    if (const auto [prev, inserted] = used.emplace(name, raw_name); !inserted) {
      // Both "model.x" and "x" map to "x" after stripping: keep the first, flag the second.
      report.unexpected.push_back(fmt::format("{} (also given as {})", raw_name, prev->second));
      continue;
    }
    if (value.sizes() != it->second.sizes()) {
      report.mismatched.push_back(fmt::format("{}: checkpoint {} vs model {}", name, detail::shape_text(value.sizes()),
                                              detail::shape_text(it->second.sizes())));
      continue;
    }
    copies.emplace_back(it->second, value);
    report.loaded.push_back(name);
  }
  for (const auto& [name, tensor] : model) {
    (void)tensor;
    const bool covered = used.count(name) != 0;
    if (!covered && !detail::starts_with_any(name, options.ignore_prefixes)) report.missing.push_back(name);
  }
  if (options.strict && !report.ok()) {
    std::string hint = "hint: ";
    if (const auto prefix = detail::guess_strip_prefix(report); !prefix.empty())
      hint += fmt::format("the checkpoint names look prefixed; try strip_prefix = \"{}\"", prefix);
    else
      hint += "use strip_prefix for prefixed checkpoint names (e.g. \"model.\"), ignore_prefixes to skip parts such as "
              "\"head.\", or strict = false to load only what matches";
    throw CheckpointError(fmt::format("{}: checkpoint does not match the model, nothing was loaded ({})\n{}",
                                      options.source, detail::describe(report, "matching"), hint));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(source);
  return report;
}

// ==== svg_plot.hpp ===========================================================================

std::string accuracy_svg(const AccuracyPlot& plot) {
  const auto left = detail::heatmap_panel(plot);
  const auto right = detail::curves_panel(plot);
  const double title_height = plot.title.empty() ? 0 : 30;
  const double width = left.width + right.width + 20;
  const double height = title_height + std::max(left.height, right.height);
  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\" "
      "font-family=\"sans-serif\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0:.0f}\" height=\"{1:.0f}\" fill=\"#ffffff\"/>\n",
      std::ceil(width), std::ceil(height));
  if (!plot.title.empty())
    s += fmt::format("<title>{0}</title>\n<text x=\"{1:.1f}\" y=\"22\" font-size=\"16\" font-weight=\"bold\" "
                     "text-anchor=\"middle\">{0}</text>\n",
                     detail::xml_escape(plot.title), width / 2);
  s += fmt::format("<g class=\"heatmap\" transform=\"translate(0 {:.1f})\">\n{}</g>\n", title_height, left.body);
  s += fmt::format("<g class=\"curves\" transform=\"translate({:.1f} {:.1f})\">\n{}</g>\n", left.width + 20, title_height,
                   right.body);
  s += "</svg>\n";
  return s;
}

void write_accuracy_svg(const std::string& path, const AccuracyPlot& plot) {
  write_text_file_atomically(path, accuracy_svg(plot));
}

}  // namespace clprompt

// ---- SHA-256 ------------------------------------------------------------------------------
namespace clprompt {
namespace detail {

class Sha256 {
 public:
  void update(const unsigned char* data, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) {
      block_[fill_++] = data[i];
      if (fill_ == 64) {
        compress();
        fill_ = 0;
      }
    }
    length_ += size;
  }
  std::string hex() {
    const uint64_t bits = length_ * 8;
    const unsigned char pad = 0x80, zero = 0;
    update(&pad, 1);
    while (fill_ != 56) update(&zero, 1);
    for (int i = 7; i >= 0; --i) {
      const auto byte = static_cast<unsigned char>(bits >> (8 * i));
      update(&byte, 1);
    }
    std::string out;
    for (uint32_t word : state_) out += fmt::format("{:08x}", word);
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(block_[4 * i]) << 24 | uint32_t(block_[4 * i + 1]) << 16 | uint32_t(block_[4 * i + 2]) << 8 |
             uint32_t(block_[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3], e = state_[4], f = state_[5],
             g = state_[6], h = state_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    state_[0] += a, state_[1] += b, state_[2] += c, state_[3] += d;
    state_[4] += e, state_[5] += f, state_[6] += g, state_[7] += h;
  }

  uint32_t state_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char block_[64] = {};
  std::size_t fill_ = 0;
  uint64_t length_ = 0;
};

}  // namespace detail

std::string sha256_hex(std::string_view bytes) {
  detail::Sha256 h;
  h.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return h.hex();
}

std::string sha256_file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, "cannot open the file to hash");
  detail::Sha256 h;
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    h.update(reinterpret_cast<const unsigned char*>(buffer.data()), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw FileError(path, "read error while hashing");
  return h.hex();
}

// ---- shipped weights ----------------------------------------------------------------------

const std::vector<BuiltinWeights>& builtin_weights() {
  static const std::vector<BuiltinWeights> table{
      {"vit-glyph-d128", "vit-glyph-d128.safetensors",
       "a05e6a65321f45fa86804192ea10b4fe3b6929435c983ff7f8e489da5b5bdcea",
       "ViT (28 px, patch 4, D 128, depth 6, 4 heads) pre-trained by `clprompt pretrain` on digits and Latin "
       "letters rendered from the pinned Debian font packages (docs/pretraining.md)",
       "bash scripts/pretrain.sh"},
  };
  return table;
}

std::vector<std::string> builtin_weights_search_path() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("CLPROMPT_MODELS_DIR"); env != nullptr && *env != '\0') dirs.emplace_back(env);
  dirs.emplace_back(CLPROMPT_INSTALLED_MODELS_DIR);
  dirs.emplace_back(CLPROMPT_SOURCE_MODELS_DIR);
  return dirs;
}

std::string resolve_pretrained_path(const std::string& spec, const std::string& field) {
  constexpr std::string_view prefix = "builtin:";
  if (spec.rfind(prefix, 0) != 0) return spec;
  const auto name = spec.substr(prefix.size());
  const auto& table = builtin_weights();
  const auto it = std::find_if(table.begin(), table.end(), [&](const BuiltinWeights& w) { return w.name == name; });
  if (it == table.end()) {
    std::vector<std::string> names;
    for (const auto& w : table) names.push_back("builtin:" + w.name);
    throw ConfigError(field, fmt::format("unknown shipped weights '{}'; available: {}", spec, fmt::join(names, ", ")));
  }
  const auto dirs = builtin_weights_search_path();
  for (const auto& dir : dirs) {
    const auto path = (std::filesystem::path(dir) / it->file).string();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) continue;
    const auto actual = sha256_file_hex(path);
    if (actual != it->sha256)
      throw FileError(path, fmt::format("SHA-256 is {} but {} expects {}: the file is corrupt or from another "
                                        "version; restore it from git or regenerate it with `{}`",
                                        actual, spec, it->sha256, it->regenerate));
    return path;
  }
  throw FileError(it->file, fmt::format("shipped weights {} not found in {} (set CLPROMPT_MODELS_DIR, or "
                                        "regenerate them with `{}`)",
                                        spec, fmt::join(dirs, ", "), it->regenerate));
}

}  // namespace clprompt
