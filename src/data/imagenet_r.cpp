// ImageNet-R with the references' splits (include/clprompt/data/imagenet_r.hpp).
#include "clprompt/data/imagenet_r.hpp"

#include <map>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <unordered_map>

#include <ATen/Parallel.h>

#include "clprompt/core/error.hpp"

namespace fs = std::filesystem;

namespace clprompt {

// ---- options --------------------------------------------------------------------------------

void ImageNetROptions::validate(const std::string& path) const {
  require_option(train_fraction > 0 && train_fraction < 1, path, "train_fraction",
                 fmt::format("expected a fraction in (0, 1), got {}", train_fraction));
  require_option(!train_folder.empty(), path, "train_folder", "expected a folder name");
  require_option(!test_folder.empty(), path, "test_folder", "expected a folder name");
  require_option(resize >= 0, path, "resize", fmt::format("expected 0 (none) or a positive size, got {}", resize));
  require_option(crop >= 0, path, "crop", fmt::format("expected 0 (none) or a positive size, got {}", crop));
  decode.validate(detail::join_path(path, "decode"));
}

// ---- torchvision's ImageFolder listing ------------------------------------------------------

namespace {

bool has_image_extension(const std::string& name) {
  // torchvision folder.py IMG_EXTENSIONS, matched on the lower-cased name.
  static const char* const kExtensions[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* e : kExtensions) {
    const size_t n = std::strlen(e);
    if (lower.size() >= n && lower.compare(lower.size() - n, n, e) == 0) return true;
  }
  return false;
}

// The files of one class folder in make_dataset's order: sorted(os.walk(dir, followlinks=True))
// orders the walked directories by their path string; each one's file names are sorted.
std::vector<std::string> walk_sorted(const fs::path& class_dir) {
  std::vector<std::string> dirs{class_dir.string()};
  std::error_code ec;
  // Symbolic links to directories are followed, as os.walk(followlinks=True) does; a link cycle
  // would repeat forever there, here it stops at the iterator's depth limit.
  for (auto it = fs::recursive_directory_iterator(class_dir, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it.depth() > 64) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_directory(ec)) dirs.push_back(it->path().string());
  }
  if (ec) throw FileError(class_dir.string(), fmt::format("cannot be listed ({})", ec.message()));
  std::sort(dirs.begin(), dirs.end());
  std::vector<std::string> files;
  for (const std::string& d : dirs) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(d, ec)) {
      std::error_code e2;
      // os.walk puts every non-directory entry (following links) among the file names.
      if (!entry.is_directory(e2)) names.push_back(entry.path().filename().string());
    }
    if (ec) throw FileError(d, fmt::format("cannot be listed ({})", ec.message()));
    std::sort(names.begin(), names.end());
    for (const std::string& n : names)
      if (has_image_extension(n)) files.push_back((fs::path(d) / n).string());
  }
  return files;
}

}  // namespace

FolderListing list_image_folder(const std::string& directory) {
  std::error_code ec;
  if (!fs::is_directory(directory, ec))
    throw FileError(directory, "not found; expected a directory with one sub-folder per class");
  FolderListing listing;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    std::error_code e2;
    if (entry.is_directory(e2)) listing.classes.push_back(entry.path().filename().string());
  }
  if (ec) throw FileError(directory, fmt::format("cannot be listed ({})", ec.message()));
  std::sort(listing.classes.begin(), listing.classes.end());
  if (listing.classes.empty()) throw FileError(directory, "has no class sub-folders; expected one sub-folder per class");
  std::vector<std::string> empty;
  for (size_t c = 0; c < listing.classes.size(); ++c) {
    std::vector<std::string> files = walk_sorted(fs::path(directory) / listing.classes[c]);
    if (files.empty()) empty.push_back(listing.classes[c]);
    for (std::string& f : files) {
      listing.files.push_back(std::move(f));
      listing.labels.push_back(static_cast<int64_t>(c));
    }
  }
  if (!empty.empty())
    throw FileError((fs::path(directory) / empty.front()).string(),
                    fmt::format("class folder has no images ({} of {} class folders are empty: {}); expected files "
                                "ending in .jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff or .webp",
                                empty.size(), listing.classes.size(), fmt::join(empty, ", ")));
  return listing;
}

// ---- torch.randperm and random_split --------------------------------------------------------

std::vector<int64_t> torch_randperm(int64_t n, uint64_t seed) {
  if (n < 0 || n >= static_cast<int64_t>(std::numeric_limits<uint32_t>::max() / 20))
    throw Error(fmt::format("torch_randperm: n must be in [0, 2^32 / 20), got {}", n));
  // torch.manual_seed(seed) -> CPUGeneratorImpl's mt19937 initialised with the seed's low 32
  // bits (init_genrand); random() is one tempered 32-bit output - std::mt19937 exactly.
  std::mt19937 mt(static_cast<uint32_t>(seed & 0xffffffffU));
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  for (int64_t i = 0; i < n - 1; ++i) {
    const auto z = static_cast<int64_t>(mt() % static_cast<uint64_t>(n - i));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(z + i)]);
  }
  return p;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> torch_random_split(int64_t n, double fraction, uint64_t seed) {
  if (!(fraction > 0 && fraction < 1))
    throw Error(fmt::format("torch_random_split: expected a fraction in (0, 1), got {}", fraction));
  const std::vector<int64_t> perm = torch_randperm(n, seed);
  // int(0.8 * len(dataset)): a double product, truncated.
  const auto first = static_cast<int64_t>(fraction * static_cast<double>(n));
  return {std::vector<int64_t>(perm.begin(), perm.begin() + first), std::vector<int64_t>(perm.begin() + first, perm.end())};
}

// ---- CODA-Prompt split lists ----------------------------------------------------------------

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

// A YAML scalar as the lists write them: plain, or in single or double quotes (no escapes but
// '' inside single quotes). Returns false for anything else.
bool scalar(const std::string& text, std::string* out) {
  if (text.empty()) return false;
  if (text.front() == '\'' || text.front() == '"') {
    const char q = text.front();
    if (text.size() < 2 || text.back() != q) return false;
    std::string v;
    for (size_t i = 1; i + 1 < text.size(); ++i) {
      if (text[i] == q) {
        if (q == '\'' && i + 2 < text.size() && text[i + 1] == '\'') {
          v.push_back('\'');
          ++i;
          continue;
        }
        return false;
      }
      if (q == '"' && text[i] == '\\') return false;
      v.push_back(text[i]);
    }
    *out = v;
    return true;
  }
  // Plain scalars: no comment marker, no flow or mapping syntax.
  if (text.find(" #") != std::string::npos || text.front() == '[' || text.front() == '{' ||
      text.find(": ") != std::string::npos)
    return false;
  *out = text;
  return true;
}

}  // namespace

SplitList read_split_list(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw FileError(path, "not found; expected a split list (CODA-Prompt dataloaders/splits/imagenet-r_*.yaml)");
  const auto size = fs::file_size(path, ec);
  constexpr uintmax_t kMaxBytes = uintmax_t{64} << 20;
  if (ec || size > kMaxBytes)
    throw FileError(path, fmt::format("has {} bytes; a split list must be below {} bytes", size, kMaxBytes));
  std::ifstream in(path);
  if (!in) throw FileError(path, "cannot be opened for reading");
  SplitList list;
  enum class Section { none, data, targets } section = Section::none;
  bool seen_data = false, seen_targets = false;
  int64_t line_number = 0;
  for (std::string raw; std::getline(in, raw);) {
    ++line_number;
    const std::string line = trim(raw);
    if (line.empty() || line.front() == '#' || line == "---") continue;
    const auto bad = [&](const std::string& what) {
      return FileError(path, fmt::format("line {}: {}; expected `data:` and `targets:`, each followed by `- value` "
                                         "lines (CODA-Prompt's split-list format)",
                                         line_number, what));
    };
    if (raw.front() != ' ' && raw.front() != '-' && raw.front() != '\t') {
      if (line == "data:") {
        if (seen_data) throw bad("a second `data:`");
        section = Section::data;
        seen_data = true;
      } else if (line == "targets:") {
        if (seen_targets) throw bad("a second `targets:`");
        section = Section::targets;
        seen_targets = true;
      } else {
        throw bad(fmt::format("unexpected `{}`", line.substr(0, 60)));
      }
      continue;
    }
    if (line.size() < 2 || line[0] != '-' || line[1] != ' ') throw bad(fmt::format("unexpected `{}`", line.substr(0, 60)));
    std::string value;
    if (!scalar(trim(line.substr(2)), &value)) throw bad(fmt::format("cannot read the value `{}`", line.substr(2, 60)));
    if (section == Section::none) throw bad("a list item before `data:` or `targets:`");
    if (section == Section::data) {
      list.paths.push_back(value);
    } else {
      int64_t t = -1;
      const char* end = value.data() + value.size();
      auto [p, err] = std::from_chars(value.data(), end, t);
      if (err != std::errc() || p != end || t < 0) throw bad(fmt::format("target `{}` is not an int >= 0", value));
      list.targets.push_back(t);
    }
  }
  if (!seen_data || !seen_targets)
    throw FileError(path, fmt::format("has no `{}` list; expected `data:` and `targets:` (CODA-Prompt's split-list "
                                      "format)",
                                      seen_data ? "targets:" : "data:"));
  if (list.paths.size() != list.targets.size())
    throw FileError(path, fmt::format("lists {} paths under `data:` but {} targets under `targets:`", list.paths.size(),
                                      list.targets.size()));
  return list;
}

// ---- the dataset ----------------------------------------------------------------------------

namespace {

// `root`, or `root`/imagenet-r when that is a directory.
std::string imagenet_r_folder(const std::string& root) {
  std::error_code ec;
  const fs::path nested = fs::path(root) / "imagenet-r";
  if (fs::is_directory(nested, ec)) return nested.string();
  if (!fs::is_directory(root, ec))
    throw FileError(root, "not found; expected the imagenet-r folder (imagenet-r/<wnid>/*.jpg) or a folder holding it");
  return root;
}

// A list path relative to the imagenet-r folder: what follows its "imagenet-r" component
// (the lists say data/imagenet-r/<wnid>/<file>); paths without one are taken as they are.
fs::path relative_to_imagenet_r(const std::string& listed) {
  const fs::path p(listed);
  std::vector<fs::path> parts(p.begin(), p.end());
  for (size_t i = 0; i < parts.size(); ++i)
    if (parts[i] == "imagenet-r") {
      fs::path rest;
      for (size_t j = i + 1; j < parts.size(); ++j) rest /= parts[j];
      return rest;
    }
  return p;
}

// The class folder of a listed path: the component after "imagenet-r", else the parent's name.
std::string class_of(const fs::path& relative) {
  return relative.has_parent_path() ? relative.begin()->string() : std::string();
}

}  // namespace

ImageNetRDataset::ImageNetRDataset(const std::string& root, Split split, ImageNetROptions options)
    : root_(imagenet_r_folder(root)), split_(split), options_(std::move(options)) {
  options_.validate("");
  // Without paths, the lists are looked for next to the images, under CODA-Prompt's names.
  if (options_.train_list.empty()) options_.train_list = (fs::path(root) / "imagenet-r_train.yaml").string();
  if (options_.test_list.empty()) options_.test_list = (fs::path(root) / "imagenet-r_test.yaml").string();
  std::error_code ec;
  switch (options_.split) {
    case ImageNetRSplit::random_split: {
      for (const char* sub : {"train", "test"})
        if (fs::is_directory(fs::path(root_) / sub, ec))
          throw FileError((fs::path(root_) / sub).string(),
                          "exists, so the folder is already split (l2p-/dualprompt-pytorch move the images into "
                          "train/ and test/ on their first run); use split = split_folders");
      FolderListing all = list_image_folder(root_);
      const auto [train, test] = torch_random_split(static_cast<int64_t>(all.files.size()), options_.train_fraction,
                                                    options_.seed);
      // The moved files are listed again by ImageFolder(train/ or test/): the original order
      // restricted to the part (the class folders of ImageNet-R are flat).
      std::vector<int64_t> chosen = split == Split::train ? train : test;
      std::sort(chosen.begin(), chosen.end());
      for (int64_t i : chosen) {
        files_.push_back(all.files[static_cast<size_t>(i)]);
        labels_.push_back(all.labels[static_cast<size_t>(i)]);
      }
      class_names_ = all.classes;
      break;
    }
    case ImageNetRSplit::split_folders: {
      const std::string train_dir = (fs::path(root_) / options_.train_folder).string();
      const std::string test_dir = (fs::path(root_) / options_.test_folder).string();
      FolderListing listing = list_image_folder(split == Split::train ? train_dir : test_dir);
      // Both halves must number the classes alike, which ImageFolder does only when both have
      // the same class folders.
      std::vector<std::string> other;
      for (const auto& entry : fs::directory_iterator(split == Split::train ? test_dir : train_dir, ec)) {
        std::error_code e2;
        if (entry.is_directory(e2)) other.push_back(entry.path().filename().string());
      }
      if (ec)
        throw FileError(split == Split::train ? test_dir : train_dir,
                        fmt::format("cannot be listed ({}); expected the other half of the split", ec.message()));
      std::sort(other.begin(), other.end());
      if (other != listing.classes)
        throw FileError(split == Split::train ? test_dir : train_dir,
                        fmt::format("has {} class folders but {} has {}; both halves need the same class folders so "
                                    "that class ids agree",
                                    other.size(), split == Split::train ? train_dir : test_dir, listing.classes.size()));
      files_ = std::move(listing.files);
      labels_ = std::move(listing.labels);
      class_names_ = std::move(listing.classes);
      break;
    }
    case ImageNetRSplit::split_lists: {
      const SplitList train = read_split_list(options_.train_list);
      const SplitList test = read_split_list(options_.test_list);
      // Class ids and their wnids from both lists, so both halves agree on names.
      std::map<int64_t, std::string> wnid_of;
      for (const auto* list : {&train, &test}) {
        const std::string& list_path = list == &train ? options_.train_list : options_.test_list;
        for (size_t i = 0; i < list->paths.size(); ++i) {
          const std::string wnid = class_of(relative_to_imagenet_r(list->paths[i]));
          auto [it, inserted] = wnid_of.emplace(list->targets[i], wnid);
          if (!inserted && it->second != wnid)
            throw FileError(list_path, fmt::format("target {} is given to {} (item {}) and to files of {}; each class "
                                                   "id must name one class folder",
                                                   list->targets[i], list->paths[i], i, it->second));
        }
      }
      const int64_t classes = wnid_of.empty() ? 0 : wnid_of.rbegin()->first + 1;
      if (static_cast<int64_t>(wnid_of.size()) != classes)
        throw FileError(options_.train_list, fmt::format("the two lists use {} class ids but the largest is {}; "
                                                         "expected every id in [0, {})",
                                                         wnid_of.size(), classes - 1, classes));
      std::set<std::string> seen_wnids;
      for (const auto& [id, wnid] : wnid_of)
        if (!seen_wnids.insert(wnid).second)
          throw FileError(options_.train_list, fmt::format("class folder {} has two class ids", wnid));
      std::set<std::string> train_paths(train.paths.begin(), train.paths.end());
      if (train_paths.size() != train.paths.size())
        throw FileError(options_.train_list, "lists a path twice");
      for (const std::string& p : test.paths)
        if (train_paths.count(p) != 0)
          throw FileError(options_.test_list, fmt::format("lists {}, which the train list {} lists too", p,
                                                          options_.train_list));
      const SplitList& mine = split == Split::train ? train : test;
      int64_t missing = 0;
      std::string first_missing;
      for (size_t i = 0; i < mine.paths.size(); ++i) {
        const std::string file = (fs::path(root_) / relative_to_imagenet_r(mine.paths[i])).string();
        if (!fs::is_regular_file(file, ec) && missing++ == 0) first_missing = file;
        files_.push_back(file);
        labels_.push_back(mine.targets[i]);
      }
      if (missing > 0)
        throw FileError(first_missing, fmt::format("not found: {} of the {} files listed in {} are missing under {}",
                                                   missing, mine.paths.size(),
                                                   split == Split::train ? options_.train_list : options_.test_list,
                                                   root_));
      for (const auto& [id, wnid] : wnid_of) class_names_.push_back(wnid);
      break;
    }
  }
  if (!options_.class_names_file.empty()) {
    const auto names = read_class_names_file(options_.class_names_file);
    for (auto& wnid : class_names_) {
      const auto it = names.find(wnid);
      if (it == names.end())
        throw FileError(options_.class_names_file, fmt::format("has no name for class {} of {}", wnid, root_));
      wnid = it->second;
    }
  }
}

int64_t ImageNetRDataset::label(int64_t index) const {
  if (index < 0 || index >= size())
    throw ShapeError(fmt::format("{}: index {} is outside [0, {})", description(), index, size()));
  return labels_[static_cast<size_t>(index)];
}

at::Tensor ImageNetRDataset::image(int64_t index) const {
  if (index < 0 || index >= size())
    throw ShapeError(fmt::format("{}: index {} is outside [0, {})", description(), index, size()));
  return decode_image_file(files_[static_cast<size_t>(index)], options_.decode);
}

std::vector<at::Tensor> ImageNetRDataset::stored_images(const std::vector<int64_t>& indices) const {
  detail::check_indices(indices, size(), description());
  std::vector<at::Tensor> out(indices.size());
  at::parallel_for(0, static_cast<int64_t>(indices.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[static_cast<size_t>(i)] =
          decode_image_file(files_[static_cast<size_t>(indices[static_cast<size_t>(i)])], options_.decode);
  });
  return out;
}

std::array<int64_t, 3> ImageNetRDataset::image_shape() const {
  if (options_.crop > 0) return {3, options_.crop, options_.crop};
  return Dataset::image_shape();
}

at::Tensor ImageNetRDataset::images(const std::vector<int64_t>& indices) const {
  detail::check_indices(indices, size(), description());
  const auto batch = static_cast<int64_t>(indices.size());
  std::vector<at::Tensor> decoded(indices.size());
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      at::Tensor x = decode_image_file(files_[static_cast<size_t>(indices[static_cast<size_t>(i)])], options_.decode);
      if (options_.resize > 0) x = resize_shorter_side(x, options_.resize, options_.interpolation);
      if (options_.crop > 0) x = center_crop(x, options_.crop, options_.crop);
      decoded[static_cast<size_t>(i)] = x.contiguous();
    }
  });
  for (int64_t i = 1; i < batch; ++i)
    if (decoded[static_cast<size_t>(i)].sizes() != decoded.front().sizes())
      throw FileError(files_[static_cast<size_t>(indices[static_cast<size_t>(i)])],
                      fmt::format("gives a {} image but {} gives {}; with crop = 0 every image must have one size",
                                  c10::str(decoded[static_cast<size_t>(i)].sizes()),
                                  files_[static_cast<size_t>(indices.front())], c10::str(decoded.front().sizes())));
  if (batch == 0) {
    const auto shape = image_shape();
    return at::empty({0, shape[0], shape[1], shape[2]}, at::kByte);
  }
  return at::stack(decoded);
}

std::string ImageNetRDataset::description() const {
  std::string how;
  switch (options_.split) {
    case ImageNetRSplit::random_split:
      how = fmt::format("random_split seed {} fraction {}", options_.seed, options_.train_fraction);
      break;
    case ImageNetRSplit::split_lists:
      how = fmt::format("split_lists {}", split_ == Split::train ? options_.train_list : options_.test_list);
      break;
    case ImageNetRSplit::split_folders:
      how = fmt::format("split_folders {}", split_ == Split::train ? options_.train_folder : options_.test_folder);
      break;
  }
  return fmt::format("ImageNet-R {} ({} images, {} classes, {}) from {}", to_string(split_), files_.size(),
                     class_names_.size(), how, root_);
}

// ---- readable names -------------------------------------------------------------------------

std::map<std::string, std::string> read_class_names_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw FileError(path, "cannot open the class-names file (one 'wnid name' per line)");
  std::map<std::string, std::string> names;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.size() > 4096) throw FileError(path, fmt::format("line {} is longer than 4096 characters", number));
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    const auto space = line.find_first_of(" \t", first);
    if (space == std::string::npos)
      throw FileError(path, fmt::format("line {}: expected 'wnid name', got '{}'", number, line));
    auto name = line.substr(line.find_first_not_of(" \t", space));
    while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
    names[line.substr(first, space - first)] = name;
  }
  return names;
}

}  // namespace clprompt
