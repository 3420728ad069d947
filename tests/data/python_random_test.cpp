// Python's random.seed / shuffle: the orders CPython prints, hard-coded.
#include <cstdint>
#include <numeric>
#include <vector>

#include "clprompt/data/python_random.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace {
using Indices = std::vector<int64_t>;
}  // namespace

TEST_CASE("python_shuffled_range equals Python's random.seed(s) then random.shuffle(list(range(n)))", "[data][python_random]") {
  // Produced with Debian 12's /usr/bin/python3 (3.11.2):
  //   import random
  //   l = list(range(n)); random.seed(s); random.shuffle(l); print(l)
  // n = 100, seed 1
  CHECK(clprompt::python_shuffled_range(100, 1) ==
        Indices{
        53, 37, 65, 51, 4, 20, 38, 9, 10, 81, 44, 36, 84, 50, 96, 90, 66, 16, 80, 33,
        24, 52, 91, 99, 64, 5, 58, 76, 39, 79, 23, 94, 30, 73, 25, 47, 31, 45, 19, 87,
        42, 68, 95, 21, 7, 67, 46, 82, 11, 6, 41, 86, 88, 70, 18, 78, 71, 59, 43, 61,
        22, 14, 35, 93, 56, 28, 98, 54, 27, 89, 1, 69, 74, 2, 85, 40, 13, 75, 29, 34,
        92, 0, 77, 55, 49, 3, 62, 12, 26, 48, 83, 60, 57, 63, 15, 32, 8, 97, 72, 17});
  // n = 100, seed 2
  CHECK(clprompt::python_shuffled_range(100, 2) ==
        Indices{
        0, 76, 61, 63, 1, 71, 2, 6, 16, 19, 13, 24, 49, 12, 75, 9, 83, 72, 5, 41,
        99, 45, 89, 53, 79, 18, 52, 92, 14, 42, 68, 44, 38, 84, 36, 17, 31, 15, 70, 88,
        25, 97, 51, 73, 66, 37, 78, 33, 80, 26, 82, 28, 60, 35, 43, 57, 23, 58, 91, 8,
        62, 93, 98, 86, 29, 30, 22, 95, 67, 54, 48, 40, 59, 96, 3, 87, 34, 64, 56, 69,
        47, 65, 50, 81, 55, 20, 74, 4, 90, 27, 77, 32, 39, 85, 94, 21, 46, 10, 11, 7});
  // n = 100, seed 3
  CHECK(clprompt::python_shuffled_range(100, 3) ==
        Indices{
        35, 41, 45, 4, 76, 12, 0, 64, 42, 11, 81, 39, 7, 48, 78, 15, 53, 62, 9, 52,
        68, 55, 63, 65, 61, 67, 95, 18, 58, 86, 99, 92, 10, 17, 72, 21, 14, 44, 37, 91,
        22, 59, 83, 32, 26, 98, 40, 27, 43, 96, 13, 31, 57, 2, 6, 23, 56, 71, 28, 36,
        51, 46, 25, 54, 73, 79, 34, 3, 38, 5, 20, 90, 88, 49, 66, 89, 84, 19, 50, 82,
        85, 97, 87, 24, 29, 70, 33, 93, 1, 94, 8, 74, 80, 60, 77, 47, 16, 69, 75, 30});
  // n = 100, seed 4
  CHECK(clprompt::python_shuffled_range(100, 4) ==
        Indices{
        73, 86, 82, 23, 1, 42, 57, 40, 76, 69, 25, 94, 9, 41, 88, 83, 74, 91, 67, 95,
        79, 75, 6, 72, 4, 71, 63, 62, 20, 65, 89, 60, 29, 56, 59, 90, 16, 84, 14, 10,
        85, 44, 58, 98, 77, 26, 12, 32, 48, 54, 45, 36, 18, 0, 93, 53, 81, 55, 52, 5,
        17, 99, 15, 80, 31, 64, 49, 43, 96, 47, 87, 39, 21, 24, 34, 78, 3, 27, 33, 97,
        22, 35, 46, 68, 66, 28, 7, 37, 70, 51, 2, 8, 11, 19, 61, 50, 92, 13, 38, 30});
  // n = 10, seed 1
  CHECK(clprompt::python_shuffled_range(10, 1) ==
        Indices{
        6, 8, 9, 7, 5, 3, 0, 4, 1, 2});
  // n = 10, seed 2
  CHECK(clprompt::python_shuffled_range(10, 2) ==
        Indices{
        5, 9, 3, 4, 6, 7, 2, 8, 1, 0});
  // n = 10, seed 3
  CHECK(clprompt::python_shuffled_range(10, 3) ==
        Indices{
        1, 5, 6, 0, 9, 4, 7, 2, 8, 3});
  // n = 10, seed 4
  CHECK(clprompt::python_shuffled_range(10, 4) ==
        Indices{
        8, 2, 0, 7, 6, 9, 5, 1, 4, 3});
  // n = 200, seed 1
  CHECK(clprompt::python_shuffled_range(200, 1) ==
        Indices{
        33, 146, 79, 19, 23, 131, 12, 187, 174, 32, 86, 123, 109, 171, 42, 170, 179, 31, 36, 10,
        180, 9, 121, 27, 57, 157, 96, 163, 160, 41, 43, 18, 169, 154, 119, 159, 15, 17, 63, 28,
        76, 183, 4, 168, 80, 104, 161, 156, 37, 35, 11, 40, 14, 192, 134, 38, 94, 102, 113, 105,
        111, 67, 87, 83, 91, 188, 89, 116, 52, 101, 167, 198, 139, 46, 61, 164, 54, 175, 71, 191,
        196, 92, 49, 181, 140, 144, 125, 199, 177, 45, 73, 130, 186, 51, 136, 70, 69, 149, 98, 1,
        29, 64, 132, 21, 82, 118, 153, 147, 78, 143, 90, 39, 152, 60, 3, 137, 133, 148, 50, 107,
        66, 20, 184, 13, 197, 84, 182, 22, 95, 93, 44, 176, 103, 62, 122, 8, 100, 150, 127, 72,
        77, 48, 129, 165, 128, 85, 194, 75, 47, 25, 142, 106, 172, 74, 117, 162, 158, 88, 59, 141,
        193, 112, 56, 135, 173, 108, 55, 189, 2, 138, 190, 6, 5, 185, 81, 26, 151, 58, 68, 114,
        178, 0, 155, 110, 99, 7, 124, 24, 53, 97, 166, 120, 115, 126, 30, 65, 16, 195, 145, 34});
  // n = 200, seed 2
  CHECK(clprompt::python_shuffled_range(200, 2) ==
        Indices{
        51, 94, 55, 35, 170, 177, 20, 85, 50, 36, 30, 76, 5, 136, 182, 82, 25, 169, 166, 178,
        74, 53, 32, 184, 160, 179, 138, 140, 27, 12, 48, 57, 145, 28, 19, 162, 175, 121, 18, 72,
        101, 69, 49, 115, 181, 15, 193, 37, 111, 0, 158, 33, 11, 47, 80, 126, 183, 16, 198, 91,
        58, 70, 2, 67, 8, 199, 10, 3, 77, 22, 168, 96, 86, 4, 189, 88, 99, 31, 84, 17,
        107, 123, 29, 103, 117, 161, 105, 73, 173, 13, 24, 1, 195, 185, 79, 87, 151, 65, 62, 26,
        147, 144, 52, 75, 186, 159, 109, 66, 137, 191, 122, 133, 142, 38, 39, 61, 98, 157, 192, 129,
        112, 197, 149, 194, 104, 152, 120, 56, 124, 132, 89, 141, 116, 146, 153, 176, 127, 71, 125, 63,
        135, 118, 102, 41, 150, 154, 90, 172, 167, 106, 114, 46, 165, 131, 196, 156, 180, 34, 44, 83,
        164, 6, 59, 60, 45, 143, 42, 134, 108, 97, 81, 119, 93, 7, 187, 68, 128, 113, 139, 95,
        130, 100, 163, 110, 40, 174, 148, 9, 190, 54, 155, 64, 78, 171, 188, 43, 92, 21, 23, 14});
  // n = 200, seed 3
  CHECK(clprompt::python_shuffled_range(200, 3) ==
        Indices{
        158, 62, 14, 69, 47, 137, 110, 6, 116, 88, 130, 100, 118, 67, 79, 56, 142, 199, 36, 12,
        194, 197, 32, 174, 28, 27, 127, 82, 166, 112, 18, 134, 45, 128, 23, 135, 73, 87, 65, 144,
        85, 63, 122, 125, 22, 29, 124, 103, 51, 170, 182, 80, 57, 95, 153, 1, 20, 181, 172, 50,
        195, 21, 192, 74, 84, 90, 173, 106, 149, 167, 156, 92, 185, 183, 191, 58, 108, 180, 17, 46,
        168, 43, 105, 117, 196, 145, 115, 119, 25, 96, 131, 76, 13, 161, 0, 39, 4, 30, 64, 35,
        70, 42, 75, 91, 48, 150, 97, 78, 146, 5, 15, 157, 53, 143, 132, 37, 2, 19, 114, 52,
        8, 102, 44, 11, 61, 81, 159, 123, 169, 31, 72, 177, 54, 26, 83, 41, 71, 164, 86, 175,
        104, 136, 89, 98, 129, 107, 165, 111, 186, 55, 126, 189, 9, 24, 93, 34, 113, 147, 178, 109,
        171, 152, 179, 68, 7, 77, 10, 198, 40, 190, 188, 99, 133, 176, 162, 184, 38, 163, 101, 193,
        140, 138, 187, 49, 59, 141, 66, 120, 3, 155, 16, 148, 160, 121, 154, 94, 33, 139, 151, 60});
  // n = 200, seed 4
  CHECK(clprompt::python_shuffled_range(200, 4) ==
        Indices{
        136, 126, 189, 51, 145, 98, 0, 68, 40, 4, 83, 82, 112, 196, 53, 16, 8, 148, 180, 139,
        106, 61, 62, 84, 178, 14, 93, 193, 181, 103, 57, 199, 113, 127, 195, 144, 197, 18, 33, 198,
        64, 72, 100, 159, 31, 34, 131, 162, 123, 43, 38, 91, 47, 177, 135, 117, 151, 141, 179, 13,
        28, 176, 85, 154, 65, 173, 21, 96, 94, 46, 153, 163, 183, 48, 32, 128, 114, 194, 24, 104,
        9, 150, 52, 19, 182, 109, 88, 2, 111, 175, 36, 10, 89, 119, 190, 3, 58, 149, 156, 171,
        186, 30, 165, 152, 97, 158, 29, 90, 7, 107, 12, 143, 125, 134, 124, 142, 75, 167, 55, 168,
        192, 35, 185, 80, 81, 25, 116, 147, 191, 50, 37, 87, 120, 132, 157, 118, 138, 20, 11, 174,
        78, 59, 41, 115, 110, 73, 108, 105, 172, 130, 170, 146, 169, 1, 76, 188, 166, 71, 121, 161,
        45, 63, 129, 99, 86, 155, 22, 95, 160, 187, 79, 42, 49, 69, 66, 164, 6, 54, 67, 27,
        44, 70, 92, 137, 133, 56, 15, 74, 140, 102, 5, 17, 23, 39, 122, 101, 184, 26, 77, 60});
}

TEST_CASE("PythonRandom seeds with every 32-bit word of the seed and matches getrandbits and random()",
          "[data][python_random]") {
  // /usr/bin/python3 (3.11.2): l = list(range(20)); random.seed(s); random.shuffle(l)
  // for s = 0, 2**32 + 5 (two key words), 2**64 - 1 and 1993.
  CHECK(clprompt::python_shuffled_range(20, 0) ==
        Indices{10, 18, 16, 14, 0, 17, 11, 2, 3, 9, 5, 7, 4, 19, 6, 15, 8, 1, 13, 12});
  CHECK(clprompt::python_shuffled_range(20, (uint64_t{1} << 32) + 5) ==
        Indices{16, 13, 8, 4, 1, 6, 18, 17, 3, 19, 7, 14, 12, 2, 10, 11, 0, 9, 15, 5});
  CHECK(clprompt::python_shuffled_range(20, ~uint64_t{0}) ==
        Indices{16, 4, 13, 15, 2, 17, 12, 18, 8, 3, 19, 11, 5, 1, 9, 14, 6, 10, 7, 0});
  CHECK(clprompt::python_shuffled_range(20, 1993) ==
        Indices{16, 4, 0, 19, 18, 7, 10, 9, 11, 6, 13, 12, 5, 2, 17, 3, 1, 14, 8, 15});
  // The same seeds given as words; high zero words do not count (Python counts bits).
  auto words = clprompt::PythonRandom::from_words({5, 1, 0, 0});
  Indices l(20);
  std::iota(l.begin(), l.end(), int64_t{0});
  words.shuffle(l);
  CHECK(l == clprompt::python_shuffled_range(20, (uint64_t{1} << 32) + 5));
  auto zero = clprompt::PythonRandom::from_words({});
  std::iota(l.begin(), l.end(), int64_t{0});
  zero.shuffle(l);
  CHECK(l == clprompt::python_shuffled_range(20, 0));

  // random.seed(7); [random.getrandbits(k) for k in (1, 5, 31, 32, 33, 40, 64)]
  clprompt::PythonRandom r(7);
  std::vector<uint64_t> bits;
  for (int k : {1, 5, 31, 32, 33, 40, 64}) bits.push_back(r.getrandbits(k));
  CHECK(bits == std::vector<uint64_t>{0, 30, 323946139, 1695753998, 2795742288, 902254243635,
                                      1736392818365009963ULL});
  // random.seed(7); random.random(), random.random()
  clprompt::PythonRandom r2(7);
  const double a = r2.random();
  const double b = r2.random();
  CHECK(a == 0.32383276483316237);
  CHECK(b == 0.15084917392450192);
  CHECK(r.getrandbits(0) == 0);
  CHECK_THROWS_AS(r.getrandbits(65), clprompt::Error);
  CHECK_THROWS_AS(r.randbelow(0), clprompt::Error);
}

TEST_CASE("coda_prompt_class_order keeps trial 0 in natural order and shuffles later trials", "[data][python_random]") {
  Indices natural(100);
  std::iota(natural.begin(), natural.end(), int64_t{0});
  CHECK(clprompt::coda_prompt_class_order(100, 0) == natural);
  CHECK(clprompt::coda_prompt_class_order(100, 3) == clprompt::python_shuffled_range(100, 3));
  CHECK(clprompt::coda_prompt_class_order(200, 1).front() == 33);  // random.seed(1) on range(200)
  CHECK(clprompt::python_shuffled_range(0, 1).empty());
  CHECK(clprompt::python_shuffled_range(1, 1) == Indices{0});
  CHECK_THROWS_AS(clprompt::python_shuffled_range(-1, 1), clprompt::Error);
}
