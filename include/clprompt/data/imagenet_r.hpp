#pragma once
// ImageNet-R (Hendrycks et al. 2021) as distributed: imagenet-r/<wnid>/*.jpg, 200 class folders
// and 30000 images with no train/test split. Each reference splits it differently:
//
// - l2p-pytorch / dualprompt-pytorch (continual_datasets/continual_datasets.py:627-706, the same
//   file in both repos): on the first run, when neither imagenet-r/train nor imagenet-r/test
//   exists, `datasets.ImageFolder(imagenet-r)` lists the files (torchvision folder.py:36-46 and
//   :83-93: class folders sorted, os.walk roots sorted, file names sorted, IMG_EXTENSIONS
//   matched case-insensitively), `torch.utils.data.random_split(dataset, [int(0.8 N), N -
//   int(0.8 N)])` draws `torch.randperm(N)` from the global generator, which main.py:38-41 has
//   just seeded with torch.manual_seed(args.seed) (default 42, configs/imr_dualprompt.py:58) and
//   which nothing has drawn from yet (main.py:45 builds the data first); the first int(0.8 N)
//   indices are moved to imagenet-r/train/<wnid>/, the rest to imagenet-r/test/<wnid>/, and
//   every later run reads those folders with ImageFolder. Labels are the sorted wnid indices.
//   -> ImageNetRSplit::random_split reproduces that split and order exactly: randperm on CPU is
//   the forward Fisher-Yates swap of i with i + (mt19937 output mod (N - i)) (ATen
//   TensorFactories.cpp randperm_cpu, the same in every torch release for N < 2^32 / 20) and
//   torch.manual_seed(s) seeds mt19937 with s (mod 2^32), as std::mt19937 does. What cannot be
//   known from the code: a run whose imagenet-r/train and test folders already existed (from an
//   earlier run with another seed, or made by hand) used those; reproduce it with split_folders.
// - CODA-Prompt (dataloaders/dataloader.py:303-316) and mammoth (datasets/seq_imagenet_r.py:71-78)
//   ship the same split as two YAML files, byte-identical between the repos:
//   CODA-Prompt dataloaders/splits/imagenet-r_{train,test}.yaml = mammoth
//   datasets/imagenet_r_utils/imagenet-r_{train,test}.yaml. Each is a mapping with two block
//   sequences of equal length, `data:` (paths `data/imagenet-r/<wnid>/<file>`, relative to the
//   repo root) and `targets:` (ints). 24000 train + 6000 test paths, disjoint; the class id of a
//   wnid is the same in both files but is not its sorted index (e.g. 0 = n02165456), and the
//   test share varies per class (8 % to 29 %), so it is one global split, not a stratified one.
//   -> ImageNetRSplit::split_lists reads those files (not shipped here: pass their paths) and
//   keeps their class ids.
// - SLCA (utils/data.py:124-149, iImageNetR) reads already split folders data/imagenet-r/train/
//   and data/imagenet-r/val/ with ImageFolder; the repo ships no split and no script for it.
//   -> ImageNetRSplit::split_folders with test_folder = "val" (l2p's folders: "test").
//
// Images decode with data/image_decode.hpp; images() returns them the way the references'
// test transforms do (torchvision Resize(resize) + CenterCrop(crop) with Pillow's resampling,
// data/image_ops.hpp) so batches stack; image() returns one image at its decoded size for the
// training transforms (RandomResizedCrop).
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "clprompt/core/options.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/data/image_decode.hpp"
#include "clprompt/data/image_ops.hpp"

namespace clprompt {

enum class ImageNetRSplit { random_split, split_lists, split_folders };
constexpr auto enum_names(ImageNetRSplit) {
  return std::array{std::pair{ImageNetRSplit::random_split, "random_split"},
                    std::pair{ImageNetRSplit::split_lists, "split_lists"},
                    std::pair{ImageNetRSplit::split_folders, "split_folders"}};
}

struct ImageNetROptions {
  ImageNetRSplit split = ImageNetRSplit::random_split;
  /// random_split: the torch.manual_seed of l2p-/dualprompt-pytorch (their --seed, default 42).
  uint64_t seed = 42;
  /// random_split: the first int(train_fraction * N) indices of the permutation train.
  double train_fraction = 0.8;
  /// split_lists: CODA-Prompt's dataloaders/splits/imagenet-r_train.yaml and _test.yaml (or
  /// mammoth's identical copies); empty: those names in the data root (--data DIR).
  std::string train_list;
  std::string test_list;
  /// split_folders: the sub-folders of the imagenet-r folder ("test" for l2p, "val" for SLCA).
  std::string train_folder = "train";
  std::string test_folder = "test";
  /// images(): torchvision Resize(resize) (shorter side; 0 = none), then CenterCrop(crop)
  /// (0 = none; then every image must have the size of the first).
  int64_t resize = 256;
  int64_t crop = 224;
  Interpolation interpolation = Interpolation::bicubic;
  ImageDecodeOptions decode{};
  /// Optional `wnid name` lines (read_class_names_file); empty: class names are the wnids.
  std::string class_names_file;

  static constexpr auto fields() {
    return std::tuple{field("split", &ImageNetROptions::split), field("seed", &ImageNetROptions::seed),
                      field("train_fraction", &ImageNetROptions::train_fraction),
                      field("train_list", &ImageNetROptions::train_list),
                      field("test_list", &ImageNetROptions::test_list),
                      field("train_folder", &ImageNetROptions::train_folder),
                      field("test_folder", &ImageNetROptions::test_folder), field("resize", &ImageNetROptions::resize),
                      field("crop", &ImageNetROptions::crop),
                      field("interpolation", &ImageNetROptions::interpolation),
                      field("decode", &ImageNetROptions::decode),
                      field("class_names_file", &ImageNetROptions::class_names_file)};
  }
  /// Throws ConfigError (fields under `path`) for a fraction outside (0, 1), empty folder names,
  /// negative sizes or invalid decode limits.
  void validate(const std::string& path) const;
};

/// One half of ImageNet-R. Thread-safe after construction (images() runs on loader threads).
class ImageNetRDataset final : public Dataset {
 public:
  /// `root` is the imagenet-r folder or the folder that contains it. Throws FileError naming
  /// the path when folders, list files or listed images are missing, a class folder is empty,
  /// or a list is malformed; ConfigError for invalid options.
  ImageNetRDataset(const std::string& root, Split split, ImageNetROptions options = {});

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(class_names_.size()); }
  int64_t label(int64_t index) const override;
  std::vector<int64_t> labels() const override { return labels_; }
  /// Decodes in parallel, then Resize + CenterCrop (see the options): uint8 [B, 3, crop, crop].
  /// Throws FileError naming an undecodable file.
  at::Tensor images(const std::vector<int64_t>& indices) const override;
  std::array<int64_t, 3> image_shape() const override;
  /// The wnids, or their names from options.class_names_file.
  std::vector<std::string> class_names() const override { return class_names_; }
  std::string description() const override;

  /// Image `index` at its decoded size: uint8 [3, H, W].
  at::Tensor image(int64_t index) const;
  /// The files decoded in parallel at their own size (what the transforms crop and resize).
  std::vector<at::Tensor> stored_images(const std::vector<int64_t>& indices) const override;
  const std::vector<std::string>& files() const { return files_; }
  /// The imagenet-r folder used.
  const std::string& root() const { return root_; }
  const ImageNetROptions& options() const { return options_; }

 private:
  std::string root_;
  Split split_;
  ImageNetROptions options_;
  std::vector<std::string> class_names_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
};

/// A folder listed as torchvision's ImageFolder lists it (folder.py find_classes and
/// make_dataset): class folders = the sorted names of the sub-directories (hidden ones included,
/// symbolic links followed); per class, the directories under it (itself first) sorted by
/// path, and in each the sorted file names ending in one of torchvision's IMG_EXTENSIONS
/// (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp, any case). Sorting is by bytes, which is
/// Python's order for UTF-8 names.
struct FolderListing {
  std::vector<std::string> classes;
  std::vector<std::string> files;
  std::vector<int64_t> labels;
};
/// Throws FileError naming `directory` when it is missing or has no class folder, or naming the
/// class folders without images.
FolderListing list_image_folder(const std::string& directory);

/// `torch.manual_seed(seed); torch.randperm(n)` on the CPU (see the file comment). Throws Error
/// for n < 0 or n >= 2^32 / 20 (where newer torch releases switch to 64-bit draws).
std::vector<int64_t> torch_randperm(int64_t n, uint64_t seed);

/// `torch.utils.data.random_split(range(n), [int(fraction * n), n - int(fraction * n)])` after
/// torch.manual_seed(seed): the permutation's first part and the rest, in permutation order.
std::pair<std::vector<int64_t>, std::vector<int64_t>> torch_random_split(int64_t n, double fraction, uint64_t seed);

/// A split list in CODA-Prompt's format (see the file comment).
struct SplitList {
  std::vector<std::string> paths;
  std::vector<int64_t> targets;
};
/// Reads a split list. Throws FileError naming the file (and line) when it is missing, larger
/// than 64 MiB, not of that form, or its two lists differ in length.
SplitList read_split_list(const std::string& path);

/// A class-names file: one `wnid name` per line (blank lines skipped), e.g. WordNet's lemma of
/// each of the 200 synsets. ImageNet-R ships only wnids; STAR-Prompt's CLIP texts need names.
/// Throws FileError naming the file and line.
std::map<std::string, std::string> read_class_names_file(const std::string& path);

}  // namespace clprompt
