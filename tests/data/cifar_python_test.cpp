// CIFAR-10/100 "python version": tiny files in the layout torchvision downloads, written the way
// Python 2's cPickle wrote the real ones, read back exactly; broken variants name the file.
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "clprompt/data/cifar.hpp"
#include "clprompt/data/cifar_python.hpp"
#include "data/py2_pickle_writer.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace fs = std::filesystem;

namespace {

using clprompt::test::Bytes;
using clprompt::test::file_error;
using clprompt::test::put_be32;
using clprompt::test::write_file;
using clprompt::test::Py2PickleWriter;

// Pixel (c, y, x) of image i: distinct per image, channel and position.
uint8_t pixel(int64_t i, int64_t c, int64_t y, int64_t x) { return static_cast<uint8_t>((i * 53 + c * 101 + y * 5 + x) % 256); }

// Rows of 3072 bytes: R plane, G plane, B plane of 32x32 (the CIFAR record layout).
Bytes rows(const std::vector<int64_t>& images) {
  Bytes b;
  for (int64_t i : images)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x) b.push_back(pixel(i, c, y, x));
  return b;
}

// A data file as the CIFAR-100 python version has it ('filenames', 'batch_label',
// 'fine_labels', 'coarse_labels', 'data').
Bytes cifar100_file(const std::vector<int64_t>& images, const std::vector<int64_t>& fine,
                    const std::vector<int64_t>& coarse) {
  Py2PickleWriter w;
  w.dict([&] {
    w.str("filenames");
    std::vector<std::string> names;
    for (int64_t i : images) names.push_back("img_" + std::to_string(i) + ".png");
    w.str_list(names);
    w.str("batch_label");
    w.str("training batch 1 of 1");
    w.str("fine_labels");
    w.int_list(fine);
    w.str("coarse_labels");
    w.int_list(coarse);
    w.str("data");
    w.array({static_cast<int64_t>(images.size()), 3072}, rows(images));
  });
  w.stop();
  return w.bytes;
}

Bytes names_file(const std::vector<std::pair<std::string, std::vector<std::string>>>& lists) {
  Py2PickleWriter w;
  w.dict([&] {
    for (const auto& [key, names] : lists) {
      w.str(key);
      w.str_list(names);
    }
  });
  w.stop();
  return w.bytes;
}

std::vector<std::string> numbered(const std::string& prefix, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(prefix + std::to_string(i));
  return v;
}

bool pixels_match(const at::Tensor& images, int64_t row, int64_t image) {
  const auto a = images.accessor<uint8_t, 4>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 32; ++x)
        if (a[row][c][y][x] != pixel(image, c, y, x)) return false;
  return true;
}


}  // namespace

TEST_CASE("CIFAR-100 python files read exactly, from the root or the cifar-100-python folder", "[data][cifar_python]") {
  clprompt::test::TempDir dir;
  const std::string folder = dir / "cifar-100-python";
  write_file(folder + "/train", cifar100_file({0, 1, 2}, {99, 0, 42}, {3, 19, 0}));
  write_file(folder + "/test", cifar100_file({7}, {8}, {7}));
  write_file(folder + "/meta", names_file({{"fine_label_names", numbered("fine_", 100)},
                                          {"coarse_label_names", numbered("coarse_", 20)}}));

  for (const std::string& root : {dir.str(), folder}) {
    const auto train = clprompt::load_cifar100_python(root, clprompt::Split::train);
    REQUIRE(train.size() == 3);
    CHECK(train.all_images().sizes() == at::IntArrayRef{3, 3, 32, 32});
    for (int64_t i = 0; i < 3; ++i) CHECK(pixels_match(train.all_images(), i, i));
    CHECK(train.labels() == std::vector<int64_t>{99, 0, 42});
    CHECK(train.num_classes() == 100);
    CHECK(train.class_names().at(42) == "fine_42");
    CHECK(train.description() == "CIFAR-100 train (3 images, 32x32x3, fine labels) from " + folder);
  }
  const auto coarse = clprompt::load_cifar100_python(dir.str(), clprompt::Split::train, clprompt::CifarLabel::coarse);
  CHECK(coarse.labels() == std::vector<int64_t>{3, 19, 0});
  CHECK(coarse.class_names().at(19) == "coarse_19");
  const auto test = clprompt::load_cifar100_python(dir.str(), clprompt::Split::test);
  REQUIRE(test.size() == 1);
  CHECK(pixels_match(test.all_images(), 0, 7));
  CHECK(test.label(0) == 8);
  const auto single = clprompt::read_cifar100_python(folder + "/train");
  CHECK(at::equal(single.all_images(), clprompt::load_cifar100_python(dir.str(), clprompt::Split::train).all_images()));
  CHECK(single.class_names().at(5) == "5");

  // The binary version of the same records gives the same tensors.
  Bytes binary;
  const std::vector<std::pair<uint8_t, uint8_t>> labels{{3, 99}, {19, 0}, {0, 42}};
  for (int64_t i = 0; i < 3; ++i) {
    binary.push_back(labels[static_cast<size_t>(i)].first);
    binary.push_back(labels[static_cast<size_t>(i)].second);
    const Bytes r = rows({i});
    binary.insert(binary.end(), r.begin(), r.end());
  }
  write_file(dir / "train.bin", binary);
  const auto from_binary = clprompt::read_cifar100_binary(dir / "train.bin");
  CHECK(at::equal(from_binary.all_images(), single.all_images()));
  CHECK(at::equal(from_binary.all_labels(), single.all_labels()));
}

TEST_CASE("CIFAR-10 python batches concatenate in order with the names of batches.meta", "[data][cifar_python]") {
  clprompt::test::TempDir dir;
  const std::string folder = dir / "cifar-10-batches-py";
  int64_t record = 0;
  for (int b = 1; b <= 5; ++b) {
    Py2PickleWriter w;
    std::vector<int64_t> images{record, record + 1};
    w.dict([&] {
      w.str("batch_label");
      w.str("training batch " + std::to_string(b) + " of 5");
      w.str("labels");
      w.int_list({record % 10, (record + 1) % 10});
      w.str("data");
      w.array({2, 3072}, rows(images));
    });
    w.stop();
    write_file(folder + "/data_batch_" + std::to_string(b), w.bytes);
    record += 2;
  }
  Py2PickleWriter t;
  t.dict([&] {
    t.str("labels");
    t.int_list({9});
    t.str("data");
    t.array({1, 3072}, rows({77}));
  });
  t.stop();
  write_file(folder + "/test_batch", t.bytes);
  write_file(folder + "/batches.meta",
             names_file({{"label_names", {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                          "ship", "truck"}}}));

  const auto train = clprompt::load_cifar10_python(dir.str(), clprompt::Split::train);
  REQUIRE(train.size() == 10);
  for (int64_t i = 0; i < 10; ++i) {
    CHECK(train.label(i) == i % 10);
    CHECK(pixels_match(train.all_images(), i, i));
  }
  CHECK(train.class_names().at(9) == "truck");
  CHECK(train.description() == "CIFAR-10 train (10 images, 32x32x3) from " + folder);
  const auto test = clprompt::load_cifar10_python(folder, clprompt::Split::test);
  REQUIRE(test.size() == 1);
  CHECK(pixels_match(test.all_images(), 0, 77));
  CHECK(clprompt::read_cifar10_python(folder + "/test_batch").label(0) == 9);

  fs::remove(folder + "/data_batch_3");
  CHECK_THAT(file_error([&] { (void)clprompt::load_cifar10_python(dir.str(), clprompt::Split::train); }),
             Catch::StartsWith(folder + "/data_batch_3") && Catch::Contains("not found; expected the CIFAR-10 python version"));
  fs::remove(folder + "/batches.meta");
  CHECK_THAT(file_error([&] { (void)clprompt::load_cifar10_python(dir.str(), clprompt::Split::test); }),
             Catch::StartsWith(folder + "/batches.meta") && Catch::Contains("not found") && Catch::Contains("'label_names'"));
}

TEST_CASE("broken CIFAR python files throw FileError naming the file and what was expected", "[data][cifar_python]") {
  clprompt::test::TempDir dir;
  const auto read = [&](const std::string& name, clprompt::CifarLabel label = clprompt::CifarLabel::fine) {
    return file_error([&] { (void)clprompt::read_cifar100_python(dir / name, label); });
  };
  write_file(dir / "ok", cifar100_file({0, 1}, {5, 6}, {1, 2}));
  CHECK(read("ok") == "no error");
  write_file(dir / "label100", cifar100_file({0, 1}, {5, 100}, {1, 2}));
  CHECK_THAT(read("label100"), Catch::StartsWith(dir / "label100") &&
                                   Catch::Contains("'fine_labels'[1] is 100; expected a label in [0, 100)"));
  write_file(dir / "coarse20", cifar100_file({0, 1}, {5, 6}, {20, 2}));
  CHECK(read("coarse20") == "no error");
  CHECK_THAT(read("coarse20", clprompt::CifarLabel::coarse),
             Catch::Contains("'coarse_labels'[0] is 20; expected a label in [0, 20)"));
  write_file(dir / "mismatch", cifar100_file({0, 1}, {5}, {1, 2}));
  CHECK_THAT(read("mismatch"), Catch::StartsWith(dir / "mismatch") &&
                                   Catch::Contains("has 2 images in 'data' but 1 labels in 'fine_labels'"));

  Py2PickleWriter shape;
  shape.dict([&] {
    shape.str("fine_labels");
    shape.int_list({1});
    shape.str("data");
    shape.array({1, 3000}, Bytes(3000, 1));
  });
  shape.stop();
  write_file(dir / "shape", shape.bytes);
  CHECK_THAT(read("shape"), Catch::Contains("'data' is a uint8 array of shape [1, 3000]; expected uint8 [N, 3072]"));
  Py2PickleWriter dtype;
  dtype.dict([&] {
    dtype.str("fine_labels");
    dtype.int_list({1});
    dtype.str("data");
    dtype.array({1, 3072}, Bytes(3072 * 2, 1), false, "<u2");
  });
  dtype.stop();
  write_file(dir / "dtype", dtype.bytes);
  CHECK_THAT(read("dtype"), Catch::Contains("'data' is a <u2 array of shape [1, 3072]"));
  Py2PickleWriter nodata;
  nodata.dict([&] {
    nodata.str("fine_labels");
    nodata.int_list({1});
  });
  nodata.stop();
  write_file(dir / "nodata", nodata.bytes);
  CHECK_THAT(read("nodata"), Catch::Contains("has no 'data' entry (keys: 'fine_labels')"));
  Py2PickleWriter list;
  list.int_list({1, 2});
  list.stop();
  write_file(dir / "list", list.bytes);
  CHECK_THAT(read("list"), Catch::Contains("holds list of 2 items; expected a pickled dict"));
  Bytes truncated = cifar100_file({0}, {1}, {1});
  truncated.resize(truncated.size() - 100);
  write_file(dir / "truncated", truncated);
  CHECK_THAT(read("truncated"), Catch::StartsWith(dir / "truncated") && Catch::Contains("truncated"));
  CHECK_THAT(read("missing"), Catch::StartsWith(dir / "missing") && Catch::Contains("not found"));

  // Directory loaders: a missing split file names the expected layout; a short meta list.
  CHECK_THAT(file_error([&] { (void)clprompt::load_cifar100_python(dir / "nowhere", clprompt::Split::train); }),
             Catch::Contains("nowhere/cifar-100-python/train: not found; expected the CIFAR-100 python version"));
  write_file(dir / "c/cifar-100-python/train", cifar100_file({0}, {1}, {1}));
  CHECK_THAT(file_error([&] { (void)clprompt::load_cifar100_python(dir / "c", clprompt::Split::train); }),
             Catch::Contains("cifar-100-python/meta: not found") && Catch::Contains("'fine_label_names'"));
  write_file(dir / "c/cifar-100-python/meta", names_file({{"fine_label_names", numbered("f", 99)}}));
  CHECK_THAT(file_error([&] { (void)clprompt::load_cifar100_python(dir / "c", clprompt::Split::train); }),
             Catch::Contains("'fine_label_names' has 99 names; expected 100"));
  CHECK_THAT(file_error([&] {
               (void)clprompt::load_cifar100_python(dir / "c", clprompt::Split::train, clprompt::CifarLabel::coarse);
             }),
             Catch::Contains("has no 'coarse_label_names' entry"));
}
