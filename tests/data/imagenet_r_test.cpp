// ImageNet-R on a tiny tree of generated PNG / JPEG files: torchvision's ImageFolder order, the
// l2p/dualprompt random split, CODA-Prompt's split lists and already split folders.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "stb_write.hpp"

#include "clprompt/data/image_decode.hpp"
#include "clprompt/data/image_ops.hpp"
#include "clprompt/data/imagenet_r.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace fs = std::filesystem;

namespace {

using Indices = std::vector<int64_t>;
using clprompt::test::file_error;

// The tree's files, relative to imagenet-r/, in the order torchvision's ImageFolder lists them,
// with their class ids. Produced by running torchvision 0.13's listing rule (folder.py
// find_classes + make_dataset: sorted(os.scandir dirs), sorted(os.walk(..., followlinks=True)),
// sorted(fnames), lower-cased IMG_EXTENSIONS) with /usr/bin/python3 on the same tree of empty
// files. notes.txt is not an image; .hidden.png is listed (torchvision skips no hidden files);
// "sub-b" sorts before "sub/deeper" because '-' < '/'.
const std::vector<std::pair<std::string, int64_t>> kOrder = {
    {"n01443537/Toy_3.png", 0},   {"n01443537/art_0.jpg", 0},   {"n01443537/art_1.png", 0},
    {"n01443537/sketch_10.jpg", 0}, {"n01443537/sketch_2.jpg", 0}, {"n01484850/.hidden.png", 1},
    {"n01484850/a.JPG", 1},       {"n01484850/b.jpeg", 1},      {"n01494475/z.png", 2},
    {"n01494475/sub/x.png", 2},   {"n01494475/sub-b/y.png", 2}, {"n01494475/sub/deeper/w.png", 2}};

// Writes image `i` of kOrder (PNG or JPEG by extension) at a size of its own.
void write_image(const fs::path& path, int i) {
  fs::create_directories(path.parent_path());
  const int w = 12 + i, h = 9 + i % 4;
  std::vector<uint8_t> p;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      p.insert(p.end(), {static_cast<uint8_t>(10 * i + 5 * x), static_cast<uint8_t>(7 * y + i),
                         static_cast<uint8_t>(200 - 3 * x)});
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".png")
    REQUIRE(stbi_write_png(path.c_str(), w, h, 3, p.data(), w * 3) != 0);
  else
    REQUIRE(stbi_write_jpg(path.c_str(), w, h, 3, p.data(), 95) != 0);
}

void write_tree(const fs::path& folder) {
  for (size_t i = 0; i < kOrder.size(); ++i) write_image(folder / kOrder[i].first, static_cast<int>(i));
  std::ofstream(folder / "n01484850/notes.txt") << "not an image";
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}


std::vector<std::string> relative(const std::vector<std::string>& files, const fs::path& base) {
  std::vector<std::string> out;
  for (const auto& f : files) out.push_back(fs::path(f).lexically_relative(base).string());
  return out;
}

}  // namespace

TEST_CASE("list_image_folder lists as torchvision's ImageFolder does", "[data][imagenet_r]") {
  clprompt::test::TempDir dir;
  const fs::path folder = dir.path() / "imagenet-r";
  write_tree(folder);
  const clprompt::FolderListing listing = clprompt::list_image_folder(folder.string());
  CHECK(listing.classes == std::vector<std::string>{"n01443537", "n01484850", "n01494475"});
  REQUIRE(listing.files.size() == kOrder.size());
  for (size_t i = 0; i < kOrder.size(); ++i) {
    CHECK(fs::path(listing.files[i]).lexically_relative(folder).string() == kOrder[i].first);
    CHECK(listing.labels[i] == kOrder[i].second);
  }
  fs::create_directories(folder / "n09999999");
  CHECK_THAT(file_error([&] { (void)clprompt::list_image_folder(folder.string()); }),
             Catch::StartsWith((folder / "n09999999").string()) && Catch::Contains("class folder has no images"));
  CHECK_THAT(file_error([&] { (void)clprompt::list_image_folder((dir.path() / "none").string()); }),
             Catch::Contains("not found"));
}

TEST_CASE("torch_randperm is torch.manual_seed(s) then torch.randperm(n) on the CPU", "[data][imagenet_r]") {
  // LibTorch's own randperm kernel from a generator seeded as torch.manual_seed seeds the global one.
  for (uint64_t seed : {uint64_t{42}, uint64_t{0}, uint64_t{1993}, (uint64_t{1} << 32) + 42}) {
    for (int64_t n : {int64_t{1}, int64_t{12}, int64_t{30000}}) {
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
      const at::Tensor expected = at::randperm(n, g, at::kLong);
      CHECK(clprompt::torch_randperm(n, seed) == Indices(expected.data_ptr<int64_t>(), expected.data_ptr<int64_t>() + n));
    }
  }
  // A seed's high 32 bits do not matter (mt19937 takes the low 32 bits).
  CHECK(clprompt::torch_randperm(50, (uint64_t{7} << 32) + 42) == clprompt::torch_randperm(50, 42));
  // random_split(range(12), [int(0.8 * 12), ...]) = [9, 3] items.
  const auto [train, test] = clprompt::torch_random_split(12, 0.8, 42);
  CHECK(train.size() == 9);
  CHECK(test.size() == 3);
  Indices all = train;
  all.insert(all.end(), test.begin(), test.end());
  CHECK(all == clprompt::torch_randperm(12, 42));
  CHECK(clprompt::torch_random_split(30000, 0.8, 42).first.size() == 24000);
  CHECK_THROWS_AS(clprompt::torch_randperm(-1, 0), clprompt::Error);
}

TEST_CASE("random_split reproduces l2p-/dualprompt-pytorch's 80/20 split of ImageNet-R", "[data][imagenet_r]") {
  clprompt::test::TempDir dir;
  const fs::path folder = dir.path() / "imagenet-r";
  write_tree(folder);
  clprompt::ImageNetROptions options;
  options.resize = 8;
  options.crop = 6;
  const clprompt::ImageNetRDataset train(dir.str(), clprompt::Split::train, options);
  const clprompt::ImageNetRDataset test(folder.string(), clprompt::Split::test, options);
  CHECK(train.root() == folder.string());
  CHECK(test.root() == folder.string());

  // The first int(0.8 * 12) = 9 indices of randperm(12) after manual_seed(42) train, in listing order.
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(42);
  const at::Tensor perm = at::randperm(12, g, at::kLong);
  Indices train_idx(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + 9);
  Indices test_idx(perm.data_ptr<int64_t>() + 9, perm.data_ptr<int64_t>() + 12);
  std::sort(train_idx.begin(), train_idx.end());
  std::sort(test_idx.begin(), test_idx.end());
  std::vector<std::string> expected_train, expected_test;
  Indices train_labels, test_labels;
  for (int64_t i : train_idx) {
    expected_train.push_back(kOrder[static_cast<size_t>(i)].first);
    train_labels.push_back(kOrder[static_cast<size_t>(i)].second);
  }
  for (int64_t i : test_idx) {
    expected_test.push_back(kOrder[static_cast<size_t>(i)].first);
    test_labels.push_back(kOrder[static_cast<size_t>(i)].second);
  }
  CHECK(relative(train.files(), folder) == expected_train);
  CHECK(relative(test.files(), folder) == expected_test);
  CHECK(train.labels() == train_labels);
  CHECK(test.labels() == test_labels);
  CHECK(train.class_names() == std::vector<std::string>{"n01443537", "n01484850", "n01494475"});
  CHECK(test.num_classes() == 3);
  CHECK_THAT(train.description(), Catch::Contains("ImageNet-R train (9 images, 3 classes, random_split seed 42"));

  // images(): Resize(8) + CenterCrop(6) of the decoded image; image(): the decoded image.
  const at::Tensor batch = train.images({0, 8});
  CHECK(batch.sizes() == at::IntArrayRef{2, 3, 6, 6});
  CHECK(train.image_shape() == std::array<int64_t, 3>{3, 6, 6});
  for (int64_t b : {0, 1}) {
    const int64_t index = b == 0 ? 0 : 8;
    const at::Tensor decoded = clprompt::decode_image_file(train.files()[static_cast<size_t>(index)]);
    CHECK(at::equal(train.image(index), decoded));
    const at::Tensor expected =
        clprompt::center_crop(clprompt::resize_shorter_side(decoded, 8, clprompt::Interpolation::bicubic), 6, 6);
    CHECK(at::equal(batch[b], expected));
  }
  CHECK_THROWS_AS(train.images({9}), clprompt::ShapeError);

  // Another seed, another split; an already split folder is refused with the fix.
  clprompt::ImageNetROptions other = options;
  other.seed = 1;
  CHECK(clprompt::ImageNetRDataset(dir.str(), clprompt::Split::train, other).files() != train.files());
  fs::create_directories(folder / "train");
  CHECK_THAT(file_error([&] { (void)clprompt::ImageNetRDataset(dir.str(), clprompt::Split::train, options); }),
             Catch::StartsWith((folder / "train").string()) && Catch::Contains("use split = split_folders"));
}

TEST_CASE("split_folders reads already split train/ and test/ (or SLCA's val/) folders", "[data][imagenet_r]") {
  clprompt::test::TempDir dir;
  const fs::path folder = dir.path() / "imagenet-r";
  write_image(folder / "train/n01443537/a.png", 0);
  write_image(folder / "train/n01443537/b.png", 1);
  write_image(folder / "train/n01484850/c.png", 2);
  write_image(folder / "val/n01443537/d.png", 3);
  write_image(folder / "val/n01484850/e.png", 4);
  clprompt::ImageNetROptions options;
  options.split = clprompt::ImageNetRSplit::split_folders;
  options.test_folder = "val";
  options.resize = 0;
  options.crop = 5;
  const clprompt::ImageNetRDataset train(dir.str(), clprompt::Split::train, options);
  const clprompt::ImageNetRDataset val(dir.str(), clprompt::Split::test, options);
  CHECK(train.labels() == Indices{0, 0, 1});
  CHECK(val.labels() == Indices{0, 1});
  CHECK(relative(val.files(), folder) == std::vector<std::string>{"val/n01443537/d.png", "val/n01484850/e.png"});
  CHECK(val.images({1}).sizes() == at::IntArrayRef{1, 3, 5, 5});

  fs::create_directories(folder / "val/n09999999");
  write_image(folder / "val/n09999999/f.png", 5);
  CHECK_THAT(file_error([&] { (void)clprompt::ImageNetRDataset(dir.str(), clprompt::Split::train, options); }),
             Catch::StartsWith((folder / "val").string()) && Catch::Contains("has 3 class folders but") &&
                 Catch::Contains("has 2"));
  options.test_folder = "test";
  CHECK_THAT(file_error([&] { (void)clprompt::ImageNetRDataset(dir.str(), clprompt::Split::test, options); }),
             Catch::StartsWith((folder / "test").string()) && Catch::Contains("not found"));
}

TEST_CASE("split_lists reads CODA-Prompt's split files and keeps their class ids", "[data][imagenet_r]") {
  clprompt::test::TempDir dir;
  const fs::path folder = dir.path() / "imagenet-r";
  write_tree(folder);
  // CODA-Prompt's format (dataloaders/splits/imagenet-r_train.yaml): `data:` paths relative to
  // the repo root, `targets:` class ids that are not the sorted wnid order.
  write_text(dir.path() / "lists/train.yaml",
             "data:\n- data/imagenet-r/n01494475/z.png\n- data/imagenet-r/n01443537/art_0.jpg\n"
             "- 'data/imagenet-r/n01484850/b.jpeg'\n- data/imagenet-r/n01443537/Toy_3.png\ntargets:\n- 0\n- 2\n- 1\n- 2\n");
  write_text(dir.path() / "lists/test.yaml",
             "# a comment\ndata:\n  - data/imagenet-r/n01494475/sub/x.png\n  - data/imagenet-r/n01484850/a.JPG\n"
             "targets:\n  - 0\n  - 1\n");
  clprompt::ImageNetROptions options;
  options.split = clprompt::ImageNetRSplit::split_lists;
  options.train_list = (dir.path() / "lists/train.yaml").string();
  options.test_list = (dir.path() / "lists/test.yaml").string();
  options.crop = 4;
  const clprompt::ImageNetRDataset train(folder.string(), clprompt::Split::train, options);
  const clprompt::ImageNetRDataset test(dir.str(), clprompt::Split::test, options);
  CHECK(relative(train.files(), folder) ==
        std::vector<std::string>{"n01494475/z.png", "n01443537/art_0.jpg", "n01484850/b.jpeg", "n01443537/Toy_3.png"});
  CHECK(train.labels() == Indices{0, 2, 1, 2});
  CHECK(test.labels() == Indices{0, 1});
  CHECK(train.class_names() == std::vector<std::string>{"n01494475", "n01484850", "n01443537"});
  CHECK(test.class_names() == train.class_names());
  CHECK(train.images({0, 1, 2, 3}).sizes() == at::IntArrayRef{4, 3, 4, 4});
  const clprompt::SplitList list = clprompt::read_split_list(options.train_list);
  CHECK(list.paths.at(2) == "data/imagenet-r/n01484850/b.jpeg");
  CHECK(list.targets == Indices{0, 2, 1, 2});
  // Without paths the lists are read from the data root under CODA-Prompt's names.
  clprompt::ImageNetROptions in_root = options;
  in_root.train_list.clear();
  in_root.test_list.clear();
  CHECK_THROWS_WITH(clprompt::ImageNetRDataset(dir.str(), clprompt::Split::train, in_root),
                    Catch::Contains((dir.path() / "imagenet-r_train.yaml").string()));
  fs::copy_file(dir.path() / "lists/train.yaml", dir.path() / "imagenet-r_train.yaml");
  fs::copy_file(dir.path() / "lists/test.yaml", dir.path() / "imagenet-r_test.yaml");
  CHECK(clprompt::ImageNetRDataset(dir.str(), clprompt::Split::train, in_root).labels() == Indices{0, 2, 1, 2});

  // Malformed lists and inconsistent splits name the file.
  const auto error_with = [&](const std::string& train_text, const std::string& test_text) {
    write_text(dir.path() / "bad/train.yaml", train_text);
    write_text(dir.path() / "bad/test.yaml", test_text);
    clprompt::ImageNetROptions o = options;
    o.train_list = (dir.path() / "bad/train.yaml").string();
    o.test_list = (dir.path() / "bad/test.yaml").string();
    return file_error([&] { (void)clprompt::ImageNetRDataset(folder.string(), clprompt::Split::train, o); });
  };
  const std::string good_test = "data:\n- data/imagenet-r/n01494475/sub/x.png\ntargets:\n- 0\n";
  CHECK_THAT(error_with("data:\n- data/imagenet-r/n01494475/z.png\ntargets:\n- 0\n- 1\n", good_test),
             Catch::Contains("train.yaml: lists 1 paths under `data:` but 2 targets"));
  CHECK_THAT(error_with("data:\n- data/imagenet-r/n01494475/z.png\ntargets:\n- x\n", good_test),
             Catch::Contains("train.yaml: line 4: target `x` is not an int >= 0"));
  CHECK_THAT(error_with("data: [a, b]\n", good_test), Catch::Contains("train.yaml: line 1: unexpected `data: [a, b]`"));
  CHECK_THAT(error_with("data:\n- data/imagenet-r/n01494475/z.png\n", good_test),
             Catch::Contains("has no `targets:` list"));
  CHECK_THAT(error_with("data:\n- data/imagenet-r/n01494475/z.png\n- data/imagenet-r/n01443537/art_0.jpg\ntargets:\n- 0\n- 0\n",
                        good_test),
             Catch::Contains("target 0 is given to data/imagenet-r/n01443537/art_0.jpg (item 1) and to files of n01494475"));
  CHECK_THAT(error_with("data:\n- data/imagenet-r/n01494475/sub/x.png\ntargets:\n- 0\n", good_test),
             Catch::Contains("test.yaml: lists data/imagenet-r/n01494475/sub/x.png, which the train list"));
  CHECK_THAT(error_with("data:\n- data/imagenet-r/n01494475/gone.png\ntargets:\n- 0\n", good_test),
             Catch::Contains("n01494475/gone.png: not found: 1 of the 1 files listed in"));
  CHECK_THAT(error_with("data:\n- data/imagenet-r/n01494475/z.png\ntargets:\n- 2\n", good_test),
             Catch::Contains("use 2 class ids but the largest is 2"));
  clprompt::ImageNetROptions no_lists;
  no_lists.split = clprompt::ImageNetRSplit::split_lists;
  CHECK_THAT(file_error([&] { (void)clprompt::ImageNetRDataset(folder.string(), clprompt::Split::train, no_lists); }),
             Catch::Contains("imagenet-r_train.yaml: not found; expected a split list"));
  CHECK_THAT(file_error([&] { (void)clprompt::read_split_list((dir.path() / "none.yaml").string()); }),
             Catch::Contains("none.yaml: not found"));
}

TEST_CASE("ImageNet-R class names come from a names file when one is given", "[data][imagenet_r]") {
  clprompt::test::TempDir dir;
  {
    std::ofstream out(dir / "names.txt");
    out << "n01443537 goldfish\n\nn02165456\tladybug  \n";
  }
  const auto names = clprompt::read_class_names_file(dir / "names.txt");
  CHECK(names.at("n01443537") == "goldfish");
  CHECK(names.at("n02165456") == "ladybug");
  {
    std::ofstream out(dir / "bad.txt");
    out << "n01443537\n";
  }
  CHECK_THROWS_WITH(clprompt::read_class_names_file(dir / "bad.txt"),
                    Catch::Contains("bad.txt") && Catch::Contains("line 1"));
  CHECK_THROWS_WITH(clprompt::read_class_names_file(dir / "none.txt"), Catch::Contains("none.txt"));
}
