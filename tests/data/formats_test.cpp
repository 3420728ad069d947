// File formats: tiny files in each real format are written to a temporary directory and read
// back; truncated and corrupt variants must fail with a FileError naming the file.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "stb_write.hpp"

#include "clprompt/data/cifar.hpp"
#include "clprompt/data/idx.hpp"
#include "clprompt/data/image_folder.hpp"
#include "clprompt/io/file_bytes.hpp"
#include "clprompt/data/loader.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace fs = std::filesystem;
using clprompt::test::Bytes;
using clprompt::test::file_error;
using clprompt::test::put_be32;
using clprompt::test::write_file;

namespace {

uint8_t idx_pixel(int64_t i, int64_t y, int64_t x) { return static_cast<uint8_t>((i * 31 + y * 7 + x * 3) % 256); }

Bytes idx_images(uint32_t n, uint32_t h, uint32_t w) {
  Bytes b;
  put_be32(b, 0x00000803);
  put_be32(b, n);
  put_be32(b, h);
  put_be32(b, w);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t y = 0; y < h; ++y)
      for (uint32_t x = 0; x < w; ++x) b.push_back(idx_pixel(i, y, x));
  return b;
}

Bytes idx_labels(const std::vector<uint8_t>& labels) {
  Bytes b;
  put_be32(b, 0x00000801);
  put_be32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

Bytes truncate(Bytes b, size_t size) {
  b.resize(size);
  return b;
}

// CIFAR record pixel: distinct per image, channel and position.
uint8_t cifar_pixel(int64_t i, int64_t c, int64_t y, int64_t x) {
  return static_cast<uint8_t>((i * 53 + c * 101 + y * 5 + x) % 256);
}

void append_cifar_record(Bytes& b, const std::vector<uint8_t>& label_bytes, int64_t i) {
  b.insert(b.end(), label_bytes.begin(), label_bytes.end());
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 32; ++x) b.push_back(cifar_pixel(i, c, y, x));
}

void check_cifar_pixels(const at::Tensor& images, int64_t row, int64_t record) {
  const auto a = images.accessor<uint8_t, 4>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 32; ++x)
        if (a[row][c][y][x] != cifar_pixel(record, c, y, x)) {
          FAIL(fmt::format("pixel {} {} {} of image {} differs", c, y, x, row));
        }
}

// HWC RGB pixels of a test image: smooth, so JPEG keeps them close.
Bytes rgb_image(int w, int h, int seed) {
  Bytes p;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      p.push_back(static_cast<uint8_t>(40 + 4 * x + seed));
      p.push_back(static_cast<uint8_t>(60 + 3 * y));
      p.push_back(static_cast<uint8_t>(200 - 2 * x - y));
    }
  return p;
}

void write_png(const std::string& path, int w, int h, int channels, const Bytes& pixels) {
  fs::create_directories(fs::path(path).parent_path());
  REQUIRE(stbi_write_png(path.c_str(), w, h, channels, pixels.data(), w * channels) != 0);
}

void write_jpg(const std::string& path, int w, int h, const Bytes& pixels) {
  fs::create_directories(fs::path(path).parent_path());
  REQUIRE(stbi_write_jpg(path.c_str(), w, h, 3, pixels.data(), 95) != 0);
}

// uint8 [3, H, W] from HWC pixels.
at::Tensor chw(const Bytes& pixels, int w, int h) {
  return at::from_blob(const_cast<uint8_t*>(pixels.data()), {h, w, 3}, at::kByte).permute({2, 0, 1}).clone();
}

}  // namespace

TEST_CASE("read_idx reads raw and gzip IDX files exactly", "[data][idx]") {
  clprompt::test::TempDir dir;
  const Bytes images = idx_images(5, 4, 3);
  const std::vector<uint8_t> labels{2, 0, 1, 2, 1};
  write_file(dir / "raw-images", images);
  write_file(dir / "raw-labels", idx_labels(labels));
  write_file(dir / "gz-images", clprompt::detail::gzip_compress(images));
  write_file(dir / "gz-labels", clprompt::detail::gzip_compress(idx_labels(labels)));
  REQUIRE(clprompt::detail::gunzip(clprompt::detail::gzip_compress(images), "x") == images);

  for (const auto& [ip, lp] : {std::pair{"raw-images", "gz-labels"}, std::pair{"gz-images", "raw-labels"}}) {
    const clprompt::TensorDataset d = clprompt::read_idx(dir / ip, dir / lp);
    REQUIRE(d.size() == 5);
    CHECK(d.num_classes() == 3);
    CHECK(d.all_images().sizes() == at::IntArrayRef{5, 1, 4, 3});
    const auto a = d.all_images().accessor<uint8_t, 4>();
    bool exact = true;
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t y = 0; y < 4; ++y)
        for (int64_t x = 0; x < 3; ++x) exact = exact && a[i][0][y][x] == idx_pixel(i, y, x);
    CHECK(exact);
    for (int64_t i = 0; i < 5; ++i) CHECK(d.label(i) == labels[static_cast<size_t>(i)]);
    CHECK(d.class_names() == std::vector<std::string>{"0", "1", "2"});
    CHECK(at::equal(d.images({3, 1}), d.all_images().index_select(0, at::tensor({3, 1}, at::kLong))));
  }

  // The directory loaders find the official names, gzipped or not.
  write_file(dir / "fm/train-images-idx3-ubyte.gz", clprompt::detail::gzip_compress(images));
  write_file(dir / "fm/train-labels-idx1-ubyte", idx_labels(labels));
  const auto fm = clprompt::load_fashion_mnist(dir / "fm", clprompt::Split::train);
  CHECK(fm.num_classes() == 10);
  CHECK(fm.class_names().front() == "T-shirt/top");
  CHECK(fm.class_names().back() == "Ankle boot");
  CHECK_THAT(fm.description(), Catch::StartsWith("Fashion-MNIST train (5 images, 4x3x1) from "));
  CHECK(clprompt::load_mnist(dir / "fm", clprompt::Split::train).class_names().at(9) == "9");
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::load_mnist(dir / "fm", clprompt::Split::test); }),
             Catch::Contains("t10k-images-idx3-ubyte") && Catch::Contains("not found"));
}

TEST_CASE("broken IDX files throw FileError naming the file", "[data][idx]") {
  clprompt::test::TempDir dir;
  const Bytes images = idx_images(10, 4, 4);
  const Bytes gz = clprompt::detail::gzip_compress(images);
  const std::vector<uint8_t> ten(10, 1);
  write_file(dir / "images", images);
  write_file(dir / "labels", idx_labels(ten));
  write_file(dir / "short-images", truncate(images, 100));
  write_file(dir / "long-images", [&] { Bytes b = images; b.push_back(0); return b; }());
  write_file(dir / "short-images.gz", truncate(gz, gz.size() / 2));
  write_file(dir / "corrupt-images.gz", [&] { Bytes b = gz; for (size_t i = 10; i < 30 && i < b.size(); ++i) b[i] ^= 0x5a; return b; }());
  write_file(dir / "tiny", Bytes{0, 0});
  write_file(dir / "nine-labels", idx_labels(std::vector<uint8_t>(9, 1)));
  write_file(dir / "bad-labels", idx_labels({0, 1, 2, 3, 4, 5, 6, 7, 8, 10}));

  auto read = [&](const std::string& i, const std::string& l) {
    return clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::read_idx(dir / i, dir / l, clprompt::fashion_mnist_class_names()); });
  };
  CHECK(read("images", "labels") == "no error");
  CHECK_THAT(read("missing", "labels"), Catch::StartsWith(dir / "missing") && Catch::Contains("not found"));
  CHECK_THAT(read("short-images", "labels"),
             Catch::StartsWith(dir / "short-images") &&
                 Catch::Contains("truncated: header says 10 images of 4x4 (176 bytes) but the file has 100 bytes"));
  CHECK_THAT(read("long-images", "labels"), Catch::StartsWith(dir / "long-images") && Catch::Contains("177 bytes"));
  CHECK_THAT(read("short-images.gz", "labels"),
             Catch::StartsWith(dir / "short-images.gz") && Catch::Contains("truncated gzip"));
  CHECK_THAT(read("corrupt-images.gz", "labels"), Catch::StartsWith(dir / "corrupt-images.gz"));
  CHECK_THAT(read("tiny", "labels"), Catch::StartsWith(dir / "tiny") && Catch::Contains("truncated"));
  CHECK_THAT(read("labels", "labels"), Catch::StartsWith(dir / "labels") &&
                                           Catch::Contains("wrong magic number 0x00000801; expected 0x00000803"));
  CHECK_THAT(read("images", "nine-labels"),
             Catch::StartsWith(dir / "nine-labels") && Catch::Contains("has 9 labels but") &&
                 Catch::Contains("has 10 images"));
  CHECK_THAT(read("images", "bad-labels"),
             Catch::StartsWith(dir / "bad-labels") && Catch::Contains("label 10 at index 9 is outside [0, 10)"));
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::load_fashion_mnist(dir / "nowhere", clprompt::Split::train); }),
             Catch::Contains("nowhere") && Catch::Contains("not found"));
}

TEST_CASE("CIFAR-100 binary files read exactly, with fine or coarse labels", "[data][cifar]") {
  clprompt::test::TempDir dir;
  Bytes train, test;
  const std::vector<std::pair<uint8_t, uint8_t>> train_labels{{3, 99}, {19, 0}, {0, 42}};
  for (int64_t i = 0; i < 3; ++i)
    append_cifar_record(train, {train_labels[static_cast<size_t>(i)].first, train_labels[static_cast<size_t>(i)].second}, i);
  append_cifar_record(test, {7, 8}, 3);
  write_file(dir / "cifar-100-binary/train.bin", train);
  write_file(dir / "cifar-100-binary/test.bin", test);
  std::string names;
  for (int c = 0; c < 100; ++c) names += fmt::format("class_{}\n", c);
  write_file(dir / "cifar-100-binary/fine_label_names.txt", Bytes(names.begin(), names.end()));

  const auto fine = clprompt::read_cifar100_binary(dir / "cifar-100-binary/train.bin");
  REQUIRE(fine.size() == 3);
  CHECK(fine.num_classes() == 100);
  CHECK(fine.all_images().sizes() == at::IntArrayRef{3, 3, 32, 32});
  for (int64_t i = 0; i < 3; ++i) check_cifar_pixels(fine.all_images(), i, i);
  CHECK(fine.labels() == std::vector<int64_t>{99, 0, 42});
  const auto coarse = clprompt::read_cifar100_binary(dir / "cifar-100-binary/train.bin", clprompt::CifarLabel::coarse);
  CHECK(coarse.num_classes() == 20);
  CHECK(coarse.labels() == std::vector<int64_t>{3, 19, 0});

  // The directory loader also looks inside cifar-100-binary/ and reads the class names.
  const auto loaded = clprompt::load_cifar100(dir.str(), clprompt::Split::test);
  REQUIRE(loaded.size() == 1);
  check_cifar_pixels(loaded.all_images(), 0, 3);
  CHECK(loaded.label(0) == 8);
  CHECK(loaded.class_names().at(8) == "class_8");
  CHECK(clprompt::load_cifar100(dir.str(), clprompt::Split::test, clprompt::CifarLabel::coarse).class_names().at(7) ==
        "7");

  write_file(dir / "short.bin", truncate(train, 3074 * 2 + 100));
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::read_cifar100_binary(dir / "short.bin"); }),
             Catch::StartsWith(dir / "short.bin") && Catch::Contains("3074-byte records"));
  Bytes bad;
  append_cifar_record(bad, {0, 100}, 0);
  write_file(dir / "bad.bin", bad);
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::read_cifar100_binary(dir / "bad.bin"); }),
             Catch::StartsWith(dir / "bad.bin") && Catch::Contains("label 100"));
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::read_cifar100_binary(dir / "coarse-bad.bin"); }),
             Catch::Contains("not found"));
  write_file(dir / "short/train.bin", Bytes{});
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::load_cifar100(dir / "short", clprompt::Split::train); }),
             Catch::Contains("train.bin") && Catch::Contains("empty"));
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::load_cifar100(dir / "short", clprompt::Split::test); }),
             Catch::Contains("test.bin") && Catch::Contains("not found"));
}

TEST_CASE("CIFAR-10 binary batches concatenate in order", "[data][cifar]") {
  clprompt::test::TempDir dir;
  int64_t record = 0;
  for (int b = 1; b <= 5; ++b) {
    Bytes batch;
    for (int k = 0; k < 2; ++k, ++record) append_cifar_record(batch, {static_cast<uint8_t>(record % 10)}, record);
    write_file(dir / fmt::format("data_batch_{}.bin", b), batch);
  }
  Bytes test;
  append_cifar_record(test, {9}, 77);
  write_file(dir / "test_batch.bin", test);
  const std::string meta = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
  write_file(dir / "batches.meta.txt", Bytes(meta.begin(), meta.end()));

  const auto train = clprompt::load_cifar10(dir.str(), clprompt::Split::train);
  REQUIRE(train.size() == 10);
  for (int64_t i = 0; i < 10; ++i) {
    CHECK(train.label(i) == i % 10);
    check_cifar_pixels(train.all_images(), i, i);
  }
  CHECK(train.class_names().at(9) == "truck");
  const auto t = clprompt::load_cifar10(dir.str(), clprompt::Split::test);
  CHECK(t.size() == 1);
  check_cifar_pixels(t.all_images(), 0, 77);

  fs::remove(dir / "data_batch_3.bin");
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::load_cifar10(dir.str(), clprompt::Split::train); }),
             Catch::Contains("data_batch_3.bin") && Catch::Contains("not found"));
  write_file(dir / "data_batch_3.bin", truncate(test, 3000));
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::load_cifar10(dir.str(), clprompt::Split::train); }),
             Catch::StartsWith(dir / "data_batch_3.bin") && Catch::Contains("3073-byte records"));
}

TEST_CASE("image folders decode PNG and JPEG per class folder", "[data][image_folder]") {
  clprompt::test::TempDir dir;
  // Class folders sort to class ids: "a_dog" = 0, "b_cat" = 1; nested folders are included.
  const Bytes p0 = rgb_image(6, 5, 0), p1 = rgb_image(6, 5, 9), j0 = rgb_image(6, 5, 20);
  write_png(dir / "same/b_cat/x.png", 6, 5, 3, p0);
  write_png(dir / "same/a_dog/sub/y.png", 6, 5, 3, p1);
  write_jpg(dir / "same/a_dog/z.JPG", 6, 5, j0);
  write_file(dir / "same/a_dog/notes.txt", Bytes{'h', 'i'});

  const clprompt::ImageFolderDataset same(dir / "same", {.decode_size = 0});
  REQUIRE(same.size() == 3);
  CHECK(same.num_classes() == 2);
  CHECK(same.class_names() == std::vector<std::string>{"a_dog", "b_cat"});
  CHECK(same.labels() == std::vector<int64_t>{0, 0, 1});  // a_dog/sub/y.png, a_dog/z.JPG, b_cat/x.png
  CHECK(same.image_shape() == std::array<int64_t, 3>{3, 5, 6});
  const at::Tensor batch = same.images({2, 0, 1});
  CHECK(batch.sizes() == at::IntArrayRef{3, 3, 5, 6});
  CHECK(at::equal(batch[0], chw(p0, 6, 5)));  // PNG is lossless
  CHECK(at::equal(batch[1], chw(p1, 6, 5)));
  const double jpeg_error = (batch[2].to(at::kFloat) - chw(j0, 6, 5).to(at::kFloat)).abs().mean().item<double>();
  CHECK(jpeg_error < 6.0);

  // Different sizes: resized to decode_size, or an error naming the odd file when kept.
  write_png(dir / "mixed/c0/big.png", 12, 10, 3, rgb_image(12, 10, 1));
  write_png(dir / "mixed/c1/flat.png", 3, 4, 3, Bytes(3 * 4 * 3, 77));
  write_png(dir / "mixed/c1/gray.png", 4, 4, 1, Bytes(16, 200));
  write_jpg(dir / "mixed/c2/photo.jpeg", 7, 9, rgb_image(7, 9, 3));
  const clprompt::ImageFolderDataset resized(dir / "mixed", {.decode_size = 8});
  const at::Tensor r = resized.images({0, 1, 2, 3});
  CHECK(r.sizes() == at::IntArrayRef{4, 3, 8, 8});
  CHECK((r[1] == 77).all().item<bool>());   // a flat image stays flat when resized
  CHECK((r[2] == 200).all().item<bool>());  // grayscale decodes to three equal channels
  CHECK_THAT(resized.description(), Catch::Contains("4 images, 3 classes, decoded to 8x8x3"));
  // Decoding on the loader's worker thread, with ImageNet normalisation.
  int64_t loaded = 0;
  const clprompt::Loader loader(resized, {3, 2, 1, 0}, {0, 1, 2}, clprompt::Transform{}, {.batch_size = 3, .training = true, .seed = 1});
  for (const clprompt::Batch& b : loader.epoch(0)) {
    CHECK(b.images.size(1) == 3);
    CHECK(b.images.size(2) == 8);
    loaded += b.images.size(0);
  }
  CHECK(loaded == 4);
  const clprompt::ImageFolderDataset kept(dir / "mixed", {.decode_size = 0});
  CHECK(kept.images({0}).sizes() == at::IntArrayRef{1, 3, 10, 12});
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)kept.images({0, 1}); }),
             Catch::StartsWith(dir / "mixed/c1/flat.png") && Catch::Contains("is 3x4"));

  // Broken inputs.
  write_file(dir / "broken/c0/bad.jpg", Bytes{0xff, 0xd8, 0xff, 0x00, 1, 2, 3});
  const clprompt::ImageFolderDataset broken(dir / "broken", {.decode_size = 8});
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)broken.images({0}); }),
             Catch::StartsWith(dir / "broken/c0/bad.jpg") && Catch::Contains("corrupt jpeg header"));
  fs::create_directories(dir / "empty/c0");
  write_png(dir / "empty/c1/a.png", 2, 2, 3, Bytes(12, 1));
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::ImageFolderDataset(dir / "empty"); }),
             Catch::StartsWith(dir / "empty/c0") && Catch::Contains("no images"));
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::ImageFolderDataset(dir / "nowhere"); }),
             Catch::StartsWith(dir / "nowhere") && Catch::Contains("not found"));
  fs::create_directories(dir / "flat");
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::ImageFolderDataset(dir / "flat"); }),
             Catch::Contains("no class sub-folders"));
  CHECK_THROWS_AS(clprompt::ImageFolderDataset(dir / "same", {.decode_size = -1}), clprompt::ConfigError);
  CHECK_THROWS_AS(same.images({3}), clprompt::ShapeError);
}

TEST_CASE("the installed Fashion-MNIST loads with 6000 images per class", "[data][idx][fashion_mnist]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir)) {
    WARN("skipped: " << dir << " is not installed (Debian package dataset-fashion-mnist)");
    return;
  }
  const auto train = clprompt::load_fashion_mnist(dir, clprompt::Split::train);
  const auto test = clprompt::load_fashion_mnist(dir, clprompt::Split::test);
  CHECK(train.size() == 60000);
  CHECK(test.size() == 10000);
  CHECK(train.num_classes() == 10);
  CHECK(train.image_shape() == std::array<int64_t, 3>{1, 28, 28});
  CHECK(at::equal(at::bincount(train.all_labels()), at::full({10}, 6000, at::kLong)));
  CHECK(at::equal(at::bincount(test.all_labels()), at::full({10}, 1000, at::kLong)));
  CHECK(train.description() == "Fashion-MNIST train (60000 images, 28x28x1) from " + dir);
}
