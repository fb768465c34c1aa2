//===- NpyTest.cpp - NumPy .npy reader ------------------------------------===//
//
// Part of moec. The files are assembled byte by byte here, following the
// format numpy.lib.format writes, so the tests need no Python.
//
//===----------------------------------------------------------------------===//

#include "moec/Support/Npy.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <cstring>
#include <string>

using namespace llvm;
using namespace moec;

namespace {

// Preamble + header (padded with spaces and '\n' to a multiple of 64 bytes,
// as numpy does) + data. `headerLengthDelta` corrupts the length field.
std::string makeNpy(StringRef dict, StringRef data, unsigned major = 1,
                    int headerLengthDelta = 0) {
  size_t preamble = major == 1 ? 10 : 12;
  std::string header = dict.str();
  while ((preamble + header.size() + 1) % 64)
    header += ' ';
  header += '\n';
  std::string file = "\x93NUMPY";
  file += static_cast<char>(major);
  file += '\0';
  uint32_t length = header.size() + headerLengthDelta;
  file += static_cast<char>(length & 0xff);
  file += static_cast<char>((length >> 8) & 0xff);
  if (major != 1) {
    file += static_cast<char>((length >> 16) & 0xff);
    file += static_cast<char>((length >> 24) & 0xff);
  }
  return file + header + data.str();
}

template <typename T> std::string bytesOf(std::initializer_list<T> values) {
  std::string bytes;
  for (T value : values) {
    char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T)); // the test hosts are little-endian
    bytes.append(raw, sizeof(T));
  }
  return bytes;
}

std::string errorOf(Expected<NpyArray> result) {
  if (result)
    return "<no error>";
  return toString(result.takeError());
}

} // namespace

TEST(Npy, ReadsVersion1Float32) {
  std::string file =
      makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
              bytesOf<float>({1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 7.0f}));
  Expected<NpyArray> array = parseNpy(file, "a.npy");
  ASSERT_TRUE(bool(array)) << toString(array.takeError());
  EXPECT_EQ(array->dtype, NpyDType::F32);
  EXPECT_EQ(array->shape, (SmallVector<int64_t, 4>{2, 3}));
  EXPECT_EQ(array->numElements(), 6);
  EXPECT_EQ(array->f32,
            (std::vector<float>{1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 7.0f}));
  EXPECT_TRUE(array->i64.empty());
}

TEST(Npy, ReadsVersion2Int64AndInt32) {
  std::string file =
      makeNpy("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }",
              bytesOf<int64_t>({-1, 0, 1LL << 40, 151643}), /*major=*/2);
  Expected<NpyArray> array = parseNpy(file, "ids.npy");
  ASSERT_TRUE(bool(array)) << toString(array.takeError());
  EXPECT_EQ(array->dtype, NpyDType::I64);
  EXPECT_EQ(array->shape, (SmallVector<int64_t, 4>{4}));
  EXPECT_EQ(array->i64, (std::vector<int64_t>{-1, 0, 1LL << 40, 151643}));

  // Double quotes, no trailing comma, other key order: still a dict.
  file = makeNpy(R"({"shape": (1, 2), "fortran_order": False, "descr": "<i4"})",
                 bytesOf<int32_t>({-7, 1 << 30}));
  array = parseNpy(file, "i4.npy");
  ASSERT_TRUE(bool(array)) << toString(array.takeError());
  EXPECT_EQ(array->dtype, NpyDType::I32);
  EXPECT_EQ(array->i32, (std::vector<int32_t>{-7, 1 << 30}));
}

TEST(Npy, ScalarAndEmptyShapes) {
  Expected<NpyArray> scalar = parseNpy(
      makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
              bytesOf<float>({42.0f})),
      "scalar.npy");
  ASSERT_TRUE(bool(scalar)) << toString(scalar.takeError());
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->numElements(), 1);
  EXPECT_EQ(scalar->f32, std::vector<float>{42.0f});

  Expected<NpyArray> empty = parseNpy(
      makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }",
              ""),
      "empty.npy");
  ASSERT_TRUE(bool(empty)) << toString(empty.takeError());
  EXPECT_EQ(empty->numElements(), 0);
  EXPECT_TRUE(empty->f32.empty());
}

TEST(Npy, ReadsFromDisk) {
  SmallString<128> dir;
  ASSERT_FALSE(sys::fs::createUniqueDirectory("moec-npy", dir));
  SmallString<128> path(dir);
  sys::path::append(path, "logits.npy");
  {
    std::error_code ec;
    raw_fd_ostream os(path, ec);
    ASSERT_FALSE(ec);
    os << makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, "
                  "2), }",
                  bytesOf<float>({0.5f, -0.25f}));
  }
  Expected<NpyArray> array = readNpy(path);
  ASSERT_TRUE(bool(array)) << toString(array.takeError());
  EXPECT_EQ(array->f32, (std::vector<float>{0.5f, -0.25f}));

  SmallString<128> missing(dir);
  sys::path::append(missing, "missing.npy");
  std::string message = errorOf(readNpy(missing));
  EXPECT_NE(message.find(missing.str().str()), std::string::npos) << message;
  sys::fs::remove_directories(dir);
}

TEST(Npy, RejectsMalformedFiles) {
  std::string good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
                     "}";
  std::string data = bytesOf<float>({1.0f, 2.0f});

  std::string badMagic = makeNpy(good, data);
  badMagic[1] = 'M';
  EXPECT_EQ(errorOf(parseNpy(badMagic, "x.npy")),
            "x.npy: not a .npy file (bad magic)");

  EXPECT_EQ(errorOf(parseNpy(makeNpy(good, data, /*major=*/4), "x.npy")),
            "x.npy: unsupported .npy format version 4.0");

  EXPECT_NE(errorOf(parseNpy(makeNpy(good, data, 1, /*delta=*/200), "x.npy"))
                .find("truncated .npy header"),
            std::string::npos);

  EXPECT_EQ(errorOf(parseNpy(makeNpy(good, data.substr(0, 6)), "x.npy")),
            "x.npy: data is 6 bytes, expected 8 for shape (2,) of <f4");
  EXPECT_EQ(errorOf(parseNpy(makeNpy(good, data + "xx"), "x.npy")),
            "x.npy: data is 10 bytes, expected 8 for shape (2,) of <f4");

  EXPECT_NE(errorOf(parseNpy(makeNpy("{'descr': '<f4', 'fortran_order': "
                                     "True, 'shape': (2,), }",
                                     data),
                             "x.npy"))
                .find("Fortran-order arrays are not supported"),
            std::string::npos);

  for (StringRef dtype : {">f4", "<f8", "|u1", "<f2"}) {
    std::string dict = "{'descr': '" + dtype.str() +
                       "', 'fortran_order': False, 'shape': (2,), }";
    EXPECT_EQ(errorOf(parseNpy(makeNpy(dict, data), "x.npy")),
              "x.npy: dtype '" + dtype.str() +
                  "' is not supported (expected '<f4', '<i8' or '<i4')");
  }

  EXPECT_NE(errorOf(parseNpy(makeNpy("{'descr': '<f4', 'shape': (2,), }", data),
                             "x.npy"))
                .find("lacks one of"),
            std::string::npos);
  EXPECT_NE(errorOf(parseNpy(makeNpy("{'descr': '<f4', 'fortran_order': "
                                     "False, 'shape': (2,), 'extra': 1}",
                                     data),
                             "x.npy"))
                .find("unexpected key 'extra'"),
            std::string::npos);
  EXPECT_NE(errorOf(parseNpy(makeNpy("{'descr': '<f4', 'fortran_order': "
                                     "False, 'shape': (2, -1), }",
                                     data),
                             "x.npy"))
                .find("malformed .npy header"),
            std::string::npos);
  EXPECT_NE(errorOf(parseNpy(makeNpy("not a dict", data), "x.npy"))
                .find("malformed .npy header"),
            std::string::npos);
  EXPECT_EQ(errorOf(parseNpy("\x93NUMPY\x01", "x.npy")),
            "x.npy: truncated .npy preamble");
}
